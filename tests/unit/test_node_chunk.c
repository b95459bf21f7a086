/*
 * test_node_chunk.c - chunks on the nodes and their reclamation by
 * mark-and-sweep (node/node_chunk.c, node/node_gc.c; doc/node.md "Chunks and
 * reclamation"; DESIGN §7).
 *
 * A harness in the style of test_node.c runs four cores in one process:
 * every message is encoded and decoded with src/proto and queued; storage
 * effects (writes, deletes, reads, range reads with their byte budget)
 * complete against a map per node; timers fire when a test advances the
 * clock, which is also each node's wall clock. Nodes marked down receive
 * nothing.
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
#include <sodium.h>

#include "fuse/chunk.h"
#include "fuse/object.h"
#include "node/node.h"
#include "node/node_int.h"
#include "proto/chunkhash.h"
#include "proto/msg.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/slice.h"

#define H_NODES 4
#define MS 1000000ull
#define SEC 1000000000ull

/* ---- Harness ------------------------------------------------------------ */

struct h_kv {
	struct kv_buf key, value;
};

struct h_store {
	struct h_kv *v;
	size_t n, cap;
};

enum h_ev_kind { EV_PEER, EV_READ, EV_WRITE, EV_RANGE };

struct h_ev {
	enum h_ev_kind kind;
	int to;
	uint32_t from;
	uint64_t id;
	uint16_t type;
	bool del;
	struct kv_buf body; /* peer message; write value; range end */
	struct kv_buf key;  /* read/write key; range start */
	uint32_t max, max_bytes;
};

struct h_reply {
	uint64_t request_id;
	struct kv_buf body;
	struct kv_msg msg;
};

struct harness {
	int nnodes;
	struct kv_node nodes[H_NODES];
	struct h_store store[H_NODES];
	bool down[H_NODES];
	struct h_ev *q;
	size_t qhead, qn, qcap;
	struct { int node; uint64_t id, at; } timers[1024];
	size_t ntimers;
	struct h_reply replies[64];
	size_t nreplies;
	uint64_t now, next_req;
	size_t range_reads;
	size_t sent[256]; /* peer messages sent, by type (all types are below 0x100) */
	size_t chunk_puts_to[H_NODES]; /* REPLICA_CHUNK_PUTs sent to each node (down or not) */
	struct kv_buf last_chunk_put;  /* the bytes of the last REPLICA_CHUNK_PUT sent */
	struct kv_node_member members[H_NODES];
};

static const char *const h_names[H_NODES] = { "n1", "n2", "n3", "n4" };

static void h_init(struct harness *h, int nnodes, uint32_t n, uint32_t w)
{
	memset(h, 0, sizeof *h);
	h->nnodes = nnodes;
	h->now = 1000 * SEC;
	h->next_req = 1;
	for (int i = 0; i < nnodes; i++) {
		h->members[i].id = (uint32_t)(i + 1);
		h->members[i].name = h_names[i];
		h->members[i].weight = 1.0;
	}
	for (int i = 0; i < nnodes; i++) {
		struct kv_node_config cfg;
		kv_node_config_default(&cfg);
		cfg.self_id = (uint32_t)(i + 1);
		cfg.members = h->members;
		cfg.n_members = (size_t)nnodes;
		cfg.n = n;
		cfg.r = 1;
		cfg.w = w;
		cfg.request_timeout_ns = 100 * MS;
		cfg.forward_timeout_ns = 150 * MS;
		kv_rng_seed(&cfg.rng, 7 + (uint64_t)i);
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
	kv_buf_release(&h->last_chunk_put);
	for (size_t i = 0; i < h->nreplies; i++) {
		kv_msg_release(&h->replies[i].msg);
		kv_buf_release(&h->replies[i].body);
	}
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
			s->cap = s->cap ? 2 * s->cap : 16;
			s->v = realloc(s->v, s->cap * sizeof *s->v);
			assert_non_null(s->v);
		}
		kv = &s->v[s->n++];
		memset(kv, 0, sizeof *kv);
		assert_int_equal(kv_buf_append(&kv->key, key.p, key.n), 0);
	}
	kv_buf_reset(&kv->value);
	assert_int_equal(kv_buf_append(&kv->value, value.p, value.n), 0);
}

