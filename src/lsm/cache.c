/*
 * cache.c - sharded LRU block cache (see cache.h).
 *
 * Each shard keeps a chained hash table over its entries and two circular
 * lists (LevelDB's LRUCache design):
 *   lru     entries in the cache that no handle pins, oldest first: the
 *           eviction candidates;
 *   in_use  entries in the cache pinned by at least one handle.
 * An entry's refs counts its handles plus one while it is in the cache.
 * Evicted or erased entries leave the table and the lists at once; the last
 * kv_cache_release() of a pinned one frees it. Deleters run after the shard
 * lock is dropped.
 */
#include "lsm/cache.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct kv_cache_handle {
	struct kv_cache_handle *next_hash; /* chain in a bucket; or the free list */
	struct kv_cache_handle *prev, *next; /* lru or in_use list */
	void *value;
	kv_cache_deleter_fn deleter;
	uint64_t file, offset;
	uint64_t hash;
	size_t charge;
	uint32_t refs;  /* guarded by the shard mutex */
	bool in_cache;  /* in the table and a list */
};

struct shard {
	_Alignas(64) pthread_mutex_t mu; /* guards every field below */
	size_t capacity;
	size_t usage;   /* charges of entries in the cache */
	size_t pinned;  /* charges of entries on in_use */
	struct kv_cache_handle lru;    /* list heads (dummies) */
	struct kv_cache_handle in_use;
	struct kv_cache_handle **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	uint64_t hits, misses, inserts, evictions;
};

struct kv_cache {
	unsigned shard_bits;
	size_t capacity;
	struct shard *shards;
};

typedef struct kv_cache_handle entry;

