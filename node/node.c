/*
 * node.c - the node core's frame: configuration, effects, operations and
 * their per-key queues, and kv_node_step()'s dispatch. The put path lives in
 * node_put.c, the get path in node_get.c. Design: doc/node.md; DESIGN §4, §8.
 */
#include "node/node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

void kv_node_config_default(struct kv_node_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->n = 3;
	cfg->r = 2;
	cfg->w = 2;
	cfg->request_timeout_ns = 1000000000ull;   /* 1 s */
	/* Above the request timeout, so a slow quorum is not taken for a dead
	 * coordinator (doc/node.md "Forwarding"). */
	cfg->forward_timeout_ns = 1500000000ull;   /* 1.5 s */
	kv_dvv_limits_default(&cfg->limits);
	kv_rng_seed(&cfg->rng, 1);
}

/* ---- Effects ---------------------------------------------------------- */

void kv_effects_init(struct kv_effects *e)
{
	memset(e, 0, sizeof *e);
}

static void msg_out_release(struct kv_node_msg_out *m)
{
	kv_msg_release(&m->msg);
	kv_buf_release(&m->bytes);
}

static void storage_out_release(struct kv_node_storage_out *s)
{
	kv_buf_release(&s->key);
	kv_buf_release(&s->value);
}

void kv_effects_clear(struct kv_effects *e)
{
	for (size_t i = 0; i < e->sends.n; i++)
		msg_out_release(&e->sends.v[i]);
	for (size_t i = 0; i < e->replies.n; i++)
		msg_out_release(&e->replies.v[i]);
	for (size_t i = 0; i < e->reads.n; i++)
		storage_out_release(&e->reads.v[i]);
	for (size_t i = 0; i < e->writes.n; i++)
		storage_out_release(&e->writes.v[i]);
	for (size_t i = 0; i < e->ranges.n; i++) {
		kv_buf_release(&e->ranges.v[i].start);
		kv_buf_release(&e->ranges.v[i].end);
	}
	e->sends.n = e->replies.n = e->timers.n = e->cancels.n = e->aborts.n = 0;
	e->reads.n = e->writes.n = e->ranges.n = 0;
}

void kv_effects_release(struct kv_effects *e)
{
	kv_effects_clear(e);
	free(e->sends.v);
	free(e->replies.v);
	free(e->timers.v);
	free(e->cancels.v);
	free(e->reads.v);
	free(e->writes.v);
	free(e->ranges.v);
	free(e->aborts.v);
	kv_effects_init(e);
}

/* Grows an effect array by one zeroed element; NULL on -ENOMEM. */
static void *array_push(void **v, size_t *n, size_t *cap, size_t size)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		void *p = realloc(*v, ncap * size);
		if (p == NULL)
			return NULL;
		*v = p;
		*cap = ncap;
	}
	void *slot = (uint8_t *)*v + *n * size;
	memset(slot, 0, size);
	(*n)++;
	return slot;
}

#define PUSH(arr) array_push((void **)&(arr).v, &(arr).n, &(arr).cap, sizeof *(arr).v)

struct kv_node_range_out *kv_node__range_push(struct kv_effects *out)
{
	return PUSH(out->ranges);
}

struct kv_node_storage_out *kv_node__read_push(struct kv_effects *out)
{
	return PUSH(out->reads);
}

struct kv_node_storage_out *kv_node__write_push(struct kv_effects *out)
{
	return PUSH(out->writes);
}

/* Drops the last read (or write) slot, freeing what it holds. */
void kv_node__storage_pop(struct kv_effects *out, bool write)
{
	struct kv_node_storage_out *s = write ? &out->writes.v[--out->writes.n]
					      : &out->reads.v[--out->reads.n];
	storage_out_release(s);
}

struct kv_node_msg_out *kv_node__send(struct kv_effects *out, uint32_t to, uint64_t req_id,
				      uint16_t type)
{
	struct kv_node_msg_out *m = PUSH(out->sends);
	if (m == NULL)
		return NULL;
	m->to = to;
	m->request_id = req_id;
	kv_msg_init(&m->msg, type);
	return m;
}

/* Drops the last send slot, freeing what it holds. */
void kv_node__send_pop(struct kv_effects *out)
{
	msg_out_release(&out->sends.v[--out->sends.n]);
}

