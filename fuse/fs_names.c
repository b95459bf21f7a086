/*
 * fs_names.c - names (DESIGN §7 "Listing", "Conflicts as files",
 * "Directories"): each directory's last listing, taken from LIST pages or
 * refreshed one entry at a time with GET HEAD, and the resolution of the
 * names the kernel passes (`name`, `name.sibling-i`) against it, with the
 * contexts each gesture writes with. Design note: doc/fs.md §2-3.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/fs_int.h"
#include "util/error.h"
#include "util/log.h"

/* ---- directory listings (fs->lock held) ---- */

static struct fs_dir *dir_of(struct fs_inode *d)
{
	if (!d->dir)
		d->dir = calloc(1, sizeof *d->dir);
	return d->dir;
}

ssize_t fs_dir_search(const struct fs_dir *d, size_t n, const char *name, size_t len)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = kv_slice_cmp(kv_slice_make(d->d[mid].name, d->d[mid].len),
				     kv_slice_make(name, len));
		if (c == 0)
			return (ssize_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(ssize_t)lo - 1;
}

struct fs_dent *fs_dir_find(struct fs_inode *dirino, const char *name, size_t len)
{
	if (!dirino->dir)
		return NULL;
	ssize_t i = fs_dir_search(dirino->dir, dirino->dir->n, name, len);
	return i >= 0 ? &dirino->dir->d[i] : NULL;
}

/* True when @set holds a live directory version. */
static bool set_has_dir(const struct kv_dvv *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct kv_fs_meta m;
		if (!set->v[i].tombstone && kv_fs_meta_decode(set->v[i].meta, &m) == 0 &&
		    m.type == KV_FS_DIR)
			return true;
	}
	return false;
}

const struct kv_version *fs_removed_dir(const struct kv_dvv *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct kv_fs_meta m;
		if (set->v[i].tombstone && kv_fs_meta_decode(set->v[i].meta, &m) == 0 &&
		    m.type == KV_FS_DIR)
			return &set->v[i];
	}
	return NULL;
}

/*
 * Takes out of @set what a read with `tombstones` adds to a name without
 * live versions (doc/protocol.md §5.1): 1 when that was a directory's
 * tombstone (rmdir), whose name lives on while it has live children (DESIGN
 * §7 "Directories"); else 0; -ENOMEM (then @set is unchanged).
 */
static int take_tombstone(struct kv_dvv *set)
{
	int dir = fs_removed_dir(set) != NULL;
	return kv_dvv_hide_tombstones(set, false) < 0 ? -ENOMEM : dir;
}

/* Stores @set (taken: left empty) as the entry @name. */
static int dir_store_in(struct fs_dir *d, const char *name, size_t len, struct kv_dvv *set,
			uint64_t now)
{
	int removed_dir = take_tombstone(set);
	if (removed_dir < 0)
		return removed_dir;
	ssize_t i = fs_dir_search(d, d->n, name, len);
	if (i >= 0) {
		/*
		 * Only a name known as a directory (here, or by its rmdir's
		 * tombstone) is checked for live children once its versions
		 * are gone (see fs_dent_check_child).
		 */
		bool was_dir = removed_dir || d->d[i].child != 0 || set_has_dir(&d->d[i].set);
		kv_dvv_swap(&d->d[i].set, set);
		kv_dvv_release(set);
		d->d[i].fetched_ns = now;
		d->d[i].child = was_dir ? -1 : 0;
		d->d[i].child_ns = 0;
		if (now != 0) {
			d->d[i].has_own = false;
			kv_ctx_release(&d->d[i].own_ctx);
		}
		return 0;
	}
	size_t at = (size_t)(-i - 1);
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct fs_dent *nd = realloc(d->d, cap * sizeof *nd);
		if (!nd)
			return -ENOMEM;
		d->d = nd;
		d->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, name, len);
	copy[len] = '\0';
	memmove(&d->d[at + 1], &d->d[at], (d->n - at) * sizeof *d->d);
	d->d[at].name = copy;
	d->d[at].len = len;
	kv_dvv_init(&d->d[at].set);
	kv_dvv_swap(&d->d[at].set, set);
	d->d[at].fetched_ns = now;
	d->d[at].stale_ns = 0;
	d->d[at].child = removed_dir ? -1 : 0;
	d->d[at].child_ns = 0;
	d->d[at].emptied_ns = 0;
	d->d[at].has_own = false;
	kv_ctx_init(&d->d[at].own_ctx);
	d->n++;
	return 0;
}

