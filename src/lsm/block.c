/*
 * block.c - block contents, their on-disk envelope, and cursors (see block.h).
 * Format: doc/storage-format.md#sstable-blocks
 *
 * Contents:  entry* ‖ le32 restart[n] ‖ le32 n
 * entry:     varint shared ‖ varint unshared ‖ varint value_len ‖
 *            key[shared..shared+unshared) ‖ value
 * Envelope:  payload ‖ type u8 ‖ le32 payload_size ‖ le32 raw_size ‖
 *            le32 checksum(payload ‖ first 9 trailer bytes)
 */
#include "lsm/block.h"

#include <sys/mman.h>
#include <unistd.h>

#include <assert.h>
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>

#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

/* ---- Builder ---------------------------------------------------------------- */

void kv_block_builder_init(struct kv_block_builder *b, unsigned restart_interval)
{
	kv_buf_init(&b->buf);
	kv_buf_init(&b->last_key);
	b->restarts = NULL;
	b->nrestarts = 0;
	b->restarts_cap = 0;
	b->interval = restart_interval ? restart_interval : 1;
	b->counter = 0;
	b->entries = 0;
	b->finished = false;
}

void kv_block_builder_release(struct kv_block_builder *b)
{
	kv_buf_release(&b->buf);
	kv_buf_release(&b->last_key);
	free(b->restarts);
	kv_block_builder_init(b, b->interval);
}

void kv_block_builder_reset(struct kv_block_builder *b)
{
	kv_buf_reset(&b->buf);
	kv_buf_reset(&b->last_key);
	b->nrestarts = 0;
	b->counter = 0;
	b->entries = 0;
	b->finished = false;
}

size_t kv_block_builder_size(const struct kv_block_builder *b)
{
	size_t nrestarts = b->nrestarts ? b->nrestarts : 1;
	return b->buf.n + 4 * nrestarts + 4;
}

