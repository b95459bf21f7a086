/*
 * fs_rename.c - rename (DESIGN §7 "Writing", "Conflicts as files",
 * "Directories"): a file rename is a put at the new key then a tombstone of
 * the old one; `mv name.sibling-i X` and `mv name X` of a conflicted name
 * move one or every version; a directory rename rewrites its subtree after
 * writing an intent record under /.kvfs/intents, which the next mount
 * finishes when the move was interrupted. Design note: doc/fs.md §5-6.
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

/* ---- rename ---- */

/*
 * Moves the object at @src_key to @dst_key: each version in @versions (from
 * a full GET) is put at @dst_key, the first with @dst_ctx, the others with
 * an empty context so that they stay siblings; then @src_key is tombstoned
 * with @src_ctx (NULL: no tombstone). The first put's resulting context and
 * dot go to @ctx_out and @dot_out.
 */
static int move_versions(struct fs *fs, const char *src_key, const char *dst_key,
			 const struct kv_version *const *versions, size_t n,
			 const struct kv_ctx *dst_ctx, const struct kv_ctx *src_ctx,
			 struct kv_ctx *ctx_out, struct kv_dot *dot_out)
{
	struct kv_client_call call = fs_call(fs);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		rc = kv_client_put(fs->client, kv_slice_str(dst_key), i == 0 ? dst_ctx : NULL,
				   versions[i]->meta, versions[i]->body, &call,
				   i == 0 ? dot_out : NULL, i == 0 ? ctx_out : NULL);
		if (rc < 0) {
			kv_warn("kvfs: rename: put %s: %s", dst_key, kv_client_errmsg(fs->client));
			return fs_errno(rc);
		}
	}
	if (src_ctx) {
		rc = kv_client_delete(fs->client, kv_slice_str(src_key), src_ctx, &call, NULL, NULL);
		if (rc < 0) {
			kv_warn("kvfs: rename: delete %s: %s", src_key, kv_client_errmsg(fs->client));
			return fs_errno(rc);
		}
	}
	return 0;
}

/* Rewrites the keys of @dir_key's subtree in the inode table. fs->lock held. */
/*
 * A moved directory's last listing describes the old keys: their versions
 * and contexts, not those move_tree() just wrote at the new ones. Every
 * entry is made stale (re-read before it is trusted, and kept by a
 * read-ahead page asked for before now), so a later put there carries the
 * new keys' contexts (a rename onto a moved name replaced nothing before
 * this). The entries stay: an open directory's snapshot may point at them.
 * fs->lock held.
 */
static void forget_listing(struct fs_dir *d)
{
	if (!d)
		return;
	uint64_t now = fs_mono_ns();
	d->listed_ns = 0;
	d->ra_ns = 0;
	for (size_t j = 0; j < d->n; j++) {
		d->d[j].fetched_ns = 0;
		d->d[j].stale_ns = now;
		d->d[j].has_own = false;
	}
}

static void rekey_subtree(struct fs *fs, const char *old_key, const char *new_key)
{
	size_t ol = strlen(old_key);
	for (size_t b = 0; b < fs->nbuckets; b++)
		for (struct fs_inode *i = fs->by_ino[b]; i; i = i->hnext) {
			if (strncmp(i->key, old_key, ol) != 0 || (i->key[ol] != '/' && i->key[ol] != 0))
				continue;
			size_t nl = strlen(new_key), rest = strlen(i->key + ol);
			char *k = malloc(nl + rest + 1);
			if (!k)
				continue;
			memcpy(k, new_key, nl);
			memcpy(k + nl, i->key + ol, rest + 1);
			free(i->key);
			i->key = k;
			forget_listing(i->dir);
		}
}

static int move_tree(struct fs *fs, const char *src, const char *dst, int depth);

/*
 * A removed subdirectory @src of a tree being moved (rmdir'ed where a child
 * was created concurrently, DESIGN §7 "Directories"): when it still has a
 * live child, its children move with the tree and @dst gets a directory
 * tombstone like its own (@meta), so the moved directory lives on through
 * them at the new place as it did at the old; unless @dst has a live
 * version, which it keeps. Returns 0 or a negative errno.
 */
