/*
 * node_chunk.c - chunks on the nodes (DESIGN §7 "Chunks"; doc/node.md
 * "Chunks and reclamation"; doc/protocol.md §5.9, §6.6, §6.7).
 *
 *   CHUNK_PUT    checks the key and that the bytes hash to it, places the
 *                chunk by its own key and stores it put-if-absent on its N
 *                replicas (itself through a queued OP_CHUNK_REC, the others
 *                by REPLICA_CHUNK_PUT, which a replica stores without
 *                hashing again); answers at W acks
 *   CHUNK_GET    reads ONE replica (itself first when it is one), the next
 *                one on not found, a failed check or no answer; once one
 *                gives the bytes, the replicas tried before it that said
 *                "not found" or "corrupt" are sent them to store, as
 *                CHUNK_PUT stores them, without waiting (read repair; not
 *                the ones that timed out or failed)
 *   CHUNK_TOUCH  refreshes the age of each chunk on its replicas
 *   CHUNK_MARK   (gc) records a gc epoch's mark on each chunk of a batch
 *
 * A replica keeps a chunk's age and mark in a small node-local record, apart
 * from its bytes, so touching or marking never rewrites the chunk. (The
 * libuv driver keeps the bytes in files outside the engine: node/chunkstore.h;
 * the core only sees storage effects on the body key.) Every
 * change to one chunk (store, touch, mark, sweep) is one OP_CHUNK_REC on the
 * chunk key's queue: read the record, decide, write. A store is
 * put-if-absent on the record, except for a copy a read on this node found
 * missing or damaged: that one is read again and, when still bad, replaced.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "proto/chunkhash.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

_Static_assert(KV_NODE_MAX_PEERS <= 32, "ch->lacking has a bit per preference slot");

/* Records in progress per OP_CHUNK_BATCH (bounds ops and memory). */
#define BATCH_WINDOW 32

/* The steps of an OP_CHUNK_REC STORE (ch->step; 0: the record is being read). */
#define STORE_BODY 1        /* the body is being written, then the record */
#define STORE_RECORD 2      /* the record is being written: the last step */
#define STORE_CHECK 3       /* a suspect copy's body is being read */
#define STORE_DROP_RECORD 4 /* a damaged copy's record is being deleted */
#define STORE_DROP_BODY 5   /* a damaged copy's body is being deleted */

/* The stored forms of a body (doc/storage-format.md "Chunk store"). */
static const uint8_t body_magic[4] = { 'K', 'V', 'C', '2' };
static const uint8_t body_magic_kvck[4] = { 'K', 'V', 'C', 'K' };
static const uint8_t rec_magic[4] = { 'K', 'V', 'C', 'R' };
static const uint8_t rec_prefix[4] = { 0, 0, 0, 1 };

/* What one OP_CHUNK_REC did, for whoever waits on it. */
struct rec_result {
	int rc;
	bool existed; /* STORE: it was there already */
	bool found;   /* UPDATE: a record was updated */
	bool swept;   /* SWEEP: deleted */
	bool kept;    /* SWEEP: still there */
	uint64_t size;
};

/* ---- Keys and stored forms -------------------------------------------- */

bool kv_node_key_is_chunk(struct kv_slice key)
{
	return key.n >= 2 && key.p[0] == 0 && key.p[1] == 'c';
}

static bool hash_is_zero(const uint8_t *hash)
{
	uint8_t any = 0;
	for (size_t i = 0; i < KV_NODE_CHUNK_HASH_LEN; i++)
		any |= hash[i];
	return any == 0;
}

/* A chunk key: 00 63 and a hash that is not all zeros (a hole names no chunk). */
static bool chunk_key_parse(struct kv_slice key, uint8_t hash[KV_NODE_CHUNK_HASH_LEN])
{
	if (key.n != KV_NODE_CHUNK_KEY_LEN || !kv_node_key_is_chunk(key) || hash_is_zero(key.p + 2))
		return false;
	memcpy(hash, key.p + 2, KV_NODE_CHUNK_HASH_LEN);
	return true;
}

static void chunk_key_of(const uint8_t *hash, uint8_t key[KV_NODE_CHUNK_KEY_LEN])
{
	key[0] = 0;
	key[1] = 'c';
	memcpy(key + 2, hash, KV_NODE_CHUNK_HASH_LEN);
}

/* 1 when @data is the chunk named @hash (SHA-256, or BLAKE2b-256 before it), 0, or -ENOMEM. */
static int hash_matches(const uint8_t *hash, struct kv_slice data)
{
	return kv_chunk_hash_check(hash, data.p, data.n);
}

void kv_node__chunk_rec_span(struct kv_buf *lo, struct kv_buf *hi)
{
	static const uint8_t end[4] = { 0, 0, 0, 2 };
	(void)kv_buf_append(lo, rec_prefix, sizeof rec_prefix);
	(void)kv_buf_append(hi, end, sizeof end);
}

static int rec_skey(struct kv_buf *out, const uint8_t *hash)
{
	if (kv_buf_append(out, rec_prefix, sizeof rec_prefix) != 0 ||
	    kv_buf_append(out, hash, KV_NODE_CHUNK_HASH_LEN) != 0 || kv_buf_append_u8(out, 0) != 0)
		return -ENOMEM;
	return 0;
}

static int body_skey(struct kv_buf *out, const uint8_t *hash)
{
	uint8_t key[KV_NODE_CHUNK_KEY_LEN];
	chunk_key_of(hash, key);
	return kv_skey_encode(out, kv_slice_make(key, sizeof key));
}

int kv_node__chunk_rec_decode(struct kv_slice skey, struct kv_slice value,
			      struct kv_node_chunk_rec *rec)
{
	if (skey.n != KV_NODE_CHUNK_RECORD_KEY_LEN || memcmp(skey.p, rec_prefix, 4) != 0 ||
	    skey.p[skey.n - 1] != 0)
		return KV_ECORRUPT;
	if (value.n != KV_NODE_CHUNK_RECORD_SIZE || memcmp(value.p, rec_magic, 4) != 0)
		return KV_ECORRUPT;
	memcpy(rec->hash, skey.p + 4, KV_NODE_CHUNK_HASH_LEN);
	rec->size = kv_get_le32(value.p + 4);
	rec->touched = (int64_t)kv_get_le64(value.p + 8);
	rec->marked = kv_get_le64(value.p + 16);
	return 0;
}

static int rec_encode(const struct kv_node_chunk_rec *rec, struct kv_buf *out)
{
	if (kv_buf_append(out, rec_magic, sizeof rec_magic) != 0 ||
	    kv_buf_append_le32(out, rec->size) != 0 ||
	    kv_buf_append_le64(out, (uint64_t)rec->touched) != 0 ||
	    kv_buf_append_le64(out, rec->marked) != 0)
		return -ENOMEM;
	return 0;
}

bool kv_node_chunk_skey_hash(struct kv_slice skey, uint8_t hash[KV_NODE_CHUNK_HASH_LEN])
{
	/* be64 position, then the escaped chunk key: 00 FF 63 ... (doc/placement.md) */
	if (skey.n < KV_SKEY_POS_SIZE + 3 || skey.p[KV_SKEY_POS_SIZE] != 0 ||
	    skey.p[KV_SKEY_POS_SIZE + 1] != 0xFF || skey.p[KV_SKEY_POS_SIZE + 2] != 'c')
		return false;
	uint8_t key[KV_KEY_MAX];
	size_t n = 0;
	uint64_t pos;
	int k = kv_skey_decode(skey, &pos, key, &n);
	return k > 0 && (size_t)k == skey.n && chunk_key_parse(kv_slice_make(key, n), hash);
}

