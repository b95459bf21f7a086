/*
 * memtable.c - internal keys and values in an arena-backed skiplist (see
 * memtable.h for the contract and the entry layout).
 *
 * The skiplist node's key is the internal key inside the entry, so lookups
 * compare without decoding anything; the value's varint length follows the
 * key. One arena allocation per add, no malloc, one copy of each byte.
 */
#include "lsm/memtable.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/arena.h"
#include "lsm/skiplist.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

/* Fixed, so that a replayed run builds the same skiplist (the simulator). */
#define MEMTABLE_SKIPLIST_SEED UINT64_C(0x6b76667320736b6c)

/*
 * The filter of user keys: one 64-bit word per key, chosen by the top bits
 * of its kv_hash64() (the tables' kv_bloom_hash()), with 4 bits set in it (a blocked Bloom filter: one
 * cache line per lookup). A get of a key the memtable never had — most gets
 * before a put, DESIGN §6 — skips the skiplist seek, which costs a cache miss
 * per level. 2^15 words (256 KiB, zero pages until touched): 16 Ki entries
 * of 1 KiB values give one false positive in about a million, 400 Ki tiny
 * entries about one in twelve.
 */
#define FILTER_WORD_BITS 15
#define FILTER_WORDS (1u << FILTER_WORD_BITS)

struct kv_memtable {
	atomic_uint refs;
	_Atomic uint64_t count;   /* written by the writer, read by anyone */
	struct kv_arena arena;    /* allocations by the writer only */
	struct kv_skiplist list;  /* see skiplist.h for its threading */
	_Atomic uint64_t *filter; /* FILTER_WORDS; set by the writer before the insert */
};

/* The word of @hash and the 4 bits it sets there. */
static inline size_t filter_word(uint64_t hash)
{
	return (size_t)(hash >> (64 - FILTER_WORD_BITS));
}

static inline uint64_t filter_bits(uint64_t hash)
{
	return (UINT64_C(1) << (hash & 63)) | (UINT64_C(1) << ((hash >> 6) & 63)) |
	       (UINT64_C(1) << ((hash >> 12) & 63)) | (UINT64_C(1) << ((hash >> 18) & 63));
}

/* Bytewise order, a proper prefix first (kv_slice_cmp, inlined). */
static inline int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int r = n ? memcmp(a, b, n) : 0;
	if (r)
		return r;
	return an < bn ? -1 : an > bn;
}

/* kv_ikey_cmp, with the bytewise part inlined: the list's comparator. */
static int ikey_cmp(struct kv_slice a, struct kv_slice b)
{
	if (a.n < KV_IKEY_TRAILER || b.n < KV_IKEY_TRAILER)
		return bytes_cmp(a.p, a.n, b.p, b.n);
	int r = bytes_cmp(a.p, a.n - KV_IKEY_TRAILER, b.p, b.n - KV_IKEY_TRAILER);
	if (r)
		return r;
	uint64_t ta = kv_ikey_trailer(a), tb = kv_ikey_trailer(b);
	return ta > tb ? -1 : ta < tb;
}

/* A lookup key that is never built: user key and trailer, for get. */
struct lookup {
	struct kv_slice ukey;
	uint64_t trailer;
};

/* ikey_cmp(key, ikey(lookup)) for a key of the list (always >= 8 bytes). */
static int lookup_cmp(struct kv_slice key, const void *probe)
{
	const struct lookup *lk = probe;
	int r = bytes_cmp(key.p, key.n - KV_IKEY_TRAILER, lk->ukey.p, lk->ukey.n);
	if (r)
		return r;
	uint64_t t = kv_ikey_trailer(key);
	return t > lk->trailer ? -1 : t < lk->trailer;
}

