/*
 * test_db_model.c - the randomized model test of the storage engine.
 *
 * A long seeded sequence of puts, deletes, batches, flushes, compactions,
 * snapshots and reopens, checked against an in-memory model after every
 * step (the key just touched) and regularly in full (a scan and a get of
 * every key). The seed is printed; KV_SEED=<seed> replays a failure exactly
 * (in deterministic mode; the threaded run replays the same operations).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/lsm.h"
#include "util/error.h"
#include "util/rng.h"

#define NKEYS 600
#define STEPS 20000

struct model {
	struct kv_buf val[NKEYS];
	bool present[NKEYS];
};

static void key_of(int i, char *out, size_t n)
{
	/* Keys share prefixes and one has a NUL byte in it, as paths do. */
	snprintf(out, n, "/dir%02d/file%05d", i % 37, i);
}

static struct kv_slice key_slice(int i, char *buf, size_t n)
{
	key_of(i, buf, n);
	size_t len = strlen(buf);
	if (i % 101 == 0)
		buf[4] = '\0'; /* embedded NUL */
	return kv_slice_make(buf, len);
}

static void random_value(struct kv_rng *rng, struct kv_buf *out)
{
	kv_buf_reset(out);
	uint64_t r = kv_rng_below(rng, 100);
	size_t len = r < 5 ? 0 : r < 95 ? (size_t)kv_rng_below(rng, 300) : (size_t)kv_rng_below(rng, 70000);
	assert_int_equal(kv_buf_reserve(out, len), 0);
	/* Half incompressible, half repetitive, so tables reach deep levels. */
	uint64_t x = kv_rng_next(rng) | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out->p[i] = (uint8_t)(i % 2 ? x : 'a' + (i % 26));
	}
	out->n = len;
}

static void model_set(struct model *m, int k, const struct kv_buf *v)
{
	kv_buf_reset(&m->val[k]);
	assert_int_equal(kv_buf_append(&m->val[k], v->p, v->n), 0);
	m->present[k] = true;
}

static void check_key(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, const struct model *m, int k,
		      uint64_t seed, int step)
{
	char kb[64];
	struct kv_slice key = key_slice(k, kb, sizeof kb);
	struct kv_buf got = KV_BUF_INIT;
	int r = kv_lsm_get(db, snap, key, &got);
	if (m->present[k]) {
		if (r != 0 || !kv_slice_eq(kv_buf_slice(&got), kv_buf_slice(&m->val[k])))
			fail_msg("seed %" PRIu64 " step %d: key %d: got r=%d len %zu, want len %zu", seed, step, k,
				 r, got.n, m->val[k].n);
	} else if (r != KV_ENOTFOUND) {
		fail_msg("seed %" PRIu64 " step %d: key %d should be absent, got r=%d", seed, step, k, r);
	}
	kv_buf_release(&got);
}

static int cmp_idx(const void *a, const void *b)
{
	char ka[64], kb[64];
	int ia = *(const int *)a, ib = *(const int *)b;
	struct kv_slice sa = key_slice(ia, ka, sizeof ka);
	struct kv_slice sb = key_slice(ib, kb, sizeof kb);
	return kv_slice_cmp(sa, sb);
}

static void check_all(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, const struct model *m,
		      uint64_t seed, int step)
{
	for (int k = 0; k < NKEYS; k++)
		check_key(db, snap, m, k, seed, step);
	/* The scan yields exactly the present keys, in key order. */
	int order[NKEYS], n = 0;
	for (int k = 0; k < NKEYS; k++)
		if (m->present[k])
			order[n++] = k;
	qsort(order, (size_t)n, sizeof order[0], cmp_idx);
	struct kv_lsm_iter_options o = { .snapshot = snap };
	struct kv_iter *it = kv_lsm_iter(db, &o);
	assert_non_null(it);
	int i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
		char kb[64];
		if (i >= n)
			fail_msg("seed %" PRIu64 " step %d: scan yields more than %d keys", seed, step, n);
		struct kv_slice want = key_slice(order[i], kb, sizeof kb);
		if (!kv_slice_eq(kv_iter_key(it), want) ||
		    !kv_slice_eq(kv_iter_value(it), kv_buf_slice(&m->val[order[i]])))
			fail_msg("seed %" PRIu64 " step %d: scan entry %d is wrong (want key %d)", seed, step, i,
				 order[i]);
	}
	if (kv_iter_status(it))
		fail_msg("seed %" PRIu64 " step %d: scan error %d", seed, step, kv_iter_status(it));
	if (i != n)
		fail_msg("seed %" PRIu64 " step %d: scan yields %d keys, want %d", seed, step, i, n);
	kv_iter_destroy(it);
}

static void model_copy(struct model *dst, const struct model *src)
{
	for (int k = 0; k < NKEYS; k++) {
		kv_buf_reset(&dst->val[k]);
		assert_int_equal(kv_buf_append(&dst->val[k], src->val[k].p, src->val[k].n), 0);
		dst->present[k] = src->present[k];
	}
}

static void model_release(struct model *m)
{
	for (int k = 0; k < NKEYS; k++)
		kv_buf_release(&m->val[k]);
}