static void h_store_del(struct h_store *s, struct kv_slice key)
{
	struct h_kv *kv = h_find(s, key);
	if (kv == NULL)
		return;
	kv_buf_release(&kv->key);
	kv_buf_release(&kv->value);
	*kv = s->v[--s->n];
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

static void h_collect(struct harness *h, int i, struct kv_effects *out)
{
	for (size_t k = 0; k < out->sends.n; k++) {
		struct kv_node_msg_out *m = &out->sends.v[k];
		int to = (int)m->to - 1;
		assert_true(to >= 0 && to < h->nnodes && to != i);
		assert_true(m->msg.type < 256);
		h->sent[m->msg.type]++;
		if (m->msg.type == KV_MSG_REPLICA_CHUNK_PUT) {
			h->chunk_puts_to[to]++;
			kv_buf_reset(&h->last_chunk_put);
			assert_int_equal(kv_buf_append(&h->last_chunk_put, m->msg.chunk.data.p,
						       m->msg.chunk.data.n),
					 0);
		}
		struct h_ev ev = { EV_PEER, to, (uint32_t)(i + 1), m->request_id, m->msg.type, false,
				   KV_BUF_INIT, KV_BUF_INIT, 0, 0 };
		h_encode(&m->msg, &ev.body);
		if (h->down[to]) {
			kv_buf_release(&ev.body);
			continue;
		}
		h_push(h, &ev);
	}
	for (size_t k = 0; k < out->replies.n; k++) {
		struct kv_node_msg_out *m = &out->replies.v[k];
		assert_true(h->nreplies < 64);
		struct h_reply *r = &h->replies[h->nreplies++];
		memset(r, 0, sizeof *r);
		r->request_id = m->request_id;
		h_encode(&m->msg, &r->body);
		assert_int_equal(kv_msg_decode(m->msg.type, kv_buf_slice(&r->body), NULL, &r->msg), 0);
	}
	for (size_t k = 0; k < out->timers.n; k++) {
		assert_true(h->ntimers < 1024);
		h->timers[h->ntimers].node = i;
		h->timers[h->ntimers].id = out->timers.v[k].id;
		h->timers[h->ntimers].at = out->timers.v[k].at_ns;
		h->ntimers++;
	}
	for (size_t k = 0; k < out->cancels.n; k++)
		for (size_t t = 0; t < h->ntimers; t++)
			if (h->timers[t].node == i && h->timers[t].id == out->cancels.v[k])
				h->timers[t] = h->timers[--h->ntimers];
	for (size_t k = 0; k < out->reads.n; k++) {
		struct h_ev ev = { EV_READ, i, 0, out->reads.v[k].op, 0, false, KV_BUF_INIT,
				   KV_BUF_INIT, 0, 0 };
		kv_buf_append(&ev.key, out->reads.v[k].key.p, out->reads.v[k].key.n);
		h_push(h, &ev);
	}
	for (size_t k = 0; k < out->writes.n; k++) {
		struct kv_node_storage_out *s = &out->writes.v[k];
		struct h_ev ev = { EV_WRITE, i, 0, s->op, 0, s->del, KV_BUF_INIT, KV_BUF_INIT, 0, 0 };
		kv_buf_append(&ev.key, s->key.p, s->key.n);
		kv_buf_append(&ev.body, s->value.p, s->value.n);
		h_push(h, &ev);
	}
	for (size_t k = 0; k < out->ranges.n; k++) {
		struct kv_node_range_out *r = &out->ranges.v[k];
		struct h_ev ev = { EV_RANGE, i, 0, r->op, 0, false, KV_BUF_INIT, KV_BUF_INIT, r->max,
				   r->max_bytes };
		kv_buf_append(&ev.key, r->start.p, r->start.n);
		kv_buf_append(&ev.body, r->end.p, r->end.n);
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

/* A range read: [start, end) (an empty end: no bound), max entries, byte budget. */
static void h_range(struct harness *h, struct h_ev *ev)
{
	struct h_store *s = &h->store[ev->to];
	const struct h_kv **sel = calloc(s->n + 1, sizeof *sel);
	assert_non_null(sel);
	size_t n = 0;
	h->range_reads++;
	for (size_t k = 0; k < s->n; k++) {
		struct kv_slice key = kv_buf_slice(&s->v[k].key);
		if (kv_slice_cmp(key, kv_buf_slice(&ev->key)) >= 0 &&
		    (ev->body.n == 0 || kv_slice_cmp(key, kv_buf_slice(&ev->body)) < 0))
			sel[n++] = &s->v[k];
	}
	qsort(sel, n, sizeof *sel, h_kv_cmp);
	size_t take = 0, bytes = 0;
	while (take < n && take < ev->max) {
		bytes += sel[take]->key.n + sel[take]->value.n;
		take++;
		if (ev->max_bytes && bytes >= ev->max_bytes)
			break;
	}
	struct kv_node_range_entry *entries = calloc(take + 1, sizeof *entries);
	assert_non_null(entries);
	for (size_t k = 0; k < take; k++) {
		entries[k].key = kv_buf_slice(&sel[k]->key);
		entries[k].value = kv_buf_slice(&sel[k]->value);
	}
	struct kv_input in = { .type = KV_INPUT_RANGE_DONE };
	in.range.op = ev->id;
	in.range.entries = entries;
	in.range.n = take;
	h_step(h, ev->to, &in);
	free(entries);
	free(sel);
}

static void h_deliver(struct harness *h, struct h_ev *ev)
{
	struct kv_input in;
	memset(&in, 0, sizeof in);
	if (h->down[ev->to]) {
		/* a node that went down drops what was on its way */
	} else if (ev->kind == EV_PEER) {
		struct kv_msg msg;
		kv_msg_init(&msg, KV_MSG_NONE);
		assert_int_equal(kv_msg_decode(ev->type, kv_buf_slice(&ev->body), NULL, &msg), 0);
		in.type = KV_INPUT_PEER;
		in.peer.from = ev->from;
		in.peer.request_id = ev->id;
		in.peer.msg = &msg;
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
		if (ev->del)
			h_store_del(&h->store[ev->to], kv_buf_slice(&ev->key));
		else
			h_store_put(&h->store[ev->to], kv_buf_slice(&ev->key), kv_buf_slice(&ev->body));
		h_step(h, ev->to, &in);
	}
	kv_buf_release(&ev->body);
	kv_buf_release(&ev->key);
}

static void h_run(struct harness *h)
{
	size_t guard = 0;
	while (h->qhead < h->qn) {
		assert_true(++guard < 1000000);
		struct h_ev ev = h->q[h->qhead++];
		h_deliver(h, &ev);
	}
	h->qhead = h->qn = 0;
}

static void h_advance(struct harness *h, uint64_t at)
{
	h->now = at;
	for (;;) {
		size_t best = h->ntimers;
		for (size_t t = 0; t < h->ntimers; t++)
			if (h->timers[t].at <= at &&
			    (best == h->ntimers || h->timers[t].at < h->timers[best].at))
				best = t;
		if (best == h->ntimers)
			return;
		int node = h->timers[best].node;
		uint64_t id = h->timers[best].id;
		h->timers[best] = h->timers[--h->ntimers];
		if (h->down[node])
			continue;
		struct kv_input in = { .type = KV_INPUT_TIMER };
		in.timer.id = id;
		h_step(h, node, &in);
		h_run(h);
	}
}

/* Sends @msg to node @i as a client, runs everything, returns the reply. */
static const struct kv_msg *h_call(struct harness *h, int i, const struct kv_msg *msg)
{
	struct kv_input in = { .type = KV_INPUT_CLIENT };
	in.client.conn = 100 + (uint64_t)i;
	in.client.request_id = h->next_req++;
	in.client.msg = msg;
	h_step(h, i, &in);
	h_run(h);
	for (size_t k = 0; k < h->nreplies; k++)
		if (h->replies[k].request_id == in.client.request_id)
			return &h->replies[k].msg;
	/* Not answered yet: let timers fire (bounded). */
	for (int round = 0; round < 100; round++) {
		h_advance(h, h->now + 50 * MS);
		for (size_t k = 0; k < h->nreplies; k++)
			if (h->replies[k].request_id == in.client.request_id)
				return &h->replies[k].msg;
	}
	fail_msg("no reply to %s", kv_msg_type_name(msg->type));
	return NULL;
}

/* ---- Chunks and files ------------------------------------------------- */

struct chunk {
	uint8_t data[600];
	size_t n;
	uint8_t hash[32];
	uint8_t key[34];
};

static void chunk_make(struct chunk *c, unsigned seed)
{
	c->n = 100 + seed % 400;
	for (size_t i = 0; i < c->n; i++)
		c->data[i] = (uint8_t)(seed * 131 + i * 7);
	assert_int_equal(kv_chunk_hash(c->data, c->n, c->hash), 0); /* SHA-256 */
	kv_fs_chunk_key(c->hash, c->key);
}

static struct kv_slice chunk_key(const struct chunk *c)
{
	return kv_slice_make(c->key, sizeof c->key);
}

static const struct kv_msg *h_chunk_put(struct harness *h, int i, const struct chunk *c)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_CHUNK_PUT);
	m.chunk.key = chunk_key(c);
	m.chunk.data = kv_slice_make(c->data, c->n);
	return h_call(h, i, &m);
}

static const struct kv_msg *h_chunk_get_t(struct harness *h, int i, const struct chunk *c,
					  uint32_t timeout_ms)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_CHUNK_GET);
	m.chunk.key = chunk_key(c);
	m.chunk.timeout_ms = timeout_ms;
	return h_call(h, i, &m);
}

static const struct kv_msg *h_chunk_get(struct harness *h, int i, const struct chunk *c)
{
	return h_chunk_get_t(h, i, c, 0);
}

static const struct kv_msg *h_gc(struct harness *h, int i, uint64_t grace_s, uint32_t timeout_ms)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GC);
	m.gc.grace_s = grace_s;
	m.gc.timeout_ms = timeout_ms;
	return h_call(h, i, &m);
}