static inline uint64_t hash_key(uint64_t file, uint64_t offset)
{
	/* murmur3's fmix64 over a mix of both words */
	uint64_t h = file * UINT64_C(0x9e3779b97f4a7c15) ^ offset;
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64_C(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

static inline struct shard *shard_of(struct kv_cache *c, uint64_t hash)
{
	return &c->shards[c->shard_bits ? hash >> (64 - c->shard_bits) : 0];
}

static void list_remove(entry *e)
{
	e->next->prev = e->prev;
	e->prev->next = e->next;
}

/* Appends @e at the newest end of @list. */
static void list_append(entry *list, entry *e)
{
	e->next = list;
	e->prev = list->prev;
	e->prev->next = e;
	e->next->prev = e;
}

static entry **find_slot(struct shard *s, uint64_t file, uint64_t offset, uint64_t hash)
{
	entry **slot = &s->buckets[hash & (s->nbuckets - 1)];
	while (*slot && ((*slot)->hash != hash || (*slot)->file != file || (*slot)->offset != offset))
		slot = &(*slot)->next_hash;
	return slot;
}

/* Doubles the bucket array; keeps the old one if memory is short. */
static void grow_table(struct shard *s)
{
	size_t n = s->nbuckets * 2;
	entry **b = calloc(n, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		entry *e = s->buckets[i];
		while (e) {
			entry *next = e->next_hash;
			entry **slot = &b[e->hash & (n - 1)];
			e->next_hash = *slot;
			*slot = e;
			e = next;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

/* Takes a reference; requires the shard lock. */
static void ref(struct shard *s, entry *e)
{
	if (e->refs == 1 && e->in_cache) {
		list_remove(e);
		list_append(&s->in_use, e);
		s->pinned += e->charge;
	}
	e->refs++;
}

/*
 * Drops a reference; requires the shard lock. An entry left with no
 * reference goes onto *dead (chained through next_hash) for freeing after
 * the lock is dropped.
 */
static void unref(struct shard *s, entry *e, entry **dead)
{
	assert(e->refs > 0);
	e->refs--;
	if (e->refs == 0) {
		assert(!e->in_cache);
		e->next_hash = *dead;
		*dead = e;
	} else if (e->in_cache && e->refs == 1) {
		list_remove(e);
		list_append(&s->lru, e);
		s->pinned -= e->charge;
	}
}

/* Takes an entry already unlinked from the table out of the cache. */
static void finish_erase(struct shard *s, entry *e, entry **dead)
{
	assert(e->in_cache);
	list_remove(e);
	if (e->refs > 1)
		s->pinned -= e->charge;
	e->in_cache = false;
	s->usage -= e->charge;
	s->count--;
	unref(s, e, dead);
}

static void evict(struct shard *s, entry **dead)
{
	while (s->usage > s->capacity && s->lru.next != &s->lru) {
		entry *old = s->lru.next;
		assert(old->refs == 1);
		entry **slot = find_slot(s, old->file, old->offset, old->hash);
		assert(*slot == old);
		*slot = old->next_hash;
		finish_erase(s, old, dead);
		s->evictions++;
	}
}

static void free_dead(entry *dead)
{
	while (dead) {
		entry *next = dead->next_hash;
		if (dead->deleter)
			dead->deleter(dead->value);
		free(dead);
		dead = next;
	}
}

int kv_cache_new_sharded(size_t capacity, unsigned shard_bits, struct kv_cache **out)
{
	*out = NULL;
	if (shard_bits > KV_CACHE_MAX_SHARD_BITS)
		shard_bits = KV_CACHE_MAX_SHARD_BITS;
	size_t n = (size_t)1 << shard_bits;
	int r = -ENOMEM;
	struct kv_cache *c = calloc(1, sizeof *c);
	if (!c)
		goto out;
	c->shard_bits = shard_bits;
	c->capacity = capacity;
	c->shards = aligned_alloc(64, n * sizeof *c->shards);
	if (!c->shards)
		goto out;
	memset(c->shards, 0, n * sizeof *c->shards);
	size_t per_shard = capacity / n + (capacity % n != 0);
	for (size_t i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		s->nbuckets = 16;
		s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
		if (!s->buckets)
			goto out;
		pthread_mutex_init(&s->mu, NULL);
		s->capacity = per_shard;
		s->lru.next = s->lru.prev = &s->lru;
		s->in_use.next = s->in_use.prev = &s->in_use;
	}
	*out = c;
	return 0;
out:
	if (c && c->shards) {
		for (size_t i = 0; i < n; i++) {
			if (c->shards[i].buckets)
				pthread_mutex_destroy(&c->shards[i].mu);
			free(c->shards[i].buckets);
		}
		free(c->shards);
	}
	free(c);
	return r;
}

int kv_cache_new(size_t capacity, struct kv_cache **out)
{
	return kv_cache_new_sharded(capacity, KV_CACHE_SHARD_BITS, out);
}

void kv_cache_free(struct kv_cache *c)
{
	if (!c)
		return;
	size_t n = (size_t)1 << c->shard_bits;
	for (size_t i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		assert(s->in_use.next == &s->in_use); /* every handle released */
		entry *dead = NULL;
		while (s->lru.next != &s->lru) {
			entry *e = s->lru.next;
			finish_erase(s, e, &dead);
		}
		free_dead(dead);
		free(s->buckets);
		pthread_mutex_destroy(&s->mu);
	}
	free(c->shards);
	free(c);
}

struct kv_cache_handle *kv_cache_lookup(struct kv_cache *c, uint64_t file, uint64_t offset)
{
	uint64_t h = hash_key(file, offset);
	struct shard *s = shard_of(c, h);
	pthread_mutex_lock(&s->mu);
	entry *e = *find_slot(s, file, offset, h);
	if (e) {
		ref(s, e);
		s->hits++;
	} else {
		s->misses++;
	}
	pthread_mutex_unlock(&s->mu);
	return e;
}

int kv_cache_insert(struct kv_cache *c, uint64_t file, uint64_t offset, void *value,
		    size_t charge, kv_cache_deleter_fn deleter, struct kv_cache_handle **out)
{
	if (out)
		*out = NULL;
	entry *e = malloc(sizeof *e);
	if (!e)
		return -ENOMEM;
	uint64_t h = hash_key(file, offset);
	e->value = value;
	e->deleter = deleter;
	e->file = file;
	e->offset = offset;
	e->hash = h;
	e->charge = charge;
	e->refs = out ? 1 : 0;
	e->in_cache = false;
	e->next_hash = NULL;

	struct shard *s = shard_of(c, h);
	entry *dead = NULL;
	pthread_mutex_lock(&s->mu);
	s->inserts++;
	if (s->capacity > 0) {
		e->refs++; /* the cache's own reference */
		e->in_cache = true;
		list_append(e->refs > 1 ? &s->in_use : &s->lru, e);
		if (e->refs > 1)
			s->pinned += charge;
		s->usage += charge;
		s->count++;
		entry **slot = find_slot(s, file, offset, h);
		entry *old = *slot;
		e->next_hash = old ? old->next_hash : NULL;
		*slot = e;
		if (old)
			finish_erase(s, old, &dead);
		else if (s->count > s->nbuckets)
			grow_table(s);
		evict(s, &dead);
	} else if (!out) {
		/* Disabled cache and nobody holds it: free it right away. */
		e->next_hash = dead;
		dead = e;
	}
	pthread_mutex_unlock(&s->mu);
	free_dead(dead);
	if (out)
		*out = e;
	return 0;
}

void *kv_cache_value(const struct kv_cache_handle *h)
{
	return h->value;
}

void kv_cache_release(struct kv_cache *c, struct kv_cache_handle *h)
{
	struct shard *s = shard_of(c, h->hash);
	entry *dead = NULL;
	pthread_mutex_lock(&s->mu);
	unref(s, h, &dead);
	evict(s, &dead); /* an entry unpinned over budget goes now */
	pthread_mutex_unlock(&s->mu);
	free_dead(dead);
}

void kv_cache_erase(struct kv_cache *c, uint64_t file, uint64_t offset)
{
	uint64_t h = hash_key(file, offset);
	struct shard *s = shard_of(c, h);
	entry *dead = NULL;
	pthread_mutex_lock(&s->mu);
	entry **slot = find_slot(s, file, offset, h);
	entry *e = *slot;
	if (e) {
		*slot = e->next_hash;
		finish_erase(s, e, &dead);
	}
	pthread_mutex_unlock(&s->mu);
	free_dead(dead);
}

void kv_cache_erase_file(struct kv_cache *c, uint64_t file)
{
	size_t n = (size_t)1 << c->shard_bits;
	for (size_t i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		entry *dead = NULL;
		pthread_mutex_lock(&s->mu);
		for (size_t b = 0; b < s->nbuckets && s->count; b++) {
			entry **slot = &s->buckets[b];
			while (*slot) {
				entry *e = *slot;
				if (e->file == file) {
					*slot = e->next_hash;
					finish_erase(s, e, &dead);
				} else {
					slot = &e->next_hash;
				}
			}
		}
		pthread_mutex_unlock(&s->mu);
		free_dead(dead);
	}
}

void kv_cache_get_stats(struct kv_cache *c, struct kv_cache_stats *out)
{
	memset(out, 0, sizeof *out);
	out->capacity = c->capacity;
	size_t n = (size_t)1 << c->shard_bits;
	for (size_t i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->mu);
		out->hits += s->hits;
		out->misses += s->misses;
		out->inserts += s->inserts;
		out->evictions += s->evictions;
		out->usage += s->usage;
		out->pinned += s->pinned;
		out->entries += s->count;
		pthread_mutex_unlock(&s->mu);
	}
}
