/*
 * fs_data.c - the mount's data path (DESIGN §7 "Objects", "Writing"):
 * close-to-open on the inode, a sparse staging file per open inode so that
 * memory does not grow with file size, 4 MiB content-addressed chunks
 * fetched lazily and verified, a small chunk cache with read-ahead, inline
 * bodies for small files, and puts retried by request id.
 * Design note: doc/fs.md; stored forms: doc/fs-format.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

/* Chunks the cache keeps (4 MiB each). */
#define CACHE_SLOTS 6
/* Attempts of one chunk upload within a flush. */
#define CHUNK_PUT_TRIES 2
/* Chunk uploads a flush keeps in flight (each holds one chunk buffer). */
#define UPLOAD_THREADS 4

struct fs_cache_slot {
	uint8_t hash[KV_FS_HASH_LEN];
	uint8_t *buf;
	size_t len;
	uint64_t used;
	bool valid;
};

static uint64_t cache_tick;

static void *lease_main(void *arg);

/* ---- chunk cache and read-ahead ---- */

/* Copies [off, off+len) of cached chunk @hash to @dst; false when absent. cache_lock held. */
static bool cache_copy(struct fs *fs, const uint8_t *hash, size_t off, size_t len, uint8_t *dst)
{
	for (size_t i = 0; i < fs->ncache; i++) {
		struct fs_cache_slot *s = &fs->cache[i];
		if (!s->valid || memcmp(s->hash, hash, KV_FS_HASH_LEN) != 0)
			continue;
		size_t have = off < s->len ? s->len - off : 0;
		size_t n = have < len ? have : len;
		if (n)
			memcpy(dst, s->buf + off, n);
		if (n < len)
			memset(dst + n, 0, len - n);
		s->used = ++cache_tick;
		return true;
	}
	return false;
}

static bool cache_has(struct fs *fs, const uint8_t *hash)
{
	for (size_t i = 0; i < fs->ncache; i++)
		if (fs->cache[i].valid && memcmp(fs->cache[i].hash, hash, KV_FS_HASH_LEN) == 0)
			return true;
	return false;
}

/* Takes @buf (malloc'd) into the least recently used slot. cache_lock held. */
static void cache_insert(struct fs *fs, const uint8_t *hash, uint8_t *buf, size_t len)
{
	if (cache_has(fs, hash)) {
		free(buf);
		return;
	}
	struct fs_cache_slot *victim = &fs->cache[0];
	for (size_t i = 0; i < fs->ncache; i++) {
		if (!fs->cache[i].valid) {
			victim = &fs->cache[i];
			break;
		}
		if (fs->cache[i].used < victim->used)
			victim = &fs->cache[i];
	}
	free(victim->buf);
	memcpy(victim->hash, hash, KV_FS_HASH_LEN);
	victim->buf = buf;
	victim->len = len;
	victim->valid = true;
	victim->used = ++cache_tick;
}

/* Fetches chunk @hash from one replica and checks it against its hash. */
static int chunk_fetch(struct fs *fs, const uint8_t *hash, struct kv_buf *out)
{
	uint8_t key[KV_FS_CHUNK_KEY_LEN];
	kv_fs_chunk_key(hash, key);
	struct kv_client_call call = fs_call(fs);
	int rc = KV_ECORRUPT;
	for (int tries = 0; tries < 2 && rc == KV_ECORRUPT; tries++) {
		rc = kv_client_chunk_get(fs->client, kv_slice_make(key, sizeof key), &call, out);
		if (rc == 0)
			rc = kv_fs_chunk_verify(hash, kv_buf_slice(out));
	}
	if (rc < 0) {
		kv_warn("kvfs: chunk read failed: %s (%s)", kv_strerror(rc),
			kv_client_errmsg(fs->client));
		kv_buf_release(out);
		return -EIO;
	}
	return 0;
}

/* Reads [off, off+len) of chunk @hash through the cache. */
static int chunk_read(struct fs *fs, const uint8_t *hash, size_t off, size_t len, uint8_t *dst)
{
	pthread_mutex_lock(&fs->cache_lock);
	bool hit = cache_copy(fs, hash, off, len, dst);
	pthread_mutex_unlock(&fs->cache_lock);
	if (hit)
		return 0;
	struct kv_buf b = KV_BUF_INIT;
	int rc = chunk_fetch(fs, hash, &b);
	if (rc < 0)
		return rc;
	size_t n;
	uint8_t *p = kv_buf_detach(&b, &n);
	pthread_mutex_lock(&fs->cache_lock);
	cache_insert(fs, hash, p, n);
	cache_copy(fs, hash, off, len, dst);
	pthread_mutex_unlock(&fs->cache_lock);
	return 0;
}

static void *prefetch_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->cache_lock);
	while (!fs->prefetch_stop) {
		if (!fs->prefetch_pending) {
			pthread_cond_wait(&fs->cache_cond, &fs->cache_lock);
			continue;
		}
		uint8_t hash[KV_FS_HASH_LEN];
		memcpy(hash, fs->prefetch_hash, sizeof hash);
		fs->prefetch_pending = false;
		if (cache_has(fs, hash))
			continue;
		pthread_mutex_unlock(&fs->cache_lock);
		struct kv_buf b = KV_BUF_INIT;
		int rc = chunk_fetch(fs, hash, &b);
		pthread_mutex_lock(&fs->cache_lock);
		if (rc == 0) {
			size_t n;
			uint8_t *p = kv_buf_detach(&b, &n);
			cache_insert(fs, hash, p, n);
		}
	}
	pthread_mutex_unlock(&fs->cache_lock);
	return NULL;
}

