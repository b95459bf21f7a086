/*
 * test_dvv.c - sibling sets (src/version/siblings.h): join, discard, put,
 * limits, retries, display order, tombstones, retirement, the encoding, and
 * seeded property tests over random histories (KV_SEED=... replays).
 *
 * With KV_DVV_WRITE_CORPUS=DIR set, the encoding test also writes its sample
 * encodings into DIR, the seed corpus of tests/fuzz/fuzz_siblings.c.
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

#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"
#include "version/counter.h"
#include "version/dot.h"
#include "version/siblings.h"

/* ---- helpers ---- */

/* A coordinating replica: its actor and its node-wide counter. */
struct node {
	struct kv_actor self;
	struct kv_counter counter;
};

static void node_refill(struct node *n)
{
	uint64_t lease;
	if (kv_counter_lease_request(&n->counter, &lease) == 1)
		kv_counter_lease_durable(&n->counter, lease);
}

static void node_init(struct node *n, uint32_t id)
{
	n->self = (struct kv_actor){ id, 1 };
	kv_counter_init(&n->counter, 0, 100);
	node_refill(n);
}

static void set_rid(uint8_t rid[KV_REQUEST_ID_LEN], uint64_t id)
{
	memset(rid, 0, KV_REQUEST_ID_LEN);
	kv_put_le64(rid, id);
}

/* A put of @body (NULL: a tombstone); returns kv_dvv_put()'s result. */
static int put_ex(struct node *n, struct kv_dvv *s, const struct kv_ctx *ctx, const char *body,
		  int64_t ts, uint64_t rid, struct kv_dot *dot)
{
	struct kv_dvv_write w = { .context = ctx, .timestamp_ns = ts, .tombstone = body == NULL };
	set_rid(w.request_id, rid);
	if (body)
		w.body = kv_slice_str(body);
	w.meta = kv_slice_str("mode=0644");
	node_refill(n);
	return kv_dvv_put(s, &w, n->self, &n->counter, NULL, dot);
}

static struct kv_dot put(struct node *n, struct kv_dvv *s, const struct kv_ctx *ctx,
			 const char *body, int64_t ts, uint64_t rid)
{
	struct kv_dot d = { { 0, 0 }, 0 };
	assert_int_equal(put_ex(n, s, ctx, body, ts, rid, &d), 0);
	return d;
}

static bool body_is(const struct kv_version *v, const char *body)
{
	return kv_slice_eq(v->body, kv_slice_str(body));
}

static void encode(const struct kv_dvv *s, struct kv_buf *out)
{
	kv_buf_reset(out);
	assert_int_equal(kv_dvv_encode(s, out), 0);
}

/* Equal sets, and equal encodings (the encoding is canonical). */
static void assert_same_set(const struct kv_dvv *a, const struct kv_dvv *b)
{
	struct kv_buf ea = KV_BUF_INIT, eb = KV_BUF_INIT;
	encode(a, &ea);
	encode(b, &eb);
	assert_true(kv_dvv_equal(a, b));
	assert_int_equal(ea.n, eb.n);
	assert_memory_equal(ea.p, eb.p, ea.n);
	kv_buf_release(&ea);
	kv_buf_release(&eb);
}

static void copy_set(struct kv_dvv *dst, const struct kv_dvv *src)
{
	assert_int_equal(kv_dvv_copy(dst, src), 0);
}

/* ---- put, discard, join: the rules ---- */

static void test_dvv__put_without_context_destroys_nothing(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_dot d1 = put(&a, &s, NULL, "one", 10, 0);
	struct kv_dot d2 = put(&a, &s, NULL, "two", 20, 0);
	struct kv_ctx empty = KV_CTX_INIT;
	struct kv_dot d3 = put(&a, &s, &empty, "three", 30, 0);
	assert_int_equal(s.n, 3);
	assert_non_null(kv_dvv_find(&s, d1));
	assert_non_null(kv_dvv_find(&s, d2));
	assert_non_null(kv_dvv_find(&s, d3));
	assert_true(kv_ctx_covers(&s.ctx, d1) && kv_ctx_covers(&s.ctx, d3));
	kv_dvv_release(&s);
}

static void test_dvv__put_with_read_context_replaces_what_was_read(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT;
	put(&a, &s, NULL, "one", 10, 0);
	put(&a, &s, NULL, "two", 20, 0);
	struct kv_ctx read = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&read, &s.ctx), 0);
	/* A write the reader never saw. */
	struct kv_dot newer = put(&a, &s, NULL, "newer", 25, 0);
	struct kv_dot mine = put(&a, &s, &read, "resolved", 30, 0);
	assert_int_equal(s.n, 2);
	assert_non_null(kv_dvv_find(&s, newer));
	assert_true(body_is(kv_dvv_find(&s, mine), "resolved"));
	kv_ctx_release(&read);
	kv_dvv_release(&s);
}

static void test_dvv__discard_drops_exactly_what_context_covers(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT;
	struct kv_dot a1 = put(&a, &s, NULL, "a1", 1, 0);
	struct kv_dot b1 = put(&b, &t, NULL, "b1", 2, 0);
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	struct kv_ctx only_b = KV_CTX_INIT;
	assert_int_equal(kv_ctx_add(&only_b, b1), 0);
	assert_int_equal(kv_dvv_discard(&s, &only_b), 1);
	assert_int_equal(s.n, 1);
	assert_non_null(kv_dvv_find(&s, a1));
	/* The context remembers b1: the version cannot come back by a join. */
	assert_true(kv_ctx_covers(&s.ctx, b1));
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	assert_int_equal(s.n, 1);
	assert_null(kv_dvv_find(&s, b1));
	/* Discarding again changes nothing. */
	assert_int_equal(kv_dvv_discard(&s, &only_b), 0);
	assert_int_equal(s.n, 1);
	kv_ctx_release(&only_b);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
}

