/*
 * lsm.h - the kvfs storage engine: a log-structured merge tree (DESIGN §6).
 *
 * Write path: commit log (WAL) -> memtable -> immutable memtable -> SSTable
 * flush -> leveled compaction. Read path: memtable, immutable memtables, then
 * SSTables newest first, each behind its bloom filter, through a block cache.
 * Formats: doc/storage-format.md.
 *
 * The engine stores opaque keys and values; it knows nothing of versions or
 * of the cluster. A delete here is the engine's own delete marker; kvfs
 * tombstones are ordinary values to it.
 *
 * Threads: every function may be called from any thread, concurrently, except
 * kv_lsm_close(), which must be the last call. Readers never block writers.
 * Background work runs on one flush thread and one compaction thread, or,
 * with options.deterministic, inline inside the calls that caused it (no
 * threads at all, so a simulator replays a run exactly).
 */
#ifndef KV_LSM_LSM_H
#define KV_LSM_LSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/iter.h"
#include "lsm/vfs.h"
#include "util/slice.h"

#define KV_LSM_LEVELS 7

struct kv_lsm;
struct kv_lsm_batch;
struct kv_lsm_snapshot;

enum kv_sync_mode {
	KV_SYNC_ALWAYS = 0, /* fsync before acknowledging each write group */
	KV_SYNC_BATCH = 1,  /* gather writes for up to sync_batch_ms, then one
			     * fsync; still acknowledge only after that fsync */
	KV_SYNC_NONE = 2,   /* write(2) only; a power cut may lose recent writes */
};

struct kv_lsm_options {
	struct kv_vfs *vfs;          /* NULL: the real file system */
	size_t memtable_bytes;       /* default 16 MiB */
	size_t block_cache_bytes;    /* default 32 MiB; 0 disables the cache */
	unsigned bloom_bits_per_key; /* default 10; 0 disables bloom filters */
	size_t block_bytes;          /* data block target, default 4 KiB: a
				      * point read that misses the cache
				      * inflates one block (doc/benchmarks.md) */
	bool compress;               /* lz4 data blocks, default true */
	enum kv_sync_mode sync;      /* default KV_SYNC_ALWAYS */
	unsigned sync_batch_ms;      /* for KV_SYNC_BATCH; default 2 */
	unsigned max_immutable;      /* immutable memtables before writes wait
				      * (never fail); default 2 */
	unsigned l0_compaction_trigger; /* default 4 tables */
	unsigned l0_slowdown;        /* writes slow down 1 ms each, default 20 */
	unsigned l0_stop;            /* writes wait for compaction, default 36 */
	uint64_t level1_bytes;       /* default 64 MiB */
	unsigned level_multiplier;   /* default 10 */
	uint64_t table_bytes;        /* target SSTable size, default 32 MiB */
	/*
	 * Pace of flushes and compactions together in bytes/s; default 0: as
	 * fast as they go. Dropped while writers are near waiting for them
	 * (db.c, "Background pacing").
	 */
	uint64_t background_bytes_per_sec;
	bool deterministic;          /* flush and compact inline, no threads */
	bool create_if_missing;      /* default true */
};

/* Fills @o with the defaults above. */
void kv_lsm_options_init(struct kv_lsm_options *o);

/*
 * Parses a sync policy: "always", "none" or "batch:<ms>". Returns 0 or
 * KV_EINVAL.
 */
int kv_lsm_parse_sync(const char *s, enum kv_sync_mode *mode, unsigned *batch_ms);

/* What recovery found, filled in by kv_lsm_open(). */
struct kv_lsm_open_report {
	uint64_t wal_records;        /* write groups replayed from the WAL */
	uint64_t wal_bytes_skipped;  /* bytes of damaged WAL skipped */
	uint64_t wal_bad_regions;    /* damaged stretches followed by good data */
	bool wal_torn_tail;          /* the log ended in a half-written record */
	unsigned tables_quarantined; /* unreadable tables moved to quarantine/ */
	/*
	 * True when writes may have been lost: damage followed by good records,
	 * or a quarantined table. The node then takes a new epoch and asks for
	 * a full anti-entropy pass (DESIGN §4, §6). A torn tail alone is the
	 * normal result of a crash and does not set this.
	 */
	bool possible_loss;
};

