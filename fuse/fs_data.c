/*
 * fs_data.c - the mount's data path (DESIGN §7 "Objects", "Writing"):
 * close-to-open on the inode, a sparse staging file per open inode so that
 * memory does not grow with file size (a sequential writer's chunks go
 * through a reused buffer instead, never staging), 4 MiB content-addressed
 * chunks fetched lazily and verified, a small chunk cache with read-ahead,
 * inline bodies for small files, and puts retried by request id.
 * Design note: doc/fs.md; stored forms: doc/fs-format.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuse/fs_int.h"
#include "proto/chunkhash.h"
#include "util/error.h"
#include "util/log.h"

/* Chunks read ahead of a sequential reader (at most FS_PREFETCH_QUEUE). */
#define READAHEAD_CHUNKS 4
/* Attempts of one chunk upload within a flush. */
#define CHUNK_PUT_TRIES 2
/* Chunk uploads a flush keeps in flight (each holds one chunk buffer). */
#define UPLOAD_THREADS 4

/*
 * Background uploads of all writing inodes together: each holds a chunk
 * buffer (and the client's frame of it), so this bounds their memory.
 */
#define UPLOADS_MAX 8
/*
 * A chunk stored in the background relies on its age, refreshed by the
 * put-if-absent, until a manifest names it (DESIGN §7 "Reclaiming chunks":
 * gc spares chunks younger than its grace, an hour by default). A flush
 * re-stores SENT chunks older than this instead of trusting them.
 */
#define SENT_MAX_AGE_NS (600ull * 1000000000ull)

/*
 * Inodes whose sequential writer's chunk is kept in memory (FS_CHUNK_MEM):
 * each holds one chunk buffer; beyond this, writes go to staging files.
 */
#define WBUFS_MAX 4

static atomic_int uploads_running;
static atomic_int wbufs_active;

/*
 * One background upload: hashes and stores chunk @index (@len bytes), read
 * from @buf when it has one (a chunk kept in memory, FS_CHUNK_MSENDING:
 * the job owns the buffer, which stays unchanged, so that the owner may
 * read it under dlock while the thread runs) or else from the staging file
 * @fd. Written by its thread until @done; read by the owner (under the
 * inode's dlock) after pthread_join.
 */
struct fs_upload_job {
	pthread_t th;
	struct fs *fs;
	int fd;
	uint8_t *buf;                 /* NULL: read from @fd */
	uint64_t index;
	uint32_t len;
	uint64_t start_ns;            /* fs_mono_ns() when it started */
	uint8_t hash[KV_FS_HASH_LEN]; /* all zeros: the chunk is all zeros, a hole */
	int rc;
	atomic_bool done;
};

static void jobs_reap(struct fs_data *d, bool wait, bool apply);

/* Gives up the inode's write buffer, if any (its chunk has left FS_CHUNK_MEM). */
static void wbuf_drop(struct fs_data *d)
{
	if (d->wbuf) {
		fs_cbuf_put(d->wbuf);
		d->wbuf = NULL;
		atomic_fetch_sub(&wbufs_active, 1);
	}
	d->wbuf_len = 0;
}

/* ---- the data state ---- */

