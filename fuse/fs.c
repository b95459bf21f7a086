/*
 * fs.c - the mount's inodes and metadata operations (DESIGN §7): the inode
 * table, lookup, getattr/setattr, mkdir, symlink, create, unlink, rmdir, the
 * operation table and the mount's lifecycle. Names and listings are
 * fs_names.c, rename fs_rename.c, readdir and xattrs fs_dir.c, the data path
 * fs_data.c, the write-behind unlink queue fs_wb.c.
 * Design note: doc/fs.md; stored forms and sibling rules: doc/fs-format.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"


/* ---- small helpers ---- */

uint64_t fs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fs_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fs_timeout_ns(const struct fs *fs)
{
	return (uint64_t)fs->timeout_ms * 1000000ull;
}

/* When a cluster call last failed with EIO (monotonic ns; 0: never). */
static _Atomic uint64_t last_failure_ns;

bool fs_failed_lately(uint64_t window_ns)
{
	uint64_t at = atomic_load_explicit(&last_failure_ns, memory_order_relaxed);
	return at != 0 && fs_mono_ns() - at < window_ns;
}

/*
 * Maps a library result to the errno a file system call returns: failures to
 * reach W or R replicas, timeouts and unreachable nodes are EIO (DESIGN §7
 * "Failure"), and are noted for fs_failed_lately().
 */
int fs_errno(int rc)
{
	if (rc >= 0)
		return 0;
	switch (rc) {
	case KV_ENOTFOUND:
		return -ENOENT;
	case KV_ETOOBIG:
		return -EFBIG;
	case KV_EINVAL:
		return -EINVAL;
	case -ENOMEM:
	case -ENOENT:
	case -EEXIST:
	case -ENOTDIR:
	case -EISDIR:
	case -ENOTEMPTY:
	case -EINVAL:
	case -ESTALE:
	case -EPERM:
	case -EACCES:
	case -ENAMETOOLONG:
	case -ENODATA:
	case -ERANGE:
	case -ENOSPC:
	case -EFBIG:
	case -EROFS:
	case -ENOTSUP:
		return rc;
	default:
		atomic_store_explicit(&last_failure_ns, fs_mono_ns(), memory_order_relaxed);
		return -EIO;
	}
}

struct kv_client_call fs_call(struct fs *fs)
{
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.r = fs->r;
	call.w = fs->w;
	call.timeout_ms = fs->timeout_ms;
	return call;
}

/* "" + "/" + name for the root's children, else key + "/" + name. malloc'd. */
char *fs_child_key(const char *dir_key, const char *name, size_t name_len)
{
	size_t dl = strlen(dir_key);
	char *k = malloc(dl + 1 + name_len + 1);
	if (!k)
		return NULL;
	memcpy(k, dir_key, dl);
	k[dl] = '/';
	memcpy(k + dl + 1, name, name_len);
	k[dl + 1 + name_len] = '\0';
	return k;
}

const char *fs_stored_name(const struct fs_inode *ino)
{
	const char *s = strrchr(ino->key, '/');
	return s ? s + 1 : ino->key;
}

static uint64_t hash_name(fuse_ino_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return h;
}

/* ---- inode table (fs->lock held) ---- */

static struct fs_inode *find_ino(struct fs *fs, fuse_ino_t n)
{
	for (struct fs_inode *i = fs->by_ino[n % fs->nbuckets]; i; i = i->hnext)
		if (i->ino == n)
			return i;
	return NULL;
}

struct fs_inode *fs_find_child(struct fs *fs, struct fs_inode *parent, const char *name)
{
	uint64_t h = hash_name(parent->ino, name) % fs->nbuckets;
	for (struct fs_inode *i = fs->by_name[h]; i; i = i->nnext)
		if (i->parent == parent && strcmp(i->name, name) == 0)
			return i;
	return NULL;
}

void fs_name_unlink(struct fs *fs, struct fs_inode *ino)
{
	if (ino->dead || !ino->parent)
		return;
	uint64_t h = hash_name(ino->parent->ino, ino->name) % fs->nbuckets;
	for (struct fs_inode **pp = &fs->by_name[h]; *pp; pp = &(*pp)->nnext)
		if (*pp == ino) {
			*pp = ino->nnext;
			break;
		}
	ino->nnext = NULL;
	ino->dead = true;
}

void fs_name_link(struct fs *fs, struct fs_inode *ino)
{
	uint64_t h = hash_name(ino->parent->ino, ino->name) % fs->nbuckets;
	ino->nnext = fs->by_name[h];
	fs->by_name[h] = ino;
	ino->dead = false;
}

void fs_dir_free(struct fs_dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->d[i].name);
		kv_dvv_release(&d->d[i].set);
		kv_ctx_release(&d->d[i].own_ctx);
	}
	free(d->d);
	free(d->ra_lo);
	free(d->ra_hi);
	free(d);
}

void fs_ref(struct fs *fs, struct fs_inode *ino)
{
	(void)fs;
	ino->refs++;
}

