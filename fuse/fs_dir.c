/*
 * fs_dir.c - directory reading and extended attributes (DESIGN §7
 * "Listing"): opendir takes a snapshot from LIST pages that readdir(plus)
 * offsets index, with attributes and no per-entry request, read by a
 * listing thread page by page while readdir already answers; getxattr
 * answers ls -l's probes from the listing's metadata and computes
 * user.kvfs.*.
 * Design note: doc/fs.md §2.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

/* ---- directories ---- */

/* Threads that check removed directories for live children at once. */
#define FS_CHILD_CHECK_THREADS 8

/*
 * One page of an open directory's snapshot: the view of one LIST page's
 * entries. Names that look like `base.sibling-<n>` whose base lies on an
 * earlier page get that base entry too, first in the view and not shown
 * again, so that generated names still hide such stored names
 * (doc/fs-format.md §5.2) across pages.
 */
struct dirpage {
	struct kv_fs_view view;
	size_t *order; /* indexes into view.shown to show, in readdir order */
	size_t n;
	size_t start;  /* readdir index (offset - 2) of order[0] */
};

/*
 * An open directory: the snapshot its readdir offsets index (DESIGN §7
 * "Listing"). A listing thread reads the LIST pages and appends one
 * dirpage per page, so the first entries go out while later pages are
 * still on their way; offsets index the concatenation, which only grows.
 * Freed by whichever of releasedir and the listing thread ends last.
 */
struct dirh {
	pthread_mutex_t lock;   /* guards the fields up to refs; taken before fs->lock */
	pthread_cond_t cond;    /* a page came in, or the listing ended */
	struct dirpage *pages;
	size_t npages, cap;
	size_t total;           /* entries in the pages */
	bool done;              /* the listing ended; err says how */
	int err;                /* 0, or why the listing failed (-errno) */
	bool closed;            /* releasedir ran: the listing stops */
	int refs;               /* the handle and the listing thread */
	/* set at opendir, read-only afterwards */
	struct fs *fs;
	struct fs_inode *dir;   /* a reference, dropped by the listing thread */
};

static void page_release(struct dirpage *pg);