static int move_removed_dir(struct fs *fs, const char *src, const char *dst,
			    struct kv_slice meta, int depth)
{
	int rc = fs_dir_has_child(fs, src);
	if (rc <= 0)
		return rc;
	rc = move_tree(fs, src, dst, depth + 1);
	if (rc < 0)
		return rc;
	/* @meta borrows from the caller's LIST page, untouched until its next LIST. */
	struct kv_dvv dset = KV_DVV_INIT;
	struct kv_client_call call = fs_call(fs);
	call.head = true;
	call.tombstones = true;
	int crc = kv_client_get(fs->client, kv_slice_str(dst), &call, &dset);
	if (crc == 0 && kv_dvv_live_count(&dset) == 0)
		crc = kv_client_delete_meta(fs->client, kv_slice_str(dst), &dset.ctx, meta, &call,
					    NULL, NULL);
	if (crc < 0)
		kv_warn("kvfs: moving the removed directory %s to %s: %s", src, dst,
			kv_client_errmsg(fs->client));
	kv_dvv_release(&dset);
	return crc < 0 ? fs_errno(crc) : 0;
}

/*
 * Moves the directory tree @src to @dst (keys placed by full parent path:
 * every entry is rewritten, DESIGN §7 "Directories"), children first put at
 * the new place, then removed from the old. Idempotent: running it again
 * finishes an interrupted move.
 */
