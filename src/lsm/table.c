/*
 * table.c - SSTable builder and reader (see table.h).
 * Format: doc/storage-format.md#sstables
 *
 * Index entries map a separator key to a data block's handle (varint offset
 * ‖ varint payload size). A separator S of block i satisfies
 * last(i) <= S < first(i+1), so the first block whose separator is >= a
 * target is the only block that can hold the first key >= the target; when
 * that block ends before the target, no key >= target with the same user key
 * exists in the table (S's user key, when shortened, differs from both).
 */
#include "lsm/table.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "lsm/block.h"
#include "lsm/bloom.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"

/* Meta block property names, in the (bytewise) order they are stored. */
#define P_DATA_BLOCKS "kv.data_blocks"
#define P_DELETES "kv.deletes"
#define P_ENTRIES "kv.entries"
#define P_FORMAT "kv.format"
#define P_LARGEST "kv.largest"
#define P_RAW_KEY_BYTES "kv.raw_key_bytes"
#define P_RAW_VALUE_BYTES "kv.raw_value_bytes"
#define P_SMALLEST "kv.smallest"

#define MIN_BLOCK_BYTES 256
#define MAX_BLOCK_BYTES ((size_t)16 << 20)

void kv_table_options_init(struct kv_table_options *o)
{
	o->block_bytes = 16 * 1024;
	o->bloom_bits_per_key = 10;
	o->compress = true;
	o->restart_interval = KV_BLOCK_RESTART_INTERVAL;
}

