/*
 * test_sim.c - scenarios for the deterministic simulator (sim.h) and its
 * checker (checker.h); issue 3 "tests/sim".
 *
 * Each scenario runs many short seeded runs: run i uses seed base + i, where
 * base is $KV_SEED or drawn from the clock (printed either way). A failure
 * prints its run's seed; KV_SEED=<that seed> KV_SIM_RUNS=1 replays exactly
 * that run (the same events in the same order), KV_SEED=<base> the whole
 * scenario. SIM_DEBUG=1 also prints every failed put and the engine's log.
 *
 * Scenarios: no faults (liveness); drops and delays; a partition with W=1
 * writes on both sides; crashes and restarts; chaos (500 seeds, 3-7 nodes,
 * partitions and crashes in the same runs, ~1,000 operations each); chaos
 * over the real storage engine on the fault-injecting VFS; 100 nodes with
 * 5,000 operations; replays; a broken replica the checker must catch;
 * crashes aimed at the window of parallel shipping (doc/node.md "Put"), and
 * the same with restarts that keep their epoch, which the checker must catch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "checker.h"
#include "sim.h"
#include "util/log.h"
#include "util/rng.h"

static uint64_t base_seed;
static size_t log_errors; /* engine log lines (torn writes) */

/* The engine logs its I/O errors; a crash that tears a write causes them. */
static void log_sink(enum kv_log_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level <= KV_LOG_WARN)
		log_errors++;
	if (getenv("SIM_DEBUG") != NULL)
		fprintf(stderr, "kvfs log: %s\n", msg);
}

/*
 * The simulator's seed for run @seed of scenario @salt: each scenario sees
 * different histories for one run seed, and a reported run seed replays with
 * KV_SEED=<seed> KV_SIM_RUNS=1 in every scenario.
 */
