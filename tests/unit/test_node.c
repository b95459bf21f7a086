/*
 * test_node.c - the node's sans-I/O core (node/node.h, doc/node.md).
 *
 * A tiny in-test harness runs a few nodes in one process: every message a
 * node sends is encoded and decoded with src/proto (so the core only emits
 * valid messages) and queued; storage effects complete against an in-memory
 * map per node; timers fire only when a test advances the clock. Nodes
 * marked down receive nothing.
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
#include "util/checksum.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/siblings.h"

#define H_MAX_NODES 4
#define MS 1000000ull

/* ---- Harness ------------------------------------------------------------ */

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

static const char *const h_names[H_MAX_NODES] = { "n1", "n2", "n3", "n4" };

static void h_config(struct harness *h, int i, struct kv_node_config *cfg)
{
	kv_node_config_default(cfg);
	cfg->self_id = (uint32_t)(i + 1);
	cfg->members = h->members;
	cfg->n_members = (size_t)h->nnodes;
	cfg->n = h->n;
	cfg->r = h->r;
	cfg->w = h->w;
	cfg->request_timeout_ns = 100 * MS;
	cfg->forward_timeout_ns = 150 * MS;
	kv_rng_seed(&cfg->rng, 42 + (uint64_t)i);
}

static void h_init(struct harness *h, int nnodes, uint32_t n, uint32_t r, uint32_t w)
{
	memset(h, 0, sizeof *h);
	h->nnodes = nnodes;
	h->now = 1000 * MS;
	h->next_req = 1;
	h->n = n;
	h->r = r;
	h->w = w;
	for (int i = 0; i < nnodes; i++) {
		h->members[i].id = (uint32_t)(i + 1);
		h->members[i].name = h_names[i];
		h->members[i].weight = 1.0;
	}
	for (int i = 0; i < nnodes; i++) {
		struct kv_node_config cfg;
		h_config(h, i, &cfg);
		assert_int_equal(kv_node_init(&h->nodes[i], &cfg), 0);
	}
}

static void h_release(struct harness *h)
{
	for (int i = 0; i < h->nnodes; i++) {
		kv_node_release(&h->nodes[i]);
		for (size_t k = 0; k < h->store[i].n; k++) {
			kv_buf_release(&h->store[i].v[k].key);
			kv_buf_release(&h->store[i].v[k].value);
		}
		free(h->store[i].v);
	}
	for (size_t i = h->qhead; i < h->qn; i++) {
		kv_buf_release(&h->q[i].body);
		kv_buf_release(&h->q[i].key);
	}
	free(h->q);
	for (size_t i = 0; i < h->nheld; i++) {
		kv_buf_release(&h->held[i].body);
		kv_buf_release(&h->held[i].key);
	}
	for (size_t i = 0; i < h->nreplies; i++) {
		kv_msg_release(&h->replies[i].msg);
		kv_buf_release(&h->replies[i].body);
	}
}

static int h_index(uint32_t id)
{
	return (int)id - 1;
}

static struct h_kv *h_find(struct h_store *s, struct kv_slice key)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_slice_eq(kv_buf_slice(&s->v[i].key), key))
			return &s->v[i];
	return NULL;
}

static void h_store_put(struct h_store *s, struct kv_slice key, struct kv_slice value)
{
	struct h_kv *kv = h_find(s, key);
	if (kv == NULL) {
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 8;
			s->v = realloc(s->v, s->cap * sizeof *s->v);
			assert_non_null(s->v);
		}
		kv = &s->v[s->n++];
		memset(kv, 0, sizeof *kv);
		assert_int_equal(kv_buf_append(&kv->key, key.p, key.n), 0);
	}
	kv_buf_reset(&kv->value);
	assert_int_equal(kv_buf_append(&kv->value, value.p, value.n), 0);
	if (kv_slice_eq(key, kv_node_lease_skey()))
		s->lease_writes++;
	else
		s->writes++;
}

