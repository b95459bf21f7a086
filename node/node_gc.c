/*
 * node_gc.c - chunk reclamation by epoch-based mark-and-sweep (DESIGN §7
 * "Reclaiming chunks"; doc/node.md "Chunks and reclamation"; doc/protocol.md
 * §6.7, §6.7).
 *
 *   GC (kvfsctl)  the receiving node orchestrates epoch E: GC_MARK(E) to
 *                 every member (itself included); only when EVERY member
 *                 answered GC_MARK_DONE is the mark complete; then
 *                 GC_SWEEP(E, grace) to every member. A member that fails
 *                 or does not answer fails the gc, and then nothing is swept.
 *   GC_MARK       the member scans every sibling set it stores, in pages of
 *                 a range read over the whole key space (every replica's
 *                 sets, every sibling; tombstones skipped), decodes each live
 *                 version's metadata and, for a chunked file, the manifest
 *                 in its body, and sends CHUNK_MARK(E, hashes) to the
 *                 replicas of each referenced chunk; the next page waits
 *                 until every mark of this one is acknowledged.
 *   GC_SWEEP      the member scans its chunk records and deletes each chunk
 *                 whose last mark is older than E and whose age is above the
 *                 grace, re-checked on the chunk key's queue.
 * Hinted handoff does not exist yet: when hints arrive, the versions they
 * hold must be scanned too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/coding.h"
#include "util/error.h"

/* Default deadline of a gc and of each member's part, when none is given. */
#define GC_TIMEOUT_DEFAULT_NS (600ull * 1000000000ull)
/* Pages of the mark scan: entries, and a byte budget (chunks are large). */
#define SCAN_PAGE_ENTRIES 64
#define SCAN_PAGE_BYTES (1u << 20)
#define SWEEP_PAGE_ENTRIES 256
/* Graces above a century are a century (no overflow in ns). */
#define GRACE_MAX_S (100ull * 365 * 24 * 3600)

/* ---- Chunk references of a version (doc/fs-format.md §2, §3.2) --------- */

/*
 * The file object format is the mount's (fuse/object.h, fuse/chunk.h); the
 * node reads only the two fields it needs, so that the core does not depend
 * on the mount's library. tests/unit/test_node_chunk.c checks this reader
 * against kv_fs_meta_encode() and kv_fs_manifest_encode().
 */
#define META_MIN 74
#define META_STORAGE_CHUNKED 2
#define MANIFEST_HEADER 8
#define MANIFEST_ENTRY 36
#define MANIFEST_MAX_CHUNKS 65536u

