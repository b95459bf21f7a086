/*
 * block.h - the blocks an SSTable is made of: sorted key/value entries with
 * prefix compression and restart points, and the checksummed, optionally
 * lz4-compressed envelope they are stored in on disk.
 * Format: doc/storage-format.md#sstable-blocks
 *
 * Three parts:
 *   kv_block_builder  builds the contents of one block in memory;
 *   kv_block_seal / kv_block_read / kv_block_decode
 *                     the on-disk envelope: payload ‖ 13-byte trailer;
 *   kv_block, kv_block_cursor, kv_block_iter_new
 *                     read a block held in memory. Every offset and length
 *                     read from the block is checked against its bounds: a
 *                     malformed block yields KV_ECORRUPT, never a read
 *                     outside it.
 * A struct kv_block is immutable once made, so any number of threads may
 * read it at once (each with its own cursor).
 */
#ifndef KV_LSM_BLOCK_H
#define KV_LSM_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/iter.h"
#include "lsm/vfs.h"
#include "util/slice.h"

/* The envelope: payload, then this trailer. */
#define KV_BLOCK_TRAILER 13
enum kv_block_type {
	KV_BLOCK_RAW = 0, /* payload is the contents */
	KV_BLOCK_LZ4 = 1, /* payload is the contents, lz4 block format */
};
/* No block's contents or payload may be larger (a guard against bad sizes). */
#define KV_BLOCK_MAX_RAW (128u << 20)
/* Entries a data block puts between restart points. */
#define KV_BLOCK_RESTART_INTERVAL 16

/* ---- Building the contents -------------------------------------------------- */

/* Caller-owned: kv_block_builder_init() ... kv_block_builder_release(). */
struct kv_block_builder {
	struct kv_buf buf;      /* entries so far; then the restart array */
	uint32_t *restarts;     /* offsets of the restart entries */
	size_t nrestarts, restarts_cap;
	struct kv_buf last_key; /* key of the last entry added */
	unsigned interval;      /* entries per restart (>= 1) */
	unsigned counter;       /* entries since the last restart */
	size_t entries;
	bool finished;
};

/* Prepares an empty builder restarting every @restart_interval (>= 1) keys. */
void kv_block_builder_init(struct kv_block_builder *b, unsigned restart_interval);

/* Frees the builder's memory. */
void kv_block_builder_release(struct kv_block_builder *b);

/* Empties the builder for the next block, keeping its memory. */
void kv_block_builder_reset(struct kv_block_builder *b);

/*
 * Appends an entry. Keys must come in strictly increasing order of the
 * comparator the block will be read with (the caller's invariant). Returns 0,
 * -ENOMEM, or KV_ETOOBIG when the block would exceed KV_BLOCK_MAX_RAW.
 */
int kv_block_builder_add(struct kv_block_builder *b, struct kv_slice key, struct kv_slice value);

/*
 * Appends the restart array and returns the finished contents in *out,
 * borrowed from @b until its next reset or release. Returns 0 or -ENOMEM.
 */
int kv_block_builder_finish(struct kv_block_builder *b, struct kv_slice *out);

/* Bytes the contents would take if finished now. */
size_t kv_block_builder_size(const struct kv_block_builder *b);

static inline bool kv_block_builder_empty(const struct kv_block_builder *b)
{
	return b->entries == 0;
}

static inline struct kv_slice kv_block_builder_last_key(const struct kv_block_builder *b)
{
	return kv_buf_slice(&b->last_key);
}

/* ---- The on-disk envelope --------------------------------------------------- */

/*
 * Appends payload ‖ trailer for @contents to @out: lz4-compressed when
 * @compress and it saves at least an eighth, raw otherwise. *payload_size
 * gets the payload's size (what a block handle records). Returns 0, -ENOMEM,
 * or KV_ETOOBIG when @contents exceeds KV_BLOCK_MAX_RAW.
 */
int kv_block_seal(struct kv_slice contents, bool compress, struct kv_buf *out,
		  uint64_t *payload_size);

/* ---- Reading ---------------------------------------------------------------- */

/*
 * A block's contents, parsed just enough to search them. Made either by
 * kv_block_init() over borrowed bytes, or on the heap by kv_block_read() /
 * kv_block_decode(), which own their bytes (free with kv_block_free()).
 */
struct kv_block {
	const uint8_t *data;   /* the contents */
	uint32_t size;         /* bytes of contents */
	uint32_t restarts;     /* offset of the restart array = end of entries */
	uint32_t nrestarts;    /* >= 1 */
	size_t charge;         /* memory held, for the block cache */
	uint8_t storage[];     /* heap blocks: their bytes */
};