int kv_node_chunk_record_encode(const uint8_t hash[KV_NODE_CHUNK_HASH_LEN], uint32_t size,
				int64_t touched, struct kv_buf *skey, struct kv_buf *value)
{
	struct kv_node_chunk_rec rec = { .size = size, .touched = touched };
	if (rec_skey(skey, hash) != 0 || rec_encode(&rec, value) != 0)
		return -ENOMEM;
	return 0;
}

int kv_node_chunk_body_split(struct kv_slice stored, struct kv_slice *bytes)
{
	size_t hdr = 0;
	*bytes = kv_slice_make(NULL, 0);
	if (stored.n >= KV_NODE_CHUNK_HEADER && memcmp(stored.p, body_magic, 4) == 0)
		hdr = KV_NODE_CHUNK_HEADER;
	else if (stored.n >= KV_NODE_CHUNK_HEADER_KVCK && memcmp(stored.p, body_magic_kvck, 4) == 0)
		hdr = KV_NODE_CHUNK_HEADER_KVCK;
	if (hdr == 0 || kv_get_le32(stored.p + 4) != stored.n - hdr)
		return KV_ECORRUPT;
	*bytes = kv_slice_make(stored.p + hdr, stored.n - hdr);
	return (int)hdr;
}

/*
 * The bytes of a stored chunk, checked: 0, KV_ECORRUPT, or -ENOMEM. A "KVC2"
 * body is checked against the XXH3-64 it carries, which catches bit rot at a
 * fraction of a content-hash pass (the bytes matched @hash when they were
 * stored: the coordinator checked them, doc/node.md "Chunks and
 * reclamation"; the client checks @hash again end to end). An old "KVCK"
 * body carries no checksum and is checked against @hash itself
 * (kv_chunk_hash_check: SHA-256, or BLAKE2b-256 for a chunk named before it).
 */
static int body_decode(const uint8_t *hash, struct kv_slice value, struct kv_slice *data)
{
	int hdr = kv_node_chunk_body_split(value, data);
	if (hdr == KV_NODE_CHUNK_HEADER)
		return kv_hash64(data->n ? data->p : value.p, data->n) == kv_get_le64(value.p + 8)
			       ? 0
			       : KV_ECORRUPT;
	if (hdr == KV_NODE_CHUNK_HEADER_KVCK) {
		int ok = hash_matches(hash, *data);
		return ok < 0 ? ok : ok ? 0 : KV_ECORRUPT;
	}
	return KV_ECORRUPT;
}

/* ---- Operations with chunk state --------------------------------------- */

void kv_node__chunk_free(struct kv_node_chunk *ch)
{
	if (ch == NULL)
		return;
	kv_buf_release(&ch->data);
	kv_buf_release(&ch->cursor);
	free(ch->peers);
	free(ch);
}

struct kv_node_op *kv_node__chunk_op_new(struct kv_node *node, enum kv_node_op_kind kind,
					 const struct kv_node_origin *origin, struct kv_slice key)
{
	struct kv_node_op *op = kv_node__op_new(node, kind, origin, key);
	if (op == NULL)
		return NULL;
	op->chunk = calloc(1, sizeof *op->chunk);
	if (op->chunk == NULL) {
		kv_node__op_finish(node, op, NULL);
		return NULL;
	}
	op->chunk->id = kv_node__id(node);
	op->chunk->wall = node->wall_ns ? node->wall_ns : (int64_t)node->now_ns;
	return op;
}

struct kv_node_op *kv_node__chunk_find(struct kv_node *node, uint64_t id)
{
	for (struct kv_node_op *op = node->ops; op != NULL; op = op->next)
		if (op->chunk != NULL && op->chunk->id == id)
			return op;
	return NULL;
}

int kv_node__chunk_peer_add(struct kv_node_op *op, uint32_t to, uint64_t req)
{
	struct kv_node_chunk *ch = op->chunk;
	if (ch->npeers == ch->cappeers) {
		size_t cap = ch->cappeers ? 2 * ch->cappeers : 8;
		struct kv_node_peer_req *p = realloc(ch->peers, cap * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		ch->peers = p;
		ch->cappeers = cap;
	}
	ch->peers[ch->npeers++] = (struct kv_node_peer_req){ to, req };
	return 0;
}

struct kv_node_op *kv_node__chunk_find_peer(struct kv_node *node, uint64_t req_id, uint32_t from)
{
	for (struct kv_node_op *op = node->ops; op != NULL; op = op->next) {
		if (op->chunk == NULL)
			continue;
		for (size_t i = 0; i < op->chunk->npeers; i++)
			if (op->chunk->peers[i].req == req_id && op->chunk->peers[i].to == from)
				return op;
	}
	return NULL;
}

/* Forgets the peer request (@from, @req) of @op; false when it was not there. */
static bool peer_take(struct kv_node_op *op, uint32_t from, uint64_t req)
{
	struct kv_node_chunk *ch = op->chunk;
	for (size_t i = 0; i < ch->npeers; i++)
		if (ch->peers[i].req == req && ch->peers[i].to == from) {
			ch->peers[i] = ch->peers[--ch->npeers];
			return true;
		}
	return false;
}

void kv_node__chunk_fail(struct kv_node_chunk *ch, int code, const char *fmt, ...)
{
	if (ch->err != 0)
		return; /* the first failure is the one reported */
	ch->err = code < 0 ? code : KV_EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ch->errtext, sizeof ch->errtext, fmt, ap);
	va_end(ap);
}

static uint32_t self_slot(const struct kv_node *node, const struct kv_node_op *op)
{
	for (uint32_t i = 0; i < op->npref; i++)
		if (op->pref[i] == node->self_id)
			return i;
	return UINT32_MAX;
}

static uint32_t slot_of(const struct kv_node_op *op, uint32_t id)
{
	for (uint32_t i = 0; i < op->npref; i++)
		if (op->pref[i] == id)
			return i;
	return UINT32_MAX;
}

/*
 * Room for a stored form of @n bytes in the empty @b. A large one starts on
 * a 4 KiB boundary: the driver writes bodies with O_DIRECT (doc/storage-
 * format.md "Chunk store"), which takes an aligned buffer as it is and
 * copies any other through a bounce buffer first — that copy was 7% of a
 * node's CPU while a large file was written.
 */
#define STORED_ALIGN 4096u
#define STORED_ALIGN_MIN (64u << 10)

static int stored_alloc(struct kv_buf *b, size_t n)
{
	if (n < STORED_ALIGN_MIN || b->cap != 0)
		return kv_buf_reserve(b, n);
	void *p = NULL;
	if (posix_memalign(&p, STORED_ALIGN, n) != 0)
		return -ENOMEM;
	b->p = p; /* freed by kv_buf_release(), whoever takes the buffer over */
	b->n = 0;
	b->cap = n;
	return 0;
}

/*
 * Queues a REPLICA_CHUNK_PUT of @key and @data (copied into the message) to
 * peer @to. 0, or -ENOMEM with nothing queued.
 */
static int send_chunk_put(struct kv_effects *out, uint32_t to, uint64_t req, struct kv_slice key,
			  struct kv_slice data)
{
	struct kv_node_msg_out *m = kv_node__send(out, to, req, KV_MSG_REPLICA_CHUNK_PUT);
	if (m == NULL)
		return -ENOMEM;
	if (kv_buf_reserve(&m->bytes, key.n + data.n) != 0) {
		kv_node__send_pop(out);
		return -ENOMEM;
	}
	(void)kv_buf_append(&m->bytes, key.p, key.n);
	(void)kv_buf_append(&m->bytes, data.p, data.n);
	m->msg.chunk.key = kv_slice_make(m->bytes.p, key.n);
	m->msg.chunk.data = kv_slice_make(m->bytes.p + key.n, data.n);
	return 0;
}

