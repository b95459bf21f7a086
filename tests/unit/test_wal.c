/*
 * test_wal.c - the commit log: round trips, block boundaries, a corruption
 * test for every header field and the payload, truncation at every offset,
 * damage followed by good records, stale (recycled) logs, writer failures.
 *
 * Format: doc/storage-format.md#wal
 *
 * With KV_CORPUS_OUT=DIR set, the seed corpus for tests/fuzz/fuzz_wal.c is
 * (re)written into DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lsm/vfs.h"
#include "lsm/wal.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/slice.h"

#define LOGNUM 7

/* ---- A plain in-memory file with a few injectable failures -------------- */

struct memfile {
	struct kv_file base;
	uint8_t *p;
	size_t n, cap;
	long fail_write_after; /* >= 0: the next write keeps this many bytes, fails */
	int fail_sync;         /* next sync returns this */
	int fail_read;         /* every pread returns this */
	unsigned writes, syncs, reads;
};

static void mf_reserve(struct memfile *m, size_t need)
{
	if (need <= m->cap)
		return;
	size_t cap = m->cap ? m->cap : 4096;
	while (cap < need)
		cap *= 2;
	m->p = realloc(m->p, cap);
	assert_non_null(m->p);
	m->cap = cap;
}

static ssize_t mf_pread(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	struct memfile *m = (struct memfile *)f;
	m->reads++;
	if (m->fail_read)
		return m->fail_read;
	if (off >= m->n)
		return 0;
	if (n > m->n - off)
		n = m->n - (size_t)off;
	memcpy(buf, m->p + off, n);
	return (ssize_t)n;
}

static int mf_pwrite(struct kv_file *f, const void *buf, size_t n, uint64_t off)
{
	struct memfile *m = (struct memfile *)f;
	m->writes++;
	int err = 0;
	if (m->fail_write_after >= 0) {
		if ((size_t)m->fail_write_after < n)
			n = (size_t)m->fail_write_after;
		m->fail_write_after = -1;
		err = -ENOSPC;
	}
	mf_reserve(m, (size_t)off + n);
	if (off > m->n)
		memset(m->p + m->n, 0, (size_t)off - m->n);
	if (n > 0) /* (m->p is still NULL when nothing was ever written) */
		memcpy(m->p + off, buf, n);
	if (off + n > m->n)
		m->n = (size_t)off + n;
	return err;
}

static int mf_append(struct kv_file *f, const void *buf, size_t n)
{
	return mf_pwrite(f, buf, n, ((struct memfile *)f)->n);
}

static int mf_sync(struct kv_file *f)
{
	struct memfile *m = (struct memfile *)f;
	m->syncs++;
	int err = m->fail_sync;
	m->fail_sync = 0;
	return err;
}

static int mf_size(struct kv_file *f, uint64_t *out)
{
	*out = ((struct memfile *)f)->n;
	return 0;
}

static int mf_truncate(struct kv_file *f, uint64_t size)
{
	struct memfile *m = (struct memfile *)f;
	mf_reserve(m, (size_t)size);
	if (size > m->n)
		memset(m->p + m->n, 0, (size_t)size - m->n);
	m->n = (size_t)size;
	return 0;
}

static int mf_close(struct kv_file *f)
{
	(void)f;
	return 0;
}

static const struct kv_file_ops mf_ops = {
	mf_pread, mf_pwrite, mf_append, mf_sync, mf_size, mf_truncate, mf_close, NULL, NULL,
};

static void mf_init(struct memfile *m)
{
	memset(m, 0, sizeof *m);
	m->base.ops = &mf_ops;
	m->fail_write_after = -1;
}

static void mf_free(struct memfile *m)
{
	free(m->p);
	m->p = NULL;
	m->n = m->cap = 0;
}

/* ---- Helpers ------------------------------------------------------------- */

/* A payload whose bytes depend on (@tag, position), so mix-ups show. */
static void fill_payload(struct kv_buf *b, size_t n, uint64_t tag)
{
	kv_buf_reset(b);
	assert_int_equal(kv_buf_reserve(b, n), 0);
	for (size_t i = 0; i < n; i++)
		b->p[i] = (uint8_t)((tag * 131 + i * 7 + (i >> 8)) ^ (tag >> 3));
	b->n = n;
}

struct recs {
	struct kv_buf *v;
	size_t n;
};

static void recs_free(struct recs *r)
{
	for (size_t i = 0; i < r->n; i++)
		kv_buf_release(&r->v[i]);
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

/* Writes records of the given sizes (tags 0..n-1) as log @lognum into @f. */
static void write_log(struct memfile *f, uint64_t lognum, const size_t *sizes, size_t n,
		      struct recs *out)
{
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f->base, lognum, f->n, &w), 0);
	if (out) {
		out->v = calloc(n ? n : 1, sizeof *out->v);
		out->n = n;
	}
	struct kv_buf b = KV_BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		fill_payload(&b, sizes[i], i);
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
		if (out)
			assert_int_equal(kv_buf_append(&out->v[i], b.p, b.n), 0);
	}
	assert_int_equal(kv_wal_sync(w), 0);
	assert_int_equal(kv_wal_offset(w), f->n);
	kv_wal_writer_free(w);
	kv_buf_release(&b);
}

/* Reads every record of log @lognum in @f; the result must be 0 at the end. */
static void read_log(struct memfile *f, uint64_t lognum, struct recs *out,
		     struct kv_wal_stats *st)
{
	struct kv_wal_reader *r;
	assert_int_equal(kv_wal_reader_new(&f->base, lognum, &r), 0);
	size_t cap = 16;
	out->v = calloc(cap, sizeof *out->v);
	out->n = 0;
	for (;;) {
		if (out->n == cap) {
			out->v = realloc(out->v, 2 * cap * sizeof *out->v);
			memset(out->v + cap, 0, cap * sizeof *out->v);
			cap *= 2;
		}
		int rc = kv_wal_read(r, &out->v[out->n]);
		assert_true(rc == 0 || rc == 1);
		if (rc == 0)
			break;
		out->n++;
	}
	kv_buf_release(&out->v[out->n]);
	/* The end is sticky. */
	struct kv_buf extra = KV_BUF_INIT;
	assert_int_equal(kv_wal_read(r, &extra), 0);
	kv_buf_release(&extra);
	kv_wal_reader_stats(r, st);
	assert_int_equal(st->records, out->n);
	kv_wal_reader_free(r);
}

