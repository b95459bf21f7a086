/*
 * siblings.h - conflicts as files (DESIGN §7 "Conflicts as files",
 * "Directories"): from a directory listing, the names the mount shows, and
 * the context each resolving gesture writes with.
 *
 * A view is a snapshot of one directory's listing. For each stored name
 * whose live versions (tombstones left out, identical ones shown once:
 * kv_dvv_display) are:
 *   - one file or symlink:    `name`;
 *   - k > 1 non-directories:  `name` (the last in display order: latest
 *                             timestamp, then dot) and `name.sibling-1` ...
 *                             `name.sibling-k` in display order;
 *   - directories only:       `name`, a directory with the attributes of the
 *                             last directory version (they never show
 *                             siblings: concurrent mkdir/chmod join);
 *   - directories and f > 0 non-directories (a clash): `name` is the
 *                             directory, and the f non-directory versions are
 *                             `name.sibling-1` ... `name.sibling-f`;
 *   - none, with a live child (listing_entry.has_live_child): `name`, a
 *                             directory with default attributes;
 *   - none otherwise:         hidden.
 * A version whose metadata does not decode counts as a non-directory and is
 * shown with meta_err set (the mount answers EIO when it is used). Names the
 * kernel cannot take ("", ".", "..", with '/' or NUL) are hidden. A stored
 * name that matches `*.sibling-<n>` and equals a name generated for another
 * entry is hidden with its own siblings: generated names win.
 *
 * Gestures, given the shown entry s of the name the gesture touches
 * (kv_fs_view_resolve) and its stored name nm = &view->names[s->entry]:
 *   write, truncate, chmod, utimens, setxattr `name` or `name.sibling-i`,
 *   or rename onto either:    put at nm->name with kv_fs_view_name_context;
 *                             content before the write: s->version;
 *   rm `name`:                tombstone at nm->name, kv_fs_view_name_context;
 *   rm `name.sibling-i`:      tombstone at nm->name with
 *                             kv_fs_view_version_context(s->version);
 *                             -ESTALE from resolve: already gone, success;
 *   mv `name.sibling-i` `name` (or cp): put s->version's content at
 *                             nm->name with kv_fs_view_name_context, which
 *                             covers version i too: no tombstone;
 *   mv `name.sibling-i` X:    put s->version's content at X (with X's name
 *                             context), then tombstone as rm sibling;
 *   mv `name` X:              put each of nm->files (every version) at X,
 *                             then tombstone as rm `name`;
 *   create a name not shown:  kv_fs_name_check_new() first (EINVAL for
 *                             `*.sibling-<n>`); a hidden stored name gives
 *                             its context (its tombstones) through
 *                             kv_fs_view_find_name.
 * Pure: no I/O. Rules with examples: doc/fs-format.md#sibling-names.
 */
#ifndef KV_FS_SIBLINGS_H
#define KV_FS_SIBLINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse/object.h"
#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

/* The reserved suffix: `name.sibling-<n>`. */
#define KV_FS_SIBLING_SUFFIX ".sibling-"
/* The longest name a file system entry may have (NAME_MAX). */
#define KV_FS_NAME_MAX 255

/* One entry of a directory listing, as LIST returned it. Borrowed. */
struct kv_fs_listing_entry {
	struct kv_slice name;     /* the key less the directory and its '/' */
	const struct kv_dvv *set; /* versions (bodies may be empty) and context */
	bool has_live_child;      /* the caller knows this name has live children */
};

/* A stored name of the listing, as the view keeps it. */
struct kv_fs_name {
	char *name;                      /* NUL-terminated copy of the stored name */
	size_t name_len;                 /* its bytes (a hidden one may hold a NUL) */
	struct kv_dvv set;               /* the view's copy of the listing's set */
	const struct kv_version **files; /* the non-directory versions shown, display order */
	size_t nfiles;
	const struct kv_version *dir;    /* the directory version shown, or NULL */
	bool is_dir;                     /* a directory (also one through children only) */
	bool hidden;                     /* shows no name */
};

/* One name the mount shows. */
struct kv_fs_shown {
	char *name;       /* NUL-terminated, owned by the view */
	size_t entry;     /* index in view->names */
	uint32_t sibling; /* 0 for the stored name itself, i for `name.sibling-i` */
	/* The version shown, borrowed from view->names[entry].set; NULL for a
	 * directory that exists only through live children. */
	const struct kv_version *version;
	struct kv_fs_meta meta; /* its attributes (borrowing from version->meta) */
	int meta_err;           /* 0, or why the metadata did not decode (meta is then a placeholder) */
};