int kv_node__chunk_refs(struct kv_slice meta, struct kv_slice body,
			int (*fn)(void *arg, const uint8_t *hash), void *arg)
{
	if (meta.n < 3 || meta.p[0] != 'k' || meta.p[1] != 'F')
		return 0; /* not a file object (kvfsctl put, tombstone metadata) */
	if (meta.p[2] != 1)
		return KV_EVERSION; /* a newer format may reference chunks: never guess */
	if (meta.n < META_MIN)
		return KV_ECORRUPT;
	if (meta.p[4] != META_STORAGE_CHUNKED)
		return 0;
	if (body.n < MANIFEST_HEADER || body.p[0] != 'k' || body.p[1] != 'M')
		return KV_ECORRUPT;
	if (body.p[2] != 1)
		return KV_EVERSION;
	uint32_t count = kv_get_le32(body.p + 4);
	if (count == 0 || count > MANIFEST_MAX_CHUNKS ||
	    body.n != MANIFEST_HEADER + (size_t)count * MANIFEST_ENTRY)
		return KV_ECORRUPT;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *hash = body.p + MANIFEST_HEADER + (size_t)i * MANIFEST_ENTRY;
		uint8_t any = 0;
		for (size_t k = 0; k < KV_NODE_CHUNK_HASH_LEN; k++)
			any |= hash[k];
		if (any == 0)
			continue; /* a hole: no chunk */
		int rc = fn(arg, hash);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int push_hash(void *arg, const uint8_t *hash)
{
	return kv_buf_append(arg, hash, KV_NODE_CHUNK_HASH_LEN) == 0 ? 0 : -ENOMEM;
}

/* ---- Member parts: the mark scan and the sweep -------------------------- */

static uint64_t deadline_of(const struct kv_node *node, uint64_t now_ns, uint32_t timeout_ms)
{
	return now_ns + (timeout_ms ? (uint64_t)timeout_ms * 1000000u : GC_TIMEOUT_DEFAULT_NS);
}

/* Emits the range read of @op's next page. */
static int next_range(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	struct kv_node_range_out *r = kv_node__range_push(out);
	if (r == NULL)
		return -ENOMEM;
	int rc = 0;
	if (op->kind == OP_GC_SCAN) {
		/* The whole key space: lease and chunk records are skipped by
		 * their keys, which are no ring storage keys. */
		if (ch->cursor.n)
			rc = kv_buf_append(&r->start, ch->cursor.p, ch->cursor.n);
		r->max = SCAN_PAGE_ENTRIES;
		r->max_bytes = SCAN_PAGE_BYTES;
	} else {
		kv_node__chunk_rec_span(&r->start, &r->end);
		if (ch->cursor.n) {
			kv_buf_reset(&r->start);
			rc = kv_buf_append(&r->start, ch->cursor.p, ch->cursor.n);
		}
		r->max = SWEEP_PAGE_ENTRIES;
	}
	if (rc != 0 || (op->kind == OP_GC_SWEEP && (r->start.n == 0 || r->end.n == 0))) {
		kv_buf_release(&r->start);
		kv_buf_release(&r->end);
		out->ranges.n--;
		return -ENOMEM;
	}
	op->storage_op = kv_node__id(node);
	r->op = op->storage_op;
	op->state = ST_READ;
	return 0;
}

/* Ends a member part: tells the orchestrator (itself) or answers the peer. */
static int part_end(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
		    struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint64_t parent = ch->parent;
	int err = ch->err;
	char text[sizeof ch->errtext];
	memcpy(text, ch->errtext, sizeof text);
	struct kv_msg_gc_reply sums = ch->sums;
	sums.epoch = ch->epoch;
	uint16_t type = op->kind == OP_GC_SCAN ? KV_MSG_GC_MARK_DONE : KV_MSG_GC_SWEEP_DONE;
	if (parent == 0) {
		if (err != 0) {
			kv_node__answer_error(out, &op->origin, err, text);
		} else {
			struct kv_node_msg_out *m = kv_node__answer(out, &op->origin, type);
			if (m != NULL)
				m->msg.gc_reply = sums;
		}
	}
	op->replied = true;
	kv_node__op_finish(node, op, out);
	if (parent == 0)
		return 0;
	struct kv_node_op *p = kv_node__chunk_find(node, parent);
	if (p == NULL)
		return 0;
	return kv_node__gc_member_done(node, now_ns, p, node->self_id, err, kv_slice_str(text),
				       err ? NULL : &sums, out);
}

/* Builds a member part (OP_GC_SCAN or OP_GC_SWEEP) and reads its first page. */
static int part_start(struct kv_node *node, uint64_t now_ns, enum kv_node_op_kind kind,
		      const struct kv_node_origin *origin, uint64_t parent, uint64_t epoch,
		      uint64_t grace_s, uint32_t timeout_ms, struct kv_effects *out)
{
	struct kv_node_op *op = kv_node__chunk_op_new(node, kind, origin, kv_slice_make(NULL, 0));
	if (op == NULL)
		return -ENOMEM;
	struct kv_node_chunk *ch = op->chunk;
	ch->parent = parent;
	ch->epoch = epoch;
	ch->grace_ns = (grace_s > GRACE_MAX_S ? GRACE_MAX_S : grace_s) * 1000000000ull;
	int rc = kv_node__timer(node, op, deadline_of(node, now_ns, timeout_ms), out);
	if (rc == 0)
		rc = next_range(node, op, out);
	if (rc != 0) {
		kv_node__chunk_fail(ch, rc, "out of memory");
		return part_end(node, now_ns, op, out);
	}
	return 0;
}

/* One page of the mark scan: every live version's chunks, fanned out. */
static int scan_page(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
		     struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	struct kv_buf hashes = KV_BUF_INIT;
	uint8_t key[KV_KEY_MAX];
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < in->range.n; i++) {
		const struct kv_node_range_entry *e = &in->range.entries[i];
		uint64_t pos;
		size_t klen;
		int used = kv_skey_decode(e->key, &pos, key, &klen);
		if (used < 0 || (size_t)used != e->key.n)
			continue; /* node-local records (lease, chunk records) */
		if (kv_node_key_is_chunk(kv_slice_make(key, klen)))
			continue; /* a chunk's bytes reference nothing */
		struct kv_dvv set = KV_DVV_INIT;
		rc = kv_dvv_decode(e->value, &set);
		if (rc != 0) {
			/* A set it cannot read may reference chunks: never sweep on a guess. */
			kv_node__chunk_fail(ch, rc == -ENOMEM ? rc : KV_ECORRUPT,
					    "node %u cannot decode the versions of a stored key (%zu "
					    "bytes): %s; nothing is swept",
					    (unsigned)node->self_id, klen, kv_strerror(rc));
			kv_dvv_release(&set);
			break;
		}
		for (size_t v = 0; rc == 0 && v < set.n; v++) {
			if (set.v[v].tombstone)
				continue;
			ch->sums.versions++;
			rc = kv_node__chunk_refs(set.v[v].meta, set.v[v].body, push_hash, &hashes);
			if (rc != 0)
				kv_node__chunk_fail(ch, rc,
						    "node %u cannot read the chunk manifest of a "
						    "version of \"%.*s\": %s; nothing is swept",
						    (unsigned)node->self_id, (int)(klen > 200 ? 200 : klen),
						    (const char *)key, kv_strerror(rc));
		}
		kv_dvv_release(&set);
	}
	if (rc == 0 && hashes.n > 0)
		rc = kv_node__chunk_fanout(node, op, KV_MSG_CHUNK_F_MARK, ch->epoch, ch->wall, hashes.p,
					   hashes.n / KV_NODE_CHUNK_HASH_LEN, out);
	if (rc == -ENOMEM)
		kv_node__chunk_fail(ch, rc, "out of memory");
	kv_buf_release(&hashes);
	return 0;
}

