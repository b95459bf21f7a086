/*
 * vfs_mem.c - the in-memory, fault-injecting VFS (see vfs.h; DESIGN §6, §8).
 *
 * The storage engine's crash tests run on this file system, so it models what
 * a power cut may keep, conservatively: an inode per file and directory; a
 * file has its current bytes and its durable bytes (as of its last fsync); a
 * directory maps each name to the inode it means now and the inode it meant
 * at the last sync_dir of that directory. kv_vfs_mem_crash() replaces every
 * current state with its durable one. Faults (torn writes, failing calls, a
 * machine that dies at the n-th modifying call) are injected at the one gate
 * every modifying call passes through. One mutex guards everything.
 */
#include "lsm/vfs.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255
#define FILE_SIZE_MAX ((uint64_t)1 << 40) /* far beyond any test, below SSIZE_MAX */

enum ino_kind { INO_FILE, INO_DIR };

struct dentry {
	char *name;        /* malloc'd, NUL-terminated */
	size_t name_len;
	struct inode *cur; /* what the name means now; NULL when absent */
	struct inode *dur; /* what it meant at the last sync_dir; NULL when absent */
};

/*
 * Every field is guarded by mem_vfs.mu.
 *
 * File contents: @data[0..@len) are the current bytes. The durable bytes are
 * @dur[0..@dur_len) when @dur is set, and otherwise @data[0..@dur_len) (bytes
 * past @len included: a shrink leaves them in the buffer, and @cap >=
 * @dur_len) with the @undo records put back over it, the newest first, so
 * the oldest record of a byte wins. A write or truncate that changes durable
 * bytes first saves what they were in an undo record: appending and fsyncing
 * costs no copy, and overwriting a preallocated log between syncs costs a
 * copy of what is overwritten, not of the whole file. Once the records would
 * outweigh the file, the durable bytes are copied out to @dur once instead.
 * @dur != NULL implies @dur_len > 0 and no undo records.
 */
struct undo {
	struct undo *next; /* older */
	size_t off, n;
	uint8_t bytes[];
};

struct inode {
	struct inode *prev, *next; /* the vfs's list of live inodes */
	enum ino_kind kind;
	/* dentry slots pointing here (cur and dur counted apart) + handles + root pin */
	uint64_t refs;
	bool locked; /* a kv_vfs_lock() handle holds it */
	bool marked; /* scratch for the sweep after a crash */
	/* INO_FILE */
	uint8_t *data;
	size_t len, cap;
	uint8_t *dur;
	size_t dur_len;
	struct undo *undo; /* newest first */
	size_t undo_bytes;
	/* INO_DIR: sorted by name (bytewise, shorter prefix first) */
	struct dentry *ents;
	size_t nents, ents_cap;
};

struct mem_vfs;

struct mem_file {
	struct kv_file base;
	struct mem_vfs *vfs;
	struct mem_file *prev, *next; /* open handles; guarded by vfs->mu */
	struct inode *ino;            /* NULL once stale (after a crash) */
	bool writable;
	bool holds_lock;
};

struct mem_vfs {
	struct kv_vfs base;
	pthread_mutex_t mu; /* guards everything below, every inode and handle */
	struct inode *root;
	struct inode *inodes;     /* live inodes, root included */
	struct inode *dead;       /* refs fell to 0; freed before the call returns */
	struct mem_file *handles; /* open handles, stale ones included */
	uint64_t ops;             /* modifying calls so far */
	uint64_t crash_at;        /* trip when ops reaches this; 0: never */
	bool tripped;
	unsigned fail_count;
	int fail_err;
	bool tear_armed;
	size_t tear_keep;
	uint64_t bytes_written;
};

/* A path component: borrowed from the caller's path string. */
struct comp {
	const char *p;
	size_t n;
};

static const struct kv_vfs_ops mem_vfs_ops;
static const struct kv_file_ops mem_file_ops;

static struct mem_vfs *to_mem(struct kv_vfs *vfs)
{
	assert(vfs && vfs->ops == &mem_vfs_ops);
	return (struct mem_vfs *)vfs;
}

/* ---- inodes and their lifetime ----------------------------------------- */

static struct inode *inode_new(struct mem_vfs *m, enum ino_kind kind)
{
	struct inode *ino = calloc(1, sizeof *ino);
	if (!ino)
		return NULL;
	ino->kind = kind;
	ino->next = m->inodes;
	if (m->inodes)
		m->inodes->prev = ino;
	m->inodes = ino;
	return ino;
}