static void test_dvv__one_dot_context_discards_one_of_same_actor_siblings(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_dot d[4];
	const char *bodies[4] = { "w", "x", "y", "z" };
	for (int i = 0; i < 4; i++)
		d[i] = put(&a, &s, NULL, bodies[i], 10 + i, 0);
	assert_int_equal(s.n, 4);
	/* rm name.sibling-3: a tombstone whose context is that one dot. */
	struct kv_ctx one = KV_CTX_INIT;
	assert_int_equal(kv_dvv_context_of(&s, d[2], &one), 0);
	assert_int_equal(one.nvv + one.ncloud, 1);
	struct kv_dot tomb = put(&a, &s, &one, NULL, 50, 0);
	assert_int_equal(s.n, 4);
	assert_null(kv_dvv_find(&s, d[2]));
	assert_non_null(kv_dvv_find(&s, d[0]));
	assert_non_null(kv_dvv_find(&s, d[1]));
	assert_non_null(kv_dvv_find(&s, d[3]));
	assert_true(kv_dvv_find(&s, tomb)->tombstone);
	assert_int_equal(kv_dvv_live_count(&s), 3);
	/* At another replica the same context does the same. */
	struct kv_dvv r = KV_DVV_INIT;
	for (int i = 0; i < 4; i++)
		put(&a, &r, NULL, bodies[i], 10 + i, 0);
	struct kv_ctx mid = KV_CTX_INIT;
	assert_int_equal(kv_dvv_context_of(&r, r.v[1].dot, &mid), 0);
	struct kv_dot gone = r.v[1].dot;
	assert_int_equal(kv_dvv_discard(&r, &mid), 1);
	assert_int_equal(r.n, 3);
	assert_null(kv_dvv_find(&r, gone));
	kv_ctx_release(&mid);
	kv_ctx_release(&one);
	kv_dvv_release(&r);
	kv_dvv_release(&s);
}

static void test_dvv__join_keeps_concurrent_and_drops_covered(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv ra = KV_DVV_INIT, rb = KV_DVV_INIT;
	struct kv_dot a1 = put(&a, &ra, NULL, "a1", 1, 0);
	assert_int_equal(kv_dvv_join(&rb, &ra), 0); /* replication */
	/* Concurrent: b overwrites a1 (it saw it); a writes without context. */
	struct kv_ctx seen = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&seen, &rb.ctx), 0);
	struct kv_dot b1 = put(&b, &rb, &seen, "b1", 2, 0);
	struct kv_dot a2 = put(&a, &ra, NULL, "a2", 3, 0);
	struct kv_dvv x = KV_DVV_INIT, y = KV_DVV_INIT;
	copy_set(&x, &ra);
	copy_set(&y, &rb);
	assert_int_equal(kv_dvv_join(&x, &rb), 0);
	assert_int_equal(kv_dvv_join(&y, &ra), 0);
	assert_same_set(&x, &y);
	assert_int_equal(x.n, 2);
	assert_null(kv_dvv_find(&x, a1));
	assert_non_null(kv_dvv_find(&x, a2));
	assert_non_null(kv_dvv_find(&x, b1));
	kv_ctx_release(&seen);
	kv_dvv_release(&x);
	kv_dvv_release(&y);
	kv_dvv_release(&ra);
	kv_dvv_release(&rb);
}

static void test_dvv__join_take_moves_versions(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT, expect = KV_DVV_INIT;
	put(&a, &s, NULL, "a1", 1, 0);
	put(&b, &t, NULL, "b1", 2, 0);
	put(&b, &t, NULL, "b2", 3, 0);
	copy_set(&expect, &s);
	assert_int_equal(kv_dvv_join(&expect, &t), 0);
	assert_int_equal(kv_dvv_join_take(&s, &t), 0);
	assert_same_set(&s, &expect);
	assert_int_equal(t.n, 0);
	assert_true(kv_ctx_is_empty(&t.ctx));
	kv_dvv_release(&s);
	kv_dvv_release(&t);
	kv_dvv_release(&expect);
}

static void test_dvv__join_of_conflicting_content_is_still_commutative(void **state)
{
	(void)state;
	/* Two sets that disagree on one dot's content (never in a correct cluster). */
	struct node a1, a2;
	node_init(&a1, 1);
	node_init(&a2, 1);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT, x = KV_DVV_INIT, y = KV_DVV_INIT;
	struct kv_dot d1 = put(&a1, &s, NULL, "left", 1, 0);
	struct kv_dot d2 = put(&a2, &t, NULL, "right", 1, 0);
	assert_true(kv_dot_eq(d1, d2));
	copy_set(&x, &s);
	copy_set(&y, &t);
	assert_int_equal(kv_dvv_join(&x, &t), 0);
	assert_int_equal(kv_dvv_join(&y, &s), 0);
	assert_same_set(&x, &y);
	assert_int_equal(x.n, 1);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
	kv_dvv_release(&x);
	kv_dvv_release(&y);
}

static void test_dvv__join_refuses_more_than_max_versions(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv_limits lim;
	kv_dvv_limits_default(&lim);
	lim.max_siblings = KV_DVV_MAX_VERSIONS;
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT, before = KV_DVV_INIT;
	struct kv_dvv_write w = { .timestamp_ns = 1, .body = kv_slice_str("x") };
	struct kv_dot d;
	for (size_t i = 0; i < KV_DVV_MAX_VERSIONS / 2 + 1; i++) {
		node_refill(&a);
		node_refill(&b);
		assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, &lim, &d), 0);
		assert_int_equal(kv_dvv_put(&t, &w, b.self, &b.counter, &lim, &d), 0);
	}
	copy_set(&before, &s);
	assert_int_equal(kv_dvv_join(&s, &t), KV_ESIBLINGS);
	assert_same_set(&s, &before);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
	kv_dvv_release(&before);
}

/* ---- limits, retries, counters ---- */

static void test_dvv__retried_request_id_returns_first_dot(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, before = KV_DVV_INIT;
	struct kv_dot first = put(&a, &s, NULL, "data", 10, 77);
	copy_set(&before, &s);
	uint64_t next_before = a.counter.next;
	struct kv_dot again = { { 0, 0 }, 0 };
	assert_int_equal(put_ex(&a, &s, &s.ctx, "data", 11, 77, &again), 1);
	assert_true(kv_dot_eq(first, again));
	assert_same_set(&s, &before);
	assert_true(a.counter.next == next_before);
	/* The retry lands at another replica that has joined the write. */
	struct kv_dvv other = KV_DVV_INIT;
	put(&b, &other, NULL, "unrelated", 5, 0);
	assert_int_equal(kv_dvv_join(&other, &s), 0);
	assert_int_equal(put_ex(&b, &other, NULL, "data", 12, 77, &again), 1);
	assert_true(kv_dot_eq(first, again));
	assert_int_equal(other.n, 2);
	/* A request id of zeros means "none": never a retry. */
	put(&a, &s, NULL, "anon", 20, 0);
	put(&a, &s, NULL, "anon", 21, 0);
	assert_int_equal(s.n, 3);
	kv_dvv_release(&s);
	kv_dvv_release(&before);
	kv_dvv_release(&other);
}

