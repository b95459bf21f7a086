/*
 * fs_int.h - the mount's private state (DESIGN §7): the inode table, the
 * directories' last listings, and the per-inode data state (staging file,
 * chunk map, causal context). Shared by fs.c (metadata and names), fs_data.c
 * (the data path) and kvfs.c (main). Design note: doc/fs.md.
 *
 * Locks, always taken in this order: fs->ns_lock (namespace changes), then
 * ino->dlock (one inode's data), then fs->lock (tables, attributes, listings;
 * never held across a network call), then fs->wb_lock (the write-behind
 * unlink queue: last of all, never across a network call). An open
 * directory's lock (fs_dir.c) comes before fs->lock, never after.
 */
#ifndef KV_FS_INT_H
#define KV_FS_INT_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "client/client.h"
#include "fuse/chunk.h"
#include "fuse/object.h"
#include "fuse/siblings.h"
#include "util/slice.h"
#include "version/siblings.h"

/* The reserved hidden directory at the root (intents of directory renames). */
#define FS_RESERVED_DIR ".kvfs"
#define FS_INTENT_DIR "/.kvfs/intents"
#define FS_LEASE_DIR "/.kvfs/leases"

/*
 * Read-ahead (fs_data.c): threads that fetch chunks ahead of a sequential
 * reader, and how many chunk hashes may wait for them.
 */
#define FS_PREFETCH_THREADS 3
#define FS_PREFETCH_QUEUE 8

/* Per-chunk state of an inode's data (struct fs_data.cstate). */
enum {
	FS_CHUNK_BASE = 0,   /* as the base manifest says (a hash or a hole); not local */
	FS_CHUNK_DIRTY = 1,  /* the staging file holds newer bytes */
	FS_CHUNK_CLEAN = 2,  /* the staging file holds the base chunk's bytes */
	FS_CHUNK_SENDING = 3, /* staging holds newer bytes; a background upload of them runs */
	FS_CHUNK_SENT = 4,   /* staging holds newer bytes, already stored as chunk sent[i] */
	FS_CHUNK_MEM = 5,    /* newer bytes in the write buffer (wbuf), not staged */
	FS_CHUNK_MSENDING = 6, /* a background upload runs from its own buffer, not staged */
	FS_CHUNK_STORED = 7, /* stored as chunk sent[i] from memory; held nowhere locally */
};

/*
 * Background uploads one writing inode keeps in flight: a chunk that a
 * sequential writer has filled is hashed and stored while the kernel fills
 * the next ones, so the flush waits only for what is in flight (fs_data.c).
 */
#define FS_UPLOAD_AHEAD 3
struct fs_upload_job;

/*
 * The data of an inode while something uses it (open files, setattr).
 * Guarded by the owning inode's dlock.
 */
struct fs_data {
	int users;                    /* open handles + internal users */
	struct kv_ctx ctx;            /* the context of the next put (DESIGN §7 "Writing") */
	struct kv_buf meta_raw;       /* the metadata to write: type, mode, owner, times, xattrs */
	struct kv_fs_meta meta;       /* decoded meta_raw (slices point into it) */
	uint64_t size;                /* current size */
	struct kv_fs_manifest base;   /* chunks of the version opened (inline: one staged chunk) */
	uint8_t *cstate;              /* FS_CHUNK_* per chunk index */
	uint8_t (*sent)[KV_FS_HASH_LEN]; /* per chunk index: the hash of a SENT chunk (zeros: a hole) */
	size_t ncstate;
	struct fs_upload_job *jobs[FS_UPLOAD_AHEAD]; /* background uploads, oldest first */
	size_t njobs;
	uint64_t sent_since_ns;       /* start of the oldest upload behind a SENT chunk; 0: none */
	uint8_t *wbuf;                /* the MEM chunk's bytes (a chunk buffer), or NULL */
	uint64_t wbuf_index;          /* its chunk index */
	uint32_t wbuf_len;            /* bytes written into it; the rest reads as zeros */
	int werr;                     /* a MEM chunk's upload failed and was kept nowhere: -errno */
	int staging_fd;               /* sparse temp file, -1 until needed */
	bool dirty;                   /* a put is due */
	bool retry;                   /* the last put failed and nothing changed since */
	bool pending;                 /* a put failed: re-send it (req_id) before any other */
	uint8_t req_id[KV_REQUEST_ID_LEN];
	struct kv_buf pending_meta, pending_body; /* what the failed put sent */
	struct kv_ctx pending_ctx;    /* and with which context */
	uint64_t last_read_end;       /* sequential read detection */
	char pin_key[64];             /* "" or the lease object of an open, unlinked file */
	struct kv_ctx pin_ctx;        /* its context, to delete it at the last release */
};

