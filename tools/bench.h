/*
 * bench.h - the pieces of kvfs-bench shared between its files.
 *
 * kvfs-bench runs db_bench's benchmark shapes against the kvfs storage
 * engine (bench_kvfs.c) and against LevelDB through its C API
 * (bench_leveldb.c), through one small engine interface, so both are driven
 * by the same loop (bench_run.c) and report the same figures.
 * Method and figures: doc/benchmarks.md; flags: man/kvfs-bench.1.
 */
#ifndef KV_TOOLS_BENCH_H
#define KV_TOOLS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/slice.h"

/* ---- Flags (bench_flags.c) ------------------------------------------------ */

#define BENCH_MAX_BENCHMARKS 32

struct bench_flags {
	char benchmarks[512];      /* comma list, as given */
	int64_t num;               /* keys; ops per thread for fills */
	int64_t reads;             /* ops per thread for reads; <0: num */
	int64_t value_size;
	int64_t key_size;
	bool sync;
	int64_t threads;
	char db[4096];
	bool use_existing_db;
	int64_t write_buffer_size;
	int64_t cache_size;
	int64_t block_size;
	int64_t bloom_bits;
	char compression[16];      /* "lz4", "snappy" or "none" */
	double compression_ratio;
	int64_t seed;
	bool compact_at_end;
	bool report_rss;
	bool histogram;            /* print more percentiles */
	char sync_policy[32];      /* kvfs only: always|none|batch:MS; "" = --sync */
	int64_t inflight;          /* kvfs only: async writes in flight per thread */
	int64_t settle_ms;         /* waitforcompaction: this long with no writes */
};

/*
 * Parses argv[first..argc) into @f after filling the defaults for @engine
 * ("kvfs" or "leveldb"). On a bad flag prints one line to stderr and exits 2;
 * on --help prints the flag list and exits 0.
 */
void bench_flags_parse(struct bench_flags *f, const char *engine, int argc, char **argv,
		       int first);

/* Prints every flag with its default and meaning. */
void bench_flags_usage(FILE *out, const char *engine);

/* ---- Latency histogram (bench_hist.c) ------------------------------------ */

/*
 * Log-bucketed (HDR-like): exact below 16 ns, then 16 linear sub-buckets per
 * power of two, so any recorded value is within 1/16 (6%) of its bucket.
 * One per thread, merged at the end; not thread-safe itself.
 */
#define BENCH_HIST_BUCKETS 1024

struct bench_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/*
 * @out = the samples of @now that @then (an earlier copy of the same
 * cumulative histogram) did not have. min and max stay @now's: bounds only.
 */
void bench_hist_since(struct bench_hist *out, const struct bench_hist *now,
		      const struct bench_hist *then);
/* The value below which @q (0..1) of the samples fall, in nanoseconds. */
double bench_hist_quantile(const struct bench_hist *h, double q);

/* ---- Process and file-system figures (bench_sys.c) ----------------------- */

/* /proc/<pid>/io: what the process read and wrote. */
struct bench_procio {
	bool valid;
	uint64_t rchar;        /* bytes passed to read(2)-like calls */
	uint64_t wchar;        /* bytes passed to write(2)-like calls */
	uint64_t read_bytes;   /* bytes fetched from the block layer */
	uint64_t write_bytes;  /* bytes sent (dirtied) towards the block layer */
	uint64_t cancelled_write_bytes; /* dirty bytes truncated away unwritten */
};

/* Reads /proc/self/io (pid 0) or /proc/<pid>/io. valid is false if unreadable. */
void bench_procio_read(int pid, struct bench_procio *out);

/* Apparent size (like du -sb) of every file under @dir; 0 if missing. */
uint64_t bench_dir_bytes(const char *dir);

/*
 * Prepares @dir for a fresh database: removes it with everything in it, but
 * only when it is empty or looks like a database (holds LOCK, CURRENT or
 * MANIFEST*), so a mistyped --db cannot wipe a home directory. Returns 0, or
 * -1 after printing why.
 */
