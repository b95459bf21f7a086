/*
 * test_db_crash_rot.c - bit rot and lost sectors (DESIGN §6): flipped bits
 * and truncations in logs, tables and the manifest are reported or refused,
 * never served as data; every manifest bit is checked; a bad log record
 * followed by good ones is skipped, the good ones kept.
 *
 * The tracing VFS, the workload and the model: db_crash_fx.h. Crashes:
 * test_db_crash.c; I/O errors: test_db_crash_io.c.
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

/* ---- Bit rot and lost sectors -------------------------------------------- */

enum rot_target { ROT_WAL, ROT_SST, ROT_MANIFEST, ROT_NTARGETS };

/* Picks a file of @target in the database; returns false if there is none. */
static bool pick_file(struct kv_vfs *mem, enum rot_target target, struct kv_rng *rng, char *path, size_t n)
{
	char **names = NULL;
	size_t count = 0;
	assert_int_equal(kv_vfs_list(mem, DB_DIR, &names, &count), 0);
	const char *best = NULL;
	size_t nsst = 0;
	for (size_t i = 0; i < count; i++) {
		if (target == ROT_WAL && ends_with(names[i], ".log")) {
			if (!best || strcmp(names[i], best) > 0) /* the newest log */
				best = names[i];
		} else if (target == ROT_SST && ends_with(names[i], ".sst")) {
			if (kv_rng_below(rng, ++nsst) == 0) /* a random table */
				best = names[i];
		} else if (target == ROT_MANIFEST && !strcmp(names[i], "MANIFEST")) {
			best = names[i];
		}
	}
	if (best)
		snprintf(path, n, "%s/%s", DB_DIR, best);
	kv_vfs_names_free(names, count);
	return best != NULL;
}

/* Write @i of the damaged-log test: "@i:" then digits up to 1200 bytes. */
static void make_big_value(int i, struct kv_buf *out)
{
	char head[32];
	int hn = snprintf(head, sizeof head, "%d:", i);
	kv_buf_reset(out);
	assert_int_equal(kv_buf_append(out, head, (size_t)hn), 0);
	while (out->n < 1200)
		assert_int_equal(kv_buf_append_u8(out, (uint8_t)('0' + out->n % 10)), 0);
}

static uint64_t file_size(struct kv_vfs *mem, const char *path)
{
	struct kv_file *f = NULL;
	uint64_t size = 0;
	assert_int_equal(kv_vfs_open(mem, path, KV_VFS_READ, &f), 0);
	assert_int_equal(kv_file_size(f, &size), 0);
	kv_file_close(f);
	return size;
}