static void h_push(struct harness *h, struct h_ev *ev)
{
	if (h->qn == h->qcap) {
		h->qcap = h->qcap ? 2 * h->qcap : 64;
		h->q = realloc(h->q, h->qcap * sizeof *h->q);
		assert_non_null(h->q);
	}
	h->q[h->qn++] = *ev;
}

static void h_encode(const struct kv_msg *msg, struct kv_buf *body)
{
	int rc = kv_msg_encode(msg, NULL, body);
	if (rc != 0)
		fail_msg("node emitted an unencodable %s: %s", kv_msg_type_name(msg->type),
			 kv_strerror(rc));
}

/* Moves the effects of node @i into the harness and empties @out. */
static void h_collect(struct harness *h, int i, struct kv_effects *out)
{
	for (size_t k = 0; k < out->aborts.n; k++) {
		int to = h_index(out->aborts.v[k]);
		assert_true(to >= 0 && to < h->nnodes && to != i);
		h->aborts[i][to]++;
	}
	for (size_t k = 0; k < out->sends.n; k++) {
		struct kv_node_msg_out *m = &out->sends.v[k];
		h->sent[i]++;
		int to = h_index(m->to);
		assert_true(to >= 0 && to < h->nnodes && to != i);
		if (h->down[to])
			continue;
		struct h_ev ev = { EV_PEER, to, (uint32_t)(i + 1), m->request_id, m->msg.type,
				   KV_BUF_INIT, KV_BUF_INIT, 0 };
		h_encode(&m->msg, &ev.body);
		h_push(h, &ev);
	}
	for (size_t k = 0; k < out->replies.n; k++) {
		struct kv_node_msg_out *m = &out->replies.v[k];
		assert_true(h->nreplies < 64);
		struct h_reply *r = &h->replies[h->nreplies++];
		memset(r, 0, sizeof *r);
		r->node = i;
		r->conn = m->conn;
		r->request_id = m->request_id;
		h_encode(&m->msg, &r->body);
		assert_int_equal(kv_msg_decode(m->msg.type, kv_buf_slice(&r->body), NULL, &r->msg), 0);
	}
	for (size_t k = 0; k < out->timers.n; k++) {
		assert_true(h->ntimers < 256);
		h->timers[h->ntimers++] =
			(struct h_timer){ i, out->timers.v[k].id, out->timers.v[k].at_ns };
	}
	for (size_t k = 0; k < out->cancels.n; k++)
		for (size_t t = 0; t < h->ntimers; t++)
			if (h->timers[t].node == i && h->timers[t].id == out->cancels.v[k])
				h->timers[t] = h->timers[--h->ntimers];
	for (size_t k = 0; k < out->reads.n; k++) {
		struct h_ev ev = { EV_READ, i, 0, out->reads.v[k].op, 0, KV_BUF_INIT, KV_BUF_INIT, 0 };
		kv_buf_append(&ev.key, out->reads.v[k].key.p, out->reads.v[k].key.n);
		if (h->hold_storage)
			h->held[h->nheld++] = ev;
		else
			h_push(h, &ev);
	}
	for (size_t k = 0; k < out->writes.n; k++) {
		struct kv_node_storage_out *s = &out->writes.v[k];
		struct h_ev ev = { EV_WRITE, i, 0, s->op, 0, KV_BUF_INIT, KV_BUF_INIT, 0 };
		kv_buf_append(&ev.key, s->key.p, s->key.n);
		kv_buf_append(&ev.body, s->value.p, s->value.n);
		if (h->hold_storage)
			h->held[h->nheld++] = ev;
		else
			h_push(h, &ev);
	}
	for (size_t k = 0; k < out->ranges.n; k++) {
		struct kv_node_range_out *r = &out->ranges.v[k];
		struct h_ev ev = { EV_RANGE, i, 0, r->op, 0, KV_BUF_INIT, KV_BUF_INIT, r->max };
		kv_buf_append(&ev.key, r->start.p, r->start.n);
		kv_buf_append(&ev.body, r->end.p, r->end.n);
		if (h->hold_storage)
			h->held[h->nheld++] = ev;
		else
			h_push(h, &ev);
	}
	kv_effects_clear(out);
}