static bool buf_eq(const struct kv_buf *a, const struct kv_buf *b)
{
	return kv_slice_eq(kv_buf_slice(a), kv_buf_slice(b));
}

/* Every record read is one of the written ones, in order (a subsequence). */
static void assert_subsequence(const struct recs *got, const struct recs *want)
{
	size_t j = 0;
	for (size_t i = 0; i < got->n; i++) {
		while (j < want->n && !buf_eq(&got->v[i], &want->v[j]))
			j++;
		assert_true(j < want->n);
		j++;
	}
}

static void assert_same(const struct recs *got, const struct recs *want)
{
	assert_int_equal(got->n, want->n);
	for (size_t i = 0; i < got->n; i++)
		assert_true(buf_eq(&got->v[i], &want->v[i]));
}

static void assert_clean(const struct kv_wal_stats *st)
{
	assert_int_equal(st->bad_regions, 0);
	assert_int_equal(st->bytes_skipped, 0);
	assert_false(st->torn_tail);
	assert_int_equal(st->tail_bytes, 0);
}

/* Recomputes a fragment's checksum after a test edited its header. */
static void reseal(struct memfile *f, size_t off)
{
	size_t len = kv_get_le16(f->p + off + 4);
	kv_put_le32(f->p + off, kv_checksum32(f->p + off + 6, 5 + len));
}

/* ---- Round trips ---------------------------------------------------------- */

static void test_wal__empty_log_reads_nothing(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct recs got;
	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 0);
	assert_clean(&st);
	assert_int_equal(st.end_offset, 0);
	recs_free(&got);
}

static void test_wal__empty_record_round_trips(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 0, 0, 1, 0 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 4, &want);
	assert_int_equal(f.n, 4 * KV_WAL_HEADER + 1);
	read_log(&f, LOGNUM, &got, &st);
	assert_same(&got, &want);
	assert_clean(&st);
	assert_int_equal(st.end_offset, f.n);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

static void test_wal__layout_matches_the_spec(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, 0x0102030405ull, 0, &w), 0);
	assert_int_equal(kv_wal_add(w, kv_slice_str("hello")), 0);
	assert_int_equal(kv_wal_bytes(w), 16);
	kv_wal_writer_free(w);
	assert_int_equal(f.n, 16);
	/* checksum le32 | length le16 | type | log number le32 (low 32 bits) */
	assert_int_equal(kv_get_le16(f.p + 4), 5);
	assert_int_equal(f.p[6], KV_WAL_FULL);
	assert_int_equal(kv_get_le32(f.p + 7), 0x02030405);
	assert_memory_equal(f.p + 11, "hello", 5);
	assert_int_equal(kv_get_le32(f.p), kv_checksum32(f.p + 6, 10));
	mf_free(&f);
}

static void test_wal__random_records_round_trip(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(__func__));
	for (int round = 0; round < 20; round++) {
		size_t n = 1 + kv_rng_below(&rng, 200);
		size_t *sizes = calloc(n, sizeof *sizes);
		for (size_t i = 0; i < n; i++) {
			switch (kv_rng_below(&rng, 4)) {
			case 0: sizes[i] = kv_rng_below(&rng, 16); break;
			case 1: sizes[i] = kv_rng_below(&rng, 1000); break;
			case 2: sizes[i] = kv_rng_below(&rng, KV_WAL_BLOCK + 100); break;
			default: sizes[i] = kv_rng_below(&rng, 4 * KV_WAL_BLOCK); break;
			}
		}
		struct memfile f;
		mf_init(&f);
		struct recs want, got;
		struct kv_wal_stats st;
		write_log(&f, LOGNUM, sizes, n, &want);
		read_log(&f, LOGNUM, &got, &st);
		assert_same(&got, &want);
		assert_clean(&st);
		assert_int_equal(st.end_offset, f.n);
		/* Reads go by whole blocks, not by record. */
		assert_true(f.reads <= f.n / KV_WAL_BLOCK + 2);
		recs_free(&want);
		recs_free(&got);
		mf_free(&f);
		free(sizes);
	}
}

static void test_wal__block_boundaries_round_trip(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK, H = KV_WAL_HEADER;
	/*
	 * A first record that ends exactly at the block end, or leaves 1..10
	 * bytes (padding), or exactly a header's room (a 0-byte FIRST), or one
	 * more; then records that span blocks exactly.
	 */
	for (size_t leave = 0; leave <= H + 2; leave++) {
		size_t sizes[] = { B - H - leave, 5, B - H, 2 * B - 2 * H, 0, 3 * B };
		struct memfile f;
		mf_init(&f);
		struct recs want, got;
		struct kv_wal_stats st;
		write_log(&f, LOGNUM, sizes, 6, &want);
		read_log(&f, LOGNUM, &got, &st);
		assert_same(&got, &want);
		assert_clean(&st);
		/* The trailer of the first block is zero padding. */
		if (leave > 0 && leave < H)
			for (size_t i = B - leave; i < B; i++)
				assert_int_equal(f.p[i], 0);
		if (leave == H) /* a zero-length FIRST fills the block */
			assert_int_equal(f.p[B - H + 6], KV_WAL_FIRST);
		recs_free(&want);
		recs_free(&got);
		mf_free(&f);
	}
}

/* Found by fuzz_wal: an empty record right after a block's padding. */
static void test_wal__empty_record_after_padding_is_written(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK, H = KV_WAL_HEADER;
	for (size_t leave = 0; leave <= H; leave++) {
		size_t sizes[] = { B - H - leave, 0, 0, 3 };
		struct memfile f;
		mf_init(&f);
		struct recs want, got;
		struct kv_wal_stats st;
		write_log(&f, LOGNUM, sizes, 4, &want);
		read_log(&f, LOGNUM, &got, &st);
		assert_same(&got, &want);
		assert_clean(&st);
		recs_free(&want);
		recs_free(&got);
		mf_free(&f);
	}
}

static void test_wal__fragments_carry_the_right_types(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	const size_t B = KV_WAL_BLOCK, H = KV_WAL_HEADER;
	size_t sizes[] = { 3 * (B - H) };
	write_log(&f, LOGNUM, sizes, 1, NULL);
	assert_int_equal(f.n, 3 * B);
	assert_int_equal(f.p[6], KV_WAL_FIRST);
	assert_int_equal(f.p[B + 6], KV_WAL_MIDDLE);
	assert_int_equal(f.p[2 * B + 6], KV_WAL_LAST);
	mf_free(&f);
}

