/*
 * sim.c - the deterministic simulator: virtual time, seeded network, storage
 * that loses unsynced writes, crashes, restarts and clients (sim.h).
 * Storage is an in-memory map per node or, with sim_config.storage_lsm, the
 * real engine (src/lsm/lsm.h, deterministic mode) over the in-memory
 * fault-injecting VFS (src/lsm/vfs.h).
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "lsm/vfs.h"
#include "node/node.h"
#include "proto/msg.h"
#include "ring/keys.h"
#include "util/error.h"
#include "util/rng.h"
#include "version/siblings.h"

#define die(...)                                      \
	do {                                          \
		fprintf(stderr, "sim: " __VA_ARGS__); \
		fputc('\n', stderr);                  \
		abort();                              \
	} while (0)

/* ---- Events ------------------------------------------------------------ */

enum ev_kind {
	EV_MSG,      /* peer message to @node from @from */
	EV_TIMER,    /* timer @id of @node */
	EV_READ,     /* storage read @id of @node completes */
	EV_WRITE,    /* storage write @id of @node becomes durable and completes */
	EV_CREQ,     /* client @client's request reaches @node */
	EV_CREPLY,   /* @node's reply reaches client @client */
	EV_CWAKE,    /* client @client starts its next operation */
	EV_CTIMEOUT, /* client @client gives up on operation @id */
};

struct ev {
	uint64_t at, seq;
	enum ev_kind kind;
	int node, from, client;
	uint32_t gen_to, gen_from; /* incarnations when sent */
	uint32_t link_gen;         /* the sender's link generation towards @node */
	uint64_t hold_until;       /* held by a partition: dropped after this (0 = not held) */
	uint64_t id;               /* request, timer, storage op or client op id */
	uint16_t type;             /* message type */
	struct kv_buf body;        /* encoded message, or the written value */
	struct kv_buf key;         /* storage key */
};

struct store_kv {
	struct kv_buf key, value;
};

struct sim_node {
	struct kv_node node;
	bool up;
	uint32_t gen;   /* bumped by each crash */
	/* bumped when the core aborts its connection to a peer (kv_effects.aborts):
	 * messages sent before are never delivered */
	uint32_t link_gen[SIM_MAX_NODES];
	uint32_t epoch; /* the actor's epoch ("NODE file"): a new one at each restart */
	struct store_kv *kv; /* the map backend */
	size_t nkv, capkv;
	struct kv_vfs *vfs; /* the engine backend: the node's disk, and */
	struct kv_lsm *db;  /* the engine on it while the node is up */
};

enum { PH_IDLE, PH_GET, PH_PUT };

struct sim_client {
	int ops_left;
	uint64_t nodes; /* bit i: may use node i */
	int side;
	uint8_t r, w;
	bool blind_only;
	int phase;
	uint64_t opseq, req_id;
	int key, node;
	size_t put; /* checker index of the put in flight */
	uint32_t nput;
	uint8_t get_r;          /* the read's R as sent (0 = default) */
	uint64_t get_snapshot;  /* chk_get_begin() when the read was sent */
	bool final_reader;
	bool final_ok;
};

struct sim {
	struct sim_config cfg;
	struct checker *chk;
	struct kv_rng rng;
	uint64_t now, seq, next_req, trace;
	struct ev *heap;
	size_t nheap, capheap;
	struct sim_node nodes[SIM_MAX_NODES];
	char names[SIM_MAX_NODES][16];
	struct kv_node_member members[SIM_MAX_NODES];
	struct sim_client *clients; /* cfg.nclients + 1: the last reads at the end */
	bool partitioned;
	int group[SIM_MAX_NODES];
	struct sim_stats st;
	struct kv_buf scratch; /* engine reads */
};

static void ev_release(struct ev *e)
{
	kv_buf_release(&e->body);
	kv_buf_release(&e->key);
}

