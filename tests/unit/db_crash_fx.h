/*
 * db_crash_fx.h - the fixture of the storage engine's proof of durability
 * (DESIGN §6, issue 2 "Show it works"; test_db_crash*.c): a tracing VFS over
 * the in-memory fault-injecting one (lsm/vfs.h), a seeded workload, a model
 * of what the store may hold, and the crash and I/O-error runs built on them.
 *
 * A seeded workload (puts, deletes, multi-key batches, flushes, compactions,
 * clean reopens; sync=always, deterministic mode, tiny memtables and tables so
 * that flushes, compactions and manifest stores happen all the time) runs
 * once without faults to count the VFS's modifying operations, then once per
 * crash point with the machine "dying" at that operation. After the crash
 * the store must reopen and hold every acknowledged write (or its delete),
 * nothing that was never written, and each batch whole or not at all.
 *
 * The tracing VFS sits between the engine and the in-memory one: it names
 * every modifying operation (WAL append, log switch, flush, compaction,
 * recovery, manifest store, removal) so a sweep can prove it crashed in
 * each, and it arms torn writes and injected errors at an exact operation.
 *
 * Every randomized test prints its seed; KV_SEED=<seed> replays it,
 * KV_CRASH_POINT=<nth> limits the sweeps to one crash point,
 * KV_TEST_FILTER=<pattern> picks tests, KV_CRASH_TRACE=1 prints every
 * modifying operation and KV_CRASH_VERBOSE=1 keeps the engine's log.
 *
 * Failures fail the running cmocka test; what a helper allocates belongs to
 * the struct run it works on and is freed by run_release().
 */
#ifndef KV_TESTS_UNIT_DB_CRASH_FX_H
#define KV_TESTS_UNIT_DB_CRASH_FX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "util/rng.h"

#define NKEYS 64
#define MAX_BATCH 8
#define DB_DIR "/db"

/* The seed of the running test, for failure messages (KV_SEED=...). */
extern uint64_t test_seed;

/* Sets and returns test_seed: kv_test_seed(@test_name). */
uint64_t seed_for(const char *test_name);

/* ---- The tracing VFS (db_crash_vfs.c) ------------------------------------ */

/* What the engine was doing at a modifying operation. */
enum ev_class {
	EV_WAL,        /* appending to or syncing the commit log */
	EV_LOG_SWITCH, /* creating a new log and syncing its directory entry */
	EV_FLUSH,      /* writing a level-0 table from a memtable */
	EV_COMPACT,    /* writing a compaction's output tables */
	EV_RECOVERY,   /* writing the table of replayed logs during open */
	EV_MANIFEST,   /* MANIFEST.tmp, its rename, the directory sync */
	EV_REMOVE,     /* deleting obsolete logs and tables */
	EV_OTHER,      /* mkdir, LOCK, quarantine */
	EV_NCLASS,
};

/* The names of the classes, for statistics and KV_CRASH_TRACE. */
extern const char *const ev_class_name[EV_NCLASS];

#define EV_WRITE 0x80 /* the operation was a pwrite or append */

enum phase { PH_RECOVERY, PH_FLUSH, PH_COMPACT };
enum last_ev { LAST_NONE, LAST_LOG_CREATE, LAST_MANIFEST_RENAME };

struct tvfs {
	struct kv_vfs base;
	struct kv_vfs *mem;
	pthread_mutex_t mu; /* serializes modifying calls, so events line up */
	enum phase phase;
	enum last_ev last;
	const char *path; /* of the operation in progress, for KV_CRASH_TRACE */
	uint8_t *ev; /* class | EV_WRITE of modifying operation i+1 */
	size_t nev, cap;
	/* A torn write at operation tear_at (0: none), keeping tear_frac of it. */
	uint64_t tear_at;
	double tear_frac;
	bool tear_fired;
	/* Injected failures: fail[i].count operations from fail[i].at on. */
	struct {
		uint64_t at;
		unsigned count;
		int err;
	} fail[4];
	int nfail;
};

/* A tracing VFS over a fresh in-memory one; kv_vfs_destroy() frees both. */
struct tvfs *tvfs_new(void);

/* The class of modifying operation @nth (1-based), or -1 if it never ran. */
int tvfs_class(struct tvfs *t, uint64_t nth);

/* Whether @s ends with @suffix. */
bool ends_with(const char *s, const char *suffix);

/* ---- Keys, values, the workload -------------------------------------------- */

/* Formats the name of key @k into @buf (@n bytes) and returns it, borrowed. */
struct kv_slice key_slice(int k, char *buf, size_t n);

/* The write id of @v if it is exactly the value write id puts under key @k;
 * otherwise -2 (a value that was never written). @scratch is the caller's. */
int64_t parse_value(int k, struct kv_slice v, struct kv_buf *scratch);

enum op_kind { OP_PUT, OP_DEL, OP_BATCH, OP_ASYNC, OP_FLUSH, OP_COMPACT, OP_REOPEN, OP_GET };

/*
 * One workload step. Entry j of step i writes id i * 16 + j (or deletes).
 * OP_ASYNC submits its entries as separate one-entry asynchronous writes.
 */
struct op {
	enum op_kind kind;
	int n;
	int keys[MAX_BATCH];
	bool del[MAX_BATCH];
};

