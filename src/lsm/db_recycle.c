/*
 * db_recycle.c - the files the engine is done with: obsolete tables and logs
 * are deleted gently by the flush thread, and old logs are kept as spares
 * that the next logs overwrite in place.
 *
 * Both exist for the commit log's fsync, which every acknowledged write
 * waits for (doc/benchmarks.md, "Where the put tail came from"):
 *
 * - On ext4 mounted with "discard" (this machine's root is), an unlink trims
 *   every extent of the file before it returns, and the device serves
 *   nothing else meanwhile: deleting a 128 MiB file held a concurrent
 *   fdatasync for 122 ms, the same file truncated a few MiB at a time never
 *   more than 2 ms. So files go a MiB at a time (kv_vfs_remove_gently), on
 *   the flush thread, never on whichever thread dropped the last reference
 *   (a node's event loop, often).
 *
 * - Appending to a fresh log makes every fdatasync record a new size and
 *   convert freshly written (unwritten) extents, the latter on a worker the
 *   whole file system shares and that also trims the extent-tree blocks it
 *   frees, one synchronous 4 KiB discard at a time. A log file whose blocks
 *   were all written before has neither: the next log overwrites it from
 *   offset 0 (the WAL format allows it: a recycled file's older fragments
 *   carry the old log number and read as stale, doc/storage-format.md#wal).
 *   Old logs become spares (NNNNNN.spare, at most KV_DB_SPARES) instead of
 *   being deleted; a store with no spare (a fresh one) gets one written
 *   with zeros by the flush thread while it has nothing else to do.
 *
 * Without threads (deterministic mode) files are deleted at once and no
 * spare is kept: the single-threaded store behaves as it always did.
 */
#include "lsm/db_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"

#define PATH_MAX_LEN 4096
#define SPARE_MAX_BYTES ((uint64_t)64 << 20)

/* ---- Deleting -------------------------------------------------------------- */

void kv_db_trash(struct kv_lsm *db, const char *path)
{
	if (!db->trash_deferred) {
		kv_vfs_remove(db->vfs, path);
		return;
	}
	pthread_mutex_lock(&db->trash_mu);
	bool queued = false;
	for (size_t i = 0; i < db->ntrash && !queued; i++)
		queued = !strcmp(db->trash[i], path);
	if (!queued && db->ntrash == db->trash_cap) {
		size_t cap = db->trash_cap ? 2 * db->trash_cap : 16;
		char **p = realloc(db->trash, cap * sizeof *p);
		if (p) {
			db->trash = p;
			db->trash_cap = cap;
		}
	}
	char *copy = queued || db->ntrash == db->trash_cap ? NULL : strdup(path);
	if (copy)
		db->trash[db->ntrash++] = copy;
	pthread_mutex_unlock(&db->trash_mu);
	if (!queued && !copy)
		kv_vfs_remove(db->vfs, path); /* out of memory: at once, then */
}

void kv_db_table_trash(struct kv_table_env *env, const char *path)
{
	kv_db_trash((struct kv_lsm *)((char *)env - offsetof(struct kv_lsm, table_env)), path);
}

bool kv_db_empty_trash_once(struct kv_lsm *db, bool gently)
{
	pthread_mutex_lock(&db->trash_mu);
	char *path = NULL;
	if (db->ntrash > 0) {
		path = db->trash[0];
		memmove(&db->trash[0], &db->trash[1], (db->ntrash - 1) * sizeof *db->trash);
		db->ntrash--;
	}
	pthread_mutex_unlock(&db->trash_mu);
	if (!path)
		return false;
	int r = gently ? kv_vfs_remove_gently(db->vfs, path) : kv_vfs_remove(db->vfs, path);
	if (r && r != -ENOENT)
		kv_warn("could not remove %s: %s", path, kv_strerror(r));
	free(path);
	return true;
}

/* ---- Spare logs ------------------------------------------------------------ */

void kv_db_spare_path(char *out, size_t n, const char *dir, uint64_t number)
{
	snprintf(out, n, "%s/%06" PRIu64 ".spare", dir, number);
}

uint64_t kv_db_take_spare(struct kv_lsm *db)
{
	if (db->nspares == 0)
		return 0;
	return db->spares[--db->nspares];
}

