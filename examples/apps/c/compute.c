/* compute: a CPU-bound app for benchmarks. Each tick computes the CRC-32
 * (IEEE, bitwise) of a 4 KiB buffer, iterates a xorshift generator and
 * fib(24) recursively, and publishes a checksum of the results as the
 * metric "compute_checksum". */
#include "wasmbed.h"

#define BUF 4096
static unsigned char buf[BUF];
static uint32_t seed = 2463534242u;

static uint32_t xorshift32(void) {
	seed ^= seed << 13;
	seed ^= seed >> 17;
	seed ^= seed << 5;
	return seed;
}

static uint32_t crc32(const unsigned char *p, uint32_t n) {
	uint32_t crc = 0xffffffffu;
	for (uint32_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

__attribute__((noinline)) static uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static uint32_t last;

WASMBED_EXPORT("wasmbed_init") void init(void) {
	for (uint32_t i = 0; i < BUF; i++) buf[i] = (unsigned char)xorshift32();
}

WASMBED_EXPORT("wasmbed_tick") void tick(void) {
	uint32_t c = crc32(buf, BUF);
	uint32_t f = fib(24);
	last = c ^ f ^ xorshift32();
	static const char name[] = "compute_checksum";
	wasmbed_publish_metric(name, sizeof name - 1, (double)last);
}

/* compute_checksum returns the last tick's result (for tests). */
WASMBED_EXPORT("compute_result") uint32_t compute_result(void) { return last; }
