/*
 * version.c - live tables by level, as immutable reference-counted versions
 * (see version.h).
 */
#include "lsm/version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"
#include "util/log.h"

void kv_table_path(char *out, size_t n, const char *dir, uint64_t number)
{
	snprintf(out, n, "%s/%06" PRIu64 ".sst", dir, number);
}

struct kv_file_meta *kv_file_meta_new(struct kv_table_env *env, uint64_t number, uint64_t size,
				      uint64_t entries, struct kv_slice smallest,
				      struct kv_slice largest, struct kv_table *table)
{
	struct kv_file_meta *f = calloc(1, sizeof *f);
	if (!f)
		goto fail;
	atomic_init(&f->refs, 1);
	atomic_init(&f->obsolete, false);
	f->number = number;
	f->size = size;
	f->entries = entries;
	f->env = env;
	kv_buf_init(&f->smallest);
	kv_buf_init(&f->largest);
	if (kv_buf_append(&f->smallest, smallest.p, smallest.n) ||
	    kv_buf_append(&f->largest, largest.p, largest.n)) {
		kv_buf_release(&f->smallest);
		kv_buf_release(&f->largest);
		free(f);
		goto fail;
	}
	f->table = table;
	return f;
fail:
	if (table)
		kv_table_unref(table);
	return NULL;
}

void kv_file_meta_ref(struct kv_file_meta *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void kv_file_meta_unref(struct kv_file_meta *f)
{
	if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Still mapped by an iterator: shrinking the file would fault it. */
	bool closed = !f->table || kv_table_unref(f->table);
	if (f->env && f->env->cache)
		kv_cache_erase_file(f->env->cache, f->number);
	if (atomic_load(&f->obsolete) && f->env) {
		char path[4096];
		kv_table_path(path, sizeof path, f->env->dir, f->number);
		if (closed && f->env->trash) {
			f->env->trash(f->env, path);
		} else {
			int r = kv_vfs_remove(f->env->vfs, path);
			if (r && r != -ENOENT)
				kv_warn("could not remove obsolete table %s: %s", path,
					kv_strerror(r));
		}
	}
	kv_buf_release(&f->smallest);
	kv_buf_release(&f->largest);
	free(f);
}

struct kv_version *kv_version_new(void)
{
	struct kv_version *v = calloc(1, sizeof *v);
	if (v)
		atomic_init(&v->refs, 1);
	return v;
}

void kv_version_ref(struct kv_version *v)
{
	atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void kv_version_unref(struct kv_version *v)
{
	if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (int l = 0; l < KV_LSM_LEVELS; l++) {
		for (size_t i = 0; i < v->nfiles[l]; i++)
			kv_file_meta_unref(v->files[l][i]);
		free(v->files[l]);
	}
	free(v);
}

void kv_version_edit_init(struct kv_version_edit *e)
{
	memset(e, 0, sizeof *e);
}

void kv_version_edit_release(struct kv_version_edit *e)
{
	for (size_t i = 0; i < e->nadded; i++)
		kv_file_meta_unref(e->added[i].file);
	free(e->added);
	free(e->removed);
	kv_version_edit_init(e);
}

int kv_version_edit_remove(struct kv_version_edit *e, int level, uint64_t number)
{
	void *p = realloc(e->removed, (e->nremoved + 1) * sizeof *e->removed);
	if (!p)
		return -ENOMEM;
	e->removed = p;
	e->removed[e->nremoved].level = level;
	e->removed[e->nremoved].number = number;
	e->nremoved++;
	return 0;
}

int kv_version_edit_add(struct kv_version_edit *e, int level, struct kv_file_meta *f)
{
	void *p = realloc(e->added, (e->nadded + 1) * sizeof *e->added);
	if (!p)
		return -ENOMEM;
	e->added = p;
	kv_file_meta_ref(f);
	e->added[e->nadded].level = level;
	e->added[e->nadded].file = f;
	e->nadded++;
	return 0;
}

static bool edit_removes(const struct kv_version_edit *e, int level, uint64_t number)
{
	for (size_t i = 0; i < e->nremoved; i++)
		if (e->removed[i].level == level && e->removed[i].number == number)
			return true;
	return false;
}

/* Level 0: newest (highest number) first. */
static int cmp_l0(const void *a, const void *b)
{
	const struct kv_file_meta *fa = *(struct kv_file_meta *const *)a;
	const struct kv_file_meta *fb = *(struct kv_file_meta *const *)b;
	return fa->number < fb->number ? 1 : fa->number > fb->number ? -1 : 0;
}

/* Deeper levels: by smallest key. */
static int cmp_by_key(const void *a, const void *b)
{
	const struct kv_file_meta *fa = *(struct kv_file_meta *const *)a;
	const struct kv_file_meta *fb = *(struct kv_file_meta *const *)b;
	return kv_ikey_cmp(kv_buf_slice(&fa->smallest), kv_buf_slice(&fb->smallest));
}

struct kv_version *kv_version_apply(const struct kv_version *base, const struct kv_version_edit *edit)
{
	struct kv_version *v = kv_version_new();
	if (!v)
		return NULL;
	for (int l = 0; l < KV_LSM_LEVELS; l++) {
		size_t cap = base->nfiles[l];
		for (size_t i = 0; i < edit->nadded; i++)
			cap += edit->added[i].level == l;
		if (!cap)
			continue;
		v->files[l] = malloc(cap * sizeof *v->files[l]);
		if (!v->files[l])
			goto fail;
		size_t n = 0;
		for (size_t i = 0; i < base->nfiles[l]; i++) {
			struct kv_file_meta *f = base->files[l][i];
			if (edit_removes(edit, l, f->number))
				continue;
			kv_file_meta_ref(f);
			v->files[l][n++] = f;
		}
		for (size_t i = 0; i < edit->nadded; i++) {
			if (edit->added[i].level != l)
				continue;
			kv_file_meta_ref(edit->added[i].file);
			v->files[l][n++] = edit->added[i].file;
		}
		v->nfiles[l] = n;
		qsort(v->files[l], n, sizeof *v->files[l], l == 0 ? cmp_l0 : cmp_by_key);
	}
	return v;
fail:
	kv_version_unref(v);
	return NULL;
}

uint64_t kv_version_level_bytes(const struct kv_version *v, int level)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < v->nfiles[level]; i++)
		sum += v->files[level][i]->size;
	return sum;
}

