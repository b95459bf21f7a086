/*
 * test_ring.c - the token ring (src/ring/ring.h): replica rules, tokens,
 * preference lists against a naive walk, racks and DCs, token ranges, and
 * the figures of doc/placement.md (balance, keys moved on join, hot
 * directories, speed), which the tests print to stdout and bound loosely.
 * Randomized tests print their seed; KV_SEED=... replays them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ring/keys.h"
#include "ring/ring.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"
#include "util/time.h"

#define MAX_TEST_NODES 128
#define KEYS 100000

/* Members "n1".."n<count>" with the given tags; ids live in a static table. */
struct cluster {
	char ids[MAX_TEST_NODES][16];
	struct kv_ring_member members[MAX_TEST_NODES];
	size_t n;
};

static void cluster_add(struct cluster *c, const char *dc, const char *rack, double weight)
{
	assert_true(c->n < MAX_TEST_NODES);
	snprintf(c->ids[c->n], sizeof c->ids[c->n], "n%zu", c->n + 1);
	struct kv_ring_member *m = &c->members[c->n];
	memset(m, 0, sizeof *m);
	m->id = c->ids[c->n];
	m->dc = dc;
	m->rack = rack;
	m->weight = weight;
	c->n++;
}

static void cluster_plain(struct cluster *c, size_t n)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < n; i++)
		cluster_add(c, NULL, NULL, 1.0);
}

static struct kv_ring *ring_of(const struct cluster *c, uint32_t n_replicas, uint32_t tpw)
{
	struct kv_ring_config cfg;
	kv_ring_config_init(&cfg, n_replicas);
	cfg.tokens_per_weight = tpw;
	struct kv_ring *ring = NULL;
	assert_int_equal(kv_ring_new(&ring, &cfg, c->members, c->n), 0);
	assert_non_null(ring);
	return ring;
}

static struct kv_ring *ring_with_rule(const struct cluster *c, const char *rule)
{
	struct kv_ring_config cfg;
	kv_ring_config_init(&cfg, 0);
	assert_int_equal(kv_ring_replicas_parse(&cfg.replicas, rule), 0);
	struct kv_ring *ring = NULL;
	assert_int_equal(kv_ring_new(&ring, &cfg, c->members, c->n), 0);
	return ring;
}

static double mean_of(const double *v, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s / (double)n;
}

