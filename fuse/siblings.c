/*
 * siblings.c - the names a directory listing shows, and the contexts of the
 * resolving gestures (see siblings.h). Rules: DESIGN §7 "Conflicts as
 * files" and "Directories"; doc/fs-format.md#sibling-names.
 */
#include "fuse/siblings.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void kv_fs_view_init(struct kv_fs_view *v)
{
	struct kv_fs_view empty = KV_FS_VIEW_INIT;
	*v = empty;
}

void kv_fs_view_release(struct kv_fs_view *v)
{
	for (size_t i = 0; i < v->nnames; i++) {
		free(v->names[i].name);
		free(v->names[i].files);
		kv_dvv_release(&v->names[i].set);
	}
	free(v->names);
	for (size_t i = 0; i < v->nshown; i++)
		free(v->shown[i].name);
	free(v->shown);
	kv_fs_view_init(v);
}

/* ---- names ---- */

static const size_t suffix_len = sizeof KV_FS_SIBLING_SUFFIX - 1;

/* Where the digits of `*.sibling-<digits>` start in @name, or 0 when it does not match. */
static size_t reserved_digits_at(const char *name, size_t len)
{
	size_t d = len;
	while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9')
		d--;
	if (d == len || d < suffix_len)
		return 0;
	if (memcmp(name + d - suffix_len, KV_FS_SIBLING_SUFFIX, suffix_len) != 0)
		return 0;
	return d;
}

bool kv_fs_name_is_reserved(const char *name)
{
	return reserved_digits_at(name, strlen(name)) != 0;
}

int kv_fs_sibling_parse(const char *name, size_t *base_len, uint32_t *index)
{
	size_t len = strlen(name);
	size_t d = reserved_digits_at(name, len);
	if (d == 0 || d == suffix_len || name[d] == '0' || len - d > 10)
		return KV_EINVAL; /* no match, empty base, leading zero, too long */
	uint64_t n = 0;
	for (size_t i = d; i < len; i++)
		n = n * 10 + (uint64_t)(name[i] - '0');
	if (n > UINT32_MAX)
		return KV_EINVAL;
	*base_len = d - suffix_len;
	*index = (uint32_t)n;
	return 0;
}

int kv_fs_name_check_new(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
		return -EINVAL;
	if (len > KV_FS_NAME_MAX)
		return -ENAMETOOLONG;
	if (kv_fs_name_is_reserved(name))
		return -EINVAL; /* DESIGN §7: the pattern is reserved */
	return 0;
}

/* Can the kernel show this stored name at all? */
static bool name_showable(struct kv_slice name)
{
	if (name.n == 0 || memchr(name.p, 0, name.n) || memchr(name.p, '/', name.n))
		return false;
	return !kv_slice_eq(name, kv_slice_str(".")) && !kv_slice_eq(name, kv_slice_str(".."));
}

/* ---- building ---- */

/* True when @version is a live directory version (its metadata decodes and says so). */
static bool version_is_dir(const struct kv_version *version)
{
	struct kv_fs_meta m;
	return !version->tombstone && kv_fs_meta_decode(version->meta, &m) == 0 &&
	       m.type == KV_FS_DIR;
}

/* Siblings @nm shows: the non-directory versions when it conflicts or clashes. */
static size_t sibling_count(const struct kv_fs_name *nm)
{
	if (nm->hidden)
		return 0;
	if (nm->is_dir)
		return nm->nfiles;
	return nm->nfiles > 1 ? nm->nfiles : 0;
}

/* Fills @nm from @in: copies the name and the set, sorts the versions to show. */
static int name_fill(struct kv_fs_name *nm, const struct kv_fs_listing_entry *in)
{
	const struct kv_version **shown = NULL;
	int err = -ENOMEM;

	nm->name = malloc(in->name.n + 1);
	if (!nm->name)
		goto out;
	if (in->name.n)
		memcpy(nm->name, in->name.p, in->name.n);
	nm->name[in->name.n] = '\0';
	nm->name_len = in->name.n;
	err = kv_dvv_copy(&nm->set, in->set);
	if (err)
		goto out;
	err = -ENOMEM;
	if (nm->set.n) {
		shown = malloc(nm->set.n * sizeof *shown);
		nm->files = malloc(nm->set.n * sizeof *nm->files);
		if (!shown || !nm->files)
			goto out;
	}
	/* Display order, tombstones out, identical versions once (doc/versions.md §3.5). */
	size_t k = kv_dvv_display(&nm->set, 0, shown);
	for (size_t i = 0; i < k; i++) {
		if (version_is_dir(shown[i]))
			nm->dir = shown[i]; /* the last one: latest timestamp wins */
		else
			nm->files[nm->nfiles++] = shown[i];
	}
	nm->is_dir = nm->dir != NULL || in->has_live_child;
	nm->hidden = !name_showable(in->name) || (!nm->is_dir && nm->nfiles == 0);
	err = 0;
out:
	free(shown);
	return err;
}