/* Puts a chunked file @path whose manifest names @chunks (NULL: a hole). */
static const struct kv_msg *h_put_file(struct harness *h, int i, const char *path,
				       const struct chunk *const *chunks, size_t n, uint8_t w)
{
	struct kv_fs_manifest man;
	kv_fs_manifest_init(&man, 20);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(kv_fs_manifest_append(&man, chunks[k] ? chunks[k]->hash : NULL,
						       k + 1 < n ? 1u << 20 : 77),
				 0);
	struct kv_buf body = KV_BUF_INIT, meta = KV_BUF_INIT;
	assert_int_equal(kv_fs_manifest_encode(&man, &body), 0);
	struct kv_fs_meta fm;
	memset(&fm, 0, sizeof fm);
	fm.type = KV_FS_FILE;
	fm.mode = 0644;
	kv_fs_meta_set_body(&fm, KV_FS_STORE_CHUNKED, kv_buf_slice(&body), kv_fs_manifest_size(&man));
	assert_int_equal(kv_fs_meta_encode(&fm, &meta), 0);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str(path);
	m.put.meta = kv_buf_slice(&meta);
	m.put.body = kv_buf_slice(&body);
	m.put.w = w;
	m.put.request_id[0] = (uint8_t)h->next_req;
	m.put.request_id[1] = 0x5a;
	const struct kv_msg *r = h_call(h, i, &m);
	kv_msg_release(&m);
	kv_buf_release(&body);
	kv_buf_release(&meta);
	kv_fs_manifest_release(&man);
	return r;
}

/* Node indices of the replicas of @key. */
static int h_replicas(struct harness *h, struct kv_slice key, int *idx)
{
	uint32_t ids[KV_RING_MAX_REPLICAS];
	int n = kv_node_preflist(&h->nodes[0], key, ids, KV_RING_MAX_REPLICAS);
	for (int k = 0; k < n; k++)
		idx[k] = (int)ids[k] - 1;
	return n;
}

static bool is_replica(struct harness *h, int node, const struct chunk *c)
{
	int idx[KV_RING_MAX_REPLICAS];
	int n = h_replicas(h, chunk_key(c), idx);
	for (int k = 0; k < n; k++)
		if (idx[k] == node)
			return true;
	return false;
}

static struct h_kv *body_of(struct harness *h, int node, const struct chunk *c)
{
	struct kv_buf skey = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, chunk_key(c)), 0);
	struct h_kv *kv = h_find(&h->store[node], kv_buf_slice(&skey));
	kv_buf_release(&skey);
	return kv;
}

static struct h_kv *record_of(struct harness *h, int node, const struct chunk *c)
{
	uint8_t key[KV_NODE_CHUNK_RECORD_KEY_LEN] = { 0, 0, 0, 1 };
	memcpy(key + 4, c->hash, 32);
	return h_find(&h->store[node], kv_slice_make(key, sizeof key));
}

/* Copies of @c on the nodes (bytes present). */
static int copies(struct harness *h, const struct chunk *c)
{
	int n = 0;
	for (int i = 0; i < h->nnodes; i++)
		n += body_of(h, i, c) != NULL;
	return n;
}

/* A node that is not a replica of @c. */
static int non_replica(struct harness *h, const struct chunk *c)
{
	for (int i = 0; i < h->nnodes; i++)
		if (!is_replica(h, i, c))
			return i;
	fail_msg("every node is a replica");
	return -1;
}

/* Whether @node holds @c in the "KVC2" stored form of its exact bytes. */
static bool holds_good_copy(struct harness *h, int node, const struct chunk *c)
{
	struct h_kv *b = body_of(h, node, c);
	return b != NULL && b->value.n == KV_NODE_CHUNK_HEADER + c->n &&
	       memcmp(b->value.p, "KVC2", 4) == 0 && kv_get_le64(b->value.p + 8) == kv_hash64(c->data, c->n) &&
	       memcmp(b->value.p + KV_NODE_CHUNK_HEADER, c->data, c->n) == 0;
}

/* The record of @c on @node, which must be there. */
static struct kv_node_chunk_rec record_decode(struct harness *h, int node, const struct chunk *c)
{
	struct kv_node_chunk_rec rec;
	struct h_kv *kv = record_of(h, node, c);
	assert_non_null(kv);
	assert_int_equal(kv_node__chunk_rec_decode(kv_buf_slice(&kv->key), kv_buf_slice(&kv->value), &rec), 0);
	return rec;
}

static uint64_t read_repairs(struct harness *h, int node)
{
	struct kv_node_stats st;
	kv_node_get_stats(&h->nodes[node], &st);
	return st.chunk_read_repairs;
}

/* Stores @c on node @to only, as a peer's REPLICA_CHUNK_PUT would. */
static void h_store_on(struct harness *h, int to, const struct chunk *c);

static int setup_sodium(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

/* ---- Tests ------------------------------------------------------------ */

static void test_node_chunk__put_then_get_through_every_node(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 1);
	int from = non_replica(&h, &c);
	const struct kv_msg *r = h_chunk_put(&h, from, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_PUT_REPLY);
	assert_int_equal(r->chunk_put_reply.flags, 0);
	assert_int_equal(copies(&h, &c), 3); /* every replica, placed by its own key */
	for (int i = 0; i < 4; i++) {
		assert_true((body_of(&h, i, &c) != NULL) == is_replica(&h, i, &c));
		assert_true((record_of(&h, i, &c) != NULL) == is_replica(&h, i, &c));
	}
	for (int i = 0; i < 4; i++) {
		r = h_chunk_get(&h, i, &c);
		assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
		assert_int_equal(r->chunk_data.data.n, c.n);
		assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	}
	assert_int_equal(kv_node_ops_in_flight(&h.nodes[0]) + kv_node_ops_in_flight(&h.nodes[1]) +
				 kv_node_ops_in_flight(&h.nodes[2]) + kv_node_ops_in_flight(&h.nodes[3]),
			 0);
	h_release(&h);
}

/*
 * A chunk named by its BLAKE2b-256, as chunks were before SHA-256
 * (proto/chunkhash.h), is still taken and read back; a name that is
 * neither hash of the bytes is refused.
 */
static void test_node_chunk__a_blake2b_name_of_an_older_chunk_is_accepted(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 7);
	kv_fs_hash(c.data, c.n, c.hash); /* BLAKE2b-256 */
	kv_fs_chunk_key(c.hash, c.key);
	const struct kv_msg *r = h_chunk_put(&h, non_replica(&h, &c), &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_PUT_REPLY);
	for (int i = 0; i < 4; i++) {
		r = h_chunk_get(&h, i, &c);
		assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
		assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	}
	c.key[2] ^= 1;
	r = h_chunk_put(&h, 0, &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_EINVAL);
	h_release(&h);
}

