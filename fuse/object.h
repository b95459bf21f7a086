/*
 * object.h - the file object stored at a path key (DESIGN §7 "Objects").
 *
 * Each version of a path key carries the object's metadata in its version
 * METADATA part (struct kv_version.meta): type, mode, owner, size, times,
 * symlink target, xattrs, how the content is stored and a hash of the body.
 * The version BODY holds the content: the bytes of a small file (inline) or
 * the chunk manifest of a large one (fuse/chunk.h). So a LIST, which carries
 * metadata only, answers stat and getxattr without reading any body.
 * Tombstones carry empty metadata. Pure codecs and helpers, no I/O.
 * Format: doc/fs-format.md.
 */
#ifndef KV_FS_OBJECT_H
#define KV_FS_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse/chunk.h"
#include "util/slice.h"

/* Object types. */
enum {
	KV_FS_FILE = 1,
	KV_FS_DIR = 2,
	KV_FS_SYMLINK = 3,
};

/* Where the content is (the version body). */
enum {
	KV_FS_STORE_NONE = 0,    /* no body: directories and symlinks */
	KV_FS_STORE_INLINE = 1,  /* the body is the file's bytes */
	KV_FS_STORE_CHUNKED = 2, /* the body is a chunk manifest */
};

#define KV_FS_META_FORMAT 1
/* Bytes before the symlink target. */
#define KV_FS_META_FIXED 72
/* The largest encoded metadata: the protocol's PUT metadata limit. */
#define KV_FS_META_MAX ((size_t)64 << 10)
/* A symlink target: 1..4095 bytes, no NUL (PATH_MAX less the NUL). */
#define KV_FS_TARGET_MAX 4095
/* Xattr names: 1..255 bytes, no NUL (XATTR_NAME_MAX). */
#define KV_FS_XATTR_NAME_MAX 255
/* The xattr section (count and entries), so that the whole stays within KV_FS_META_MAX. */
#define KV_FS_XATTRS_MAX (KV_FS_META_MAX - KV_FS_META_FIXED - 2 - KV_FS_TARGET_MAX)
/* An inline file is at most one value (DESIGN §4 "Limits"); writers inline
 * up to KV_FS_INLINE_MAX. */
#define KV_FS_INLINE_HARD_MAX ((uint64_t)4 << 20)
/* The largest chunked file. */
#define KV_FS_FILE_MAX ((uint64_t)KV_FS_MANIFEST_MAX_CHUNKS << KV_FS_CHUNK_SHIFT_MAX)
/* Permission bits kept in the mode; the type is its own field. */
#define KV_FS_MODE_MASK 07777u

/*
 * An object's metadata. @target and @xattrs borrow: after kv_fs_meta_decode()
 * they point into the decoded bytes, and the caller who fills one for
 * kv_fs_meta_encode() keeps their bytes alive. @xattrs is an xattr section
 * (see kv_fs_xattr_*); an empty slice means no xattrs.
 */
struct kv_fs_meta {
	uint8_t type;     /* KV_FS_FILE, KV_FS_DIR or KV_FS_SYMLINK */
	uint8_t storage;  /* KV_FS_STORE_* */
	uint16_t mode;    /* permission bits only (KV_FS_MODE_MASK) */
	uint32_t uid, gid;
	uint64_t size;    /* file: bytes; symlink: target length; directory: 0 */
	int64_t mtime_ns, ctime_ns;
	uint8_t content_hash[KV_FS_HASH_LEN]; /* kv_fs_hash() of the body; zeros for STORE_NONE */
	struct kv_slice target; /* symlink target; empty otherwise */
	struct kv_slice xattrs; /* xattr section; empty = none */
};

/*
 * Validates @m and appends its canonical encoding to @out. Rules (also the
 * decoder's): a file is STORE_INLINE (size <= KV_FS_INLINE_HARD_MAX) or
 * STORE_CHUNKED (1 <= size <= KV_FS_FILE_MAX); a directory is STORE_NONE with
 * size 0; a symlink is STORE_NONE with a target of 1..KV_FS_TARGET_MAX bytes
 * without NUL and size equal to its length; only symlinks have a target;
 * STORE_NONE has an all-zero content hash; mode has no bits outside
 * KV_FS_MODE_MASK; the xattr section is well-formed (kv_fs_xattr_check).
 * Returns 0, KV_EINVAL for a broken rule, KV_ETOOBIG when the encoding would
 * exceed KV_FS_META_MAX, or -ENOMEM; on failure @out is unchanged.
 */