static void list_unlink(struct mem_vfs *m, struct inode *ino)
{
	if (ino->prev)
		ino->prev->next = ino->next;
	else
		m->inodes = ino->next;
	if (ino->next)
		ino->next->prev = ino->prev;
	ino->prev = ino->next = NULL;
}

static void undo_free(struct inode *ino)
{
	while (ino->undo) {
		struct undo *u = ino->undo;
		ino->undo = u->next;
		free(u);
	}
	ino->undo_bytes = 0;
}

/* Frees the inode's memory without touching what it references. */
static void inode_free_raw(struct inode *ino)
{
	for (size_t i = 0; i < ino->nents; i++)
		free(ino->ents[i].name);
	free(ino->ents);
	free(ino->data);
	free(ino->dur);
	undo_free(ino);
	free(ino);
}

static void ref(struct inode *ino)
{
	if (ino)
		ino->refs++;
}

/* Drops a reference; an unreferenced inode goes to the dead list. */
static void unref(struct mem_vfs *m, struct inode *ino)
{
	if (!ino)
		return;
	assert(ino->refs > 0);
	if (--ino->refs > 0)
		return;
	list_unlink(m, ino);
	ino->next = m->dead;
	m->dead = ino;
}

/*
 * Frees the dead inodes, and those they were the last to reference. Called at
 * the end of every call that may drop references, so no inode is freed while
 * a call still walks through it.
 */
static void free_dead(struct mem_vfs *m)
{
	while (m->dead) {
		struct inode *ino = m->dead;
		m->dead = ino->next;
		for (size_t i = 0; i < ino->nents; i++) {
			unref(m, ino->ents[i].cur);
			unref(m, ino->ents[i].dur);
		}
		inode_free_raw(ino);
	}
}

/* ---- file contents ----------------------------------------------------- */

static int data_reserve(struct inode *ino, size_t need)
{
	if (need <= ino->cap)
		return 0;
	size_t cap = ino->cap ? ino->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(ino->data, cap);
	if (!p)
		return -ENOMEM;
	ino->data = p;
	ino->cap = cap;
	return 0;
}

/* Puts the undo records back over @buf, newest first; frees them. */
static void undo_apply(struct inode *ino, uint8_t *buf)
{
	for (struct undo *u = ino->undo; u; u = u->next)
		memcpy(buf + u->off, u->bytes, u->n);
	undo_free(ino);
}

/* Before @data[@from..@to) changes: keeps the durable bytes among them. */
static int save_durable(struct inode *ino, size_t from, size_t to)
{
	if (to > ino->dur_len)
		to = ino->dur_len;
	if (ino->dur || from >= to)
		return 0;
	size_t n = to - from;
	if (ino->undo_bytes + n > ino->dur_len) {
		uint8_t *copy = malloc(ino->dur_len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, ino->data, ino->dur_len);
		undo_apply(ino, copy);
		ino->dur = copy;
		return 0;
	}
	struct undo *u = malloc(sizeof *u + n);
	if (!u)
		return -ENOMEM;
	u->off = from;
	u->n = n;
	memcpy(u->bytes, ino->data + from, n);
	u->next = ino->undo;
	ino->undo = u;
	ino->undo_bytes += n;
	return 0;
}

/* Writes @n bytes at @off, zero-filling a gap. All or nothing. */
static int file_write(struct inode *ino, const void *buf, size_t n, uint64_t off)
{
	if (n == 0)
		return 0;
	if (off > FILE_SIZE_MAX || n > FILE_SIZE_MAX - off)
		return -EFBIG;
	size_t end = (size_t)off + n;
	size_t from = (size_t)off < ino->len ? (size_t)off : ino->len;
	int r = data_reserve(ino, end);
	if (r == 0)
		r = save_durable(ino, from, end);
	if (r)
		return r;
	if (off > ino->len)
		memset(ino->data + ino->len, 0, (size_t)off - ino->len);
	memcpy(ino->data + off, buf, n);
	if (end > ino->len)
		ino->len = end;
	return 0;
}