/* A directory entry as the last listing (or a later GET) gave it. */
struct fs_dent {
	char *name;          /* stored name, NUL-terminated */
	size_t len;
	struct kv_dvv set;   /* versions (bodies empty) and context */
	uint64_t fetched_ns; /* when it was read; 0 = stale, re-read before trusting */
	uint64_t stale_ns;   /* when this mount last changed it (a read-ahead page asked
			      * for before then leaves it alone); 0 = never */
	int8_t child;        /* tombstones only: has a live child? -1 unknown, 0, 1 */
	uint64_t child_ns;   /* when @child was checked (a listing keeps it for
			      * attr_timeout while the versions stay the same) */
	uint64_t emptied_ns; /* tombstones only: when this mount unlinked a child of
			      * this removed directory (fs_note_emptied); 0 = never */
	bool has_own;        /* this mount wrote the name since it was last read: */
	struct kv_ctx own_ctx; /* the context that write returned */
};

/* A directory's last listing (DESIGN §7: sibling names resolve against it). */
struct fs_dir {
	struct fs_dent *d;   /* sorted by name (bytewise) */
	size_t n, cap;
	uint64_t listed_ns;  /* when a full listing was taken */
	/*
	 * Lookup read-ahead (doc/fs.md §2): after a few lookups in a row had to
	 * ask the cluster, one LIST page from the missed name answers the next
	 * lookups, positive and negative, for attr_timeout.
	 */
	char *ra_lo, *ra_hi;       /* names [ra_lo, ra_hi] the last page covered; ra_hi NULL: to the end */
	size_t ra_lo_len, ra_hi_len;
	uint64_t ra_ns;            /* when that page was read; 0 = none */
	uint32_t ra_hits;          /* lookups it answered */
	uint32_t ra_size;          /* entries to ask for in the next page; 0 = FS_RA_START */
	uint32_t misses;           /* lookups that asked the cluster, each within attr_timeout of the last */
	uint64_t miss_ns;          /* when the last of them did */
};

/* Lookups in a row that ask the cluster before the read-ahead starts. */
#define FS_RA_MISSES 3
/* Entries of the first read-ahead page; later pages follow the hits (64..FS_LIST_PAGE). */
#define FS_RA_START 128
#define FS_RA_MIN 64

/*
 * One chunk of the cache. A slot is free (neither flag), loading (one
 * thread fetches it; others wait on cache_cond) or valid. A valid slot with
 * refs > 0 is being replied from and is never evicted. All fields: cache_lock.
 */
struct fs_cache_slot {
	uint8_t hash[KV_FS_HASH_LEN];
	uint8_t *buf;
	size_t len;
	uint64_t used;
	int refs;
	bool valid;
	bool loading;
};

struct fs_inode {
	fuse_ino_t ino;
	uint64_t nlookup;          /* kernel references */
	uint64_t refs;             /* children + open handles + internal users */
	struct fs_inode *parent;   /* holds a ref; NULL for the root */
	char *name;                /* shown name in the parent */
	char *key;                 /* stored path key ("" for the root) */
	uint32_t sibling;          /* 0, or i for `name.sibling-i` */
	bool has_dot;
	struct kv_dot dot;         /* the version shown */
	bool unlinked;             /* removed while open: its close writes nothing */
	bool dead;                 /* out of the name table */
	/* attributes, guarded by fs->lock */
	struct kv_buf meta_raw;
	struct kv_fs_meta meta;
	int meta_err;
	uint64_t attr_version;     /* bumped when the shown version changes (keep_cache) */
	struct fs_dir *dir;        /* directories: the last listing */
	int wb_err;                /* directories: a write-behind delete in it failed (-EIO) */
	/* data, guarded by dlock */
	pthread_mutex_t dlock;
	struct fs_data *data;
	uint64_t opened_version;   /* attr_version at the last open (keep_cache) */
	struct fs_inode *hnext;    /* by-ino hash chain */
	struct fs_inode *nnext;    /* by-name hash chain */
};

