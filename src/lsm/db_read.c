/*
 * db_read.c - the read path: point reads, snapshots and the database
 * iterator (see lsm.h).
 *
 * A read pins what it needs under the mutex (the active and immutable
 * memtables and the current version, each reference-counted) and then reads
 * without any lock: memtables are lock-free for readers and versions are
 * immutable. Newer data shadows older: memtable, immutables newest first,
 * then the tables (version.c).
 */
#include "lsm/db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/merge.h"
#include "util/error.h"

/* What a read pins: memtables newest first, and the version. */
struct pinned {
	struct kv_memtable *mems[1 + 16];
	unsigned nmems;
	struct kv_version *v;
	uint64_t seq;
};

static void pin(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, struct pinned *p)
{
	pthread_mutex_lock(&db->mu);
	p->nmems = 0;
	kv_memtable_ref(db->mem.mem);
	p->mems[p->nmems++] = db->mem.mem;
	for (unsigned i = db->nimm; i-- > 0;) {
		kv_memtable_ref(db->imm[i].mem);
		p->mems[p->nmems++] = db->imm[i].mem;
	}
	p->v = db->current;
	kv_version_ref(p->v);
	pthread_mutex_unlock(&db->mu);
	/* Read after pinning: everything up to last_seq is in what we pinned. */
	p->seq = snap ? snap->seq : atomic_load_explicit(&db->last_seq, memory_order_acquire);
}

static void unpin(struct pinned *p)
{
	for (unsigned i = 0; i < p->nmems; i++)
		kv_memtable_unref(p->mems[i]);
	kv_version_unref(p->v);
}

static int get(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, struct kv_slice key,
	       bool cached_only, struct kv_buf *value)
{
	struct pinned p;
	kv_buf_reset(value);
	pin(db, snap, &p);
	enum kv_entry_type type = KV_TYPE_DEL;
	uint64_t hash = kv_table_key_hash(key); /* the memtables' filters and the tables' */
	int r = 0;
	for (unsigned i = 0; i < p.nmems && r == 0; i++) {
		struct kv_slice v;
		r = kv_memtable_get_hashed(p.mems[i], key, hash, p.seq, &type, &v);
		if (r == 1 && type == KV_TYPE_PUT && kv_buf_append(value, v.p, v.n))
			r = -ENOMEM;
	}
	uint64_t bad = 0;
	if (r == 0)
		r = kv_version_get(p.v, key, hash, p.seq, cached_only, &type, value, &bad);
	unpin(&p);
	if (r == KV_ECORRUPT && bad)
		kv_db_quarantine(db, bad);
	if (r < 0)
		return r;
	if (r == 0 || type == KV_TYPE_DEL) {
		kv_buf_reset(value);
		return KV_ENOTFOUND;
	}
	return 0;
}

int kv_lsm_get(struct kv_lsm *db, const struct kv_lsm_snapshot *snap, struct kv_slice key,
	       struct kv_buf *value)
{
	return get(db, snap, key, false, value);
}

int kv_lsm_get_cached(struct kv_lsm *db, struct kv_slice key, struct kv_buf *value)
{
	int r = get(db, NULL, key, true, value);
	if (r == -EAGAIN)
		kv_buf_reset(value);
	return r;
}

/* ---- Snapshots ------------------------------------------------------------ */

const struct kv_lsm_snapshot *kv_lsm_snapshot(struct kv_lsm *db)
{
	struct kv_lsm_snapshot *s = malloc(sizeof *s);
	if (!s)
		return NULL;
	pthread_mutex_lock(&db->mu);
	s->seq = atomic_load(&db->last_seq);
	/* Append: the list stays ordered oldest first. */
	s->next = &db->snapshots;
	s->prev = db->snapshots.prev;
	s->prev->next = s;
	db->snapshots.prev = s;
	pthread_mutex_unlock(&db->mu);
	return s;
}

void kv_lsm_snapshot_release(struct kv_lsm *db, const struct kv_lsm_snapshot *snap)
{
	if (!snap)
		return;
	struct kv_lsm_snapshot *s = (struct kv_lsm_snapshot *)snap;
	pthread_mutex_lock(&db->mu);
	s->prev->next = s->next;
	s->next->prev = s->prev;
	pthread_mutex_unlock(&db->mu);
	free(s);
}

/* ---- The database iterator ------------------------------------------------ */

struct db_iter {
	struct kv_iter base;
	struct kv_iter *merge;          /* over internal keys */
	uint64_t seq;
	struct kv_buf lower, upper;     /* bounds; upper empty = none */
	bool has_upper;
	struct kv_buf saved;            /* user key being skipped */
	struct kv_buf target;           /* seek key scratch */
	bool valid;
	int status;
};

/*
 * Moves the merge to the newest visible entry of the next live user key.
 * With @skip, entries of the user key in db_iter.saved are passed over.
 */
static void find_next(struct db_iter *it, bool skip)
{
	it->valid = false;
	while (kv_iter_valid(it->merge)) {
		struct kv_ikey ik;
		if (kv_ikey_parse(kv_iter_key(it->merge), &ik)) {
			it->status = KV_ECORRUPT;
			return;
		}
		if (ik.seq > it->seq ||
		    (skip && kv_slice_eq(ik.ukey, kv_buf_slice(&it->saved)))) {
			kv_iter_next(it->merge);
			continue;
		}
		if (it->has_upper && kv_slice_cmp(ik.ukey, kv_buf_slice(&it->upper)) >= 0)
			return;
		kv_buf_reset(&it->saved);
		if (kv_buf_append(&it->saved, ik.ukey.p, ik.ukey.n)) {
			it->status = -ENOMEM;
			return;
		}
		if (ik.type == KV_TYPE_DEL) {
			skip = true;
			kv_iter_next(it->merge);
			continue;
		}
		it->valid = true;
		return;
	}
	it->status = kv_iter_status(it->merge);
}

