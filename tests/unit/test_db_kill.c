/*
 * test_db_kill.c - the storage engine in a real process, SIGKILLed at random
 * moments (issue 2, "Show it works", crash tests (b)).
 *
 * Each round the test runs itself again as a child ("--kill-child", through
 * /proc/self/exe): the child opens the store on the real disk (POSIX VFS,
 * sync=always) in a mkdtemp directory and writes from one to four threads,
 * each on its own keys, a seeded sequence of puts, deletes and batches. After
 * each acknowledged write it reports (thread, op number) on a pipe. The
 * parent kills it after a random delay, opens the store itself and checks
 * that every reported write is there, that nothing unwritten is, and that a
 * batch is whole or absent. The next round continues on the same directory,
 * so every open recovers what the last one left, including a recovery that
 * was itself killed.
 *
 * Parent and child generate the same operations from the same seed, so a
 * report of (thread, op) says exactly which keys and values were written,
 * and which single operation per thread may have been in flight. A SIGKILL
 * leaves the page cache intact: this proves recovery, not fsync (the
 * in-memory VFS of test_db_crash.c proves that).
 *
 * The seed is printed; KV_SEED=<seed> replays the same operations (the kill
 * moments depend on timing).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tmpdir_fx.h"

#include "lsm/lsm.h"
#include "util/error.h"
#include "util/rng.h"

#define NKEYS 240
#define MAX_THREADS 4
#define MAX_BATCH 6
#define ROUNDS 80
#define CHILD_FLAG "--kill-child"
#define REPORT_FD 3

/* ---- What parent and child agree on --------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void kill_options(struct kv_lsm_options *o)
{
	kv_lsm_options_init(o);
	o->vfs = NULL; /* the real disk */
	o->sync = KV_SYNC_ALWAYS;
	o->memtable_bytes = 16 << 10;
	o->block_bytes = 1024;
	o->table_bytes = 16 << 10;
	o->level1_bytes = 64 << 10;
	o->level_multiplier = 4;
	o->l0_compaction_trigger = 2;
	o->block_cache_bytes = 64 << 10;
}

static struct kv_slice key_slice(int k, char *buf, size_t n)
{
	int len = snprintf(buf, n, "k%04d", k);
	return kv_slice_make(buf, (size_t)len);
}

/* A write's id: round, thread, op number within the thread, batch entry. */
static uint64_t write_id(unsigned round, unsigned thread, uint32_t op, unsigned entry)
{
	return (uint64_t)round << 44 | (uint64_t)thread << 40 | (uint64_t)op << 8 | entry;
}

#define VALUE_HEADER 23 /* "k%04d:%016llx:" */

/* The value write @id puts under key @k: a header naming both, then filler
 * whose length and bytes follow from them. */
static void make_value(int k, uint64_t id, struct kv_buf *out)
{
	uint64_t h = mix64(id * 31 + (uint64_t)k);
	size_t extra = h % 8 == 0 ? 0 : (size_t)(h >> 16) % 1400;
	kv_buf_reset(out);
	if (kv_buf_reserve(out, VALUE_HEADER + extra + 1))
		abort();
	snprintf((char *)out->p, VALUE_HEADER + 1, "k%04d:%016" PRIx64 ":", k, id);
	uint64_t x = h | 1;
	for (size_t i = 0; i < extra; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out->p[VALUE_HEADER + i] = (uint8_t)(i % 2 ? x : 'a' + i % 26);
	}
	out->n = VALUE_HEADER + extra;
}

/* The id of @v if it is exactly what make_value() makes for @k, else -1. */
static int64_t parse_value(int k, struct kv_slice v, struct kv_buf *scratch)
{
	if (v.n < VALUE_HEADER || v.p[0] != 'k' || v.p[5] != ':' || v.p[22] != ':')
		return -1;
	uint64_t id = 0;
	for (int i = 6; i < 22; i++) {
		uint8_t c = v.p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		id = id << 4 | (uint64_t)d;
	}
	make_value(k, id, scratch);
	return kv_slice_eq(v, kv_buf_slice(scratch)) ? (int64_t)id : -1;
}

/* One operation of one writer thread. */
struct kop {
	enum { KOP_PUT, KOP_DEL, KOP_BATCH } kind;
	int n;
	int keys[MAX_BATCH];
	bool del[MAX_BATCH];
};

/* Thread @t of @nthreads writes only keys k with k % nthreads == t, so the
 * order of its reports is the order of its writes to each key. */