static void test_dvv__sixty_fifth_sibling_fails_and_changes_nothing(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT, before = KV_DVV_INIT;
	for (int i = 0; i < KV_DVV_MAX_SIBLINGS; i++)
		put(&a, &s, NULL, "v", i, 0);
	assert_int_equal(s.n, 64);
	copy_set(&before, &s);
	node_refill(&a);
	uint64_t next_before = a.counter.next;
	struct kv_dot d = { { 9, 9 }, 9 };
	assert_int_equal(put_ex(&a, &s, NULL, "one too many", 100, 0, &d), KV_ESIBLINGS);
	assert_same_set(&s, &before);
	assert_true(a.counter.next == next_before);
	assert_true(d.counter == 9); /* output unset */
	/* A put whose context covers one of them fits again. */
	struct kv_ctx one = KV_CTX_INIT;
	assert_int_equal(kv_ctx_add(&one, s.v[0].dot), 0);
	put(&a, &s, &one, "resolves one", 101, 0);
	assert_int_equal(s.n, 64);
	/* And a put with the whole context resolves all of them. */
	put(&a, &s, &s.ctx, "resolved", 102, 0);
	assert_int_equal(s.n, 1);
	kv_ctx_release(&one);
	kv_dvv_release(&s);
	kv_dvv_release(&before);
}

static void test_dvv__value_over_limit_is_too_big(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT;
	size_t big = KV_DVV_MAX_VALUE_DEFAULT + 1;
	uint8_t *body = calloc(big, 1);
	assert_non_null(body);
	struct kv_dvv_write w = { .timestamp_ns = 1, .body = kv_slice_make(body, big) };
	struct kv_dot d;
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, NULL, &d), KV_ETOOBIG);
	assert_int_equal(s.n, 0);
	w.body.n = KV_DVV_MAX_VALUE_DEFAULT; /* exactly at the limit: fine */
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, NULL, &d), 0);
	/* The limit is configurable. */
	struct kv_dvv_limits lim;
	kv_dvv_limits_default(&lim);
	lim.max_value = 10;
	w.body.n = 11;
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, &lim, &d), KV_ETOOBIG);
	w.body.n = 10;
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, &lim, &d), 0);
	/* Metadata has its own limit. */
	w.body.n = 0;
	w.meta = kv_slice_make(body, KV_DVV_MAX_META_DEFAULT + 1);
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, NULL, &d), KV_ETOOBIG);
	assert_int_equal(s.n, 2);
	free(body);
	kv_dvv_release(&s);
}

static void test_dvv__tombstone_with_body_is_invalid(void **state)
{
	(void)state;
	struct node a;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_dvv_write w = { .timestamp_ns = 1, .tombstone = true,
				  .body = kv_slice_str("x") };
	struct kv_dot d;
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, NULL, &d), KV_EINVAL);
	assert_int_equal(s.n, 0);
	kv_dvv_release(&s);
}

static void test_dvv__put_waits_for_a_durable_lease(void **state)
{
	(void)state;
	struct kv_counter c;
	kv_counter_init(&c, 0, 10);
	struct kv_actor self = { 1, 1 };
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_dvv_write w = { .timestamp_ns = 1, .body = kv_slice_str("x") };
	struct kv_dot d;
	assert_int_equal(kv_dvv_put(&s, &w, self, &c, NULL, &d), -EAGAIN);
	assert_int_equal(s.n, 0);
	assert_true(kv_ctx_is_empty(&s.ctx));
	uint64_t lease;
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	assert_int_equal(kv_dvv_put(&s, &w, self, &c, NULL, &d), -EAGAIN);
	kv_counter_lease_durable(&c, lease);
	assert_int_equal(kv_dvv_put(&s, &w, self, &c, NULL, &d), 0);
	assert_true(d.counter == 1);
	kv_dvv_release(&s);
}

static void test_dvv__counter_behind_context_refuses_to_mint(void **state)
{
	(void)state;
	struct node a, restarted;
	node_init(&a, 1);
	struct kv_dvv s = KV_DVV_INIT, before = KV_DVV_INIT;
	for (int i = 0; i < 5; i++)
		put(&a, &s, NULL, "v", i, 0);
	copy_set(&before, &s);
	/* Same actor, counter restarted from scratch: must take a new epoch. */
	node_init(&restarted, 1);
	struct kv_dot d;
	assert_int_equal(put_ex(&restarted, &s, NULL, "lost?", 9, 0, &d), KV_EINVAL);
	assert_same_set(&s, &before);
	/* Under a new epoch it is a new actor, and minting works. */
	restarted.self.epoch = 2;
	put(&restarted, &s, NULL, "fine", 9, 0);
	assert_int_equal(s.n, 6);
	kv_dvv_release(&s);
	kv_dvv_release(&before);
}

static void test_dvv__old_context_never_covers_a_rewritten_key(void **state)
{
	(void)state;
	/* One node-wide counter across keys; a key is purged and written again. */
	struct node a;
	node_init(&a, 1);
	struct kv_dvv key1 = KV_DVV_INIT, key2 = KV_DVV_INIT;
	put(&a, &key1, NULL, "k1 v1", 1, 0);
	put(&a, &key2, NULL, "k2 v1", 2, 0);
	put(&a, &key1, &key1.ctx, "k1 v2", 3, 0);
	struct kv_ctx old = KV_CTX_INIT;
	assert_int_equal(kv_ctx_copy(&old, &key1.ctx), 0);
	kv_dvv_release(&key1); /* purge */
	struct kv_dot fresh = put(&a, &key1, NULL, "k1 again", 4, 0);
	assert_false(kv_ctx_covers(&old, fresh));
	/* A stale writer's put with the old context destroys nothing new. */
	put(&a, &key1, &old, "stale writer", 5, 0);
	assert_non_null(kv_dvv_find(&key1, fresh));
	assert_int_equal(key1.n, 2);
	/* The vector jumps over other keys' counters: no cloud builds up. */
	for (int i = 0; i < 20; i++) {
		put(&a, &key2, NULL, "other key", 6 + i, 0);
		put(&a, &key1, &key1.ctx, "k1", 6 + i, 0);
	}
	assert_int_equal(key1.n, 1);
	assert_int_equal(key1.ctx.ncloud, 0);
	assert_int_equal(key1.ctx.nvv, 1);
	kv_ctx_release(&old);
	kv_dvv_release(&key1);
	kv_dvv_release(&key2);
}