static double max_of(const double *v, size_t n)
{
	double m = v[0];
	for (size_t i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static bool holds(const uint32_t *v, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* ---- rules and construction ------------------------------------------ */

static void test_ring__replica_rules_parse(void **state)
{
	(void)state;
	struct kv_ring_replicas r;
	assert_int_equal(kv_ring_replicas_parse(&r, "3"), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.n_dcs, 0);
	assert_int_equal(kv_ring_replicas_parse(&r, "dc1:3,dc2:2"), 0);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.n_dcs, 2);
	assert_string_equal(r.dcs[0].dc, "dc1");
	assert_int_equal(r.dcs[0].count, 3);
	assert_string_equal(r.dcs[1].dc, "dc2");
	assert_int_equal(r.dcs[1].count, 2);
	assert_int_equal(kv_ring_replicas_parse(&r, " eu-west.1 : 2 , us_east:1,dr:0 "), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.n_dcs, 3);
	char buf[64];
	assert_int_equal(kv_ring_replicas_format(&r, buf, sizeof buf), 26);
	assert_string_equal(buf, "eu-west.1:2,us_east:1,dr:0");
	assert_int_equal(kv_ring_replicas_format(&r, buf, 10), KV_ETOOBIG);

	static const char *bad[] = {
		"", "0", "17", "-1", "3x", "3,", "dc1", "dc1:", "dc1:x", ":3", "dc1:3,",
		"dc1:3,dc1:2", "dc1:3;dc2:2", "dc 1:3", "dc1:9999999999", "dc1:0",
		"dc1:9,dc2:9", "dc/1:3", "dc1:3 dc2:2",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&r, 0x55, sizeof r);
		assert_int_equal(kv_ring_replicas_parse(&r, bad[i]), KV_EINVAL);
		assert_int_equal(r.n, 0); /* zeroed on failure */
	}
}

static void test_ring__rejects_bad_members_and_rules(void **state)
{
	(void)state;
	struct kv_ring_config cfg;
	kv_ring_config_init(&cfg, 3);
	struct kv_ring *ring = (struct kv_ring *)&cfg; /* must be reset to NULL */
	struct kv_ring_member m[2] = { { .id = "a" }, { .id = "a" } };
	assert_int_equal(kv_ring_new(&ring, &cfg, m, 2), KV_EINVAL); /* duplicate */
	assert_null(ring);

	static const struct kv_ring_member bad[] = {
		{ .id = NULL },
		{ .id = "" },
		{ .id = "has space" },
		{ .id = "colon:1" },
		{ .id = "x", .weight = -1 },
		{ .id = "x", .weight = NAN },
		{ .id = "x", .weight = INFINITY },
		{ .id = "x", .dc = "d c" },
		{ .id = "x", .rack = "r,1" },
		{ .id = "0123456789012345678901234567890123456789012345678901234567890123456789" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ring = (struct kv_ring *)&cfg;
		assert_int_equal(kv_ring_new(&ring, &cfg, &bad[i], 1), KV_EINVAL);
		assert_null(ring);
	}
	struct kv_ring_member heavy = { .id = "x", .weight = 1e6 };
	assert_int_equal(kv_ring_new(&ring, &cfg, &heavy, 1), KV_ETOOBIG);
	assert_null(ring);

	/* Rules: N of 0 or above the limit, per-DC counts that do not sum to N. */
	struct kv_ring_member ok = { .id = "x" };
	kv_ring_config_init(&cfg, 0);
	assert_int_equal(kv_ring_new(&ring, &cfg, &ok, 1), KV_EINVAL);
	kv_ring_config_init(&cfg, KV_RING_MAX_REPLICAS + 1);
	assert_int_equal(kv_ring_new(&ring, &cfg, &ok, 1), KV_EINVAL);
	assert_int_equal(kv_ring_replicas_parse(&cfg.replicas, "dc1:3,dc2:2"), 0);
	cfg.replicas.n = 4;
	assert_int_equal(kv_ring_new(&ring, &cfg, &ok, 1), KV_EINVAL);
	assert_null(ring);

	/* An empty ring is fine and places nothing. */
	kv_ring_config_init(&cfg, 3);
	assert_int_equal(kv_ring_new(&ring, &cfg, NULL, 0), 0);
	uint32_t list[4];
	size_t n_pref = 9;
	assert_int_equal(kv_ring_preflist(ring, 42, list, 4), 0);
	assert_int_equal(kv_ring_preflist_ext(ring, 42, list, 4, &n_pref), 0);
	assert_int_equal(n_pref, 0);
	struct kv_ring_range *ranges = (struct kv_ring_range *)&cfg;
	size_t n_ranges = 9;
	assert_int_equal(kv_ring_ranges(ring, KV_RING_ALL_NODES, false, &ranges, &n_ranges), 0);
	assert_null(ranges);
	assert_int_equal(n_ranges, 0);
	assert_int_equal(kv_ring_ranges(ring, 0, false, &ranges, &n_ranges), KV_EINVAL);
	assert_int_equal(kv_ring_find(ring, "x"), KV_ENOTFOUND);
	kv_ring_free(ring);
	kv_ring_free(NULL);
}

static void test_ring__tokens_follow_id_and_weight(void **state)
{
	(void)state;
	struct kv_ring_member m[] = {
		{ .id = "light", .weight = 0.001 },       /* rounds to 0: gets 1 */
		{ .id = "heavy", .weight = 2.0 },
		{ .id = "plain" },
		{ .id = "fixed", .weight = 3.0, .tokens = 5 },
		{ .id = "half", .weight = 0.5, .dc = "", .rack = "" },
	};
	struct kv_ring_config cfg;
	kv_ring_config_init(&cfg, 2);
	struct kv_ring *ring;
	assert_int_equal(kv_ring_new(&ring, &cfg, m, 5), 0);
	assert_int_equal(kv_ring_node_count(ring), 5);
	/* Nodes are indexed in id order. */
	static const char *order[] = { "fixed", "half", "heavy", "light", "plain" };
	static const uint32_t tokens[] = { 5, 32, 128, 1, 64 };
	for (uint32_t i = 0; i < 5; i++) {
		const struct kv_ring_node *node = kv_ring_node(ring, i);
		assert_string_equal(node->id, order[i]);
		assert_int_equal(node->n_tokens, tokens[i]);
		assert_int_equal(kv_ring_find(ring, order[i]), (int)i);
		assert_string_equal(node->dc, "");
		assert_true(node->holds_data);
	}
	assert_null(kv_ring_node(ring, 5));
	assert_int_equal(kv_ring_token_count(ring), 5 + 32 + 128 + 1 + 64);
	assert_true(kv_ring_node(ring, 2)->weight == 2.0);
	assert_true(kv_ring_node(ring, 4)->weight == 1.0);

	/* Tokens ascend, and each is kv_ring_token_of(owner, some index). */
	uint64_t prev = 0;
	uint32_t seen[5] = { 0 };
	for (size_t i = 0; i < kv_ring_token_count(ring); i++) {
		uint64_t t;
		uint32_t node;
		kv_ring_token_at(ring, i, &t, &node);
		assert_true(t >= prev);
		prev = t;
		seen[node]++;
		bool found = false;
		for (uint32_t k = 0; k < kv_ring_node(ring, node)->n_tokens && !found; k++)
			found = kv_ring_token_of(kv_ring_node(ring, node)->id, k) == t;
		assert_true(found);
	}
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(seen[i], tokens[i]);
	kv_ring_free(ring);

	/* Tokens are part of the cluster's contract: every node and every
	 * version must compute the same ones. Pin them (doc/placement.md). */
	assert_true(kv_ring_token_of("n1", 0) == 0x634f03ab41356d3bULL);
	assert_true(kv_ring_token_of("n1", 1) == 0x31983cf7b38199eaULL);
	assert_true(kv_ring_token_of("n1", 0) != kv_ring_token_of("n1", 1));
	assert_true(kv_ring_token_of("n1", 0) != kv_ring_token_of("n2", 0));

	/* tokens_per_weight scales every node. */
	kv_ring_config_init(&cfg, 2);
	cfg.tokens_per_weight = 100;
	assert_int_equal(kv_ring_new(&ring, &cfg, m, 5), 0);
	assert_int_equal(kv_ring_node(ring, 2)->n_tokens, 200);
	assert_int_equal(kv_ring_node(ring, 0)->n_tokens, 5);
	kv_ring_free(ring);
}

static void test_ring__member_order_does_not_matter(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__member_order_does_not_matter"));
	struct cluster a, b;
	memset(&a, 0, sizeof a);
	static const char *racks[] = { "r1", "r2", "r3" };
	for (int i = 0; i < 20; i++)
		cluster_add(&a, i % 2 ? "dc1" : "dc2", racks[i % 3], 1.0 + (i % 3));
	b = a;
	for (size_t i = b.n - 1; i > 0; i--) { /* shuffle */
		size_t j = (size_t)kv_rng_below(&rng, i + 1);
		struct kv_ring_member t = b.members[i];
		b.members[i] = b.members[j];
		b.members[j] = t;
	}
	struct kv_ring *ra = ring_with_rule(&a, "dc1:2,dc2:2");
	struct kv_ring *rb = ring_with_rule(&b, "dc1:2,dc2:2");
	assert_int_equal(kv_ring_token_count(ra), kv_ring_token_count(rb));
	for (size_t i = 0; i < kv_ring_token_count(ra); i++) {
		uint64_t ta, tb;
		uint32_t na, nb;
		kv_ring_token_at(ra, i, &ta, &na);
		kv_ring_token_at(rb, i, &tb, &nb);
		assert_true(ta == tb);
		assert_int_equal(na, nb);
	}
	for (int i = 0; i < 1000; i++) {
		uint64_t pos = kv_rng_next(&rng);
		uint32_t la[8], lb[8];
		int n = kv_ring_preflist(ra, pos, la, 8);
		assert_int_equal(n, 4);
		assert_int_equal(kv_ring_preflist(rb, pos, lb, 8), n);
		assert_memory_equal(la, lb, (size_t)n * sizeof la[0]);
	}
	kv_ring_free(ra);
	kv_ring_free(rb);
}

/* ---- preference lists --------------------------------------------------- */

/* The rule written the obvious way: scan every token from the first >= pos. */
static size_t naive_walk(const struct kv_ring *ring, uint64_t pos, uint32_t *out, size_t want)
{
	size_t t_count = kv_ring_token_count(ring);
	size_t start = 0;
	uint64_t tok;
	uint32_t node;
	for (start = 0; start < t_count; start++) {
		kv_ring_token_at(ring, start, &tok, &node);
		if (tok >= pos)
			break;
	}
	size_t n = 0;
	for (size_t step = 0; step < t_count && n < want; step++) {
		kv_ring_token_at(ring, (start + step) % t_count, &tok, &node);
		if (!holds(out, n, node))
			out[n++] = node;
	}
	return n;
}

static void test_ring__preflist_matches_naive_walk(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__preflist_matches_naive_walk"));
	for (int round = 0; round < 60; round++) {
		struct cluster c;
		memset(&c, 0, sizeof c);
		size_t n_nodes = 1 + (size_t)kv_rng_below(&rng, 12);
		for (size_t i = 0; i < n_nodes; i++)
			cluster_add(&c, NULL, NULL, 0.05 + 3 * kv_rng_double(&rng));
		uint32_t n_rep = 1 + (uint32_t)kv_rng_below(&rng, 5);
		struct kv_ring *ring = ring_of(&c, n_rep, 1 + (uint32_t)kv_rng_below(&rng, 64));
		size_t t_count = kv_ring_token_count(ring);
		for (int i = 0; i < 300; i++) {
			uint64_t pos;
			uint32_t owner;
			switch (i % 5) {
			case 0: /* exactly on a token, or just past it */
			case 1:
				kv_ring_token_at(ring, (size_t)kv_rng_below(&rng, t_count), &pos,
						 &owner);
				pos += (uint64_t)(i % 5);
				break;
			case 2:
				pos = i % 2 ? 0 : UINT64_MAX;
				break;
			default:
				pos = kv_rng_next(&rng);
			}
			uint32_t want[MAX_TEST_NODES], got[MAX_TEST_NODES];
			size_t wn = naive_walk(ring, pos, want, n_rep);
			assert_int_equal(wn, n_rep < n_nodes ? n_rep : n_nodes);
			int gn = kv_ring_preflist(ring, pos, got, MAX_TEST_NODES);
			assert_int_equal(gn, (int)wn);
			assert_memory_equal(got, want, wn * sizeof got[0]);
			/* A smaller cap gives a prefix. */
			assert_int_equal(kv_ring_preflist(ring, pos, got, 1), 1);
			assert_int_equal(got[0], want[0]);
			/* Extended: the rest of the distinct walk. */
			size_t all = naive_walk(ring, pos, want, MAX_TEST_NODES);
			assert_int_equal(all, n_nodes);
			size_t n_pref = 0;
			int en = kv_ring_preflist_ext(ring, pos, got, MAX_TEST_NODES, &n_pref);
			assert_int_equal(en, (int)n_nodes);
			assert_int_equal(n_pref, wn);
			assert_memory_equal(got, want, all * sizeof got[0]);
			for (size_t k = 0; k < all; k++)
				assert_int_equal(kv_ring_is_replica(ring, pos, want[k]), k < wn);
		}
		kv_ring_free(ring);
	}
}

/* Tags that give rack spreading nothing to do leave the plain walk. */
static void test_ring__trivial_racks_change_nothing(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__trivial_racks_change_nothing"));
	for (int mode = 0; mode < 3; mode++) {
		struct cluster c;
		cluster_plain(&c, 9);
		for (size_t i = 0; i < c.n; i++) {
			c.members[i].dc = "dc1";
			/* one shared rack; each node its own rack; untagged */
			c.members[i].rack = mode == 0 ? "r" : mode == 1 ? c.ids[i] : NULL;
		}
		struct kv_ring *ring = ring_of(&c, 3, KV_RING_DEFAULT_TOKENS);
		struct kv_ring *by_dc = ring_with_rule(&c, "dc1:3");
		for (int i = 0; i < 2000; i++) {
			uint64_t pos = kv_rng_next(&rng);
			uint32_t want[3], got[3], got_dc[3];
			size_t n = naive_walk(ring, pos, want, 3);
			assert_int_equal(kv_ring_preflist(ring, pos, got, 3), (int)n);
			assert_int_equal(kv_ring_preflist(by_dc, pos, got_dc, 3), (int)n);
			assert_memory_equal(got, want, n * sizeof want[0]);
			assert_memory_equal(got_dc, want, n * sizeof want[0]);
		}
		kv_ring_free(ring);
		kv_ring_free(by_dc);
	}
}

static void test_ring__preflist_key_uses_placement(void **state)
{
	(void)state;
	struct cluster c;
	cluster_plain(&c, 10);
	struct kv_ring *ring = ring_of(&c, 3, 64);
	uint32_t a[3], b[3];
	/* Entries of one directory share a replica set (DESIGN §2). */
	int n = kv_ring_preflist_key(ring, kv_slice_str("/photos/cat.jpg"), a, 3);
	assert_int_equal(n, 3);
	assert_int_equal(kv_ring_preflist_key(ring, kv_slice_str("/photos/dog.jpg"), b, 3), 3);
	assert_memory_equal(a, b, sizeof a);
	assert_int_equal(kv_ring_preflist(ring, kv_key_position(kv_slice_str("/photos/x")), b, 3),
			 3);
	assert_memory_equal(a, b, sizeof a);
	kv_ring_free(ring);
}

/* ---- token ranges and ownership ------------------------------------------ */

static void check_ranges(const struct kv_ring *ring, struct kv_rng *rng)
{
	uint32_t n_nodes = kv_ring_node_count(ring);
	double *replica = calloc(n_nodes, sizeof *replica);
	double *primary = calloc(n_nodes, sizeof *primary);
	assert_int_equal(kv_ring_ownership(ring, primary, replica), 0);
	assert_true(fabs(mean_of(primary, n_nodes) * n_nodes - 1.0) < 1e-9);

	/* The ranges of the whole ring tile the circle, in order, each with the
	 * preference list of every position inside it. */
	struct kv_ring_range *all;
	size_t n_all;
	assert_int_equal(kv_ring_ranges(ring, KV_RING_ALL_NODES, false, &all, &n_all), 0);
	assert_true(n_all >= 1);
	for (size_t i = 0; i + 1 < n_all; i++)
		assert_true(all[i].end == all[i + 1].start);
	if (n_all > 1)
		assert_true(all[n_all - 1].end == all[0].start);
	for (int i = 0; i < 2000; i++) {
		uint64_t pos = kv_rng_next(rng);
		if (i < (int)n_all * 2) /* every boundary and just past it */
			pos = all[i / 2].end + (uint64_t)(i % 2);
		uint32_t list[KV_RING_MAX_REPLICAS];
		int n = kv_ring_preflist(ring, pos, list, KV_RING_MAX_REPLICAS);
		size_t hits = 0;
		for (size_t r = 0; r < n_all; r++) {
			if (!kv_ring_range_contains(&all[r], pos))
				continue;
			hits++;
			assert_int_equal(all[r].n_replicas, (uint32_t)n);
			assert_memory_equal(all[r].replicas, list, (size_t)n * sizeof list[0]);
		}
		assert_int_equal(hits, 1);
	}

	/* Per node: its ranges hold exactly the positions it replicates, and
	 * their lengths add up to its ownership. */
	for (uint32_t node = 0; node < n_nodes; node++) {
		for (int primary_only = 0; primary_only < 2; primary_only++) {
			struct kv_ring_range *mine;
			size_t n_mine;
			assert_int_equal(kv_ring_ranges(ring, node, primary_only, &mine, &n_mine),
					 0);
			double covered = 0;
			for (size_t r = 0; r < n_mine; r++) {
				covered += mine[r].start == mine[r].end
						   ? 1.0
						   : (double)(mine[r].end - mine[r].start) / 0x1p64;
				assert_true(primary_only ? mine[r].replicas[0] == node
							 : holds(mine[r].replicas,
								 mine[r].n_replicas, node));
			}
			double want = primary_only ? primary[node] : replica[node];
			assert_true(fabs(covered - want) < 1e-9);
			for (int i = 0; i < 200; i++) {
				uint64_t pos = kv_rng_next(rng);
				uint32_t list[KV_RING_MAX_REPLICAS];
				int n = kv_ring_preflist(ring, pos, list, KV_RING_MAX_REPLICAS);
				bool in = false;
				for (size_t r = 0; r < n_mine; r++)
					in |= kv_ring_range_contains(&mine[r], pos);
				bool is = primary_only ? n > 0 && list[0] == node
						       : holds(list, (size_t)n, node);
				assert_int_equal(in, is);
			}
			free(mine);
		}
	}
	free(all);
	free(primary);
	free(replica);
}

static void test_ring__ranges_agree_with_preflists(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__ranges_agree_with_preflists"));
	struct cluster c;
	cluster_plain(&c, 7);
	struct kv_ring *ring = ring_of(&c, 3, 16);
	check_ranges(ring, &rng);
	kv_ring_free(ring);

	/* With racks and DCs too. */
	memset(&c, 0, sizeof c);
	static const char *racks[] = { "a", "b", "c" };
	for (int i = 0; i < 12; i++)
		cluster_add(&c, i < 8 ? "dc1" : "dc2", racks[i % 3], 1.0);
	ring = ring_with_rule(&c, "dc1:2,dc2:1");
	check_ranges(ring, &rng);
	kv_ring_free(ring);
}

static void test_ring__small_rings_own_the_whole_circle(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__small_rings_own_the_whole_circle"));
	struct kv_ring_member one = { .id = "solo", .tokens = 1 };
	struct kv_ring_config cfg;
	kv_ring_config_init(&cfg, 3);
	struct kv_ring *ring;
	assert_int_equal(kv_ring_new(&ring, &cfg, &one, 1), 0);
	struct kv_ring_range *ranges;
	size_t n;
	assert_int_equal(kv_ring_ranges(ring, 0, false, &ranges, &n), 0);
	assert_int_equal(n, 1);
	assert_true(ranges[0].start == ranges[0].end); /* the whole circle */
	assert_true(kv_ring_range_contains(&ranges[0], 0));
	assert_true(kv_ring_range_contains(&ranges[0], ranges[0].end));
	free(ranges);
	double primary, replica;
	assert_int_equal(kv_ring_ownership(ring, &primary, &replica), 0);
	assert_true(primary == 1.0 && replica == 1.0);
	check_ranges(ring, &rng);
	kv_ring_free(ring);

	/* One node with many tokens: every token range has the same list, so
	 * they all merge, across the wrap point, into the whole circle. */
	one.tokens = 64;
	assert_int_equal(kv_ring_new(&ring, &cfg, &one, 1), 0);
	assert_int_equal(kv_ring_ranges(ring, KV_RING_ALL_NODES, false, &ranges, &n), 0);
	assert_int_equal(n, 1);
	assert_true(ranges[0].start == ranges[0].end);
	free(ranges);
	kv_ring_free(ring);

	/* Two nodes, N=2: one range, the whole circle, whose list changes order. */
	struct cluster c;
	cluster_plain(&c, 2);
	ring = ring_of(&c, 2, 8);
	assert_int_equal(kv_ring_ranges(ring, 0, false, &ranges, &n), 0);
	assert_true(n >= 2); /* split by which node leads */
	free(ranges);
	double own[2];
	assert_int_equal(kv_ring_ownership(ring, NULL, own), 0);
	assert_true(fabs(own[0] - 1.0) < 1e-9 && fabs(own[1] - 1.0) < 1e-9);
	check_ranges(ring, &rng);
	kv_ring_free(ring);
}

/* ---- racks and data centres ------------------------------------------------ */

struct topo_check {
	uint32_t dc1, dc2, other;
	uint32_t racks_dc1, racks_dc2;
};

static void count_topology(const struct kv_ring *ring, const uint32_t *list, size_t n,
			   struct topo_check *out)
{
	memset(out, 0, sizeof *out);
	uint32_t seen_racks[KV_RING_MAX_REPLICAS];
	size_t n_seen = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kv_ring_node *node = kv_ring_node(ring, list[i]);
		bool new_rack = !holds(seen_racks, n_seen, node->rack_index);
		if (new_rack)
			seen_racks[n_seen++] = node->rack_index;
		if (strcmp(node->dc, "dc1") == 0) {
			out->dc1++;
			out->racks_dc1 += new_rack;
		} else if (strcmp(node->dc, "dc2") == 0) {
			out->dc2++;
			out->racks_dc2 += new_rack;
		} else {
			out->other++;
		}
		for (size_t k = 0; k < i; k++)
			assert_int_not_equal(list[k], list[i]); /* distinct nodes */
	}
}

/* Checks every token range of @ring; returns the max/mean replica load. */
static double check_every_range(const struct kv_ring *ring, const struct topo_check *want)
{
	struct kv_ring_range *all;
	size_t n;
	assert_int_equal(kv_ring_ranges(ring, KV_RING_ALL_NODES, false, &all, &n), 0);
	for (size_t r = 0; r < n; r++) {
		struct topo_check got;
		count_topology(ring, all[r].replicas, all[r].n_replicas, &got);
		/* Racks never move the coordinator: it owns the range's token
		 * when its DC takes replicas. */
		uint64_t tok;
		uint32_t owner;
		kv_ring_token_at(ring, kv_ring_token_index(ring, all[r].end), &tok, &owner);
		if (kv_ring_node(ring, owner)->holds_data)
			assert_int_equal(all[r].replicas[0], owner);
		assert_memory_equal(&got, want, sizeof got);
	}
	free(all);
	/* Load over the nodes that hold data. */
	uint32_t n_nodes = kv_ring_node_count(ring);
	double *replica = calloc(n_nodes, sizeof *replica);
	kv_ring_ownership(ring, NULL, replica);
	uint32_t n_data = 0;
	for (uint32_t i = 0; i < n_nodes; i++)
		if (kv_ring_node(ring, i)->holds_data)
			replica[n_data++] = replica[i];
	double ratio = max_of(replica, n_data) / mean_of(replica, n_data);
	free(replica);
	return ratio;
}

static void test_ring__racks_spread_replicas(void **state)
{
	(void)state;
	struct cluster c;
	static const struct {
		const char *label;
		uint32_t per_rack[4];
		uint32_t n_racks;
		uint32_t want_racks;
	} cases[] = {
		{ "3 racks x 3 nodes", { 3, 3, 3 }, 3, 3 },
		{ "racks of 1, 2, 6 nodes", { 1, 2, 6 }, 3, 3 },
		{ "2 racks x 4 nodes", { 4, 4 }, 2, 2 },
		{ "4 racks x 2 nodes", { 2, 2, 2, 2 }, 4, 3 },
	};
	printf("rack spreading, N=3, every token range checked:\n");
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		static const char *rack_names[] = { "r1", "r2", "r3", "r4" };
		memset(&c, 0, sizeof c);
		for (uint32_t r = 0; r < cases[k].n_racks; r++)
			for (uint32_t i = 0; i < cases[k].per_rack[r]; i++)
				cluster_add(&c, "dc1", rack_names[r], 1.0);
		struct kv_ring *ring = ring_of(&c, 3, 64);
		struct topo_check want = { .dc1 = 3, .racks_dc1 = cases[k].want_racks };
		double ratio = check_every_range(ring, &want);
		printf("  %-24s every list on %u racks; replica load max/mean %.2f\n",
		       cases[k].label, want.racks_dc1, ratio);
		kv_ring_free(ring);
	}
}