/* Adds spare @number, or trashes it when there is no room (mu not held). */
static void add_spare(struct kv_lsm *db, uint64_t number)
{
	pthread_mutex_lock(&db->mu);
	bool room = db->nspares < KV_DB_SPARES;
	if (room)
		db->spares[db->nspares++] = number;
	pthread_mutex_unlock(&db->mu);
	if (!room) {
		char path[PATH_MAX_LEN];
		kv_db_spare_path(path, sizeof path, db->dir, number);
		kv_db_trash(db, path);
	}
}

void kv_db_retire_log(struct kv_lsm *db, uint64_t number, const char *path)
{
	if (db->trash_deferred) {
		pthread_mutex_lock(&db->mu);
		bool room = db->nspares < KV_DB_SPARES;
		pthread_mutex_unlock(&db->mu);
		char spare[PATH_MAX_LEN];
		kv_db_spare_path(spare, sizeof spare, db->dir, number);
		/* No directory sync: after a crash either name is harmless (a
		 * log older than the manifest's is a stray, a spare is adopted). */
		if (room && kv_vfs_rename(db->vfs, path, spare) == 0) {
			add_spare(db, number);
			return;
		}
	}
	kv_db_trash(db, path);
}

/*
 * A spare of zeros as large as a log grows (a memtable and a quarter, at most
 * SPARE_MAX_BYTES), written a MiB at a time at the background pace, synced
 * so its extents are written ones before any log uses it. Stops early,
 * keeping what it wrote, when a flush is waiting. Flush thread, mu not
 * held; false if nothing was needed.
 */
bool kv_db_prepare_spare(struct kv_lsm *db)
{
	static const uint8_t zeros[1u << 20];
	pthread_mutex_lock(&db->mu);
	bool needed = db->trash_deferred && db->nspares == 0 && !db->shutting_down;
	pthread_mutex_unlock(&db->mu);
	if (!needed)
		return false;
	uint64_t number = atomic_fetch_add(&db->next_file, 1);
	char path[PATH_MAX_LEN];
	kv_db_spare_path(path, sizeof path, db->dir, number);
	struct kv_file *f = NULL;
	int r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f);
	if (r) {
		kv_warn("could not create a spare log %s: %s", path, kv_strerror(r));
		return false;
	}
	uint64_t want = db->opt.memtable_bytes + db->opt.memtable_bytes / 4, off = 0;
	if (want > SPARE_MAX_BYTES)
		want = SPARE_MAX_BYTES; /* a longer log appends past the end */
	while (!r && off < want) {
		size_t n = want - off < sizeof zeros ? (size_t)(want - off) : sizeof zeros;
		r = kv_file_pwrite(f, zeros, n, off);
		if (!r)
			(void)kv_file_writeback(f, off, n);
		off += n;
		kv_db_pace(db, n);
		pthread_mutex_lock(&db->mu);
		bool stop = db->nimm > 0 || db->shutting_down;
		pthread_mutex_unlock(&db->mu);
		if (stop)
			break;
	}
	if (!r)
		r = kv_file_sync(f);
	kv_file_close(f);
	if (r) {
		kv_warn("could not write a spare log %s: %s", path, kv_strerror(r));
		kv_db_trash(db, path);
		return false;
	}
	add_spare(db, number);
	return true;
}

void kv_db_adopt_spares(struct kv_lsm *db)
{
	char **names = NULL;
	size_t count = 0;
	if (kv_vfs_list(db->vfs, db->dir, &names, &count))
		return;
	for (size_t i = 0; i < count; i++) {
		uint64_t n = kv_db_parse_numbered(names[i], ".spare");
		if (!n)
			continue;
		if (n >= atomic_load(&db->next_file))
			atomic_store(&db->next_file, n + 1);
		if (db->trash_deferred && db->nspares < KV_DB_SPARES) {
			db->spares[db->nspares++] = n;
		} else {
			char path[PATH_MAX_LEN];
			kv_db_spare_path(path, sizeof path, db->dir, n);
			kv_vfs_remove(db->vfs, path);
		}
	}
	kv_vfs_names_free(names, count);
}