/* Stores @set (taken: left empty) as the entry @name of @dirino's listing. */
static int dir_store(struct fs_inode *dirino, const char *name, size_t len, struct kv_dvv *set,
		     uint64_t now)
{
	struct fs_dir *d = dir_of(dirino);
	return d ? dir_store_in(d, name, len, set, now) : -ENOMEM;
}

/*
 * The entry @name of @dirino changed here: it is re-read at its next lookup
 * (made, empty and stale, when the last listing did not have it).
 */
struct fs_dent *fs_dent_stale(struct fs_inode *dirino, const char *name)
{
	size_t len = strlen(name);
	struct fs_dent *d = fs_dir_find(dirino, name, len);
	if (!d) {
		struct kv_dvv empty = KV_DVV_INIT;
		if (dir_store(dirino, name, len, &empty, 0) < 0)
			return NULL;
		d = fs_dir_find(dirino, name, len);
	}
	if (d) {
		d->fetched_ns = 0;
		d->stale_ns = fs_mono_ns();
	}
	return d;
}

void fs_dent_touch(struct fs *fs, struct fs_inode *ino, const struct kv_ctx *discarded,
		   const struct kv_ctx *own)
{
	(void)fs;
	if (!ino->parent)
		return;
	struct fs_dent *d = fs_dent_stale(ino->parent, fs_stored_name(ino));
	if (!d)
		return;
	if (discarded)
		kv_dvv_discard(&d->set, discarded);
	d->has_own = own && ino->sibling == 0 && kv_ctx_copy(&d->own_ctx, own) == 0;
}

/*
 * One-entry view of @d (the names one stored name shows). @as_dir: a name
 * without live versions shows as a directory whatever @d->child says.
 */
static int fs_dent_view(struct fs *fs, const struct fs_dent *d, bool as_dir, struct kv_fs_view *v)
{
	struct kv_fs_meta def;
	fs_dir_default_meta(fs, &def);
	struct kv_fs_listing_entry le = { kv_slice_make(d->name, d->len), &d->set,
					  d->child == 1 || as_dir };
	return kv_fs_view_build(v, &le, 1, &def);
}

int fs_name_context(struct fs *fs, struct fs_inode *ino, struct kv_ctx *out)
{
	int rc = 0;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	pthread_mutex_lock(&fs->lock);
	const char *nm = fs_stored_name(ino);
	struct fs_dent *d = ino->parent ? fs_dir_find(ino->parent, nm, strlen(nm)) : NULL;
	if (!d) {
		kv_ctx_clear(out);
		goto out;
	}
	rc = fs_dent_view(fs, d, false, &v);
	if (rc == 0 && v.nnames == 1)
		rc = kv_fs_view_name_context(&v.names[0], out);
	else if (rc == 0)
		kv_ctx_clear(out);
out:
	pthread_mutex_unlock(&fs->lock);
	kv_fs_view_release(&v);
	return rc;
}

/* Reads one entry with GET HEAD at R and stores it in @dirino's listing. */
static int dent_fetch(struct fs *fs, struct fs_inode *dirino, const char *name, size_t len)
{
	struct kv_dvv set = KV_DVV_INIT;
	char *key = NULL;
	pthread_mutex_lock(&fs->lock);
	key = fs_child_key(dirino->key, name, len);
	/*
	 * A lookup that just timed out is not tried again at once: the kernel
	 * retries a failed revalidation with a fresh lookup, which would double
	 * the wait of an unreachable cluster (DESIGN §7 "Failure").
	 */
	bool recent = fs_mono_ns() - fs->lookup_timeout_ns < 500 * 1000000ull;
	pthread_mutex_unlock(&fs->lock);
	if (!key)
		return -ENOMEM;
	if (recent) {
		free(key);
		return -EIO;
	}
	struct kv_client_call call = fs_call(fs);
	call.head = true;
	call.tombstones = true; /* a removed directory may live on (take_tombstone) */
	int rc = kv_client_get(fs->client, kv_slice_str(key), &call, &set);
	free(key);
	if (rc < 0) {
		kv_warn("kvfs: GET %s/%.*s: %s", dirino->key, (int)len, name,
			kv_client_errmsg(fs->client));
		if (rc == KV_ETIMEDOUT) {
			pthread_mutex_lock(&fs->lock);
			fs->lookup_timeout_ns = fs_mono_ns();
			pthread_mutex_unlock(&fs->lock);
		}
		kv_dvv_release(&set);
		return fs_errno(rc);
	}
	pthread_mutex_lock(&fs->lock);
	rc = dir_store(dirino, name, len, &set, fs_mono_ns());
	pthread_mutex_unlock(&fs->lock);
	kv_dvv_release(&set);
	return rc;
}

