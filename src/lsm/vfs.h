/*
 * vfs.h - the file interface under the storage engine (DESIGN §6).
 *
 * Every byte the engine reads or writes goes through one struct kv_vfs, so
 * tests and the simulator can swap the real file system for one that crashes,
 * tears writes or fails on command. Two implementations:
 *
 *   kv_vfs_posix()   the real thing: open(2), pread(2), fsync(2), rename(2)...
 *   kv_vfs_mem_new() an in-memory file system with fault injection. It keeps,
 *                    for each file, the bytes written and the bytes made
 *                    durable by fsync; for each directory, the entries as they
 *                    are and as they were at the last directory fsync. A crash
 *                    throws away everything that was not durable.
 *
 * Paths are ordinary '/'-separated strings; the engine passes paths below the
 * directory it was opened on. All functions return 0 (or a byte count) on
 * success and a negative errno on failure. Each file handle is used by one
 * thread at a time, except pread, which may run concurrently with anything.
 */
#ifndef KV_LSM_VFS_H
#define KV_LSM_VFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kv_vfs;
struct kv_file;

/* Flags for kv_vfs_open(). */
enum {
	KV_VFS_READ = 0,       /* read only; the file must exist */
	KV_VFS_WRITE = 1 << 0, /* read and write */
	KV_VFS_CREATE = 1 << 1,
	KV_VFS_EXCL = 1 << 2,  /* with CREATE: fail with -EEXIST if it exists */
	KV_VFS_TRUNC = 1 << 3,
	/*
	 * Bulk data written once (chunk bodies): bypass the page cache where
	 * the file system allows it (O_DIRECT). Nothing else changes: pwrite
	 * takes any buffer, length and offset (what is not aligned goes
	 * through the page cache), and sync is still what makes it durable.
	 */
	KV_VFS_DIRECT = 1 << 4,
};

struct kv_file_ops {
	ssize_t (*pread)(struct kv_file *f, void *buf, size_t n, uint64_t off);
	/* Writes all @n bytes at @off or fails; returns 0. */
	int (*pwrite)(struct kv_file *f, const void *buf, size_t n, uint64_t off);
	/* Writes all @n bytes at the current end of file or fails; returns 0. */
	int (*append)(struct kv_file *f, const void *buf, size_t n);
	/* Makes the file's contents durable (not its directory entry). */
	int (*sync)(struct kv_file *f);
	int (*size)(struct kv_file *f, uint64_t *out);
	int (*truncate)(struct kv_file *f, uint64_t size);
	/* Closes and frees the handle, whatever it returns. */
	int (*close)(struct kv_file *f);
	/*
	 * Optional (NULL: not supported). A read-only mapping of the file as
	 * it is now; *len gets its length. The mapping stays valid until the
	 * handle is closed; safe to call from many threads. Only for files that
	 * no longer change (tables): bytes past *len are read with pread.
	 * Returns NULL when the file cannot be mapped.
	 */
	const uint8_t *(*map)(struct kv_file *f, uint64_t *len);
	/*
	 * Optional (NULL: nothing to do). Starts writing @n bytes at @off to
	 * the device without waiting for them: a hint that keeps a long
	 * sequential write from piling up in the page cache and then in
	 * front of everyone else's sync. Only sync makes anything durable.
	 */
	int (*writeback)(struct kv_file *f, uint64_t off, uint64_t n);
};

struct kv_file {
	const struct kv_file_ops *ops;
};

struct kv_vfs_ops {
	int (*open)(struct kv_vfs *vfs, const char *path, int flags, struct kv_file **out);
	/* Atomically replaces @to with @from (durable after kv_vfs_sync_dir). */
	int (*rename)(struct kv_vfs *vfs, const char *from, const char *to);
	int (*remove)(struct kv_vfs *vfs, const char *path);
	int (*mkdir)(struct kv_vfs *vfs, const char *path);
	/* Makes the directory's entries durable: creations, renames, removals. */
	int (*sync_dir)(struct kv_vfs *vfs, const char *path);
	/*
	 * Lists the names in a directory (no "." or ".."). On success *names is a
	 * malloc'd array of *count malloc'd strings; free with kv_vfs_names_free().
	 */
	int (*list)(struct kv_vfs *vfs, const char *path, char ***names, size_t *count);
	/* 0 if @path exists, -ENOENT if not. */
	int (*exists)(struct kv_vfs *vfs, const char *path);
	/*
	 * Takes an exclusive lock on the file at @path (created if missing), held
	 * until the returned handle is closed. -EBUSY (KV_EBUSY is not used here)
	 * when another process or handle holds it.
	 */
	int (*lock)(struct kv_vfs *vfs, const char *path, struct kv_file **out);
	/* Frees the vfs object (no-op for the static posix one). */
	void (*destroy)(struct kv_vfs *vfs);
};