static int move_tree(struct fs *fs, const char *src, const char *dst, int depth)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct kv_dvv set = KV_DVV_INIT, dset = KV_DVV_INIT;
	struct kv_client_call call = fs_call(fs);
	const struct kv_version **shown = NULL;
	int rc;
	if (depth > 256)
		return -ELOOP;
	fs_wb_wait_dir(fs, src); /* queued deletes in it end first (doc/fs.md §5) */
	/* The directory object itself. */
	rc = kv_client_get(fs->client, kv_slice_str(src), &call, &set);
	if (rc < 0)
		goto fail;
	call.head = true;
	rc = kv_client_get(fs->client, kv_slice_str(dst), &call, &dset);
	call.head = false;
	if (rc < 0)
		goto fail;
	shown = calloc(set.n + 1, sizeof *shown);
	if (!shown) {
		rc = -ENOMEM;
		goto out;
	}
	size_t ns = kv_dvv_display(&set, 0, shown);
	if (ns > 0) {
		rc = kv_client_put(fs->client, kv_slice_str(dst), &dset.ctx, shown[ns - 1]->meta,
				   shown[ns - 1]->body, &call, NULL, NULL);
		if (rc < 0)
			goto fail;
	}
	/* Removed subdirectories too: they may live on through children (fs.md §2). */
	struct kv_client_call lcall = call;
	lcall.tombstones = true;
	for (int pages = 0; pages < FS_LIST_MAX_PAGES; pages++) {
		rc = kv_client_list(fs->client, kv_slice_str(src), kv_buf_slice(&cursor), FS_LIST_PAGE,
				    &lcall, &page);
		if (rc < 0)
			goto fail;
		for (size_t i = 0; i < page.n; i++) {
			struct kv_client_list_entry *e = &page.entries[i];
			const struct kv_version *removed = fs_removed_dir(&e->set);
			if (kv_dvv_live_count(&e->set) == 0 && !removed)
				continue;
			char *sk = fs_child_key(src, (const char *)e->name.p, e->name.n);
			char *dk = fs_child_key(dst, (const char *)e->name.p, e->name.n);
			if (!sk || !dk) {
				free(sk);
				free(dk);
				rc = -ENOMEM;
				goto out;
			}
			if (removed) {
				rc = move_removed_dir(fs, sk, dk, removed->meta, depth);
				free(sk);
				free(dk);
				if (rc < 0)
					goto out;
				continue;
			}
			bool is_dir = false;
			for (size_t j = 0; j < e->set.n; j++) {
				struct kv_fs_meta m;
				if (!e->set.v[j].tombstone &&
				    kv_fs_meta_decode(e->set.v[j].meta, &m) == 0 && m.type == KV_FS_DIR)
					is_dir = true;
			}
			if (is_dir) {
				rc = move_tree(fs, sk, dk, depth + 1);
			} else {
				struct kv_dvv full = KV_DVV_INIT, dfull = KV_DVV_INIT;
				rc = kv_client_get(fs->client, kv_slice_str(sk), &call, &full);
				if (rc == 0) {
					call.head = true;
					rc = kv_client_get(fs->client, kv_slice_str(dk), &call, &dfull);
					call.head = false;
				}
				const struct kv_version **vs = rc == 0 ? calloc(full.n + 1, sizeof *vs) : NULL;
				if (rc == 0 && !vs)
					rc = -ENOMEM;
				if (rc == 0) {
					size_t nv = kv_dvv_display(&full, 0, vs);
					rc = move_versions(fs, sk, dk, vs, nv, &dfull.ctx, &full.ctx, NULL,
							   NULL);
				}
				free(vs);
				kv_dvv_release(&full);
				kv_dvv_release(&dfull);
			}
			free(sk);
			free(dk);
			if (rc < 0)
				goto fail;
		}
		if (!page.more)
			break;
		kv_buf_reset(&cursor);
		if (kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (set.n > 0) {
		/* As rmdir: the tombstone says a directory was here (fs.c delete_key). */
		rc = ns > 0 ? kv_client_delete_meta(fs->client, kv_slice_str(src), &set.ctx,
						    shown[ns - 1]->meta, &call, NULL, NULL)
			    : kv_client_delete(fs->client, kv_slice_str(src), &set.ctx, &call, NULL,
					       NULL);
		if (rc < 0)
			goto fail;
	}
	rc = 0;
	goto out;
fail:
	kv_warn("kvfs: moving %s to %s: %s", src, dst, kv_client_errmsg(fs->client));
	rc = fs_errno(rc);
out:
	free(shown);
	kv_dvv_release(&set);
	kv_dvv_release(&dset);
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return rc;
}

/* The intent record of a directory rename: an inline file "src\0dst". */
static int intent_write(struct fs *fs, const char *src, const char *dst, char *key, size_t keylen)
{
	uint8_t id[8];
	randombytes_buf(id, sizeof id);
	char hex[17];
	sodium_bin2hex(hex, sizeof hex, id, sizeof id);
	snprintf(key, keylen, "%s/%s", FS_INTENT_DIR, hex);
	struct kv_buf body = KV_BUF_INIT, raw = KV_BUF_INIT;
	struct kv_fs_meta m;
	memset(&m, 0, sizeof m);
	m.type = KV_FS_FILE;
	m.mode = 0600;
	m.mtime_ns = m.ctime_ns = (int64_t)fs_now_ns();
	int rc = kv_buf_append(&body, src, strlen(src) + 1);
	if (rc == 0)
		rc = kv_buf_append(&body, dst, strlen(dst));
	if (rc == 0) {
		kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_buf_slice(&body), body.n);
		rc = kv_fs_meta_encode(&m, &raw);
	}
	struct kv_client_call call = fs_call(fs);
	if (rc == 0)
		rc = kv_client_put(fs->client, kv_slice_str(key), NULL, kv_buf_slice(&raw),
				   kv_buf_slice(&body), &call, NULL, NULL);
	kv_buf_release(&body);
	kv_buf_release(&raw);
	return fs_errno(rc);
}

static int intent_done(struct fs *fs, const char *key)
{
	struct kv_dvv set = KV_DVV_INIT;
	struct kv_client_call call = fs_call(fs);
	call.head = true;
	int rc = kv_client_get(fs->client, kv_slice_str(key), &call, &set);
	if (rc == 0)
		rc = kv_client_delete(fs->client, kv_slice_str(key), &set.ctx, &call, NULL, NULL);
	kv_dvv_release(&set);
	return fs_errno(rc);
}

