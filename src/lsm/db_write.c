/*
 * db_write.c - the write path: batches, group commit, memtable switches
 * (see lsm.h).
 *
 * Writers queue up under the engine's mutex. The writer at the head of the
 * queue becomes the leader: it makes room (switching memtables, slowing or
 * waiting for background work), gathers the queued batches behind it into
 * one write group, and — with the mutex released — appends the group to the
 * WAL as one record, fsyncs once (per the sync policy), and applies it to
 * the memtable. Then it completes every writer of the group and hands
 * leadership to the next head. A synchronous writer leads from its own
 * thread; a group headed by an asynchronous writer is led by the commit
 * thread, so the caller of kv_lsm_write_async() never blocks on a disk.
 *
 * A write group on disk: doc/storage-format.md#write-group.
 */
#include "lsm/db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

#define GROUP_HEADER 12              /* le64 first sequence, le32 count */
#define GROUP_MAX_BYTES (1u << 20)   /* gather at most this much into one group */

/* ---- Batches -------------------------------------------------------------- */

struct kv_lsm_batch {
	struct kv_buf rep; /* entries: type u8, varint klen, key, [varint vlen, value] */
	unsigned count;
	uint64_t user_bytes;
};

struct kv_lsm_batch *kv_lsm_batch_new(void)
{
	struct kv_lsm_batch *b = calloc(1, sizeof *b);
	if (b)
		kv_buf_init(&b->rep);
	return b;
}

void kv_lsm_batch_free(struct kv_lsm_batch *b)
{
	if (!b)
		return;
	kv_buf_release(&b->rep);
	free(b);
}

void kv_lsm_batch_clear(struct kv_lsm_batch *b)
{
	kv_buf_reset(&b->rep);
	b->count = 0;
	b->user_bytes = 0;
}

unsigned kv_lsm_batch_count(const struct kv_lsm_batch *b)
{
	return b->count;
}

static int batch_add(struct kv_lsm_batch *b, enum kv_entry_type type, struct kv_slice key,
		     struct kv_slice value)
{
	if (key.n > KV_LSM_MAX_KEY || value.n > KV_LSM_MAX_VALUE)
		return KV_ETOOBIG;
	size_t before = b->rep.n;
	int r = kv_buf_append_u8(&b->rep, (uint8_t)type);
	if (!r)
		r = kv_buf_append_lenbytes(&b->rep, key);
	if (!r && type == KV_TYPE_PUT)
		r = kv_buf_append_lenbytes(&b->rep, value);
	if (r) {
		b->rep.n = before;
		return r;
	}
	b->count++;
	b->user_bytes += key.n + value.n;
	return 0;
}

int kv_lsm_batch_put(struct kv_lsm_batch *b, struct kv_slice key, struct kv_slice value)
{
	return batch_add(b, KV_TYPE_PUT, key, value);
}

int kv_lsm_batch_delete(struct kv_lsm_batch *b, struct kv_slice key)
{
	return batch_add(b, KV_TYPE_DEL, key, kv_slice_make(NULL, 0));
}

/* ---- Write groups --------------------------------------------------------- */

struct group_entry {
	enum kv_entry_type type;
	struct kv_slice key, value;
};

/* Parses the entry at *pos of @rec. Returns 0 or KV_ECORRUPT. */
static int next_entry(struct kv_slice rec, size_t *pos, struct group_entry *e)
{
	size_t p = *pos;
	if (p >= rec.n)
		return KV_ECORRUPT;
	uint8_t type = rec.p[p++];
	if (type > KV_TYPE_PUT)
		return KV_ECORRUPT;
	uint64_t len;
	int n = kv_varint_decode(rec.p + p, rec.n - p, &len);
	if (n < 0 || len > rec.n - p - (size_t)n)
		return KV_ECORRUPT;
	p += (size_t)n;
	e->key = kv_slice_make(rec.p + p, (size_t)len);
	p += (size_t)len;
	e->value = kv_slice_make(NULL, 0);
	if (type == KV_TYPE_PUT) {
		n = kv_varint_decode(rec.p + p, rec.n - p, &len);
		if (n < 0 || len > rec.n - p - (size_t)n)
			return KV_ECORRUPT;
		p += (size_t)n;
		e->value = kv_slice_make(rec.p + p, (size_t)len);
		p += (size_t)len;
	}
	e->type = (enum kv_entry_type)type;
	*pos = p;
	return 0;
}