/* Emits the read of op's chunk body on this node; op waits in ST_READ. 0 or -ENOMEM. */
static int read_body(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_storage_out *s = kv_node__read_push(out);
	int rc = s == NULL ? -ENOMEM : body_skey(&s->key, op->chunk->hash);
	if (rc == 0) {
		op->storage_op = kv_node__id(node);
		s->op = op->storage_op;
		op->state = ST_READ;
	} else if (s != NULL) {
		kv_node__storage_pop(out, false);
	}
	return rc;
}

/* ---- Suspect copies (read repair) --------------------------------------- */

/*
 * A read on this node that finds its copy of a chunk missing or damaged
 * notes the hash; the next store of that chunk here (a read repair's, or
 * any CHUNK_PUT's) reads the copy again on the chunk's queue and replaces
 * it when it is still bad. Without the note a store is put-if-absent on the
 * record alone and would keep a damaged body forever. A small ring: a note
 * lost to it (or to a restart) only means the next read notes it again.
 */
static int suspect_find(const struct kv_node *node, const uint8_t *hash)
{
	for (uint32_t i = 0; i < node->chunk_nsuspect; i++)
		if (memcmp(node->chunk_suspect[i], hash, KV_NODE_CHUNK_HASH_LEN) == 0)
			return (int)i;
	return -1;
}

static void suspect_note(struct kv_node *node, const uint8_t *hash)
{
	if (suspect_find(node, hash) >= 0)
		return;
	uint32_t i = node->chunk_nsuspect < KV_NODE_CHUNK_SUSPECT_MAX ? node->chunk_nsuspect++
									: node->chunk_suspect_next;
	node->chunk_suspect_next = (i + 1) % KV_NODE_CHUNK_SUSPECT_MAX;
	memcpy(node->chunk_suspect[i], hash, KV_NODE_CHUNK_HASH_LEN);
}

static void suspect_forget(struct kv_node *node, const uint8_t *hash)
{
	int i = suspect_find(node, hash);
	if (i < 0)
		return;
	uint32_t last = --node->chunk_nsuspect;
	if ((uint32_t)i != last)
		memcpy(node->chunk_suspect[i], node->chunk_suspect[last], KV_NODE_CHUNK_HASH_LEN);
	if (node->chunk_suspect_next > node->chunk_nsuspect)
		node->chunk_suspect_next = 0;
}

/* ---- OP_CHUNK_REC: one chunk's record, on the chunk key's queue --------- */

static void batch_child(struct kv_node *node, struct kv_node_op *batch, const struct rec_result *r,
			struct kv_effects *out);
static void put_slot(struct kv_node *node, struct kv_node_op *op, uint32_t slot, int rc,
		     bool existed, struct kv_effects *out);

/* Ends @op with @r: tells its parent, or answers the peer that asked. */
static int rec_done(struct kv_node *node, struct kv_node_op *op, const struct rec_result *r,
		    struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint64_t parent = ch->parent;
	uint32_t slot = ch->parent_slot;
	if (parent == 0) {
		if (r->rc != 0) {
			kv_node__answer_error(out, &op->origin, r->rc, "cannot store the chunk");
		} else {
			struct kv_node_msg_out *m =
				kv_node__answer(out, &op->origin, KV_MSG_REPLICA_CHUNK_PUT_ACK);
			if (m != NULL)
				m->msg.chunk_put_reply.flags = r->existed ? KV_MSG_CHUNK_F_EXISTED : 0;
		}
	}
	kv_node__op_finish(node, op, out);
	if (parent == 0)
		return 0;
	struct kv_node_op *p = kv_node__chunk_find(node, parent);
	if (p == NULL)
		return 0; /* it ended (timed out): nobody waits */
	if (p->kind == OP_CHUNK_PUT)
		put_slot(node, p, slot, r->rc, r->existed, out);
	else if (p->kind == OP_CHUNK_BATCH)
		batch_child(node, p, r, out);
	return 0;
}

static int rec_fail(struct kv_node *node, struct kv_node_op *op, int rc, struct kv_effects *out)
{
	struct rec_result r = { .rc = rc };
	return rec_done(node, op, &r, out);
}

int kv_node__chunk_rec_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_storage_out *s = kv_node__read_push(out);
	if (s == NULL || rec_skey(&s->key, op->chunk->hash) != 0) {
		if (s != NULL)
			kv_node__storage_pop(out, false);
		return rec_fail(node, op, -ENOMEM, out);
	}
	op->storage_op = kv_node__id(node);
	s->op = op->storage_op;
	op->state = ST_READ;
	return 0;
}

/* Emits a write of @key (taken over) with @value (taken over), or a delete. */
static int rec_write(struct kv_node *node, struct kv_node_op *op, struct kv_buf *key,
		     struct kv_buf *value, bool del, struct kv_effects *out)
{
	struct kv_node_storage_out *s = kv_node__write_push(out);
	if (s == NULL)
		return -ENOMEM;
	s->key = *key;
	kv_buf_init(key);
	if (value != NULL) {
		s->value = *value;
		kv_buf_init(value);
	}
	s->del = del;
	op->storage_op = kv_node__id(node);
	s->op = op->storage_op;
	op->state = ST_WRITE;
	return 0;
}

static int write_record(struct kv_node *node, struct kv_node_op *op,
			const struct kv_node_chunk_rec *rec, struct kv_effects *out)
{
	struct kv_buf key = KV_BUF_INIT, value = KV_BUF_INIT;
	int rc = rec_skey(&key, op->chunk->hash);
	if (rc == 0)
		rc = rec_encode(rec, &value);
	if (rc == 0)
		rc = rec_write(node, op, &key, &value, false, out);
	kv_buf_release(&key);
	kv_buf_release(&value);
	return rc;
}

static int delete_key(struct kv_node *node, struct kv_node_op *op, bool body,
		      struct kv_effects *out)
{
	struct kv_buf key = KV_BUF_INIT;
	int rc = body ? body_skey(&key, op->chunk->hash) : rec_skey(&key, op->chunk->hash);
	if (rc == 0)
		rc = rec_write(node, op, &key, NULL, true, out);
	kv_buf_release(&key);
	return rc;
}

/* STORE: writes the body (ch->data, taken over), then the record follows. */
static int store_body(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_buf key = KV_BUF_INIT;
	int rc = body_skey(&key, op->chunk->hash);
	op->chunk->step = STORE_BODY;
	if (rc == 0)
		rc = rec_write(node, op, &key, &op->chunk->data, false, out);
	kv_buf_release(&key);
	return rc;
}

/*
 * STORE of a suspect copy: its body, read again on the chunk's queue, is
 * in. A good body is kept (put-if-absent as usual); a missing one is
 * written; a damaged one is replaced: its record deleted, then its body,
 * then the new body and a record that keeps the old mark — so a record
 * never names missing or damaged bytes, and a replaced copy is a fresh
 * store for the gc (doc/node.md "Chunks and reclamation").
 */
