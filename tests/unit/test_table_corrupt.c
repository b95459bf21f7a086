/*
 * test_table_corrupt.c - damaged SSTables: a corruption test for every
 * on-disk field (footer, meta block, index entries, data block trailers and
 * contents, filter), every bit flip, every truncation and random damage. A
 * damaged table fails to open or answers KV_ECORRUPT, never wrong data.
 * Format: doc/storage-format.md#sstables
 *
 * The model and the environment: table_fx.h. Tables read back whole:
 * test_table.c.
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

#include "lsm/block.h"
#include "lsm/bloom.h"
#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/slice.h"

#include "table_fx.h"

/* ---- corruption ------------------------------------------------------------------------ */

static void write_file(struct env *env, const char *path, const uint8_t *p, size_t n)
{
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env->vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC,
				     &f), 0);
	if (n)
		assert_int_equal(kv_file_append(f, p, n), 0);
	kv_file_close(f);
}

/*
 * Opens the table in @bytes and reads all of it: every answer must be an
 * error or the truth. Returns the first error seen (0 if none).
 */
static int probe(struct env *env, const struct model *m, const uint8_t *bytes, size_t n)
{
	write_file(env, "c.sst", bytes, n);
	if (env->cache) /* blocks of an earlier table 99 must not mask damage */
		kv_cache_erase_file(env->cache, 99);
	struct kv_table *t;
	int r = open_table(env, "c.sst", 99, &t);
	if (r) {
		assert_true(r == KV_ECORRUPT || r == KV_EVERSION);
		return r;
	}
	int first = 0;
	/* Scan: a prefix of the model, then maybe an error. */
	struct kv_iter *it = kv_table_iter(t, true);
	size_t i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
		assert_true(i < m->n);
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m->e[i].ikey)));
		assert_true(kv_slice_eq(kv_iter_value(it), kv_buf_slice(&m->e[i].value)));
	}
	int st = kv_iter_status(it);
	if (st) {
		assert_int_equal(st, KV_ECORRUPT);
		first = st;
	} else {
		assert_int_equal(i, m->n);
	}
	kv_iter_destroy(it);
	/* Gets: the model's answer or an error. */
	struct kv_buf v = KV_BUF_INIT;
	for (size_t j = 0; j < m->n; j++) {
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		kv_ikey_parse(kv_buf_slice(&m->e[j].ikey), &k);
		enum kv_entry_type type;
		int g = kv_table_get(t, k.ukey, k.seq, &type, &v);
		if (g < 0) {
			assert_int_equal(g, KV_ECORRUPT);
			if (!first)
				first = g;
			continue;
		}
		assert_int_equal(g, 1);
		assert_int_equal(type, k.type);
		assert_true(kv_slice_eq(kv_buf_slice(&v), kv_buf_slice(&m->e[j].value)));
	}
	kv_buf_release(&v);
	kv_table_unref(t);
	return first;
}

/*
 * For a table whose last data block was replaced by malformed contents: the
 * scan must end in KV_ECORRUPT, and a get may answer an error or "absent"
 * (the block holds no such key) but never a wrong value.
 */
static void probe_malformed(struct env *env, const struct model *m, const uint8_t *bytes,
			    size_t n)
{
	write_file(env, "c.sst", bytes, n);
	if (env->cache)
		kv_cache_erase_file(env->cache, 99);
	struct kv_table *t;
	int r = open_table(env, "c.sst", 99, &t);
	if (r) {
		assert_int_equal(r, KV_ECORRUPT);
		return;
	}
	struct kv_iter *it = kv_table_iter(t, true);
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it))
		;
	assert_int_equal(kv_iter_status(it), KV_ECORRUPT);
	kv_iter_destroy(it);
	struct kv_buf v = KV_BUF_INIT;
	for (size_t j = 0; j < m->n; j++) {
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		kv_ikey_parse(kv_buf_slice(&m->e[j].ikey), &k);
		enum kv_entry_type type;
		int g = kv_table_get(t, k.ukey, k.seq, &type, &v);
		assert_true(g == 0 || g == 1 || g == KV_ECORRUPT);
		if (g == 1) {
			assert_int_equal(type, k.type);
			assert_true(kv_slice_eq(kv_buf_slice(&v), kv_buf_slice(&m->e[j].value)));
		}
	}
	kv_buf_release(&v);
	kv_table_unref(t);
}