/* The answer to @origin: a reply to a client or a send to the peer. */
struct kv_node_msg_out *kv_node__answer(struct kv_effects *out,
					const struct kv_node_origin *origin, uint16_t type)
{
	struct kv_node_msg_out *m;
	switch (origin->kind) {
	case ORIGIN_CLIENT:
		m = PUSH(out->replies);
		if (m == NULL)
			return NULL;
		m->conn = origin->conn;
		m->request_id = origin->req_id;
		kv_msg_init(&m->msg, type);
		return m;
	case ORIGIN_PEER:
		return kv_node__send(out, origin->from, origin->req_id, type);
	case ORIGIN_NONE:
		break;
	}
	return NULL;
}

/*
 * Copies @key into @m's bytes and points *dst at the copy. Must be the only
 * slice backed by @m->bytes, or the last one appended (a realloc would move
 * the earlier ones). Returns 0 or -ENOMEM.
 */
int kv_node__own_key(struct kv_node_msg_out *m, struct kv_slice key, struct kv_slice *dst)
{
	size_t off = m->bytes.n;
	if (kv_buf_append(&m->bytes, key.p, key.n) != 0)
		return -ENOMEM;
	*dst = kv_slice_make(m->bytes.p + off, key.n);
	return 0;
}

void kv_node__answer_error(struct kv_effects *out, const struct kv_node_origin *origin,
			   int code, const char *text)
{
	struct kv_node_msg_out *m = kv_node__answer(out, origin, KV_MSG_ERROR);
	if (m == NULL)
		return;
	m->msg.error.code = code;
	if (kv_node__own_key(m, kv_slice_str(text), &m->msg.error.text) != 0)
		m->msg.error.text = kv_slice_make(NULL, 0);
}

int kv_node__timer(struct kv_node *node, struct kv_node_op *op, uint64_t at_ns,
		   struct kv_effects *out)
{
	struct kv_node_timer_out *t = PUSH(out->timers);
	if (t == NULL)
		return -ENOMEM;
	op->timer = kv_node__id(node);
	t->id = op->timer;
	t->at_ns = at_ns;
	return 0;
}

void kv_node__abort_peer(struct kv_effects *out, uint32_t peer)
{
	uint32_t *a = PUSH(out->aborts);
	if (a != NULL)
		*a = peer; /* on -ENOMEM: best effort, as before this effect existed */
}

void kv_node__cancel_timer(struct kv_node_op *op, struct kv_effects *out)
{
	if (op->timer == 0)
		return;
	uint64_t *c = PUSH(out->cancels);
	if (c != NULL)
		*c = op->timer; /* on -ENOMEM the timer fires later and is ignored */
	op->timer = 0;
}

int kv_node__storage_read(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_storage_out *s = PUSH(out->reads);
	if (s == NULL)
		return -ENOMEM;
	int rc = kv_skey_encode(&s->key, kv_buf_slice(&op->key));
	if (rc != 0) {
		out->reads.n--;
		return rc;
	}
	op->storage_op = kv_node__id(node);
	s->op = op->storage_op;
	op->state = ST_READ;
	return 0;
}

int kv_node__storage_write(struct kv_node *node, struct kv_node_op *op, const struct kv_dvv *set,
			   struct kv_effects *out)
{
	struct kv_node_storage_out *s = PUSH(out->writes);
	if (s == NULL)
		return -ENOMEM;
	int rc = kv_skey_encode(&s->key, kv_buf_slice(&op->key));
	if (rc == 0)
		rc = kv_dvv_encode(set, &s->value);
	if (rc != 0) {
		storage_out_release(s);
		out->writes.n--;
		return rc;
	}
	/* A join acknowledges with this hash: no second encoding for it. */
	op->written_hash = kv_hash64(s->value.p, s->value.n);
	op->written_hash_ok = set == &op->set;
	op->storage_op = kv_node__id(node);
	s->op = op->storage_op;
	op->state = ST_WRITE;
	return 0;
}

/* Decodes a read completion into @out: found, not found (empty set), or an error. */
int kv_node__decode_stored(const struct kv_input *in, struct kv_dvv *out)
{
	if (in->read.status == KV_ENOTFOUND) {
		kv_dvv_release(out);
		return 0;
	}
	if (in->read.status != 0)
		return in->read.status;
	return kv_dvv_decode(in->read.value, out);
}

