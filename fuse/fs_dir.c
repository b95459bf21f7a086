/*
 * fs_dir.c - directory reading and extended attributes (DESIGN §7
 * "Listing"): opendir takes a snapshot from LIST pages that readdir(plus)
 * offsets index, with attributes and no per-entry request; getxattr answers
 * ls -l's probes from the listing's metadata and computes user.kvfs.*.
 * Design note: doc/fs.md §2.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
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

/* Tombstone-only names opendir checks for live children, at most. */
#define FS_CHILD_CHECKS 16

/* An open directory: the snapshot its readdir offsets index (DESIGN §7 "Listing"). */
struct dirh {
	struct kv_fs_view view;
	size_t *order; /* indexes into view.shown, the reserved directory left out */
	size_t n;
};

void fs_op_opendir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, n);
	struct kv_fs_listing_entry *le = NULL;
	struct dirh *h = NULL;
	int rc;
	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	rc = fs_dir_list(fs, dir);
	if (rc < 0)
		goto out;
	h = calloc(1, sizeof *h);
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	kv_fs_view_init(&h->view);
	/*
	 * Names with tombstones only may still be directories through live
	 * children (DESIGN §7 "Directories"): one LIST each, for a bounded few.
	 */
	for (size_t checked = 0, i = 0; checked < FS_CHILD_CHECKS; i++) {
		char *nm = NULL;
		pthread_mutex_lock(&fs->lock);
		struct fs_dir *dd = dir->dir;
		for (; dd && i < dd->n; i++)
			if (dd->d[i].child < 0 && kv_dvv_live_count(&dd->d[i].set) == 0 &&
			    strlen(dd->d[i].name) == dd->d[i].len) {
				nm = strdup(dd->d[i].name);
				break;
			}
		pthread_mutex_unlock(&fs->lock);
		if (!nm)
			break;
		fs_dent_check_child(fs, dir, nm);
		free(nm);
		checked++;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_dir *d = dir->dir;
	le = calloc(d->n + 1, sizeof *le);
	if (le) {
		for (size_t i = 0; i < d->n; i++) {
			le[i].name = kv_slice_make(d->d[i].name, d->d[i].len);
			le[i].set = &d->d[i].set;
			le[i].has_live_child = d->d[i].child == 1;
		}
		struct kv_fs_meta def;
		fs_dir_default_meta(fs, &def);
		rc = fs_errno(kv_fs_view_build(&h->view, le, d->n, &def));
	} else {
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto out;
	h->order = calloc(h->view.nshown + 1, sizeof *h->order);
	if (!h->order) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < h->view.nshown; i++) {
		if (dir == fs->root && strcmp(h->view.shown[i].name, FS_RESERVED_DIR) == 0)
			continue;
		h->order[h->n++] = i;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) == 0)
		h = NULL;
	rc = 0;
out:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	if (h) {
		kv_fs_view_release(&h->view);
		free(h->order);
		free(h);
	}
	free(le);
	fs_unref(fs, dir);
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
	for (size_t i = (size_t)off; i < h->n + 2; i++) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof e);
		const char *name;
		const struct kv_fs_shown *s = NULL;
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = i == 0 ? n : FUSE_ROOT_ID;
		} else {
			s = &h->view.shown[h->order[i - 2]];
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
			if (shown_res(&h->view, s, &r) < 0)
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
	if (h) {
		kv_fs_view_release(&h->view);
		free(h->order);
		free(h);
	}
	fuse_reply_err(req, 0);
}

void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t n, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* every namespace change is written at W before it returns */
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

