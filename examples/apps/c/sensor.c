/* sensor: reads the temperature sensor on every tick and publishes it as
 * the metric "temperature_celsius"; every 10th reading it also publishes
 * the raw TMP102 register read over I2C (bus 0, address 0x48) on topic
 * "sensor/raw". Config: "period_ms" (default 1000). */
#include "wasmbed.h"

static uint32_t count;

WASMBED_EXPORT("wasmbed_init") void init(void) {
	wasmbed_tick_interval(wasmbed_config_int("period_ms", 1000));
}

WASMBED_EXPORT("wasmbed_tick") void tick(void) {
	double celsius;
	int32_t rc = wasmbed_sensor_read(WASMBED_SENSOR_TEMPERATURE, &celsius);
	if (rc < 0) {
		WASMBED_LOG(WASMBED_LOG_WARN, "sensor: read failed");
		return;
	}
	static const char name[] = "temperature_celsius";
	wasmbed_publish_metric(name, sizeof name - 1, celsius);
	if (count++ % 10 == 0) {
		unsigned char reg = 0, raw[2];
		if (wasmbed_i2c_transfer(0, 0x48, &reg, 1, raw, 2) == 2) {
			static const char topic[] = "sensor/raw";
			wasmbed_publish(topic, sizeof topic - 1, raw, 2);
		}
	}
}