static void h_step(struct harness *h, int i, const struct kv_input *in)
{
	struct kv_effects out;
	kv_effects_init(&out);
	assert_int_equal(kv_node_step(&h->nodes[i], h->now, in, &out), 0);
	h_collect(h, i, &out);
	kv_effects_release(&out);
}

static int h_kv_cmp(const void *a, const void *b)
{
	const struct h_kv *x = *(const struct h_kv *const *)a, *y = *(const struct h_kv *const *)b;
	return kv_slice_cmp(kv_buf_slice(&x->key), kv_buf_slice(&y->key));
}

/* Completes a range read: up to max stored keys in [start, end), ascending. */
static void h_range(struct harness *h, struct h_ev *ev)
{
	struct h_store *s = &h->store[ev->to];
	const struct h_kv **sel = calloc(s->n + 1, sizeof *sel);
	assert_non_null(sel);
	size_t n = 0;
	for (size_t k = 0; k < s->n; k++) {
		struct kv_slice key = kv_buf_slice(&s->v[k].key);
		if (kv_slice_cmp(key, kv_buf_slice(&ev->key)) >= 0 &&
		    kv_slice_cmp(key, kv_buf_slice(&ev->body)) < 0)
			sel[n++] = &s->v[k];
	}
	qsort(sel, n, sizeof *sel, h_kv_cmp);
	if (n > ev->max)
		n = ev->max;
	struct kv_node_range_entry *entries = calloc(n + 1, sizeof *entries);
	assert_non_null(entries);
	for (size_t k = 0; k < n; k++) {
		entries[k].key = kv_buf_slice(&sel[k]->key);
		entries[k].value = kv_buf_slice(&sel[k]->value);
	}
	struct kv_input in = { .type = KV_INPUT_RANGE_DONE };
	in.range.op = ev->id;
	in.range.entries = entries;
	in.range.n = n;
	h_step(h, ev->to, &in);
	free(entries);
	free(sel);
}

static void h_deliver(struct harness *h, struct h_ev *ev)
{
	struct kv_input in;
	memset(&in, 0, sizeof in);
	if (ev->kind == EV_PEER) {
		struct kv_msg msg;
		kv_msg_init(&msg, KV_MSG_NONE);
		assert_int_equal(kv_msg_decode(ev->type, kv_buf_slice(&ev->body), NULL, &msg), 0);
		in.type = KV_INPUT_PEER;
		in.peer.from = ev->from;
		in.peer.request_id = ev->id;
		in.peer.msg = &msg;
		if (!h->down[ev->to])
			h_step(h, ev->to, &in);
		kv_msg_release(&msg);
	} else if (ev->kind == EV_RANGE) {
		h_range(h, ev);
	} else if (ev->kind == EV_READ) {
		struct h_kv *kv = h_find(&h->store[ev->to], kv_buf_slice(&ev->key));
		in.type = KV_INPUT_READ_DONE;
		in.read.op = ev->id;
		in.read.status = kv ? 0 : KV_ENOTFOUND;
		if (kv != NULL)
			in.read.value = kv_buf_slice(&kv->value);
		h_step(h, ev->to, &in);
	} else {
		in.type = KV_INPUT_WRITE_DONE;
		in.write.op = ev->id;
		if (h->fail_lease_writes > 0 && kv_slice_eq(kv_buf_slice(&ev->key), kv_node_lease_skey())) {
			h->fail_lease_writes--;
			in.write.status = -EIO;
		} else {
			h_store_put(&h->store[ev->to], kv_buf_slice(&ev->key), kv_buf_slice(&ev->body));
		}
		h_step(h, ev->to, &in);
	}
	kv_buf_release(&ev->body);
	kv_buf_release(&ev->key);
}