/*
 * A directory snapshot. @names follows the listing's order; @shown is sorted
 * by name (strcmp), the order readdir returns. Caller-owned:
 * kv_fs_view_init() / kv_fs_view_release(); read the fields freely.
 */
struct kv_fs_view {
	struct kv_fs_name *names;
	size_t nnames;
	struct kv_fs_shown *shown;
	size_t nshown;
};

#define KV_FS_VIEW_INIT { NULL, 0, NULL, 0 }

void kv_fs_view_init(struct kv_fs_view *v);
/* Frees everything the view holds and leaves it empty. */
void kv_fs_view_release(struct kv_fs_view *v);

/*
 * Replaces the contents of @v with the view of the @n listing entries @in
 * (names strictly ascending bytewise, as LIST returns them). The view copies
 * what it needs; @in stays the caller's. @dir_default gives the attributes
 * of a directory that exists only through live children (NULL: mode 0755,
 * owner 0, times 0; its target and xattrs are ignored). Returns 0,
 * KV_EINVAL when the names are not strictly ascending, or -ENOMEM; on
 * failure @v is unchanged.
 */
int kv_fs_view_build(struct kv_fs_view *v, const struct kv_fs_listing_entry *in, size_t n,
		     const struct kv_fs_meta *dir_default);

/* The shown entry named @name, or NULL. Borrowed: valid until @v changes. */
const struct kv_fs_shown *kv_fs_view_lookup(const struct kv_fs_view *v, const char *name);

/*
 * The stored name @name (hidden ones included), or NULL. Borrowed: valid
 * until @v changes.
 */
const struct kv_fs_name *kv_fs_view_find_name(const struct kv_fs_view *v, struct kv_slice name);

/*
 * Resolves a name the kernel passes (DESIGN §7: sibling numbers resolve
 * against the last listing). With @dot NULL: the shown entry named @name,
 * or -ENOENT. With @dot (the version an open file or a cached inode was
 * shown with), for a name of the form `base.sibling-i`: the entry named so
 * if it still shows that dot (a stored name of that form), else the entry of
 * base that shows the version with that dot, whatever its number now (`base`
 * itself once it is the last version left), or -ESTALE when the view no
 * longer shows it; for any other name @dot is ignored.
 * Returns 0 and sets *out, or the error (then *out is untouched).
 */
int kv_fs_view_resolve(const struct kv_fs_view *v, const char *name, const struct kv_dot *dot,
		       const struct kv_fs_shown **out);

/*
 * The context for writing or removing the stored name @nm (every gesture on
 * `name` and the resolving ones on its siblings): what the view showed for
 * it. Without a clash that is the set's whole context (every version shown,
 * their twins, and the tombstones). In a file/directory clash, writing the
 * directory must not discard the file versions shown as its siblings: the
 * context is then the dots of the directory versions and tombstones only.
 * Replaces the initialized @out; returns 0 or -ENOMEM (then @out is unchanged).
 */
int kv_fs_view_name_context(const struct kv_fs_name *nm, struct kv_ctx *out);

/*
 * The context that discards exactly version @version of @nm and its hidden
 * twins (kv_dvv_context_of): `rm name.sibling-i`. Replaces the initialized
 * @out; returns 0, -ESTALE when @nm holds no such version, or -ENOMEM.
 */
int kv_fs_view_version_context(const struct kv_fs_name *nm, const struct kv_version *version,
			       struct kv_ctx *out);

/*
 * Parses a generated sibling name `base.sibling-<n>` (n >= 1, decimal, no
 * leading zero, at most UINT32_MAX, base not empty). Returns 0 and sets
 * *base_len and *index, or KV_EINVAL (then they are untouched).
 */
int kv_fs_sibling_parse(const char *name, size_t *base_len, uint32_t *index);

/*
 * True when @name matches the reserved pattern `*.sibling-<digits>` (any
 * digits, any base, the empty one included).
 */
bool kv_fs_name_is_reserved(const char *name);

/*
 * May a new entry be created under @name? Returns 0; -EINVAL for a reserved
 * name (kv_fs_name_is_reserved), "", "." or ".." or a name with '/';
 * -ENAMETOOLONG above KV_FS_NAME_MAX bytes.
 */
int kv_fs_name_check_new(const char *name);

#endif
