/*
 * dot.h - actors, dots and causal contexts (DESIGN §4).
 *
 * An actor is a (node id, epoch) pair; a dot names one write, (actor, counter).
 * A causal context is a version vector (actor -> highest counter n such that
 * every dot 1..n of that actor is covered) plus a "dot cloud" of single dots
 * above it, so a context can name exactly the versions a client saw, one
 * sibling of several from the same actor included. Contexts are kept
 * normalized, so equal contexts have equal contents and encode to equal bytes.
 * Model and encoding: doc/versions.md.
 */
#ifndef KV_VERSION_DOT_H
#define KV_VERSION_DOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

/*
 * An actor mints dots. @node is the cluster-unique numeric node id (names
 * are a display matter of the membership layer); @epoch changes whenever the
 * node may have lost state (DESIGN §4 "Actors"), so (node, epoch) never
 * reuses a counter.
 */
struct kv_actor {
	uint32_t node;
	uint32_t epoch;
};

/* One write: its actor and a counter >= 1 from the actor's node-wide counter. */
struct kv_dot {
	struct kv_actor actor;
	uint64_t counter;
};

/* One version vector entry: every dot (actor, 1..max) is covered; max >= 1. */
struct kv_ctx_entry {
	struct kv_actor actor;
	uint64_t max;
};

/*
 * A causal context. Invariants (kept by every function here, checked by the
 * decoder): @vv sorted by actor, no duplicates, every max >= 1; @cloud sorted
 * by (actor, counter), no duplicates, and every cloud dot lies strictly above
 * vv[actor] + 1 (a dot at vv[actor] + 1 is folded into the vector).
 * Caller-owned: kv_ctx_init() / kv_ctx_release(). Read the arrays freely;
 * change them only through these functions.
 */
struct kv_ctx {
	struct kv_ctx_entry *vv;
	size_t nvv, capvv;
	struct kv_dot *cloud;
	size_t ncloud, capcloud;
};

#define KV_CTX_INIT { NULL, 0, 0, NULL, 0, 0 }

/* Decoder bounds: counts above these are rejected as KV_ECORRUPT. */
#define KV_CTX_MAX_ACTORS 65536
#define KV_CTX_MAX_CLOUD (1u << 20)

/* Total orders: actors by (node, epoch); dots by (actor, counter). */
int kv_actor_cmp(struct kv_actor a, struct kv_actor b);
bool kv_actor_eq(struct kv_actor a, struct kv_actor b);
int kv_dot_cmp(struct kv_dot a, struct kv_dot b);
bool kv_dot_eq(struct kv_dot a, struct kv_dot b);

/*
 * Appends the encoding of @dot to @out: varint node, varint epoch, varint
 * counter. Returns 0 or -ENOMEM (then @out is unchanged).
 */
int kv_dot_encode(struct kv_dot dot, struct kv_buf *out);

/*
 * Decodes one dot from the front of @in. Returns the bytes consumed (> 0) and
 * sets *out, or KV_ECORRUPT (truncated, overlong varint, epoch or node above
 * 32 bits, counter 0) and leaves *out unset.
 */
int kv_dot_decode_prefix(struct kv_slice in, struct kv_dot *out);

/* Makes @c an empty context (covers nothing). */
void kv_ctx_init(struct kv_ctx *c);
/* Frees what @c holds and leaves it empty and reusable. */
void kv_ctx_release(struct kv_ctx *c);
/* Empties @c but keeps its storage. */
void kv_ctx_clear(struct kv_ctx *c);
/* Exchanges the contents of two contexts (no allocation). */
void kv_ctx_swap(struct kv_ctx *a, struct kv_ctx *b);

static inline bool kv_ctx_is_empty(const struct kv_ctx *c)
{
	return c->nvv == 0 && c->ncloud == 0;
}

/*
 * Replaces the contents of @dst with a copy of @src. Returns 0 or -ENOMEM
 * (then @dst is unchanged). @dst must be initialized.
 */
int kv_ctx_copy(struct kv_ctx *dst, const struct kv_ctx *src);

/* True when @c covers @dot: its counter is within vv[actor] or in the cloud. */
bool kv_ctx_covers(const struct kv_ctx *c, struct kv_dot dot);

/*
 * The highest counter of @actor that @c mentions (vector or cloud), 0 when
 * none. Every dot of @actor above it is not covered.
 */
uint64_t kv_ctx_max(const struct kv_ctx *c, struct kv_actor actor);

/*
 * Adds one dot to @c (into the cloud, or folded into the vector when it
 * extends it). Returns 0, KV_EINVAL for counter 0, or -ENOMEM; on failure @c
 * is unchanged.
 */
int kv_ctx_add(struct kv_ctx *c, struct kv_dot dot);

/*
 * Joins @src into @dst: afterwards @dst covers exactly the dots either covered
 * before. Commutative, associative, idempotent. Returns 0 or -ENOMEM (then
 * @dst is unchanged). @src may equal @dst.
 */
int kv_ctx_merge(struct kv_ctx *dst, const struct kv_ctx *src);

/*
 * Raises vv[actor] to @counter: @c then covers every dot (actor, 1..counter).
 * Only valid where the caller knows that every such dot relevant to the key is
 * held or covered already — the coordinating replica after minting (see
 * doc/versions.md §3.4). Returns 0, KV_EINVAL for counter 0, or -ENOMEM
 * (then @c is unchanged).
 */
int kv_ctx_advance(struct kv_ctx *c, struct kv_dot through);

/*
 * Drops every entry of @actor (vector and cloud) from @c: the retirement
 * step of doc/versions.md §5, only safe under the rule given there.
 * Returns the number of entries removed (never fails).
 */
size_t kv_ctx_retire(struct kv_ctx *c, struct kv_actor actor);

/* True when @a and @b cover the same dots. */
bool kv_ctx_equal(const struct kv_ctx *a, const struct kv_ctx *b);

/*
 * Appends the canonical encoding of @c to @out (doc/versions.md §6.2);
 * equal contexts give equal bytes. Returns 0 or -ENOMEM (then @out is
 * unchanged).
 */
int kv_ctx_encode(const struct kv_ctx *c, struct kv_buf *out);

/*
 * Decodes a context from the front of @in. Returns the bytes consumed (> 0)
 * and replaces the contents of the initialized context @out, or returns
 * KV_ECORRUPT for malformed or non-canonical input (unsorted, duplicate or
 * unfolded entries, counts above their bound, overflow) or -ENOMEM, leaving
 * @out unchanged. Pure: reads only the @in.n bytes at @in.p.
 */
int kv_ctx_decode_prefix(struct kv_slice in, struct kv_ctx *out);

/* As kv_ctx_decode_prefix(), but @in must hold exactly one context: returns 0. */
int kv_ctx_decode(struct kv_slice in, struct kv_ctx *out);

#endif