static void test_wal__addv_equals_add(void **state)
{
	(void)state;
	struct memfile a, b;
	mf_init(&a);
	mf_init(&b);
	struct kv_buf p = KV_BUF_INIT;
	fill_payload(&p, 3 * KV_WAL_BLOCK, 9);
	struct kv_wal_writer *wa, *wb;
	assert_int_equal(kv_wal_writer_new(&a.base, 1, 0, &wa), 0);
	assert_int_equal(kv_wal_writer_new(&b.base, 1, 0, &wb), 0);
	assert_int_equal(kv_wal_add(wa, kv_buf_slice(&p)), 0);
	struct kv_slice parts[] = {
		kv_slice_make(p.p, 10), kv_slice_make(p.p + 10, 0),
		kv_slice_make(p.p + 10, KV_WAL_BLOCK), kv_slice_make(p.p + 10 + KV_WAL_BLOCK,
								    p.n - 10 - KV_WAL_BLOCK),
	};
	assert_int_equal(kv_wal_addv(wb, parts, 4), 0);
	assert_int_equal(kv_wal_addv(wa, NULL, 0), 0);
	assert_int_equal(kv_wal_add(wb, kv_slice_make(NULL, 0)), 0);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.p, b.p, a.n);
	kv_wal_writer_free(wa);
	kv_wal_writer_free(wb);
	kv_buf_release(&p);
	mf_free(&a);
	mf_free(&b);
}

static void test_wal__writer_continues_at_an_offset(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t first[] = { 100, KV_WAL_BLOCK - 150 }, second[] = { 40, 70000, 1 };
	struct recs w1, w2, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, first, 2, &w1);
	write_log(&f, LOGNUM, second, 3, &w2); /* a new writer at f.n */
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 5);
	assert_true(buf_eq(&got.v[1], &w1.v[1]));
	assert_true(buf_eq(&got.v[3], &w2.v[1]));
	assert_clean(&st);
	recs_free(&w1);
	recs_free(&w2);
	recs_free(&got);
	mf_free(&f);
}

/* ---- Writing ahead (kv_wal_writer_ahead) --------------------------------- */

#define AHEAD_STEP 8192u

/*
 * Records of every size, some longer than the step: before each, the file
 * already reaches past the record's end, to a multiple of the step, and the
 * log still reads back whole and clean, ending where the writer stopped.
 */
static void test_wal__writer_writes_zeros_ahead(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	kv_wal_writer_ahead(w, 0, AHEAD_STEP);
	size_t sizes[] = { 100, 3000, 4000, 20000, 1, 0, KV_WAL_BLOCK, 500, 9000 };
	size_t n = sizeof sizes / sizeof sizes[0];
	struct recs want = { calloc(n, sizeof(struct kv_buf)), n }, got;
	struct kv_buf b = KV_BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		fill_payload(&b, sizes[i], i);
		uint64_t before = f.n;
		unsigned writes = f.writes;
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
		assert_int_equal(kv_buf_append(&want.v[i], b.p, b.n), 0);
		assert_true(f.n > kv_wal_offset(w));
		assert_int_equal(f.n % AHEAD_STEP, 0);
		/* Zeros only when the record would reach past the file's end. */
		assert_int_equal(f.writes - writes, kv_wal_offset(w) > before ? 2 : 1);
	}
	assert_int_equal(kv_wal_sync(w), 0);
	uint64_t end = kv_wal_offset(w);
	kv_wal_writer_free(w);

	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_same(&got, &want);
	assert_clean(&st);
	assert_int_equal(st.end_offset, end);
	assert_true(st.stale_bytes > 0);
	recs_free(&want);
	recs_free(&got);
	kv_buf_release(&b);
	mf_free(&f);
}

/* A recycled file: nothing is written ahead until the records reach its
 * end, and then the zeros start at its end, not at the writer's offset. */
static void test_wal__writing_ahead_starts_at_the_end_of_the_file(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t old_sizes[] = { 10000, 10000, 10000 };
	write_log(&f, LOGNUM - 1, old_sizes, 3, NULL); /* an older log's bytes */
	uint64_t old_end = f.n;
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	kv_wal_writer_ahead(w, old_end, AHEAD_STEP);
	struct kv_buf b = KV_BUF_INIT;
	unsigned k = 0;
	while (kv_wal_offset(w) + 2000 < old_end) {
		unsigned writes = f.writes;
		fill_payload(&b, 1000, k++);
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
		assert_int_equal(f.writes - writes, 1);
		assert_int_equal(f.n, old_end);
	}
	/* This record reaches past the old bytes: zeros to the next step. */
	fill_payload(&b, 5000, k++);
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	assert_int_equal(f.n, (kv_wal_offset(w) / AHEAD_STEP + 1) * AHEAD_STEP);
	for (uint64_t i = kv_wal_offset(w); i < f.n; i++)
		assert_int_equal(f.p[i], 0);
	assert_int_equal(kv_wal_finish(w), 0);
	assert_int_equal(kv_wal_sync(w), 0);
	kv_wal_writer_free(w);

	struct recs got;
	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, k);
	assert_clean(&st);
	assert_true(st.finished);
	recs_free(&got);
	kv_buf_release(&b);
	mf_free(&f);
}

/* A zero write that fails is no error: the record is written, and the
 * writer appends from then on. */
static void test_wal__failed_write_ahead_falls_back_to_appending(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	kv_wal_writer_ahead(w, 0, AHEAD_STEP);
	struct kv_buf b = KV_BUF_INIT;
	fill_payload(&b, 700, 1);
	f.fail_write_after = 100; /* the zeros stop short and fail */
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	assert_int_equal(kv_wal_error(w), 0);
	assert_int_equal(f.n, kv_wal_offset(w));
	unsigned writes = f.writes;
	fill_payload(&b, 20000, 2);
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	assert_int_equal(f.writes - writes, 1);
	assert_int_equal(f.n, kv_wal_offset(w));
	assert_int_equal(kv_wal_sync(w), 0);
	kv_wal_writer_free(w);

	struct recs got;
	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_clean(&st);
	recs_free(&got);
	kv_buf_release(&b);
	mf_free(&f);
}