uint64_t kv_node__deadline(const struct kv_node *node, uint64_t now_ns, uint32_t timeout_ms)
{
	return now_ns + (timeout_ms ? (uint64_t)timeout_ms * 1000000u : node->request_timeout_ns);
}

/* ---- Node ------------------------------------------------------------- */

uint64_t kv_node__id(struct kv_node *node)
{
	return node->next_id++;
}

/* ---- Counter leases (doc/node.md "Counter leases") ------------------- */

/* Shorter than any ring storage key (>= 10 bytes) and below all of them. */
static const uint8_t lease_skey[4] = { 0, 0, 0, 0 };
static const uint8_t lease_magic[4] = { 'K', 'V', 'L', 'S' };

struct kv_slice kv_node_lease_skey(void)
{
	return kv_slice_make(lease_skey, sizeof lease_skey);
}

int kv_node_lease_decode(struct kv_slice value, uint32_t *epoch, uint64_t *lease)
{
	if (value.n != KV_NODE_LEASE_RECORD_SIZE || memcmp(value.p, lease_magic, 4) != 0)
		return KV_ECORRUPT;
	*epoch = kv_get_le32(value.p + 4);
	*lease = kv_get_le64(value.p + 8);
	return 0;
}

/*
 * Asks the counter whether a lease must be persisted and, if so, emits the
 * storage write of the lease record (DESIGN §4 "Actors"; doc/versions.md §4).
 * At most one is outstanding. Returns 0 or -ENOMEM (then the counter is told
 * the write failed, and a later step asks again).
 */
static int lease_pump(struct kv_node *node, struct kv_effects *out)
{
	uint64_t lease;
	if (node->lease_op != 0 || kv_counter_lease_request(&node->counter, &lease) != 1)
		return 0; /* -EOVERFLOW: puts fail with it (node_put.c) */
	struct kv_node_storage_out *s = PUSH(out->writes);
	if (s == NULL)
		goto fail;
	if (kv_buf_append(&s->key, lease_skey, sizeof lease_skey) != 0 ||
	    kv_buf_append(&s->value, lease_magic, sizeof lease_magic) != 0 ||
	    kv_buf_append_le32(&s->value, node->actor.epoch) != 0 ||
	    kv_buf_append_le64(&s->value, lease) != 0) {
		storage_out_release(s);
		out->writes.n--;
		goto fail;
	}
	node->lease_op = kv_node__id(node);
	node->lease_pending = lease;
	s->op = node->lease_op;
	return 0;
fail:
	kv_counter_lease_failed(&node->counter, lease);
	return -ENOMEM;
}

/*
 * The lease write completed. Durable: counters up to it may be handed out,
 * and every put waiting for one (ST_LEASE) mints now, each once per
 * completion. Failed: the counter asks again at the end of this step; the
 * waiting puts keep waiting (their request timer bounds the wait).
 */
static int lease_done(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
		      struct kv_effects *out)
{
	uint64_t lease = node->lease_pending;
	node->lease_op = 0;
	node->lease_pending = 0;
	if (in->write.status != 0) {
		kv_counter_lease_failed(&node->counter, lease);
		return 0;
	}
	kv_counter_lease_durable(&node->counter, lease);
	node->lease_round++;
	int rc = 0;
	for (;;) {
		/* Rescan each time: resuming one put may finish others. */
		struct kv_node_op *op = node->ops;
		while (op != NULL && !(op->state == ST_LEASE && op->lease_round != node->lease_round))
			op = op->next;
		if (op == NULL)
			break;
		op->lease_round = node->lease_round;
		int rc2 = kv_node__put_on_lease(node, now_ns, op, out);
		if (rc == 0)
			rc = rc2;
	}
	return rc;
}

