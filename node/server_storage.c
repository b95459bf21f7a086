/*
 * server_storage.c - the node's storage effects (server.h; issue 4): point
 * reads and ranges on libuv's pool (or answered on the loop when the engine
 * has them cached), writes through the engine's group commit with
 * asynchronous completion, chunk bodies through the chunk store on the
 * pool. Each completion is fed back to kv_node_step() as an input.
 *
 * Design note: doc/node.md "The libuv driver".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/server_int.h"
#include "util/error.h"
#include "util/log.h"

/* ---- Storage: reads and ranges on the pool, writes through group commit */

struct srv_range_ent {
	size_t koff, klen, voff, vlen;
};

struct srv_read {
	uv_work_t req;
	struct kv_server *s;
	uint64_t op;
	bool range;
	struct kv_buf key, end; /* range: [key, end) */
	uint32_t max;
	uint32_t max_bytes;     /* range: 0, or end the page past this many bytes */
	struct kv_buf value;    /* read: the value; range: every key and value */
	struct srv_range_ent *ents;
	size_t nents;
	int status;
	struct srv_read *bnext; /* s->rbatch, then its srv_read_batch */
};

static void read_work(uv_work_t *req)
{
	struct srv_read *r = req->data;
	struct kv_lsm *db = r->s->db;
	if (!r->range) {
		uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
		if (kv_node_chunk_skey_hash(kv_buf_slice(&r->key), hash)) {
			/* A chunk body: one file, read whole (doc/node.md "Chunks"). */
			r->status = kv_chunkstore_get(r->s->chunks, hash, &r->value);
			if (r->status != KV_ENOTFOUND)
				return;
			/* else: a body stored in the engine before the chunk store */
		}
		r->status = kv_lsm_get(db, NULL, kv_buf_slice(&r->key), &r->value);
		return;
	}
	struct kv_lsm_iter_options io;
	memset(&io, 0, sizeof io);
	io.lower = kv_buf_slice(&r->key);
	io.upper = kv_buf_slice(&r->end);
	struct kv_iter *it = kv_lsm_iter(db, &io);
	if (it == NULL) {
		r->status = -ENOMEM;
		return;
	}
	r->ents = r->max ? calloc(r->max, sizeof *r->ents) : NULL;
	if (r->max && r->ents == NULL) {
		r->status = -ENOMEM;
		goto out;
	}
	for (kv_iter_seek_first(it); kv_iter_valid(it) && r->nents < r->max; kv_iter_next(it)) {
		struct kv_slice k = kv_iter_key(it), v = kv_iter_value(it);
		struct srv_range_ent *e = &r->ents[r->nents];
		e->koff = r->value.n;
		e->klen = k.n;
		e->voff = r->value.n + k.n;
		e->vlen = v.n;
		if (kv_buf_append(&r->value, k.p, k.n) != 0 ||
		    kv_buf_append(&r->value, v.p, v.n) != 0) {
			r->status = -ENOMEM;
			goto out;
		}
		r->nents++;
		if (r->max_bytes != 0 && r->value.n >= r->max_bytes)
			break; /* node.h: the page's byte budget */
	}
	r->status = kv_iter_status(it);
out:
	kv_iter_destroy(it);
}

static void read_free(struct srv_read *r)
{
	kv_buf_release(&r->key);
	kv_buf_release(&r->end);
	kv_buf_release(&r->value);
	free(r->ents);
	free(r);
}

static void read_after(uv_work_t *req, int status)
{
	struct srv_read *r = req->data;
	struct kv_server *s = r->s;
	s->work_inflight--;
	if (status != 0 && r->status == 0)
		r->status = status; /* cancelled */
	struct kv_input in;
	memset(&in, 0, sizeof in);
	struct kv_node_range_entry *ents = NULL;
	if (!r->range) {
		in.type = KV_INPUT_READ_DONE;
		in.read.op = r->op;
		in.read.status = r->status;
		in.read.value = kv_buf_slice(&r->value);
	} else {
		in.type = KV_INPUT_RANGE_DONE;
		in.range.op = r->op;
		in.range.status = r->status;
		if (r->status == 0 && r->nents > 0) {
			ents = calloc(r->nents, sizeof *ents);
			if (ents == NULL) {
				in.range.status = -ENOMEM;
			} else {
				for (size_t i = 0; i < r->nents; i++) {
					ents[i].key = kv_slice_make(r->value.p + r->ents[i].koff,
								    r->ents[i].klen);
					ents[i].value = kv_slice_make(r->value.p + r->ents[i].voff,
								      r->ents[i].vlen);
				}
				in.range.entries = ents;
				in.range.n = r->nents;
			}
		}
	}
	if (!s->stopping)
		kv_srv__step(s, &in);
	free(ents);
	read_free(r);
	kv_srv__maybe_finish(s);
}

