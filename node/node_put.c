/*
 * node_put.c - the write path of the node core (DESIGN §4 "Who mints a dot",
 * "Replicas read, join, write"; doc/node.md "Put"):
 *
 *   any node        PUT/DELETE -> FORWARD_PUT to the first answering replica
 *   coordinating    key queue: read -> kv_dvv_put (mint) -> write, and in
 *   replica         the same step REPLICA_WRITE of the whole set to the other
 *                   replicas; reply at W acks (the local write counts once
 *                   durable); the key's queue waits for the local write
 *   other replicas  key queue: read -> kv_dvv_join -> write -> ack
 *
 * A local write that fails after its set was shipped taints the actor: the
 * node mints nothing more under it (doc/node.md "Put", "Epochs").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/error.h"

static bool is_tombstone(const struct kv_node_op *op)
{
	return (op->put.flags & KV_MSG_PUT_F_TOMBSTONE) != 0;
}

/* Copies the put's arguments out of @p into @op. Returns 0 or -ENOMEM. */
static int copy_put_args(struct kv_node_op *op, const struct kv_msg *msg)
{
	const struct kv_msg_put *p = &msg->put;
	op->put.flags = p->flags;
	if (msg->type == KV_MSG_DELETE)
		op->put.flags |= KV_MSG_PUT_F_TOMBSTONE;
	op->put.w = p->w;
	op->put.hops = msg->type == KV_MSG_FORWARD_PUT ? p->hops : 0;
	op->put.timeout_ms = p->timeout_ms;
	memcpy(op->put.request_id, p->request_id, KV_REQUEST_ID_LEN);
	if (kv_ctx_copy(&op->put.context, &p->context) != 0 ||
	    kv_buf_append(&op->put.meta, p->meta.p, p->meta.n) != 0 ||
	    kv_buf_append(&op->put.body, p->body.p, p->body.n) != 0)
		return -ENOMEM;
	return 0;
}

/* Answers @op's origin with the put's result and reports done. */
static int answer_success(struct kv_node_op *op, struct kv_effects *out)
{
	op->replied = true;
	struct kv_node_msg_out *m =
		kv_node__answer(out, &op->origin, kv_msg_reply_type(op->origin.req_type));
	if (m == NULL)
		return op->origin.kind == ORIGIN_NONE ? 0 : -ENOMEM;
	m->msg.put_reply.dot = op->dot;
	m->msg.put_reply.flags = op->retry ? KV_MSG_PUT_REPLY_F_RETRY : 0;
	return kv_ctx_copy(&m->msg.put_reply.context, &op->set.ctx);
}

static void fail(struct kv_node *node, struct kv_node_op *op, int code, const char *text,
		 struct kv_effects *out)
{
	if (!op->replied)
		kv_node__answer_error(out, &op->origin, code, text);
	op->replied = true;
	kv_node__op_finish(node, op, out);
}

/*
 * Tells the node that forwarded @op to us that the put is taken
 * (FORWARD_PUT_ACCEPTED, doc/protocol.md §6.1), so it stops its forward
 * timer. Best effort: without it the forwarder falls back on that timer.
 */
static void send_accepted(struct kv_node_op *op, struct kv_effects *out)
{
	if (op->origin.kind == ORIGIN_PEER && op->origin.req_type == KV_MSG_FORWARD_PUT)
		(void)kv_node__send(out, op->origin.from, op->origin.req_id,
				    KV_MSG_FORWARD_PUT_ACCEPTED);
}

/* Makes @op the coordinating replica's operation and queues it. */
static int become_coordinator(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			      struct kv_effects *out)
{
	if (node->actor_tainted) {
		/* Before FORWARD_PUT_ACCEPTED: a forwarder takes KV_ECLOSED as
		 * "unreachable" and tries the next replica at once. */
		fail(node, op, KV_ECLOSED, KV_NODE_TAINTED_TEXT, out);
		return 0;
	}
	send_accepted(op, out);
	op->kind = OP_COORD_PUT;
	op->needed = op->put.w ? op->put.w : node->w;
	memset(op->peer_req, 0, sizeof op->peer_req);
	kv_node__cancel_timer(op, out);
	int rc = kv_node__timer(node, op, kv_node__deadline(node, now_ns, op->put.timeout_ms), out);
	if (rc == 0)
		rc = kv_node__enqueue(node, op, out);
	if (rc != 0)
		fail(node, op, rc, "out of memory", out);
	return rc;
}

/*
 * Sends the put to the replica at op->try_idx, or, when that is this node,
 * coordinates it here. Past the end of the preference list: an error.
 */
