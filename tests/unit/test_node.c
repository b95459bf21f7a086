/*
 * test_node.c - the node core's put path (node/node.h, doc/node.md "Put"):
 * a put coordinated by the first replica and forwarded to it from anywhere
 * else, W quorums met and missed, siblings and their resolution, the key's
 * queue, deletes, retried puts, replicas that join rather than overwrite;
 * and forwarding (doc/protocol.md §6.1): fail-over on a timeout or a closed
 * connection, accepted forwards that wait for the request's deadline.
 *
 * The other node core tests: test_node_ship.c (shipping, acks, who mints a
 * dot), test_node_read.c (GET), test_node_list.c (LIST). The harness they
 * share: node_fx.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "node/node.h"
#include "proto/msg.h"
#include "ring/ring.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/siblings.h"

#include "node_fx.h"

/* ---- Puts: coordination, quorums, siblings, the key's queue ------------- */

static void test_node__put_then_get_round_trips(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	uint64_t put = h_put(&h, 0, "/docs/a.txt", "hello", NULL, 1);
	h_run(&h);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	assert_true(kv_ctx_covers(&pr->msg.put_reply.context, pr->msg.put_reply.dot));
	/* Every replica holds the version once the REPLICA_WRITEs land. */
	for (int i = 0; i < 3; i++) {
		struct kv_dvv s = KV_DVV_INIT;
		assert_true(h_stored(&h, i, "/docs/a.txt", &s));
		assert_int_equal(s.n, 1);
		assert_true(set_has_body(&s, "hello"));
		kv_dvv_release(&s);
	}
	uint64_t get = h_get(&h, 2, "/docs/a.txt");
	h_run(&h);
	const struct h_reply *gr = h_reply_for(&h, get);
	assert_non_null(gr);
	assert_int_equal(gr->msg.type, KV_MSG_GET_REPLY);
	assert_int_equal(gr->msg.set_reply.set.n, 1);
	assert_true(set_has_body(&gr->msg.set_reply.set, "hello"));
	assert_true(kv_dot_eq(gr->msg.set_reply.set.v[0].dot, pr->msg.put_reply.dot));
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	assert_int_equal(h.ntimers, 0);
	h_release(&h);
}

static void test_node__put_via_non_replica_is_forwarded(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 2, 1, 2); /* N = 2 of 3 nodes: one node is no replica */
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/x/y", pref), 2);
	int outsider = 3 - pref[0] - pref[1];
	uint64_t put = h_put(&h, outsider, "/x/y", "v", NULL, 7);
	h_run(&h);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->node, outsider);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	/* The coordinating replica (first of the list) minted the dot. */
	assert_int_equal(pr->msg.put_reply.dot.actor.node, (uint32_t)(pref[0] + 1));
	/* The outsider stored nothing; both replicas did. */
	assert_int_equal(h.store[outsider].writes, 0);
	assert_int_equal(h.store[pref[0]].writes, 1);
	assert_int_equal(h.store[pref[1]].writes, 1);
	h_release(&h);
}

static void test_node__forward_timeout_tries_next_replica(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/f/k", pref), 3);
	h.down[pref[0]] = true;
	uint64_t put = h_put(&h, pref[2], "/f/k", "v", NULL, 9);
	h_run(&h);
	assert_null(h_reply_for(&h, put)); /* waiting on the silent coordinator */
	h_advance(&h, h.now + 150 * MS);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	/* The second replica coordinated: it minted the dot. */
	assert_int_equal(pr->msg.put_reply.dot.actor.node, (uint32_t)(pref[1] + 1));
	assert_int_equal(h.store[pref[0]].writes, 0);
	h_release(&h);
}

static void test_node__same_context_puts_make_siblings_and_both_resolve(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	uint64_t p0 = h_put(&h, 0, "/s/f", "base", NULL, 1);
	h_run(&h);
	assert_non_null(h_reply_for(&h, p0));
	uint64_t g0 = h_get(&h, 1, "/s/f");
	h_run(&h);
	const struct h_reply *read = h_reply_for(&h, g0);
	assert_non_null(read);
	struct kv_ctx seen = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&seen, &read->msg.set_reply.set.ctx), 0);

	/* Two writers, each with what the read saw: two siblings, base gone. */
	uint64_t pa = h_put(&h, 1, "/s/f", "alice", &seen, 2);
	h_run(&h);
	uint64_t pb = h_put(&h, 2, "/s/f", "bob", &seen, 3);
	h_run(&h);
	const struct h_reply *ra = h_reply_for(&h, pa), *rb = h_reply_for(&h, pb);
	assert_int_equal(ra->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(rb->msg.type, KV_MSG_PUT_REPLY);
	uint64_t g1 = h_get(&h, 0, "/s/f");
	h_run(&h);
	const struct kv_dvv *both = &h_reply_for(&h, g1)->msg.set_reply.set;
	assert_int_equal(both->n, 2);
	assert_true(set_has_body(both, "alice"));
	assert_true(set_has_body(both, "bob"));
	assert_false(set_has_body(both, "base"));

	/* A put with the context of both resolves them. */
	struct kv_ctx ctx2 = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&ctx2, &both->ctx), 0);
	uint64_t pc = h_put(&h, 0, "/s/f", "merged", &ctx2, 4);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, pc)->msg.type, KV_MSG_PUT_REPLY);
	uint64_t g2 = h_get(&h, 2, "/s/f");
	h_run(&h);
	const struct kv_dvv *one = &h_reply_for(&h, g2)->msg.set_reply.set;
	assert_int_equal(one->n, 1);
	assert_true(set_has_body(one, "merged"));
	kv_ctx_release(&seen);
	kv_ctx_release(&ctx2);
	h_release(&h);
}