/* ---- display, tombstones, retirement ---- */

static void test_dvv__display_orders_by_timestamp_then_dot(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT;
	put(&b, &t, NULL, "b late", 300, 0);
	put(&b, &t, NULL, "b tie", 100, 0);
	put(&a, &s, NULL, "a tie", 100, 0);
	put(&a, &s, NULL, "a early", 50, 0);
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	const struct kv_version *out[4];
	assert_int_equal(kv_dvv_display(&s, 0, out), 4);
	assert_true(body_is(out[0], "a early"));
	assert_true(body_is(out[1], "a tie")); /* same time: actor 1 before 2 */
	assert_true(body_is(out[2], "b tie"));
	assert_true(body_is(out[3], "b late"));
	kv_dvv_release(&s);
	kv_dvv_release(&t);
}

static void test_dvv__identical_versions_are_shown_once(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT;
	/* Two clients write the same bytes concurrently. */
	struct kv_dot d1 = put(&a, &s, NULL, "same", 10, 1);
	struct kv_dot d2 = put(&b, &t, NULL, "same", 20, 2);
	put(&a, &s, NULL, "different", 30, 3);
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	const struct kv_version *out[3];
	assert_int_equal(kv_dvv_display(&s, 0, out), 2);
	assert_true(kv_dot_eq(out[0]->dot, d1)); /* the first of the group */
	assert_true(body_is(out[1], "different"));
	assert_int_equal(kv_dvv_display(&s, KV_DVV_SHOW_DUPLICATES, out), 3);
	/* Discarding the shown one discards its twin too. */
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_dvv_context_of(&s, d1, &ctx), 0);
	assert_true(kv_ctx_covers(&ctx, d1) && kv_ctx_covers(&ctx, d2));
	assert_int_equal(kv_dvv_discard(&s, &ctx), 2);
	assert_int_equal(s.n, 1);
	assert_int_equal(kv_dvv_context_of(&s, d1, &ctx), KV_ENOTFOUND);
	/* Same body, different metadata: shown apart. */
	struct kv_dvv_write w = { .timestamp_ns = 40, .body = kv_slice_str("different"),
				  .meta = kv_slice_str("mode=0600") };
	struct kv_dot d;
	node_refill(&a);
	assert_int_equal(kv_dvv_put(&s, &w, a.self, &a.counter, NULL, &d), 0);
	assert_int_equal(kv_dvv_display(&s, 0, out), 2);
	kv_ctx_release(&ctx);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
}

static void test_dvv__tombstones_are_versions_hidden_from_display(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT;
	assert_true(kv_dvv_tombstone_only(&s));
	put(&a, &s, NULL, "file", 10, 0);
	assert_false(kv_dvv_tombstone_only(&s));
	assert_int_equal(kv_dvv_join(&t, &s), 0);
	/* rm at a, an edit at b, concurrently. */
	struct kv_dot tomb = put(&a, &s, &s.ctx, NULL, 20, 0);
	assert_int_equal(s.n, 1);
	assert_true(kv_dvv_tombstone_only(&s));
	assert_int_equal(kv_dvv_live_count(&s), 0);
	const struct kv_version *out[2];
	assert_int_equal(kv_dvv_display(&s, 0, out), 0);
	assert_int_equal(kv_dvv_display(&s, KV_DVV_SHOW_TOMBSTONES, out), 1);
	assert_true(kv_dot_eq(out[0]->dot, tomb));
	put(&b, &t, &t.ctx, "edited", 15, 0);
	/* The edit survives the delete (DESIGN §7); the tombstone stays too. */
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	assert_int_equal(s.n, 2);
	assert_false(kv_dvv_tombstone_only(&s));
	assert_int_equal(kv_dvv_display(&s, 0, out), 1);
	assert_true(body_is(out[0], "edited"));
	/* The next write with the shown context clears the tombstone. */
	put(&a, &s, &s.ctx, "edited", 30, 0);
	assert_int_equal(s.n, 1);
	assert_false(s.v[0].tombstone);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
}

/* A tombstone that carries @meta ("" = none). */
static struct kv_dot tomb_meta(struct node *n, struct kv_dvv *s, const struct kv_ctx *ctx,
			       const char *meta, int64_t ts)
{
	struct kv_dvv_write w = { .context = ctx, .timestamp_ns = ts, .tombstone = true };
	w.meta = kv_slice_str(meta);
	struct kv_dot d = { { 0, 0 }, 0 };
	node_refill(n);
	assert_int_equal(kv_dvv_put(s, &w, n->self, &n->counter, NULL, &d), 0);
	return d;
}

/*
 * kv_dvv_hide_tombstones: every tombstone goes and the context still covers
 * it; with keep_meta a set without live versions keeps its latest tombstone
 * that carries metadata, and a set with a live version keeps none.
 */
static void test_dvv__hide_tombstones_keeps_the_latest_with_metadata_on_request(void **state)
{
	(void)state;
	struct node a, b, c;
	node_init(&a, 1);
	node_init(&b, 2);
	node_init(&c, 3);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT, u = KV_DVV_INIT, x = KV_DVV_INIT;
	put(&a, &s, NULL, "dir", 10, 0);
	assert_int_equal(kv_dvv_join(&t, &s), 0);
	assert_int_equal(kv_dvv_join(&u, &s), 0);
	/* Three concurrent removals: two with metadata (b's later), one without (c's latest). */
	tomb_meta(&a, &s, &s.ctx, "rmdir-a", 20);
	struct kv_dot late = tomb_meta(&b, &t, &t.ctx, "rmdir-b", 30);
	tomb_meta(&c, &u, &u.ctx, "", 40);
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	assert_int_equal(kv_dvv_join(&s, &u), 0);
	assert_int_equal(s.n, 3);

	assert_int_equal(kv_dvv_copy(&x, &s), 0);
	assert_int_equal(kv_dvv_hide_tombstones(&x, false), 0);
	assert_int_equal(x.n, 0);
	assert_true(kv_ctx_equal(&x.ctx, &s.ctx));

	assert_int_equal(kv_dvv_copy(&x, &s), 0);
	assert_int_equal(kv_dvv_hide_tombstones(&x, true), 0);
	assert_int_equal(x.n, 1);
	assert_true(kv_dot_eq(x.v[0].dot, late));
	assert_true(kv_slice_eq(x.v[0].meta, kv_slice_str("rmdir-b")));
	assert_true(kv_ctx_equal(&x.ctx, &s.ctx));

	/* A concurrent live version: only it is shown, with or without keep_meta. */
	struct kv_dvv live = KV_DVV_INIT;
	put(&c, &live, NULL, "file", 50, 0);
	assert_int_equal(kv_dvv_join(&s, &live), 0);
	assert_int_equal(kv_dvv_copy(&x, &s), 0);
	assert_int_equal(kv_dvv_hide_tombstones(&x, true), 0);
	assert_int_equal(x.n, 1);
	assert_false(x.v[0].tombstone);
	assert_true(body_is(&x.v[0], "file"));
	kv_dvv_release(&s);
	kv_dvv_release(&t);
	kv_dvv_release(&u);
	kv_dvv_release(&x);
	kv_dvv_release(&live);
}