static void gen_op(struct kv_rng *rng, unsigned t, unsigned nthreads, struct kop *o)
{
	uint64_t per = NKEYS / nthreads;
	uint64_t p = kv_rng_below(rng, 100);
	memset(o, 0, sizeof *o);
	o->kind = p < 70 ? KOP_PUT : p < 85 ? KOP_DEL : KOP_BATCH;
	o->n = o->kind == KOP_BATCH ? 2 + (int)kv_rng_below(rng, MAX_BATCH - 1) : 1;
	for (int j = 0; j < o->n; j++) {
		o->keys[j] = (int)(t + nthreads * kv_rng_below(rng, per));
		o->del[j] = o->kind == KOP_DEL || (o->kind == KOP_BATCH && kv_rng_below(rng, 4) == 0);
	}
}

static void thread_rng(struct kv_rng *rng, uint64_t round_seed, unsigned t)
{
	kv_rng_seed(rng, mix64(round_seed ^ (0x1000 + t)));
}

/* The final effect of op @i of thread @t per distinct key: an id, or -1. */
static int op_effects(unsigned round, unsigned t, uint32_t i, const struct kop *o, int *keys, int64_t *ids)
{
	int n = 0;
	for (int j = 0; j < o->n; j++) {
		int at = n;
		for (int q = 0; q < n; q++)
			if (keys[q] == o->keys[j])
				at = q;
		keys[at] = o->keys[j];
		ids[at] = o->del[j] ? -1 : (int64_t)write_id(round, t, i, (unsigned)j);
		if (at == n)
			n++;
	}
	return n;
}

struct report {
	uint32_t thread;
	uint32_t op;
};

/* ---- The child ------------------------------------------------------------ */

struct child {
	struct kv_lsm *db;
	unsigned round, nthreads;
	uint64_t seed;
};

struct child_thread {
	struct child *c;
	unsigned t;
};

static void *child_writer(void *arg)
{
	struct child_thread *ct = arg;
	struct child *c = ct->c;
	struct kv_rng rng;
	struct kv_buf val = KV_BUF_INIT;
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	char kb[16];
	thread_rng(&rng, c->seed, ct->t);
	for (uint32_t i = 0;; i++) {
		struct kop o;
		gen_op(&rng, ct->t, c->nthreads, &o);
		int rc;
		if (o.kind == KOP_PUT) {
			make_value(o.keys[0], write_id(c->round, ct->t, i, 0), &val);
			rc = kv_lsm_put(c->db, key_slice(o.keys[0], kb, sizeof kb), kv_buf_slice(&val));
		} else if (o.kind == KOP_DEL) {
			rc = kv_lsm_delete(c->db, key_slice(o.keys[0], kb, sizeof kb));
		} else {
			kv_lsm_batch_clear(b);
			for (int j = 0; j < o.n; j++) {
				struct kv_slice key = key_slice(o.keys[j], kb, sizeof kb);
				if (o.del[j]) {
					rc = kv_lsm_batch_delete(b, key);
				} else {
					make_value(o.keys[j], write_id(c->round, ct->t, i, (unsigned)j), &val);
					rc = kv_lsm_batch_put(b, key, kv_buf_slice(&val));
				}
				if (rc)
					break;
			}
			if (!rc)
				rc = kv_lsm_write(c->db, b);
		}
		if (rc) {
			fprintf(stderr, "kill child: thread %u op %" PRIu32 ": %s\n", ct->t, i, kv_strerror(rc));
			_exit(2);
		}
		struct report rep = { ct->t, i };
		if (write(REPORT_FD, &rep, sizeof rep) != (ssize_t)sizeof rep)
			_exit(4);
	}
	return NULL;
}

/* argv: CHILD_FLAG dir round nthreads seed. Writes until killed. */
static int child_main(int argc, char **argv)
{
	if (argc != 6)
		return 64;
	struct child c = {
		.round = (unsigned)strtoul(argv[3], NULL, 10),
		.nthreads = (unsigned)strtoul(argv[4], NULL, 10),
		.seed = strtoull(argv[5], NULL, 16),
	};
	if (c.nthreads < 1 || c.nthreads > MAX_THREADS)
		return 64;
	struct kv_lsm_options opt;
	kill_options(&opt);
	int rc = kv_lsm_open(argv[2], &opt, &c.db, NULL);
	if (rc) {
		fprintf(stderr, "kill child: open %s: %s\n", argv[2], kv_strerror(rc));
		return 3;
	}
	pthread_t th[MAX_THREADS];
	struct child_thread ct[MAX_THREADS];
	for (unsigned t = 0; t < c.nthreads; t++) {
		ct[t] = (struct child_thread){ &c, t };
		if (pthread_create(&th[t], NULL, child_writer, &ct[t]))
			return 5;
	}
	for (unsigned t = 0; t < c.nthreads; t++)
		pthread_join(th[t], NULL);
	return 0;
}

