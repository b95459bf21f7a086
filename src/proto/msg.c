/*
 * msg.c - the kvfs message set: lifecycle, validation, encoding, decoding.
 *
 * One rule book: validate() holds every rule a field must obey, and both the
 * encoder (before writing) and the decoder (after parsing) apply it, so
 * whatever encodes decodes and the other way round. Bodies are canonical
 * (minimal varints, no spare bits, no trailing bytes): encode(decode(b)) == b.
 * Layouts: doc/protocol.md §4-§7.
 */
#include "proto/msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/coding.h"
#include "util/error.h"

/* ---- the type table (doc/protocol.md §3.2) ------------------------------------ */

enum shape {
	SH_UNKNOWN,
	SH_HELLO,
	SH_CHALLENGE,
	SH_AUTH,
	SH_WELCOME,
	SH_ERROR,
	SH_GET,
	SH_SET_REPLY,
	SH_PUT,
	SH_PUT_REPLY,
	SH_LIST,
	SH_LIST_REPLY,
	SH_EMPTY,
	SH_STATS_REPLY,
	SH_REPLICA_WRITE,
	SH_ACK,
	SH_CHUNK,
	SH_CHUNK_PUT_REPLY,
	SH_CHUNK_DATA,
	SH_CHUNK_KEYS,
	SH_COUNT,
	SH_GC,
	SH_GC_REPLY,
};

struct type_info {
	uint16_t type;
	uint16_t reply;
	enum shape shape;
	const char *name;
};

static const struct type_info types[] = {
	{ KV_MSG_HELLO, KV_MSG_NONE, SH_HELLO, "HELLO" },
	{ KV_MSG_CHALLENGE, KV_MSG_NONE, SH_CHALLENGE, "CHALLENGE" },
	{ KV_MSG_AUTH, KV_MSG_NONE, SH_AUTH, "AUTH" },
	{ KV_MSG_WELCOME, KV_MSG_NONE, SH_WELCOME, "WELCOME" },
	{ KV_MSG_ERROR, KV_MSG_NONE, SH_ERROR, "ERROR" },
	{ KV_MSG_GET, KV_MSG_GET_REPLY, SH_GET, "GET" },
	{ KV_MSG_GET_REPLY, KV_MSG_NONE, SH_SET_REPLY, "GET_REPLY" },
	{ KV_MSG_PUT, KV_MSG_PUT_REPLY, SH_PUT, "PUT" },
	{ KV_MSG_PUT_REPLY, KV_MSG_NONE, SH_PUT_REPLY, "PUT_REPLY" },
	{ KV_MSG_DELETE, KV_MSG_DELETE_REPLY, SH_PUT, "DELETE" },
	{ KV_MSG_DELETE_REPLY, KV_MSG_NONE, SH_PUT_REPLY, "DELETE_REPLY" },
	{ KV_MSG_LIST, KV_MSG_LIST_REPLY, SH_LIST, "LIST" },
	{ KV_MSG_LIST_REPLY, KV_MSG_NONE, SH_LIST_REPLY, "LIST_REPLY" },
	{ KV_MSG_STATS, KV_MSG_STATS_REPLY, SH_EMPTY, "STATS" },
	{ KV_MSG_STATS_REPLY, KV_MSG_NONE, SH_STATS_REPLY, "STATS_REPLY" },
	{ KV_MSG_FORWARD_PUT, KV_MSG_FORWARD_PUT_REPLY, SH_PUT, "FORWARD_PUT" },
	{ KV_MSG_FORWARD_PUT_REPLY, KV_MSG_NONE, SH_PUT_REPLY, "FORWARD_PUT_REPLY" },
	{ KV_MSG_REPLICA_WRITE, KV_MSG_REPLICA_WRITE_ACK, SH_REPLICA_WRITE, "REPLICA_WRITE" },
	{ KV_MSG_REPLICA_WRITE_ACK, KV_MSG_NONE, SH_ACK, "REPLICA_WRITE_ACK" },
	{ KV_MSG_REPLICA_READ, KV_MSG_REPLICA_READ_REPLY, SH_GET, "REPLICA_READ" },
	{ KV_MSG_REPLICA_READ_REPLY, KV_MSG_NONE, SH_SET_REPLY, "REPLICA_READ_REPLY" },
	{ KV_MSG_REPLICA_LIST, KV_MSG_REPLICA_LIST_REPLY, SH_LIST, "REPLICA_LIST" },
	{ KV_MSG_REPLICA_LIST_REPLY, KV_MSG_NONE, SH_LIST_REPLY, "REPLICA_LIST_REPLY" },
	{ KV_MSG_READ_REPAIR, KV_MSG_READ_REPAIR_ACK, SH_REPLICA_WRITE, "READ_REPAIR" },
	{ KV_MSG_READ_REPAIR_ACK, KV_MSG_NONE, SH_ACK, "READ_REPAIR_ACK" },
	{ KV_MSG_FORWARD_PUT_ACCEPTED, KV_MSG_NONE, SH_EMPTY, "FORWARD_PUT_ACCEPTED" },
	{ KV_MSG_CHUNK_PUT, KV_MSG_CHUNK_PUT_REPLY, SH_CHUNK, "CHUNK_PUT" },
	{ KV_MSG_CHUNK_PUT_REPLY, KV_MSG_NONE, SH_CHUNK_PUT_REPLY, "CHUNK_PUT_REPLY" },
	{ KV_MSG_CHUNK_GET, KV_MSG_CHUNK_GET_REPLY, SH_CHUNK, "CHUNK_GET" },
	{ KV_MSG_CHUNK_GET_REPLY, KV_MSG_NONE, SH_CHUNK_DATA, "CHUNK_GET_REPLY" },
	{ KV_MSG_CHUNK_TOUCH, KV_MSG_CHUNK_TOUCH_REPLY, SH_CHUNK_KEYS, "CHUNK_TOUCH" },
	{ KV_MSG_CHUNK_TOUCH_REPLY, KV_MSG_NONE, SH_COUNT, "CHUNK_TOUCH_REPLY" },
	{ KV_MSG_REPLICA_CHUNK_PUT, KV_MSG_REPLICA_CHUNK_PUT_ACK, SH_CHUNK, "REPLICA_CHUNK_PUT" },
	{ KV_MSG_REPLICA_CHUNK_PUT_ACK, KV_MSG_NONE, SH_CHUNK_PUT_REPLY, "REPLICA_CHUNK_PUT_ACK" },
	{ KV_MSG_REPLICA_CHUNK_GET, KV_MSG_REPLICA_CHUNK_GET_REPLY, SH_CHUNK, "REPLICA_CHUNK_GET" },
	{ KV_MSG_REPLICA_CHUNK_GET_REPLY, KV_MSG_NONE, SH_CHUNK_DATA, "REPLICA_CHUNK_GET_REPLY" },
	{ KV_MSG_CHUNK_MARK, KV_MSG_CHUNK_MARK_ACK, SH_CHUNK_KEYS, "CHUNK_MARK" },
	{ KV_MSG_CHUNK_MARK_ACK, KV_MSG_NONE, SH_COUNT, "CHUNK_MARK_ACK" },
	{ KV_MSG_GC_MARK, KV_MSG_GC_MARK_DONE, SH_GC, "GC_MARK" },
	{ KV_MSG_GC_MARK_DONE, KV_MSG_NONE, SH_GC_REPLY, "GC_MARK_DONE" },
	{ KV_MSG_GC_SWEEP, KV_MSG_GC_SWEEP_DONE, SH_GC, "GC_SWEEP" },
	{ KV_MSG_GC_SWEEP_DONE, KV_MSG_NONE, SH_GC_REPLY, "GC_SWEEP_DONE" },
	{ KV_MSG_GC, KV_MSG_GC_REPLY, SH_GC, "GC" },
	{ KV_MSG_GC_REPLY, KV_MSG_NONE, SH_GC_REPLY, "GC_REPLY" },
};

