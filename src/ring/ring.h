/*
 * ring.h - consistent hashing with virtual nodes, and preference lists.
 *
 * A ring is built from a member list (node id, weight, dc, rack) and a replica
 * rule (N, or per-DC counts such as "dc1:3,dc2:2"), and is immutable once
 * built: any number of threads may read it without a lock, and a membership
 * change builds a new ring. Tokens are derived from (node id, token index), so
 * every node computes the same ring from the same member list and tokens never
 * travel. Nodes are named by dense indices 0..n-1 in the order of their ids;
 * an index is valid for one ring only (map it back with kv_ring_node()).
 * Rules, token generation and figures: doc/placement.md; DESIGN §2, §3.
 */
#ifndef KV_RING_RING_H
#define KV_RING_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

/* Longest node id, dc or rack name, in bytes: [A-Za-z0-9._-], not empty. */
#define KV_RING_NAME_MAX 64
/* Largest N, and most DCs in a replica rule. */
#define KV_RING_MAX_REPLICAS 16
#define KV_RING_MAX_DCS 16
/* Limits on a ring's size. */
#define KV_RING_MAX_NODES 16384
#define KV_RING_MAX_NODE_TOKENS 65536
#define KV_RING_MAX_TOKENS (1u << 22)
/* Tokens of a node of weight 1.0 unless configured (DESIGN §3). */
#define KV_RING_DEFAULT_TOKENS 64
/* For kv_ring_ranges(): every node. */
#define KV_RING_ALL_NODES UINT32_MAX

/*
 * The replica rule: N replicas of every key, either anywhere in the ring
 * (n_dcs == 0) or split per data centre (n == sum of the dcs' counts).
 */
struct kv_ring_dc_count {
	char dc[KV_RING_NAME_MAX + 1];
	uint32_t count;
};

struct kv_ring_replicas {
	uint32_t n;
	uint32_t n_dcs;
	struct kv_ring_dc_count dcs[KV_RING_MAX_DCS];
};

/*
 * Parses a replica rule: "3" (N anywhere) or "dc1:3,dc2:2" (per-DC counts;
 * blanks around names and numbers are allowed, a count may be 0, a DC may
 * appear once). N must come to 1..KV_RING_MAX_REPLICAS. Returns 0 or
 * KV_EINVAL; on failure @out is zeroed.
 */
int kv_ring_replicas_parse(struct kv_ring_replicas *out, const char *spec);

/*
 * Formats @r as kv_ring_replicas_parse() reads it into @buf (room for @cap
 * bytes, NUL-terminated). Returns the length, or KV_ETOOBIG if it did not fit.
 */
int kv_ring_replicas_format(const struct kv_ring_replicas *r, char *buf, size_t cap);

struct kv_ring_config {
	struct kv_ring_replicas replicas;
	/* Tokens of a node of weight 1.0; 0 means KV_RING_DEFAULT_TOKENS. */
	uint32_t tokens_per_weight;
};

/* A config for @n replicas anywhere and the default token count. */
void kv_ring_config_init(struct kv_ring_config *cfg, uint32_t n);

/* One member, as configured or gossiped. The ring copies the strings. */
struct kv_ring_member {
	const char *id;   /* required, unique */
	const char *dc;   /* NULL or "" when untagged */
	const char *rack; /* NULL or "" when untagged */
	double weight;    /* 0 means 1.0; otherwise > 0 */
	uint32_t tokens;  /* 0 means round(tokens_per_weight * weight), >= 1 */
};

/* A member as the ring holds it. */
struct kv_ring_node {
	const char *id;      /* owned by the ring */
	const char *dc;      /* "" when untagged */
	const char *rack;    /* "" when untagged */
	double weight;
	uint32_t n_tokens;
	uint32_t rack_index; /* dense index of the (dc, rack) pair */
	bool holds_data;     /* false when its DC gets no replicas */
};

/* A token range (start, end] on the 64-bit circle with its replicas. */
struct kv_ring_range {
	uint64_t start;      /* exclusive; start == end is the whole circle */
	uint64_t end;        /* inclusive */
	uint32_t n_replicas; /* the preference list of every position inside */
	uint32_t replicas[KV_RING_MAX_REPLICAS];
};

struct kv_ring;

/*
 * Builds a ring from @members (any order; the result depends only on the
 * set). Returns 0 and a ring in *out that the caller frees with
 * kv_ring_free(), or KV_EINVAL (a bad or duplicate name, a bad weight, a
 * replica rule with n == 0 or a per-DC sum that is not n), KV_ETOOBIG (a
 * limit above) or -ENOMEM; on failure *out is NULL. An empty member list
 * makes an empty ring, whose preference lists are empty.
 */
int kv_ring_new(struct kv_ring **out, const struct kv_ring_config *cfg,
		const struct kv_ring_member *members, size_t n_members);