static void test_node_chunk__second_put_refreshes_age_without_rewriting(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 2);
	assert_int_equal(h_chunk_put(&h, 0, &c)->chunk_put_reply.flags, 0);
	int idx[KV_RING_MAX_REPLICAS];
	h_replicas(&h, chunk_key(&c), idx);
	int rep = idx[0];
	struct kv_node_chunk_rec before, after;
	struct h_kv *rec = record_of(&h, rep, &c);
	assert_int_equal(kv_node__chunk_rec_decode(kv_buf_slice(&rec->key), kv_buf_slice(&rec->value),
						   &before),
			 0);
	/* Damage the stored bytes on purpose: a rewrite would repair them. */
	struct h_kv *body = body_of(&h, rep, &c);
	body->value.p[body->value.n - 1] ^= 0x01;
	h.now += 10 * SEC;
	const struct kv_msg *r = h_chunk_put(&h, 2, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_PUT_REPLY);
	assert_int_equal(r->chunk_put_reply.flags, KV_MSG_CHUNK_F_EXISTED);
	body = body_of(&h, rep, &c);
	assert_int_equal(body->value.p[body->value.n - 1], c.data[c.n - 1] ^ 0x01); /* not rewritten */
	rec = record_of(&h, rep, &c);
	assert_int_equal(kv_node__chunk_rec_decode(kv_buf_slice(&rec->key), kv_buf_slice(&rec->value),
						   &after),
			 0);
	assert_true(after.touched >= before.touched + (int64_t)(10 * SEC));
	assert_int_equal(after.size, c.n);
	/* CHUNK_TOUCH refreshes it again, on every replica. */
	h.now += 10 * SEC;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_CHUNK_TOUCH);
	m.chunk_keys.flags = KV_MSG_CHUNK_F_TOUCH;
	m.chunk_keys.hashes = c.hash;
	m.chunk_keys.n = 1;
	r = h_call(&h, 1, &m);
	assert_int_equal(r->type, KV_MSG_CHUNK_TOUCH_REPLY);
	assert_int_equal(r->count.count, 3);
	rec = record_of(&h, rep, &c);
	struct kv_node_chunk_rec touched;
	assert_int_equal(kv_node__chunk_rec_decode(kv_buf_slice(&rec->key), kv_buf_slice(&rec->value),
						   &touched),
			 0);
	assert_int_equal(touched.touched, (int64_t)h.now);
	h_release(&h);
}

static void test_node_chunk__bad_hash_and_bad_key_are_refused(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 3);
	c.data[0] ^= 1; /* no longer hashes to its key */
	const struct kv_msg *r = h_chunk_put(&h, 0, &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_EINVAL);
	assert_int_equal(copies(&h, &c), 0);
	chunk_make(&c, 3);
	c.key[1] = 'd'; /* not the chunk key space */
	r = h_chunk_put(&h, 0, &c);
	assert_int_equal(r->error.code, KV_EINVAL);
	memset(c.key + 2, 0, 32); /* a hole names no chunk */
	c.key[1] = 'c';
	r = h_chunk_get(&h, 0, &c);
	assert_int_equal(r->error.code, KV_EINVAL);
	h_release(&h);
}

static void test_node_chunk__ordinary_ops_in_the_chunk_space_are_refused(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 4);
	uint16_t types[] = { KV_MSG_PUT, KV_MSG_DELETE, KV_MSG_GET };
	for (size_t k = 0; k < 3; k++) {
		struct kv_msg m;
		kv_msg_init(&m, types[k]);
		if (types[k] == KV_MSG_GET)
			m.get.key = chunk_key(&c);
		else
			m.put.key = chunk_key(&c);
		if (types[k] == KV_MSG_PUT)
			m.put.body = kv_slice_make(c.data, c.n);
		const struct kv_msg *r = h_call(&h, (int)k, &m);
		kv_msg_release(&m);
		assert_int_equal(r->type, KV_MSG_ERROR);
		assert_int_equal(r->error.code, KV_EINVAL);
		assert_non_null(strstr((const char *)r->error.text.p, "reserved key space"));
	}
	assert_int_equal(copies(&h, &c), 0);
	h_release(&h);
}

static void test_node_chunk__get_falls_over_to_the_next_replica(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 5);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	/* The first replica lost it, the second holds a damaged copy. */
	struct kv_buf skey = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, chunk_key(&c)), 0);
	h_store_del(&h.store[idx[0]], kv_buf_slice(&skey));
	body_of(&h, idx[1], &c)->value.p[KV_NODE_CHUNK_HEADER] ^= 0x40;
	const struct kv_msg *r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	/* Both were repaired on the way (read repair): lose and damage them again. */
	assert_true(holds_good_copy(&h, idx[0], &c) && holds_good_copy(&h, idx[1], &c));
	h_store_del(&h.store[idx[0]], kv_buf_slice(&skey));
	body_of(&h, idx[1], &c)->value.p[KV_NODE_CHUNK_HEADER] ^= 0x40;
	/* Through a replica that lost it: itself first, then the others. */
	r = h_chunk_get(&h, idx[0], &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	h_store_del(&h.store[idx[0]], kv_buf_slice(&skey));
	body_of(&h, idx[1], &c)->value.p[KV_NODE_CHUNK_HEADER] ^= 0x40;
	/* The good replica is down: the others answer "not found" and "corrupt"
	 * and the down one, tried last, runs out the request's time. */
	h.down[idx[2]] = true;
	r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_ETIMEDOUT);
	h.down[idx[2]] = false;
	/* Every copy corrupt: KV_ECORRUPT; none: KV_ENOTFOUND. */
	h_store_del(&h.store[idx[2]], kv_buf_slice(&skey));
	h_store_put(&h.store[idx[0]], kv_buf_slice(&skey), kv_buf_slice(&body_of(&h, idx[1], &c)->value));
	r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->error.code, KV_EQUORUM); /* one without it, two corrupt */
	h_store_del(&h.store[idx[0]], kv_buf_slice(&skey));
	h_store_del(&h.store[idx[1]], kv_buf_slice(&skey));
	r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->error.code, KV_ENOTFOUND);
	kv_buf_release(&skey);
	h_release(&h);
}

/* Sends @msg to node @to as peer @from (REPLICA_*), and runs everything. */
static void h_peer(struct harness *h, int to, int from, const struct kv_msg *msg)
{
	struct kv_input in = { .type = KV_INPUT_PEER };
	in.peer.from = (uint32_t)(from + 1);
	in.peer.request_id = 900000 + h->next_req++;
	in.peer.msg = msg;
	h_step(h, to, &in);
	h_run(h);
}

/*
 * A replica stores the bytes of a peer's REPLICA_CHUNK_PUT without hashing
 * them (doc/protocol.md REPLICA_CHUNK_PUT): bytes that do not hash to the
 * key are refused from a client by the coordinator, but stored when a peer
 * sends them. The key's format is still checked.
 */
static void test_node_chunk__replica_stores_a_peer_chunk_without_hashing(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 6);
	c.data[0] ^= 1; /* no longer hashes to its key */
	/* From a client: the coordinator checks, nothing is stored. */
	const struct kv_msg *r = h_chunk_put(&h, non_replica(&h, &c), &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_EINVAL);
	assert_int_equal(copies(&h, &c), 0);
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT], 0);
	/* From a peer: stored as sent, and acknowledged. */
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_REPLICA_CHUNK_PUT);
	m.chunk.key = chunk_key(&c);
	m.chunk.data = kv_slice_make(c.data, c.n);
	h_peer(&h, idx[0], idx[1], &m);
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT_ACK], 1);
	assert_int_equal(h.sent[KV_MSG_ERROR], 0);
	struct h_kv *body = body_of(&h, idx[0], &c);
	assert_non_null(body);
	assert_int_equal(body->value.n, KV_NODE_CHUNK_HEADER + c.n);
	assert_memory_equal(body->value.p + KV_NODE_CHUNK_HEADER, c.data, c.n);
	assert_non_null(record_of(&h, idx[0], &c));
	assert_int_equal(copies(&h, &c), 1);
	/* A bad key from a peer is still refused: a hole, another key space. */
	struct chunk bad = c;
	memset(bad.key + 2, 0, 32);
	m.chunk.key = chunk_key(&bad);
	h_peer(&h, idx[1], idx[0], &m);
	bad = c;
	bad.key[1] = 'd';
	m.chunk.key = chunk_key(&bad);
	h_peer(&h, idx[1], idx[0], &m);
	m.chunk.key = kv_slice_make(c.key, sizeof c.key - 1);
	h_peer(&h, idx[1], idx[0], &m);
	assert_int_equal(h.sent[KV_MSG_ERROR], 3);
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT_ACK], 1);
	assert_null(body_of(&h, idx[1], &c));
	assert_null(record_of(&h, idx[1], &c));
	h_release(&h);
}