static int store_on_body(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			 struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	int status = in->read.status;
	if (status != 0 && status != KV_ENOTFOUND && status != KV_ECORRUPT)
		return rec_fail(node, op, status, out);
	struct kv_slice data;
	bool good = status == 0 && body_decode(ch->hash, in->read.value, &data) == 0;
	suspect_forget(node, ch->hash);
	int rc;
	if (good && ch->rec_found) {
		struct kv_node_chunk_rec rec = { .size = (uint32_t)ch->size, .touched = ch->wall,
						 .marked = ch->epoch };
		ch->existed = true;
		ch->step = STORE_RECORD;
		rc = write_record(node, op, &rec, out);
	} else if (good || status == KV_ENOTFOUND) {
		rc = store_body(node, op, out);
	} else {
		node->stats.chunk_damaged_replaced++;
		ch->step = ch->rec_found ? STORE_DROP_RECORD : STORE_DROP_BODY;
		rc = delete_key(node, op, !ch->rec_found, out);
	}
	if (rc != 0)
		return rec_fail(node, op, rc, out);
	return 0;
}

/*
 * The record of the chunk is in (or is not). Put-if-absent (STORE): a
 * present chunk only gets its age refreshed; an absent one is written, its
 * bytes first and then its record, so a record never names missing bytes
 * (a crash between the two leaves bytes without a record, which the next
 * store of that chunk completes). A copy a read here found missing or
 * damaged (suspect_note()) is read again first: store_on_body(). SWEEP
 * deletes the record first, for the same reason.
 */
static int rec_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
		       struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	struct kv_node_chunk_rec rec;
	bool found = false;
	if (ch->mode == CHUNK_STORE && ch->step == STORE_CHECK)
		return store_on_body(node, op, in, out);
	if (in->read.status == 0) {
		struct kv_buf key = KV_BUF_INIT;
		if (rec_skey(&key, ch->hash) != 0)
			return rec_fail(node, op, -ENOMEM, out);
		found = kv_node__chunk_rec_decode(kv_buf_slice(&key), in->read.value, &rec) == 0;
		kv_buf_release(&key);
		/* A damaged record is rewritten by STORE, ignored otherwise. */
	} else if (in->read.status != KV_ENOTFOUND) {
		return rec_fail(node, op, in->read.status, out);
	}
	int rc = 0;
	struct rec_result r = { 0 };
	switch (ch->mode) {
	case CHUNK_STORE:
		if (suspect_find(node, ch->hash) >= 0) {
			ch->rec_found = found;
			ch->epoch = found ? rec.marked : 0;
			ch->step = STORE_CHECK;
			rc = read_body(node, op, out);
		} else if (found) {
			ch->existed = true;
			rec.touched = ch->wall;
			ch->step = STORE_RECORD;
			rc = write_record(node, op, &rec, out);
		} else {
			rc = store_body(node, op, out);
		}
		break;
	case CHUNK_UPDATE:
		if (!found)
			return rec_done(node, op, &r, out);
		if (ch->flags & KV_MSG_CHUNK_F_TOUCH)
			rec.touched = ch->wall;
		if ((ch->flags & KV_MSG_CHUNK_F_MARK) && ch->epoch > rec.marked)
			rec.marked = ch->epoch;
		ch->step = 2;
		ch->existed = true;
		rc = write_record(node, op, &rec, out);
		break;
	case CHUNK_SWEEP:
		if (!found || rec.marked >= ch->epoch || ch->wall < rec.touched ||
		    ((uint64_t)ch->wall - (uint64_t)rec.touched) <= ch->grace_ns) {
			r.kept = found;
			return rec_done(node, op, &r, out);
		}
		ch->size = rec.size;
		ch->step = 1;
		rc = delete_key(node, op, false, out);
		break;
	}
	if (rc != 0)
		return rec_fail(node, op, rc, out);
	return 0;
}

static int rec_on_write(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	if (in->write.status != 0)
		return rec_fail(node, op, in->write.status, out);
	int rc = 0;
	if (ch->mode == CHUNK_STORE && ch->step == STORE_BODY) {
		struct kv_node_chunk_rec rec = { .size = (uint32_t)(ch->size), .touched = ch->wall,
						 .marked = ch->epoch };
		ch->step = STORE_RECORD;
		rc = write_record(node, op, &rec, out);
	} else if (ch->mode == CHUNK_STORE && ch->step == STORE_DROP_RECORD) {
		ch->step = STORE_DROP_BODY;
		rc = delete_key(node, op, true, out);
	} else if (ch->mode == CHUNK_STORE && ch->step == STORE_DROP_BODY) {
		rc = store_body(node, op, out);
	} else if (ch->mode == CHUNK_SWEEP && ch->step == 1) {
		ch->step = 2;
		rc = delete_key(node, op, true, out);
	} else {
		struct rec_result r = { 0 };
		r.existed = ch->existed;
		r.found = ch->existed;
		r.swept = ch->mode == CHUNK_SWEEP;
		r.size = r.swept ? ch->size : 0;
		return rec_done(node, op, &r, out);
	}
	if (rc != 0)
		return rec_fail(node, op, rc, out);
	return 0;
}

/*
 * A new OP_CHUNK_REC for @hash, queued on its chunk key. For STORE, @data
 * (the chunk's bytes) is copied into the stored form. Returns 0 or -ENOMEM
 * (then nothing was queued and nobody is told).
 */
static int rec_new(struct kv_node *node, const struct kv_node_origin *origin, uint64_t parent,
		   uint32_t slot, enum kv_node_chunk_mode mode, const uint8_t *hash,
		   struct kv_slice data, uint8_t flags, uint64_t epoch, uint64_t grace_ns, int64_t wall,
		   struct kv_effects *out)
{
	uint8_t key[KV_NODE_CHUNK_KEY_LEN];
	chunk_key_of(hash, key);
	struct kv_node_op *op =
		kv_node__chunk_op_new(node, OP_CHUNK_REC, origin, kv_slice_make(key, sizeof key));
	if (op == NULL)
		return -ENOMEM;
	struct kv_node_chunk *ch = op->chunk;
	ch->parent = parent;
	ch->parent_slot = slot;
	ch->mode = mode;
	ch->flags = flags;
	ch->epoch = epoch;
	ch->grace_ns = grace_ns;
	ch->wall = wall;
	memcpy(ch->hash, hash, KV_NODE_CHUNK_HASH_LEN);
	if (mode == CHUNK_STORE) {
		ch->size = data.n;
		/* "KVC2" ‖ le32 n ‖ le64 XXH3-64 ‖ bytes: the checksum lets a
		 * read check for bit rot without a content-hash pass (body_decode). */
		uint64_t sum = kv_hash64(data.n ? data.p : body_magic, data.n);
		if (stored_alloc(&ch->data, KV_NODE_CHUNK_HEADER + data.n) != 0 ||
		    kv_buf_append(&ch->data, body_magic, sizeof body_magic) != 0 ||
		    kv_buf_append_le32(&ch->data, (uint32_t)data.n) != 0 ||
		    kv_buf_append_le64(&ch->data, sum) != 0 ||
		    kv_buf_append(&ch->data, data.p, data.n) != 0) {
			kv_node__op_finish(node, op, out);
			return -ENOMEM;
		}
	}
	if (kv_node__enqueue(node, op, out) != 0) {
		kv_node__op_finish(node, op, out);
		return -ENOMEM;
	}
	return 0;
}

/* ---- OP_CHUNK_BATCH: records of many local chunks, a window at a time --- */