/* Delivers queued events until none is left. */
static void h_run(struct harness *h)
{
	while (h->qhead < h->qn) {
		struct h_ev ev = h->q[h->qhead++];
		h_deliver(h, &ev);
	}
	h->qhead = h->qn = 0;
}

/* Advances the clock to @at and fires every timer due by then, in order. */
static void h_advance(struct harness *h, uint64_t at)
{
	h->now = at;
	for (;;) {
		size_t best = h->ntimers;
		for (size_t t = 0; t < h->ntimers; t++)
			if (h->timers[t].at <= at && (best == h->ntimers || h->timers[t].at < h->timers[best].at))
				best = t;
		if (best == h->ntimers)
			return;
		struct h_timer tm = h->timers[best];
		h->timers[best] = h->timers[--h->ntimers];
		if (h->down[tm.node])
			continue;
		struct kv_input in = { .type = KV_INPUT_TIMER };
		in.timer.id = tm.id;
		h_step(h, tm.node, &in);
		h_run(h);
	}
}

/*
 * Restarts node @i as a driver would: drops its state and timers, reads the
 * lease record from its storage and re-inits with the persisted lease.
 */
static void h_restart(struct harness *h, int i)
{
	kv_node_release(&h->nodes[i]);
	for (size_t t = 0; t < h->ntimers;)
		if (h->timers[t].node == i)
			h->timers[t] = h->timers[--h->ntimers];
		else
			t++;
	struct kv_node_config cfg;
	h_config(h, i, &cfg);
	struct h_kv *rec = h_find(&h->store[i], kv_node_lease_skey());
	if (rec != NULL) {
		uint32_t epoch = 0;
		uint64_t lease = 0;
		assert_int_equal(kv_node_lease_decode(kv_buf_slice(&rec->value), &epoch, &lease), 0);
		if (epoch == cfg.epoch)
			cfg.counter_lease = lease;
	}
	assert_int_equal(kv_node_init(&h->nodes[i], &cfg), 0);
}

/* Sends a client request to node @i; returns its request id. */
static uint64_t h_client(struct harness *h, int i, const struct kv_msg *msg)
{
	struct kv_input in = { .type = KV_INPUT_CLIENT };
	in.client.conn = 100 + (uint64_t)i;
	in.client.request_id = h->next_req++;
	in.client.msg = msg;
	h_step(h, i, &in);
	return in.client.request_id;
}

static const struct h_reply *h_reply_for(const struct harness *h, uint64_t req)
{
	const struct h_reply *found = NULL;
	for (size_t i = 0; i < h->nreplies; i++)
		if (h->replies[i].request_id == req) {
			assert_null(found); /* exactly one reply per request */
			found = &h->replies[i];
		}
	return found;
}

static uint64_t h_put(struct harness *h, int i, const char *key, const char *body,
		      const struct kv_ctx *ctx, uint8_t rid)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str(key);
	m.put.body = kv_slice_str(body);
	m.put.request_id[0] = rid;
	if (ctx != NULL)
		assert_int_equal(kv_ctx_copy(&m.put.context, ctx), 0);
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

static uint64_t h_get(struct harness *h, int i, const char *key)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str(key);
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

/* The preference list of @key as node indices. */
static int h_preflist(struct harness *h, const char *key, int *idx)
{
	uint32_t ids[KV_RING_MAX_REPLICAS];
	int n = kv_node_preflist(&h->nodes[0], kv_slice_str(key), ids, KV_RING_MAX_REPLICAS);
	for (int i = 0; i < n; i++)
		idx[i] = h_index(ids[i]);
	return n;
}