static bool ev_before(const struct ev *a, const struct ev *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_push(struct sim *s, struct ev *e)
{
	if (s->nheap == s->capheap) {
		s->capheap = s->capheap ? 2 * s->capheap : 256;
		s->heap = realloc(s->heap, s->capheap * sizeof *s->heap);
		if (s->heap == NULL)
			die("out of memory");
	}
	if (e->at < s->now)
		e->at = s->now;
	e->seq = s->seq++;
	size_t i = s->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_before(e, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = *e;
}

static struct ev heap_pop(struct sim *s)
{
	struct ev top = s->heap[0];
	struct ev last = s->heap[--s->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && ev_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->nheap > 0)
		s->heap[i] = last;
	return top;
}

static uint64_t rand_between(struct sim *s, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + kv_rng_below(&s->rng, hi - lo + 1);
}

static uint64_t net_delay(struct sim *s)
{
	uint64_t d = rand_between(s, s->cfg.net_min_ns, s->cfg.net_max_ns);
	if (s->cfg.net_tail_p > 0 && kv_rng_double(&s->rng) < s->cfg.net_tail_p)
		d += rand_between(s, 0, 10 * s->cfg.net_max_ns);
	return d;
}

static void copy_buf(struct kv_buf *dst, const void *p, size_t n)
{
	kv_buf_init(dst);
	if (kv_buf_append(dst, p, n) != 0)
		die("out of memory");
}

/* ---- Storage ------------------------------------------------------------ */

static struct store_kv *store_find(struct sim_node *n, struct kv_slice key)
{
	for (size_t i = 0; i < n->nkv; i++)
		if (kv_slice_eq(kv_buf_slice(&n->kv[i].key), key))
			return &n->kv[i];
	return NULL;
}

static void store_put(struct sim_node *n, struct kv_slice key, struct kv_slice value)
{
	struct store_kv *kv = store_find(n, key);
	if (kv == NULL) {
		if (n->nkv == n->capkv) {
			n->capkv = n->capkv ? 2 * n->capkv : 16;
			n->kv = realloc(n->kv, n->capkv * sizeof *n->kv);
			if (n->kv == NULL)
				die("out of memory");
		}
		kv = &n->kv[n->nkv++];
		copy_buf(&kv->key, key.p, key.n);
		kv_buf_init(&kv->value);
	}
	kv_buf_reset(&kv->value);
	if (kv_buf_append(&kv->value, value.p, value.n) != 0)
		die("out of memory");
}

/*
 * The engine backend: each node's own in-memory VFS holds one database
 * under "/db", opened in deterministic mode (flush and compaction inline,
 * no threads) with small memtables and tables, so a run of a few hundred
 * operations flushes and compacts. Sync is "always": a write completes only
 * once durable, as DESIGN §3 asks.
 */
static int engine_open(struct sim *s, struct sim_node *n, struct kv_lsm_open_report *rep)
{
	struct kv_lsm_options o;
	kv_lsm_options_init(&o);
	o.vfs = n->vfs;
	o.deterministic = true;
	o.sync = KV_SYNC_ALWAYS;
	o.memtable_bytes = 8u << 10;
	o.block_cache_bytes = 64u << 10;
	o.table_bytes = 16u << 10;
	o.level1_bytes = 64u << 10;
	(void)s;
	return kv_lsm_open("/db", &o, &n->db, rep);
}

/*
 * Reads @key from node @n's storage: 0 with the bytes in *value (borrowed
 * until the next read), KV_ENOTFOUND, or an engine error.
 */
static int store_get(struct sim *s, struct sim_node *n, struct kv_slice key,
		     struct kv_slice *value)
{
	if (!s->cfg.storage_lsm) {
		struct store_kv *kv = store_find(n, key);
		if (kv == NULL)
			return KV_ENOTFOUND;
		*value = kv_buf_slice(&kv->value);
		return 0;
	}
	if (n->db == NULL)
		return KV_ENOTFOUND; /* a node that is down: its disk as read by the checker */
	int rc = kv_lsm_get(n->db, NULL, key, &s->scratch);
	if (rc == 0)
		*value = kv_buf_slice(&s->scratch);
	return rc;
}

/* Adds the engine's flush and compaction counts to the run's, then closes it. */
static void engine_close(struct sim *s, struct sim_node *n)
{
	struct kv_lsm_stats st;
	kv_lsm_get_stats(n->db, &st);
	s->st.flushes += st.flushes;
	s->st.compactions += st.compactions;
	(void)kv_lsm_close(n->db); /* after a power cut, errors of stale handles */
	n->db = NULL;
}

/* Writes durably; returns 0 or the engine's error. */
static int store_set(struct sim *s, struct sim_node *n, struct kv_slice key, struct kv_slice value)
{
	if (!s->cfg.storage_lsm) {
		store_put(n, key, value);
		return 0;
	}
	return kv_lsm_put(n->db, key, value);
}

/* ---- Nodes -------------------------------------------------------------- */

static int node_start(struct sim *s, int i, uint64_t counter_lease)
{
	struct kv_node_config cfg;
	kv_node_config_default(&cfg);
	cfg.self_id = (uint32_t)(i + 1);
	cfg.epoch = s->nodes[i].epoch;
	cfg.members = s->members;
	cfg.n_members = (size_t)s->cfg.nnodes;
	cfg.n = s->cfg.n;
	cfg.r = s->cfg.r;
	cfg.w = s->cfg.w;
	cfg.request_timeout_ns = s->cfg.request_timeout_ns;
	cfg.forward_timeout_ns = s->cfg.forward_timeout_ns;
	cfg.counter_lease = counter_lease;
	kv_rng_seed(&cfg.rng, s->cfg.seed * 1000003u + (uint64_t)i * 7919u + s->nodes[i].gen);
	int rc = kv_node_init(&s->nodes[i].node, &cfg);
	if (rc == 0)
		s->nodes[i].up = true;
	return rc;
}

static void key_name(char *buf, size_t cap, int key)
{
	snprintf(buf, cap, "/sim/k%d", key);
}

static void encode_msg(const struct kv_msg *m, struct kv_buf *out)
{
	kv_buf_init(out);
	int rc = kv_msg_encode(m, NULL, out);
	if (rc != 0)
		die("unencodable %s: %s", kv_msg_type_name(m->type), kv_strerror(rc));
}

/* Turns node @i's effects into events and empties @out. */
static void collect(struct sim *s, int i, struct kv_effects *out)
{
	struct sim_node *n = &s->nodes[i];
	for (size_t k = 0; k < out->aborts.n; k++) {
		int to = (int)out->aborts.v[k] - 1;
		if (to < 0 || to >= s->cfg.nnodes || to == i)
			die("node %d aborted bad peer %u", i + 1, out->aborts.v[k]);
		n->link_gen[to]++;
		s->st.aborts++;
	}
	for (size_t k = 0; k < out->sends.n; k++) {
		struct kv_node_msg_out *m = &out->sends.v[k];
		int to = (int)m->to - 1;
		if (to < 0 || to >= s->cfg.nnodes || to == i)
			die("node %d sent to bad peer %u", i + 1, m->to);
		s->st.msgs_sent++;
		struct ev e = { 0 };
		encode_msg(&m->msg, &e.body); /* always: the core emits only valid messages */
		if (s->cfg.drop_p > 0 && kv_rng_double(&s->rng) < s->cfg.drop_p) {
			s->st.msgs_dropped++;
			kv_buf_release(&e.body);
			continue;
		}
		e.kind = EV_MSG;
		e.at = s->now + net_delay(s);
		e.node = to;
		e.from = i;
		e.gen_to = s->nodes[to].gen;
		e.gen_from = n->gen;
		e.link_gen = n->link_gen[to];
		e.id = m->request_id;
		e.type = m->msg.type;
		heap_push(s, &e);
	}
	for (size_t k = 0; k < out->replies.n; k++) {
		struct kv_node_msg_out *m = &out->replies.v[k];
		int c = (int)m->conn - 1;
		if (c < 0 || c > s->cfg.nclients)
			die("node %d replied to bad conn %llu", i + 1, (unsigned long long)m->conn);
		struct ev e = { 0 };
		encode_msg(&m->msg, &e.body);
		e.kind = EV_CREPLY;
		e.at = s->now + net_delay(s);
		e.node = i;
		e.client = c;
		e.id = m->request_id;
		e.type = m->msg.type;
		heap_push(s, &e);
	}
	for (size_t k = 0; k < out->timers.n; k++) {
		struct ev e = { 0 };
		e.kind = EV_TIMER;
		e.at = out->timers.v[k].at_ns;
		e.node = i;
		e.gen_to = n->gen;
		e.id = out->timers.v[k].id;
		heap_push(s, &e);
	}
	/* Cancels are ignored: firing a cancelled timer is harmless (node.md). */
	for (size_t k = 0; k < out->reads.n; k++) {
		struct ev e = { 0 };
		e.kind = EV_READ;
		e.at = s->now + rand_between(s, s->cfg.disk_min_ns, s->cfg.disk_max_ns);
		e.node = i;
		e.gen_to = n->gen;
		e.id = out->reads.v[k].op;
		copy_buf(&e.key, out->reads.v[k].key.p, out->reads.v[k].key.n);
		heap_push(s, &e);
	}
	for (size_t k = 0; k < out->writes.n; k++) {
		struct kv_node_storage_out *w = &out->writes.v[k];
		struct ev e = { 0 };
		e.kind = EV_WRITE;
		e.at = s->now + rand_between(s, s->cfg.disk_min_ns, s->cfg.disk_max_ns);
		e.node = i;
		e.gen_to = n->gen;
		e.id = w->op;
		copy_buf(&e.key, w->key.p, w->key.n);
		copy_buf(&e.body, w->value.p, w->value.n);
		heap_push(s, &e);
	}
	kv_effects_clear(out);
}

static void node_step(struct sim *s, int i, const struct kv_input *in)
{
	struct kv_effects out;
	kv_effects_init(&out);
	int rc = kv_node_step(&s->nodes[i].node, s->now, in, &out);
	if (rc != 0)
		die("kv_node_step(node %d, input %d) = %s (seed %llu)", i + 1, (int)in->type,
		    kv_strerror(rc), (unsigned long long)s->cfg.seed);
	collect(s, i, &out);
	kv_effects_release(&out);
}

/* ---- Clients ------------------------------------------------------------- */

static void client_idle(struct sim *s, int c);

static void client_send(struct sim *s, int c, const struct kv_msg *m)
{
	struct sim_client *cl = &s->clients[c];
	cl->req_id = s->next_req++;
	cl->opseq++;
	struct ev e = { 0 };
	encode_msg(m, &e.body);
	e.kind = EV_CREQ;
	e.at = s->now + net_delay(s);
	e.node = cl->node;
	e.client = c;
	e.gen_to = s->nodes[cl->node].gen;
	e.id = cl->req_id;
	e.type = m->type;
	heap_push(s, &e);
	struct ev t = { 0 };
	t.kind = EV_CTIMEOUT;
	t.at = s->now + s->cfg.client_timeout_ns;
	t.client = c;
	t.id = cl->opseq;
	heap_push(s, &t);
}

static void client_put(struct sim *s, int c, const struct kv_ctx *seen)
{
	struct sim_client *cl = &s->clients[c];
	char key[32], body[32];
	key_name(key, sizeof key, cl->key);
	snprintf(body, sizeof body, "c%d-%u", c, ++cl->nput);
	cl->put = chk_put_issued(s->chk, cl->key, body, cl->side, seen,
				 cl->w != 0 ? cl->w : s->cfg.w);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str(key);
	m.put.body = kv_slice_str(body);
	m.put.w = cl->w;
	/* A unique request id per put: (client + 1, put number), little-endian. */
	uint32_t cid = (uint32_t)c + 1;
	memcpy(m.put.request_id, &cid, sizeof cid);
	memcpy(m.put.request_id + 4, &cl->nput, sizeof cl->nput);
	if (seen != NULL && kv_ctx_copy(&m.put.context, seen) != 0)
		die("out of memory");
	cl->phase = PH_PUT;
	client_send(s, c, &m);
	kv_msg_release(&m);
}

static void client_get(struct sim *s, int c, uint8_t r)
{
	struct sim_client *cl = &s->clients[c];
	char key[32];
	key_name(key, sizeof key, cl->key);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str(key);
	m.get.r = r;
	cl->get_r = r;
	cl->get_snapshot = chk_get_begin(s->chk);
	cl->phase = PH_GET;
	client_send(s, c, &m);
	kv_msg_release(&m);
}

static int pick_node(struct sim *s, uint64_t mask)
{
	int cand[SIM_MAX_NODES], ncand = 0, up[SIM_MAX_NODES], nup = 0;
	for (int i = 0; i < s->cfg.nnodes; i++)
		if (mask == 0 || (i < 64 && (mask & (1ull << i)))) {
			cand[ncand++] = i;
			if (s->nodes[i].up)
				up[nup++] = i;
		}
	if (ncand == 0)
		die("client with no nodes");
	/* A client's load balancer skips nodes it knows are down. */
	if (nup > 0)
		return up[kv_rng_below(&s->rng, (uint64_t)nup)];
	return cand[kv_rng_below(&s->rng, (uint64_t)ncand)];
}

static uint8_t pick_quorum(struct sim *s, uint8_t fixed)
{
	if (fixed != 0 || !s->cfg.random_quorums)
		return fixed;
	return (uint8_t)(1 + kv_rng_below(&s->rng, s->cfg.n));
}

static void client_wake(struct sim *s, int c)
{
	struct sim_client *cl = &s->clients[c];
	if (cl->phase != PH_IDLE || cl->ops_left <= 0)
		return;
	cl->ops_left--;
	cl->key = (int)kv_rng_below(&s->rng, (uint64_t)s->cfg.nkeys);
	cl->node = pick_node(s, cl->nodes);
	bool rmw = !cl->blind_only && kv_rng_double(&s->rng) < s->cfg.rmw_p;
	if (rmw)
		client_get(s, c, pick_quorum(s, cl->r));
	else {
		uint8_t w = cl->w;
		cl->w = pick_quorum(s, w);
		client_put(s, c, NULL);
		cl->w = w;
	}
}

static void client_idle(struct sim *s, int c)
{
	struct sim_client *cl = &s->clients[c];
	cl->phase = PH_IDLE;
	if (cl->ops_left <= 0 || cl->final_reader)
		return;
	struct ev e = { 0 };
	e.kind = EV_CWAKE;
	e.at = s->now + rand_between(s, 0, s->cfg.think_max_ns);
	e.client = c;
	heap_push(s, &e);
}

static void client_reply(struct sim *s, struct ev *e)
{
	struct sim_client *cl = &s->clients[e->client];
	if (cl->phase == PH_IDLE || e->id != cl->req_id)
		return; /* after the client gave up */
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_NONE);
	int rc = kv_msg_decode(e->type, kv_buf_slice(&e->body), NULL, &m);
	if (rc != 0)
		die("client cannot decode reply type %u: %s", e->type, kv_strerror(rc));
	if (cl->final_reader) {
		if (m.type == KV_MSG_GET_REPLY) {
			chk_final_read(s->chk, cl->key, &m.set_reply.set);
			cl->final_ok = true;
		}
		cl->phase = PH_IDLE;
	} else if (cl->phase == PH_GET) {
		if (m.type == KV_MSG_GET_REPLY) {
			chk_get_done(s->chk, true);
			chk_get_reply(s->chk, cl->key, cl->get_r != 0 ? cl->get_r : s->cfg.r,
				      cl->get_snapshot, &m.set_reply.set.ctx);
			uint8_t w = cl->w;
			cl->w = pick_quorum(s, w);
			client_put(s, e->client, &m.set_reply.set.ctx);
			cl->w = w;
		} else {
			chk_get_done(s->chk, false);
			s->st.ops_failed++;
			client_idle(s, e->client);
		}
	} else {
		if (m.type == KV_MSG_PUT_REPLY) {
			chk_put_acked(s->chk, cl->put, m.put_reply.dot);
			s->st.ops_ok++;
		} else {
			if (getenv("SIM_DEBUG"))
				fprintf(stderr, "t=%llu put %s via node %d failed: %s %.*s\n",
					(unsigned long long)s->now, s->chk->puts[cl->put].body, cl->node + 1,
					kv_msg_type_name(m.type), m.type == KV_MSG_ERROR ? (int)m.error.text.n : 0,
					m.type == KV_MSG_ERROR ? (const char *)m.error.text.p : "");
			chk_put_failed(s->chk, cl->put);
			s->st.ops_failed++;
		}
		client_idle(s, e->client);
	}
	kv_msg_release(&m);
}

static void client_timeout(struct sim *s, struct ev *e)
{
	struct sim_client *cl = &s->clients[e->client];
	if (cl->phase == PH_IDLE || e->id != cl->opseq)
		return;
	if (cl->final_reader) {
		cl->phase = PH_IDLE;
		return;
	}
	if (cl->phase == PH_PUT)
		chk_put_failed(s->chk, cl->put); /* outcome unknown */
	else
		chk_get_done(s->chk, false);
	s->st.ops_failed++;
	client_idle(s, e->client);
}

/* ---- Dispatch ------------------------------------------------------------ */

static bool node_live(const struct sim *s, int i, uint32_t gen)
{
	return s->nodes[i].up && s->nodes[i].gen == gen;
}

static void deliver(struct sim *s, struct ev *e)
{
	struct kv_input in;
	memset(&in, 0, sizeof in);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_NONE);
	int rc;
	switch (e->kind) {
	case EV_MSG:
		if (!node_live(s, e->node, e->gen_to) || s->nodes[e->from].gen != e->gen_from ||
		    s->nodes[e->from].link_gen[e->node] != e->link_gen) {
			s->st.msgs_dropped++;
			break;
		}
		if (s->partitioned && s->group[e->node] != s->group[e->from]) {
			if (s->cfg.partition_holds && e->hold_until == 0)
				e->hold_until = s->now + 2000 * SIM_MS; /* then TCP gives up */
			if (s->cfg.partition_holds && s->now < e->hold_until) {
				/*
				 * TCP retransmits through a partition: the message
				 * arrives after the heal, unless its connection was
				 * aborted or an end restarted meanwhile.
				 */
				struct ev again = *e;
				again.at = s->now + 50 * SIM_MS;
				e->body = (struct kv_buf)KV_BUF_INIT;
				e->key = (struct kv_buf)KV_BUF_INIT;
				heap_push(s, &again);
				break;
			}
			s->st.msgs_dropped++;
			break;
		}
		rc = kv_msg_decode(e->type, kv_buf_slice(&e->body), NULL, &m);
		if (rc != 0)
			die("undecodable %s: %s", kv_msg_type_name(e->type), kv_strerror(rc));
		in.type = KV_INPUT_PEER;
		in.peer.from = (uint32_t)e->from + 1;
		in.peer.request_id = e->id;
		in.peer.msg = &m;
		node_step(s, e->node, &in);
		break;
	case EV_TIMER:
		if (!node_live(s, e->node, e->gen_to))
			break;
		in.type = KV_INPUT_TIMER;
		in.timer.id = e->id;
		node_step(s, e->node, &in);
		break;
	case EV_READ: {
		if (!node_live(s, e->node, e->gen_to))
			break;
		struct kv_slice value = kv_slice_make(NULL, 0);
		rc = store_get(s, &s->nodes[e->node], kv_buf_slice(&e->key), &value);
		if (s->cfg.bug_read_empty_p > 0 && kv_rng_double(&s->rng) < s->cfg.bug_read_empty_p)
			rc = KV_ENOTFOUND;
		in.type = KV_INPUT_READ_DONE;
		in.read.op = e->id;
		in.read.status = rc;
		if (rc == 0)
			in.read.value = value;
		node_step(s, e->node, &in);
		break;
	}
	case EV_WRITE:
		if (!node_live(s, e->node, e->gen_to))
			break;
		in.type = KV_INPUT_WRITE_DONE;
		in.write.op = e->id;
		in.write.status = store_set(s, &s->nodes[e->node], kv_buf_slice(&e->key),
					    kv_buf_slice(&e->body));
		node_step(s, e->node, &in);
		break;
	case EV_CREQ:
		if (!node_live(s, e->node, e->gen_to))
			break; /* the client times out */
		rc = kv_msg_decode(e->type, kv_buf_slice(&e->body), NULL, &m);
		if (rc != 0)
			die("undecodable client %s", kv_msg_type_name(e->type));
		in.type = KV_INPUT_CLIENT;
		in.client.conn = (uint64_t)e->client + 1;
		in.client.request_id = e->id;
		in.client.msg = &m;
		node_step(s, e->node, &in);
		break;
	case EV_CREPLY:
		client_reply(s, e);
		break;
	case EV_CWAKE:
		client_wake(s, e->client);
		break;
	case EV_CTIMEOUT:
		client_timeout(s, e);
		break;
	}
	kv_msg_release(&m);
}