/* The worked example of doc/storage-format.md "Chunk store": `hello`. */
static void test_node_chunk__stored_form_is_the_documented_example(void **state)
{
	(void)state;
	static const uint8_t want[] = { 0x4b, 0x56, 0x43, 0x32, 0x05, 0x00, 0x00,
					0x00, 0xfd, 0xdc, 0x62, 0x5c, 0x55, 0xe8,
					0x55, 0x95, 0x68, 0x65, 0x6c, 0x6c, 0x6f };
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	memcpy(c.data, "hello", 5);
	c.n = 5;
	kv_fs_hash(c.data, c.n, c.hash);
	kv_fs_chunk_key(c.hash, c.key);
	assert_int_equal(c.hash[0], 0x32);
	assert_int_equal(c.hash[31], 0xcf);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	for (int k = 0; k < 3; k++) {
		struct h_kv *b = body_of(&h, idx[k], &c);
		assert_int_equal(b->value.n, sizeof want);
		assert_memory_equal(b->value.p, want, sizeof want);
	}
	h_release(&h);
}

/* Byte offsets of a "KVC2" body to damage: magic, length, checksum, bytes. */
static const size_t damage_at[] = { 0, 3, 4, 7, 8, 15, KV_NODE_CHUNK_HEADER,
				    KV_NODE_CHUNK_HEADER + 50 };

/*
 * A body is stored as "KVC2" ‖ le32 n ‖ le64 XXH3-64 ‖ bytes; a bit flipped
 * anywhere in it is reported corrupt on read (by the checksum, no BLAKE2b),
 * and the read moves on to another replica.
 */
static void test_node_chunk__bit_rot_in_a_kvc2_body_moves_the_read_on(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 7);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	for (int k = 0; k < 3; k++) {
		struct h_kv *b = body_of(&h, idx[k], &c);
		assert_int_equal(b->value.n, KV_NODE_CHUNK_HEADER + c.n);
		assert_memory_equal(b->value.p, "KVC2", 4);
		assert_int_equal(kv_get_le32(b->value.p + 4), c.n);
		assert_true(kv_get_le64(b->value.p + 8) == kv_hash64(c.data, c.n));
	}
	for (size_t d = 0; d < sizeof damage_at / sizeof damage_at[0]; d++) {
		struct h_kv *b = body_of(&h, idx[0], &c);
		b->value.p[damage_at[d]] ^= 0x10;
		/* As a peer's REPLICA_CHUNK_GET: KV_ECORRUPT. */
		struct kv_msg m;
		kv_msg_init(&m, KV_MSG_REPLICA_CHUNK_GET);
		m.chunk.key = chunk_key(&c);
		size_t errors = h.sent[KV_MSG_ERROR];
		size_t replies = h.sent[KV_MSG_REPLICA_CHUNK_GET_REPLY];
		h_peer(&h, idx[0], other, &m);
		assert_int_equal(h.sent[KV_MSG_ERROR], errors + 1);
		assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_GET_REPLY], replies);
		/* Through the damaged replica itself (it reads its own copy
		 * first): answered from the next, and its copy replaced. */
		const struct kv_msg *r = h_chunk_get(&h, idx[0], &c);
		assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
		assert_int_equal(r->chunk_data.data.n, c.n);
		assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
		assert_true(holds_good_copy(&h, idx[0], &c));
	}
	/* Every copy damaged: KV_ECORRUPT. */
	for (int k = 0; k < 3; k++)
		body_of(&h, idx[k], &c)->value.p[KV_NODE_CHUNK_HEADER + (size_t)k] ^= 0x01;
	const struct kv_msg *r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_ECORRUPT);
	h_release(&h);
}

/*
 * A body stored before the "KVC2" form ("KVCK" ‖ le32 n ‖ bytes, in the
 * engine or the chunk store) is still read, and checked against its hash
 * with BLAKE2b: a flipped bit, which no checksum covers, is still caught.
 */
static void test_node_chunk__old_kvck_body_is_read_and_checked_by_hash(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 8);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	struct kv_buf old = KV_BUF_INIT, skey = KV_BUF_INIT;
	assert_int_equal(kv_buf_append(&old, "KVCK", 4), 0);
	assert_int_equal(kv_buf_append_le32(&old, (uint32_t)c.n), 0);
	assert_int_equal(kv_buf_append(&old, c.data, c.n), 0);
	assert_int_equal(old.n, KV_NODE_CHUNK_HEADER_KVCK + c.n);
	assert_int_equal(kv_skey_encode(&skey, chunk_key(&c)), 0);
	for (int k = 0; k < 3; k++)
		h_store_put(&h.store[idx[k]], kv_buf_slice(&skey), kv_buf_slice(&old));
	for (int i = 0; i < 4; i++) {
		const struct kv_msg *r = h_chunk_get(&h, i, &c);
		assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
		assert_int_equal(r->chunk_data.data.n, c.n);
		assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	}
	/* A flipped bit in the bytes of one old copy: the read moves on. */
	body_of(&h, idx[0], &c)->value.p[KV_NODE_CHUNK_HEADER_KVCK + 9] ^= 0x02;
	const struct kv_msg *r = h_chunk_get(&h, idx[0], &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	/* ... and the damaged copy is replaced, in the current form. */
	assert_true(holds_good_copy(&h, idx[0], &c));
	/* A second put finds it there and does not rewrite it. */
	assert_int_equal(h_chunk_put(&h, other, &c)->chunk_put_reply.flags, KV_MSG_CHUNK_F_EXISTED);
	assert_memory_equal(body_of(&h, idx[1], &c)->value.p, "KVCK", 4);
	/* Every copy damaged: KV_ECORRUPT. */
	body_of(&h, idx[0], &c)->value.p[KV_NODE_CHUNK_HEADER] ^= 0x02;
	body_of(&h, idx[1], &c)->value.p[KV_NODE_CHUNK_HEADER_KVCK] ^= 0x02;
	body_of(&h, idx[2], &c)->value.p[old.n - 1] ^= 0x02;
	r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_ECORRUPT);
	kv_buf_release(&old);
	kv_buf_release(&skey);
	h_release(&h);
}

static void h_store_on(struct harness *h, int to, const struct chunk *c)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_REPLICA_CHUNK_PUT);
	m.chunk.key = chunk_key(c);
	m.chunk.data = kv_slice_make(c->data, c->n);
	int from = (to + 1) % h->nnodes;
	h_peer(h, to, from, &m);
	assert_non_null(body_of(h, to, c));
}

/*
 * Read repair: a replica that missed the chunk's store (it was down at W
 * of N) answers "not found"; once the next gives the bytes, the
 * coordinator sends it those exact bytes in a REPLICA_CHUNK_PUT, which it
 * stores as a fresh copy. The answer does not wait for it. Through a
 * replica that lacks it, the store is local (no message).
 */