static void run_model(bool deterministic, const char *name)
{
	uint64_t seed = kv_test_seed(name);
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_lsm_options opt;
	kv_lsm_options_init(&opt);
	opt.vfs = vfs;
	opt.deterministic = deterministic;
	opt.memtable_bytes = 32 << 10;
	opt.block_bytes = 512;
	opt.table_bytes = 24 << 10;
	opt.level1_bytes = 64 << 10;
	opt.level_multiplier = 4;
	opt.block_cache_bytes = 16 << 10;
	opt.sync = KV_SYNC_NONE;
	struct kv_lsm *db = NULL;
	assert_int_equal(kv_lsm_open("/m", &opt, &db, NULL), 0);

	struct model *m = calloc(1, sizeof *m), *sm = calloc(1, sizeof *sm);
	const struct kv_lsm_snapshot *snap = NULL;
	struct kv_buf v = KV_BUF_INIT;
	struct kv_lsm_batch *batch = kv_lsm_batch_new();
	char kb[64];
	uint64_t flushes = 0, compactions = 0;
	int reopens = 0;

	for (int step = 0; step < STEPS; step++) {
		uint64_t op = kv_rng_below(&rng, 1000);
		int k = (int)kv_rng_below(&rng, NKEYS);
		if (op < 600) {
			random_value(&rng, &v);
			assert_int_equal(kv_lsm_put(db, key_slice(k, kb, sizeof kb), kv_buf_slice(&v)), 0);
			model_set(m, k, &v);
		} else if (op < 800) {
			assert_int_equal(kv_lsm_delete(db, key_slice(k, kb, sizeof kb)), 0);
			m->present[k] = false;
		} else if (op < 950) {
			/* A batch touching several keys, some twice. */
			kv_lsm_batch_clear(batch);
			int nops = 1 + (int)kv_rng_below(&rng, 8);
			struct model staged;
			memset(&staged, 0, sizeof staged);
			model_copy(&staged, m);
			for (int i = 0; i < nops; i++) {
				int bk = (int)kv_rng_below(&rng, NKEYS);
				if (kv_rng_below(&rng, 4) == 0) {
					assert_int_equal(kv_lsm_batch_delete(batch, key_slice(bk, kb, sizeof kb)), 0);
					staged.present[bk] = false;
				} else {
					random_value(&rng, &v);
					assert_int_equal(kv_lsm_batch_put(batch, key_slice(bk, kb, sizeof kb),
									  kv_buf_slice(&v)), 0);
					model_set(&staged, bk, &v);
				}
			}
			assert_int_equal(kv_lsm_write(db, batch), 0);
			model_copy(m, &staged);
			model_release(&staged);
		} else if (op < 965) {
			assert_int_equal(kv_lsm_flush(db), 0);
		} else if (op < 972) {
			assert_int_equal(kv_lsm_compact(db), 0);
		} else if (op < 994) {
			if (snap) {
				check_all(db, snap, sm, seed, step);
				kv_lsm_snapshot_release(db, snap);
				snap = NULL;
			} else {
				snap = kv_lsm_snapshot(db);
				assert_non_null(snap);
				model_copy(sm, m);
			}
		} else {
			if (snap) {
				kv_lsm_snapshot_release(db, snap);
				snap = NULL;
			}
			struct kv_lsm_stats st;
			kv_lsm_get_stats(db, &st);
			flushes += st.flushes;
			compactions += st.compactions;
			reopens++;
			assert_int_equal(kv_lsm_close(db), 0);
			db = NULL;
			struct kv_lsm_open_report rep;
			assert_int_equal(kv_lsm_open("/m", &opt, &db, &rep), 0);
			assert_false(rep.possible_loss);
		}
		check_key(db, NULL, m, k, seed, step);
		if (step % 500 == 499)
			check_all(db, NULL, m, seed, step);
	}
	check_all(db, NULL, m, seed, STEPS);
	if (snap) {
		check_all(db, snap, sm, seed, STEPS);
		kv_lsm_snapshot_release(db, snap);
	}
	struct kv_lsm_stats st;
	kv_lsm_get_stats(db, &st);
	flushes += st.flushes;
	compactions += st.compactions;
	print_message("%s: %d reopens, %" PRIu64 " flushes, %" PRIu64 " compactions, tables L0..L3 %u %u %u %u\n",
		      name, reopens, flushes, compactions, st.tables[0], st.tables[1], st.tables[2], st.tables[3]);
	assert_true(flushes > 10 && compactions > 0);
	assert_int_equal(kv_lsm_close(db), 0);
	kv_buf_release(&v);
	kv_lsm_batch_free(batch);
	model_release(m);
	model_release(sm);
	free(m);
	free(sm);
	kv_vfs_destroy(vfs);
}

static void test_db_model__deterministic_matches_model(void **state)
{
	(void)state;
	run_model(true, "test_db_model__deterministic_matches_model");
}

static void test_db_model__threaded_matches_model(void **state)
{
	(void)state;
	run_model(false, "test_db_model__threaded_matches_model");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_db_model__deterministic_matches_model),
		cmocka_unit_test(test_db_model__threaded_matches_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