/* Takes a full listing of @dirino (LIST pages merged by name cursor). */
int fs_dir_list(struct fs *fs, struct fs_inode *dirino)
{
	return fs_dir_list_pages(fs, dirino, NULL, NULL);
}

static uint64_t attr_timeout_ns(const struct fs *fs);

/*
 * A removed directory's check for live children (fs_dent_check_child) is
 * as good as any other name this mount read, for attr_timeout: the new
 * listing @nd keeps the results of @old whose versions did not change, so
 * that listing a directory again does not ask again; and when this mount
 * emptied one (fs_note_emptied). fs->lock held.
 */
static void keep_checks(const struct fs *fs, const struct fs_dir *old, struct fs_dir *nd)
{
	uint64_t now = fs_mono_ns();
	for (size_t i = 0; old && i < old->n; i++) {
		const struct fs_dent *od = &old->d[i];
		bool fresh = od->child >= 0 && od->child_ns != 0 &&
			     now - od->child_ns <= attr_timeout_ns(fs);
		if (!fresh && od->emptied_ns == 0)
			continue;
		ssize_t j = fs_dir_search(nd, nd->n, od->name, od->len);
		if (j < 0)
			continue;
		nd->d[j].emptied_ns = od->emptied_ns; /* fs_note_emptied */
		if (fresh && nd->d[j].child < 0 && kv_dvv_equal(&nd->d[j].set, &od->set)) {
			nd->d[j].child = od->child;
			nd->d[j].child_ns = od->child_ns;
		}
	}
}

int fs_dir_list_pages(struct fs *fs, struct fs_inode *dirino, fs_page_fn on_page, void *arg)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct fs_dir *nd = calloc(1, sizeof *nd);
	char *key = NULL;
	int rc = 0;
	if (!nd)
		return -ENOMEM;
	pthread_mutex_lock(&fs->lock);
	key = strdup(dirino->key);
	pthread_mutex_unlock(&fs->lock);
	if (!key) {
		rc = -ENOMEM;
		goto out;
	}
	/* The directory's queued deletes end first: a listing never shows them. */
	fs_wb_wait_dir(fs, key);
	struct kv_client_call call = fs_call(fs);
	call.tombstones = true; /* removed directories that may live on (take_tombstone) */
	for (int pages = 0; pages < FS_LIST_MAX_PAGES; pages++) {
		rc = kv_client_list(fs->client, kv_slice_str(key), kv_buf_slice(&cursor), FS_LIST_PAGE,
				    &call, &page);
		if (rc < 0) {
			kv_warn("kvfs: LIST %s: %s", key, kv_client_errmsg(fs->client));
			rc = fs_errno(rc);
			goto out;
		}
		if (nd->n + page.n > nd->cap) {
			size_t cap = (nd->n + page.n) * 2 + 16;
			struct fs_dent *g = realloc(nd->d, cap * sizeof *g);
			if (!g) {
				rc = -ENOMEM;
				goto out;
			}
			nd->d = g;
			nd->cap = cap;
		}
		uint64_t now = fs_mono_ns();
		size_t first = nd->n;
		for (size_t i = 0; i < page.n; i++) {
			struct kv_client_list_entry *e = &page.entries[i];
			/* Names must ascend strictly: a reply that breaks it is refused. */
			if (nd->n > 0 && kv_slice_cmp(kv_slice_make(nd->d[nd->n - 1].name,
								     nd->d[nd->n - 1].len),
						      kv_buf_slice(&e->name)) >= 0) {
				kv_warn("kvfs: LIST %s: names out of order", key);
				rc = -EIO;
				goto out;
			}
			int removed_dir = take_tombstone(&e->set);
			char *copy = removed_dir < 0 ? NULL : malloc(e->name.n + 1);
			if (!copy) {
				rc = -ENOMEM;
				goto out;
			}
			memcpy(copy, e->name.p, e->name.n);
			copy[e->name.n] = '\0';
			struct fs_dent *d = &nd->d[nd->n++];
			d->name = copy;
			d->len = e->name.n;
			kv_dvv_init(&d->set);
			kv_dvv_swap(&d->set, &e->set);
			d->fetched_ns = now;
			d->stale_ns = 0;
			d->child = removed_dir ? -1 : 0; /* checked after the listing */
			d->child_ns = 0;
			d->emptied_ns = 0;
			d->has_own = false;
			kv_ctx_init(&d->own_ctx);
		}
		if (on_page) {
			/* nd is still private: no lock needed to read it. */
			rc = on_page(arg, nd, first, nd->n - first, !page.more);
			if (rc < 0)
				goto out;
		}
		if (!page.more)
			break;
		kv_buf_reset(&cursor);
		if (page.next_cursor.n == 0 ||
		    kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n) < 0) {
			rc = page.next_cursor.n == 0 ? -EIO : -ENOMEM;
			goto out;
		}
	}
	nd->listed_ns = fs_mono_ns();
	pthread_mutex_lock(&fs->lock);
	struct fs_dir *old = dirino->dir;
	/*
	 * LIST leaves out names without live versions; a directory among them
	 * may live on through its children: keep those names, to be checked.
	 */
	for (size_t i = 0; old && i < old->n; i++) {
		struct fs_dent *od = &old->d[i];
		if ((od->child != 0 || set_has_dir(&od->set)) &&
		    fs_dir_search(nd, nd->n, od->name, od->len) < 0) {
			struct kv_dvv empty = KV_DVV_INIT;
			if (dir_store_in(nd, od->name, od->len, &empty, 0) == 0) {
				ssize_t j = fs_dir_search(nd, nd->n, od->name, od->len);
				if (j >= 0)
					nd->d[j].child = -1;
			}
		}
	}
	keep_checks(fs, old, nd);
	dirino->dir = nd;
	pthread_mutex_unlock(&fs->lock);
	fs_dir_free(old);
	nd = NULL;