int kv_db_apply_group(struct kv_memtable *mem, struct kv_slice rec, uint64_t *last_seq)
{
	if (rec.n < GROUP_HEADER)
		return KV_ECORRUPT;
	uint64_t seq = kv_get_le64(rec.p);
	uint32_t count = kv_get_le32(rec.p + 8);
	if (count == 0 || seq == 0 || seq > KV_SEQ_MAX - count)
		return KV_ECORRUPT;
	/* Validate everything first: a record applies whole or not at all. */
	size_t pos = GROUP_HEADER;
	struct group_entry e;
	for (uint32_t i = 0; i < count; i++)
		if (next_entry(rec, &pos, &e))
			return KV_ECORRUPT;
	if (pos != rec.n)
		return KV_ECORRUPT;
	pos = GROUP_HEADER;
	for (uint32_t i = 0; i < count; i++) {
		next_entry(rec, &pos, &e);
		int r = kv_memtable_add(mem, seq + i, e.type, e.key, e.value);
		if (r)
			return r;
	}
	*last_seq = seq + count - 1;
	return 0;
}

/* ---- The writer queue ----------------------------------------------------- */

struct writer {
	const struct kv_lsm_batch *batch;
	struct kv_lsm_batch *owned;   /* async: freed on completion */
	kv_lsm_write_cb cb;           /* async: called on completion */
	void *cb_arg;
	bool async;
	bool deferred;                /* async, left to kv_lsm_commit_here/kick */
	bool done;
	int status;
	pthread_cond_t cv;            /* sync writers wait here */
	struct writer *next;
};

static void enqueue(struct kv_lsm *db, struct writer *w)
{
	w->next = NULL;
	if (db->wq_tail)
		db->wq_tail->next = w;
	else
		db->wq_head = w;
	db->wq_tail = w;
}

/* Wakes whoever should lead next (mu held). */
static void wake_next_leader(struct kv_lsm *db)
{
	struct writer *h = db->wq_head;
	if (!h) {
		/* Only close() waits for an empty queue; waking the background
		 * threads on every write would cost more than the write. */
		if (db->closing)
			pthread_cond_broadcast(&db->bg_cv);
		return;
	}
	if (h->async) {
		if (!h->deferred || db->closing)
			pthread_cond_signal(&db->commit_cv);
	} else {
		pthread_cond_signal(&h->cv);
	}
}

/* Makes @mem immutable and starts a new memtable and log (mu held). */
static int switch_memtable(struct kv_lsm *db)
{
	if (db->opt.deterministic && db->nimm >= db->opt.max_immutable) {
		/* Earlier inline flushes failed (threaded writers wait in
		 * make_room instead): flush before adding one more, never
		 * past the end of imm[]. */
		int r = kv_db_background_inline(db);
		if (r)
			return r;
	}
	struct kv_memtable *fresh = kv_memtable_new();
	if (!fresh)
		return -ENOMEM;
	uint64_t log_number;
	int r = kv_db_new_log(db, &log_number);
	if (r) {
		kv_memtable_unref(fresh);
		return r;
	}
	db->wal_error = 0;
	if (kv_memtable_count(db->mem.mem) > 0) {
		db->imm[db->nimm++] = db->mem;
	} else {
		kv_memtable_unref(db->mem.mem);
	}
	db->mem.mem = fresh;
	db->mem.log_number = log_number;
	kv_db_next_switch(db);
	pthread_cond_broadcast(&db->bg_cv);
	return 0;
}

static void count_stall(struct kv_lsm *db, uint64_t since)
{
	atomic_fetch_add_explicit(&db->c.stalls, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->c.stall_ns, kv_now_ns() - since, memory_order_relaxed);
}

/*
 * Makes sure the active memtable has room (mu held; may drop it while
 * waiting). Writes slow down and wait, but never fail, while background
 * work catches up; they fail only on a background error.
 */
static int make_room(struct kv_lsm *db, bool force)
{
	bool slowed = false;
	for (;;) {
		if (db->bg_error)
			return db->bg_error;
		size_t l0 = db->current->nfiles[0];
		if (db->opt.deterministic) {
			if (force || db->wal_error ||
			    kv_memtable_bytes(db->mem.mem) >= db->opt.memtable_bytes) {
				int r = switch_memtable(db);
				if (!r)
					r = kv_db_background_inline(db);
				return r;
			}
			return 0;
		}
		if (!slowed && l0 >= db->opt.l0_slowdown && !force) {
			/* Spread the delay over many writes instead of one long stop. */
			uint64_t t0 = kv_now_ns();
			pthread_mutex_unlock(&db->mu);
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
			pthread_mutex_lock(&db->mu);
			count_stall(db, t0);
			slowed = true;
			continue;
		}
		if (!force && !db->wal_error && kv_memtable_bytes(db->mem.mem) < db->switch_bytes)
			return 0;
		if (db->nimm >= db->opt.max_immutable || l0 >= db->opt.l0_stop) {
			uint64_t t0 = kv_now_ns();
			pthread_cond_wait(&db->bg_cv, &db->mu);
			count_stall(db, t0);
			continue;
		}
		return switch_memtable(db);
	}
}

