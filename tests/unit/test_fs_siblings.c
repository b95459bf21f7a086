/*
 * test_fs_siblings.c - conflicts as files (fuse/siblings.h): the names a
 * listing shows (siblings numbered by timestamp then dot, duplicates once,
 * tombstones hidden, directories joined, file/directory clashes, directories
 * alive through children, reserved names), resolution against the snapshot
 * (ESTALE), and the contexts of the resolving gestures, checked by applying
 * them to the sets with kv_dvv_discard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fuse/object.h"
#include "fuse/siblings.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/counter.h"
#include "version/dot.h"
#include "version/siblings.h"

/* ---- helpers ---- */

/* A coordinating replica: its actor and counter (as in test_dvv.c). */
struct node {
	struct kv_actor self;
	struct kv_counter counter;
};

static void node_init(struct node *n, uint32_t id)
{
	uint64_t lease;
	n->self = (struct kv_actor){ id, 1 };
	kv_counter_init(&n->counter, 0, 100);
	if (kv_counter_lease_request(&n->counter, &lease) == 1)
		kv_counter_lease_durable(&n->counter, lease);
}

enum { TOMB = 0 };

/*
 * Puts into @s, as node @n with context @ctx (NULL: none), a version of type
 * @type (TOMB: a tombstone with empty metadata) whose metadata differs by
 * @tag (the content) and @mode, at time @ts. Bodies stay empty, as in a
 * listing. Returns the new dot.
 */
static struct kv_dot put(struct node *n, struct kv_dvv *s, const struct kv_ctx *ctx, int type,
			 const char *tag, uint16_t mode, int64_t ts)
{
	struct kv_buf meta = KV_BUF_INIT;
	struct kv_dvv_write w = { .context = ctx, .timestamp_ns = ts, .tombstone = type == TOMB };
	if (type != TOMB) {
		struct kv_fs_meta m;
		memset(&m, 0, sizeof m);
		m.type = (uint8_t)type;
		m.mode = mode;
		m.mtime_ns = m.ctime_ns = ts;
		if (type == KV_FS_FILE)
			kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_slice_str(tag), 0);
		if (type == KV_FS_SYMLINK) {
			m.target = kv_slice_str(tag);
			m.size = m.target.n;
		}
		assert_int_equal(kv_fs_meta_encode(&m, &meta), 0);
		w.meta = kv_buf_slice(&meta);
	}
	struct kv_dot dot;
	uint64_t lease;
	if (kv_counter_lease_request(&n->counter, &lease) == 1)
		kv_counter_lease_durable(&n->counter, lease);
	assert_int_equal(kv_dvv_put(s, &w, n->self, &n->counter, NULL, &dot), 0);
	kv_buf_release(&meta);
	return dot;
}

/* A put of raw metadata bytes (for undecodable metadata). */
static struct kv_dot put_raw(struct node *n, struct kv_dvv *s, const char *meta, int64_t ts)
{
	struct kv_dvv_write w = { .timestamp_ns = ts, .meta = kv_slice_str(meta) };
	struct kv_dot dot;
	assert_int_equal(kv_dvv_put(s, &w, n->self, &n->counter, NULL, &dot), 0);
	return dot;
}

/* Concurrent writes: each node puts into its own copy, then all are joined into @s. */
static void join_into(struct kv_dvv *s, struct kv_dvv *other)
{
	assert_int_equal(kv_dvv_join(s, other), 0);
}

static void build(struct kv_fs_view *v, const struct kv_fs_listing_entry *in, size_t n)
{
	assert_int_equal(kv_fs_view_build(v, in, n, NULL), 0);
}

/* The shown names, joined by spaces. */
static void names_of(const struct kv_fs_view *v, char *out, size_t cap)
{
	out[0] = '\0';
	for (size_t i = 0; i < v->nshown; i++) {
		if (i)
			strncat(out, " ", cap - strlen(out) - 1);
		strncat(out, v->shown[i].name, cap - strlen(out) - 1);
	}
}