static int push_restart(struct kv_block_builder *b, uint32_t off)
{
	if (b->nrestarts == b->restarts_cap) {
		size_t cap = b->restarts_cap ? b->restarts_cap * 2 : 64;
		uint32_t *p = realloc(b->restarts, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		b->restarts = p;
		b->restarts_cap = cap;
	}
	b->restarts[b->nrestarts++] = off;
	return 0;
}

int kv_block_builder_add(struct kv_block_builder *b, struct kv_slice key, struct kv_slice value)
{
	assert(!b->finished);
	bool restart = b->entries == 0 || b->counter >= b->interval;
	size_t shared = 0;
	if (!restart) {
		size_t max = key.n < b->last_key.n ? key.n : b->last_key.n;
		while (shared < max && key.p[shared] == b->last_key.p[shared])
			shared++;
	}
	size_t unshared = key.n - shared;
	/* The entry plus its restart slot must keep the block within bounds. */
	uint64_t grow = 3 * KV_VARINT64_MAX + (uint64_t)unshared + value.n;
	if ((uint64_t)kv_block_builder_size(b) + 4 + grow > KV_BLOCK_MAX_RAW)
		return KV_ETOOBIG;
	/* Every allocation first, so a failure leaves the builder unchanged. */
	int r = kv_buf_reserve(&b->buf, (size_t)grow);
	if (!r && key.n > b->last_key.n)
		r = kv_buf_reserve(&b->last_key, key.n - b->last_key.n);
	if (!r && restart)
		r = push_restart(b, (uint32_t)b->buf.n);
	if (r)
		return r;
	if (restart)
		b->counter = 0;

	uint8_t *p = b->buf.p + b->buf.n;
	p += kv_varint_encode(p, shared);
	p += kv_varint_encode(p, unshared);
	p += kv_varint_encode(p, value.n);
	if (unshared)
		memcpy(p, key.p + shared, unshared);
	p += unshared;
	if (value.n)
		memcpy(p, value.p, value.n);
	p += value.n;
	b->buf.n = (size_t)(p - b->buf.p);
	/* last_key = key: keep the shared prefix, copy the rest. */
	if (unshared)
		memcpy(b->last_key.p + shared, key.p + shared, unshared);
	b->last_key.n = key.n;
	b->counter++;
	b->entries++;
	return 0;
}

int kv_block_builder_finish(struct kv_block_builder *b, struct kv_slice *out)
{
	assert(!b->finished);
	if (b->nrestarts == 0) {
		int r = push_restart(b, 0);
		if (r)
			return r;
	}
	int r = kv_buf_reserve(&b->buf, 4 * b->nrestarts + 4);
	if (r)
		return r;
	for (size_t i = 0; i < b->nrestarts; i++)
		kv_buf_append_le32(&b->buf, b->restarts[i]);
	kv_buf_append_le32(&b->buf, (uint32_t)b->nrestarts);
	b->finished = true;
	*out = kv_buf_slice(&b->buf);
	return 0;
}

/* ---- Envelope ----------------------------------------------------------------- */

int kv_block_seal(struct kv_slice contents, bool compress, struct kv_buf *out,
		  uint64_t *payload_size)
{
	if (contents.n > KV_BLOCK_MAX_RAW)
		return KV_ETOOBIG;
	size_t start = out->n;
	size_t bound = compress ? (size_t)LZ4_compressBound((int)contents.n) : 0;
	size_t room = (bound > contents.n ? bound : contents.n) + KV_BLOCK_TRAILER;
	int r = kv_buf_reserve(out, room);
	if (r)
		return r;
	uint8_t *payload = out->p + start;
	uint8_t type = KV_BLOCK_RAW;
	size_t stored = contents.n;
	if (compress && contents.n > 0) {
		int z = LZ4_compress_default((const char *)contents.p, (char *)payload,
					     (int)contents.n, (int)bound);
		/* Keep lz4 only when it saves at least an eighth. */
		if (z > 0 && (size_t)z < contents.n - contents.n / 8) {
			type = KV_BLOCK_LZ4;
			stored = (size_t)z;
		}
	}
	if (type == KV_BLOCK_RAW && contents.n)
		memcpy(payload, contents.p, contents.n);
	uint8_t *trailer = payload + stored;
	trailer[0] = type;
	kv_put_le32(trailer + 1, (uint32_t)stored);
	kv_put_le32(trailer + 5, (uint32_t)contents.n);
	kv_put_le32(trailer + 9, kv_checksum32(payload, stored + 9));
	out->n = start + stored + KV_BLOCK_TRAILER;
	*payload_size = stored;
	return 0;
}

/* ---- Reading ------------------------------------------------------------------ */

int kv_block_init(struct kv_block *b, struct kv_slice contents)
{
	b->data = contents.p;
	b->size = 0;
	b->restarts = 0;
	b->nrestarts = 0;
	b->charge = 0;
	if (contents.n < 4 || contents.n > KV_BLOCK_MAX_RAW)
		goto bad;
	uint32_t size = (uint32_t)contents.n;
	uint32_t n = kv_get_le32(contents.p + size - 4);
	if (n == 0 || n > (size - 4) / 4)
		goto bad;
	b->size = size;
	b->restarts = size - 4 - 4 * n;
	b->nrestarts = n;
	b->charge = sizeof *b + size;
	return 0;
bad:
	b->data = NULL;
	return KV_ECORRUPT;
}

/* Checks the trailer at the end of @stored; on success fills the type and sizes. */
static int check_envelope(struct kv_slice stored, uint8_t *type, uint32_t *raw_size)
{
	if (stored.n < KV_BLOCK_TRAILER)
		return KV_ECORRUPT;
	size_t payload = stored.n - KV_BLOCK_TRAILER;
	const uint8_t *t = stored.p + payload;
	uint32_t stored_size = kv_get_le32(t + 1);
	uint32_t raw = kv_get_le32(t + 5);
	if (stored_size != payload || payload > KV_BLOCK_MAX_RAW || raw > KV_BLOCK_MAX_RAW)
		return KV_ECORRUPT;
	if (t[0] != KV_BLOCK_RAW && t[0] != KV_BLOCK_LZ4)
		return KV_ECORRUPT;
	if (t[0] == KV_BLOCK_RAW && raw != payload)
		return KV_ECORRUPT;
	/* lz4 expands at most 255:1 (a run of 0xff length bytes): refuse more. */
	if (t[0] == KV_BLOCK_LZ4 && raw > (uint64_t)payload * 256 + 64)
		return KV_ECORRUPT;
	if (kv_get_le32(t + 9) != kv_checksum32(stored.p, payload + 9))
		return KV_ECORRUPT;
	*type = t[0];
	*raw_size = raw;
	return 0;
}

/* Makes @b's header describe @n bytes of contents at b->storage. */
static int finish_block(struct kv_block *b, uint32_t n, bool parse)
{
	if (parse)
		return kv_block_init(b, kv_slice_make(b->storage, n));
	b->data = b->storage;
	b->size = n;
	b->restarts = 0;
	b->nrestarts = 0; /* iterates nothing */
	b->charge = sizeof *b + n;
	return 0;
}

/* Decompresses an lz4 payload into a new heap block of @raw bytes. */
static int inflate_block(const uint8_t *payload, size_t n, uint32_t raw, bool parse,
			 struct kv_block **out)
{
	struct kv_block *b = malloc(sizeof *b + (raw ? raw : 1));
	if (!b)
		return -ENOMEM;
	int z = LZ4_decompress_safe((const char *)payload, (char *)b->storage, (int)n, (int)raw);
	if (z < 0 || (uint32_t)z != raw || finish_block(b, raw, parse)) {
		free(b);
		return KV_ECORRUPT;
	}
	*out = b;
	return 0;
}

static int decode(struct kv_slice stored, bool parse, struct kv_block **out)
{
	*out = NULL;
	uint8_t type;
	uint32_t raw;
	int r = check_envelope(stored, &type, &raw);
	if (r)
		return r;
	if (type == KV_BLOCK_LZ4)
		return inflate_block(stored.p, stored.n - KV_BLOCK_TRAILER, raw, parse, out);
	struct kv_block *b = malloc(sizeof *b + (raw ? raw : 1));
	if (!b)
		return -ENOMEM;
	if (raw)
		memcpy(b->storage, stored.p, raw);
	if (finish_block(b, raw, parse)) {
		free(b);
		return KV_ECORRUPT;
	}
	*out = b;
	return 0;
}

int kv_block_decode(struct kv_slice stored, struct kv_block **out)
{
	return decode(stored, true, out);
}

int kv_block_decode_unparsed(struct kv_slice stored, struct kv_block **out)
{
	return decode(stored, false, out);
}

static int read_block(struct kv_file *f, uint64_t offset, uint64_t payload_size, bool parse,
		      struct kv_block **out)
{
	*out = NULL;
	if (payload_size > KV_BLOCK_MAX_RAW)
		return KV_ECORRUPT;
	size_t n = (size_t)payload_size + KV_BLOCK_TRAILER;
	/*
	 * A mapped table is read in place: no system call, and an lz4 block is
	 * inflated straight from the page cache (LevelDB reads tables so too).
	 */
	uint64_t mlen = 0;
	const uint8_t *m = kv_file_map(f, &mlen);
	if (m && offset <= mlen && n <= mlen - offset)
		return decode(kv_slice_make(m + offset, n), parse, out);
	/*
	 * One allocation that becomes the block: a raw block is used where it
	 * was read; an lz4 one is inflated into a second allocation.
	 */
	struct kv_block *b = malloc(sizeof *b + n);
	if (!b)
		return -ENOMEM;
	int r = kv_file_read_exact(f, b->storage, n, offset);
	if (r)
		goto out;
	uint8_t type;
	uint32_t raw;
	r = check_envelope(kv_slice_make(b->storage, n), &type, &raw);
	if (r)
		goto out;
	if (type == KV_BLOCK_LZ4) {
		struct kv_block *inflated;
		r = inflate_block(b->storage, (size_t)payload_size, raw, parse, &inflated);
		if (r)
			goto out;
		free(b);
		*out = inflated;
		return 0;
	}
	r = finish_block(b, raw, parse);
	if (r)
		goto out;
	b->charge += KV_BLOCK_TRAILER;
	*out = b;
	return 0;
out:
	free(b);
	return r;
}

/* Larger blocks (a big value alone) are never called resident. */
#define RESIDENT_MAX_PAGES 16

bool kv_block_resident(struct kv_file *f, uint64_t offset, uint64_t payload_size)
{
	uint64_t mlen = 0;
	const uint8_t *m = kv_file_map(f, &mlen);
	if (!m || payload_size > KV_BLOCK_MAX_RAW)
		return false;
	uint64_t n = payload_size + KV_BLOCK_TRAILER;
	if (offset > mlen || n > mlen - offset)
		return false;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)(m + offset) & ~(page - 1);
	uintptr_t end = (uintptr_t)(m + offset + n);
	uintptr_t pages = (end - start + page - 1) / page;
	unsigned char vec[RESIDENT_MAX_PAGES];
	if (pages > sizeof vec || mincore((void *)start, end - start, vec) != 0)
		return false;
	for (uintptr_t i = 0; i < pages; i++)
		if (!(vec[i] & 1))
			return false;
	return true;
}