static const struct type_info *type_find(uint16_t type)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].type == type)
			return &types[i];
	return NULL;
}

static enum shape shape_of(uint16_t type)
{
	const struct type_info *t = type_find(type);
	return t ? t->shape : SH_UNKNOWN;
}

const char *kv_msg_type_name(uint16_t type)
{
	const struct type_info *t = type_find(type);
	return t ? t->name : NULL;
}

bool kv_msg_type_known(uint16_t type)
{
	return type_find(type) != NULL;
}

bool kv_msg_type_is_handshake(uint16_t type)
{
	return (type >= KV_MSG_HELLO && type <= KV_MSG_WELCOME) || type == KV_MSG_ERROR;
}

uint16_t kv_msg_reply_type(uint16_t type)
{
	const struct type_info *t = type_find(type);
	return t ? t->reply : KV_MSG_NONE;
}

void kv_msg_limits_default(struct kv_msg_limits *lim)
{
	lim->max_key = KV_MSG_KEY_MAX;
	lim->max_value = KV_DVV_MAX_VALUE_DEFAULT;
	lim->max_meta = KV_DVV_MAX_META_DEFAULT;
	lim->max_reply_siblings = KV_DVV_MAX_SIBLINGS;
	lim->max_list_entries = KV_MSG_MAX_LIST_ENTRIES_DEFAULT;
	lim->max_name = KV_MSG_KEY_MAX;
}

/* ---- lifecycle ------------------------------------------------------------------ */

void kv_msg_init(struct kv_msg *m, uint16_t type)
{
	memset(m, 0, sizeof *m);
	m->type = type;
	switch (shape_of(type)) {
	case SH_SET_REPLY:
		kv_dvv_init(&m->set_reply.set);
		break;
	case SH_PUT:
		kv_ctx_init(&m->put.context);
		break;
	case SH_PUT_REPLY:
		kv_ctx_init(&m->put_reply.context);
		break;
	case SH_REPLICA_WRITE:
		kv_dvv_init(&m->replica_write.set);
		break;
	default:
		break; /* zeroed is empty */
	}
}

void kv_msg_release(struct kv_msg *m)
{
	switch (shape_of(m->type)) {
	case SH_SET_REPLY:
		kv_dvv_release(&m->set_reply.set);
		break;
	case SH_PUT:
		kv_ctx_release(&m->put.context);
		break;
	case SH_PUT_REPLY:
		kv_ctx_release(&m->put_reply.context);
		break;
	case SH_LIST_REPLY:
		for (size_t i = 0; i < m->list_reply.n; i++)
			kv_dvv_release(&m->list_reply.entries[i].set);
		free(m->list_reply.entries);
		break;
	case SH_STATS_REPLY:
		free(m->stats_reply.stats);
		break;
	case SH_REPLICA_WRITE:
		kv_dvv_release(&m->replica_write.set);
		break;
	default:
		break;
	}
	kv_msg_init(m, KV_MSG_NONE);
}

/* Grows an array of @size-byte items to hold one more. Returns 0 or -ENOMEM. */
static int grow(void **items, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return 0;
	size_t want = *cap ? *cap * 2 : 8;
	if (want > SIZE_MAX / size)
		return -ENOMEM;
	void *p = realloc(*items, want * size);
	if (!p)
		return -ENOMEM;
	*items = p;
	*cap = want;
	return 0;
}

int kv_msg_list_push(struct kv_msg *m, struct kv_slice name, struct kv_dvv *set)
{
	struct kv_msg_list_reply *r = &m->list_reply;
	if (shape_of(m->type) != SH_LIST_REPLY)
		return KV_EINVAL;
	void *items = r->entries;
	int rc = grow(&items, r->n, &r->cap, sizeof r->entries[0]);
	r->entries = items;
	if (rc)
		return rc;
	struct kv_msg_list_entry *e = &r->entries[r->n++];
	e->name = name;
	kv_dvv_init(&e->set);
	kv_dvv_swap(&e->set, set);
	return 0;
}

int kv_msg_stats_push(struct kv_msg *m, struct kv_slice name, uint64_t value)
{
	struct kv_msg_stats_reply *r = &m->stats_reply;
	if (shape_of(m->type) != SH_STATS_REPLY)
		return KV_EINVAL;
	void *items = r->stats;
	int rc = grow(&items, r->n, &r->cap, sizeof r->stats[0]);
	r->stats = items;
	if (rc)
		return rc;
	r->stats[r->n].name = name;
	r->stats[r->n].value = value;
	r->n++;
	return 0;
}

/* ---- validation: the rules of doc/protocol.md §4-§7 ------------------------------ */

static const struct kv_msg_limits *limits_or_default(const struct kv_msg_limits *lim,
						     struct kv_msg_limits *tmp)
{
	if (lim)
		return lim;
	kv_msg_limits_default(tmp);
	return tmp;
}