static void inode_free(struct fs *fs, struct fs_inode *ino)
{
	fuse_ino_t n = ino->ino;
	for (struct fs_inode **pp = &fs->by_ino[n % fs->nbuckets]; *pp; pp = &(*pp)->hnext)
		if (*pp == ino) {
			*pp = ino->hnext;
			break;
		}
	fs_name_unlink(fs, ino);
	if (ino->data)
		fs_data_free(ino->data);
	fs_dir_free(ino->dir);
	kv_buf_release(&ino->meta_raw);
	pthread_mutex_destroy(&ino->dlock);
	free(ino->name);
	free(ino->key);
	free(ino);
}

/* Drops @count references, freeing what reaches zero. fs->lock held. */
void fs_unref_locked(struct fs *fs, struct fs_inode *ino, uint64_t count)
{
	while (ino) {
		if (ino->refs < count)
			count = ino->refs;
		ino->refs -= count;
		if (ino->refs > 0 || ino == fs->root)
			return;
		struct fs_inode *parent = ino->parent;
		inode_free(fs, ino);
		ino = parent;
		count = 1;
	}
}

void fs_unref(struct fs *fs, struct fs_inode *ino)
{
	pthread_mutex_lock(&fs->lock);
	fs_unref_locked(fs, ino, 1);
	pthread_mutex_unlock(&fs->lock);
}

struct fs_inode *fs_get(struct fs *fs, fuse_ino_t n)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *ino = n == FUSE_ROOT_ID ? fs->root : find_ino(fs, n);
	if (ino)
		ino->refs++;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

/* A directory's default attributes (one that exists through children only). */
void fs_dir_default_meta(const struct fs *fs, struct kv_fs_meta *m)
{
	memset(m, 0, sizeof *m);
	m->type = KV_FS_DIR;
	m->mode = 0755;
	m->uid = fs->uid;
	m->gid = fs->gid;
}

void fs_set_meta(struct fs_inode *ino, struct kv_slice raw, const struct kv_dot *dot)
{
	bool changed = !ino->has_dot || !dot || !kv_dot_eq(ino->dot, *dot);
	kv_buf_reset(&ino->meta_raw);
	if (kv_buf_append(&ino->meta_raw, raw.p, raw.n) == 0 &&
	    kv_fs_meta_decode(kv_buf_slice(&ino->meta_raw), &ino->meta) == 0) {
		ino->meta_err = 0;
	} else {
		memset(&ino->meta, 0, sizeof ino->meta);
		ino->meta.type = KV_FS_FILE;
		ino->meta_err = -EIO;
	}
	if (dot) {
		ino->dot = *dot;
		ino->has_dot = true;
	}
	if (changed)
		ino->attr_version++;
}

/* Sets synthesized attributes (a directory through children, the root). */
static void set_meta_struct(struct fs_inode *ino, const struct kv_fs_meta *m)
{
	struct kv_buf raw = KV_BUF_INIT;
	if (kv_fs_meta_encode(m, &raw) == 0)
		fs_set_meta(ino, kv_buf_slice(&raw), NULL);
	kv_buf_release(&raw);
	ino->has_dot = false;
}

struct fs_inode *fs_inode_new(struct fs *fs, struct fs_inode *parent, const char *name,
				  const char *key)
{
	struct fs_inode *ino = calloc(1, sizeof *ino);
	if (!ino)
		return NULL;
	ino->name = strdup(name);
	ino->key = strdup(key);
	if (!ino->name || !ino->key) {
		free(ino->name);
		free(ino->key);
		free(ino);
		return NULL;
	}
	pthread_mutex_init(&ino->dlock, NULL);
	ino->ino = fs->next_ino++;
	ino->parent = parent;
	if (parent) {
		parent->refs++;
		fs_name_link(fs, ino);
	}
	ino->hnext = fs->by_ino[ino->ino % fs->nbuckets];
	fs->by_ino[ino->ino % fs->nbuckets] = ino;
	return ino;
}

void fs_fill_stat(const struct fs_inode *ino, struct stat *st)
{
	const struct kv_fs_meta *m = &ino->meta;
	memset(st, 0, sizeof *st);
	st->st_ino = ino->ino;
	mode_t type = m->type == KV_FS_DIR ? S_IFDIR : m->type == KV_FS_SYMLINK ? S_IFLNK : S_IFREG;
	st->st_mode = type | (m->mode & 07777);
	st->st_nlink = m->type == KV_FS_DIR ? 2 : 1;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_size = (off_t)m->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((m->size + 511) / 512);
	st->st_mtim.tv_sec = (time_t)(m->mtime_ns / 1000000000);
	st->st_mtim.tv_nsec = (long)(m->mtime_ns % 1000000000);
	if (st->st_mtim.tv_nsec < 0) {
		st->st_mtim.tv_nsec += 1000000000;
		st->st_mtim.tv_sec--;
	}
	st->st_atim = st->st_mtim;
	st->st_ctim.tv_sec = (time_t)(m->ctime_ns / 1000000000);
	st->st_ctim.tv_nsec = (long)(m->ctime_ns % 1000000000);
	if (st->st_ctim.tv_nsec < 0) {
		st->st_ctim.tv_nsec += 1000000000;
		st->st_ctim.tv_sec--;
	}
}