void fs_data_free(struct fs_data *d)
{
	if (!d)
		return;
	jobs_reap(d, true, false); /* their threads read the staging file */
	wbuf_drop(d);
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
	free(d->sent);
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
	d->cstate = c;
	uint8_t(*h)[KV_FS_HASH_LEN] = realloc(d->sent, n * sizeof *h);
	if (!h)
		return -ENOMEM; /* cstate grew; ncstate did not: harmless */
	d->sent = h;
	memset(c + d->ncstate, FS_CHUNK_BASE, n - d->ncstate);
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

/* The running upload of chunk @i from its own buffer (FS_CHUNK_MSENDING), or NULL. */
static struct fs_upload_job *job_of(struct fs_data *d, uint64_t i)
{
	for (size_t k = d->njobs; k-- > 0;)
		if (d->jobs[k]->index == i && d->jobs[k]->buf)
			return d->jobs[k];
	return NULL;
}

/*
 * Writes the chunk kept in memory to the staging file (DIRTY there) and
 * gives up the write buffer. On failure the chunk stays MEM. dlock held.
 */
static int wbuf_spill(struct fs *fs, struct fs_data *d)
{
	if (!d->wbuf)
		return 0;
	int rc = staging_open(fs, d);
	if (rc == 0 && d->wbuf_len > 0)
		rc = pwrite_full(d->staging_fd, d->wbuf, d->wbuf_len,
				 d->wbuf_index * KV_FS_CHUNK_SIZE);
	if (rc < 0)
		return rc;
	d->cstate[d->wbuf_index] = FS_CHUNK_DIRTY;
	wbuf_drop(d);
	return 0;
}

/*
 * Makes the staging file hold chunk @i's current bytes (before a partial
 * write or a truncate into it): a BASE chunk is fetched (CLEAN), a chunk
 * kept in memory is written out (MEM: DIRTY, MSENDING: SENDING, its upload
 * goes on), a STORED one fetched back from the cluster (SENT). Chunks
 * already staged are left alone. 0 or -errno; dlock held.
 */
static int stage_chunk(struct fs *fs, struct fs_data *d, uint64_t i)
{
	int rc = ensure_cstate(d, (size_t)i + 1);
	if (rc == 0)
		rc = staging_open(fs, d);
	if (rc < 0)
		return rc;
	switch (d->cstate[i]) {
	case FS_CHUNK_MEM:
		return wbuf_spill(fs, d);
	case FS_CHUNK_MSENDING: {
		struct fs_upload_job *j = job_of(d, i);
		rc = j ? pwrite_full(d->staging_fd, j->buf, j->len, i * KV_FS_CHUNK_SIZE) : -EIO;
		if (rc == 0)
			d->cstate[i] = FS_CHUNK_SENDING;
		return rc;
	}
	case FS_CHUNK_STORED: {
		uint8_t *buf = fs_cbuf_get();
		if (!buf)
			return -ENOMEM;
		if (kv_fs_hash_is_hole(d->sent[i]))
			memset(buf, 0, KV_FS_CHUNK_SIZE); /* it was all zeros */
		else
			rc = fs_chunk_read(fs, d->sent[i], 0, KV_FS_CHUNK_SIZE, buf);
		if (rc == 0)
			rc = pwrite_full(d->staging_fd, buf, KV_FS_CHUNK_SIZE, i * KV_FS_CHUNK_SIZE);
		fs_cbuf_put(buf);
		if (rc == 0)
			d->cstate[i] = FS_CHUNK_SENT;
		return rc;
	}
	case FS_CHUNK_BASE:
		break;
	default:
		return 0;
	}
	if (i < d->base.n && !kv_fs_hash_is_hole(d->base.chunks[i].hash)) {
		size_t len = d->base.chunks[i].len;
		uint8_t *buf = malloc(len);
		if (!buf)
			return -ENOMEM;
		rc = fs_chunk_read(fs, d->base.chunks[i].hash, 0, len, buf);
		if (rc == 0)
			rc = pwrite_full(d->staging_fd, buf, len, i * KV_FS_CHUNK_SIZE);
		free(buf);
		if (rc < 0)
			return rc;
	}
	d->cstate[i] = FS_CHUNK_CLEAN;
	return 0;
}

/* Copies [off, off + len) of a chunk whose bytes are @have bytes at @p then zeros. */
static void copy_chunk(uint8_t *dst, const uint8_t *p, size_t have, size_t off, size_t len)
{
	size_t n = off < have ? have - off : 0;
	if (n > len)
		n = len;
	if (n)
		memcpy(dst, p + off, n);
	if (n < len)
		memset(dst + n, 0, len - n);
}

/* Reads one span of the current content. */
static int read_span(struct fs *fs, struct fs_data *d, const struct kv_fs_span *s, uint8_t *dst)
{
	uint8_t st = cstate_of(d, s->index);
	if (st == FS_CHUNK_MEM) {
		copy_chunk(dst, d->wbuf, d->wbuf_len, s->offset, s->len);
		return 0;
	}
	if (st == FS_CHUNK_MSENDING) {
		struct fs_upload_job *j = job_of(d, s->index);
		if (!j)
			return -EIO;
		copy_chunk(dst, j->buf, j->len, s->offset, s->len);
		return 0;
	}
	if (st == FS_CHUNK_STORED && kv_fs_hash_is_hole(d->sent[s->index])) {
		memset(dst, 0, s->len); /* it was all zeros */
		return 0;
	}
	if (st == FS_CHUNK_STORED)
		return fs_chunk_read(fs, d->sent[s->index], s->offset, s->len, dst);
	if (st != FS_CHUNK_BASE)
		return pread_full(d->staging_fd, dst, s->len, s->file_offset);
	if (s->index >= d->base.n || kv_fs_hash_is_hole(d->base.chunks[s->index].hash) ||
	    s->offset >= d->base.chunks[s->index].len) {
		memset(dst, 0, s->len);
		return 0;
	}
	return fs_chunk_read(fs, d->base.chunks[s->index].hash, s->offset, s->len, dst);
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

int fs_data_truncate(struct fs *fs, struct fs_inode *ino, uint64_t size)
{
	struct fs_data *d = ino->data;
	int rc = 0;
	if (size > KV_FS_FILE_MAX)
		return -EFBIG;
	if (size < d->size) {
		uint64_t k = size >> KV_FS_CHUNK_SHIFT;
		uint64_t r = size & (KV_FS_CHUNK_SIZE - 1);
		if (r != 0 && cstate_of(d, k) == FS_CHUNK_MEM) {
			/* Kept in memory: its bytes past the new end read as zeros. */
			if (d->wbuf_len > r)
				d->wbuf_len = (uint32_t)r;
		} else if (r != 0) {
			rc = stage_chunk(fs, d, k);
			if (rc < 0)
				return rc;
			d->cstate[k] = FS_CHUNK_DIRTY;
		}
		if (d->staging_fd >= 0 && ftruncate(d->staging_fd, (off_t)size) < 0)
			return -EIO;
		if (d->base.n > k)
			d->base.n = (size_t)k;
		for (uint64_t i = r ? k + 1 : k; i < d->ncstate; i++) {
			if (d->cstate[i] == FS_CHUNK_MEM)
				wbuf_drop(d);
			d->cstate[i] = FS_CHUNK_BASE;
		}
	}
	d->size = size;
	d->dirty = true;
	d->retry = false;
	sync_attrs(fs, ino);
	return 0;
}

/*
 * Sequential reads read the next READAHEAD_CHUNKS chunks ahead (DESIGN §7
 * "Writing"): a read that continues where the previous one ended queues
 * them for the read-ahead threads. The kernel's read-ahead requests are
 * served by several threads and may arrive slightly out of order, so
 * "continues" allows READ_SLACK either way. dlock held.
 */
#define READ_SLACK ((uint64_t)1 << 20)
static void read_ahead(struct fs *fs, struct fs_data *d, uint64_t off, uint64_t len)
{
	bool seq = off + READ_SLACK >= d->last_read_end && off <= d->last_read_end + READ_SLACK;
	if (seq && d->base.n > 0) {
		uint64_t cur = (off + len - (len > 0)) >> KV_FS_CHUNK_SHIFT;
		for (uint64_t next = cur + 1; next <= cur + READAHEAD_CHUNKS && next < d->base.n;
		     next++)
			if (cstate_of(d, next) == FS_CHUNK_BASE &&
			    !kv_fs_hash_is_hole(d->base.chunks[next].hash))
				fs_prefetch(fs, d->base.chunks[next].hash);
	}
	d->last_read_end = off + len;
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
	read_ahead(fs, d, off, len);
	return (ssize_t)len;
}

static bool all_zero(const uint8_t *p, size_t n);

/*
 * Hashes and stores the @len bytes at @p as a chunk (put-if-absent, up to
 * CHUNK_PUT_TRIES attempts), writing its hash to @hash; an all-zero chunk
 * is a hole, not stored (@hash all zeros). 0 or the client's error.
 */
static int store_chunk(struct fs *fs, const uint8_t *p, uint32_t len,
		       uint8_t hash[KV_FS_HASH_LEN])
{
	if (all_zero(p, len)) {
		memset(hash, 0, KV_FS_HASH_LEN);
		return 0;
	}
	uint8_t key[KV_FS_CHUNK_KEY_LEN];
	struct kv_client_call call = fs_call(fs);
	/* A chunk is named by its SHA-256 (proto/chunkhash.h, doc/fs-format.md §4). */
	int rc = kv_chunk_hash(p, len, hash);
	if (rc < 0)
		return rc;
	kv_fs_chunk_key(hash, key);
	for (int t = 0; t < CHUNK_PUT_TRIES; t++) {
		rc = kv_client_chunk_put(fs->client, kv_slice_make(key, sizeof key),
					 kv_slice_make(p, len), &call);
		if (rc >= 0)
			return 0;
	}
	kv_warn("kvfs: chunk upload failed: %s (%s)", kv_strerror(rc),
		kv_client_errmsg(fs->client));
	return rc;
}

static void *job_main(void *arg)
{
	struct fs_upload_job *j = arg;
	if (j->buf) {
		j->rc = store_chunk(j->fs, j->buf, j->len, j->hash);
	} else {
		uint8_t *buf = fs_cbuf_get();
		j->rc = buf ? pread_full(j->fd, buf, j->len, j->index * KV_FS_CHUNK_SIZE) : -ENOMEM;
		if (j->rc == 0)
			j->rc = store_chunk(j->fs, buf, j->len, j->hash);
		fs_cbuf_put(buf);
	}
	atomic_store(&j->done, true);
	return NULL;
}

/*
 * Joins job @k of @d (the oldest is 0) and, with @apply, takes its result:
 * a chunk still SENDING becomes SENT, one still MSENDING becomes STORED;
 * when the upload failed, the chunk becomes DIRTY for the flush to retry
 * (an MSENDING chunk is written to staging first; if that fails, its
 * buffer becomes the write buffer (MEM) when that is free, else the chunk
 * is lost and d->werr fails every flush). A chunk written since keeps
 * its state. dlock held.
 */
static void job_reap(struct fs_data *d, size_t k, bool apply)
{
	struct fs_upload_job *j = d->jobs[k];
	pthread_join(j->th, NULL);
	atomic_fetch_sub(&uploads_running, 1);
	uint8_t st = j->index < d->ncstate ? d->cstate[j->index] : FS_CHUNK_BASE;
	bool ours = st == FS_CHUNK_SENDING || (st == FS_CHUNK_MSENDING && j->buf);
	kv_debug("kvfs: background upload of chunk %llu: %d, %s", (unsigned long long)j->index,
		 j->rc, !apply ? "dropped" : ours ? "kept" : "written since");
	if (apply && ours && j->rc == 0) {
		memcpy(d->sent[j->index], j->hash, KV_FS_HASH_LEN);
		d->cstate[j->index] = st == FS_CHUNK_SENDING ? FS_CHUNK_SENT : FS_CHUNK_STORED;
		if (d->sent_since_ns == 0 || j->start_ns < d->sent_since_ns)
			d->sent_since_ns = j->start_ns;
	} else if (apply && ours && st == FS_CHUNK_SENDING) {
		d->cstate[j->index] = FS_CHUNK_DIRTY;
	} else if (apply && ours) {
		int rc = staging_open(j->fs, d);
		if (rc == 0)
			rc = pwrite_full(d->staging_fd, j->buf, j->len, j->index * KV_FS_CHUNK_SIZE);
		if (rc == 0) {
			d->cstate[j->index] = FS_CHUNK_DIRTY;
		} else if (!d->wbuf) {
			/* Staging failed too: the buffer becomes the inode's write buffer. */
			atomic_fetch_add(&wbufs_active, 1);
			d->wbuf = j->buf;
			j->buf = NULL;
			d->wbuf_index = j->index;
			d->wbuf_len = j->len;
			d->cstate[j->index] = FS_CHUNK_MEM;
		} else {
			kv_error("kvfs: chunk %llu lost: %s", (unsigned long long)j->index,
				 strerror(-rc));
			d->werr = rc;
			d->cstate[j->index] = FS_CHUNK_DIRTY;
		}
	}
	fs_cbuf_put(j->buf);
	free(j);
	memmove(&d->jobs[k], &d->jobs[k + 1], (d->njobs - k - 1) * sizeof d->jobs[0]);
	d->njobs--;
}

/* Reaps the finished background uploads, or all of them with @wait. dlock held. */
static void jobs_reap(struct fs_data *d, bool wait, bool apply)
{
	for (size_t k = 0; k < d->njobs;) {
		if (wait || atomic_load(&d->jobs[k]->done))
			job_reap(d, k, apply);
		else
			k++;
	}
}

/*
 * A sequential writer has filled chunk @i (DIRTY or MEM, full length):
 * uploads it in the background while the kernel fills the next ones (a MEM
 * chunk's buffer goes to the upload: MSENDING). With
 * FS_UPLOAD_AHEAD uploads of this inode in flight, waits for the oldest
 * (the writer goes no faster than the cluster takes chunks, and memory
 * stays bounded); with UPLOADS_MAX in the whole mount, leaves the chunk to
 * the flush. dlock held.
 */
static void upload_start(struct fs *fs, struct fs_data *d, uint64_t i)
{
	jobs_reap(d, false, true);
	for (size_t k = 0; k < d->njobs; k++)
		if (d->jobs[k]->index == i) {
			job_reap(d, k, true); /* an older upload of this chunk: finish it first */
			break;
		}
	if (d->njobs == FS_UPLOAD_AHEAD)
		job_reap(d, 0, true);
	bool mem = d->cstate[i] == FS_CHUNK_MEM;
	if (d->cstate[i] != FS_CHUNK_DIRTY && !mem)
		return;
	if (atomic_fetch_add(&uploads_running, 1) >= UPLOADS_MAX) {
		/* Left to the flush; if even staging fails, the flush takes it from memory. */
		atomic_fetch_sub(&uploads_running, 1);
		if (mem)
			wbuf_spill(fs, d);
		return;
	}
	struct fs_upload_job *j = calloc(1, sizeof *j);
	if (j) {
		j->fs = fs;
		j->fd = d->staging_fd;
		j->buf = mem ? d->wbuf : NULL;
		j->index = i;
		j->len = KV_FS_CHUNK_SIZE;
		j->start_ns = fs_mono_ns();
		atomic_init(&j->done, false);
		if (pthread_create(&j->th, NULL, job_main, j) == 0) {
			if (mem) {
				/* The job owns the buffer now; the next chunk takes another. */
				d->wbuf = NULL;
				d->wbuf_len = 0;
				atomic_fetch_sub(&wbufs_active, 1);
			}
			d->cstate[i] = mem ? FS_CHUNK_MSENDING : FS_CHUNK_SENDING;
			d->jobs[d->njobs++] = j;
			return;
		}
		free(j);
	}
	atomic_fetch_sub(&uploads_running, 1);
	if (mem)
		wbuf_spill(fs, d);
}

/*
 * Whether a write of span @s may keep chunk @s->index in memory: the
 * chunk's current bytes are all zeros (nothing staged, and the base has
 * none or a hole there) or the write replaces all the base has, and the
 * write starts the chunk or appends to the file (a sequential writer).
 */
static bool mem_fits(const struct fs_data *d, const struct kv_fs_span *s)
{
	uint64_t i = s->index;
	if (cstate_of(d, i) != FS_CHUNK_BASE)
		return false;
	if (s->offset != 0 && s->file_offset < d->size)
		return false;
	return i >= d->base.n || kv_fs_hash_is_hole(d->base.chunks[i].hash) ||
	       (s->offset == 0 && s->len >= d->base.chunks[i].len);
}

/*
 * Starts keeping chunk @i (mem_fits) in memory: takes a write buffer
 * (spilling another chunk's to staging first). Returns 1 when the chunk is
 * MEM (empty), 0 when no buffer is free (the write goes to staging), or
 * -errno. dlock held.
 */
static int mem_begin(struct fs *fs, struct fs_data *d, uint64_t i)
{
	if (d->wbuf) {
		int rc = wbuf_spill(fs, d);
		if (rc < 0)
			return rc;
	}
	if (atomic_fetch_add(&wbufs_active, 1) >= WBUFS_MAX) {
		atomic_fetch_sub(&wbufs_active, 1);
		return 0;
	}
	d->wbuf = fs_cbuf_get();
	if (!d->wbuf) {
		atomic_fetch_sub(&wbufs_active, 1);
		return 0;
	}
	d->wbuf_index = i;
	d->wbuf_len = 0;
	d->cstate[i] = FS_CHUNK_MEM;
	return 1;
}

/* Writes span @s of @src into the chunk kept in memory (zeros fill a gap). */
static void mem_write(struct fs_data *d, const struct kv_fs_span *s, const uint8_t *src)
{
	if (s->offset > d->wbuf_len)
		memset(d->wbuf + d->wbuf_len, 0, s->offset - d->wbuf_len);
	memcpy(d->wbuf + s->offset, src, s->len);
	if (s->offset + s->len > d->wbuf_len)
		d->wbuf_len = s->offset + s->len;
}

ssize_t fs_data_write(struct fs *fs, struct fs_inode *ino, const char *buf, size_t len,
		      uint64_t off)
{
	struct fs_data *d = ino->data;
	if (d->meta.type != KV_FS_FILE)
		return -EISDIR;
	if (off > KV_FS_FILE_MAX || len > KV_FS_FILE_MAX - off)
		return -EFBIG;
	int rc;
	struct kv_fs_range r;
	struct kv_fs_span s;
	kv_fs_range_init(&r, off, len, UINT64_MAX, KV_FS_CHUNK_SHIFT);
	while (kv_fs_range_next(&r, &s)) {
		const uint8_t *src = (const uint8_t *)buf + (s.file_offset - off);
		rc = ensure_cstate(d, (size_t)s.index + 1);
		if (rc < 0)
			return rc;
		uint8_t st = d->cstate[s.index];
		bool whole = s.offset == 0 && s.len == KV_FS_CHUNK_SIZE;
		if (st != FS_CHUNK_MEM && mem_fits(d, &s)) {
			/* A sequential writer's chunk stays in memory (doc/fs.md §4). */
			rc = mem_begin(fs, d, s.index);
			if (rc < 0)
				return rc;
			st = d->cstate[s.index];
		}
		if (st == FS_CHUNK_MEM) {
			mem_write(d, &s, src);
		} else {
			if ((st == FS_CHUNK_BASE && s.index < d->base.n &&
			     !kv_fs_hash_is_hole(d->base.chunks[s.index].hash) &&
			     !(s.offset == 0 && s.len >= d->base.chunks[s.index].len)) ||
			    ((st == FS_CHUNK_MSENDING || st == FS_CHUNK_STORED) && !whole)) {
				rc = stage_chunk(fs, d, s.index);
				if (rc < 0)
					return rc;
			}
			rc = staging_open(fs, d);
			if (rc == 0)
				rc = pwrite_full(d->staging_fd, src, s.len, s.file_offset);
			if (rc < 0)
				return rc;
			d->cstate[s.index] = FS_CHUNK_DIRTY;
		}
		/* The writer moves past a full chunk: store it now (DESIGN §7 "Writing"). */
		if (s.offset + s.len == KV_FS_CHUNK_SIZE)
			upload_start(fs, d, s.index);
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
	uint8_t *cbuf = NULL;
	int rc = 0;
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
		uint8_t hash[KV_FS_HASH_LEN];
		const uint8_t *p = u->d->wbuf; /* the chunk kept in memory (build_body filled it) */
		if (cstate_of(u->d, i) != FS_CHUNK_MEM) {
			if (!cbuf && !(cbuf = fs_cbuf_get())) {
				rc = -ENOMEM;
				continue;
			}
			rc = pread_full(u->d->staging_fd, cbuf, ref->len, i * KV_FS_CHUNK_SIZE);
			p = cbuf;
		}
		if (rc == 0)
			rc = store_chunk(u->fs, p, ref->len, hash);
		if (rc == 0)
			memcpy(ref->hash, hash, KV_FS_HASH_LEN); /* zeros: the placeholder hole stays */
	}
	fs_cbuf_put(cbuf);
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
		if ((st == FS_CHUNK_SENT || st == FS_CHUNK_STORED) && len == KV_FS_CHUNK_SIZE) {
			rc = kv_fs_manifest_append(man, d->sent[i], len); /* stored while written */
			continue;
		}
		if ((st == FS_CHUNK_BASE || st == FS_CHUNK_CLEAN) && in_base &&
		    d->base.chunks[i].len == len) {
			rc = kv_fs_manifest_append(man, d->base.chunks[i].hash, len);
			continue;
		}
		if (st == FS_CHUNK_MEM) {
			/* Uploaded from memory; its bytes past wbuf_len are zeros (a truncate up). */
			if (d->wbuf_len < len) {
				memset(d->wbuf + d->wbuf_len, 0, len - d->wbuf_len);
				d->wbuf_len = len;
			}
		} else if (st != FS_CHUNK_DIRTY && st != FS_CHUNK_CLEAN && st != FS_CHUNK_SENT) {
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

/*
 * Refreshes the age of the STORED chunks (uploaded from memory, held
 * nowhere locally) whose uploads are too old to trust (SENT_MAX_AGE_NS):
 * one chunk touch each, which must find it on some replica. Returns the
 * number of STORED chunks (0: none), or -errno (the flush fails; EIO when
 * a chunk is gone).
 */
static int touch_stored(struct fs *fs, struct fs_data *d)
{
	int n = 0;
	for (size_t i = 0; i < d->ncstate; i++) {
		if (d->cstate[i] != FS_CHUNK_STORED || kv_fs_hash_is_hole(d->sent[i]))
			continue;
		uint8_t key[KV_FS_CHUNK_KEY_LEN];
		kv_fs_chunk_key(d->sent[i], key);
		struct kv_slice ks = kv_slice_make(key, sizeof key);
		struct kv_client_call call = fs_call(fs);
		int rc = kv_client_chunk_touch(fs->client, &ks, 1, &call);
		if (rc == 0)
			rc = KV_ENOTFOUND;
		if (rc < 0) {
			kv_warn("kvfs: chunk %zu of an upload: touch: %s (%s)", i, kv_strerror(rc),
				kv_client_errmsg(fs->client));
			return rc == KV_ENOTFOUND ? -EIO : fs_errno(rc);
		}
		n++;
	}
	return n;
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
	/* The flush waits only for the background uploads in flight. */
	jobs_reap(d, true, true);
	if (d->werr < 0) {
		/*
		 * A chunk kept in memory failed to upload and could be kept
		 * nowhere: every flush of this data state fails.
		 */
		rc = d->werr;
		goto fail;
	}
	if (d->sent_since_ns != 0 && fs_mono_ns() - d->sent_since_ns > SENT_MAX_AGE_NS) {
		rc = touch_stored(fs, d);
		if (rc < 0)
			goto fail;
		for (size_t i = 0; i < d->ncstate; i++)
			if (d->cstate[i] == FS_CHUNK_SENT)
				d->cstate[i] = FS_CHUNK_DIRTY; /* too old to trust: store again */
		d->sent_since_ns = rc > 0 ? fs_mono_ns() : 0;
	}
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
		for (size_t i = 0; i < d->ncstate; i++) {
			if (d->cstate[i] == FS_CHUNK_DIRTY || d->cstate[i] == FS_CHUNK_SENT)
				d->cstate[i] = FS_CHUNK_CLEAN;
			else if (d->cstate[i] == FS_CHUNK_STORED)
				d->cstate[i] = FS_CHUNK_BASE; /* the new base names it */
		}
		d->sent_since_ns = 0;
	} else if (storage == KV_FS_STORE_INLINE) {
		kv_fs_manifest_release(&d->base);
		kv_fs_manifest_init(&d->base, KV_FS_CHUNK_SHIFT);
		/* A chunk 0 kept in memory stays there; otherwise staging holds the body. */
		if (body.n > 0 && cstate_of(d, 0) != FS_CHUNK_MEM && staging_open(fs, d) == 0 &&
		    ensure_cstate(d, 1) == 0 && pwrite_full(d->staging_fd, body.p, body.n, 0) == 0)
			d->cstate[0] = FS_CHUNK_CLEAN;
		for (size_t i = 1; i < d->ncstate; i++) {
			if (d->cstate[i] == FS_CHUNK_MEM)
				wbuf_drop(d);
			d->cstate[i] = FS_CHUNK_BASE;
		}
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

/*
 * When [off, off+size) lies within one stored chunk of the version opened
 * (the common case of a sequential read), copies its hash to @hash, the
 * offset within it to *coff and the bytes to reply to *n, and returns true:
 * the reply can then go straight from the cache slot. dlock held.
 */
static bool read_from_chunk(struct fs *fs, struct fs_data *d, size_t size, uint64_t off,
			    uint8_t hash[KV_FS_HASH_LEN], size_t *coff, size_t *n)
{
	if (off >= d->size || size == 0)
		return false;
	if (size > d->size - off)
		size = (size_t)(d->size - off);
	uint64_t i = off >> KV_FS_CHUNK_SHIFT;
	uint64_t o = off & (KV_FS_CHUNK_SIZE - 1);
	if (((off + size - 1) >> KV_FS_CHUNK_SHIFT) != i || cstate_of(d, i) != FS_CHUNK_BASE ||
	    i >= d->base.n || kv_fs_hash_is_hole(d->base.chunks[i].hash) ||
	    o + size > d->base.chunks[i].len)
		return false;
	memcpy(hash, d->base.chunks[i].hash, KV_FS_HASH_LEN);
	*coff = (size_t)o;
	*n = size;
	read_ahead(fs, d, off, size);
	return true;
}

void fs_op_read(fuse_req_t req, fuse_ino_t n, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *ino = fs_get(fs, n);
	char *buf = NULL;
	ssize_t got = -ESTALE;
	uint8_t hash[KV_FS_HASH_LEN];
	size_t coff = 0, clen = 0;
	bool direct = false;
	if (!ino)
		goto reply;
	pthread_mutex_lock(&ino->dlock);
	if (!ino->data)
		got = -EBADF;
	else
		direct = read_from_chunk(fs, ino->data, size, (uint64_t)off, hash, &coff, &clen);
	if (!direct && ino->data) {
		buf = malloc(size ? size : 1);
		got = buf ? fs_data_read(fs, ino, buf, size, (uint64_t)off) : -ENOMEM;
	}
	pthread_mutex_unlock(&ino->dlock);
	if (direct) {
		/*
		 * No copy between the socket's buffer and the kernel: the reply
		 * goes from the cache slot, which the reference keeps alive.
		 */
		struct fs_cache_slot *s;
		int rc = fs_chunk_get(fs, hash, &s);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
		} else if (coff + clen <= s->len) {
			fuse_reply_buf(req, (const char *)s->buf + coff, clen);
		} else {
			fuse_reply_err(req, EIO); /* shorter than the manifest says */
		}
		if (rc == 0)
			fs_chunk_put(fs, s);
		fs_unref(fs, ino);
		return;
	}
reply:
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