static void test_ring__per_dc_counts_are_honoured(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__per_dc_counts_are_honoured"));
	struct cluster c;
	memset(&c, 0, sizeof c);
	static const char *r3[] = { "a", "b", "c" };
	for (int i = 0; i < 6; i++)
		cluster_add(&c, "dc1", r3[i % 3], 1.0); /* 3 racks x 2 */
	for (int i = 0; i < 4; i++)
		cluster_add(&c, "dc2", r3[i % 2], 1.0); /* 2 racks x 2 */
	for (int i = 0; i < 3; i++)
		cluster_add(&c, "dc3", "a", 1.0); /* not in the rule: no data */
	struct kv_ring *ring = ring_with_rule(&c, "dc1:3,dc2:2");
	assert_int_equal(kv_ring_n(ring), 5);
	assert_int_equal(kv_ring_rule(ring)->n_dcs, 2);
	struct topo_check want = { .dc1 = 3, .dc2 = 2, .racks_dc1 = 3, .racks_dc2 = 2 };
	double ratio = check_every_range(ring, &want);
	printf("per-DC rule dc1:3,dc2:2 over dc1 (3 racks x 2), dc2 (2 racks x 2), dc3 (not "
	       "in the rule):\n  every list 3+2 on 3+2 racks, none in dc3; replica load "
	       "max/mean over dc1+dc2 %.2f\n", ratio);
	for (uint32_t i = 0; i < kv_ring_node_count(ring); i++)
		assert_int_equal(kv_ring_node(ring, i)->holds_data,
				 strcmp(kv_ring_node(ring, i)->dc, "dc3") != 0);

	/* Extended list: every other data node once, never a dc3 node. */
	for (int i = 0; i < 500; i++) {
		uint32_t list[MAX_TEST_NODES];
		size_t n_pref;
		int n = kv_ring_preflist_ext(ring, kv_rng_next(&rng), list, MAX_TEST_NODES, &n_pref);
		assert_int_equal(n_pref, 5);
		assert_int_equal(n, 10);
		struct topo_check got;
		count_topology(ring, list, (size_t)n, &got);
		assert_int_equal(got.other, 0);
		/* A short cap cuts the preference list itself. */
		assert_int_equal(kv_ring_preflist_ext(ring, 7, list, 2, &n_pref), 2);
		assert_int_equal(n_pref, 2);
	}
	kv_ring_free(ring);

	/* A DC with fewer nodes than its count: as many as it has. */
	memset(&c, 0, sizeof c);
	for (int i = 0; i < 4; i++)
		cluster_add(&c, "dc1", r3[i % 3], 1.0);
	cluster_add(&c, "dc2", "a", 1.0);
	ring = ring_with_rule(&c, "dc1:3,dc2:2");
	struct topo_check short_dc2 = { .dc1 = 3, .dc2 = 1, .racks_dc1 = 3, .racks_dc2 = 1 };
	check_every_range(ring, &short_dc2);
	kv_ring_free(ring);

	/* A named DC with count 0 holds nothing. */
	memset(&c, 0, sizeof c);
	for (int i = 0; i < 3; i++)
		cluster_add(&c, "dc1", r3[i], 1.0);
	cluster_add(&c, "dc2", "a", 1.0);
	ring = ring_with_rule(&c, "dc1:2,dc2:0");
	struct topo_check no_dc2 = { .dc1 = 2, .racks_dc1 = 2 };
	check_every_range(ring, &no_dc2);
	kv_ring_free(ring);
}