struct kv_vfs {
	const struct kv_vfs_ops *ops;
};

/* Thin wrappers, so callers read naturally. */
static inline int kv_vfs_open(struct kv_vfs *v, const char *path, int flags, struct kv_file **out)
{
	return v->ops->open(v, path, flags, out);
}
static inline int kv_vfs_rename(struct kv_vfs *v, const char *from, const char *to)
{
	return v->ops->rename(v, from, to);
}
static inline int kv_vfs_remove(struct kv_vfs *v, const char *path)
{
	return v->ops->remove(v, path);
}
/*
 * Removes @path after truncating it KV_VFS_REMOVE_STEP bytes at a time, 1 ms
 * apart: on a file system mounted with "discard" an unlink trims the whole
 * file at once and the device serves nothing else meanwhile; this spreads
 * the trims out (db_recycle.c has the figures). Returns kv_vfs_remove's
 * result; a file that cannot be opened or truncated is simply removed.
 * Blocks for about 1 ms per step: never on a latency-critical thread.
 */
#define KV_VFS_REMOVE_STEP (1u << 20)
int kv_vfs_remove_gently(struct kv_vfs *v, const char *path);
static inline int kv_vfs_mkdir(struct kv_vfs *v, const char *path)
{
	return v->ops->mkdir(v, path);
}
static inline int kv_vfs_sync_dir(struct kv_vfs *v, const char *path)
{
	return v->ops->sync_dir(v, path);
}
static inline int kv_vfs_list(struct kv_vfs *v, const char *path, char ***names, size_t *count)
{
	return v->ops->list(v, path, names, count);
}
static inline int kv_vfs_exists(struct kv_vfs *v, const char *path)
{
	return v->ops->exists(v, path);
}
static inline int kv_vfs_lock(struct kv_vfs *v, const char *path, struct kv_file **out)
{
	return v->ops->lock(v, path, out);
}
static inline void kv_vfs_destroy(struct kv_vfs *v)
{
	if (v && v->ops->destroy)
		v->ops->destroy(v);
}

static inline ssize_t kv_file_pread(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	return f->ops->pread(f, buf, n, off);
}
static inline int kv_file_pwrite(struct kv_file *f, const void *buf, size_t n, uint64_t off)
{
	return f->ops->pwrite(f, buf, n, off);
}
static inline int kv_file_append(struct kv_file *f, const void *buf, size_t n)
{
	return f->ops->append(f, buf, n);
}
static inline int kv_file_sync(struct kv_file *f)
{
	return f->ops->sync(f);
}
static inline int kv_file_writeback(struct kv_file *f, uint64_t off, uint64_t n)
{
	return f->ops->writeback ? f->ops->writeback(f, off, n) : 0;
}
static inline int kv_file_size(struct kv_file *f, uint64_t *out)
{
	return f->ops->size(f, out);
}
static inline int kv_file_truncate(struct kv_file *f, uint64_t size)
{
	return f->ops->truncate(f, size);
}
/* The file's read-only mapping, or NULL (see kv_file_ops.map). */
static inline const uint8_t *kv_file_map(struct kv_file *f, uint64_t *len)
{
	return f->ops->map ? f->ops->map(f, len) : NULL;
}
static inline int kv_file_close(struct kv_file *f)
{
	return f ? f->ops->close(f) : 0;
}

void kv_vfs_names_free(char **names, size_t count);

/*
 * Reads exactly @n bytes at @off: returns 0, a negative errno, or
 * KV_ECORRUPT when the file ends first.
 */
int kv_file_read_exact(struct kv_file *f, void *buf, size_t n, uint64_t off);

/* The process-wide POSIX file system. Never freed. */
struct kv_vfs *kv_vfs_posix(void);

/* ---- The in-memory, fault-injecting file system ------------------------ */

