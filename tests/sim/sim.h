/*
 * sim.h - the deterministic simulator (DESIGN §8, issue 3 "tests/sim").
 *
 * Runs many kvfs node cores (node/node.h) in one process under virtual time.
 * Everything that happens is an event in one priority queue ordered by
 * (time, sequence number): message deliveries, timer firings, storage
 * completions, client wake-ups and client timeouts. All randomness comes
 * from one kv_rng seeded by the run's seed, so a seed replays exactly: the
 * same events in the same order with the same outcome.
 *
 *   network  every peer message is encoded and decoded through src/proto;
 *            per-message delay (uniform plus a long tail, which reorders),
 *            drop probability, partitions between groups of nodes, heal.
 *            A message is dropped when its sender or receiver crashed or
 *            restarted since it was sent (a broken connection).
 *   storage  per node an in-memory map of durable values. A write becomes
 *            durable when its completion fires (after a seeded delay); a
 *            crash loses each write not yet completed, or (coin flip) makes
 *            it durable without ever acknowledging it. With storage_lsm,
 *            per node the real engine (src/lsm, deterministic mode) on its
 *            own in-memory fault-injecting VFS: a crash is a power cut of
 *            that VFS (unsynced bytes and directory entries vanish; a write
 *            in flight may also be torn) and a restart is the engine's
 *            recovery; possible loss there starts a new epoch.
 *   crash    drops the node and everything in flight to or from it;
 *            restart re-inits it from durable storage. A crash is an
 *            unclean stop, so the restart takes a new epoch, as the real
 *            driver does (doc/node.md "Epochs"): the node's epoch is its
 *            durable "NODE file"; the persisted dot-counter lease
 *            (kv_node_lease_skey()) is passed as counter_lease only when its
 *            record names that epoch — after a new epoch it does not, and
 *            the counter starts over at lease 0.
 *   clients  each has at most one operation in flight: read-modify-write
 *            (GET, then PUT with the read's context) or a blind PUT, sent to
 *            a random node among those it may reach, with per-request R/W.
 *            Every put goes to the checker (checker.h).
 */
#ifndef KV_TESTS_SIM_SIM_H
#define KV_TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checker.h"
#include "util/slice.h"

#define SIM_MAX_NODES 128
#define SIM_MS 1000000ull

struct sim_config {
	int nnodes;                 /* 1..SIM_MAX_NODES */
	uint32_t n, r, w;           /* cluster N and default quorums */
	uint64_t seed;
	uint64_t net_min_ns, net_max_ns; /* uniform per-message delay */
	double net_tail_p;          /* chance of a delay 10x net_max_ns */
	double drop_p;              /* chance a peer message is lost */
	uint64_t disk_min_ns, disk_max_ns; /* storage completion delay */
	uint64_t request_timeout_ns, forward_timeout_ns;
	uint64_t client_timeout_ns; /* a client gives up (outcome unknown) */
	uint64_t think_max_ns;      /* client pause between operations */
	int nkeys;
	int nclients;
	double rmw_p;               /* chance an operation is read-modify-write */
	bool random_quorums;        /* per request R, W uniform in 1..N */
	/* A deliberately broken store, to show the checker catches bugs: a read
	 * answers "not found" with this probability, so the replica's
	 * read-join-write overwrites instead of joining. 0 in every real run. */
	double bug_read_empty_p;
	/* Messages between partitioned nodes are held and delivered after the
	 * heal (as TCP retransmits), unless the core aborted that link or an
	 * end crashed; false: they are lost. */
	bool partition_holds;
	/* Another deliberate bug: a restart after a crash keeps the epoch (the
	 * rule before coordinators shipped in parallel with their own write).
	 * A coordinator that crashed after shipping a dot it had not made
	 * durable then mints a later dot of the same actor, whose context
	 * covers the shipped one. false in every real run. */
	bool bug_keep_epoch_on_crash;
	/* Storage backend: false = the in-memory map (for scale); true = the
	 * real engine (src/lsm, deterministic mode) per node over its own
	 * in-memory fault-injecting VFS (vfs_mem), for small runs. */
	bool storage_lsm;
};

void sim_config_default(struct sim_config *cfg);

struct sim;

/* Builds a run; @chk (borrowed, initialized for cfg->nkeys) receives the history. */
struct sim *sim_new(const struct sim_config *cfg, struct checker *chk);
void sim_free(struct sim *s);

uint64_t sim_now(const struct sim *s);
/* A hash of every event handled so far, in order (for replay checks). */
uint64_t sim_trace(const struct sim *s);

/*
 * Gives client @c @ops more operations; it may use nodes whose bit is set in
 * @nodes (the first 64 nodes), or any node when @nodes is 0.
 */
void sim_client_add_ops(struct sim *s, int c, int ops, uint64_t nodes, int side);
/* Per-request quorums of client @c's operations (0 = cluster default). */
void sim_client_quorums(struct sim *s, int c, uint8_t r, uint8_t w);
/* Client @c does only blind puts (true) or the configured mix (false). */
void sim_client_blind(struct sim *s, int c, bool blind);
/* True while some client has an operation in flight or left to issue. */
bool sim_clients_busy(const struct sim *s);

/* Handles the next event. Returns false when the queue is empty. */
bool sim_step(struct sim *s);
/* Runs events due up to @t, then sets the clock to @t. */
void sim_run_until(struct sim *s, uint64_t t);
/* Runs until the queue is empty: quiescent (every timer fired). */
void sim_run_idle(struct sim *s);

void sim_set_drop(struct sim *s, double p);
/* Partition: node i is in group @group[i]; messages between groups are lost. */
void sim_partition(struct sim *s, const int *group);
void sim_heal(struct sim *s);
void sim_crash(struct sim *s, int node);
/* Returns 0 or the kv_node_init() error. */
int sim_restart(struct sim *s, int node);
bool sim_is_up(const struct sim *s, int node);

/* Node indices (0-based) of @key's preference list; returns how many. */
int sim_preflist(struct sim *s, int key, int *idx);

/*
 * The end of a run: with the network healed and drops off, reads every key
 * at R = N (retrying a failed read up to 3 times), runs to quiescence, hands
 * the reads and every replica's stored set to the checker. Returns the
 * number of keys whose final read failed.
 */
int sim_finish(struct sim *s);

/* Counters of the run. */
struct sim_stats {
	size_t events, msgs_sent, msgs_dropped, ops_ok, ops_failed, crashes, aborts;
	size_t recoveries;     /* engine backend: kv_lsm_open() after a crash */
	size_t wal_torn_tails; /* ... that found a torn WAL tail */
	size_t flushes, compactions; /* engine backend, summed over every open */
};
void sim_stats(const struct sim *s, struct sim_stats *out);

#endif