void kv_srv__queue_read(struct kv_server *s, uint64_t op, struct kv_buf *key, struct kv_buf *end,
			uint32_t max, uint32_t max_bytes, bool range)
{
	struct srv_read *r = calloc(1, sizeof *r);
	if (r == NULL)
		goto fail;
	r->s = s;
	r->op = op;
	r->range = range;
	r->max = max;
	r->max_bytes = max_bytes;
	r->req.data = r;
	/* Take the effect's buffers over (node.h: a consumer may swap them out). */
	r->key = *key;
	kv_buf_init(key);
	if (end != NULL) {
		r->end = *end;
		kv_buf_init(end);
	}
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!range && !kv_node_chunk_skey_hash(kv_buf_slice(&r->key), hash)) {
		/* A small point read: batched with the others of this loop round. */
		r->bnext = NULL;
		if (s->rbatch_tail != NULL)
			s->rbatch_tail->bnext = r;
		else
			s->rbatch = r;
		s->rbatch_tail = r;
		s->work_inflight++;
		return;
	}
	if (uv_queue_work(&s->loop, &r->req, read_work, read_after) != 0) {
		read_free(r);
		goto fail;
	}
	s->work_inflight++;
	return;
fail:
	/* The operation's own timer answers its client. */
	kv_error("node %s: cannot queue a storage read", s->self_name);
}

/*
 * Point reads queued in one loop round go to the pool together: one work
 * item (one thread wake-up, one completion) per READ_BATCH_MAX reads instead
 * of one each. The reads and their completions are the ones above.
 */
#define READ_BATCH_MAX 32u

struct srv_read_batch {
	uv_work_t req;
	struct kv_server *s;
	struct srv_read *head;
};

static void read_batch_work(uv_work_t *req)
{
	struct srv_read_batch *b = req->data;
	for (struct srv_read *r = b->head; r != NULL; r = r->bnext)
		read_work(&r->req);
}

static void read_batch_after(uv_work_t *req, int status)
{
	struct srv_read_batch *b = req->data;
	struct srv_read *r = b->head;
	free(b);
	while (r != NULL) {
		struct srv_read *next = r->bnext;
		read_after(&r->req, status); /* frees @r */
		r = next;
	}
}

/*
 * First, on the loop: a batched point read that the engine can answer from
 * memory (memtables, filters, block cache: kv_lsm_get_cached) completes at
 * once, without the trip to the pool and back (two thread wake-ups per
 * read, and a replica's read-join-write is on every put's critical path).
 * The steps those completions run may queue more reads, which get the same
 * treatment. What needs the disk goes to the pool, in batches. Called only
 * outside a step (flush_dirty).
 */
void kv_srv__reads_flush(struct kv_server *s)
{
	struct srv_read *pool = NULL, *pool_tail = NULL;
	while (s->rbatch != NULL) {
		struct srv_read *r = s->rbatch;
		s->rbatch = r->bnext;
		if (s->rbatch == NULL)
			s->rbatch_tail = NULL;
		r->bnext = NULL;
		int rc = s->stopping || s->in_step
				 ? -EAGAIN
				 : kv_lsm_get_cached(s->db, kv_buf_slice(&r->key), &r->value);
		if (rc == -EAGAIN) {
			if (pool_tail != NULL)
				pool_tail->bnext = r;
			else
				pool = r;
			pool_tail = r;
			continue;
		}
		r->status = rc;
		s->c.reads_inline++;
		read_after(&r->req, 0); /* steps the core; frees @r */
	}
	s->rbatch = pool;
	s->rbatch_tail = pool_tail;
	while (s->rbatch != NULL) {
		struct srv_read *head = s->rbatch, *last = head;
		s->c.reads_pool++;
		for (unsigned k = 1; k < READ_BATCH_MAX && last->bnext != NULL; k++) {
			last = last->bnext;
			s->c.reads_pool++;
		}
		s->rbatch = last->bnext;
		if (s->rbatch == NULL)
			s->rbatch_tail = NULL;
		last->bnext = NULL;
		struct srv_read_batch *b = calloc(1, sizeof *b);
		if (b != NULL) {
			b->s = s;
			b->head = head;
			b->req.data = b;
			if (uv_queue_work(&s->loop, &b->req, read_batch_work, read_batch_after) == 0)
				continue;
			free(b);
		}
		/* The operations' own timers answer their clients. */
		kv_error("node %s: cannot queue a storage read", s->self_name);
		while (head != NULL) {
			struct srv_read *next = head->bnext;
			s->work_inflight--;
			read_free(head);
			head = next;
		}
	}
}