out:
	fs_dir_free(nd);
	free(key);
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return rc;
}

/* ---- lookup read-ahead (doc/fs.md §2) ---- */

static uint64_t attr_timeout_ns(const struct fs *fs)
{
	return (uint64_t)(fs->attr_timeout * 1e9);
}

/*
 * True when the last read-ahead page of @d, still younger than
 * attr_timeout, covered @name: a name it did not hold is absent.
 * fs->lock held.
 */
static bool ra_covers(const struct fs *fs, const struct fs_dir *d, const char *name, size_t len)
{
	if (!d || d->ra_ns == 0 || !d->ra_lo || fs_mono_ns() - d->ra_ns > attr_timeout_ns(fs))
		return false;
	struct kv_slice nm = kv_slice_make(name, len);
	if (kv_slice_cmp(nm, kv_slice_make(d->ra_lo, d->ra_lo_len)) < 0)
		return false;
	return !d->ra_hi || kv_slice_cmp(nm, kv_slice_make(d->ra_hi, d->ra_hi_len)) <= 0;
}

/*
 * Counts a lookup of @dirino that has to ask the cluster; true when it is
 * one of FS_RA_MISSES or more in a row (each within attr_timeout of the
 * previous, or of a read-ahead page younger than twice that): time to
 * read ahead. fs->lock held.
 */
static bool ra_note_miss(const struct fs *fs, struct fs_inode *dirino)
{
	struct fs_dir *d = dir_of(dirino);
	if (!d)
		return false;
	uint64_t now = fs_mono_ns();
	/* A scan that outlived its last page keeps going: no new warm-up. */
	if (now - d->miss_ns > attr_timeout_ns(fs) &&
	    (d->ra_ns == 0 || now - d->ra_ns > 2 * attr_timeout_ns(fs)))
		d->misses = 0;
	d->miss_ns = now;
	if (d->misses < UINT32_MAX)
		d->misses++;
	return d->misses >= FS_RA_MISSES;
}

static int set_name(char **dst, size_t *dst_len, const char *p, size_t n)
{
	char *c = malloc(n + 1);
	if (!c)
		return -ENOMEM;
	memcpy(c, p, n);
	c[n] = '\0';
	free(*dst);
	*dst = c;
	*dst_len = n;
	return 0;
}

/*
 * Merges one read-ahead page (names strictly after @after, ascending) into
 * @d: each page entry replaces the listing's, and the listing's names in
 * the covered range that the page does not hold become empty (absent).
 * Entries this mount changed at or after @asked (when the page was
 * requested: the page may predate the change) stay as they are; those it
 * changed before are replaced, stale or not, so the names this mount wrote
 * are answered from the page too. @hi: the last covered name, NULL: to the
 * end. Entries move into a new array (O(n + m)). fs->lock held.
 */