static int forward_try(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
		       struct kv_effects *out)
{
	if (op->try_idx >= op->npref) {
		fail(node, op, KV_ETIMEDOUT, "no replica of the key answered the forwarded put", out);
		return 0;
	}
	uint32_t to = op->pref[op->try_idx];
	op->accepted = false;
	if (to == node->self_id)
		return become_coordinator(node, now_ns, op, out);
	uint64_t req = kv_node__id(node);
	struct kv_node_msg_out *m = kv_node__send(out, to, req, KV_MSG_FORWARD_PUT);
	int rc = -ENOMEM;
	if (m == NULL)
		goto out;
	struct kv_msg_put *p = &m->msg.put;
	p->flags = op->put.flags;
	p->w = op->put.w;
	p->hops = (uint8_t)(op->put.hops + 1);
	p->timeout_ms = op->put.timeout_ms;
	memcpy(p->request_id, op->put.request_id, KV_REQUEST_ID_LEN);
	size_t nk = op->key.n, nm = op->put.meta.n, nb = op->put.body.n;
	if (kv_buf_reserve(&m->bytes, nk + nm + nb) != 0 ||
	    kv_buf_append(&m->bytes, op->key.p, nk) != 0 ||
	    kv_buf_append(&m->bytes, op->put.meta.p, nm) != 0 ||
	    kv_buf_append(&m->bytes, op->put.body.p, nb) != 0 ||
	    kv_ctx_copy(&p->context, &op->put.context) != 0)
		goto out;
	p->key = kv_slice_make(m->bytes.p, nk);
	p->meta = kv_slice_make(m->bytes.p + nk, nm);
	p->body = kv_slice_make(m->bytes.p + nk + nm, nb);
	op->peer_req[op->try_idx] = req;
	op->state = ST_WAIT;
	kv_node__cancel_timer(op, out);
	rc = kv_node__timer(node, op, now_ns + node->forward_timeout_ns, out);
out:
	if (rc != 0)
		fail(node, op, rc, "out of memory", out);
	return rc;
}

int kv_node__put_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			 const struct kv_msg *msg, struct kv_effects *out)
{
	const struct kv_msg_put *p = &msg->put;
	if (p->key.n > KV_KEY_MAX) {
		kv_node__answer_error(out, origin, KV_ETOOBIG, "key too long");
		return 0;
	}
	if (p->w > node->n) {
		kv_node__answer_error(out, origin, KV_EINVAL, "w above the replica count");
		return 0;
	}
	if ((msg->type == KV_MSG_DELETE || (p->flags & KV_MSG_PUT_F_TOMBSTONE)) && p->body.n != 0) {
		kv_node__answer_error(out, origin, KV_EINVAL, "a tombstone has no body");
		return 0;
	}
	if (msg->type == KV_MSG_FORWARD_PUT && p->hops >= KV_MSG_HOPS_MAX) {
		kv_node__answer_error(out, origin, KV_EINVAL, "forwarded too often");
		return 0;
	}
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, p->key, pref, KV_NODE_MAX_PEERS);
	if (np <= 0 || (uint32_t)np < (p->w ? p->w : node->w)) {
		kv_node__answer_error(out, origin, KV_EQUORUM, "fewer replicas than W");
		return 0;
	}
	struct kv_node_op *op = kv_node__op_new(node, OP_FORWARD, origin, p->key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	memcpy(op->pref, pref, sizeof pref);
	op->npref = (uint32_t)np;
	op->deadline_ns = kv_node__deadline(node, now_ns, p->timeout_ms);
	if (copy_put_args(op, msg) != 0) {
		fail(node, op, -ENOMEM, "out of memory", out);
		return -ENOMEM;
	}
	/*
	 * DESIGN §4 "Who mints a dot": the first answering replica coordinates.
	 * A forwarded put that reached any replica stays: the sender skipped
	 * the ones before it.
	 */
	bool self_replica = false;
	for (int i = 0; i < np; i++)
		if (pref[i] == node->self_id)
			self_replica = true;
	if (pref[0] == node->self_id || (msg->type == KV_MSG_FORWARD_PUT && self_replica))
		return become_coordinator(node, now_ns, op, out);
	return forward_try(node, now_ns, op, out);
}

int kv_node__put_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	int rc = kv_node__storage_read(node, op, out);
	if (rc != 0)
		fail(node, op, rc, "cannot read the key", out);
	return rc;
}

/*
 * Sends the whole set to the other replicas (REPLICA_WRITE) and clears the
 * acks. This node's own slot is left unanswered: the caller counts it with
 * count_local() once the local copy is durable. Leaves op->state alone.
 */
