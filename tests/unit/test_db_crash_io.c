/*
 * test_db_crash_io.c - I/O errors without a crash (DESIGN §6): an EIO or
 * ENOSPC at any operation, then a close and reopen that lose nothing;
 * stretches of failures that fail writes but not the store, with and
 * without the threaded engine; flushes that fail again and again.
 *
 * The tracing VFS, the workload and the model: db_crash_fx.h. Crashes:
 * test_db_crash.c; bit rot: test_db_crash_rot.c.
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

/* ---- I/O errors without a crash ------------------------------------------ */

static void test_db_crash__io_error_at_every_point_then_close(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_error_at_every_point_then_close");
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 4; w++) {
		int64_t nops = 70;
		uint64_t total = clean_run(seed + 100 + w, nops, NULL);
		for (uint64_t nth = 1; nth <= total; nth++)
			if (!only_point() || only_point() == nth)
				fail_then_close(seed + 100 + w, nops, nth, nth % 2 ? -EIO : -ENOSPC, &st);
	}
	print_stats("one I/O error, then close", &st);
}

static void test_db_crash__io_errors_fail_writes_not_the_store(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_errors_fail_writes_not_the_store");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x10e7);
	int64_t nops = 400;
	uint64_t total = clean_run(seed, nops, NULL);
	uint64_t failed_steps = 0, acked = 0, runs = 0, retries = 0;
	double t0 = now_s();
	for (int j = 0; j < 250; j++) {
		struct run r;
		char what[512];
		/* One to three stretches of failures: a few operations, or
		 * a disk full for a while. */
		int nwin = 1 + (int)kv_rng_below(&rng, 3);
		uint64_t at[3], end = 0;
		unsigned count[3];
		int err[3];
		int len = snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " I/O error run %d:", test_seed, j);
		for (int w = 0; w < nwin; w++) {
			at[w] = 1 + kv_rng_below(&rng, total);
			count[w] = 1 + (unsigned)kv_rng_below(&rng, kv_rng_below(&rng, 4) == 0 ? 40 : 6);
			err[w] = kv_rng_below(&rng, 2) ? -EIO : -ENOSPC;
			if (at[w] + count[w] > end)
				end = at[w] + count[w];
			len += snprintf(what + len, sizeof what - (size_t)len, " %u x %s at operation %" PRIu64,
					count[w], err[w] == -EIO ? "EIO" : "ENOSPC", at[w]);
		}
		if (only_point() && only_point() != at[0])
			continue;
		run_init(&r, what);
		for (int w = 0; w < nwin; w++) {
			r.tv->fail[w].at = at[w];
			r.tv->fail[w].count = count[w];
			r.tv->fail[w].err = err[w];
		}
		r.tv->nfail = nwin;
		struct kv_rng wl;
		kv_rng_seed(&wl, seed);
		int64_t first_ok_after = -1;
		for (int64_t i = 0; i < nops; i++) {
			struct op o;
			plan_op(&wl, &o);
			bool faults_over = kv_vfs_mem_ops(r.tv->mem) >= end;
			int rc = exec_op(&r, i, &o);
			if (rc)
				failed_steps++;
			if (!faults_over)
				continue;
			/* Once the faults stop, at most one step may still fail
			 * (it clears the state the failure left); no more. */
			if (rc == 0 && first_ok_after < 0)
				first_ok_after = i;
			if (rc && first_ok_after >= 0)
				fail_msg("%s: step %" PRId64 " failed (%s) long after the faults stopped", what, i,
					 kv_strerror(rc));
			if (rc && first_ok_after < 0)
				retries++;
		}
		r.next_op = nops;
		/* The faults stop (if the workload did not use them all up). */
		kv_vfs_mem_fail_next(r.tv->mem, 0, 0);
		r.tv->nfail = 0;
		if (!r.db) {
			int rc = run_open(&r, NULL);
			if (rc)
				fail_msg("%s: open after the faults: %s", what, kv_strerror(rc));
		}
		/* The store still serves reads and takes writes; one write
		 * may still fail, clearing what the failure left. */
		for (int k = 0; k < NKEYS; k++)
			read_state(&r, k, true, false, NULL);
		if (try_write(&r))
			retries++;
		write_more(&r, 4);
		acked += r.acked;
		kv_lsm_close(r.db); /* may report the background error */
		r.db = NULL;
		/* A clean reopen: what the model allows, nothing lost. */
		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: clean reopen failed: %s", what, kv_strerror(rc));
		if (rep.possible_loss || rep.tables_quarantined)
			fail_msg("%s: clean reopen after I/O errors reports loss (quarantined %u)", what,
				 rep.tables_quarantined);
		check_model(&r);
		write_more(&r, 2);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
		runs++;
	}
	print_message("I/O errors: %" PRIu64 " runs, %" PRIu64 " steps failed, %" PRIu64
		      " writes needed a retry, %" PRIu64 " writes acknowledged; %.1f s\n",
		      runs, failed_steps, retries, acked, now_s() - t0);
	if (!only_point())
		assert_true(failed_steps > 0);
}

/*
 * The same with background threads: a failed flush or compaction sets the
 * engine's background error, which fails writes until the thread's retry
 * (a second later) succeeds. Writes must come back within a few seconds.
 */
