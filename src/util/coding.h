/*
 * coding.h - fixed-width integers and varints.
 *
 * On-disk and wire integers are little-endian unless a format says otherwise;
 * be64 exists for keys that must sort by number. Varints are LEB128 (7 bits a
 * byte, low group first, at most 10 bytes for 64 bits).
 */
#ifndef KV_UTIL_CODING_H
#define KV_UTIL_CODING_H

#include <stddef.h>
#include <stdint.h>

#define KV_VARINT64_MAX 10

static inline void kv_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void kv_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void kv_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void kv_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint16_t kv_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t kv_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t kv_get_le64(const uint8_t *p)
{
	return (uint64_t)kv_get_le32(p) | ((uint64_t)kv_get_le32(p + 4) << 32);
}

static inline uint64_t kv_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Writes @v to @p (room for KV_VARINT64_MAX bytes); returns bytes written. */
size_t kv_varint_encode(uint8_t *p, uint64_t v);

/* Bytes kv_varint_encode() would write for @v. */
size_t kv_varint_len(uint64_t v);

/*
 * Decodes a varint from the @n bytes at @p. Returns the bytes consumed (1..10)
 * or KV_ECORRUPT when the input is truncated or longer than 64 bits.
 */
int kv_varint_decode(const uint8_t *p, size_t n, uint64_t *out);

#endif