static void prefetch(struct fs *fs, const uint8_t *hash)
{
	pthread_mutex_lock(&fs->cache_lock);
	if (!cache_has(fs, hash)) {
		if (!fs->prefetch_started &&
		    pthread_create(&fs->prefetch_thread, NULL, prefetch_main, fs) == 0)
			fs->prefetch_started = true;
		memcpy(fs->prefetch_hash, hash, KV_FS_HASH_LEN);
		fs->prefetch_pending = true;
		pthread_cond_signal(&fs->cache_cond);
	}
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

int fs_lease_start(struct fs *fs)
{
	if (pthread_create(&fs->lease_thread, NULL, lease_main, fs) != 0)
		return -EAGAIN;
	fs->lease_started = true;
	return 0;
}

void fs_cache_destroy(struct fs *fs)
{
	pthread_mutex_lock(&fs->cache_lock);
	fs->prefetch_stop = true;
	pthread_cond_broadcast(&fs->cache_cond);
	pthread_cond_broadcast(&fs->lease_cond);
	pthread_mutex_unlock(&fs->cache_lock);
	if (fs->prefetch_started)
		pthread_join(fs->prefetch_thread, NULL);
	if (fs->lease_started)
		pthread_join(fs->lease_thread, NULL);
	for (size_t i = 0; i < fs->ncache; i++)
		free(fs->cache[i].buf);
	free(fs->cache);
	fs->cache = NULL;
	pthread_mutex_destroy(&fs->cache_lock);
	pthread_cond_destroy(&fs->cache_cond);
	pthread_cond_destroy(&fs->lease_cond);
}

/* ---- the data state ---- */

void fs_data_free(struct fs_data *d)
{
	if (!d)
		return;
	if (d->staging_fd >= 0)
		close(d->staging_fd);
	kv_ctx_release(&d->ctx);
	kv_ctx_release(&d->pending_ctx);
	kv_ctx_release(&d->pin_ctx);
	kv_buf_release(&d->pending_meta);
	kv_buf_release(&d->pending_body);
	kv_buf_release(&d->meta_raw);
	kv_fs_manifest_release(&d->base);
	free(d->cstate);
	free(d);
}

static int staging_open(struct fs *fs, struct fs_data *d)
{
	if (d->staging_fd >= 0)
		return 0;
	int fd = open(fs->staging_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char path[4200];
		snprintf(path, sizeof path, "%s/stage-XXXXXX", fs->staging_dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0) {
		kv_error("kvfs: staging file in %s: %s", fs->staging_dir, strerror(errno));
		return -EIO;
	}
	d->staging_fd = fd;
	return 0;
}

static int ensure_cstate(struct fs_data *d, size_t n)
{
	if (n <= d->ncstate)
		return 0;
	uint8_t *c = realloc(d->cstate, n);
	if (!c)
		return -ENOMEM;
	memset(c + d->ncstate, FS_CHUNK_BASE, n - d->ncstate);
	d->cstate = c;
	d->ncstate = n;
	return 0;
}

static uint8_t cstate_of(const struct fs_data *d, uint64_t i)
{
	return i < d->ncstate ? d->cstate[i] : FS_CHUNK_BASE;
}

static int pread_full(int fd, uint8_t *p, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -EIO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got < n)
		memset(p + got, 0, n - got);
	return 0;
}

static int pwrite_full(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	size_t put = 0;
	while (put < n) {
		ssize_t r = pwrite(fd, p + put, n - put, (off_t)(off + put));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == ENOSPC ? -ENOSPC : -EIO;
		}
		put += (size_t)r;
	}
	return 0;
}

/* Copies base chunk @i into the staging file (before a partial write). */
static int stage_chunk(struct fs *fs, struct fs_data *d, uint64_t i)
{
	int rc = ensure_cstate(d, (size_t)i + 1);
	if (rc == 0)
		rc = staging_open(fs, d);
	if (rc < 0)
		return rc;
	if (d->cstate[i] != FS_CHUNK_BASE)
		return 0;
	if (i < d->base.n && !kv_fs_hash_is_hole(d->base.chunks[i].hash)) {
		size_t len = d->base.chunks[i].len;
		uint8_t *buf = malloc(len);
		if (!buf)
			return -ENOMEM;
		rc = chunk_read(fs, d->base.chunks[i].hash, 0, len, buf);
		if (rc == 0)
			rc = pwrite_full(d->staging_fd, buf, len, i * KV_FS_CHUNK_SIZE);
		free(buf);
		if (rc < 0)
			return rc;
	}
	d->cstate[i] = FS_CHUNK_CLEAN;
	return 0;
}

/* Reads one span of the current content. */
static int read_span(struct fs *fs, struct fs_data *d, const struct kv_fs_span *s, uint8_t *dst)
{
	uint8_t st = cstate_of(d, s->index);
	if (st != FS_CHUNK_BASE)
		return pread_full(d->staging_fd, dst, s->len, s->file_offset);
	if (s->index >= d->base.n || kv_fs_hash_is_hole(d->base.chunks[s->index].hash) ||
	    s->offset >= d->base.chunks[s->index].len) {
		memset(dst, 0, s->len);
		return 0;
	}
	return chunk_read(fs, d->base.chunks[s->index].hash, s->offset, s->len, dst);
}