static int ship(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	op->nanswered = 0;
	for (uint32_t i = 0; i < op->npref; i++) {
		op->answered[i] = false;
		op->peer_req[i] = 0;
		if (op->pref[i] == node->self_id)
			continue;
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m = kv_node__send(out, op->pref[i], req, KV_MSG_REPLICA_WRITE);
		if (m == NULL ||
		    kv_node__own_key(m, kv_buf_slice(&op->key), &m->msg.replica_write.key) != 0 ||
		    kv_dvv_copy(&m->msg.replica_write.set, &op->set) != 0)
			return -ENOMEM; /* that replica will be missing; the quorum decides */
		op->peer_req[i] = req;
	}
	return 0;
}

/* Counts this node's own copy of the set as one ack (it is durable). */
static void count_local(struct kv_node *node, struct kv_node_op *op)
{
	for (uint32_t i = 0; i < op->npref; i++)
		if (op->pref[i] == node->self_id && !op->answered[i]) {
			op->answered[i] = true;
			op->nanswered++;
		}
}

/*
 * Replies once W acks are in — replica acks may complete W before the local
 * write does (W=1 included). The operation ends when it has replied and its
 * local write is no longer outstanding (the key's queue waits on that write,
 * and its failure must still taint the actor).
 */
static int check_acks(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	int rc = 0;
	if (!op->replied && op->nanswered >= op->needed)
		rc = answer_success(op, out);
	if (op->replied && op->state != ST_WRITE)
		kv_node__op_finish(node, op, out);
	return rc;
}

/*
 * Mints the put into op->set (the stored state, read at the head of the
 * key's queue) and writes it. Without a durable counter the put waits in
 * ST_LEASE, still the head of its queue, until the lease write completes
 * (kv_node__put_on_lease); kv_dvv_put() changed nothing, so no re-read.
 */
static int mint(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
		struct kv_effects *out)
{
	if (node->actor_tainted) {
		/* Queued before a local write of this actor failed: mint nothing. */
		fail(node, op, KV_ECLOSED, KV_NODE_TAINTED_TEXT, out);
		return 0;
	}
	struct kv_dvv_write w;
	memset(&w, 0, sizeof w);
	w.context = &op->put.context;
	memcpy(w.request_id, op->put.request_id, KV_REQUEST_ID_LEN);
	w.timestamp_ns = node->wall_ns != 0 ? node->wall_ns : (int64_t)now_ns;
	w.tombstone = is_tombstone(op);
	w.meta = kv_buf_slice(&op->put.meta);
	w.body = kv_buf_slice(&op->put.body);
	int rc = kv_dvv_put(&op->set, &w, node->actor, &node->counter, &node->limits, &op->dot);
	if (rc == -EAGAIN) {
		if (node->counter.durable >= KV_COUNTER_MAX) {
			/* No lease can follow: the node must take a new epoch. */
			fail(node, op, -EOVERFLOW, "the dot counter of this epoch is used up", out);
			return 0;
		}
		op->state = ST_LEASE;
		op->lease_round = node->lease_round;
		return 0; /* kv_node_step() emits the lease write */
	}
	if (rc < 0) {
		fail(node, op, rc, kv_strerror(rc), out);
		return 0;
	}
	if (rc == 1) {
		/* A retry: the set is stored already (the local ack); ship it
		 * again, no write. */
		op->retry = true;
		op->state = ST_WAIT;
		kv_node__dequeue(node, op, out);
		rc = ship(node, op, out);
		count_local(node, op);
		int rc2 = check_acks(node, op, out);
		return rc ? rc : rc2;
	}
	rc = kv_node__storage_write(node, op, &op->set, out);
	if (rc != 0) {
		fail(node, op, rc, "cannot write the key", out);
		return rc;
	}
	/*
	 * Ship in the same step as the local write (doc/node.md "Put"): a W=2
	 * put costs one fsync and a round trip, not two fsyncs in a row. Safe
	 * because this actor never mints again after losing a shipped dot: a
	 * failed local write taints it (kv_node__put_on_write), and every
	 * unclean restart takes a new epoch (DESIGN §4 "Who mints a dot").
	 * The state stays ST_WRITE: the key's queue waits for the local write.
	 */
	return ship(node, op, out);
}

int kv_node__put_on_read(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 const struct kv_input *in, struct kv_effects *out)
{
	int rc = kv_node__decode_stored(in, &op->set);
	if (rc != 0) {
		fail(node, op, rc, "cannot read the key's stored versions", out);
		return 0;
	}
	return mint(node, now_ns, op, out);
}

int kv_node__put_on_lease(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  struct kv_effects *out)
{
	return mint(node, now_ns, op, out);
}

