/*
 * node_list.c - LIST of a directory (DESIGN §7 "Listing"; doc/node.md "List").
 *
 *   receiving node  LIST -> REPLICA_LIST (dir, cursor, max) to the N replicas
 *                   of the directory's children (placed by the directory),
 *                   itself through a storage range read
 *   at R pages      join per name, hide tombstone-only names (with
 *                   TOMBSTONES, one with metadata stays), stop at the
 *                   smallest last name among the pages that were full
 *                   -> LIST_REPLY (metadata only) with MORE and a name cursor,
 *                   or ERROR KV_ESIBLINGS when an entry has more than 64 live
 *                   versions; a name whose pages differ is read repaired
 *                   (a full read of the key: pages carry no bodies)
 *   replica ERROR   counts as failed: fewer than R left -> ERROR at once
 *   replica         REPLICA_LIST -> range read -> REPLICA_LIST_REPLY with its
 *                   raw entries, tombstones included (doc/protocol.md §6.4)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "ring/keys.h"
#include "util/error.h"

/* One replica's page: names strictly ascending, each with its set, no bodies. */
struct list_page {
	struct kv_buf *names;
	struct kv_dvv *sets;
	size_t n, cap;
	bool filled; /* the replica filled its page: it may hold names past the last */
};

struct kv_node_list {
	struct kv_buf cursor; /* list names strictly after it; empty = from the start */
	uint32_t max;         /* entries a page */
	uint8_t flags;        /* OP_LIST: the request's KV_MSG_LIST_F_* */
	uint64_t deadline_ns; /* OP_LIST: the request's deadline */
	struct list_page pages[KV_NODE_MAX_PEERS]; /* OP_LIST: per preference slot */
};

static void page_release(struct list_page *pg)
{
	for (size_t i = 0; i < pg->n; i++) {
		kv_buf_release(&pg->names[i]);
		kv_dvv_release(&pg->sets[i]);
	}
	free(pg->names);
	free(pg->sets);
	memset(pg, 0, sizeof *pg);
}

void kv_node__list_free(struct kv_node_list *list)
{
	if (list == NULL)
		return;
	kv_buf_release(&list->cursor);
	for (uint32_t i = 0; i < KV_NODE_MAX_PEERS; i++)
		page_release(&list->pages[i]);
	free(list);
}

/* Appends (@name, *@set) to @pg, taking @set's contents. Returns 0 or -ENOMEM. */
static int page_push(struct list_page *pg, struct kv_slice name, struct kv_dvv *set)
{
	if (pg->n == pg->cap) {
		size_t ncap = pg->cap ? 2 * pg->cap : 16;
		struct kv_buf *names = realloc(pg->names, ncap * sizeof *names);
		if (names == NULL)
			return -ENOMEM;
		pg->names = names;
		struct kv_dvv *sets = realloc(pg->sets, ncap * sizeof *sets);
		if (sets == NULL)
			return -ENOMEM;
		pg->sets = sets;
		pg->cap = ncap;
	}
	kv_buf_init(&pg->names[pg->n]);
	if (kv_buf_append(&pg->names[pg->n], name.p, name.n) != 0) {
		kv_buf_release(&pg->names[pg->n]);
		return -ENOMEM;
	}
	kv_dvv_init(&pg->sets[pg->n]);
	kv_dvv_swap(&pg->sets[pg->n], set);
	pg->n++;
	return 0;
}

/* "/" is a synonym of the root "" (doc/placement.md). */
static struct kv_slice dir_norm(struct kv_slice dir)
{
	if (dir.n == 1 && dir.p[0] == '/')
		return kv_slice_make(NULL, 0);
	return dir;
}

/* Emits the range read of @op's directory page (after the cursor). */
static int start_range(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_range_out *r = kv_node__range_push(out);
	if (r == NULL)
		return -ENOMEM;
	struct kv_slice after = op->list->cursor.n ? kv_buf_slice(&op->list->cursor)
						   : kv_slice_make(NULL, 0);
	int rc = kv_skey_dir_range(&r->start, &r->end, kv_buf_slice(&op->key), after);
	if (rc != 0) {
		kv_buf_release(&r->start);
		kv_buf_release(&r->end);
		out->ranges.n--;
		return rc;
	}
	op->storage_op = kv_node__id(node);
	r->op = op->storage_op;
	r->max = op->list->max;
	op->state = ST_READ;
	return 0;
}