int kv_fs_meta_encode(const struct kv_fs_meta *m, struct kv_buf *out);

/*
 * Decodes metadata that fills all of @in into *out: target and xattrs borrow
 * from @in. Returns 0; KV_EVERSION for an unknown format byte; KV_ECORRUPT
 * for anything else malformed (bad magic, a broken rule of
 * kv_fs_meta_encode(), a length above its bound, trailing bytes), leaving
 * *out unset. Allocates nothing: a pure function over the buffer.
 */
int kv_fs_meta_decode(struct kv_slice in, struct kv_fs_meta *out);

/*
 * Checks a version's body against its decoded metadata: STORE_NONE wants an
 * empty body; otherwise the body's hash must equal content_hash, and an
 * inline body must be @m->size bytes, a chunked one a manifest (decoded into
 * @manifest when it is not NULL; it must be initialized) whose size is
 * @m->size. Returns 0, KV_ECORRUPT, KV_EVERSION (an unknown manifest
 * format) or -ENOMEM.
 */
int kv_fs_meta_check_body(const struct kv_fs_meta *m, struct kv_slice body,
			  struct kv_fs_manifest *manifest);

/*
 * Sets content_hash and size of a file's @m from its new @body (inline
 * content, or an encoded manifest of @size bytes for STORE_CHUNKED), and
 * @m->storage to @storage. Never fails; pass what kv_fs_meta_encode accepts.
 */
void kv_fs_meta_set_body(struct kv_fs_meta *m, uint8_t storage, struct kv_slice body,
			 uint64_t size);

/* ---- xattrs ----
 *
 * An xattr section: count:le16, then count entries
 *     name_len:u8 (1..255)  name  value_len:le16  value
 * with names strictly ascending (bytewise) and free of NUL, the whole at most
 * KV_FS_XATTRS_MAX bytes. An empty slice is an empty section. The functions
 * below return negative errnos as the xattr system calls do, so the mount can
 * pass them on.
 */

/* Returns 0 when @section is well-formed, KV_ECORRUPT otherwise. */
int kv_fs_xattr_check(struct kv_slice section);

/* Number of xattrs in the well-formed @section. */
size_t kv_fs_xattr_count(struct kv_slice section);

/*
 * Looks up @name in the well-formed @section: returns 0 and borrows its value
 * into *value (pointing into @section), or -ENODATA.
 */
int kv_fs_xattr_get(struct kv_slice section, struct kv_slice name, struct kv_slice *value);

/* Flags of kv_fs_xattr_set(), with the values of <sys/xattr.h>. */
enum {
	KV_FS_XATTR_CREATE = 1,  /* fail with -EEXIST when the name exists */
	KV_FS_XATTR_REPLACE = 2, /* fail with -ENODATA when it does not */
};

/*
 * Replaces the contents of @out with @section plus @name = @value. Returns 0;
 * -EINVAL for an empty name or one with a NUL, or both flags; -ERANGE for a
 * name above KV_FS_XATTR_NAME_MAX; -EEXIST / -ENODATA as the flags say;
 * -ENOSPC when the section would exceed KV_FS_XATTRS_MAX; -EIO for a
 * malformed @section; -ENOMEM. On
 * failure @out is unchanged. @out must not hold @section's bytes.
 */
int kv_fs_xattr_set(struct kv_slice section, struct kv_slice name, struct kv_slice value,
		    int flags, struct kv_buf *out);

/*
 * Replaces the contents of @out with @section without @name. Returns 0,
 * -ENODATA when it is absent, -EIO for a malformed @section, or -ENOMEM; on
 * failure @out is unchanged.
 */
int kv_fs_xattr_remove(struct kv_slice section, struct kv_slice name, struct kv_buf *out);

/*
 * Appends the names of @section to @out, each followed by a NUL, as
 * listxattr(2) returns them. Returns the bytes appended or -ENOMEM.
 */
int kv_fs_xattr_list(struct kv_slice section, struct kv_buf *out);

#endif
