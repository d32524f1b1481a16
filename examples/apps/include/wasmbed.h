/*
 * wasmbed.h - host API v1 of the Wasmbed device runtime for C apps.
 *
 * Build with clang's wasm32 target (see hack/build-apps.sh). Every host
 * function returns a non-negative value on success or a negative errno
 * (WASMBED_E*) on failure; none of them traps. See docs/app-abi.md.
 */
#ifndef WASMBED_H
#define WASMBED_H

#include <stdint.h>

#define WASMBED_IMPORT(name) __attribute__((import_module("wasmbed"), import_name(name)))
#define WASMBED_EXPORT(name) __attribute__((export_name(name)))

/* The ABI version (1) is declared by a "wasmbed.abi" custom section that
 * hack/build-apps.sh appends to the linked module. */

#define WASMBED_EPERM -1
#define WASMBED_ENOENT -2
#define WASMBED_EIO -5
#define WASMBED_E2BIG -7
#define WASMBED_EAGAIN -11
#define WASMBED_EFAULT -14
#define WASMBED_ENODEV -19
#define WASMBED_EINVAL -22
#define WASMBED_ENOSYS -38
#define WASMBED_ETIMEDOUT -110

#define WASMBED_LOG_DEBUG 0
#define WASMBED_LOG_INFO 1
#define WASMBED_LOG_WARN 2
#define WASMBED_LOG_ERROR 3

#define WASMBED_PIN_DISABLED 0
#define WASMBED_PIN_INPUT 1
#define WASMBED_PIN_INPUT_PULLUP 2
#define WASMBED_PIN_OUTPUT 3

#define WASMBED_SENSOR_TEMPERATURE 0

WASMBED_IMPORT("log") int32_t wasmbed_log(int32_t level, const char *msg, uint32_t len);
WASMBED_IMPORT("time_ms") int64_t wasmbed_time_ms(void);
WASMBED_IMPORT("sleep_ms") int32_t wasmbed_sleep_ms(int32_t ms);
WASMBED_IMPORT("tick_interval") int32_t wasmbed_tick_interval(int32_t ms);
WASMBED_IMPORT("gpio_config") int32_t wasmbed_gpio_config(int32_t pin, int32_t mode);
WASMBED_IMPORT("gpio_write") int32_t wasmbed_gpio_write(int32_t pin, int32_t level);
WASMBED_IMPORT("gpio_read") int32_t wasmbed_gpio_read(int32_t pin);
WASMBED_IMPORT("uart_write") int32_t wasmbed_uart_write(int32_t port, const void *buf, uint32_t len);
WASMBED_IMPORT("uart_read") int32_t wasmbed_uart_read(int32_t port, void *buf, uint32_t len);
WASMBED_IMPORT("spi_transfer") int32_t wasmbed_spi_transfer(int32_t bus, const void *tx, void *rx, uint32_t len);
WASMBED_IMPORT("i2c_transfer")
int32_t wasmbed_i2c_transfer(int32_t bus, int32_t addr, const void *w, uint32_t wlen, void *r, uint32_t rlen);
WASMBED_IMPORT("sensor_read") int32_t wasmbed_sensor_read(int32_t id, double *out);
WASMBED_IMPORT("publish_metric") int32_t wasmbed_publish_metric(const char *name, uint32_t len, double value);
WASMBED_IMPORT("publish")
int32_t wasmbed_publish(const char *topic, uint32_t tlen, const void *data, uint32_t dlen);
WASMBED_IMPORT("config_get")
int32_t wasmbed_config_get(const char *key, uint32_t klen, char *buf, uint32_t blen);

/* Small helpers for freestanding apps. */
static inline uint32_t wasmbed_strlen(const char *s) {
	uint32_t n = 0;
	while (s[n]) n++;
	return n;
}

#define WASMBED_LOG(level, lit) wasmbed_log((level), (lit), sizeof(lit) - 1)

/* Reads config key as a non-negative decimal integer, or returns def. */
static inline int32_t wasmbed_config_int(const char *key, int32_t def) {
	char buf[12];
	int32_t n = wasmbed_config_get(key, wasmbed_strlen(key), buf, sizeof buf);
	if (n <= 0 || n > (int32_t)sizeof buf) return def;
	int32_t v = 0;
	for (int32_t i = 0; i < n; i++) {
		if (buf[i] < '0' || buf[i] > '9') return def;
		v = v * 10 + (buf[i] - '0');
	}
	return v;
}

#endif