/* ---- operations ---- */

struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want &= ~(unsigned)FUSE_CAP_EXPORT_SUPPORT;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
}

static bool ghost_match(struct fs *fs, struct fs_inode *dir, const char *name);

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent);
	struct fs_res r;
	struct fuse_entry_param e;
	int rc;
	fs_res_init(&r);
	if (!dir) {
		rc = -ESTALE;
		goto out;
	}
	/* A file created here and not yet written is known only to this mount. */
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *pending = fs_find_child(fs, dir, name);
	if (pending && pending->data && !pending->has_dot && !pending->unlinked) {
		pending->nlookup++;
		pending->refs++;
		fs_fill_entry(fs, pending, &e);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_entry(req, &e);
		goto done;
	}
	struct kv_dot hint;
	bool has_hint = pending && pending->has_dot;
	if (has_hint)
		hint = pending->dot;
	pthread_mutex_unlock(&fs->lock);
	rc = fs_resolve(fs, dir, name, has_hint ? &hint : NULL, &r);
	if (rc == -ESTALE)
		rc = -ENOENT;
	if (rc == -ENOENT && ghost_match(fs, dir, name)) {
		/*
		 * A sibling name of a conflicted name this mount removed: the
		 * kernel needs an entry before it sends the unlink that must
		 * succeed quietly. Never cached; getattr on it says ESTALE.
		 */
		memset(&e, 0, sizeof e);
		e.ino = FS_GHOST_INO;
		e.generation = 1;
		e.attr.st_ino = FS_GHOST_INO;
		e.attr.st_mode = S_IFREG | 0644;
		e.attr.st_nlink = 1;
		e.attr.st_uid = fs->uid;
		e.attr.st_gid = fs->gid;
		fuse_reply_entry(req, &e);
		goto done;
	}
	if (rc == -ENOENT) {
		memset(&e, 0, sizeof e);
		e.entry_timeout = fs->entry_timeout;
		fuse_reply_entry(req, &e);
		goto done;
	}
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *ino = fs_bind_inode(fs, dir, name, &r);
	if (ino)
		fs_fill_entry(fs, ino, &e);
	pthread_mutex_unlock(&fs->lock);
	if (!ino) {
		rc = -ENOMEM;
		goto out;
	}
	fuse_reply_entry(req, &e);
	goto done;
out:
	fuse_reply_err(req, -rc);
done:
	fs_res_release(&r);
	if (dir)
		fs_unref(fs, dir);
}

static void op_forget(fuse_req_t req, fuse_ino_t n, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *ino = find_ino(fs, n);
	if (ino && n != FUSE_ROOT_ID) {
		if (nlookup > ino->nlookup)
			nlookup = ino->nlookup;
		ino->nlookup -= nlookup;
		fs_unref_locked(fs, ino, nlookup);
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++) {
		struct fs_inode *ino = find_ino(fs, forgets[i].ino);
		uint64_t nl = forgets[i].nlookup;
		if (ino && forgets[i].ino != FUSE_ROOT_ID) {
			if (nl > ino->nlookup)
				nl = ino->nlookup;
			ino->nlookup -= nl;
			fs_unref_locked(fs, ino, nl);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct stat st;
	pthread_mutex_lock(&fs->lock);
	int err = ino->meta_err;
	fs_fill_stat(ino, &st);
	pthread_mutex_unlock(&fs->lock);
	if (err && n != FUSE_ROOT_ID)
		st.st_mode = S_IFREG;
	fuse_reply_attr(req, &st, fs->attr_timeout);
	fs_unref(fs, ino);
}

/* Applies a metadata change through the inode's data state and writes it now. */
int fs_change_meta(struct fs *fs, struct fs_inode *ino, const struct stat *attr, int to_set,
		       const struct kv_slice *xname, const struct kv_slice *xvalue, int xflags,
		       bool xremove)
{
	int rc;
	struct kv_buf xs = KV_BUF_INIT;
	fs_wb_wait_ino(fs, ino); /* a queued delete of the key goes first (doc/fs.md §5) */
	pthread_mutex_lock(&ino->dlock);
	rc = fs_data_acquire(fs, ino, false);
	if (rc < 0)
		goto out_unlocked_data;
	struct fs_data *d = ino->data;
	struct kv_fs_meta m = d->meta;
	int64_t now = (int64_t)fs_now_ns();
	if (to_set & FUSE_SET_ATTR_MODE)
		m.mode = attr->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_UID)
		m.uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		m.gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		m.mtime_ns = now;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		m.mtime_ns = (int64_t)attr->st_mtim.tv_sec * 1000000000 + attr->st_mtim.tv_nsec;
	if (xname) {
		rc = xremove ? kv_fs_xattr_remove(m.xattrs, *xname, &xs)
			     : kv_fs_xattr_set(m.xattrs, *xname, *xvalue, xflags, &xs);
		if (rc < 0)
			goto out;
		m.xattrs = kv_buf_slice(&xs);
	}
	m.ctime_ns = now;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (m.type != KV_FS_FILE) {
			rc = -EISDIR;
			goto out;
		}
		if ((uint64_t)attr->st_size > KV_FS_FILE_MAX) {
			rc = -EFBIG;
			goto out;
		}
		if (!(to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)))
			m.mtime_ns = now;
	}
	rc = fs_data_set_meta(ino, &m);
	if (rc < 0)
		goto out;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		rc = fs_data_truncate(fs, ino, (uint64_t)attr->st_size);
		if (rc < 0)
			goto out;
	}
	d->dirty = true;
	rc = fs_data_flush(fs, ino);
