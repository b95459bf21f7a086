/*
 * node_fx.h - the in-test harness of the node core's unit tests
 * (test_node*.c; node/node.h, doc/node.md).
 *
 * It runs a few nodes in one process: every message a node sends is encoded
 * and decoded with src/proto (so the core only emits valid messages) and
 * queued; storage effects complete against an in-memory map per node;
 * timers fire only when a test advances the clock. Nodes marked down
 * receive nothing. Everything a helper allocates belongs to the harness
 * and is freed by h_release(); failures fail the running cmocka test.
 */
#ifndef KV_TESTS_UNIT_NODE_FX_H
#define KV_TESTS_UNIT_NODE_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/node.h"
#include "proto/msg.h"
#include "util/slice.h"
#include "version/siblings.h"

#define H_MAX_NODES 4
#define MS 1000000ull

struct h_kv {
	struct kv_buf key, value;
};

struct h_store {
	struct h_kv *v;
	size_t n, cap;
	size_t writes;       /* storage writes of ring keys applied */
	size_t lease_writes; /* writes of the reserved lease record applied */
};

enum h_ev_kind { EV_PEER, EV_READ, EV_WRITE, EV_RANGE };

struct h_ev {
	enum h_ev_kind kind;
	int to;         /* node index */
	uint32_t from;  /* EV_PEER: sender id */
	uint64_t id;    /* request id, or storage op id */
	uint16_t type;  /* EV_PEER */
	struct kv_buf body; /* EV_PEER: encoded message; EV_WRITE: value; EV_RANGE: end */
	struct kv_buf key;  /* EV_READ, EV_WRITE; EV_RANGE: start */
	uint32_t max;       /* EV_RANGE: entries at most */
};

struct h_timer {
	int node;
	uint64_t id, at;
};

struct h_reply {
	int node;
	uint64_t conn, request_id;
	struct kv_buf body;
	struct kv_msg msg; /* decoded; borrows from @body */
};

struct harness {
	int nnodes;
	struct kv_node nodes[H_MAX_NODES];
	struct h_store store[H_MAX_NODES];
	bool down[H_MAX_NODES];
	struct h_ev *q;
	size_t qhead, qn, qcap;
	struct h_timer timers[256];
	size_t ntimers;
	struct h_reply replies[64];
	size_t nreplies;
	uint64_t now;
	uint64_t next_req;
	size_t sent[H_MAX_NODES]; /* peer messages sent by each node */
	size_t aborts[H_MAX_NODES][H_MAX_NODES]; /* kv_effects.aborts: [node][peer] */
	bool hold_storage;        /* storage effects wait in @held until released */
	struct h_ev held[16];
	size_t nheld;
	size_t fail_lease_writes; /* lease writes to complete with an error */
	struct kv_node_member members[H_MAX_NODES];
	uint32_t n, r, w;
};

/* Starts @nnodes nodes (N=@n, R=@r, W=@w; 100 ms request and 150 ms forward
 * timeouts) at 1000 ms on the harness clock. Release with h_release(). */
void h_init(struct harness *h, int nnodes, uint32_t n, uint32_t r, uint32_t w);

/* Frees the nodes, their stores and every queued, held or replied event. */
void h_release(struct harness *h);

/* The entry of @key in @s, or NULL; borrowed from @s. */
struct h_kv *h_find(struct h_store *s, struct kv_slice key);

/* Stores a copy of @value under a copy of @key in @s, counting the write. */
void h_store_put(struct h_store *s, struct kv_slice key, struct kv_slice value);

/* Steps node @i with @in at the harness clock and queues its effects. */
void h_step(struct harness *h, int i, const struct kv_input *in);

/* Delivers @ev to its node (a peer message or a storage completion) and
 * releases @ev's buffers. */
void h_deliver(struct harness *h, struct h_ev *ev);

/* Delivers queued events until none is left. */
void h_run(struct harness *h);

/* Advances the clock to @at and fires every timer due by then, in order. */
void h_advance(struct harness *h, uint64_t at);

/* Restarts node @i as a driver would: drops its state and timers, reads the
 * lease record from its storage and re-inits with the persisted lease. */
void h_restart(struct harness *h, int i);

/* Sends client request @msg (borrowed) to node @i; returns its request id. */
uint64_t h_client(struct harness *h, int i, const struct kv_msg *msg);

/* The one reply to request @req, or NULL; borrowed from @h. */
const struct h_reply *h_reply_for(const struct harness *h, uint64_t req);

/* PUTs @body under @key through node @i with context @ctx (NULL: none) and
 * client request id byte @rid; returns the request id. */
uint64_t h_put(struct harness *h, int i, const char *key, const char *body,
	       const struct kv_ctx *ctx, uint8_t rid);

/* GETs @key through node @i; returns the request id. */
uint64_t h_get(struct harness *h, int i, const char *key);

/* LISTs @dir through node @i at read quorum @r (0: default), 100 entries at
 * most, from the start; returns the request id. */
uint64_t h_list_r(struct harness *h, int i, const char *dir, uint8_t r);

/* Fills @idx with the preference list of @key as node indices; returns its length. */
int h_preflist(struct harness *h, const char *key, int *idx);

/* Decodes node @i's stored set for @key into @out (the caller releases it
 * with kv_dvv_release()); returns false, @out untouched, when absent. */
bool h_stored(struct harness *h, int i, const char *key, struct kv_dvv *out);

/* Whether some version of @s has the body @body. */
bool set_has_body(const struct kv_dvv *s, const char *body);

/* Moves the held storage event of @kind for node @i whose key is (not) the
 * lease's into @ev (the caller delivers or releases it); false if none. */
bool h_take_held(struct harness *h, int i, enum h_ev_kind kind, bool lease,
		 struct h_ev *ev);

/* Stops holding storage, delivers every held event and runs the queue. */
void h_release_held(struct harness *h);

/* Initializes @set to @n concurrent versions, each from its own actor (a
 * partition's joins); the caller releases it with kv_dvv_release(). */
void make_siblings(struct kv_dvv *set, size_t n);

#endif