struct by_len {
	size_t len, idx;
};

static int by_len_cmp(const void *a, const void *b)
{
	const struct by_len *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Binary search of the stored names (bytewise order, as the listing's). */
static const struct kv_fs_name *find_name(const struct kv_fs_name *names, size_t n,
					  struct kv_slice name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = kv_slice_cmp(kv_slice_make(names[mid].name, names[mid].name_len), name);
		if (r == 0)
			return &names[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Hides a stored name that a generated sibling name of another entry takes.
 * Shorter names first, so that a base's own fate is known before the names
 * derived from it are checked.
 */
static int hide_collisions(struct kv_fs_name *names, size_t n)
{
	struct by_len *order = malloc((n ? n : 1) * sizeof *order);
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		order[i] = (struct by_len){ names[i].name_len, i };
	qsort(order, n, sizeof *order, by_len_cmp);
	for (size_t k = 0; k < n; k++) {
		struct kv_fs_name *nm = &names[order[k].idx];
		size_t base_len;
		uint32_t index;
		if (nm->hidden || kv_fs_sibling_parse(nm->name, &base_len, &index))
			continue;
		const struct kv_fs_name *base =
			find_name(names, n, kv_slice_make(nm->name, base_len));
		if (base && index <= sibling_count(base))
			nm->hidden = true;
	}
	free(order);
	return 0;
}

static char *sibling_name(const char *base, uint32_t index)
{
	size_t len = strlen(base) + suffix_len + 11;
	char *s = malloc(len);
	if (s)
		snprintf(s, len, "%s" KV_FS_SIBLING_SUFFIX "%" PRIu32, base, index);
	return s;
}

static void meta_placeholder(struct kv_fs_meta *m)
{
	memset(m, 0, sizeof *m);
	m->type = KV_FS_FILE;
	m->storage = KV_FS_STORE_INLINE;
}

/* Fills @s as showing @version (NULL: a directory with @dir_default's attributes). */
static void shown_fill(struct kv_fs_shown *s, size_t entry, uint32_t sibling,
		       const struct kv_version *version, const struct kv_fs_meta *dir_default)
{
	s->entry = entry;
	s->sibling = sibling;
	s->version = version;
	s->meta_err = 0;
	if (!version) {
		s->meta = *dir_default;
		return;
	}
	s->meta_err = kv_fs_meta_decode(version->meta, &s->meta);
	if (s->meta_err)
		meta_placeholder(&s->meta);
}

static int shown_cmp(const void *a, const void *b)
{
	const struct kv_fs_shown *x = a, *y = b;
	return strcmp(x->name, y->name);
}

int kv_fs_view_build(struct kv_fs_view *v, const struct kv_fs_listing_entry *in, size_t n,
		     const struct kv_fs_meta *dir_default)
{
	struct kv_fs_view t = KV_FS_VIEW_INIT;
	struct kv_fs_meta dflt;
	int err = KV_EINVAL;

	for (size_t i = 1; i < n; i++)
		if (kv_slice_cmp(in[i - 1].name, in[i].name) >= 0)
			goto out; /* LIST names are strictly ascending */
	if (dir_default) {
		dflt = *dir_default;
	} else {
		memset(&dflt, 0, sizeof dflt);
		dflt.mode = 0755;
	}
	dflt.type = KV_FS_DIR;
	dflt.storage = KV_FS_STORE_NONE;
	dflt.size = 0;
	memset(dflt.content_hash, 0, sizeof dflt.content_hash);
	dflt.target = kv_slice_make(NULL, 0);
	dflt.xattrs = kv_slice_make(NULL, 0);

	err = -ENOMEM;
	if (n) {
		t.names = calloc(n, sizeof *t.names);
		if (!t.names)
			goto out;
	}
	for (; t.nnames < n; t.nnames++) {
		err = name_fill(&t.names[t.nnames], &in[t.nnames]);
		if (err) {
			t.nnames++; /* release what it filled */
			goto out;
		}
	}
	err = hide_collisions(t.names, t.nnames);
	if (err)
		goto out;

	size_t total = 0;
	for (size_t i = 0; i < t.nnames; i++)
		total += t.names[i].hidden ? 0 : 1 + sibling_count(&t.names[i]);
	err = -ENOMEM;
	if (total) {
		t.shown = calloc(total, sizeof *t.shown);
		if (!t.shown)
			goto out;
	}
	for (size_t i = 0; i < t.nnames; i++) {
		const struct kv_fs_name *nm = &t.names[i];
		if (nm->hidden)
			continue;
		size_t nsib = sibling_count(nm);
		struct kv_fs_shown *s = &t.shown[t.nshown];
		s->name = strdup(nm->name);
		if (!s->name)
			goto out;
		t.nshown++;
		if (nm->is_dir)
			shown_fill(s, i, 0, nm->dir, &dflt);
		else
			shown_fill(s, i, 0, nm->files[nm->nfiles - 1], &dflt);
		for (size_t k = 0; k < nsib; k++) {
			s = &t.shown[t.nshown];
			s->name = sibling_name(nm->name, (uint32_t)(k + 1));
			if (!s->name)
				goto out;
			t.nshown++;
			shown_fill(s, i, (uint32_t)(k + 1), nm->files[k], &dflt);
		}
	}
	if (t.nshown > 1)
		qsort(t.shown, t.nshown, sizeof *t.shown, shown_cmp);
	kv_fs_view_release(v);
	*v = t;
	kv_fs_view_init(&t);
	err = 0;
out:
	kv_fs_view_release(&t);
	return err;
}

/* ---- lookups ---- */

const struct kv_fs_shown *kv_fs_view_lookup(const struct kv_fs_view *v, const char *name)
{
	size_t lo = 0, hi = v->nshown;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(v->shown[mid].name, name);
		if (r == 0)
			return &v->shown[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct kv_fs_name *kv_fs_view_find_name(const struct kv_fs_view *v, struct kv_slice name)
{
	return find_name(v->names, v->nnames, name);
}

int kv_fs_view_resolve(const struct kv_fs_view *v, const char *name, const struct kv_dot *dot,
		       const struct kv_fs_shown **out)
{
	size_t base_len;
	uint32_t index;

	if (!dot || kv_fs_sibling_parse(name, &base_len, &index)) {
		const struct kv_fs_shown *s = kv_fs_view_lookup(v, name);
		if (!s)
			return -ENOENT;
		*out = s;
		return 0;
	}
	/* A stored name of that form (siblings.h) still showing that version. */
	const struct kv_fs_shown *same = kv_fs_view_lookup(v, name);
	if (same && same->version && kv_dot_eq(same->version->dot, *dot)) {
		*out = same;
		return 0;
	}
	/* A sibling as it was shown: find its version, whatever its number now. */
	const struct kv_fs_name *nm = find_name(v->names, v->nnames, kv_slice_make(name, base_len));
	if (!nm || nm->hidden)
		return -ESTALE;
	size_t nsib = sibling_count(nm);
	for (size_t k = 0; k < nm->nfiles; k++) {
		if (!kv_dot_eq(nm->files[k]->dot, *dot))
			continue;
		/* Still a sibling: its current name; the last version left: `name` itself. */
		char *cur = nsib ? sibling_name(nm->name, (uint32_t)(k + 1)) : strdup(nm->name);
		if (!cur)
			return -ENOMEM;
		const struct kv_fs_shown *s = kv_fs_view_lookup(v, cur);
		free(cur);
		if (!s || !s->version || !kv_dot_eq(s->version->dot, *dot))
			return -ESTALE;
		*out = s;
		return 0;
	}
	return -ESTALE;
}

/* ---- contexts ---- */

int kv_fs_view_name_context(const struct kv_fs_name *nm, struct kv_ctx *out)
{
	if (!(nm->is_dir && nm->nfiles))
		return kv_ctx_copy(out, &nm->set.ctx);

	/* A clash: the directory's versions and the tombstones, never the files shown as siblings. */
	struct kv_ctx ctx = KV_CTX_INIT;
	int err = 0;
	for (size_t i = 0; i < nm->set.n && !err; i++) {
		const struct kv_version *ver = &nm->set.v[i];
		if (ver->tombstone || version_is_dir(ver))
			err = kv_ctx_add(&ctx, ver->dot);
	}
	if (!err)
		kv_ctx_swap(out, &ctx);
	kv_ctx_release(&ctx);
	return err;
}

int kv_fs_view_version_context(const struct kv_fs_name *nm, const struct kv_version *version,
			       struct kv_ctx *out)
{
	if (!version)
		return -ESTALE;
	int err = kv_dvv_context_of(&nm->set, version->dot, out);
	return err == KV_ENOTFOUND ? -ESTALE : err;
}