static void test_wal__sync_is_skipped_when_nothing_is_new(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, 1, 0, &w), 0);
	assert_int_equal(kv_wal_sync(w), 0);
	assert_int_equal(f.syncs, 0);
	assert_int_equal(kv_wal_add(w, kv_slice_str("x")), 0);
	assert_int_equal(kv_wal_sync(w), 0);
	assert_int_equal(kv_wal_sync(w), 0);
	assert_int_equal(f.syncs, 1);
	assert_int_equal(f.writes, 1);
	kv_wal_writer_free(w);
	mf_free(&f);
}

/* ---- Damage: one test per field ------------------------------------------- */

/*
 * Three records in one block: A (100 B), B (200 B), then C (300 B) in the
 * next block. Damage to B must lose B (and the rest of its block), keep A and
 * C, and be reported as a bad region.
 */
struct three {
	struct memfile f;
	struct recs want;
	size_t b_off, c_off;
};

static void three_init(struct three *t)
{
	mf_init(&t->f);
	const size_t B = KV_WAL_BLOCK, H = KV_WAL_HEADER;
	/* A, B, then a filler that ends block 0 exactly, then C in block 1. */
	size_t sizes[] = { 100, 200, B - 3 * H - 300, 300 };
	write_log(&t->f, LOGNUM, sizes, 4, &t->want);
	t->b_off = H + 100;
	t->c_off = B;
	assert_int_equal(t->f.n, B + H + 300);
}

static void three_free(struct three *t)
{
	recs_free(&t->want);
	mf_free(&t->f);
}

/* A and C survive; B and the filler are one bad region. */
static void three_check_b_lost(struct three *t)
{
	struct recs got;
	struct kv_wal_stats st;
	read_log(&t->f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_true(buf_eq(&got.v[0], &t->want.v[0]));
	assert_true(buf_eq(&got.v[1], &t->want.v[3]));
	assert_int_equal(st.bad_regions, 1);
	assert_int_equal(st.bytes_skipped, KV_WAL_BLOCK - t->b_off);
	assert_false(st.torn_tail);
	assert_int_equal(st.end_offset, t->f.n);
	recs_free(&got);
}

static void test_wal__bad_checksum_is_a_bad_region(void **state)
{
	(void)state;
	struct three t;
	three_init(&t);
	t.f.p[t.b_off] ^= 0x01;
	three_check_b_lost(&t);
	three_free(&t);
}

static void test_wal__bad_length_is_a_bad_region(void **state)
{
	(void)state;
	struct three t;
	three_init(&t);
	/* Shorter, longer, and past the block: each fails the checksum or the bound. */
	const uint16_t lens[] = { 199, 201, 0, 0xffff, KV_WAL_BLOCK - KV_WAL_HEADER };
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		uint8_t save[2];
		memcpy(save, t.f.p + t.b_off + 4, 2);
		kv_put_le16(t.f.p + t.b_off + 4, lens[i]);
		three_check_b_lost(&t);
		memcpy(t.f.p + t.b_off + 4, save, 2);
	}
	three_free(&t);
}

static void test_wal__bad_type_is_a_bad_region(void **state)
{
	(void)state;
	struct three t;
	three_init(&t);
	const uint8_t types[] = { KV_WAL_ZERO, KV_WAL_FIRST, KV_WAL_LAST, 5, 200 };
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		uint8_t save = t.f.p[t.b_off + 6];
		t.f.p[t.b_off + 6] = types[i];
		three_check_b_lost(&t);
		t.f.p[t.b_off + 6] = save;
	}
	three_free(&t);
}

static void test_wal__bad_log_number_is_a_bad_region(void **state)
{
	(void)state;
	struct three t;
	three_init(&t);
	t.f.p[t.b_off + 7] ^= 0x80;
	three_check_b_lost(&t);
	t.f.p[t.b_off + 7] ^= 0x80;
	t.f.p[t.b_off + 10] ^= 0x01;
	three_check_b_lost(&t);
	three_free(&t);
}

static void test_wal__bad_payload_is_a_bad_region(void **state)
{
	(void)state;
	struct three t;
	three_init(&t);
	const size_t at[] = { 0, 1, 100, 199 };
	for (size_t i = 0; i < 4; i++) {
		size_t off = t.b_off + KV_WAL_HEADER + at[i];
		t.f.p[off] ^= 0x10;
		three_check_b_lost(&t);
		t.f.p[off] ^= 0x10;
	}
	three_free(&t);
}

static void test_wal__huge_length_at_the_end_is_a_torn_tail(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 10, 10 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 2, &want);
	kv_put_le16(f.p + KV_WAL_HEADER + 10 + 4, 0xffff);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 1);
	assert_true(st.torn_tail);
	assert_int_equal(st.tail_bytes, KV_WAL_HEADER + 10);
	assert_int_equal(st.bad_regions, 0);
	assert_int_equal(st.end_offset, KV_WAL_HEADER + 10);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

/* ---- Truncation, tails, bad regions --------------------------------------- */