/*
 * Turns a range read of directory @dir into a page: decodes each storage
 * key, keeps the direct children (keys.h: a position collision could let
 * grandchildren in), decodes their sets and drops the bodies. A corrupt
 * stored set fails the page; an undecodable storage key is skipped.
 */
static int page_from_range(struct kv_slice dir, uint32_t max, const struct kv_input *in,
			   struct list_page *pg)
{
	if (in->range.status != 0)
		return in->range.status;
	uint8_t key[KV_KEY_MAX];
	size_t prefix = dir.n + 1; /* dir + "/" */
	for (size_t i = 0; i < in->range.n; i++) {
		const struct kv_node_range_entry *e = &in->range.entries[i];
		uint64_t pos;
		size_t klen;
		if (kv_skey_decode(e->key, &pos, key, &klen) < 0)
			continue;
		struct kv_slice k = kv_slice_make(key, klen);
		if (!kv_key_is_child(dir, k) || klen <= prefix)
			continue;
		struct kv_dvv set = KV_DVV_INIT;
		/* A listing never carries bodies (doc/protocol.md §5.7). */
		int rc = kv_dvv_decode_heads(e->value, &set);
		if (rc == 0)
			rc = page_push(pg, kv_slice_make(key + prefix, klen - prefix), &set);
		kv_dvv_release(&set);
		if (rc != 0)
			return rc;
	}
	pg->filled = in->range.n >= max && pg->n > 0;
	return 0;
}

/*
 * Answers @origin with a LIST_REPLY or REPLICA_LIST_REPLY holding @pg's
 * entries (their sets are moved out) and, with @more, the cursor @cursor.
 */
static int answer_page(struct kv_effects *out, const struct kv_node_origin *origin,
		       uint16_t type, struct list_page *pg, bool more, struct kv_slice cursor)
{
	struct kv_node_msg_out *m = kv_node__answer(out, origin, type);
	if (m == NULL)
		return origin->kind == ORIGIN_NONE ? 0 : -ENOMEM;
	size_t total = more ? cursor.n : 0;
	for (size_t i = 0; i < pg->n; i++)
		total += pg->names[i].n;
	/* Reserved once: the appends below never move the bytes behind the slices. */
	if (kv_buf_reserve(&m->bytes, total) != 0)
		return -ENOMEM;
	for (size_t i = 0; i < pg->n; i++) {
		size_t off = m->bytes.n;
		if (kv_buf_append(&m->bytes, pg->names[i].p, pg->names[i].n) != 0 ||
		    kv_msg_list_push(&m->msg, kv_slice_make(m->bytes.p + off, pg->names[i].n),
				     &pg->sets[i]) != 0)
			return -ENOMEM;
	}
	if (more) {
		size_t off = m->bytes.n;
		if (kv_buf_append(&m->bytes, cursor.p, cursor.n) != 0)
			return -ENOMEM;
		m->msg.list_reply.next_cursor = kv_slice_make(m->bytes.p + off, cursor.n);
		m->msg.list_reply.flags = KV_MSG_LIST_F_MORE;
	}
	return 0;
}

static int list_args(struct kv_node_op *op, const struct kv_msg_list *l)
{
	op->list = calloc(1, sizeof *op->list);
	if (op->list == NULL)
		return -ENOMEM;
	op->list->max = l->max_entries;
	op->list->flags = l->flags;
	if (kv_buf_append(&op->list->cursor, l->cursor.p, l->cursor.n) != 0)
		return -ENOMEM;
	return 0;
}

/* Checks a LIST / REPLICA_LIST; answers and returns false when it is bad. */
static bool list_valid(struct kv_effects *out, const struct kv_node_origin *origin,
		       const struct kv_msg_list *l)
{
	if (l->dir.n + 1 > KV_KEY_MAX || l->cursor.n > KV_KEY_MAX) {
		kv_node__answer_error(out, origin, KV_ETOOBIG, "directory or cursor too long");
		return false;
	}
	if (l->max_entries == 0 || l->max_entries > KV_MSG_MAX_LIST_ENTRIES_DEFAULT) {
		kv_node__answer_error(out, origin, KV_EINVAL, "max_entries out of range");
		return false;
	}
	return true;
}