/* A small table with several blocks of every kind, and its bytes. */
static void small_table(struct env *env, struct model *m, struct kv_buf *bytes, bool compress)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, 1234);
	struct shape s = { 40, 2, 30, 0 };
	*m = make_model(&rng, &s);
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.block_bytes = 256;
	o.compress = compress;
	write_table(env, "t.sst", m, &o);
	read_file(env, "t.sst", bytes);
	assert_int_equal(probe(env, m, bytes->p, bytes->n), 0);
}

static void test_table__every_bit_flip_is_caught(void **state)
{
	(void)state;
	for (int compress = 0; compress < 2; compress++) {
		struct env env;
		env_init(&env, 1 << 20);
		struct model m;
		struct kv_buf bytes = KV_BUF_INIT;
		small_table(&env, &m, &bytes, compress);
		size_t caught = 0;
		for (size_t i = 0; i < bytes.n; i++) {
			uint8_t bit = (uint8_t)(1u << (i % 8));
			bytes.p[i] ^= bit;
			/* Cached blocks of the good table must not mask the damage. */
			kv_cache_erase_file(env.cache, 99);
			caught += probe(&env, &m, bytes.p, bytes.n) != 0;
			bytes.p[i] ^= bit;
		}
		/* Every byte of the file is covered by some check. */
		assert_int_equal(caught, bytes.n);
		kv_buf_release(&bytes);
		free_model(&m);
		env_release(&env);
	}
}

static void test_table__every_truncation_is_caught(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct model m;
	struct kv_buf bytes = KV_BUF_INIT;
	small_table(&env, &m, &bytes, true);
	for (size_t len = 0; len < bytes.n; len++)
		assert_int_equal(probe(&env, &m, bytes.p, len), KV_ECORRUPT);
	/* Extra bytes at the end hide the footer too. */
	kv_buf_append(&bytes, "\0", 1);
	assert_int_equal(probe(&env, &m, bytes.p, bytes.n), KV_ECORRUPT);
	kv_buf_release(&bytes);
	free_model(&m);
	env_release(&env);
}

/* The pieces of a table, to rebuild it with one field changed. */
struct parts {
	struct kv_buf data;    /* the data region: bytes [0, first non-data block) */
	struct kv_buf filter;  /* contents (not sealed) */
	struct kv_buf meta;
	struct kv_buf index;
	bool has_filter;
};

static void contents_of(const struct kv_buf *file, uint64_t off, uint64_t size, struct kv_buf *out)
{
	struct kv_block *b;
	assert_int_equal(kv_block_decode_unparsed(kv_slice_make(file->p + off,
							       size + KV_BLOCK_TRAILER), &b), 0);
	kv_buf_append(out, b->data, b->size);
	kv_block_free(b);
}

static void split(const struct kv_buf *file, struct parts *p)
{
	memset(p, 0, sizeof *p);
	const uint8_t *ft = file->p + file->n - KV_TABLE_FOOTER;
	uint64_t io = kv_get_le64(ft), is = kv_get_le64(ft + 8);
	uint64_t fo = kv_get_le64(ft + 16), fs = kv_get_le64(ft + 24);
	uint64_t mo = kv_get_le64(ft + 32), ms = kv_get_le64(ft + 40);
	p->has_filter = fs != 0;
	uint64_t data_end = p->has_filter ? fo : mo;
	kv_buf_append(&p->data, file->p, (size_t)data_end);
	if (p->has_filter)
		contents_of(file, fo, fs, &p->filter);
	contents_of(file, mo, ms, &p->meta);
	contents_of(file, io, is, &p->index);
}