out:
	fs_data_release(fs, ino);
out_unlocked_data:
	pthread_mutex_unlock(&ino->dlock);
	kv_buf_release(&xs);
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t n, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	int rc;
	if (n == FUSE_ROOT_ID) {
		/* The root has no object: its attributes live in this mount. */
		pthread_mutex_lock(&fs->lock);
		if (to_set & FUSE_SET_ATTR_MODE)
			ino->meta.mode = attr->st_mode & 07777;
		if (to_set & FUSE_SET_ATTR_UID)
			ino->meta.uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			ino->meta.gid = attr->st_gid;
		pthread_mutex_unlock(&fs->lock);
		rc = 0;
	} else {
		rc = fs_change_meta(fs, ino, attr, to_set, NULL, NULL, 0, false);
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
	} else {
		struct stat st;
		pthread_mutex_lock(&fs->lock);
		fs_fill_stat(ino, &st);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_attr(req, &st, fs->attr_timeout);
	}
	fs_unref(fs, ino);
}

static void op_readlink(fuse_req_t req, fuse_ino_t n)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	char buf[KV_FS_TARGET_MAX + 1];
	int err = 0;
	pthread_mutex_lock(&fs->lock);
	if (ino->meta.type != KV_FS_SYMLINK) {
		err = EINVAL;
	} else {
		memcpy(buf, ino->meta.target.p, ino->meta.target.n);
		buf[ino->meta.target.n] = '\0';
	}
	pthread_mutex_unlock(&fs->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_readlink(req, buf);
	fs_unref(fs, ino);
}

/*
 * Creates @name in @dir as @m (a directory, a symlink or an empty file) with
 * one put: the context of a hidden stored name (its tombstones) or empty.
 * ns_lock held. Returns the new inode with a kernel reference.
 */