static void batch_end(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint64_t parent = ch->parent;
	int err = ch->err;
	struct kv_msg_gc_reply sums = ch->sums;
	char text[sizeof ch->errtext];
	memcpy(text, ch->errtext, sizeof text);
	if (parent == 0) {
		if (err != 0) {
			kv_node__answer_error(out, &op->origin, err, text);
		} else {
			struct kv_node_msg_out *m =
				kv_node__answer(out, &op->origin, KV_MSG_CHUNK_MARK_ACK);
			if (m != NULL)
				m->msg.count.count = sums.refs;
		}
	}
	op->replied = true;
	kv_node__op_finish(node, op, out);
	if (parent == 0)
		return;
	struct kv_node_op *p = kv_node__chunk_find(node, parent);
	if (p == NULL)
		return;
	p->chunk->pending--;
	if (err != 0)
		kv_node__chunk_fail(p->chunk, err, "%s", text);
	p->chunk->sums.refs += sums.refs;
	p->chunk->sums.kept += sums.kept;
	p->chunk->sums.swept += sums.swept;
	p->chunk->sums.bytes += sums.bytes;
	(void)kv_node__gc_continue(node, node->now_ns, p, out);
}

/* Starts records up to the window; ends the batch when all are done. */
static void batch_pump(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	if (ch->step)
		return; /* already pumping: the loop below picks it up */
	ch->step = 1;
	size_t n = ch->data.n / KV_NODE_CHUNK_HASH_LEN;
	while (ch->running < BATCH_WINDOW && ch->next < n) {
		const uint8_t *hash = ch->data.p + ch->next * KV_NODE_CHUNK_HASH_LEN;
		struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_CHUNK_MARK };
		ch->next++;
		ch->running++;
		if (rec_new(node, &none, ch->id, 0, ch->mode, hash, kv_slice_make(NULL, 0), ch->flags,
			    ch->epoch, ch->grace_ns, ch->wall, out) != 0) {
			ch->running--;
			kv_node__chunk_fail(ch, -ENOMEM, "out of memory");
			ch->next = n; /* start no more */
		}
	}
	ch->step = 0;
	if (ch->running == 0 && ch->next >= n)
		batch_end(node, op, out);
}

static void batch_child(struct kv_node *node, struct kv_node_op *batch, const struct rec_result *r,
			struct kv_effects *out)
{
	struct kv_node_chunk *ch = batch->chunk;
	ch->running--;
	if (r->rc != 0)
		kv_node__chunk_fail(ch, r->rc, "chunk record: %s", kv_strerror(r->rc));
	ch->sums.refs += r->found;
	ch->sums.kept += r->kept;
	ch->sums.swept += r->swept;
	ch->sums.bytes += r->size;
	batch_pump(node, batch, out);
}

int kv_node__chunk_batch(struct kv_node *node, struct kv_node_op *parent,
			 enum kv_node_chunk_mode mode, uint8_t flags, uint64_t epoch,
			 uint64_t grace_ns, int64_t wall, const uint8_t *hashes, size_t n,
			 struct kv_effects *out)
{
	struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_CHUNK_MARK };
	struct kv_node_op *op =
		kv_node__chunk_op_new(node, OP_CHUNK_BATCH, &none, kv_slice_make(NULL, 0));
	if (op == NULL)
		return -ENOMEM;
	struct kv_node_chunk *ch = op->chunk;
	ch->parent = parent->chunk->id;
	ch->mode = mode;
	ch->flags = flags;
	ch->epoch = epoch;
	ch->grace_ns = grace_ns;
	ch->wall = wall;
	op->state = ST_WAIT;
	if (kv_buf_append(&ch->data, hashes, n * KV_NODE_CHUNK_HASH_LEN) != 0) {
		kv_node__op_finish(node, op, out);
		return -ENOMEM;
	}
	parent->chunk->pending++;
	batch_pump(node, op, out);
	return 0;
}

/* ---- Fan-out of hashes to their replicas (CHUNK_TOUCH, the gc's mark) --- */

struct fan_group {
	uint32_t to;
	struct kv_buf hashes;
};

int kv_node__chunk_fanout(struct kv_node *node, struct kv_node_op *agg, uint8_t flags,
			  uint64_t epoch, int64_t wall, const uint8_t *hashes, size_t n,
			  struct kv_effects *out)
{
	struct fan_group *groups = NULL;
	size_t ngroups = 0, cap = 0;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const uint8_t *hash = hashes + i * KV_NODE_CHUNK_HASH_LEN;
		uint8_t key[KV_NODE_CHUNK_KEY_LEN];
		uint32_t pref[KV_NODE_MAX_PEERS];
		chunk_key_of(hash, key);
		int np = kv_node_preflist(node, kv_slice_make(key, sizeof key), pref, KV_NODE_MAX_PEERS);
		for (int k = 0; rc == 0 && k < np; k++) {
			size_t g = 0;
			while (g < ngroups && groups[g].to != pref[k])
				g++;
			if (g == ngroups) {
				if (ngroups == cap) {
					size_t ncap = cap ? 2 * cap : 8;
					struct fan_group *p = realloc(groups, ncap * sizeof *p);
					if (p == NULL) {
						rc = -ENOMEM;
						break;
					}
					groups = p;
					cap = ncap;
				}
				groups[ngroups].to = pref[k];
				kv_buf_init(&groups[ngroups].hashes);
				ngroups++;
			}
			rc = kv_buf_append(&groups[g].hashes, hash, KV_NODE_CHUNK_HASH_LEN);
		}
	}
	/* The local batch last, after every send is out. */
	agg->chunk->step = 1; /* busy: parts that end now do not end @agg */
	for (size_t g = 0; rc == 0 && g < ngroups; g++) {
		if (groups[g].to == node->self_id)
			continue;
		size_t total = groups[g].hashes.n / KV_NODE_CHUNK_HASH_LEN;
		for (size_t off = 0; rc == 0 && off < total; off += KV_MSG_CHUNK_KEYS_MAX) {
			size_t cnt = total - off < KV_MSG_CHUNK_KEYS_MAX ? total - off
									 : KV_MSG_CHUNK_KEYS_MAX;
			uint64_t req = kv_node__id(node);
			struct kv_node_msg_out *m = kv_node__send(out, groups[g].to, req, KV_MSG_CHUNK_MARK);
			if (m == NULL || kv_buf_append(&m->bytes,
						       groups[g].hashes.p + off * KV_NODE_CHUNK_HASH_LEN,
						       cnt * KV_NODE_CHUNK_HASH_LEN) != 0 ||
			    kv_node__chunk_peer_add(agg, groups[g].to, req) != 0) {
				rc = -ENOMEM;
				break;
			}
			m->msg.chunk_keys.flags = flags;
			m->msg.chunk_keys.epoch = epoch;
			m->msg.chunk_keys.hashes = m->bytes.p;
			m->msg.chunk_keys.n = cnt;
			agg->chunk->pending++;
		}
	}
	for (size_t g = 0; rc == 0 && g < ngroups; g++)
		if (groups[g].to == node->self_id)
			rc = kv_node__chunk_batch(node, agg, CHUNK_UPDATE, flags, epoch, 0, wall,
						  groups[g].hashes.p,
						  groups[g].hashes.n / KV_NODE_CHUNK_HASH_LEN, out);
	agg->chunk->step = 0;
	for (size_t g = 0; g < ngroups; g++)
		kv_buf_release(&groups[g].hashes);
	free(groups);
	return rc;
}

/* ---- CHUNK_PUT ---------------------------------------------------------- */