static void dirh_free(struct dirh *h)
{
	for (size_t i = 0; i < h->npages; i++)
		page_release(&h->pages[i]);
	free(h->pages);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

/* Drops one reference (h->lock not held). */
static void dirh_put(struct dirh *h, bool close_it)
{
	pthread_mutex_lock(&h->lock);
	if (close_it)
		h->closed = true;
	bool last = --h->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (last)
		dirh_free(h);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* Index of the entry @name (@len bytes) among @d->d[0 .. @n), or -1. */
static ssize_t find_before(const struct fs_dir *d, size_t n, const char *name, size_t len)
{
	ssize_t i = fs_dir_search(d, n, name, len);
	return i >= 0 ? i : -1;
}

/*
 * Builds in @pg the page of the listing entries @le[0 .. nb + n), the first
 * @nb only borrowed (not shown). The view copies what it needs from @le.
 */
static int build_page(struct dirh *h, const struct kv_fs_listing_entry *le, size_t nb, size_t n,
		      struct dirpage *pg)
{
	struct fs *fs = h->fs;
	memset(pg, 0, sizeof *pg);
	kv_fs_view_init(&pg->view);
	struct kv_fs_meta def;
	fs_dir_default_meta(fs, &def);
	int rc = fs_errno(kv_fs_view_build(&pg->view, le, nb + n, &def));
	if (rc < 0)
		return rc;
	pg->order = calloc(pg->view.nshown + 1, sizeof *pg->order);
	if (!pg->order)
		return -ENOMEM;
	for (size_t i = 0; i < pg->view.nshown; i++) {
		const struct kv_fs_shown *sh = &pg->view.shown[i];
		if (sh->entry < nb)
			continue;
		if (h->dir == fs->root && strcmp(sh->name, FS_RESERVED_DIR) == 0)
			continue;
		pg->order[pg->n++] = i;
	}
	return 0;
}

/* Appends @pg (taken) to @h and wakes readdir. Takes h->lock: no other lock held. */
static int append_page(struct dirh *h, struct dirpage *pg)
{
	int rc = 0;
	pthread_mutex_lock(&h->lock);
	if (h->npages == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 8;
		struct dirpage *np = realloc(h->pages, cap * sizeof *np);
		if (!np) {
			rc = -ENOMEM;
			goto out;
		}
		h->pages = np;
		h->cap = cap;
	}
	pg->start = h->total;
	h->pages[h->npages++] = *pg;
	h->total += pg->n;
	memset(pg, 0, sizeof *pg);
	pthread_cond_broadcast(&h->cond);
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static void page_release(struct dirpage *pg)
{
	kv_fs_view_release(&pg->view);
	free(pg->order);
	memset(pg, 0, sizeof *pg);
}

/* fs_page_fn of the listing thread: one LIST page becomes one dirpage. */
static int add_page(void *arg, const struct fs_dir *d, size_t first, size_t n, bool last)
{
	(void)last;
	struct dirh *h = arg;
	pthread_mutex_lock(&h->lock);
	bool closed = h->closed;
	pthread_mutex_unlock(&h->lock);
	if (closed)
		return -ECANCELED;
	size_t *bases = calloc(n + 1, sizeof *bases);
	struct kv_fs_listing_entry *le = calloc(2 * n + 1, sizeof *le);
	size_t nb = 0;
	int rc = 0;
	if (!bases || !le) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = first; i < first + n; i++) {
		size_t base_len;
		uint32_t idx;
		if (strlen(d->d[i].name) != d->d[i].len ||
		    kv_fs_sibling_parse(d->d[i].name, &base_len, &idx) != 0)
			continue;
		ssize_t b = find_before(d, first, d->d[i].name, base_len);
		if (b >= 0)
			bases[nb++] = (size_t)b;
	}
	if (nb > 1)
		qsort(bases, nb, sizeof *bases, cmp_size);
	size_t k = 0;
	for (size_t i = 0; i < nb; i++)
		if (k == 0 || bases[k - 1] != bases[i])
			bases[k++] = bases[i];
	nb = k;
	for (size_t i = 0; i < nb; i++) {
		const struct fs_dent *e = &d->d[bases[i]];
		le[i] = (struct kv_fs_listing_entry){ kv_slice_make(e->name, e->len), &e->set,
						      e->child == 1 };
	}
	for (size_t i = 0; i < n; i++) {
		const struct fs_dent *e = &d->d[first + i];
		le[nb + i] = (struct kv_fs_listing_entry){ kv_slice_make(e->name, e->len), &e->set,
							   e->child == 1 };
	}
	struct dirpage pg;
	rc = build_page(h, le, nb, n, &pg);
	if (rc == 0)
		rc = append_page(h, &pg);
	page_release(&pg);
out:
	free(bases);
	free(le);
	return rc;
}

/* Removed directories to check for live children, shared by the checkers. */
struct child_checks {
	struct fs *fs;
	struct fs_inode *dir;
	char **names;
	size_t n;
	_Atomic size_t next;
};

static void *check_children(void *arg)
{
	struct child_checks *c = arg;
	for (size_t i; (i = atomic_fetch_add(&c->next, 1)) < c->n;)
		fs_dent_check_child(c->fs, c->dir, c->names[i]);
	return NULL;
}

/*
 * After the listing: names whose versions are all tombstones of a directory
 * (or kept from the previous listing) may still be directories through live
 * children (DESIGN §7 "Directories"): one LIST each, every one not checked
 * within attr_timeout, FS_CHILD_CHECK_THREADS at a time; those alive are
 * the last page.
 */
static int add_kept(struct dirh *h)
{
	struct fs *fs = h->fs;
	struct fs_inode *dir = h->dir;
	struct child_checks c = { .fs = fs, .dir = dir };
	pthread_mutex_lock(&fs->lock);
	struct fs_dir *dd = dir->dir;
	size_t cap = 0;
	for (size_t i = 0; dd && i < dd->n; i++)
		cap += dd->d[i].child < 0;
	c.names = calloc(cap + 1, sizeof *c.names);
	for (size_t i = 0; c.names && dd && i < dd->n && c.n < cap; i++)
		if (dd->d[i].child < 0 && kv_dvv_live_count(&dd->d[i].set) == 0 &&
		    strlen(dd->d[i].name) == dd->d[i].len && (c.names[c.n] = strdup(dd->d[i].name)))
			c.n++;
	pthread_mutex_unlock(&fs->lock);
	if (!c.names)
		return -ENOMEM;
	pthread_t tid[FS_CHILD_CHECK_THREADS];
	size_t nt = 0;
	while (nt + 1 < FS_CHILD_CHECK_THREADS && nt + 1 < c.n &&
	       pthread_create(&tid[nt], NULL, check_children, &c) == 0)
		nt++;
	check_children(&c);
	for (size_t i = 0; i < nt; i++)
		pthread_join(tid[i], NULL);
	for (size_t i = 0; i < c.n; i++)
		free(c.names[i]);
	free(c.names);
	int rc = 0;
	struct dirpage pg;
	memset(&pg, 0, sizeof pg);
	pthread_mutex_lock(&fs->lock);
	struct fs_dir *d = dir->dir;
	size_t n = 0;
	struct kv_fs_listing_entry *le = calloc((d ? d->n : 0) + 1, sizeof *le);
	if (!le) {
		rc = -ENOMEM;
	} else {
		for (size_t i = 0; d && i < d->n; i++)
			if (d->d[i].child == 1 && kv_dvv_live_count(&d->d[i].set) == 0)
				le[n++] = (struct kv_fs_listing_entry){
					kv_slice_make(d->d[i].name, d->d[i].len), &d->d[i].set, true };
		/* The view copies what it needs: built under fs->lock. */
		if (n > 0)
			rc = build_page(h, le, 0, n, &pg);
	}
	pthread_mutex_unlock(&fs->lock);
	/* Appended without fs->lock: readdir takes h->lock before fs->lock. */
	if (rc == 0 && n > 0)
		rc = append_page(h, &pg);
	page_release(&pg);
	free(le);
	return rc;
}

static void *list_main(void *arg)
{
	struct dirh *h = arg;
	struct fs *fs = h->fs;
	int rc = fs_dir_list_pages(fs, h->dir, add_page, h);
	if (rc == 0)
		rc = add_kept(h);
	pthread_mutex_lock(&h->lock);
	h->done = true;
	h->err = rc == -ECANCELED ? 0 : rc;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	fs_unref(fs, h->dir);
	dirh_put(h, false);
	pthread_mutex_lock(&fs->lock);
	fs->list_threads--;
	pthread_cond_broadcast(&fs->list_cond);
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, n);
	struct dirh *h = NULL;
	int rc = 0;
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	h = calloc(1, sizeof *h);
	if (!h) {
		fs_unref(fs, dir);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->fs = fs;
	h->dir = dir; /* the listing thread drops this reference */
	h->refs = 2;
	pthread_mutex_lock(&fs->lock);
	fs->list_threads++;
	pthread_mutex_unlock(&fs->lock);
	pthread_attr_t attr;
	pthread_t th;
	bool started = pthread_attr_init(&attr) == 0;
	if (started) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&th, &attr, list_main, h) == 0;
		pthread_attr_destroy(&attr);
	}
	if (!started)
		list_main(h); /* no thread: list it all now */
	/* Answer once the first page is in: a failure to list is opendir's. */
	pthread_mutex_lock(&h->lock);
	while (!h->done && h->npages == 0)
		pthread_cond_wait(&h->cond, &h->lock);
	if (h->npages == 0)
		rc = h->err < 0 ? h->err : -EIO;
	pthread_mutex_unlock(&h->lock);
	if (rc < 0) {
		dirh_put(h, true);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) != 0)
		dirh_put(h, true);
}