bool sim_step(struct sim *s)
{
	if (s->nheap == 0)
		return false;
	struct ev e = heap_pop(s);
	s->now = e.at;
	s->st.events++;
	uint64_t h = s->trace ^ (e.at * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)e.kind << 56) ^
		     ((uint64_t)(uint32_t)e.node << 40) ^ e.id;
	s->trace = h * 0xff51afd7ed558ccdull + (h >> 29);
	deliver(s, &e);
	ev_release(&e);
	return true;
}

void sim_run_until(struct sim *s, uint64_t t)
{
	while (s->nheap > 0 && s->heap[0].at <= t)
		sim_step(s);
	if (s->now < t)
		s->now = t;
}

void sim_run_idle(struct sim *s)
{
	while (sim_step(s))
		;
}

/* ---- Public API ------------------------------------------------------------ */

void sim_config_default(struct sim_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->nnodes = 5;
	cfg->n = 3;
	cfg->r = 2;
	cfg->w = 2;
	cfg->seed = 1;
	cfg->net_min_ns = 1 * SIM_MS;
	cfg->net_max_ns = 5 * SIM_MS;
	cfg->disk_min_ns = SIM_MS / 10;
	cfg->disk_max_ns = 2 * SIM_MS;
	cfg->request_timeout_ns = 200 * SIM_MS;
	cfg->forward_timeout_ns = 500 * SIM_MS;
	cfg->client_timeout_ns = 2000 * SIM_MS;
	cfg->think_max_ns = 20 * SIM_MS;
	cfg->nkeys = 8;
	cfg->nclients = 4;
	cfg->rmw_p = 0.6;
}

