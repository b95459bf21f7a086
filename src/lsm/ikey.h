/*
 * ikey.h - internal keys: what the memtable, the WAL replay and the SSTables
 * sort by. Format: doc/storage-format.md#internal-keys.
 *
 *   internal key = user key ‖ le64(sequence << 8 | type)
 *
 * Ordered by user key ascending (bytewise), then by the 8-byte trailer
 * descending, so the newest version of a key comes first and a lookup for
 * "key as of sequence S" is a seek to ikey(key, S, KV_TYPE_SEEK).
 */
#ifndef KV_LSM_IKEY_H
#define KV_LSM_IKEY_H

#include <stdint.h>

#include "util/coding.h"
#include "util/error.h"
#include "util/slice.h"

enum kv_entry_type {
	KV_TYPE_DEL = 0,  /* a delete marker of the engine (not a kvfs tombstone) */
	KV_TYPE_PUT = 1,
	KV_TYPE_SEEK = 1, /* the highest type: sorts first among equal sequences */
};

#define KV_IKEY_TRAILER 8
#define KV_SEQ_MAX ((UINT64_C(1) << 56) - 1)

static inline uint64_t kv_ikey_pack(uint64_t seq, enum kv_entry_type type)
{
	return (seq << 8) | (uint64_t)type;
}

/* Appends ikey(@ukey, @seq, @type) to @out. Returns 0 or -ENOMEM. */
static inline int kv_ikey_append(struct kv_buf *out, struct kv_slice ukey, uint64_t seq,
				 enum kv_entry_type type)
{
	int r = kv_buf_append(out, ukey.p, ukey.n);
	return r ? r : kv_buf_append_le64(out, kv_ikey_pack(seq, type));
}

struct kv_ikey {
	struct kv_slice ukey;
	uint64_t seq;
	enum kv_entry_type type;
};

/* Splits an internal key. Returns 0, or KV_ECORRUPT if it is malformed. */
static inline int kv_ikey_parse(struct kv_slice ikey, struct kv_ikey *out)
{
	if (ikey.n < KV_IKEY_TRAILER)
		return KV_ECORRUPT;
	uint64_t trailer = kv_get_le64(ikey.p + ikey.n - KV_IKEY_TRAILER);
	if ((trailer & 0xff) > KV_TYPE_PUT)
		return KV_ECORRUPT;
	out->ukey = kv_slice_make(ikey.p, ikey.n - KV_IKEY_TRAILER);
	out->seq = trailer >> 8;
	out->type = (enum kv_entry_type)(trailer & 0xff);
	return 0;
}

/* The user-key part of a well-formed internal key. */
static inline struct kv_slice kv_ikey_user(struct kv_slice ikey)
{
	return kv_slice_make(ikey.p, ikey.n - KV_IKEY_TRAILER);
}

static inline uint64_t kv_ikey_trailer(struct kv_slice ikey)
{
	return kv_get_le64(ikey.p + ikey.n - KV_IKEY_TRAILER);
}

/*
 * The internal-key order. Keys shorter than the trailer (only possible in
 * corrupt input) compare bytewise so that the order stays total.
 */
static inline int kv_ikey_cmp(struct kv_slice a, struct kv_slice b)
{
	if (a.n < KV_IKEY_TRAILER || b.n < KV_IKEY_TRAILER)
		return kv_slice_cmp(a, b);
	int r = kv_slice_cmp(kv_ikey_user(a), kv_ikey_user(b));
	if (r)
		return r;
	uint64_t ta = kv_ikey_trailer(a), tb = kv_ikey_trailer(b);
	return ta > tb ? -1 : ta < tb;
}

#endif