/* The attributes of a shown entry as a res (for bind_inode). fs->lock not needed. */
static int shown_res(const struct kv_fs_view *v, const struct kv_fs_shown *s, struct fs_res *r)
{
	const struct kv_fs_name *nm = &v->names[s->entry];
	if (nm->name_len > KV_FS_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(r->stored, nm->name, nm->name_len);
	r->stored[nm->name_len] = '\0';
	r->sibling = s->sibling;
	r->nfiles = nm->nfiles;
	r->is_dir = s->meta.type == KV_FS_DIR && s->sibling == 0;
	kv_buf_reset(&r->meta_raw);
	if (s->version) {
		r->has_dot = true;
		r->dot = s->version->dot;
		return kv_buf_append(&r->meta_raw, s->version->meta.p, s->version->meta.n);
	}
	r->has_dot = false;
	return kv_fs_meta_encode(&s->meta, &r->meta_raw);
}

static void do_readdir(fuse_req_t req, fuse_ino_t n, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	struct dirh *h = (struct dirh *)(uintptr_t)fi->fh;
	struct fs_inode *dir = fs_get(fs, n);
	char *buf = calloc(1, size);
	size_t pos = 0;
	struct fs_res r;
	fs_res_init(&r);
	if (!buf || !dir) {
		fuse_reply_err(req, buf ? ESTALE : ENOMEM);
		goto out;
	}
	/*
	 * h->lock is held while the entries are copied out (the listing thread
	 * only takes it to append a page); fs->lock nests inside it.
	 */
	pthread_mutex_lock(&h->lock);
	size_t pg = 0;
	int err = 0;
	for (size_t i = (size_t)off;; i++) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof e);
		const char *name;
		const struct kv_fs_shown *s = NULL;
		const struct kv_fs_view *view = NULL;
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = i == 0 ? n : FUSE_ROOT_ID;
		} else {
			size_t idx = i - 2;
			/* Not listed yet: send what there is, else wait for the next page. */
			bool send_now = false;
			while (idx >= h->total && !h->done && !send_now) {
				if (pos > 0)
					send_now = true;
				else
					pthread_cond_wait(&h->cond, &h->lock);
			}
			if (send_now)
				break;
			if (idx >= h->total) {
				if (h->err < 0 && pos == 0)
					err = -h->err;
				break;
			}
			/* The page holding idx: the last one starting at or before it. */
			if (pg >= h->npages || h->pages[pg].start > idx) {
				size_t lo = 0, hi = h->npages;
				while (hi - lo > 1) {
					size_t mid = (lo + hi) / 2;
					if (h->pages[mid].start <= idx)
						lo = mid;
					else
						hi = mid;
				}
				pg = lo;
			}
			while (idx >= h->pages[pg].start + h->pages[pg].n)
				pg++;
			const struct dirpage *p = &h->pages[pg];
			view = &p->view;
			s = &view->shown[p->order[idx - p->start]];
			name = s->name;
			e.attr.st_mode = s->meta.type == KV_FS_DIR ? S_IFDIR
					 : s->meta.type == KV_FS_SYMLINK ? S_IFLNK
									  : S_IFREG;
		}
		size_t need = plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
				   : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
		if (pos + need > size)
			break;
		if (s) {
			if (shown_res(view, s, &r) < 0)
				continue;
			pthread_mutex_lock(&fs->lock);
			struct fs_inode *ino = NULL;
			if (plus) {
				ino = fs_bind_inode(fs, dir, name, &r);
				if (ino)
					fs_fill_entry(fs, ino, &e);
			} else {
				struct fs_inode *c = fs_find_child(fs, dir, name);
				e.attr.st_ino = c ? c->ino : 0xffffffffu;
			}
			pthread_mutex_unlock(&fs->lock);
			if (plus && !ino)
				break;
		}
		if (plus)
			pos += fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e,
						      (off_t)i + 1);
		else
			pos += fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr,
						 (off_t)i + 1);
	}
	pthread_mutex_unlock(&h->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, pos);