struct sim *sim_new(const struct sim_config *cfg, struct checker *chk)
{
	if (cfg->nnodes < 1 || cfg->nnodes > SIM_MAX_NODES || cfg->nclients < 0)
		die("bad config");
	struct sim *s = calloc(1, sizeof *s);
	if (s == NULL)
		die("out of memory");
	s->cfg = *cfg;
	s->chk = chk;
	chk->n = cfg->n;
	s->now = 1000 * SIM_MS;
	s->next_req = 1;
	kv_rng_seed(&s->rng, cfg->seed);
	for (int i = 0; i < cfg->nnodes; i++) {
		snprintf(s->names[i], sizeof s->names[i], "n%d", i + 1);
		s->members[i] = (struct kv_node_member){ (uint32_t)(i + 1), s->names[i], 1.0 };
	}
	for (int i = 0; i < cfg->nnodes; i++) {
		s->nodes[i].epoch = 1;
		if (cfg->storage_lsm) {
			struct kv_lsm_open_report rep;
			s->nodes[i].vfs = kv_vfs_mem_new();
			if (s->nodes[i].vfs == NULL)
				die("out of memory");
			int rc = engine_open(s, &s->nodes[i], &rep);
			if (rc != 0)
				die("kv_lsm_open: %s", kv_strerror(rc));
		}
		int rc = node_start(s, i, 0);
		if (rc != 0)
			die("kv_node_init: %s", kv_strerror(rc));
	}
	s->clients = calloc((size_t)cfg->nclients + 1, sizeof *s->clients);
	if (s->clients == NULL)
		die("out of memory");
	s->clients[cfg->nclients].final_reader = true;
	return s;
}