static void test_node__one_replica_down_still_meets_w2(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/d/k", pref), 3);
	h.down[pref[2]] = true;
	uint64_t put = h_put(&h, pref[0], "/d/k", "v", NULL, 1);
	h_run(&h);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(h.ntimers, 0); /* the quorum timer was cancelled */
	uint64_t get = h_get(&h, pref[1], "/d/k");
	h_run(&h);
	const struct h_reply *gr = h_reply_for(&h, get);
	assert_int_equal(gr->msg.type, KV_MSG_GET_REPLY);
	assert_true(set_has_body(&gr->msg.set_reply.set, "v"));
	h_advance(&h, h.now + 1000 * MS); /* the GET's timer ends it quietly */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

static void test_node__two_replicas_down_fail_with_quorum_error(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/d/k", pref), 3);
	h.down[pref[1]] = true;
	h.down[pref[2]] = true;
	uint64_t put = h_put(&h, pref[0], "/d/k", "v", NULL, 1);
	h_run(&h);
	assert_null(h_reply_for(&h, put)); /* no success before the timeout */
	h_advance(&h, h.now + 99 * MS);
	assert_null(h_reply_for(&h, put));
	h_advance(&h, h.now + 1 * MS);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_ERROR);
	assert_int_equal(pr->msg.error.code, KV_EQUORUM);
	/* It did reach the coordinator's disk: failed, not "nothing written". */
	assert_int_equal(h.store[pref[0]].writes, 1);
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[pref[0]]), 0);

	/* A GET at R=2 with one replica answering times out. */
	uint64_t get = h_get(&h, pref[0], "/d/k");
	h_run(&h);
	assert_null(h_reply_for(&h, get));
	h_advance(&h, h.now + 100 * MS);
	const struct h_reply *gr = h_reply_for(&h, get);
	assert_non_null(gr);
	assert_int_equal(gr->msg.type, KV_MSG_ERROR);
	assert_int_equal(gr->msg.error.code, KV_ETIMEDOUT);
	h_release(&h);
}

static void test_node__key_queue_keeps_both_puts(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/q/k", pref), 3);
	int coord = pref[0];
	/* Warm up: the coordinator persists its first counter lease. */
	h_put(&h, coord, "/q/warm", "w", NULL, 9);
	h_run(&h);
	assert_int_equal(h.store[coord].lease_writes, 1);
	h.hold_storage = true;
	uint64_t p1 = h_put(&h, coord, "/q/k", "one", NULL, 1);
	assert_int_equal(h.nheld, 1); /* the first put's read */
	uint64_t p2 = h_put(&h, coord, "/q/k", "two", NULL, 2);
	assert_int_equal(h.nheld, 1); /* the second waits in the key's queue */
	h.hold_storage = false;
	/* Complete the first read: the first put writes; the second still waits. */
	struct h_ev ev = h.held[--h.nheld];
	h.hold_storage = true;
	h_deliver(&h, &ev);
	assert_int_equal(h.nheld, 1);
	assert_int_equal(h.held[0].kind, EV_WRITE);
	/* Its write completes: now (and only now) the second put reads. */
	ev = h.held[--h.nheld];
	h_deliver(&h, &ev);
	assert_int_equal(h.nheld, 1);
	assert_int_equal(h.held[0].kind, EV_READ);
	h.hold_storage = false;
	ev = h.held[--h.nheld];
	h_deliver(&h, &ev);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, p1)->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(h_reply_for(&h, p2)->msg.type, KV_MSG_PUT_REPLY);
	for (int i = 0; i < 3; i++) {
		struct kv_dvv s = KV_DVV_INIT;
		assert_true(h_stored(&h, i, "/q/k", &s));
		assert_int_equal(s.n, 2); /* blind puts: neither lost */
		assert_true(set_has_body(&s, "one"));
		assert_true(set_has_body(&s, "two"));
		kv_dvv_release(&s);
	}
	h_release(&h);
}