static void assert_names(const struct kv_fs_view *v, const char *want)
{
	char got[1024];
	names_of(v, got, sizeof got);
	assert_string_equal(got, want);
}

static const struct kv_fs_shown *must(const struct kv_fs_view *v, const char *name)
{
	const struct kv_fs_shown *s = kv_fs_view_lookup(v, name);
	assert_non_null(s);
	return s;
}

static struct kv_fs_listing_entry entry(const char *name, const struct kv_dvv *set)
{
	return (struct kv_fs_listing_entry){ kv_slice_str(name), set, false };
}

/* ---- names shown ---- */

static void test_fs_siblings__one_version_shows_its_name_only(void **state)
{
	struct node a;
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	put(&a, &s, NULL, KV_FS_FILE, "x", 0644, 100);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	assert_names(&v, "f");
	const struct kv_fs_shown *f = must(&v, "f");
	assert_int_equal(f->sibling, 0);
	assert_int_equal(f->meta_err, 0);
	assert_int_equal(f->meta.type, KV_FS_FILE);
	assert_int_equal(f->meta.size, 1);
	assert_null(kv_fs_view_lookup(&v, "f.sibling-1"));
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
}

static void test_fs_siblings__conflict_numbers_by_timestamp_then_dot(void **state)
{
	struct node a, b, c;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT, sc = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	struct kv_dot late = put(&a, &s, NULL, KV_FS_FILE, "late", 0644, 300);
	struct kv_dot early = put(&b, &sb, NULL, KV_FS_FILE, "early", 0644, 100);
	/* Node 3 writes at the same time as node 2: the dot breaks the tie. */
	struct kv_dot tie = put(&c, &sc, NULL, KV_FS_FILE, "tie", 0644, 100);
	join_into(&s, &sb);
	join_into(&s, &sc);

	struct kv_fs_listing_entry in[] = { entry("e", &sb), entry("f", &s), entry("g", &sc) };
	build(&v, in, 3);
	assert_names(&v, "e f f.sibling-1 f.sibling-2 f.sibling-3 g");
	assert_true(kv_dot_eq(must(&v, "f.sibling-1")->version->dot, early));
	assert_true(kv_dot_eq(must(&v, "f.sibling-2")->version->dot, tie));
	assert_true(kv_dot_eq(must(&v, "f.sibling-3")->version->dot, late));
	/* `f` itself is the latest version, so programs keep working. */
	assert_true(kv_dot_eq(must(&v, "f")->version->dot, late));
	assert_int_equal(must(&v, "f.sibling-2")->sibling, 2);
	assert_int_equal(must(&v, "f.sibling-2")->meta.size, 3);
	assert_int_equal(v.names[1].nfiles, 3);

	/* The same listing, joined in the other order, numbers the same way. */
	struct kv_dvv t = KV_DVV_INIT;
	struct kv_fs_view w = KV_FS_VIEW_INIT;
	join_into(&t, &sc);
	join_into(&t, &s);
	struct kv_fs_listing_entry in2[] = { entry("f", &t) };
	build(&w, in2, 1);
	for (uint32_t i = 1; i <= 3; i++) {
		char name[32];
		snprintf(name, sizeof name, "f.sibling-%u", i);
		assert_true(kv_dot_eq(must(&w, name)->version->dot, must(&v, name)->version->dot));
	}
	kv_fs_view_release(&w);
	kv_dvv_release(&t);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
	kv_dvv_release(&sc);
}

static void test_fs_siblings__identical_versions_show_once(void **state)
{
	struct node a, b;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	put(&a, &s, NULL, KV_FS_FILE, "same", 0644, 100);
	put(&b, &sb, NULL, KV_FS_FILE, "same", 0644, 100);
	join_into(&s, &sb);
	assert_int_equal(s.n, 2);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	assert_names(&v, "f");
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
}