static void test_dvv__retire_drops_an_actor_without_versions(void **state)
{
	(void)state;
	struct node a, b;
	node_init(&a, 1);
	node_init(&b, 2);
	struct kv_dvv s = KV_DVV_INIT, t = KV_DVV_INIT;
	put(&b, &t, NULL, "from b", 1, 0);
	assert_int_equal(kv_dvv_join(&s, &t), 0);
	assert_int_equal(kv_dvv_retire(&s, b.self), KV_EBUSY);
	put(&a, &s, &s.ctx, "over it", 2, 0);
	assert_int_equal(s.ctx.nvv, 2);
	assert_int_equal(kv_dvv_retire(&s, b.self), 1);
	assert_int_equal(s.ctx.nvv, 1);
	assert_true(kv_actor_eq(s.ctx.vv[0].actor, a.self));
	assert_int_equal(kv_dvv_retire(&s, b.self), 0);
	assert_int_equal(s.n, 1);
	kv_dvv_release(&s);
	kv_dvv_release(&t);
}

/* ---- a random world: coordinators, replicas and snapshots ---- */

#define WORLD_NODES 4
#define WORLD_POOL 24

struct world {
	struct kv_rng rng;
	struct node nodes[WORLD_NODES];
	struct kv_dvv replica[WORLD_NODES];
	struct kv_dvv pool[WORLD_POOL]; /* snapshots: what readers saw */
	size_t npool;
	int64_t clock;
	uint64_t rid;
};

static void world_init(struct world *w, uint64_t seed)
{
	memset(w, 0, sizeof *w);
	kv_rng_seed(&w->rng, seed);
	for (uint32_t i = 0; i < WORLD_NODES; i++) {
		node_init(&w->nodes[i], i + 1);
		kv_dvv_init(&w->replica[i]);
	}
	for (size_t i = 0; i < WORLD_POOL; i++)
		kv_dvv_init(&w->pool[i]);
}

static void world_release(struct world *w)
{
	for (size_t i = 0; i < WORLD_NODES; i++)
		kv_dvv_release(&w->replica[i]);
	for (size_t i = 0; i < WORLD_POOL; i++)
		kv_dvv_release(&w->pool[i]);
}

static size_t pick(struct world *w, size_t n)
{
	return (size_t)kv_rng_below(&w->rng, n);
}

/* A context some client might send: none, a read's, or one shown sibling. */
static void world_context(struct world *w, size_t at, struct kv_ctx *out)
{
	kv_ctx_clear(out);
	const struct kv_dvv *src = &w->replica[at];
	if (w->npool && pick(w, 2))
		src = &w->pool[pick(w, w->npool)];
	switch (pick(w, 4)) {
	case 0:
		break;
	case 1:
	case 2:
		assert_int_equal(kv_ctx_copy(out, &src->ctx), 0);
		break;
	default:
		if (src->n)
			assert_int_equal(kv_dvv_context_of(src, src->v[pick(w, src->n)].dot, out), 0);
		break;
	}
}

static void world_step(struct world *w)
{
	static const char *bodies[] = { "alpha", "beta", "gamma", "" };
	size_t i = pick(w, WORLD_NODES);
	struct kv_ctx ctx = KV_CTX_INIT;
	int r = (int)pick(w, 10);
	if (r < 5) {
		world_context(w, i, &ctx);
		const char *body = pick(w, 5) ? bodies[pick(w, 4)] : NULL;
		struct kv_dot d;
		int err = put_ex(&w->nodes[i], &w->replica[i], &ctx, body, w->clock++,
				 pick(w, 4) ? ++w->rid : 0, &d);
		assert_true(err == 0 || err == KV_ESIBLINGS);
	} else if (r < 8) {
		size_t j = pick(w, WORLD_NODES);
		assert_int_equal(kv_dvv_join(&w->replica[i], &w->replica[j]), 0);
	} else if (r < 9 && w->npool) {
		/* A replica applying some reader's context. */
		world_context(w, i, &ctx);
		assert_true(kv_dvv_discard(&w->replica[i], &ctx) >= 0);
	} else {
		size_t slot = w->npool < WORLD_POOL ? w->npool++ : pick(w, WORLD_POOL);
		copy_set(&w->pool[slot], &w->replica[i]);
	}
	kv_ctx_release(&ctx);
}

static void world_run(struct world *w, int steps)
{
	for (int k = 0; k < steps; k++)
		world_step(w);
	/* Snapshot every replica too, so the pool holds the newest states. */
	for (size_t i = 0; i < WORLD_NODES && w->npool < WORLD_POOL; i++)
		copy_set(&w->pool[w->npool++], &w->replica[i]);
}

static void joined(struct kv_dvv *out, const struct kv_dvv *a, const struct kv_dvv *b)
{
	copy_set(out, a);
	assert_int_equal(kv_dvv_join(out, b), 0);
}

