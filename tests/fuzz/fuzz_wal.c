/*
 * fuzz_wal.c - libFuzzer target for the commit-log reader.
 *
 * Format: doc/storage-format.md#wal
 *
 * The input is a log file of log number 1. Every record the reader returns
 * is then written to a fresh log and read back: that copy must read clean
 * and identical. The input is read twice: as it is, and with every header
 * that fits in its block given a correct checksum, so the fuzzer gets past
 * the checksums to the fragment and log-number logic. Crashes, overreads,
 * leaks and broken invariants are bugs.
 * Seed corpus: tests/fuzz/corpus/wal/ (regenerate with KV_CORPUS_OUT=DIR
 * build/tests/unit/test_wal).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/vfs.h"
#include "lsm/wal.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Damage is logged; thousands of inputs a second would drown the output. */
static void quiet_sink(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

/* A growable in-memory file: just enough of kv_file for the WAL. */
struct buf_file {
	struct kv_file base;
	struct kv_buf b;
};

static ssize_t bf_pread(struct kv_file *f, void *out, size_t n, uint64_t off)
{
	struct kv_buf *b = &((struct buf_file *)f)->b;
	if (off >= b->n)
		return 0;
	if (n > b->n - off)
		n = b->n - (size_t)off;
	memcpy(out, b->p + off, n);
	return (ssize_t)n;
}

static int bf_pwrite(struct kv_file *f, const void *p, size_t n, uint64_t off)
{
	struct kv_buf *b = &((struct buf_file *)f)->b;
	if (off != b->n)
		abort(); /* the writer only ever extends a fresh log */
	return kv_buf_append(b, p, n);
}

static int bf_append(struct kv_file *f, const void *p, size_t n)
{
	return kv_buf_append(&((struct buf_file *)f)->b, p, n);
}

static int bf_sync(struct kv_file *f)
{
	(void)f;
	return 0;
}

static int bf_size(struct kv_file *f, uint64_t *out)
{
	*out = ((struct buf_file *)f)->b.n;
	return 0;
}

static int bf_truncate(struct kv_file *f, uint64_t size)
{
	(void)f;
	(void)size;
	return -EINVAL;
}

static int bf_close(struct kv_file *f)
{
	(void)f;
	return 0;
}

static const struct kv_file_ops bf_ops = {
	bf_pread, bf_pwrite, bf_append, bf_sync, bf_size, bf_truncate, bf_close, NULL, NULL,
};

static void check_log(const uint8_t *data, size_t size)
{
	struct buf_file in = { { &bf_ops }, KV_BUF_INIT };
	struct buf_file copy = { { &bf_ops }, KV_BUF_INIT };
	struct kv_wal_reader *r = NULL, *r2 = NULL;
	struct kv_wal_writer *w = NULL;
	struct kv_buf rec = KV_BUF_INIT, rec2 = KV_BUF_INIT;
	struct kv_wal_stats st, st2;

	if (kv_buf_append(&in.b, data, size) || kv_wal_reader_new(&in.base, 1, &r) ||
	    kv_wal_reader_new(&copy.base, 1, &r2) || kv_wal_writer_new(&copy.base, 1, 0, &w))
		abort();
	int rc;
	uint64_t n = 0;
	while ((rc = kv_wal_read(r, &rec)) == 1) {
		if (kv_wal_add(w, kv_buf_slice(&rec)))
			abort();
		n++;
	}
	if (rc != 0 && rc != KV_EVERSION)
		abort();
	kv_wal_reader_stats(r, &st);
	if (st.records != n || st.end_offset > size ||
	    st.bytes_skipped + st.tail_bytes + st.stale_bytes > size ||
	    (st.bad_regions == 0) != (st.bytes_skipped == 0) ||
	    st.torn_tail != (st.tail_bytes > 0))
		abort();

	/* Read the copy back: the same records, nothing skipped. */
	for (uint64_t i = 0; i < n; i++) {
		if (kv_wal_read(r2, &rec2) != 1)
			abort();
	}
	if (kv_wal_read(r2, &rec2) != 0)
		abort();
	kv_wal_reader_stats(r2, &st2);
	if (st2.records != n || st2.bad_regions || st2.torn_tail || st2.stale_bytes ||
	    st2.end_offset != copy.b.n)
		abort();

	kv_wal_reader_free(r);
	kv_wal_reader_free(r2);
	kv_wal_writer_free(w);
	kv_buf_release(&rec);
	kv_buf_release(&rec2);
	kv_buf_release(&in.b);
	kv_buf_release(&copy.b);
}

/* Gives every header that fits in its block a correct checksum. */
static void reseal(uint8_t *p, size_t n)
{
	for (size_t block = 0; block < n; block += KV_WAL_BLOCK) {
		size_t end = n - block < KV_WAL_BLOCK ? n : block + KV_WAL_BLOCK;
		size_t pos = block;
		while (end - pos >= KV_WAL_HEADER) {
			size_t len = kv_get_le16(p + pos + 4);
			if (len > end - pos - KV_WAL_HEADER)
				break;
			kv_put_le32(p + pos, kv_checksum32(p + pos + 6, 5 + len));
			pos += KV_WAL_HEADER + len;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		kv_log_set_sink(quiet_sink, NULL);
		quiet = true;
	}
	check_log(data, size);
	uint8_t *sealed = malloc(size ? size : 1);
	if (!sealed)
		abort();
	if (size)
		memcpy(sealed, data, size);
	reseal(sealed, size);
	check_log(sealed, size);
	free(sealed);
	return 0;
}