/* ---- The parent ----------------------------------------------------------- */

struct kill_test {
	char dir[256];
	pid_t pid;      /* a child not yet reaped, or 0 */
	int rfd;        /* the report pipe's read end, or -1 */
	struct kv_lsm *db; /* the parent's own open of the store, or NULL */
	uint64_t seed;
	struct kv_rng rng;
	int64_t acked[NKEYS]; /* each key's last acknowledged state: id or -1 */
	/* The current round. */
	unsigned round, nthreads;
	uint64_t round_seed;
	struct kv_rng trng[MAX_THREADS]; /* positioned at next_op */
	uint32_t next_op[MAX_THREADS];
	uint8_t carry[sizeof(struct report)];
	size_t ncarry;
	struct kv_buf scratch;
	/* Figures. */
	uint64_t reports, inflight_applied, inflight_lost, torn_tails, replayed, killed_early;
	uint64_t multi_thread_rounds, batches_checked;
	unsigned tables[KV_LSM_LEVELS]; /* per level, at the last check */
};

static int setup(void **state)
{
	struct kill_test *kt = calloc(1, sizeof *kt);
	assert_non_null(kt);
	assert_true(kv_test_mkdtemp(kt->dir, sizeof kt->dir, "kvfs-kill"));
	kt->rfd = -1;
	kv_buf_init(&kt->scratch);
	*state = kt;
	return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void reap(struct kill_test *kt, int *status)
{
	int st = 0;
	if (kt->pid > 0) {
		kill(kt->pid, SIGKILL);
		while (waitpid(kt->pid, &st, 0) < 0 && errno == EINTR)
			;
		kt->pid = 0;
	}
	if (status)
		*status = st;
}

/* Runs on success and on failure alike: no child left, no directory. */
static int teardown(void **state)
{
	struct kill_test *kt = *state;
	reap(kt, NULL);
	if (kt->rfd >= 0)
		close(kt->rfd);
	if (kt->db)
		kv_lsm_close(kt->db); /* its threads must not write after the cleanup */
	nftw(kt->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	kv_buf_release(&kt->scratch);
	free(kt);
	return 0;
}

static void start_child(struct kill_test *kt)
{
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	char round[16], nthreads[16], seed[32];
	snprintf(round, sizeof round, "%u", kt->round);
	snprintf(nthreads, sizeof nthreads, "%u", kt->nthreads);
	snprintf(seed, sizeof seed, "%" PRIx64, kt->round_seed);
	char *argv[] = { "test_db_kill", CHILD_FLAG, kt->dir, round, nthreads, seed, NULL };
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. If the test dies, so
		 * does the child. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(125);
		if (fds[1] == REPORT_FD)
			fcntl(REPORT_FD, F_SETFD, 0);
		else if (dup2(fds[1], REPORT_FD) < 0)
			_exit(126);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	kt->pid = pid;
	close(fds[1]);
	kt->rfd = fds[0];
	kt->ncarry = 0;
}

/* Applies the reports in @buf (any split) to the model. */
static void take_reports(struct kill_test *kt, const uint8_t *buf, size_t n)
{
	while (n > 0) {
		size_t k = sizeof kt->carry - kt->ncarry;
		if (k > n)
			k = n;
		memcpy(kt->carry + kt->ncarry, buf, k);
		kt->ncarry += k;
		buf += k;
		n -= k;
		if (kt->ncarry < sizeof kt->carry)
			break;
		kt->ncarry = 0;
		struct report rep;
		memcpy(&rep, kt->carry, sizeof rep);
		if (rep.thread >= kt->nthreads || rep.op != kt->next_op[rep.thread])
			fail_msg("KV_SEED=%" PRIu64 " round %u: report of thread %" PRIu32 " op %" PRIu32
				 " out of order (expected op %" PRIu32 ")",
				 kt->seed, kt->round, rep.thread, rep.op,
				 rep.thread < kt->nthreads ? kt->next_op[rep.thread] : 0);
		struct kop o;
		gen_op(&kt->trng[rep.thread], rep.thread, kt->nthreads, &o);
		int keys[MAX_BATCH];
		int64_t ids[MAX_BATCH];
		int m = op_effects(kt->round, rep.thread, rep.op, &o, keys, ids);
		for (int q = 0; q < m; q++)
			kt->acked[keys[q]] = ids[q];
		kt->next_op[rep.thread]++;
		kt->reports++;
	}
}

/* Reads reports for @wait_ms milliseconds (with -1: until EOF, the child gone). */
static void read_reports(struct kill_test *kt, int64_t wait_ms)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint8_t buf[4096];
	for (;;) {
		int timeout = -1;
		if (wait_ms >= 0) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			int64_t spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
			if (spent >= wait_ms)
				return;
			timeout = (int)(wait_ms - spent);
		}
		struct pollfd pfd = { .fd = kt->rfd, .events = POLLIN };
		int r = poll(&pfd, 1, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		assert_true(r >= 0);
		if (r == 0)
			continue;
		ssize_t n = read(kt->rfd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			return; /* the child is gone */
		take_reports(kt, buf, (size_t)n);
	}
}

/* The store as the parent finds it: every key's state, checked. */
static void verify(struct kill_test *kt)
{
	struct kv_lsm_options opt;
	kill_options(&opt);
	struct kv_lsm_open_report rep;
	int rc = kv_lsm_open(kt->dir, &opt, &kt->db, &rep);
	struct kv_lsm *db = kt->db;
	if (rc)
		fail_msg("KV_SEED=%" PRIu64 " round %u: open after the kill: %s", kt->seed, kt->round,
			 kv_strerror(rc));
	if (rep.possible_loss || rep.tables_quarantined)
		fail_msg("KV_SEED=%" PRIu64 " round %u: open after a kill reports damage (%" PRIu64
			 " bad log regions, %u tables quarantined)",
			 kt->seed, kt->round, rep.wal_bad_regions, rep.tables_quarantined);
	kt->torn_tails += rep.wal_torn_tail;
	kt->replayed += rep.wal_records;

	/* What each thread's next operation (maybe in flight) would leave. */
	int fkeys[MAX_THREADS][MAX_BATCH];
	int64_t fids[MAX_THREADS][MAX_BATCH];
	int fn[MAX_THREADS];
	bool fbatch[MAX_THREADS];
	for (unsigned t = 0; t < kt->nthreads; t++) {
		struct kv_rng copy = kt->trng[t];
		struct kop o;
		gen_op(&copy, t, kt->nthreads, &o);
		fn[t] = op_effects(kt->round, t, kt->next_op[t], &o, fkeys[t], fids[t]);
		fbatch[t] = o.kind == KOP_BATCH;
	}

	int64_t state[NKEYS];
	struct kv_buf got = KV_BUF_INIT;
	char kb[16];
	for (int k = 0; k < NKEYS; k++) {
		rc = kv_lsm_get(db, NULL, key_slice(k, kb, sizeof kb), &got);
		if (rc == KV_ENOTFOUND) {
			state[k] = -1;
		} else if (rc == 0) {
			state[k] = parse_value(k, kv_buf_slice(&got), &kt->scratch);
			if (state[k] < 0)
				fail_msg("KV_SEED=%" PRIu64 " round %u: key %d holds a value never written (%zu bytes)",
					 kt->seed, kt->round, k, got.n);
		} else {
			fail_msg("KV_SEED=%" PRIu64 " round %u: get key %d: %s", kt->seed, kt->round, k,
				 kv_strerror(rc));
		}
		bool ok = state[k] == kt->acked[k];
		for (unsigned t = 0; t < kt->nthreads && !ok; t++)
			for (int q = 0; q < fn[t] && !ok; q++)
				ok = fkeys[t][q] == k && fids[t][q] == state[k];
		if (!ok)
			fail_msg("KV_SEED=%" PRIu64 " round %u (%u threads): key %d is in state %" PRIx64
				 ", last acknowledged %" PRIx64,
				 kt->seed, kt->round, kt->nthreads, k, (uint64_t)state[k], (uint64_t)kt->acked[k]);
	}
	kv_buf_release(&got);

	/* In-flight operations: whole or absent. */
	for (unsigned t = 0; t < kt->nthreads; t++) {
		int shown = 0, puts = 0;
		for (int q = 0; q < fn[t]; q++) {
			if (fids[t][q] < 0)
				continue;
			puts++;
			shown += state[fkeys[t][q]] == fids[t][q];
		}
		if (shown > 0) {
			for (int q = 0; q < fn[t]; q++)
				if (state[fkeys[t][q]] != fids[t][q])
					fail_msg("KV_SEED=%" PRIu64 " round %u: the batch in flight on thread %u is torn",
						 kt->seed, kt->round, t);
			kt->inflight_applied++;
		} else if (puts > 0) {
			kt->inflight_lost++;
		}
		if (fbatch[t] && puts > 0)
			kt->batches_checked++;
	}

	/* A scan: exactly the present keys, each with its value. */
	struct kv_iter *it = kv_lsm_iter(db, NULL);
	assert_non_null(it);
	int next = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice key = kv_iter_key(it);
		int k = key.n == 5 && key.p[0] == 'k' ? 0 : -1;
		for (size_t i = 1; i < key.n && k >= 0; i++)
			k = key.p[i] >= '0' && key.p[i] <= '9' ? k * 10 + (key.p[i] - '0') : -1;
		while (next < NKEYS && state[next] < 0)
			next++;
		if (k != next || k < 0 || k >= NKEYS)
			fail_msg("KV_SEED=%" PRIu64 " round %u: the scan yields an unexpected key", kt->seed,
				 kt->round);
		if (parse_value(k, kv_iter_value(it), &kt->scratch) != state[k])
			fail_msg("KV_SEED=%" PRIu64 " round %u: the scan disagrees with get on key %d", kt->seed,
				 kt->round, k);
		next++;
	}
	assert_int_equal(kv_iter_status(it), 0);
	kv_iter_destroy(it);
	while (next < NKEYS && state[next] < 0)
		next++;
	if (next != NKEYS)
		fail_msg("KV_SEED=%" PRIu64 " round %u: key %d is missing from the scan", kt->seed, kt->round, next);

	struct kv_lsm_stats st;
	kv_lsm_get_stats(db, &st);
	for (int l = 0; l < KV_LSM_LEVELS; l++)
		kt->tables[l] = st.tables[l];
	kt->db = NULL;
	assert_int_equal(kv_lsm_close(db), 0);
	/* What survived is the truth the next round starts from. */
	memcpy(kt->acked, state, sizeof state);
}

static void test_db_kill__sigkill_loses_no_acknowledged_write(void **state)
{
	struct kill_test *kt = *state;
	kt->seed = kv_test_seed("test_db_kill__sigkill_loses_no_acknowledged_write");
	kv_rng_seed(&kt->rng, kt->seed);
	for (int k = 0; k < NKEYS; k++)
		kt->acked[k] = -1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned round = 0; round < ROUNDS; round++) {
		kt->round = round;
		kt->nthreads = round % 3 == 0 ? 1 : 1 + (unsigned)kv_rng_below(&kt->rng, MAX_THREADS);
		kt->multi_thread_rounds += kt->nthreads > 1;
		kt->round_seed = mix64(kt->seed ^ mix64(round));
		for (unsigned t = 0; t < kt->nthreads; t++) {
			thread_rng(&kt->trng[t], kt->round_seed, t);
			kt->next_op[t] = 0;
		}
		/* Mostly mid-write; one round in six early, during open. */
		int64_t delay_ms = kv_rng_below(&kt->rng, 6) == 0 ? (int64_t)kv_rng_below(&kt->rng, 15)
								    : 5 + (int64_t)kv_rng_below(&kt->rng, 196);
		uint64_t before = kt->reports;
		start_child(kt);
		read_reports(kt, delay_ms);
		int status;
		reap(kt, &status);
		read_reports(kt, -1); /* what it wrote before it died */
		close(kt->rfd);
		kt->rfd = -1;
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			fail_msg("KV_SEED=%" PRIu64 " round %u: the child ended by itself (status %d; see stderr)",
				 kt->seed, round, status);
		if (kt->ncarry)
			fail_msg("round %u: a report was cut in half", round);
		kt->killed_early += kt->reports == before;
		verify(kt);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("%d rounds (%" PRIu64 " with several writers, %" PRIu64 " killed before any write): %" PRIu64
		      " acknowledged writes checked; in flight at the kill: %" PRIu64 " applied, %" PRIu64
		      " not (%" PRIu64 " batches); %" PRIu64 " torn log tails, %" PRIu64
		      " write groups replayed; tables per level at the end %u %u %u %u; %.1f s\n",
		      ROUNDS, kt->multi_thread_rounds, kt->killed_early, kt->reports, kt->inflight_applied,
		      kt->inflight_lost, kt->batches_checked, kt->torn_tails, kt->replayed, kt->tables[0],
		      kt->tables[1], kt->tables[2], kt->tables[3], (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_true(kt->reports > 0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], CHILD_FLAG))
		return child_main(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_db_kill__sigkill_loses_no_acknowledged_write, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