/* ---- figures ------------------------------------------------------------- */

static void test_ring__ownership_balance(void **state)
{
	(void)state;
	static const size_t sizes[] = { 3, 5, 10, 30, 100 };
	static const uint32_t token_counts[] = { 64, 128, 256 };
	/* Loose bounds on max/mean primary ownership, by token count: a node's
	 * share has a relative spread of about 1/sqrt(tokens). */
	static const double bound[] = { 1.75, 1.55, 1.40 };
	printf("ownership balance, max/mean (primary | replica, N=3):\n");
	printf("  nodes  %-17s %-17s %-17s\n", "64 tokens", "128 tokens", "256 tokens");
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		printf("  %5zu ", sizes[s]);
		for (size_t t = 0; t < 3; t++) {
			struct cluster c;
			cluster_plain(&c, sizes[s]);
			struct kv_ring *ring = ring_of(&c, 3, token_counts[t]);
			double primary[MAX_TEST_NODES], replica[MAX_TEST_NODES];
			kv_ring_ownership(ring, primary, replica);
			double p = max_of(primary, c.n) / mean_of(primary, c.n);
			double r = max_of(replica, c.n) / mean_of(replica, c.n);
			printf("  %5.3f | %5.3f  ", p, r);
			assert_true(p < bound[t]);
			assert_true(r <= p + 1e-9 || r < bound[t]);
			kv_ring_free(ring);
		}
		printf("\n");
	}
}