/* A shrink changes no byte (the durable ones past @len stay in the buffer). */
static int file_truncate(struct inode *ino, uint64_t size)
{
	if (size > FILE_SIZE_MAX)
		return -EFBIG;
	if (size > ino->len) {
		int r = data_reserve(ino, (size_t)size);
		if (r == 0)
			r = save_durable(ino, ino->len, (size_t)size);
		if (r)
			return r;
		memset(ino->data + ino->len, 0, (size_t)size - ino->len);
	}
	ino->len = (size_t)size;
	return 0;
}

/* fsync: the current bytes become the durable bytes, without copying. */
static void file_sync(struct inode *ino)
{
	free(ino->dur);
	ino->dur = NULL;
	undo_free(ino);
	ino->dur_len = ino->len;
}

/* Power cut: the durable bytes become the current bytes. */
static void file_crash(struct inode *ino)
{
	if (ino->dur) {
		free(ino->data);
		ino->data = ino->dur;
		ino->len = ino->cap = ino->dur_len;
		ino->dur = NULL;
	} else {
		undo_apply(ino, ino->data);
		ino->len = ino->dur_len;
	}
}

/* ---- directories ------------------------------------------------------- */

static int name_cmp(const struct dentry *e, struct comp c)
{
	size_t n = e->name_len < c.n ? e->name_len : c.n;
	int r = n ? memcmp(e->name, c.p, n) : 0;
	if (r)
		return r;
	return e->name_len < c.n ? -1 : e->name_len > c.n;
}