/*
 * The model (what the crash tests prove durability against):
 *
 * - Every file and directory is an inode. A file has its current bytes and
 *   its durable bytes (as of its last fsync). A directory maps each name to
 *   an inode twice: as it is now, and as it was at the last sync_dir of that
 *   directory. Reads (pread, size, list, exists) see the current state.
 * - open with CREATE, mkdir, rename and remove change a directory's current
 *   entries only; sync_dir of that directory makes them durable (a rename
 *   across directories needs both synced). TRUNC, pwrite, append and truncate
 *   change a file's current bytes only; sync on any handle makes them durable.
 *   An inode lives while any current or durable entry, or a handle, names it:
 *   a removed file that is still durably linked comes back on a crash with
 *   its durable bytes.
 * - Paths are '/'-separated; duplicate and trailing slashes and "." are
 *   ignored, ".." goes up (never above the root). Relative paths start at the
 *   root ("a/b" and "/a/b" are the same file; "." and "/" are the root, which
 *   always exists). "" is -ENOENT.
 * - Locks are per inode, exclusive among the handles of one vfs.
 * - Modifying operations, the ones counted by kv_vfs_mem_ops() and subject to
 *   fail_next and crash_after: pwrite, append, sync, truncate, open with WRITE,
 *   CREATE or TRUNC, lock, rename, remove, mkdir, sync_dir. Every call counts
 *   once, whether it then succeeds or fails. pread, size, list, exists and
 *   close never count and never fail by injection.
 * - Thread-safe: one mutex guards the whole vfs. Calls on a handle that a
 *   crash made stale return -EIO; close still frees them.
 */

/* A new file system holding only its root. Free with kv_vfs_destroy(),
 * which also frees handles left open (they must not be used afterwards). */
struct kv_vfs *kv_vfs_mem_new(void);

/*
 * Simulates a power cut: every directory's entries become its durable
 * entries (files created since its last sync_dir vanish; renamed and removed
 * names come back as they were), and every file's contents become its
 * durable contents (a file whose entry is durable but which was never
 * fsynced comes back empty). Whatever the root no longer reaches is freed.
 * Open handles become stale: every call on them returns -EIO (close still
 * frees them). Locks are released; an armed tear, fail_next and crash_after,
 * and a trip, are cleared. The operation counter keeps counting.
 */
void kv_vfs_mem_crash(struct kv_vfs *vfs);

/*
 * Makes the next write (pwrite or append) store only its first @keep bytes
 * (all of them if it is shorter), make the file's whole current contents
 * durable as if the power went out just after those bytes reached the
 * platter, and fail with -EIO: a torn write. Call kv_vfs_mem_crash()
 * afterwards to simulate the rest of the power cut. A write that an injected
 * failure stops first does not consume the tear.
 */
void kv_vfs_mem_tear_next_write(struct kv_vfs *vfs, size_t keep);

/*
 * The next @count modifying operations (see above) fail with @err (-EIO or
 * -ENOSPC; a positive errno is negated, 0 means -EIO) and change nothing.
 */
void kv_vfs_mem_fail_next(struct kv_vfs *vfs, unsigned count, int err);

/*
 * "The machine dies" at the @nth modifying operation from now (1 = the very
 * next): that operation and every later one fail with -EIO and change
 * nothing, until kv_vfs_mem_crash() or kv_vfs_mem_recover(). It does not
 * crash by itself: reads keep seeing the current state, so the test can
 * stop its threads, call kv_vfs_mem_crash() and reopen. 0 disables. Lets a
 * test crash "at every interesting point" by sweeping @nth from 1 to the
 * kv_vfs_mem_ops() of a clean run.
 */
void kv_vfs_mem_crash_after(struct kv_vfs *vfs, uint64_t nth);

/* True once crash_after has fired (until crash or recover). */
bool kv_vfs_mem_tripped(struct kv_vfs *vfs);

/* Clears a trip and any pending crash_after, without crashing. */
void kv_vfs_mem_recover(struct kv_vfs *vfs);

/* Modifying operations attempted so far (what crash_after counts). */
uint64_t kv_vfs_mem_ops(struct kv_vfs *vfs);

/*
 * Flips bit @bit (0..7) of the byte at @off of the file at @path, in its
 * current and in its durable contents, wherever the file is that long (bit
 * rot). Not a modifying operation. Returns 0, -ENOENT, -EISDIR, or -EINVAL
 * when @bit > 7 or @off lies past both contents.
 */
int kv_vfs_mem_flip_bit(struct kv_vfs *vfs, const char *path, uint64_t off, unsigned bit);

/*
 * Cuts the current and the durable contents of the file at @path to at most
 * @size bytes (lost sectors; never extends). Not a modifying operation.
 * Returns 0, -ENOENT or -EISDIR.
 */
int kv_vfs_mem_truncate_file(struct kv_vfs *vfs, const char *path, uint64_t size);

/* Total bytes accepted by pwrite and append (torn writes count what they
 * kept), for write-amplification figures. */
uint64_t kv_vfs_mem_bytes_written(struct kv_vfs *vfs);

#endif