static int read_range(struct fs *fs, struct fs_data *d, uint8_t *dst, uint64_t off, uint64_t len)
{
	struct kv_fs_range r;
	struct kv_fs_span s;
	kv_fs_range_init(&r, off, len, d->size, KV_FS_CHUNK_SHIFT);
	while (kv_fs_range_next(&r, &s)) {
		int rc = read_span(fs, d, &s, dst + (s.file_offset - off));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Mirrors the data state's attributes into the inode (getattr). */
static void sync_attrs(struct fs *fs, struct fs_inode *ino)
{
	struct fs_data *d = ino->data;
	pthread_mutex_lock(&fs->lock);
	kv_buf_reset(&ino->meta_raw);
	if (kv_buf_append(&ino->meta_raw, d->meta_raw.p, d->meta_raw.n) == 0 &&
	    kv_fs_meta_decode(kv_buf_slice(&ino->meta_raw), &ino->meta) == 0) {
		ino->meta_err = 0;
		ino->meta.size = d->size;
		ino->meta.mtime_ns = d->meta.mtime_ns;
		ino->meta.ctime_ns = d->meta.ctime_ns;
	}
	pthread_mutex_unlock(&fs->lock);
}

int fs_data_set_meta(struct fs_inode *ino, const struct kv_fs_meta *m)
{
	struct fs_data *d = ino->data;
	struct kv_fs_meta c = *m;
	struct kv_buf raw = KV_BUF_INIT;
	if (c.type == KV_FS_FILE) {
		/* Storage, size and hash are set at flush, from the content. */
		c.storage = KV_FS_STORE_INLINE;
		c.size = 0;
	}
	int rc = kv_fs_meta_encode(&c, &raw);
	if (rc < 0) {
		kv_buf_release(&raw);
		return rc == KV_ETOOBIG ? -ENOSPC : -EINVAL;
	}
	kv_buf_release(&d->meta_raw);
	d->meta_raw = raw;
	kv_fs_meta_decode(kv_buf_slice(&d->meta_raw), &d->meta);
	d->retry = false;
	return 0;
}

/* Picks the version an inode shows from a fresh read, or NULL. */
static const struct kv_version *pick(const struct kv_dvv *set, struct fs_inode *ino, bool has_dot,
				     struct kv_dot dot, uint8_t type, bool sibling)
{
	if (has_dot) {
		const struct kv_version *v = kv_dvv_find(set, dot);
		if (v && !v->tombstone)
			return v;
	}
	if (sibling)
		return NULL; /* a sibling names one version: gone is ESTALE */
	const struct kv_version **shown = calloc(set->n + 1, sizeof *shown);
	if (!shown)
		return NULL;
	size_t n = kv_dvv_display(set, 0, shown);
	const struct kv_version *best = NULL;
	for (size_t i = 0; i < n; i++) {
		struct kv_fs_meta m;
		if (kv_fs_meta_decode(shown[i]->meta, &m) == 0 && m.type == type)
			best = shown[i];
	}
	free(shown);
	(void)ino;
	return best;
}

int fs_data_acquire(struct fs *fs, struct fs_inode *ino, bool trunc)
{
	struct kv_dvv set = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	struct fs_data *d = NULL;
	char *key = NULL;
	int rc;
	if (ino->data) {
		ino->data->users++;
		return 0;
	}
	pthread_mutex_lock(&fs->lock);
	key = strdup(ino->key);
	bool has_dot = ino->has_dot, unlinked = ino->unlinked;
	struct kv_dot dot = ino->dot;
	uint32_t sibling = ino->sibling;
	uint8_t type = ino->meta.type;
	int meta_err = ino->meta_err;
	struct kv_buf cur = KV_BUF_INIT;
	rc = kv_buf_append(&cur, ino->meta_raw.p, ino->meta_raw.n);
	pthread_mutex_unlock(&fs->lock);
	if (!key || rc < 0) {
		rc = -ENOMEM;
		goto out;
	}
	if (meta_err || unlinked) {
		rc = meta_err ? -EIO : -ESTALE;
		goto out;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	d->staging_fd = -1;
	kv_ctx_init(&d->ctx);
	kv_buf_init(&d->meta_raw);
	kv_fs_manifest_init(&d->base, KV_FS_CHUNK_SHIFT);
	struct kv_client_call call = fs_call(fs);
	call.head = trunc || type != KV_FS_FILE;
	if (key[0] != '/') {
		rc = -EPERM; /* the root has no object */
		goto out;
	}
	rc = kv_client_get(fs->client, kv_slice_str(key), &call, &set);
	if (rc < 0) {
		kv_warn("kvfs: open %s: %s", key, kv_client_errmsg(fs->client));
		rc = fs_errno(rc);
		goto out;
	}
	const struct kv_version *ver = pick(&set, ino, has_dot, dot, type, sibling != 0);
	if (!ver && (sibling || has_dot) && type != KV_FS_DIR) {
		/* The version this name showed is gone (DESIGN §7: ESTALE). */
		rc = -ESTALE;
		goto out;
	}
	struct kv_slice raw = ver ? ver->meta : kv_buf_slice(&cur);
	rc = kv_buf_append(&d->meta_raw, raw.p, raw.n);
	if (rc < 0)
		goto out;
	if (kv_fs_meta_decode(kv_buf_slice(&d->meta_raw), &d->meta) < 0) {
		rc = -EIO;
		goto out;
	}
	d->size = d->meta.type == KV_FS_FILE ? d->meta.size : 0;
	if (d->meta.type == KV_FS_FILE && !trunc && ver) {
		struct kv_fs_manifest man;
		kv_fs_manifest_init(&man, KV_FS_CHUNK_SHIFT);
		rc = kv_fs_meta_check_body(&d->meta, ver->body,
					   d->meta.storage == KV_FS_STORE_CHUNKED ? &man : NULL);
		if (rc < 0) {
			kv_warn("kvfs: %s: body does not match its metadata: %s", key,
				kv_strerror(rc));
			kv_fs_manifest_release(&man);
			rc = -EIO;
			goto out;
		}
		if (d->meta.storage == KV_FS_STORE_CHUNKED) {
			kv_fs_manifest_release(&d->base);
			d->base = man;
		} else if (ver->body.n > 0) {
			rc = staging_open(fs, d);
			if (rc == 0)
				rc = ensure_cstate(d, 1);
			if (rc == 0)
				rc = pwrite_full(d->staging_fd, ver->body.p, ver->body.n, 0);
			if (rc < 0)
				goto out;
			d->cstate[0] = FS_CHUNK_CLEAN;
		}
	}
	if (trunc && d->meta.type == KV_FS_FILE) {
		d->size = 0;
		d->dirty = true;
	}
	/*
	 * The context: what this open saw, unless the name is in conflict — then
	 * what the mount showed for it, so that a version it never showed
	 * survives as a sibling (DESIGN §7 "Conflicts as files").
	 */
	const char *nm = strrchr(key, '/') + 1;
	struct kv_fs_listing_entry le = { kv_slice_str(nm), &set, false };
	rc = kv_fs_view_build(&v, &le, 1, NULL);
	if (rc == 0 && v.nnames == 1 && v.names[0].nfiles <= 1)
		rc = kv_fs_view_name_context(&v.names[0], &d->ctx);
	else if (rc == 0)
		rc = fs_name_context(fs, ino, &d->ctx);
	if (rc < 0) {
		rc = fs_errno(rc);
		goto out;
	}
	d->users = 1;
	ino->data = d;
	d = NULL;
	/* An open file leases its chunks, renewed while it stays open (DESIGN §7). */
	fs_data_lease(fs, ino);
	pthread_mutex_lock(&fs->lock);
	if (ver) {
		uint64_t before = ino->attr_version;
		fs_set_meta(ino, ver->meta, &ver->dot);
		if (ino->has_dot && before != ino->attr_version)
			ino->attr_version = before + 1;
	}
	pthread_mutex_unlock(&fs->lock);
	sync_attrs(fs, ino);
	rc = 0;
out:
	fs_data_free(d);
	kv_fs_view_release(&v);
	kv_dvv_release(&set);
	kv_buf_release(&cur);
	free(key);
	return rc;
}

void fs_data_release(struct fs *fs, struct fs_inode *ino)
{
	struct fs_data *d = ino->data;
	if (!d || --d->users > 0)
		return;
	if (d->dirty) {
		/* Pages written back after the last flush (mmap): no one to tell. */
		int rc = fs_data_flush(fs, ino);
		if (rc < 0)
			kv_error("kvfs: %s: lost at release: %s", ino->key, strerror(-rc));
	}
	if (d->pin_key[0] != '\0') {
		/* The last handle of an unlinked file: its chunks may go now. */
		struct kv_client_call call = fs_call(fs);
		int rc = kv_client_delete(fs->client, kv_slice_str(d->pin_key), &d->pin_ctx, &call,
					  NULL, NULL);
		if (rc < 0)
			kv_warn("kvfs: lease %s left behind: %s", d->pin_key,
				kv_client_errmsg(fs->client));
	}
	ino->data = NULL;
	fs_data_free(d);
}

int fs_data_pin(struct fs *fs, struct fs_inode *ino)
{
	struct fs_data *d = ino->data;
	if (!d || d->pin_key[0] != '\0' || d->meta.storage != KV_FS_STORE_CHUNKED ||
	    d->base.n == 0)
		return 0;
	uint8_t id[8];
	randombytes_buf(id, sizeof id);
	char hex[17];
	sodium_bin2hex(hex, sizeof hex, id, sizeof id);
	char key[sizeof d->pin_key];
	snprintf(key, sizeof key, "%s/%s", FS_LEASE_DIR, hex);
	struct kv_buf body = KV_BUF_INIT, raw = KV_BUF_INIT;
	struct kv_fs_meta m;
	memset(&m, 0, sizeof m);
	m.type = KV_FS_FILE;
	m.mode = 0600;
	m.mtime_ns = m.ctime_ns = (int64_t)fs_now_ns();
	int rc = kv_fs_manifest_encode(&d->base, &body);
	if (rc == 0) {
		kv_fs_meta_set_body(&m, KV_FS_STORE_CHUNKED, kv_buf_slice(&body),
				    kv_fs_manifest_size(&d->base));
		rc = kv_fs_meta_encode(&m, &raw);
	}
	struct kv_client_call call = fs_call(fs);
	if (rc == 0)
		rc = kv_client_put(fs->client, kv_slice_str(key), NULL, kv_buf_slice(&raw),
				   kv_buf_slice(&body), &call, NULL, &d->pin_ctx);
	if (rc >= 0)
		memcpy(d->pin_key, key, sizeof key);
	else
		kv_warn("kvfs: lease for unlinked %s: %s", ino->key, kv_client_errmsg(fs->client));
	kv_buf_release(&body);
	kv_buf_release(&raw);
	return rc < 0 ? fs_errno(rc) : 0;
}

int fs_data_truncate(struct fs *fs, struct fs_inode *ino, uint64_t size)
{
	struct fs_data *d = ino->data;
	int rc = 0;
	if (size > KV_FS_FILE_MAX)
		return -EFBIG;
	if (size < d->size) {
		uint64_t k = size >> KV_FS_CHUNK_SHIFT;
		uint64_t r = size & (KV_FS_CHUNK_SIZE - 1);
		if (r != 0) {
			rc = stage_chunk(fs, d, k);
			if (rc < 0)
				return rc;
			d->cstate[k] = FS_CHUNK_DIRTY;
		}
		if (d->staging_fd >= 0 && ftruncate(d->staging_fd, (off_t)size) < 0)
			return -EIO;
		if (d->base.n > k)
			d->base.n = (size_t)k;
		for (uint64_t i = r ? k + 1 : k; i < d->ncstate; i++)
			d->cstate[i] = FS_CHUNK_BASE;
	}
	d->size = size;
	d->dirty = true;
	d->retry = false;
	sync_attrs(fs, ino);
	return 0;
}

ssize_t fs_data_read(struct fs *fs, struct fs_inode *ino, char *buf, size_t len, uint64_t off)
{
	struct fs_data *d = ino->data;
	if (off >= d->size)
		return 0;
	if (len > d->size - off)
		len = (size_t)(d->size - off);
	int rc = read_range(fs, d, (uint8_t *)buf, off, len);
	if (rc < 0)
		return rc;
	/* Sequential reads read the next chunk ahead (DESIGN §7 "Writing"). */
	if (off == d->last_read_end && d->base.n > 0) {
		uint64_t next = ((off + len) >> KV_FS_CHUNK_SHIFT) + 1;
		if (next < d->base.n && cstate_of(d, next) == FS_CHUNK_BASE &&
		    !kv_fs_hash_is_hole(d->base.chunks[next].hash))
			prefetch(fs, d->base.chunks[next].hash);
	}
	d->last_read_end = off + len;
	return (ssize_t)len;
}

ssize_t fs_data_write(struct fs *fs, struct fs_inode *ino, const char *buf, size_t len,
		      uint64_t off)
{
	struct fs_data *d = ino->data;
	if (d->meta.type != KV_FS_FILE)
		return -EISDIR;
	if (off > KV_FS_FILE_MAX || len > KV_FS_FILE_MAX - off)
		return -EFBIG;
	int rc = staging_open(fs, d);
	if (rc < 0)
		return rc;
	struct kv_fs_range r;
	struct kv_fs_span s;
	kv_fs_range_init(&r, off, len, UINT64_MAX, KV_FS_CHUNK_SHIFT);
	while (kv_fs_range_next(&r, &s)) {
		rc = ensure_cstate(d, (size_t)s.index + 1);
		if (rc < 0)
			return rc;
		if (d->cstate[s.index] == FS_CHUNK_BASE && s.index < d->base.n &&
		    !kv_fs_hash_is_hole(d->base.chunks[s.index].hash) &&
		    !(s.offset == 0 && s.len >= d->base.chunks[s.index].len)) {
			rc = stage_chunk(fs, d, s.index);
			if (rc < 0)
				return rc;
		}
		rc = pwrite_full(d->staging_fd, (const uint8_t *)buf + (s.file_offset - off), s.len,
				 s.file_offset);
		if (rc < 0)
			return rc;
		d->cstate[s.index] = FS_CHUNK_DIRTY;
	}
	if (off + len > d->size)
		d->size = off + len;
	d->meta.mtime_ns = d->meta.ctime_ns = (int64_t)fs_now_ns();
	d->dirty = true;
	d->retry = false;
	pthread_mutex_lock(&fs->lock);
	ino->meta.size = d->size;
	ino->meta.mtime_ns = ino->meta.ctime_ns = d->meta.mtime_ns;
	pthread_mutex_unlock(&fs->lock);
	return (ssize_t)len;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Chunks a flush uploads, shared by its upload threads: each takes the next
 * index, reads the chunk from staging, hashes and stores it, and writes its
 * hash into the manifest (a hole stays when the chunk is all zeros).
 */
struct upload {
	struct fs *fs;
	struct fs_data *d;
	struct kv_fs_manifest *man;
	const uint64_t *idx;
	size_t n;
	pthread_mutex_t mu; /* guards next and rc */
	size_t next;
	int rc;
};

static void *upload_main(void *arg)
{
	struct upload *u = arg;
	uint8_t *cbuf = malloc(KV_FS_CHUNK_SIZE);
	struct kv_client_call call = fs_call(u->fs);
	int rc = cbuf ? 0 : -ENOMEM;
	for (;;) {
		pthread_mutex_lock(&u->mu);
		if (rc < 0 && u->rc == 0)
			u->rc = rc;
		bool done = u->next >= u->n || u->rc < 0;
		uint64_t i = done ? 0 : u->idx[u->next++];
		pthread_mutex_unlock(&u->mu);
		if (done)
			break;
		struct kv_fs_chunk_ref *ref = &u->man->chunks[i];
		rc = pread_full(u->d->staging_fd, cbuf, ref->len, i * KV_FS_CHUNK_SIZE);
		if (rc < 0 || all_zero(cbuf, ref->len))
			continue; /* a hole: the placeholder stays */
		uint8_t hash[KV_FS_HASH_LEN], key[KV_FS_CHUNK_KEY_LEN];
		kv_fs_hash(cbuf, ref->len, hash);
		kv_fs_chunk_key(hash, key);
		for (int t = 0; t < CHUNK_PUT_TRIES; t++) {
			rc = kv_client_chunk_put(u->fs->client, kv_slice_make(key, sizeof key),
						 kv_slice_make(cbuf, ref->len), &call);
			if (rc >= 0)
				break;
		}
		if (rc < 0) {
			kv_warn("kvfs: chunk upload failed: %s (%s)", kv_strerror(rc),
				kv_client_errmsg(u->fs->client));
			continue;
		}
		rc = 0;
		memcpy(ref->hash, hash, KV_FS_HASH_LEN);
	}
	free(cbuf);
	return NULL;
}

/* Builds the body of the current content: inline bytes, or a manifest after uploading chunks. */
static int build_body(struct fs *fs, struct fs_data *d, struct kv_buf *body, uint8_t *storage,
		      struct kv_fs_manifest *man)
{
	int rc;
	if (d->meta.type != KV_FS_FILE) {
		*storage = KV_FS_STORE_NONE;
		return 0;
	}
	if (d->size <= KV_FS_INLINE_MAX) {
		*storage = KV_FS_STORE_INLINE;
		rc = kv_buf_reserve(body, (size_t)d->size + 1);
		if (rc < 0)
			return rc;
		rc = read_range(fs, d, body->p, 0, d->size);
		if (rc < 0)
			return rc;
		body->n = (size_t)d->size;
		return 0;
	}
	*storage = KV_FS_STORE_CHUNKED;
	uint64_t count = kv_fs_chunk_count(d->size, KV_FS_CHUNK_SHIFT);
	uint64_t *idx = malloc((size_t)count * sizeof *idx);
	size_t nidx = 0;
	if (!idx)
		return -ENOMEM;
	/* In order: kept hashes, holes, and placeholders (holes) for what is uploaded. */
	rc = 0;
	for (uint64_t i = 0; i < count && rc == 0; i++) {
		uint32_t len = (uint32_t)(i + 1 < count ? KV_FS_CHUNK_SIZE
					  : d->size - i * KV_FS_CHUNK_SIZE);
		uint8_t st = cstate_of(d, i);
		bool in_base = i < d->base.n;
		if (st == FS_CHUNK_BASE && (!in_base || kv_fs_hash_is_hole(d->base.chunks[i].hash))) {
			rc = kv_fs_manifest_append(man, NULL, len); /* a hole */
			continue;
		}
		if (st != FS_CHUNK_DIRTY && in_base && d->base.chunks[i].len == len) {
			rc = kv_fs_manifest_append(man, d->base.chunks[i].hash, len);
			continue;
		}
		if (st == FS_CHUNK_BASE) {
			rc = stage_chunk(fs, d, i); /* its length changed: re-store it */
			if (rc < 0)
				break;
		}
		rc = kv_fs_manifest_append(man, NULL, len);
		idx[nidx++] = i;
	}
	if (rc == 0 && nidx > 0) {
		/* A few uploads in flight: one chunk each, so memory stays bounded. */
		struct upload u = { fs, d, man, idx, nidx, PTHREAD_MUTEX_INITIALIZER, 0, 0 };
		pthread_t th[UPLOAD_THREADS - 1];
		size_t nth = 0;
		for (size_t t = 0; t + 1 < UPLOAD_THREADS && t + 1 < nidx; t++)
			if (pthread_create(&th[nth], NULL, upload_main, &u) == 0)
				nth++;
		upload_main(&u);
		for (size_t t = 0; t < nth; t++)
			pthread_join(th[t], NULL);
		rc = u.rc;
		pthread_mutex_destroy(&u.mu);
	}
	free(idx);
	if (rc < 0)
		return rc;
	return kv_fs_manifest_encode(man, body);
}

/* Records what a failed put sent, to re-send it with the same request id. */
static void remember_failed(struct fs_data *d, struct kv_slice meta, struct kv_slice body)
{
	if (d->pending)
		return;
	kv_buf_reset(&d->pending_meta);
	kv_buf_reset(&d->pending_body);
	if (kv_buf_append(&d->pending_meta, meta.p, meta.n) == 0 &&
	    kv_buf_append(&d->pending_body, body.p, body.n) == 0 &&
	    kv_ctx_copy(&d->pending_ctx, &d->ctx) == 0)
		d->pending = true;
}

/* The state after a successful put: the new context, attributes and dot. */
static void put_done(struct fs *fs, struct fs_inode *ino, struct kv_ctx *ctx_out,
		     struct kv_slice raw, struct kv_dot dot)
{
	struct fs_data *d = ino->data;
	struct kv_ctx old = KV_CTX_INIT;
	kv_ctx_swap(&old, &d->ctx);
	kv_ctx_swap(&d->ctx, ctx_out);
	pthread_mutex_lock(&fs->lock);
	uint64_t before = ino->attr_version;
	fs_set_meta(ino, raw, &dot);
	ino->attr_version = before; /* our own write: the page cache holds it */
	ino->opened_version = before;
	if (d->dirty)
		ino->meta.size = d->size;
	fs_dent_touch(fs, ino, &old, &d->ctx);
	pthread_mutex_unlock(&fs->lock);
	kv_ctx_release(&old);
}

/*
 * Re-sends the put that failed, with its request id and context, so that it
 * is applied once whatever happened to the first attempt (DESIGN §4
 * "Idempotent retries"); its resulting context is the base of what follows.
 */
static int resend_pending(struct fs *fs, struct fs_inode *ino, const char *key)
{
	struct fs_data *d = ino->data;
	struct kv_ctx ctx_out = KV_CTX_INIT;
	struct kv_client_call call = fs_call(fs);
	struct kv_dot dot;
	call.request_id = d->req_id;
	int rc = kv_client_put(fs->client, kv_slice_str(key), &d->pending_ctx,
			       kv_buf_slice(&d->pending_meta), kv_buf_slice(&d->pending_body), &call,
			       &dot, &ctx_out);
	if (rc < 0) {
		kv_warn("kvfs: write %s (retry): %s", key, kv_client_errmsg(fs->client));
		kv_ctx_release(&ctx_out);
		return rc;
	}
	d->pending = false;
	bool unchanged = d->retry;
	if (unchanged)
		d->dirty = false;
	d->retry = false;
	put_done(fs, ino, &ctx_out, kv_buf_slice(&d->pending_meta), dot);
	kv_ctx_release(&ctx_out);
	return 0;
}

int fs_data_flush(struct fs *fs, struct fs_inode *ino)
{
	struct fs_data *d = ino->data;
	struct kv_buf body = KV_BUF_INIT, raw = KV_BUF_INIT;
	struct kv_fs_manifest man;
	struct kv_ctx ctx_out = KV_CTX_INIT;
	char *key = NULL;
	int rc = 0;
	kv_fs_manifest_init(&man, KV_FS_CHUNK_SHIFT);
	if (!d || (!d->dirty && !d->pending))
		goto out;
	pthread_mutex_lock(&fs->lock);
	bool unlinked = ino->unlinked;
	key = strdup(ino->key);
	pthread_mutex_unlock(&fs->lock);
	if (unlinked) {
		/* Unlinking an open file is not undone by its close (DESIGN §7). */
		d->dirty = false;
		d->pending = false;
		goto out;
	}
	if (!key) {
		rc = -ENOMEM;
		goto out;
	}
	if (d->pending) {
		rc = resend_pending(fs, ino, key);
		if (rc < 0)
			goto fail;
		if (!d->dirty)
			goto out;
	}
	uint8_t storage;
	rc = build_body(fs, d, &body, &storage, &man);
	if (rc < 0)
		goto fail;
	struct kv_fs_meta m = d->meta;
	if (m.type == KV_FS_FILE)
		kv_fs_meta_set_body(&m, storage, kv_buf_slice(&body), d->size);
	rc = kv_fs_meta_encode(&m, &raw);
	if (rc < 0)
		goto fail;
	kv_client_request_id(d->req_id);
	struct kv_client_call call = fs_call(fs);
	call.request_id = d->req_id;
	struct kv_dot dot;
	rc = kv_client_put(fs->client, kv_slice_str(key), &d->ctx, kv_buf_slice(&raw),
			   kv_buf_slice(&body), &call, &dot, &ctx_out);
	kv_debug("kvfs: put %s: %zu bytes: %d, dot %u.%u:%llu", key, (size_t)d->size, rc,
		 dot.actor.node, dot.actor.epoch, (unsigned long long)dot.counter);
	if (rc < 0) {
		kv_warn("kvfs: write %s: %s", key, kv_client_errmsg(fs->client));
		/* It may still have reached some replicas: the next flush re-sends it. */
		remember_failed(d, kv_buf_slice(&raw), kv_buf_slice(&body));
		d->retry = true;
		goto fail;
	}
	d->dirty = false;
	d->retry = false;
	if (storage == KV_FS_STORE_CHUNKED) {
		kv_fs_manifest_release(&d->base);
		d->base = man;
		kv_fs_manifest_init(&man, KV_FS_CHUNK_SHIFT);
		for (size_t i = 0; i < d->ncstate; i++)
			if (d->cstate[i] == FS_CHUNK_DIRTY)
				d->cstate[i] = FS_CHUNK_CLEAN;
	} else if (storage == KV_FS_STORE_INLINE) {
		kv_fs_manifest_release(&d->base);
		kv_fs_manifest_init(&d->base, KV_FS_CHUNK_SHIFT);
		if (body.n > 0 && staging_open(fs, d) == 0 && ensure_cstate(d, 1) == 0 &&
		    pwrite_full(d->staging_fd, body.p, body.n, 0) == 0)
			d->cstate[0] = FS_CHUNK_CLEAN;
		for (size_t i = 1; i < d->ncstate; i++)
			d->cstate[i] = FS_CHUNK_BASE;
	}
	put_done(fs, ino, &ctx_out, kv_buf_slice(&raw), dot);
	rc = 0;
	goto out;
fail:
	rc = fs_errno(rc);
	if (rc == 0 || rc == -ENOENT)
		rc = -EIO;
out:
	kv_fs_manifest_release(&man);
	kv_ctx_release(&ctx_out);
	kv_buf_release(&body);
	kv_buf_release(&raw);
	free(key);
	return rc;
}

/* ---- chunk leases ---- */

/* How often the chunks of open files are touched: well within the gc grace (1 h). */
#define LEASE_INTERVAL_S 600

int fs_data_lease(struct fs *fs, struct fs_inode *ino)
{
	struct fs_data *d = ino->data;
	if (!d || d->base.n == 0)
		return 0;
	struct kv_slice *keys = calloc(d->base.n, sizeof *keys);
	uint8_t *kb = malloc(d->base.n * KV_FS_CHUNK_KEY_LEN);
	size_t n = 0;
	int rc = 0;
	if (!keys || !kb) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < d->base.n; i++) {
		if (kv_fs_hash_is_hole(d->base.chunks[i].hash))
			continue;
		uint8_t *k = kb + n * KV_FS_CHUNK_KEY_LEN;
		kv_fs_chunk_key(d->base.chunks[i].hash, k);
		keys[n++] = kv_slice_make(k, KV_FS_CHUNK_KEY_LEN);
	}
	if (n > 0) {
		struct kv_client_call call = fs_call(fs);
		rc = kv_client_chunk_touch(fs->client, keys, n, &call);
		if (rc < 0)
			kv_warn("kvfs: chunk lease of %s: %s", ino->key, kv_client_errmsg(fs->client));
	}
out:
	free(keys);
	free(kb);
	return rc < 0 ? fs_errno(rc) : 0;
}

/*
 * Renews the leases of every open file's chunks (DESIGN §7 "Reclaiming
 * chunks": an open but unlinked file holds leases on its chunks).
 */
static void *lease_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->cache_lock);
	while (!fs->prefetch_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += LEASE_INTERVAL_S;
		pthread_cond_timedwait(&fs->lease_cond, &fs->cache_lock, &ts);
		if (fs->prefetch_stop)
			break;
		pthread_mutex_unlock(&fs->cache_lock);
		for (size_t b = 0; b < fs->nbuckets; b++) {
			struct fs_inode *list[32];
			size_t n = 0;
			pthread_mutex_lock(&fs->lock);
			for (struct fs_inode *i = fs->by_ino[b]; i && n < 32; i = i->hnext)
				if (i->data) {
					i->refs++;
					list[n++] = i;
				}
			pthread_mutex_unlock(&fs->lock);
			for (size_t j = 0; j < n; j++) {
				pthread_mutex_lock(&list[j]->dlock);
				fs_data_lease(fs, list[j]);
				pthread_mutex_unlock(&list[j]->dlock);
				fs_unref(fs, list[j]);
			}
		}
		pthread_mutex_lock(&fs->cache_lock);
	}
	pthread_mutex_unlock(&fs->cache_lock);
	return NULL;
}

/* ---- operations ---- */

void fs_op_open(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n); /* the handle's reference, dropped at release */
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	bool trunc = (fi->flags & O_TRUNC) != 0;
	pthread_mutex_lock(&ino->dlock);
	int rc = fs_data_acquire(fs, ino, trunc && (fi->flags & O_ACCMODE) == O_WRONLY);
	if (rc == 0 && trunc && ino->data->size != 0)
		rc = fs_data_truncate(fs, ino, 0);
	if (rc == 0 && trunc)
		ino->data->dirty = true;
	pthread_mutex_lock(&fs->lock);
	/* Keep the page cache only while the version is the one cached (DESIGN §7). */
	fi->keep_cache = ino->opened_version != 0 && ino->opened_version == ino->attr_version;
	ino->opened_version = ino->attr_version;
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0 && ino->data && ino->data->users == 1 && !ino->data->dirty)
		fs_data_release(fs, ino);
	else if (rc < 0 && ino->data)
		ino->data->users--;
	pthread_mutex_unlock(&ino->dlock);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		fs_unref(fs, ino);
		return;
	}
	fi->fh = 0;
	if (fuse_reply_open(req, fi) != 0) {
		pthread_mutex_lock(&ino->dlock);
		fs_data_release(fs, ino);
		pthread_mutex_unlock(&ino->dlock);
		fs_unref(fs, ino);
	}
}

