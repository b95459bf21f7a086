/*
 * node_fx.c - the in-test harness of the node core's unit tests: a few
 * nodes in one process, messages through src/proto, storage in memory,
 * timers on a test-driven clock. API and contract: node_fx.h.
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

void h_init(struct harness *h, int nnodes, uint32_t n, uint32_t r, uint32_t w)
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

void h_release(struct harness *h)
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

struct h_kv *h_find(struct h_store *s, struct kv_slice key)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_slice_eq(kv_buf_slice(&s->v[i].key), key))
			return &s->v[i];
	return NULL;
}

void h_store_put(struct h_store *s, struct kv_slice key, struct kv_slice value)
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

void h_step(struct harness *h, int i, const struct kv_input *in)
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

void h_deliver(struct harness *h, struct h_ev *ev)
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
void h_run(struct harness *h)
{
	while (h->qhead < h->qn) {
		struct h_ev ev = h->q[h->qhead++];
		h_deliver(h, &ev);
	}
	h->qhead = h->qn = 0;
}

/* Advances the clock to @at and fires every timer due by then, in order. */
void h_advance(struct harness *h, uint64_t at)
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
void h_restart(struct harness *h, int i)
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
uint64_t h_client(struct harness *h, int i, const struct kv_msg *msg)
{
	struct kv_input in = { .type = KV_INPUT_CLIENT };
	in.client.conn = 100 + (uint64_t)i;
	in.client.request_id = h->next_req++;
	in.client.msg = msg;
	h_step(h, i, &in);
	return in.client.request_id;
}

const struct h_reply *h_reply_for(const struct harness *h, uint64_t req)
{
	const struct h_reply *found = NULL;
	for (size_t i = 0; i < h->nreplies; i++)
		if (h->replies[i].request_id == req) {
			assert_null(found); /* exactly one reply per request */
			found = &h->replies[i];
		}
	return found;
}

uint64_t h_put(struct harness *h, int i, const char *key, const char *body,
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

uint64_t h_get(struct harness *h, int i, const char *key)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str(key);
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

uint64_t h_list_r(struct harness *h, int i, const char *dir, uint8_t r)
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

/* The preference list of @key as node indices. */
int h_preflist(struct harness *h, const char *key, int *idx)
{
	uint32_t ids[KV_RING_MAX_REPLICAS];
	int n = kv_node_preflist(&h->nodes[0], kv_slice_str(key), ids, KV_RING_MAX_REPLICAS);
	for (int i = 0; i < n; i++)
		idx[i] = h_index(ids[i]);
	return n;
}

/* Decodes node @i's stored set for @key into @out (empty when absent). */
bool h_stored(struct harness *h, int i, const char *key, struct kv_dvv *out)
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

bool set_has_body(const struct kv_dvv *s, const char *body)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_slice_eq(s->v[i].body, kv_slice_str(body)))
			return true;
	return false;
}

/* Finds the held storage event of @kind for node @i whose key is (not) the lease's. */
bool h_take_held(struct harness *h, int i, enum h_ev_kind kind, bool lease,
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

void h_release_held(struct harness *h)
{
	h->hold_storage = false;
	while (h->nheld > 0) {
		struct h_ev ev = h->held[--h->nheld];
		h_deliver(h, &ev);
	}
	h_run(h);
}

/* A set of @n concurrent versions, each from its own actor (a partition's joins). */
void make_siblings(struct kv_dvv *set, size_t n)
{
	kv_dvv_init(set);
	for (size_t i = 0; i < n; i++) {
		struct kv_counter ctr;
		uint64_t lease;
		kv_counter_init(&ctr, 0, 0);
		assert_int_equal(kv_counter_lease_request(&ctr, &lease), 1);
		kv_counter_lease_durable(&ctr, lease);
		char body[24]; /* room for any size_t */
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
