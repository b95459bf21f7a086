/*
 * test_node_read.c - the node core's reads (node/node.h, doc/node.md "Get",
 * doc/protocol.md §5.2, §5.7): read repair of a stale replica, local or
 * remote; GET HEAD; the 64-sibling cap of a client reply (GET and LIST);
 * replica errors that fail a GET or LIST early.
 *
 * The harness: node_fx.h (shared with test_node.c, test_node_ship.c and
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
#include "ring/keys.h"
#include "ring/ring.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/siblings.h"

#include "node_fx.h"

/* ---- Read repair ---------------------------------------------------------- */

static void test_node__read_repair_updates_stale_replica(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 3, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/r/k", pref), 3);
	int stale = pref[2];
	h.down[stale] = true;
	uint64_t put = h_put(&h, pref[0], "/r/k", "new", NULL, 1);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, put)->msg.type, KV_MSG_PUT_REPLY);
	h_advance(&h, h.now + 1000 * MS);
	struct kv_dvv s = KV_DVV_INIT;
	assert_false(h_stored(&h, stale, "/r/k", &s));

	h.down[stale] = false; /* back, but behind */
	uint64_t get = h_get(&h, stale, "/r/k");
	h_run(&h);
	const struct h_reply *gr = h_reply_for(&h, get);
	assert_int_equal(gr->msg.type, KV_MSG_GET_REPLY);
	assert_true(set_has_body(&gr->msg.set_reply.set, "new"));
	/* The reader was the stale replica: it repaired itself. */
	assert_true(h_stored(&h, stale, "/r/k", &s));
	assert_true(set_has_body(&s, "new"));
	struct kv_dvv up = KV_DVV_INIT;
	assert_true(h_stored(&h, pref[0], "/r/k", &up));
	assert_true(kv_dvv_equal(&s, &up));
	/* The up-to-date replicas were not rewritten. */
	assert_int_equal(h.store[pref[0]].writes, 1);
	assert_int_equal(h.store[pref[1]].writes, 1);
	kv_dvv_release(&s);
	kv_dvv_release(&up);
	h_release(&h);
}

static void test_node__read_repair_reaches_remote_replica(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 3, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/r/k", pref), 3);
	h.down[pref[2]] = true;
	h_put(&h, pref[0], "/r/k", "new", NULL, 1);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[2]] = false;
	h_get(&h, pref[0], "/r/k");
	h_run(&h);
	struct kv_dvv s = KV_DVV_INIT;
	assert_true(h_stored(&h, pref[2], "/r/k", &s));
	assert_true(set_has_body(&s, "new"));
	kv_dvv_release(&s);
	h_release(&h);
}

/* ---- GET HEAD, the 64-sibling cap, replica errors ------------------------- */

/* Stores @set under @key on node @i, as if it had been replicated there. */
static void h_store_set(struct harness *h, int i, const char *key, const struct kv_dvv *set)
{
	struct kv_buf skey = KV_BUF_INIT, value = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, kv_slice_str(key)), 0);
	assert_int_equal(kv_dvv_encode(set, &value), 0);
	h_store_put(&h->store[i], kv_buf_slice(&skey), kv_buf_slice(&value));
	kv_buf_release(&skey);
	kv_buf_release(&value);
}

/* Stores bytes no decoder accepts under @key on node @i. */
static void h_store_garbage(struct harness *h, int i, const char *key)
{
	struct kv_buf skey = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, kv_slice_str(key)), 0);
	h_store_put(&h->store[i], kv_buf_slice(&skey), kv_slice_str("\xff garbage"));
	kv_buf_release(&skey);
}

static uint64_t h_get_flags(struct harness *h, int i, const char *key, uint8_t flags, uint8_t r)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str(key);
	m.get.flags = flags;
	m.get.r = r;
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