void fs_op_read(fuse_req_t req, fuse_ino_t n, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n);
	char *buf = malloc(size ? size : 1);
	ssize_t got = -ESTALE;
	if (ino && buf) {
		pthread_mutex_lock(&ino->dlock);
		got = ino->data ? fs_data_read(fs, ino, buf, size, (uint64_t)off) : -EBADF;
		pthread_mutex_unlock(&ino->dlock);
	} else if (!buf) {
		got = -ENOMEM;
	}
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		fuse_reply_buf(req, buf, (size_t)got);
	free(buf);
	if (ino)
		fs_unref(fs, ino);
}

void fs_op_write(fuse_req_t req, fuse_ino_t n, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n);
	ssize_t put = -ESTALE;
	if (ino) {
		pthread_mutex_lock(&ino->dlock);
		if (!ino->data)
			put = -EBADF;
		else
			put = fs_data_write(fs, ino, buf, size,
					    (fi->flags & O_APPEND) ? ino->data->size : (uint64_t)off);
		pthread_mutex_unlock(&ino->dlock);
	}
	if (put < 0)
		fuse_reply_err(req, (int)-put);
	else
		fuse_reply_write(req, (size_t)put);
	if (ino)
		fs_unref(fs, ino);
}

static void flush_reply(fuse_req_t req, fuse_ino_t n)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n);
	int rc = -ESTALE;
	if (ino) {
		pthread_mutex_lock(&ino->dlock);
		rc = ino->data ? fs_data_flush(fs, ino) : 0;
		pthread_mutex_unlock(&ino->dlock);
		fs_unref(fs, ino);
	}
	fuse_reply_err(req, -rc);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	flush_reply(req, n);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t n, int datasync, struct fuse_file_info *fi)
{
	flush_reply(req, n);
}

void fs_op_release(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (ino) {
		pthread_mutex_lock(&ino->dlock);
		fs_data_release(fs, ino);
		pthread_mutex_unlock(&ino->dlock);
		fs_unref(fs, ino); /* fs_get's */
		fs_unref(fs, ino); /* the handle's */
	}
	fuse_reply_err(req, 0);
}
