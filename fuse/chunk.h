/*
 * chunk.h - content-addressed chunks of large files (DESIGN §7 "Objects").
 *
 * A large file is cut into fixed-size chunks (KV_FS_CHUNK_SIZE, the last one
 * shorter); each chunk is stored once under a key derived from the
 * SHA-256 hash of its content (BLAKE2b-256 for chunks stored before), in a reserved key space that never starts
 * with '/'. The file's body holds the chunk manifest: the list of (hash,
 * length) of its chunks, a hash of all zeros standing for a hole (a run of
 * zero bytes that is not stored). This module hashes, names and verifies
 * chunks, encodes manifests and maps byte ranges onto chunks. Pure: no I/O.
 * Format: doc/fs-format.md#chunks.
 */
#ifndef KV_FS_CHUNK_H
#define KV_FS_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "util/slice.h"

/* Chunk size: 2^shift bytes. Writers use KV_FS_CHUNK_SHIFT; readers accept 20..22. */
#define KV_FS_CHUNK_SHIFT 22
#define KV_FS_CHUNK_SHIFT_MIN 20
#define KV_FS_CHUNK_SHIFT_MAX 22
#define KV_FS_CHUNK_SIZE ((uint32_t)1 << KV_FS_CHUNK_SHIFT)

/*
 * Hashes are 32 bytes: a chunk's name is the SHA-256 of its bytes
 * (proto/chunkhash.h; chunks stored before SHA-256 are named by BLAKE2b-256),
 * and an object's content_hash (object.h) is kv_fs_hash(), BLAKE2b-256.
 */
#define KV_FS_HASH_LEN 32

/* A chunk key: the two bytes 00 'c' then the content hash. */
#define KV_FS_CHUNK_KEY_PREFIX_LEN 2
#define KV_FS_CHUNK_KEY_LEN (KV_FS_CHUNK_KEY_PREFIX_LEN + KV_FS_HASH_LEN)

/* Manifest bounds: at most this many chunks, so a file of at most 256 GiB. */
#define KV_FS_MANIFEST_MAX_CHUNKS 65536u
#define KV_FS_MANIFEST_HEADER 8
#define KV_FS_MANIFEST_ENTRY (KV_FS_HASH_LEN + 4)
#define KV_FS_MANIFEST_FORMAT 1

/* Files up to this size are stored inline by default (writer's policy). */
#define KV_FS_INLINE_MAX ((uint64_t)64 << 10)

/*
 * Hashes @n bytes at @p into @out (BLAKE2b-256, unkeyed): an object's
 * content_hash. Chunks are named by kv_chunk_hash() instead. Never fails.
 * Thread-safe.
 */
void kv_fs_hash(const void *p, size_t n, uint8_t out[KV_FS_HASH_LEN]);

/* A streaming hash for content that arrives in pieces (same result as kv_fs_hash). */
struct kv_fs_hasher {
	crypto_generichash_state st;
};
void kv_fs_hasher_init(struct kv_fs_hasher *h);
void kv_fs_hasher_update(struct kv_fs_hasher *h, const void *p, size_t n);
void kv_fs_hasher_final(struct kv_fs_hasher *h, uint8_t out[KV_FS_HASH_LEN]);

/* True when @hash is all zeros: a hole in a manifest, never a stored chunk. */
bool kv_fs_hash_is_hole(const uint8_t hash[KV_FS_HASH_LEN]);

/* Writes the chunk key of @hash (KV_FS_CHUNK_KEY_LEN bytes) to @key. */
void kv_fs_chunk_key(const uint8_t hash[KV_FS_HASH_LEN], uint8_t key[KV_FS_CHUNK_KEY_LEN]);

/* True when @key lies in the chunk key space (starts with 00 'c'), whatever its length. */
bool kv_fs_key_is_chunk(struct kv_slice key);

/*
 * Parses a chunk key: returns 0 and writes its hash to @hash, or KV_EINVAL
 * when @key is not exactly 00 'c' followed by a non-zero hash (then @hash is
 * untouched).
 */
int kv_fs_chunk_key_parse(struct kv_slice key, uint8_t hash[KV_FS_HASH_LEN]);