int kv_node_init(struct kv_node *node, const struct kv_node_config *cfg)
{
	int rc = KV_EINVAL;
	struct kv_ring_member *members = NULL;
	memset(node, 0, sizeof *node);
	if (cfg->n == 0 || cfg->n > KV_NODE_MAX_PEERS || cfg->r == 0 || cfg->r > cfg->n ||
	    cfg->w == 0 || cfg->w > cfg->n || cfg->n_members == 0)
		goto out;
	members = calloc(cfg->n_members, sizeof *members);
	rc = -ENOMEM;
	if (members == NULL)
		goto out;
	for (size_t i = 0; i < cfg->n_members; i++) {
		members[i].id = cfg->members[i].name;
		members[i].weight = cfg->members[i].weight;
	}
	struct kv_ring_config rcfg;
	kv_ring_config_init(&rcfg, cfg->n);
	rcfg.tokens_per_weight = cfg->tokens_per_weight;
	rc = kv_ring_new(&node->ring, &rcfg, members, cfg->n_members);
	if (rc != 0)
		goto out;
	rc = -ENOMEM;
	node->ring_to_id = calloc(cfg->n_members, sizeof *node->ring_to_id);
	if (node->ring_to_id == NULL)
		goto out;
	rc = KV_EINVAL;
	bool found_self = false;
	for (size_t i = 0; i < cfg->n_members; i++) {
		int idx = kv_ring_find(node->ring, cfg->members[i].name);
		if (idx < 0)
			goto out;
		node->ring_to_id[idx] = cfg->members[i].id;
		for (size_t j = 0; j < i; j++)
			if (cfg->members[j].id == cfg->members[i].id)
				goto out; /* duplicate numeric id */
		if (cfg->members[i].id == cfg->self_id) {
			node->self_idx = (uint32_t)idx;
			found_self = true;
		}
	}
	if (!found_self)
		goto out;
	node->self_id = cfg->self_id;
	node->actor.node = cfg->self_id;
	node->actor.epoch = cfg->epoch;
	node->n = cfg->n;
	node->r = cfg->r;
	node->w = cfg->w;
	node->forward_timeout_ns = cfg->forward_timeout_ns;
	node->request_timeout_ns = cfg->request_timeout_ns;
	node->limits = cfg->limits;
	node->rng = cfg->rng;
	/*
	 * Ids start at a random point (below 2^62, never 0), not at 1: a peer's
	 * reply to a request of this node's previous incarnation can still
	 * arrive after a restart, and must not match a new request by its id
	 * (found by tests/sim: a FORWARD_PUT_REPLY for one key answered a
	 * forward of another). A driver seeds the rng differently per start.
	 */
	node->next_id = (kv_rng_next(&node->rng) >> 2) + 1;
	/* Counters up to the persisted lease may have been used: none of them
	 * is handed out again (the first put waits for a new lease). */
	kv_counter_init(&node->counter, cfg->counter_lease, cfg->counter_block);
	rc = 0;
out:
	free(members);
	if (rc != 0) {
		kv_ring_free(node->ring);
		free(node->ring_to_id);
		memset(node, 0, sizeof *node);
	}
	return rc;
}

static void op_free(struct kv_node_op *op)
{
	kv_buf_release(&op->key);
	for (uint32_t i = 0; i < KV_NODE_MAX_PEERS; i++)
		kv_dvv_release(&op->replies[i]);
	kv_ctx_release(&op->put.context);
	kv_buf_release(&op->put.meta);
	kv_buf_release(&op->put.body);
	kv_dvv_release(&op->set);
	kv_node__list_free(op->list);
	kv_node__chunk_free(op->chunk);
	free(op);
}

void kv_node_release(struct kv_node *node)
{
	while (node->ops != NULL) {
		struct kv_node_op *op = node->ops;
		node->ops = op->next;
		op_free(op);
	}
	while (node->keys != NULL) {
		struct kv_node_key *k = node->keys;
		node->keys = k->next;
		kv_buf_release(&k->key);
		free(k);
	}
	kv_ring_free(node->ring);
	free(node->ring_to_id);
	memset(node, 0, sizeof *node);
}

bool kv_node_actor_tainted(const struct kv_node *node)
{
	return node->actor_tainted;
}

size_t kv_node_ops_in_flight(const struct kv_node *node)
{
	size_t n = 0;
	for (const struct kv_node_op *op = node->ops; op != NULL; op = op->next)
		n++;
	return n;
}

void kv_node_get_stats(const struct kv_node *node, struct kv_node_stats *out)
{
	*out = node->stats;
}