static int make_node(struct fs *fs, struct fs_inode *dir, const char *name, struct kv_fs_meta *m,
		     bool defer, struct fs_inode **out)
{
	struct fs_res r;
	struct kv_ctx ctx = KV_CTX_INIT, ctx_out = KV_CTX_INIT;
	struct kv_buf raw = KV_BUF_INIT;
	char *key = NULL;
	int rc = kv_fs_name_check_new(name);
	*out = NULL;
	fs_res_init(&r);
	if (rc < 0)
		goto out;
	if (dir == fs->root && strcmp(name, FS_RESERVED_DIR) == 0) {
		rc = -EINVAL;
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *pending = fs_find_child(fs, dir, name);
	bool exists = pending && pending->data && !pending->has_dot && !pending->unlinked;
	pthread_mutex_unlock(&fs->lock);
	if (exists) {
		rc = -EEXIST;
		goto out;
	}
	rc = fs_resolve(fs, dir, name, NULL, &r);
	if (rc == 0) {
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	pthread_mutex_lock(&fs->lock);
	struct fs_dent *d = fs_dir_find(dir, name, strlen(name));
	rc = d ? kv_ctx_copy(&ctx, &d->set.ctx) : 0;
	key = fs_child_key(dir->key, name, strlen(name));
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0 || !key) {
		rc = -ENOMEM;
		goto out;
	}
	rc = kv_fs_meta_encode(m, &raw);
	if (rc < 0) {
		rc = fs_errno(rc);
		goto out;
	}
	struct kv_dot dot = { { 0, 0 }, 0 };
	if (!defer) {
		struct kv_client_call call = fs_call(fs);
		rc = kv_client_put(fs->client, kv_slice_str(key), &ctx, kv_buf_slice(&raw),
				   kv_slice_make(NULL, 0), &call, &dot, &ctx_out);
		if (rc < 0) {
			kv_warn("kvfs: create %s: %s", key, kv_client_errmsg(fs->client));
			rc = fs_errno(rc);
			goto out;
		}
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *old = fs_find_child(fs, dir, name);
	if (old)
		fs_name_unlink(fs, old);
	struct fs_inode *ino = fs_inode_new(fs, dir, name, key);
	if (ino) {
		fs_set_meta(ino, kv_buf_slice(&raw), defer ? NULL : &dot);
		ino->has_dot = !defer;
		ino->nlookup++;
		ino->refs++;
		if (!defer) {
			struct fs_dent *nd = fs_dent_stale(dir, name);
			if (nd)
				nd->has_own = kv_ctx_copy(&nd->own_ctx, &ctx_out) == 0;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (!ino) {
		rc = -ENOMEM;
		goto out;
	}
	if (defer) {
		/* The data state carries the create to the first flush. */
		pthread_mutex_lock(&ino->dlock);
		struct fs_data *dd = calloc(1, sizeof *dd);
		if (dd) {
			dd->staging_fd = -1;
			kv_ctx_init(&dd->ctx);
			kv_ctx_swap(&dd->ctx, &ctx);
			kv_buf_init(&dd->meta_raw);
			kv_fs_manifest_init(&dd->base, KV_FS_CHUNK_SHIFT);
			dd->users = 1;
			dd->dirty = true;
			ino->data = dd;
			rc = fs_data_set_meta(ino, m);
		} else {
			rc = -ENOMEM;
		}
		pthread_mutex_unlock(&ino->dlock);
		if (rc < 0) {
			pthread_mutex_lock(&fs->lock);
			fs_name_unlink(fs, ino);
			ino->nlookup--;
			fs_unref_locked(fs, ino, 1);
			pthread_mutex_unlock(&fs->lock);
			goto out;
		}
	}
	*out = ino;
	rc = 0;
out:
	fs_res_release(&r);
	kv_ctx_release(&ctx);
	kv_ctx_release(&ctx_out);
	kv_buf_release(&raw);
	free(key);
	return rc;
}

static void base_meta(fuse_req_t req, struct kv_fs_meta *m, uint8_t type, mode_t mode)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	memset(m, 0, sizeof *m);
	m->type = type;
	m->mode = (uint16_t)(mode & 07777 & ~(c->umask & 0777));
	m->uid = c->uid;
	m->gid = c->gid;
	m->mtime_ns = m->ctime_ns = (int64_t)fs_now_ns();
}

static void reply_new(fuse_req_t req, struct fs *fs, struct fs_inode *ino, int rc)
{
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct fuse_entry_param e;
	pthread_mutex_lock(&fs->lock);
	fs_fill_entry(fs, ino, &e);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_entry(req, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent), *ino = NULL;
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct kv_fs_meta m;
	base_meta(req, &m, KV_FS_DIR, mode);
	pthread_mutex_lock(&fs->ns_lock);
	int rc = make_node(fs, dir, name, &m, false, &ino);
	pthread_mutex_unlock(&fs->ns_lock);
	reply_new(req, fs, ino, rc);
	fs_unref(fs, dir);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent), *ino = NULL;
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct kv_fs_meta m;
	base_meta(req, &m, KV_FS_SYMLINK, 0777);
	m.mode = 0777;
	m.target = kv_slice_str(link);
	m.size = m.target.n;
	int rc = m.target.n == 0 || m.target.n > KV_FS_TARGET_MAX ? -ENAMETOOLONG : 0;
	if (rc == 0) {
		pthread_mutex_lock(&fs->ns_lock);
		rc = make_node(fs, dir, name, &m, false, &ino);
		pthread_mutex_unlock(&fs->ns_lock);
	}
	reply_new(req, fs, ino, rc);
	fs_unref(fs, dir);
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent), *ino = NULL;
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct kv_fs_meta m;
	base_meta(req, &m, KV_FS_FILE, mode);
	m.storage = KV_FS_STORE_INLINE;
	kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_slice_make(NULL, 0), 0);
	pthread_mutex_lock(&fs->ns_lock);
	int rc = make_node(fs, dir, name, &m, true, &ino);
	pthread_mutex_unlock(&fs->ns_lock);
	if (rc == -EEXIST && !(fi->flags & O_EXCL)) {
		/* It exists: open it (O_CREAT without O_EXCL). */
		struct fs_res r;
		fs_res_init(&r);
		rc = fs_resolve(fs, dir, name, NULL, &r);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			ino = fs_bind_inode(fs, dir, name, &r);
			pthread_mutex_unlock(&fs->lock);
			if (!ino)
				rc = -ENOMEM;
		}
		fs_res_release(&r);
		if (rc == 0) {
			pthread_mutex_lock(&ino->dlock);
			rc = fs_data_acquire(fs, ino, (fi->flags & O_TRUNC) != 0);
			if (rc == 0 && (fi->flags & O_TRUNC)) {
				rc = fs_data_truncate(fs, ino, 0);
				ino->data->dirty = true;
			}
			pthread_mutex_unlock(&ino->dlock);
			if (rc < 0) {
				pthread_mutex_lock(&fs->lock);
				ino->nlookup--;
				fs_unref_locked(fs, ino, 1);
				pthread_mutex_unlock(&fs->lock);
			}
		}
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
	} else {
		struct fuse_entry_param e;
		pthread_mutex_lock(&fs->lock);
		ino->refs++; /* the open handle */
		fs_fill_entry(fs, ino, &e);
		pthread_mutex_unlock(&fs->lock);
		fi->fh = 0;
		if (fuse_reply_create(req, &e, fi) != 0) {
			pthread_mutex_lock(&ino->dlock);
			fs_data_release(fs, ino);
			pthread_mutex_unlock(&ino->dlock);
			fs_unref(fs, ino);
		}
	}
	fs_unref(fs, dir);
}