static void test_node__delete_hides_value_behind_tombstone(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 1, "/t/k", "doomed", NULL, 1);
	h_run(&h);
	uint64_t g = h_get(&h, 0, "/t/k");
	h_run(&h);
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_DELETE);
	del.put.key = kv_slice_str("/t/k");
	del.put.request_id[0] = 2;
	assert_int_equal(kv_ctx_copy(&del.put.context, &h_reply_for(&h, g)->msg.set_reply.set.ctx), 0);
	uint64_t d = h_client(&h, 2, &del);
	kv_msg_release(&del);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, d)->msg.type, KV_MSG_DELETE_REPLY);
	uint64_t g2 = h_get(&h, 0, "/t/k");
	h_run(&h);
	const struct kv_dvv *after = &h_reply_for(&h, g2)->msg.set_reply.set;
	assert_int_equal(after->n, 0); /* hidden from the client... */
	assert_false(kv_ctx_is_empty(&after->ctx));
	struct kv_dvv s = KV_DVV_INIT;
	assert_true(h_stored(&h, 0, "/t/k", &s));
	assert_int_equal(s.n, 1); /* ...but stored as a tombstone */
	assert_true(s.v[0].tombstone);
	kv_dvv_release(&s);
	h_release(&h);
}

static void test_node__retried_put_returns_first_dot(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	uint64_t p1 = h_put(&h, 0, "/i/k", "v", NULL, 5);
	h_run(&h);
	uint64_t p2 = h_put(&h, 1, "/i/k", "v", NULL, 5);
	h_run(&h);
	const struct h_reply *r1 = h_reply_for(&h, p1), *r2 = h_reply_for(&h, p2);
	assert_int_equal(r2->msg.type, KV_MSG_PUT_REPLY);
	assert_true(kv_dot_eq(r1->msg.put_reply.dot, r2->msg.put_reply.dot));
	assert_int_equal(r2->msg.put_reply.flags & KV_MSG_PUT_REPLY_F_RETRY, KV_MSG_PUT_REPLY_F_RETRY);
	h_release(&h);
}

static void test_node__replica_joins_rather_than_overwrites(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/j/k", pref), 3);
	/* A: coordinated by the second replica while the first is down. */
	h.down[pref[0]] = true;
	uint64_t pa = h_put(&h, pref[1], "/j/k", "A", NULL, 1);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	assert_int_equal(h_reply_for(&h, pa)->msg.type, KV_MSG_PUT_REPLY);
	/* B: the first replica is back, has not seen A, and coordinates a blind put. */
	h.down[pref[0]] = false;
	uint64_t pb = h_put(&h, pref[0], "/j/k", "B", NULL, 2);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, pb)->msg.type, KV_MSG_PUT_REPLY);
	/* The replicas that held A joined {B} into it: both survive. */
	for (int k = 1; k < 3; k++) {
		struct kv_dvv s = KV_DVV_INIT;
		assert_true(h_stored(&h, pref[k], "/j/k", &s));
		assert_int_equal(s.n, 2);
		assert_true(set_has_body(&s, "A"));
		assert_true(set_has_body(&s, "B"));
		kv_dvv_release(&s);
	}
	h_release(&h);
}

/* ---- Forwarding (doc/protocol.md §6.1) ------------------------------------ */

/* The one node of four that is no replica of @key (N=3). */
static int h_non_replica(struct harness *h, const char *key, int *pref)
{
	assert_int_equal(h_preflist(h, key, pref), 3);
	for (int i = 0; i < h->nnodes; i++)
		if (i != pref[0] && i != pref[1] && i != pref[2])
			return i;
	fail();
	return -1;
}

/*
 * doc/protocol.md §6.1: once the coordinating replica sends
 * FORWARD_PUT_ACCEPTED, a quorum slower than the forward timeout is waited
 * for until the request's deadline; no second replica coordinates the put.
 */
static void test_node__accepted_forward_waits_past_the_forward_timeout(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	int fwd = h_non_replica(&h, "/acc/k", pref);
	h.hold_storage = true; /* the coordinator's read and write wait */
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str("/acc/k");
	m.put.body = kv_slice_str("v");
	m.put.timeout_ms = 1000; /* the request deadline, well past the 150 ms forward timeout */
	m.put.request_id[0] = 77;
	uint64_t put = h_client(&h, fwd, &m);
	kv_msg_release(&m);
	h_run(&h);
	h_advance(&h, h.now + 400 * MS);
	assert_null(h_reply_for(&h, put)); /* still waiting, not failed over */
	h_release_held(&h);
	h_run(&h);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(pr->msg.put_reply.dot.actor.node, (uint32_t)(pref[0] + 1));
	/* One version everywhere: nobody else minted. */
	for (int i = 0; i < 3; i++) {
		struct kv_dvv st = KV_DVV_INIT;
		assert_true(h_stored(&h, pref[i], "/acc/k", &st));
		assert_int_equal(st.n, 1);
		kv_dvv_release(&st);
	}
	h_release(&h);
}