/* One page of the sweep: the chunk records that may go, re-checked on their queues. */
static int sweep_page(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
		      struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	struct kv_buf hashes = KV_BUF_INIT;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < in->range.n; i++) {
		const struct kv_node_range_entry *e = &in->range.entries[i];
		struct kv_node_chunk_rec rec;
		if (kv_node__chunk_rec_decode(e->key, e->value, &rec) != 0)
			continue; /* a ring key whose position starts 00 00 00 01 */
		if (rec.marked >= ch->epoch || ch->wall < rec.touched ||
		    ((uint64_t)ch->wall - (uint64_t)rec.touched) <= ch->grace_ns) {
			ch->sums.kept++;
			continue;
		}
		rc = push_hash(&hashes, rec.hash);
	}
	if (rc == 0 && hashes.n > 0)
		rc = kv_node__chunk_batch(node, op, CHUNK_SWEEP, 0, ch->epoch, ch->grace_ns, ch->wall,
					  hashes.p, hashes.n / KV_NODE_CHUNK_HASH_LEN, out);
	if (rc != 0)
		kv_node__chunk_fail(ch, rc, "out of memory");
	kv_buf_release(&hashes);
	return 0;
}

int kv_node__gc_on_range(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 const struct kv_input *in, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	op->state = ST_WAIT;
	if (in->range.status != 0) {
		kv_node__chunk_fail(ch, in->range.status, "node %u cannot scan its storage: %s",
				    (unsigned)node->self_id, kv_strerror(in->range.status));
		return kv_node__gc_continue(node, now_ns, op, out);
	}
	if (in->range.n == 0) {
		ch->phase = 9; /* the end of the key space */
		return kv_node__gc_continue(node, now_ns, op, out);
	}
	/* The next page starts just past the last key: last ‖ 00. */
	struct kv_slice last = in->range.entries[in->range.n - 1].key;
	kv_buf_reset(&ch->cursor);
	if (kv_buf_append(&ch->cursor, last.p, last.n) != 0 || kv_buf_append_u8(&ch->cursor, 0) != 0)
		kv_node__chunk_fail(ch, -ENOMEM, "out of memory");
	else
		ch->step = 1; /* busy while the page fans out */
	if (ch->err == 0) {
		uint64_t id = ch->id;
		if (op->kind == OP_GC_SCAN)
			scan_page(node, op, in, out);
		else
			sweep_page(node, op, in, out);
		if ((op = kv_node__chunk_find(node, id)) == NULL)
			return 0;
		op->chunk->step = 0;
	}
	return kv_node__gc_continue(node, now_ns, op, out);
}