/* Marks the inode shown as @name in @dir removed (open ones keep their data). */
static void forget_name(struct fs *fs, struct fs_inode *dir, const char *name, const char *stored,
			const struct kv_ctx *discarded)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *ino = fs_find_child(fs, dir, name);
	if (ino) {
		ino->unlinked = true;
		ino->refs++;
		fs_name_unlink(fs, ino);
	}
	struct fs_dent *d = fs_dir_find(dir, stored, strlen(stored));
	if (d && discarded)
		kv_dvv_discard(&d->set, discarded);
	if (d) {
		d->has_own = false;
		d->stale_ns = fs_mono_ns();
	}
	pthread_mutex_unlock(&fs->lock);
	if (ino) {
		/* An open but unlinked file holds a lease on its chunks (DESIGN §7). */
		pthread_mutex_lock(&ino->dlock);
		if (ino->data) {
			fs_data_lease(fs, ino);
			fs_data_pin(fs, ino);
		}
		pthread_mutex_unlock(&ino->dlock);
		fs_unref(fs, ino);
	}
}

/*
 * Tombstones @stored with @ctx; a directory's tombstone carries its metadata
 * (@dir_meta, else empty), so that a mount that reads it back later can tell
 * a removed directory, which lives on while it has live children (DESIGN §7
 * "Directories"), from a removed file.
 */
static int delete_key(struct fs *fs, struct fs_inode *dir, const char *stored,
		      const struct kv_ctx *ctx, struct kv_slice dir_meta)
{
	pthread_mutex_lock(&fs->lock);
	char *key = fs_child_key(dir->key, stored, strlen(stored));
	pthread_mutex_unlock(&fs->lock);
	if (!key)
		return -ENOMEM;
	struct kv_client_call call = fs_call(fs);
	int rc = dir_meta.n ? kv_client_delete_meta(fs->client, kv_slice_str(key), ctx, dir_meta,
						    &call, NULL, NULL)
			    : kv_client_delete(fs->client, kv_slice_str(key), ctx, &call, NULL, NULL);
	if (rc < 0)
		kv_warn("kvfs: delete %s: %s", key, kv_client_errmsg(fs->client));
	free(key);
	return fs_errno(rc);
}

/* Remembers that @base, shown with @nversions versions, was removed. */
static void ghost_add(struct fs *fs, struct fs_inode *dir, const char *base, uint32_t nversions)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_ghost *g = &fs->ghosts[fs->next_ghost++ % (sizeof fs->ghosts / sizeof fs->ghosts[0])];
	g->dir = dir->ino;
	snprintf(g->base, sizeof g->base, "%s", base);
	g->nversions = nversions;
	g->at_ns = fs_mono_ns();
	pthread_mutex_unlock(&fs->lock);
}

/* True when @name is `base.sibling-i` of a conflicted name removed lately. */
static bool ghost_match(struct fs *fs, struct fs_inode *dir, const char *name)
{
	size_t base_len;
	uint32_t idx;
	if (kv_fs_sibling_parse(name, &base_len, &idx) != 0)
		return false;
	bool found = false;
	uint64_t now = fs_mono_ns();
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < sizeof fs->ghosts / sizeof fs->ghosts[0] && !found; i++) {
		const struct fs_ghost *g = &fs->ghosts[i];
		found = g->at_ns != 0 && now - g->at_ns < FS_GHOST_NS && g->dir == dir->ino &&
			strlen(g->base) == base_len && memcmp(g->base, name, base_len) == 0 &&
			idx >= 1 && idx <= g->nversions;
	}
	pthread_mutex_unlock(&fs->lock);
	return found;
}

/*
 * Deletes @stored in @dir with @ctx: queued for the write-behind workers
 * when @behind (falling back to a synchronous delete when none runs), else
 * sent now. 0 or -errno.
 */
static int remove_key(struct fs *fs, struct fs_inode *dir, const char *stored,
		      const struct kv_ctx *ctx, bool behind, struct kv_slice dir_meta)
{
	if (behind) {
		pthread_mutex_lock(&fs->lock);
		char *key = fs_child_key(dir->key, stored, strlen(stored));
		pthread_mutex_unlock(&fs->lock);
		int rc = key ? fs_wb_queue(fs, dir, key, ctx) : -ENOMEM;
		if (rc != -EAGAIN)
			return rc;
	}
	return delete_key(fs, dir, stored, ctx, dir_meta);
}