/*
 * Checks that @data, as read from one replica, is the chunk named @hash
 * (kv_chunk_hash_check: SHA-256, or BLAKE2b-256 for an older chunk):
 * returns 0, KV_ECORRUPT when it is neither or it is longer than a chunk can
 * be (KV_FS_CHUNK_SIZE at the largest shift), or -ENOMEM.
 */
int kv_fs_chunk_verify(const uint8_t hash[KV_FS_HASH_LEN], struct kv_slice data);

/* Chunks a file of @size bytes takes at chunk size 2^@shift. */
uint64_t kv_fs_chunk_count(uint64_t size, unsigned shift);

/* ---- byte ranges ---- */

/* One chunk's share of a byte range. */
struct kv_fs_span {
	uint64_t index;      /* chunk number */
	uint32_t offset;     /* first byte of the range within the chunk */
	uint32_t len;        /* bytes of the range within the chunk, >= 1 */
	uint64_t file_offset; /* index * chunk size + offset */
};

/* Walks the chunks a byte range touches: kv_fs_range_init, then kv_fs_range_next. */
struct kv_fs_range {
	uint64_t pos, end;
	unsigned shift;
};

/*
 * Prepares to walk [@off, @off + @len) clamped to [0, @limit): pass the file
 * size as @limit for a read (nothing past the end), UINT64_MAX for a write.
 * Overflowing ranges are clamped, never wrapped. @shift must lie within
 * KV_FS_CHUNK_SHIFT_MIN..MAX (asserted).
 */
void kv_fs_range_init(struct kv_fs_range *r, uint64_t off, uint64_t len, uint64_t limit,
		      unsigned shift);

/* Writes the next span to @span and returns true, or returns false at the end. */
bool kv_fs_range_next(struct kv_fs_range *r, struct kv_fs_span *span);

/* ---- manifests ---- */

/* One chunk of a file: its content hash (all zeros: a hole) and length. */
struct kv_fs_chunk_ref {
	uint8_t hash[KV_FS_HASH_LEN];
	uint32_t len;
};

/*
 * The chunk list of a file. Well-formed when every chunk but the last is
 * 2^shift bytes long and the last is 1..2^shift bytes (kv_fs_manifest_check).
 * Caller-owned: kv_fs_manifest_init() / kv_fs_manifest_release().
 */
struct kv_fs_manifest {
	unsigned shift;
	struct kv_fs_chunk_ref *chunks;
	size_t n, cap;
};

/* Makes @m an empty manifest with chunk size 2^@shift. */
void kv_fs_manifest_init(struct kv_fs_manifest *m, unsigned shift);
/* Frees the chunk list and leaves @m empty (its shift kept). */
void kv_fs_manifest_release(struct kv_fs_manifest *m);

/* The file size @m describes: the sum of its chunk lengths. */
uint64_t kv_fs_manifest_size(const struct kv_fs_manifest *m);

/*
 * Appends a chunk (a hole when @hash is all zeros or NULL). Returns 0;
 * KV_EINVAL when @len is 0 or above the chunk size, or when the current last
 * chunk is not full (only the last chunk may be short); KV_ETOOBIG beyond
 * KV_FS_MANIFEST_MAX_CHUNKS; -ENOMEM. On failure @m is unchanged.
 */
int kv_fs_manifest_append(struct kv_fs_manifest *m, const uint8_t *hash, uint32_t len);

/* Returns 0 when @m is well-formed (see the struct), KV_EINVAL otherwise. */
int kv_fs_manifest_check(const struct kv_fs_manifest *m);

/*
 * Appends the encoding of the well-formed @m to @out (doc/fs-format.md).
 * Returns 0, KV_EINVAL for a malformed manifest, or -ENOMEM; on failure @out
 * is unchanged.
 */
int kv_fs_manifest_encode(const struct kv_fs_manifest *m, struct kv_buf *out);

/*
 * Decodes a manifest that fills all of @in into the initialized @out,
 * replacing its contents. Returns 0; KV_EVERSION for an unknown format;
 * KV_ECORRUPT for anything else malformed (bad magic, a shift out of range,
 * a count above its bound or not matching the length, a chunk length of 0,
 * above the chunk size, or short before the last); -ENOMEM. On failure @out
 * is unchanged. Pure: reads only the @in.n bytes at @in.p.
 */
int kv_fs_manifest_decode(struct kv_slice in, struct kv_fs_manifest *out);

#endif
