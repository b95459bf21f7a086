/*
 * fs_lease.c - leases on the chunks of open files (DESIGN §7 "Reclaiming
 * chunks"): the thread that keeps touching the chunks of every open
 * version, so that gc's grace never runs out under a reader or writer, and
 * the lease object an open but unlinked file writes under FS_LEASE_DIR,
 * whose manifest every gc mark then names.
 * Design note: doc/fs.md; the data path that calls it: fs_data.c.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

static void *lease_main(void *arg);

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

int fs_lease_start(struct fs *fs)
{
	if (pthread_create(&fs->lease_thread, NULL, lease_main, fs) != 0)
		return -EAGAIN;
	fs->lease_started = true;
	return 0;
}

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

static void lease_one(struct fs *fs, struct fs_inode *ino)
{
	(void)fs_data_lease(fs, ino);
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
		fs_each_data(fs, lease_one);
		pthread_mutex_lock(&fs->cache_lock);
	}
	pthread_mutex_unlock(&fs->cache_lock);
	return NULL;
}