static void test_fs_siblings__tombstones_are_hidden(void **state)
{
	struct node a, b;
	struct kv_dvv gone = KV_DVV_INIT, edited = KV_DVV_INIT, other = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	/* Deleted with the context of its only version. */
	put(&a, &gone, NULL, KV_FS_FILE, "x", 0644, 100);
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&ctx, &gone.ctx), 0);
	put(&a, &gone, &ctx, TOMB, NULL, 0, 200);
	assert_true(kv_dvv_tombstone_only(&gone));
	/* An edit concurrent with a delete: the edit stays. */
	put(&a, &edited, NULL, KV_FS_FILE, "v1", 0644, 100);
	assert_int_equal(kv_dvv_copy(&other, &edited), 0);
	assert_int_equal(kv_ctx_copy(&ctx, &edited.ctx), 0);
	put(&a, &edited, &ctx, TOMB, NULL, 0, 300);
	put(&b, &other, &ctx, KV_FS_FILE, "v2", 0644, 200);
	join_into(&edited, &other);
	assert_int_equal(edited.n, 2);

	struct kv_fs_listing_entry in[] = { entry("edited", &edited), entry("gone", &gone) };
	build(&v, in, 2);
	assert_names(&v, "edited");
	assert_int_equal(must(&v, "edited")->meta.size, 2);
	/* The hidden name still gives its context, so a create clears the tombstone. */
	const struct kv_fs_name *nm = kv_fs_view_find_name(&v, kv_slice_str("gone"));
	assert_non_null(nm);
	assert_true(nm->hidden);
	struct kv_ctx name_ctx = KV_CTX_INIT;
	assert_int_equal(kv_fs_view_name_context(nm, &name_ctx), 0);
	assert_true(kv_ctx_covers(&name_ctx, gone.v[0].dot));
	kv_ctx_release(&name_ctx);
	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&gone);
	kv_dvv_release(&edited);
	kv_dvv_release(&other);
}

static void test_fs_siblings__directories_join_latest_wins(void **state)
{
	struct node a, b;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	put(&a, &s, NULL, KV_FS_DIR, NULL, 0700, 200);
	put(&b, &sb, NULL, KV_FS_DIR, NULL, 0755, 100);
	join_into(&s, &sb);
	struct kv_fs_listing_entry in[] = { entry("d", &s) };
	build(&v, in, 1);
	assert_names(&v, "d");
	assert_int_equal(must(&v, "d")->meta.type, KV_FS_DIR);
	assert_int_equal(must(&v, "d")->meta.mode, 0700);
	/* chmod of the directory discards both (it joins them). */
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_fs_view_name_context(&v.names[0], &ctx), 0);
	assert_int_equal(kv_dvv_discard(&s, &ctx), 2);
	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
}

static void test_fs_siblings__directory_keeps_the_name_in_a_clash(void **state)
{
	struct node a, b, c;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT, sc = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	struct kv_dot dir = put(&a, &s, NULL, KV_FS_DIR, NULL, 0755, 100);
	struct kv_dot f1 = put(&b, &sb, NULL, KV_FS_FILE, "one", 0644, 300);
	struct kv_dot f2 = put(&c, &sc, NULL, KV_FS_SYMLINK, "/tmp", 0777, 200);
	join_into(&s, &sb);
	join_into(&s, &sc);
	struct kv_fs_listing_entry in[] = { entry("x", &s) };
	build(&v, in, 1);
	assert_names(&v, "x x.sibling-1 x.sibling-2");
	assert_int_equal(must(&v, "x")->meta.type, KV_FS_DIR);
	assert_true(kv_dot_eq(must(&v, "x")->version->dot, dir));
	assert_true(kv_dot_eq(must(&v, "x.sibling-1")->version->dot, f2));
	assert_int_equal(must(&v, "x.sibling-1")->meta.type, KV_FS_SYMLINK);
	assert_true(kv_dot_eq(must(&v, "x.sibling-2")->version->dot, f1));

	/* Writing the directory must not discard the files shown as its siblings. */
	struct kv_ctx ctx = KV_CTX_INIT;
	struct kv_dvv t = KV_DVV_INIT;
	assert_int_equal(kv_fs_view_name_context(&v.names[0], &ctx), 0);
	assert_true(kv_ctx_covers(&ctx, dir));
	assert_false(kv_ctx_covers(&ctx, f1));
	assert_false(kv_ctx_covers(&ctx, f2));
	/* rm x.sibling-2 discards exactly f1. */
	assert_int_equal(kv_fs_view_version_context(&v.names[0], must(&v, "x.sibling-2")->version,
						    &ctx), 0);
	assert_int_equal(kv_dvv_copy(&t, &s), 0);
	assert_int_equal(kv_dvv_discard(&t, &ctx), 1);
	assert_null(kv_dvv_find(&t, f1));
	assert_non_null(kv_dvv_find(&t, f2));
	kv_dvv_release(&t);
	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
	kv_dvv_release(&sc);
}