/*
 * Opens (creating if allowed) the database in @dir. @opts may be NULL for the
 * defaults; @report may be NULL. On success *out owns the engine; close it
 * with kv_lsm_close(). Fails with KV_EBUSY when another process has it open,
 * KV_ECORRUPT when the manifest is unreadable.
 */
int kv_lsm_open(const char *dir, const struct kv_lsm_options *opts, struct kv_lsm **out,
		struct kv_lsm_open_report *report);

/*
 * Waits for background work to stop, flushes nothing (the WAL holds the
 * memtable), frees everything. Returns the first background error, if any.
 */
int kv_lsm_close(struct kv_lsm *db);

/* ---- Writes -------------------------------------------------------------- */

/* Keys are at most KV_LSM_MAX_KEY bytes, values at most KV_LSM_MAX_VALUE. */
#define KV_LSM_MAX_KEY (64u * 1024)
#define KV_LSM_MAX_VALUE (64u * 1024 * 1024)

/*
 * Single writes; durable under the sync policy when they return 0.
 * KV_ETOOBIG for an oversize key or value; a negative errno when the WAL
 * could not be written or synced (the write is then not applied).
 */
int kv_lsm_put(struct kv_lsm *db, struct kv_slice key, struct kv_slice value);
int kv_lsm_delete(struct kv_lsm *db, struct kv_slice key);

/* An atomic group of puts and deletes: all are applied, or none. */
struct kv_lsm_batch *kv_lsm_batch_new(void);
void kv_lsm_batch_free(struct kv_lsm_batch *b);
void kv_lsm_batch_clear(struct kv_lsm_batch *b);
int kv_lsm_batch_put(struct kv_lsm_batch *b, struct kv_slice key, struct kv_slice value);
int kv_lsm_batch_delete(struct kv_lsm_batch *b, struct kv_slice key);
unsigned kv_lsm_batch_count(const struct kv_lsm_batch *b);

/* Applies @b atomically and durably (per the sync policy). @b is unchanged. */
int kv_lsm_write(struct kv_lsm *db, const struct kv_lsm_batch *b);

/*
 * Called once the batch is durable (status 0) or failed (negative), from
 * whichever thread committed its write group: the engine's commit thread,
 * the thread of a concurrent kv_lsm_write(), the caller of
 * kv_lsm_commit_here() (before it returns), or in deterministic mode the
 * caller of kv_lsm_write_async() (before it returns). Writes are applied in submission
 * order, but callbacks of different groups may run concurrently. The
 * callback must be quick, thread-safe (e.g.
 * uv_async_send), and must not call kv_lsm_close().
 */
typedef void (*kv_lsm_write_cb)(void *arg, int status);

/*
 * Queues @b and returns at once; many writes in flight share one WAL write
 * and one fsync (group commit). The engine takes ownership of @b and frees
 * it. Returns 0 (the callback will be called exactly once) or a negative
 * error (the callback is never called, and the caller still owns @b).
 */
int kv_lsm_write_async(struct kv_lsm *db, struct kv_lsm_batch *b, kv_lsm_write_cb cb, void *arg);

/*
 * kv_lsm_write_async() that leaves the commit to the caller: the write waits
 * in the queue until this thread calls kv_lsm_commit_here() or
 * kv_lsm_commit_kick(), so that a caller that gathers the writes of one
 * round (an event loop) commits them as one group on its own thread, with
 * no hand-off to the commit thread and back. Same return and callback
 * contract. Until then the commit thread leaves it alone; another
 * thread's kv_lsm_write() may carry it in its group, and kv_lsm_close()
 * commits what is left.
 */
int kv_lsm_write_deferred(struct kv_lsm *db, struct kv_lsm_batch *b, kv_lsm_write_cb cb, void *arg);

/*
 * Commits the queued asynchronous writes on the calling thread — one WAL
 * write and one fsync per group, callbacks run here before it returns —
 * when that needs no wait (for a memtable switch behind a flush, a
 * level-0 slowdown or stop, or the batch policy's gathering), no other
 * thread is committing, no flush or compaction is writing tables (whose
 * writes would queue in front of the sync and hold the caller), and the
 * recent syncs took 2 ms or less on average (else someone else keeps the
 * disk busy); otherwise hands them to the commit thread. It commits one
 * group (up to about 1 MiB); what does not fit goes to the commit thread
 * too. Returns 1 if it committed here, 0 if not.
 */