static void test_db_crash__bit_rot_and_truncation_are_reported_not_served(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__bit_rot_and_truncation_are_reported_not_served");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0xb17);
	uint64_t by_target[ROT_NTARGETS] = { 0 }, refused = 0, skipped = 0, quarantined = 0, corrupt_reads = 0,
		 exact = 0;
	double t0 = now_s();
	for (int j = 0; j < 400; j++) {
		struct run r;
		char what[512];
		enum rot_target target = (enum rot_target)kv_rng_below(&rng, ROT_NTARGETS);
		bool truncate = kv_rng_below(&rng, 3) == 0;
		int64_t nops = 60 + (int64_t)kv_rng_below(&rng, 200);
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " rot run %d", test_seed, j);
		run_init(&r, what);
		/* Keep writes in the log (no final flush); for log damage, a
		 * memtable big enough for a log of several 32 KiB blocks. */
		r.opt.memtable_bytes = target == ROT_WAL ? 160 << 10 : 16 << 10;
		assert_int_equal(run_workload(&r, seed + (uint64_t)j, nops, -1), 0);
		if (target == ROT_WAL)
			write_more(&r, 400); /* a log of a few blocks */
		assert_int_equal(kv_lsm_close(r.db), 0);
		r.db = NULL;
		char path[64];
		if (!pick_file(r.tv->mem, target, &rng, path, sizeof path)) {
			run_release(&r);
			continue;
		}
		uint64_t size = file_size(r.tv->mem, path);
		if (size == 0) {
			run_release(&r);
			continue;
		}
		uint64_t cut = size;
		if (truncate) {
			cut = kv_rng_below(&rng, size);
			assert_int_equal(kv_vfs_mem_truncate_file(r.tv->mem, path, cut), 0);
		} else {
			/* One to three distinct bits (two flips of one bit undo
			 * each other). */
			int flips = 1 + (int)kv_rng_below(&rng, 3), ndone = 0;
			uint64_t done[3];
			for (int f = 0; f < flips; f++) {
				uint64_t pos = kv_rng_below(&rng, size * 8);
				bool again = false;
				for (int g = 0; g < ndone; g++)
					again |= done[g] == pos;
				if (again)
					continue;
				done[ndone++] = pos;
				assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, pos / 8, (unsigned)(pos % 8)), 0);
			}
		}
		size_t wl = strlen(what);
		snprintf(what + wl, sizeof what - wl, ": %s %s (size %" PRIu64 ", cut at %" PRIu64 ")",
			 truncate ? "truncated" : "flipped bits in", path, size, cut);
		snprintf(r.what, sizeof r.what, "%s", what);
		by_target[target]++;

		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (target == ROT_MANIFEST) {
			/* The manifest is checksummed whole: damage is refused. */
			if (rc != KV_ECORRUPT)
				fail_msg("%s: open returned %s, want KV_ECORRUPT", what, kv_strerror(rc));
			assert_null(r.db);
			refused++;
			run_release(&r);
			continue;
		}
		if (rc)
			fail_msg("%s: open failed: %s (a damaged log or table must not keep the store down)", what,
				 kv_strerror(rc));
		if (rep.wal_bad_regions || rep.wal_bytes_skipped)
			skipped++;
		quarantined += rep.tables_quarantined;
		if ((rep.wal_bad_regions || rep.tables_quarantined) && !rep.possible_loss)
			fail_msg("%s: damage reported without possible_loss", what);
		/*
		 * Nothing reported: every key as the model says, or a read that
		 * finds the damage (KV_ECORRUPT). Something reported: any value
		 * ever written to the key (older ones may resurface), never one
		 * that was not.
		 */
		/* (A log cut at a record boundary looks like an unsynced tail.) */
		bool strict = !rep.possible_loss && !rep.wal_torn_tail && !(target == ROT_WAL && truncate);
		bool corrupt = false;
		for (int k = 0; k < NKEYS; k++) {
			/* A read that finds a corrupt table quarantines it. */
			struct kv_lsm_stats stats;
			kv_lsm_get_stats(r.db, &stats);
			corrupt |= stats.quarantined > 0;
			read_state(&r, k, strict && !corrupt, true, &corrupt);
		}
		if (strict && !corrupt)
			exact++;
		if (corrupt)
			corrupt_reads++;
		/* A scan yields only keys and values that were written. */
		struct kv_iter *it = kv_lsm_iter(r.db, NULL);
		for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
			struct kv_slice key = kv_iter_key(it);
			int k = key.n == 6 && !memcmp(key.p, "key", 3)
					? (key.p[3] - '0') * 100 + (key.p[4] - '0') * 10 + (key.p[5] - '0')
					: -1;
			if (k < 0 || k >= NKEYS)
				fail_msg("%s: the scan yields a key never written", what);
			int64_t id = parse_value(k, kv_iter_value(it), &r.scratch);
			if (id < 0 || !was_written(&r.m.k[k], id))
				fail_msg("%s: the scan yields a value never written to key %d", what, k);
		}
		int its = kv_iter_status(it);
		if (its && its != KV_ECORRUPT)
			fail_msg("%s: scan: %s", what, kv_strerror(its));
		kv_iter_destroy(it);
		/* The store takes writes, and the next reopen is clean. */
		write_more(&r, 3);
		kv_lsm_close(r.db);
		r.db = NULL;
		rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: the reopen after the damaged one failed: %s", what, kv_strerror(rc));
		if (rep.wal_bad_regions || rep.wal_torn_tail)
			fail_msg("%s: the log damage is still there after a reopen", what);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
	}
	print_message("bit rot: damaged %" PRIu64 " logs, %" PRIu64 " tables, %" PRIu64
		      " manifests; %" PRIu64 " refused, %" PRIu64 " opens skipped log damage, %" PRIu64
		      " tables quarantined, %" PRIu64 " runs read KV_ECORRUPT, %" PRIu64 " read exactly; %.1f s\n",
		      by_target[ROT_WAL], by_target[ROT_SST], by_target[ROT_MANIFEST], refused, skipped,
		      quarantined, corrupt_reads, exact, now_s() - t0);
	assert_true(refused > 0 && skipped > 0);
}