static int ucmp_smallest(const struct kv_file_meta *f, struct kv_slice ukey)
{
	return kv_slice_cmp(kv_ikey_user(kv_buf_slice(&f->smallest)), ukey);
}

static int ucmp_largest(const struct kv_file_meta *f, struct kv_slice ukey)
{
	return kv_slice_cmp(kv_ikey_user(kv_buf_slice(&f->largest)), ukey);
}

/* Index of the first table of a sorted level whose largest user key >= ukey. */
static size_t find_file(struct kv_file_meta *const *files, size_t n, struct kv_slice ukey)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ucmp_largest(files[mid], ukey) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int table_get(struct kv_file_meta *f, struct kv_slice ukey, uint64_t hash, uint64_t seq,
		     bool cached_only, enum kv_entry_type *type, struct kv_buf *value,
		     uint64_t *bad_file)
{
	int r = cached_only ? kv_table_get_cached_hashed(f->table, ukey, hash, seq, type, value)
			    : kv_table_get_hashed(f->table, ukey, hash, seq, type, value);
	if (r == KV_ECORRUPT && bad_file)
		*bad_file = f->number;
	return r;
}

int kv_version_get(struct kv_version *v, struct kv_slice ukey, uint64_t hash, uint64_t seq,
		   bool cached_only, enum kv_entry_type *type, struct kv_buf *value,
		   uint64_t *bad_file)
{
	/* Level 0 tables overlap: ask each one that covers the key, newest first. */
	for (size_t i = 0; i < v->nfiles[0]; i++) {
		struct kv_file_meta *f = v->files[0][i];
		if (ucmp_smallest(f, ukey) > 0 || ucmp_largest(f, ukey) < 0)
			continue;
		int r = table_get(f, ukey, hash, seq, cached_only, type, value, bad_file);
		if (r != 0)
			return r;
	}
	for (int l = 1; l < KV_LSM_LEVELS; l++) {
		size_t n = v->nfiles[l];
		if (!n)
			continue;
		size_t i = find_file(v->files[l], n, ukey);
		if (i == n || ucmp_smallest(v->files[l][i], ukey) > 0)
			continue;
		int r = table_get(v->files[l][i], ukey, hash, seq, cached_only, type, value,
				  bad_file);
		if (r != 0)
			return r;
	}
	return 0;
}

/* ---- The concatenating iterator over one sorted level ------------------- */

struct level_iter {
	struct kv_iter base;
	struct kv_file_meta **files;
	size_t n;
	size_t idx;           /* file of the current table iterator */
	struct kv_iter *cur;  /* NULL when no file is open */
	bool fill_cache;
	int status;
};

static void level_open(struct level_iter *li, size_t idx)
{
	kv_iter_destroy(li->cur);
	li->cur = NULL;
	li->idx = idx;
	if (idx >= li->n)
		return;
	li->cur = kv_table_iter(li->files[idx]->table, li->fill_cache);
	if (!li->cur)
		li->status = -ENOMEM;
}

