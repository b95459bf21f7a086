/*
 * db.c - the storage engine's life cycle: open and recovery, flushes,
 * version installation, background threads, close, figures (see lsm.h).
 *
 * Files in a database directory (doc/storage-format.md#files):
 *   LOCK          held for as long as the engine is open
 *   MANIFEST      the live tables and counters, replaced atomically
 *   NNNNNN.log    commit logs; every log >= the manifest's log number
 *                 holds writes not yet in a table
 *   NNNNNN.sst    tables
 *   quarantine/   tables found corrupt, kept for a person to look at
 *
 * The write path is in db_write.c, the read path in db_read.c, compaction
 * in compaction.c.
 */
#include "lsm/db_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lsm/manifest.h"
#include "lsm/table.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

#define PATH_MAX_LEN 4096

void kv_lsm_options_init(struct kv_lsm_options *o)
{
	memset(o, 0, sizeof *o);
	o->vfs = NULL;
	o->memtable_bytes = 16u << 20;
	o->block_cache_bytes = 32u << 20;
	o->bloom_bits_per_key = 10;
	o->block_bytes = 4u << 10;
	o->compress = true;
	o->sync = KV_SYNC_ALWAYS;
	o->sync_batch_ms = 2;
	o->max_immutable = 2;
	o->l0_compaction_trigger = 4;
	o->l0_slowdown = 20;
	o->l0_stop = 36;
	o->level1_bytes = 64u << 20;
	o->level_multiplier = 10;
	o->table_bytes = 32u << 20;
	o->background_bytes_per_sec = 0;
	o->deterministic = false;
	o->create_if_missing = true;
}

int kv_lsm_parse_sync(const char *s, enum kv_sync_mode *mode, unsigned *batch_ms)
{
	if (!strcmp(s, "always")) {
		*mode = KV_SYNC_ALWAYS;
		return 0;
	}
	if (!strcmp(s, "none")) {
		*mode = KV_SYNC_NONE;
		return 0;
	}
	if (!strncmp(s, "batch:", 6)) {
		char *end;
		errno = 0;
		unsigned long ms = strtoul(s + 6, &end, 10);
		if (errno || end == s + 6 || *end || ms > 10000)
			return KV_EINVAL;
		*mode = KV_SYNC_BATCH;
		*batch_ms = (unsigned)ms;
		return 0;
	}
	return KV_EINVAL;
}

void kv_db_log_path(char *out, size_t n, const char *dir, uint64_t number)
{
	snprintf(out, n, "%s/%06" PRIu64 ".log", dir, number);
}

uint64_t kv_db_parse_numbered(const char *name, const char *ext)
{
	char *end;
	if (name[0] < '0' || name[0] > '9')
		return 0;
	errno = 0;
	unsigned long long v = strtoull(name, &end, 10);
	if (errno || strcmp(end, ext) != 0)
		return 0;
	return v;
}

/* ---- Tables and versions -------------------------------------------------- */

/* Opens table @number for reading; *out owns it. */
static int open_table(struct kv_lsm *db, uint64_t number, uint64_t size, struct kv_table **out)
{
	char path[PATH_MAX_LEN];
	kv_table_path(path, sizeof path, db->dir, number);
	struct kv_file *f = NULL;
	int r = kv_vfs_open(db->vfs, path, KV_VFS_READ, &f);
	if (r)
		return r;
	r = kv_table_open(f, size, number, db->cache, &db->table_stats, out);
	if (r)
		kv_file_close(f);
	return r;
}