static void test_wal__truncation_at_every_offset_gives_a_prefix(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK, H = KV_WAL_HEADER;
	struct memfile full;
	mf_init(&full);
	/* Small records, one across the block boundary, one ending near it. */
	size_t sizes[] = { 0, 20, 300, B - 4 * H - 325, 50, 2 * B, 7 };
	struct recs want;
	write_log(&full, LOGNUM, sizes, 7, &want);
	/* The offset where each record ends. */
	size_t ends[7], off = 0, bo = 0;
	for (size_t i = 0; i < 7; i++) {
		size_t left = sizes[i];
		do {
			if (B - bo < H) {
				off += B - bo;
				bo = 0;
			}
			size_t frag = B - bo - H < left ? B - bo - H : left;
			off += H + frag;
			bo = (bo + H + frag) % B;
			left -= frag;
		} while (left);
		ends[i] = off;
	}
	assert_int_equal(ends[6], full.n);

	struct memfile f;
	mf_init(&f);
	for (size_t cut = 0; cut <= full.n; cut++) {
		/* Every offset of the first block and near block edges and the
		 * end; every 97th elsewhere. */
		bool near = cut <= B + 40 || (cut % B) > B - 40 || cut > full.n - 40;
		if (!near && cut % 97)
			continue;
		f.n = 0;
		mf_reserve(&f, cut + 1);
		memcpy(f.p, full.p, cut);
		f.n = cut;
		struct recs got;
		struct kv_wal_stats st;
		read_log(&f, LOGNUM, &got, &st);
		size_t expect = 0;
		while (expect < 7 && ends[expect] <= cut)
			expect++;
		assert_int_equal(got.n, expect);
		for (size_t i = 0; i < expect; i++)
			assert_true(buf_eq(&got.v[i], &want.v[i]));
		assert_int_equal(st.bad_regions, 0);
		assert_int_equal(st.bytes_skipped, 0);
		size_t good_end = expect ? ends[expect - 1] : 0;
		assert_int_equal(st.end_offset, good_end);
		/* Cut inside a record: a torn tail, unless only padding remains. */
		bool only_padding = cut > good_end && (cut - 1) / B == good_end / B &&
				    B - good_end % B < H;
		if (st.torn_tail != (cut > good_end && !only_padding))
			fail_msg("cut %zu, good end %zu: torn tail %d", cut, good_end,
				 st.torn_tail);
		recs_free(&got);
	}
	recs_free(&want);
	mf_free(&f);
	mf_free(&full);
}

static void test_wal__torn_tail_is_ignored(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 100, 100, 5000 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 3, &want);
	f.n -= 1000; /* the last record half-written */
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_true(st.torn_tail);
	assert_int_equal(st.tail_bytes, KV_WAL_HEADER + 4000);
	assert_int_equal(st.bad_regions, 0);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

static void test_wal__zeros_at_the_end_end_the_log(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 100 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 1, &want);
	/* A spare file of zeros, or a file system that extended the file but
	 * never wrote the data: eleven zero bytes are never a header. */
	mf_truncate(&f.base, 3 * KV_WAL_BLOCK + 17);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 1);
	assert_true(buf_eq(&got.v[0], &want.v[0]));
	assert_clean(&st);
	assert_true(st.stale_bytes > 0);
	assert_false(st.finished);
	assert_int_equal(st.end_offset, KV_WAL_HEADER + 100);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

static void test_wal__zeros_then_good_records_is_a_bad_region(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 1000, B, 2000 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 3, &want);
	/* A page that never reached the disk, good records after it. */
	memset(f.p, 0, KV_WAL_HEADER + 1000);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 1);
	assert_true(buf_eq(&got.v[0], &want.v[2]));
	assert_int_equal(st.bad_regions, 1);
	assert_true(st.bytes_skipped > 0);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

static void test_wal__finished_log_ends_before_old_contents(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK;
	for (int finish = 0; finish < 2; finish++) {
		struct memfile f;
		mf_init(&f);
		/* Log 6 fills three blocks; log 7 reuses the file from offset 0
		 * and ends in the middle of one of log 6's fragments. */
		size_t old[] = { 1000, B, 2000, B, 3000 };
		write_log(&f, LOGNUM - 1, old, 5, NULL);
		struct kv_wal_writer *w;
		assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
		struct kv_buf b = KV_BUF_INIT;
		fill_payload(&b, 500, 9);
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
		if (finish)
			assert_int_equal(kv_wal_finish(w), 0);
		assert_int_equal(kv_wal_sync(w), 0);
		kv_wal_writer_free(w);

		struct recs got;
		struct kv_wal_stats st;
		read_log(&f, LOGNUM, &got, &st);
		assert_int_equal(got.n, 1);
		assert_true(kv_slice_eq(kv_buf_slice(&got.v[0]), kv_buf_slice(&b)));
		assert_int_equal(st.bad_regions, 0);
		if (finish) {
			/* Nothing after the END fragment is log 7's. */
			assert_clean(&st);
			assert_true(st.finished);
			assert_int_equal(st.end_offset, 2 * KV_WAL_HEADER + 500);
		} else {
			/* The middle of an old fragment: a torn tail, no loss. */
			assert_true(st.torn_tail);
			assert_false(st.finished);
		}
		recs_free(&got);
		kv_buf_release(&b);
		mf_free(&f);
	}
}

static void test_wal__failed_writer_finishes_nothing(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	f.fail_write_after = 0;
	assert_int_not_equal(kv_wal_add(w, kv_slice_make("x", 1)), 0);
	size_t n = f.n;
	assert_int_not_equal(kv_wal_finish(w), 0);
	assert_int_equal(f.n, n);
	kv_wal_writer_free(w);
	mf_free(&f);
}

static void test_wal__bad_record_then_good_records_is_reported(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(__func__));
	for (int round = 0; round < 50; round++) {
		size_t n = 40;
		size_t sizes[40];
		for (size_t i = 0; i < n; i++)
			sizes[i] = kv_rng_below(&rng, 6000);
		struct memfile f;
		mf_init(&f);
		struct recs want, got;
		struct kv_wal_stats st;
		write_log(&f, LOGNUM, sizes, n, &want);
		/* Flip bits somewhere in the first half: records after survive. */
		size_t at = kv_rng_below(&rng, f.n / 2);
		unsigned flips = 1 + (unsigned)kv_rng_below(&rng, 8);
		size_t done[8];
		for (unsigned k = 0; k < flips; k++) {
			size_t pos = at + kv_rng_below(&rng, 64);
			/* A block's last 10 bytes may be padding nobody reads. */
			if (KV_WAL_BLOCK - pos % KV_WAL_BLOCK < KV_WAL_HEADER)
				pos -= KV_WAL_HEADER;
			/* Two flips of one byte could cancel out. */
			bool again = false;
			for (unsigned j = 0; j < k; j++)
				again = again || done[j] == pos;
			done[k] = pos;
			if (!again)
				f.p[pos] ^= (uint8_t)(1u << kv_rng_below(&rng, 8));
		}
		read_log(&f, LOGNUM, &got, &st);
		assert_subsequence(&got, &want);
		assert_true(got.n < n);
		/* The last block is intact, so the last record is found. */
		assert_true(buf_eq(&got.v[got.n - 1], &want.v[n - 1]));
		assert_true(st.bad_regions >= 1);
		assert_true(st.bytes_skipped > 0);
		assert_false(st.torn_tail);
		recs_free(&want);
		recs_free(&got);
		mf_free(&f);
	}
}