/*
 * Write-behind unlink (fs.c, doc/fs.md §5): at most FS_WB_MAX deletes
 * queued or in flight, sent by FS_WB_THREADS workers.
 */
#define FS_WB_MAX 256
#define FS_WB_THREADS 16

/* One queued delete (fs->wb_lock). */
struct fs_wb_op {
	char *key;                    /* the stored key (owned) */
	uint64_t key_hash;            /* of the key */
	uint64_t dir_hash;            /* of its directory's key (the first dir_len bytes) */
	size_t dir_len;
	struct kv_ctx ctx;            /* what the mount showed: the versions to delete */
	uint8_t req_id[KV_REQUEST_ID_LEN]; /* the same in every attempt */
	struct fs_inode *dir;         /* holds a reference */
	uint64_t deadline_ns;         /* monotonic: the last attempt starts before it */
	bool sending;                 /* a worker took it */
};

struct fs {
	struct kv_client *client;
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_mutex_t ns_lock;
	struct fs_inode **by_ino;
	struct fs_inode **by_name;
	size_t nbuckets;
	fuse_ino_t next_ino;
	struct fs_inode *root;
	unsigned list_threads;        /* opendir listings still running (fs->lock) */
	pthread_cond_t list_cond;     /* with fs->lock: signalled when one ends */
	double attr_timeout, entry_timeout;
	uint32_t timeout_ms;
	uint8_t r, w;
	uid_t uid;
	gid_t gid;
	uint64_t lookup_timeout_ns;   /* when a lookup last timed out (fs->lock) */
	char staging_dir[4096];
	/* the chunk cache (fs_data.c) */
	pthread_mutex_t cache_lock;
	pthread_cond_t cache_cond;
	struct fs_cache_slot *cache;
	size_t ncache;
	pthread_t prefetch_thread[FS_PREFETCH_THREADS];
	size_t prefetch_nthreads;
	bool prefetch_stop;           /* also stops the lease thread */
	/* chunks to read ahead, a FIFO ring (cache_lock) */
	uint8_t prefetch_queue[FS_PREFETCH_QUEUE][KV_FS_HASH_LEN];
	size_t prefetch_head, prefetch_len;
	pthread_cond_t lease_cond;    /* with cache_lock: wakes the lease thread to stop */
	pthread_t lease_thread;
	bool lease_started;
	/*
	 * Conflicted names this mount removed (`rm name`): later lookups and
	 * unlinks of their sibling names succeed quietly, so `rm -r` stays
	 * silent (DESIGN §7). A small ring; fs->lock.
	 */
	struct fs_ghost {
		fuse_ino_t dir;
		char base[KV_FS_NAME_MAX + 1];
		uint32_t nversions;
		uint64_t at_ns;
	} ghosts[32];
	size_t next_ghost;
	/* write-behind unlink (fs.c; doc/fs.md §5) */
	bool sync_unlink;             /* -o sync_unlink: every unlink waits for its delete */
	pthread_mutex_t wb_lock;
	pthread_cond_t wb_work;       /* a delete was queued, or stop */
	pthread_cond_t wb_done;       /* a delete ended (CLOCK_MONOTONIC) */
	struct fs_wb_op *wb_slot[FS_WB_MAX]; /* queued or in flight, any order */
	size_t wb_count;
	struct fs_wb_op *wb_ring[FS_WB_MAX]; /* queued, FIFO */
	size_t wb_head, wb_len;
	bool wb_stop;
	pthread_t wb_thread[FS_WB_THREADS];
	size_t wb_nthreads;
};