void sim_free(struct sim *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nheap; i++)
		ev_release(&s->heap[i]);
	free(s->heap);
	for (int i = 0; i < s->cfg.nnodes; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->up)
			kv_node_release(&n->node);
		for (size_t k = 0; k < n->nkv; k++) {
			kv_buf_release(&n->kv[k].key);
			kv_buf_release(&n->kv[k].value);
		}
		free(n->kv);
		if (n->db != NULL)
			engine_close(s, n);
		kv_vfs_destroy(n->vfs);
	}
	kv_buf_release(&s->scratch);
	free(s->clients);
	free(s);
}

uint64_t sim_now(const struct sim *s)
{
	return s->now;
}

uint64_t sim_trace(const struct sim *s)
{
	return s->trace;
}

void sim_client_add_ops(struct sim *s, int c, int ops, uint64_t nodes, int side)
{
	struct sim_client *cl = &s->clients[c];
	cl->nodes = nodes;
	cl->side = side;
	cl->ops_left += ops;
	if (cl->phase == PH_IDLE)
		client_idle(s, c);
}

void sim_client_quorums(struct sim *s, int c, uint8_t r, uint8_t w)
{
	s->clients[c].r = r;
	s->clients[c].w = w;
}

void sim_client_blind(struct sim *s, int c, bool blind)
{
	s->clients[c].blind_only = blind;
}

