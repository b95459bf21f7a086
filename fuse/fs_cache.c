/*
 * fs_cache.c - the mount's chunk cache (DESIGN §7 "Objects"): a few 4 MiB
 * slots of verified chunks, each fetched once however many readers wait,
 * read-ahead threads that fill them ahead of a sequential reader, and the
 * free list of chunk-sized buffers the data path reuses.
 * Design note: doc/fs.md §4; the data path that uses it: fs_data.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

/*
 * Chunks the cache keeps (4 MiB each): the read-ahead window, the chunk
 * being read and a few behind it, so that the least recently used slot is
 * always one already read.
 */
#define CACHE_SLOTS 10
static uint64_t cache_tick;

/* Free chunk buffers kept for reuse (see fs_cbuf_get). */
#define CBUF_KEEP 8

/*
 * Chunk-sized buffers (write buffers, uploads, flush threads) are reused
 * from a small free list rather than left to malloc: a fresh 4 MiB buffer
 * costs a thousand page faults on zeroed pages, more than the copy into it
 * (doc/fs.md §4 "Memory").
 */
static pthread_mutex_t cbuf_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *cbuf_free[CBUF_KEEP];
static size_t cbuf_nfree;

/* A KV_FS_CHUNK_SIZE buffer (contents undefined), or NULL. Free it with fs_cbuf_put(). */
uint8_t *fs_cbuf_get(void)
{
	uint8_t *b = NULL;
	pthread_mutex_lock(&cbuf_lock);
	if (cbuf_nfree > 0)
		b = cbuf_free[--cbuf_nfree];
	pthread_mutex_unlock(&cbuf_lock);
	return b ? b : malloc(KV_FS_CHUNK_SIZE);
}

/* Gives back a buffer from fs_cbuf_get() (NULL is ignored). */
void fs_cbuf_put(uint8_t *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&cbuf_lock);
	if (cbuf_nfree < CBUF_KEEP) {
		cbuf_free[cbuf_nfree++] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&cbuf_lock);
	free(b);
}

/* ---- the cache ---- */

/* The slot that holds or is loading @hash, or NULL. cache_lock held. */
static struct fs_cache_slot *cache_find(struct fs *fs, const uint8_t *hash)
{
	for (size_t i = 0; i < fs->ncache; i++) {
		struct fs_cache_slot *s = &fs->cache[i];
		if ((s->valid || s->loading) && memcmp(s->hash, hash, KV_FS_HASH_LEN) == 0)
			return s;
	}
	return NULL;
}

/*
 * Takes the least recently used slot that nobody uses for loading @hash,
 * or returns NULL when every slot is in use. cache_lock held.
 */
static struct fs_cache_slot *cache_claim(struct fs *fs, const uint8_t *hash)
{
	struct fs_cache_slot *victim = NULL;
	for (size_t i = 0; i < fs->ncache; i++) {
		struct fs_cache_slot *s = &fs->cache[i];
		if (s->loading || s->refs > 0)
			continue;
		if (!s->valid) {
			victim = s;
			break;
		}
		if (!victim || s->used < victim->used)
			victim = s;
	}
	if (!victim)
		return NULL;
	free(victim->buf);
	victim->buf = NULL;
	victim->len = 0;
	victim->valid = false;
	victim->loading = true;
	memcpy(victim->hash, hash, KV_FS_HASH_LEN);
	return victim;
}

/* Fetches chunk @hash from one replica; the client checks it against its hash. */
static int chunk_fetch(struct fs *fs, const uint8_t *hash, struct kv_buf *out)
{
	uint8_t key[KV_FS_CHUNK_KEY_LEN];
	kv_fs_chunk_key(hash, key);
	struct kv_client_call call = fs_call(fs);
	int rc = KV_ECORRUPT;
	for (int tries = 0; tries < 2 && rc == KV_ECORRUPT; tries++) {
		/*
		 * kv_client_chunk_get() checks the bytes against the hash in
		 * the key (DESIGN §7 "Objects": read from one replica and
		 * checked); hashing them again here would double the cost.
		 */
		rc = kv_client_chunk_get(fs->client, kv_slice_make(key, sizeof key), &call, out);
		if (rc == 0 && out->n > ((size_t)1 << KV_FS_CHUNK_SHIFT_MAX))
			rc = KV_ECORRUPT;
	}
	if (rc < 0) {
		kv_warn("kvfs: chunk read failed: %s (%s)", kv_strerror(rc),
			kv_client_errmsg(fs->client));
		kv_buf_release(out);
		return -EIO;
	}
	return 0;
}

/* Ends the load of @s: fills it from @b (taken) or frees it on error. cache_lock held. */
static void cache_fill(struct fs *fs, struct fs_cache_slot *s, int rc, struct kv_buf *b)
{
	s->loading = false;
	if (rc == 0) {
		s->buf = kv_buf_detach(b, &s->len);
		s->valid = true;
		s->used = ++cache_tick;
	}
	pthread_cond_broadcast(&fs->cache_cond);
}

/*
 * Returns chunk @hash in *out with a reference (fs_chunk_put() drops it): from
 * the cache, by waiting for the thread that loads it, or by fetching it.
 * No lock held. 0 or -EIO.
 */
