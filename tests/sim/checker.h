/*
 * checker.h - the simulator's checker (DESIGN §8 "Structure for testability").
 *
 * It keeps the true causal history of a run: every put a client issued (its
 * key, unique body and the context its client had seen) and, for every
 * acknowledged put, its dot. At the end it is given, per key, the result of
 * one read at R = N after healing, and the replicas' stored encodings, and
 * it checks (issue 3 "tests/sim"):
 *   - no acknowledged write is LOST: its dot is in the final read, or the
 *     context of a put whose client had seen it covers the dot;
 *   - no sibling is invented: every version read was written by a client
 *     put of that key, and an acknowledged put's body carries its acked dot;
 *   - one dot never names two different writes (dot reuse);
 *   - the replicas of a key hold byte-identical sibling sets (convergence);
 *   - R + W > N: a read sees every write acknowledged before it was issued.
 * Liveness (every operation succeeded) is the scenario's to assert, from the
 * counts kept here.
 */
#ifndef KV_TESTS_SIM_CHECKER_H
#define KV_TESTS_SIM_CHECKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

enum chk_put_state { CHK_PUT_PENDING, CHK_PUT_ACKED, CHK_PUT_FAILED };

/* One client put, as the client saw it. */
struct chk_put {
	int key;
	char body[32];          /* unique within a run */
	int side;               /* the partition side of the client, or 0 */
	struct kv_ctx seen;     /* the context the put carried */
	enum chk_put_state state;
	struct kv_dot dot;      /* when acked */
	uint32_t w;             /* the put's effective W */
	uint64_t acked_seq;     /* order of its acknowledgement, 1.. */
};

struct checker {
	int nkeys;
	struct chk_put *puts;
	size_t nputs, cap;
	struct kv_dvv *final;   /* per key: the final R = N read */
	/* per key: the indices of its puts, in issue order (the checks look
	 * only at one key's history, so a run of thousands of puts stays fast) */
	size_t **bykey;
	size_t *nbykey, *capbykey;
	/* acknowledged dots: an open-addressing table of put index + 1 (0 =
	 * empty), for the dot-reuse check in O(1) per acknowledgement */
	size_t *dots;
	size_t ndots, capdots;
	bool *final_done;
	/* counts */
	size_t gets_ok, gets_failed;
	size_t puts_acked, puts_failed;
	size_t checked;          /* acknowledged writes verified */
	size_t superseded;       /* acked, gone, covered by an acked put's context */
	size_t superseded_unacked; /* ... covered only by a failed put's context */
	size_t duplicates;       /* one put's body present under two dots */
	size_t diverged;         /* keys whose replicas differ */
	uint64_t ack_seq;        /* acknowledgements so far */
	uint32_t n;              /* the cluster's N, for R + W > N reads */
	size_t fresh_checked;    /* (read, acked write) pairs with R + W > N checked */
	char err[512];           /* the first failure */
	bool failed;
};

void chk_init(struct checker *c, int nkeys);
void chk_release(struct checker *c);

/* A put is about to be sent; @seen (may be NULL) is copied. Returns its index. */
size_t chk_put_issued(struct checker *c, int key, const char *body, int side,
		      const struct kv_ctx *seen, uint32_t w);
void chk_put_acked(struct checker *c, size_t put, struct kv_dot dot);
void chk_put_failed(struct checker *c, size_t put);
void chk_get_done(struct checker *c, bool ok);

/* A read is issued: returns the snapshot chk_get_reply() needs. */
uint64_t chk_get_begin(const struct checker *c);

/*
 * A successful read of @key at effective @r, issued at @snapshot, answered
 * with context @ctx. R + W > N: it must cover every write of @key acked
 * before the read was issued with W + R > N (a strict quorum overlaps).
 */
void chk_get_reply(struct checker *c, int key, uint32_t r, uint64_t snapshot,
		   const struct kv_ctx *ctx);

/* The final read of @key at R = N (copied). */
void chk_final_read(struct checker *c, int key, const struct kv_dvv *set);

/*
 * The stored sets of @key's replicas after the final reads: @enc[i] is the
 * encoding on replica i (an empty slice when absent). Records divergence.
 */
void chk_replicas(struct checker *c, int key, const struct kv_slice *enc, size_t n);

/* Runs the end-of-run checks. Returns true when all pass; else c->err says why. */
bool chk_verify(struct checker *c);

/* The put with @body, or NULL. */
const struct chk_put *chk_find_body(const struct checker *c, int key, struct kv_slice body);

#endif