/* Decodes node @i's stored set for @key into @out (empty when absent). */
static bool h_stored(struct harness *h, int i, const char *key, struct kv_dvv *out)
{
	struct kv_buf skey = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, kv_slice_str(key)), 0);
	struct h_kv *kv = h_find(&h->store[i], kv_buf_slice(&skey));
	kv_buf_release(&skey);
	if (kv == NULL)
		return false;
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&kv->value), out), 0);
	return true;
}

static bool set_has_body(const struct kv_dvv *s, const char *body)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_slice_eq(s->v[i].body, kv_slice_str(body)))
			return true;
	return false;
}

/* ---- Tests ------------------------------------------------------------- */

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

static void make_siblings(struct kv_dvv *set, size_t n);

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

/* Finds the held storage event of @kind for node @i whose key is (not) the lease's. */
static bool h_take_held(struct harness *h, int i, enum h_ev_kind kind, bool lease,
			struct h_ev *ev)
{
	for (size_t k = 0; k < h->nheld; k++) {
		struct h_ev *e = &h->held[k];
		if (e->to == i && e->kind == kind &&
		    kv_slice_eq(kv_buf_slice(&e->key), kv_node_lease_skey()) == lease) {
			*ev = *e;
			h->held[k] = h->held[--h->nheld];
			return true;
		}
	}
	return false;
}

static void h_release_held(struct harness *h)
{
	h->hold_storage = false;
	while (h->nheld > 0) {
		struct h_ev ev = h->held[--h->nheld];
		h_deliver(h, &ev);
	}
	h_run(h);
}

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

static uint64_t h_list(struct harness *h, int i, const char *dir, const char *cursor,
		       uint32_t max)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_LIST);
	m.list.dir = kv_slice_str(dir);
	m.list.cursor = kv_slice_str(cursor);
	m.list.max_entries = max;
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

static bool entry_is(const struct kv_msg_list_entry *e, const char *name)
{
	return kv_slice_eq(e->name, kv_slice_str(name));
}

static void h_delete(struct harness *h, int i, const char *key, const struct kv_ctx *ctx,
		     uint8_t rid)
{
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_DELETE);
	del.put.key = kv_slice_str(key);
	del.put.request_id[0] = rid;
	assert_int_equal(kv_ctx_copy(&del.put.context, ctx), 0);
	uint64_t d = h_client(h, i, &del);
	kv_msg_release(&del);
	h_run(h);
	assert_int_equal(h_reply_for(h, d)->msg.type, KV_MSG_DELETE_REPLY);
}

static void test_node__list_shows_children_written_through_different_nodes(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 0, "/d/a", "A", NULL, 1);
	h_put(&h, 1, "/d/b", "B", NULL, 2);
	h_put(&h, 2, "/d/c", "C", NULL, 3);
	h_put(&h, 0, "/d/sub/x", "grandchild", NULL, 4);
	h_put(&h, 1, "/other/z", "elsewhere", NULL, 5);
	h_put(&h, 2, "/top", "root entry", NULL, 6);
	h_run(&h);
	for (int via = 0; via < 3; via++) {
		uint64_t l = h_list(&h, via, "/d", "", 100);
		h_run(&h);
		const struct h_reply *r = h_reply_for(&h, l);
		assert_non_null(r);
		assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
		const struct kv_msg_list_reply *lr = &r->msg.list_reply;
		assert_int_equal(lr->flags, 0);
		assert_int_equal(lr->n, 3);
		assert_true(entry_is(&lr->entries[0], "a"));
		assert_true(entry_is(&lr->entries[1], "b"));
		assert_true(entry_is(&lr->entries[2], "c"));
		for (size_t k = 0; k < 3; k++) {
			assert_int_equal(lr->entries[k].set.n, 1);
			assert_int_equal(lr->entries[k].set.v[0].body.n, 0); /* metadata only */
			assert_false(kv_ctx_is_empty(&lr->entries[k].set.ctx));
		}
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[via]), 0);
	}
	/* The root lists "/top" (and "/" is the root too). */
	uint64_t l = h_list(&h, 1, "/", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *root = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(root->n, 1);
	assert_true(entry_is(&root->entries[0], "top"));
	h_release(&h);
}

