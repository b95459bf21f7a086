/*
 * manifest.h - the manifest: which SSTables are live, and the counters the
 * engine needs to reopen (DESIGN §6).
 *
 * The manifest is one small file, MANIFEST, rewritten whole on every change
 * and replaced atomically: write MANIFEST.tmp, fsync it, rename it over
 * MANIFEST, fsync the directory. A crash at any point leaves the old or the
 * new manifest, never a mixture. The file carries a magic number, a format
 * version and a checksum over every byte, and is decoded strictly.
 *
 * Format: doc/storage-format.md#manifest
 */
#ifndef KV_LSM_MANIFEST_H
#define KV_LSM_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "lsm/vfs.h"
#include "util/slice.h"

#define KV_MANIFEST_NAME "MANIFEST"
#define KV_MANIFEST_TMP_NAME "MANIFEST.tmp"

#define KV_MANIFEST_MAJOR 1 /* a reader refuses a larger major version */
#define KV_MANIFEST_MINOR 0 /* compatible additions: new property names */

#define KV_MANIFEST_LEVELS 7             /* levels 0..6 */
#define KV_MANIFEST_MAX_KEY (64u * 1024 + 8) /* an internal key: user key + trailer */
#define KV_MANIFEST_MAX_TABLES 1000000u
#define KV_MANIFEST_MAX_PROPS 256u
#define KV_MANIFEST_MAX_PROP_NAME 32u
#define KV_MANIFEST_MAX_BYTES (256u << 20) /* a larger file is corrupt */

/* One live SSTable. */
struct kv_manifest_table {
	unsigned level;        /* 0 .. KV_MANIFEST_LEVELS-1 */
	uint64_t file_number;  /* names the table file */
	uint64_t file_size;    /* bytes */
	uint64_t entries;      /* internal keys in the table */
	struct kv_buf smallest; /* smallest internal key (owned) */
	struct kv_buf largest;  /* largest internal key (owned) */
};

/* A named u64 the engine keeps across restarts (epoch, counter lease...). */
struct kv_manifest_prop {
	char name[KV_MANIFEST_MAX_PROP_NAME + 1]; /* 1..32 bytes of '!'..'~' */
	uint64_t value;
};

/*
 * The decoded manifest. The caller owns it: kv_manifest_init() before use,
 * kv_manifest_release() after. Tables and properties keep their order
 * through encode and decode. Properties whose names the engine does not know
 * (written by a newer minor version) are kept and written back unchanged.
 */
struct kv_manifest {
	uint64_t next_file_number; /* every live file's number is below this */
	uint64_t last_sequence;    /* the largest sequence number in use */
	uint64_t log_number;       /* recovery replays every log >= this */
	unsigned minor_version;    /* as read; informational */
	struct kv_manifest_prop *props;
	size_t nprops, props_cap;
	struct kv_manifest_table *tables;
	size_t ntables, tables_cap;
};

/* An empty manifest: no tables, no properties, counters 0. */
void kv_manifest_init(struct kv_manifest *m);

/* Frees everything @m owns and leaves it empty (as after init). */
void kv_manifest_release(struct kv_manifest *m);

/*
 * Makes @dst a deep copy of @src. @dst must be empty (initialised or
 * released). Returns 0, or -ENOMEM (@dst left empty).
 */
int kv_manifest_copy(struct kv_manifest *dst, const struct kv_manifest *src);

/*
 * Appends a table, copying both keys. Returns 0; KV_EINVAL for a level out
 * of range, a key that is not an internal key (under 8 bytes, over
 * KV_MANIFEST_MAX_KEY, or a bad type byte), smallest > largest, a file
 * number already present, or too many tables; -ENOMEM. On failure @m is
 * unchanged.
 */
int kv_manifest_add_table(struct kv_manifest *m, unsigned level, uint64_t file_number,
			  uint64_t file_size, uint64_t entries, struct kv_slice smallest,
			  struct kv_slice largest);

/* Removes the table @file_number (keeping the others' order): 0 or KV_ENOTFOUND. */
int kv_manifest_remove_table(struct kv_manifest *m, uint64_t file_number);

/* The table @file_number, borrowed from @m (valid until @m changes), or NULL. */
const struct kv_manifest_table *kv_manifest_find_table(const struct kv_manifest *m,
						       uint64_t file_number);

/*
 * Sets property @name (1..32 bytes of printable ASCII, no space) to @value,
 * adding it if missing. Returns 0, KV_EINVAL (bad name, or too many), -ENOMEM.
 */
int kv_manifest_set_prop(struct kv_manifest *m, const char *name, uint64_t value);

/* Reads property @name into *value: 0 or KV_ENOTFOUND (*value unchanged). */
int kv_manifest_get_prop(const struct kv_manifest *m, const char *name, uint64_t *value);

/*
 * Appends the encoded manifest to @out (the caller owns @out). Returns 0,
 * KV_EINVAL if @m breaks a rule decode would reject (so nothing unreadable is
 * ever written), or -ENOMEM. On failure @out is as it was.
 */
int kv_manifest_encode(const struct kv_manifest *m, struct kv_buf *out);

/*
 * Decodes @in into @out, which is initialised here (pass an empty or
 * uninitialised struct: anything in it is overwritten, not freed). Returns 0;
 * KV_ECORRUPT for any malformed, truncated or over-long input, or a checksum
 * mismatch; KV_EVERSION for a major version newer than KV_MANIFEST_MAJOR;
 * -ENOMEM. On failure @out is left empty. Never reads outside @in, and
 * allocates no more than a small multiple of @in.n.
 */
int kv_manifest_decode(struct kv_slice in, struct kv_manifest *out);

/*
 * Replaces @dir/MANIFEST with @m atomically and durably: writes
 * @dir/MANIFEST.tmp, fsyncs it, renames it over MANIFEST, fsyncs @dir.
 * Returns 0 (and, if @bytes is not NULL, the file's size in *bytes) or the
 * first error (KV_EINVAL as for encode, a negative errno). After a failure,
 * a crash may leave either the old or the new manifest: keep every file
 * either one names until a later store succeeds.
 */
int kv_manifest_store(struct kv_vfs *vfs, const char *dir, const struct kv_manifest *m,
		      uint64_t *bytes);

/*
 * Reads @dir/MANIFEST into @out (initialised here, as for decode). A leftover
 * @dir/MANIFEST.tmp (an interrupted store) is ignored and removed, best
 * effort, so call it only while no store can run (at open, under the
 * engine's lock). Returns 0; KV_ENOTFOUND when there is no manifest (a fresh
 * directory); KV_ECORRUPT; KV_EVERSION; a negative errno. On failure @out is
 * left empty.
 */
int kv_manifest_load(struct kv_vfs *vfs, const char *dir, struct kv_manifest *out);

#endif