/* unlink and rmdir (DESIGN §7 "rm name", "rm name.sibling-i"). ns_lock held. */
static int remove_name(struct fs *fs, struct fs_inode *dir, const char *name, bool want_dir)
{
	struct fs_res r;
	fs_res_init(&r);
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *ino = fs_find_child(fs, dir, name);
	struct kv_dot hint;
	bool has_hint = ino && ino->has_dot;
	bool pending = ino && ino->data && !ino->has_dot && !ino->unlinked;
	bool open_here = ino && ino->data;
	if (has_hint)
		hint = ino->dot;
	pthread_mutex_unlock(&fs->lock);
	/*
	 * Write-behind (doc/fs.md §5): the unlink of a plain name that is not
	 * open here, while no cluster call failed lately, answers once its
	 * delete is queued. Conflicted names, siblings, directories and
	 * reserved names are removed synchronously below.
	 */
	bool behind = !want_dir && !fs->sync_unlink && !open_here &&
		      !kv_fs_name_is_reserved(name) && !fs_failed_lately(fs_timeout_ns(fs));
	int rc;
	/*
	 * A name this mount wrote last (and nobody re-read since): remove what
	 * that write left, with the context it returned, without reading again
	 * (close-to-open: a version that arrived since survives as a sibling).
	 */
	struct kv_ctx own = KV_CTX_INIT;
	bool use_own = false;
	if (!want_dir && ino && ino->sibling == 0 && !kv_fs_name_is_reserved(name)) {
		pthread_mutex_lock(&fs->lock);
		struct fs_dent *d = fs_dir_find(dir, name, strlen(name));
		use_own = d && d->fetched_ns == 0 && d->has_own &&
			  kv_ctx_copy(&own, &d->own_ctx) == 0;
		pthread_mutex_unlock(&fs->lock);
	}
	if (use_own) {
		rc = remove_key(fs, dir, name, &own, behind, kv_slice_make(NULL, 0));
		if (rc == 0)
			forget_name(fs, dir, name, name, &own);
		kv_ctx_release(&own);
		goto out;
	}
	if (pending && !want_dir) {
		/* Created here, never written: nothing to tombstone. */
		forget_name(fs, dir, name, name, NULL);
		rc = 0;
		goto out;
	}
	rc = fs_resolve(fs, dir, name, has_hint ? &hint : NULL, &r);
	if (rc == -ESTALE || (rc == -ENOENT && ino && r.sibling == 0 &&
			      kv_fs_name_is_reserved(name)) ||
	    (rc == -ENOENT && !want_dir && ghost_match(fs, dir, name))) {
		/* The version shown is gone already: success (DESIGN §7). */
		forget_name(fs, dir, name, name, NULL);
		rc = 0;
		goto out;
	}
	if (rc < 0)
		goto out;
	if (want_dir && !r.is_dir) {
		rc = -ENOTDIR;
		goto out;
	}
	if (!want_dir && r.is_dir) {
		rc = -EISDIR;
		goto out;
	}
	if (want_dir) {
		pthread_mutex_lock(&fs->lock);
		char *key = fs_child_key(dir->key, r.stored, strlen(r.stored));
		pthread_mutex_unlock(&fs->lock);
		if (!key) {
			rc = -ENOMEM;
			goto out;
		}
		rc = fs_dir_has_child(fs, key);
		free(key);
		if (rc > 0)
			rc = -ENOTEMPTY;
		if (rc < 0)
			goto out;
	}
	const struct kv_ctx *ctx = r.sibling ? &r.version_ctx : &r.name_ctx;
	behind = behind && r.sibling == 0 && r.nfiles <= 1 && !r.is_dir &&
		 !kv_fs_name_is_reserved(r.stored);
	struct kv_fs_meta dm;
	struct kv_slice dir_meta = kv_buf_slice(&r.meta_raw);
	if (!r.is_dir || kv_fs_meta_decode(dir_meta, &dm) != 0 || dm.type != KV_FS_DIR)
		dir_meta = kv_slice_make(NULL, 0);
	rc = remove_key(fs, dir, r.stored, ctx, behind, dir_meta);
	if (rc == 0) {
		if (!want_dir && r.sibling == 0 && r.nfiles > 1)
			ghost_add(fs, dir, name, (uint32_t)r.nfiles);
		forget_name(fs, dir, name, r.stored, ctx);
		pthread_mutex_lock(&fs->lock);
		struct fs_dent *d = fs_dir_find(dir, r.stored, strlen(r.stored));
		if (d && want_dir)
			d->emptied_ns = 0;
		if (d && r.sibling == 0)
			d->fetched_ns = fs_mono_ns(); /* keep the last listing: siblings unlink quietly */
		else if (d)
			d->fetched_ns = 0; /* stale_ns: set by forget_name */
		pthread_mutex_unlock(&fs->lock);
	}
out:
	fs_res_release(&r);
	return rc;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent);
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	/* A background delete in this directory failed: say so once (doc/fs.md §5). */
	int rc = fs_wb_take_error(fs, dir);
	if (rc == 0) {
		pthread_mutex_lock(&fs->ns_lock);
		rc = remove_name(fs, dir, name, false);
		pthread_mutex_unlock(&fs->ns_lock);
		if (rc == 0)
			fs_note_emptied(fs, dir);
	}
	fuse_reply_err(req, -rc);
	fs_unref(fs, dir);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent);
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	pthread_mutex_lock(&fs->ns_lock);
	int rc = remove_name(fs, dir, name, true);
	pthread_mutex_unlock(&fs->ns_lock);
	fuse_reply_err(req, -rc);
	fs_unref(fs, dir);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM); /* hard links are not supported (DESIGN §7) */
}