static int ra_merge(struct fs_dir *d, struct kv_slice after, struct kv_client_list_page *page,
		    const struct kv_slice *hi, uint64_t now, uint64_t asked)
{
	bool *removed_dir = calloc(page->n + 1, sizeof *removed_dir);
	if (!removed_dir)
		return -ENOMEM;
	for (size_t j = 0; j < page->n; j++) {
		int rd = take_tombstone(&page->entries[j].set);
		if (rd < 0) {
			free(removed_dir);
			return rd;
		}
		removed_dir[j] = rd > 0;
	}
	size_t cap = d->n + page->n + 1;
	struct fs_dent *nd = malloc(cap * sizeof *nd);
	char **names = calloc(page->n + 1, sizeof *names);
	if (!nd || !names) {
		free(nd);
		free(names);
		free(removed_dir);
		return -ENOMEM;
	}
	for (size_t j = 0; j < page->n; j++) {
		struct kv_buf *nm = &page->entries[j].name;
		names[j] = malloc(nm->n + 1);
		if (!names[j]) {
			for (size_t k = 0; k < j; k++)
				free(names[k]);
			free(names);
			free(nd);
			free(removed_dir);
			return -ENOMEM;
		}
		memcpy(names[j], nm->p, nm->n);
		names[j][nm->n] = '\0';
	}
	size_t i = 0, j = 0, n = 0;
	while (i < d->n || j < page->n) {
		int c;
		if (i == d->n)
			c = 1;
		else if (j == page->n)
			c = -1;
		else
			c = kv_slice_cmp(kv_slice_make(d->d[i].name, d->d[i].len),
					 kv_buf_slice(&page->entries[j].name));
		if (c < 0) {
			/* Only in the listing: absent now when the page covered it. */
			struct fs_dent *e = &d->d[i++];
			struct kv_slice en = kv_slice_make(e->name, e->len);
			bool covered = kv_slice_cmp(en, after) > 0 && (!hi || kv_slice_cmp(en, *hi) <= 0);
			if (covered && e->stale_ns < asked) {
				bool was_dir = e->child != 0 || set_has_dir(&e->set);
				kv_dvv_release(&e->set);
				kv_dvv_init(&e->set);
				e->fetched_ns = now;
				e->child = was_dir ? -1 : 0;
				e->child_ns = 0;
				e->has_own = false;
				kv_ctx_release(&e->own_ctx);
			}
			nd[n++] = *e;
			continue;
		}
		struct kv_client_list_entry *pe = &page->entries[j];
		if (c == 0) {
			struct fs_dent *e = &d->d[i++];
			if (e->stale_ns < asked) {
				bool was_dir = removed_dir[j] || e->child != 0 || set_has_dir(&e->set);
				kv_dvv_swap(&e->set, &pe->set);
				e->fetched_ns = now;
				e->child = was_dir ? -1 : 0;
				e->child_ns = 0;
				e->has_own = false;
				kv_ctx_release(&e->own_ctx);
			}
			free(names[j++]);
			nd[n++] = *e;
			continue;
		}
		struct fs_dent *e = &nd[n++];
		e->name = names[j];
		e->len = pe->name.n;
		kv_dvv_init(&e->set);
		kv_dvv_swap(&e->set, &pe->set);
		e->fetched_ns = now;
		e->stale_ns = 0;
		e->child = removed_dir[j] ? -1 : 0;
		e->child_ns = 0;
		e->emptied_ns = 0;
		e->has_own = false;
		kv_ctx_init(&e->own_ctx);
		j++;
	}
	free(names);
	free(removed_dir);
	free(d->d);
	d->d = nd;
	d->n = n;
	d->cap = cap;
	return 0;
}

/*
 * Reads one LIST page of @dirino after @name (which the caller just read
 * with GET) into its listing, and remembers the range it covers so that
 * the next lookups in it, positive or negative, need no request while it
 * is younger than attr_timeout (DESIGN §7 "Listing": entries come with
 * their attributes and contexts). The page size follows how many lookups
 * the previous page answered. Failures are logged and ignored: the next
 * lookup asks the cluster as usual. No lock held.
 */
