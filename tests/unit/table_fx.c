/*
 * table_fx.c - the model and the environment of the SSTable tests
 * (test_table.c, test_table_corrupt.c). API: table_fx.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/rng.h"
#include "util/slice.h"

#include "table_fx.h"

static int cmp_buf(const void *a, const void *b)
{
	return kv_slice_cmp(kv_buf_slice(a), kv_buf_slice(b));
}

static int cmp_u64_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

void make_user_key(struct kv_rng *rng, struct kv_buf *k)
{
	static const struct { const char *p; size_t n; } dirs[] = {
		{ "", 0 }, { "a/", 2 }, { "ab/", 3 }, { "abc/", 4 }, { "data/chunks/", 12 },
		{ "\0", 1 }, { "\0\0", 2 },
	};
	size_t d = (size_t)kv_rng_below(rng, 7);
	kv_buf_append(k, dirs[d].p, dirs[d].n);
	size_t n = 1 + kv_rng_below(rng, 16);
	for (size_t i = 0; i < n; i++) /* a small alphabet that includes NUL and 0xff */
		kv_buf_append_u8(k, "\0\1az\xfe\xff"[kv_rng_below(rng, 6)]);
}

struct model make_model(struct kv_rng *rng, const struct shape *s)
{
	struct kv_buf *ukeys = calloc(s->keys ? s->keys : 1, sizeof *ukeys);
	assert_non_null(ukeys);
	for (size_t i = 0; i < s->keys; i++)
		make_user_key(rng, &ukeys[i]);
	qsort(ukeys, s->keys, sizeof *ukeys, cmp_buf);
	struct model m = { calloc(s->keys * s->versions + 1, sizeof(struct ent)), 0, 0 };
	assert_non_null(m.e);
	for (size_t i = 0; i < s->keys; i++) {
		if (i && kv_slice_eq(kv_buf_slice(&ukeys[i - 1]), kv_buf_slice(&ukeys[i])))
			continue;
		unsigned nv = 1 + (unsigned)kv_rng_below(rng, s->versions);
		uint64_t seqs[8];
		for (unsigned v = 0; v < nv; v++) {
		again:
			seqs[v] = 1 + kv_rng_below(rng, 1000000);
			for (unsigned w = 0; w < v; w++)
				if (seqs[w] == seqs[v])
					goto again;
		}
		qsort(seqs, nv, sizeof seqs[0], cmp_u64_desc);
		for (unsigned v = 0; v < nv; v++) {
			struct ent *e = &m.e[m.n++];
			enum kv_entry_type type = kv_rng_below(rng, 5) ? KV_TYPE_PUT : KV_TYPE_DEL;
			kv_ikey_append(&e->ikey, kv_buf_slice(&ukeys[i]), seqs[v], type);
			if (seqs[v] > m.max_seq)
				m.max_seq = seqs[v];
			if (type == KV_TYPE_DEL)
				continue;
			size_t vn = (size_t)kv_rng_below(rng, s->max_value + 1);
			if (s->big_value && m.n % 97 == 1)
				vn = s->big_value;
			kv_buf_reserve(&e->value, vn);
			for (size_t j = 0; j < vn; j++)
				e->value.p[j] = (uint8_t)(j * 131 + m.n);
			e->value.n = vn;
		}
	}
	for (size_t i = 0; i < s->keys; i++)
		kv_buf_release(&ukeys[i]);
	free(ukeys);
	return m;
}

void free_model(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		kv_buf_release(&m->e[i].ikey);
		kv_buf_release(&m->e[i].value);
	}
	free(m->e);
	m->e = NULL;
	m->n = 0;
}

/* The model's answer to get(ukey, snap): an entry index, or -1. */
long model_get(const struct model *m, struct kv_slice ukey, uint64_t snap)
{
	size_t lo = 0, hi = m->n;
	struct kv_buf t = KV_BUF_INIT;
	kv_ikey_append(&t, ukey, snap > KV_SEQ_MAX ? KV_SEQ_MAX : snap, KV_TYPE_SEEK);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (kv_ikey_cmp(kv_buf_slice(&m->e[mid].ikey), kv_buf_slice(&t)) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	kv_buf_release(&t);
	if (lo < m->n && kv_slice_eq(kv_ikey_user(kv_buf_slice(&m->e[lo].ikey)), ukey))
		return (long)lo;
	return -1;
}

void env_init(struct env *e, size_t cache_bytes)
{
	memset(e, 0, sizeof *e);
	e->vfs = kv_vfs_mem_new();
	assert_non_null(e->vfs);
	if (cache_bytes)
		assert_int_equal(kv_cache_new(cache_bytes, &e->cache), 0);
}

void env_release(struct env *e)
{
	kv_cache_free(e->cache);
	kv_vfs_destroy(e->vfs);
}

uint64_t write_table(struct env *env, const char *path, const struct model *m,
		     const struct kv_table_options *o)
{
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env->vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC,
				     &f), 0);
	struct kv_table_builder *b;
	assert_int_equal(kv_table_builder_new(f, o, &b), 0);
	for (size_t i = 0; i < m->n; i++) {
		assert_int_equal(kv_table_builder_add(b, kv_buf_slice(&m->e[i].ikey),
						      kv_buf_slice(&m->e[i].value)), 0);
		assert_int_equal(kv_table_builder_entries(b), i + 1);
	}
	if (m->n) {
		assert_true(kv_slice_eq(kv_table_builder_smallest(b), kv_buf_slice(&m->e[0].ikey)));
		assert_true(kv_slice_eq(kv_table_builder_largest(b),
					kv_buf_slice(&m->e[m->n - 1].ikey)));
	}
	uint64_t estimate = kv_table_builder_file_size(b);
	uint64_t size = 0;
	assert_int_equal(kv_table_builder_finish(b, &size), 0);
	if (o && !o->compress)
		assert_true(size >= estimate);
	kv_table_builder_free(b);
	uint64_t real;
	assert_int_equal(kv_file_size(f, &real), 0);
	assert_int_equal(real, size);
	assert_int_equal(kv_file_sync(f), 0);
	kv_file_close(f);
	return size;
}

int open_table(struct env *env, const char *path, uint64_t number, struct kv_table **out)
{
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env->vfs, path, KV_VFS_READ, &f), 0);
	uint64_t size;
	assert_int_equal(kv_file_size(f, &size), 0);
	int r = kv_table_open(f, size, number, env->cache, &env->stats, out);
	if (r) {
		assert_null(*out);
		kv_file_close(f);
	}
	return r;
}

void read_file(struct env *env, const char *path, struct kv_buf *out)
{
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env->vfs, path, KV_VFS_READ, &f), 0);
	uint64_t size;
	assert_int_equal(kv_file_size(f, &size), 0);
	kv_buf_reset(out);
	assert_int_equal(kv_buf_reserve(out, (size_t)size), 0);
	assert_int_equal(kv_file_read_exact(f, out->p, (size_t)size, 0), 0);
	out->n = (size_t)size;
	kv_file_close(f);
}