int fs_finish_intents(struct fs *fs)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_client_call call = fs_call(fs);
	int rc = kv_client_list(fs->client, kv_slice_str(FS_INTENT_DIR), kv_slice_make(NULL, 0),
				FS_LIST_PAGE, &call, &page);
	if (rc < 0) {
		rc = fs_errno(rc);
		goto out;
	}
	for (size_t i = 0; i < page.n; i++) {
		struct kv_client_list_entry *e = &page.entries[i];
		if (kv_dvv_live_count(&e->set) == 0)
			continue;
		char *key = fs_child_key(FS_INTENT_DIR, (const char *)e->name.p, e->name.n);
		struct kv_dvv full = KV_DVV_INIT;
		if (!key)
			continue;
		int r = kv_client_get(fs->client, kv_slice_str(key), &call, &full);
		for (size_t j = 0; r == 0 && j < full.n; j++) {
			const struct kv_version *v = &full.v[j];
			const uint8_t *nul = v->tombstone ? NULL : memchr(v->body.p, 0, v->body.n);
			if (!nul)
				continue;
			size_t sl = (size_t)(nul - v->body.p), dl = v->body.n - sl - 1;
			char *src = strndup((const char *)v->body.p, sl);
			char *dst = strndup((const char *)nul + 1, dl);
			if (src && dst && src[0] == '/' && dst[0] == '/') {
				kv_info("kvfs: finishing the move of %s to %s", src, dst);
				r = move_tree(fs, src, dst, 0);
			}
			free(src);
			free(dst);
		}
		if (r == 0)
			intent_done(fs, key);
		else
			kv_warn("kvfs: intent %s left for later: %s", key, kv_strerror(r));
		kv_dvv_release(&full);
		free(key);
	}
out:
	kv_client_list_page_release(&page);
	return rc;
}

static int rename_dir(struct fs *fs, struct fs_inode *dir, const char *name, struct fs_inode *ndir,
		      const char *newname, const struct fs_res *src)
{
	char ikey[128];
	pthread_mutex_lock(&fs->lock);
	char *sk = fs_child_key(dir->key, src->stored, strlen(src->stored));
	char *dk = fs_child_key(ndir->key, newname, strlen(newname));
	pthread_mutex_unlock(&fs->lock);
	int rc = -ENOMEM;
	if (!sk || !dk)
		goto out;
	size_t sl = strlen(sk);
	if (strncmp(dk, sk, sl) == 0 && dk[sl] == '/') {
		rc = -EINVAL; /* into itself */
		goto out;
	}
	rc = intent_write(fs, sk, dk, ikey, sizeof ikey);
	if (rc < 0)
		goto out;
	rc = move_tree(fs, sk, dk, 0);
	if (rc < 0)
		goto out; /* the intent stays: the next mount finishes the move */
	intent_done(fs, ikey);
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *target = fs_find_child(fs, ndir, newname);
	if (target)
		fs_name_unlink(fs, target);
	struct fs_inode *ino = fs_find_child(fs, dir, name);
	if (ino) {
		fs_name_unlink(fs, ino);
		char *nn = strdup(newname);
		if (nn) {
			free(ino->name);
			ino->name = nn;
		}
		if (ino->parent != ndir) {
			ndir->refs++;
			struct fs_inode *op = ino->parent;
			ino->parent = ndir;
			fs_unref_locked(fs, op, 1); /* the caller holds op too */
		}
		fs_name_link(fs, ino);
		rekey_subtree(fs, sk, dk);
	}
	struct fs_dent *d = fs_dir_find(dir, src->stored, strlen(src->stored));
	if (d) {
		kv_dvv_discard(&d->set, &d->set.ctx);
		d->fetched_ns = 0;
		d->stale_ns = fs_mono_ns();
		d->has_own = false;
	}
	d = fs_dent_stale(ndir, newname);
	if (d)
		d->has_own = false;
	pthread_mutex_unlock(&fs->lock);
out:
	free(sk);
	free(dk);
	return rc;
}