/*
 * Parses the restart array of @contents into @b (which borrows the bytes:
 * they must outlive it). Returns 0 or KV_ECORRUPT (then @b is an empty
 * block that iterates nothing).
 */
int kv_block_init(struct kv_block *b, struct kv_slice contents);

/*
 * Verifies the envelope in @stored (payload ‖ trailer: a block handle's
 * bytes plus KV_BLOCK_TRAILER), decompresses it and parses it. On success
 * *out is a new heap block the caller frees with kv_block_free(); on failure
 * (KV_ECORRUPT: bad checksum, type, sizes or contents; -ENOMEM) *out is NULL.
 */
int kv_block_decode(struct kv_slice stored, struct kv_block **out);

/*
 * True when the block at @offset of a mapped file is in memory right now
 * (mincore(2) of its pages), so that kv_block_read() of it will not wait
 * for the disk: false for a file that is not mapped, for a block of more
 * than 16 pages, and when in doubt. A page may still be evicted just after:
 * a hint for choosing the thread that reads, never for correctness.
 */
bool kv_block_resident(struct kv_file *f, uint64_t offset, uint64_t payload_size);

/*
 * Reads the block whose payload is @payload_size bytes at @offset of @f, and
 * decodes it as kv_block_decode(). Returns 0, KV_ECORRUPT, -ENOMEM or the
 * read's error; *out as for kv_block_decode(). Thread-safe (pread only).
 */
int kv_block_read(struct kv_file *f, uint64_t offset, uint64_t payload_size,
		  struct kv_block **out);

/*
 * As kv_block_decode() and kv_block_read(), for blocks whose contents are
 * not entries (the filter): the envelope is verified and the contents
 * inflated, but not parsed; data and size describe them, and a cursor over
 * such a block finds nothing.
 */
int kv_block_decode_unparsed(struct kv_slice stored, struct kv_block **out);
int kv_block_read_unparsed(struct kv_file *f, uint64_t offset, uint64_t payload_size,
			   struct kv_block **out);

/* Frees a block from kv_block_read() or kv_block_decode(); NULL is a no-op. */
void kv_block_free(struct kv_block *b);

/* ---- Cursors ------------------------------------------------------------------ */

#define KV_BLOCK_KEY_INLINE 128

/*
 * A forward position in a block. Caller-owned (usually on the stack, so a
 * point lookup allocates nothing unless a key exceeds KV_BLOCK_KEY_INLINE):
 * kv_block_cursor_init(), seek..., kv_block_cursor_release(). The block must
 * outlive the cursor. Keys and values are borrowed until the next move.
 */
struct kv_block_cursor {
	const struct kv_block *block;
	kv_cmp_fn cmp;
	uint32_t next;        /* offset of the entry after the current one */
	bool valid;
	int status;           /* 0, KV_ECORRUPT or -ENOMEM (sticky) */
	const uint8_t *value;
	uint32_t value_len;
	uint8_t *key;         /* key_inline or a heap buffer */
	size_t key_len, key_cap;
	uint8_t key_inline[KV_BLOCK_KEY_INLINE];
};

/* Prepares an unpositioned cursor over @b (which may be NULL until set). */
void kv_block_cursor_init(struct kv_block_cursor *c, const struct kv_block *b, kv_cmp_fn cmp);
/* Frees a key buffer that outgrew key_inline; @c can be initialised again. */
void kv_block_cursor_release(struct kv_block_cursor *c);
/*
 * The moves: to the first entry; to the first entry whose key is >= @target
 * by the comparator; to the next entry (requires valid). Afterwards valid
 * says whether the cursor is on an entry; at the end it is false with
 * status 0, on malformed contents false with status KV_ECORRUPT (-ENOMEM
 * if a long key found no memory), which then sticks for the cursor's life.
 */
void kv_block_cursor_seek_first(struct kv_block_cursor *c);
void kv_block_cursor_seek(struct kv_block_cursor *c, struct kv_slice target);
void kv_block_cursor_next(struct kv_block_cursor *c);

static inline bool kv_block_cursor_valid(const struct kv_block_cursor *c)
{
	return c->valid;
}
static inline struct kv_slice kv_block_cursor_key(const struct kv_block_cursor *c)
{
	return kv_slice_make(c->key, c->key_len);
}
static inline struct kv_slice kv_block_cursor_value(const struct kv_block_cursor *c)
{
	return kv_slice_make(c->value, c->value_len);
}

/*
 * A struct kv_iter over @b ordered by @cmp. @b must outlive the iterator;
 * when @owned, the iterator frees @b (a heap block) when destroyed. Returns
 * 0 or -ENOMEM (then *out is NULL and an owned block is not freed).
 */
int kv_block_iter_new(const struct kv_block *b, kv_cmp_fn cmp, bool owned, struct kv_iter **out);

#endif