const struct fuse_lowlevel_ops kv_fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = fs_op_rename,
	.link = op_link,
	.open = fs_op_open,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.access = fs_op_access,
	.create = fs_op_create,
};

/* ---- lifecycle ---- */

int fs_init(struct fs *fs, struct kv_client *client, const char *staging_dir)
{
	memset(fs, 0, sizeof *fs);
	fs->client = client;
	fs->nbuckets = 65521;
	fs->by_ino = calloc(fs->nbuckets, sizeof *fs->by_ino);
	fs->by_name = calloc(fs->nbuckets, sizeof *fs->by_name);
	if (!fs->by_ino || !fs->by_name)
		goto nomem;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->ns_lock, NULL);
	pthread_cond_init(&fs->list_cond, NULL);
	snprintf(fs->staging_dir, sizeof fs->staging_dir, "%s", staging_dir);
	fs->attr_timeout = 1.0;
	fs->entry_timeout = 1.0;
	fs->timeout_ms = KV_CLIENT_DEFAULT_TIMEOUT_MS;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->next_ino = FUSE_ROOT_ID;
	fs->root = fs_inode_new(fs, NULL, "", "");
	if (!fs->root)
		goto nomem;
	fs->root->refs = 1;
	struct kv_fs_meta m;
	fs_dir_default_meta(fs, &m);
	m.mtime_ns = m.ctime_ns = (int64_t)fs_now_ns();
	set_meta_struct(fs->root, &m);
	if (fs_cache_init(fs) < 0)
		goto nomem;
	if (fs_wb_start(fs) < 0) {
		fs_cache_destroy(fs);
		goto nomem;
	}
	return 0;
nomem:
	free(fs->by_ino);
	free(fs->by_name);
	return -ENOMEM;
}

/* The first inode from @i on (a bucket's chain) that has data, or NULL. fs->lock held. */
static struct fs_inode *next_with_data(struct fs_inode *i)
{
	while (i && !i->data)
		i = i->hnext;
	return i;
}

/*
 * Calls @fn on every inode with data, one at a time, each under its dlock.
 * No list to allocate, so nothing is skipped for want of memory (unmount
 * flushes through this): a reference keeps the inode in its bucket's chain
 * (inode_free() unhashes it only at the last one), so its successor is
 * still found after @fn, under fs->lock. Inodes added meanwhile go to the
 * head of a chain and may be missed, as they would have been before.
 */
void fs_each_data(struct fs *fs, void (*fn)(struct fs *fs, struct fs_inode *ino))
{
	for (size_t b = 0; b < fs->nbuckets; b++) {
		pthread_mutex_lock(&fs->lock);
		struct fs_inode *i = next_with_data(fs->by_ino[b]);
		if (i)
			i->refs++;
		pthread_mutex_unlock(&fs->lock);
		while (i) {
			pthread_mutex_lock(&i->dlock);
			fn(fs, i);
			pthread_mutex_unlock(&i->dlock);
			pthread_mutex_lock(&fs->lock);
			struct fs_inode *next = next_with_data(i->hnext);
			if (next)
				next->refs++;
			fs_unref_locked(fs, i, 1);
			pthread_mutex_unlock(&fs->lock);
			i = next;
		}
	}
}

static void flush_one(struct fs *fs, struct fs_inode *ino)
{
	if (!ino->data || !ino->data->dirty)
		return;
	int rc = fs_data_flush(fs, ino);
	if (rc < 0)
		kv_error("kvfs: unmount: %s not written: %s", ino->key, strerror(-rc));
}

void fs_flush_all(struct fs *fs)
{
	fs_each_data(fs, flush_one);
}

void fs_destroy(struct fs *fs)
{
	/* A listing an opendir started may outlive its handle (fs_dir.c). */
	pthread_mutex_lock(&fs->lock);
	while (fs->list_threads > 0)
		pthread_cond_wait(&fs->list_cond, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
	/* Queued deletes next: `fusermount3 -u` after `rm` leaves nothing behind. */
	fs_wb_stop(fs);
	fs_cache_destroy(fs);
	for (size_t b = 0; b < fs->nbuckets; b++) {
		struct fs_inode *i = fs->by_ino[b];
		while (i) {
			struct fs_inode *next = i->hnext;
			if (i->data)
				fs_data_free(i->data);
			fs_dir_free(i->dir);
			kv_buf_release(&i->meta_raw);
			pthread_mutex_destroy(&i->dlock);
			free(i->name);
			free(i->key);
			free(i);
			i = next;
		}
	}
	free(fs->by_ino);
	free(fs->by_name);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->ns_lock);
	pthread_cond_destroy(&fs->list_cond);
	pthread_mutex_destroy(&fs->wb_lock);
	pthread_cond_destroy(&fs->wb_work);
	pthread_cond_destroy(&fs->wb_done);
}