int kv_db_switch_memtable_now(struct kv_lsm *db)
{
	/* Lead an empty group so the switch is ordered with queued writes. */
	struct writer w = { .batch = NULL };
	pthread_cond_init(&w.cv, NULL);
	pthread_mutex_lock(&db->mu);
	enqueue(db, &w);
	while (db->wq_head != &w || db->leader_active)
		pthread_cond_wait(&w.cv, &db->mu);
	int r = 0;
	if (kv_memtable_count(db->mem.mem) > 0) {
		if (db->opt.deterministic) {
			r = db->bg_error ? db->bg_error : switch_memtable(db);
		} else {
			db->leader_active = true;
			r = make_room(db, true);
			db->leader_active = false;
		}
	}
	db->wq_head = w.next;
	if (!db->wq_head)
		db->wq_tail = NULL;
	wake_next_leader(db);
	pthread_mutex_unlock(&db->mu);
	pthread_cond_destroy(&w.cv);
	return r;
}

/*
 * Commits the group headed by db->wq_head (mu held, leader_active set by
 * the caller). Returns with mu held, the group's writers completed and
 * removed from the queue; async completions are appended to *done_list.
 */
static void lead_group(struct kv_lsm *db, struct writer **done_list)
{
	struct writer *head = db->wq_head, *last = head;
	int r = make_room(db, false);
	uint64_t first_seq = 0, count = 0, user_bytes = 0;

	if (!r && db->opt.sync == KV_SYNC_BATCH && db->opt.sync_batch_ms) {
		/* Give other writers up to sync_batch_ms to join this fsync. */
		uint64_t due = db->last_sync_ns + (uint64_t)db->opt.sync_batch_ms * 1000000u;
		uint64_t now = kv_now_ns();
		if (now < due) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + (due - now);
			ts.tv_sec += (time_t)(ns / 1000000000u);
			ts.tv_nsec = (long)(ns % 1000000000u);
			pthread_cond_timedwait(&db->commit_cv, &db->mu, &ts);
		}
	}
	if (!r) {
		/* Gather: the head's batch plus whatever queued behind it fits. */
		size_t bytes = head->batch ? head->batch->rep.n : 0;
		size_t max = bytes <= (128u << 10) ? bytes + (128u << 10) : GROUP_MAX_BYTES;
		count = head->batch ? head->batch->count : 0;
		while (last->next && last->next->batch &&
		       bytes + last->next->batch->rep.n <= max) {
			last = last->next;
			bytes += last->batch->rep.n;
			count += last->batch->count;
		}
		/* Sequences are spent even if the write fails, so a record that
		 * reached the disk after an error can never share one. */
		first_seq = db->next_seq;
		db->next_seq += count;
	}
	pthread_mutex_unlock(&db->mu);

	if (!r && count > 0) {
		struct kv_buf *g = &db->group_buf;
		kv_buf_reset(g);
		r = kv_buf_reserve(g, GROUP_HEADER);
		if (!r) {
			kv_put_le64(g->p, first_seq);
			kv_put_le32(g->p + 8, (uint32_t)count);
			g->n = GROUP_HEADER;
			for (struct writer *w = head;; w = w->next) {
				if ((r = kv_buf_append(g, w->batch->rep.p, w->batch->rep.n)))
					break;
				user_bytes += w->batch->user_bytes;
				if (w == last)
					break;
			}
		}
		uint64_t wal_before = kv_wal_bytes(db->wal);
		if (!r)
			r = kv_wal_add(db->wal, kv_buf_slice(g));
		uint64_t wal_written = kv_wal_bytes(db->wal) - wal_before;
		if (!r && db->opt.sync != KV_SYNC_NONE) {
			uint64_t t0 = kv_now_ns();
			r = kv_wal_sync(db->wal);
			db->last_sync_ns = kv_now_ns();
			/* 1/8 new, 7/8 old: a lone slow sync moves it little. */
			uint64_t avg = atomic_load_explicit(&db->sync_avg_ns, memory_order_relaxed);
			atomic_store_explicit(&db->sync_avg_ns,
					      avg - avg / 8 + (db->last_sync_ns - t0) / 8,
					      memory_order_relaxed);
			atomic_fetch_add_explicit(&db->c.wal_syncs, 1, memory_order_relaxed);
		}
		uint64_t last_seq = 0;
		if (!r)
			r = kv_db_apply_group(db->mem.mem, kv_buf_slice(g), &last_seq);
		if (!r) {
			atomic_fetch_add_explicit(&db->c.wal_bytes, wal_written, memory_order_relaxed);
			atomic_fetch_add_explicit(&db->c.user_bytes, user_bytes, memory_order_relaxed);
			atomic_fetch_add_explicit(&db->c.writes, count, memory_order_relaxed);
			atomic_fetch_add_explicit(&db->c.write_groups, 1, memory_order_relaxed);
		}
	}

	pthread_mutex_lock(&db->mu);
	if (!r && count > 0) {
		atomic_store_explicit(&db->last_seq, first_seq + count - 1, memory_order_release);
	} else if (r && count > 0) {
		/* The log may end in a partial record: never append after it. */
		db->wal_error = r;
		kv_warn("write failed: %s; switching to a new log", kv_strerror(r));
	}
	for (;;) {
		struct writer *w = db->wq_head;
		db->wq_head = w->next;
		w->status = r;
		w->done = true;
		if (w->async) {
			w->next = *done_list;
			*done_list = w;
		} else {
			pthread_cond_signal(&w->cv);
		}
		if (w == last)
			break;
	}
	if (!db->wq_head)
		db->wq_tail = NULL;
}