static void test_ring__weight_two_gets_twice(void **state)
{
	(void)state;
	struct cluster c;
	cluster_plain(&c, 10);
	c.members[0].weight = 2.0;
	struct kv_ring *ring = ring_of(&c, 3, 64);
	double primary[10], replica[10];
	kv_ring_ownership(ring, primary, replica);
	uint32_t heavy = (uint32_t)kv_ring_find(ring, "n1");
	double others = 0, others_r = 0;
	for (uint32_t i = 0; i < 10; i++) {
		if (i != heavy) {
			others += primary[i] / 9;
			others_r += replica[i] / 9;
		}
	}
	double ratio = primary[heavy] / others;
	double ratio_r = replica[heavy] / others_r;
	printf("weight 2.0 among 9 nodes of weight 1.0 (64 tokens per weight): primary "
	       "%.3f of the ring, %.2fx the mean of the others (replica, N=3: %.2fx)\n",
	       primary[heavy], ratio, ratio_r);
	assert_true(ratio > 1.5 && ratio < 2.6);
	/* Replica shares saturate (a node is at most once per list), so they
	 * grow less than 2x. */
	assert_true(ratio_r > 1.3 && ratio_r < 2.6);
	kv_ring_free(ring);
}

/* Counts, over KEYS random keys, how placement changes from @a to @b. */
struct moved {
	double primary; /* share of keys whose first replica changed */
	double set;     /* share of keys whose replica set changed */
};