static void test_wal__damage_inside_a_long_record_drops_its_orphans(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK;
	struct memfile f;
	mf_init(&f);
	/* A small one, a 3-block record, then two more. */
	size_t sizes[] = { 10, 3 * B, 10, 10 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 4, &want);
	f.p[KV_WAL_HEADER + 10 + KV_WAL_HEADER + 5] ^= 1; /* the FIRST fragment */
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 3);
	assert_true(buf_eq(&got.v[1], &want.v[2]));
	assert_int_equal(st.bad_regions, 1);
	/* The FIRST's block rest, and the whole MIDDLE and LAST fragments. */
	assert_true(st.bytes_skipped > 3 * B - 100);
	assert_false(st.torn_tail);
	recs_free(&want);
	recs_free(&got);
	mf_free(&f);
}

static void test_wal__every_bit_flip_is_caught(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 3, 0, 40, 17 };
	struct recs want;
	write_log(&f, LOGNUM, sizes, 4, &want);
	for (size_t off = 0; off < f.n; off++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			f.p[off] ^= (uint8_t)(1u << bit);
			struct recs got;
			struct kv_wal_stats st;
			read_log(&f, LOGNUM, &got, &st);
			/* A record is lost, never altered; something is reported. */
			assert_subsequence(&got, &want);
			assert_true(got.n < 4);
			assert_true(st.torn_tail || st.bad_regions > 0);
			recs_free(&got);
			f.p[off] ^= (uint8_t)(1u << bit);
		}
	}
	recs_free(&want);
	mf_free(&f);
}

/* ---- Stale records (recycled files), versions ----------------------------- */

static void test_wal__stale_records_end_the_log(void **state)
{
	(void)state;
	const size_t B = KV_WAL_BLOCK;
	struct memfile f;
	mf_init(&f);
	/* Log 6 fills three blocks; log 7 then reuses the file from offset 0. */
	size_t old[] = { 1000, B, 2000, B, 3000 };
	write_log(&f, LOGNUM - 1, old, 5, NULL);
	size_t old_n = f.n;
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	struct kv_buf b = KV_BUF_INIT;
	fill_payload(&b, B - KV_WAL_HEADER, 77); /* exactly block 0 */
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	kv_wal_writer_free(w);
	assert_int_equal(f.n, old_n);

	struct recs got;
	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 1);
	assert_true(kv_slice_eq(kv_buf_slice(&got.v[0]), kv_buf_slice(&b)));
	/* Blocks 1.. hold sound fragments of log 6: the normal end. */
	assert_clean(&st);
	assert_true(st.stale_bytes > 0);
	assert_int_equal(st.end_offset, B);
	recs_free(&got);

	/* Read as log 6: block 0 is foreign, block 1 starts with an orphan,
	 * then log 6's last three records: a bad region. */
	read_log(&f, LOGNUM - 1, &got, &st);
	assert_int_equal(got.n, 3);
	assert_int_equal(st.bad_regions, 1);
	recs_free(&got);
	kv_buf_release(&b);
	mf_free(&f);
}

static void test_wal__stale_records_then_good_records_is_reported(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 100, 100, 100 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 3, &want);
	/* The middle record carries another log's number (a page of the
	 * recycled file that was never rewritten), with a valid checksum. */
	size_t mid = KV_WAL_HEADER + 100;
	kv_put_le32(f.p + mid + 7, LOGNUM + 1000);
	reseal(&f, mid);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_true(buf_eq(&got.v[1], &want.v[2]));
	assert_int_equal(st.bad_regions, 1);
	assert_int_equal(st.bytes_skipped, KV_WAL_HEADER + 100);
	assert_false(st.torn_tail);
	recs_free(&got);

	/* At the end instead: the normal end of a recycled log. */
	size_t last = 2 * (KV_WAL_HEADER + 100);
	kv_put_le32(f.p + mid + 7, LOGNUM);
	reseal(&f, mid);
	kv_put_le32(f.p + last + 7, LOGNUM - 1);
	reseal(&f, last);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_clean(&st);
	assert_int_equal(st.stale_bytes, KV_WAL_HEADER + 100);
	recs_free(&got);
	recs_free(&want);
	mf_free(&f);
}

static void test_wal__log_number_keeps_its_low_32_bits(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	uint64_t big = (UINT64_C(5) << 32) | 9;
	size_t sizes[] = { 12 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, big, sizes, 1, &want);
	read_log(&f, 9, &got, &st); /* the same low 32 bits */
	assert_int_equal(got.n, 1);
	recs_free(&got);
	read_log(&f, big + 1, &got, &st);
	assert_int_equal(got.n, 0);
	assert_int_equal(st.stale_bytes, f.n);
	recs_free(&got);
	recs_free(&want);
	mf_free(&f);
}

static void test_wal__newer_required_type_is_a_version_error(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 10, 10 };
	write_log(&f, LOGNUM, sizes, 2, NULL);
	size_t second = KV_WAL_HEADER + 10;
	f.p[second + 6] = 5;
	reseal(&f, second);
	struct kv_wal_reader *r;
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_wal_reader_new(&f.base, LOGNUM, &r), 0);
	assert_int_equal(kv_wal_read(r, &b), 1);
	assert_int_equal(kv_wal_read(r, &b), KV_EVERSION);
	assert_int_equal(kv_wal_read(r, &b), KV_EVERSION);
	assert_int_equal(b.n, 0);
	kv_wal_reader_free(r);
	kv_buf_release(&b);
	mf_free(&f);
}

static void test_wal__newer_skippable_type_is_passed_over(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 10, 10, 10 };
	struct recs want, got;
	struct kv_wal_stats st;
	write_log(&f, LOGNUM, sizes, 3, &want);
	size_t second = KV_WAL_HEADER + 10;
	f.p[second + 6] = KV_WAL_SKIPPABLE + 3;
	reseal(&f, second);
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 2);
	assert_true(buf_eq(&got.v[1], &want.v[2]));
	assert_clean(&st);
	assert_int_equal(st.skipped_records, 1);
	recs_free(&got);
	recs_free(&want);
	mf_free(&f);
}

/* ---- Writer and reader failures ------------------------------------------- */