/* The inode number of a ghost entry: a removed version's sibling name. */
#define FS_GHOST_INO ((fuse_ino_t)UINT64_MAX - 1)
/* How long a removed conflicted name's sibling names stay removable. */
#define FS_GHOST_NS (60ull * 1000000000ull)

/* ---- fs.c ---- */
int fs_init(struct fs *fs, struct kv_client *client, const char *staging_dir);
void fs_destroy(struct fs *fs);
extern const struct fuse_lowlevel_ops kv_fs_ops;
/* Finishes directory renames an earlier mount left half done (mount time). */
int fs_finish_intents(struct fs *fs);
/* Flushes every dirty inode (unmount). */
void fs_flush_all(struct fs *fs);
/*
 * Calls @fn on every inode that has open data, holding a reference and its
 * dlock (fs->lock not held), one inode at a time: it allocates nothing, so
 * it cannot skip an inode for want of memory.
 */
void fs_each_data(struct fs *fs, void (*fn)(struct fs *fs, struct fs_inode *ino));
/*
 * The tombstone of a removed directory (rmdir's, which carries the
 * directory's metadata) in @set as read with `tombstones`, or NULL.
 */
const struct kv_version *fs_removed_dir(const struct kv_dvv *set);

int fs_errno(int rc);
/* True when a cluster call failed with EIO within the last @window_ns. */
bool fs_failed_lately(uint64_t window_ns);
/*
 * Write-behind unlink (doc/fs.md §5). The waits return once no delete of
 * the key (of a child of the directory) is queued or in flight; call them
 * with no lock held but ns_lock or an inode's dlock.
 */
void fs_wb_wait_key(struct fs *fs, const char *key);
void fs_wb_wait_dir(struct fs *fs, const char *dir_key);
void fs_wb_wait_child(struct fs *fs, struct fs_inode *dir, const char *name, size_t len);
/* Marks @dir's entries with a queued delete as changed now (stale_ns). fs->lock held. */
void fs_wb_hold_entries(struct fs *fs, struct fs_inode *dir);
/* The failure of a write-behind delete in @dir, once (then 0): -EIO or 0. */
int fs_wb_take_error(struct fs *fs, struct fs_inode *dir);
/* fs_wb_wait_key() of @ino's key, when any delete is queued. No lock held. */
void fs_wb_wait_ino(struct fs *fs, struct fs_inode *ino);
/*
 * Queues the delete of @key (taken: freed on failure too) with a copy of
 * @ctx, in @dir. Waits for room. 0; -EAGAIN when no worker runs (delete
 * synchronously instead); -ENOMEM.
 */
int fs_wb_queue(struct fs *fs, struct fs_inode *dir, char *key, const struct kv_ctx *ctx);
/* Starts the workers (fs_init); unmount: drains the queue, joins them. */
int fs_wb_start(struct fs *fs);
void fs_wb_stop(struct fs *fs);
/* The mount's per-call timeout in nanoseconds. */
uint64_t fs_timeout_ns(const struct fs *fs);
uint64_t fs_now_ns(void);
void fs_ref(struct fs *fs, struct fs_inode *ino);   /* fs->lock held */
void fs_unref(struct fs *fs, struct fs_inode *ino); /* fs->lock not held */
struct fs_inode *fs_get(struct fs *fs, fuse_ino_t n); /* +1 ref, or NULL */
void fs_fill_stat(const struct fs_inode *ino, struct stat *st); /* fs->lock held */
/* Sets the inode's shown attributes from @raw (copied). fs->lock held. */
void fs_set_meta(struct fs_inode *ino, struct kv_slice raw, const struct kv_dot *dot);
/*
 * Marks the parent's entry for @ino's key stale after a write of this mount
 * that discarded @discarded and returned the context @own. fs->lock held.
 */
void fs_dent_touch(struct fs *fs, struct fs_inode *ino, const struct kv_ctx *discarded,
		   const struct kv_ctx *own);