/* Moves forward over exhausted tables until positioned or at the end. */
static void level_skip_empty(struct level_iter *li)
{
	while (li->cur && !kv_iter_valid(li->cur)) {
		int st = kv_iter_status(li->cur);
		if (st) {
			li->status = st;
			return;
		}
		level_open(li, li->idx + 1);
		if (li->cur)
			kv_iter_seek_first(li->cur);
	}
}

static bool level_valid(struct kv_iter *it)
{
	struct level_iter *li = (struct level_iter *)it;
	return !li->status && li->cur && kv_iter_valid(li->cur);
}

static void level_seek_first(struct kv_iter *it)
{
	struct level_iter *li = (struct level_iter *)it;
	li->status = 0;
	level_open(li, 0);
	if (li->cur)
		kv_iter_seek_first(li->cur);
	level_skip_empty(li);
}

static void level_seek(struct kv_iter *it, struct kv_slice target)
{
	struct level_iter *li = (struct level_iter *)it;
	li->status = 0;
	/* The first table whose largest key is >= target. */
	size_t lo = 0, hi = li->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (kv_ikey_cmp(kv_buf_slice(&li->files[mid]->largest), target) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	level_open(li, lo);
	if (li->cur)
		kv_iter_seek(li->cur, target);
	level_skip_empty(li);
}

static void level_next(struct kv_iter *it)
{
	struct level_iter *li = (struct level_iter *)it;
	kv_iter_next(li->cur);
	level_skip_empty(li);
}

static struct kv_slice level_key(struct kv_iter *it)
{
	return kv_iter_key(((struct level_iter *)it)->cur);
}

static struct kv_slice level_value(struct kv_iter *it)
{
	return kv_iter_value(((struct level_iter *)it)->cur);
}

static int level_status(struct kv_iter *it)
{
	struct level_iter *li = (struct level_iter *)it;
	if (li->status)
		return li->status;
	return li->cur ? kv_iter_status(li->cur) : 0;
}

static void level_destroy(struct kv_iter *it)
{
	struct level_iter *li = (struct level_iter *)it;
	kv_iter_destroy(li->cur);
	for (size_t i = 0; i < li->n; i++)
		kv_file_meta_unref(li->files[i]);
	free(li->files);
	free(li);
}

static const struct kv_iter_ops level_ops = {
	.valid = level_valid,
	.seek_first = level_seek_first,
	.seek = level_seek,
	.next = level_next,
	.key = level_key,
	.value = level_value,
	.status = level_status,
	.destroy = level_destroy,
};

struct kv_iter *kv_level_iter_new(struct kv_file_meta **files, size_t n, bool fill_cache)
{
	struct level_iter *li = calloc(1, sizeof *li);
	if (!li)
		return NULL;
	li->files = malloc((n ? n : 1) * sizeof *li->files);
	if (!li->files) {
		free(li);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		kv_file_meta_ref(files[i]);
		li->files[i] = files[i];
	}
	li->base.ops = &level_ops;
	li->n = n;
	li->fill_cache = fill_cache;
	li->idx = n;
	return &li->base;
}

int kv_version_iters(struct kv_version *v, bool fill_cache, struct kv_iter **out)
{
	int n = 0;
	for (size_t i = 0; i < v->nfiles[0]; i++) {
		/* A one-table level iterator holds the file's reference. */
		struct kv_iter *it = kv_level_iter_new(&v->files[0][i], 1, fill_cache);
		if (!it)
			goto fail;
		out[n++] = it;
	}
	for (int l = 1; l < KV_LSM_LEVELS; l++) {
		if (!v->nfiles[l])
			continue;
		struct kv_iter *it = kv_level_iter_new(v->files[l], v->nfiles[l], fill_cache);
		if (!it)
			goto fail;
		out[n++] = it;
	}
	return n;
fail:
	while (n > 0)
		kv_iter_destroy(out[--n]);
	return -ENOMEM;
}

int kv_version_overlapping(const struct kv_version *v, int level, struct kv_slice lo, struct kv_slice hi,
			   struct kv_file_meta ***out)
{
	size_t n = v->nfiles[level], count = 0;
	struct kv_file_meta **res = malloc((n ? n : 1) * sizeof *res);
	if (!res)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct kv_file_meta *f = v->files[level][i];
		if (lo.p && ucmp_largest(f, lo) < 0)
			continue;
		if (hi.p && ucmp_smallest(f, hi) > 0)
			continue;
		res[count++] = f;
	}
	*out = res;
	return (int)count;
}
