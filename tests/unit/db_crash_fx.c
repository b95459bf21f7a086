/*
 * db_crash_fx.c - the workload, the model and the runs of the durability
 * tests (test_db_crash*.c): seeded steps whose every value names its write,
 * a model of what each key may hold after failures, and the crash sweep and
 * I/O-error runs that reopen the store and check it against the model.
 * API and the approach: db_crash_fx.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lsm/lsm.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

#include "db_crash_fx.h"

uint64_t test_seed;

uint64_t seed_for(const char *test_name)
{
	test_seed = kv_test_seed(test_name);
	return test_seed;
}

/* ---- Keys, values, the workload ------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct kv_slice key_slice(int k, char *buf, size_t n)
{
	int len = snprintf(buf, n, "key%03d", k);
	return kv_slice_make(buf, (size_t)len);
}

#define VALUE_HEADER 16 /* "v%03d:%010d:" */

/*
 * The value write @id puts under key @k: a header naming both, then filler
 * whose length and bytes follow from them, so any value read back can be
 * traced to exactly one write. Mostly small, some empty, a few kilobytes.
 */
static void make_value(int k, int64_t id, struct kv_buf *out)
{
	uint64_t h = mix64((uint64_t)k * 1000003u ^ (uint64_t)id);
	uint64_t r = h % 100;
	size_t extra = r < 4 ? 1000 + (size_t)(h >> 20) % 3000 : r < 10 ? 0 : (size_t)(h >> 20) % 180;
	kv_buf_reset(out);
	assert_int_equal(kv_buf_reserve(out, VALUE_HEADER + extra + 1), 0);
	snprintf((char *)out->p, VALUE_HEADER + 1, "v%03d:%010" PRId64 ":", k, id);
	uint64_t x = h | 1;
	for (size_t i = 0; i < extra; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out->p[VALUE_HEADER + i] = (uint8_t)(i % 3 ? 'a' + (i % 26) : x);
	}
	out->n = VALUE_HEADER + extra;
}

/* The write id of @v if it is exactly a value make_value() makes for key @k;
 * otherwise -2 (a value that was never written). */
int64_t parse_value(int k, struct kv_slice v, struct kv_buf *scratch)
{
	if (v.n < VALUE_HEADER || v.p[0] != 'v' || v.p[4] != ':' || v.p[15] != ':')
		return -2;
	int64_t id = 0;
	for (int i = 5; i < 15; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -2;
		id = id * 10 + (v.p[i] - '0');
	}
	make_value(k, id, scratch);
	return kv_slice_eq(v, kv_buf_slice(scratch)) ? id : -2;
}

void plan_op(struct kv_rng *rng, struct op *o)
{
	uint64_t p = kv_rng_below(rng, 1000);
	memset(o, 0, sizeof *o);
	o->n = 1;
	o->keys[0] = (int)kv_rng_below(rng, NKEYS);
	if (p < 540) {
		o->kind = OP_PUT;
	} else if (p < 680) {
		o->kind = OP_DEL;
		o->del[0] = true;
	} else if (p < 880) {
		o->kind = OP_BATCH;
		o->n = 2 + (int)kv_rng_below(rng, MAX_BATCH - 1);
		for (int j = 0; j < o->n; j++) {
			o->keys[j] = (int)kv_rng_below(rng, NKEYS);
			o->del[j] = kv_rng_below(rng, 4) == 0;
		}
	} else if (p < 905) {
		o->kind = OP_ASYNC;
		o->n = 1 + (int)kv_rng_below(rng, 4);
		for (int j = 0; j < o->n; j++) {
			o->keys[j] = (int)kv_rng_below(rng, NKEYS);
			o->del[j] = kv_rng_below(rng, 5) == 0;
		}
	} else if (p < 920) {
		o->kind = OP_FLUSH;
	} else if (p < 935) {
		o->kind = OP_COMPACT;
	} else if (p < 950) {
		o->kind = OP_REOPEN;
	} else {
		o->kind = OP_GET;
	}
}