/* The context what the mount showed for @ino's stored name (DESIGN §7). */
int fs_name_context(struct fs *fs, struct fs_inode *ino, struct kv_ctx *out);
struct kv_client_call fs_call(struct fs *fs);

/* ---- fs_data.c ---- */
/*
 * Makes sure @ino has a data state (reading the version at R when it has
 * none; @trunc: only the context, content empty). Requires ino->dlock.
 * Returns 0 or a negative errno.
 */
int fs_data_acquire(struct fs *fs, struct fs_inode *ino, bool trunc);
/* Drops one user; frees the state at zero (after a last flush). dlock held. */
void fs_data_release(struct fs *fs, struct fs_inode *ino);
/* Writes the dirty state at W (DESIGN §7). dlock held. 0 or -errno. */
int fs_data_flush(struct fs *fs, struct fs_inode *ino);
int fs_data_truncate(struct fs *fs, struct fs_inode *ino, uint64_t size);
/* Replaces the data state's metadata with @raw (setattr, setxattr). */
int fs_data_set_meta(struct fs_inode *ino, const struct kv_fs_meta *m);
ssize_t fs_data_read(struct fs *fs, struct fs_inode *ino, char *buf, size_t len, uint64_t off);
ssize_t fs_data_write(struct fs *fs, struct fs_inode *ino, const char *buf, size_t len,
		      uint64_t off);
void fs_data_free(struct fs_data *d);

/* ---- fs_cache.c ---- */
int fs_cache_init(struct fs *fs);
void fs_cache_destroy(struct fs *fs);
/* A KV_FS_CHUNK_SIZE buffer (contents undefined), or NULL; give it back with fs_cbuf_put(). */
uint8_t *fs_cbuf_get(void);
void fs_cbuf_put(uint8_t *b); /* NULL is ignored */
/*
 * The cache slot of chunk @hash, fetched and verified if it is not there,
 * with one reference: give it back with fs_chunk_put(). 0 or -errno.
 */
int fs_chunk_get(struct fs *fs, const uint8_t *hash, struct fs_cache_slot **out);
void fs_chunk_put(struct fs *fs, struct fs_cache_slot *s);
/* Copies [@off, @off + @len) of chunk @hash (through the cache) to @dst. 0 or -errno. */
int fs_chunk_read(struct fs *fs, const uint8_t *hash, size_t off, size_t len, uint8_t *dst);
/* Queues chunk @hash for the read-ahead threads (best effort). */
void fs_prefetch(struct fs *fs, const uint8_t *hash);

/* ---- fs_lease.c ---- */
/* Starts the thread that renews the chunk leases of open files (after any fork). */
int fs_lease_start(struct fs *fs);
/* Touches the chunks of @ino's open version (a lease). dlock held. 0 or -errno. */
int fs_data_lease(struct fs *fs, struct fs_inode *ino);
/*
 * An open file was unlinked: writes a lease object under FS_LEASE_DIR whose
 * body is the chunk manifest of the version it shows, so that every gc mark
 * names those chunks, whatever the grace (DESIGN §7 "Reclaiming chunks").
 * Deleted at the last release. ino->dlock held.
 */
int fs_data_pin(struct fs *fs, struct fs_inode *ino);

/* ---- the file operations (fs_data.c; create: fs.c) ---- */
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);


/* ---- fs.c: shared by fs_rename.c and fs_dir.c ---- */
/* Entries per LIST page, and the most pages one listing may take. */
#define FS_LIST_PAGE 1000
#define FS_LIST_MAX_PAGES 10000

/* What a name resolves to, copied out of the listing. */
struct fs_res {
	char stored[KV_FS_NAME_MAX + 1]; /* the stored name */
	uint32_t sibling;
	bool has_dot;
	struct kv_dot dot;
	struct kv_buf meta_raw;
	uint8_t type;
	size_t nfiles;      /* versions of the stored name that are files */
	bool is_dir;
	struct kv_ctx name_ctx;
	struct kv_ctx version_ctx;
};