static void test_db_crash__io_errors_under_the_threaded_engine(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_errors_under_the_threaded_engine");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7e);
	uint64_t failed_steps = 0, waited_ms = 0;
	double t0 = now_s();
	for (int j = 0; j < 12; j++) {
		struct run r;
		char what[160];
		int64_t nops = 300, fault_step = 30 + (int64_t)kv_rng_below(&rng, 200);
		if (j % 2) {
			/* Fail the background work: start at a flush or compaction. */
			struct kv_rng plan;
			kv_rng_seed(&plan, seed + (uint64_t)j);
			for (int64_t i = 0; i < nops; i++) {
				struct op o;
				plan_op(&plan, &o);
				if (i >= fault_step && (o.kind == OP_FLUSH || o.kind == OP_COMPACT)) {
					fault_step = i;
					break;
				}
			}
		}
		unsigned count = 1 + (unsigned)kv_rng_below(&rng, 30);
		int err = kv_rng_below(&rng, 2) ? -EIO : -ENOSPC;
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " threaded I/O error run %d: %u x %s from step %" PRId64,
			 test_seed, j, count, err == -EIO ? "EIO" : "ENOSPC", fault_step);
		run_init(&r, what);
		r.opt.deterministic = false;
		struct kv_rng wl;
		kv_rng_seed(&wl, seed + (uint64_t)j);
		uint64_t end = UINT64_MAX;
		double over_at = 0;
		for (int64_t i = 0; i < nops; i++) {
			if (i == fault_step) {
				pthread_mutex_lock(&r.tv->mu);
				uint64_t at = kv_vfs_mem_ops(r.tv->mem) + 1;
				kv_vfs_mem_fail_next(r.tv->mem, count, err);
				end = at + count;
				pthread_mutex_unlock(&r.tv->mu);
			}
			struct op o;
			plan_op(&wl, &o);
			int rc = exec_op(&r, i, &o);
			failed_steps += rc != 0;
			if (kv_vfs_mem_ops(r.tv->mem) < end)
				continue;
			if (over_at == 0)
				over_at = now_s();
			if (rc && now_s() - over_at > 5)
				fail_msg("%s: step %" PRId64 " still fails (%s) 5 s after the faults stopped", what, i,
					 kv_strerror(rc));
			if (rc) {
				struct timespec ts = { 0, 20 * 1000000 };
				nanosleep(&ts, NULL);
				waited_ms += 20;
			}
		}
		r.next_op = nops;
		kv_vfs_mem_fail_next(r.tv->mem, 0, 0);
		if (!r.db && run_open(&r, NULL))
			fail_msg("%s: open after the faults failed", what);
		double t_retry = now_s();
		while (try_write(&r)) {
			if (now_s() - t_retry > 5)
				fail_msg("%s: writes still fail 5 s after the faults stopped", what);
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
			waited_ms += 20;
		}
		write_more(&r, 10);
		kv_lsm_close(r.db);
		r.db = NULL;
		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: clean reopen failed: %s", what, kv_strerror(rc));
		if (rep.possible_loss || rep.tables_quarantined)
			fail_msg("%s: clean reopen after I/O errors reports loss", what);
		check_model(&r);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
	}
	print_message("threaded I/O errors: 12 runs, %" PRIu64 " steps failed, %" PRIu64
		      " ms waiting for writes to come back; %.1f s\n",
		      failed_steps, waited_ms, now_s() - t0);
}

/*
 * Flushes that fail again and again (the disk full for a long while) while
 * writes go on, in deterministic mode: memtables wait for a flush that
 * works (no more of them than max_immutable), and then all of it reaches
 * the tables, nothing lost. (Threaded writers fail while the flush thread
 * retries: the threaded I/O error test.)
 */
static void test_db_crash__repeated_flush_failures_lose_nothing(void **state)
{
	(void)state;
	{
		struct run r;
		run_init(&r, "repeated flush failures");
		assert_int_equal(run_open(&r, NULL), 0);
		int failed = 0;
		for (int round = 0; round < 8; round++) {
			for (int j = 0; j < 10; j++)
				assert_int_equal(try_write(&r), 0);
			/* The switch to a new log works (2 operations); the
			 * flush's table cannot be created. */
			pthread_mutex_lock(&r.tv->mu);
			r.tv->fail[0].at = kv_vfs_mem_ops(r.tv->mem) + 3;
			r.tv->fail[0].count = 1;
			r.tv->fail[0].err = -ENOSPC;
			r.tv->nfail = 1;
			pthread_mutex_unlock(&r.tv->mu);
			failed += kv_lsm_flush(r.db) != 0;
			pthread_mutex_lock(&r.tv->mu);
			r.tv->nfail = 0;
			pthread_mutex_unlock(&r.tv->mu);
		}
		print_message("%s: %d of 8 flushes failed\n", r.what, failed);
		/* The disk has room again: writes and a flush work. */
		double t0 = now_s();
		while (try_write(&r)) {
			if (now_s() - t0 > 5)
				fail_msg("%s: writes do not come back", r.what);
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
		}
		for (int tries = 0; kv_lsm_flush(r.db); tries++)
			if (tries > 250)
				fail_msg("%s: flushes do not come back", r.what);
		check_model(&r);
		assert_int_equal(kv_lsm_close(r.db), 0);
		r.db = NULL;
		struct kv_lsm_open_report rep;
		assert_int_equal(run_open(&r, &rep), 0);
		assert_false(rep.possible_loss);
		check_model(&r);
		run_release(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_db_crash__io_error_at_every_point_then_close),
		cmocka_unit_test(test_db_crash__io_errors_fail_writes_not_the_store),
		cmocka_unit_test(test_db_crash__io_errors_under_the_threaded_engine),
		cmocka_unit_test(test_db_crash__repeated_flush_failures_lose_nothing),
	};
	apply_test_filter();
	return cmocka_run_group_tests(tests, quiet, NULL);
}
