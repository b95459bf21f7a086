/*
 * test_node_list.c - the node core's LIST (node/node.h, doc/node.md "List",
 * doc/protocol.md §5.7): children written through different nodes,
 * tombstones hidden (those with metadata read on request), paging across replicas that differ (hidden names fill
 * pages too), a stale replica that cannot bring back a deleted name, and
 * LIST read repair.
 *
 * The harness: node_fx.h (shared with test_node.c, test_node_ship.c and
 * test_node_read.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "node/node.h"
#include "proto/msg.h"
#include "ring/ring.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/siblings.h"

#include "node_fx.h"

static uint64_t h_list(struct harness *h, int i, const char *dir, const char *cursor,
		       uint32_t max)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_LIST);
	m.list.dir = kv_slice_str(dir);
	m.list.cursor = kv_slice_str(cursor);
	m.list.max_entries = max;
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	return req;
}

static bool entry_is(const struct kv_msg_list_entry *e, const char *name)
{
	return kv_slice_eq(e->name, kv_slice_str(name));
}

static void h_delete(struct harness *h, int i, const char *key, const struct kv_ctx *ctx,
		     uint8_t rid)
{
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_DELETE);
	del.put.key = kv_slice_str(key);
	del.put.request_id[0] = rid;
	assert_int_equal(kv_ctx_copy(&del.put.context, ctx), 0);
	uint64_t d = h_client(h, i, &del);
	kv_msg_release(&del);
	h_run(h);
	assert_int_equal(h_reply_for(h, d)->msg.type, KV_MSG_DELETE_REPLY);
}

static void test_node__list_shows_children_written_through_different_nodes(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 0, "/d/a", "A", NULL, 1);
	h_put(&h, 1, "/d/b", "B", NULL, 2);
	h_put(&h, 2, "/d/c", "C", NULL, 3);
	h_put(&h, 0, "/d/sub/x", "grandchild", NULL, 4);
	h_put(&h, 1, "/other/z", "elsewhere", NULL, 5);
	h_put(&h, 2, "/top", "root entry", NULL, 6);
	h_run(&h);
	for (int via = 0; via < 3; via++) {
		uint64_t l = h_list(&h, via, "/d", "", 100);
		h_run(&h);
		const struct h_reply *r = h_reply_for(&h, l);
		assert_non_null(r);
		assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
		const struct kv_msg_list_reply *lr = &r->msg.list_reply;
		assert_int_equal(lr->flags, 0);
		assert_int_equal(lr->n, 3);
		assert_true(entry_is(&lr->entries[0], "a"));
		assert_true(entry_is(&lr->entries[1], "b"));
		assert_true(entry_is(&lr->entries[2], "c"));
		for (size_t k = 0; k < 3; k++) {
			assert_int_equal(lr->entries[k].set.n, 1);
			assert_int_equal(lr->entries[k].set.v[0].body.n, 0); /* metadata only */
			assert_false(kv_ctx_is_empty(&lr->entries[k].set.ctx));
		}
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[via]), 0);
	}
	/* The root lists "/top" (and "/" is the root too). */
	uint64_t l = h_list(&h, 1, "/", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *root = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(root->n, 1);
	assert_true(entry_is(&root->entries[0], "top"));
	h_release(&h);
}

static void test_node__list_hides_tombstones(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 0, "/t/gone", "x", NULL, 1);
	h_put(&h, 0, "/t/kept", "y", NULL, 2);
	h_run(&h);
	uint64_t g = h_get(&h, 1, "/t/gone");
	h_run(&h);
	h_delete(&h, 2, "/t/gone", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	uint64_t l = h_list(&h, 1, "/t", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(lr->n, 1);
	assert_true(entry_is(&lr->entries[0], "kept"));
	h_release(&h);
}

/* A tombstone that carries @meta (a PUT with the TOMBSTONE flag), as the mount's rmdir writes. */
static void h_delete_meta(struct harness *h, int i, const char *key, const struct kv_ctx *ctx,
			  const char *meta, uint8_t rid)
{
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_PUT);
	del.put.flags = KV_MSG_PUT_F_TOMBSTONE;
	del.put.key = kv_slice_str(key);
	del.put.meta = kv_slice_str(meta);
	del.put.request_id[0] = rid;
	assert_int_equal(kv_ctx_copy(&del.put.context, ctx), 0);
	uint64_t d = h_client(h, i, &del);
	kv_msg_release(&del);
	h_run(h);
	assert_int_equal(h_reply_for(h, d)->msg.type, KV_MSG_PUT_REPLY);
}

