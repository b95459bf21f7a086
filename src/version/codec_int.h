/*
 * codec_int.h - private: a bounds-checked reader for the version encodings.
 *
 * Every read checks the bytes left; varints must be minimal (one value, one
 * encoding), which keeps the encodings canonical. Format: doc/versions.md.
 */
#ifndef KV_VERSION_CODEC_INT_H
#define KV_VERSION_CODEC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/coding.h"
#include "util/error.h"

struct kv_rd {
	const uint8_t *p;
	size_t n; /* bytes left */
};

/* Reads a minimal varint. Returns 0 or KV_ECORRUPT. */
static inline int kv_rd_varint(struct kv_rd *r, uint64_t *v)
{
	uint64_t x;
	int used = kv_varint_decode(r->p, r->n, &x);
	if (used < 0)
		return KV_ECORRUPT;
	if ((size_t)used != kv_varint_len(x))
		return KV_ECORRUPT; /* overlong: 0x80 0x00 for 0 */
	r->p += used;
	r->n -= (size_t)used;
	*v = x;
	return 0;
}

static inline int kv_rd_u32(struct kv_rd *r, uint32_t *v)
{
	uint64_t x;
	if (kv_rd_varint(r, &x) || x > UINT32_MAX)
		return KV_ECORRUPT;
	*v = (uint32_t)x;
	return 0;
}

/* Borrows @len bytes from the reader. */
static inline int kv_rd_bytes(struct kv_rd *r, size_t len, const uint8_t **out)
{
	if (len > r->n)
		return KV_ECORRUPT;
	*out = r->p;
	r->p += len;
	r->n -= len;
	return 0;
}

#endif