/* ---- The model ------------------------------------------------------------ */

static void model_init(struct model *m)
{
	memset(m, 0, sizeof *m);
	for (int k = 0; k < NKEYS; k++)
		m->k[k].acked = (struct cand){ -1, -1 };
}

static void model_release(struct model *m)
{
	for (int k = 0; k < NKEYS; k++) {
		free(m->k[k].pending);
		free(m->k[k].written);
	}
	free(m->fb);
	memset(m, 0, sizeof *m);
}

#define GROW(arr, n, cap)                                                  \
	do {                                                               \
		if ((n) == (cap)) {                                        \
			(cap) = (cap) ? 2 * (cap) : 8;                     \
			(arr) = realloc((arr), (cap) * sizeof *(arr));     \
			assert_non_null(arr);                              \
		}                                                          \
	} while (0)

/* The final effect of @o per distinct key (a batch's last entry wins). */
static int op_effects(int64_t i, const struct op *o, int *keys, int64_t *ids)
{
	int n = 0;
	for (int j = 0; j < o->n; j++) {
		int64_t id = o->del[j] ? -1 : i * 16 + j;
		int at = n;
		for (int q = 0; q < n; q++)
			if (keys[q] == o->keys[j])
				at = q;
		keys[at] = o->keys[j];
		ids[at] = id;
		if (at == n)
			n++;
	}
	return n;
}

/* Records the outcome of one write of step @i, whose final effects are
 * @keys <- @ids: acknowledged (rc 0) or not. */
static void model_apply_effects(struct model *m, int64_t i, int n, const int *keys, const int64_t *ids, int rc)
{
	for (int q = 0; q < n; q++) {
		struct key_model *km = &m->k[keys[q]];
		struct cand c = { i, ids[q] };
		if (ids[q] >= 0) {
			GROW(km->written, km->nwritten, km->written_cap);
			km->written[km->nwritten++] = ids[q];
		}
		if (rc == 0) {
			km->acked = c;
			km->npending = 0;
		} else {
			GROW(km->pending, km->npending, km->pending_cap);
			km->pending[km->npending++] = c;
		}
	}
	if (rc != 0 && n > 1) {
		GROW(m->fb, m->nfb, m->fb_cap);
		struct failed_batch *b = &m->fb[m->nfb++];
		b->op = i;
		b->n = n;
		memcpy(b->keys, keys, (size_t)n * sizeof *keys);
		memcpy(b->ids, ids, (size_t)n * sizeof *ids);
	}
}