static void release_parts(struct parts *p)
{
	kv_buf_release(&p->data);
	kv_buf_release(&p->filter);
	kv_buf_release(&p->meta);
	kv_buf_release(&p->index);
}

/* Reassembles a table (valid envelopes and footer checksum) from @p. */
static void join(const struct parts *p, uint16_t major, uint16_t minor, struct kv_buf *out)
{
	kv_buf_reset(out);
	kv_buf_append(out, p->data.p, p->data.n);
	uint64_t fo = 0, fs = 0, mo, ms, io, is;
	if (p->has_filter) {
		fo = out->n;
		assert_int_equal(kv_block_seal(kv_buf_slice(&p->filter), false, out, &fs), 0);
	}
	mo = out->n;
	assert_int_equal(kv_block_seal(kv_buf_slice(&p->meta), false, out, &ms), 0);
	io = out->n;
	assert_int_equal(kv_block_seal(kv_buf_slice(&p->index), true, out, &is), 0);
	uint8_t ft[KV_TABLE_FOOTER];
	kv_put_le64(ft, io);
	kv_put_le64(ft + 8, is);
	kv_put_le64(ft + 16, fo);
	kv_put_le64(ft + 24, fs);
	kv_put_le64(ft + 32, mo);
	kv_put_le64(ft + 40, ms);
	kv_put_le16(ft + 48, major);
	kv_put_le16(ft + 50, minor);
	kv_put_le32(ft + 52, kv_checksum32(ft, 52));
	kv_put_le64(ft + 56, KV_TABLE_MAGIC);
	kv_buf_append(out, ft, sizeof ft);
}

/* Rewrites a key/value block through @edit(i, key, value) -> false to drop. */
typedef bool (*edit_fn)(size_t i, struct kv_buf *key, struct kv_buf *value, void *arg);

static void rewrite_block(struct kv_buf *contents, unsigned interval, edit_fn edit, void *arg,
			  kv_cmp_fn cmp)
{
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, kv_buf_slice(contents)), 0);
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, &b, cmp);
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, interval);
	size_t i = 0;
	for (kv_block_cursor_seek_first(&c); c.valid; kv_block_cursor_next(&c), i++) {
		struct kv_buf k = KV_BUF_INIT, v = KV_BUF_INIT;
		kv_buf_append(&k, c.key, c.key_len);
		kv_buf_append(&v, c.value, c.value_len);
		if (edit(i, &k, &v, arg))
			assert_int_equal(kv_block_builder_add(&bb, kv_buf_slice(&k), kv_buf_slice(&v)), 0);
		kv_buf_release(&k);
		kv_buf_release(&v);
	}
	edit(SIZE_MAX, NULL, NULL, arg); /* a chance to append */
	kv_block_cursor_release(&c);
	struct kv_slice out;
	assert_int_equal(kv_block_builder_finish(&bb, &out), 0);
	struct kv_buf copy = KV_BUF_INIT;
	kv_buf_append(&copy, out.p, out.n);
	kv_buf_release(contents);
	*contents = copy;
	kv_block_builder_release(&bb);
}

/* Builds the table with its @field-th part edited and returns probe()'s answer. */
static int probe_edited(struct env *env, const struct model *m, const struct kv_buf *good,
			bool meta, edit_fn edit, void *arg)
{
	struct parts p;
	split(good, &p);
	if (meta)
		rewrite_block(&p.meta, 1, edit, arg, kv_slice_cmp);
	else
		rewrite_block(&p.index, 1, edit, arg, kv_ikey_cmp);
	struct kv_buf out = KV_BUF_INIT;
	join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR, &out);
	int r = probe(env, m, out.p, out.n);
	kv_buf_release(&out);
	release_parts(&p);
	return r;
}