static inline void stat_add(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* ---- Separators ---------------------------------------------------------------- */

/*
 * Sets @out to a short internal key S with @a <= S < @b (or @a <= S when @b
 * is NULL): a user key between theirs, with the largest trailer, when one
 * shorter than @a's exists; @a itself otherwise.
 */
static int separator(struct kv_buf *out, struct kv_slice a, const struct kv_slice *b)
{
	struct kv_slice ua = kv_ikey_user(a);
	size_t cut = ua.n; /* keep ua[0..cut) and increment ua[cut-1]; ua.n: no change */
	if (b) {
		struct kv_slice ub = kv_ikey_user(*b);
		size_t min = ua.n < ub.n ? ua.n : ub.n, d = 0;
		while (d < min && ua.p[d] == ub.p[d])
			d++;
		if (d < min && ua.p[d] < 0xff && ua.p[d] + 1 < ub.p[d] && d + 1 < ua.n)
			cut = d + 1;
	} else {
		for (size_t i = 0; i < ua.n; i++) {
			if (ua.p[i] != 0xff) {
				cut = i + 1;
				break;
			}
		}
		if (cut == ua.n)
			cut = ua.n + 1; /* no shorter successor: keep @a */
	}
	kv_buf_reset(out);
	if (cut >= ua.n)
		return kv_buf_append(out, a.p, a.n);
	int r = kv_buf_append(out, ua.p, cut);
	if (r)
		return r;
	out->p[cut - 1]++;
	return kv_buf_append_le64(out, kv_ikey_pack(KV_SEQ_MAX, KV_TYPE_SEEK));
}

/* ---- Builder ------------------------------------------------------------------ */

struct kv_table_builder {
	struct kv_file *f;            /* borrowed */
	struct kv_table_options o;
	uint64_t offset;              /* bytes appended to f */
	struct kv_block_builder data;
	struct kv_block_builder index;
	struct kv_bloom_builder bloom;
	struct kv_buf out;            /* sealed bytes on their way to f */
	struct kv_buf last_key;       /* the last internal key added */
	struct kv_buf smallest;
	struct kv_buf sep;            /* scratch */
	bool pending_index;           /* a flushed block awaits its index entry */
	uint64_t pending_offset, pending_size;
	uint64_t entries, deletes, raw_key_bytes, raw_value_bytes, data_blocks;
	int error;                    /* sticky */
	bool finished;
};

int kv_table_builder_new(struct kv_file *f, const struct kv_table_options *o,
			 struct kv_table_builder **out)
{
	*out = NULL;
	struct kv_table_builder *b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->f = f;
	if (o)
		b->o = *o;
	else
		kv_table_options_init(&b->o);
	if (b->o.block_bytes < MIN_BLOCK_BYTES)
		b->o.block_bytes = MIN_BLOCK_BYTES;
	if (b->o.block_bytes > MAX_BLOCK_BYTES)
		b->o.block_bytes = MAX_BLOCK_BYTES;
	if (b->o.restart_interval == 0)
		b->o.restart_interval = KV_BLOCK_RESTART_INTERVAL;
	kv_block_builder_init(&b->data, b->o.restart_interval);
	kv_block_builder_init(&b->index, 1);
	kv_bloom_builder_init(&b->bloom, b->o.bloom_bits_per_key);
	*out = b;
	return 0;
}

void kv_table_builder_free(struct kv_table_builder *b)
{
	if (!b)
		return;
	kv_block_builder_release(&b->data);
	kv_block_builder_release(&b->index);
	kv_bloom_builder_release(&b->bloom);
	kv_buf_release(&b->out);
	kv_buf_release(&b->last_key);
	kv_buf_release(&b->smallest);
	kv_buf_release(&b->sep);
	free(b);
}

/* Adds the index entry of the last flushed block, separating it from @next. */
static int add_pending_index(struct kv_table_builder *b, const struct kv_slice *next)
{
	uint8_t handle[2 * KV_VARINT64_MAX];
	size_t n = kv_varint_encode(handle, b->pending_offset);
	n += kv_varint_encode(handle + n, b->pending_size);
	int r = separator(&b->sep, kv_buf_slice(&b->last_key), next);
	if (!r)
		r = kv_block_builder_add(&b->index, kv_buf_slice(&b->sep), kv_slice_make(handle, n));
	if (!r)
		b->pending_index = false;
	return r;
}

/* Seals @contents onto b->out; *size gets the payload size. */
static int seal(struct kv_table_builder *b, struct kv_slice contents, bool compress,
		uint64_t *offset, uint64_t *size)
{
	*offset = b->offset + b->out.n;
	return kv_block_seal(contents, compress, &b->out, size);
}

static int flush_out(struct kv_table_builder *b)
{
	if (b->out.n == 0)
		return 0;
	int r = kv_file_append(b->f, b->out.p, b->out.n);
	if (r)
		return r;
	b->offset += b->out.n;
	kv_buf_reset(&b->out);
	return 0;
}

/*
 * Sealed data blocks gather in b->out and go to the file WRITE_BUF bytes at
 * a time (LevelDB's table file buffers 64 KiB too): a 4 KiB block per write
 * made flushes and compactions a write system call per block.
 */
#define WRITE_BUF (64u << 10)

static int flush_data_block(struct kv_table_builder *b)
{
	struct kv_slice contents;
	int r = kv_block_builder_finish(&b->data, &contents);
	if (!r)
		r = seal(b, contents, b->o.compress, &b->pending_offset, &b->pending_size);
	if (!r && b->out.n >= WRITE_BUF)
		r = flush_out(b);
	if (r)
		return r;
	kv_block_builder_reset(&b->data);
	b->pending_index = true;
	b->data_blocks++;
	return 0;
}

int kv_table_builder_add(struct kv_table_builder *b, struct kv_slice ikey, struct kv_slice value)
{
	assert(!b->finished);
	assert(ikey.n >= KV_IKEY_TRAILER);
	assert(b->entries == 0 || kv_ikey_cmp(kv_buf_slice(&b->last_key), ikey) < 0);
	if (b->error)
		return b->error;
	int r = 0;
	if (b->pending_index) {
		r = add_pending_index(b, &ikey);
		if (r)
			goto out;
	}
	if (b->o.bloom_bits_per_key) {
		struct kv_slice user = kv_ikey_user(ikey);
		/* One hash per user key, however many versions it has. */
		if (b->entries == 0 || !kv_slice_eq(kv_ikey_user(kv_buf_slice(&b->last_key)), user)) {
			r = kv_bloom_builder_add_hash(&b->bloom, kv_bloom_hash(user));
			if (r)
				goto out;
		}
	}
	r = kv_block_builder_add(&b->data, ikey, value);
	if (r)
		goto out;
	if (b->entries == 0) {
		r = kv_buf_append(&b->smallest, ikey.p, ikey.n);
		if (r)
			goto out;
	}
	kv_buf_reset(&b->last_key);
	r = kv_buf_append(&b->last_key, ikey.p, ikey.n);
	if (r)
		goto out;
	b->entries++;
	if ((kv_ikey_trailer(ikey) & 0xff) == KV_TYPE_DEL)
		b->deletes++;
	b->raw_key_bytes += ikey.n;
	b->raw_value_bytes += value.n;
	if (kv_block_builder_size(&b->data) >= b->o.block_bytes)
		r = flush_data_block(b);
out:
	if (r)
		b->error = r;
	return r;
}

static int add_varint_prop(struct kv_block_builder *meta, const char *name, uint64_t v)
{
	uint8_t t[KV_VARINT64_MAX];
	size_t n = kv_varint_encode(t, v);
	return kv_block_builder_add(meta, kv_slice_str(name), kv_slice_make(t, n));
}

static int build_meta(struct kv_table_builder *b, struct kv_block_builder *meta)
{
	uint8_t format[4];
	kv_put_le16(format, KV_TABLE_MAJOR);
	kv_put_le16(format + 2, KV_TABLE_MINOR);
	int r = add_varint_prop(meta, P_DATA_BLOCKS, b->data_blocks);
	if (!r)
		r = add_varint_prop(meta, P_DELETES, b->deletes);
	if (!r)
		r = add_varint_prop(meta, P_ENTRIES, b->entries);
	if (!r)
		r = kv_block_builder_add(meta, kv_slice_str(P_FORMAT), kv_slice_make(format, 4));
	if (!r)
		r = kv_block_builder_add(meta, kv_slice_str(P_LARGEST), kv_table_builder_largest(b));
	if (!r)
		r = add_varint_prop(meta, P_RAW_KEY_BYTES, b->raw_key_bytes);
	if (!r)
		r = add_varint_prop(meta, P_RAW_VALUE_BYTES, b->raw_value_bytes);
	if (!r)
		r = kv_block_builder_add(meta, kv_slice_str(P_SMALLEST), kv_buf_slice(&b->smallest));
	return r;
}

static void put_handle(uint8_t *p, uint64_t offset, uint64_t size)
{
	kv_put_le64(p, offset);
	kv_put_le64(p + 8, size);
}

int kv_table_builder_finish(struct kv_table_builder *b, uint64_t *file_size)
{
	assert(!b->finished);
	b->finished = true;
	if (b->error)
		return b->error;
	struct kv_block_builder meta;
	kv_block_builder_init(&meta, 1);
	struct kv_buf filter = KV_BUF_INIT;
	uint64_t filter_off = 0, filter_size = 0, meta_off, meta_size, index_off, index_size;
	struct kv_slice contents;

	int r = 0;
	if (!kv_block_builder_empty(&b->data))
		r = flush_data_block(b);
	if (!r && b->pending_index)
		r = add_pending_index(b, NULL);
	if (r)
		goto out;
	/* Filter, meta, index and footer go out in one append. */
	if (b->o.bloom_bits_per_key) {
		r = kv_bloom_builder_finish(&b->bloom, &filter);
		if (!r)
			r = seal(b, kv_buf_slice(&filter), false, &filter_off, &filter_size);
		if (r)
			goto out;
	}
	r = build_meta(b, &meta);
	if (!r)
		r = kv_block_builder_finish(&meta, &contents);
	if (!r)
		r = seal(b, contents, false, &meta_off, &meta_size);
	if (!r)
		r = kv_block_builder_finish(&b->index, &contents);
	if (!r)
		r = seal(b, contents, b->o.compress, &index_off, &index_size);
	if (!r)
		r = kv_buf_reserve(&b->out, KV_TABLE_FOOTER);
	if (r)
		goto out;
	uint8_t *ft = b->out.p + b->out.n;
	put_handle(ft, index_off, index_size);
	put_handle(ft + 16, filter_off, filter_size);
	put_handle(ft + 32, meta_off, meta_size);
	kv_put_le16(ft + 48, KV_TABLE_MAJOR);
	kv_put_le16(ft + 50, KV_TABLE_MINOR);
	kv_put_le32(ft + 52, kv_checksum32(ft, 52));
	kv_put_le64(ft + 56, KV_TABLE_MAGIC);
	b->out.n += KV_TABLE_FOOTER;
	r = flush_out(b);
	if (r)
		goto out;
	*file_size = b->offset;
out:
	if (r)
		b->error = r;
	kv_block_builder_release(&meta);
	kv_buf_release(&filter);
	return r;
}

uint64_t kv_table_builder_entries(const struct kv_table_builder *b)
{
	return b->entries;
}

uint64_t kv_table_builder_file_size(const struct kv_table_builder *b)
{
	return b->offset + b->out.n +
	       (kv_block_builder_empty(&b->data) ? 0 : kv_block_builder_size(&b->data));
}

struct kv_slice kv_table_builder_smallest(const struct kv_table_builder *b)
{
	return kv_buf_slice(&b->smallest);
}

struct kv_slice kv_table_builder_largest(const struct kv_table_builder *b)
{
	return b->entries ? kv_buf_slice(&b->last_key) : kv_slice_make(NULL, 0);
}

/* ---- Reader ------------------------------------------------------------------- */

/* One data block as the index describes it. */
struct index_entry {
	const uint8_t *key; /* separator, in kv_table.index_keys */
	uint32_t key_len;
	uint32_t size;      /* payload bytes */
	uint64_t offset;
};

struct kv_table {
	atomic_uint refs;
	struct kv_file *file; /* owned; only pread is used after open */
	uint64_t file_size, file_number, data_end;
	struct kv_cache *cache;       /* borrowed, may be NULL */
	struct kv_table_stats *stats; /* borrowed, may be NULL */
	struct index_entry *index;
	size_t nblocks;
	uint8_t *index_keys;
	struct kv_block *filter_block; /* NULL: no filter */
	struct kv_bloom bloom;
	struct kv_buf smallest, largest;
	uint64_t entries, deletes, raw_key_bytes, raw_value_bytes;
};

struct handle {
	uint64_t offset, size;
};

/* True if a block with this handle lies inside [0, limit). */
static bool handle_ok(struct handle h, uint64_t limit)
{
	return h.size <= KV_BLOCK_MAX_RAW && h.offset <= limit &&
	       h.size + KV_BLOCK_TRAILER <= limit - h.offset;
}

/* Parses the index block into t->index (keys strictly increasing). */
static int load_index(struct kv_table *t, const struct kv_block *blk)
{
	struct kv_block_cursor c;
	size_t n = 0, key_bytes = 0;
	int r = KV_ECORRUPT;
	kv_block_cursor_init(&c, blk, kv_ikey_cmp);
	for (kv_block_cursor_seek_first(&c); c.valid; kv_block_cursor_next(&c)) {
		n++;
		key_bytes += c.key_len;
	}
	if (c.status) {
		r = c.status;
		goto out;
	}
	r = -ENOMEM;
	t->index = calloc(n ? n : 1, sizeof *t->index);
	t->index_keys = malloc(key_bytes ? key_bytes : 1);
	if (!t->index || !t->index_keys)
		goto out;
	r = KV_ECORRUPT;
	size_t i = 0, kpos = 0;
	uint64_t prev_end = 0;
	for (kv_block_cursor_seek_first(&c); c.valid; kv_block_cursor_next(&c), i++) {
		struct kv_slice k = kv_block_cursor_key(&c), v = kv_block_cursor_value(&c);
		struct handle h;
		int a = kv_varint_decode(v.p, v.n, &h.offset);
		if (a < 0)
			goto out;
		int s = kv_varint_decode(v.p + a, v.n - (size_t)a, &h.size);
		/* Blocks lie in order, without overlap, before the other blocks. */
		if (s < 0 || (size_t)(a + s) != v.n || k.n < KV_IKEY_TRAILER || i >= n ||
		    !handle_ok(h, t->data_end) || h.offset < prev_end)
			goto out;
		if (i > 0 && kv_ikey_cmp(kv_slice_make(t->index[i - 1].key,
						       t->index[i - 1].key_len), k) >= 0)
			goto out;
		memcpy(t->index_keys + kpos, k.p, k.n);
		t->index[i].key = t->index_keys + kpos;
		t->index[i].key_len = (uint32_t)k.n;
		t->index[i].offset = h.offset;
		t->index[i].size = (uint32_t)h.size;
		kpos += k.n;
		prev_end = h.offset + h.size + KV_BLOCK_TRAILER;
	}
	if (c.status || i != n)
		goto out;
	t->nblocks = n;
	r = 0;
out:
	kv_block_cursor_release(&c);
	return r;
}

static int prop_varint(struct kv_slice v, uint64_t *out)
{
	int r = kv_varint_decode(v.p, v.n, out);
	return r < 0 || (size_t)r != v.n ? KV_ECORRUPT : 0;
}

/* Reads the properties; unknown names are skipped (a newer minor's). */
static int load_meta(struct kv_table *t, const struct kv_block *blk, uint64_t *data_blocks)
{
	enum { DATA_BLOCKS = 1, DELETES = 2, ENTRIES = 4, FORMAT = 8, LARGEST = 16,
	       RAW_KEYS = 32, RAW_VALUES = 64, SMALLEST = 128, ALL = 255 };
	unsigned seen = 0;
	struct kv_block_cursor c;
	int r = 0;
	kv_block_cursor_init(&c, blk, kv_slice_cmp);
	for (kv_block_cursor_seek_first(&c); c.valid && !r; kv_block_cursor_next(&c)) {
		struct kv_slice k = kv_block_cursor_key(&c), v = kv_block_cursor_value(&c);
		if (kv_slice_eq(k, kv_slice_str(P_DATA_BLOCKS))) {
			seen |= DATA_BLOCKS;
			r = prop_varint(v, data_blocks);
		} else if (kv_slice_eq(k, kv_slice_str(P_DELETES))) {
			seen |= DELETES;
			r = prop_varint(v, &t->deletes);
		} else if (kv_slice_eq(k, kv_slice_str(P_ENTRIES))) {
			seen |= ENTRIES;
			r = prop_varint(v, &t->entries);
		} else if (kv_slice_eq(k, kv_slice_str(P_FORMAT))) {
			seen |= FORMAT;
			if (v.n != 4 || kv_get_le16(v.p) != KV_TABLE_MAJOR)
				r = KV_ECORRUPT; /* disagrees with the footer */
		} else if (kv_slice_eq(k, kv_slice_str(P_LARGEST))) {
			seen |= LARGEST;
			kv_buf_reset(&t->largest);
			r = kv_buf_append(&t->largest, v.p, v.n);
		} else if (kv_slice_eq(k, kv_slice_str(P_RAW_KEY_BYTES))) {
			seen |= RAW_KEYS;
			r = prop_varint(v, &t->raw_key_bytes);
		} else if (kv_slice_eq(k, kv_slice_str(P_RAW_VALUE_BYTES))) {
			seen |= RAW_VALUES;
			r = prop_varint(v, &t->raw_value_bytes);
		} else if (kv_slice_eq(k, kv_slice_str(P_SMALLEST))) {
			seen |= SMALLEST;
			kv_buf_reset(&t->smallest);
			r = kv_buf_append(&t->smallest, v.p, v.n);
		}
	}
	if (!r)
		r = c.status ? c.status : seen != ALL ? KV_ECORRUPT : 0;
	kv_block_cursor_release(&c);
	if (r)
		return r;
	/* An empty table has empty bounds; otherwise smallest <= largest. */
	struct kv_slice lo = kv_buf_slice(&t->smallest), hi = kv_buf_slice(&t->largest);
	struct kv_ikey parsed;
	if (t->entries == 0)
		return lo.n == 0 && hi.n == 0 && t->deletes == 0 ? 0 : KV_ECORRUPT;
	if (kv_ikey_parse(lo, &parsed) || kv_ikey_parse(hi, &parsed) || kv_ikey_cmp(lo, hi) > 0 ||
	    t->deletes > t->entries)
		return KV_ECORRUPT;
	return 0;
}

static void table_free(struct kv_table *t)
{
	kv_file_close(t->file);
	free(t->index);
	free(t->index_keys);
	kv_block_free(t->filter_block);
	kv_buf_release(&t->smallest);
	kv_buf_release(&t->largest);
	free(t);
}

int kv_table_open(struct kv_file *f, uint64_t file_size, uint64_t file_number,
		  struct kv_cache *cache, struct kv_table_stats *stats, struct kv_table **out)
{
	*out = NULL;
	struct kv_block *index = NULL, *meta = NULL;
	uint8_t ft[KV_TABLE_FOOTER];
	int r = KV_ECORRUPT;
	struct kv_table *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	t->file_size = file_size;
	t->file_number = file_number;
	t->cache = cache;
	t->stats = stats;

	/* Footer: magic, then checksum, then version (format doc, "Versions"). */
	if (file_size < KV_TABLE_FOOTER)
		goto out;
	r = kv_file_read_exact(f, ft, sizeof ft, file_size - KV_TABLE_FOOTER);
	if (r)
		goto out;
	r = KV_ECORRUPT;
	if (kv_get_le64(ft + 56) != KV_TABLE_MAGIC || kv_get_le32(ft + 52) != kv_checksum32(ft, 52))
		goto out;
	if (kv_get_le16(ft + 48) != KV_TABLE_MAJOR) {
		r = KV_EVERSION;
		goto out;
	}
	struct handle hi = { kv_get_le64(ft), kv_get_le64(ft + 8) };
	struct handle hf = { kv_get_le64(ft + 16), kv_get_le64(ft + 24) };
	struct handle hm = { kv_get_le64(ft + 32), kv_get_le64(ft + 40) };
	uint64_t limit = file_size - KV_TABLE_FOOTER;
	bool has_filter = hf.offset != 0 || hf.size != 0;
	if (!handle_ok(hi, limit) || !handle_ok(hm, limit) || (has_filter && !handle_ok(hf, limit)))
		goto out;
	/* Data blocks end where the first of the other blocks starts. */
	t->data_end = hi.offset < hm.offset ? hi.offset : hm.offset;
	if (has_filter && hf.offset < t->data_end)
		t->data_end = hf.offset;

	t->file = f; /* borrowed until success */
	uint64_t data_blocks = 0;
	r = kv_block_read(f, hm.offset, hm.size, &meta);
	if (!r)
		r = load_meta(t, meta, &data_blocks);
	if (!r)
		r = kv_block_read(f, hi.offset, hi.size, &index);
	if (!r)
		r = load_index(t, index);
	if (r)
		goto out;
	if (t->nblocks != data_blocks || (t->nblocks == 0) != (t->entries == 0)) {
		r = KV_ECORRUPT;
		goto out;
	}
	if (has_filter) {
		r = kv_block_read_unparsed(f, hf.offset, hf.size, &t->filter_block);
		if (r)
			goto out;
		/* A filter layout this code does not know reads as "may contain". */
		if (kv_bloom_init(&t->bloom, kv_slice_make(t->filter_block->data,
							     t->filter_block->size)))
			kv_warn("table %llu: unknown filter layout, not using it",
				(unsigned long long)file_number);
	}
	r = 0;
out:
	kv_block_free(index);
	kv_block_free(meta);
	if (r) {
		if (r == KV_ECORRUPT || r == KV_EVERSION)
			kv_debug("table %llu: open failed: %s", (unsigned long long)file_number,
				 kv_strerror(r));
		t->file = NULL; /* the caller keeps it */
		table_free(t);
		return r;
	}
	*out = t;
	return 0;
}

struct kv_table *kv_table_ref(struct kv_table *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

bool kv_table_unref(struct kv_table *t)
{
	if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
		return false;
	table_free(t);
	return true;
}

/* The first block whose separator is >= @target; t->nblocks if none. */
static size_t index_search(const struct kv_table *t, struct kv_slice target)
{
	size_t lo = 0, hi = t->nblocks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct index_entry *e = &t->index[mid];
		if (kv_ikey_cmp(kv_slice_make(e->key, e->key_len), target) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A data block in use: pinned in the cache, or owned. */
struct block_ref {
	struct kv_block *block;
	struct kv_cache_handle *handle; /* NULL: block is ours to free */
};

static void block_deleter(void *value)
{
	kv_block_free(value);
}

/*
 * Data block @i, from the cache or read (and cached with @fill_cache).
 * With @cached_only, a block neither the cache holds nor the page cache (of
 * a mapped table, kv_block_resident) is -EAGAIN, not read.
 */
static int fetch_block_from(struct kv_table *t, size_t i, bool fill_cache, bool cached_only,
			    struct block_ref *ref)
{
	const struct index_entry *e = &t->index[i];
	ref->block = NULL;
	ref->handle = NULL;
	if (t->cache) {
		ref->handle = kv_cache_lookup(t->cache, t->file_number, e->offset);
		if (ref->handle) {
			ref->block = kv_cache_value(ref->handle);
			return 0;
		}
	}
	/* A mapped block in the page cache is memory too: reading it costs
	 * no more than a cached one, without the trip to another thread. */
	if (cached_only && !kv_block_resident(t->file, e->offset, e->size))
		return -EAGAIN;
	struct kv_block *b;
	int r = kv_block_read(t->file, e->offset, e->size, &b);
	if (r) {
		if (r == KV_ECORRUPT)
			kv_warn("table %llu: corrupt block at offset %llu",
				(unsigned long long)t->file_number, (unsigned long long)e->offset);
		return r;
	}
	if (t->stats) {
		stat_add(&t->stats->block_reads, 1);
		stat_add(&t->stats->block_read_bytes, e->size + KV_BLOCK_TRAILER);
	}
	if (t->cache && fill_cache &&
	    kv_cache_insert(t->cache, t->file_number, e->offset, b, b->charge, block_deleter,
			    &ref->handle) == 0) {
		ref->block = b;
		return 0;
	}
	ref->block = b; /* not cached: ours */
	return 0;
}

static int fetch_block(struct kv_table *t, size_t i, bool fill_cache, struct block_ref *ref)
{
	return fetch_block_from(t, i, fill_cache, false, ref);
}

static void drop_block(struct kv_table *t, struct block_ref *ref)
{
	if (ref->handle)
		kv_cache_release(t->cache, ref->handle);
	else
		kv_block_free(ref->block);
	ref->block = NULL;
	ref->handle = NULL;
}

uint64_t kv_table_key_hash(struct kv_slice ukey)
{
	return kv_bloom_hash(ukey);
}

int kv_table_get(struct kv_table *t, struct kv_slice ukey, uint64_t snapshot_seq,
		 enum kv_entry_type *type, struct kv_buf *value)
{
	return kv_table_get_hashed(t, ukey, kv_bloom_hash(ukey), snapshot_seq, type, value);
}

static int table_get(struct kv_table *t, struct kv_slice ukey, uint64_t hash, uint64_t snapshot_seq,
		     bool cached_only, enum kv_entry_type *type, struct kv_buf *value);

int kv_table_get_hashed(struct kv_table *t, struct kv_slice ukey, uint64_t hash,
			uint64_t snapshot_seq, enum kv_entry_type *type, struct kv_buf *value)
{
	return table_get(t, ukey, hash, snapshot_seq, false, type, value);
}

int kv_table_get_cached(struct kv_table *t, struct kv_slice ukey, uint64_t snapshot_seq,
			enum kv_entry_type *type, struct kv_buf *value)
{
	return table_get(t, ukey, kv_bloom_hash(ukey), snapshot_seq, true, type, value);
}

int kv_table_get_cached_hashed(struct kv_table *t, struct kv_slice ukey, uint64_t hash,
			       uint64_t snapshot_seq, enum kv_entry_type *type,
			       struct kv_buf *value)
{
	return table_get(t, ukey, hash, snapshot_seq, true, type, value);
}

static int table_get(struct kv_table *t, struct kv_slice ukey, uint64_t hash, uint64_t snapshot_seq,
		     bool cached_only, enum kv_entry_type *type, struct kv_buf *value)
{
	if (t->filter_block) {
		if (t->stats)
			stat_add(&t->stats->bloom_checks, 1);
		if (!kv_bloom_may_contain_hash(&t->bloom, hash)) {
			if (t->stats)
				stat_add(&t->stats->bloom_skips, 1);
			return 0;
		}
	}
	if (t->nblocks == 0)
		return 0;
	/* The target ikey(ukey, snapshot, SEEK), on the stack when it fits. */
	uint8_t small[256];
	uint8_t *target = small;
	size_t tn = ukey.n + KV_IKEY_TRAILER;
	if (tn > sizeof small) {
		target = malloc(tn);
		if (!target)
			return -ENOMEM;
	}
	if (ukey.n)
		memcpy(target, ukey.p, ukey.n);
	if (snapshot_seq > KV_SEQ_MAX)
		snapshot_seq = KV_SEQ_MAX;
	kv_put_le64(target + ukey.n, kv_ikey_pack(snapshot_seq, KV_TYPE_SEEK));
	struct kv_slice tkey = kv_slice_make(target, tn);

	int r = 0;
	struct block_ref ref = { NULL, NULL };
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, NULL, kv_ikey_cmp);
	size_t i = index_search(t, tkey);
	if (i == t->nblocks)
		goto out;
	r = fetch_block_from(t, i, true, cached_only, &ref);
	if (r)
		goto out;
	c.block = ref.block;
	kv_block_cursor_seek(&c, tkey);
	if (!c.valid) {
		r = c.status; /* the block ends before the target: not here */
		goto out;
	}
	struct kv_ikey found;
	if (kv_ikey_parse(kv_block_cursor_key(&c), &found)) {
		r = KV_ECORRUPT;
		goto out;
	}
	if (!kv_slice_eq(found.ukey, ukey))
		goto out;
	struct kv_slice v = found.type == KV_TYPE_PUT ? kv_block_cursor_value(&c)
						      : kv_slice_make(NULL, 0);
	/* Reserve first, so a failure leaves @value untouched. */
	if (v.n > value->cap) {
		size_t keep = value->n;
		value->n = 0;
		r = kv_buf_reserve(value, v.n);
		value->n = keep;
		if (r)
			goto out;
	}
	kv_buf_reset(value);
	kv_buf_append(value, v.p, v.n);
	*type = found.type;
	r = 1;
out:
	kv_block_cursor_release(&c);
	if (ref.block)
		drop_block(t, &ref);
	if (target != small)
		free(target);
	return r;
}

/* ---- Iterator ----------------------------------------------------------------- */

struct table_iter {
	struct kv_iter base;
	struct kv_table *t; /* a reference */
	bool fill_cache;
	size_t block;       /* index of the current data block */
	struct block_ref ref;
	struct kv_block_cursor cur;
	int status;         /* sticky */
};

static bool ti_valid(struct kv_iter *it)
{
	return ((struct table_iter *)it)->cur.valid;
}

/* Makes data block @i current (the cursor unpositioned). False on error. */
static bool ti_load(struct table_iter *ti, size_t i)
{
	if (ti->ref.block)
		drop_block(ti->t, &ti->ref);
	ti->cur.valid = false;
	ti->cur.block = NULL;
	ti->block = i;
	if (i >= ti->t->nblocks)
		return false;
	int r = fetch_block(ti->t, i, ti->fill_cache, &ti->ref);
	if (r) {
		ti->status = r;
		return false;
	}
	ti->cur.block = ti->ref.block;
	ti->cur.next = 0;
	ti->cur.key_len = 0;
	return true;
}

/*
 * Moves past ended blocks to the next entry, or to the end. An entry whose
 * key cannot be an internal key ends the scan with KV_ECORRUPT.
 */
static void ti_settle(struct table_iter *ti)
{
	for (;;) {
		if (ti->cur.valid) {
			if (ti->cur.key_len >= KV_IKEY_TRAILER)
				return;
			ti->cur.valid = false;
			ti->cur.status = KV_ECORRUPT;
		}
		if (ti->cur.status) {
			ti->status = ti->cur.status;
			return;
		}
		if (!ti_load(ti, ti->block + 1))
			return;
		kv_block_cursor_seek_first(&ti->cur);
	}
}

static void ti_seek_first(struct kv_iter *it)
{
	struct table_iter *ti = (struct table_iter *)it;
	ti->cur.valid = false;
	if (ti->status || !ti_load(ti, 0))
		return;
	kv_block_cursor_seek_first(&ti->cur);
	ti_settle(ti);
}

static void ti_seek(struct kv_iter *it, struct kv_slice target)
{
	struct table_iter *ti = (struct table_iter *)it;
	ti->cur.valid = false;
	if (ti->status)
		return;
	size_t i = index_search(ti->t, target);
	if (!ti_load(ti, i))
		return;
	kv_block_cursor_seek(&ti->cur, target);
	ti_settle(ti);
}

static void ti_next(struct kv_iter *it)
{
	struct table_iter *ti = (struct table_iter *)it;
	kv_block_cursor_next(&ti->cur);
	ti_settle(ti);
}

static struct kv_slice ti_key(struct kv_iter *it)
{
	return kv_block_cursor_key(&((struct table_iter *)it)->cur);
}

static struct kv_slice ti_value(struct kv_iter *it)
{
	return kv_block_cursor_value(&((struct table_iter *)it)->cur);
}

static int ti_status(struct kv_iter *it)
{
	return ((struct table_iter *)it)->status;
}

static void ti_destroy(struct kv_iter *it)
{
	struct table_iter *ti = (struct table_iter *)it;
	if (ti->ref.block)
		drop_block(ti->t, &ti->ref);
	kv_block_cursor_release(&ti->cur);
	kv_table_unref(ti->t);
	free(ti);
}

static const struct kv_iter_ops table_iter_ops = {
	.valid = ti_valid,
	.seek_first = ti_seek_first,
	.seek = ti_seek,
	.next = ti_next,
	.key = ti_key,
	.value = ti_value,
	.status = ti_status,
	.destroy = ti_destroy,
};

struct kv_iter *kv_table_iter(struct kv_table *t, bool fill_cache)
{
	struct table_iter *ti = calloc(1, sizeof *ti);
	if (!ti)
		return NULL;
	ti->base.ops = &table_iter_ops;
	ti->t = kv_table_ref(t);
	ti->fill_cache = fill_cache;
	kv_block_cursor_init(&ti->cur, NULL, kv_ikey_cmp);
	return &ti->base;
}

/* ---- Accessors ------------------------------------------------------------------ */

struct kv_slice kv_table_smallest(const struct kv_table *t)
{
	return kv_buf_slice(&t->smallest);
}

struct kv_slice kv_table_largest(const struct kv_table *t)
{
	return kv_buf_slice(&t->largest);
}

uint64_t kv_table_entries(const struct kv_table *t)
{
	return t->entries;
}

uint64_t kv_table_deletes(const struct kv_table *t)
{
	return t->deletes;
}

uint64_t kv_table_file_number(const struct kv_table *t)
{
	return t->file_number;
}

uint64_t kv_table_file_size(const struct kv_table *t)
{
	return t->file_size;
}

uint64_t kv_table_raw_key_bytes(const struct kv_table *t)
{
	return t->raw_key_bytes;
}

uint64_t kv_table_raw_value_bytes(const struct kv_table *t)
{
	return t->raw_value_bytes;
}

bool kv_table_has_filter(const struct kv_table *t)
{
	return t->filter_block != NULL;
}

uint64_t kv_table_offset_of(const struct kv_table *t, struct kv_slice ikey)
{
	size_t i = index_search(t, ikey);
	return i < t->nblocks ? t->index[i].offset : t->data_end;
}