/* ---- The orchestrator ----------------------------------------------------- */

static void gc_answer_error(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	char text[KV_MSG_ERROR_TEXT_MAX];
	snprintf(text, sizeof text, "gc epoch %llu: %s%s", (unsigned long long)ch->epoch, ch->errtext,
		 ch->phase == 1 ? "; the mark is incomplete, nothing was swept" : "");
	kv_node__answer_error(out, &op->origin, ch->err, text);
	op->replied = true;
	kv_node__op_finish(node, op, out);
}

/* Sends GC_MARK or GC_SWEEP to every member, itself through a local part. */
static int gc_phase(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op, int phase,
		    struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint32_t members = kv_ring_node_count(node->ring);
	uint64_t id = ch->id;
	uint32_t timeout_ms = (uint32_t)((ch->deadline_ns > now_ns ? ch->deadline_ns - now_ns : 1000000u) /
					 1000000u);
	if (timeout_ms == 0)
		timeout_ms = 1;
	ch->phase = phase;
	ch->pending = members;
	ch->step = 1; /* busy: local parts that end now do not end @op */
	int rc = 0;
	for (uint32_t i = 0; rc == 0 && i < members; i++) {
		uint32_t to = node->ring_to_id[i];
		if (to == node->self_id)
			continue;
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m =
			kv_node__send(out, to, req, phase == 1 ? KV_MSG_GC_MARK : KV_MSG_GC_SWEEP);
		if (m == NULL || kv_node__chunk_peer_add(op, to, req) != 0) {
			rc = -ENOMEM;
			break;
		}
		m->msg.gc.epoch = ch->epoch;
		m->msg.gc.grace_s = phase == 1 ? 0 : ch->grace_ns / 1000000000ull;
		m->msg.gc.timeout_ms = timeout_ms;
	}
	if (rc == 0) {
		struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_GC };
		rc = part_start(node, now_ns, phase == 1 ? OP_GC_SCAN : OP_GC_SWEEP, &none, id,
				ch->epoch, ch->grace_ns / 1000000000ull, timeout_ms, out);
	}
	if ((op = kv_node__chunk_find(node, id)) == NULL)
		return rc;
	op->chunk->step = 0;
	if (rc != 0)
		kv_node__chunk_fail(op->chunk, rc, "out of memory");
	return kv_node__gc_continue(node, now_ns, op, out);
}

int kv_node__gc_member_done(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    uint32_t member, int code, struct kv_slice text,
			    const struct kv_msg_gc_reply *r, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	if (op->kind != OP_GC || op->replied)
		return 0;
	if (ch->pending > 0)
		ch->pending--;
	if (code != 0 || r == NULL) {
		kv_node__chunk_fail(ch, code ? code : KV_ECORRUPT, "node %u failed to %s: %.*s",
				    (unsigned)member, ch->phase == 1 ? "mark" : "sweep",
				    (int)(text.n > 400 ? 400 : text.n), (const char *)text.p);
	} else if (ch->phase == 1) {
		ch->sums.versions += r->versions;
		ch->sums.refs += r->refs;
	} else {
		ch->sums.kept += r->kept;
		ch->sums.swept += r->swept;
		ch->sums.bytes += r->bytes;
	}
	return kv_node__gc_continue(node, now_ns, op, out);
}