/* Fills @m with the tables of @v and the engine's counters. */
static int manifest_from_version(struct kv_lsm *db, const struct kv_version *v, uint64_t log_number,
				 uint64_t last_seq, struct kv_manifest *m)
{
	m->next_file_number = atomic_load(&db->next_file);
	m->last_sequence = last_seq;
	m->log_number = log_number;
	/* Keep every property, including those of a newer minor version. */
	for (size_t i = 0; i < db->props.nprops; i++) {
		int r = kv_manifest_set_prop(m, db->props.props[i].name, db->props.props[i].value);
		if (r)
			return r;
	}
	for (int l = 0; l < KV_LSM_LEVELS; l++) {
		for (size_t i = 0; i < v->nfiles[l]; i++) {
			const struct kv_file_meta *f = v->files[l][i];
			int r = kv_manifest_add_table(m, l, f->number, f->size, f->entries,
						      kv_buf_slice(&f->smallest), kv_buf_slice(&f->largest));
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * Retires logs older than @keep_from (install_mu held): each becomes a spare
 * or goes to the trash (db_recycle.c).
 */
static void remove_old_logs(struct kv_lsm *db, uint64_t keep_from)
{
	char **names = NULL;
	size_t count = 0;
	if (kv_vfs_list(db->vfs, db->dir, &names, &count))
		return;
	for (size_t i = 0; i < count; i++) {
		uint64_t n = kv_db_parse_numbered(names[i], ".log");
		if (n && n < keep_from) {
			char path[PATH_MAX_LEN];
			kv_db_log_path(path, sizeof path, db->dir, n);
			kv_db_retire_log(db, n, path);
		}
	}
	kv_vfs_names_free(names, count);
}

/*
 * Writes the manifest for @v (install_mu held, mu not held). @log_number is
 * the oldest WAL still needed.
 */
static int store_manifest(struct kv_lsm *db, const struct kv_version *v, uint64_t log_number)
{
	struct kv_manifest m;
	kv_manifest_init(&m);
	pthread_mutex_lock(&db->mu);
	uint64_t last_seq = db->next_seq - 1;
	pthread_mutex_unlock(&db->mu);
	int r = manifest_from_version(db, v, log_number, last_seq, &m);
	uint64_t bytes = 0;
	if (!r)
		r = kv_manifest_store(db->vfs, db->dir, &m, &bytes);
	kv_manifest_release(&m);
	if (!r)
		atomic_fetch_add_explicit(&db->c.manifest_bytes, bytes, memory_order_relaxed);
	return r;
}

/* Installs a version built from the current one and @edit; see db_int.h. */
static int install_locked(struct kv_lsm *db, struct kv_version_edit *edit, uint64_t log_number)
{
	pthread_mutex_lock(&db->mu);
	struct kv_version *next = kv_version_apply(db->current, edit);
	pthread_mutex_unlock(&db->mu);
	if (!next)
		return -ENOMEM;
	int r = store_manifest(db, next, log_number);
	if (r) {
		kv_version_unref(next);
		return r;
	}
	db->manifest_log_number = log_number;
	/* Tables the edit dropped are deleted once no reader needs them; a
	 * table moved to another level is removed and added, and stays. */
	for (size_t i = 0; i < edit->nremoved; i++) {
		int l = edit->removed[i].level;
		uint64_t number = edit->removed[i].number;
		bool moved = false;
		for (size_t j = 0; j < edit->nadded; j++)
			moved |= edit->added[j].file->number == number;
		const struct kv_version *cur = db->current;
		for (size_t j = 0; j < cur->nfiles[l] && !moved; j++)
			if (cur->files[l][j]->number == number)
				atomic_store(&cur->files[l][j]->obsolete, true);
	}
	pthread_mutex_lock(&db->mu);
	struct kv_version *old = db->current;
	db->current = next;
	pthread_cond_broadcast(&db->bg_cv);
	pthread_mutex_unlock(&db->mu);
	kv_version_unref(old);
	return 0;
}

int kv_db_install(struct kv_lsm *db, struct kv_version_edit *edit)
{
	return install_locked(db, edit, db->manifest_log_number);
}

/* Moves table @number's file to quarantine/ for a person to look at. */
static void move_to_quarantine(struct kv_lsm *db, uint64_t number, const char *why)
{
	char from[PATH_MAX_LEN], to[PATH_MAX_LEN], qdir[PATH_MAX_LEN];
	kv_table_path(from, sizeof from, db->dir, number);
	snprintf(qdir, sizeof qdir, "%s/quarantine", db->dir);
	if (snprintf(to, sizeof to, "%s/quarantine/%06" PRIu64 ".sst", db->dir, number) >= (int)sizeof to)
		return;
	kv_vfs_mkdir(db->vfs, qdir); /* -EEXIST is fine */
	int r = kv_vfs_rename(db->vfs, from, to);
	if (r && r != -ENOENT)
		kv_error("could not move %s table %s to quarantine: %s", why, from, kv_strerror(r));
	else
		kv_error("table %s is %s: quarantined; its data must come back by repair", from, why);
}

void kv_db_quarantine(struct kv_lsm *db, uint64_t number)
{
	pthread_mutex_lock(&db->install_mu);
	pthread_mutex_lock(&db->mu);
	int level = -1;
	for (int l = 0; l < KV_LSM_LEVELS && level < 0; l++)
		for (size_t i = 0; i < db->current->nfiles[l]; i++)
			if (db->current->files[l][i]->number == number)
				level = l;
	pthread_mutex_unlock(&db->mu);
	if (level < 0)
		goto out; /* already gone */
	move_to_quarantine(db, number, "corrupt");
	struct kv_version_edit edit;
	kv_version_edit_init(&edit);
	int r = kv_version_edit_remove(&edit, level, number);
	if (!r)
		r = kv_db_install(db, &edit);
	if (r)
		kv_error("could not drop table %06" PRIu64 " from the manifest: %s", number, kv_strerror(r));
	kv_version_edit_release(&edit);
	pthread_mutex_lock(&db->mu);
	db->quarantined++;
	pthread_mutex_unlock(&db->mu);
out:
	pthread_mutex_unlock(&db->install_mu);
}

/* ---- Writing tables ------------------------------------------------------- */

/* One output table being built by kv_db_write_tables(). */
struct table_out {
	struct kv_table_builder *b;
	struct kv_file *f;
	uint64_t number;
	uint64_t entries;
	uint64_t paced;   /* bytes of the table already paced and queued for writing */
	struct kv_buf smallest, largest;
};

/*
 * Background pacing. Flushes and compactions write their tables in steps of
 * PACE_STEP: each step's pages are queued for writing at once (so a table's
 * sync never puts tens of MiB in front of the commit log's), and together
 * the two threads write at most background_bytes_per_sec, so their CPU and
 * disk time come spread out instead of in bursts that every foreground
 * write waits behind (Cassandra's compaction_throughput, RocksDB's rate
 * limiter). The pace is dropped while writers are near waiting for the
 * work: a second immutable memtable queued, level 0 halfway from its
 * compaction trigger to the slowdown, or the store closing.
 */
#define PACE_STEP (1u << 20)
#define PACE_SLICE_MS 10u

static bool pace_urgent(const struct kv_lsm *db)
{
	return db->nimm >= 2 || db->nimm >= db->opt.max_immutable || db->closing ||
	       db->shutting_down ||
	       db->current->nfiles[0] >= (db->opt.l0_compaction_trigger + db->opt.l0_slowdown) / 2;
}

static void timed_wait(struct kv_lsm *db, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&db->bg_cv, &db->mu, &ts);
}

void kv_db_pace(struct kv_lsm *db, uint64_t n)
{
	uint64_t rate = db->opt.background_bytes_per_sec;
	if (rate == 0 || db->opt.deterministic)
		return;
	pthread_mutex_lock(&db->mu);
	uint64_t now = kv_now_ns();
	if (pace_urgent(db)) {
		db->pace_ns = now; /* no debt from work done in a hurry */
	} else {
		uint64_t start = db->pace_ns > now ? db->pace_ns : now;
		db->pace_ns = start + (uint64_t)((double)n * 1e9 / (double)rate);
		/* In slices, so that writers falling behind end the wait. */
		while (now < start && !pace_urgent(db)) {
			uint64_t ms = (start - now + 999999) / 1000000;
			timed_wait(db, ms < PACE_SLICE_MS ? ms : PACE_SLICE_MS);
			now = kv_now_ns();
		}
	}
	pthread_mutex_unlock(&db->mu);
}

static void pace(struct kv_lsm *db, struct table_out *o, uint64_t upto)
{
	(void)kv_file_writeback(o->f, o->paced, upto - o->paced); /* a hint: errors show at sync */
	kv_db_pace(db, upto - o->paced);
	o->paced = upto;
}

static int out_start(struct kv_lsm *db, struct table_out *o, struct kv_slice first_ikey)
{
	struct kv_table_options topt = {
		.block_bytes = db->opt.block_bytes,
		.bloom_bits_per_key = db->opt.bloom_bits_per_key,
		.compress = db->opt.compress,
	};
	char path[PATH_MAX_LEN];
	o->number = atomic_fetch_add(&db->next_file, 1);
	o->entries = 0;
	o->paced = 0;
	kv_table_path(path, sizeof path, db->dir, o->number);
	int r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &o->f);
	if (r)
		return r;
	r = kv_table_builder_new(o->f, &topt, &o->b);
	if (r)
		return r;
	kv_buf_reset(&o->smallest);
	return kv_buf_append(&o->smallest, first_ikey.p, first_ikey.n);
}

/* Finishes, syncs and reopens the table for reading; adds it to @edit. */
static int out_finish(struct kv_lsm *db, struct table_out *o, int level, struct kv_version_edit *edit,
		      uint64_t *written)
{
	uint64_t size = 0;
	int r = kv_table_builder_finish(o->b, &size);
	kv_table_builder_free(o->b);
	o->b = NULL;
	if (!r)
		r = kv_file_sync(o->f);
	kv_file_close(o->f);
	o->f = NULL;
	if (r)
		return r;
	*written += size;
	struct kv_table *t = NULL;
	if ((r = open_table(db, o->number, size, &t)))
		return r;
	struct kv_file_meta *fm = kv_file_meta_new(&db->table_env, o->number, size, o->entries,
						   kv_buf_slice(&o->smallest), kv_buf_slice(&o->largest), t);
	if (!fm)
		return -ENOMEM;
	r = kv_version_edit_add(edit, level, fm);
	if (r)
		atomic_store(&fm->obsolete, true);
	else
		o->number = 0; /* the edit owns it now */
	kv_file_meta_unref(fm);
	return r;
}

int kv_db_write_tables(struct kv_lsm *db, struct kv_iter *it, kv_db_keep_fn keep, void *arg, int level,
		       struct kv_version_edit *edit, uint64_t *bytes_written)
{
	struct table_out o = { .b = NULL };
	struct kv_buf last_ukey = KV_BUF_INIT;
	size_t first_added = edit->nadded;
	uint64_t written = 0;
	int r = 0;

	kv_buf_init(&o.smallest);
	kv_buf_init(&o.largest);
	for (; kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice ikey = kv_iter_key(it);
		if (ikey.n < KV_IKEY_TRAILER) {
			r = KV_ECORRUPT;
			goto out;
		}
		if (keep && !keep(arg, ikey))
			continue;
		struct kv_slice ukey = kv_ikey_user(ikey);
		/* Cut between user keys only, so no key spans two tables of a level. */
		if (o.b && kv_table_builder_file_size(o.b) >= db->opt.table_bytes &&
		    !kv_slice_eq(ukey, kv_buf_slice(&last_ukey))) {
			if ((r = out_finish(db, &o, level, edit, &written)))
				goto out;
		}
		if (!o.b && (r = out_start(db, &o, ikey)))
			goto out;
		if ((r = kv_table_builder_add(o.b, ikey, kv_iter_value(it))))
			goto out;
		o.entries++;
		uint64_t size = kv_table_builder_file_size(o.b);
		if (size >= o.paced + PACE_STEP)
			pace(db, &o, size);
		kv_buf_reset(&o.largest);
		kv_buf_reset(&last_ukey);
		if ((r = kv_buf_append(&o.largest, ikey.p, ikey.n)) ||
		    (r = kv_buf_append(&last_ukey, ukey.p, ukey.n)))
			goto out;
	}
	if ((r = kv_iter_status(it)))
		goto out;
	if (o.b)
		r = out_finish(db, &o, level, edit, &written);
out:
	if (o.b)
		kv_table_builder_free(o.b);
	if (o.f)
		kv_file_close(o.f);
	if (r) {
		if (o.number) {
			char path[PATH_MAX_LEN];
			kv_table_path(path, sizeof path, db->dir, o.number);
			kv_vfs_remove(db->vfs, path);
		}
		/* Forget (and delete) the tables this call wrote. */
		while (edit->nadded > first_added) {
			struct kv_file_meta *fm = edit->added[--edit->nadded].file;
			atomic_store(&fm->obsolete, true);
			kv_file_meta_unref(fm);
		}
	} else if (bytes_written) {
		*bytes_written = written;
	}
	kv_buf_release(&last_ukey);
	kv_buf_release(&o.smallest);
	kv_buf_release(&o.largest);
	return r;
}

/* ---- Flushes -------------------------------------------------------------- */

/*
 * Writes the oldest immutable memtable to a level-0 table and installs it.
 * Called with mu held (and returns with it held); drops mu while working.
 */
static int flush_oldest(struct kv_lsm *db)
{
	struct db_mem m = db->imm[0];
	kv_memtable_ref(m.mem);
	db->flushing = true;
	pthread_mutex_unlock(&db->mu);

	pthread_mutex_lock(&db->install_mu);
	struct kv_version_edit edit;
	kv_version_edit_init(&edit);
	uint64_t written = 0, log_needed = 0;
	int r = 0;
	if (kv_memtable_count(m.mem) > 0) {
		struct kv_iter *it = kv_memtable_iter(m.mem);
		if (!it) {
			r = -ENOMEM;
		} else {
			kv_iter_seek_first(it);
			r = kv_db_write_tables(db, it, NULL, NULL, 0, &edit, &written);
			kv_iter_destroy(it);
		}
	}
	if (!r) {
		pthread_mutex_lock(&db->mu);
		log_needed = db->nimm > 1 ? db->imm[1].log_number : db->mem.log_number;
		pthread_mutex_unlock(&db->mu);
		r = install_locked(db, &edit, log_needed);
	}
	kv_version_edit_release(&edit);
	if (!r)
		remove_old_logs(db, log_needed);
	pthread_mutex_unlock(&db->install_mu);

	pthread_mutex_lock(&db->mu);
	if (!r) {
		/* The table is installed: readers find the data there now. */
		memmove(&db->imm[0], &db->imm[1], (db->nimm - 1) * sizeof db->imm[0]);
		db->nimm--;
		kv_memtable_unref(m.mem);
		atomic_fetch_add_explicit(&db->c.flush_bytes, written, memory_order_relaxed);
		atomic_fetch_add_explicit(&db->c.flushes, 1, memory_order_relaxed);
	}
	kv_memtable_unref(m.mem);
	db->flushing = false;
	pthread_cond_broadcast(&db->bg_cv);
	return r;
}

/*
 * Does the background work that is due, inline (deterministic mode, or a
 * writer that must make room). mu held.
 */
int kv_db_background_inline(struct kv_lsm *db)
{
	int r = 0;
	while (db->nimm > 0 && !r)
		r = flush_oldest(db);
	while (!r && kv_db_needs_compaction(db)) {
		db->compacting = true;
		r = kv_db_compact_once(db, false);
		db->compacting = false;
	}
	return r;
}

static void *flush_main(void *arg)
{
	struct kv_lsm *db = arg;
	pthread_mutex_lock(&db->mu);
	while (!db->shutting_down) {
		if (db->nimm == 0) {
			pthread_mutex_unlock(&db->mu);
			bool worked = kv_db_empty_trash_once(db, true) || kv_db_prepare_ready_log(db);
			pthread_mutex_lock(&db->mu);
			/* kv_db_trash does not take mu, so its queue is polled. */
			if (!worked && db->nimm == 0 && !db->shutting_down)
				timed_wait(db, 500);
			continue;
		}
		int r = flush_oldest(db);
		if (r) {
			/* Writes fail (not hang) while flushes fail; retry in a second. */
			kv_error("flush failed: %s; retrying", kv_strerror(r));
			db->bg_error = r;
			pthread_cond_broadcast(&db->bg_cv);
			if (!db->shutting_down) /* close() may have broadcast already */
				timed_wait(db, 1000);
		} else if (db->bg_error) {
			db->bg_error = 0;
		}
	}
	pthread_mutex_unlock(&db->mu);
	return NULL;
}

static void *compact_main(void *arg)
{
	struct kv_lsm *db = arg;
	pthread_mutex_lock(&db->mu);
	while (!db->shutting_down) {
		bool manual = db->manual_compaction == 1;
		if (!manual && !kv_db_needs_compaction(db)) {
			pthread_cond_wait(&db->bg_cv, &db->mu);
			continue;
		}
		if (manual)
			db->manual_compaction = 2;
		db->compacting = true;
		int r = kv_db_compact_once(db, manual);
		db->compacting = false;
		if (manual) {
			db->manual_result = r;
			db->manual_compaction = 0;
		}
		if (r) {
			kv_error("compaction failed: %s; retrying", kv_strerror(r));
			if (!manual) {
				db->bg_error = r;
				pthread_cond_broadcast(&db->bg_cv);
				if (!db->shutting_down)
					timed_wait(db, 1000);
			}
		} else if (db->bg_error && !db->nimm) {
			db->bg_error = 0;
		}
		pthread_cond_broadcast(&db->bg_cv);
	}
	pthread_mutex_unlock(&db->mu);
	return NULL;
}

int kv_lsm_flush(struct kv_lsm *db)
{
	int r = kv_db_switch_memtable_now(db);
	if (r)
		return r;
	pthread_mutex_lock(&db->mu);
	if (db->opt.deterministic) {
		r = kv_db_background_inline(db);
	} else {
		while (db->nimm > 0 && !db->bg_error)
			pthread_cond_wait(&db->bg_cv, &db->mu);
		r = db->nimm > 0 ? db->bg_error : 0;
	}
	pthread_mutex_unlock(&db->mu);
	return r;
}

int kv_lsm_compact(struct kv_lsm *db)
{
	int r = kv_lsm_flush(db);
	if (r)
		return r;
	pthread_mutex_lock(&db->mu);
	if (db->opt.deterministic) {
		db->compacting = true;
		r = kv_db_compact_once(db, true);
		db->compacting = false;
		if (!r)
			r = kv_db_background_inline(db);
	} else {
		while (db->manual_compaction)
			pthread_cond_wait(&db->bg_cv, &db->mu);
		db->manual_compaction = 1;
		pthread_cond_broadcast(&db->bg_cv);
		while (db->manual_compaction)
			pthread_cond_wait(&db->bg_cv, &db->mu);
		r = db->manual_result;
	}
	pthread_mutex_unlock(&db->mu);
	return r;
}

/* ---- Recovery ------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Replays one log into db->mem, flushing to @edit when the memtable fills. */
static int replay_log(struct kv_lsm *db, uint64_t number, struct kv_version_edit *edit,
		      struct kv_lsm_open_report *rep)
{
	char path[PATH_MAX_LEN];
	kv_db_log_path(path, sizeof path, db->dir, number);
	struct kv_file *f = NULL;
	struct kv_wal_reader *rd = NULL;
	struct kv_buf rec = KV_BUF_INIT;
	int r = kv_vfs_open(db->vfs, path, KV_VFS_READ, &f);
	if (r)
		goto out;
	r = kv_wal_reader_new(f, number, &rd);
	if (r)
		goto out;
	for (;;) {
		r = kv_wal_read(rd, &rec);
		if (r <= 0)
			break;
		uint64_t last = 0;
		r = kv_db_apply_group(db->mem.mem, kv_buf_slice(&rec), &last);
		if (r == KV_ECORRUPT) {
			/* A record that passed its checksum but does not parse. */
			kv_error("%s: a write group does not parse; skipped", path);
			rep->wal_bad_regions++;
			rep->wal_bytes_skipped += rec.n;
			continue;
		}
		if (r)
			break;
		rep->wal_records++;
		if (last >= db->next_seq)
			db->next_seq = last + 1;
		if (kv_memtable_bytes(db->mem.mem) >= db->opt.memtable_bytes) {
			struct kv_iter *it = kv_memtable_iter(db->mem.mem);
			if (!it) {
				r = -ENOMEM;
				break;
			}
			kv_iter_seek_first(it);
			uint64_t written = 0;
			r = kv_db_write_tables(db, it, NULL, NULL, 0, edit, &written);
			kv_iter_destroy(it);
			if (r)
				break;
			atomic_fetch_add_explicit(&db->c.flush_bytes, written, memory_order_relaxed);
			struct kv_memtable *fresh = kv_memtable_new();
			if (!fresh) {
				r = -ENOMEM;
				break;
			}
			kv_memtable_unref(db->mem.mem);
			db->mem.mem = fresh;
		}
	}
	if (r == 0) {
		struct kv_wal_stats st;
		kv_wal_reader_stats(rd, &st);
		rep->wal_bytes_skipped += st.bytes_skipped;
		rep->wal_bad_regions += st.bad_regions;
		if (st.torn_tail)
			rep->wal_torn_tail = true;
		if (st.bad_regions || st.bytes_skipped)
			kv_warn("%s: skipped %" PRIu64 " damaged bytes in %" PRIu64 " places", path,
				st.bytes_skipped, st.bad_regions);
	}
out:
	if (rd)
		kv_wal_reader_free(rd);
	kv_file_close(f);
	kv_buf_release(&rec);
	return r;
}

/* Adds the manifest's tables to @edit, quarantining the unreadable ones. */
static int load_tables(struct kv_lsm *db, const struct kv_manifest *m, struct kv_version_edit *edit,
		       struct kv_lsm_open_report *rep)
{
	for (size_t i = 0; i < m->ntables; i++) {
		const struct kv_manifest_table *mt = &m->tables[i];
		struct kv_table *t = NULL;
		int r = open_table(db, mt->file_number, mt->file_size, &t);
		if (r == KV_ECORRUPT || r == -ENOENT) {
			move_to_quarantine(db, mt->file_number, r == KV_ECORRUPT ? "corrupt" : "missing");
			rep->tables_quarantined++;
			continue;
		}
		if (r)
			return r;
		struct kv_file_meta *fm = kv_file_meta_new(&db->table_env, mt->file_number, mt->file_size, mt->entries,
							   kv_buf_slice(&mt->smallest),
							   kv_buf_slice(&mt->largest), t);
		if (!fm)
			return -ENOMEM;
		r = kv_version_edit_add(edit, (int)mt->level, fm);
		kv_file_meta_unref(fm);
		if (r)
			return r;
	}
	return 0;
}

/* Removes tables and logs that no manifest names (leftovers of a crash). */
static void remove_strays(struct kv_lsm *db, const struct kv_version_edit *live, uint64_t log_number)
{
	char **names = NULL;
	size_t count = 0;
	if (kv_vfs_list(db->vfs, db->dir, &names, &count))
		return;
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX_LEN];
		uint64_t n = kv_db_parse_numbered(names[i], ".sst");
		if (n) {
			bool used = false;
			for (size_t j = 0; j < live->nadded && !used; j++)
				used = live->added[j].file->number == n;
			if (!used) {
				kv_table_path(path, sizeof path, db->dir, n);
				kv_vfs_remove(db->vfs, path);
			}
			continue;
		}
		n = kv_db_parse_numbered(names[i], ".log");
		if (n && n < log_number) {
			kv_db_log_path(path, sizeof path, db->dir, n);
			kv_vfs_remove(db->vfs, path);
		}
	}
	kv_vfs_names_free(names, count);
}

