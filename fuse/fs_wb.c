/*
 * fs_wb.c - write-behind unlink (doc/fs.md §5): the unlink of a plain name
 * answers once its DELETE is queued; a few workers send the queue, each
 * delete retried with one request id until the mount's timeout. Later
 * operations on the key, and listings of the directory, wait for it.
 * Design note: doc/fs.md §5; the unlink itself: fs.c remove_name().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
	return h;
}

/*
 * Waits on wb_done until @until_ns (monotonic). Deletes end by their
 * deadlines; this bound is a backstop. Returns ETIMEDOUT past it. wb_lock held.
 */
static int wb_wait(struct fs *fs, uint64_t until_ns)
{
	if (fs_mono_ns() >= until_ns)
		return ETIMEDOUT;
	struct timespec ts = { (time_t)(until_ns / 1000000000u), (long)(until_ns % 1000000000u) };
	return pthread_cond_timedwait(&fs->wb_done, &fs->wb_lock, &ts);
}

/* The backstop of a wait for deletes: two timeouts and a second. */
static uint64_t wb_backstop(const struct fs *fs)
{
	return fs_mono_ns() + 2 * fs_timeout_ns(fs) + 1000000000ull;
}

/*
 * Whether @op deletes @key itself (@dir false) or a child of the directory
 * @key (@dir true); @h is the hash of @key's @len bytes.
 */
static bool wb_matches(const struct fs_wb_op *op, bool dir, uint64_t h, const char *key, size_t len)
{
	if (dir)
		return op->dir_hash == h && op->dir_len == len && memcmp(op->key, key, len) == 0;
	return op->key_hash == h && strcmp(op->key, key) == 0;
}

/* True when a matching delete is queued or in flight. wb_lock held. */
static bool wb_has(const struct fs *fs, bool dir, uint64_t h, const char *key, size_t len)
{
	for (size_t i = 0; i < FS_WB_MAX; i++)
		if (fs->wb_slot[i] && wb_matches(fs->wb_slot[i], dir, h, key, len))
			return true;
	return false;
}

/* Waits until no delete of @key (@dir: of a child of @key) is queued or in flight. */
static void wb_wait_for(struct fs *fs, const char *key, bool dir)
{
	size_t len = strlen(key);
	uint64_t h = hash_bytes(key, len), until = 0;
	pthread_mutex_lock(&fs->wb_lock);
	while (fs->wb_count > 0 && wb_has(fs, dir, h, key, len)) {
		if (until == 0)
			until = wb_backstop(fs);
		if (wb_wait(fs, until) == ETIMEDOUT) {
			kv_warn("kvfs: %s%s: the queued deletes did not end in time", key,
				dir ? "/" : "");
			break;
		}
	}
	pthread_mutex_unlock(&fs->wb_lock);
}

void fs_wb_wait_key(struct fs *fs, const char *key)
{
	wb_wait_for(fs, key, false);
}

void fs_wb_wait_dir(struct fs *fs, const char *dir_key)
{
	wb_wait_for(fs, dir_key, true);
}

/* True when no delete is queued or in flight (the cheap check first). */
static bool wb_idle(struct fs *fs)
{
	pthread_mutex_lock(&fs->wb_lock);
	bool idle = fs->wb_count == 0;
	pthread_mutex_unlock(&fs->wb_lock);
	return idle;
}

void fs_wb_wait_child(struct fs *fs, struct fs_inode *dir, const char *name, size_t len)
{
	if (wb_idle(fs))
		return;
	pthread_mutex_lock(&fs->lock);
	char *key = fs_child_key(dir->key, name, len);
	pthread_mutex_unlock(&fs->lock);
	if (key)
		fs_wb_wait_key(fs, key);
	free(key);
}