/* Records the outcome of write step @i: acknowledged (rc 0) or not. */
static void model_apply(struct model *m, int64_t i, const struct op *o, int rc)
{
	int keys[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	int n = op_effects(i, o, keys, ids);
	model_apply_effects(m, i, n, keys, ids, rc);
}

/* After a check: what the store holds is now the truth for every key. */
static void model_settle(struct model *m, const int64_t *state, int64_t op)
{
	for (int k = 0; k < NKEYS; k++) {
		struct key_model *km = &m->k[k];
		struct cand c = { op, state[k] };
		for (size_t q = 0; q < km->npending; q++)
			if (km->pending[q].id == state[k])
				c.op = km->pending[q].op;
		if (km->acked.id == state[k])
			c.op = km->acked.op;
		km->acked = c;
		km->npending = 0;
	}
	m->nfb = 0;
}

bool was_written(const struct key_model *km, int64_t id)
{
	for (size_t q = 0; q < km->nwritten; q++)
		if (km->written[q] == id)
			return true;
	return false;
}

/* ---- Running a workload against one VFS ----------------------------------- */

static void crash_options(struct kv_lsm_options *o, struct kv_vfs *vfs)
{
	kv_lsm_options_init(o);
	o->vfs = vfs;
	o->deterministic = true;
	o->sync = KV_SYNC_ALWAYS;
	o->memtable_bytes = 8 << 10;
	o->block_bytes = 512;
	o->table_bytes = 4 << 10;
	o->level1_bytes = 8 << 10;
	o->level_multiplier = 2;
	o->l0_compaction_trigger = 2;
	o->block_cache_bytes = 8 << 10;
}

void run_init(struct run *r, const char *what)
{
	memset(r, 0, sizeof *r);
	r->tv = tvfs_new();
	crash_options(&r->opt, &r->tv->base);
	model_init(&r->m);
	r->batch = kv_lsm_batch_new();
	assert_non_null(r->batch);
	kv_buf_init(&r->val);
	kv_buf_init(&r->scratch);
	snprintf(r->what, sizeof r->what, "%s", what);
}

void run_release(struct run *r)
{
	if (r->db)
		kv_lsm_close(r->db);
	r->db = NULL;
	kv_vfs_destroy(&r->tv->base);
	model_release(&r->m);
	kv_lsm_batch_free(r->batch);
	kv_buf_release(&r->val);
	kv_buf_release(&r->scratch);
}

int run_open(struct run *r, struct kv_lsm_open_report *rep)
{
	pthread_mutex_lock(&r->tv->mu);
	r->tv->phase = PH_RECOVERY;
	pthread_mutex_unlock(&r->tv->mu);
	int rc = kv_lsm_open(DB_DIR, &r->opt, &r->db, rep);
	pthread_mutex_lock(&r->tv->mu);
	r->tv->phase = PH_COMPACT;
	pthread_mutex_unlock(&r->tv->mu);
	return rc;
}

/*
 * Reads key @k and returns its state (write id, or -1 when absent). Fails
 * the test when the value is not one that was ever written to @k, or (with
 * @exact) when the state is neither the acknowledged one nor that of a
 * failed write after it. KV_ECORRUPT is allowed only when @allow_corrupt
 * (then *corrupt is set and -3 returned).
 */
int64_t read_state(struct run *r, int k, bool exact, bool allow_corrupt, bool *corrupt)
{
	char kb[16];
	struct kv_buf got = KV_BUF_INIT;
	int rc = kv_lsm_get(r->db, NULL, key_slice(k, kb, sizeof kb), &got);
	int64_t state = -4;
	if (rc == 0) {
		state = parse_value(k, kv_buf_slice(&got), &r->scratch);
		if (state < 0)
			fail_msg("%s: key %d holds a value that was never written (len %zu)", r->what, k, got.n);
		if (!was_written(&r->m.k[k], state))
			fail_msg("%s: key %d holds id %" PRId64 ", never written to it", r->what, k, state);
	} else if (rc == KV_ENOTFOUND) {
		state = -1;
	} else if (rc == KV_ECORRUPT && allow_corrupt) {
		*corrupt = true;
		kv_buf_release(&got);
		return -3;
	} else {
		fail_msg("%s: get key %d: %s", r->what, k, kv_strerror(rc));
	}
	kv_buf_release(&got);
	if (!exact)
		return state;
	const struct key_model *km = &r->m.k[k];
	bool ok = km->acked.id == state;
	for (size_t q = 0; q < km->npending && !ok; q++)
		ok = km->pending[q].id == state;
	if (!ok)
		fail_msg("%s: key %d is in state %" PRId64 "; acknowledged %" PRId64 " (step %" PRId64
			 ") with %zu failed writes after it",
			 r->what, k, state, km->acked.id, km->acked.op, km->npending);
	return state;
}

/* A failed batch is whole or absent: if one key shows it, all do (or show a
 * later write to that key). */
static void check_batches(struct run *r, const int64_t *state)
{
	for (size_t b = 0; b < r->m.nfb; b++) {
		const struct failed_batch *fb = &r->m.fb[b];
		int shown = -1;
		for (int q = 0; q < fb->n && shown < 0; q++)
			if (fb->ids[q] >= 0 && state[fb->keys[q]] == fb->ids[q])
				shown = q;
		if (shown < 0)
			continue;
		for (int q = 0; q < fb->n; q++) {
			int k = fb->keys[q];
			if (state[k] == fb->ids[q])
				continue;
			/* A later write to the key may hide the batch's entry. */
			const struct key_model *km = &r->m.k[k];
			bool later = km->acked.op > fb->op && km->acked.id == state[k];
			for (size_t p = 0; p < km->npending && !later; p++)
				later = km->pending[p].op > fb->op && km->pending[p].id == state[k];
			if (!later)
				fail_msg("%s: batch of step %" PRId64 " is torn: key %d shows it, key %d is in "
					 "state %" PRId64 " instead of %" PRId64,
					 r->what, fb->op, fb->keys[shown], k, state[k], fb->ids[q]);
		}
	}
}

/* Scans everything: exactly the keys @state says are present, same values. */
static void check_scan(struct run *r, const int64_t *state)
{
	struct kv_iter *it = kv_lsm_iter(r->db, NULL);
	assert_non_null(it);
	int expect_k = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice key = kv_iter_key(it);
		int k = -1;
		if (key.n == 6 && !memcmp(key.p, "key", 3))
			k = (key.p[3] - '0') * 100 + (key.p[4] - '0') * 10 + (key.p[5] - '0');
		if (k < 0 || k >= NKEYS)
			fail_msg("%s: the scan yields a key that was never written (len %zu)", r->what, key.n);
		while (expect_k < k && state[expect_k] < 0)
			expect_k++;
		if (k != expect_k)
			fail_msg("%s: the scan yields key %d, expected key %d next", r->what, k, expect_k);
		int64_t id = parse_value(k, kv_iter_value(it), &r->scratch);
		if (id != state[k])
			fail_msg("%s: the scan shows key %d in state %" PRId64 ", get %" PRId64, r->what, k, id,
				 state[k]);
		expect_k++;
	}
	if (kv_iter_status(it))
		fail_msg("%s: scan: %s", r->what, kv_strerror(kv_iter_status(it)));
	kv_iter_destroy(it);
	while (expect_k < NKEYS && state[expect_k] < 0)
		expect_k++;
	if (expect_k != NKEYS)
		fail_msg("%s: key %d is missing from the scan", r->what, expect_k);
}