/* Logs numbered >= @from, sorted; *out is malloc'd. Also raises next_file. */
static int list_logs(struct kv_lsm *db, uint64_t from, uint64_t **out, size_t *n)
{
	char **names = NULL;
	size_t count = 0;
	int r = kv_vfs_list(db->vfs, db->dir, &names, &count);
	if (r)
		return r;
	uint64_t *logs = malloc((count ? count : 1) * sizeof *logs);
	if (!logs) {
		kv_vfs_names_free(names, count);
		return -ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < count; i++) {
		uint64_t num = kv_db_parse_numbered(names[i], ".log");
		if (!num)
			num = kv_db_parse_numbered(names[i], ".sst");
		else if (num >= from)
			logs[k++] = num;
		if (num >= atomic_load(&db->next_file))
			atomic_store(&db->next_file, num + 1);
	}
	kv_vfs_names_free(names, count);
	qsort(logs, k, sizeof *logs, cmp_u64);
	*out = logs;
	*n = k;
	return 0;
}

/*
 * Staggered switches. The replicas of a key receive the same writes, so with
 * one memtable size they would fill their memtables, switch logs and flush
 * at the same moments: a test cluster's one disk then takes three flushes at
 * once, every replica's commit-log syncs are slow together, and a quorum
 * write, which waits for two of them, waits for a slow one. With threads
 * each memtable is switched at a size drawn between 3/4 and 5/4 of
 * memtable_bytes (the mean stays memtable_bytes), so replicas drift apart
 * from their first flush on and a write quorum finds replicas that are not
 * flushing. Deterministic mode switches at memtable_bytes exactly.
 */