static void test_fs_siblings__directory_lives_through_children(void **state)
{
	struct node a;
	struct kv_dvv empty = KV_DVV_INIT, gone = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	/* rmdir raced a create inside: tombstoned, but a child lives. */
	put(&a, &gone, NULL, KV_FS_DIR, NULL, 0700, 100);
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&ctx, &gone.ctx), 0);
	put(&a, &gone, &ctx, TOMB, NULL, 0, 200);
	struct kv_fs_listing_entry in[] = {
		{ kv_slice_str("a"), &empty, true },
		{ kv_slice_str("b"), &gone, true },
		{ kv_slice_str("c"), &empty, false },
	};
	struct kv_fs_meta dflt;
	memset(&dflt, 0, sizeof dflt);
	dflt.mode = 0711;
	dflt.uid = 42;
	assert_int_equal(kv_fs_view_build(&v, in, 3, &dflt), 0);
	assert_names(&v, "a b");
	assert_null(must(&v, "a")->version);
	assert_int_equal(must(&v, "a")->meta.type, KV_FS_DIR);
	assert_int_equal(must(&v, "a")->meta.mode, 0711);
	assert_int_equal(must(&v, "b")->meta.uid, 42);
	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&gone);
}

static void test_fs_siblings__undecodable_metadata_is_shown_flagged(void **state)
{
	struct node a, b;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	put(&a, &s, NULL, KV_FS_FILE, "ok", 0644, 100);
	put_raw(&b, &sb, "not an object", 200);
	join_into(&s, &sb);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	assert_names(&v, "f f.sibling-1 f.sibling-2");
	assert_int_equal(must(&v, "f.sibling-1")->meta_err, 0);
	assert_int_equal(must(&v, "f.sibling-2")->meta_err, KV_ECORRUPT);
	assert_int_equal(must(&v, "f.sibling-2")->meta.type, KV_FS_FILE);
	assert_int_equal(must(&v, "f.sibling-2")->meta.mode, 0);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
}