/* Draws the next workload step from @rng into @o. */
void plan_op(struct kv_rng *rng, struct op *o);

/* ---- The model ------------------------------------------------------------ */

/* A state of one key: what write @op left there; @id < 0 means absent. */
struct cand {
	int64_t op;
	int64_t id;
};

struct key_model {
	struct cand acked;    /* the last acknowledged write (op -1: none) */
	struct cand *pending; /* failed writes after it: unknown outcome */
	size_t npending, pending_cap;
	int64_t *written;     /* every id ever attempted for the key */
	size_t nwritten, written_cap;
};

struct failed_batch {
	int64_t op;
	int n;
	int keys[MAX_BATCH];
	int64_t ids[MAX_BATCH]; /* the batch's final effect per key */
};

struct model {
	struct key_model k[NKEYS];
	struct failed_batch *fb;
	size_t nfb, fb_cap;
};

/* Whether @id was ever attempted for the key of @km. */
bool was_written(const struct key_model *km, int64_t id);

/* ---- Running a workload against one VFS ----------------------------------- */

struct run {
	struct tvfs *tv;
	struct kv_lsm_options opt;
	struct kv_lsm *db;
	struct model m;
	struct kv_lsm_batch *batch;
	struct kv_buf val, scratch;
	char what[512]; /* seed and crash point, for failure messages */
	int64_t next_op; /* ops after the workload number from here */
	uint64_t acked, failed;
};

/* Initializes @r: a fresh tracing VFS, crash options, an empty model; @what
 * names the run in failure messages. Release with run_release(). */
void run_init(struct run *r, const char *what);

/* Closes the store if open and frees everything @r holds. */
void run_release(struct run *r);

/* Opens the store of @r (as recovery, for the tracing VFS's classes) and
 * fills @rep when not NULL; returns kv_lsm_open()'s result. */
int run_open(struct run *r, struct kv_lsm_open_report *rep);

/*
 * Reads key @k and returns its state (write id, or -1 when absent). Fails
 * the test when the value is not one that was ever written to @k, or (with
 * @exact) when the state is neither the acknowledged one nor that of a
 * failed write after it. KV_ECORRUPT is allowed only when @allow_corrupt
 * (then *corrupt is set and -3 returned).
 */
int64_t read_state(struct run *r, int k, bool exact, bool allow_corrupt, bool *corrupt);

/* The full check against the model; then the model takes what was seen. */
void check_model(struct run *r);

/* Runs step @i of the workload (opening the store first if it is closed);
 * returns the engine's result. */
int exec_op(struct run *r, int64_t i, const struct op *o);

/*
 * Runs @nops steps of the workload of @seed. With @stop_after >= 0, stops
 * that many steps after the first failure (a crash test: the machine is
 * dead); otherwise runs them all. Returns the number of failed steps.
 */
int run_workload(struct run *r, uint64_t seed, int64_t nops, int stop_after);

/* Writes @count fresh keys, which must be acknowledged. */
void write_more(struct run *r, int count);

/* One more put, through the model; returns the engine's result. */
int try_write(struct run *r);

/* Reopen after a crash must succeed, lose nothing, accept writes, and
 * survive one more clean reopen; leaves the store closed. */
void recover_and_check(struct run *r);

/* ---- Crash sweeps --------------------------------------------------------- */

/* Seconds on the monotonic clock. */
double now_s(void);

struct sweep_stats {
	double t0;
	uint64_t points, torn;
	uint64_t by_class[EV_NCLASS];
	uint64_t acked, failed;
};

/* Prints what the sweep @name did: points, classes, writes, time. */
void print_stats(const char *name, const struct sweep_stats *s);

/* The number of modifying operations of a fault-free run of @nops steps of
 * the workload of @seed; with @trace, also their classes in *@trace (the
 * caller frees it with free()). */
uint64_t clean_run(uint64_t seed, int64_t nops, uint8_t **trace);

/*
 * One crash: the machine dies at operation @nth of the workload (with
 * @tear_frac >= 0, that operation is a write torn after that fraction of
 * its bytes, and the machine dies right after it). Then reopen and check.
 * @trace (may be NULL) is the clean run's, to prove the run deterministic.
 */
void crash_at(uint64_t seed, int64_t nops, uint64_t nth, double tear_frac, const uint8_t *trace,
	      struct sweep_stats *st);

/*
 * One injected error (@err) at operation @nth, no crash: the step that hit
 * it finishes, the store is closed and reopened at once. Nothing
 * acknowledged may be lost, whichever operation failed.
 */
void fail_then_close(uint64_t seed, int64_t nops, uint64_t nth, int err, struct sweep_stats *st);

/* KV_CRASH_POINT, or 0 when unset. */
uint64_t only_point(void);

/* The sweep crashed mid-WAL-append, mid-flush, mid-compaction and
 * mid-manifest-store (unless limited to one point). */
void assert_crashed_everywhere(const struct sweep_stats *st);

/* cmocka group setup: drops the engine's log unless KV_CRASH_VERBOSE is set. */
int quiet(void **state);

/* KV_TEST_FILTER=<pattern> runs only the matching tests ('*' wildcards):
 * call before cmocka_run_group_tests(). */
void apply_test_filter(void);

#endif