/* The full check against the model; then the model takes what was seen. */
void check_model(struct run *r)
{
	int64_t state[NKEYS];
	for (int k = 0; k < NKEYS; k++)
		state[k] = read_state(r, k, true, false, NULL);
	check_batches(r, state);
	check_scan(r, state);
	model_settle(&r->m, state, r->next_op++);
}

/* Completions of one OP_ASYNC step. */
struct async_step {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status[MAX_BATCH];
};

struct async_slot {
	struct async_step *step;
	int j;
};

static void on_async_done(void *arg, int status)
{
	struct async_slot *slot = arg;
	pthread_mutex_lock(&slot->step->mu);
	slot->step->status[slot->j] = status;
	slot->step->done++;
	pthread_cond_signal(&slot->step->cv);
	pthread_mutex_unlock(&slot->step->mu);
}

/*
 * Submits the entries of step @i as asynchronous writes, waits for their
 * callbacks, and records each: acknowledged only with status 0. Returns the
 * first failure.
 */
static int exec_async(struct run *r, int64_t i, const struct op *o)
{
	char kb[16];
	struct async_step step = { .done = 0 };
	struct async_slot slots[MAX_BATCH];
	int submit[MAX_BATCH];
	pthread_mutex_init(&step.mu, NULL);
	pthread_cond_init(&step.cv, NULL);
	int expected = 0;
	for (int j = 0; j < o->n; j++) {
		struct kv_lsm_batch *b = kv_lsm_batch_new();
		assert_non_null(b);
		struct kv_slice key = key_slice(o->keys[j], kb, sizeof kb);
		if (o->del[j]) {
			assert_int_equal(kv_lsm_batch_delete(b, key), 0);
		} else {
			make_value(o->keys[j], i * 16 + j, &r->val);
			assert_int_equal(kv_lsm_batch_put(b, key, kv_buf_slice(&r->val)), 0);
		}
		slots[j] = (struct async_slot){ &step, j };
		submit[j] = kv_lsm_write_async(r->db, b, on_async_done, &slots[j]);
		if (submit[j])
			kv_lsm_batch_free(b); /* refused: the callback never comes */
		else
			expected++;
	}
	pthread_mutex_lock(&step.mu);
	while (step.done < expected)
		pthread_cond_wait(&step.cv, &step.mu);
	pthread_mutex_unlock(&step.mu);
	int first = 0;
	for (int j = 0; j < o->n; j++) {
		int rc = submit[j] ? submit[j] : step.status[j];
		int key = o->keys[j];
		int64_t id = o->del[j] ? -1 : i * 16 + j;
		model_apply_effects(&r->m, i, 1, &key, &id, rc);
		if (rc == 0)
			r->acked++;
		else
			r->failed++;
		if (rc && !first)
			first = rc;
	}
	pthread_cond_destroy(&step.cv);
	pthread_mutex_destroy(&step.mu);
	return first;
}