static void test_node_chunk__get_repairs_a_replica_that_said_not_found(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 11);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	h_store_on(&h, idx[1], &c); /* on the second replica only */
	assert_int_equal(copies(&h, &c), 1);
	h.now += 5 * SEC;
	const struct kv_msg *r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_int_equal(r->chunk_data.data.n, c.n);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	/* The first said "not found": it was sent the exact bytes, and has them. */
	assert_int_equal(h.chunk_puts_to[idx[0]], 1);
	assert_int_equal(h.last_chunk_put.n, c.n);
	assert_memory_equal(h.last_chunk_put.p, c.data, c.n);
	assert_true(holds_good_copy(&h, idx[0], &c));
	struct kv_node_chunk_rec rec = record_decode(&h, idx[0], &c);
	assert_int_equal(rec.touched, (int64_t)h.now); /* a fresh store for the gc */
	assert_int_equal(rec.marked, 0);
	assert_int_equal(rec.size, c.n);
	/* The third was never asked: it is not repaired by this get. */
	assert_int_equal(h.chunk_puts_to[idx[2]], 0);
	assert_null(body_of(&h, idx[2], &c));
	assert_int_equal(read_repairs(&h, other), 1);
	assert_int_equal(h.sent[KV_MSG_ERROR], 1); /* the first's "not found"; the store acked */
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT_ACK], 2);
	/* Through the third itself: it lacks it, reads the first, stores locally. */
	r = h_chunk_get(&h, idx[2], &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	assert_int_equal(h.chunk_puts_to[idx[2]], 0);
	assert_true(holds_good_copy(&h, idx[2], &c));
	assert_non_null(record_of(&h, idx[2], &c));
	assert_int_equal(read_repairs(&h, idx[2]), 1);
	assert_int_equal(copies(&h, &c), 3);
	for (int i = 0; i < 4; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

/*
 * A replica whose copy fails its check answers "corrupt"; the repair
 * replaces the damaged bytes (a plain put-if-absent would keep them: its
 * record is there) and the record keeps its gc mark, with a fresh age.
 */
static void test_node_chunk__get_replaces_a_copy_that_failed_its_check(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 12);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	/* Through a node that is no replica: every replica's store is a REPLICA_CHUNK_PUT. */
	assert_int_equal(h_chunk_put(&h, other, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	body_of(&h, idx[0], &c)->value.p[KV_NODE_CHUNK_HEADER + 3] ^= 0x08;
	kv_put_le64(record_of(&h, idx[0], &c)->value.p + 16, 77); /* marked by gc epoch 77 */
	size_t puts = h.sent[KV_MSG_REPLICA_CHUNK_PUT];
	h.now += 5 * SEC;
	const struct kv_msg *r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT], puts + 1);
	assert_int_equal(h.chunk_puts_to[idx[0]], 2); /* the put's, the repair's */
	assert_memory_equal(h.last_chunk_put.p, c.data, c.n);
	assert_true(holds_good_copy(&h, idx[0], &c));
	struct kv_node_chunk_rec rec = record_decode(&h, idx[0], &c);
	assert_int_equal(rec.touched, (int64_t)h.now);
	assert_int_equal(rec.marked, 77);
	struct kv_node_stats st;
	kv_node_get_stats(&h.nodes[idx[0]], &st);
	assert_int_equal(st.chunk_damaged_replaced, 1);
	assert_int_equal(read_repairs(&h, other), 1);
	/* Now the first answers: nothing more to repair. */
	r = h_chunk_get(&h, other, &c);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT], puts + 1);
	/* A put-if-absent that no read flagged still keeps a damaged copy. */
	body_of(&h, idx[1], &c)->value.p[KV_NODE_CHUNK_HEADER + 3] ^= 0x08;
	assert_int_equal(h_chunk_put(&h, other, &c)->chunk_put_reply.flags, KV_MSG_CHUNK_F_EXISTED);
	assert_false(holds_good_copy(&h, idx[1], &c));
	for (int i = 0; i < 4; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

/*
 * A replica that gave no answer in time is not repaired: it may well hold
 * the chunk, and is the worst place to push it to. One that said "not
 * found" in the same get is.
 */
static void test_node_chunk__get_does_not_repair_a_replica_that_timed_out(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 13);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	int other = non_replica(&h, &c);
	h_store_on(&h, idx[2], &c); /* on the third replica only */
	h.down[idx[0]] = true;
	/* A deadline past the forward timeout, so the get outlives the silence. */
	const struct kv_msg *r = h_chunk_get_t(&h, other, &c, 2000);
	assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
	assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	h.down[idx[0]] = false;
	assert_int_equal(h.chunk_puts_to[idx[0]], 0);
	assert_null(body_of(&h, idx[0], &c));
	assert_int_equal(h.chunk_puts_to[idx[1]], 1);
	assert_true(holds_good_copy(&h, idx[1], &c));
	assert_int_equal(read_repairs(&h, other), 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

/* When the first replica asked has the chunk, nothing is sent anywhere. */
static void test_node_chunk__get_from_the_first_replica_repairs_nothing(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 14);
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, chunk_key(&c), idx), 3);
	h_store_on(&h, idx[0], &c); /* the others lack it, but are never asked */
	size_t puts = h.sent[KV_MSG_REPLICA_CHUNK_PUT];
	for (int i = 0; i < 4; i++) {
		if (i == idx[1] || i == idx[2])
			continue; /* they would read themselves first */
		const struct kv_msg *r = h_chunk_get(&h, i, &c);
		assert_int_equal(r->type, KV_MSG_CHUNK_GET_REPLY);
		assert_memory_equal(r->chunk_data.data.p, c.data, c.n);
	}
	assert_int_equal(h.sent[KV_MSG_REPLICA_CHUNK_PUT], puts);
	assert_int_equal(copies(&h, &c), 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(read_repairs(&h, i), 0);
	h_release(&h);
}

/*
 * The gc keeps every chunk some version references — a sibling, a version
 * on one replica only, any chunk of a manifest — and deletes an unreferenced
 * chunk, or one referenced only by a tombstoned file, only past the grace.
 */