bool sim_clients_busy(const struct sim *s)
{
	for (int c = 0; c < s->cfg.nclients; c++)
		if (s->clients[c].phase != PH_IDLE || s->clients[c].ops_left > 0)
			return true;
	return false;
}

void sim_set_drop(struct sim *s, double p)
{
	s->cfg.drop_p = p;
}

void sim_partition(struct sim *s, const int *group)
{
	s->partitioned = true;
	for (int i = 0; i < s->cfg.nnodes; i++)
		s->group[i] = group[i];
}

void sim_heal(struct sim *s)
{
	s->partitioned = false;
}

bool sim_is_up(const struct sim *s, int node)
{
	return s->nodes[node].up;
}

void sim_crash(struct sim *s, int i)
{
	struct sim_node *n = &s->nodes[i];
	if (!n->up)
		return;
	/* Writes in flight: lost, or durable without their completion, or
	 * (engine) torn: part of the WAL record reached the disk. */
	for (size_t k = 0; k < s->nheap; k++) {
		struct ev *e = &s->heap[k];
		if (e->kind != EV_WRITE || e->node != i || e->gen_to != n->gen)
			continue;
		uint64_t fate = kv_rng_below(&s->rng, s->cfg.storage_lsm ? 3 : 2);
		if (fate == 1)
			continue; /* lost */
		if (fate == 2) {
			/* The power goes out in the middle of this write. */
			kv_vfs_mem_tear_next_write(n->vfs, (size_t)kv_rng_below(&s->rng, 64));
			(void)kv_lsm_put(n->db, kv_buf_slice(&e->key), kv_buf_slice(&e->body));
			break;
		}
		if (store_set(s, n, kv_buf_slice(&e->key), kv_buf_slice(&e->body)) != 0)
			break; /* the engine stopped writing: the rest are lost */
	}
	if (s->cfg.storage_lsm) {
		/* A power cut: unsynced data and directory entries vanish; the
		 * engine's handles go stale, and closing it only frees memory. */
		kv_vfs_mem_crash(n->vfs);
		engine_close(s, n);
	}
	kv_node_release(&n->node);
	n->up = false;
	n->gen++;
	s->st.crashes++;
}

