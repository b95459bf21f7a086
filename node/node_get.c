/*
 * node_get.c - the read path of the node core (DESIGN §3, §4, §5 "Read
 * repair"; doc/node.md "Get"): the node that receives a GET reads the key
 * from its N replicas (itself through a storage read), replies once R have
 * answered with the join of their sets — live versions only, the context of
 * all; bodies emptied for HEAD; ERROR KV_ESIBLINGS above 64 live versions
 * (doc/protocol.md §5.2) — and repairs every replica whose set differs from
 * the join. Replicas that answer ERROR count as failed: when fewer than R
 * can still answer, the client hears so at once. A peer's REPLICA_READ is
 * answered with the set as stored, tombstones included. The same operation
 * without a client (kv_node__repair_key) repairs a key LIST found behind.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/error.h"

/*
 * Arms @op's timer at @at_ns and reads its key from every replica of
 * op->pref: itself through a storage read, the others by REPLICA_READ.
 * Returns 0, or -ENOMEM after answering and finishing @op.
 */
static int start_reads(struct kv_node *node, struct kv_node_op *op, uint64_t at_ns,
		       struct kv_effects *out)
{
	op->state = ST_WAIT;
	int rc = kv_node__timer(node, op, at_ns, out);
	for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
		if (op->pref[i] == node->self_id) {
			rc = kv_node__storage_read(node, op, out);
			continue;
		}
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m = kv_node__send(out, op->pref[i], req, KV_MSG_REPLICA_READ);
		if (m == NULL || kv_node__own_key(m, kv_buf_slice(&op->key), &m->msg.get.key) != 0)
			rc = -ENOMEM;
		op->peer_req[i] = req;
	}
	if (rc != 0) {
		kv_node__answer_error(out, &op->origin, rc, "out of memory");
		op->replied = true;
		kv_node__op_finish(node, op, out);
	}
	return rc;
}

int kv_node__get_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			 const struct kv_msg *msg, struct kv_effects *out)
{
	const struct kv_msg_get *g = &msg->get;
	if (g->key.n > KV_KEY_MAX) {
		kv_node__answer_error(out, origin, KV_ETOOBIG, "key too long");
		return 0;
	}
	if (g->r > node->n) {
		kv_node__answer_error(out, origin, KV_EINVAL, "r above the replica count");
		return 0;
	}
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, g->key, pref, KV_NODE_MAX_PEERS);
	uint32_t needed = g->r ? g->r : node->r;
	if (np < (int)needed) {
		kv_node__answer_error(out, origin, KV_EQUORUM, "fewer replicas than R");
		return 0;
	}
	struct kv_node_op *op = kv_node__op_new(node, OP_GET, origin, g->key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	memcpy(op->pref, pref, sizeof pref);
	op->npref = (uint32_t)np;
	op->needed = needed;
	op->get_flags = g->flags;
	return start_reads(node, op, kv_node__deadline(node, now_ns, g->timeout_ms), out);
}

int kv_node__repair_key(struct kv_node *node, struct kv_slice key, uint64_t at_ns,
			struct kv_effects *out)
{
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, key, pref, KV_NODE_MAX_PEERS);
	if (np < 2)
		return 0; /* one replica: nothing to repair */
	struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_GET };
	struct kv_node_op *op = kv_node__op_new(node, OP_GET, &none, key);
	if (op == NULL)
		return -ENOMEM;
	memcpy(op->pref, pref, sizeof pref);
	op->npref = (uint32_t)np;
	op->needed = 1; /* no client: every reply joins and repairs what is behind */
	return start_reads(node, op, at_ns, out);
}

/*
 * Replaces @reply's contents with @merged minus its tombstones: they travel
 * between replicas but are hidden from clients after the join (DESIGN §4
 * "Deletes"); the context still covers them. With KV_MSG_GET_F_TOMBSTONES a
 * key without live versions keeps its latest tombstone with metadata
 * (doc/protocol.md §5.1). Returns 0 or -ENOMEM.
 */