static uint64_t h_read(struct harness *h, int i, uint16_t type, const char *key_or_dir,
		       uint8_t flags)
{
	struct kv_msg m;
	kv_msg_init(&m, type);
	if (type == KV_MSG_LIST) {
		m.list.flags = flags;
		m.list.dir = kv_slice_str(key_or_dir);
		m.list.max_entries = 10;
	} else {
		m.get.flags = flags;
		m.get.key = kv_slice_str(key_or_dir);
	}
	uint64_t req = h_client(h, i, &m);
	kv_msg_release(&m);
	h_run(h);
	return req;
}

/*
 * doc/protocol.md §5.1: with TOMBSTONES, GET and LIST answer a name without
 * live versions with its latest tombstone that carries metadata (a removed
 * directory, DESIGN §7 "Directories"); a plain tombstone stays hidden, and
 * without the flag so does every tombstone. A live version replaces it.
 */
static void test_node__tombstones_with_metadata_are_read_on_request(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	h_put(&h, 0, "/t/d", "", NULL, 1);
	h_put(&h, 0, "/t/f", "x", NULL, 2);
	h_put(&h, 0, "/t/kept", "y", NULL, 3);
	h_run(&h);
	uint64_t gd = h_get(&h, 1, "/t/d");
	uint64_t gf = h_get(&h, 1, "/t/f");
	h_run(&h);
	h_delete_meta(&h, 2, "/t/d", &h_reply_for(&h, gd)->msg.set_reply.set.ctx, "old-dir", 4);
	h_delete_meta(&h, 1, "/t/d", &h_reply_for(&h, gd)->msg.set_reply.set.ctx, "dir-meta", 5);
	h_delete(&h, 2, "/t/f", &h_reply_for(&h, gf)->msg.set_reply.set.ctx, 6);

	const struct kv_msg_list_reply *lr =
		&h_reply_for(&h, h_read(&h, 0, KV_MSG_LIST, "/t", 0))->msg.list_reply;
	assert_int_equal(lr->n, 1);
	assert_true(entry_is(&lr->entries[0], "kept"));
	lr = &h_reply_for(&h, h_read(&h, 0, KV_MSG_LIST, "/t", KV_MSG_LIST_F_TOMBSTONES))
		      ->msg.list_reply;
	assert_int_equal(lr->n, 2);
	assert_true(entry_is(&lr->entries[0], "d"));
	assert_true(entry_is(&lr->entries[1], "kept"));
	const struct kv_dvv *ds = &lr->entries[0].set;
	assert_int_equal(ds->n, 1); /* the latest of the two, the other hidden */
	assert_true(ds->v[0].tombstone);
	assert_true(kv_slice_eq(ds->v[0].meta, kv_slice_str("dir-meta")));
	assert_int_equal(kv_dvv_live_count(&lr->entries[1].set), 1);

	const struct kv_dvv *g =
		&h_reply_for(&h, h_read(&h, 0, KV_MSG_GET, "/t/d", 0))->msg.set_reply.set;
	assert_int_equal(g->n, 0);
	assert_false(kv_ctx_is_empty(&g->ctx));
	g = &h_reply_for(&h, h_read(&h, 0, KV_MSG_GET, "/t/d", KV_MSG_GET_F_TOMBSTONES))
		     ->msg.set_reply.set;
	assert_int_equal(g->n, 1);
	assert_true(g->v[0].tombstone);
	assert_true(kv_slice_eq(g->v[0].meta, kv_slice_str("dir-meta")));
	g = &h_reply_for(&h, h_read(&h, 0, KV_MSG_GET, "/t/f", KV_MSG_GET_F_TOMBSTONES))
		     ->msg.set_reply.set;
	assert_int_equal(g->n, 0);

	/* mkdir again, with the context read: the tombstones are gone for good. */
	struct kv_ctx ctx = KV_CTX_INIT;
	g = &h_reply_for(&h, h_read(&h, 0, KV_MSG_GET, "/t/d", KV_MSG_GET_F_TOMBSTONES))
		     ->msg.set_reply.set;
	assert_int_equal(kv_ctx_copy(&ctx, &g->ctx), 0);
	h_put(&h, 0, "/t/d", "again", &ctx, 7);
	h_run(&h);
	kv_ctx_release(&ctx);
	lr = &h_reply_for(&h, h_read(&h, 0, KV_MSG_LIST, "/t", KV_MSG_LIST_F_TOMBSTONES))
		      ->msg.list_reply;
	assert_int_equal(lr->n, 2);
	assert_int_equal(lr->entries[0].set.n, 1);
	assert_false(lr->entries[0].set.v[0].tombstone);
	h_release(&h);
}