static bool dbi_valid(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	return it->valid && !it->status;
}

static void dbi_seek(struct kv_iter *base, struct kv_slice target)
{
	struct db_iter *it = (struct db_iter *)base;
	it->status = 0;
	if (kv_slice_cmp(target, kv_buf_slice(&it->lower)) < 0)
		target = kv_buf_slice(&it->lower);
	kv_buf_reset(&it->target);
	if (kv_ikey_append(&it->target, target, it->seq, KV_TYPE_SEEK)) {
		it->status = -ENOMEM;
		it->valid = false;
		return;
	}
	kv_iter_seek(it->merge, kv_buf_slice(&it->target));
	find_next(it, false);
}

static void dbi_seek_first(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	if (it->lower.n) {
		dbi_seek(base, kv_buf_slice(&it->lower));
		return;
	}
	it->status = 0;
	kv_iter_seek_first(it->merge);
	find_next(it, false);
}

static void dbi_next(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	kv_iter_next(it->merge);
	find_next(it, true);
}

static struct kv_slice dbi_key(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	return kv_ikey_user(kv_iter_key(it->merge));
}

static struct kv_slice dbi_value(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	return kv_iter_value(it->merge);
}

static int dbi_status(struct kv_iter *base)
{
	return ((struct db_iter *)base)->status;
}

static void dbi_destroy(struct kv_iter *base)
{
	struct db_iter *it = (struct db_iter *)base;
	kv_iter_destroy(it->merge);
	kv_buf_release(&it->lower);
	kv_buf_release(&it->upper);
	kv_buf_release(&it->saved);
	kv_buf_release(&it->target);
	free(it);
}

static const struct kv_iter_ops db_iter_ops = {
	.valid = dbi_valid,
	.seek_first = dbi_seek_first,
	.seek = dbi_seek,
	.next = dbi_next,
	.key = dbi_key,
	.value = dbi_value,
	.status = dbi_status,
	.destroy = dbi_destroy,
};

/*
 * The smallest key greater than every key with @prefix: the prefix with
 * its last non-0xff byte incremented and the rest cut. False if none.
 */
static bool prefix_successor(struct kv_slice prefix, struct kv_buf *out)
{
	size_t n = prefix.n;
	while (n > 0 && prefix.p[n - 1] == 0xff)
		n--;
	if (n == 0)
		return false;
	kv_buf_reset(out);
	if (kv_buf_append(out, prefix.p, n))
		return false;
	out->p[n - 1]++;
	return true;
}

struct kv_iter *kv_lsm_iter(struct kv_lsm *db, const struct kv_lsm_iter_options *opts)
{
	struct kv_lsm_iter_options none = { .snapshot = NULL };
	if (!opts)
		opts = &none;
	struct db_iter *it = calloc(1, sizeof *it);
	if (!it)
		return NULL;
	it->base.ops = &db_iter_ops;
	kv_buf_init(&it->lower);
	kv_buf_init(&it->upper);
	kv_buf_init(&it->saved);
	kv_buf_init(&it->target);

	/* Bounds: the tighter of [lower, upper) and the prefix's range. */
	struct kv_slice lower = opts->lower;
	if (opts->prefix.n && kv_slice_cmp(opts->prefix, lower) > 0)
		lower = opts->prefix;
	if (kv_buf_append(&it->lower, lower.p, lower.n))
		goto fail;
	if (opts->upper.n) {
		if (kv_buf_append(&it->upper, opts->upper.p, opts->upper.n))
			goto fail;
		it->has_upper = true;
	}
	if (opts->prefix.n) {
		struct kv_buf succ = KV_BUF_INIT;
		if (prefix_successor(opts->prefix, &succ) &&
		    (!it->has_upper || kv_slice_cmp(kv_buf_slice(&succ), kv_buf_slice(&it->upper)) < 0)) {
			kv_buf_release(&it->upper);
			it->upper = succ;
			it->has_upper = true;
		} else {
			kv_buf_release(&succ);
		}
	}

	struct pinned p;
	pin(db, opts->snapshot, &p);
	it->seq = p.seq;
	size_t max = p.nmems + p.v->nfiles[0] + KV_LSM_LEVELS;
	struct kv_iter **children = calloc(max, sizeof *children);
	size_t n = 0;
	bool ok = children != NULL;
	for (unsigned i = 0; ok && i < p.nmems; i++) {
		children[n] = kv_memtable_iter(p.mems[i]);
		ok = children[n++] != NULL;
	}
	if (ok) {
		int k = kv_version_iters(p.v, opts->fill_cache, children + n);
		ok = k >= 0;
		if (ok)
			n += (size_t)k;
	}
	unpin(&p); /* the child iterators hold their own references */
	if (!ok) {
		for (size_t i = 0; children && i < n; i++)
			kv_iter_destroy(children[i]);
		free(children);
		goto fail;
	}
	it->merge = kv_merge_iter_new(kv_ikey_cmp, children, n);
	free(children);
	if (!it->merge)
		goto fail;
	return &it->base;
fail:
	dbi_destroy(&it->base);
	return NULL;
}