static uint64_t sim_seed(uint64_t seed, uint64_t salt)
{
	uint64_t x = seed ^ (salt * 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ull;
	return x ^ (x >> 29);
}

static int runs(int dflt)
{
	const char *e = getenv("KV_SIM_RUNS");
	if (e != NULL && *e != '\0')
		return atoi(e);
	return dflt;
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct totals {
	size_t fresh, runs, ops_ok, ops_failed, acked, checked, superseded, superseded_unacked,
		duplicates, dropped, sent, crashes, partitions, both_sides, events, recoveries,
		torn_tails, flushes, compactions;
};

static void add_totals(struct totals *t, const struct sim *s, const struct checker *c)
{
	struct sim_stats st;
	sim_stats(s, &st);
	t->runs++;
	t->ops_ok += st.ops_ok;
	t->ops_failed += st.ops_failed;
	t->sent += st.msgs_sent;
	t->dropped += st.msgs_dropped;
	t->crashes += st.crashes;
	t->events += st.events;
	t->recoveries += st.recoveries;
	t->torn_tails += st.wal_torn_tails;
	t->flushes += st.flushes;
	t->compactions += st.compactions;
	t->acked += c->puts_acked;
	t->checked += c->checked;
	t->superseded += c->superseded;
	t->superseded_unacked += c->superseded_unacked;
	t->duplicates += c->duplicates;
	t->fresh += c->fresh_checked;
}

static void print_totals(const char *name, const struct totals *t, double secs)
{
	printf("[ sim      ] %s: base seed %llu, %zu runs, %zu ops ok, %zu failed, %zu acked "
	       "writes checked (%zu superseded by a seen write, %zu by an unacked one, "
	       "%zu duplicates), %zu msgs (%zu dropped), %zu crashes, %zu partitions, "
	       "%zu keys with siblings from both sides, %zu R+W>N read checks, %zu events, %.2f s "
	       "(%.0f simulated ops per second of wall time)\n",
	       name, (unsigned long long)base_seed, t->runs, t->ops_ok, t->ops_failed, t->checked,
	       t->superseded, t->superseded_unacked, t->duplicates, t->sent, t->dropped,
	       t->crashes, t->partitions, t->both_sides, t->fresh, t->events, secs,
	       secs > 0 ? (double)(t->ops_ok + t->ops_failed) / secs : 0.0);
	fflush(stdout);
}

/* Ends a run: final reads, checker. Fails the test with the seed. */
static void finish_and_check(struct sim *s, struct checker *c, uint64_t seed, const char *name)
{
	int unread = sim_finish(s);
	if (unread != 0)
		fail_msg("%s seed %llu: %d final reads at R=N failed", name,
			 (unsigned long long)seed, unread);
	if (!chk_verify(c))
		fail_msg("%s seed %llu (replay: KV_SEED=%llu KV_SIM_RUNS=1): %s", name,
			 (unsigned long long)seed, (unsigned long long)seed, c->err);
}

static void add_clients(struct sim *s, int nclients, int ops)
{
	for (int c = 0; c < nclients; c++)
		sim_client_add_ops(s, c, ops, 0, 0); /* any node */
}

/* (1) No faults: every operation succeeds and the checker passes. */
static void test_sim__no_faults_everything_succeeds(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(200);
	for (int i = 0; i < n; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		struct sim_config cfg;
		sim_config_default(&cfg);
		cfg.seed = sim_seed(seed, 1);
		struct checker c;
		chk_init(&c, cfg.nkeys);
		struct sim *s = sim_new(&cfg, &c);
		add_clients(s, cfg.nclients, 50); /* 4 x 50 = 200 ops */
		sim_run_idle(s);
		struct sim_stats st;
		sim_stats(s, &st);
		if (st.ops_failed != 0 || c.puts_failed != 0 || c.gets_failed != 0)
			fail_msg("no-faults seed %llu: %zu operations failed (liveness)",
				 (unsigned long long)seed, st.ops_failed);
		if (st.ops_ok != 200)
			fail_msg("no-faults seed %llu: %zu ops ok, expected 200",
				 (unsigned long long)seed, st.ops_ok);
		finish_and_check(s, &c, seed, "no-faults");
		add_totals(&t, s, &c);
		sim_free(s);
		chk_release(&c);
	}
	print_totals("no faults (5 nodes, N=3, R=W=2, 200 ops)", &t, wall() - t0);
}

static void drops_run(uint64_t seed, struct totals *t, uint64_t *trace)
{
	struct sim_config cfg;
	sim_config_default(&cfg);
	cfg.seed = sim_seed(seed, 2);
	struct kv_rng r;
	kv_rng_seed(&r, seed ^ 0xd1ce);
	cfg.nnodes = 3 + (int)kv_rng_below(&r, 5); /* 3..7 */
	cfg.drop_p = 0.02 + 0.2 * kv_rng_double(&r);
	cfg.net_tail_p = 0.1;
	cfg.random_quorums = true;
	struct checker c;
	chk_init(&c, cfg.nkeys);
	struct sim *s = sim_new(&cfg, &c);
	add_clients(s, cfg.nclients, 40);
	sim_run_idle(s);
	finish_and_check(s, &c, seed, "drops");
	if (t != NULL)
		add_totals(t, s, &c);
	if (trace != NULL)
		*trace = sim_trace(s);
	sim_free(s);
	chk_release(&c);
}

/* (2) Random drops, long-tail delays, per-request R/W: no acked write lost. */
static void test_sim__drops_and_delays_lose_no_acked_write(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(500);
	for (int i = 0; i < n; i++)
		drops_run(base_seed + (uint64_t)i, &t, NULL);
	print_totals("drops+delays (3-7 nodes, N=3, drop 2-22%, random R/W)", &t, wall() - t0);
}

/* Same seed, same event order, same outcome. */
static void test_sim__same_seed_replays_exactly(void **state)
{
	(void)state;
	uint64_t a = 0, b = 0;
	drops_run(base_seed, NULL, &a);
	drops_run(base_seed, NULL, &b);
	assert_true(a == b);
	assert_true(a != 0);
}

/*
 * (3) A partition with W=1 blind writes on both sides, then heal and read at
 * R=N: both sides' siblings are present and the replicas converge. Liveness:
 * a W=1 put from a side that holds a replica of its key succeeds.
 */
static void test_sim__partition_keeps_both_sides_siblings(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(200);
	for (int i = 0; i < n; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		struct sim_config cfg;
		sim_config_default(&cfg);
		cfg.seed = sim_seed(seed, 3);
		cfg.nkeys = 6;
		cfg.partition_holds = true; /* TCP: the cut holds messages, the heal delivers */
		struct checker c;
		chk_init(&c, cfg.nkeys);
		struct sim *s = sim_new(&cfg, &c);
		add_clients(s, cfg.nclients, 10); /* a history before */
		sim_run_idle(s);
		size_t before = c.nputs;

		struct kv_rng r;
		kv_rng_seed(&r, seed ^ 0xbeef);
		int group[SIM_MAX_NODES];
		uint64_t side_mask[2] = { 0, 0 };
		int nfirst = 1 + (int)kv_rng_below(&r, (uint64_t)cfg.nnodes - 1);
		for (int k = 0; k < cfg.nnodes; k++)
			group[k] = 1;
		for (int k = 0; k < nfirst;) { /* a random subset of nfirst nodes */
			int x = (int)kv_rng_below(&r, (uint64_t)cfg.nnodes);
			if (group[x] == 1) {
				group[x] = 0;
				k++;
			}
		}
		for (int k = 0; k < cfg.nnodes; k++)
			side_mask[group[k]] |= 1ull << k;
		sim_partition(s, group);
		t.partitions++;
		for (int cl = 0; cl < cfg.nclients; cl++) {
			sim_client_blind(s, cl, true);
			sim_client_quorums(s, cl, 0, 1);
			sim_client_add_ops(s, cl, 10, side_mask[cl % 2], 1 + cl % 2);
		}
		sim_run_idle(s);
		/* Liveness on each side that holds a replica of the key. */
		for (size_t p = before; p < c.nputs; p++) {
			int pref[16];
			int np = sim_preflist(s, c.puts[p].key, pref);
			bool has_replica = false;
			for (int k = 0; k < np; k++)
				if (group[pref[k]] == c.puts[p].side - 1)
					has_replica = true;
			if (has_replica && c.puts[p].state != CHK_PUT_ACKED)
				fail_msg("partition seed %llu: W=1 put %s failed on a side holding a "
					 "replica (liveness)", (unsigned long long)seed, c.puts[p].body);
		}
		finish_and_check(s, &c, seed, "partition");
		/* Siblings from both sides: every acked partition write is in the
		 * final read (blind writes cover nothing), so count keys with both. */
		for (int k = 0; k < cfg.nkeys; k++) {
			bool seen[2] = { false, false };
			for (size_t p = before; p < c.nputs; p++)
				if (c.puts[p].key == k && c.puts[p].state == CHK_PUT_ACKED) {
					if (kv_dvv_find(&c.final[k], c.puts[p].dot) == NULL)
						fail_msg("partition seed %llu: %s missing after heal",
							 (unsigned long long)seed, c.puts[p].body);
					seen[c.puts[p].side - 1] = true;
				}
			if (seen[0] && seen[1])
				t.both_sides++;
		}
		add_totals(&t, s, &c);
		sim_free(s);
		chk_release(&c);
	}
	if (n >= 10)
		assert_true(t.both_sides > 0);
	print_totals("partition (5 nodes, W=1 both sides, heal, R=N)", &t, wall() - t0);
}

/*
 * (4) Crash and restart of nodes while clients run: writes not yet durable
 * are lost (or made durable unacknowledged); the node restarts from its
 * durable store with its persisted counter lease.
 */
static void test_sim__crash_restart_loses_no_acked_write(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(200);
	for (int i = 0; i < n; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		struct sim_config cfg;
		sim_config_default(&cfg);
		cfg.seed = sim_seed(seed, 4);
		struct kv_rng r;
		kv_rng_seed(&r, seed ^ 0xc0de);
		struct checker c;
		chk_init(&c, cfg.nkeys);
		struct sim *s = sim_new(&cfg, &c);
		add_clients(s, cfg.nclients, 40);
		for (int k = 0; k < 3; k++) {
			int victim = (int)kv_rng_below(&r, (uint64_t)cfg.nnodes);
			sim_run_until(s, sim_now(s) + kv_rng_below(&r, 300 * SIM_MS));
			sim_crash(s, victim);
			sim_run_until(s, sim_now(s) + 50 * SIM_MS + kv_rng_below(&r, 400 * SIM_MS));
			if (sim_restart(s, victim) != 0)
				fail_msg("crash seed %llu: restart failed", (unsigned long long)seed);
		}
		sim_run_idle(s);
		finish_and_check(s, &c, seed, "crash");
		add_totals(&t, s, &c);
		sim_free(s);
		chk_release(&c);
	}
	print_totals("crash/restart (5 nodes, N=3, R=W=2, 3 crashes mid-run)", &t, wall() - t0);
}

/*
 * One chaos run: 3-7 nodes (3 with the engine backend), drops and long-tail
 * delays, per-request R and W, and while the clients run, a seeded schedule
 * of crashes, restarts, partitions and heals — partitions and crashes in the
 * same run. At the end everything heals and restarts, every key is read at
 * R = N and the checker runs its full assertions.
 */
static void chaos_run(uint64_t seed, uint64_t salt, bool lsm, int ops_per_client,
		      struct totals *t, uint64_t *trace)
{
	struct sim_config cfg;
	sim_config_default(&cfg);
	cfg.seed = sim_seed(seed, salt);
	struct kv_rng r;
	kv_rng_seed(&r, cfg.seed ^ 0xc4a05);
	cfg.nnodes = lsm ? 3 : 3 + (int)kv_rng_below(&r, 5); /* 3..7 */
	cfg.drop_p = 0.05 * kv_rng_double(&r);
	cfg.net_tail_p = 0.1;
	cfg.random_quorums = true;
	cfg.partition_holds = true;
	cfg.storage_lsm = lsm;
	if (lsm)
		cfg.disk_max_ns = 8 * SIM_MS; /* more writes in flight when a node crashes */
	struct checker c;
	chk_init(&c, cfg.nkeys);
	struct sim *s = sim_new(&cfg, &c);
	add_clients(s, cfg.nclients, ops_per_client);
	bool partitioned = false;
	size_t partitions = 0;
	int max_down = (cfg.nnodes - 1) / 2 > 0 ? (cfg.nnodes - 1) / 2 : 1;
	/* Bounded: every operation ends by the client timeout, so the clients
	 * finish; the cap is a guard against a scheduling bug. */
	for (int step = 0; step < 100000 && sim_clients_busy(s); step++) {
		sim_run_until(s, sim_now(s) + 100 * SIM_MS + kv_rng_below(&r, 600 * SIM_MS));
		int down[SIM_MAX_NODES], ndown = 0, up[SIM_MAX_NODES], nup = 0;
		for (int k = 0; k < cfg.nnodes; k++) {
			if (sim_is_up(s, k))
				up[nup++] = k;
			else
				down[ndown++] = k;
		}
		uint64_t dice = kv_rng_below(&r, 100);
		if (ndown > 0 && dice < 40) {
			int k = down[kv_rng_below(&r, (uint64_t)ndown)];
			if (sim_restart(s, k) != 0)
				fail_msg("chaos seed %llu: restart of node %d failed",
					 (unsigned long long)seed, k + 1);
		} else if (ndown < max_down && dice < 55) { /* a crash */
			sim_crash(s, up[kv_rng_below(&r, (uint64_t)nup)]);
		} else if (!partitioned && dice >= 55 && dice < 75) { /* a partition */
			int group[SIM_MAX_NODES], n0 = 0;
			for (int k = 0; k < cfg.nnodes; k++) {
				group[k] = (int)kv_rng_below(&r, 2);
				n0 += group[k] == 0;
			}
			if (n0 == 0 || n0 == cfg.nnodes)
				group[kv_rng_below(&r, (uint64_t)cfg.nnodes)] ^= 1;
			sim_partition(s, group);
			partitioned = true;
			partitions++;
		} else if (partitioned && dice >= 75) { /* heal */
			sim_heal(s);
			partitioned = false;
		}
	}
	if (sim_clients_busy(s))
		fail_msg("chaos seed %llu: clients never finished", (unsigned long long)seed);
	sim_run_idle(s);
	finish_and_check(s, &c, seed, lsm ? "chaos-lsm" : "chaos");
	if (t != NULL) {
		add_totals(t, s, &c);
		t->partitions += partitions;
	}
	if (trace != NULL)
		*trace = sim_trace(s);
	sim_free(s);
	chk_release(&c);
}

/*
 * (6) The CI run of issue 3: at least 500 seeds across 3-7 nodes, each with
 * partitions and crashes in the same run and about a thousand operations
 * (4 clients x 250), per-request R/W, drops; the checker's full assertions.
 */
static void test_sim__chaos_partitions_and_crashes_lose_no_acked_write(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(500);
	for (int i = 0; i < n; i++)
		chaos_run(base_seed + (uint64_t)i, 7, false, 250, &t, NULL);
	if (n >= 10)
		assert_true(t.partitions > 0 && t.crashes > 0);
	print_totals("chaos (3-7 nodes, N=3, partitions + crashes + drops, random R/W, 1000 ops)",
		     &t, wall() - t0);
}

/*
 * (7) The same chaos over the real storage engine (src/lsm, deterministic
 * mode) on its in-memory fault-injecting VFS: 3 nodes, a crash is a power
 * cut of the node's VFS (unsynced data dropped) and a restart is the
 * engine's recovery.
 */
static void test_sim__chaos_over_the_real_engine(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(50);
	for (int i = 0; i < n; i++)
		chaos_run(base_seed + (uint64_t)i, 8, true, 75, &t, NULL);
	print_totals("chaos over the engine (3 nodes, lsm on the fault-injecting VFS, 300 ops)", &t,
		     wall() - t0);
	printf("[ sim      ] chaos over the engine: %zu engine recoveries, %zu found a torn WAL "
	       "tail, %zu engine errors logged (torn writes, expected), %zu flushes, "
	       "%zu compactions\n",
	       t.recoveries, t.torn_tails, log_errors, t.flushes, t.compactions);
	if (n >= 10)
		assert_true(t.recoveries > 0 && t.partitions > 0 && t.flushes > 0);
}

/* The chaos runs replay exactly too, over either storage. */
static void test_sim__chaos_same_seed_replays_exactly(void **state)
{
	(void)state;
	for (int lsm = 0; lsm < 2; lsm++) {
		uint64_t a = 0, b = 0;
		chaos_run(base_seed, 9, lsm, 50, NULL, &a);
		chaos_run(base_seed, 9, lsm, 50, NULL, &b);
		assert_true(a == b);
		assert_true(a != 0);
	}
}

/* (5) Scale: one run of 100 nodes, 5,000 operations, 1% drops. */
static void test_sim__hundred_nodes(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	uint64_t seed = base_seed;
	struct sim_config cfg;
	sim_config_default(&cfg);
	cfg.seed = sim_seed(seed, 6);
	cfg.nnodes = 100;
	cfg.nkeys = 200;
	cfg.nclients = 20;
	cfg.drop_p = 0.01;
	struct checker c;
	chk_init(&c, cfg.nkeys);
	struct sim *s = sim_new(&cfg, &c);
	add_clients(s, cfg.nclients, 250);
	sim_run_idle(s);
	finish_and_check(s, &c, seed, "hundred-nodes");
	add_totals(&t, s, &c);
	sim_free(s);
	chk_release(&c);
	double secs = wall() - t0;
	print_totals("100 nodes (N=3, R=W=2, 5000 ops, drop 1%)", &t, secs);
	printf("[ sim      ] 100 nodes: %.0f simulated ops per second of wall time\n",
	       (double)(t.ops_ok + t.ops_failed) / secs);
}

/*
 * One run aimed at the window parallel shipping opens (doc/node.md "Put"):
 * slow, uneven disks and a fast network, so replicas often acknowledge a
 * put before the coordinator's own write is durable; crashes every few tens
 * of milliseconds, so a coordinator often dies inside that window; blind
 * puts on four keys with random W, so the restarted coordinator soon mints
 * on the same key and no client context can excuse a covered dot. With
 * @keep_epoch (the deliberate bug) a restart reuses the actor. Returns
 * whether the checker passed; *err gets its message.
 */
static bool crash_window_run(uint64_t seed, bool keep_epoch, struct totals *t, char *err,
			     size_t errlen)
{
	struct sim_config cfg;
	sim_config_default(&cfg);
	cfg.seed = sim_seed(seed, 10);
	cfg.nnodes = 3;
	cfg.nkeys = 4;
	cfg.nclients = 6;
	cfg.rmw_p = 0; /* blind: no client context ever excuses a covered dot */
	cfg.random_quorums = true;
	cfg.net_min_ns = SIM_MS / 5;
	cfg.net_max_ns = SIM_MS;
	cfg.disk_min_ns = SIM_MS / 10;
	cfg.disk_max_ns = 20 * SIM_MS;
	cfg.think_max_ns = 5 * SIM_MS;
	cfg.bug_keep_epoch_on_crash = keep_epoch;
	struct kv_rng r;
	kv_rng_seed(&r, cfg.seed ^ 0xe90c);
	struct checker c;
	chk_init(&c, cfg.nkeys);
	struct sim *s = sim_new(&cfg, &c);
	add_clients(s, cfg.nclients, 30); /* 180 blind puts: under 64 siblings a key */
	int down = -1;
	for (int step = 0; step < 100000 && sim_clients_busy(s); step++) {
		sim_run_until(s, sim_now(s) + 5 * SIM_MS + kv_rng_below(&r, 40 * SIM_MS));
		if (down >= 0) {
			if (sim_restart(s, down) != 0)
				fail_msg("crash-window seed %llu: restart failed",
					 (unsigned long long)seed);
			down = -1;
		} else {
			down = (int)kv_rng_below(&r, (uint64_t)cfg.nnodes);
			sim_crash(s, down);
		}
	}
	if (sim_clients_busy(s))
		fail_msg("crash-window seed %llu: clients never finished", (unsigned long long)seed);
	sim_run_idle(s);
	int unread = sim_finish(s);
	bool ok = unread == 0 && chk_verify(&c);
	if (!ok)
		snprintf(err, errlen, "%s", unread ? "final reads at R=N failed" : c.err);
	add_totals(t, s, &c);
	sim_free(s);
	chk_release(&c);
	return ok;
}

/*
 * Parallel shipping under crashes aimed at its window: every restart takes
 * a new epoch, so no acknowledged write is lost.
 */
static void test_sim__crash_inside_the_shipping_window_loses_no_acked_write(void **state)
{
	(void)state;
	struct totals t = { 0 };
	double t0 = wall();
	int n = runs(200);
	char err[600];
	for (int i = 0; i < n; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		if (!crash_window_run(seed, false, &t, err, sizeof err))
			fail_msg("crash-window seed %llu (replay: KV_SEED=%llu KV_SIM_RUNS=1): %s",
				 (unsigned long long)seed, (unsigned long long)seed, err);
	}
	print_totals("crash window (3 nodes, slow disks, a crash every ~25 ms, blind puts, random W)", &t,
		     wall() - t0);
}

/*
 * The rule is needed: the same runs with restarts that keep the epoch (the
 * rule before parallel shipping) must lose an acknowledged write within
 * the budget of runs.
 */
static void test_sim__checker_catches_reused_actor_after_crash(void **state)
{
	(void)state;
	struct totals t = { 0 };
	int caught_at = -1, n = 300; /* caught within 0-38 runs in the seeds tried */
	char err[600];
	for (int i = 0; i < n && caught_at < 0; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		if (!crash_window_run(seed, true, &t, err, sizeof err)) {
			caught_at = i;
			printf("[ sim      ] reused actor after a crash caught at run %d (seed %llu): "
			       "%s\n", i, (unsigned long long)seed, err);
		}
	}
	if (caught_at < 0)
		printf("[ sim      ] reused actor after a crash: not caught in %d runs\n", n);
	assert_true(caught_at >= 0);
}

/*
 * The checker catches a bug: with a store whose reads sometimes answer "not
 * found" (a replica that overwrites instead of joining), the checker must
 * fail within a few seeds.
 */
static void test_sim__checker_catches_overwriting_replica(void **state)
{
	(void)state;
	int caught_at = -1;
	for (int i = 0; i < 20 && caught_at < 0; i++) {
		uint64_t seed = base_seed + (uint64_t)i;
		struct sim_config cfg;
		sim_config_default(&cfg);
		cfg.seed = sim_seed(seed, 5);
		cfg.bug_read_empty_p = 0.2;
		struct checker c;
		chk_init(&c, cfg.nkeys);
		struct sim *s = sim_new(&cfg, &c);
		add_clients(s, cfg.nclients, 40);
		sim_run_idle(s);
		sim_finish(s);
		if (!chk_verify(&c)) {
			caught_at = i;
			printf("[ sim      ] broken replica caught at run %d (seed %llu): %s\n", i,
			       (unsigned long long)seed, c.err);
		}
		sim_free(s);
		chk_release(&c);
	}
	assert_true(caught_at >= 0);
}

int main(void)
{
	base_seed = kv_test_seed("test_sim");
	kv_log_set_sink(log_sink, NULL);
	printf("[ sim      ] base seed %llu (replay: KV_SEED=%llu)\n", (unsigned long long)base_seed,
	       (unsigned long long)base_seed);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sim__no_faults_everything_succeeds),
		cmocka_unit_test(test_sim__drops_and_delays_lose_no_acked_write),
		cmocka_unit_test(test_sim__same_seed_replays_exactly),
		cmocka_unit_test(test_sim__partition_keeps_both_sides_siblings),
		cmocka_unit_test(test_sim__crash_restart_loses_no_acked_write),
		cmocka_unit_test(test_sim__chaos_partitions_and_crashes_lose_no_acked_write),
		cmocka_unit_test(test_sim__chaos_over_the_real_engine),
		cmocka_unit_test(test_sim__chaos_same_seed_replays_exactly),
		cmocka_unit_test(test_sim__hundred_nodes),
		cmocka_unit_test(test_sim__checker_catches_overwriting_replica),
		cmocka_unit_test(test_sim__crash_inside_the_shipping_window_loses_no_acked_write),
		cmocka_unit_test(test_sim__checker_catches_reused_actor_after_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
