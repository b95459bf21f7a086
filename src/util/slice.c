/*
 * slice.c - borrowed slices and owned growable buffers (see slice.h).
 */
#include "util/slice.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/coding.h"

int kv_slice_cmp(struct kv_slice a, struct kv_slice b)
{
	size_t n = a.n < b.n ? a.n : b.n;
	int r = n ? memcmp(a.p, b.p, n) : 0;
	if (r)
		return r;
	return a.n < b.n ? -1 : a.n > b.n;
}

bool kv_slice_eq(struct kv_slice a, struct kv_slice b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool kv_slice_has_prefix(struct kv_slice s, struct kv_slice prefix)
{
	return s.n >= prefix.n && (prefix.n == 0 || memcmp(s.p, prefix.p, prefix.n) == 0);
}

void kv_buf_init(struct kv_buf *b)
{
	b->p = NULL;
	b->n = 0;
	b->cap = 0;
}

void kv_buf_release(struct kv_buf *b)
{
	free(b->p);
	kv_buf_init(b);
}

int kv_buf_reserve(struct kv_buf *b, size_t extra)
{
	/* No object may exceed PTRDIFF_MAX bytes; refuse before asking malloc. */
	if (extra > (size_t)PTRDIFF_MAX - b->n)
		return -ENOMEM;
	size_t need = b->n + extra;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int kv_buf_append(struct kv_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int r = kv_buf_reserve(b, n);
	if (r)
		return r;
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

int kv_buf_append_u8(struct kv_buf *b, uint8_t v)
{
	return kv_buf_append(b, &v, 1);
}

int kv_buf_append_le16(struct kv_buf *b, uint16_t v)
{
	uint8_t t[2];
	kv_put_le16(t, v);
	return kv_buf_append(b, t, sizeof t);
}

int kv_buf_append_le32(struct kv_buf *b, uint32_t v)
{
	uint8_t t[4];
	kv_put_le32(t, v);
	return kv_buf_append(b, t, sizeof t);
}

int kv_buf_append_le64(struct kv_buf *b, uint64_t v)
{
	uint8_t t[8];
	kv_put_le64(t, v);
	return kv_buf_append(b, t, sizeof t);
}

int kv_buf_append_be64(struct kv_buf *b, uint64_t v)
{
	uint8_t t[8];
	kv_put_be64(t, v);
	return kv_buf_append(b, t, sizeof t);
}

int kv_buf_append_varint(struct kv_buf *b, uint64_t v)
{
	uint8_t t[KV_VARINT64_MAX];
	return kv_buf_append(b, t, kv_varint_encode(t, v));
}

int kv_buf_append_lenbytes(struct kv_buf *b, struct kv_slice s)
{
	int r = kv_buf_append_varint(b, s.n);
	return r ? r : kv_buf_append(b, s.p, s.n);
}

uint8_t *kv_buf_detach(struct kv_buf *b, size_t *len)
{
	uint8_t *p = b->p;
	if (len)
		*len = b->n;
	kv_buf_init(b);
	return p;
}