static void test_table__footer_fields_are_checked(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct model m;
	struct kv_buf good = KV_BUF_INIT, bad = KV_BUF_INIT;
	small_table(&env, &m, &good, true);
	struct parts p;
	split(&good, &p);
	/* Reassembly alone changes nothing. */
	join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR, &bad);
	assert_int_equal(bad.n, good.n);
	assert_memory_equal(bad.p, good.p, good.n);
	/* A newer minor opens; another major is refused as such. */
	join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR + 7, &bad);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), 0);
	join(&p, KV_TABLE_MAJOR + 1, 0, &bad);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_EVERSION);
	join(&p, 0, 0, &bad);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_EVERSION);
	join(&p, 0xffff, 0, &bad);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_EVERSION);
	/* Every handle field set to bad values, with a valid checksum. */
	size_t n = good.n;
	uint64_t data_end = p.data.n;
	const uint64_t values[] = { 0, 1, 7, data_end - 1, data_end + 1, n - KV_TABLE_FOOTER,
				    n, n + 1, KV_BLOCK_MAX_RAW + 1, UINT64_MAX - 12, UINT64_MAX };
	for (int field = 0; field < 6; field++) {
		for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
			kv_buf_reset(&bad);
			kv_buf_append(&bad, good.p, good.n);
			uint8_t *ft = bad.p + n - KV_TABLE_FOOTER;
			if (kv_get_le64(ft + 8 * field) == values[v])
				continue;
			kv_put_le64(ft + 8 * field, values[v]);
			kv_put_le32(ft + 52, kv_checksum32(ft, 52));
			/* Zeroing both filter fields means "no filter": still a good table. */
			bool no_filter = (field == 2 && values[v] == 0 && kv_get_le64(ft + 24) == 0) ||
					 (field == 3 && values[v] == 0 && kv_get_le64(ft + 16) == 0);
			int r = probe(&env, &m, bad.p, bad.n);
			if (!no_filter)
				assert_int_equal(r, KV_ECORRUPT);
		}
	}
	/* Magic and checksum. */
	for (int byte = 48; byte < 64; byte++) {
		kv_buf_reset(&bad);
		kv_buf_append(&bad, good.p, good.n);
		bad.p[n - KV_TABLE_FOOTER + byte] ^= 0x10;
		assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_ECORRUPT);
	}
	/* Only a filter "absent" by both fields opens, and serves without it. */
	kv_buf_reset(&bad);
	kv_buf_append(&bad, good.p, good.n);
	uint8_t *ft = bad.p + n - KV_TABLE_FOOTER;
	kv_put_le64(ft + 16, 0);
	kv_put_le64(ft + 24, 0);
	kv_put_le32(ft + 52, kv_checksum32(ft, 52));
	assert_int_equal(probe(&env, &m, bad.p, bad.n), 0);
	release_parts(&p);
	kv_buf_release(&good);
	kv_buf_release(&bad);
	free_model(&m);
	env_release(&env);
}

struct meta_edit {
	const char *name;   /* property to change */
	int action;         /* 0 drop, 1 set value, 2 add unknown property */
	struct kv_slice value;
};

static bool edit_meta(size_t i, struct kv_buf *k, struct kv_buf *v, void *arg)
{
	struct meta_edit *e = arg;
	if (i == SIZE_MAX)
		return false;
	if (!kv_slice_eq(kv_buf_slice(k), kv_slice_str(e->name)))
		return true;
	if (e->action == 0)
		return false;
	kv_buf_reset(v);
	kv_buf_append(v, e->value.p, e->value.n);
	return true;
}