int kv_node_preflist(const struct kv_node *node, struct kv_slice key, uint32_t *ids, size_t cap)
{
	uint32_t idx[KV_NODE_MAX_PEERS];
	size_t room = cap < KV_NODE_MAX_PEERS ? cap : KV_NODE_MAX_PEERS;
	int n = kv_ring_preflist_key(node->ring, key, idx, room);
	for (int i = 0; i < n; i++)
		ids[i] = node->ring_to_id[idx[i]];
	return n;
}

struct kv_node_op *kv_node__op_new(struct kv_node *node, enum kv_node_op_kind kind,
				   const struct kv_node_origin *origin, struct kv_slice key)
{
	struct kv_node_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	if (kv_buf_append(&op->key, key.p, key.n) != 0) {
		free(op);
		return NULL;
	}
	op->kind = kind;
	op->origin = *origin;
	for (uint32_t i = 0; i < KV_NODE_MAX_PEERS; i++)
		kv_dvv_init(&op->replies[i]);
	kv_ctx_init(&op->put.context);
	kv_dvv_init(&op->set);
	op->next = node->ops;
	if (node->ops != NULL)
		node->ops->prev = op;
	node->ops = op;
	return op;
}

/* Ends @op: leaves its queue (starting the next), cancels its timer, frees it. */
void kv_node__op_finish(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	if (op->queue != NULL)
		kv_node__dequeue(node, op, out);
	kv_node__cancel_timer(op, out);
	if (op->prev != NULL)
		op->prev->next = op->next;
	else
		node->ops = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	op_free(op);
}

/* ---- Per-key queues (DESIGN §4 "Replicas read, join, write") --------- */

/*
 * Puts @op on its key's queue; when the queue was empty, starts it now.
 * Returns 0 or -ENOMEM (then @op is not queued). A start failure is handled
 * by the operation itself (it answers and finishes), and still returns 0:
 * after that, @op may be gone.
 */
int kv_node__enqueue(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_key *k = node->keys;
	while (k != NULL && !kv_slice_eq(kv_buf_slice(&k->key), kv_buf_slice(&op->key)))
		k = k->next;
	if (k == NULL) {
		k = calloc(1, sizeof *k);
		if (k == NULL)
			return -ENOMEM;
		if (kv_buf_append(&k->key, op->key.p, op->key.n) != 0) {
			free(k);
			return -ENOMEM;
		}
		k->next = node->keys;
		node->keys = k;
	}
	op->queue = k;
	op->state = ST_QUEUED;
	op->qnext = NULL;
	if (k->tail != NULL) {
		k->tail->qnext = op;
		k->tail = op;
		return 0;
	}
	k->head = k->tail = op;
	(void)kv_node__start(node, op, out); /* a failed start answers and finishes @op */
	return 0;
}

/*
 * Takes @op off its key's queue. When it was running (the head), the next
 * operation starts. Operations that fail to start finish themselves, which
 * dequeues them in turn, so this loops rather than recursing deeply.
 */
void kv_node__dequeue(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_key *k = op->queue;
	bool was_head = k->head == op;
	struct kv_node_op **pp = &k->head, *prev = NULL;
	while (*pp != op) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	*pp = op->qnext;
	if (k->tail == op)
		k->tail = prev;
	op->queue = NULL;
	op->qnext = NULL;
	if (k->head == NULL) {
		struct kv_node_key **kp = &node->keys;
		while (*kp != k)
			kp = &(*kp)->next;
		*kp = k->next;
		kv_buf_release(&k->key);
		free(k);
		return;
	}
	if (was_head)
		(void)kv_node__start(node, k->head, out);
}

int kv_node__start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	switch (op->kind) {
	case OP_COORD_PUT:
		return kv_node__put_start(node, op, out);
	case OP_JOIN:
		return kv_node__join_start(node, op, out);
	case OP_CHUNK_REC:
		return kv_node__chunk_rec_start(node, op, out);
	default:
		return KV_EINVAL; /* only queued kinds get here */
	}
}

/* ---- Dispatch --------------------------------------------------------- */

static struct kv_node_op *find_storage_op(struct kv_node *node, uint64_t id)
{
	for (struct kv_node_op *op = node->ops; op != NULL; op = op->next)
		if (op->storage_op == id && (op->state == ST_READ || op->state == ST_WRITE))
			return op;
	return NULL;
}