static void ra_fetch(struct fs *fs, struct fs_inode *dirino, const char *name, size_t len)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	pthread_mutex_lock(&fs->lock);
	char *key = strdup(dirino->key);
	uint32_t size = dirino->dir && dirino->dir->ra_size ? dirino->dir->ra_size : FS_RA_START;
	pthread_mutex_unlock(&fs->lock);
	if (!key)
		return;
	/*
	 * The directory's queued deletes are not waited for (a page per few
	 * hundred lookups would drain the queue each time): the entries they
	 * remove count as changed now, so the merge keeps them as they are
	 * (doc/fs.md §5). A delete queued after this is newer than @asked too.
	 */
	uint64_t asked = fs_mono_ns();
	pthread_mutex_lock(&fs->lock);
	fs_wb_hold_entries(fs, dirino);
	pthread_mutex_unlock(&fs->lock);
	struct kv_client_call call = fs_call(fs);
	call.tombstones = true; /* removed directories that may live on (take_tombstone) */
	int rc = kv_client_list(fs->client, kv_slice_str(key), kv_slice_make(name, len), size, &call,
				&page);
	if (rc < 0) {
		kv_warn("kvfs: LIST %s (read-ahead): %s", key, kv_client_errmsg(fs->client));
		goto out;
	}
	struct kv_slice after = kv_slice_make(name, len);
	for (size_t i = 0; i < page.n; i++) {
		struct kv_slice prev = i ? kv_buf_slice(&page.entries[i - 1].name) : after;
		if (kv_slice_cmp(prev, kv_buf_slice(&page.entries[i].name)) >= 0) {
			kv_warn("kvfs: LIST %s (read-ahead): names out of order", key);
			goto out;
		}
	}
	/*
	 * With more to come, the page covers the names up to its cursor (the
	 * merge stops at the smallest last name of the replicas' pages), which
	 * may lie past its last entry: tombstone-only names are left out.
	 */
	struct kv_slice hi = page.more ? kv_buf_slice(&page.next_cursor) : kv_slice_make(NULL, 0);
	if (page.more && (hi.n == 0 || kv_slice_cmp(hi, after) <= 0 ||
			  (page.n > 0 && kv_slice_cmp(hi, kv_buf_slice(&page.entries[page.n - 1].name)) < 0))) {
		kv_warn("kvfs: LIST %s (read-ahead): bad cursor", key);
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	struct fs_dir *d = dir_of(dirino);
	uint64_t now = fs_mono_ns();
	rc = d ? ra_merge(d, after, &page, page.more ? &hi : NULL, now, asked) : -ENOMEM;
	if (rc == 0)
		rc = set_name(&d->ra_lo, &d->ra_lo_len, name, len);
	if (rc == 0 && page.more) {
		rc = set_name(&d->ra_hi, &d->ra_hi_len, (const char *)hi.p, hi.n);
	} else if (rc == 0) {
		free(d->ra_hi);
		d->ra_hi = NULL;
		d->ra_hi_len = 0;
	}
	if (d) {
		/* Twice what the last page answered, within [FS_RA_MIN, FS_LIST_PAGE]. */
		uint64_t next = d->ra_ns ? 2 * (uint64_t)d->ra_hits : FS_RA_START;
		d->ra_size = (uint32_t)(next < FS_RA_MIN ? FS_RA_MIN
					: next > FS_LIST_PAGE ? FS_LIST_PAGE : next);
		d->ra_hits = 0;
		d->ra_ns = rc == 0 ? now : 0;
	}
	pthread_mutex_unlock(&fs->lock);
out:
	free(key);
	kv_client_list_page_release(&page);
}

/* ---- resolving names ---- */


void fs_res_init(struct fs_res *r)
{
	memset(r, 0, sizeof *r);
	kv_buf_init(&r->meta_raw);
	kv_ctx_init(&r->name_ctx);
	kv_ctx_init(&r->version_ctx);
}

void fs_res_release(struct fs_res *r)
{
	kv_buf_release(&r->meta_raw);
	kv_ctx_release(&r->name_ctx);
	kv_ctx_release(&r->version_ctx);
}

static bool dent_fresh(const struct fs *fs, const struct fs_dent *d)
{
	return d && d->fetched_ns != 0 &&
	       fs_mono_ns() - d->fetched_ns <= (uint64_t)(fs->attr_timeout * 1e9);
}

/*
 * Resolves @shown (a name the kernel passed) through the stored name
 * @stored of @dirino. @refresh: re-read a stale entry first (plain names);
 * sibling names resolve against the last listing as it is (DESIGN §7).
 */