static void test_table__meta_block_fields_are_checked(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct model m;
	struct kv_buf good = KV_BUF_INIT;
	small_table(&env, &m, &good, true);
	const char *names[] = { "kv.data_blocks", "kv.deletes", "kv.entries", "kv.format",
				"kv.largest", "kv.raw_key_bytes", "kv.raw_value_bytes",
				"kv.smallest" };
	/* Each property is required. */
	for (size_t i = 0; i < 8; i++) {
		struct meta_edit e = { names[i], 0, { NULL, 0 } };
		assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	}
	/* Malformed values: varints overlong, truncated, trailing bytes. */
	const struct kv_slice bad_varints[] = { kv_slice_make("", 0), kv_slice_make("\x80", 1),
						kv_slice_make("\x01\x00", 2),
						kv_slice_make("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11) };
	for (size_t i = 0; i < 8; i++) {
		if (i == 3 || i == 4 || i == 7)
			continue;
		for (size_t j = 0; j < 4; j++) {
			struct meta_edit e = { names[i], 1, bad_varints[j] };
			assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
		}
	}
	/* Counts disagreeing with the index. */
	struct meta_edit e = { "kv.data_blocks", 1, kv_slice_make("\x01", 1) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	e = (struct meta_edit){ "kv.entries", 1, kv_slice_make("\x00", 1) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	e = (struct meta_edit){ "kv.deletes", 1, kv_slice_make("\xff\x7f", 2) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	/* Another major inside the meta block; a short format field. */
	e = (struct meta_edit){ "kv.format", 1, kv_slice_make("\x02\x00\x00\x00", 4) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	e = (struct meta_edit){ "kv.format", 1, kv_slice_make("\x01\x00", 2) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	/* Bounds that are not internal keys, or out of order. */
	e = (struct meta_edit){ "kv.smallest", 1, kv_slice_make("abc", 3) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	e = (struct meta_edit){ "kv.largest", 1, kv_slice_make("\x00\x00\x00\x00\x00\x00\x00\x00\x07", 9) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	e = (struct meta_edit){ "kv.largest", 1, kv_slice_make("\x01\x00\x00\x00\x00\x00\x00\x00", 8) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), KV_ECORRUPT);
	/* A newer minor's unknown property is ignored. */
	e = (struct meta_edit){ "kv.nothing", 1, kv_slice_make("x", 1) };
	assert_int_equal(probe_edited(&env, &m, &good, true, edit_meta, &e), 0);
	kv_buf_release(&good);
	free_model(&m);
	env_release(&env);
}

struct index_edit {
	size_t entry;  /* which entry to change */
	int action;    /* 0 drop, 1 set value, 2 set key, 3 swap with the next */
	struct kv_buf value;
	struct kv_buf held;
};

static bool edit_index(size_t i, struct kv_buf *k, struct kv_buf *v, void *arg)
{
	struct index_edit *e = arg;
	if (i == SIZE_MAX || i != e->entry)
		return i != SIZE_MAX;
	if (e->action == 0)
		return false;
	struct kv_buf *target = e->action == 2 ? k : v;
	kv_buf_reset(target);
	kv_buf_append(target, e->value.p, e->value.n);
	return true;
}

static void set_handle(struct kv_buf *b, uint64_t off, uint64_t size)
{
	kv_buf_reset(b);
	kv_buf_append_varint(b, off);
	kv_buf_append_varint(b, size);
}

static void test_table__index_entries_are_checked(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct model m;
	struct kv_buf good = KV_BUF_INIT;
	small_table(&env, &m, &good, false);
	struct parts p;
	split(&good, &p);
	/* Read the real handles. */
	struct kv_block ib;
	assert_int_equal(kv_block_init(&ib, kv_buf_slice(&p.index)), 0);
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, &ib, kv_ikey_cmp);
	uint64_t offs[256], sizes[256];
	size_t nblocks = 0;
	for (kv_block_cursor_seek_first(&c); c.valid; kv_block_cursor_next(&c)) {
		int a = kv_varint_decode(c.value, c.value_len, &offs[nblocks]);
		kv_varint_decode(c.value + a, c.value_len - (size_t)a, &sizes[nblocks]);
		nblocks++;
	}
	kv_block_cursor_release(&c);
	assert_true(nblocks >= 4);
	uint64_t data_end = p.data.n;
	for (size_t i = 0; i < nblocks; i += nblocks / 4) {
		struct index_edit e = { i, 0, KV_BUF_INIT, KV_BUF_INIT };
		/* A missing block. */
		assert_int_equal(probe_edited(&env, &m, &good, false, edit_index, &e), KV_ECORRUPT);
		/* Handles off by one, overlapping, past the data, huge. */
		e.action = 1;
		const uint64_t bad[][2] = {
			{ offs[i] + 1, sizes[i] }, { offs[i], sizes[i] + 1 }, { offs[i], sizes[i] - 1 },
			{ offs[i] ? offs[i] - 1 : 1, sizes[i] }, { data_end, sizes[i] },
			{ offs[i], data_end }, { offs[i], KV_BLOCK_MAX_RAW + 1 },
			{ UINT64_MAX - 5, sizes[i] }, { offs[i], UINT64_MAX },
			{ i ? offs[i - 1] : offs[i + 1], i ? sizes[i - 1] : sizes[i + 1] },
		};
		for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
			set_handle(&e.value, bad[j][0], bad[j][1]);
			int r = probe_edited(&env, &m, &good, false, edit_index, &e);
			assert_int_equal(r, KV_ECORRUPT);
		}
		/* Malformed handle encodings. */
		const struct kv_slice enc[] = { kv_slice_make("", 0), kv_slice_make("\x05", 1),
						kv_slice_make("\x80\x80", 2),
						kv_slice_make("\x01\x02\x03", 3) };
		for (size_t j = 0; j < 4; j++) {
			kv_buf_reset(&e.value);
			kv_buf_append(&e.value, enc[j].p, enc[j].n);
			assert_int_equal(probe_edited(&env, &m, &good, false, edit_index, &e), KV_ECORRUPT);
		}
		/* Separator keys out of order, or not internal keys. */
		e.action = 2;
		kv_buf_reset(&e.value);
		kv_buf_append(&e.value, "k", 1);
		assert_int_equal(probe_edited(&env, &m, &good, false, edit_index, &e), KV_ECORRUPT);
		kv_buf_reset(&e.value);
		kv_ikey_append(&e.value, kv_slice_str(i ? "" : "\xff\xff\xff"), 1, KV_TYPE_PUT);
		assert_int_equal(probe_edited(&env, &m, &good, false, edit_index, &e), KV_ECORRUPT);
		kv_buf_release(&e.value);
	}
	release_parts(&p);
	kv_buf_release(&good);
	free_model(&m);
	env_release(&env);
}

/*
 * Rebuilds the table with the data block at @off replaced by @contents,
 * validly sealed and appended to the data region; the index points at it.
 */
static void replace_data_block(const struct kv_buf *good, uint64_t off,
			       struct kv_slice contents, bool compress, struct kv_buf *out)
{
	struct parts p;
	split(good, &p);
	struct kv_buf data = KV_BUF_INIT;
	kv_buf_append(&data, p.data.p, p.data.n);
	uint64_t new_off = data.n, new_size;
	assert_int_equal(kv_block_seal(contents, compress, &data, &new_size), 0);
	kv_buf_release(&p.data);
	p.data = data;
	/* Point the index entry for @off at the new copy. */
	struct kv_block ib;
	struct kv_buf idx = p.index;
	assert_int_equal(kv_block_init(&ib, kv_buf_slice(&idx)), 0);
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, &ib, kv_ikey_cmp);
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 1);
	for (kv_block_cursor_seek_first(&c); c.valid; kv_block_cursor_next(&c)) {
		uint64_t o, s;
		int a = kv_varint_decode(c.value, c.value_len, &o);
		kv_varint_decode(c.value + a, c.value_len - (size_t)a, &s);
		struct kv_buf h = KV_BUF_INIT;
		set_handle(&h, o == off ? new_off : o, o == off ? new_size : s);
		kv_block_builder_add(&bb, kv_block_cursor_key(&c), kv_buf_slice(&h));
		kv_buf_release(&h);
	}
	kv_block_cursor_release(&c);
	struct kv_slice ic;
	kv_block_builder_finish(&bb, &ic);
	p.index = (struct kv_buf)KV_BUF_INIT;
	kv_buf_append(&p.index, ic.p, ic.n);
	kv_buf_release(&idx);
	kv_block_builder_release(&bb);
	join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR, out);
	release_parts(&p);
}

static void test_table__data_block_trailers_and_contents_are_checked(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 1 << 20);
	struct model m;
	struct kv_buf good = KV_BUF_INIT, bad = KV_BUF_INIT;
	small_table(&env, &m, &good, true);
	/* The first data block starts at 0; its payload size is in its trailer. */
	struct parts p;
	split(&good, &p);
	struct kv_block ib;
	assert_int_equal(kv_block_init(&ib, kv_buf_slice(&p.index)), 0);
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, &ib, kv_ikey_cmp);
	kv_block_cursor_seek_first(&c);
	uint64_t off, size, last_off = 0, last_size = 0;
	int a = kv_varint_decode(c.value, c.value_len, &off);
	kv_varint_decode(c.value + a, c.value_len - (size_t)a, &size);
	for (; c.valid; kv_block_cursor_next(&c)) {
		a = kv_varint_decode(c.value, c.value_len, &last_off);
		kv_varint_decode(c.value + a, c.value_len - (size_t)a, &last_size);
	}
	kv_block_cursor_release(&c);
	assert_int_equal(off, 0);
	assert_true(last_off > off);
	/* Trailer fields, each with a recomputed (valid) checksum. */
	const size_t field_at[] = { 0, 1, 5 };
	const uint32_t values[] = { 2, 0xff, 0, (uint32_t)size + 1, KV_BLOCK_MAX_RAW + 1,
				    UINT32_MAX, 1u << 30 };
	for (size_t f = 0; f < 3; f++) {
		for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
			kv_buf_reset(&bad);
			kv_buf_append(&bad, good.p, good.n);
			uint8_t *t = bad.p + size;
			if (field_at[f] == 0) {
				if (values[v] > 0xff || t[0] == values[v])
					continue;
				t[0] = (uint8_t)values[v];
			} else {
				if (kv_get_le32(t + field_at[f]) == values[v])
					continue;
				kv_put_le32(t + field_at[f], values[v]);
			}
			kv_put_le32(t + 9, kv_checksum32(bad.p, size + 9));
			assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_ECORRUPT);
		}
	}
	/* The checksum field itself. */
	kv_buf_reset(&bad);
	kv_buf_append(&bad, good.p, good.n);
	bad.p[size + 9] ^= 1;
	kv_cache_erase_file(env.cache, 99);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_ECORRUPT);

	/*
	 * Contents that are well sealed but malformed, in place of the last
	 * data block (a copy appended to the data region, so the index stays
	 * in offset order).
	 */
	uint8_t huge_len[] = { 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0 };
	uint8_t short_key[] = { 0, 3, 1, 'a', 'b', 'c', 'v', 0, 0, 0, 0, 1, 0, 0, 0 };
	uint8_t no_restarts[] = { 0, 0, 0, 0 };
	uint8_t bad_restart[] = { 0, 1, 0, 'a', 200, 0, 0, 0, 1, 0, 0, 0 };
	const struct kv_slice contents[] = {
		kv_slice_make(huge_len, sizeof huge_len), kv_slice_make(short_key, sizeof short_key),
		kv_slice_make(no_restarts, sizeof no_restarts),
		kv_slice_make(bad_restart, sizeof bad_restart), kv_slice_make(NULL, 0),
	};
	for (size_t i = 0; i < sizeof contents / sizeof contents[0]; i++) {
		for (int z = 0; z < 2; z++) {
			replace_data_block(&good, last_off, contents[i], z, &bad);
			probe_malformed(&env, &m, bad.p, bad.n);
		}
	}
	release_parts(&p);
	kv_buf_release(&good);
	kv_buf_release(&bad);
	free_model(&m);
	env_release(&env);
}