/* ---- A peer's REPLICA_LIST --------------------------------------------- */

int kv_node__replica_list_request(struct kv_node *node, const struct kv_node_origin *origin,
				  const struct kv_msg *msg, struct kv_effects *out)
{
	const struct kv_msg_list *l = &msg->list;
	if (!list_valid(out, origin, l))
		return 0;
	struct kv_node_op *op = kv_node__op_new(node, OP_REPLICA_LIST, origin, dir_norm(l->dir));
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	int rc = list_args(op, l);
	if (rc == 0)
		rc = start_range(node, op, out);
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, kv_strerror(rc));
		kv_node__op_finish(node, op, out);
		return rc == -ENOMEM ? rc : 0;
	}
	return 0;
}

/* ---- LIST at the receiving node ----------------------------------------- */

static uint32_t self_slot(const struct kv_node *node, const struct kv_node_op *op)
{
	for (uint32_t i = 0; i < op->npref; i++)
		if (op->pref[i] == node->self_id)
			return i;
	return 0;
}

static int cmp_buf(const struct kv_buf *a, const struct kv_buf *b)
{
	return kv_slice_cmp(kv_buf_slice(a), kv_buf_slice(b));
}

/*
 * Merges the answered pages by name (DESIGN §7 "Listing") and answers: the
 * join of each name's sets, tombstone-only names hidden, at most max
 * entries, and never past the smallest last name among the full pages — a
 * replica that filled its page may hold names past its last that the others
 * lack, so a later page must start there.
 */
/* Read repairs one LIST starts at most; the rest wait for the next listing. */
#define LIST_REPAIR_MAX 32

/*
 * Read repair of name @name of the directory op->key (DESIGN §5 "Read
 * repair"): the pages carry no bodies, so the merged entry cannot be
 * written back as it is; a read of the full key from every replica
 * (kv_node__repair_key) joins and repairs whoever is behind.
 */
static int repair_name(struct kv_node *node, struct kv_node_op *op, const struct kv_buf *name,
		       struct kv_effects *out)
{
	struct kv_buf key = KV_BUF_INIT;
	int rc = 0;
	if (op->key.n + 1 + name->n > KV_KEY_MAX)
		return 0; /* cannot be a stored key */
	if (kv_buf_append(&key, op->key.p, op->key.n) != 0 || kv_buf_append(&key, "/", 1) != 0 ||
	    kv_buf_append(&key, name->p, name->n) != 0)
		rc = -ENOMEM;
	if (rc == 0)
		rc = kv_node__repair_key(node, kv_buf_slice(&key),
					 op->list->deadline_ns + node->request_timeout_ns, out);
	kv_buf_release(&key);
	return rc;
}