struct fs *fs_of(fuse_req_t req);
void fs_dir_free(struct fs_dir *d);
/* The stored name of @ino: its key after the last '/'. fs->lock held. */
const char *fs_stored_name(const struct fs_inode *ino);
/* A new inode @name in @parent (NULL: the root) for @key, with no reference. fs->lock held. */
struct fs_inode *fs_inode_new(struct fs *fs, struct fs_inode *parent, const char *name,
			      const char *key);
uint64_t fs_mono_ns(void);
/* dir_key + "/" + name, malloc'd (NULL when out of memory). */
char *fs_child_key(const char *dir_key, const char *name, size_t name_len);
/* fs->lock held: */
struct fs_inode *fs_find_child(struct fs *fs, struct fs_inode *parent, const char *name);
void fs_name_unlink(struct fs *fs, struct fs_inode *ino);
void fs_name_link(struct fs *fs, struct fs_inode *ino);
void fs_unref_locked(struct fs *fs, struct fs_inode *ino, uint64_t count);
struct fs_dent *fs_dir_find(struct fs_inode *dirino, const char *name, size_t len);

/*
 * Binary search of @name (@len bytes) among @d->d[0 .. @n) (sorted by
 * name): its index, or the insertion point negated minus one.
 */
ssize_t fs_dir_search(const struct fs_dir *d, size_t n, const char *name, size_t len);
struct fs_dent *fs_dent_stale(struct fs_inode *dirino, const char *name);
void fs_dir_default_meta(const struct fs *fs, struct kv_fs_meta *m);
struct fs_inode *fs_bind_inode(struct fs *fs, struct fs_inode *dirino, const char *name,
			       const struct fs_res *r);
void fs_fill_entry(struct fs *fs, struct fs_inode *ino, struct fuse_entry_param *e);
/* no lock held: */
void fs_res_init(struct fs_res *r);
void fs_res_release(struct fs_res *r);
int fs_resolve(struct fs *fs, struct fs_inode *dirino, const char *name, const struct kv_dot *dot,
	       struct fs_res *out);
int fs_dir_list(struct fs *fs, struct fs_inode *dirino);
/*
 * Called by fs_dir_list_pages() after each LIST page, with no lock held:
 * the page's entries are @d->d[first .. first + n) of the listing being
 * built (sorted, borrowed for the call; earlier pages before them), @last
 * when no page follows. A negative result stops the listing with it.
 */
typedef int (*fs_page_fn)(void *arg, const struct fs_dir *d, size_t first, size_t n, bool last);
/* fs_dir_list(), calling @on_page (if not NULL) as each page comes in. */
int fs_dir_list_pages(struct fs *fs, struct fs_inode *dirino, fs_page_fn on_page, void *arg);
/* 1 when the directory key has a live entry, 0 when not, or -errno. */
int fs_dir_has_child(struct fs *fs, const char *key);
/*
 * Learns whether the tombstone-only entry @name of @dirino has live children
 * (DESIGN §7: a directory exists while it has a live version or any live
 * child): one LIST. No lock held.
 */
void fs_dent_check_child(struct fs *fs, struct fs_inode *dirino, const char *name);
/*
 * After this mount unlinked a name in @dir: when @dir is a removed directory
 * alive through its children, its lookups keep finding it for a while even
 * if that was its last child, so that the rmdir of an `rm -r` that emptied it
 * finds it too (doc/fs.md §2 "Directories through children").
 */
void fs_note_emptied(struct fs *fs, struct fs_inode *dir);

/* ---- fs_rename.c, fs_dir.c ---- */
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void fs_op_opendir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t n, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t n, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi);
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t n, int datasync, struct fuse_file_info *fi);
void fs_op_statfs(fuse_req_t req, fuse_ino_t n);
void fs_op_access(fuse_req_t req, fuse_ino_t n, int mask);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t n, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t n, size_t size);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t n, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t n, const char *name);
/* setattr and xattr changes through the data state, written at once (fs.c). */
int fs_change_meta(struct fs *fs, struct fs_inode *ino, const struct stat *attr, int to_set,
		   const struct kv_slice *xname, const struct kv_slice *xvalue, int xflags,
		   bool xremove);

#endif