void kv_db_next_switch(struct kv_lsm *db)
{
	size_t m = db->opt.memtable_bytes;
	if (db->opt.deterministic) {
		db->switch_bytes = m;
		return;
	}
	db->switch_bytes = m - m / 4 + (size_t)kv_rng_below(&db->stagger_rng, m / 2 + 1);
}

/* How far ahead of its records a log is written: an eighth of a memtable,
 * between 64 KiB and KV_DB_LOG_AHEAD. */
static uint32_t log_ahead_step(const struct kv_lsm *db)
{
	uint64_t step = db->opt.memtable_bytes / 8;
	if (step < (64u << 10))
		step = 64u << 10;
	if (step > KV_DB_LOG_AHEAD)
		step = KV_DB_LOG_AHEAD;
	return (uint32_t)step;
}

/* Starts a new WAL: the ready log if there is one (named and durable
 * already: only opened), else in a spare file if there is one, or a new file,
 * whose directory entry it makes durable. mu not needed (open) or held by the
 * switching leader. */
int kv_db_new_log(struct kv_lsm *db, uint64_t *number_out)
{
	char path[PATH_MAX_LEN];
	struct kv_file *f = NULL;
	struct kv_wal_writer *w = NULL;
	int r = -ENOENT;
	uint64_t number = db->ready_log;
	db->ready_log = 0;
	if (number) {
		kv_db_log_path(path, sizeof path, db->dir, number);
		r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE, &f);
		if (!r) {
			atomic_fetch_add_explicit(&db->c.logs_ready, 1, memory_order_relaxed);
			goto opened;
		}
		kv_warn("ready log %s: %s; starting another", path, kv_strerror(r));
		kv_db_trash(db, path);
	}
	number = atomic_fetch_add(&db->next_file, 1);
	kv_db_log_path(path, sizeof path, db->dir, number);
	uint64_t spare = kv_db_take_spare(db);
	if (spare) {
		/* Overwritten in place; what is left of the old contents reads
		 * as stale (db_recycle.c). */
		char from[PATH_MAX_LEN];
		kv_db_spare_path(from, sizeof from, db->dir, spare);
		r = kv_vfs_rename(db->vfs, from, path);
		if (!r)
			r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE, &f);
		if (!r)
			atomic_fetch_add_explicit(&db->c.logs_recycled, 1, memory_order_relaxed);
	}
	if (r)
		r = kv_vfs_open(db->vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f);
	if (r)
		return r;
	r = kv_vfs_sync_dir(db->vfs, db->dir);
