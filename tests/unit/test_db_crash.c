/*
 * test_db_crash.c - the storage engine survives a crash at any point
 * (DESIGN §6, issue 2 "Show it works"): every crash point of short seeded
 * workloads, sampled points of long ones, torn writes, and crashes under the
 * threaded engine. After each crash the store must reopen and hold every
 * acknowledged write (or its delete), nothing that was never written, and
 * each batch whole or not at all.
 *
 * The tracing VFS, the workload and the model: db_crash_fx.h. I/O errors
 * without a crash: test_db_crash_io.c; bit rot: test_db_crash_rot.c.
 *
 * Every randomized test prints its seed; KV_SEED=<seed> replays it,
 * KV_CRASH_POINT=<nth> limits the sweeps to one crash point,
 * KV_TEST_FILTER=<pattern> picks tests, KV_CRASH_TRACE=1 prints every
 * modifying operation and KV_CRASH_VERBOSE=1 keeps the engine's log.
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

/* ---- Crash sweeps --------------------------------------------------------- */

static void test_db_crash__every_point_of_short_workloads(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__every_point_of_short_workloads");
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 5; w++) {
		uint64_t wseed = seed + w;
		int64_t nops = 80;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(wseed, nops, &trace);
		for (uint64_t nth = 1; nth <= total; nth++)
			if (!only_point() || only_point() == nth)
				crash_at(wseed, nops, nth, -1, trace, &st);
		free(trace);
	}
	print_stats("every point", &st);
	assert_crashed_everywhere(&st);
}

/*
 * A longer workload, crashed at a seeded sample of its operations: some from
 * each kind of operation, the rest anywhere.
 */
static void test_db_crash__sampled_points_of_long_workloads(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__sampled_points_of_long_workloads");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x5eed);
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 2; w++) {
		uint64_t wseed = seed + 1000 + w;
		int64_t nops = 800;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(wseed, nops, &trace);
		/* Per class, up to 25 points of that class; then 100 anywhere. */
		uint64_t *of = malloc(total * sizeof *of);
		assert_non_null(of);
		for (int c = 0; c < EV_NCLASS; c++) {
			uint64_t n = 0;
			for (uint64_t i = 0; i < total; i++)
				if ((trace[i] & ~EV_WRITE) == c)
					of[n++] = i + 1;
			for (int j = 0; j < 25 && n; j++) {
				uint64_t nth = of[kv_rng_below(&rng, n)];
				if (!only_point() || only_point() == nth)
					crash_at(wseed, nops, nth, -1, trace, &st);
			}
		}
		free(of);
		for (int j = 0; j < 100; j++) {
			uint64_t nth = 1 + kv_rng_below(&rng, total);
			if (!only_point() || only_point() == nth)
				crash_at(wseed, nops, nth, -1, trace, &st);
		}
		free(trace);
	}
	print_stats("sampled", &st);
	assert_crashed_everywhere(&st);
}

/* Torn writes: a write that reached the platter only in part, then the
 * power went out. Sampled across log, table and manifest writes. */
static void test_db_crash__torn_writes(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__torn_writes");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7ea5);
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 3; w++) {
		int64_t nops = 400;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(seed + w, nops, &trace);
		uint64_t *writes = malloc(total * sizeof *writes), nwrites = 0;
		for (uint64_t i = 0; i < total; i++)
			if (trace[i] & EV_WRITE)
				writes[nwrites++] = i + 1;
		assert_true(nwrites > 0);
		/* Every class of write gets some, then random ones. */
		for (int c = 0; c < EV_NCLASS; c++) {
			int done = 0;
			for (uint64_t tries = 0; tries < 4 * nwrites && done < 20; tries++) {
				uint64_t nth = writes[kv_rng_below(&rng, nwrites)];
				if ((trace[nth - 1] & ~EV_WRITE) != c)
					continue;
				double frac = kv_rng_double(&rng);
				if (!only_point() || only_point() == nth)
					crash_at(seed + w, nops, nth, frac, trace, &st);
				done++;
			}
		}
		for (int j = 0; j < 80; j++) {
			uint64_t nth = writes[kv_rng_below(&rng, nwrites)];
			double frac = kv_rng_below(&rng, 8) == 0 ? 0.0 : kv_rng_double(&rng);
			if (!only_point() || only_point() == nth)
				crash_at(seed + w, nops, nth, frac, trace, &st);
		}
		free(writes);
		free(trace);
	}
	print_stats("torn writes", &st);
	if (!only_point()) {
		assert_true(st.by_class[EV_WAL] > 0);
		assert_true(st.by_class[EV_FLUSH] + st.by_class[EV_COMPACT] > 0);
		assert_true(st.by_class[EV_MANIFEST] > 0);
	}
}

/* ---- Crashes under the threaded engine ----------------------------------- */

/*
 * The same workload with background flush and compaction threads: crash
 * points are no longer exact, but the guarantees are the same.
 */
static void test_db_crash__threaded_engine_crash_points(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__threaded_engine_crash_points");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7d);
	int64_t nops = 300;
	uint64_t total = clean_run(seed, nops, NULL);
	uint64_t points = 0;
	double t0 = now_s();
	for (int j = 0; j < 100; j++) {
		struct run r;
		char what[160];
		uint64_t nth = 1 + kv_rng_below(&rng, total);
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " threaded crash %d at operation %" PRIu64,
			 test_seed, j, nth);
		run_init(&r, what);
		r.opt.deterministic = false;
		kv_vfs_mem_crash_after(r.tv->mem, nth);
		run_workload(&r, seed, nops, 2);
		if (r.db)
			kv_lsm_close(r.db);
		r.db = NULL;
		kv_vfs_mem_crash(r.tv->mem);
		recover_and_check(&r);
		run_release(&r);
		points++;
	}
	print_message("threaded: %" PRIu64 " crash points; %.1f s\n", points, now_s() - t0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_db_crash__every_point_of_short_workloads),
		cmocka_unit_test(test_db_crash__sampled_points_of_long_workloads),
		cmocka_unit_test(test_db_crash__torn_writes),
		cmocka_unit_test(test_db_crash__threaded_engine_crash_points),
	};
	apply_test_filter();
	return cmocka_run_group_tests(tests, quiet, NULL);
}