static int live_view(struct kv_dvv *reply, const struct kv_dvv *merged, uint8_t flags)
{
	int rc = kv_dvv_copy(reply, merged);
	if (rc == 0)
		rc = kv_dvv_hide_tombstones(reply, (flags & KV_MSG_GET_F_TOMBSTONES) != 0);
	return rc;
}

/* Sends @set to the replica of slot @i as a READ_REPAIR (or queues a local join). */
static int repair(struct kv_node *node, struct kv_node_op *op, uint32_t i, const struct kv_dvv *set,
		  struct kv_effects *out)
{
	if (op->pref[i] == node->self_id) {
		struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_READ_REPAIR };
		return kv_node__join_request(node, &none, kv_buf_slice(&op->key), set, out);
	}
	/* Acks are not awaited: a lost repair is redone by the next read. */
	struct kv_node_msg_out *m =
		kv_node__send(out, op->pref[i], kv_node__id(node), KV_MSG_READ_REPAIR);
	if (m == NULL || kv_node__own_key(m, kv_buf_slice(&op->key), &m->msg.replica_write.key) != 0 ||
	    kv_dvv_copy(&m->msg.replica_write.set, set) != 0)
		return -ENOMEM;
	return 0;
}

/*
 * Answers the client from op->set (the join of R or more replies): the live
 * versions and the context of all, bodies emptied for HEAD; more than
 * KV_DVV_MAX_SIBLINGS live versions answer ERROR KV_ESIBLINGS instead
 * (doc/protocol.md §5.2: the client decoder's max_reply_siblings). Nothing
 * for an operation without a client. Returns 0 or -ENOMEM.
 */
static int reply(struct kv_node_op *op, struct kv_effects *out)
{
	if (op->origin.kind == ORIGIN_NONE)
		return 0;
	struct kv_dvv live = KV_DVV_INIT;
	int rc = live_view(&live, &op->set, op->get_flags);
	if (rc == 0 && live.n > KV_DVV_MAX_SIBLINGS) {
		kv_node__answer_error(out, &op->origin, KV_ESIBLINGS,
				      "more than 64 live versions: resolve some of them first");
	} else if (rc == 0) {
		struct kv_node_msg_out *m = kv_node__answer(out, &op->origin, KV_MSG_GET_REPLY);
		if (m == NULL) {
			rc = -ENOMEM;
		} else {
			/* HEAD: metadata and context only (DESIGN §7, stat and
			 * O_TRUNC). The versions keep owning their bytes; only
			 * the view of the body is emptied. */
			if (op->get_flags & KV_MSG_GET_F_HEAD)
				for (size_t i = 0; i < live.n; i++)
					live.v[i].body = kv_slice_make(NULL, 0);
			kv_dvv_swap(&m->msg.set_reply.set, &live);
		}
	}
	kv_dvv_release(&live);
	return rc;
}

/*
 * Repairs every slot that answered with less than op->set, and records that
 * it now holds op->set, so one reply is repaired once per growth of the join
 * (a late reply that adds to the join also repairs the earlier ones).
 */
static int repair_behind(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	int rc = 0;
	for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
		if (!op->answered[i] || kv_dvv_equal(&op->replies[i], &op->set))
			continue;
		rc = repair(node, op, i, &op->set, out);
		if (rc == 0)
			rc = kv_dvv_copy(&op->replies[i], &op->set);
	}
	return rc;
}