static void test_wal__failed_write_fails_the_writer(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	fill_payload(&b, 500, 1);
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	f.fail_write_after = 200; /* half of the next record reaches the file */
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), -ENOSPC);
	assert_int_equal(kv_wal_error(w), -ENOSPC);
	unsigned writes = f.writes;
	assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), -ENOSPC);
	assert_int_equal(kv_wal_sync(w), -ENOSPC);
	assert_int_equal(f.writes, writes);
	assert_int_equal(f.syncs, 0);
	kv_wal_writer_free(w);

	struct recs got;
	struct kv_wal_stats st;
	read_log(&f, LOGNUM, &got, &st);
	assert_int_equal(got.n, 1);
	assert_true(st.torn_tail);
	assert_int_equal(st.bad_regions, 0);
	recs_free(&got);
	kv_buf_release(&b);
	mf_free(&f);
}

static void test_wal__failed_sync_fails_the_writer(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	assert_int_equal(kv_wal_add(w, kv_slice_str("a")), 0);
	f.fail_sync = -EIO;
	assert_int_equal(kv_wal_sync(w), -EIO);
	assert_int_equal(kv_wal_add(w, kv_slice_str("b")), -EIO);
	assert_int_equal(kv_wal_sync(w), -EIO);
	assert_int_equal(f.writes, 1);
	kv_wal_writer_free(w);
	mf_free(&f);
}

static void test_wal__oversize_record_is_refused(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, LOGNUM, 0, &w), 0);
	static const uint8_t byte;
	/* Never read: the size is refused first. */
	struct kv_slice parts[] = { kv_slice_make(&byte, KV_WAL_MAX_RECORD),
				    kv_slice_make(&byte, 1) };
	assert_int_equal(kv_wal_addv(w, parts, 2), KV_ETOOBIG);
	assert_int_equal(kv_wal_add(w, kv_slice_make(&byte, SIZE_MAX)), KV_ETOOBIG);
	assert_int_equal(kv_wal_error(w), 0);
	assert_int_equal(kv_wal_add(w, kv_slice_str("fine")), 0);
	assert_int_equal(f.writes, 1);
	kv_wal_writer_free(w);
	mf_free(&f);
}

static void test_wal__read_error_is_returned_and_sticky(void **state)
{
	(void)state;
	struct memfile f;
	mf_init(&f);
	size_t sizes[] = { 10 };
	write_log(&f, LOGNUM, sizes, 1, NULL);
	f.fail_read = -EIO;
	struct kv_wal_reader *r;
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_wal_reader_new(&f.base, LOGNUM, &r), 0);
	assert_int_equal(kv_wal_read(r, &b), -EIO);
	f.fail_read = 0;
	assert_int_equal(kv_wal_read(r, &b), -EIO);
	kv_wal_reader_free(r);
	kv_buf_release(&b);
	mf_free(&f);
}

/* ---- Through the real VFSs ------------------------------------------------- */

static void test_wal__posix_file_round_trips(void **state)
{
	(void)state;
	char dir[] = "/tmp/kvfs-test-wal-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/000001.log", dir);
	struct kv_vfs *vfs = kv_vfs_posix();
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(vfs, path, KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(f, 1, 0, &w), 0);
	struct kv_buf b = KV_BUF_INIT;
	for (int i = 0; i < 300; i++) {
		fill_payload(&b, (size_t)i * 311, (uint64_t)i);
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
	}
	assert_int_equal(kv_wal_sync(w), 0);
	uint64_t size;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, kv_wal_bytes(w));
	kv_wal_writer_free(w);
	assert_int_equal(kv_file_close(f), 0);

	assert_int_equal(kv_vfs_open(vfs, path, KV_VFS_READ, &f), 0);
	struct kv_wal_reader *r;
	assert_int_equal(kv_wal_reader_new(f, 1, &r), 0);
	struct kv_buf rec = KV_BUF_INIT;
	for (int i = 0; i < 300; i++) {
		fill_payload(&b, (size_t)i * 311, (uint64_t)i);
		assert_int_equal(kv_wal_read(r, &rec), 1);
		assert_true(kv_slice_eq(kv_buf_slice(&rec), kv_buf_slice(&b)));
	}
	assert_int_equal(kv_wal_read(r, &rec), 0);
	kv_wal_reader_free(r);
	kv_file_close(f);
	kv_buf_release(&b);
	kv_buf_release(&rec);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* Crash in the middle of an append: synced records survive, the tail is torn. */
static void test_wal__torn_append_on_a_crash_loses_only_unsynced(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(__func__));
	for (int round = 0; round < 30; round++) {
		struct kv_vfs *vfs = kv_vfs_mem_new();
		assert_non_null(vfs);
		struct kv_file *f;
		assert_int_equal(kv_vfs_open(vfs, "1.log", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
		assert_int_equal(kv_vfs_sync_dir(vfs, "/"), 0);
		struct kv_wal_writer *w;
		assert_int_equal(kv_wal_writer_new(f, 1, 0, &w), 0);
		struct kv_buf b = KV_BUF_INIT;
		size_t synced = 0, n = 1 + kv_rng_below(&rng, 30);
		for (size_t i = 0; i < n; i++) {
			fill_payload(&b, kv_rng_below(&rng, 3 * KV_WAL_BLOCK), i);
			assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), 0);
			if (kv_rng_below(&rng, 2)) {
				assert_int_equal(kv_wal_sync(w), 0);
				synced = i + 1;
			}
		}
		fill_payload(&b, 1 + kv_rng_below(&rng, 3 * KV_WAL_BLOCK), n);
		kv_vfs_mem_tear_next_write(vfs, kv_rng_below(&rng, b.n));
		assert_int_equal(kv_wal_add(w, kv_buf_slice(&b)), -EIO);
		assert_int_equal(kv_wal_sync(w), -EIO);
		kv_wal_writer_free(w);
		kv_vfs_mem_crash(vfs);
		kv_file_close(f);

		assert_int_equal(kv_vfs_open(vfs, "1.log", KV_VFS_READ, &f), 0);
		struct kv_wal_reader *r;
		assert_int_equal(kv_wal_reader_new(f, 1, &r), 0);
		struct kv_buf rec = KV_BUF_INIT;
		size_t got = 0;
		int rc;
		while ((rc = kv_wal_read(r, &rec)) == 1) {
			fill_payload(&b, rec.n, got);
			assert_true(kv_slice_eq(kv_buf_slice(&rec), kv_buf_slice(&b)));
			got++;
		}
		assert_int_equal(rc, 0);
		assert_true(got >= synced && got <= n);
		struct kv_wal_stats st;
		kv_wal_reader_stats(r, &st);
		assert_int_equal(st.bad_regions, 0);
		kv_wal_reader_free(r);
		kv_file_close(f);
		kv_buf_release(&b);
		kv_buf_release(&rec);
		kv_vfs_destroy(vfs);
	}
}