static void test_node_chunk__gc_keeps_referenced_and_sweeps_garbage_past_grace(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c[7];
	for (unsigned k = 0; k < 7; k++) {
		chunk_make(&c[k], 10 + k);
		assert_int_equal(h_chunk_put(&h, (int)(k % 4), &c[k])->type, KV_MSG_CHUNK_PUT_REPLY);
	}
	/* /a: two siblings, written concurrently (no context) through two nodes. */
	const struct chunk *a1[] = { &c[0] }, *a2[] = { &c[1], NULL, &c[2] };
	assert_int_equal(h_put_file(&h, 0, "/d/a", a1, 1, 0)->type, KV_MSG_PUT_REPLY);
	assert_int_equal(h_put_file(&h, 1, "/d/a", a2, 3, 0)->type, KV_MSG_PUT_REPLY);
	/* /b: a version that reached one replica only (W=1, the others down). */
	int idx[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_replicas(&h, kv_slice_str("/d/b"), idx), 3);
	h.down[idx[1]] = h.down[idx[2]] = true;
	const struct chunk *b[] = { &c[3] };
	assert_int_equal(h_put_file(&h, idx[0], "/d/b", b, 1, 1)->type, KV_MSG_PUT_REPLY);
	h_advance(&h, h.now + SEC); /* let the lost replica writes time out */
	h.down[idx[1]] = h.down[idx[2]] = false;
	/* /e: deleted, so c[4] is garbage; c[5] was never referenced. */
	const struct chunk *e[] = { &c[4] };
	const struct kv_msg *r = h_put_file(&h, 2, "/e", e, 1, 3);
	assert_int_equal(r->type, KV_MSG_PUT_REPLY);
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_DELETE);
	del.put.key = kv_slice_str("/e");
	del.put.w = 3;
	assert_int_equal(kv_ctx_copy(&del.put.context, &r->put_reply.context), 0);
	assert_int_equal(h_call(&h, 2, &del)->type, KV_MSG_DELETE_REPLY);
	kv_msg_release(&del);
	/* c[6]: an upload in progress, touched recently. */

	/* Within the grace: nothing goes. */
	h.now += 30 * SEC;
	r = h_gc(&h, 3, 60, 0);
	assert_int_equal(r->type, KV_MSG_GC_REPLY);
	assert_int_equal(r->gc_reply.nodes, 4);
	assert_int_equal(r->gc_reply.swept, 0);
	/* Each stored copy of a version marks each chunk on its three replicas:
	 * /d/a's two siblings (c0; c1, c2) on three replicas, /d/b on one. */
	assert_int_equal(r->gc_reply.refs, (1 + 2) * 3 * 3 + 1 * 3);
	assert_true(r->gc_reply.versions >= 4);
	for (int k = 0; k < 7; k++)
		assert_int_equal(copies(&h, &c[k]), 3);

	/* Past the grace: the garbage goes, on every replica; the lease holds. */
	h.now += 50 * SEC;
	struct kv_msg touch;
	kv_msg_init(&touch, KV_MSG_CHUNK_TOUCH);
	touch.chunk_keys.flags = KV_MSG_CHUNK_F_TOUCH;
	touch.chunk_keys.hashes = c[6].hash;
	touch.chunk_keys.n = 1;
	assert_int_equal(h_call(&h, 0, &touch)->type, KV_MSG_CHUNK_TOUCH_REPLY);
	h.now += 20 * SEC;
	r = h_gc(&h, 1, 60, 0);
	assert_int_equal(r->type, KV_MSG_GC_REPLY);
	assert_int_equal(r->gc_reply.swept, 6); /* c4 and c5, three replicas each */
	assert_int_equal(r->gc_reply.bytes, 3 * (c[4].n + c[5].n));
	for (int k = 0; k < 4; k++)
		assert_int_equal(copies(&h, &c[k]), 3);
	assert_int_equal(copies(&h, &c[4]), 0);
	assert_int_equal(copies(&h, &c[5]), 0);
	assert_int_equal(copies(&h, &c[6]), 3);
	for (int i = 0; i < 4; i++) {
		assert_null(record_of(&h, i, &c[4]));
		assert_null(record_of(&h, i, &c[5]));
	}
	/* Every referenced chunk still reads back. */
	for (int k = 0; k < 4; k++)
		assert_int_equal(h_chunk_get(&h, k, &c[k])->type, KV_MSG_CHUNK_GET_REPLY);
	/* A second put of a swept chunk stores it again. */
	assert_int_equal(h_chunk_put(&h, 0, &c[4])->chunk_put_reply.flags, 0);
	assert_int_equal(copies(&h, &c[4]), 3);
	for (int i = 0; i < 4; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	h_release(&h);
}

static void test_node_chunk__gc_with_a_member_down_sweeps_nothing(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 2);
	struct chunk c;
	chunk_make(&c, 40);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	h.now += 3600 * SEC;
	int down = non_replica(&h, &c) == 3 ? 2 : 3;
	h.down[down] = true;
	const struct kv_msg *r = h_gc(&h, down == 3 ? 0 : 3, 1, 300);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_ETIMEDOUT);
	assert_non_null(strstr((const char *)r->error.text.p, "nothing was swept"));
	assert_int_equal(copies(&h, &c), 3);
	/* The member answers again: the next gc completes and sweeps. */
	h.down[down] = false;
	h_advance(&h, h.now + SEC);
	r = h_gc(&h, 0, 1, 0);
	assert_int_equal(r->type, KV_MSG_GC_REPLY);
	assert_int_equal(r->gc_reply.swept, 3);
	assert_int_equal(copies(&h, &c), 0);
	h_release(&h);
}

static void test_node_chunk__gc_fails_on_a_version_it_cannot_read(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 4, 3, 3);
	struct chunk c;
	chunk_make(&c, 50);
	assert_int_equal(h_chunk_put(&h, 0, &c)->type, KV_MSG_CHUNK_PUT_REPLY);
	/* A file object of a format this node does not know may reference chunks. */
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str("/future");
	m.put.meta = kv_slice_str("kF\x09 a newer format");
	m.put.w = 3;
	assert_int_equal(h_call(&h, 0, &m)->type, KV_MSG_PUT_REPLY);
	kv_msg_release(&m);
	h.now += 3600 * SEC;
	const struct kv_msg *r = h_gc(&h, 1, 1, 0);
	assert_int_equal(r->type, KV_MSG_ERROR);
	assert_int_equal(r->error.code, KV_EVERSION);
	assert_int_equal(copies(&h, &c), 3);
	h_release(&h);
}

/* node_gc.c reads two fields of the mount's formats: check it against them. */
static int collect(void *arg, const uint8_t *hash)
{
	struct kv_buf *b = arg;
	return kv_buf_append(b, hash, 32);
}

static void test_node_chunk__refs_reader_matches_the_fs_format(void **state)
{
	(void)state;
	struct chunk c[3];
	for (unsigned k = 0; k < 3; k++)
		chunk_make(&c[k], 60 + k);
	struct kv_fs_manifest man;
	kv_fs_manifest_init(&man, 22);
	assert_int_equal(kv_fs_manifest_append(&man, c[0].hash, 1u << 22), 0);
	assert_int_equal(kv_fs_manifest_append(&man, NULL, 1u << 22), 0);
	assert_int_equal(kv_fs_manifest_append(&man, c[1].hash, 1u << 22), 0);
	assert_int_equal(kv_fs_manifest_append(&man, c[2].hash, 9), 0);
	struct kv_buf body = KV_BUF_INIT, meta = KV_BUF_INIT, got = KV_BUF_INIT;
	assert_int_equal(kv_fs_manifest_encode(&man, &body), 0);
	struct kv_fs_meta fm;
	memset(&fm, 0, sizeof fm);
	fm.type = KV_FS_FILE;
	kv_fs_meta_set_body(&fm, KV_FS_STORE_CHUNKED, kv_buf_slice(&body), kv_fs_manifest_size(&man));
	assert_int_equal(kv_fs_meta_encode(&fm, &meta), 0);
	assert_int_equal(kv_node__chunk_refs(kv_buf_slice(&meta), kv_buf_slice(&body), collect, &got), 0);
	assert_int_equal(got.n, 3 * 32);
	assert_memory_equal(got.p, c[0].hash, 32);
	assert_memory_equal(got.p + 32, c[1].hash, 32);
	assert_memory_equal(got.p + 64, c[2].hash, 32);
	/* Inline files, directories and foreign values reference nothing. */
	kv_buf_reset(&got);
	struct kv_buf meta2 = KV_BUF_INIT;
	fm.storage = KV_FS_STORE_INLINE;
	kv_fs_meta_set_body(&fm, KV_FS_STORE_INLINE, kv_slice_str("hi"), 2);
	assert_int_equal(kv_fs_meta_encode(&fm, &meta2), 0);
	assert_int_equal(kv_node__chunk_refs(kv_buf_slice(&meta2), kv_slice_str("hi"), collect, &got), 0);
	assert_int_equal(kv_node__chunk_refs(kv_slice_str("xyz"), kv_buf_slice(&body), collect, &got), 0);
	assert_int_equal(got.n, 0);
	/* A truncated or foreign manifest is an error, never "no chunks". */
	assert_int_equal(kv_node__chunk_refs(kv_buf_slice(&meta),
					     kv_slice_make(body.p, body.n - 1), collect, &got),
			 KV_ECORRUPT);
	body.p[2] = 2;
	assert_int_equal(kv_node__chunk_refs(kv_buf_slice(&meta), kv_buf_slice(&body), collect, &got),
			 KV_EVERSION);
	kv_buf_release(&meta2);
	kv_buf_release(&body);
	kv_buf_release(&meta);
	kv_buf_release(&got);
	kv_fs_manifest_release(&man);
}