int bench_dir_wipe(const char *dir);

/*
 * The value of flag @name in argv[*i], written --name=value or --name value
 * (then *i is advanced past the value); NULL when argv[*i] is another flag
 * or the value is missing.
 */
const char *bench_flag_value(const char *name, int argc, char **argv, int *i);

/* Peak resident set size of this process, in KiB (getrusage ru_maxrss). */
uint64_t bench_peak_rss_kib(void);

/* `kvfs-bench fsync` and `kvfs-bench measure`; return the exit status. */
int bench_fsync_main(int argc, char **argv);
int bench_measure_main(int argc, char **argv);
/* `kvfs-bench hiccup`: gaps in a thread that wakes every millisecond. */
int bench_hiccup_main(int argc, char **argv);

/* ---- Engines ------------------------------------------------------------- */

struct bench_db;   /* an open database, engine-specific */
struct bench_iter; /* an iterator, engine-specific */

/* Bytes written, as counted by the engine itself (kvfs only). */
struct bench_engine_io {
	bool valid;
	uint64_t user;       /* key + value bytes handed to writes */
	uint64_t wal;
	uint64_t flush;
	uint64_t compaction;
	uint64_t manifest;
};

typedef void (*bench_write_cb)(void *arg, int status);

/*
 * One storage engine. Every function may be called from any benchmark
 * thread at once, except open and close. Functions returning int give 0 (or
 * 1 for "found") on success and -1 on failure, after printing one line on
 * stderr saying what failed.
 */
struct bench_engine {
	const char *name;
	/* Opens (creating) the database in f->db. */
	int (*open)(const struct bench_flags *f, struct bench_db **out);
	int (*close)(struct bench_db *db);
	/* Durable per the flags (--sync) when it returns. */
	int (*put)(struct bench_db *db, struct kv_slice key, struct kv_slice value);
	/* 1 found (*value_len set), 0 not found, -1 error. */
	int (*get)(struct bench_db *db, struct kv_slice key, size_t *value_len);
	/*
	 * Optional: queues a put and returns; @cb runs once it is durable (or
	 * failed), maybe on another thread. -1: not queued, @cb never called.
	 */
	int (*put_async)(struct bench_db *db, struct kv_slice key, struct kv_slice value,
			 bench_write_cb cb, void *arg);
	struct bench_iter *(*iter_new)(struct bench_db *db);
	void (*iter_seek_first)(struct bench_iter *it);
	void (*iter_seek)(struct bench_iter *it, struct kv_slice target);
	bool (*iter_valid)(struct bench_iter *it);
	void (*iter_next)(struct bench_iter *it);
	struct kv_slice (*iter_key)(struct bench_iter *it);
	struct kv_slice (*iter_value)(struct bench_iter *it);
	int (*iter_status)(struct bench_iter *it); /* 0 or -1 (printed) */
	void (*iter_free)(struct bench_iter *it);
	/* Compacts the whole key range and waits for it. */
	int (*compact)(struct bench_db *db);
	/* Optional: the engine's own write counters, cumulative since open. */
	void (*engine_io)(struct bench_db *db, struct bench_engine_io *out);
	/* Optional: true while the engine has flushes waiting. */
	bool (*busy)(struct bench_db *db);
	/* Optional: prints the engine's own statistics (the `stats` benchmark). */
	void (*print_stats)(struct bench_db *db, FILE *out);
};

extern const struct bench_engine bench_engine_kvfs;
#ifdef KVFS_BENCH_LEVELDB
extern const struct bench_engine bench_engine_leveldb;
#endif

/* ---- The driver (bench_run.c) ------------------------------------------- */

/* Runs f->benchmarks against @engine; returns the process exit status. */
int bench_run(const struct bench_engine *engine, const struct bench_flags *f);

/* True if @name is a benchmark bench_run() knows. */
bool bench_known(const char *name);

#endif