/*
 * Replicas with different contents: pref[1] missed the odd names, pref[2]
 * the even ones; pref[0] is down while listing, so every page joins two
 * replicas that each fill their page with different names. Paging with a
 * small max must still return every name once, in order.
 */
static void test_node__list_paging_across_differing_replicas_skips_nothing(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/p/x", pref), 3);
	enum { NAMES = 10 };
	char key[16];
	for (int i = 0; i < NAMES; i++) {
		h.down[pref[1]] = i % 2 == 1;
		h.down[pref[2]] = i % 2 == 0;
		snprintf(key, sizeof key, "/p/n%02d", i);
		uint64_t p = h_put(&h, pref[0], key, "v", NULL, (uint8_t)(i + 1));
		h_run(&h);
		assert_int_equal(h_reply_for(&h, p)->msg.type, KV_MSG_PUT_REPLY);
	}
	h.down[pref[1]] = h.down[pref[2]] = false;
	h.down[pref[0]] = true;
	for (uint32_t max = 1; max <= 4; max++) {
		char cursor[64] = "";
		int seen = 0;
		for (int page = 0; page < 40; page++) {
			uint64_t l = h_list(&h, pref[1 + page % 2], "/p", cursor, max);
			h_run(&h);
			const struct h_reply *r = h_reply_for(&h, l);
			assert_non_null(r);
			assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
			const struct kv_msg_list_reply *lr = &r->msg.list_reply;
			assert_true(lr->n <= max);
			for (size_t k = 0; k < lr->n; k++) {
				char want[16];
				snprintf(want, sizeof want, "n%02d", seen++);
				assert_true(entry_is(&lr->entries[k], want));
			}
			if (!(lr->flags & KV_MSG_LIST_F_MORE))
				break;
			assert_true(lr->next_cursor.n < sizeof cursor);
			memcpy(cursor, lr->next_cursor.p, lr->next_cursor.n);
			cursor[lr->next_cursor.n] = '\0';
		}
		assert_int_equal(seen, NAMES);
	}
	h_release(&h);
}

static void test_node__list_stale_replica_cannot_bring_back_a_deleted_name(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/s/x", pref), 3);
	h_put(&h, pref[0], "/s/deleted", "old", NULL, 1);
	h_put(&h, pref[0], "/s/live", "v", NULL, 2);
	h_run(&h);
	uint64_t g = h_get(&h, pref[0], "/s/deleted");
	h_run(&h);
	int stale = pref[2];
	h.down[stale] = true; /* misses the delete */
	h_delete(&h, pref[0], "/s/deleted", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	h_advance(&h, h.now + 1000 * MS);
	h.down[stale] = false;
	struct kv_dvv s = KV_DVV_INIT;
	assert_true(h_stored(&h, stale, "/s/deleted", &s));
	assert_false(s.v[0].tombstone); /* still the old live version there */
	kv_dvv_release(&s);
	/* Listing through the stale replica, joined with one that saw the delete. */
	h.down[pref[0]] = true;
	uint64_t l = h_list(&h, stale, "/s", "", 10);
	h_run(&h);
	const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
	assert_int_equal(lr->n, 1);
	assert_true(entry_is(&lr->entries[0], "live"));
	h_release(&h);
}

/* Puts @key through @i and deletes it again with what a GET saw. */
static void h_put_delete(struct harness *h, int i, const char *key, uint8_t rid)
{
	h_put(h, i, key, "doomed", NULL, rid);
	h_run(h);
	uint64_t g = h_get(h, i, key);
	h_run(h);
	h_delete(h, i, key, &h_reply_for(h, g)->msg.set_reply.set.ctx, (uint8_t)(rid + 100));
}

/*
 * Hidden names fill pages too. pref[1] holds a(T) b(T) c, pref[2] holds
 * a(T) d; with max 2 both pages are full, and pref[1]'s ends at b. Showing
 * d from the first page (it is the only live name there) and no MORE would
 * skip c: the page must stop at b.
 */
static void test_node__list_tombstone_filled_page_does_not_skip_names(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/m/x", pref), 3);
	h_put_delete(&h, pref[0], "/m/a", 1);
	h.down[pref[2]] = true;
	h_put_delete(&h, pref[0], "/m/b", 2);
	h_put(&h, pref[0], "/m/c", "c", NULL, 3);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[2]] = false;
	h.down[pref[1]] = true;
	h_put(&h, pref[0], "/m/d", "d", NULL, 4);
	h_run(&h);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[1]] = false;
	h.down[pref[0]] = true;

	const char *want[] = { "c", "d" };
	size_t seen = 0;
	char cursor[64] = "";
	for (int page = 0; page < 10; page++) {
		uint64_t l = h_list(&h, pref[1], "/m", cursor, 2);
		h_run(&h);
		const struct kv_msg_list_reply *lr = &h_reply_for(&h, l)->msg.list_reply;
		for (size_t k = 0; k < lr->n; k++) {
			assert_true(seen < 2);
			assert_true(entry_is(&lr->entries[k], want[seen++]));
		}
		if (!(lr->flags & KV_MSG_LIST_F_MORE))
			break;
		memcpy(cursor, lr->next_cursor.p, lr->next_cursor.n);
		cursor[lr->next_cursor.n] = '\0';
	}
	assert_int_equal(seen, 2);
	h_release(&h);
}