/* Slot @slot answered with op->replies[slot]: reply at R, repair what is behind. */
static int got(struct kv_node *node, struct kv_node_op *op, uint32_t slot, struct kv_effects *out)
{
	int rc = 0;
	op->answered[slot] = true;
	op->nanswered++;
	if (!op->replied && op->nanswered >= op->needed) {
		for (uint32_t i = 0; rc == 0 && i < op->npref; i++)
			if (op->answered[i])
				rc = kv_dvv_join(&op->set, &op->replies[i]);
		if (rc == 0)
			rc = reply(op, out);
		if (rc != 0) {
			kv_node__answer_error(out, &op->origin, rc, kv_strerror(rc));
			op->replied = true;
			kv_node__op_finish(node, op, out);
			return rc;
		}
		op->replied = true;
		rc = repair_behind(node, op, out);
	} else if (op->replied) {
		/* A late reply: fold it in and repair whoever is behind now. */
		rc = kv_dvv_join(&op->set, &op->replies[slot]);
		if (rc == 0)
			rc = repair_behind(node, op, out);
	}
	if (op->nanswered + op->nfailed == op->npref)
		kv_node__op_finish(node, op, out);
	return rc;
}

/*
 * Slot @slot cannot answer (an ERROR, an unreadable local copy). When fewer
 * than R replicas are left to answer, the client hears it now rather than
 * at the timer.
 */
static int failed(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	op->nfailed++;
	if (!op->replied && op->npref - op->nfailed < op->needed) {
		kv_node__answer_error(out, &op->origin, KV_EQUORUM,
				      "fewer than R replicas can answer: the others answered "
				      "with an error");
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return 0;
	}
	if (op->nanswered + op->nfailed == op->npref)
		kv_node__op_finish(node, op, out);
	return 0;
}

static uint32_t self_slot(const struct kv_node *node, const struct kv_node_op *op)
{
	for (uint32_t i = 0; i < op->npref; i++)
		if (op->pref[i] == node->self_id)
			return i;
	return 0;
}

int kv_node__get_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			 struct kv_effects *out)
{
	op->state = ST_WAIT;
	uint32_t slot = self_slot(node, op);
	if (kv_node__decode_stored(in, &op->replies[slot]) != 0)
		return failed(node, op, out); /* an unreadable local copy */
	return got(node, op, slot, out);
}

int kv_node__get_on_reply(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
			  const struct kv_msg *msg, struct kv_effects *out)
{
	if (op->answered[slot])
		return 0;
	if (msg->type == KV_MSG_ERROR)
		return failed(node, op, out);
	if (msg->type != KV_MSG_REPLICA_READ_REPLY)
		return 0;
	if (kv_dvv_copy(&op->replies[slot], &msg->set_reply.set) != 0)
		return -ENOMEM;
	return got(node, op, slot, out);
}

int kv_node__get_on_timer(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	if (!op->replied)
		kv_node__answer_error(out, &op->origin, KV_ETIMEDOUT,
				      "fewer than R replicas answered in time");
	op->replied = true;
	kv_node__op_finish(node, op, out);
	return 0;
}

/* ---- A peer's REPLICA_READ -------------------------------------------- */

int kv_node__replica_read_request(struct kv_node *node, const struct kv_node_origin *origin,
				  const struct kv_msg *msg, struct kv_effects *out)
{
	if (msg->get.key.n > KV_KEY_MAX) {
		kv_node__answer_error(out, origin, KV_ETOOBIG, "key too long");
		return 0;
	}
	struct kv_node_op *op = kv_node__op_new(node, OP_REPLICA_READ, origin, msg->get.key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	int rc = kv_node__storage_read(node, op, out);
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, "cannot read the key");
		kv_node__op_finish(node, op, out);
	}
	return rc;
}

int kv_node__rread_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out)
{
	int rc = kv_node__decode_stored(in, &op->set);
	if (rc != 0) {
		/* Answered with the error; the step itself succeeded. */
		kv_node__answer_error(out, &op->origin, rc, "cannot read the key's stored versions");
		rc = rc == -ENOMEM ? rc : 0;
	} else {
		struct kv_node_msg_out *m =
			kv_node__answer(out, &op->origin, KV_MSG_REPLICA_READ_REPLY);
		if (m == NULL)
			rc = -ENOMEM;
		else
			kv_dvv_swap(&m->msg.set_reply.set, &op->set);
	}
	kv_node__op_finish(node, op, out);
	return rc;
}