static void test_table__filter_damage_is_caught_or_harmless(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct model m;
	struct kv_buf good = KV_BUF_INIT, bad = KV_BUF_INIT;
	small_table(&env, &m, &good, true);
	struct parts p;
	split(&good, &p);
	assert_true(p.has_filter);
	/* A flipped bit without a matching checksum: refused at open. */
	const uint8_t *ft = good.p + good.n - KV_TABLE_FOOTER;
	uint64_t fo = kv_get_le64(ft + 16), fs = kv_get_le64(ft + 24);
	for (uint64_t i = fo; i < fo + fs + KV_BLOCK_TRAILER; i += 7) {
		kv_buf_reset(&bad);
		kv_buf_append(&bad, good.p, good.n);
		bad.p[i] ^= 4;
		assert_int_equal(probe(&env, &m, bad.p, bad.n), KV_ECORRUPT);
	}
	/* A validly sealed filter in a layout this code does not know: unused, harmless. */
	struct kv_buf keep = p.filter;
	const size_t tail_edits[] = { 4, 5 };
	for (size_t i = 0; i < 2; i++) {
		p.filter = (struct kv_buf)KV_BUF_INIT;
		kv_buf_append(&p.filter, keep.p, keep.n);
		p.filter.p[p.filter.n - KV_BLOOM_TAIL + tail_edits[i]] = 0;
		join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR, &bad);
		assert_int_equal(probe(&env, &m, bad.p, bad.n), 0);
		kv_buf_release(&p.filter);
	}
	/* Too short to be a filter at all. */
	p.filter = (struct kv_buf)KV_BUF_INIT;
	join(&p, KV_TABLE_MAJOR, KV_TABLE_MINOR, &bad);
	assert_int_equal(probe(&env, &m, bad.p, bad.n), 0);
	kv_buf_release(&p.filter);
	p.filter = keep;
	release_parts(&p);
	kv_buf_release(&good);
	kv_buf_release(&bad);
	free_model(&m);
	env_release(&env);
}