static void test_fs_siblings__generated_names_win_over_stored_ones(void **state)
{
	struct node a, b;
	struct kv_dvv f = KV_DVV_INIT, fb = KV_DVV_INIT, one = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	put(&a, &f, NULL, KV_FS_FILE, "a", 0644, 100);
	put(&b, &fb, NULL, KV_FS_FILE, "b", 0644, 200);
	join_into(&f, &fb);
	put(&a, &one, NULL, KV_FS_FILE, "stored", 0644, 300);
	/* Stored by another client under reserved names; unshowable names too. */
	struct kv_fs_listing_entry in[] = {
		{ kv_slice_make("", 0), &one, false },
		{ kv_slice_str("."), &one, false },
		{ kv_slice_make("a\0b", 3), &one, false },
		{ kv_slice_str("a/b"), &one, false },
		entry("f", &f),
		entry("f.sibling-2", &one),  /* taken by a generated name: hidden */
		entry("f.sibling-3", &one),  /* free: shown */
		entry("g.sibling-1", &one),  /* no g: shown */
	};
	build(&v, in, sizeof in / sizeof in[0]);
	assert_names(&v, "f f.sibling-1 f.sibling-2 f.sibling-3 g.sibling-1");
	assert_int_equal(must(&v, "f.sibling-2")->sibling, 2);
	assert_int_equal(must(&v, "f.sibling-3")->sibling, 0);
	/* A stored reserved name resolves by its own dot too. */
	const struct kv_fs_shown *out = NULL;
	struct kv_dot stored = one.v[0].dot;
	assert_int_equal(kv_fs_view_resolve(&v, "g.sibling-1", &stored, &out), 0);
	assert_string_equal(out->name, "g.sibling-1");
	kv_fs_view_release(&v);
	kv_dvv_release(&f);
	kv_dvv_release(&fb);
	kv_dvv_release(&one);
}

static void test_fs_siblings__listing_must_be_sorted(void **state)
{
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	struct kv_fs_listing_entry in[] = { entry("b", &s), entry("a", &s) };
	assert_int_equal(kv_fs_view_build(&v, in, 2, NULL), KV_EINVAL);
	struct kv_fs_listing_entry dup[] = { entry("a", &s), entry("a", &s) };
	assert_int_equal(kv_fs_view_build(&v, dup, 2, NULL), KV_EINVAL);
	assert_int_equal(kv_fs_view_build(&v, NULL, 0, NULL), 0);
	assert_int_equal(v.nshown, 0);
	kv_fs_view_release(&v);
}

/* ---- names ---- */