/* Calls the callbacks of completed asynchronous writes (mu not held). */
static void finish_async(struct writer *list)
{
	/* The list is newest first; complete in submission order. */
	struct writer *rev = NULL;
	while (list) {
		struct writer *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct writer *n = rev->next;
		rev->cb(rev->cb_arg, rev->status);
		kv_lsm_batch_free(rev->owned);
		free(rev);
		rev = n;
	}
}

/* Leads while the queue has a head and nobody leads (mu held). */
static void lead_while_head(struct kv_lsm *db, struct writer *stop_after)
{
	while (db->wq_head && !db->leader_active) {
		struct writer *done = NULL;
		db->leader_active = true;
		lead_group(db, &done);
		db->leader_active = false;
		if (done) {
			pthread_mutex_unlock(&db->mu);
			finish_async(done);
			pthread_mutex_lock(&db->mu);
		}
		if (stop_after && stop_after->done)
			break;
		if (!db->opt.deterministic)
			break;
	}
	wake_next_leader(db);
}

int kv_lsm_write(struct kv_lsm *db, const struct kv_lsm_batch *b)
{
	if (b->count == 0)
		return 0;
	struct writer w = { .batch = b };
	pthread_cond_init(&w.cv, NULL);
	pthread_mutex_lock(&db->mu);
	enqueue(db, &w);
	while (!w.done && (db->wq_head != &w || db->leader_active))
		pthread_cond_wait(&w.cv, &db->mu);
	if (!w.done)
		lead_while_head(db, &w);
	pthread_mutex_unlock(&db->mu);
	pthread_cond_destroy(&w.cv);
	return w.status;
}

static int write_async(struct kv_lsm *db, struct kv_lsm_batch *b, kv_lsm_write_cb cb, void *arg,
		       bool deferred)
{
	if (!cb)
		return KV_EINVAL;
	struct writer *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->batch = b;
	w->owned = b;
	w->cb = cb;
	w->cb_arg = arg;
	w->async = true;
	w->deferred = deferred;
	if (b->count == 0) {
		/* Nothing to write: complete at once, still through the callback. */
		cb(arg, 0);
		kv_lsm_batch_free(b);
		free(w);
		return 0;
	}
	pthread_mutex_lock(&db->mu);
	if (db->shutting_down) {
		pthread_mutex_unlock(&db->mu);
		free(w);
		return KV_ECLOSED;
	}
	enqueue(db, w);
	if (db->opt.deterministic)
		lead_while_head(db, NULL);
	else if (db->wq_head == w && !db->leader_active && !deferred)
		pthread_cond_signal(&db->commit_cv);
	pthread_mutex_unlock(&db->mu);
	return 0;
}

int kv_lsm_write_async(struct kv_lsm *db, struct kv_lsm_batch *b, kv_lsm_write_cb cb, void *arg)
{
	return write_async(db, b, cb, arg, false);
}

int kv_lsm_write_deferred(struct kv_lsm *db, struct kv_lsm_batch *b, kv_lsm_write_cb cb, void *arg)
{
	return write_async(db, b, cb, arg, true);
}