/* Frees @ring (NULL is fine). Node pointers taken from it die with it. */
void kv_ring_free(struct kv_ring *ring);

/*
 * Token @index of node @id: xxh3-64 of the id's bytes followed by be32(index).
 * A node of t tokens owns tokens 0..t-1, so raising its weight adds tokens
 * and keeps the old ones. @id must be a valid node id (at most
 * KV_RING_NAME_MAX bytes). Every node must compute the same values: this is
 * a cluster-wide contract, pinned by the tests.
 */
uint64_t kv_ring_token_of(const char *id, uint32_t index);

/* N, the length of a full preference list. */
uint32_t kv_ring_n(const struct kv_ring *ring);
const struct kv_ring_replicas *kv_ring_rule(const struct kv_ring *ring);
uint32_t kv_ring_node_count(const struct kv_ring *ring);
/* Node @idx (< kv_ring_node_count()); valid while the ring lives. */
const struct kv_ring_node *kv_ring_node(const struct kv_ring *ring, uint32_t idx);
/* The index of the node called @id, or KV_ENOTFOUND. O(log nodes). */
int kv_ring_find(const struct kv_ring *ring, const char *id);

/* Tokens on the ring, all nodes together. */
size_t kv_ring_token_count(const struct kv_ring *ring);
/* The @i-th token in ascending order (i < count) and the node that owns it. */
void kv_ring_token_at(const struct kv_ring *ring, size_t i, uint64_t *token, uint32_t *node);
/*
 * The index of the token that owns position @pos: the first token >= pos,
 * wrapping to 0 past the last. Token i owns (token[i-1], token[i]]. The ring
 * must not be empty. O(log T).
 */
size_t kv_ring_token_index(const struct kv_ring *ring, uint64_t pos);

/*
 * The preference list of ring position @pos (DESIGN §3): walking clockwise
 * from @pos, the first N distinct nodes, spread over racks and split by DC as
 * the rule says. Writes at most @cap node indices to @out, coordinator first,
 * and returns how many: fewer than N when the ring (or a DC) has too few
 * nodes. O(log T + N * skip); no allocation.
 *
 * Racks: a rack is a (dc, rack) pair, and untagged nodes of a DC share the
 * rack "". Within each replica group (the whole ring, or one DC of the rule)
 * a node on a rack the group already uses is passed over while the group has
 * unused racks; the passed-over nodes fill the group, in the order they were
 * met, once every rack is used. With per-DC counts, nodes in DCs the rule
 * does not name hold no replicas.
 */
int kv_ring_preflist(const struct kv_ring *ring, uint64_t pos, uint32_t *out, size_t cap);

/* kv_ring_preflist() of a key's position (kv_key_position()). */
int kv_ring_preflist_key(const struct kv_ring *ring, struct kv_slice key, uint32_t *out,
			 size_t cap);

/*
 * The preference list followed by the extended list: the other nodes that
 * hold data, in the order a clockwise walk from @pos meets them (the
 * sloppy-quorum fallbacks). Writes at most @cap indices and returns how many;
 * *n_pref gets how many of them are the preference list. No allocation; each
 * step past a node costs O(@cap).
 */
int kv_ring_preflist_ext(const struct kv_ring *ring, uint64_t pos, uint32_t *out, size_t cap,
			 size_t *n_pref);

/* True when node @node is in the preference list of @pos. */
bool kv_ring_is_replica(const struct kv_ring *ring, uint64_t pos, uint32_t node);

/* True when @pos lies in @range. */
bool kv_ring_range_contains(const struct kv_ring_range *range, uint64_t pos);

/*
 * The token ranges of node @node, or of the whole ring with
 * KV_RING_ALL_NODES: every range where the node is a replica (or, with
 * @primary_only, the first replica), with the range's preference list.
 * Adjacent ranges with the same preference list are merged, so every range
 * has one replica set (what a Merkle tree or a stream needs). Ranges come in
 * ring order; one of them may wrap past 2^64-1. Returns 0 and an array in
 * *out of *n_out ranges that the caller frees with free() (NULL when there
 * are none), KV_EINVAL for a bad node, or -ENOMEM; on failure *out is NULL
 * and *n_out 0. O(T * N * skip).
 */
int kv_ring_ranges(const struct kv_ring *ring, uint32_t node, bool primary_only,
		   struct kv_ring_range **out, size_t *n_out);

/*
 * The share of the circle each node owns, by node index, into arrays of
 * kv_ring_node_count() doubles (either may be NULL): @primary, as the first
 * replica (sums to 1 on a non-empty ring); @replica, as any replica (sums to
 * the average preference-list length, N when there are enough nodes).
 * Returns 0.
 */
int kv_ring_ownership(const struct kv_ring *ring, double *primary, double *replica);

#endif