/* ---- Seed corpus for tests/fuzz/fuzz_wal.c -------------------------------- */

static void write_seed(const char *dir, const char *name, const struct memfile *f)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(f->p, 1, f->n, fp), f->n);
	assert_int_equal(fclose(fp), 0);
}

static void test_wal__seed_corpus(void **state)
{
	(void)state;
	const char *dir = getenv("KV_CORPUS_OUT");
	if (!dir)
		skip();
	/* The fuzzer reads log number 1 (see fuzz_wal.c). */
	struct memfile f;
	mf_init(&f);
	size_t small[] = { 0, 5, 17 };
	write_log(&f, 1, small, 3, NULL);
	write_seed(dir, "small.log", &f);
	mf_free(&f);

	mf_init(&f);
	/* FULL, FIRST, LAST, and a record ending 5 bytes before the second
	 * block's end; under run-fuzz.sh's -max_len of 64 KiB. */
	size_t span[] = { 40, KV_WAL_BLOCK - 40 - 3 * KV_WAL_HEADER - 4, 100, 600, 3,
			  KV_WAL_BLOCK - 748 };
	write_log(&f, 1, span, 6, NULL);
	assert_int_equal(f.n, 2 * KV_WAL_BLOCK - 5);
	write_seed(dir, "blocks.log", &f);
	mf_free(&f);

	mf_init(&f);
	write_log(&f, 1, span, 5, NULL);
	f.p[60] ^= 0x40; /* block 0 lost; the last two records of block 1 read */
	write_seed(dir, "bad-region.log", &f);
	mf_free(&f);

	mf_init(&f);
	write_log(&f, 1, small, 3, NULL);
	f.n -= 7;
	write_seed(dir, "torn-tail.log", &f);
	mf_free(&f);

	mf_init(&f);
	size_t stale[] = { 8, 8 };
	write_log(&f, 2, stale, 2, NULL);
	write_log(&f, 1, small, 3, NULL);
	write_seed(dir, "stale-then-good.log", &f);
	mf_free(&f);

	/* The doc's worked example (doc/storage-format.md#wal). */
	mf_init(&f);
	struct kv_wal_writer *w;
	assert_int_equal(kv_wal_writer_new(&f.base, 1, 0, &w), 0);
	assert_int_equal(kv_wal_add(w, kv_slice_str("hello")), 0);
	assert_int_equal(kv_wal_add(w, kv_slice_make(NULL, 0)), 0);
	kv_wal_writer_free(w);
	write_seed(dir, "example.log", &f);
	mf_free(&f);
}

static void quiet_sink(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

int main(void)
{
	/* The tests provoke every error the module logs: keep them quiet. */
	if (!getenv("KV_LOG_LEVEL"))
		kv_log_set_sink(quiet_sink, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wal__empty_log_reads_nothing),
		cmocka_unit_test(test_wal__empty_record_round_trips),
		cmocka_unit_test(test_wal__layout_matches_the_spec),
		cmocka_unit_test(test_wal__random_records_round_trip),
		cmocka_unit_test(test_wal__block_boundaries_round_trip),
		cmocka_unit_test(test_wal__empty_record_after_padding_is_written),
		cmocka_unit_test(test_wal__fragments_carry_the_right_types),
		cmocka_unit_test(test_wal__addv_equals_add),
		cmocka_unit_test(test_wal__writer_continues_at_an_offset),
		cmocka_unit_test(test_wal__writer_writes_zeros_ahead),
		cmocka_unit_test(test_wal__writing_ahead_starts_at_the_end_of_the_file),
		cmocka_unit_test(test_wal__failed_write_ahead_falls_back_to_appending),
		cmocka_unit_test(test_wal__sync_is_skipped_when_nothing_is_new),
		cmocka_unit_test(test_wal__bad_checksum_is_a_bad_region),
		cmocka_unit_test(test_wal__bad_length_is_a_bad_region),
		cmocka_unit_test(test_wal__bad_type_is_a_bad_region),
		cmocka_unit_test(test_wal__bad_log_number_is_a_bad_region),
		cmocka_unit_test(test_wal__bad_payload_is_a_bad_region),
		cmocka_unit_test(test_wal__huge_length_at_the_end_is_a_torn_tail),
		cmocka_unit_test(test_wal__truncation_at_every_offset_gives_a_prefix),
		cmocka_unit_test(test_wal__torn_tail_is_ignored),
		cmocka_unit_test(test_wal__zeros_at_the_end_end_the_log),
		cmocka_unit_test(test_wal__zeros_then_good_records_is_a_bad_region),
		cmocka_unit_test(test_wal__finished_log_ends_before_old_contents),
		cmocka_unit_test(test_wal__failed_writer_finishes_nothing),
		cmocka_unit_test(test_wal__bad_record_then_good_records_is_reported),
		cmocka_unit_test(test_wal__damage_inside_a_long_record_drops_its_orphans),
		cmocka_unit_test(test_wal__every_bit_flip_is_caught),
		cmocka_unit_test(test_wal__stale_records_end_the_log),
		cmocka_unit_test(test_wal__stale_records_then_good_records_is_reported),
		cmocka_unit_test(test_wal__log_number_keeps_its_low_32_bits),
		cmocka_unit_test(test_wal__newer_required_type_is_a_version_error),
		cmocka_unit_test(test_wal__newer_skippable_type_is_passed_over),
		cmocka_unit_test(test_wal__failed_write_fails_the_writer),
		cmocka_unit_test(test_wal__failed_sync_fails_the_writer),
		cmocka_unit_test(test_wal__oversize_record_is_refused),
		cmocka_unit_test(test_wal__read_error_is_returned_and_sticky),
		cmocka_unit_test(test_wal__posix_file_round_trips),
		cmocka_unit_test(test_wal__torn_append_on_a_crash_loses_only_unsynced),
		cmocka_unit_test(test_wal__seed_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