static struct moved measure_moves(const struct kv_ring *a, const struct kv_ring *b,
				  struct kv_rng *rng, uint32_t n_rep, const char *gainer,
				  const char *loser)
{
	uint32_t la[KV_RING_MAX_REPLICAS], lb[KV_RING_MAX_REPLICAS];
	size_t primary = 0, set = 0;
	for (int i = 0; i < KEYS; i++) {
		uint8_t key[16];
		for (size_t k = 0; k < sizeof key; k++)
			key[k] = (uint8_t)kv_rng_next(rng);
		uint64_t pos = kv_key_position(kv_slice_make(key, sizeof key));
		int na = kv_ring_preflist(a, pos, la, n_rep);
		int nb = kv_ring_preflist(b, pos, lb, n_rep);
		assert_int_equal(na, nb);
		/* Compare by id: indices belong to one ring. */
		const char *pa = kv_ring_node(a, la[0])->id, *pb = kv_ring_node(b, lb[0])->id;
		if (strcmp(pa, pb) != 0) {
			primary++;
			/* Keys move only to a joining node, only from a leaving one. */
			if (gainer)
				assert_string_equal(pb, gainer);
			if (loser)
				assert_string_equal(pa, loser);
		}
		size_t missing = 0;
		for (int x = 0; x < na; x++) {
			bool found = false;
			for (int y = 0; y < nb && !found; y++)
				found = strcmp(kv_ring_node(a, la[x])->id,
					       kv_ring_node(b, lb[y])->id) == 0;
			missing += !found;
		}
		if (missing) {
			set++;
			assert_int_equal(missing, 1); /* one replica swapped, no more */
		}
	}
	struct moved m = { (double)primary / KEYS, (double)set / KEYS };
	return m;
}

