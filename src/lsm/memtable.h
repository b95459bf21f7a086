/*
 * memtable.h - the engine's in-memory table: internal keys and their values
 * in a skiplist over an arena (DESIGN §6). Internal keys: lsm/ikey.h.
 *
 * Each entry is one arena allocation: the skiplist node, then
 *
 *   internal key (user key ‖ le64(seq << 8 | type)) ‖ varint(value length) ‖ value
 *
 * The format never leaves memory; flushes read entries through
 * kv_memtable_iter().
 *
 * Threads: kv_memtable_add() calls must be serialized by the caller (one
 * writer at a time). kv_memtable_get(), iterators, kv_memtable_bytes() and
 * kv_memtable_count() run on any thread, without locks, concurrently with
 * that writer. The reference count is atomic: ref and unref from any thread.
 * Entries are never removed; the memory goes when the last reference does.
 */
#ifndef KV_LSM_MEMTABLE_H
#define KV_LSM_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "lsm/ikey.h"
#include "lsm/iter.h"
#include "util/slice.h"

struct kv_memtable;

/*
 * An empty memtable with one reference, owned by the caller (drop it with
 * kv_memtable_unref()). NULL when out of memory.
 */
struct kv_memtable *kv_memtable_new(void);

/* Takes one more reference on @mt. */
void kv_memtable_ref(struct kv_memtable *mt);

/*
 * Drops one reference; the last one frees @mt and every entry, so slices
 * borrowed from it (values from get, keys and values of iterators) die with
 * it. Iterators hold their own reference. NULL is ignored.
 */
void kv_memtable_unref(struct kv_memtable *mt);

/*
 * Adds the entry (@ukey, @seq, @type) -> @value, copying the bytes. @type is
 * KV_TYPE_PUT or KV_TYPE_DEL (whose @value is normally empty); @seq is at
 * most KV_SEQ_MAX. Single writer at a time (see above); readers see the
 * entry complete or not at all. Returns 0, -ENOMEM (the memtable is
 * unchanged but for some wasted memory), KV_ETOOBIG when the internal key
 * would exceed 4 GiB, or KV_EINVAL when the same (@ukey, @seq, @type) is
 * already present (a caller bug: sequence numbers are unique; the entry is
 * not added).
 */
int kv_memtable_add(struct kv_memtable *mt, uint64_t seq, enum kv_entry_type type,
		    struct kv_slice ukey, struct kv_slice value);

/*
 * Looks up the newest entry of @ukey whose sequence is <= @snapshot_seq
 * (values above KV_SEQ_MAX mean "everything"). Returns 1 when there is one:
 * *type says KV_TYPE_PUT or KV_TYPE_DEL, and *value borrows the value added
 * with it (normally empty for a delete) from memtable memory, valid while
 * the caller holds a reference. Returns 0 when the memtable has no such entry, leaving *type and
 * *value untouched. @type and @value may be NULL. Lock-free; any thread,
 * concurrently with kv_memtable_add(). Does not allocate.
 */
int kv_memtable_get(struct kv_memtable *mt, struct kv_slice ukey, uint64_t snapshot_seq,
		    enum kv_entry_type *type, struct kv_slice *value);
/*
 * kv_memtable_get() with @hash = kv_hash64(@ukey) (= kv_table_key_hash())
 * computed by the caller (once for every memtable and table a get looks in). A key never added is
 * answered by the memtable's key filter, without a skiplist seek.
 */
int kv_memtable_get_hashed(struct kv_memtable *mt, struct kv_slice ukey, uint64_t hash,
			   uint64_t snapshot_seq, enum kv_entry_type *type,
			   struct kv_slice *value);

/*
 * Approximate memory used by @mt's entries (every arena block, in full), for
 * the flush threshold. Any thread.
 */
size_t kv_memtable_bytes(const struct kv_memtable *mt);

/* Entries added so far. Any thread. */
uint64_t kv_memtable_count(const struct kv_memtable *mt);

/*
 * An iterator over every entry in kv_ikey_cmp order (user key ascending,
 * then newest first): key() is the internal key, value() the value, both
 * borrowed from the memtable; seek() takes an internal key. status() is
 * always 0. It holds a reference on @mt, dropped by kv_iter_destroy(), so
 * it may outlive the caller's own reference. It sees every entry added
 * before it was positioned, and may see later ones. Use from one thread at
 * a time. NULL when out of memory (the only allocation).
 */
struct kv_iter *kv_memtable_iter(struct kv_memtable *mt);

#endif