/* Index of @c in @dir, or the index where it would go (*found false). */
static size_t dir_search(const struct inode *dir, struct comp c, bool *found)
{
	size_t lo = 0, hi = dir->nents;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = name_cmp(&dir->ents[mid], c);
		if (r == 0) {
			*found = true;
			return mid;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct dentry *dir_find(const struct inode *dir, struct comp c)
{
	bool found;
	size_t i = dir_search(dir, c, &found);
	return found ? &dir->ents[i] : NULL;
}

/* Room for one more entry, so that the change that follows cannot fail. */
static int dir_reserve(struct inode *dir)
{
	if (dir->nents < dir->ents_cap)
		return 0;
	size_t cap = dir->ents_cap ? dir->ents_cap * 2 : 8;
	struct dentry *e = realloc(dir->ents, cap * sizeof *e);
	if (!e)
		return -ENOMEM;
	dir->ents = e;
	dir->ents_cap = cap;
	return 0;
}

/*
 * Points @c's current entry at @ino (NULL removes it). Requires a prior
 * dir_reserve() and a preallocated @name (taken over, or freed if unused).
 */
static void dir_set_cur(struct mem_vfs *m, struct inode *dir, struct comp c,
			char *name, struct inode *ino)
{
	bool found;
	size_t i = dir_search(dir, c, &found);
	if (!found) {
		if (!ino) {
			free(name);
			return;
		}
		assert(dir->nents < dir->ents_cap && name);
		memmove(&dir->ents[i + 1], &dir->ents[i], (dir->nents - i) * sizeof *dir->ents);
		dir->ents[i] = (struct dentry){ name, c.n, NULL, NULL };
		dir->nents++;
	} else {
		free(name);
	}
	struct dentry *e = &dir->ents[i];
	struct inode *old = e->cur;
	ref(ino);
	e->cur = ino;
	unref(m, old);
	if (!e->cur && !e->dur) {
		free(e->name);
		memmove(e, e + 1, (dir->nents - i - 1) * sizeof *e);
		dir->nents--;
	}
}

static bool dir_empty(const struct inode *dir)
{
	for (size_t i = 0; i < dir->nents; i++)
		if (dir->ents[i].cur)
			return false;
	return true;
}

/* Drops the entries that are absent both now and durably. */
static void dir_compact(struct inode *dir)
{
	size_t w = 0;
	for (size_t i = 0; i < dir->nents; i++) {
		if (!dir->ents[i].cur && !dir->ents[i].dur)
			free(dir->ents[i].name);
		else
			dir->ents[w++] = dir->ents[i];
	}
	dir->nents = w;
}

/* ---- paths ------------------------------------------------------------- */

/*
 * Splits @path into components: empty ones and "." are dropped, ".." drops
 * the one before (never above the root). Relative paths start at the root,
 * as if the working directory were "/". On success *out is malloc'd.
 */
static int path_split(const char *path, struct comp **out, size_t *n)
{
	if (!path)
		return -EINVAL;
	if (!*path)
		return -ENOENT; /* as open("") */
	size_t len = strlen(path);
	struct comp *v = malloc((len / 2 + 1) * sizeof *v);
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	for (const char *s = path; *s;) {
		while (*s == '/')
			s++;
		const char *start = s;
		while (*s && *s != '/')
			s++;
		size_t cn = (size_t)(s - start);
		if (cn == 0 || (cn == 1 && start[0] == '.'))
			continue;
		if (cn == 2 && start[0] == '.' && start[1] == '.') {
			if (k > 0)
				k--;
			continue;
		}
		if (cn > NAME_MAX_LEN) {
			free(v);
			return -ENAMETOOLONG;
		}
		v[k++] = (struct comp){ start, cn };
	}
	*out = v;
	*n = k;
	return 0;
}

/* What a path names: the directory holding it, its name there, its inode. */
struct target {
	struct inode *dir; /* NULL for the root itself */
	struct comp name;
	struct inode *ino; /* NULL when absent */
};

/*
 * Resolves @path in the current tree. The parent must exist and be a
 * directory; the last component need not exist. When @avoid is met as a
 * directory on the way (a directory moved into itself), fails with -EINVAL.
 */
static int resolve(struct mem_vfs *m, const char *path, struct inode *avoid, struct target *t)
{
	struct comp *c;
	size_t n;
	int r = path_split(path, &c, &n);
	if (r)
		return r;
	*t = (struct target){ NULL, { NULL, 0 }, m->root };
	struct inode *dir = m->root;
	for (size_t i = 0; i + 1 < n; i++) {
		struct dentry *e = dir_find(dir, c[i]);
		if (!e || !e->cur) {
			r = -ENOENT;
			goto out;
		}
		dir = e->cur;
		if (dir->kind != INO_DIR) {
			r = -ENOTDIR;
			goto out;
		}
		if (dir == avoid) {
			r = -EINVAL;
			goto out;
		}
	}
	if (n > 0) {
		struct dentry *e = dir_find(dir, c[n - 1]);
		t->dir = dir;
		t->name = c[n - 1];
		t->ino = e ? e->cur : NULL;
	}
out:
	free(c);
	return r;
}

static char *comp_dup(struct comp c)
{
	char *s = malloc(c.n + 1);
	if (s) {
		memcpy(s, c.p, c.n);
		s[c.n] = '\0';
	}
	return s;
}

/* ---- fault injection --------------------------------------------------- */

/*
 * The gate every modifying call passes first (it counts as one operation,
 * whatever happens after). Returns 0 to proceed, or the injected failure.
 */
static int gate(struct mem_vfs *m)
{
	m->ops++;
	if (m->tripped)
		return -EIO;
	if (m->crash_at && m->ops >= m->crash_at) {
		m->tripped = true;
		m->crash_at = 0;
		return -EIO;
	}
	if (m->fail_count) {
		m->fail_count--;
		return m->fail_err;
	}
	return 0;
}

/* ---- file handles ------------------------------------------------------ */

static struct mem_file *to_file(struct kv_file *f)
{
	assert(f && f->ops == &mem_file_ops);
	return (struct mem_file *)f;
}

static ssize_t mem_pread(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	struct mem_file *h = to_file(f);
	struct mem_vfs *m = h->vfs;
	ssize_t r = 0;
	pthread_mutex_lock(&m->mu);
	struct inode *ino = h->ino;
	if (!ino) {
		r = -EIO;
		goto out;
	}
	if (off >= ino->len)
		goto out;
	size_t k = ino->len - (size_t)off;
	if (k > n)
		k = n;
	memcpy(buf, ino->data + off, k);
	r = (ssize_t)k;
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

/* pwrite and append: @at_end ignores @off. Honours an armed torn write. */
static int write_common(struct mem_file *h, const void *buf, size_t n, uint64_t off, bool at_end)
{
	struct mem_vfs *m = h->vfs;
	int r;
	pthread_mutex_lock(&m->mu);
	struct inode *ino = h->ino;
	if (!ino) {
		r = -EIO;
		goto out;
	}
	if ((r = gate(m)))
		goto out;
	if (!h->writable) {
		r = -EBADF;
		goto out;
	}
	if (at_end)
		off = ino->len;
	bool tear = m->tear_armed;
	size_t k = n;
	if (tear && m->tear_keep < k)
		k = m->tear_keep;
	if ((r = file_write(ino, buf, k, off)))
		goto out;
	m->bytes_written += k;
	if (tear) {
		/* The kept bytes reached the platter; the call reports failure. */
		m->tear_armed = false;
		file_sync(ino);
		r = -EIO;
	}
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_pwrite(struct kv_file *f, const void *buf, size_t n, uint64_t off)
{
	return write_common(to_file(f), buf, n, off, false);
}

static int mem_append(struct kv_file *f, const void *buf, size_t n)
{
	return write_common(to_file(f), buf, n, 0, true);
}

static int mem_sync(struct kv_file *f)
{
	struct mem_file *h = to_file(f);
	struct mem_vfs *m = h->vfs;
	int r = -EIO;
	pthread_mutex_lock(&m->mu);
	if (h->ino && (r = gate(m)) == 0)
		file_sync(h->ino);
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_size(struct kv_file *f, uint64_t *out)
{
	struct mem_file *h = to_file(f);
	struct mem_vfs *m = h->vfs;
	int r = -EIO;
	pthread_mutex_lock(&m->mu);
	if (h->ino) {
		*out = h->ino->len;
		r = 0;
	}
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_truncate(struct kv_file *f, uint64_t size)
{
	struct mem_file *h = to_file(f);
	struct mem_vfs *m = h->vfs;
	int r = -EIO;
	pthread_mutex_lock(&m->mu);
	if (!h->ino || (r = gate(m)))
		goto out;
	if (!h->writable) {
		r = -EBADF;
		goto out;
	}
	r = file_truncate(h->ino, size);
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_close(struct kv_file *f)
{
	struct mem_file *h = to_file(f);
	struct mem_vfs *m = h->vfs;
	int r = -EIO;
	pthread_mutex_lock(&m->mu);
	if (h->prev)
		h->prev->next = h->next;
	else
		m->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	if (h->ino) {
		if (h->holds_lock)
			h->ino->locked = false;
		unref(m, h->ino);
		free_dead(m);
		r = 0;
	}
	pthread_mutex_unlock(&m->mu);
	free(h);
	return r;
}

static const struct kv_file_ops mem_file_ops = {
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.append = mem_append,
	.sync = mem_sync,
	.size = mem_size,
	.truncate = mem_truncate,
	.close = mem_close,
};

/* A handle on @ino, linked into the vfs; takes a reference. */
static void handle_attach(struct mem_vfs *m, struct mem_file *h, struct inode *ino,
			  bool writable, bool holds_lock)
{
	h->base.ops = &mem_file_ops;
	h->vfs = m;
	h->ino = ino;
	h->writable = writable;
	h->holds_lock = holds_lock;
	h->prev = NULL;
	h->next = m->handles;
	if (m->handles)
		m->handles->prev = h;
	m->handles = h;
	ref(ino);
	if (holds_lock)
		ino->locked = true;
}

/*
 * Opens (or, for kv_vfs_lock, locks) the file at @path. Every allocation
 * happens before the first change, so a failure changes nothing.
 */
static int open_common(struct mem_vfs *m, const char *path, int flags, bool lock,
		       struct kv_file **out)
{
	struct mem_file *h = NULL;
	struct inode *ino = NULL;
	char *name = NULL;
	bool modifying = lock || (flags & (KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC));
	int r = 0;
	*out = NULL;
	pthread_mutex_lock(&m->mu);
	if (modifying && (r = gate(m)))
		goto out;
	struct target t;
	if ((r = resolve(m, path, NULL, &t)))
		goto out;
	bool create = lock || (flags & KV_VFS_CREATE);
	if (t.ino) {
		if (t.ino->kind == INO_DIR) {
			r = -EISDIR;
			goto out;
		}
		if (!lock && create && (flags & KV_VFS_EXCL)) {
			r = -EEXIST;
			goto out;
		}
		if (lock && t.ino->locked) {
			r = -EBUSY;
			goto out;
		}
	} else if (!create) {
		r = -ENOENT;
		goto out;
	}
	if (!(h = malloc(sizeof *h))) {
		r = -ENOMEM;
		goto out;
	}
	if (!t.ino) {
		if (!(name = comp_dup(t.name)) || dir_reserve(t.dir) ||
		    !(ino = inode_new(m, INO_FILE))) {
			r = -ENOMEM;
			goto out;
		}
		dir_set_cur(m, t.dir, t.name, name, ino);
		name = NULL;
		t.ino = ino;
	} else if (!lock && (flags & KV_VFS_TRUNC)) {
		if ((r = file_truncate(t.ino, 0)))
			goto out;
	}
	handle_attach(m, h, t.ino, lock || (flags & (KV_VFS_WRITE | KV_VFS_CREATE)), lock);
	*out = &h->base;
	h = NULL;
out:
	pthread_mutex_unlock(&m->mu);
	free(h);
	free(name);
	return r;
}

/* ---- the vfs ----------------------------------------------------------- */

static int mem_open(struct kv_vfs *vfs, const char *path, int flags, struct kv_file **out)
{
	return open_common(to_mem(vfs), path, flags, false, out);
}

static int mem_lock(struct kv_vfs *vfs, const char *path, struct kv_file **out)
{
	return open_common(to_mem(vfs), path, 0, true, out);
}

/* Atomically points @to at @from's inode and drops @from (current state). */
static int mem_rename(struct kv_vfs *vfs, const char *from, const char *to)
{
	struct mem_vfs *m = to_mem(vfs);
	char *name = NULL;
	int r;
	pthread_mutex_lock(&m->mu);
	if ((r = gate(m)))
		goto out;
	struct target f, t;
	if ((r = resolve(m, from, NULL, &f)))
		goto out;
	if (!f.ino) {
		r = -ENOENT;
		goto out;
	}
	if (!f.dir) {
		r = -EBUSY; /* the root */
		goto out;
	}
	struct inode *moving = f.ino;
	if ((r = resolve(m, to, moving->kind == INO_DIR ? moving : NULL, &t)))
		goto out;
	if (!t.dir) {
		r = -EBUSY;
		goto out;
	}
	if (t.ino == moving)
		goto out; /* both names already mean the same inode */
	if (t.ino) {
		if (moving->kind == INO_DIR && t.ino->kind != INO_DIR) {
			r = -ENOTDIR;
			goto out;
		}
		if (moving->kind != INO_DIR && t.ino->kind == INO_DIR) {
			r = -EISDIR;
			goto out;
		}
		if (t.ino->kind == INO_DIR && !dir_empty(t.ino)) {
			r = -ENOTEMPTY;
			goto out;
		}
	}
	if (!(name = comp_dup(t.name)) || dir_reserve(t.dir)) {
		r = -ENOMEM;
		goto out;
	}
	ref(moving); /* keeps it alive between the two changes */
	dir_set_cur(m, t.dir, t.name, name, moving);
	name = NULL;
	dir_set_cur(m, f.dir, f.name, NULL, NULL);
	unref(m, moving);
	free_dead(m);
out:
	pthread_mutex_unlock(&m->mu);
	free(name);
	return r;
}

static int mem_remove(struct kv_vfs *vfs, const char *path)
{
	struct mem_vfs *m = to_mem(vfs);
	int r;
	pthread_mutex_lock(&m->mu);
	if ((r = gate(m)))
		goto out;
	struct target t;
	if ((r = resolve(m, path, NULL, &t)))
		goto out;
	if (!t.ino) {
		r = -ENOENT;
		goto out;
	}
	if (!t.dir) {
		r = -EBUSY;
		goto out;
	}
	if (t.ino->kind == INO_DIR && !dir_empty(t.ino)) {
		r = -ENOTEMPTY;
		goto out;
	}
	dir_set_cur(m, t.dir, t.name, NULL, NULL);
	free_dead(m);
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_mkdir(struct kv_vfs *vfs, const char *path)
{
	struct mem_vfs *m = to_mem(vfs);
	char *name = NULL;
	struct inode *ino;
	int r;
	pthread_mutex_lock(&m->mu);
	if ((r = gate(m)))
		goto out;
	struct target t;
	if ((r = resolve(m, path, NULL, &t)))
		goto out;
	if (t.ino) {
		r = -EEXIST;
		goto out;
	}
	if (!(name = comp_dup(t.name)) || dir_reserve(t.dir) ||
	    !(ino = inode_new(m, INO_DIR))) {
		r = -ENOMEM;
		goto out;
	}
	dir_set_cur(m, t.dir, t.name, name, ino);
	name = NULL;
out:
	pthread_mutex_unlock(&m->mu);
	free(name);
	return r;
}

/* The directory's current entries become its durable entries. */
static int mem_sync_dir(struct kv_vfs *vfs, const char *path)
{
	struct mem_vfs *m = to_mem(vfs);
	int r;
	pthread_mutex_lock(&m->mu);
	if ((r = gate(m)))
		goto out;
	struct target t;
	if ((r = resolve(m, path, NULL, &t)))
		goto out;
	if (!t.ino) {
		r = -ENOENT;
		goto out;
	}
	if (t.ino->kind != INO_DIR) {
		r = -ENOTDIR;
		goto out;
	}
	struct inode *dir = t.ino;
	for (size_t i = 0; i < dir->nents; i++) {
		struct dentry *e = &dir->ents[i];
		if (e->dur == e->cur)
			continue;
		ref(e->cur);
		unref(m, e->dur);
		e->dur = e->cur;
	}
	dir_compact(dir);
	free_dead(m);
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_list(struct kv_vfs *vfs, const char *path, char ***names, size_t *count)
{
	struct mem_vfs *m = to_mem(vfs);
	char **v = NULL;
	size_t k = 0;
	int r;
	pthread_mutex_lock(&m->mu);
	struct target t;
	if ((r = resolve(m, path, NULL, &t)))
		goto out;
	if (!t.ino) {
		r = -ENOENT;
		goto out;
	}
	if (t.ino->kind != INO_DIR) {
		r = -ENOTDIR;
		goto out;
	}
	struct inode *dir = t.ino;
	if (dir->nents && !(v = malloc(dir->nents * sizeof *v))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < dir->nents; i++) {
		if (!dir->ents[i].cur)
			continue;
		if (!(v[k] = strdup(dir->ents[i].name))) {
			r = -ENOMEM;
			goto out;
		}
		k++;
	}
out:
	pthread_mutex_unlock(&m->mu);
	if (r) {
		kv_vfs_names_free(v, k);
		return r;
	}
	if (k == 0) {
		free(v);
		v = NULL;
	}
	*names = v;
	*count = k;
	return 0;
}

static int mem_exists(struct kv_vfs *vfs, const char *path)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	struct target t;
	int r = resolve(m, path, NULL, &t);
	if (r == 0 && !t.ino)
		r = -ENOENT;
	pthread_mutex_unlock(&m->mu);
	return r;
}

static void mem_destroy(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	while (m->handles) {
		struct mem_file *h = m->handles;
		m->handles = h->next;
		free(h);
	}
	while (m->inodes) {
		struct inode *ino = m->inodes;
		m->inodes = ino->next;
		inode_free_raw(ino);
	}
	assert(!m->dead);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static const struct kv_vfs_ops mem_vfs_ops = {
	.open = mem_open,
	.rename = mem_rename,
	.remove = mem_remove,
	.mkdir = mem_mkdir,
	.sync_dir = mem_sync_dir,
	.list = mem_list,
	.exists = mem_exists,
	.lock = mem_lock,
	.destroy = mem_destroy,
};

struct kv_vfs *kv_vfs_mem_new(void)
{
	struct mem_vfs *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->base.ops = &mem_vfs_ops;
	if (pthread_mutex_init(&m->mu, NULL)) {
		free(m);
		return NULL;
	}
	if (!(m->root = inode_new(m, INO_DIR))) {
		pthread_mutex_destroy(&m->mu);
		free(m);
		return NULL;
	}
	m->root->refs = 1; /* the root is pinned */
	return &m->base;
}

/* ---- fault control ----------------------------------------------------- */

static void mark(struct inode *ino)
{
	if (ino->marked)
		return;
	ino->marked = true;
	for (size_t i = 0; i < ino->nents; i++)
		mark(ino->ents[i].cur);
}

/*
 * The power cut. Afterwards every directory's entries are its durable ones,
 * so what survives is exactly what the root reaches; reference counts are
 * recomputed from that tree, and everything else (unreachable files, and any
 * cycle that mixing current and durable entries may have built) is freed.
 */
void kv_vfs_mem_crash(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	for (struct mem_file *h = m->handles; h; h = h->next) {
		h->ino = NULL;
		h->holds_lock = false;
	}
	for (struct inode *ino = m->inodes; ino; ino = ino->next) {
		ino->locked = false;
		ino->marked = false;
		ino->refs = 0;
		if (ino->kind == INO_FILE) {
			file_crash(ino);
			continue;
		}
		for (size_t i = 0; i < ino->nents; i++)
			ino->ents[i].cur = ino->ents[i].dur;
		dir_compact(ino);
	}
	mark(m->root);
	m->root->refs = 1;
	for (struct inode *ino = m->inodes; ino; ino = ino->next) {
		if (!ino->marked)
			continue;
		for (size_t i = 0; i < ino->nents; i++)
			ino->ents[i].cur->refs += 2; /* its cur and its dur slot */
	}
	for (struct inode *ino = m->inodes, *next; ino; ino = next) {
		next = ino->next;
		if (!ino->marked) {
			list_unlink(m, ino);
			inode_free_raw(ino);
		}
	}
	m->tripped = false;
	m->crash_at = 0;
	m->fail_count = 0;
	m->tear_armed = false;
	pthread_mutex_unlock(&m->mu);
}

void kv_vfs_mem_tear_next_write(struct kv_vfs *vfs, size_t keep)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	m->tear_armed = true;
	m->tear_keep = keep;
	pthread_mutex_unlock(&m->mu);
}

void kv_vfs_mem_fail_next(struct kv_vfs *vfs, unsigned count, int err)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	m->fail_count = count;
	m->fail_err = err > 0 ? -err : err ? err : -EIO;
	pthread_mutex_unlock(&m->mu);
}

void kv_vfs_mem_crash_after(struct kv_vfs *vfs, uint64_t nth)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	m->crash_at = nth ? m->ops + nth : 0;
	pthread_mutex_unlock(&m->mu);
}

bool kv_vfs_mem_tripped(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	bool r = m->tripped;
	pthread_mutex_unlock(&m->mu);
	return r;
}

void kv_vfs_mem_recover(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	m->tripped = false;
	m->crash_at = 0;
	pthread_mutex_unlock(&m->mu);
}

uint64_t kv_vfs_mem_ops(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	uint64_t r = m->ops;
	pthread_mutex_unlock(&m->mu);
	return r;
}

uint64_t kv_vfs_mem_bytes_written(struct kv_vfs *vfs)
{
	struct mem_vfs *m = to_mem(vfs);
	pthread_mutex_lock(&m->mu);
	uint64_t r = m->bytes_written;
	pthread_mutex_unlock(&m->mu);
	return r;
}

/* The file at @path for the two test hooks below. */
static int hook_file(struct mem_vfs *m, const char *path, struct inode **out)
{
	struct target t;
	int r = resolve(m, path, NULL, &t);
	if (r)
		return r;
	if (!t.ino)
		return -ENOENT;
	if (t.ino->kind != INO_FILE)
		return -EISDIR;
	*out = t.ino;
	return 0;
}

int kv_vfs_mem_flip_bit(struct kv_vfs *vfs, const char *path, uint64_t off, unsigned bit)
{
	struct mem_vfs *m = to_mem(vfs);
	struct inode *ino;
	int r;
	if (bit > 7)
		return -EINVAL;
	pthread_mutex_lock(&m->mu);
	if ((r = hook_file(m, path, &ino)))
		goto out;
	uint8_t mask = (uint8_t)(1u << bit);
	bool hit = false;
	if (off < ino->len) {
		ino->data[off] ^= mask;
		hit = true;
	}
	if (ino->dur && off < ino->dur_len) {
		ino->dur[off] ^= mask;
		hit = true;
	} else if (off < ino->dur_len) {
		/* The durable byte is the oldest record's, else the buffer's. */
		struct undo *oldest = NULL;
		for (struct undo *u = ino->undo; u; u = u->next)
			if (off >= u->off && off - u->off < u->n)
				oldest = u;
		if (oldest)
			oldest->bytes[off - oldest->off] ^= mask;
		else if (off >= ino->len)
			ino->data[off] ^= mask; /* past @len: only durable */
		hit = true;
	}
	if (!hit)
		r = -EINVAL;
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}

int kv_vfs_mem_truncate_file(struct kv_vfs *vfs, const char *path, uint64_t size)
{
	struct mem_vfs *m = to_mem(vfs);
	struct inode *ino;
	int r;
	pthread_mutex_lock(&m->mu);
	if ((r = hook_file(m, path, &ino)))
		goto out;
	if (size < ino->len)
		ino->len = (size_t)size;
	if (size < ino->dur_len) {
		ino->dur_len = (size_t)size;
		if (ino->dur && size == 0) {
			free(ino->dur);
			ino->dur = NULL;
		}
		if (size == 0)
			undo_free(ino);
	}
out:
	pthread_mutex_unlock(&m->mu);
	return r;
}
