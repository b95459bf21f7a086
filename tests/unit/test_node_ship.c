/*
 * test_node_ship.c - how the node core makes a put durable (node/node.h,
 * doc/node.md "Put", DESIGN §4 "Who mints a dot"): a replica's ack and the
 * hash of what it wrote; the counter lease a put waits for, its retry, and
 * restarts that never reuse a dot; shipping the new set in the same step as
 * the local write, acks that count the local write once durable, and a
 * failed local write that taints the actor.
 *
 * The harness: node_fx.h (shared with test_node.c, test_node_read.c and
 * test_node_list.c).
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
#include "util/checksum.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/siblings.h"

#include "node_fx.h"

/* ---- Replica acks --------------------------------------------------------- */

/* Steps one REPLICA_WRITE of @set into @node as if from node 2; returns its effects' read op. */
static uint64_t rw_step(struct kv_node *node, const struct kv_dvv *set, uint64_t req,
			struct kv_effects *out)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_REPLICA_WRITE);
	m.replica_write.key = kv_slice_str("/ack/k");
	m.replica_write.set = *set; /* borrowed: not released here */
	struct kv_input in = { .type = KV_INPUT_PEER };
	in.peer.from = 2;
	in.peer.request_id = req;
	in.peer.msg = &m;
	assert_int_equal(kv_node_step(node, 1000 * MS, &in, out), 0);
	for (size_t i = 0; i < out->reads.n; i++)
		if (out->reads.v[i].key.n > 4)
			return out->reads.v[i].op;
	fail_msg("no read of the key");
	return 0;
}

/* The ack of the REPLICA_WRITE with request id @req in @out. */
static const struct kv_msg *ack_of(const struct kv_effects *out, uint64_t req)
{
	for (size_t i = 0; i < out->sends.n; i++)
		if (out->sends.v[i].request_id == req &&
		    out->sends.v[i].msg.type == KV_MSG_REPLICA_WRITE_ACK)
			return &out->sends.v[i].msg;
	return NULL;
}

/*
 * A replica's ack carries kv_hash64() of the encoding it stored, taken from
 * the write itself (no second encoding), and the same hash when the join
 * changed nothing and nothing was written.
 */
static void test_node__replica_ack_hashes_the_written_set(void **state)
{
	(void)state;
	struct kv_node_member mem[3] = { { 1, "n1", 1.0 }, { 2, "n2", 1.0 }, { 3, "n3", 1.0 } };
	struct kv_node_config cfg;
	kv_node_config_default(&cfg);
	cfg.self_id = 1;
	cfg.members = mem;
	cfg.n_members = 3;
	struct kv_node node;
	assert_int_equal(kv_node_init(&node, &cfg), 0);
	struct kv_dvv set = KV_DVV_INIT;
	make_siblings(&set, 2);
	struct kv_effects out;
	kv_effects_init(&out);
	/* Not stored yet: read, join, write, ack. */
	uint64_t rop = rw_step(&node, &set, 77, &out);
	kv_effects_clear(&out);
	struct kv_input in = { .type = KV_INPUT_READ_DONE };
	in.read.op = rop;
	in.read.status = KV_ENOTFOUND;
	assert_int_equal(kv_node_step(&node, 1000 * MS, &in, &out), 0);
	uint64_t wop = 0;
	struct kv_buf stored = KV_BUF_INIT;
	for (size_t i = 0; i < out.writes.n; i++)
		if (out.writes.v[i].key.n > 4) {
			wop = out.writes.v[i].op;
			assert_int_equal(kv_buf_append(&stored, out.writes.v[i].value.p,
						       out.writes.v[i].value.n), 0);
		}
	assert_int_not_equal(wop, 0);
	kv_effects_clear(&out);
	struct kv_input wd = { .type = KV_INPUT_WRITE_DONE };
	wd.write.op = wop;
	wd.write.status = 0;
	assert_int_equal(kv_node_step(&node, 1000 * MS, &wd, &out), 0);
	const struct kv_msg *ack = ack_of(&out, 77);
	assert_non_null(ack);
	uint64_t want = kv_hash64(stored.p, stored.n);
	assert_true(ack->replica_ack.set_hash == want);
	assert_int_equal(ack->replica_ack.nversions, 2);
	kv_effects_clear(&out);
	/* The same set again: the join equals what is stored, no write, same hash. */
	rop = rw_step(&node, &set, 78, &out);
	kv_effects_clear(&out);
	in.read.op = rop;
	in.read.status = 0;
	in.read.value = kv_buf_slice(&stored);
	assert_int_equal(kv_node_step(&node, 1000 * MS, &in, &out), 0);
	for (size_t i = 0; i < out.writes.n; i++)
		assert_true(out.writes.v[i].key.n <= 4); /* the lease at most */
	ack = ack_of(&out, 78);
	assert_non_null(ack);
	assert_true(ack->replica_ack.set_hash == want);
	kv_effects_release(&out);
	kv_buf_release(&stored);
	kv_dvv_release(&set);
	kv_node_release(&node);
}