static void put_slot(struct kv_node *node, struct kv_node_op *op, uint32_t slot, int rc,
		     bool existed, struct kv_effects *out)
{
	if (slot >= op->npref || op->answered[slot])
		return;
	op->answered[slot] = true;
	op->peer_req[slot] = 0;
	if (rc != 0) {
		op->nfailed++;
		if (!op->replied && op->npref - op->nfailed < op->needed) {
			kv_node__answer_error(out, &op->origin, KV_EQUORUM,
					      "chunk write quorum not met: too many replicas failed");
			op->replied = true;
		}
	} else {
		op->nanswered++;
		if (!existed)
			op->chunk->existed = false;
		if (!op->replied && op->nanswered >= op->needed) {
			struct kv_node_msg_out *m =
				kv_node__answer(out, &op->origin, KV_MSG_CHUNK_PUT_REPLY);
			if (m != NULL)
				m->msg.chunk_put_reply.flags =
					op->chunk->existed ? KV_MSG_CHUNK_F_EXISTED : 0;
			op->replied = true;
		}
	}
	if (op->nanswered + op->nfailed == op->npref)
		kv_node__op_finish(node, op, out);
}

static int chunk_put_request(struct kv_node *node, uint64_t now_ns,
			     const struct kv_node_origin *origin, const struct kv_msg *msg,
			     struct kv_effects *out)
{
	const struct kv_msg_chunk *c = &msg->chunk;
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!chunk_key_parse(c->key, hash)) {
		kv_node__answer_error(out, origin, KV_EINVAL,
				      "not a chunk key (00 63 and a 32-byte hash, not all zeros)");
		return 0;
	}
	int ok = hash_matches(hash, c->data);
	if (ok <= 0) {
		kv_node__answer_error(out, origin, ok < 0 ? ok : KV_EINVAL,
				      ok < 0 ? "out of memory"
					     : "the data does not hash to the chunk key");
		return 0;
	}
	if (c->w > node->n) {
		kv_node__answer_error(out, origin, KV_EINVAL, "w above the replica count");
		return 0;
	}
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, c->key, pref, KV_NODE_MAX_PEERS);
	uint32_t needed = c->w ? c->w : node->w;
	if (np < (int)needed) {
		kv_node__answer_error(out, origin, KV_EQUORUM, "fewer replicas than W");
		return 0;
	}
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_CHUNK_PUT, origin, c->key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	memcpy(op->pref, pref, sizeof pref);
	op->npref = (uint32_t)np;
	op->needed = needed;
	op->state = ST_WAIT;
	op->chunk->existed = true;
	int rc = kv_node__timer(node, op, kv_node__deadline(node, now_ns, c->timeout_ms), out);
	for (uint32_t i = 0; rc == 0 && i < op->npref; i++) {
		if (op->pref[i] == node->self_id)
			continue;
		uint64_t req = kv_node__id(node);
		rc = send_chunk_put(out, op->pref[i], req, c->key, c->data);
		if (rc != 0)
			break;
		op->peer_req[i] = req;
	}
	if (rc != 0) {
		kv_node__answer_error(out, origin, rc, "out of memory");
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return rc;
	}
	uint32_t self = self_slot(node, op);
	if (self != UINT32_MAX) {
		struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_CHUNK_PUT };
		uint64_t id = op->chunk->id;
		rc = rec_new(node, &none, id, self, CHUNK_STORE, hash, c->data, 0, 0, 0,
			     op->chunk->wall, out);
		if (rc != 0 && (op = kv_node__chunk_find(node, id)) != NULL)
			put_slot(node, op, self, rc, false, out);
	}
	return rc == -ENOMEM ? rc : 0;
}

/*
 * A peer's REPLICA_CHUNK_PUT: store put-if-absent, acknowledge when durable.
 * The bytes are not hashed again (doc/protocol.md REPLICA_CHUNK_PUT): the
 * coordinator, a cluster member, checked them against the key when the
 * client sent them (DESIGN §9), and the frame's XXH3 checksum covered
 * their transit. The key's format is still checked: it names the file.
 */
static int replica_chunk_put(struct kv_node *node, const struct kv_node_origin *origin,
			     const struct kv_msg *msg, struct kv_effects *out)
{
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!chunk_key_parse(msg->chunk.key, hash)) {
		kv_node__answer_error(out, origin, KV_EINVAL, "not a chunk key");
		return 0;
	}
	int64_t wall = node->wall_ns ? node->wall_ns : (int64_t)node->now_ns;
	int rc = rec_new(node, origin, 0, 0, CHUNK_STORE, hash, msg->chunk.data, 0, 0, 0, wall, out);
	if (rc != 0)
		kv_node__answer_error(out, origin, rc, "out of memory");
	return rc;
}

/* ---- CHUNK_GET: one replica after the other, then read repair ----------- */

static void get_end(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint32_t notfound = op->nanswered, failed = op->nfailed, corrupt = ch->corrupt;
	if (failed == 0 && corrupt == 0)
		kv_node__answer_error(out, &op->origin, KV_ENOTFOUND, "no replica has the chunk");
	else if (failed == 0 && notfound == 0)
		kv_node__answer_error(out, &op->origin, KV_ECORRUPT,
				      "every copy of the chunk failed its hash check");
	else {
		char text[160];
		snprintf(text, sizeof text,
			 "no replica returned the chunk: %u without it, %u corrupt, %u unreachable",
			 (unsigned)notfound, (unsigned)corrupt, (unsigned)failed);
		kv_node__answer_error(out, &op->origin, KV_EQUORUM, text);
	}
	op->replied = true;
	kv_node__op_finish(node, op, out);
}

/* Asks the replica of slot op->try_idx, or ends when none is left. */
static int get_try(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out)
{
	kv_node__cancel_timer(op, out);
	if (op->try_idx >= op->npref) {
		get_end(node, op, out);
		return 0;
	}
	uint32_t i = op->try_idx;
	int rc;
	uint64_t at = node->now_ns + node->forward_timeout_ns;
	if (at > op->chunk->deadline_ns)
		at = op->chunk->deadline_ns;
	if (op->pref[i] == node->self_id) {
		rc = read_body(node, op, out);
	} else {
		uint64_t req = kv_node__id(node);
		struct kv_node_msg_out *m = kv_node__send(out, op->pref[i], req, KV_MSG_REPLICA_CHUNK_GET);
		rc = m == NULL ? -ENOMEM : kv_node__own_key(m, kv_buf_slice(&op->key), &m->msg.chunk.key);
		op->peer_req[i] = req;
		op->state = ST_WAIT;
	}
	if (rc == 0)
		rc = kv_node__timer(node, op, at, out);
	if (rc != 0) {
		kv_node__answer_error(out, &op->origin, rc, "out of memory");
		op->replied = true;
		kv_node__op_finish(node, op, out);
	}
	return rc;
}

/*
 * Read repair (doc/node.md "Chunks and reclamation"). Slot op->try_idx gave
 * @data, the chunk's bytes, checked by that replica (its checksum, or the
 * hash of an old body). Every earlier slot that answered "not found" or
 * "corrupt" (ch->lacking) is sent them to store as CHUNK_PUT stores on a
 * replica: a peer by REPLICA_CHUNK_PUT, itself by a queued OP_CHUNK_REC
 * STORE — put-if-absent, a fresh store for the gc, and a copy the replica
 * found damaged is replaced (suspect_note()). Fire-and-forget: nothing
 * waits for the acks (a late ACK finds no operation and is ignored), and
 * the client's answer is already out. Slots that timed out or failed are
 * not sent anything: they may well hold the chunk, and a replica that is
 * slow or unreachable is the worst place to push megabytes to. At most
 * npref - 1 copies of @data per get, none in the common case.
 */