int kv_block_read(struct kv_file *f, uint64_t offset, uint64_t payload_size,
		  struct kv_block **out)
{
	return read_block(f, offset, payload_size, true, out);
}

int kv_block_read_unparsed(struct kv_file *f, uint64_t offset, uint64_t payload_size,
			   struct kv_block **out)
{
	return read_block(f, offset, payload_size, false, out);
}

void kv_block_free(struct kv_block *b)
{
	free(b);
}

/* ---- Cursor ----------------------------------------------------------------------- */

/* Seeks prefetch all restart entries of blocks with fewer restarts. */
#define PREFETCH_RESTARTS 48

void kv_block_cursor_init(struct kv_block_cursor *c, const struct kv_block *b, kv_cmp_fn cmp)
{
	c->block = b;
	c->cmp = cmp;
	c->next = 0;
	c->valid = false;
	c->status = 0;
	c->value = NULL;
	c->value_len = 0;
	c->key = c->key_inline;
	c->key_len = 0;
	c->key_cap = sizeof c->key_inline;
}

void kv_block_cursor_release(struct kv_block_cursor *c)
{
	if (c->key != c->key_inline)
		free(c->key);
	c->key = c->key_inline;
	c->key_cap = sizeof c->key_inline;
	c->key_len = 0;
	c->valid = false;
}