int sim_restart(struct sim *s, int i)
{
	struct sim_node *n = &s->nodes[i];
	if (n->up)
		return 0;
	uint64_t lease = 0;
	bool possible_loss = false;
	if (s->cfg.storage_lsm) {
		struct kv_lsm_open_report rep;
		int rc = engine_open(s, n, &rep);
		if (rc != 0)
			return rc;
		s->st.recoveries++;
		s->st.wal_torn_tails += rep.wal_torn_tail;
		possible_loss = rep.possible_loss;
	}
	/*
	 * DESIGN §4 "Actors": a new epoch after possible loss and after every
	 * unclean stop — and a node is down here only because it crashed. The
	 * coordinator ships a put's set in parallel with its own write, so the
	 * crash may have lost a local write whose dot replicas already hold
	 * (doc/node.md "Epochs"). n->epoch plays the NODE file: durable, bumped
	 * before the node runs, as server.c's open_state() does.
	 */
	if (possible_loss || !s->cfg.bug_keep_epoch_on_crash)
		n->epoch++;
	struct kv_slice value;
	int rc = store_get(s, n, kv_node_lease_skey(), &value);
	if (rc == 0) {
		uint32_t epoch;
		uint64_t l;
		if (kv_node_lease_decode(value, &epoch, &l) != 0)
			die("node %d: corrupt lease record", i + 1);
		if (epoch == n->epoch)
			lease = l;
	} else if (rc != KV_ENOTFOUND) {
		return rc;
	}
	return node_start(s, i, lease);
}

