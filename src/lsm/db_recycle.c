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
 *   being deleted, and the flush thread names the next log ahead of time
 *   (a spare, or else an empty file: a log without a spare is written ahead
 *   of its records, kv_wal_writer_ahead), so that a switch of logs syncs no
 *   directory.
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

#include "lsm/wal.h"
#include "util/error.h"
#include "util/log.h"

#define PATH_MAX_LEN 4096

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
 * Ready logs. Starting a log renames a spare or creates a file, then syncs
 * the directory, and the switching writer holds mu throughout: every writer
 * of the store waits for that directory sync, which on a busy disk takes as
 * long as the device needs to take in everything written before it. So the
 * flush thread names the next log ahead of time, a spare renamed or else an
 * empty new file, writes an END fragment of the new number at its offset 0
 * and syncs it and the directory, and leaves the log for kv_db_new_log,
 * which then only opens it and overwrites the END with the first record. A
 * ready log that a close or a crash leaves unused reads as an empty,
 * finished log: recovery replays nothing from it and retires it like any
 * other.
 */
bool kv_db_prepare_ready_log(struct kv_lsm *db)
{
	pthread_mutex_lock(&db->mu);
	if (!db->trash_deferred || db->ready_log || db->shutting_down) {
		pthread_mutex_unlock(&db->mu);
		return false;
	}
	uint64_t spare = kv_db_take_spare(db);
	uint64_t number = atomic_fetch_add(&db->next_file, 1);
	pthread_mutex_unlock(&db->mu);

	char path[PATH_MAX_LEN];
	kv_db_log_path(path, sizeof path, db->dir, number);
	int r;
	if (spare) {
		char from[PATH_MAX_LEN];
		kv_db_spare_path(from, sizeof from, db->dir, spare);
		r = kv_vfs_rename(db->vfs, from, path);
		if (r) {
			kv_warn("could not ready %s as the next log: %s", from, kv_strerror(r));
			add_spare(db, spare);
			return false;
		}
	}
	/* An END of its own at offset 0: until the log is used, whatever the
	 * file holds after it (a spare's old records) is never read as this
	 * log's, not even as a torn tail. */
	struct kv_file *f = NULL;
	struct kv_wal_writer *w = NULL;
	r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE | (spare ? 0 : KV_VFS_CREATE | KV_VFS_TRUNC), &f);
	if (!r)
		r = kv_wal_writer_new(f, number, 0, &w);
	if (!r)
		r = kv_wal_finish(w);
	if (!r)
		r = kv_wal_sync(w);
	kv_wal_writer_free(w);
	if (f) {
		int cr = kv_file_close(f);
		if (!r)
			r = cr;
	}
	if (!r)
		r = kv_vfs_sync_dir(db->vfs, db->dir);
	if (r) {
		kv_warn("could not ready the next log %s: %s", path, kv_strerror(r));
		kv_db_trash(db, path);
		return false;
	}
	pthread_mutex_lock(&db->mu);
	/* A switch while this was being done started a newer log: this one
	 * would come before it, so it cannot be the next. */
	bool usable = number > db->wal_number && !db->shutting_down;
	if (usable)
		db->ready_log = number;
	pthread_mutex_unlock(&db->mu);
	if (usable && spare)
		atomic_fetch_add_explicit(&db->c.logs_recycled, 1, memory_order_relaxed);
	if (!usable)
		kv_db_trash(db, path);
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