static void test_ring__join_moves_one_share(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_ring__join_moves_one_share"));
	static const size_t sizes[] = { 3, 5, 10, 30, 100 };
	printf("keys moved when one node joins N nodes (64 tokens, %d random keys):\n", KEYS);
	printf("  N    primary moved (exact)    1/(N+1) | RF=3 sets changed  3/(N+1) | "
	       "one of N+1 leaves: primary moved\n");
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n = sizes[s];
		struct cluster c;
		cluster_plain(&c, n + 1);
		struct kv_ring *big = ring_of(&c, 3, 64);
		c.n = n;
		struct kv_ring *small = ring_of(&c, 3, 64);
		const char *joiner = c.ids[n];
		struct moved join = measure_moves(small, big, &rng, 3, joiner, NULL);
		/* Leaving: n1 leaves the N+1 ring. */
		struct cluster d;
		cluster_plain(&d, n + 1);
		d.members[0] = d.members[n];
		d.n = n;
		struct kv_ring *left = ring_of(&d, 3, 64);
		struct moved leave = measure_moves(big, left, &rng, 3, NULL, "n1");

		/* The exact share the joiner took, from the token ranges. */
		double own[MAX_TEST_NODES];
		kv_ring_ownership(big, own, NULL);
		double exact = own[kv_ring_find(big, joiner)];
		assert_true(fabs(join.primary - exact) < 0.01); /* ~6 sigma at 100k keys */
		double want_p = 1.0 / (double)(n + 1);
		double want_s = (n + 1 < 3 ? (double)(n + 1) : 3.0) / (double)(n + 1);
		printf("  %-4zu %6.4f        (%6.4f)   %6.4f | %6.4f             %6.4f  | "
		       "%6.4f\n",
		       n, join.primary, exact, want_p, join.set, want_s, leave.primary);
		assert_true(join.primary > 0.5 * want_p && join.primary < 1.7 * want_p);
		assert_true(join.set > 0.6 * want_s && join.set < 1.5 * want_s);
		assert_true(leave.primary > 0.4 * want_p && leave.primary < 1.8 * want_p);
		kv_ring_free(big);
		kv_ring_free(small);
		kv_ring_free(left);
	}
	/* Doubling one node's weight keeps its old tokens: keys only move to it. */
	struct cluster c;
	cluster_plain(&c, 10);
	struct kv_ring *before = ring_of(&c, 3, 64);
	c.members[4].weight = 2.0;
	struct kv_ring *after = ring_of(&c, 3, 64);
	struct moved rew = measure_moves(before, after, &rng, 3, "n5", NULL);
	printf("  reweight n5 of 10 from 1.0 to 2.0: %.4f of keys move, all to n5\n",
	       rew.primary);
	assert_true(rew.primary > 0.02 && rew.primary < 0.2);
	kv_ring_free(before);
	kv_ring_free(after);
}