static void test_fs_siblings__parse_accepts_only_generated_names(void **state)
{
	size_t base = 99;
	uint32_t idx = 99;
	assert_int_equal(kv_fs_sibling_parse("f.sibling-1", &base, &idx), 0);
	assert_int_equal(base, 1);
	assert_int_equal(idx, 1);
	assert_int_equal(kv_fs_sibling_parse("a.b.sibling-64", &base, &idx), 0);
	assert_int_equal(base, 3);
	assert_int_equal(idx, 64);
	assert_int_equal(kv_fs_sibling_parse("x.sibling-4294967295", &base, &idx), 0);
	assert_int_equal(idx, UINT32_MAX);
	base = 99;
	const char *bad[] = { "f", "f.sibling-", "f.sibling-0", "f.sibling-01", ".sibling-1",
			      "f.sibling-1a", "f.sibling--1", "f.Sibling-1", "f.sibling-4294967296",
			      "f.sibling-99999999999", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(kv_fs_sibling_parse(bad[i], &base, &idx), KV_EINVAL);
	assert_int_equal(base, 99);
}

static void test_fs_siblings__reserved_names_refused_on_create(void **state)
{
	assert_true(kv_fs_name_is_reserved("f.sibling-1"));
	assert_true(kv_fs_name_is_reserved("f.sibling-0"));
	assert_true(kv_fs_name_is_reserved("f.sibling-007"));
	assert_true(kv_fs_name_is_reserved(".sibling-3"));
	assert_false(kv_fs_name_is_reserved("f.sibling-"));
	assert_false(kv_fs_name_is_reserved("f.sibling-1.txt"));
	assert_false(kv_fs_name_is_reserved("fsibling-1"));
	assert_int_equal(kv_fs_name_check_new("f.sibling-2"), -EINVAL);
	assert_int_equal(kv_fs_name_check_new("notes.txt"), 0);
	assert_int_equal(kv_fs_name_check_new(""), -EINVAL);
	assert_int_equal(kv_fs_name_check_new(".."), -EINVAL);
	assert_int_equal(kv_fs_name_check_new("a/b"), -EINVAL);
	char longname[KV_FS_NAME_MAX + 2];
	memset(longname, 'n', sizeof longname);
	longname[KV_FS_NAME_MAX + 1] = '\0';
	assert_int_equal(kv_fs_name_check_new(longname), -ENAMETOOLONG);
	longname[KV_FS_NAME_MAX] = '\0';
	assert_int_equal(kv_fs_name_check_new(longname), 0);
}

/* ---- resolution and gestures ---- */

static void test_fs_siblings__resolve_by_dot_against_a_new_listing(void **state)
{
	struct node a, b, c;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT, sc = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	const struct kv_fs_shown *out = NULL;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	struct kv_dot d1 = put(&a, &s, NULL, KV_FS_FILE, "one", 0644, 100);
	struct kv_dot d3 = put(&b, &sb, NULL, KV_FS_FILE, "three", 0644, 300);
	join_into(&s, &sb);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-2", NULL, &out), 0);
	assert_true(kv_dot_eq(out->version->dot, d3));
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-3", NULL, &out), -ENOENT);
	assert_int_equal(kv_fs_view_resolve(&v, "nope", NULL, &out), -ENOENT);

	/* A version arrives in between (t=200): the next listing renumbers. */
	struct kv_dot d2 = put(&c, &sc, NULL, KV_FS_FILE, "two", 0644, 200);
	join_into(&s, &sc);
	build(&v, in, 1);
	assert_names(&v, "f f.sibling-1 f.sibling-2 f.sibling-3");
	/* An inode shown as f.sibling-2 with dot d3 follows its version, now number 3. */
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-2", &d3, &out), 0);
	assert_int_equal(out->sibling, 3);
	assert_true(kv_dot_eq(out->version->dot, d3));
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-2", &d2, &out), 0);
	assert_int_equal(out->sibling, 2);

	/* rm f.sibling-1 elsewhere; the next listing no longer shows d1: ESTALE. */
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_fs_view_version_context(&v.names[0], must(&v, "f.sibling-1")->version,
						    &ctx), 0);
	put(&a, &s, &ctx, TOMB, NULL, 0, 400);
	build(&v, in, 1);
	assert_names(&v, "f f.sibling-1 f.sibling-2");
	out = NULL;
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-1", &d1, &out), -ESTALE);
	assert_null(out);
	assert_int_equal(kv_fs_view_resolve(&v, "g.sibling-1", &d1, &out), -ESTALE);

	/* Down to one version: an inode on its sibling name resolves to `f` itself. */
	assert_int_equal(kv_fs_view_version_context(&v.names[0], must(&v, "f.sibling-1")->version,
						    &ctx), 0);
	put(&a, &s, &ctx, TOMB, NULL, 0, 500);
	build(&v, in, 1);
	assert_names(&v, "f");
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-2", &d3, &out), 0);
	assert_string_equal(out->name, "f");
	assert_int_equal(kv_fs_view_resolve(&v, "f.sibling-1", &d2, &out), -ESTALE);

	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
	kv_dvv_release(&sc);
}