/*
 * An accepted forward whose coordinator never answers fails once the
 * coordinator's own deadline (a full timeout from when it took the put) and
 * one forward timeout for its verdict to travel have passed.
 */
static void test_node__accepted_forward_times_out_at_the_request_deadline(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	int fwd = h_non_replica(&h, "/acc/t", pref);
	h.hold_storage = true;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str("/acc/t");
	m.put.timeout_ms = 1000;
	m.put.body = kv_slice_str("v");
	uint64_t put = h_client(&h, fwd, &m);
	kv_msg_release(&m);
	h_run(&h);
	h.down[pref[0]] = true; /* accepted, then silent */
	h_advance(&h, h.now + (1000 + 150 - 5) * MS);
	assert_null(h_reply_for(&h, put));
	h_advance(&h, h.now + 10 * MS);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_ERROR);
	assert_int_equal(pr->msg.error.code, KV_ETIMEDOUT);
	h_release(&h);
}

/*
 * The driver's fast fail-over: an ERROR KV_ECLOSED answering a FORWARD_PUT
 * makes the forwarder try the next replica at once, without its timer.
 */
static void test_node__closed_error_on_forward_tries_next_replica_at_once(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/ff/k", pref), 3);
	uint64_t put = h_put(&h, pref[2], "/ff/k", "v", NULL, 5);
	uint64_t fwd_req = 0;
	for (size_t i = h.qhead; i < h.qn; i++)
		if (h.q[i].kind == EV_PEER && h.q[i].type == KV_MSG_FORWARD_PUT &&
		    h.q[i].to == pref[0])
			fwd_req = h.q[i].id;
	assert_true(fwd_req != 0);
	h.down[pref[0]] = true; /* the FORWARD_PUT is lost */
	struct kv_msg err;
	kv_msg_init(&err, KV_MSG_ERROR);
	err.error.code = KV_ECLOSED;
	err.error.text = kv_slice_str("node unreachable");
	struct kv_input in = { .type = KV_INPUT_PEER };
	in.peer.from = (uint32_t)(pref[0] + 1);
	in.peer.request_id = fwd_req;
	in.peer.msg = &err;
	h_step(&h, pref[2], &in);
	kv_msg_release(&err);
	h_run(&h); /* no clock advance: no timer fired */
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(pr->msg.put_reply.dot.actor.node, (uint32_t)(pref[1] + 1));
	h_release(&h);
}

/*
 * A forward that times out aborts the connection to the silent replica, so
 * the FORWARD_PUT cannot be delivered (and coordinated a second time) after
 * a partition heals; the next replica coordinates.
 */
static void test_node__forward_timeout_aborts_the_silent_replica(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	int fwd = h_non_replica(&h, "/ab/k", pref);
	h.down[pref[0]] = true;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str("/ab/k");
	m.put.w = 1;
	m.put.body = kv_slice_str("v");
	uint64_t put = h_client(&h, fwd, &m);
	kv_msg_release(&m);
	h_run(&h);
	assert_int_equal(h.aborts[fwd][pref[0]], 0);
	h_advance(&h, h.now + 200 * MS); /* past the 150 ms forward timeout */
	assert_int_equal(h.aborts[fwd][pref[0]], 1);
	assert_int_equal(h.aborts[fwd][pref[1]], 0);
	const struct h_reply *pr = h_reply_for(&h, put);
	assert_non_null(pr);
	assert_int_equal(pr->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(pr->msg.put_reply.dot.actor.node, (uint32_t)(pref[1] + 1));
	h_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node__forward_timeout_aborts_the_silent_replica),
		cmocka_unit_test(test_node__put_then_get_round_trips),
		cmocka_unit_test(test_node__put_via_non_replica_is_forwarded),
		cmocka_unit_test(test_node__forward_timeout_tries_next_replica),
		cmocka_unit_test(test_node__same_context_puts_make_siblings_and_both_resolve),
		cmocka_unit_test(test_node__one_replica_down_still_meets_w2),
		cmocka_unit_test(test_node__two_replicas_down_fail_with_quorum_error),
		cmocka_unit_test(test_node__key_queue_keeps_both_puts),
		cmocka_unit_test(test_node__replica_joins_rather_than_overwrites),
		cmocka_unit_test(test_node__delete_hides_value_behind_tombstone),
		cmocka_unit_test(test_node__retried_put_returns_first_dot),
		cmocka_unit_test(test_node__accepted_forward_waits_past_the_forward_timeout),
		cmocka_unit_test(test_node__accepted_forward_times_out_at_the_request_deadline),
		cmocka_unit_test(test_node__closed_error_on_forward_tries_next_replica_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