/* ---- The counter lease: who mints a dot ------------------------------------ */

static void test_node__put_waits_for_the_lease_write(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/l/k", pref), 3);
	int coord = pref[0];
	h.hold_storage = true;
	uint64_t put = h_put(&h, coord, "/l/k", "v", NULL, 1);
	/* The fresh node holds no durable counter: it asks for a lease at once. */
	assert_int_equal(h.nheld, 2);
	struct h_ev lease_ev, read_ev, ev;
	assert_true(h_take_held(&h, coord, EV_WRITE, true, &lease_ev));
	assert_true(h_take_held(&h, coord, EV_READ, false, &read_ev));
	h_deliver(&h, &read_ev);
	/* Read done, no counter: the put waits, writes nothing, answers nothing. */
	assert_int_equal(h.nheld, 0);
	assert_null(h_reply_for(&h, put));
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[coord]), 1);
	/* A second put on the key waits behind it in the key's queue. */
	uint64_t put2 = h_put(&h, coord, "/l/k", "w", NULL, 2);
	assert_int_equal(h.nheld, 0);
	/* The lease is durable: the first put mints and writes. */
	h_deliver(&h, &lease_ev);
	assert_int_equal(h.store[coord].lease_writes, 1);
	assert_true(h_take_held(&h, coord, EV_WRITE, false, &ev));
	assert_int_equal(h.nheld, 0);
	h.held[h.nheld++] = ev;
	h_release_held(&h);
	const struct h_reply *r1 = h_reply_for(&h, put), *r2 = h_reply_for(&h, put2);
	assert_int_equal(r1->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(r2->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(r1->msg.put_reply.dot.counter, 1);
	assert_int_equal(r2->msg.put_reply.dot.counter, 2);
	/* The record: the node's epoch and the lease, under the reserved key. */
	struct h_kv *rec = h_find(&h.store[coord], kv_node_lease_skey());
	assert_non_null(rec);
	uint32_t epoch = 99;
	uint64_t lease = 0;
	assert_int_equal(kv_node_lease_decode(kv_buf_slice(&rec->value), &epoch, &lease), 0);
	assert_int_equal(epoch, 0);
	assert_int_equal(lease, KV_COUNTER_BLOCK_DEFAULT);
	/* One lease per node: a block covers many puts (and a node leases on its
	 * first input, coordinator or not, so its first put rarely waits). */
	for (int i = 0; i < 3; i++)
		assert_true(h.store[i].lease_writes <= 1);
	h_release(&h);
}

static void test_node__failed_lease_write_is_retried(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/l/f", pref), 3);
	h.fail_lease_writes = 1;
	uint64_t put = h_put(&h, pref[0], "/l/f", "v", NULL, 1);
	h_run(&h);
	const struct h_reply *r = h_reply_for(&h, put);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(h.fail_lease_writes, 0);
	assert_int_equal(h.store[pref[0]].lease_writes, 1);
	h_release(&h);
}

static void test_node__restarted_node_never_reuses_a_dot(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/z/k", pref), 3);
	int coord = pref[0];
	uint64_t p1 = h_put(&h, coord, "/z/k", "one", NULL, 1);
	h_run(&h);
	struct kv_dot d1 = h_reply_for(&h, p1)->msg.put_reply.dot;
	assert_int_equal(d1.actor.node, (uint32_t)(coord + 1));

	/* Restart from the persisted lease, twice (the second restart follows a
	 * run that persisted no new lease of its own yet). */
	uint64_t last = d1.counter;
	for (int round = 0; round < 2; round++) {
		h_restart(&h, coord);
		char body[8] = "again0";
		body[5] = (char)('0' + round);
		uint64_t p = h_put(&h, coord, "/z/k", body, NULL, (uint8_t)(10 + round));
		h_run(&h);
		const struct h_reply *r = h_reply_for(&h, p);
		assert_int_equal(r->msg.type, KV_MSG_PUT_REPLY);
		struct kv_dot d = r->msg.put_reply.dot;
		assert_int_equal(d.actor.node, d1.actor.node);
		assert_int_equal(d.actor.epoch, d1.actor.epoch);
		assert_true(d.counter > last);
		last = d.counter;
	}
	/* Every version survives as a sibling: no dot was minted twice. */
	struct kv_dvv s = KV_DVV_INIT;
	assert_true(h_stored(&h, coord, "/z/k", &s));
	assert_int_equal(s.n, 3);
	assert_true(set_has_body(&s, "one"));
	assert_true(set_has_body(&s, "again0"));
	assert_true(set_has_body(&s, "again1"));
	kv_dvv_release(&s);
	h_release(&h);
}

/* ---- Parallel shipping (doc/node.md "Put") ------------------------------ */

/* Counts queued peer messages of @type to node @to (-1: to anyone). */
static size_t h_queued(const struct harness *h, uint16_t type, int to)
{
	size_t n = 0;
	for (size_t i = h->qhead; i < h->qn; i++)
		if (h->q[i].kind == EV_PEER && h->q[i].type == type && (to < 0 || h->q[i].to == to))
			n++;
	return n;
}

/*
 * Delivers queued messages and every held storage event except those of
 * node @keep, until nothing moves: the other nodes run while @keep's
 * storage stays held.
 */
static void h_run_except(struct harness *h, int keep)
{
	for (int round = 0; round < 100; round++) {
		h_run(h);
		bool moved = false;
		for (size_t k = 0; k < h->nheld; k++) {
			if (h->held[k].to == keep)
				continue;
			struct h_ev ev = h->held[k];
			h->held[k] = h->held[--h->nheld];
			h_deliver(h, &ev);
			moved = true;
			break;
		}
		if (!moved && h->qhead == h->qn)
			return;
	}
	fail_msg("h_run_except did not settle");
}

/* Puts @key at its coordinator with W = @w (0 = default); returns the request id. */
static uint64_t h_put_w(struct harness *h, int i, const char *key, const char *body, uint8_t w,
			uint8_t rid)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str(key);
	m.put.body = kv_slice_str(body);
	m.put.w = w;
	m.put.request_id[0] = rid;
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

/*
 * The coordinating replica emits its local write and the REPLICA_WRITEs of
 * the new set in the same step (issue 4: a W=2 put costs one fsync plus a
 * round trip, not two fsyncs in a row).
 */
static void test_node__put_is_shipped_in_the_same_step_as_the_local_write(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/par/k", pref), 3);
	int coord = pref[0];
	h_put(&h, coord, "/par/warm", "w", NULL, 9); /* the counter lease */
	h_run(&h);
	h.hold_storage = true;
	uint64_t put = h_put(&h, coord, "/par/k", "v", NULL, 1);
	struct h_ev ev;
	assert_true(h_take_held(&h, coord, EV_READ, false, &ev));
	assert_int_equal(h_queued(&h, KV_MSG_REPLICA_WRITE, -1), 0);
	h_deliver(&h, &ev); /* one step: the read completes */
	assert_int_equal(h.nheld, 1);
	assert_int_equal(h.held[0].kind, EV_WRITE);
	assert_int_equal(h.held[0].to, coord);
	assert_int_equal(h_queued(&h, KV_MSG_REPLICA_WRITE, pref[1]), 1);
	assert_int_equal(h_queued(&h, KV_MSG_REPLICA_WRITE, pref[2]), 1);
	assert_null(h_reply_for(&h, put));
	h_release_held(&h);
	assert_int_equal(h_reply_for(&h, put)->msg.type, KV_MSG_PUT_REPLY);
	for (int i = 0; i < 3; i++) {
		struct kv_dvv st = KV_DVV_INIT;
		assert_true(h_stored(&h, pref[i], "/par/k", &st));
		assert_true(set_has_body(&st, "v"));
		kv_dvv_release(&st);
	}
	h_release(&h);
}

/*
 * Acks: the replicas' acks count as they come and the local write counts
 * once durable. W=2 is met by two replica acks while the local write is
 * still in flight — the client is answered, but the key's queue (the next
 * put) still waits for the local write. W=3 needs the local write too.
 */
static void test_node__w_acks_count_the_local_write_when_durable(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/acks/k", pref), 3);
	int coord = pref[0];
	h_put(&h, coord, "/acks/warm", "w", NULL, 9);
	h_run(&h);
	h.hold_storage = true;

	/* W=3: both replicas ack, no answer until the local write. */
	size_t w1 = h.store[pref[1]].writes, w2 = h.store[pref[2]].writes;
	uint64_t p3 = h_put_w(&h, coord, "/acks/k", "three", 3, 1);
	h_run_except(&h, coord);
	struct h_ev ev;
	assert_true(h_take_held(&h, coord, EV_READ, false, &ev));
	h_deliver(&h, &ev);
	h_run_except(&h, coord);
	assert_int_equal(h.store[pref[1]].writes, w1 + 1);
	assert_int_equal(h.store[pref[2]].writes, w2 + 1);
	assert_null(h_reply_for(&h, p3));
	assert_true(h_take_held(&h, coord, EV_WRITE, false, &ev));
	h_deliver(&h, &ev);
	assert_int_equal(h_reply_for(&h, p3)->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[coord]), 0);

	/* W=2: answered by two replica acks before the local write. */
	uint64_t p2 = h_put_w(&h, coord, "/acks/k", "two", 2, 2);
	assert_true(h_take_held(&h, coord, EV_READ, false, &ev));
	h_deliver(&h, &ev);
	uint64_t next = h_put_w(&h, coord, "/acks/k", "next", 2, 3);
	h_run_except(&h, coord);
	const struct h_reply *r2 = h_reply_for(&h, p2);
	assert_non_null(r2);
	assert_int_equal(r2->msg.type, KV_MSG_PUT_REPLY);
	assert_true(kv_ctx_covers(&r2->msg.put_reply.context, r2->msg.put_reply.dot));
	struct kv_dvv st = KV_DVV_INIT;
	assert_true(h_stored(&h, coord, "/acks/k", &st));
	assert_false(set_has_body(&st, "two")); /* not durable here yet */
	kv_dvv_release(&st);
	/* The operation lives on for its local write; the next put waits. */
	assert_int_equal(h.nheld, 1);
	assert_int_equal(h.held[0].kind, EV_WRITE);
	assert_null(h_reply_for(&h, next));
	assert_true(h_take_held(&h, coord, EV_WRITE, false, &ev));
	h_deliver(&h, &ev);
	assert_true(h_take_held(&h, coord, EV_READ, false, &ev)); /* now the next put reads */
	h_deliver(&h, &ev);
	h_release_held(&h);
	assert_int_equal(h_reply_for(&h, next)->msg.type, KV_MSG_PUT_REPLY);
	for (int i = 0; i < 3; i++) {
		struct kv_dvv s2 = KV_DVV_INIT;
		assert_true(h_stored(&h, pref[i], "/acks/k", &s2));
		assert_true(set_has_body(&s2, "next"));
		kv_dvv_release(&s2);
	}
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[coord]), 0);
	h_release(&h);
}