static struct kv_node_op *find_timer_op(struct kv_node *node, uint64_t id)
{
	for (struct kv_node_op *op = node->ops; op != NULL; op = op->next)
		if (op->timer == id)
			return op;
	return NULL;
}

static struct kv_node_op *find_peer_op(struct kv_node *node, uint64_t req_id, uint32_t from,
				       uint32_t *slot)
{
	for (struct kv_node_op *op = node->ops; op != NULL; op = op->next)
		for (uint32_t i = 0; i < op->npref; i++)
			if (op->peer_req[i] == req_id && op->pref[i] == from) {
				*slot = i;
				return op;
			}
	return NULL;
}

static int client_input(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
			struct kv_effects *out)
{
	const struct kv_msg *msg = in->client.msg;
	struct kv_node_origin origin = { ORIGIN_CLIENT, in->client.conn, 0, in->client.request_id,
					 msg->type };
	/* Chunks are written only through CHUNK_PUT (DESIGN §7 "Chunks"). */
	if (((msg->type == KV_MSG_PUT || msg->type == KV_MSG_DELETE) &&
	     kv_node_key_is_chunk(msg->put.key)) ||
	    (msg->type == KV_MSG_GET && kv_node_key_is_chunk(msg->get.key))) {
		kv_node__answer_error(out, &origin, KV_EINVAL,
				      "reserved key space: keys starting 00 63 are chunks "
				      "(CHUNK_PUT, CHUNK_GET)");
		return 0;
	}
	switch (msg->type) {
	case KV_MSG_PUT:
	case KV_MSG_DELETE:
		return kv_node__put_request(node, now_ns, &origin, msg, out);
	case KV_MSG_GET:
		return kv_node__get_request(node, now_ns, &origin, msg, out);
	case KV_MSG_LIST:
		return kv_node__list_request(node, now_ns, &origin, msg, out);
	case KV_MSG_CHUNK_PUT:
	case KV_MSG_CHUNK_GET:
	case KV_MSG_CHUNK_TOUCH:
	case KV_MSG_GC:
		return kv_node__chunk_client(node, now_ns, &origin, msg, out);
	default:
		kv_node__answer_error(out, &origin, KV_EINVAL, "request not supported by this node");
		return 0;
	}
}

static int peer_input(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
		      struct kv_effects *out)
{
	const struct kv_msg *msg = in->peer.msg;
	struct kv_node_origin origin = { ORIGIN_PEER, 0, in->peer.from, in->peer.request_id,
					 msg->type };
	switch (msg->type) {
	case KV_MSG_FORWARD_PUT:
		return kv_node__put_request(node, now_ns, &origin, msg, out);
	case KV_MSG_REPLICA_WRITE:
	case KV_MSG_READ_REPAIR:
		return kv_node__join_request(node, &origin, msg->replica_write.key,
					     &msg->replica_write.set, out);
	case KV_MSG_REPLICA_READ:
		return kv_node__replica_read_request(node, &origin, msg, out);
	case KV_MSG_REPLICA_LIST:
		return kv_node__replica_list_request(node, &origin, msg, out);
	case KV_MSG_REPLICA_CHUNK_PUT:
	case KV_MSG_REPLICA_CHUNK_GET:
	case KV_MSG_CHUNK_MARK:
	case KV_MSG_GC_MARK:
	case KV_MSG_GC_SWEEP:
		return kv_node__chunk_peer(node, now_ns, &origin, msg, out);
	case KV_MSG_FORWARD_PUT_ACCEPTED: {
		/* A note, not an answer: the forward stays outstanding
		 * (doc/protocol.md §6.1). */
		uint32_t slot = 0;
		struct kv_node_op *op = find_peer_op(node, in->peer.request_id, in->peer.from, &slot);
		if (op == NULL || op->kind != OP_FORWARD)
			return 0;
		return kv_node__put_on_reply(node, now_ns, op, slot, msg, out);
	}
	case KV_MSG_FORWARD_PUT_REPLY:
	case KV_MSG_REPLICA_WRITE_ACK:
	case KV_MSG_READ_REPAIR_ACK:
	case KV_MSG_REPLICA_READ_REPLY:
	case KV_MSG_REPLICA_LIST_REPLY:
	case KV_MSG_REPLICA_CHUNK_PUT_ACK:
	case KV_MSG_REPLICA_CHUNK_GET_REPLY:
	case KV_MSG_CHUNK_MARK_ACK:
	case KV_MSG_GC_MARK_DONE:
	case KV_MSG_GC_SWEEP_DONE:
	case KV_MSG_ERROR: {
		uint32_t slot = 0;
		struct kv_node_op *op = find_peer_op(node, in->peer.request_id, in->peer.from, &slot);
		if (op == NULL)
			op = kv_node__chunk_find_peer(node, in->peer.request_id, in->peer.from);
		if (op == NULL)
			return 0; /* late or unknown: ignored */
		if (op->chunk != NULL)
			return kv_node__chunk_on_reply(node, now_ns, op, in->peer.from,
						       in->peer.request_id, msg, out);
		op->peer_req[slot] = 0;
		if (op->kind == OP_GET)
			return kv_node__get_on_reply(node, op, slot, msg, out);
		if (op->kind == OP_LIST)
			return kv_node__list_on_reply(node, op, slot, msg, out);
		return kv_node__put_on_reply(node, now_ns, op, slot, msg, out);
	}
	default:
		if (kv_msg_reply_type(msg->type) != KV_MSG_NONE)
			kv_node__answer_error(out, &origin, KV_EINVAL, "request not supported by this node");
		return 0;
	}
}