int kv_node__put_on_write(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  const struct kv_input *in, struct kv_effects *out)
{
	(void)now_ns;
	op->state = ST_WAIT;
	if (in->write.status != 0) {
		/*
		 * The set was shipped with the write: replicas may hold its dot
		 * (and W may even have been met) while this node's copy is gone.
		 * Minting again under this actor could cover that dot with a
		 * context that never saw it, so the actor is done: no more
		 * coordinated puts, and the driver leaves the RUNNING marker so
		 * that the restart takes a new epoch (doc/node.md "Epochs").
		 */
		node->actor_tainted = true;
		fail(node, op, KV_ECLOSED,
		     "the local write failed after the set was shipped (the write may still "
		     "have reached some replicas); " KV_NODE_TAINTED_TEXT, out);
		return 0;
	}
	/* Durable: the local ack; the next operation on the key may start. */
	count_local(node, op);
	kv_node__dequeue(node, op, out);
	return check_acks(node, op, out);
}

int kv_node__put_on_reply(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  uint32_t slot, const struct kv_msg *msg, struct kv_effects *out)
{
	(void)now_ns;
	if (op->kind == OP_FORWARD) {
		if (slot != op->try_idx)
			return 0; /* a replica given up on already */
		if (msg->type == KV_MSG_FORWARD_PUT_ACCEPTED) {
			/*
			 * The coordinating replica is alive and has the put: no
			 * other replica may coordinate it now. Wait for its verdict
			 * until the request's own deadline (doc/node.md "Put").
			 */
			if (op->accepted)
				return 0;
			op->accepted = true;
			send_accepted(op, out); /* pass the news up a forward chain */
			kv_node__cancel_timer(op, out);
			/*
			 * The coordinator's own timer started when it took the
			 * put (a full timeout from then, which may be after our
			 * deadline when earlier replicas were skipped): wait for
			 * that, plus a forward timeout for its verdict to travel.
			 */
			uint64_t at = kv_node__deadline(node, now_ns, op->put.timeout_ms) +
				      node->forward_timeout_ns;
			if (at < op->deadline_ns)
				at = op->deadline_ns;
			int rc = kv_node__timer(node, op, at, out);
			if (rc != 0)
				fail(node, op, rc, "out of memory", out);
			return rc;
		}
		if (msg->type == KV_MSG_ERROR &&
		    (msg->error.code == KV_ECLOSED || msg->error.code == KV_ETIMEDOUT)) {
			/*
			 * The replica is unreachable (the driver's fast fail-over)
			 * or found no replica further on: like the forward timeout,
			 * try the next replica at once. A put it had accepted is
			 * safe to retry: its request id makes it idempotent.
			 */
			kv_node__cancel_timer(op, out);
			op->peer_req[op->try_idx] = 0;
			op->try_idx++;
			return forward_try(node, now_ns, op, out);
		}
		if (msg->type == KV_MSG_ERROR) {
			/* The coordinator's verdict (a failed quorum included) stands. */
			struct kv_node_msg_out *m = kv_node__answer(out, &op->origin, KV_MSG_ERROR);
			if (m != NULL) {
				m->msg.error.code = msg->error.code;
				(void)kv_node__own_key(m, msg->error.text, &m->msg.error.text);
			}
		} else if (msg->type == KV_MSG_FORWARD_PUT_REPLY) {
			struct kv_node_msg_out *m = kv_node__answer(
				out, &op->origin, kv_msg_reply_type(op->origin.req_type));
			if (m != NULL) {
				m->msg.put_reply.dot = msg->put_reply.dot;
				m->msg.put_reply.flags = msg->put_reply.flags;
				(void)kv_ctx_copy(&m->msg.put_reply.context, &msg->put_reply.context);
			}
		} else {
			return 0; /* not an answer to a forward */
		}
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return 0;
	}
	/* Replica acks count while the local write is still in flight too. */
	if (op->kind != OP_COORD_PUT || (op->state != ST_WAIT && op->state != ST_WRITE))
		return 0;
	if (msg->type != KV_MSG_REPLICA_WRITE_ACK)
		return 0; /* a refused write does not count; the timer decides */
	if (!op->answered[slot]) {
		op->answered[slot] = true;
		op->nanswered++;
	}
	return check_acks(node, op, out);
}