static int resolve_in(struct fs *fs, struct fs_inode *dirino, const char *shown, const char *stored,
		      size_t stored_len, const struct kv_dot *dot, bool refresh, struct fs_res *out)
{
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	int rc;
	/* A queued delete of this name ends first (doc/fs.md §5). */
	fs_wb_wait_child(fs, dirino, stored, stored_len);
	pthread_mutex_lock(&fs->lock);
	struct fs_dent *d = fs_dir_find(dirino, stored, stored_len);
	bool fetch = refresh ? !dent_fresh(fs, d) : (d == NULL);
	if (!d && dirino->dir && dirino->dir->listed_ns &&
	    fs_mono_ns() - dirino->dir->listed_ns <= (uint64_t)(fs->attr_timeout * 1e9))
		fetch = false; /* a fresh full listing does not have it */
	if (fetch && !d && ra_covers(fs, dirino->dir, stored, stored_len)) {
		fetch = false; /* a fresh read-ahead page does not have it */
		dirino->dir->ra_hits++;
	} else if (!fetch && d && refresh && ra_covers(fs, dirino->dir, stored, stored_len)) {
		dirino->dir->ra_hits++;
	}
	bool readahead = fetch && refresh && ra_note_miss(fs, dirino);
	pthread_mutex_unlock(&fs->lock);
	if (fetch) {
		rc = dent_fetch(fs, dirino, stored, stored_len);
		if (rc < 0)
			return rc;
		if (readahead)
			ra_fetch(fs, dirino, stored, stored_len);
	}
	pthread_mutex_lock(&fs->lock);
	d = fs_dir_find(dirino, stored, stored_len);
	bool check = d && d->child < 0 && kv_dvv_live_count(&d->set) == 0;
	pthread_mutex_unlock(&fs->lock);
	if (check && stored_len == strlen(stored)) {
		char *nm = strndup(stored, stored_len);
		if (nm)
			fs_dent_check_child(fs, dirino, nm);
		free(nm);
	}
	pthread_mutex_lock(&fs->lock);
	d = fs_dir_find(dirino, stored, stored_len);
	if (!d) {
		rc = -ENOENT;
		goto out;
	}
	/* Emptied by this mount lately: still there for the rmdir that follows. */
	bool emptied = d->child == 0 && d->emptied_ns != 0 && kv_dvv_live_count(&d->set) == 0 &&
		       fs_mono_ns() - d->emptied_ns <= fs_timeout_ns(fs) + 1000000000ull;
	rc = fs_dent_view(fs, d, emptied, &v);
	if (rc < 0)
		goto out;
	const struct kv_fs_shown *s = NULL;
	rc = kv_fs_view_resolve(&v, shown, dot, &s);
	if (rc < 0)
		goto out;
	const struct kv_fs_name *nm = &v.names[s->entry];
	if (nm->name_len > KV_FS_NAME_MAX) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	memcpy(out->stored, nm->name, nm->name_len);
	out->stored[nm->name_len] = '\0';
	out->sibling = s->sibling;
	out->nfiles = nm->nfiles;
	out->is_dir = s->meta.type == KV_FS_DIR && s->sibling == 0 && nm->is_dir;
	out->type = s->meta.type;
	kv_buf_reset(&out->meta_raw);
	if (s->version) {
		out->has_dot = true;
		out->dot = s->version->dot;
		rc = kv_buf_append(&out->meta_raw, s->version->meta.p, s->version->meta.n);
	} else {
		out->has_dot = false;
		rc = kv_fs_meta_encode(&s->meta, &out->meta_raw);
	}
	if (rc < 0)
		goto out;
	rc = kv_fs_view_name_context(nm, &out->name_ctx);
	if (rc == 0 && s->version)
		rc = kv_fs_view_version_context(nm, s->version, &out->version_ctx);
out:
	pthread_mutex_unlock(&fs->lock);
	kv_fs_view_release(&v);
	return rc;
}

/*
 * Resolves @name in @dirino: sibling names through their base first
 * (generated names win over stored ones, doc/fs-format.md §5.2), then the
 * stored name itself. @dot: the version the kernel's inode was shown with.
 */