void fs_wb_hold_entries(struct fs *fs, struct fs_inode *dir)
{
	if (!dir->dir)
		return;
	size_t len = strlen(dir->key);
	uint64_t h = hash_bytes(dir->key, len), now = fs_mono_ns();
	pthread_mutex_lock(&fs->wb_lock);
	for (size_t i = 0; i < FS_WB_MAX && fs->wb_count > 0; i++) {
		const struct fs_wb_op *op = fs->wb_slot[i];
		if (!op || !wb_matches(op, true, h, dir->key, len))
			continue;
		const char *stored = op->key + len + 1;
		struct fs_dent *d = fs_dir_find(dir, stored, strlen(stored));
		if (d)
			d->stale_ns = now;
	}
	pthread_mutex_unlock(&fs->wb_lock);
}

/* fs_wb_wait_key() of @ino's key, when any delete is queued. No lock held. */
void fs_wb_wait_ino(struct fs *fs, struct fs_inode *ino)
{
	if (wb_idle(fs))
		return;
	pthread_mutex_lock(&fs->lock);
	char *key = strdup(ino->key);
	pthread_mutex_unlock(&fs->lock);
	if (key)
		fs_wb_wait_key(fs, key);
	free(key);
}

int fs_wb_take_error(struct fs *fs, struct fs_inode *dir)
{
	pthread_mutex_lock(&fs->lock);
	int rc = dir->wb_err;
	dir->wb_err = 0;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/*
 * Queues the delete of @key (taken: freed on failure too) with a copy of
 * @ctx, in @dir (the op takes a reference). Waits for room (at most
 * FS_WB_MAX queued or in flight: backpressure). Returns 0; -EAGAIN when no
 * worker runs (delete synchronously instead); -ENOMEM.
 */
int fs_wb_queue(struct fs *fs, struct fs_inode *dir, char *key, const struct kv_ctx *ctx)
{
	struct fs_wb_op *op = NULL;
	int rc;
	if (fs->wb_nthreads == 0) {
		rc = -EAGAIN;
		goto fail;
	}
	op = calloc(1, sizeof *op);
	if (!op) {
		rc = -ENOMEM;
		goto fail;
	}
	kv_ctx_init(&op->ctx);
	rc = kv_ctx_copy(&op->ctx, ctx);
	if (rc < 0)
		goto fail;
	op->key = key;
	const char *slash = strrchr(key, '/');
	op->dir_len = slash ? (size_t)(slash - key) : 0;
	op->key_hash = hash_bytes(key, strlen(key));
	op->dir_hash = hash_bytes(key, op->dir_len);
	kv_client_request_id(op->req_id);
	pthread_mutex_lock(&fs->lock);
	dir->refs++;
	pthread_mutex_unlock(&fs->lock);
	op->dir = dir;
	pthread_mutex_lock(&fs->wb_lock);
	while (fs->wb_count == FS_WB_MAX)
		pthread_cond_wait(&fs->wb_done, &fs->wb_lock); /* ends by the deadlines */
	op->deadline_ns = fs_mono_ns() + fs_timeout_ns(fs);
	for (size_t i = 0; i < FS_WB_MAX; i++)
		if (!fs->wb_slot[i]) {
			fs->wb_slot[i] = op;
			break;
		}
	fs->wb_count++;
	fs->wb_ring[(fs->wb_head + fs->wb_len) % FS_WB_MAX] = op;
	fs->wb_len++;
	pthread_cond_signal(&fs->wb_work);
	pthread_mutex_unlock(&fs->wb_lock);
	return 0;
fail:
	if (op)
		kv_ctx_release(&op->ctx);
	free(op);
	free(key);
	return rc;
}

/*
 * Sends one queued delete, with its request id in every attempt (DESIGN §4),
 * until it succeeds or its deadline passes; the first attempt gets at least
 * 200 ms. Returns 0 or the client's last result.
 */
static int wb_send(struct fs *fs, struct fs_wb_op *op)
{
	for (;;) {
		uint64_t now = fs_mono_ns();
		uint64_t left_ms = op->deadline_ns > now ? (op->deadline_ns - now) / 1000000u : 0;
		struct kv_client_call call = fs_call(fs);
		call.request_id = op->req_id;
		call.timeout_ms = (uint32_t)(left_ms < 200 ? 200 : left_ms);
		int rc = kv_client_delete(fs->client, kv_slice_str(op->key), &op->ctx, &call, NULL,
					  NULL);
		if (rc >= 0)
			return 0;
		if (fs_errno(rc) != -EIO || fs_mono_ns() + 100000000ull >= op->deadline_ns)
			return rc;
		struct timespec pause = { 0, 50 * 1000000 };
		nanosleep(&pause, NULL);
	}
}

/*
 * A delete failed for good: the directory remembers it (the next fsyncdir
 * or unlink there says EIO), and the name is re-read at its next lookup,
 * where it shows again.
 */
static void wb_failed(struct fs *fs, struct fs_wb_op *op)
{
	pthread_mutex_lock(&fs->lock);
	op->dir->wb_err = -EIO;
	const char *stored = op->key + op->dir_len + 1;
	struct fs_dent *d = fs_dir_find(op->dir, stored, strlen(stored));
	if (d) {
		d->fetched_ns = 0;
		d->stale_ns = fs_mono_ns();
		d->has_own = false;
	}
	pthread_mutex_unlock(&fs->lock);
}

static void *wb_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->wb_lock);
	for (;;) {
		while (fs->wb_len == 0 && !fs->wb_stop)
			pthread_cond_wait(&fs->wb_work, &fs->wb_lock);
		if (fs->wb_len == 0)
			break;
		struct fs_wb_op *op = fs->wb_ring[fs->wb_head];
		fs->wb_head = (fs->wb_head + 1) % FS_WB_MAX;
		fs->wb_len--;
		op->sending = true;
		pthread_mutex_unlock(&fs->wb_lock);
		if (wb_send(fs, op) < 0) {
			kv_warn("kvfs: delete %s (write-behind): %s", op->key,
				kv_client_errmsg(fs->client));
			wb_failed(fs, op);
		}
		pthread_mutex_lock(&fs->wb_lock);
		for (size_t i = 0; i < FS_WB_MAX; i++)
			if (fs->wb_slot[i] == op) {
				fs->wb_slot[i] = NULL;
				break;
			}
		fs->wb_count--;
		pthread_cond_broadcast(&fs->wb_done);
		pthread_mutex_unlock(&fs->wb_lock);
		fs_unref(fs, op->dir);
		kv_ctx_release(&op->ctx);
		free(op->key);
		free(op);
		pthread_mutex_lock(&fs->wb_lock);
	}
	pthread_mutex_unlock(&fs->wb_lock);
	return NULL;
}