static void test_node__list_hides_tombstones(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 0, "/t/gone", "x", NULL, 1);
	h_put(&h, 0, "/t/kept", "y", NULL, 2);
	h_run(&h);
	uint64_t g = h_get(&h, 1, "/t/gone");
	h_run(&h);
	h_delete(&h, 2, "/t/gone", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	uint64_t l = h_list(&h, 1, "/t", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(lr->n, 1);
	assert_true(entry_is(&lr->entries[0], "kept"));
	h_release(&h);
}

/*
 * Replicas with different contents: pref[1] missed the odd names, pref[2]
 * the even ones; pref[0] is down while listing, so every page joins two
 * replicas that each fill their page with different names. Paging with a
 * small max must still return every name once, in order.
 */
static void test_node__list_paging_across_differing_replicas_skips_nothing(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/p/x", pref), 3);
	enum { NAMES = 10 };
	char key[16];
	for (int i = 0; i < NAMES; i++) {
		h.down[pref[1]] = i % 2 == 1;
		h.down[pref[2]] = i % 2 == 0;
		snprintf(key, sizeof key, "/p/n%02d", i);
		uint64_t p = h_put(&h, pref[0], key, "v", NULL, (uint8_t)(i + 1));
		h_run(&h);
		assert_int_equal(h_reply_for(&h, p)->msg.type, KV_MSG_PUT_REPLY);
	}
	h.down[pref[1]] = h.down[pref[2]] = false;
	h.down[pref[0]] = true;
	for (uint32_t max = 1; max <= 4; max++) {
		char cursor[64] = "";
		int seen = 0;
		for (int page = 0; page < 40; page++) {
			uint64_t l = h_list(&h, pref[1 + page % 2], "/p", cursor, max);
			h_run(&h);
			const struct h_reply *r = h_reply_for(&h, l);
			assert_non_null(r);
			assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
			const struct kv_msg_list_reply *lr = &r->msg.list_reply;
			assert_true(lr->n <= max);
			for (size_t k = 0; k < lr->n; k++) {
				char want[16];
				snprintf(want, sizeof want, "n%02d", seen++);
				assert_true(entry_is(&lr->entries[k], want));
			}
			if (!(lr->flags & KV_MSG_LIST_F_MORE))
				break;
			assert_true(lr->next_cursor.n < sizeof cursor);
			memcpy(cursor, lr->next_cursor.p, lr->next_cursor.n);
			cursor[lr->next_cursor.n] = '\0';
		}
		assert_int_equal(seen, NAMES);
	}
	h_release(&h);
}

static void test_node__list_stale_replica_cannot_bring_back_a_deleted_name(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/s/x", pref), 3);
	h_put(&h, pref[0], "/s/deleted", "old", NULL, 1);
	h_put(&h, pref[0], "/s/live", "v", NULL, 2);
	h_run(&h);
	uint64_t g = h_get(&h, pref[0], "/s/deleted");
	h_run(&h);
	int stale = pref[2];
	h.down[stale] = true; /* misses the delete */
	h_delete(&h, pref[0], "/s/deleted", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	h_advance(&h, h.now + 1000 * MS);
	h.down[stale] = false;
	struct kv_dvv s = KV_DVV_INIT;
	assert_true(h_stored(&h, stale, "/s/deleted", &s));
	assert_false(s.v[0].tombstone); /* still the old live version there */
	kv_dvv_release(&s);
	/* Listing through the stale replica, joined with one that saw the delete. */
	h.down[pref[0]] = true;
	uint64_t l = h_list(&h, stale, "/s", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(lr->n, 1);
	assert_true(entry_is(&lr->entries[0], "live"));
	h_release(&h);
}

/* Puts @key through @i and deletes it again with what a GET saw. */
static void h_put_delete(struct harness *h, int i, const char *key, uint8_t rid)
{
	h_put(h, i, key, "doomed", NULL, rid);
	h_run(h);
	uint64_t g = h_get(h, i, key);
	h_run(h);
	h_delete(h, i, key, &h_reply_for(h, g)->msg.set_reply.set.ctx, (uint8_t)(rid + 100));
}

/*
 * Hidden names fill pages too. pref[1] holds a(T) b(T) c, pref[2] holds
 * a(T) d; with max 2 both pages are full, and pref[1]'s ends at b. Showing
 * d from the first page (it is the only live name there) and no MORE would
 * skip c: the page must stop at b.
 */
static void test_node__list_tombstone_filled_page_does_not_skip_names(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/m/x", pref), 3);
	h_put_delete(&h, pref[0], "/m/a", 1);
	h.down[pref[2]] = true;
	h_put_delete(&h, pref[0], "/m/b", 2);
	h_put(&h, pref[0], "/m/c", "c", NULL, 3);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[2]] = false;
	h.down[pref[1]] = true;
	h_put(&h, pref[0], "/m/d", "d", NULL, 4);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[1]] = false;
	h.down[pref[0]] = true;

	const char *want[] = { "c", "d" };
	size_t seen = 0;
	char cursor[64] = "";
	for (int page = 0; page < 10; page++) {
		uint64_t l = h_list(&h, pref[1], "/m", cursor, 2);
		h_run(&h);
		const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
		for (size_t k = 0; k < lr->n; k++) {
			assert_true(seen < 2);
			assert_true(entry_is(&lr->entries[k], want[seen++]));
		}
		if (!(lr->flags & KV_MSG_LIST_F_MORE))
			break;
		memcpy(cursor, lr->next_cursor.p, lr->next_cursor.n);
		cursor[lr->next_cursor.n] = '\0';
	}
	assert_int_equal(seen, 2);
	h_release(&h);
}

/* ---- GET HEAD, the 64-sibling cap, replica errors, LIST read repair ---- */

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

/* A set of @n concurrent versions, each from its own actor (a partition's joins). */
static void make_siblings(struct kv_dvv *set, size_t n)
{
	kv_dvv_init(set);
	for (size_t i = 0; i < n; i++) {
		struct kv_counter ctr;
		uint64_t lease;
		kv_counter_init(&ctr, 0, 0);
		assert_int_equal(kv_counter_lease_request(&ctr, &lease), 1);
		kv_counter_lease_durable(&ctr, lease);
		char body[16];
		snprintf(body, sizeof body, "v%zu", i);
		struct kv_dvv one = KV_DVV_INIT;
		struct kv_dvv_write w;
		memset(&w, 0, sizeof w);
		w.timestamp_ns = (int64_t)i;
		w.body = kv_slice_str(body);
		struct kv_actor actor = { (uint32_t)(100 + i), 1 };
		struct kv_dot dot;
		assert_int_equal(kv_dvv_put(&one, &w, actor, &ctr, NULL, &dot), 0);
		assert_int_equal(kv_dvv_join(set, &one), 0);
		kv_dvv_release(&one);
	}
	assert_int_equal(set->n, n);
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

static uint64_t h_list_r(struct harness *h, int i, const char *dir, uint8_t r)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_LIST);
	m.list.dir = kv_slice_str(dir);
	m.list.cursor = kv_slice_str("");
	m.list.max_entries = 100;
	m.list.r = r;
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

/*
 * LIST read repair: a replica that missed a put and one that missed a
 * delete are repaired by a listing that saw the difference — with the full
 * version, body included (pages carry no bodies, so the repair reads the
 * key in full), and with the tombstone.
 */
static void test_node__list_repairs_replicas_whose_page_was_behind(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/r/x", pref), 3);
	h_put(&h, pref[0], "/r/gone", "old", NULL, 1);
	h_run(&h);
	uint64_t g = h_get(&h, pref[0], "/r/gone");
	h_run(&h);
	h.down[pref[2]] = true; /* misses a put and a delete */
	h_put(&h, pref[0], "/r/new", "fresh body", NULL, 2);
	h_run(&h);
	h_delete(&h, pref[0], "/r/gone", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[2]] = false;
	struct kv_dvv s = KV_DVV_INIT;
	assert_false(h_stored(&h, pref[2], "/r/new", &s));

	size_t writes_before = h.store[pref[2]].writes;
	uint64_t l = h_list_r(&h, pref[1], "/r", 3);
	h_run(&h);
	const struct h_reply *r = h_reply_for(&h, l);
	assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
	assert_int_equal(r->msg.list_reply.n, 1);
	assert_true(entry_is(&r->msg.list_reply.entries[0], "new"));
	/* The stale replica now holds the put, body and all, and the tombstone. */
	assert_int_equal(h.store[pref[2]].writes, writes_before + 2);
	assert_true(h_stored(&h, pref[2], "/r/new", &s));
	assert_int_equal(s.n, 1);
	assert_true(set_has_body(&s, "fresh body"));
	kv_dvv_release(&s);
	assert_true(h_stored(&h, pref[2], "/r/gone", &s));
	assert_int_equal(s.n, 1);
	assert_true(s.v[0].tombstone);
	kv_dvv_release(&s);
	/* Replicas now agree: a second listing repairs nothing. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	size_t total = 0;
	for (int i = 0; i < 3; i++)
		total += h.store[i].writes;
	l = h_list_r(&h, pref[1], "/r", 3);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, l)->msg.type, KV_MSG_LIST_REPLY);
	size_t after = 0;
	for (int i = 0; i < 3; i++)
		after += h.store[i].writes;
	assert_int_equal(after, total);
	h_release(&h);
}

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
		cmocka_unit_test(test_node__read_repair_updates_stale_replica),
		cmocka_unit_test(test_node__read_repair_reaches_remote_replica),
		cmocka_unit_test(test_node__key_queue_keeps_both_puts),
		cmocka_unit_test(test_node__replica_joins_rather_than_overwrites),
		cmocka_unit_test(test_node__delete_hides_value_behind_tombstone),
		cmocka_unit_test(test_node__retried_put_returns_first_dot),
		cmocka_unit_test(test_node__put_waits_for_the_lease_write),
		cmocka_unit_test(test_node__failed_lease_write_is_retried),
		cmocka_unit_test(test_node__restarted_node_never_reuses_a_dot),
		cmocka_unit_test(test_node__list_shows_children_written_through_different_nodes),
		cmocka_unit_test(test_node__list_hides_tombstones),
		cmocka_unit_test(test_node__list_paging_across_differing_replicas_skips_nothing),
		cmocka_unit_test(test_node__list_stale_replica_cannot_bring_back_a_deleted_name),
		cmocka_unit_test(test_node__list_tombstone_filled_page_does_not_skip_names),
		cmocka_unit_test(test_node__get_head_returns_metadata_and_context_only),
		cmocka_unit_test(test_node__more_than_64_siblings_answer_esiblings),
		cmocka_unit_test(test_node__replica_errors_fail_get_and_list_early),
		cmocka_unit_test(test_node__list_repairs_replicas_whose_page_was_behind),
		cmocka_unit_test(test_node__accepted_forward_waits_past_the_forward_timeout),
		cmocka_unit_test(test_node__accepted_forward_times_out_at_the_request_deadline),
		cmocka_unit_test(test_node__closed_error_on_forward_tries_next_replica_at_once),
		cmocka_unit_test(test_node__put_is_shipped_in_the_same_step_as_the_local_write),
		cmocka_unit_test(test_node__w_acks_count_the_local_write_when_durable),
		cmocka_unit_test(test_node__failed_local_write_after_shipping_taints_the_actor),
		cmocka_unit_test(test_node__replica_ack_hashes_the_written_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