int kv_lsm_commit_here(struct kv_lsm *db);

/* Hands any queued writes to the commit thread. */
void kv_lsm_commit_kick(struct kv_lsm *db);

/* ---- Reads --------------------------------------------------------------- */

/*
 * A consistent view: reads through it see exactly the writes acknowledged
 * before it was taken. Release every snapshot before closing.
 */
const struct kv_lsm_snapshot *kv_lsm_snapshot(struct kv_lsm *db);
void kv_lsm_snapshot_release(struct kv_lsm *db, const struct kv_lsm_snapshot *snap);

/*
 * Reads @key as of @snap (NULL: now) into @value (reset first; the caller
 * owns it). Returns 0, KV_ENOTFOUND, or an error (KV_ECORRUPT from a damaged
 * table, which is then quarantined).
 */
int kv_lsm_get(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, struct kv_slice key,
	       struct kv_buf *value);

/*
 * kv_lsm_get() as of now, but without any file I/O, for an event loop that
 * must not block: the memtables, the tables' in-memory indexes and bloom
 * filters, and the block cache only. Returns what kv_lsm_get() would
 * (0 or KV_ENOTFOUND, same value), or -EAGAIN when a data block it needs
 * is not cached (@value empty; ask kv_lsm_get() on a thread that may block,
 * which also brings the block into the cache). It may briefly wait for the
 * engine's internal lock, never for the disk (RocksDB's kBlockCacheTier).
 */
int kv_lsm_get_cached(struct kv_lsm *db, struct kv_slice key, struct kv_buf *value);

struct kv_lsm_iter_options {
	const struct kv_lsm_snapshot *snapshot; /* NULL: a snapshot taken now */
	struct kv_slice lower;  /* first key included; empty: from the start */
	struct kv_slice upper;  /* first key excluded; empty: to the end */
	struct kv_slice prefix; /* if set, only keys with this prefix */
	bool fill_cache;        /* keep blocks read by a scan; default false */
};

/*
 * A forward iterator over live user keys in order, with their values, as of
 * one snapshot. The bounds and the prefix restrict seek_first and seek.
 * Destroy it before closing the database. @opts may be NULL.
 */
struct kv_iter *kv_lsm_iter(struct kv_lsm *db, const struct kv_lsm_iter_options *opts);

/* ---- Maintenance and figures --------------------------------------------- */

/* Flushes the memtable to an SSTable and waits for it. */
int kv_lsm_flush(struct kv_lsm *db);

/* Flushes, then compacts every level into the bottom one, and waits. */
int kv_lsm_compact(struct kv_lsm *db);

struct kv_lsm_stats {
	uint64_t user_bytes;          /* key+value bytes handed to writes */
	uint64_t wal_bytes;           /* bytes appended to the WAL */
	uint64_t flush_bytes;         /* SSTable bytes written by flushes */
	uint64_t compaction_bytes_read;
	uint64_t compaction_bytes_written;
	uint64_t manifest_bytes;
	uint64_t live_bytes;          /* sum of live SSTable sizes */
	unsigned tables[KV_LSM_LEVELS];
	uint64_t level_bytes[KV_LSM_LEVELS];
	uint64_t memtable_bytes;      /* active memtable */
	unsigned immutables;          /* memtables waiting to be flushed */
	uint64_t stalls;              /* writes that waited or were slowed */
	uint64_t stall_ns;
	uint64_t wal_syncs;
	uint64_t write_groups;
	uint64_t writes;
	uint64_t flushes;
	uint64_t logs_recycled;       /* logs started in (or readied from) a spare file */
	unsigned spare_logs;          /* spare log files ready for the next logs */
	uint64_t logs_ready;          /* logs started in a file named ahead (db_recycle.c) */
	bool next_log_ready;          /* the next log is named ahead, durable and waiting */
	uint64_t compactions;
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint64_t bloom_skips;         /* table reads avoided by a bloom filter */
	uint64_t last_sequence;
	unsigned quarantined;
	int background_error;         /* 0, or the error that stopped writes */
};

void kv_lsm_get_stats(struct kv_lsm *db, struct kv_lsm_stats *out);

#endif