static void get_repair(struct kv_node *node, struct kv_node_op *op, struct kv_slice data,
		       struct kv_effects *out)
{
	struct kv_node_chunk *ch = op->chunk;
	uint8_t key[KV_NODE_CHUNK_KEY_LEN];
	chunk_key_of(ch->hash, key);
	for (uint32_t i = 0; i < op->try_idx && i < op->npref; i++) {
		if ((ch->lacking & (1u << i)) == 0)
			continue;
		if (op->pref[i] == node->self_id) {
			struct kv_node_origin none = { ORIGIN_NONE, 0, 0, 0, KV_MSG_CHUNK_PUT };
			if (rec_new(node, &none, 0, 0, CHUNK_STORE, ch->hash, data, 0, 0, 0, ch->wall,
				    out) != 0)
				continue; /* out of memory: the next read tries again */
		} else {
			if (send_chunk_put(out, op->pref[i], kv_node__id(node),
					   kv_slice_make(key, sizeof key), data) != 0)
				continue; /* out of memory: the next read tries again */
		}
		node->stats.chunk_read_repairs++;
	}
}

/* Answers the client with @data (copied), repairs the replicas without it, and ends. */
static int get_reply(struct kv_node *node, struct kv_node_op *op, struct kv_slice data,
		     struct kv_effects *out)
{
	int rc = 0;
	struct kv_node_msg_out *m = kv_node__answer(out, &op->origin, KV_MSG_CHUNK_GET_REPLY);
	if (m != NULL && kv_node__own_key(m, data, &m->msg.chunk_data.data) != 0) {
		kv_msg_init(&m->msg, KV_MSG_ERROR);
		m->msg.error.code = -ENOMEM;
		rc = -ENOMEM;
	}
	op->replied = true;
	if (op->chunk->lacking != 0)
		get_repair(node, op, data, out);
	kv_node__op_finish(node, op, out);
	return rc;
}

/* Slot op->try_idx did not give the chunk: @code says why; try the next. */
static int get_next(struct kv_node *node, struct kv_node_op *op, int code, struct kv_effects *out)
{
	if (code == KV_ENOTFOUND)
		op->nanswered++;
	else if (code == KV_ECORRUPT)
		op->chunk->corrupt++;
	else
		op->nfailed++;
	if (code == KV_ENOTFOUND || code == KV_ECORRUPT)
		op->chunk->lacking |= 1u << op->try_idx;
	op->peer_req[op->try_idx] = 0;
	op->try_idx++;
	return get_try(node, op, out);
}

static int chunk_get_request(struct kv_node *node, uint64_t now_ns,
			     const struct kv_node_origin *origin, const struct kv_msg *msg,
			     struct kv_effects *out)
{
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!chunk_key_parse(msg->chunk.key, hash)) {
		kv_node__answer_error(out, origin, KV_EINVAL,
				      "not a chunk key (00 63 and a 32-byte hash, not all zeros)");
		return 0;
	}
	uint32_t pref[KV_NODE_MAX_PEERS];
	int np = kv_node_preflist(node, msg->chunk.key, pref, KV_NODE_MAX_PEERS);
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_CHUNK_GET, origin, msg->chunk.key);
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	/* Itself first when it is a replica: no network at all. */
	uint32_t k = 0;
	for (int i = 0; i < np; i++)
		if (pref[i] == node->self_id)
			op->pref[k++] = pref[i];
	for (int i = 0; i < np; i++)
		if (pref[i] != node->self_id)
			op->pref[k++] = pref[i];
	op->npref = k;
	memcpy(op->chunk->hash, hash, sizeof hash);
	op->chunk->deadline_ns = kv_node__deadline(node, now_ns, msg->chunk.timeout_ms);
	return get_try(node, op, out);
}

static int chunk_get_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			     struct kv_effects *out)
{
	op->state = ST_WAIT;
	if (in->read.status == KV_ENOTFOUND || in->read.status == KV_ECORRUPT)
		suspect_note(node, op->chunk->hash);
	if (in->read.status != 0)
		return get_next(node, op,
				in->read.status == KV_ENOTFOUND || in->read.status == KV_ECORRUPT
					? in->read.status
					: -EIO,
				out);
	struct kv_slice data;
	if (body_decode(op->chunk->hash, in->read.value, &data) != 0) {
		suspect_note(node, op->chunk->hash);
		return get_next(node, op, KV_ECORRUPT, out);
	}
	return get_reply(node, op, data, out);
}

/* A peer's REPLICA_CHUNK_GET: read, check the hash, answer. */
static int replica_chunk_get(struct kv_node *node, const struct kv_node_origin *origin,
			     const struct kv_msg *msg, struct kv_effects *out)
{
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!chunk_key_parse(msg->chunk.key, hash)) {
		kv_node__answer_error(out, origin, KV_EINVAL, "not a chunk key");
		return 0;
	}
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_CHUNK_RGET, origin, msg->chunk.key);
	struct kv_node_storage_out *s = op ? kv_node__read_push(out) : NULL;
	if (s == NULL || body_skey(&s->key, hash) != 0) {
		if (s != NULL)
			kv_node__storage_pop(out, false);
		if (op != NULL)
			kv_node__op_finish(node, op, out);
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	memcpy(op->chunk->hash, hash, sizeof hash);
	op->storage_op = kv_node__id(node);
	s->op = op->storage_op;
	op->state = ST_READ;
	return 0;
}

static int rget_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			struct kv_effects *out)
{
	struct kv_slice data;
	int rc = 0;
	bool good = in->read.status == 0 && body_decode(op->chunk->hash, in->read.value, &data) == 0;
	if (!good && (in->read.status == 0 || in->read.status == KV_ENOTFOUND ||
		      in->read.status == KV_ECORRUPT))
		suspect_note(node, op->chunk->hash); /* a read repair may follow */
	if (in->read.status == KV_ENOTFOUND) {
		kv_node__answer_error(out, &op->origin, KV_ENOTFOUND, "chunk not on this replica");
	} else if (in->read.status == KV_ECORRUPT) {
		/* A damaged body file (doc/storage-format.md "Chunk store"). */
		kv_node__answer_error(out, &op->origin, KV_ECORRUPT,
				      "the stored chunk is damaged (bad length or magic)");
	} else if (in->read.status != 0) {
		kv_node__answer_error(out, &op->origin, in->read.status, "cannot read the chunk");
	} else if (!good) {
		kv_node__answer_error(out, &op->origin, KV_ECORRUPT,
				      "the stored chunk fails its check (checksum or hash)");
	} else {
		struct kv_node_msg_out *m =
			kv_node__answer(out, &op->origin, KV_MSG_REPLICA_CHUNK_GET_REPLY);
		if (m != NULL && kv_node__own_key(m, data, &m->msg.chunk_data.data) != 0) {
			kv_msg_init(&m->msg, KV_MSG_ERROR);
			m->msg.error.code = -ENOMEM;
			rc = -ENOMEM;
		}
	}
	kv_node__op_finish(node, op, out);
	return rc;
}

/* ---- CHUNK_TOUCH and CHUNK_MARK ---------------------------------------- */

/* Checks the hashes of a CHUNK_TOUCH / CHUNK_MARK: none may be a hole. */
static bool hashes_valid(const struct kv_msg_chunk_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		if (hash_is_zero(k->hashes + i * KV_NODE_CHUNK_HASH_LEN))
			return false;
	return true;
}

