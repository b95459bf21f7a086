/*
 * merge.c - the merging iterator (see merge.h).
 *
 * A min-heap of the valid children, ordered by (key, child index): the index
 * breaks ties so that, for equal keys, the child given first (the newer
 * source) comes out first. Children that report an error make the merge
 * invalid, with that error as its status: a corrupt table must never be
 * silently skipped.
 */
#include "lsm/merge.h"

#include <errno.h>
#include <stdlib.h>

struct merge_iter {
	struct kv_iter base;
	kv_cmp_fn cmp;
	size_t n;
	struct kv_iter **children;
	size_t *heap; /* child indexes; heap[0] is the current child */
	size_t heap_n;
	int status;
};

static bool heap_less(struct merge_iter *m, size_t a, size_t b)
{
	int r = m->cmp(kv_iter_key(m->children[a]), kv_iter_key(m->children[b]));
	return r < 0 || (r == 0 && a < b);
}

static void sift_down(struct merge_iter *m, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		if (l < m->heap_n && heap_less(m, m->heap[l], m->heap[min]))
			min = l;
		if (r < m->heap_n && heap_less(m, m->heap[r], m->heap[min]))
			min = r;
		if (min == i)
			return;
		size_t t = m->heap[i];
		m->heap[i] = m->heap[min];
		m->heap[min] = t;
		i = min;
	}
}

/* Rebuilds the heap from every valid child; records the first error. */
static void rebuild(struct merge_iter *m)
{
	m->heap_n = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (kv_iter_valid(m->children[i])) {
			m->heap[m->heap_n++] = i;
		} else {
			int st = kv_iter_status(m->children[i]);
			if (st && !m->status)
				m->status = st;
		}
	}
	for (size_t i = m->heap_n / 2; i-- > 0;)
		sift_down(m, i);
}

static bool merge_valid(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	return m->status == 0 && m->heap_n > 0;
}

static void merge_seek_first(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	m->status = 0;
	for (size_t i = 0; i < m->n; i++)
		kv_iter_seek_first(m->children[i]);
	rebuild(m);
}

static void merge_seek(struct kv_iter *it, struct kv_slice target)
{
	struct merge_iter *m = (struct merge_iter *)it;
	m->status = 0;
	for (size_t i = 0; i < m->n; i++)
		kv_iter_seek(m->children[i], target);
	rebuild(m);
}

static void merge_next(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	size_t top = m->heap[0];
	struct kv_iter *child = m->children[top];
	kv_iter_next(child);
	if (!kv_iter_valid(child)) {
		int st = kv_iter_status(child);
		if (st) {
			m->status = st;
			return;
		}
		m->heap[0] = m->heap[--m->heap_n];
	}
	if (m->heap_n)
		sift_down(m, 0);
}

static struct kv_slice merge_key(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	return kv_iter_key(m->children[m->heap[0]]);
}

static struct kv_slice merge_value(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	return kv_iter_value(m->children[m->heap[0]]);
}

static int merge_status(struct kv_iter *it)
{
	return ((struct merge_iter *)it)->status;
}

static void merge_destroy(struct kv_iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	for (size_t i = 0; i < m->n; i++)
		kv_iter_destroy(m->children[i]);
	free(m->children);
	free(m->heap);
	free(m);
}

static const struct kv_iter_ops merge_ops = {
	.valid = merge_valid,
	.seek_first = merge_seek_first,
	.seek = merge_seek,
	.next = merge_next,
	.key = merge_key,
	.value = merge_value,
	.status = merge_status,
	.destroy = merge_destroy,
};

struct kv_iter *kv_merge_iter_new(kv_cmp_fn cmp, struct kv_iter **children, size_t n)
{
	struct merge_iter *m = calloc(1, sizeof *m);
	if (!m)
		goto fail;
	m->children = calloc(n ? n : 1, sizeof *m->children);
	m->heap = calloc(n ? n : 1, sizeof *m->heap);
	if (!m->children || !m->heap)
		goto fail;
	m->base.ops = &merge_ops;
	m->cmp = cmp;
	m->n = n;
	for (size_t i = 0; i < n; i++)
		m->children[i] = children[i];
	return &m->base;
fail:
	if (m) {
		free(m->children);
		free(m->heap);
		free(m);
	}
	for (size_t i = 0; i < n; i++)
		kv_iter_destroy(children[i]);
	return NULL;
}

struct empty_iter {
	struct kv_iter base;
	int status;
};

static bool empty_valid(struct kv_iter *it) { (void)it; return false; }
static void empty_seek_first(struct kv_iter *it) { (void)it; }
static void empty_seek(struct kv_iter *it, struct kv_slice t) { (void)it; (void)t; }
static void empty_next(struct kv_iter *it) { (void)it; }
static struct kv_slice empty_key(struct kv_iter *it) { (void)it; return kv_slice_make(NULL, 0); }
static int empty_status(struct kv_iter *it) { return ((struct empty_iter *)it)->status; }
static void empty_destroy(struct kv_iter *it) { free(it); }

static const struct kv_iter_ops empty_ops = {
	.valid = empty_valid,
	.seek_first = empty_seek_first,
	.seek = empty_seek,
	.next = empty_next,
	.key = empty_key,
	.value = empty_key,
	.status = empty_status,
	.destroy = empty_destroy,
};

struct kv_iter *kv_empty_iter_new(int status)
{
	struct empty_iter *e = malloc(sizeof *e);
	if (!e)
		return NULL;
	e->base.ops = &empty_ops;
	e->status = status;
	return &e->base;
}