static int merge_and_answer(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_list *l = op->list;
	const struct kv_buf *limit = NULL;
	for (uint32_t i = 0; i < op->npref; i++) {
		const struct list_page *pg = &l->pages[i];
		if (op->answered[i] && pg->filled &&
		    (limit == NULL || cmp_buf(&pg->names[pg->n - 1], limit) < 0))
			limit = &pg->names[pg->n - 1];
	}
	struct list_page res;
	memset(&res, 0, sizeof res);
	size_t idx[KV_NODE_MAX_PEERS] = { 0 };
	const struct kv_buf *last = NULL; /* the last name merged, shown or hidden */
	bool more = limit != NULL;
	int rc = 0, repairs = 0;
	while (rc == 0) {
		const struct kv_buf *name = NULL;
		for (uint32_t i = 0; i < op->npref; i++) {
			const struct list_page *pg = &l->pages[i];
			if (op->answered[i] && idx[i] < pg->n &&
			    (name == NULL || cmp_buf(&pg->names[idx[i]], name) < 0))
				name = &pg->names[idx[i]];
		}
		if (name == NULL || (limit != NULL && cmp_buf(name, limit) > 0))
			break;
		if (res.n == l->max) {
			more = true;
			break;
		}
		struct kv_dvv joined = KV_DVV_INIT;
		const struct kv_dvv *mine[KV_NODE_MAX_PEERS] = { NULL }; /* per slot, or absent */
		for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
			struct list_page *pg = &l->pages[i];
			if (op->answered[i] && idx[i] < pg->n && cmp_buf(&pg->names[idx[i]], name) == 0) {
				rc = kv_dvv_join(&joined, &pg->sets[idx[i]]);
				mine[i] = &pg->sets[idx[i]];
				idx[i]++;
			}
		}
		last = name;
		/* Read repair: an answered replica without the name, or with a
		 * set other than the join, is behind. Every page covers the
		 * names up to the limit (a page that is not full has no more). */
		bool behind = false;
		for (uint32_t i = 0; rc == 0 && i < op->npref; i++)
			if (op->answered[i] && (mine[i] == NULL || !kv_dvv_equal(mine[i], &joined)))
				behind = true;
		if (rc == 0 && behind && repairs < LIST_REPAIR_MAX) {
			repairs++;
			rc = repair_name(node, op, name, out);
		}
		/* DESIGN §4 "Deletes": tombstones are hidden after the join. */
		if (rc == 0)
			rc = kv_dvv_hide_tombstones(&joined, (l->flags & KV_MSG_LIST_F_TOMBSTONES) != 0);
		/* doc/protocol.md §5.7: an entry has at most 64 versions. */
		if (rc == 0 && joined.n > KV_DVV_MAX_SIBLINGS)
			rc = KV_ESIBLINGS;
		if (rc == 0 && joined.n > 0)
			rc = page_push(&res, kv_buf_slice(name), &joined);
		kv_dvv_release(&joined);
	}
	if (last == NULL)
		more = false;
	if (rc == 0)
		rc = answer_page(out, &op->origin, KV_MSG_LIST_REPLY, &res, more,
				 more ? kv_buf_slice(last) : kv_slice_make(NULL, 0));
	if (rc == KV_ESIBLINGS)
		kv_node__answer_error(out, &op->origin, rc,
				      "an entry has more than 64 live versions: resolve some of them first");
	else if (rc != 0)
		kv_node__answer_error(out, &op->origin, rc, kv_strerror(rc));
	page_release(&res);
	return rc;
}

/* Slot @slot's page is in: at R pages, merge, answer and end. */
static int got_page(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
		    struct kv_effects *out)
{
	op->answered[slot] = true;
	op->nanswered++;
	if (op->nanswered < op->needed)
		return 0;
	int rc = merge_and_answer(node, op, out);
	op->replied = true;
	kv_node__op_finish(node, op, out); /* later pages are ignored */
	return rc == -ENOMEM ? rc : 0;
}

/*
 * A replica cannot give its page (an ERROR, a failed local read). When
 * fewer than R replicas are left to answer, the client hears it now.
 */
static int failed_page(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	op->nfailed++;
	if (op->npref - op->nfailed < op->needed) {
		kv_node__answer_error(out, &op->origin, KV_EQUORUM,
				      "fewer than R replicas can answer: the others answered "
				      "with an error");
		op->replied = true;
		kv_node__op_finish(node, op, out);
	}
	return 0;
}