static int do_rename(struct fs *fs, struct fs_inode *dir, const char *name, struct fs_inode *ndir,
		     const char *newname, unsigned flags)
{
	struct fs_res src, dst;
	struct kv_dvv full = KV_DVV_INIT;
	struct kv_ctx ctx_out = KV_CTX_INIT;
	const struct kv_version **vs = NULL;
	char *sk = NULL, *dk = NULL;
	int rc;
	fs_res_init(&src);
	fs_res_init(&dst);
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	if (ndir == fs->root && strcmp(newname, FS_RESERVED_DIR) == 0)
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *sino = fs_find_child(fs, dir, name);
	struct kv_dot hint;
	bool has_hint = sino && sino->has_dot;
	if (has_hint)
		hint = sino->dot;
	if (sino)
		sino->refs++;
	pthread_mutex_unlock(&fs->lock);
	/* Whatever is dirty in the source goes first, so the move carries it. */
	if (sino) {
		pthread_mutex_lock(&sino->dlock);
		rc = sino->data ? fs_data_flush(fs, sino) : 0;
		has_hint = sino->has_dot;
		if (has_hint)
			hint = sino->dot;
		pthread_mutex_unlock(&sino->dlock);
		if (rc < 0)
			goto out;
	}
	rc = fs_resolve(fs, dir, name, has_hint ? &hint : NULL, &src);
	if (rc < 0)
		goto out;
	/* The target: a shown name (replaced, or resolved when it is a sibling). */
	struct kv_dot thint;
	bool has_thint = false;
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *tino = fs_find_child(fs, ndir, newname);
	if (tino && tino->has_dot) {
		thint = tino->dot;
		has_thint = true;
	}
	pthread_mutex_unlock(&fs->lock);
	rc = fs_resolve(fs, ndir, newname, has_thint ? &thint : NULL, &dst);
	bool target_exists = rc == 0;
	if (rc == -ESTALE)
		rc = -ENOENT;
	if (rc < 0 && rc != -ENOENT)
		goto out;
	if (target_exists && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto out;
	}
	if (!target_exists) {
		rc = kv_fs_name_check_new(newname);
		if (rc < 0)
			goto out;
		snprintf(dst.stored, sizeof dst.stored, "%s", newname);
		pthread_mutex_lock(&fs->lock);
		struct fs_dent *d = fs_dir_find(ndir, newname, strlen(newname));
		rc = d ? kv_ctx_copy(&dst.name_ctx, &d->set.ctx) : 0;
		pthread_mutex_unlock(&fs->lock);
		if (rc < 0)
			goto out;
	}
	if (src.is_dir) {
		if (target_exists && !dst.is_dir) {
			rc = -ENOTDIR;
			goto out;
		}
		if (target_exists) {
			pthread_mutex_lock(&fs->lock);
			char *tk = fs_child_key(ndir->key, dst.stored, strlen(dst.stored));
			pthread_mutex_unlock(&fs->lock);
			rc = tk ? fs_dir_has_child(fs, tk) : -ENOMEM;
			free(tk);
			if (rc > 0)
				rc = -ENOTEMPTY;
			if (rc < 0)
				goto out;
			if (dir == ndir && strcmp(src.stored, dst.stored) == 0) {
				rc = 0;
				goto out;
			}
		}
		rc = rename_dir(fs, dir, name, ndir, newname, &src);
		goto out;
	}
	if (target_exists && dst.is_dir) {
		rc = -EISDIR;
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	sk = fs_child_key(dir->key, src.stored, strlen(src.stored));
	dk = fs_child_key(ndir->key, dst.stored, strlen(dst.stored));
	pthread_mutex_unlock(&fs->lock);
	if (!sk || !dk) {
		rc = -ENOMEM;
		goto out;
	}
	bool same_key = strcmp(sk, dk) == 0;
	if (same_key && src.sibling == 0 && dst.sibling == 0) {
		rc = 0; /* onto itself */
		goto out;
	}
	struct kv_client_call call = fs_call(fs);
	rc = kv_client_get(fs->client, kv_slice_str(sk), &call, &full);
	if (rc < 0) {
		kv_warn("kvfs: rename: GET %s: %s", sk, kv_client_errmsg(fs->client));
		rc = fs_errno(rc);
		goto out;
	}
	vs = calloc(full.n + 1, sizeof *vs);
	if (!vs) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nv = 0;
	if (src.sibling == 0 && src.nfiles > 1) {
		/* mv name other of a conflicted file: every version shown moves. */
		const struct kv_version **all = calloc(full.n + 1, sizeof *all);
		if (!all) {
			rc = -ENOMEM;
			goto out;
		}
		size_t na = kv_dvv_display(&full, 0, all);
		for (size_t i = 0; i < na; i++)
			if (kv_ctx_covers(&src.name_ctx, all[i]->dot))
				vs[nv++] = all[i];
		free(all);
	} else {
		const struct kv_version *v = src.has_dot ? kv_dvv_find(&full, src.dot) : NULL;
		if (!v && src.sibling) {
			rc = -ESTALE;
			goto out;
		}
		if (!v) {
			const struct kv_version **all = calloc(full.n + 1, sizeof *all);
			size_t na = all ? kv_dvv_display(&full, 0, all) : 0;
			v = na ? all[na - 1] : NULL;
			free(all);
		}
		if (!v) {
			rc = -ENOENT;
			goto out;
		}
		vs[nv++] = v;
	}
	if (nv == 0) {
		rc = -ESTALE;
		goto out;
	}
	/* mv f.sibling-i f (same key): the name context covers version i; no tombstone. */
	const struct kv_ctx *src_ctx = same_key ? NULL : src.sibling ? &src.version_ctx : &src.name_ctx;
	struct kv_dot dot;
	rc = move_versions(fs, sk, dk, vs, nv, &dst.name_ctx, src_ctx, &ctx_out, &dot);
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *target = fs_find_child(fs, ndir, newname);
	if (target && target != sino) {
		target->unlinked = true;
		fs_name_unlink(fs, target);
	}
	if (sino && !sino->dead && sino->parent == dir && strcmp(sino->name, name) == 0) {
		/* The inode moves with its key: a later close writes at the new name. */
		fs_name_unlink(fs, sino);
		char *nn = strdup(newname);
		char *nk = strdup(dk);
		if (nn && nk) {
			free(sino->name);
			free(sino->key);
			sino->name = nn;
			sino->key = nk;
			if (sino->parent != ndir) {
				struct fs_inode *op = sino->parent;
				ndir->refs++;
				sino->parent = ndir;
				fs_unref_locked(fs, op, 1); /* the caller holds op too */
			}
			sino->sibling = 0;
			sino->dot = dot;
			sino->has_dot = true;
			fs_name_link(fs, sino);
		} else {
			free(nn);
			free(nk);
			sino->unlinked = true;
		}
	}
	struct fs_dent *d = fs_dir_find(dir, src.stored, strlen(src.stored));
	if (d) {
		if (src_ctx)
			kv_dvv_discard(&d->set, src_ctx);
		d->fetched_ns = 0;
		d->stale_ns = fs_mono_ns();
		d->has_own = false;
	}
	d = fs_dent_stale(ndir, dst.stored);
	if (d)
		d->has_own = false;
	pthread_mutex_unlock(&fs->lock);
	if (sino && nv == 1) {
		pthread_mutex_lock(&sino->dlock);
		if (sino->data)
			kv_ctx_swap(&sino->data->ctx, &ctx_out);
		pthread_mutex_unlock(&sino->dlock);
	}
	rc = 0;
out:
	if (sino)
		fs_unref(fs, sino);
	free(vs);
	free(sk);
	free(dk);
	kv_dvv_release(&full);
	kv_ctx_release(&ctx_out);
	fs_res_release(&src);
	fs_res_release(&dst);
	return rc;
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_get(fs, parent), *ndir = fs_get(fs, newparent);
	int rc = -ESTALE;
	if (dir && ndir) {
		pthread_mutex_lock(&fs->ns_lock);
		rc = do_rename(fs, dir, name, ndir, newname, flags);
		pthread_mutex_unlock(&fs->ns_lock);
	}
	fuse_reply_err(req, -rc);
	if (dir)
		fs_unref(fs, dir);
	if (ndir)
		fs_unref(fs, ndir);
}

