/*
 * coding.c - LEB128 varints (see coding.h).
 */
#include "util/coding.h"

#include "util/error.h"

size_t kv_varint_encode(uint8_t *p, uint64_t v)
{
	size_t i = 0;
	while (v >= 0x80) {
		p[i++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[i++] = (uint8_t)v;
	return i;
}

size_t kv_varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

int kv_varint_decode(const uint8_t *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n && i < KV_VARINT64_MAX; i++) {
		uint64_t group = p[i] & 0x7f;
		/* The tenth byte may only carry the top bit of a 64-bit value. */
		if (i == KV_VARINT64_MAX - 1 && group > 1)
			return KV_ECORRUPT;
		v |= group << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = v;
			return (int)(i + 1);
		}
	}
	return KV_ECORRUPT;
}
