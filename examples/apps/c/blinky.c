/* blinky: toggles a GPIO pin on every tick.
 * Config: "pin" (default 5), "period_ms" (tick interval, default 500). */
#include "wasmbed.h"

static int32_t pin;
static int32_t level;

WASMBED_EXPORT("wasmbed_init") void init(void) {
	pin = wasmbed_config_int("pin", 5);
	wasmbed_tick_interval(wasmbed_config_int("period_ms", 500));
	if (wasmbed_gpio_config(pin, WASMBED_PIN_OUTPUT) < 0) {
		WASMBED_LOG(WASMBED_LOG_ERROR, "blinky: cannot configure pin");
		return;
	}
	WASMBED_LOG(WASMBED_LOG_INFO, "blinky: started");
}

WASMBED_EXPORT("wasmbed_tick") void tick(void) {
	level = !level;
	wasmbed_gpio_write(pin, level);
}