/*
 * DESIGN §4 "Who mints a dot": a local write that fails after the set was
 * shipped may leave a dot on the replicas that this node lacks, so the
 * actor mints no more: the node refuses the next puts with KV_ECLOSED, and a
 * forwarder then has the next replica coordinate.
 */
static void test_node__failed_local_write_after_shipping_taints_the_actor(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/bad/k", pref), 3);
	int coord = pref[0];
	h_put(&h, coord, "/bad/warm", "w", NULL, 9);
	h_run(&h);
	h.hold_storage = true;
	uint64_t put = h_put(&h, coord, "/bad/k", "v", NULL, 1);
	struct h_ev ev;
	assert_true(h_take_held(&h, coord, EV_READ, false, &ev));
	h_deliver(&h, &ev);
	assert_int_equal(h_queued(&h, KV_MSG_REPLICA_WRITE, -1), 2); /* shipped */
	uint64_t queued = h_put(&h, coord, "/bad/k", "queued", NULL, 2); /* behind it */
	assert_true(h_take_held(&h, coord, EV_WRITE, false, &ev));
	assert_false(kv_node_actor_tainted(&h.nodes[coord]));
	struct kv_input in = { .type = KV_INPUT_WRITE_DONE };
	in.write.op = ev.id;
	in.write.status = -EIO;
	h_step(&h, coord, &in);
	kv_buf_release(&ev.body);
	kv_buf_release(&ev.key);
	assert_true(kv_node_actor_tainted(&h.nodes[coord]));
	const struct h_reply *r = h_reply_for(&h, put);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_ECLOSED);
	/* The put queued behind it reads, then refuses to mint. */
	h_release_held(&h);
	r = h_reply_for(&h, queued);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_ECLOSED);
	/* The replicas hold the shipped version; the tainted node does not. */
	struct kv_dvv st = KV_DVV_INIT;
	assert_true(h_stored(&h, pref[1], "/bad/k", &st));
	assert_true(set_has_body(&st, "v"));
	kv_dvv_release(&st);
	assert_false(h_stored(&h, coord, "/bad/k", &st));
	/* A new put at the tainted node is refused at once, with the reason. */
	uint64_t again = h_put(&h, coord, "/bad/k", "again", NULL, 3);
	h_run(&h);
	r = h_reply_for(&h, again);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_ECLOSED);
	assert_true(kv_slice_eq(r->msg.error.text,
				kv_slice_str("local storage failed; restart the node")));
	/* Through another replica: forwarded, refused, coordinated by the next. */
	uint64_t via = h_put(&h, pref[1], "/bad/k", "via", NULL, 4);
	h_run(&h);
	r = h_reply_for(&h, via);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_PUT_REPLY);
	assert_int_equal(r->msg.put_reply.dot.actor.node, (uint32_t)(pref[1] + 1));
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[coord]), 0);
	h_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node__put_waits_for_the_lease_write),
		cmocka_unit_test(test_node__failed_lease_write_is_retried),
		cmocka_unit_test(test_node__restarted_node_never_reuses_a_dot),
		cmocka_unit_test(test_node__put_is_shipped_in_the_same_step_as_the_local_write),
		cmocka_unit_test(test_node__w_acks_count_the_local_write_when_durable),
		cmocka_unit_test(test_node__failed_local_write_after_shipping_taints_the_actor),
		cmocka_unit_test(test_node__replica_ack_hashes_the_written_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