/* Ends the cursor with KV_ECORRUPT (sticky). */
static void corrupt(struct kv_block_cursor *c)
{
	c->valid = false;
	c->status = KV_ECORRUPT;
	c->key_len = 0;
}

static bool key_room(struct kv_block_cursor *c, size_t need)
{
	if (need <= c->key_cap)
		return true;
	size_t cap = c->key_cap * 2 > need ? c->key_cap * 2 : need;
	uint8_t *p = c->key == c->key_inline ? malloc(cap) : realloc(c->key, cap);
	if (!p)
		return false;
	if (c->key == c->key_inline)
		memcpy(p, c->key_inline, c->key_len);
	c->key = p;
	c->key_cap = cap;
	return true;
}

/*
 * Decodes the entry header at @p (entries end at @limit). Returns a pointer
 * to the key delta, or NULL when the header or the bytes it claims run past
 * @limit.
 */
static inline const uint8_t *decode_entry(const uint8_t *p, const uint8_t *limit,
					  uint32_t *shared, uint32_t *unshared, uint32_t *vlen)
{
	if (limit - p < 3)
		return NULL;
	if ((p[0] | p[1] | p[2]) < 128) { /* the common case: three one-byte varints */
		*shared = p[0];
		*unshared = p[1];
		*vlen = p[2];
		p += 3;
	} else {
		uint64_t v[3];
		for (int i = 0; i < 3; i++) {
			int r = kv_varint_decode(p, (size_t)(limit - p), &v[i]);
			if (r < 0 || v[i] > UINT32_MAX)
				return NULL;
			p += r;
		}
		*shared = (uint32_t)v[0];
		*unshared = (uint32_t)v[1];
		*vlen = (uint32_t)v[2];
	}
	if ((uint64_t)*unshared + *vlen > (uint64_t)(limit - p))
		return NULL;
	return p;
}

/* Moves to the entry at c->next. Returns false at the end or on corruption. */
static bool parse_next(struct kv_block_cursor *c)
{
	const struct kv_block *b = c->block;
	uint32_t off = c->next;
	if (off >= b->restarts) {
		c->valid = false;
		if (off > b->restarts)
			corrupt(c);
		return false;
	}
	uint32_t shared, unshared, vlen;
	const uint8_t *p = decode_entry(b->data + off, b->data + b->restarts, &shared, &unshared,
					&vlen);
	if (!p || shared > c->key_len) {
		corrupt(c);
		return false;
	}
	if (!key_room(c, (size_t)shared + unshared)) {
		corrupt(c);
		c->status = -ENOMEM;
		return false;
	}
	memcpy(c->key + shared, p, unshared);
	c->key_len = (size_t)shared + unshared;
	c->value = p + unshared;
	c->value_len = vlen;
	c->next = (uint32_t)(p + unshared + vlen - b->data);
	c->valid = true;
	return true;
}

static inline uint32_t restart_point(const struct kv_block *b, uint32_t i)
{
	return kv_get_le32(b->data + b->restarts + 4 * (size_t)i);
}