out:
	fs_res_release(&r);
	free(buf);
	if (dir)
		fs_unref(fs, dir);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t n, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, n, size, off, fi, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t n, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, n, size, off, fi, true);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	(void)n;
	struct dirh *h = (struct dirh *)(uintptr_t)fi->fh;
	if (h)
		dirh_put(h, true); /* a listing still running stops at its next page */
	fuse_reply_err(req, 0);
}

/*
 * Every namespace change is written at W before it returns, except the
 * deletes of write-behind unlinks (doc/fs.md §5): fsyncdir waits for the
 * directory's, and reports EIO once when one of them failed.
 */
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t n, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, n);
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	char *key = strdup(dir->key);
	pthread_mutex_unlock(&fs->lock);
	int rc = -ENOMEM;
	if (key) {
		fs_wb_wait_dir(fs, key);
		rc = fs_wb_take_error(fs, dir);
	}
	free(key);
	fuse_reply_err(req, -rc);
	fs_unref(fs, dir);
}

void fs_op_statfs(fuse_req_t req, fuse_ino_t n)
{
	struct statvfs sv;
	memset(&sv, 0, sizeof sv);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = 1ull << 32;
	sv.f_bfree = 1ull << 31;
	sv.f_bavail = 1ull << 31;
	sv.f_files = 1ull << 32;
	sv.f_ffree = 1ull << 31;
	sv.f_favail = 1ull << 31;
	sv.f_namemax = KV_FS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

void fs_op_access(fuse_req_t req, fuse_ino_t n, int mask)
{
	fuse_reply_err(req, 0); /* default_permissions: the kernel checks */
}

/* ---- xattrs ---- */

static bool is_kvfs_xattr(const char *name)
{
	return strncmp(name, "user.kvfs.", 10) == 0;
}

/* The user.kvfs.* values, computed from the directory's last listing. */
static int kvfs_xattr(struct fs *fs, struct fs_inode *ino, const char *name, struct kv_buf *out)
{
	struct fs_res r;
	fs_res_init(&r);
	int rc;
	if (!ino->parent) {
		rc = -ENODATA;
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *dir = ino->parent;
	dir->refs++;
	char *shown = strdup(ino->name);
	struct kv_dot dot = ino->dot;
	bool has_dot = ino->has_dot;
	pthread_mutex_unlock(&fs->lock);
	rc = shown ? fs_resolve(fs, dir, shown, has_dot ? &dot : NULL, &r) : -ENOMEM;
	free(shown);
	fs_unref(fs, dir);
	if (rc < 0)
		goto out;
	char tmp[64];
	if (strcmp(name, "user.kvfs.siblings") == 0) {
		snprintf(tmp, sizeof tmp, "%zu", r.nfiles > 1 ? r.nfiles : 0);
		rc = kv_buf_append(out, tmp, strlen(tmp));
	} else if (strcmp(name, "user.kvfs.dot") == 0) {
		if (!r.has_dot) {
			rc = -ENODATA;
			goto out;
		}
		snprintf(tmp, sizeof tmp, "%u.%u:%llu", r.dot.actor.node, r.dot.actor.epoch,
			 (unsigned long long)r.dot.counter);
		rc = kv_buf_append(out, tmp, strlen(tmp));
	} else if (strcmp(name, "user.kvfs.version") == 0) {
		struct kv_buf enc = KV_BUF_INIT;
		rc = kv_ctx_encode(&r.name_ctx, &enc);
		if (rc == 0) {
			size_t b64 = sodium_base64_encoded_len(enc.n, sodium_base64_VARIANT_ORIGINAL);
			rc = kv_buf_reserve(out, b64);
			if (rc == 0) {
				sodium_bin2base64((char *)out->p + out->n, b64, enc.p, enc.n,
						  sodium_base64_VARIANT_ORIGINAL);
				out->n += b64 - 1;
			}
		}
		kv_buf_release(&enc);
	} else {
		rc = -ENODATA;
	}
out:
	fs_res_release(&r);
	return rc;
}

static void reply_xattr(fuse_req_t req, size_t size, const void *p, size_t n)
{
	if (size == 0)
		fuse_reply_xattr(req, n);
	else if (n > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, p, n);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t n, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	struct kv_buf out = KV_BUF_INIT;
	int rc;
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (is_kvfs_xattr(name)) {
		rc = kvfs_xattr(fs, ino, name, &out);
	} else {
		/* From the attributes the listing gave: ls -l's ACL probes cost nothing. */
		struct kv_slice val;
		pthread_mutex_lock(&fs->lock);
		rc = kv_fs_xattr_get(ino->meta.xattrs, kv_slice_str(name), &val);
		if (rc == 0)
			rc = kv_buf_append(&out, val.p, val.n);
		pthread_mutex_unlock(&fs->lock);
		/*
		 * The mount neither enforces ACLs nor labels: a probe of one the
		 * file does not hold is EOPNOTSUPP, not ENODATA. ls -l then stops
		 * probing this file system after its first entry (coreutils keeps
		 * unsupported devices), instead of two requests per entry.
		 */
		if (rc == -ENODATA && (strncmp(name, "security.", 9) == 0 ||
				       strncmp(name, "system.posix_acl_", 17) == 0))
			rc = -EOPNOTSUPP;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, size, out.p, out.n);
	kv_buf_release(&out);
	fs_unref(fs, ino);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t n, size_t size)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	struct kv_buf out = KV_BUF_INIT;
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	int rc = kv_fs_xattr_list(ino->meta.xattrs, &out);
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, size, out.p, out.n);
	kv_buf_release(&out);
	fs_unref(fs, ino);
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t n, const char *name, const char *value,
			size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	int rc;
	if (is_kvfs_xattr(name))
		rc = -EPERM; /* computed by the mount, never stored */
	else if (n == FUSE_ROOT_ID)
		rc = -ENOTSUP;
	else {
		struct kv_slice nm = kv_slice_str(name), val = kv_slice_make(value, size);
		struct stat none;
		memset(&none, 0, sizeof none);
		rc = fs_change_meta(fs, ino, &none, 0, &nm, &val, flags, false);
	}
	fuse_reply_err(req, -rc);
	fs_unref(fs, ino);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t n, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *ino = fs_get(fs, n);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	int rc;
	if (is_kvfs_xattr(name))
		rc = -EPERM;
	else if (n == FUSE_ROOT_ID)
		rc = -ENODATA;
	else {
		struct kv_slice nm = kv_slice_str(name);
		struct stat none;
		memset(&none, 0, sizeof none);
		rc = fs_change_meta(fs, ino, &none, 0, &nm, NULL, 0, true);
	}
	fuse_reply_err(req, -rc);
	fs_unref(fs, ino);
}

