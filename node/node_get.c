/*
 * node_get.c - the read path of the node core (DESIGN §3, §4, §5 "Read
 * repair"; doc/node.md "Get"): the node that receives a GET reads the key
 * from its N replicas (itself through a storage read), replies once R have
 * answered with the join of their sets — live versions only, the context of
 * all — and repairs every replica whose set differs from the join. A peer's
 * REPLICA_READ is answered with the set as stored, tombstones included.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/error.h"

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
	op->state = ST_WAIT;
	int rc = kv_node__timer(node, op, kv_node__deadline(node, now_ns, g->timeout_ms), out);
	for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
		if (op->pref[i] == node->self_id) {
			rc = kv_node__storage_read(node, op, out);
			continue;
		}
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m = kv_node__send(out, op->pref[i], req, KV_MSG_REPLICA_READ);
		if (m == NULL || kv_node__own_key(m, g->key, &m->msg.get.key) != 0)
			rc = -ENOMEM;
		op->peer_req[i] = req;
	}
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, "out of memory");
		op->replied = true;
		kv_node__op_finish(node, op, out);
	}
	return rc;
}

/*
 * Replaces @reply's contents with @merged minus its tombstones: they travel
 * between replicas but are hidden from clients after the join (DESIGN §4
 * "Deletes"); the context still covers them. Returns 0 or -ENOMEM.
 */
static int live_view(struct kv_dvv *reply, const struct kv_dvv *merged)
{
	struct kv_ctx tombs = KV_CTX_INIT;
	int rc = kv_dvv_copy(reply, merged);
	for (size_t i = 0; rc == 0 && i < merged->n; i++)
		if (merged->v[i].tombstone)
			rc = kv_ctx_add(&tombs, merged->v[i].dot);
	if (rc == 0 && !kv_ctx_is_empty(&tombs))
		rc = kv_dvv_discard(reply, &tombs) < 0 ? -ENOMEM : 0;
	kv_ctx_release(&tombs);
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
		struct kv_node_msg_out *m = NULL;
		if (rc == 0) {
			m = kv_node__answer(out, &op->origin, KV_MSG_GET_REPLY);
			rc = m == NULL ? -ENOMEM : live_view(&m->msg.set_reply.set, &op->set);
		}
		if (rc != 0) {
			kv_node__answer_error(out, &op->origin, rc, kv_strerror(rc));
			op->replied = true;
			kv_node__op_finish(node, op, out);
			return rc;
		}
		op->replied = true;
		for (uint32_t i = 0; rc == 0 && i < op->npref; i++)
			if (op->answered[i] && !kv_dvv_equal(&op->replies[i], &op->set))
				rc = repair(node, op, i, &op->set, out);
	} else if (op->replied) {
		/* A late reply: fold it in and repair it if it was behind. */
		rc = kv_dvv_join(&op->set, &op->replies[slot]);
		if (rc == 0 && !kv_dvv_equal(&op->replies[slot], &op->set))
			rc = repair(node, op, slot, &op->set, out);
	}
	if (op->nanswered == op->npref)
		kv_node__op_finish(node, op, out);
	return rc;
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
		return 0; /* an unreadable local copy does not count toward R */
	return got(node, op, slot, out);
}

int kv_node__get_on_reply(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
			  const struct kv_msg *msg, struct kv_effects *out)
{
	if (msg->type != KV_MSG_REPLICA_READ_REPLY || op->answered[slot])
		return 0; /* an ERROR does not count toward R */
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
		kv_node__answer_error(out, &op->origin, rc, "cannot read the key's stored versions");
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