int kv_node__gc_continue(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	if (ch->step)
		return 0; /* busy: the caller continues when it is done */
	switch (op->kind) {
	case OP_CHUNK_TOUCH:
		if (ch->pending > 0 && ch->err == 0)
			return 0;
		if (ch->err != 0) {
			kv_node__answer_error(out, &op->origin, ch->err, ch->errtext);
		} else {
			struct kv_node_msg_out *m =
				kv_node__answer(out, &op->origin, KV_MSG_CHUNK_TOUCH_REPLY);
			if (m != NULL)
				m->msg.count.count = ch->sums.refs;
		}
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return 0;
	case OP_GC_SCAN:
	case OP_GC_SWEEP:
		if (ch->err != 0)
			return part_end(node, now_ns, op, out);
		if (ch->pending > 0 || op->state == ST_READ)
			return 0;
		if (ch->phase == 9)
			return part_end(node, now_ns, op, out);
		if (next_range(node, op, out) != 0) {
			kv_node__chunk_fail(ch, -ENOMEM, "out of memory");
			return part_end(node, now_ns, op, out);
		}
		return 0;
	case OP_GC:
		if (op->replied)
			return 0;
		if (ch->err != 0 && (ch->phase == 1 || ch->pending == 0)) {
			gc_answer_error(node, op, out);
			return 0;
		}
		if (ch->pending > 0)
			return 0;
		if (ch->phase == 1)
			return gc_phase(node, now_ns, op, 2, out);
		{
			struct kv_node_msg_out *m = kv_node__answer(out, &op->origin, KV_MSG_GC_REPLY);
			if (m != NULL) {
				m->msg.gc_reply = ch->sums;
				m->msg.gc_reply.epoch = ch->epoch;
				m->msg.gc_reply.nodes = kv_ring_node_count(node->ring);
			}
		}
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return 0;
	default:
		return 0;
	}
}

/* ---- Requests ------------------------------------------------------------- */

int kv_node__gc_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			const struct kv_msg *msg, struct kv_effects *out)
{
	if (msg->type != KV_MSG_GC) {
		kv_node__answer_error(out, origin, KV_EINVAL, "request not supported by this node");
		return 0;
	}
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_GC, origin, kv_slice_make(NULL, 0));
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	struct kv_node_chunk *ch = op->chunk;
	/* Epochs grow: a sweep of E keeps what any mark of E or later named. */
	uint64_t epoch = ch->wall > 0 ? (uint64_t)ch->wall : now_ns;
	if (epoch <= node->gc_epoch_last)
		epoch = node->gc_epoch_last + 1;
	node->gc_epoch_last = epoch;
	ch->epoch = epoch;
	uint64_t grace_s = msg->gc.grace_s > GRACE_MAX_S ? GRACE_MAX_S : msg->gc.grace_s;
	ch->grace_ns = grace_s * 1000000000ull;
	ch->deadline_ns = deadline_of(node, now_ns, msg->gc.timeout_ms);
	op->state = ST_WAIT;
	int rc = kv_node__timer(node, op, ch->deadline_ns, out);
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, "out of memory");
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return rc;
	}
	return gc_phase(node, now_ns, op, 1, out);
}

int kv_node__gc_peer(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
		     const struct kv_msg *msg, struct kv_effects *out)
{
	if (msg->type != KV_MSG_GC_MARK && msg->type != KV_MSG_GC_SWEEP) {
		if (kv_msg_reply_type(msg->type) != KV_MSG_NONE)
			kv_node__answer_error(out, origin, KV_EINVAL,
					      "request not supported by this node");
		return 0;
	}
	int rc = part_start(node, now_ns, msg->type == KV_MSG_GC_MARK ? OP_GC_SCAN : OP_GC_SWEEP,
			    origin, 0, msg->gc.epoch, msg->gc.grace_s, msg->gc.timeout_ms, out);
	if (rc != 0)
		kv_node__answer_error(out, origin, rc, "out of memory");
	return rc;
}