opened:
	if (!r)
		r = kv_wal_writer_new(f, number, 0, &w);
	if (r) {
		kv_file_close(f);
		kv_vfs_remove(db->vfs, path);
		return r;
	}
	uint64_t size = 0;
	if (!db->opt.deterministic && kv_file_size(f, &size) == 0)
		kv_wal_writer_ahead(w, size, log_ahead_step(db));
	if (db->wal) {
		(void)kv_wal_finish(db->wal); /* unsynced: a lost END reads as a torn tail */
		kv_wal_writer_free(db->wal);
	}
	kv_file_close(db->wal_file);
	db->wal = w;
	db->wal_file = f;
	db->wal_number = number;
	*number_out = number;
	return 0;
}

static int recover(struct kv_lsm *db, struct kv_lsm_open_report *rep)
{
	struct kv_manifest m;
	struct kv_version_edit edit;
	uint64_t *logs = NULL;
	size_t nlogs = 0;
	kv_manifest_init(&m);
	kv_version_edit_init(&edit);

	int r = kv_manifest_load(db->vfs, db->dir, &m);
	if (r == KV_ENOTFOUND) {
		if (!db->opt.create_if_missing) {
			r = -ENOENT;
			goto out;
		}
		m.next_file_number = 1;
		m.last_sequence = 0;
		m.log_number = 0;
		r = 0;
	}
	if (r)
		goto out;
	for (size_t i = 0; i < m.nprops && !r; i++)
		r = kv_manifest_set_prop(&db->props, m.props[i].name, m.props[i].value);
	if (r)
		goto out;
	atomic_store(&db->next_file, m.next_file_number ? m.next_file_number : 1);
	db->next_seq = m.last_sequence + 1;
	if ((r = load_tables(db, &m, &edit, rep)))
		goto out;
	if ((r = list_logs(db, m.log_number, &logs, &nlogs)))
		goto out;
	for (size_t i = 0; i < nlogs; i++)
		if ((r = replay_log(db, logs[i], &edit, rep)))
			goto out;
	/* Replayed writes go into a table, so the old logs can go. */
	if (kv_memtable_count(db->mem.mem) > 0) {
		struct kv_iter *it = kv_memtable_iter(db->mem.mem);
		if (!it) {
			r = -ENOMEM;
			goto out;
		}
		kv_iter_seek_first(it);
		uint64_t written = 0;
		r = kv_db_write_tables(db, it, NULL, NULL, 0, &edit, &written);
		kv_iter_destroy(it);
		if (r)
			goto out;
		atomic_fetch_add_explicit(&db->c.flush_bytes, written, memory_order_relaxed);
		struct kv_memtable *fresh = kv_memtable_new();
		if (!fresh) {
			r = -ENOMEM;
			goto out;
		}
		kv_memtable_unref(db->mem.mem);
		db->mem.mem = fresh;
	}
	remove_strays(db, &edit, m.log_number);
	uint64_t log_number;
	if ((r = kv_db_new_log(db, &log_number)))
		goto out;
	db->mem.log_number = log_number;
	pthread_mutex_lock(&db->install_mu);
	r = install_locked(db, &edit, log_number);
	if (!r)
		remove_old_logs(db, log_number);
	pthread_mutex_unlock(&db->install_mu);
	atomic_store(&db->last_seq, db->next_seq - 1);
	rep->possible_loss = rep->wal_bad_regions > 0 || rep->tables_quarantined > 0;
out:
	free(logs);
	kv_version_edit_release(&edit);
	kv_manifest_release(&m);
	return r;
}