/* kv_lsm_commit_here() declines while the syncs average more than this. */
#define COMMIT_HERE_SYNC_NS (2u * 1000000u)

/*
 * True when a group can be committed now without waiting: not for other
 * writers to join (the batch policy waits for them, and they may be on the
 * very thread that would wait), nor for background work — no slowdown, and
 * a full memtable can be switched (mu held).
 */
static bool room_now(const struct kv_lsm *db)
{
	size_t l0 = db->current->nfiles[0];
	if (db->bg_error || db->opt.sync == KV_SYNC_BATCH || l0 >= db->opt.l0_slowdown)
		return false;
	/* Table writes queue in front of the log's sync: it would be slow. So
	 * it would be when the last syncs were (another process's writes). */
	if (db->flushing || db->compacting ||
	    atomic_load_explicit(&db->sync_avg_ns, memory_order_relaxed) > COMMIT_HERE_SYNC_NS)
		return false;
	if (!db->wal_error && kv_memtable_bytes(db->mem.mem) < db->switch_bytes)
		return true;
	return db->nimm < db->opt.max_immutable && l0 < db->opt.l0_stop;
}

/* Gives every queued deferred write to the commit thread (mu held). */
static void hand_over(struct kv_lsm *db)
{
	for (struct writer *w = db->wq_head; w; w = w->next)
		w->deferred = false;
	if (db->wq_head && !db->leader_active)
		wake_next_leader(db);
}

int kv_lsm_commit_here(struct kv_lsm *db)
{
	int led = 0;
	pthread_mutex_lock(&db->mu);
	if (db->wq_head && db->wq_head->async && !db->leader_active && !db->opt.deterministic &&
	    room_now(db)) {
		lead_while_head(db, NULL);
		led = 1;
	}
	/* What is still queued (what did not fit in the group, or all of it
	 * when someone else leads or it would wait) goes to the commit thread:
	 * a deferred write is never left without a committer. */
	hand_over(db);
	pthread_mutex_unlock(&db->mu);
	return led;
}

void kv_lsm_commit_kick(struct kv_lsm *db)
{
	pthread_mutex_lock(&db->mu);
	hand_over(db);
	pthread_mutex_unlock(&db->mu);
}

void *kv_db_commit_main(void *arg)
{
	struct kv_lsm *db = arg;
	pthread_mutex_lock(&db->mu);
	for (;;) {
		/* Deferred writes wait for their caller, unless handed over or
		 * the store is closing. */
		struct writer *h = db->wq_head;
		if (h && h->async && (!h->deferred || db->closing) && !db->leader_active) {
			lead_while_head(db, NULL);
			continue;
		}
		if (db->shutting_down)
			break;
		pthread_cond_wait(&db->commit_cv, &db->mu);
	}
	pthread_mutex_unlock(&db->mu);
	return NULL;
}

/*
 * A one-entry write. Small entries are encoded on the stack, so the common
 * put costs no allocation; the batch is only read by the leader.
 */
static int write_one(struct kv_lsm *db, enum kv_entry_type type, struct kv_slice key, struct kv_slice value)
{
	uint8_t stack[512];
	struct kv_lsm_batch b = { .count = 0 };
	kv_buf_init(&b.rep);
	bool small = key.n + value.n + 1 + 2 * KV_VARINT64_MAX <= sizeof stack;
	int r;
	if (small) {
		if (key.n > KV_LSM_MAX_KEY || value.n > KV_LSM_MAX_VALUE)
			return KV_ETOOBIG;
		size_t n = 0;
		stack[n++] = (uint8_t)type;
		n += kv_varint_encode(stack + n, key.n);
		if (key.n)
			memcpy(stack + n, key.p, key.n);
		n += key.n;
		if (type == KV_TYPE_PUT) {
			n += kv_varint_encode(stack + n, value.n);
			if (value.n)
				memcpy(stack + n, value.p, value.n);
			n += value.n;
		}
		b.rep.p = stack;
		b.rep.n = n;
		b.rep.cap = n;
		b.count = 1;
		b.user_bytes = key.n + value.n;
		return kv_lsm_write(db, &b);
	}
	r = batch_add(&b, type, key, value);
	if (!r)
		r = kv_lsm_write(db, &b);
	kv_buf_release(&b.rep);
	return r;
}

int kv_lsm_put(struct kv_lsm *db, struct kv_slice key, struct kv_slice value)
{
	return write_one(db, KV_TYPE_PUT, key, value);
}

int kv_lsm_delete(struct kv_lsm *db, struct kv_slice key)
{
	return write_one(db, KV_TYPE_DEL, key, kv_slice_make(NULL, 0));
}