static void test_fs_siblings__gesture_contexts_are_what_was_shown(void **state)
{
	struct node a, b, c;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT, late = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	struct kv_ctx name_ctx = KV_CTX_INIT, one_ctx = KV_CTX_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	struct kv_dot d1 = put(&a, &s, NULL, KV_FS_FILE, "one", 0644, 100);
	struct kv_dot d2 = put(&b, &sb, NULL, KV_FS_FILE, "two", 0644, 200);
	join_into(&s, &sb);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	const struct kv_fs_name *nm = &v.names[0];
	assert_int_equal(kv_fs_view_name_context(nm, &name_ctx), 0);
	assert_int_equal(kv_fs_view_version_context(nm, must(&v, "f.sibling-1")->version, &one_ctx), 0);

	/* After the listing, a third version arrives at the replicas. */
	struct kv_dot d3 = put(&c, &late, NULL, KV_FS_FILE, "three", 0644, 300);
	join_into(&s, &late);

	/* rm f.sibling-1: exactly version 1 goes. */
	struct kv_dvv t = KV_DVV_INIT;
	assert_int_equal(kv_dvv_copy(&t, &s), 0);
	assert_int_equal(kv_dvv_discard(&t, &one_ctx), 1);
	assert_null(kv_dvv_find(&t, d1));
	assert_non_null(kv_dvv_find(&t, d2));
	/* rm f, write f, mv f.sibling-i f: every version shown goes, the late one survives. */
	assert_int_equal(kv_dvv_copy(&t, &s), 0);
	assert_int_equal(kv_dvv_discard(&t, &name_ctx), 2);
	assert_int_equal(t.n, 1);
	assert_true(kv_dot_eq(t.v[0].dot, d3));
	/* A stale handle: the version context of a version not in the view. */
	const struct kv_version *gone = kv_dvv_find(&s, d3);
	assert_int_equal(kv_fs_view_version_context(nm, gone, &one_ctx), -ESTALE);
	assert_int_equal(kv_fs_view_version_context(nm, NULL, &one_ctx), -ESTALE);

	kv_dvv_release(&t);
	kv_ctx_release(&name_ctx);
	kv_ctx_release(&one_ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
	kv_dvv_release(&late);
}

static void test_fs_siblings__rm_sibling_discards_its_hidden_twins(void **state)
{
	struct node a, b, c;
	struct kv_dvv s = KV_DVV_INIT, sb = KV_DVV_INIT, sc = KV_DVV_INIT;
	struct kv_fs_view v = KV_FS_VIEW_INIT;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	put(&a, &s, NULL, KV_FS_FILE, "twin", 0644, 100);
	put(&b, &sb, NULL, KV_FS_FILE, "twin", 0644, 100);
	struct kv_dot other = put(&c, &sc, NULL, KV_FS_FILE, "other", 0644, 200);
	join_into(&s, &sb);
	join_into(&s, &sc);
	struct kv_fs_listing_entry in[] = { entry("f", &s) };
	build(&v, in, 1);
	assert_names(&v, "f f.sibling-1 f.sibling-2");
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_fs_view_version_context(&v.names[0], must(&v, "f.sibling-1")->version,
						    &ctx), 0);
	assert_int_equal(kv_dvv_discard(&s, &ctx), 2);
	assert_int_equal(s.n, 1);
	assert_true(kv_dot_eq(s.v[0].dot, other));
	kv_ctx_release(&ctx);
	kv_fs_view_release(&v);
	kv_dvv_release(&s);
	kv_dvv_release(&sb);
	kv_dvv_release(&sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fs_siblings__one_version_shows_its_name_only),
		cmocka_unit_test(test_fs_siblings__conflict_numbers_by_timestamp_then_dot),
		cmocka_unit_test(test_fs_siblings__identical_versions_show_once),
		cmocka_unit_test(test_fs_siblings__tombstones_are_hidden),
		cmocka_unit_test(test_fs_siblings__directories_join_latest_wins),
		cmocka_unit_test(test_fs_siblings__directory_keeps_the_name_in_a_clash),
		cmocka_unit_test(test_fs_siblings__directory_lives_through_children),
		cmocka_unit_test(test_fs_siblings__undecodable_metadata_is_shown_flagged),
		cmocka_unit_test(test_fs_siblings__generated_names_win_over_stored_ones),
		cmocka_unit_test(test_fs_siblings__listing_must_be_sorted),
		cmocka_unit_test(test_fs_siblings__parse_accepts_only_generated_names),
		cmocka_unit_test(test_fs_siblings__reserved_names_refused_on_create),
		cmocka_unit_test(test_fs_siblings__resolve_by_dot_against_a_new_listing),
		cmocka_unit_test(test_fs_siblings__gesture_contexts_are_what_was_shown),
		cmocka_unit_test(test_fs_siblings__rm_sibling_discards_its_hidden_twins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