/* ---- Open and close ------------------------------------------------------- */

/* Syncs the directory that holds @dir, so a new @dir survives a crash. */
static int sync_parent(struct kv_vfs *vfs, const char *dir)
{
	char parent[PATH_MAX_LEN];
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--; /* trailing slashes */
	while (n > 0 && dir[n - 1] != '/')
		n--; /* the last component */
	while (n > 1 && dir[n - 1] == '/')
		n--; /* the slashes before it */
	if (n >= sizeof parent)
		return -ENAMETOOLONG;
	if (n == 0) {
		parent[0] = '.';
		n = 1;
	} else {
		memcpy(parent, dir, n);
	}
	parent[n] = '\0';
	return kv_vfs_sync_dir(vfs, parent);
}

static void db_free(struct kv_lsm *db)
{
	if (db->wal) {
		/* A clean end, so the next open reads no torn tail even in a
		 * recycled file (nothing when the writer failed). */
		if (kv_wal_finish(db->wal) == 0)
			(void)kv_wal_sync(db->wal);
		kv_wal_writer_free(db->wal);
	}
	kv_file_close(db->wal_file);
	if (db->mem.mem)
		kv_memtable_unref(db->mem.mem);
	for (unsigned i = 0; i < db->nimm; i++)
		kv_memtable_unref(db->imm[i].mem);
	free(db->imm);
	kv_version_unref(db->current);
	for (int l = 0; l < KV_LSM_LEVELS; l++)
		kv_buf_release(&db->compact_pointer[l]);
	if (db->cache)
		kv_cache_free(db->cache);
	kv_buf_release(&db->group_buf);
	kv_manifest_release(&db->props);
	while (kv_db_empty_trash_once(db, false))
		;
	free(db->trash);
	pthread_mutex_destroy(&db->trash_mu);
	kv_file_close(db->lock_file);
	pthread_mutex_destroy(&db->mu);
	pthread_mutex_destroy(&db->install_mu);
	pthread_cond_destroy(&db->bg_cv);
	pthread_cond_destroy(&db->commit_cv);
	free(db->dir);
	free(db);
}