static void test_dvv__join_is_commutative_associative_idempotent(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__join_is_commutative_associative_idempotent");
	size_t most_versions = 0, cloud_dots = 0, tombstones = 0, actors = 0;
	for (int round = 0; round < 60; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 150);
		for (size_t k = 0; k < w.npool; k++) {
			const struct kv_dvv *p = &w.pool[k];
			most_versions = p->n > most_versions ? p->n : most_versions;
			cloud_dots += p->ctx.ncloud;
			tombstones += p->n - kv_dvv_live_count(p);
			actors = p->ctx.nvv > actors ? p->ctx.nvv : actors;
		}
		struct kv_dvv ab = KV_DVV_INIT, ba = KV_DVV_INIT, ab_c = KV_DVV_INIT;
		struct kv_dvv bc = KV_DVV_INIT, a_bc = KV_DVV_INIT, aa = KV_DVV_INIT;
		for (int k = 0; k < 40; k++) {
			const struct kv_dvv *a = &w.pool[pick(&w, w.npool)];
			const struct kv_dvv *b = &w.pool[pick(&w, w.npool)];
			const struct kv_dvv *c = &w.pool[pick(&w, w.npool)];
			joined(&ab, a, b);
			joined(&ba, b, a);
			assert_same_set(&ab, &ba);
			joined(&ab_c, &ab, c);
			joined(&bc, b, c);
			joined(&a_bc, a, &bc);
			assert_same_set(&ab_c, &a_bc);
			joined(&aa, a, a);
			assert_same_set(&aa, a);
			joined(&aa, &ab, b); /* absorbing: (a ⊔ b) ⊔ b = a ⊔ b */
			assert_same_set(&aa, &ab);
			/* The set context covers every surviving version. */
			for (size_t v = 0; v < ab.n; v++)
				assert_true(kv_ctx_covers(&ab.ctx, ab.v[v].dot));
		}
		kv_dvv_release(&ab);
		kv_dvv_release(&ba);
		kv_dvv_release(&ab_c);
		kv_dvv_release(&bc);
		kv_dvv_release(&a_bc);
		kv_dvv_release(&aa);
		world_release(&w);
	}
	/* The histories were not trivial: siblings, clouds, tombstones, actors. */
	assert_true(most_versions >= 4);
	assert_true(cloud_dots > 0);
	assert_true(tombstones > 0);
	assert_int_equal(actors, WORLD_NODES);
}

static void test_dvv__replicas_converge_in_any_join_order(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__replicas_converge_in_any_join_order");
	for (int round = 0; round < 30; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 120);
		/* Gossip every replica's state around in random orders. */
		struct kv_dvv final[WORLD_NODES];
		for (size_t i = 0; i < WORLD_NODES; i++) {
			kv_dvv_init(&final[i]);
			size_t order[WORLD_NODES];
			for (size_t k = 0; k < WORLD_NODES; k++)
				order[k] = k;
			for (size_t k = WORLD_NODES - 1; k > 0; k--) {
				size_t m = pick(&w, k + 1), t = order[k];
				order[k] = order[m];
				order[m] = t;
			}
			for (size_t k = 0; k < WORLD_NODES; k++)
				assert_int_equal(kv_dvv_join(&final[i], &w.replica[order[k]]), 0);
		}
		for (size_t i = 1; i < WORLD_NODES; i++)
			assert_same_set(&final[0], &final[i]);
		for (size_t i = 0; i < WORLD_NODES; i++)
			kv_dvv_release(&final[i]);
		world_release(&w);
	}
}

static void test_dvv__concurrent_writers_make_exactly_n_siblings(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__concurrent_writers_make_exactly_n_siblings");
	for (int round = 0; round < 40; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 60);
		struct node *coord = &w.nodes[0];
		struct kv_dvv *s = &w.replica[0];
		/* N clients read the same state, then all write with that context. */
		struct kv_ctx read = KV_CTX_INIT;
		assert_int_equal(kv_ctx_copy(&read, &s->ctx), 0);
		size_t n = 1 + pick(&w, KV_DVV_MAX_SIBLINGS);
		struct kv_dot *dots = calloc(n, sizeof *dots);
		for (size_t k = 0; k < n; k++) {
			char body[32];
			snprintf(body, sizeof body, "writer %zu", k);
			dots[k] = put(coord, s, &read, body, w.clock++, 1000000 + k);
		}
		assert_int_equal(s->n, n);
		for (size_t k = 0; k < n; k++) {
			const struct kv_version *v = kv_dvv_find(s, dots[k]);
			assert_non_null(v);
			char body[32];
			snprintf(body, sizeof body, "writer %zu", k);
			assert_true(body_is(v, body));
		}
		/* Retries of all of them change nothing. */
		for (size_t k = 0; k < n; k++) {
			struct kv_dot d;
			assert_int_equal(put_ex(coord, s, &read, "retry", w.clock, 1000000 + k, &d), 1);
			assert_true(kv_dot_eq(d, dots[k]));
		}
		assert_int_equal(s->n, n);
		free(dots);
		kv_ctx_release(&read);
		world_release(&w);
	}
}

static void test_dvv__read_context_replaces_exactly_what_was_read(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__read_context_replaces_exactly_what_was_read");
	for (int round = 0; round < 60; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 80);
		size_t at = pick(&w, WORLD_NODES);
		struct kv_dvv read = KV_DVV_INIT, before = KV_DVV_INIT;
		copy_set(&read, &w.replica[at]);
		world_run(&w, 40); /* newer writes arrive meanwhile */
		copy_set(&before, &w.replica[at]);
		struct kv_dot mine;
		int err = put_ex(&w.nodes[at], &w.replica[at], &read.ctx, "mine", w.clock++,
				 0, &mine);
		if (err == KV_ESIBLINGS) {
			kv_dvv_release(&read);
			kv_dvv_release(&before);
			world_release(&w);
			continue;
		}
		assert_int_equal(err, 0);
		const struct kv_dvv *after = &w.replica[at];
		/* Every version the read saw is gone. */
		for (size_t k = 0; k < read.n; k++)
			assert_null(kv_dvv_find(after, read.v[k].dot));
		/* Every version the read did not cover survives. */
		size_t kept = 0;
		for (size_t k = 0; k < before.n; k++) {
			bool seen = kv_ctx_covers(&read.ctx, before.v[k].dot);
			assert_true((kv_dvv_find(after, before.v[k].dot) != NULL) == !seen);
			kept += !seen;
		}
		assert_int_equal(after->n, kept + 1);
		assert_true(body_is(kv_dvv_find(after, mine), "mine"));
		kv_dvv_release(&read);
		kv_dvv_release(&before);
		world_release(&w);
	}
}

