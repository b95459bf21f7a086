/*
 * keys.h - the placement key rule and the node-private storage key.
 *
 * Placement (DESIGN §2): a key that starts with '/' is placed by its parent
 * directory (the bytes before its last '/', "" for entries of the root); any
 * other key is placed by itself. The ring position is xxh3-64 of that
 * placement key.
 *
 * Storage key (private to a node): be64(position) ‖ escape(key) ‖ 00 01, where
 * escape turns each 00 byte into 00 FF. Sorting storage keys bytewise sorts by
 * (position, key), so a token range is one contiguous span and the children of
 * a directory are one contiguous span inside it.
 * Format and rules: doc/placement.md.
 */
#ifndef KV_RING_KEYS_H
#define KV_RING_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

/* A key is a byte string of at most this many bytes (DESIGN §2). */
#define KV_KEY_MAX 4096

/* Bytes of the be64 ring position that starts every storage key. */
#define KV_SKEY_POS_SIZE 8
/* Bytes that end the escaped key: 00 01. */
#define KV_SKEY_TERM_SIZE 2
/* The largest storage key: a key of KV_KEY_MAX zero bytes. */
#define KV_SKEY_MAX (KV_SKEY_POS_SIZE + 2 * KV_KEY_MAX + KV_SKEY_TERM_SIZE)

/*
 * The placement key of @key, as a slice borrowed from @key: for a key that
 * starts with '/', the bytes before its last '/' ("/a" -> "", "/a/b" -> "/a",
 * "/a/b/" -> "/a/b"); for any other key (chunk keys, "") the whole key.
 */
struct kv_slice kv_key_placement(struct kv_slice key);

/* The ring position of @key: kv_hash64() (xxh3-64) of its placement key. */
uint64_t kv_key_position(struct kv_slice key);

/*
 * True when @key is a direct child of directory @dir, that is, @key starts
 * with '/' and its placement key is @dir. The root is "" (or "/", accepted as
 * a synonym). A LIST that scans kv_skey_dir_range() should still pass every
 * key through this check: a 64-bit collision between the positions of @dir
 * and one of its subdirectories would otherwise let grandchildren in.
 */
bool kv_key_is_child(struct kv_slice dir, struct kv_slice key);

/* Bytes kv_skey_encode() writes for @key (any length; no limit is checked). */
size_t kv_skey_size(struct kv_slice key);

/*
 * Appends the storage key of @key to @out: be64(kv_key_position(key)) ‖
 * escape(key) ‖ 00 01. Returns 0, KV_ETOOBIG when @key is longer than
 * KV_KEY_MAX, or -ENOMEM; on failure @out is left as it was.
 */
int kv_skey_encode(struct kv_buf *out, struct kv_slice key);

/*
 * The same into @dst, which has room for @cap bytes (KV_SKEY_MAX is always
 * enough): no allocation. Returns the bytes written, KV_ETOOBIG when @key is
 * longer than KV_KEY_MAX, or KV_EINVAL when @cap is too small.
 */
int kv_skey_encode_to(uint8_t *dst, size_t cap, struct kv_slice key);

/*
 * Appends escape(@key) ‖ 00 01 (no position) to @out: the order-preserving,
 * self-delimiting form of any byte string, for composite keys. Returns 0 or
 * -ENOMEM; on failure @out is left as it was.
 */
int kv_skey_escape(struct kv_buf *out, struct kv_slice key);

/*
 * Decodes the storage key at the start of @skey (a suffix may follow it).
 * Strict: a missing or bad escape or terminator, a key longer than
 * KV_KEY_MAX, or a position that is not the key's own all give KV_ECORRUPT,
 * and then *pos, @key and *key_len are left untouched. On success writes the
 * key to @key (room for KV_KEY_MAX bytes; the caller owns it), its length to
 * *key_len and the position to *pos, and returns the bytes of @skey consumed.
 */
int kv_skey_decode(struct kv_slice skey, uint64_t *pos, uint8_t *key, size_t *key_len);

/*
 * The storage-key range [*lo, *hi) that holds exactly the direct children of
 * directory @dir ("" or "/" for the root; otherwise '/'-prefixed without a
 * trailing '/'): lo = be64(pos(dir)) ‖ escape(dir + "/"), hi = lo with its
 * last byte ('/') raised by one. When @after names a child (after.p != NULL),
 * lo instead starts just past every storage key of that child, so a LIST can
 * resume from a name cursor. @lo and @hi are overwritten. Returns 0,
 * KV_EINVAL for a malformed @dir, KV_ETOOBIG for an over-long @dir or @after,
 * or -ENOMEM; on failure both are left empty.
 */
int kv_skey_dir_range(struct kv_buf *lo, struct kv_buf *hi, struct kv_slice dir,
		      struct kv_slice after);

/*
 * One contiguous span of storage keys: lo <= skey < hi, compared bytewise,
 * where lo and hi are 8-byte bounds; with hi_unbounded there is no upper
 * bound.
 */
struct kv_skey_span {
	uint8_t lo[KV_SKEY_POS_SIZE];
	uint8_t hi[KV_SKEY_POS_SIZE];
	bool hi_unbounded;
};

/*
 * The storage keys whose position lies in the token range (@start, @end] of
 * the 64-bit circle (start exclusive, end inclusive; start == end is the whole
 * circle). A range that wraps past 2^64-1 is two spans. Writes spans[0..n) and
 * returns n (1 or 2), in storage-key order.
 */
int kv_skey_token_spans(uint64_t start, uint64_t end, struct kv_skey_span spans[2]);

/* True when @skey lies inside @span. */
bool kv_skey_span_contains(const struct kv_skey_span *span, struct kv_slice skey);

#endif
