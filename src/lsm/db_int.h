/*
 * db_int.h - the engine's private state, shared by db.c (open, recovery,
 * writes, reads, flushes) and compaction.c. Not part of the API: lsm.h is.
 */
#ifndef KV_LSM_DB_INT_H
#define KV_LSM_DB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/lsm.h"
#include "lsm/manifest.h"
#include "lsm/memtable.h"
#include "lsm/version.h"
#include "lsm/wal.h"
#include "util/rng.h"

/* A memtable and the number of the first WAL that holds its writes. */
struct db_mem {
	struct kv_memtable *mem;
	uint64_t log_number;
};

struct kv_lsm_snapshot {
	uint64_t seq;
	struct kv_lsm_snapshot *prev, *next;
};

struct writer;

/* Counters kept with relaxed atomics; read by kv_lsm_get_stats(). */
/* Spare log files kept for reuse (db_recycle.c). */
#define KV_DB_SPARES 2
/*
 * A log is kept written up to this far ahead of its records
 * (kv_wal_writer_ahead; an eighth of a memtable, at least 64 KiB), so that a
 * fresh store's first log, or a log that outgrows its spare, overwrites in
 * place as a recycled one does. Not in deterministic mode.
 */
#define KV_DB_LOG_AHEAD (1u << 20)

struct db_counters {
	_Atomic uint64_t user_bytes, wal_bytes, flush_bytes, compaction_read, compaction_written,
		manifest_bytes, stalls, stall_ns, wal_syncs, write_groups, writes, flushes,
		compactions, logs_recycled, logs_ready;
};

struct kv_lsm {
	char *dir;
	struct kv_lsm_options opt;
	struct kv_vfs *vfs;
	struct kv_file *lock_file;
	struct kv_cache *cache;          /* may be NULL */
	struct kv_table_env table_env;
	struct kv_table_stats table_stats;

	/*
	 * Lock order: install_mu before mu. install_mu serializes the
	 * installation of new versions (a manifest write each); mu guards
	 * everything below marked "mu".
	 */
	pthread_mutex_t install_mu;
	pthread_mutex_t mu;
	pthread_cond_t bg_cv;            /* background state changed (mu) */
	pthread_cond_t commit_cv;        /* wakes the async committer (mu) */

	/* Write path. */
	struct writer *wq_head, *wq_tail; /* queue of pending writers (mu) */
	bool leader_active;              /* someone is committing a group (mu) */
	struct db_mem mem;               /* active memtable (pointer: mu; contents: the leader) */
	struct db_mem *imm;              /* immutable memtables, oldest first (mu) */
	unsigned nimm;                   /* (mu) */
	struct kv_file *wal_file;        /* (the leader, or mu when switching) */
	struct kv_wal_writer *wal;
	uint64_t wal_number;
	int wal_error;                   /* the WAL failed; switch before the next write (mu) */
	uint64_t next_seq;               /* next sequence to hand out (mu) */
	_Atomic uint64_t last_seq;       /* highest sequence visible to readers */
	uint64_t last_sync_ns;           /* for KV_SYNC_BATCH (leader) */
	_Atomic uint64_t sync_avg_ns;    /* moving average of the WAL syncs' durations
					  * (written by the leader, read by anyone) */
	struct kv_buf group_buf;         /* the leader's WAL record buffer */

	/* Tables. */
	struct kv_version *current;      /* (mu; replaced under install_mu too) */
	_Atomic uint64_t next_file;      /* next file number to hand out */
	uint64_t manifest_log_number;    /* oldest WAL still needed, as stored (install_mu) */
	struct kv_manifest props;        /* properties carried from manifest to
					  * manifest, even unknown ones (install_mu) */
	struct kv_buf compact_pointer[KV_LSM_LEVELS]; /* round-robin per level (compaction) */

	/* Snapshots, oldest first (mu). */
	struct kv_lsm_snapshot snapshots; /* list head */

	/* Background work. */
	pthread_t flush_thread, compact_thread, commit_thread;
	bool threads_started;
	bool closing;                    /* close() waits for the queue (mu) */
	bool shutting_down;              /* (mu) */
	bool flushing;                   /* a flush is running (mu) */
	bool compacting;                 /* a compaction is running (mu) */
	int manual_compaction;           /* 1 requested, 2 running (mu) */
	int manual_result;               /* (mu) */
	int bg_error;                    /* flush/compaction failure; writes fail (mu) */
	uint64_t pace_ns;                /* when background writing may go on (mu) */

	/* Files to delete, oldest first (trash_mu, which nests inside anything). */
	pthread_mutex_t trash_mu;
	bool trash_deferred;             /* set once before the threads start */
	char **trash;
	size_t ntrash, trash_cap;
	uint64_t spares[KV_DB_SPARES];   /* spare logs' numbers (mu) */
	unsigned nspares;                /* (mu) */
	size_t switch_bytes;             /* the active memtable is switched at this size:
					  * memtable_bytes, or within a quarter of it with
					  * threads (kv_db_next_switch) (mu) */
	struct kv_rng stagger_rng;       /* for switch_bytes (mu) */
	uint64_t ready_log;              /* a log already named and durable in the
					  * directory, for the next switch; 0: none (mu) */
	unsigned quarantined;            /* (mu) */