int kv_node__put_on_timer(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  struct kv_effects *out)
{
	if (op->kind == OP_FORWARD) {
		if (op->accepted) {
			/* The coordinator took it but gave no verdict in time. */
			fail(node, op, KV_ETIMEDOUT,
			     "the coordinating replica took the put but did not answer before "
			     "the deadline; the write may still have reached some replicas",
			     out);
			return 0;
		}
		/*
		 * DESIGN §4 "Membership": skip the silent replica, try the next.
		 * The FORWARD_PUT may still sit in a connection held up by a
		 * partition; delivered after it heals, it would be coordinated a
		 * second time (a duplicate version beside the one the next
		 * replica mints). Abort that connection so it never arrives.
		 */
		if (op->pref[op->try_idx] != node->self_id)
			kv_node__abort_peer(out, op->pref[op->try_idx]);
		op->peer_req[op->try_idx] = 0;
		op->try_idx++;
		return forward_try(node, now_ns, op, out);
	}
	if (op->kind != OP_COORD_PUT)
		return 0;
	if (!op->replied) {
		/* kvfsctl prints this line as is (issue 4: "write quorum not met:
		 * 1 of 2 acks within 5s"). */
		char text[200];
		uint64_t ms = op->put.timeout_ms ? op->put.timeout_ms
						 : node->request_timeout_ns / 1000000u;
		snprintf(text, sizeof text,
			 "write quorum not met: %u of %u acks within %.3gs; "
			 "the write may still have reached some replicas",
			 (unsigned)op->nanswered, (unsigned)op->needed, (double)ms / 1000.0);
		kv_node__answer_error(out, &op->origin, KV_EQUORUM, text);
	}
	op->replied = true;
	/* A read or write in flight finishes first (the key's queue waits on it). */
	if (op->state == ST_QUEUED || op->state == ST_WAIT || op->state == ST_LEASE)
		kv_node__op_finish(node, op, out);
	return 0;
}

/* ---- Replica side: read, join, write, ack ------------------------------ */

int kv_node__join_request(struct kv_node *node, const struct kv_node_origin *origin,
			  struct kv_slice key, const struct kv_dvv *set, struct kv_effects *out)
{
	if (key.n > KV_KEY_MAX) {
		kv_node__answer_error(out, origin, KV_ETOOBIG, "key too long");
		return 0;
	}
	struct kv_node_op *op = kv_node__op_new(node, OP_JOIN, origin, key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	int rc = kv_dvv_copy(&op->set, set);
	if (rc == 0)
		rc = kv_node__enqueue(node, op, out);
	if (rc != 0)
		fail(node, op, rc, "out of memory", out);
	return rc;
}

int kv_node__join_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	int rc = kv_node__storage_read(node, op, out);
	if (rc != 0)
		fail(node, op, rc, "cannot read the key", out);
	return rc;
}

/* Acknowledges a join with the hash and size of the joined set, and ends it. */
static int ack_join(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	int rc = 0;
	struct kv_buf enc = KV_BUF_INIT;
	struct kv_node_msg_out *m =
		kv_node__answer(out, &op->origin, kv_msg_reply_type(op->origin.req_type));
	if (m != NULL) {
		if (op->written_hash_ok) {
			m->msg.replica_ack.set_hash = op->written_hash; /* what we wrote */
		} else {
			rc = kv_dvv_encode(&op->set, &enc);
			m->msg.replica_ack.set_hash = kv_hash64(enc.p, enc.n);
		}
		m->msg.replica_ack.nversions = (uint32_t)op->set.n;
	}
	kv_buf_release(&enc);
	op->replied = true;
	kv_node__op_finish(node, op, out);
	return rc;
}

int kv_node__join_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			  struct kv_effects *out)
{
	struct kv_dvv stored = KV_DVV_INIT, joined = KV_DVV_INIT;
	int rc = kv_node__decode_stored(in, &stored);
	if (rc != 0) {
		fail(node, op, rc, "cannot read the key's stored versions", out);
		rc = 0;
		goto out;
	}
	rc = kv_dvv_copy(&joined, &stored);
	if (rc == 0)
		rc = kv_dvv_join(&joined, &op->set);
	if (rc != 0) {
		fail(node, op, rc, kv_strerror(rc), out);
		goto out;
	}
	kv_dvv_swap(&op->set, &joined);
	if (in->read.status == 0 && kv_dvv_equal(&op->set, &stored)) {
		rc = ack_join(node, op, out); /* nothing new: no write needed */
		goto out;
	}
	rc = kv_node__storage_write(node, op, &op->set, out);
	if (rc != 0)
		fail(node, op, rc, "cannot write the key", out);
out:
	kv_dvv_release(&stored);
	kv_dvv_release(&joined);
	return rc;
}

int kv_node__join_on_write(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out)
{
	if (in->write.status != 0) {
		fail(node, op, in->write.status, "the replica write failed", out);
		return 0;
	}
	return ack_join(node, op, out);
}