void kv_block_cursor_seek_first(struct kv_block_cursor *c)
{
	if (c->status || c->block->nrestarts == 0) {
		c->valid = false;
		return;
	}
	c->key_len = 0;
	c->next = restart_point(c->block, 0);
	parse_next(c);
}

void kv_block_cursor_next(struct kv_block_cursor *c)
{
	assert(c->valid);
	parse_next(c);
}

void kv_block_cursor_seek(struct kv_block_cursor *c, struct kv_slice target)
{
	const struct kv_block *b = c->block;
	c->valid = false;
	if (c->status || b->nrestarts == 0)
		return;
	/* Binary search for the last restart whose key is < target. */
	uint32_t left = 0, right = b->nrestarts - 1;
	const uint8_t *limit = b->data + b->restarts;
	/*
	 * A cached block is usually cold in the CPU cache, and the binary
	 * search's loads depend on each other: fetch every restart entry it may
	 * visit at once (a data block has a few dozen at most).
	 */
	if (right < PREFETCH_RESTARTS) {
		for (uint32_t i = 1; i <= right; i++) {
			uint32_t off = restart_point(b, i);
			if (off < b->restarts)
				__builtin_prefetch(b->data + off);
		}
	}
	while (left < right) {
		uint32_t mid = left + (right - left + 1) / 2;
		uint32_t off = restart_point(b, mid);
		uint32_t shared, unshared, vlen;
		const uint8_t *p = off < b->restarts
			? decode_entry(b->data + off, limit, &shared, &unshared, &vlen)
			: NULL;
		if (!p || shared != 0) {
			corrupt(c);
			return;
		}
		if (c->cmp(kv_slice_make(p, unshared), target) < 0)
			left = mid;
		else
			right = mid - 1;
	}
	/* Then scan forward from it, its interval fetched ahead of the scan. */
	c->key_len = 0;
	c->next = restart_point(b, left);
	uint32_t end = left + 1 < b->nrestarts ? restart_point(b, left + 1) : b->restarts;
	if (end > b->restarts)
		end = b->restarts;
	for (uint32_t off = c->next + 64, n = 0; off < end && n < 32; off += 64, n++)
		__builtin_prefetch(b->data + off);
	while (parse_next(c)) {
		if (c->cmp(kv_block_cursor_key(c), target) >= 0)
			return;
	}
}

/* ---- kv_iter over a block --------------------------------------------------------- */

struct block_iter {
	struct kv_iter base;
	const struct kv_block *block;
	bool owned;
	struct kv_block_cursor cur;
};

static bool bi_valid(struct kv_iter *it)
{
	return ((struct block_iter *)it)->cur.valid;
}
static void bi_seek_first(struct kv_iter *it)
{
	kv_block_cursor_seek_first(&((struct block_iter *)it)->cur);
}
static void bi_seek(struct kv_iter *it, struct kv_slice target)
{
	kv_block_cursor_seek(&((struct block_iter *)it)->cur, target);
}
static void bi_next(struct kv_iter *it)
{
	kv_block_cursor_next(&((struct block_iter *)it)->cur);
}
static struct kv_slice bi_key(struct kv_iter *it)
{
	return kv_block_cursor_key(&((struct block_iter *)it)->cur);
}
static struct kv_slice bi_value(struct kv_iter *it)
{
	return kv_block_cursor_value(&((struct block_iter *)it)->cur);
}
static int bi_status(struct kv_iter *it)
{
	return ((struct block_iter *)it)->cur.status;
}
static void bi_destroy(struct kv_iter *it)
{
	struct block_iter *bi = (struct block_iter *)it;
	kv_block_cursor_release(&bi->cur);
	if (bi->owned)
		kv_block_free((struct kv_block *)bi->block);
	free(bi);
}

static const struct kv_iter_ops block_iter_ops = {
	.valid = bi_valid,
	.seek_first = bi_seek_first,
	.seek = bi_seek,
	.next = bi_next,
	.key = bi_key,
	.value = bi_value,
	.status = bi_status,
	.destroy = bi_destroy,
};

int kv_block_iter_new(const struct kv_block *b, kv_cmp_fn cmp, bool owned, struct kv_iter **out)
{
	*out = NULL;
	struct block_iter *bi = malloc(sizeof *bi);
	if (!bi)
		return -ENOMEM;
	bi->base.ops = &block_iter_ops;
	bi->block = b;
	bi->owned = owned;
	kv_block_cursor_init(&bi->cur, b, cmp);
	*out = &bi->base;
	return 0;
}