	struct db_counters c;
};

/* "NNNNNN.log" in @dir. */
void kv_db_log_path(char *out, size_t n, const char *dir, uint64_t number);
/* Parses "NNNNNN.ext" names; returns the number or 0 if @name is not one. */
uint64_t kv_db_parse_numbered(const char *name, const char *ext);

/*
 * Background pacing (db.c): waits as long as writing @n more background
 * bytes takes at opt.background_bytes_per_sec, unless writers are near
 * waiting for the background work. mu not held.
 */
void kv_db_pace(struct kv_lsm *db, uint64_t n);

/* ---- db_recycle.c: files the engine is done with --------------------------- */

/*
 * Queues the file at @path for deletion by the flush thread, a MiB at a
 * time; deletes it at once without threads. Any thread, any lock held.
 */
void kv_db_trash(struct kv_lsm *db, const char *path);
/* The kv_table_env hook: kv_db_trash for the engine owning @env. */
void kv_db_table_trash(struct kv_table_env *env, const char *path);
/* Deletes the oldest queued file (mu not held); false if there was none. */
bool kv_db_empty_trash_once(struct kv_lsm *db, bool gently);

/* "NNNNNN.spare" in @dir. */
void kv_db_spare_path(char *out, size_t n, const char *dir, uint64_t number);
/* Pops a spare log's number, 0 if none (mu held, or no threads yet). */
uint64_t kv_db_take_spare(struct kv_lsm *db);
/* Log @number at @path is no longer needed: a spare, or trash (mu not held). */
void kv_db_retire_log(struct kv_lsm *db, uint64_t number, const char *path);
/*
 * Names the next log ahead of time (a spare renamed, or an empty file) and
 * makes its directory entry durable, so that the switch to it only opens it
 * (db_recycle.c, "Ready logs"). Flush thread, mu not held; false if there
 * was nothing to do.
 */
bool kv_db_prepare_ready_log(struct kv_lsm *db);
/* Picks db->switch_bytes for the memtable just started (mu held or open). */
void kv_db_next_switch(struct kv_lsm *db);
/* At open, after recovery: keeps the spares found (threads only), deletes the rest. */
void kv_db_adopt_spares(struct kv_lsm *db);

/* ---- compaction.c -------------------------------------------------------- */

/* True if the current version wants an automatic compaction (mu held). */
bool kv_db_needs_compaction(struct kv_lsm *db);

/*
 * Picks and runs one compaction (automatic, or every table when @manual).
 * Called with mu held and db->compacting set by the caller; drops mu while
 * working. Returns 0 (also when there was nothing to do) or an error.
 */
int kv_db_compact_once(struct kv_lsm *db, bool manual);

/* ---- db.c, for compaction.c ---------------------------------------------- */

/*
 * Installs current + @edit as the new version and writes the manifest.
 * Called with install_mu held and mu NOT held. On success marks the tables
 * that @edit removed as obsolete.
 */
int kv_db_install(struct kv_lsm *db, struct kv_version_edit *edit);

/*
 * Writes the entries of @it (internal keys, in order) into new tables of at
 * most opt.table_bytes each, cut only between user keys; @keep decides per
 * entry (NULL keeps all). Adds each new table to @edit at @level. Returns 0
 * or an error (and then removes the tables it wrote).
 */
typedef bool (*kv_db_keep_fn)(void *arg, struct kv_slice ikey);
int kv_db_write_tables(struct kv_lsm *db, struct kv_iter *it, kv_db_keep_fn keep, void *arg, int level,
		       struct kv_version_edit *edit, uint64_t *bytes_written);

/* ---- db.c and db_write.c, for each other ---------------------------------- */

/* Flushes and compacts inline what is due (deterministic mode). mu held. */
int kv_db_background_inline(struct kv_lsm *db);

/*
 * Creates WAL number next_file++, syncs the directory, and makes it the
 * engine's log (freeing the previous writer). Caller: open, or the leader
 * with mu held.
 */
int kv_db_new_log(struct kv_lsm *db, uint64_t *number_out);

/* Makes the active memtable immutable (if it holds anything) now. */
int kv_db_switch_memtable_now(struct kv_lsm *db);

/* The thread that commits groups led by asynchronous writes. */
void *kv_db_commit_main(void *arg);

/*
 * Applies one WAL record (a write group, doc/storage-format.md#write-group)
 * to @mem. *last_seq gets the sequence of its last entry. Returns 0,
 * KV_ECORRUPT if it does not parse (then nothing was applied), or -ENOMEM.
 */
int kv_db_apply_group(struct kv_memtable *mem, struct kv_slice rec, uint64_t *last_seq);

/* Moves table @number to quarantine/ and drops it from the current version. */
void kv_db_quarantine(struct kv_lsm *db, uint64_t number);

#endif