/* Every new message encodes and decodes to itself; bad fields are refused. */
static void test_node_chunk__messages_round_trip(void **state)
{
	(void)state;
	uint8_t hashes[64];
	for (size_t i = 0; i < sizeof hashes; i++)
		hashes[i] = (uint8_t)(i + 1);
	struct kv_msg ms[12];
	size_t n = 0;
	kv_msg_init(&ms[n], KV_MSG_CHUNK_PUT);
	ms[n].chunk.w = 2;
	ms[n].chunk.timeout_ms = 300;
	ms[n].chunk.key = kv_slice_make(hashes, 34);
	ms[n++].chunk.data = kv_slice_str("data");
	kv_msg_init(&ms[n], KV_MSG_REPLICA_CHUNK_GET);
	ms[n++].chunk.key = kv_slice_make(hashes, 34);
	kv_msg_init(&ms[n], KV_MSG_CHUNK_PUT_REPLY);
	ms[n++].chunk_put_reply.flags = KV_MSG_CHUNK_F_EXISTED;
	kv_msg_init(&ms[n], KV_MSG_CHUNK_GET_REPLY);
	ms[n++].chunk_data.data = kv_slice_str("bytes");
	kv_msg_init(&ms[n], KV_MSG_CHUNK_MARK);
	ms[n].chunk_keys.flags = KV_MSG_CHUNK_F_MARK;
	ms[n].chunk_keys.epoch = 77;
	ms[n].chunk_keys.hashes = hashes;
	ms[n++].chunk_keys.n = 2;
	kv_msg_init(&ms[n], KV_MSG_CHUNK_MARK_ACK);
	ms[n++].count.count = 12345;
	kv_msg_init(&ms[n], KV_MSG_GC);
	ms[n++].gc.grace_s = 3600;
	kv_msg_init(&ms[n], KV_MSG_GC_SWEEP);
	ms[n].gc.epoch = 5;
	ms[n++].gc.grace_s = 10;
	kv_msg_init(&ms[n], KV_MSG_GC_REPLY);
	ms[n].gc_reply = (struct kv_msg_gc_reply){ 1, 2, 3, 4, 5, 6, 7 };
	n++;
	for (size_t i = 0; i < n; i++) {
		struct kv_buf b = KV_BUF_INIT;
		struct kv_msg back;
		assert_int_equal(kv_msg_encode(&ms[i], NULL, &b), 0);
		assert_int_equal(kv_msg_decode(ms[i].type, kv_buf_slice(&b), NULL, &back), 0);
		assert_true(kv_msg_equal(&ms[i], &back));
		/* Every truncation is refused. */
		for (size_t cut = 0; cut < b.n; cut++) {
			struct kv_msg bad;
			int rc = kv_msg_decode(ms[i].type, kv_slice_make(b.p, cut), NULL, &bad);
			if (ms[i].type == KV_MSG_CHUNK_GET_REPLY)
				assert_int_equal(rc, 0); /* the data is the rest of the body */
			else
				assert_int_not_equal(rc, 0);
			kv_msg_release(&bad);
		}
		kv_msg_release(&back);
		kv_buf_release(&b);
	}
	/* An epoch without MARK, a GC with an epoch, a mark count that lies. */
	ms[4].chunk_keys.flags = KV_MSG_CHUNK_F_TOUCH;
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_msg_encode(&ms[4], NULL, &b), KV_EINVAL);
	ms[6].gc.epoch = 1;
	assert_int_equal(kv_msg_encode(&ms[6], NULL, &b), KV_EINVAL);
	ms[4].chunk_keys.flags = KV_MSG_CHUNK_F_MARK;
	assert_int_equal(kv_msg_encode(&ms[4], NULL, &b), 0);
	b.p[1 + 1 + 8] = 3; /* count 3, 2 hashes follow */
	struct kv_msg bad;
	assert_int_equal(kv_msg_decode(KV_MSG_CHUNK_MARK, kv_buf_slice(&b), NULL, &bad), KV_ECORRUPT);
	kv_buf_release(&b);
	for (size_t i = 0; i < n; i++)
		kv_msg_release(&ms[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_chunk__put_then_get_through_every_node),
		cmocka_unit_test(test_node_chunk__a_blake2b_name_of_an_older_chunk_is_accepted),
		cmocka_unit_test(test_node_chunk__second_put_refreshes_age_without_rewriting),
		cmocka_unit_test(test_node_chunk__bad_hash_and_bad_key_are_refused),
		cmocka_unit_test(test_node_chunk__ordinary_ops_in_the_chunk_space_are_refused),
		cmocka_unit_test(test_node_chunk__get_falls_over_to_the_next_replica),
		cmocka_unit_test(test_node_chunk__replica_stores_a_peer_chunk_without_hashing),
		cmocka_unit_test(test_node_chunk__stored_form_is_the_documented_example),
		cmocka_unit_test(test_node_chunk__bit_rot_in_a_kvc2_body_moves_the_read_on),
		cmocka_unit_test(test_node_chunk__old_kvck_body_is_read_and_checked_by_hash),
		cmocka_unit_test(test_node_chunk__get_repairs_a_replica_that_said_not_found),
		cmocka_unit_test(test_node_chunk__get_replaces_a_copy_that_failed_its_check),
		cmocka_unit_test(test_node_chunk__get_does_not_repair_a_replica_that_timed_out),
		cmocka_unit_test(test_node_chunk__get_from_the_first_replica_repairs_nothing),
		cmocka_unit_test(test_node_chunk__gc_keeps_referenced_and_sweeps_garbage_past_grace),
		cmocka_unit_test(test_node_chunk__gc_with_a_member_down_sweeps_nothing),
		cmocka_unit_test(test_node_chunk__gc_fails_on_a_version_it_cannot_read),
		cmocka_unit_test(test_node_chunk__refs_reader_matches_the_fs_format),
		cmocka_unit_test(test_node_chunk__messages_round_trip),
	};
	return cmocka_run_group_tests(tests, setup_sodium, NULL);
}