/* Starts the workers (fs_init). Fewer, or none, when threads cannot start. */
int fs_wb_start(struct fs *fs)
{
	pthread_condattr_t ca;
	pthread_mutex_init(&fs->wb_lock, NULL);
	pthread_cond_init(&fs->wb_work, NULL);
	if (pthread_condattr_init(&ca) != 0)
		return -ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->wb_done, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < FS_WB_THREADS; i++) {
		if (pthread_create(&fs->wb_thread[i], NULL, wb_main, fs) != 0)
			break;
		fs->wb_nthreads++;
	}
	if (fs->wb_nthreads == 0)
		kv_warn("kvfs: no write-behind thread: unlinks wait for their deletes");
	return 0;
}

/*
 * Unmount: waits for every queued delete (each ends by its deadline), then
 * stops and joins the workers.
 */
void fs_wb_stop(struct fs *fs)
{
	pthread_mutex_lock(&fs->wb_lock);
	uint64_t until = wb_backstop(fs);
	while (fs->wb_count > 0 && wb_wait(fs, until) != ETIMEDOUT)
		;
	if (fs->wb_count > 0)
		kv_warn("kvfs: unmount: %zu deletes still running", fs->wb_count);
	fs->wb_stop = true;
	pthread_cond_broadcast(&fs->wb_work);
	pthread_mutex_unlock(&fs->wb_lock);
	for (size_t i = 0; i < fs->wb_nthreads; i++)
		pthread_join(fs->wb_thread[i], NULL);
	fs->wb_nthreads = 0;
}