/* Every byte of the manifest is checked: any one bit flipped, and open
 * refuses it with KV_ECORRUPT. */
static void test_db_crash__every_manifest_bit_is_checked(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "manifest bit flips");
	assert_int_equal(run_workload(&r, 42, 120, -1), 0);
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	const char *path = DB_DIR "/MANIFEST";
	uint64_t size = file_size(r.tv->mem, path);
	for (uint64_t off = 0; off < size; off++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, off, bit), 0);
			int rc = run_open(&r, NULL);
			if (rc != KV_ECORRUPT)
				fail_msg("bit %u of byte %" PRIu64 " of %" PRIu64 " flipped: open returned %s", bit, off,
					 size, kv_strerror(rc));
			assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, off, bit), 0);
		}
	}
	assert_int_equal(run_open(&r, NULL), 0);
	check_model(&r);
	run_release(&r);
}

/* A damaged record in the middle of the log: the store opens, says it may
 * have lost writes, and keeps the good records after the damage. */
static void test_db_crash__bad_wal_record_followed_by_good_ones_is_skipped(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "bad record in the middle of the log");
	r.opt.memtable_bytes = 4 << 20; /* everything stays in the log */
	assert_int_equal(run_open(&r, NULL), 0);
	char kb[16];
	enum { NWRITES = 200 };
	/* Write i puts ~1.2 KiB under key i % NKEYS: about 27 records per
	 * 32 KiB log block, 8 blocks in all. */
	for (int i = 0; i < NWRITES; i++) {
		make_big_value(i, &r.val);
		assert_int_equal(kv_lsm_put(r.db, key_slice(i % NKEYS, kb, sizeof kb), kv_buf_slice(&r.val)), 0);
	}
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	char path[256];
	struct kv_rng rng;
	kv_rng_seed(&rng, 1);
	assert_true(pick_file(r.tv->mem, ROT_WAL, &rng, path, sizeof path));
	assert_true(file_size(r.tv->mem, path) > 6 * 32768);
	/* Rot a byte of the first record's value. */
	assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, 40, 2), 0);
	struct kv_lsm_open_report rep;
	assert_int_equal(run_open(&r, &rep), 0);
	assert_true(rep.possible_loss);
	assert_true(rep.wal_bad_regions >= 1);
	assert_true(rep.wal_bytes_skipped > 0);
	assert_false(rep.wal_torn_tail);
	/* The last write of every key (i >= 128) lies blocks after the damage. */
	struct kv_buf got = KV_BUF_INIT;
	for (int k = 0; k < NKEYS; k++) {
		int last = k < NWRITES - 3 * NKEYS ? 3 * NKEYS + k : 2 * NKEYS + k;
		make_big_value(last, &r.val);
		assert_int_equal(kv_lsm_get(r.db, NULL, key_slice(k, kb, sizeof kb), &got), 0);
		assert_true(kv_slice_eq(kv_buf_slice(&got), kv_buf_slice(&r.val)));
	}
	kv_buf_release(&got);
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	/* The damage is behind us: the next open is clean. */
	assert_int_equal(run_open(&r, &rep), 0);
	assert_false(rep.possible_loss);
	assert_int_equal(rep.wal_bad_regions, 0);
	run_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_db_crash__bit_rot_and_truncation_are_reported_not_served),
		cmocka_unit_test(test_db_crash__every_manifest_bit_is_checked),
		cmocka_unit_test(test_db_crash__bad_wal_record_followed_by_good_ones_is_skipped),
	};
	apply_test_filter();
	return cmocka_run_group_tests(tests, quiet, NULL);
}