/* ---- LIST read repair ----------------------------------------------------- */

/*
 * LIST read repair: a replica that missed a put and one that missed a
 * delete are repaired by a listing that saw the difference — with the full
 * version, body included (pages carry no bodies, so the repair reads the
 * key in full), and with the tombstone.
 */
static void test_node__list_repairs_replicas_whose_page_was_behind(void **state)
{
	(void)state;
	struct harness h;
	h_init(&h, 3, 3, 2, 2);
	int pref[KV_RING_MAX_REPLICAS];
	assert_int_equal(h_preflist(&h, "/r/x", pref), 3);
	h_put(&h, pref[0], "/r/gone", "old", NULL, 1);
	h_run(&h);
	uint64_t g = h_get(&h, pref[0], "/r/gone");
	h_run(&h);
	h.down[pref[2]] = true; /* misses a put and a delete */
	h_put(&h, pref[0], "/r/new", "fresh body", NULL, 2);
	h_run(&h);
	h_delete(&h, pref[0], "/r/gone", &h_reply_for(&h, g)->msg.set_reply.set.ctx, 3);
	h_advance(&h, h.now + 1000 * MS);
	h.down[pref[2]] = false;
	struct kv_dvv s = KV_DVV_INIT;
	assert_false(h_stored(&h, pref[2], "/r/new", &s));

	size_t writes_before = h.store[pref[2]].writes;
	uint64_t l = h_list_r(&h, pref[1], "/r", 3);
	h_run(&h);
	const struct h_reply *r = h_reply_for(&h, l);
	assert_int_equal(r->msg.type, KV_MSG_LIST_REPLY);
	assert_int_equal(r->msg.list_reply.n, 1);
	assert_true(entry_is(&r->msg.list_reply.entries[0], "new"));
	/* The stale replica now holds the put, body and all, and the tombstone. */
	assert_int_equal(h.store[pref[2]].writes, writes_before + 2);
	assert_true(h_stored(&h, pref[2], "/r/new", &s));
	assert_int_equal(s.n, 1);
	assert_true(set_has_body(&s, "fresh body"));
	kv_dvv_release(&s);
	assert_true(h_stored(&h, pref[2], "/r/gone", &s));
	assert_int_equal(s.n, 1);
	assert_true(s.v[0].tombstone);
	kv_dvv_release(&s);
	/* Replicas now agree: a second listing repairs nothing. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_node_ops_in_flight(&h.nodes[i]), 0);
	size_t total = 0;
	for (int i = 0; i < 3; i++)
		total += h.store[i].writes;
	l = h_list_r(&h, pref[1], "/r", 3);
	h_run(&h);
	assert_int_equal(h_reply_for(&h, l)->msg.type, KV_MSG_LIST_REPLY);
	size_t after = 0;
	for (int i = 0; i < 3; i++)
		after += h.store[i].writes;
	assert_int_equal(after, total);
	h_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node__list_shows_children_written_through_different_nodes),
		cmocka_unit_test(test_node__list_hides_tombstones),
		cmocka_unit_test(test_node__tombstones_with_metadata_are_read_on_request),
		cmocka_unit_test(test_node__list_paging_across_differing_replicas_skips_nothing),
		cmocka_unit_test(test_node__list_stale_replica_cannot_bring_back_a_deleted_name),
		cmocka_unit_test(test_node__list_tombstone_filled_page_does_not_skip_names),
		cmocka_unit_test(test_node__list_repairs_replicas_whose_page_was_behind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