static void test_dvv__put_without_context_keeps_every_version(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__put_without_context_keeps_every_version");
	for (int round = 0; round < 60; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 100);
		size_t at = pick(&w, WORLD_NODES);
		struct kv_dvv before = KV_DVV_INIT;
		copy_set(&before, &w.replica[at]);
		struct kv_dot d;
		int err = put_ex(&w.nodes[at], &w.replica[at], NULL, "blind", w.clock++, 0, &d);
		if (err == 0) {
			assert_int_equal(w.replica[at].n, before.n + 1);
			for (size_t k = 0; k < before.n; k++)
				assert_non_null(kv_dvv_find(&w.replica[at], before.v[k].dot));
		} else {
			assert_int_equal(err, KV_ESIBLINGS);
			assert_same_set(&w.replica[at], &before);
		}
		kv_dvv_release(&before);
		world_release(&w);
	}
}

/* ---- the encoding ---- */

static void write_corpus(const struct kv_buf *enc, int index)
{
	const char *dir = getenv("KV_DVV_WRITE_CORPUS");
	if (!dir)
		return;
	char path[4096];
	snprintf(path, sizeof path, "%s/seed-%02d", dir, index);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(enc->p, 1, enc->n, f), enc->n);
	assert_int_equal(fclose(f), 0);
}

/* A decode that succeeds must give back exactly the bytes (canonical form). */
static void assert_decodes_canonically_or_fails(struct kv_slice in)
{
	struct kv_dvv s = KV_DVV_INIT;
	int err = kv_dvv_decode(in, &s);
	if (err == 0) {
		struct kv_buf again = KV_BUF_INIT;
		encode(&s, &again);
		assert_int_equal(again.n, in.n);
		assert_memory_equal(again.p, in.p, in.n);
		kv_buf_release(&again);
	} else {
		assert_true(err == KV_ECORRUPT || err == KV_EVERSION);
		assert_int_equal(s.n, 0);
	}
	kv_dvv_release(&s);
}

static void test_dvv__encoding_round_trips(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__encoding_round_trips");
	int corpus = 0;
	/* The empty set. */
	struct kv_dvv empty = KV_DVV_INIT, back = KV_DVV_INIT;
	struct kv_buf enc = KV_BUF_INIT;
	encode(&empty, &enc);
	assert_int_equal(enc.n, 4); /* format, no vector, no cloud, no versions */
	write_corpus(&enc, corpus++);
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&enc), &back), 0);
	assert_same_set(&back, &empty);
	for (int round = 0; round < 20; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 100);
		for (size_t k = 0; k < w.npool; k++) {
			encode(&w.pool[k], &enc);
			if (round < 2 && k < 6)
				write_corpus(&enc, corpus++);
			assert_int_equal(kv_dvv_decode(kv_buf_slice(&enc), &back), 0);
			assert_same_set(&back, &w.pool[k]);
			/* The decoded copy owns its bytes. */
			memset(enc.p, 0xee, enc.n);
			assert_true(kv_dvv_equal(&back, &w.pool[k]));
		}
		world_release(&w);
	}
	kv_buf_release(&enc);
	kv_dvv_release(&back);
}

static void test_dvv__every_truncation_and_bit_flip_is_safe(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__every_truncation_and_bit_flip_is_safe");
	struct kv_buf enc = KV_BUF_INIT;
	for (int round = 0; round < 6; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 40);
		const struct kv_dvv *s = &w.replica[pick(&w, WORLD_NODES)];
		encode(s, &enc);
		struct kv_dvv out = KV_DVV_INIT;
		/* Every proper prefix is rejected. */
		for (size_t n = 0; n < enc.n; n++) {
			uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees overreads */
			memcpy(copy, enc.p, n);
			assert_int_not_equal(kv_dvv_decode(kv_slice_make(copy, n), &out), 0);
			free(copy);
		}
		/* Every bit flip is rejected, or decodes to a valid canonical set. */
		for (size_t i = 0; i < enc.n; i++) {
			for (int bit = 0; bit < 8; bit++) {
				uint8_t *copy = malloc(enc.n);
				memcpy(copy, enc.p, enc.n);
				copy[i] ^= (uint8_t)(1u << bit);
				assert_decodes_canonically_or_fails(kv_slice_make(copy, enc.n));
				free(copy);
			}
		}
		/* Trailing bytes are rejected. */
		assert_int_equal(kv_buf_append_u8(&enc, 0), 0);
		assert_int_equal(kv_dvv_decode(kv_buf_slice(&enc), &out), KV_ECORRUPT);
		kv_dvv_release(&out);
		world_release(&w);
	}
	kv_buf_release(&enc);
}

/*
 * A listing decodes heads only: the same set with every body emptied, and
 * exactly the same inputs refused (a truncated body is still corrupt).
 */
static void test_dvv__decode_heads_is_decode_without_bodies(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_dvv__decode_heads_is_decode_without_bodies");
	struct kv_buf enc = KV_BUF_INIT;
	for (int round = 0; round < 6; round++) {
		struct world w;
		world_init(&w, seed + (uint64_t)round);
		world_run(&w, 60);
		for (size_t k = 0; k < w.npool; k++) {
			encode(&w.pool[k], &enc);
			struct kv_dvv full = KV_DVV_INIT, heads = KV_DVV_INIT;
			assert_int_equal(kv_dvv_decode(kv_buf_slice(&enc), &full), 0);
			assert_int_equal(kv_dvv_decode_heads(kv_buf_slice(&enc), &heads), 0);
			assert_int_equal(heads.n, full.n);
			assert_true(kv_ctx_equal(&heads.ctx, &full.ctx));
			for (size_t i = 0; i < full.n; i++) {
				assert_int_equal(kv_dot_cmp(heads.v[i].dot, full.v[i].dot), 0);
				assert_int_equal(heads.v[i].timestamp_ns, full.v[i].timestamp_ns);
				assert_int_equal(heads.v[i].tombstone, full.v[i].tombstone);
				assert_int_equal(heads.v[i].meta.n, full.v[i].meta.n);
				if (full.v[i].meta.n)
					assert_memory_equal(heads.v[i].meta.p, full.v[i].meta.p,
							    full.v[i].meta.n);
				assert_int_equal(heads.v[i].body.n, 0);
			}
			/* Every truncation is refused by both. */
			for (size_t n = 0; n < enc.n; n++) {
				uint8_t *copy = malloc(n ? n : 1);
				memcpy(copy, enc.p, n);
				struct kv_dvv out = KV_DVV_INIT;
				assert_int_not_equal(kv_dvv_decode_heads(kv_slice_make(copy, n), &out), 0);
				free(copy);
			}
			kv_dvv_release(&full);
			kv_dvv_release(&heads);
		}
		world_release(&w);
	}
	kv_buf_release(&enc);
}