/* Starts the flush, compaction and commit threads: all three or none. */
static int start_threads(struct kv_lsm *db)
{
	static void *(*const mains[3])(void *) = { flush_main, compact_main, kv_db_commit_main };
	/* Named for top -H, perf and /proc/PID/task/TID/comm (15 bytes at most). */
	static const char *const names[3] = { "kv-flush", "kv-compact", "kv-commit" };
	pthread_t *threads[3] = { &db->flush_thread, &db->compact_thread, &db->commit_thread };
	int started = 0, r = 0;
	for (; started < 3; started++) {
		if ((r = -pthread_create(threads[started], NULL, mains[started], db)))
			break;
		(void)pthread_setname_np(*threads[started], names[started]);
	}
	if (!r)
		return 0;
	pthread_mutex_lock(&db->mu);
	db->shutting_down = true;
	pthread_cond_broadcast(&db->bg_cv);
	pthread_cond_broadcast(&db->commit_cv);
	pthread_mutex_unlock(&db->mu);
	while (started > 0)
		pthread_join(*threads[--started], NULL);
	return r;
}

int kv_lsm_open(const char *dir, const struct kv_lsm_options *opts, struct kv_lsm **out,
		struct kv_lsm_open_report *report)
{
	struct kv_lsm_open_report scratch;
	struct kv_lsm_open_report *rep = report ? report : &scratch;
	memset(rep, 0, sizeof *rep);
	*out = NULL;

	struct kv_lsm *db = calloc(1, sizeof *db);
	if (!db)
		return -ENOMEM;
	if (opts)
		db->opt = *opts;
	else
		kv_lsm_options_init(&db->opt);
	if (db->opt.memtable_bytes < 4096)
		db->opt.memtable_bytes = 4096;
	kv_rng_seed(&db->stagger_rng, kv_now_ns() ^ (uint64_t)(uintptr_t)db ^ ((uint64_t)getpid() << 32));
	kv_db_next_switch(db);
	if (db->opt.max_immutable < 1)
		db->opt.max_immutable = 1;
	if (db->opt.max_immutable > 16)
		db->opt.max_immutable = 16; /* a read pins at most 17 memtables */
	if (db->opt.l0_compaction_trigger < 2)
		db->opt.l0_compaction_trigger = 2;
	if (db->opt.l0_stop <= db->opt.l0_compaction_trigger)
		db->opt.l0_stop = db->opt.l0_compaction_trigger + 1;
	if (db->opt.level_multiplier < 2)
		db->opt.level_multiplier = 2;
	if (db->opt.table_bytes < 4096)
		db->opt.table_bytes = 4096;
	db->vfs = db->opt.vfs ? db->opt.vfs : kv_vfs_posix();
	pthread_mutex_init(&db->mu, NULL);
	pthread_mutex_init(&db->install_mu, NULL);
	pthread_mutex_init(&db->trash_mu, NULL);
	pthread_cond_init(&db->bg_cv, NULL);
	pthread_cond_init(&db->commit_cv, NULL);
	db->snapshots.next = db->snapshots.prev = &db->snapshots;
	kv_buf_init(&db->group_buf);
	kv_manifest_init(&db->props);
	atomic_init(&db->next_file, 1);
	atomic_init(&db->last_seq, 0);