/* GET with HEAD: every body empty, metadata and context as a full GET's. */
static void test_node__get_head_returns_metadata_and_context_only(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str("/h/file");
	m.put.meta = kv_slice_str("mode=0644");
	m.put.body = kv_slice_str("the body");
	m.put.request_id[0] = 1;
	uint64_t put = h_client(&h, 0, &m);
	kv_msg_release(&m);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, put)->msg.type, KV_MSG_PUT_REPLY);

	uint64_t full = h_get_flags(&h, 1, "/h/file", 0, 0);
	uint64_t head = h_get_flags(&h, 1, "/h/file", KV_MSG_GET_F_HEAD, 0);
	h_run(&h);
	const struct h_reply *rf = h_reply_for(&h, full), *rh = h_reply_for(&h, head);
	assert_int_equal(rf->msg.type, KV_MSG_GET_REPLY);
	assert_int_equal(rh->msg.type, KV_MSG_GET_REPLY);
	const struct kv_dvv *sf = &rf->msg.set_reply.set, *sh = &rh->msg.set_reply.set;
	assert_int_equal(sh->n, 1);
	assert_int_equal(sh->v[0].body.n, 0);
	assert_true(kv_slice_eq(sh->v[0].meta, kv_slice_str("mode=0644")));
	assert_true(kv_dot_eq(sh->v[0].dot, sf->v[0].dot));
	assert_true(kv_slice_eq(sf->v[0].body, kv_slice_str("the body")));
	/* The context covers what a full read covers: a put with it replaces. */
	assert_true(kv_ctx_covers(&sh->ctx, sf->v[0].dot));
	/* HEAD changed nothing stored: the bodies are still there. */
	for (int i = 0; i < 3; i++) {
		struct kv_dvv s = KV_DVV_INIT;
		assert_true(h_stored(&h, i, "/h/file", &s));
		assert_true(set_has_body(&s, "the body"));
		kv_dvv_release(&s);
	}
	h_release(&h);
}

/*
 * doc/protocol.md §5.2, §5.7: a client reply holds at most 64 versions per
 * key. Joins (say, of two partitions' writes) can exceed that; GET and
 * LIST then answer ERROR KV_ESIBLINGS. 64 still pass.
 */
static void test_node__more_than_64_siblings_answer_esiblings(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	struct kv_dvv many, max;
	make_siblings(&many, KV_DVV_MAX_SIBLINGS + 1);
	make_siblings(&max, KV_DVV_MAX_SIBLINGS);
	for (int i = 0; i < 3; i++) {
		h_store_set(&h, i, "/c/many", &many);
		h_store_set(&h, i, "/c2/max", &max);
	}
	uint64_t g = h_get(&h, 0, "/c/many");
	uint64_t g64 = h_get(&h, 0, "/c2/max");
	uint64_t l = h_list_r(&h, 1, "/c", 0);
	uint64_t l64 = h_list_r(&h, 1, "/c2", 0);
	h_run(&h);
	const struct h_reply *r = h_reply_for(&h, g);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_ESIBLINGS);
	r = h_reply_for(&h, l);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_ESIBLINGS);
	r = h_reply_for(&h, g64);
	assert_int_equal(r->msg.type, KV_MSG_GET_REPLY);
	assert_int_equal(r->msg.set_reply.set.n, KV_DVV_MAX_SIBLINGS);
	r = h_reply_for(&h, l64);
	assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
	assert_int_equal(r->msg.list_reply.n, 1);
	assert_int_equal(r->msg.list_reply.entries[0].set.n, KV_DVV_MAX_SIBLINGS);
	kv_dvv_release(&many);
	kv_dvv_release(&max);
	h_release(&h);
}

/*
 * A replica's ERROR (here: it cannot decode its stored copy) counts as a
 * failed reply: with two of three failed, R=2 cannot be met and the client
 * hears KV_EQUORUM at once, not at the timer. One failure still reads.
 */
static void test_node__replica_errors_fail_get_and_list_early(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/e/k", pref), 3);
	uint64_t p = h_put(&h, pref[0], "/e/k", "v", NULL, 1);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, p)->msg.type, KV_MSG_PUT_REPLY);

	h_store_garbage(&h, pref[1], "/e/k");
	uint64_t g1 = h_get(&h, pref[0], "/e/k");
	h_run(&h); /* no timer fires */
	const struct h_reply *r = h_reply_for(&h, g1);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_GET_REPLY);
	assert_true(set_has_body(&r->msg.set_reply.set, "v"));

	h_store_garbage(&h, pref[1], "/e/k");
	h_store_garbage(&h, pref[2], "/e/k");
	uint64_t g2 = h_get(&h, pref[0], "/e/k");
	uint64_t l = h_list_r(&h, pref[0], "/e", 0);
	h_run(&h);
	r = h_reply_for(&h, g2);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_EQUORUM);
	r = h_reply_for(&h, l);
	assert_non_null(r);
	assert_int_equal(r->msg.type, KV_MSG_ERROR);
	assert_int_equal(r->msg.error.code, KV_EQUORUM);
	/* Nothing is left waiting for a timer. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node__read_repair_updates_stale_replica),
		cmocka_unit_test(test_node__read_repair_reaches_remote_replica),
		cmocka_unit_test(test_node__get_head_returns_metadata_and_context_only),
		cmocka_unit_test(test_node__more_than_64_siblings_answer_esiblings),
		cmocka_unit_test(test_node__replica_errors_fail_get_and_list_early),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