int fs_chunk_get(struct fs *fs, const uint8_t *hash, struct fs_cache_slot **out)
{
	pthread_mutex_lock(&fs->cache_lock);
	for (;;) {
		struct fs_cache_slot *s = cache_find(fs, hash);
		if (s && s->valid) {
			s->refs++;
			s->used = ++cache_tick;
			*out = s;
			pthread_mutex_unlock(&fs->cache_lock);
			return 0;
		}
		if (!s)
			s = cache_claim(fs, hash);
		else
			s = NULL; /* loading: wait for it */
		if (!s) {
			pthread_cond_wait(&fs->cache_cond, &fs->cache_lock);
			continue;
		}
		pthread_mutex_unlock(&fs->cache_lock);
		struct kv_buf b = KV_BUF_INIT;
		int rc = chunk_fetch(fs, hash, &b);
		pthread_mutex_lock(&fs->cache_lock);
		cache_fill(fs, s, rc, &b);
		if (rc == 0) {
			s->refs++;
			*out = s;
		}
		pthread_mutex_unlock(&fs->cache_lock);
		return rc;
	}
}

/* Drops the reference fs_chunk_get() gave. */
void fs_chunk_put(struct fs *fs, struct fs_cache_slot *s)
{
	pthread_mutex_lock(&fs->cache_lock);
	if (--s->refs == 0)
		pthread_cond_broadcast(&fs->cache_cond);
	pthread_mutex_unlock(&fs->cache_lock);
}

/* Reads [off, off+len) of chunk @hash through the cache (zeros past its end). */
int fs_chunk_read(struct fs *fs, const uint8_t *hash, size_t off, size_t len, uint8_t *dst)
{
	struct fs_cache_slot *s;
	int rc = fs_chunk_get(fs, hash, &s);
	if (rc < 0)
		return rc;
	size_t have = off < s->len ? s->len - off : 0;
	size_t n = have < len ? have : len;
	if (n)
		memcpy(dst, s->buf + off, n);
	if (n < len)
		memset(dst + n, 0, len - n);
	fs_chunk_put(fs, s);
	return 0;
}

static void *prefetch_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->cache_lock);
	while (!fs->prefetch_stop) {
		if (fs->prefetch_len == 0) {
			pthread_cond_wait(&fs->cache_cond, &fs->cache_lock);
			continue;
		}
		uint8_t hash[KV_FS_HASH_LEN];
		memcpy(hash, fs->prefetch_queue[fs->prefetch_head], sizeof hash);
		fs->prefetch_head = (fs->prefetch_head + 1) % FS_PREFETCH_QUEUE;
		fs->prefetch_len--;
		if (cache_find(fs, hash))
			continue;
		struct fs_cache_slot *s = cache_claim(fs, hash);
		if (!s)
			continue; /* every slot in use: no read-ahead now */
		pthread_mutex_unlock(&fs->cache_lock);
		struct kv_buf b = KV_BUF_INIT;
		int rc = chunk_fetch(fs, hash, &b);
		pthread_mutex_lock(&fs->cache_lock);
		cache_fill(fs, s, rc, &b);
	}
	pthread_mutex_unlock(&fs->cache_lock);
	return NULL;
}

/* Queues chunk @hash for the read-ahead threads (started on first use). */
void fs_prefetch(struct fs *fs, const uint8_t *hash)
{
	pthread_mutex_lock(&fs->cache_lock);
	if (cache_find(fs, hash))
		goto out;
	for (size_t i = 0; i < fs->prefetch_len; i++)
		if (memcmp(fs->prefetch_queue[(fs->prefetch_head + i) % FS_PREFETCH_QUEUE], hash,
			   KV_FS_HASH_LEN) == 0)
			goto out;
	while (fs->prefetch_nthreads < FS_PREFETCH_THREADS &&
	       pthread_create(&fs->prefetch_thread[fs->prefetch_nthreads], NULL, prefetch_main,
			      fs) == 0)
		fs->prefetch_nthreads++;
	if (fs->prefetch_len == FS_PREFETCH_QUEUE) {
		/* Full: the oldest wish goes (its reader has probably moved on). */
		fs->prefetch_head = (fs->prefetch_head + 1) % FS_PREFETCH_QUEUE;
		fs->prefetch_len--;
	}
	memcpy(fs->prefetch_queue[(fs->prefetch_head + fs->prefetch_len) % FS_PREFETCH_QUEUE], hash,
	       KV_FS_HASH_LEN);
	fs->prefetch_len++;
	pthread_cond_broadcast(&fs->cache_cond);
out:
	pthread_mutex_unlock(&fs->cache_lock);
}

int fs_cache_init(struct fs *fs)
{
	fs->cache = calloc(CACHE_SLOTS, sizeof *fs->cache);
	if (!fs->cache)
		return -ENOMEM;
	fs->ncache = CACHE_SLOTS;
	pthread_mutex_init(&fs->cache_lock, NULL);
	pthread_cond_init(&fs->cache_cond, NULL);
	pthread_cond_init(&fs->lease_cond, NULL);
	return 0;
}

void fs_cache_destroy(struct fs *fs)
{
	pthread_mutex_lock(&fs->cache_lock);
	fs->prefetch_stop = true;
	pthread_cond_broadcast(&fs->cache_cond);
	pthread_cond_broadcast(&fs->lease_cond);
	pthread_mutex_unlock(&fs->cache_lock);
	for (size_t i = 0; i < fs->prefetch_nthreads; i++)
		pthread_join(fs->prefetch_thread[i], NULL);
	if (fs->lease_started)
		pthread_join(fs->lease_thread, NULL);
	for (size_t i = 0; i < fs->ncache; i++)
		free(fs->cache[i].buf);
	free(fs->cache);
	fs->cache = NULL;
	pthread_mutex_lock(&cbuf_lock);
	while (cbuf_nfree > 0)
		free(cbuf_free[--cbuf_nfree]);
	pthread_mutex_unlock(&cbuf_lock);
	pthread_mutex_destroy(&fs->cache_lock);
	pthread_cond_destroy(&fs->cache_cond);
	pthread_cond_destroy(&fs->lease_cond);
}