int fs_resolve(struct fs *fs, struct fs_inode *dirino, const char *name, const struct kv_dot *dot,
		   struct fs_res *out)
{
	size_t name_len = strlen(name);
	if (name_len > KV_FS_NAME_MAX)
		return -ENAMETOOLONG;
	if (dirino == fs->root && strcmp(name, FS_RESERVED_DIR) == 0)
		return -ENOENT;
	size_t base_len;
	uint32_t idx;
	if (kv_fs_sibling_parse(name, &base_len, &idx) == 0) {
		int rc = resolve_in(fs, dirino, name, name, base_len, dot, false, out);
		if (rc == 0 || rc == -ESTALE || rc == -ENOMEM || rc == -EIO)
			return rc;
	}
	return resolve_in(fs, dirino, name, name, name_len, NULL, true, out);
}

/*
 * Finds or makes the inode for @name in @dirino showing @r, with one more
 * kernel reference. fs->lock held.
 */
struct fs_inode *fs_bind_inode(struct fs *fs, struct fs_inode *dirino, const char *name,
				   const struct fs_res *r)
{
	struct fs_inode *ino = fs_find_child(fs, dirino, name);
	struct kv_fs_meta m;
	uint8_t type = kv_fs_meta_decode(kv_buf_slice(&r->meta_raw), &m) == 0 ? m.type : KV_FS_FILE;
	if (ino && ino->meta.type != type && !ino->data) {
		fs_name_unlink(fs, ino);
		ino = NULL;
	}
	if (!ino) {
		char *key = fs_child_key(dirino->key, r->stored, strlen(r->stored));
		if (!key)
			return NULL;
		ino = fs_inode_new(fs, dirino, name, key);
		free(key);
		if (!ino)
			return NULL;
	}
	/* An open inode keeps its own attributes: its data is newer. */
	if (!ino->data || !ino->data->dirty) {
		fs_set_meta(ino, kv_buf_slice(&r->meta_raw), r->has_dot ? &r->dot : NULL);
		if (!r->has_dot)
			ino->has_dot = false;
	}
	ino->sibling = r->sibling;
	ino->nlookup++;
	ino->refs++;
	return ino;
}

void fs_fill_entry(struct fs *fs, struct fs_inode *ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof *e);
	e->ino = ino->ino;
	e->generation = 1;
	fs_fill_stat(ino, &e->attr);
	e->attr_timeout = fs->attr_timeout;
	e->entry_timeout = fs->entry_timeout;
}

/* True when the directory key @key has a live entry (one LIST page at a time). */
int fs_dir_has_child(struct fs *fs, const char *key)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct kv_client_call call = fs_call(fs);
	int rc = 0;
	fs_wb_wait_dir(fs, key); /* rmdir after rm of every child sees it empty */
	for (int pages = 0; pages < FS_LIST_MAX_PAGES; pages++) {
		rc = kv_client_list(fs->client, kv_slice_str(key), kv_buf_slice(&cursor), 100, &call,
				    &page);
		if (rc < 0) {
			rc = fs_errno(rc);
			break;
		}
		for (size_t i = 0; i < page.n && rc == 0; i++)
			if (kv_dvv_live_count(&page.entries[i].set) > 0)
				rc = 1;
		if (rc != 0 || !page.more)
			break;
		kv_buf_reset(&cursor);
		if (kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n) < 0) {
			rc = -ENOMEM;
			break;
		}
	}
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return rc;
}

void fs_note_emptied(struct fs *fs, struct fs_inode *dir)
{
	pthread_mutex_lock(&fs->lock);
	if (dir->parent) {
		const char *nm = fs_stored_name(dir);
		struct fs_dent *d = fs_dir_find(dir->parent, nm, strlen(nm));
		/* Only a name known as a removed directory alive through a child
		 * (a stale entry of a name written here has no versions either). */
		if (d && d->child == 1 && d->fetched_ns != 0 && kv_dvv_live_count(&d->set) == 0)
			d->emptied_ns = fs_mono_ns();
	}
	pthread_mutex_unlock(&fs->lock);
}

void fs_dent_check_child(struct fs *fs, struct fs_inode *dirino, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	char *key = fs_child_key(dirino->key, name, strlen(name));
	pthread_mutex_unlock(&fs->lock);
	if (!key)
		return;
	int rc = fs_dir_has_child(fs, key);
	free(key);
	if (rc < 0)
		return;
	pthread_mutex_lock(&fs->lock);
	struct fs_dent *d = fs_dir_find(dirino, name, strlen(name));
	if (d) {
		d->child = rc > 0;
		d->child_ns = fs_mono_ns();
	}
	pthread_mutex_unlock(&fs->lock);
}