static void write_done_cb(void *arg, int status)
{
	/* On an engine thread: hand the completion to the loop (done_lock). */
	struct srv_write *w = arg;
	struct kv_server *s = w->s;
	w->status = status;
	pthread_mutex_lock(&s->done_lock);
	w->next = s->done;
	s->done = w;
	pthread_mutex_unlock(&s->done_lock);
	/* The loop's own commit round steps its completions when it returns. */
	if (!pthread_equal(pthread_self(), s->loop_tid) || !s->committing_here)
		uv_async_send(&s->done_async);
}

void kv_srv__done_async_cb(uv_async_t *h)
{
	struct kv_server *s = h->data;
	pthread_mutex_lock(&s->done_lock);
	struct srv_write *list = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->done_lock);
	struct srv_write *fifo = NULL; /* the list is newest first */
	while (list != NULL) {
		struct srv_write *w = list;
		list = w->next;
		w->next = fifo;
		fifo = w;
	}
	while (fifo != NULL) {
		struct srv_write *w = fifo;
		fifo = w->next;
		s->writes_inflight--;
		struct kv_input in = { .type = KV_INPUT_WRITE_DONE };
		in.write.op = w->op;
		in.write.status = w->status;
		if (w->status != 0)
			kv_error("node %s: storage write failed: %s", s->self_name,
				 kv_strerror(w->status));
		if (!s->stopping) {
			bool tainted = kv_node_actor_tainted(&s->node);
			kv_srv__step(s, &in);
			if (!tainted && kv_node_actor_tainted(&s->node))
				kv_error("node %s: a local write failed after its put was "
					 "shipped: refusing coordinated puts until a restart "
					 "(which takes a new epoch)", s->self_name);
		} else if (w->status != 0)
			/* Not stepped any more: it may be a shipped put's local
			 * write, so the stop must count as unclean. */
			s->node.actor_tainted = true;
		free(w);
	}
	kv_srv__maybe_finish(s);
}

/*
 * A chunk body write or delete, on the pool (doc/node.md "Chunks and
 * reclamation"): bodies live in the chunk store, outside the engine, and
 * the core's write effect completes once the file is durable.
 */
struct srv_chunk_write {
	uv_work_t req;
	struct kv_server *s;
	uint64_t op;
	bool del;
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	struct kv_buf key;    /* the body's storage key (legacy engine copy) */
	struct kv_buf stored; /* put: the stored form, taken over from the effect */
	int status;
};

static void chunk_write_work(uv_work_t *req)
{
	struct srv_chunk_write *w = req->data;
	struct kv_server *s = w->s;
	if (!w->del) {
		int rc = kv_chunkstore_put(s->chunks, w->hash, kv_buf_slice(&w->stored));
		w->status = rc > 0 ? 0 : rc;
		return;
	}
	int rc = kv_chunkstore_delete(s->chunks, w->hash);
	if (rc == KV_ENOTFOUND)
		rc = 0;
	/* A body an older kvfsd stored in the engine goes too. */
	struct kv_buf old = KV_BUF_INIT;
	int grc = kv_lsm_get(s->db, NULL, kv_buf_slice(&w->key), &old);
	kv_buf_release(&old);
	if (rc == 0 && grc == 0)
		rc = kv_lsm_delete(s->db, kv_buf_slice(&w->key));
	else if (rc == 0 && grc != KV_ENOTFOUND)
		rc = grc;
	w->status = rc;
}

static void chunk_write_after(uv_work_t *req, int status)
{
	struct srv_chunk_write *w = req->data;
	struct kv_server *s = w->s;
	s->work_inflight--;
	s->chunk_writes--;
	if (status != 0 && w->status == 0)
		w->status = status; /* cancelled */
	if (w->status != 0)
		kv_error("node %s: chunk body %s failed: %s", s->self_name,
			 w->del ? "delete" : "write", kv_strerror(w->status));
	if (!s->stopping) {
		struct kv_input in = { .type = KV_INPUT_WRITE_DONE };
		in.write.op = w->op;
		in.write.status = w->status;
		kv_srv__step(s, &in);
	}
	kv_buf_release(&w->key);
	kv_buf_release(&w->stored);
	free(w);
	kv_srv__maybe_finish(s);
}

/* Completes write @op with @rc on the loop, later (never a nested step). */
static void fail_write(struct kv_server *s, uint64_t op, int rc)
{
	struct srv_write *w = calloc(1, sizeof *w);
	if (w == NULL) {
		kv_error("node %s: out of memory for a write", s->self_name);
		return;
	}
	w->s = s;
	w->op = op;
	s->writes_inflight++;
	write_done_cb(w, rc);
}