int sim_preflist(struct sim *s, int key, int *idx)
{
	char name[32];
	key_name(name, sizeof name, key);
	for (int i = 0; i < s->cfg.nnodes; i++) {
		if (!s->nodes[i].up)
			continue;
		uint32_t ids[KV_RING_MAX_REPLICAS];
		int n = kv_node_preflist(&s->nodes[i].node, kv_slice_str(name), ids,
					 KV_RING_MAX_REPLICAS);
		for (int k = 0; k < n; k++)
			idx[k] = (int)ids[k] - 1;
		return n;
	}
	die("no node up");
}

int sim_finish(struct sim *s)
{
	sim_heal(s);
	s->cfg.drop_p = 0;
	for (int i = 0; i < s->cfg.nnodes; i++)
		if (!s->nodes[i].up && sim_restart(s, i) != 0)
			die("restart of node %d failed", i + 1);
	sim_run_idle(s);
	int failed = 0;
	int f = s->cfg.nclients;
	struct sim_client *cl = &s->clients[f];
	for (int k = 0; k < s->cfg.nkeys; k++) {
		cl->key = k;
		cl->final_ok = false;
		for (int tries = 0; tries < 3 && !cl->final_ok; tries++) {
			cl->node = (k + tries) % s->cfg.nnodes;
			client_get(s, f, (uint8_t)s->cfg.n);
			sim_run_idle(s);
		}
		if (!cl->final_ok)
			failed++;
	}
	sim_run_idle(s);
	char name[32];
	for (int k = 0; k < s->cfg.nkeys; k++) {
		int pref[KV_RING_MAX_REPLICAS];
		int n = sim_preflist(s, k, pref);
		struct kv_slice enc[KV_RING_MAX_REPLICAS];
		struct kv_buf skey = KV_BUF_INIT;
		key_name(name, sizeof name, k);
		if (kv_skey_encode(&skey, kv_slice_str(name)) != 0)
			die("out of memory");
		struct kv_buf held[KV_RING_MAX_REPLICAS];
		for (int r = 0; r < n; r++) {
			struct kv_slice v;
			kv_buf_init(&held[r]);
			int rc = store_get(s, &s->nodes[pref[r]], kv_buf_slice(&skey), &v);
			if (rc != 0 && rc != KV_ENOTFOUND)
				die("node %d: final read: %s", pref[r] + 1, kv_strerror(rc));
			if (rc == 0)
				copy_buf(&held[r], v.p, v.n);
			enc[r] = kv_buf_slice(&held[r]);
		}
		chk_replicas(s->chk, k, enc, (size_t)n);
		for (int r = 0; r < n; r++)
			kv_buf_release(&held[r]);
		kv_buf_release(&skey);
	}
	return failed;
}

void sim_stats(const struct sim *s, struct sim_stats *out)
{
	*out = s->st;
}