/* The value stored after internal key @ikey of an entry (memory we wrote). */
static inline struct kv_slice entry_value(struct kv_slice ikey)
{
	const uint8_t *p = ikey.p + ikey.n;
	uint64_t n = 0;
	for (unsigned shift = 0;; shift += 7) {
		uint8_t b = *p++;
		n |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	return kv_slice_make(p, (size_t)n);
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

struct kv_memtable *kv_memtable_new(void)
{
	struct kv_memtable *mt = malloc(sizeof *mt);
	if (!mt)
		return NULL;
	kv_arena_init(&mt->arena);
	mt->filter = calloc(FILTER_WORDS, sizeof *mt->filter);
	if (!mt->filter ||
	    kv_skiplist_init(&mt->list, &mt->arena, ikey_cmp, MEMTABLE_SKIPLIST_SEED) < 0) {
		kv_arena_release(&mt->arena);
		free(mt->filter);
		free(mt);
		return NULL;
	}
	atomic_init(&mt->refs, 1);
	atomic_init(&mt->count, 0);
	return mt;
}

void kv_memtable_ref(struct kv_memtable *mt)
{
	unsigned old = atomic_fetch_add_explicit(&mt->refs, 1, memory_order_relaxed);
	assert(old > 0);
	(void)old;
}

void kv_memtable_unref(struct kv_memtable *mt)
{
	if (!mt)
		return;
	/* acq_rel: every use through other references happens before the free. */
	unsigned old = atomic_fetch_sub_explicit(&mt->refs, 1, memory_order_acq_rel);
	assert(old > 0);
	if (old != 1)
		return;
	kv_arena_release(&mt->arena);
	free(mt->filter);
	free(mt);
}

int kv_memtable_add(struct kv_memtable *mt, uint64_t seq, enum kv_entry_type type,
		    struct kv_slice ukey, struct kv_slice value)
{
	assert(seq <= KV_SEQ_MAX);
	assert(type == KV_TYPE_PUT || type == KV_TYPE_DEL);
	if (ukey.n > KV_SKIPLIST_MAX_KEY - KV_IKEY_TRAILER)
		return KV_ETOOBIG;
	size_t ikey_n = ukey.n + KV_IKEY_TRAILER;
	size_t vhead = varint_len(value.n);
	if (value.n > SIZE_MAX - ikey_n - vhead)
		return -ENOMEM;

	struct kv_skiplist_node *node;
	uint8_t *p = kv_skiplist_alloc_node(&mt->list, ikey_n + vhead + value.n, &node);
	if (!p)
		return -ENOMEM;
	if (ukey.n)
		memcpy(p, ukey.p, ukey.n);
	kv_put_le64(p + ukey.n, kv_ikey_pack(seq, type));
	uint8_t *v = put_varint(p + ikey_n, value.n);
	if (value.n)
		memcpy(v, value.p, value.n);

	/*
	 * The filter first: a reader that can see the entry (the skiplist's
	 * release store, or the engine's last_seq published after this add)
	 * sees these bits too.
	 */
	uint64_t h = kv_hash64(ukey.p, ukey.n); /* = kv_bloom_hash() */
	atomic_fetch_or_explicit(&mt->filter[filter_word(h)], filter_bits(h),
				 memory_order_relaxed);
	if (!kv_skiplist_insert(&mt->list, node, kv_slice_make(p, ikey_n)))
		return KV_EINVAL;
	uint64_t count = atomic_load_explicit(&mt->count, memory_order_relaxed);
	atomic_store_explicit(&mt->count, count + 1, memory_order_relaxed);
	return 0;
}

int kv_memtable_get(struct kv_memtable *mt, struct kv_slice ukey, uint64_t snapshot_seq,
		    enum kv_entry_type *type, struct kv_slice *value)
{
	return kv_memtable_get_hashed(mt, ukey, kv_hash64(ukey.p, ukey.n), snapshot_seq, type,
				      value);
}

int kv_memtable_get_hashed(struct kv_memtable *mt, struct kv_slice ukey, uint64_t hash,
			   uint64_t snapshot_seq, enum kv_entry_type *type, struct kv_slice *value)
{
	uint64_t bits = filter_bits(hash);
	if ((atomic_load_explicit(&mt->filter[filter_word(hash)], memory_order_relaxed) & bits) !=
	    bits)
		return 0; /* never added */
	if (snapshot_seq > KV_SEQ_MAX)
		snapshot_seq = KV_SEQ_MAX;
	/* The first entry at or after ikey(ukey, snapshot, SEEK) (ikey.h). */
	struct lookup lk = { ukey, kv_ikey_pack(snapshot_seq, KV_TYPE_SEEK) };
	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, &mt->list);
	kv_skiplist_iter_seek_probe(&it, lookup_cmp, &lk);
	if (!kv_skiplist_iter_valid(&it))
		return 0;

	struct kv_slice ikey = kv_skiplist_iter_key(&it);
	if (ikey.n - KV_IKEY_TRAILER != ukey.n ||
	    (ukey.n && memcmp(ikey.p, ukey.p, ukey.n) != 0))
		return 0;
	enum kv_entry_type t = (enum kv_entry_type)(kv_ikey_trailer(ikey) & 0xff);
	if (type)
		*type = t;
	if (value)
		*value = entry_value(ikey);
	return 1;
}

size_t kv_memtable_bytes(const struct kv_memtable *mt)
{
	return kv_arena_memory_usage(&mt->arena);
}

uint64_t kv_memtable_count(const struct kv_memtable *mt)
{
	return atomic_load_explicit(&mt->count, memory_order_relaxed);
}

/* ---- Iterator ------------------------------------------------------------ */

struct memtable_iter {
	struct kv_iter base;
	struct kv_memtable *mt;     /* one reference, dropped by destroy */
	struct kv_skiplist_iter pos;
};

static struct kv_skiplist_iter *pos_of(struct kv_iter *it)
{
	return &((struct memtable_iter *)it)->pos;
}

static bool mi_valid(struct kv_iter *it)
{
	return kv_skiplist_iter_valid(pos_of(it));
}

static void mi_seek_first(struct kv_iter *it)
{
	kv_skiplist_iter_seek_first(pos_of(it));
}

static void mi_seek(struct kv_iter *it, struct kv_slice target)
{
	kv_skiplist_iter_seek(pos_of(it), target);
}

static void mi_next(struct kv_iter *it)
{
	kv_skiplist_iter_next(pos_of(it));
}

static struct kv_slice mi_key(struct kv_iter *it)
{
	return kv_skiplist_iter_key(pos_of(it));
}

static struct kv_slice mi_value(struct kv_iter *it)
{
	return entry_value(kv_skiplist_iter_key(pos_of(it)));
}

static int mi_status(struct kv_iter *it)
{
	(void)it;
	return 0;
}

static void mi_destroy(struct kv_iter *it)
{
	struct memtable_iter *mi = (struct memtable_iter *)it;
	kv_memtable_unref(mi->mt);
	free(mi);
}

static const struct kv_iter_ops memtable_iter_ops = {
	.valid = mi_valid,
	.seek_first = mi_seek_first,
	.seek = mi_seek,
	.next = mi_next,
	.key = mi_key,
	.value = mi_value,
	.status = mi_status,
	.destroy = mi_destroy,
};

struct kv_iter *kv_memtable_iter(struct kv_memtable *mt)
{
	struct memtable_iter *mi = malloc(sizeof *mi);
	if (!mi)
		return NULL;
	mi->base.ops = &memtable_iter_ops;
	kv_memtable_ref(mt);
	mi->mt = mt;
	kv_skiplist_iter_init(&mi->pos, &mt->list);
	return &mi->base;
}