/* Runs step @i of the workload; returns the engine's result. */
int exec_op(struct run *r, int64_t i, const struct op *o)
{
	char kb[16];
	int rc;
	if (!r->db && (rc = run_open(r, NULL)))
		return rc;
	switch (o->kind) {
	case OP_PUT:
		make_value(o->keys[0], i * 16, &r->val);
		rc = kv_lsm_put(r->db, key_slice(o->keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
		break;
	case OP_DEL:
		rc = kv_lsm_delete(r->db, key_slice(o->keys[0], kb, sizeof kb));
		break;
	case OP_BATCH:
		kv_lsm_batch_clear(r->batch);
		for (int j = 0; j < o->n; j++) {
			struct kv_slice key = key_slice(o->keys[j], kb, sizeof kb);
			if (o->del[j]) {
				assert_int_equal(kv_lsm_batch_delete(r->batch, key), 0);
			} else {
				make_value(o->keys[j], i * 16 + j, &r->val);
				assert_int_equal(kv_lsm_batch_put(r->batch, key, kv_buf_slice(&r->val)), 0);
			}
		}
		rc = kv_lsm_write(r->db, r->batch);
		break;
	case OP_ASYNC:
		return exec_async(r, i, o);
	case OP_FLUSH:
		return kv_lsm_flush(r->db);
	case OP_COMPACT:
		return kv_lsm_compact(r->db);
	case OP_REOPEN:
		rc = kv_lsm_close(r->db);
		r->db = NULL;
		if (rc)
			return rc;
		return run_open(r, NULL);
	case OP_GET:
		/* Reads never fail, whatever the disk does to writes. */
		read_state(r, o->keys[0], true, false, NULL);
		return 0;
	}
	model_apply(&r->m, i, o, rc);
	if (rc == 0)
		r->acked++;
	else
		r->failed++;
	return rc;
}

/*
 * Runs @nops steps of the workload of @seed. With @stop_after >= 0, stops
 * that many steps after the first failure (a crash test: the machine is
 * dead); otherwise runs them all. Returns the number of failed steps.
 */
int run_workload(struct run *r, uint64_t seed, int64_t nops, int stop_after)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	int failures = 0;
	int64_t stop_at = -1;
	for (int64_t i = 0; i < nops; i++) {
		struct op o;
		plan_op(&rng, &o);
		if (exec_op(r, i, &o))
			failures++;
		if (failures && stop_after >= 0 && stop_at < 0)
			stop_at = i + stop_after;
		if (stop_at >= 0 && i >= stop_at)
			break;
	}
	r->next_op = nops;
	return failures;
}

/* Writes a few fresh keys, which must be acknowledged. */
void write_more(struct run *r, int count)
{
	char kb[16];
	for (int j = 0; j < count; j++) {
		int64_t i = r->next_op++;
		struct op o = { .kind = OP_PUT, .n = 1, .keys = { (int)(mix64((uint64_t)i) % NKEYS) } };
		make_value(o.keys[0], i * 16, &r->val);
		int rc = kv_lsm_put(r->db, key_slice(o.keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
		if (rc)
			fail_msg("%s: a write after recovery failed: %s", r->what, kv_strerror(rc));
		model_apply(&r->m, i, &o, 0);
	}
}

/* One more put, through the model; returns the engine's result. */
int try_write(struct run *r)
{
	char kb[16];
	int64_t i = r->next_op++;
	struct op o = { .kind = OP_PUT, .n = 1, .keys = { (int)(mix64((uint64_t)i) % NKEYS) } };
	make_value(o.keys[0], i * 16, &r->val);
	int rc = kv_lsm_put(r->db, key_slice(o.keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
	model_apply(&r->m, i, &o, rc);
	return rc;
}

/* Reopen after a crash must succeed, lose nothing, accept writes, and
 * survive one more clean reopen. */
void recover_and_check(struct run *r)
{
	struct kv_lsm_open_report rep;
	int rc = run_open(r, &rep);
	if (rc)
		fail_msg("%s: reopen failed: %s", r->what, kv_strerror(rc));
	if (rep.possible_loss || rep.tables_quarantined || rep.wal_bad_regions)
		fail_msg("%s: reopen reports damage: loss %d, quarantined %u, bad regions %" PRIu64,
			 r->what, rep.possible_loss, rep.tables_quarantined, rep.wal_bad_regions);
	check_model(r);
	write_more(r, 5);
	rc = kv_lsm_flush(r->db);
	if (rc)
		fail_msg("%s: flush after recovery: %s", r->what, kv_strerror(rc));
	write_more(r, 3);
	rc = kv_lsm_close(r->db);
	r->db = NULL;
	if (rc)
		fail_msg("%s: clean close after recovery: %s", r->what, kv_strerror(rc));
	rc = run_open(r, &rep);
	if (rc)
		fail_msg("%s: second reopen failed: %s", r->what, kv_strerror(rc));
	if (rep.possible_loss || rep.wal_torn_tail)
		fail_msg("%s: a clean reopen reports damage", r->what);
	check_model(r);
	kv_lsm_close(r->db);
	r->db = NULL;
}

/* ---- Crash sweeps --------------------------------------------------------- */

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void print_stats(const char *name, const struct sweep_stats *s)
{
	char line[512];
	size_t n = 0;
	for (int c = 0; c < EV_NCLASS; c++)
		n += (size_t)snprintf(line + n, sizeof line - n, " %s %" PRIu64, ev_class_name[c], s->by_class[c]);
	print_message("%s: %" PRIu64 " points (%" PRIu64 " torn writes); landed in:%s; %" PRIu64
		      " writes acknowledged, %" PRIu64 " failed; %.1f s\n",
		      name, s->points, s->torn, line, s->acked, s->failed, now_s() - s->t0);
}

/* The number of modifying operations of a fault-free run, and its trace. */
uint64_t clean_run(uint64_t seed, int64_t nops, uint8_t **trace)
{
	struct run r;
	char what[96];
	snprintf(what, sizeof what, "seed %" PRIu64 " clean run", seed);
	run_init(&r, what);
	int failures = run_workload(&r, seed, nops, -1);
	if (failures)
		fail_msg("%s: %d steps failed without faults", what, failures);
	uint64_t ops = r.tv->nev;
	if (trace) {
		*trace = malloc(ops ? ops : 1);
		assert_non_null(*trace);
		memcpy(*trace, r.tv->ev, ops);
	}
	if (kv_lsm_close(r.db))
		fail_msg("%s: close failed without faults", what);
	r.db = NULL;
	recover_and_check(&r);
	run_release(&r);
	return ops;
}

/*
 * One crash: the machine dies at operation @nth of the workload (with
 * @tear_frac >= 0, that operation is a write torn after that fraction of
 * its bytes, and the machine dies right after it). Then reopen and check.
 */
void crash_at(uint64_t seed, int64_t nops, uint64_t nth, double tear_frac, const uint8_t *trace,
	      struct sweep_stats *st)
{
	struct run r;
	char what[160];
	snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " (workload seed %" PRIu64 ", %" PRId64
		 " steps) crash point %" PRIu64 "%s",
		 test_seed, seed, nops, nth, tear_frac >= 0 ? " (torn write)" : "");
	run_init(&r, what);
	if (tear_frac >= 0) {
		r.tv->tear_at = nth;
		r.tv->tear_frac = tear_frac;
		kv_vfs_mem_crash_after(r.tv->mem, nth + 1);
	} else {
		kv_vfs_mem_crash_after(r.tv->mem, nth);
	}
	/* Usually a step fails; not when the engine ignores the failure of
	 * the last operation (removing an obsolete file). */
	run_workload(&r, seed, nops, 2);
	if (tear_frac >= 0 && !r.tv->tear_fired)
		fail_msg("%s: the write to tear never came", what);
	if (tear_frac < 0 && !kv_vfs_mem_tripped(r.tv->mem))
		fail_msg("%s: the machine never died", what);
	int c = tvfs_class(r.tv, nth);
	if (c < 0 || (trace && c != (trace[nth - 1] & ~EV_WRITE)))
		fail_msg("%s: the run is not deterministic (operation class %d, clean run %d)", what, c,
			 trace ? trace[nth - 1] & ~EV_WRITE : -1);
	st->by_class[c]++;
	st->points++;
	if (tear_frac >= 0)
		st->torn++;
	st->acked += r.acked;
	st->failed += r.failed;
	if (r.db)
		kv_lsm_close(r.db); /* may fail: the disk is gone */
	r.db = NULL;
	kv_vfs_mem_crash(r.tv->mem);
	recover_and_check(&r);
	run_release(&r);
}

/*
 * One injected error (@err) at operation @nth, no crash: the step that hit
 * it finishes, the store is closed and reopened at once. Nothing
 * acknowledged may be lost, whichever operation failed (say the directory
 * sync that makes a new manifest durable, after its rename went through).
 */
void fail_then_close(uint64_t seed, int64_t nops, uint64_t nth, int err, struct sweep_stats *st)
{
	struct run r;
	char what[160];
	snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " (workload seed %" PRIu64 ", %" PRId64
		 " steps) %s at operation %" PRIu64 ", then close",
		 test_seed, seed, nops, err == -EIO ? "EIO" : "ENOSPC", nth);
	run_init(&r, what);
	r.tv->fail[0].at = nth;
	r.tv->fail[0].count = 1;
	r.tv->fail[0].err = err;
	r.tv->nfail = 1;
	run_workload(&r, seed, nops, 0);
	int c = tvfs_class(r.tv, nth);
	if (c < 0)
		fail_msg("%s: operation %" PRIu64 " never ran", what, nth);
	st->by_class[c]++;
	st->points++;
	st->acked += r.acked;
	st->failed += r.failed;
	if (r.db)
		kv_lsm_close(r.db); /* may report the error */
	r.db = NULL;
	recover_and_check(&r);
	run_release(&r);
}

uint64_t only_point(void)
{
	const char *s = getenv("KV_CRASH_POINT");
	return s ? strtoull(s, NULL, 10) : 0;
}

/* The sweep crashed mid-WAL-append, mid-flush, mid-compaction and
 * mid-manifest-store (unless limited to one point). */
void assert_crashed_everywhere(const struct sweep_stats *st)
{
	if (only_point())
		return;
	assert_true(st->by_class[EV_WAL] > 0);
	assert_true(st->by_class[EV_FLUSH] > 0);
	assert_true(st->by_class[EV_COMPACT] > 0);
	assert_true(st->by_class[EV_MANIFEST] > 0);
}

/* ---- Running the tests ----------------------------------------------------- */

/* Injected faults make the engine log errors by the thousand: drop them
 * (KV_CRASH_VERBOSE=1 keeps them). */
static void drop_log(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

int quiet(void **state)
{
	(void)state;
	if (!getenv("KV_CRASH_VERBOSE"))
		kv_log_set_sink(drop_log, NULL);
	return 0;
}

void apply_test_filter(void)
{
	if (getenv("KV_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KV_TEST_FILTER"));
}