	int r = -ENOMEM;
	if (!(db->dir = strdup(dir)))
		goto fail;
	r = kv_vfs_mkdir(db->vfs, dir);
	if (r && r != -EEXIST)
		goto fail;
	/* The directory's own entry must be durable before any write in it
	 * is acknowledged; also when an earlier open made it and failed. */
	if ((r = sync_parent(db->vfs, dir)))
		goto fail;
	char path[PATH_MAX_LEN];
	snprintf(path, sizeof path, "%s/LOCK", dir);
	r = kv_vfs_lock(db->vfs, path, &db->lock_file);
	if (r) {
		if (r == -EBUSY)
			r = KV_EBUSY;
		goto fail;
	}
	if (db->opt.block_cache_bytes) {
		r = -ENOMEM;
		if ((r = kv_cache_new(db->opt.block_cache_bytes, &db->cache)))
			goto fail;
	}
	db->table_env.vfs = db->vfs;
	db->table_env.dir = db->dir;
	db->table_env.cache = db->cache;
	db->table_env.trash = kv_db_table_trash;
	r = -ENOMEM;
	if (!(db->current = kv_version_new()) || !(db->mem.mem = kv_memtable_new()))
		goto fail;
	if (!(db->imm = calloc(db->opt.max_immutable + 1, sizeof *db->imm)))
		goto fail;

	if ((r = recover(db, rep)))
		goto fail;

	if (!db->opt.deterministic) {
		db->trash_deferred = true; /* before any thread can call kv_db_trash */
		kv_db_adopt_spares(db);
		r = start_threads(db);
		if (r)
			goto fail;
		db->threads_started = true;
	}
	/* Possibly a newer compaction is due after recovery. */
	pthread_mutex_lock(&db->mu);
	if (db->opt.deterministic)
		r = kv_db_background_inline(db);
	else
		pthread_cond_broadcast(&db->bg_cv);
	/* Tables that compaction found corrupt just now count as found by open
	 * (deterministic mode; the threads report theirs in the stats). */
	rep->tables_quarantined += db->quarantined;
	if (db->quarantined)
		rep->possible_loss = true;
	pthread_mutex_unlock(&db->mu);
	if (r) {
		kv_lsm_close(db);
		return r;
	}
	*out = db;
	return 0;
fail:
	db_free(db);
	return r;
}

int kv_lsm_close(struct kv_lsm *db)
{
	if (!db)
		return 0;
	pthread_mutex_lock(&db->mu);
	/* Let queued asynchronous writes finish first. */
	db->closing = true;
	pthread_cond_signal(&db->commit_cv); /* deferred writes nobody committed */
	while (db->wq_head)
		pthread_cond_wait(&db->bg_cv, &db->mu);
	db->shutting_down = true;
	pthread_cond_broadcast(&db->bg_cv);
	pthread_cond_broadcast(&db->commit_cv);
	int err = db->bg_error;
	pthread_mutex_unlock(&db->mu);
	if (db->threads_started) {
		pthread_join(db->flush_thread, NULL);
		pthread_join(db->compact_thread, NULL);
		pthread_join(db->commit_thread, NULL);
	}
	db_free(db);
	return err;
}

void kv_lsm_get_stats(struct kv_lsm *db, struct kv_lsm_stats *out)
{
	memset(out, 0, sizeof *out);
#define LOAD(x) atomic_load_explicit(&db->c.x, memory_order_relaxed)
	out->user_bytes = LOAD(user_bytes);
	out->wal_bytes = LOAD(wal_bytes);
	out->flush_bytes = LOAD(flush_bytes);
	out->compaction_bytes_read = LOAD(compaction_read);
	out->compaction_bytes_written = LOAD(compaction_written);
	out->manifest_bytes = LOAD(manifest_bytes);
	out->stalls = LOAD(stalls);
	out->stall_ns = LOAD(stall_ns);
	out->wal_syncs = LOAD(wal_syncs);
	out->write_groups = LOAD(write_groups);
	out->writes = LOAD(writes);
	out->flushes = LOAD(flushes);
	out->compactions = LOAD(compactions);
	out->logs_recycled = LOAD(logs_recycled);
	out->logs_ready = LOAD(logs_ready);
#undef LOAD
	pthread_mutex_lock(&db->mu);
	for (int l = 0; l < KV_LSM_LEVELS; l++) {
		out->tables[l] = (unsigned)db->current->nfiles[l];
		out->level_bytes[l] = kv_version_level_bytes(db->current, l);
		out->live_bytes += out->level_bytes[l];
	}
	out->memtable_bytes = kv_memtable_bytes(db->mem.mem);
	out->immutables = db->nimm;
	out->spare_logs = db->nspares;
	out->next_log_ready = db->ready_log != 0;
	out->quarantined = db->quarantined;
	out->background_error = db->bg_error;
	pthread_mutex_unlock(&db->mu);
	out->last_sequence = atomic_load(&db->last_seq);
	if (db->cache) {
		struct kv_cache_stats cs;
		kv_cache_get_stats(db->cache, &cs);
		out->cache_hits = cs.hits;
		out->cache_misses = cs.misses;
	}
	out->bloom_skips = atomic_load_explicit(&db->table_stats.bloom_skips, memory_order_relaxed);
}