/* Builds the encoding of a set field by field, to write malformed ones. */
static void raw_version(struct kv_buf *b, uint32_t node, uint64_t counter, uint8_t flags,
			const char *body)
{
	assert_int_equal(kv_buf_append_varint(b, node), 0);
	assert_int_equal(kv_buf_append_varint(b, 1), 0); /* epoch */
	assert_int_equal(kv_buf_append_varint(b, counter), 0);
	assert_int_equal(kv_buf_append_le64(b, 5), 0);
	uint8_t rid[KV_REQUEST_ID_LEN] = { 0 };
	assert_int_equal(kv_buf_append(b, rid, sizeof rid), 0);
	assert_int_equal(kv_buf_append_u8(b, flags), 0);
	assert_int_equal(kv_buf_append_lenbytes(b, kv_slice_str("")), 0);
	assert_int_equal(kv_buf_append_lenbytes(b, kv_slice_str(body)), 0);
}

/* Format 1, context {1:1 -> 5}, then @nver as given. */
static void raw_header(struct kv_buf *b, uint64_t nver)
{
	kv_buf_reset(b);
	const uint8_t head[] = { KV_DVV_FORMAT, 1, 1, 1, 5, 0 };
	assert_int_equal(kv_buf_append(b, head, sizeof head), 0);
	assert_int_equal(kv_buf_append_varint(b, nver), 0);
}

static void test_dvv__decode_rejects_malformed_sets(void **state)
{
	(void)state;
	struct kv_buf b = KV_BUF_INIT;
	struct kv_dvv s = KV_DVV_INIT;

	raw_header(&b, 2);
	raw_version(&b, 1, 2, 0, "x");
	raw_version(&b, 1, 4, 0, "y");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), 0);
	assert_int_equal(s.n, 2);

	/* Unknown format byte. */
	b.p[0] = 2;
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_EVERSION);
	assert_int_equal(s.n, 2); /* unchanged on failure */
	/* Unsorted and duplicate dots. */
	raw_header(&b, 2);
	raw_version(&b, 1, 4, 0, "y");
	raw_version(&b, 1, 2, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	raw_header(&b, 2);
	raw_version(&b, 1, 2, 0, "x");
	raw_version(&b, 1, 2, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* A version its context does not cover. */
	raw_header(&b, 1);
	raw_version(&b, 1, 6, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	raw_header(&b, 1);
	raw_version(&b, 2, 1, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* Counter 0. */
	raw_header(&b, 1);
	raw_version(&b, 1, 0, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* A tombstone with a body; unknown flags. */
	raw_header(&b, 1);
	raw_version(&b, 1, 1, 1, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	raw_header(&b, 1);
	raw_version(&b, 1, 1, 1, "");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), 0);
	assert_true(s.v[0].tombstone);
	raw_header(&b, 1);
	raw_version(&b, 1, 1, 2, "");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* A version count far above the bytes present, or above the bound. */
	raw_header(&b, 1000);
	raw_version(&b, 1, 1, 0, "x");
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	raw_header(&b, UINT64_MAX);
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* A body length past the end. */
	raw_header(&b, 1);
	raw_version(&b, 1, 1, 0, "xyz");
	b.p[b.n - 4] = 0x7f;
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* An overlong varint (0 written as 0x80 0x00) for the version count. */
	kv_buf_reset(&b);
	const uint8_t overlong[] = { KV_DVV_FORMAT, 0, 0, 0x80, 0x00 };
	assert_int_equal(kv_buf_append(&b, overlong, sizeof overlong), 0);
	assert_int_equal(kv_dvv_decode(kv_buf_slice(&b), &s), KV_ECORRUPT);
	/* Nothing at all. */
	assert_int_equal(kv_dvv_decode(kv_slice_make(NULL, 0), &s), KV_ECORRUPT);
	assert_int_equal(s.n, 1); /* still the tombstone set decoded above */
	kv_dvv_release(&s);
	kv_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dvv__put_without_context_destroys_nothing),
		cmocka_unit_test(test_dvv__put_with_read_context_replaces_what_was_read),
		cmocka_unit_test(test_dvv__discard_drops_exactly_what_context_covers),
		cmocka_unit_test(test_dvv__one_dot_context_discards_one_of_same_actor_siblings),
		cmocka_unit_test(test_dvv__join_keeps_concurrent_and_drops_covered),
		cmocka_unit_test(test_dvv__join_take_moves_versions),
		cmocka_unit_test(test_dvv__join_of_conflicting_content_is_still_commutative),
		cmocka_unit_test(test_dvv__join_refuses_more_than_max_versions),
		cmocka_unit_test(test_dvv__retried_request_id_returns_first_dot),
		cmocka_unit_test(test_dvv__sixty_fifth_sibling_fails_and_changes_nothing),
		cmocka_unit_test(test_dvv__value_over_limit_is_too_big),
		cmocka_unit_test(test_dvv__tombstone_with_body_is_invalid),
		cmocka_unit_test(test_dvv__put_waits_for_a_durable_lease),
		cmocka_unit_test(test_dvv__counter_behind_context_refuses_to_mint),
		cmocka_unit_test(test_dvv__old_context_never_covers_a_rewritten_key),
		cmocka_unit_test(test_dvv__display_orders_by_timestamp_then_dot),
		cmocka_unit_test(test_dvv__identical_versions_are_shown_once),
		cmocka_unit_test(test_dvv__tombstones_are_versions_hidden_from_display),
		cmocka_unit_test(test_dvv__hide_tombstones_keeps_the_latest_with_metadata_on_request),
		cmocka_unit_test(test_dvv__retire_drops_an_actor_without_versions),
		cmocka_unit_test(test_dvv__join_is_commutative_associative_idempotent),
		cmocka_unit_test(test_dvv__replicas_converge_in_any_join_order),
		cmocka_unit_test(test_dvv__concurrent_writers_make_exactly_n_siblings),
		cmocka_unit_test(test_dvv__read_context_replaces_exactly_what_was_read),
		cmocka_unit_test(test_dvv__put_without_context_keeps_every_version),
		cmocka_unit_test(test_dvv__encoding_round_trips),
		cmocka_unit_test(test_dvv__every_truncation_and_bit_flip_is_safe),
		cmocka_unit_test(test_dvv__decode_rejects_malformed_sets),
		cmocka_unit_test(test_dvv__decode_heads_is_decode_without_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