static void test_ring__huge_directory_is_a_hot_partition(void **state)
{
	(void)state;
	/* 100,000 files spread over D directories on 10 nodes, N=3: how many
	 * keys the busiest node holds against the mean (DESIGN §2). */
	struct cluster c;
	cluster_plain(&c, 10);
	struct kv_ring *ring = ring_of(&c, 3, 64);
	static const size_t dir_counts[] = { 1, 10, 100, 1000, 10000, 100000 };
	printf("hot directories: %d files in D directories, 10 nodes, N=3, replica keys "
	       "per node max/mean:\n", KEYS);
	double prev = 1e9;
	for (size_t d = 0; d < sizeof dir_counts / sizeof dir_counts[0]; d++) {
		double load[10] = { 0 };
		char path[64];
		for (int i = 0; i < KEYS; i++) {
			int len = snprintf(path, sizeof path, "/d%zu/f%d",
					   (size_t)i % dir_counts[d], i);
			uint32_t list[3];
			int n = kv_ring_preflist_key(ring, kv_slice_make(path, (size_t)len), list, 3);
			for (int k = 0; k < n; k++)
				load[list[k]] += 1;
		}
		double ratio = max_of(load, 10) / mean_of(load, 10);
		uint32_t busy = 0;
		for (int k = 0; k < 10; k++)
			busy += load[k] > 0;
		printf("  D=%-6zu max/mean %5.2f  nodes holding any: %u\n", dir_counts[d], ratio,
		       busy);
		if (dir_counts[d] == 1) /* one directory: three nodes take it all */
			assert_true(busy == 3 && fabs(ratio - 10.0 / 3.0) < 1e-9);
		assert_true(ratio <= prev + 0.3);
		prev = ratio;
	}
	assert_true(prev < 1.5);
	kv_ring_free(ring);
}

static void test_ring__preflist_speed(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, 1);
	struct cluster c;
	memset(&c, 0, sizeof c);
	static const char *racks[] = { "r1", "r2", "r3", "r4", "r5" };
	for (int i = 0; i < 100; i++)
		cluster_add(&c, i % 2 ? "dc1" : "dc2", racks[i % 5], 1.0);
	struct kv_ring *racked = ring_of(&c, 3, 64);
	struct kv_ring *dcs = ring_with_rule(&c, "dc1:3,dc2:2");
	struct cluster u;
	cluster_plain(&u, 100);
	struct kv_ring *plain = ring_of(&u, 3, 64);
	static const char *labels[] = { "N=3, untagged", "N=3, 10 racks", "dc1:3,dc2:2, racks" };
	struct kv_ring *rings[] = { plain, racked, dcs };
	for (int pass = 0; pass < 3; pass++) {
		struct kv_ring *ring = rings[pass];
		const int iters = 200000;
		uint32_t list[KV_RING_MAX_REPLICAS];
		volatile uint64_t sink = 0;
		uint64_t t0 = kv_now_ns();
		for (int i = 0; i < iters; i++) {
			int n = kv_ring_preflist(ring, kv_rng_next(&rng), list, KV_RING_MAX_REPLICAS);
			sink += list[n - 1];
		}
		(void)sink;
		double ns = (double)(kv_now_ns() - t0) / iters;
		/* A figure to read, not an assertion: tests pin behaviour, not speed. */
		printf("preflist speed, 100 nodes x 64 tokens, %-20s %4.0f ns per list\n",
		       labels[pass], ns);
	}
	kv_ring_free(plain);
	kv_ring_free(racked);
	kv_ring_free(dcs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring__replica_rules_parse),
		cmocka_unit_test(test_ring__rejects_bad_members_and_rules),
		cmocka_unit_test(test_ring__tokens_follow_id_and_weight),
		cmocka_unit_test(test_ring__member_order_does_not_matter),
		cmocka_unit_test(test_ring__preflist_matches_naive_walk),
		cmocka_unit_test(test_ring__trivial_racks_change_nothing),
		cmocka_unit_test(test_ring__preflist_key_uses_placement),
		cmocka_unit_test(test_ring__ranges_agree_with_preflists),
		cmocka_unit_test(test_ring__small_rings_own_the_whole_circle),
		cmocka_unit_test(test_ring__racks_spread_replicas),
		cmocka_unit_test(test_ring__per_dc_counts_are_honoured),
		cmocka_unit_test(test_ring__ownership_balance),
		cmocka_unit_test(test_ring__weight_two_gets_twice),
		cmocka_unit_test(test_ring__join_moves_one_share),
		cmocka_unit_test(test_ring__huge_directory_is_a_hot_partition),
		cmocka_unit_test(test_ring__preflist_speed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