static int step_input(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
		      struct kv_effects *out)
{
	struct kv_node_op *op;
	switch (in->type) {
	case KV_INPUT_CLIENT:
		return client_input(node, now_ns, in, out);
	case KV_INPUT_PEER:
		return peer_input(node, now_ns, in, out);
	case KV_INPUT_TIMER:
		op = find_timer_op(node, in->timer.id);
		if (op == NULL)
			return 0;
		op->timer = 0; /* fired: nothing to cancel any more */
		if (op->chunk != NULL)
			return kv_node__chunk_on_timer(node, now_ns, op, out);
		if (op->kind == OP_GET)
			return kv_node__get_on_timer(node, op, out);
		if (op->kind == OP_LIST)
			return kv_node__list_on_timer(node, op, out);
		return kv_node__put_on_timer(node, now_ns, op, out);
	case KV_INPUT_READ_DONE:
		op = find_storage_op(node, in->read.op);
		if (op == NULL || op->state != ST_READ)
			return 0;
		op->storage_op = 0;
		if (op->chunk != NULL)
			return kv_node__chunk_on_read(node, now_ns, op, in, out);
		switch (op->kind) {
		case OP_GET:
			return kv_node__get_on_read(node, op, in, out);
		case OP_REPLICA_READ:
			return kv_node__rread_on_read(node, op, in, out);
		case OP_JOIN:
			return kv_node__join_on_read(node, op, in, out);
		default:
			return kv_node__put_on_read(node, now_ns, op, in, out);
		}
	case KV_INPUT_WRITE_DONE:
		if (node->lease_op != 0 && in->write.op == node->lease_op)
			return lease_done(node, now_ns, in, out);
		op = find_storage_op(node, in->write.op);
		if (op == NULL || op->state != ST_WRITE)
			return 0;
		op->storage_op = 0;
		if (op->chunk != NULL)
			return kv_node__chunk_on_write(node, op, in, out);
		if (op->kind == OP_JOIN)
			return kv_node__join_on_write(node, op, in, out);
		return kv_node__put_on_write(node, now_ns, op, in, out);
	case KV_INPUT_RANGE_DONE:
		op = find_storage_op(node, in->range.op);
		if (op == NULL || op->state != ST_READ)
			return 0;
		if (op->kind == OP_GC_SCAN || op->kind == OP_GC_SWEEP) {
			op->storage_op = 0;
			return kv_node__gc_on_range(node, now_ns, op, in, out);
		}
		if (op->kind != OP_LIST && op->kind != OP_REPLICA_LIST)
			return 0;
		op->storage_op = 0;
		return kv_node__list_on_range(node, op, in, out);
	}
	return KV_EINVAL;
}

int kv_node_step(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
		 struct kv_effects *out)
{
	node->now_ns = now_ns;
	int rc = step_input(node, now_ns, in, out);
	/* After any input: persist the next lease early, so a busy node rarely
	 * waits (doc/versions.md §4). */
	int rc2 = lease_pump(node, out);
	return rc != 0 ? rc : rc2;
}