static void test_table__random_damage_never_crashes(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_table__random_damage_never_crashes"));
	struct env env;
	env_init(&env, 1 << 20);
	struct model m;
	struct kv_buf good = KV_BUF_INIT, bad = KV_BUF_INIT;
	small_table(&env, &m, &good, true);
	for (int round = 0; round < 1500; round++) {
		kv_buf_reset(&bad);
		kv_buf_append(&bad, good.p, good.n);
		for (int k = 1 + (int)kv_rng_below(&rng, 8); k > 0; k--)
			bad.p[kv_rng_below(&rng, bad.n)] ^= (uint8_t)(1 + kv_rng_below(&rng, 255));
		int r = probe(&env, &m, bad.p, bad.n);
		if (memcmp(bad.p, good.p, good.n) != 0)
			assert_int_not_equal(r, 0);
	}
	kv_buf_release(&good);
	kv_buf_release(&bad);
	free_model(&m);
	env_release(&env);
}

int main(void)
{
	/* The corruption tests make the reader warn by the thousand. */
	kv_log_set_level(KV_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table__every_bit_flip_is_caught),
		cmocka_unit_test(test_table__every_truncation_is_caught),
		cmocka_unit_test(test_table__footer_fields_are_checked),
		cmocka_unit_test(test_table__meta_block_fields_are_checked),
		cmocka_unit_test(test_table__index_entries_are_checked),
		cmocka_unit_test(test_table__data_block_trailers_and_contents_are_checked),
		cmocka_unit_test(test_table__filter_damage_is_caught_or_harmless),
		cmocka_unit_test(test_table__random_damage_never_crashes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
