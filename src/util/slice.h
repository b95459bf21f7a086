/*
 * slice.h - borrowed and owned byte strings.
 *
 * struct kv_slice borrows bytes: whoever made it keeps ownership and must keep
 * them alive while the slice is used. struct kv_buf owns a growable heap
 * buffer; kv_buf_release() frees it, kv_buf_detach() hands the bytes over.
 */
#ifndef KV_UTIL_SLICE_H
#define KV_UTIL_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct kv_slice {
	const uint8_t *p;
	size_t n;
};

static inline struct kv_slice kv_slice_make(const void *p, size_t n)
{
	struct kv_slice s = { (const uint8_t *)p, n };
	return s;
}

static inline struct kv_slice kv_slice_str(const char *s)
{
	return kv_slice_make(s, strlen(s));
}

/* Bytewise comparison; a proper prefix sorts first. Returns <0, 0 or >0. */
int kv_slice_cmp(struct kv_slice a, struct kv_slice b);
bool kv_slice_eq(struct kv_slice a, struct kv_slice b);
bool kv_slice_has_prefix(struct kv_slice s, struct kv_slice prefix);

struct kv_buf {
	uint8_t *p;
	size_t n;   /* bytes in use */
	size_t cap; /* bytes allocated */
};

#define KV_BUF_INIT { NULL, 0, 0 }

void kv_buf_init(struct kv_buf *b);
/* Frees the storage and leaves an empty buffer. */
void kv_buf_release(struct kv_buf *b);
/* Empties the buffer but keeps its storage. */
static inline void kv_buf_reset(struct kv_buf *b) { b->n = 0; }
/* Makes room for @extra more bytes. Returns 0 or -ENOMEM. */
int kv_buf_reserve(struct kv_buf *b, size_t extra);
int kv_buf_append(struct kv_buf *b, const void *p, size_t n);
int kv_buf_append_u8(struct kv_buf *b, uint8_t v);
int kv_buf_append_le16(struct kv_buf *b, uint16_t v);
int kv_buf_append_le32(struct kv_buf *b, uint32_t v);
int kv_buf_append_le64(struct kv_buf *b, uint64_t v);
int kv_buf_append_be64(struct kv_buf *b, uint64_t v);
int kv_buf_append_varint(struct kv_buf *b, uint64_t v);
/* Appends varint(len) then the bytes. */
int kv_buf_append_lenbytes(struct kv_buf *b, struct kv_slice s);
/*
 * Hands the bytes over: *len gets the size, the caller now owns the returned
 * pointer (free() it), and @b is left empty. May return NULL for an empty
 * buffer.
 */
uint8_t *kv_buf_detach(struct kv_buf *b, size_t *len);

static inline struct kv_slice kv_buf_slice(const struct kv_buf *b)
{
	return kv_slice_make(b->p, b->n);
}

#endif