/* A node id or cluster name: 1..64 bytes of [A-Za-z0-9._-] (doc/placement.md §1). */
static bool valid_id(struct kv_slice s)
{
	if (s.n == 0 || s.n > KV_MSG_NAME_ID_MAX)
		return false;
	for (size_t i = 0; i < s.n; i++) {
		uint8_t c = s.p[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

static int check_len(size_t n, size_t max)
{
	return n > max ? KV_ETOOBIG : 0;
}

static int validate_list_reply(const struct kv_msg *m, const struct kv_msg_limits *lim)
{
	const struct kv_msg_list_reply *r = &m->list_reply;
	if (r->flags & ~KV_MSG_LIST_F_MORE)
		return KV_EINVAL;
	bool more = r->flags & KV_MSG_LIST_F_MORE;
	if (more != (r->next_cursor.n > 0))
		return KV_EINVAL; /* MORE comes with a cursor, and only then */
	if (check_len(r->next_cursor.n, lim->max_name) || r->n > lim->max_list_entries)
		return KV_ETOOBIG;
	for (size_t i = 0; i < r->n; i++) {
		const struct kv_msg_list_entry *e = &r->entries[i];
		if (e->name.n == 0)
			return KV_EINVAL;
		if (check_len(e->name.n, lim->max_name))
			return KV_ETOOBIG;
		if (i > 0 && kv_slice_cmp(r->entries[i - 1].name, e->name) >= 0)
			return KV_EINVAL; /* strictly ascending: sorted, no duplicates */
		if (m->type == KV_MSG_LIST_REPLY && e->set.n > lim->max_reply_siblings)
			return KV_ETOOBIG;
		for (size_t k = 0; k < e->set.n; k++)
			if (e->set.v[k].body.n != 0)
				return KV_EINVAL; /* a listing never carries bodies */
	}
	return 0;
}

static int validate_put(const struct kv_msg *m, const struct kv_msg_limits *lim)
{
	const struct kv_msg_put *p = &m->put;
	if (m->type == KV_MSG_DELETE) {
		if (p->flags || p->meta.n || p->body.n)
			return KV_EINVAL;
	} else if (p->flags & ~KV_MSG_PUT_F_TOMBSTONE) {
		return KV_EINVAL;
	}
	if ((p->flags & KV_MSG_PUT_F_TOMBSTONE) && p->body.n)
		return KV_EINVAL;
	if (m->type == KV_MSG_FORWARD_PUT) {
		if (p->hops < 1 || p->hops > KV_MSG_HOPS_MAX)
			return KV_EINVAL;
	} else if (p->hops) {
		return KV_EINVAL;
	}
	if (p->w > KV_MSG_QUORUM_MAX)
		return KV_EINVAL;
	if (check_len(p->key.n, lim->max_key) || check_len(p->meta.n, lim->max_meta) ||
	    check_len(p->body.n, lim->max_value))
		return KV_ETOOBIG;
	return 0;
}

static int validate_chunk(const struct kv_msg *m, const struct kv_msg_limits *lim)
{
	const struct kv_msg_chunk *c = &m->chunk;
	bool put = m->type == KV_MSG_CHUNK_PUT || m->type == KV_MSG_REPLICA_CHUNK_PUT;
	if (c->w > KV_MSG_QUORUM_MAX || (m->type != KV_MSG_CHUNK_PUT && c->w != 0))
		return KV_EINVAL;
	if (!put && c->data.n != 0)
		return KV_EINVAL;
	if (check_len(c->key.n, lim->max_key) || check_len(c->data.n, lim->max_value))
		return KV_ETOOBIG;
	return 0;
}

/* Returns 0, KV_EINVAL (a rule broken) or KV_ETOOBIG (a limit exceeded). */
static int validate(const struct kv_msg *m, const struct kv_msg_limits *lim)
{
	switch (shape_of(m->type)) {
	case SH_HELLO: {
		const struct kv_msg_hello *h = &m->hello;
		if (h->min_version < 1 || h->min_version > h->max_version)
			return KV_EINVAL;
		if (h->role == KV_MSG_ROLE_CLIENT) {
			if (h->node_id.n)
				return KV_EINVAL;
		} else if (h->role != KV_MSG_ROLE_NODE || !valid_id(h->node_id)) {
			return KV_EINVAL;
		}
		return valid_id(h->cluster) ? 0 : KV_EINVAL;
	}
	case SH_CHALLENGE:
		if (m->challenge.version < 1 || !valid_id(m->challenge.node_id))
			return KV_EINVAL;
		return 0;
	case SH_AUTH:
	case SH_EMPTY:
	case SH_SET_REPLY:
		if (m->type == KV_MSG_GET_REPLY && m->set_reply.set.n > lim->max_reply_siblings)
			return KV_ETOOBIG;
		return 0;
	case SH_WELCOME: {
		const struct kv_msg_welcome *w = &m->welcome;
		if (w->n < 1 || w->n > KV_MSG_QUORUM_MAX || w->r < 1 || w->r > w->n ||
		    w->w < 1 || w->w > w->n)
			return KV_EINVAL;
		return 0;
	}
	case SH_ERROR:
		if (m->error.code >= 0)
			return KV_EINVAL;
		return check_len(m->error.text.n, KV_MSG_ERROR_TEXT_MAX);
	case SH_GET:
		if (m->get.flags & ~(KV_MSG_GET_F_HEAD | KV_MSG_GET_F_TOMBSTONES) || m->get.r > KV_MSG_QUORUM_MAX)
			return KV_EINVAL;
		return check_len(m->get.key.n, lim->max_key);
	case SH_PUT:
		return validate_put(m, lim);
	case SH_PUT_REPLY:
		if (m->put_reply.flags & ~KV_MSG_PUT_REPLY_F_RETRY || m->put_reply.dot.counter == 0)
			return KV_EINVAL;
		/* The returned context is the resulting set's: it covers the dot. */
		if (!kv_ctx_covers(&m->put_reply.context, m->put_reply.dot))
			return KV_EINVAL;
		return 0;
	case SH_LIST:
		if (m->list.flags & ~(m->type == KV_MSG_LIST ? KV_MSG_LIST_F_TOMBSTONES : 0) ||
		    m->list.r > KV_MSG_QUORUM_MAX ||
		    m->list.max_entries < 1)
			return KV_EINVAL;
		if (check_len(m->list.dir.n, lim->max_key) ||
		    check_len(m->list.cursor.n, lim->max_name) ||
		    m->list.max_entries > lim->max_list_entries)
			return KV_ETOOBIG;
		return 0;
	case SH_LIST_REPLY:
		return validate_list_reply(m, lim);
	case SH_STATS_REPLY: {
		const struct kv_msg_stats_reply *s = &m->stats_reply;
		if (s->n > KV_MSG_STATS_MAX)
			return KV_ETOOBIG;
		for (size_t i = 0; i < s->n; i++) {
			if (s->stats[i].name.n == 0)
				return KV_EINVAL;
			if (check_len(s->stats[i].name.n, KV_MSG_STAT_NAME_MAX))
				return KV_ETOOBIG;
			if (i > 0 && kv_slice_cmp(s->stats[i - 1].name, s->stats[i].name) >= 0)
				return KV_EINVAL;
		}
		return 0;
	}
	case SH_REPLICA_WRITE:
		return check_len(m->replica_write.key.n, lim->max_key);
	case SH_ACK:
		return m->replica_ack.nversions > KV_DVV_MAX_VERSIONS ? KV_EINVAL : 0;
	case SH_CHUNK:
		return validate_chunk(m, lim);
	case SH_CHUNK_PUT_REPLY:
		return m->chunk_put_reply.flags & ~KV_MSG_CHUNK_F_EXISTED ? KV_EINVAL : 0;
	case SH_CHUNK_DATA:
		return check_len(m->chunk_data.data.n, lim->max_value);
	case SH_CHUNK_KEYS: {
		const struct kv_msg_chunk_keys *k = &m->chunk_keys;
		uint8_t allowed = m->type == KV_MSG_CHUNK_TOUCH
					  ? KV_MSG_CHUNK_F_TOUCH
					  : KV_MSG_CHUNK_F_TOUCH | KV_MSG_CHUNK_F_MARK;
		if (k->flags & ~allowed || k->flags == 0 || k->n == 0)
			return KV_EINVAL;
		if (((k->flags & KV_MSG_CHUNK_F_MARK) != 0) != (k->epoch != 0))
			return KV_EINVAL; /* an epoch comes with MARK, and only then */
		return k->n > KV_MSG_CHUNK_KEYS_MAX ? KV_ETOOBIG : 0;
	}
	case SH_COUNT:
		return 0;
	case SH_GC:
		if (m->type == KV_MSG_GC ? m->gc.epoch != 0 : m->gc.epoch == 0)
			return KV_EINVAL;
		if (m->type == KV_MSG_GC_MARK && m->gc.grace_s != 0)
			return KV_EINVAL;
		return 0;
	case SH_GC_REPLY:
		return 0;
	case SH_UNKNOWN:
		break;
	}
	return KV_EINVAL;
}

/* ---- encoding ------------------------------------------------------------------- */

static int put_lenbytes(struct kv_buf *out, struct kv_slice s)
{
	return kv_buf_append_lenbytes(out, s);
}

static int put_ctx(struct kv_buf *out, const struct kv_ctx *c)
{
	/* Contexts are small; encode aside to learn the length prefix. */
	struct kv_buf tmp = KV_BUF_INIT;
	int rc = kv_ctx_encode(c, &tmp);
	if (rc == 0)
		rc = put_lenbytes(out, kv_buf_slice(&tmp));
	kv_buf_release(&tmp);
	return rc;
}

/* A set with a length prefix (list entries: bodies are empty, sets small). */
static int put_set_prefixed(struct kv_buf *out, const struct kv_dvv *s)
{
	struct kv_buf tmp = KV_BUF_INIT;
	int rc = kv_dvv_encode(s, &tmp);
	if (rc == 0)
		rc = put_lenbytes(out, kv_buf_slice(&tmp));
	kv_buf_release(&tmp);
	return rc;
}

static int encode_put(const struct kv_msg *m, struct kv_buf *out)
{
	const struct kv_msg_put *p = &m->put;
	int rc = 0;
	if (m->type == KV_MSG_FORWARD_PUT)
		rc = kv_buf_append_u8(out, p->hops);
	if (!rc)
		rc = kv_buf_append_u8(out, p->flags);
	if (!rc)
		rc = kv_buf_append_u8(out, p->w);
	if (!rc)
		rc = kv_buf_append_varint(out, p->timeout_ms);
	if (!rc)
		rc = kv_buf_append(out, p->request_id, KV_REQUEST_ID_LEN);
	if (!rc)
		rc = put_lenbytes(out, p->key);
	if (!rc)
		rc = put_ctx(out, &p->context);
	if (!rc && m->type != KV_MSG_DELETE) {
		rc = put_lenbytes(out, p->meta);
		if (!rc)
			rc = put_lenbytes(out, p->body);
	}
	return rc;
}

static int encode_chunk(const struct kv_msg *m, struct kv_buf *out)
{
	const struct kv_msg_chunk *c = &m->chunk;
	int rc = kv_buf_append_u8(out, c->w);
	if (!rc)
		rc = kv_buf_append_varint(out, c->timeout_ms);
	if (!rc)
		rc = put_lenbytes(out, c->key);
	if (!rc && (m->type == KV_MSG_CHUNK_PUT || m->type == KV_MSG_REPLICA_CHUNK_PUT))
		rc = put_lenbytes(out, c->data);
	return rc;
}

static int encode_body(const struct kv_msg *m, struct kv_buf *out)
{
	int rc = 0;
	switch (shape_of(m->type)) {
	case SH_HELLO: {
		const struct kv_msg_hello *h = &m->hello;
		uint8_t fixed[3] = { h->min_version, h->max_version, h->role };
		rc = kv_buf_append(out, fixed, sizeof fixed);
		if (!rc)
			rc = put_lenbytes(out, h->node_id);
		if (!rc)
			rc = put_lenbytes(out, h->cluster);
		if (!rc)
			rc = kv_buf_append(out, h->nonce, KV_MSG_NONCE_LEN);
		break;
	}
	case SH_CHALLENGE: {
		const struct kv_msg_challenge *c = &m->challenge;
		rc = kv_buf_append_u8(out, c->version);
		if (!rc)
			rc = put_lenbytes(out, c->node_id);
		if (!rc)
			rc = kv_buf_append(out, c->nonce, KV_MSG_NONCE_LEN);
		if (!rc)
			rc = kv_buf_append(out, c->mac, KV_MSG_MAC_LEN);
		break;
	}
	case SH_AUTH:
		rc = kv_buf_append(out, m->auth.mac, KV_MSG_MAC_LEN);
		break;
	case SH_WELCOME: {
		uint8_t fixed[3] = { m->welcome.n, m->welcome.r, m->welcome.w };
		rc = kv_buf_append(out, fixed, sizeof fixed);
		break;
	}
	case SH_ERROR:
		rc = kv_buf_append_le32(out, (uint32_t)m->error.code);
		if (!rc)
			rc = put_lenbytes(out, m->error.text);
		break;
	case SH_GET:
		rc = kv_buf_append_u8(out, m->get.flags);
		if (!rc)
			rc = kv_buf_append_u8(out, m->get.r);
		if (!rc)
			rc = kv_buf_append_varint(out, m->get.timeout_ms);
		if (!rc)
			rc = put_lenbytes(out, m->get.key);
		break;
	case SH_SET_REPLY:
		/* The set is the rest of the body: encoded in place, no copy. */
		rc = kv_dvv_encode(&m->set_reply.set, out);
		break;
	case SH_PUT:
		rc = encode_put(m, out);
		break;
	case SH_PUT_REPLY:
		rc = kv_dot_encode(m->put_reply.dot, out);
		if (!rc)
			rc = kv_buf_append_u8(out, m->put_reply.flags);
		if (!rc)
			rc = put_ctx(out, &m->put_reply.context);
		break;
	case SH_LIST:
		rc = kv_buf_append_u8(out, m->list.flags);
		if (!rc)
			rc = kv_buf_append_u8(out, m->list.r);
		if (!rc)
			rc = kv_buf_append_varint(out, m->list.timeout_ms);
		if (!rc)
			rc = kv_buf_append_varint(out, m->list.max_entries);
		if (!rc)
			rc = put_lenbytes(out, m->list.dir);
		if (!rc)
			rc = put_lenbytes(out, m->list.cursor);
		break;
	case SH_LIST_REPLY: {
		const struct kv_msg_list_reply *r = &m->list_reply;
		rc = kv_buf_append_u8(out, r->flags);
		if (!rc)
			rc = put_lenbytes(out, r->next_cursor);
		if (!rc)
			rc = kv_buf_append_varint(out, r->n);
		for (size_t i = 0; !rc && i < r->n; i++) {
			rc = put_lenbytes(out, r->entries[i].name);
			if (!rc)
				rc = put_set_prefixed(out, &r->entries[i].set);
		}
		break;
	}
	case SH_EMPTY:
		break;
	case SH_STATS_REPLY: {
		const struct kv_msg_stats_reply *s = &m->stats_reply;
		rc = kv_buf_append_varint(out, s->n);
		for (size_t i = 0; !rc && i < s->n; i++) {
			rc = put_lenbytes(out, s->stats[i].name);
			if (!rc)
				rc = kv_buf_append_varint(out, s->stats[i].value);
		}
		break;
	}
	case SH_REPLICA_WRITE:
		rc = put_lenbytes(out, m->replica_write.key);
		if (!rc)
			rc = kv_dvv_encode(&m->replica_write.set, out);
		break;
	case SH_ACK:
		rc = kv_buf_append_le64(out, m->replica_ack.set_hash);
		if (!rc)
			rc = kv_buf_append_varint(out, m->replica_ack.nversions);
		break;
	case SH_CHUNK:
		rc = encode_chunk(m, out);
		break;
	case SH_CHUNK_PUT_REPLY:
		rc = kv_buf_append_u8(out, m->chunk_put_reply.flags);
		break;
	case SH_CHUNK_DATA:
		rc = kv_buf_append(out, m->chunk_data.data.p, m->chunk_data.data.n);
		break;
	case SH_CHUNK_KEYS:
		rc = kv_buf_append_u8(out, m->chunk_keys.flags);
		if (!rc)
			rc = kv_buf_append_varint(out, m->chunk_keys.timeout_ms);
		if (!rc)
			rc = kv_buf_append_le64(out, m->chunk_keys.epoch);
		if (!rc)
			rc = kv_buf_append_varint(out, m->chunk_keys.n);
		if (!rc)
			rc = kv_buf_append(out, m->chunk_keys.hashes,
					   m->chunk_keys.n * KV_MSG_CHUNK_HASH_LEN);
		break;
	case SH_COUNT:
		rc = kv_buf_append_varint(out, m->count.count);
		break;
	case SH_GC:
		rc = kv_buf_append_varint(out, m->gc.timeout_ms);
		if (!rc)
			rc = kv_buf_append_le64(out, m->gc.epoch);
		if (!rc)
			rc = kv_buf_append_varint(out, m->gc.grace_s);
		break;
	case SH_GC_REPLY: {
		const struct kv_msg_gc_reply *g = &m->gc_reply;
		const uint64_t v[] = { g->nodes, g->versions, g->refs, g->kept, g->swept, g->bytes };
		rc = kv_buf_append_le64(out, g->epoch);
		for (size_t i = 0; !rc && i < sizeof v / sizeof v[0]; i++)
			rc = kv_buf_append_varint(out, v[i]);
		break;
	}
	case SH_UNKNOWN:
		rc = KV_EINVAL;
		break;
	}
	return rc;
}

int kv_msg_encode(const struct kv_msg *m, const struct kv_msg_limits *lim, struct kv_buf *out)
{
	struct kv_msg_limits tmp;
	size_t before = out->n;
	int rc = validate(m, limits_or_default(lim, &tmp));
	if (rc)
		goto out;
	rc = encode_body(m, out);
out:
	if (rc)
		out->n = before;
	return rc;
}

int kv_msg_encode_frame(const struct kv_msg *m, const struct kv_msg_limits *lim,
			uint8_t version, uint8_t flags, uint64_t request_id, struct kv_buf *out)
{
	size_t before = out->n, offset = 0;
	int rc = kv_frame_begin(out, version, flags, m->type, request_id, &offset);
	if (rc)
		goto out;
	rc = kv_msg_encode(m, lim, out);
	if (rc)
		goto out;
	rc = kv_frame_finish(out, offset);
out:
	if (rc)
		out->n = before;
	return rc;
}

/* ---- decoding ------------------------------------------------------------------- */

/* A bounds-checked reader over a body; every read checks the bytes left. */
struct rd {
	const uint8_t *p;
	size_t n;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
	if (r->n < 1)
		return KV_ECORRUPT;
	*v = r->p[0];
	r->p++;
	r->n--;
	return 0;
}

static int rd_fixed(struct rd *r, void *dst, size_t len)
{
	if (r->n < len)
		return KV_ECORRUPT;
	if (len == 0)
		return 0;
	memcpy(dst, r->p, len);
	r->p += len;
	r->n -= len;
	return 0;
}

/* A minimal varint (one value, one encoding: bodies stay canonical). */
static int rd_varint(struct rd *r, uint64_t *v)
{
	uint64_t x;
	int used = kv_varint_decode(r->p, r->n, &x);
	if (used < 0 || (size_t)used != kv_varint_len(x))
		return KV_ECORRUPT;
	r->p += used;
	r->n -= (size_t)used;
	*v = x;
	return 0;
}

static int rd_u32v(struct rd *r, uint32_t *v)
{
	uint64_t x;
	if (rd_varint(r, &x) || x > UINT32_MAX)
		return KV_ECORRUPT;
	*v = (uint32_t)x;
	return 0;
}

/*
 * A length-prefixed byte string of at most @max bytes, borrowed from the
 * input. The length is checked against @max (KV_ETOOBIG) and against the
 * bytes left (KV_ECORRUPT) before anything is used.
 */
static int rd_lenbytes(struct rd *r, size_t max, struct kv_slice *out)
{
	uint64_t len;
	if (rd_varint(r, &len))
		return KV_ECORRUPT;
	if (len > max)
		return KV_ETOOBIG;
	if (len > r->n)
		return KV_ECORRUPT;
	*out = kv_slice_make(r->p, (size_t)len);
	if (len > 0) /* an empty body may be a NULL pointer: no arithmetic on it */
		r->p += len;
	r->n -= (size_t)len;
	return 0;
}

/* The rest of the input, borrowed. */
static struct kv_slice rd_rest(struct rd *r)
{
	struct kv_slice s = kv_slice_make(r->p, r->n);
	if (r->n > 0)
		r->p += r->n;
	r->n = 0;
	return s;
}

/* A context with a length prefix; contexts are bounded by their own decoder. */
static int rd_ctx(struct rd *r, struct kv_ctx *c)
{
	struct kv_slice s;
	int rc = rd_lenbytes(r, SIZE_MAX, &s);
	if (rc)
		return rc;
	rc = kv_ctx_decode(s, c);
	return rc == -ENOMEM ? rc : (rc ? KV_ECORRUPT : 0);
}

static int rd_set(struct kv_slice s, struct kv_dvv *set)
{
	int rc = kv_dvv_decode(s, set);
	if (rc == -ENOMEM)
		return rc;
	return rc ? KV_ECORRUPT : 0; /* KV_EVERSION of a set inside a frame is corrupt */
}

static int decode_put(struct rd *r, struct kv_msg *m, const struct kv_msg_limits *lim)
{
	struct kv_msg_put *p = &m->put;
	int rc = 0;
	if (m->type == KV_MSG_FORWARD_PUT)
		rc = rd_u8(r, &p->hops);
	if (!rc)
		rc = rd_u8(r, &p->flags);
	if (!rc)
		rc = rd_u8(r, &p->w);
	if (!rc)
		rc = rd_u32v(r, &p->timeout_ms);
	if (!rc)
		rc = rd_fixed(r, p->request_id, KV_REQUEST_ID_LEN);
	if (!rc)
		rc = rd_lenbytes(r, lim->max_key, &p->key);
	if (!rc)
		rc = rd_ctx(r, &p->context);
	if (!rc && m->type != KV_MSG_DELETE) {
		rc = rd_lenbytes(r, lim->max_meta, &p->meta);
		if (!rc)
			rc = rd_lenbytes(r, lim->max_value, &p->body);
	}
	return rc;
}

/* Smallest encoded LIST entry: a 1-byte name (2) and an empty set (1 + 4). */
#define LIST_ENTRY_MIN 7
/* Smallest encoded counter: a 1-byte name (2) and a 1-byte value. */
#define STAT_MIN 3

static int decode_list_reply(struct rd *r, struct kv_msg *m, const struct kv_msg_limits *lim)
{
	struct kv_msg_list_reply *lr = &m->list_reply;
	uint64_t count;
	int rc = rd_u8(r, &lr->flags);
	if (!rc)
		rc = rd_lenbytes(r, lim->max_name, &lr->next_cursor);
	if (!rc)
		rc = rd_varint(r, &count);
	if (rc)
		return rc;
	/* Bound the count before allocating for it. */
	if (count > lim->max_list_entries)
		return KV_ETOOBIG;
	if (count > r->n / LIST_ENTRY_MIN)
		return KV_ECORRUPT;
	if (count) {
		lr->entries = calloc((size_t)count, sizeof lr->entries[0]);
		if (!lr->entries)
			return -ENOMEM;
		lr->cap = (size_t)count;
	}
	for (size_t i = 0; i < count; i++) {
		struct kv_msg_list_entry *e = &lr->entries[i];
		struct kv_slice enc;
		kv_dvv_init(&e->set);
		lr->n = i + 1; /* released by kv_msg_release() from here on */
		rc = rd_lenbytes(r, lim->max_name, &e->name);
		if (!rc)
			rc = rd_lenbytes(r, SIZE_MAX, &enc);
		if (!rc)
			rc = rd_set(enc, &e->set);
		if (rc)
			return rc;
	}
	return 0;
}

static int decode_stats_reply(struct rd *r, struct kv_msg *m)
{
	struct kv_msg_stats_reply *s = &m->stats_reply;
	uint64_t count;
	int rc = rd_varint(r, &count);
	if (rc)
		return rc;
	if (count > KV_MSG_STATS_MAX)
		return KV_ETOOBIG;
	if (count > r->n / STAT_MIN)
		return KV_ECORRUPT;
	if (count) {
		s->stats = calloc((size_t)count, sizeof s->stats[0]);
		if (!s->stats)
			return -ENOMEM;
		s->cap = (size_t)count;
	}
	for (size_t i = 0; i < count; i++) {
		rc = rd_lenbytes(r, KV_MSG_STAT_NAME_MAX, &s->stats[i].name);
		if (!rc)
			rc = rd_varint(r, &s->stats[i].value);
		if (rc)
			return rc;
		s->n = i + 1;
	}
	return 0;
}

static int decode_body(struct rd *r, struct kv_msg *m, const struct kv_msg_limits *lim)
{
	int rc = 0;
	switch (shape_of(m->type)) {
	case SH_HELLO: {
		struct kv_msg_hello *h = &m->hello;
		rc = rd_u8(r, &h->min_version);
		if (!rc)
			rc = rd_u8(r, &h->max_version);
		if (!rc)
			rc = rd_u8(r, &h->role);
		if (!rc)
			rc = rd_lenbytes(r, KV_MSG_NAME_ID_MAX, &h->node_id);
		if (!rc)
			rc = rd_lenbytes(r, KV_MSG_NAME_ID_MAX, &h->cluster);
		if (!rc)
			rc = rd_fixed(r, h->nonce, KV_MSG_NONCE_LEN);
		break;
	}
	case SH_CHALLENGE: {
		struct kv_msg_challenge *c = &m->challenge;
		rc = rd_u8(r, &c->version);
		if (!rc)
			rc = rd_lenbytes(r, KV_MSG_NAME_ID_MAX, &c->node_id);
		if (!rc)
			rc = rd_fixed(r, c->nonce, KV_MSG_NONCE_LEN);
		if (!rc)
			rc = rd_fixed(r, c->mac, KV_MSG_MAC_LEN);
		break;
	}
	case SH_AUTH:
		rc = rd_fixed(r, m->auth.mac, KV_MSG_MAC_LEN);
		break;
	case SH_WELCOME:
		rc = rd_u8(r, &m->welcome.n);
		if (!rc)
			rc = rd_u8(r, &m->welcome.r);
		if (!rc)
			rc = rd_u8(r, &m->welcome.w);
		break;
	case SH_ERROR: {
		uint8_t code[4];
		rc = rd_fixed(r, code, sizeof code);
		if (!rc) {
			m->error.code = (int32_t)kv_get_le32(code);
			rc = rd_lenbytes(r, KV_MSG_ERROR_TEXT_MAX, &m->error.text);
		}
		break;
	}
	case SH_GET:
		rc = rd_u8(r, &m->get.flags);
		if (!rc)
			rc = rd_u8(r, &m->get.r);
		if (!rc)
			rc = rd_u32v(r, &m->get.timeout_ms);
		if (!rc)
			rc = rd_lenbytes(r, lim->max_key, &m->get.key);
		break;
	case SH_SET_REPLY:
		rc = rd_set(rd_rest(r), &m->set_reply.set);
		break;
	case SH_PUT:
		rc = decode_put(r, m, lim);
		break;
	case SH_PUT_REPLY: {
		int used = kv_dot_decode_prefix(kv_slice_make(r->p, r->n), &m->put_reply.dot);
		if (used < 0)
			return KV_ECORRUPT;
		r->p += used;
		r->n -= (size_t)used;
		rc = rd_u8(r, &m->put_reply.flags);
		if (!rc)
			rc = rd_ctx(r, &m->put_reply.context);
		break;
	}
	case SH_LIST:
		rc = rd_u8(r, &m->list.flags);
		if (!rc)
			rc = rd_u8(r, &m->list.r);
		if (!rc)
			rc = rd_u32v(r, &m->list.timeout_ms);
		if (!rc)
			rc = rd_u32v(r, &m->list.max_entries);
		if (!rc)
			rc = rd_lenbytes(r, lim->max_key, &m->list.dir);
		if (!rc)
			rc = rd_lenbytes(r, lim->max_name, &m->list.cursor);
		break;
	case SH_LIST_REPLY:
		rc = decode_list_reply(r, m, lim);
		break;
	case SH_EMPTY:
		break;
	case SH_STATS_REPLY:
		rc = decode_stats_reply(r, m);
		break;
	case SH_REPLICA_WRITE:
		rc = rd_lenbytes(r, lim->max_key, &m->replica_write.key);
		if (!rc)
			rc = rd_set(rd_rest(r), &m->replica_write.set);
		break;
	case SH_ACK: {
		uint8_t hash[8];
		rc = rd_fixed(r, hash, sizeof hash);
		if (!rc) {
			m->replica_ack.set_hash = kv_get_le64(hash);
			rc = rd_u32v(r, &m->replica_ack.nversions);
		}
		break;
	}
	case SH_CHUNK:
		rc = rd_u8(r, &m->chunk.w);
		if (!rc)
			rc = rd_u32v(r, &m->chunk.timeout_ms);
		if (!rc)
			rc = rd_lenbytes(r, lim->max_key, &m->chunk.key);
		if (!rc && (m->type == KV_MSG_CHUNK_PUT || m->type == KV_MSG_REPLICA_CHUNK_PUT))
			rc = rd_lenbytes(r, lim->max_value, &m->chunk.data);
		break;
	case SH_CHUNK_PUT_REPLY:
		rc = rd_u8(r, &m->chunk_put_reply.flags);
		break;
	case SH_CHUNK_DATA:
		m->chunk_data.data = rd_rest(r);
		break;
	case SH_CHUNK_KEYS: {
		struct kv_msg_chunk_keys *k = &m->chunk_keys;
		uint8_t epoch[8];
		uint64_t count = 0;
		rc = rd_u8(r, &k->flags);
		if (!rc)
			rc = rd_u32v(r, &k->timeout_ms);
		if (!rc)
			rc = rd_fixed(r, epoch, sizeof epoch);
		if (!rc)
			rc = rd_varint(r, &count);
		if (rc)
			break;
		k->epoch = kv_get_le64(epoch);
		if (count > KV_MSG_CHUNK_KEYS_MAX)
			return KV_ETOOBIG;
		/* Bounded above: no overflow. The hashes fill the rest exactly. */
		if (count * KV_MSG_CHUNK_HASH_LEN != r->n)
			return KV_ECORRUPT;
		k->n = (size_t)count;
		k->hashes = rd_rest(r).p;
		break;
	}
	case SH_COUNT:
		rc = rd_varint(r, &m->count.count);
		break;
	case SH_GC: {
		uint8_t epoch[8];
		rc = rd_u32v(r, &m->gc.timeout_ms);
		if (!rc)
			rc = rd_fixed(r, epoch, sizeof epoch);
		if (!rc) {
			m->gc.epoch = kv_get_le64(epoch);
			rc = rd_varint(r, &m->gc.grace_s);
		}
		break;
	}
	case SH_GC_REPLY: {
		struct kv_msg_gc_reply *g = &m->gc_reply;
		uint8_t epoch[8];
		uint64_t *v[] = { &g->nodes, &g->versions, &g->refs, &g->kept, &g->swept, &g->bytes };
		rc = rd_fixed(r, epoch, sizeof epoch);
		if (!rc)
			g->epoch = kv_get_le64(epoch);
		for (size_t i = 0; !rc && i < sizeof v / sizeof v[0]; i++)
			rc = rd_varint(r, v[i]);
		break;
	}
	case SH_UNKNOWN:
		rc = KV_EVERSION;
		break;
	}
	return rc;
}

int kv_msg_decode(uint16_t type, struct kv_slice body, const struct kv_msg_limits *lim,
		  struct kv_msg *out)
{
	struct kv_msg_limits tmp;
	struct kv_msg m;
	struct rd r = { body.p, body.n };
	int rc;

	lim = limits_or_default(lim, &tmp);
	kv_msg_init(&m, type);
	if (shape_of(type) == SH_UNKNOWN) {
		/* Reserved or unassigned: a newer peer's message (doc/protocol.md §3). */
		rc = KV_EVERSION;
		goto out;
	}
	rc = decode_body(&r, &m, lim);
	if (rc)
		goto out;
	if (r.n != 0) {
		rc = KV_ECORRUPT; /* trailing bytes */
		goto out;
	}
	rc = validate(&m, lim);
	if (rc == KV_EINVAL)
		rc = KV_ECORRUPT;
out:
	if (rc) {
		kv_msg_release(&m);
		kv_msg_init(out, KV_MSG_NONE);
	} else {
		*out = m;
	}
	return rc;
}

int kv_msg_decode_frame(const struct kv_frame *f, const struct kv_msg_limits *lim,
			struct kv_msg *out)
{
	return kv_msg_decode(f->type, f->body, lim, out);
}

/* ---- equality ------------------------------------------------------------------- */

static bool put_equal(const struct kv_msg_put *a, const struct kv_msg_put *b)
{
	return a->flags == b->flags && a->w == b->w && a->hops == b->hops &&
	       a->timeout_ms == b->timeout_ms &&
	       memcmp(a->request_id, b->request_id, KV_REQUEST_ID_LEN) == 0 &&
	       kv_slice_eq(a->key, b->key) && kv_ctx_equal(&a->context, &b->context) &&
	       kv_slice_eq(a->meta, b->meta) && kv_slice_eq(a->body, b->body);
}

static bool list_reply_equal(const struct kv_msg_list_reply *a,
			     const struct kv_msg_list_reply *b)
{
	if (a->flags != b->flags || !kv_slice_eq(a->next_cursor, b->next_cursor) || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!kv_slice_eq(a->entries[i].name, b->entries[i].name) ||
		    !kv_dvv_equal(&a->entries[i].set, &b->entries[i].set))
			return false;
	return true;
}

bool kv_msg_equal(const struct kv_msg *a, const struct kv_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (shape_of(a->type)) {
	case SH_HELLO:
		return a->hello.min_version == b->hello.min_version &&
		       a->hello.max_version == b->hello.max_version &&
		       a->hello.role == b->hello.role &&
		       kv_slice_eq(a->hello.node_id, b->hello.node_id) &&
		       kv_slice_eq(a->hello.cluster, b->hello.cluster) &&
		       memcmp(a->hello.nonce, b->hello.nonce, KV_MSG_NONCE_LEN) == 0;
	case SH_CHALLENGE:
		return a->challenge.version == b->challenge.version &&
		       kv_slice_eq(a->challenge.node_id, b->challenge.node_id) &&
		       memcmp(a->challenge.nonce, b->challenge.nonce, KV_MSG_NONCE_LEN) == 0 &&
		       memcmp(a->challenge.mac, b->challenge.mac, KV_MSG_MAC_LEN) == 0;
	case SH_AUTH:
		return memcmp(a->auth.mac, b->auth.mac, KV_MSG_MAC_LEN) == 0;
	case SH_WELCOME:
		return a->welcome.n == b->welcome.n && a->welcome.r == b->welcome.r &&
		       a->welcome.w == b->welcome.w;
	case SH_ERROR:
		return a->error.code == b->error.code && kv_slice_eq(a->error.text, b->error.text);
	case SH_GET:
		return a->get.flags == b->get.flags && a->get.r == b->get.r &&
		       a->get.timeout_ms == b->get.timeout_ms && kv_slice_eq(a->get.key, b->get.key);
	case SH_SET_REPLY:
		return kv_dvv_equal(&a->set_reply.set, &b->set_reply.set);
	case SH_PUT:
		return put_equal(&a->put, &b->put);
	case SH_PUT_REPLY:
		return kv_dot_eq(a->put_reply.dot, b->put_reply.dot) &&
		       a->put_reply.flags == b->put_reply.flags &&
		       kv_ctx_equal(&a->put_reply.context, &b->put_reply.context);
	case SH_LIST:
		return a->list.flags == b->list.flags && a->list.r == b->list.r &&
		       a->list.timeout_ms == b->list.timeout_ms &&
		       a->list.max_entries == b->list.max_entries &&
		       kv_slice_eq(a->list.dir, b->list.dir) &&
		       kv_slice_eq(a->list.cursor, b->list.cursor);
	case SH_LIST_REPLY:
		return list_reply_equal(&a->list_reply, &b->list_reply);
	case SH_EMPTY:
		return true;
	case SH_STATS_REPLY:
		if (a->stats_reply.n != b->stats_reply.n)
			return false;
		for (size_t i = 0; i < a->stats_reply.n; i++)
			if (!kv_slice_eq(a->stats_reply.stats[i].name, b->stats_reply.stats[i].name) ||
			    a->stats_reply.stats[i].value != b->stats_reply.stats[i].value)
				return false;
		return true;
	case SH_REPLICA_WRITE:
		return kv_slice_eq(a->replica_write.key, b->replica_write.key) &&
		       kv_dvv_equal(&a->replica_write.set, &b->replica_write.set);
	case SH_ACK:
		return a->replica_ack.set_hash == b->replica_ack.set_hash &&
		       a->replica_ack.nversions == b->replica_ack.nversions;
	case SH_CHUNK:
		return a->chunk.w == b->chunk.w && a->chunk.timeout_ms == b->chunk.timeout_ms &&
		       kv_slice_eq(a->chunk.key, b->chunk.key) &&
		       kv_slice_eq(a->chunk.data, b->chunk.data);
	case SH_CHUNK_PUT_REPLY:
		return a->chunk_put_reply.flags == b->chunk_put_reply.flags;
	case SH_CHUNK_DATA:
		return kv_slice_eq(a->chunk_data.data, b->chunk_data.data);
	case SH_CHUNK_KEYS:
		return a->chunk_keys.flags == b->chunk_keys.flags &&
		       a->chunk_keys.timeout_ms == b->chunk_keys.timeout_ms &&
		       a->chunk_keys.epoch == b->chunk_keys.epoch && a->chunk_keys.n == b->chunk_keys.n &&
		       (a->chunk_keys.n == 0 ||
			memcmp(a->chunk_keys.hashes, b->chunk_keys.hashes,
			       a->chunk_keys.n * KV_MSG_CHUNK_HASH_LEN) == 0);
	case SH_COUNT:
		return a->count.count == b->count.count;
	case SH_GC:
		return a->gc.timeout_ms == b->gc.timeout_ms && a->gc.epoch == b->gc.epoch &&
		       a->gc.grace_s == b->gc.grace_s;
	case SH_GC_REPLY:
		return memcmp(&a->gc_reply, &b->gc_reply, sizeof a->gc_reply) == 0;
	case SH_UNKNOWN:
		break;
	}
	return true; /* two empty messages of one unknown type */
}

/* ---- the authentication transcript (doc/protocol.md §4.6) ------------------------ */

int kv_msg_auth_transcript(struct kv_buf *out, bool server, const struct kv_msg_hello *hello,
			   const struct kv_msg_challenge *challenge)
{
	static const char label_server[] = "kvfs-auth-v1 server";
	static const char label_client[] = "kvfs-auth-v1 client";
	size_t before = out->n;
	int rc = server ? put_lenbytes(out, kv_slice_str(label_server))
			: put_lenbytes(out, kv_slice_str(label_client));
	if (!rc)
		rc = kv_buf_append_u8(out, challenge->version);
	if (!rc)
		rc = kv_buf_append_u8(out, hello->role);
	if (!rc)
		rc = kv_buf_append(out, hello->nonce, KV_MSG_NONCE_LEN);
	if (!rc)
		rc = kv_buf_append(out, challenge->nonce, KV_MSG_NONCE_LEN);
	if (!rc)
		rc = put_lenbytes(out, hello->cluster);
	if (!rc)
		rc = put_lenbytes(out, hello->node_id);
	if (!rc)
		rc = put_lenbytes(out, challenge->node_id);
	if (rc)
		out->n = before;
	return rc;
}