int kv_node__list_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			  const struct kv_msg *msg, struct kv_effects *out)
{
	const struct kv_msg_list *l = &msg->list;
	if (!list_valid(out, origin, l))
		return 0;
	if (l->r > node->n) {
		kv_node__answer_error(out, origin, KV_EINVAL, "r above the replica count");
		return 0;
	}
	/* The children of dir are placed by dir itself (DESIGN §2): their
	 * replicas are those of the key dir + "/". */
	struct kv_slice dir = dir_norm(l->dir);
	uint8_t child[KV_KEY_MAX];
	if (dir.n > 0)
		memcpy(child, dir.p, dir.n);
	child[dir.n] = '/';
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, kv_slice_make(child, dir.n + 1), pref, KV_NODE_MAX_PEERS);
	uint32_t needed = l->r ? l->r : node->r;
	if (np < (int)needed) {
		kv_node__answer_error(out, origin, KV_EQUORUM, "fewer replicas than R");
		return 0;
	}
	struct kv_node_op *op = kv_node__op_new(node, OP_LIST, origin, dir);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	memcpy(op->pref, pref, sizeof pref);
	op->npref = (uint32_t)np;
	op->needed = needed;
	op->state = ST_WAIT;
	int rc = list_args(op, l);
	if (rc == 0) {
		op->list->deadline_ns = kv_node__deadline(node, now_ns, l->timeout_ms);
		rc = kv_node__timer(node, op, op->list->deadline_ns, out);
	}
	for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
		if (op->pref[i] == node->self_id) {
			rc = start_range(node, op, out);
			continue;
		}
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m = kv_node__send(out, op->pref[i], req, KV_MSG_REPLICA_LIST);
		if (m == NULL || kv_buf_reserve(&m->bytes, dir.n + l->cursor.n) != 0) {
			rc = -ENOMEM;
			break;
		}
		struct kv_msg_list *rl = &m->msg.list;
		rl->max_entries = l->max_entries;
		rl->timeout_ms = l->timeout_ms;
		/* Reserved above: the second append does not move the first. */
		(void)kv_buf_append(&m->bytes, dir.p, dir.n);
		(void)kv_buf_append(&m->bytes, l->cursor.p, l->cursor.n);
		rl->dir = kv_slice_make(m->bytes.p, dir.n);
		rl->cursor = kv_slice_make(m->bytes.p + dir.n, l->cursor.n);
		op->peer_req[i] = req;
	}
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, kv_strerror(rc));
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return rc == -ENOMEM ? rc : 0;
	}
	return 0;
}

int kv_node__list_on_range(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out)
{
	op->state = ST_WAIT;
	struct kv_slice dir = kv_buf_slice(&op->key);
	if (op->kind == OP_REPLICA_LIST) {
		struct list_page pg;
		memset(&pg, 0, sizeof pg);
		int rc = page_from_range(dir, op->list->max, in, &pg);
		if (rc == 0) {
			bool more = pg.filled;
			struct kv_slice cursor = more ? kv_buf_slice(&pg.names[pg.n - 1])
						      : kv_slice_make(NULL, 0);
			rc = answer_page(out, &op->origin, KV_MSG_REPLICA_LIST_REPLY, &pg, more, cursor);
		}
		if (rc != 0)
			kv_node__answer_error(out, &op->origin, rc, "cannot list the directory");
		page_release(&pg);
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return rc == -ENOMEM ? rc : 0;
	}
	uint32_t slot = self_slot(node, op);
	struct list_page *pg = &op->list->pages[slot];
	int rc = page_from_range(dir, op->list->max, in, pg);
	if (rc != 0) {
		page_release(pg); /* an unreadable local page does not count toward R */
		if (rc == -ENOMEM)
			return rc;
		return failed_page(node, op, out);
	}
	return got_page(node, op, slot, out);
}

int kv_node__list_on_reply(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
			   const struct kv_msg *msg, struct kv_effects *out)
{
	if (op->answered[slot])
		return 0;
	if (msg->type == KV_MSG_ERROR)
		return failed_page(node, op, out); /* does not count toward R */
	if (msg->type != KV_MSG_REPLICA_LIST_REPLY)
		return 0;
	const struct kv_msg_list_reply *r = &msg->list_reply;
	struct list_page *pg = &op->list->pages[slot];
	for (size_t i = 0; i < r->n; i++) {
		struct kv_dvv set = KV_DVV_INIT;
		int rc = kv_dvv_copy(&set, &r->entries[i].set);
		if (rc == 0)
			rc = page_push(pg, r->entries[i].name, &set);
		kv_dvv_release(&set);
		if (rc != 0) {
			page_release(pg);
			return rc;
		}
	}
	pg->filled = (r->flags & KV_MSG_LIST_F_MORE) != 0 && pg->n > 0;
	return got_page(node, op, slot, out);
}

int kv_node__list_on_timer(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	if (!op->replied)
		kv_node__answer_error(out, &op->origin, KV_ETIMEDOUT,
				      "fewer than R replicas answered in time");
	op->replied = true;
	kv_node__op_finish(node, op, out);
	return 0;
}