/* Queues a body effect on the pool; false when @st is no body key. */
static bool queue_chunk_write(struct kv_server *s, struct kv_node_storage_out *st)
{
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	if (!kv_node_chunk_skey_hash(kv_buf_slice(&st->key), hash))
		return false;
	struct srv_chunk_write *w = calloc(1, sizeof *w);
	if (w == NULL) {
		fail_write(s, st->op, -ENOMEM);
		return true;
	}
	w->s = s;
	w->op = st->op;
	w->del = st->del;
	memcpy(w->hash, hash, sizeof hash);
	w->req.data = w;
	/* Take the effect's buffers over: the 4 MiB body is not copied. */
	w->key = st->key;
	kv_buf_init(&st->key);
	w->stored = st->value;
	kv_buf_init(&st->value);
	int rc = uv_queue_work(&s->loop, &w->req, chunk_write_work, chunk_write_after);
	if (rc != 0) {
		kv_error("node %s: cannot queue a chunk write: %s", s->self_name, uv_strerror(rc));
		fail_write(s, w->op, -EIO);
		kv_buf_release(&w->key);
		kv_buf_release(&w->stored);
		free(w);
		return true;
	}
	s->work_inflight++;
	s->chunk_writes++;
	return true;
}

void kv_srv__queue_write(struct kv_server *s, struct kv_node_storage_out *st)
{
	if (queue_chunk_write(s, st))
		return;
	struct srv_write *w = calloc(1, sizeof *w);
	if (w == NULL) {
		kv_error("node %s: out of memory for a write", s->self_name);
		return;
	}
	w->s = s;
	w->op = st->op;
	s->writes_inflight++;
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	int rc = b == NULL ? -ENOMEM
		 : st->del ? kv_lsm_batch_delete(b, kv_buf_slice(&st->key))
			   : kv_lsm_batch_put(b, kv_buf_slice(&st->key), kv_buf_slice(&st->value));
	if (rc == 0 && s->flush_up && !s->stopping) {
		/* Committed by this round's kv_srv__commit_round(). */
		rc = kv_lsm_write_deferred(s->db, b, write_done_cb, w);
		s->writes_deferred = rc == 0;
	} else if (rc == 0) {
		rc = kv_lsm_write_async(s->db, b, write_done_cb, w);
	}
	if (rc != 0) {
		if (b != NULL)
			kv_lsm_batch_free(b);
		write_done_cb(w, rc); /* completes on the loop, never nested */
	}
}

/*
 * The writes of a loop round are committed here, on the loop thread, as
 * one group: one WAL write and one fdatasync, then their completions are
 * stepped at once. A hand-off to the engine's commit thread and back
 * costs two thread wake-ups per group (a futex and an eventfd), which on
 * a small virtual machine cost more CPU than the commit itself
 * (doc/benchmarks.md, "The eighth session"). The loop blocks for the
 * fsync meanwhile; frames that arrive wait in the socket buffers and make
 * the next group bigger. The replica writes and replies the round made
 * left first, so the peers sync in parallel.
 * When the engine must wait for background work (a flush behind, a
 * level-0 slowdown), the commit thread takes the group instead and the
 * loop keeps serving reads. So it does while the disk is busy with big
 * writes that would queue in front of the log's sync: while the engine
 * flushes or compacts (kv_lsm_commit_here declines), and while a chunk
 * body is written here (which held the loop, and with it the next chunk
 * frames, for milliseconds: a 512 MiB copy went 141/122 -> 114/109 MB/s).
 * A sync that is slow for another reason holds the loop that long; an
 * earlier version handed off for 50 ms after any commit over 10 ms and
 * lost most of the gain at 4,000 puts/s, where such syncs come every few
 * hundred groups.
 */
void kv_srv__commit_round(struct kv_server *s)
{
	kv_srv__flush_dirty(s);
	for (int i = 0; i < 4 && s->writes_deferred; i++) {
		if (s->chunk_writes > 0)
			break; /* the disk is busy: the commit thread, below */
		s->writes_deferred = false;
		s->committing_here = true;
		int here = kv_lsm_commit_here(s->db);
		s->committing_here = false;
		if (!here) {
			s->c.commits_handed++;
			return; /* handed to the commit thread */
		}
		s->c.commits_loop++;
		/* Steps the completions; the writes they start (the next put on
		 * a key, a read answered from memory that leads to a write) set
		 * writes_deferred again. */
		kv_srv__done_async_cb(&s->done_async);
		kv_srv__flush_dirty(s);
	}
	if (s->writes_deferred) {
		/* Never leave a write queued with nobody to commit it. */
		s->writes_deferred = false;
		s->c.commits_handed++;
		kv_lsm_commit_kick(s->db);
	}
}
