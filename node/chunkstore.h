/*
 * chunkstore.h - chunk bodies in files, outside the LSM (DESIGN §6
 * "key-value separation", §7 "Chunks"; issue 5).
 *
 * A replica keeps each chunk's body in one immutable file named by the
 * chunk's hash, DIR/XX/<64 hex> (XX = the hash's first byte), holding the
 * node's stored form of the chunk (node/node.h, kv_node_chunk_body_split()):
 * "KVC2" ‖ le32 length ‖ le64 XXH3-64 ‖ bytes, or the older "KVCK" ‖ le32
 * length ‖ bytes, which it still accepts. The small chunk record (age, gc
 * mark) stays in the LSM. A body is written once
 * (temp file, write, fdatasync, rename, fsync of the directory) and never
 * rewritten by compaction. Format and crash rules: doc/storage-format.md
 * "Chunk store"; how the node uses it: doc/node.md "Chunks and reclamation".
 *
 * Every file access goes through a struct kv_vfs (src/lsm/vfs.h), so crash
 * tests can drop unsynced data. Thread-safe: any call may run on any thread,
 * concurrently with any other (each call uses its own file handles).
 */
#ifndef KV_NODE_CHUNKSTORE_H
#define KV_NODE_CHUNKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/vfs.h"
#include "util/slice.h"

#define KV_CHUNKSTORE_HASH_LEN 32

struct kv_chunkstore;

/* What kv_chunkstore_open() found and did. */
struct kv_chunkstore_open_report {
	uint64_t temps_removed; /* unfinished writes of a previous run */
	uint64_t strays;        /* names that are neither bodies nor temp files (left alone) */
};

/*
 * Opens (creating when missing, with its 256 subdirectories, durably) the
 * chunk store in @dir of @vfs (borrowed; it must outlive the store) and
 * removes the temp files an interrupted write left behind. Bodies longer
 * than @max_bytes (the chunk limit, without the header) are refused on put
 * and reported corrupt on get. On success *out owns the store (free with
 * kv_chunkstore_close()); @rep, when not NULL, is filled. Returns 0 or a
 * negative errno; on failure *out is NULL.
 */
int kv_chunkstore_open(struct kv_vfs *vfs, const char *dir, size_t max_bytes,
		       struct kv_chunkstore **out, struct kv_chunkstore_open_report *rep);

/* Frees the store. NULL is fine. No call may be in flight. */
void kv_chunkstore_close(struct kv_chunkstore *cs);

/*
 * Stores @stored (a stored form, borrowed: "KVC2" ‖ le32 n ‖ le64 XXH3-64 ‖
 * n bytes, or "KVCK" ‖ le32 n ‖ n bytes) as the body of @hash,
 * put-if-absent, and returns once it is durable:
 * 0 when it was written, 1 when a body of that size was there already
 * (nothing written), KV_EINVAL when @stored is not a well-formed stored
 * form within the limit, or a negative errno (then no body was added; a
 * temp file may remain until the next open). The caller checks that the
 * bytes hash to @hash and computes the checksum; the store checks neither.
 */
int kv_chunkstore_put(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN],
		      struct kv_slice stored);

/*
 * Reads the body of @hash into @out (reset first; the caller owns it and
 * frees it with kv_buf_release()): exactly the file, one chunk at most.
 * Returns 0; KV_ENOTFOUND; KV_ECORRUPT when the file is shorter than its
 * header says, longer, above the limit or without either magic (then @out
 * is empty); or a negative errno. The caller checks the checksum or hash.
 */
int kv_chunkstore_get(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN],
		      struct kv_buf *out);

/*
 * With @sync false (the node's sync=none), puts and deletes skip the
 * fdatasync and the directory fsync: acknowledged bodies may be lost, or
 * left damaged, by a power cut, as the commit log's records are under that
 * policy; reads still check every body (a damaged one is KV_ECORRUPT).
 * The default is true.
 */
void kv_chunkstore_set_sync(struct kv_chunkstore *cs, bool sync);

/* 0 when a body of @hash exists, KV_ENOTFOUND when not, or a negative errno. */
int kv_chunkstore_exists(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN]);

/*
 * Removes the body of @hash, durably (the directory is synced). Returns 0,
 * KV_ENOTFOUND when there was none (nothing to do), or a negative errno.
 */
int kv_chunkstore_delete(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN]);

/*
 * Calls @fn(@arg, hash) for every body in the store, in no particular
 * order; stops at the first non-zero return of @fn and returns it. Returns
 * 0 or a negative errno of a directory listing. Bodies added or removed
 * while it runs may or may not be seen.
 */
int kv_chunkstore_each(struct kv_chunkstore *cs,
		       int (*fn)(void *arg, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN]), void *arg);

/* Counters since open (relaxed; for STATS). */
struct kv_chunkstore_stats {
	uint64_t puts;          /* bodies written */
	uint64_t puts_existing; /* puts that found the body there */
	uint64_t bytes_written; /* stored-form bytes written */
	uint64_t gets;
	uint64_t deletes;
};

void kv_chunkstore_get_stats(struct kv_chunkstore *cs, struct kv_chunkstore_stats *out);

#endif