static int chunk_touch_request(struct kv_node *node, uint64_t now_ns,
			       const struct kv_node_origin *origin, const struct kv_msg *msg,
			       struct kv_effects *out)
{
	const struct kv_msg_chunk_keys *k = &msg->chunk_keys;
	if (!hashes_valid(k)) {
		kv_node__answer_error(out, origin, KV_EINVAL, "an all-zero hash names no chunk");
		return 0;
	}
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_CHUNK_TOUCH, origin, kv_slice_make(NULL, 0));
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	op->state = ST_WAIT;
	uint64_t id = op->chunk->id;
	int rc = kv_node__timer(node, op, kv_node__deadline(node, now_ns, k->timeout_ms), out);
	if (rc == 0)
		rc = kv_node__chunk_fanout(node, op, KV_MSG_CHUNK_F_TOUCH, 0, op->chunk->wall, k->hashes,
					   k->n, out);
	if ((op = kv_node__chunk_find(node, id)) == NULL)
		return rc;
	if (rc != 0)
		kv_node__chunk_fail(op->chunk, rc, "out of memory");
	(void)kv_node__gc_continue(node, now_ns, op, out);
	return rc == -ENOMEM ? rc : 0;
}

static int chunk_mark_request(struct kv_node *node, const struct kv_node_origin *origin,
			      const struct kv_msg *msg, struct kv_effects *out)
{
	const struct kv_msg_chunk_keys *k = &msg->chunk_keys;
	if (!hashes_valid(k)) {
		kv_node__answer_error(out, origin, KV_EINVAL, "an all-zero hash names no chunk");
		return 0;
	}
	struct kv_node_op *op = kv_node__chunk_op_new(node, OP_CHUNK_BATCH, origin, kv_slice_make(NULL, 0));
	if (op == NULL) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	struct kv_node_chunk *ch = op->chunk;
	ch->mode = CHUNK_UPDATE;
	ch->flags = k->flags;
	ch->epoch = k->epoch;
	op->state = ST_WAIT;
	if (kv_buf_append(&ch->data, k->hashes, k->n * KV_NODE_CHUNK_HASH_LEN) != 0) {
		kv_node__answer_error(out, origin, -ENOMEM, "out of memory");
		kv_node__op_finish(node, op, out);
		return -ENOMEM;
	}
	batch_pump(node, op, out);
	return 0;
}

/* ---- Dispatch from node.c ----------------------------------------------- */

int kv_node__chunk_client(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			  const struct kv_msg *msg, struct kv_effects *out)
{
	switch (msg->type) {
	case KV_MSG_CHUNK_PUT:
		return chunk_put_request(node, now_ns, origin, msg, out);
	case KV_MSG_CHUNK_GET:
		return chunk_get_request(node, now_ns, origin, msg, out);
	case KV_MSG_CHUNK_TOUCH:
		return chunk_touch_request(node, now_ns, origin, msg, out);
	default:
		return kv_node__gc_request(node, now_ns, origin, msg, out);
	}
}

int kv_node__chunk_peer(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			const struct kv_msg *msg, struct kv_effects *out)
{
	switch (msg->type) {
	case KV_MSG_REPLICA_CHUNK_PUT:
		return replica_chunk_put(node, origin, msg, out);
	case KV_MSG_REPLICA_CHUNK_GET:
		return replica_chunk_get(node, origin, msg, out);
	case KV_MSG_CHUNK_MARK:
		return chunk_mark_request(node, origin, msg, out);
	default:
		return kv_node__gc_peer(node, now_ns, origin, msg, out);
	}
}

int kv_node__chunk_on_reply(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    uint32_t from, uint64_t req_id, const struct kv_msg *msg,
			    struct kv_effects *out)
{
	int code = msg->type == KV_MSG_ERROR ? (msg->error.code < 0 ? msg->error.code : KV_EINVAL) : 0;
	switch (op->kind) {
	case OP_CHUNK_PUT: {
		uint32_t slot = slot_of(op, from);
		if (msg->type != KV_MSG_ERROR && msg->type != KV_MSG_REPLICA_CHUNK_PUT_ACK)
			return 0;
		put_slot(node, op, slot, code,
			 code == 0 && (msg->chunk_put_reply.flags & KV_MSG_CHUNK_F_EXISTED), out);
		return 0;
	}
	case OP_CHUNK_GET: {
		uint32_t slot = slot_of(op, from);
		if (slot != op->try_idx)
			return 0; /* a replica given up on: its late answer is ignored */
		if (msg->type == KV_MSG_REPLICA_CHUNK_GET_REPLY)
			return get_reply(node, op, msg->chunk_data.data, out);
		if (msg->type != KV_MSG_ERROR)
			return 0;
		return get_next(node, op, code == KV_ENOTFOUND || code == KV_ECORRUPT ? code : -EIO,
				out);
	}
	case OP_CHUNK_TOUCH:
	case OP_GC_SCAN: {
		if (!peer_take(op, from, req_id))
			return 0;
		op->chunk->pending--;
		if (msg->type == KV_MSG_CHUNK_MARK_ACK)
			op->chunk->sums.refs += msg->count.count;
		else
			kv_node__chunk_fail(op->chunk, code ? code : KV_ECORRUPT,
					    "node %u could not mark chunks: %.*s", (unsigned)from,
					    msg->type == KV_MSG_ERROR ? (int)msg->error.text.n : 0,
					    msg->type == KV_MSG_ERROR ? (const char *)msg->error.text.p : "");
		return kv_node__gc_continue(node, now_ns, op, out);
	}
	case OP_GC: {
		if (!peer_take(op, from, req_id))
			return 0;
		if (msg->type == KV_MSG_ERROR)
			return kv_node__gc_member_done(node, now_ns, op, from, code, msg->error.text,
						       NULL, out);
		if (msg->type != KV_MSG_GC_MARK_DONE && msg->type != KV_MSG_GC_SWEEP_DONE)
			return kv_node__gc_member_done(node, now_ns, op, from, KV_ECORRUPT,
						       kv_slice_str("unexpected reply"), NULL, out);
		return kv_node__gc_member_done(node, now_ns, op, from, 0, kv_slice_make(NULL, 0),
					       &msg->gc_reply, out);
	}
	default:
		return 0;
	}
}

int kv_node__chunk_on_read(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			   const struct kv_input *in, struct kv_effects *out)
{
	switch (op->kind) {
	case OP_CHUNK_REC:
		return rec_on_read(node, op, in, out);
	case OP_CHUNK_GET:
		return chunk_get_on_read(node, op, in, out);
	case OP_CHUNK_RGET:
		return rget_on_read(node, op, in, out);
	default:
		return 0;
	}
}

int kv_node__chunk_on_write(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			    struct kv_effects *out)
{
	if (op->kind != OP_CHUNK_REC)
		return 0;
	return rec_on_write(node, op, in, out);
}

int kv_node__chunk_on_timer(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    struct kv_effects *out)
{
	switch (op->kind) {
	case OP_CHUNK_PUT:
		if (!op->replied)
			kv_node__answer_error(out, &op->origin, KV_ETIMEDOUT,
					      "fewer than W replicas stored the chunk in time");
		op->replied = true;
		kv_node__op_finish(node, op, out);
		return 0;
	case OP_CHUNK_GET:
		if (now_ns >= op->chunk->deadline_ns) {
			kv_node__answer_error(out, &op->origin, KV_ETIMEDOUT,
					      "no replica returned the chunk in time");
			op->replied = true;
			kv_node__op_finish(node, op, out);
			return 0;
		}
		return get_next(node, op, KV_ETIMEDOUT, out); /* this replica is slow: the next */
	default:
		kv_node__chunk_fail(op->chunk, KV_ETIMEDOUT, "timed out waiting for %llu answers",
				    (unsigned long long)op->chunk->pending);
		op->chunk->pending = 0;
		op->chunk->npeers = 0;
		return kv_node__gc_continue(node, now_ns, op, out);
	}
}
