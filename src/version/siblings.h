/*
 * siblings.h - sibling sets: dotted version vector sets (DESIGN §4, §7).
 *
 * A sibling set (struct kv_dvv) holds the live versions of one key and the
 * set's causal context, which covers every dot the set has ever seen —
 * discarded ones included. Replicas join sets; the coordinating replica puts
 * (discard what the client's context covers, mint a dot, add the version);
 * the file system shows the versions in a deterministic order. Tombstones are
 * ordinary versions. Model, rules and encoding: doc/versions.md.
 */
#ifndef KV_VERSION_SIBLINGS_H
#define KV_VERSION_SIBLINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "version/counter.h"
#include "version/dot.h"

#define KV_REQUEST_ID_LEN 16

/* Put limits (DESIGN §4 "Limits"); see struct kv_dvv_limits. */
#define KV_DVV_MAX_SIBLINGS 64
#define KV_DVV_MAX_VALUE_DEFAULT ((size_t)4 << 20)
#define KV_DVV_MAX_META_DEFAULT ((size_t)64 << 10)

/*
 * Hard bounds of the decoder and of join, independent of configuration so
 * that lowering a limit never makes stored data unreadable. Joins of many
 * coordinators' sets may exceed KV_DVV_MAX_SIBLINGS; they may not exceed
 * KV_DVV_MAX_VERSIONS.
 */
#define KV_DVV_MAX_VERSIONS 4096
#define KV_DVV_MAX_BODY ((size_t)1 << 30)
#define KV_DVV_MAX_META ((size_t)16 << 20)

/* The encoding's format byte (doc/versions.md §6.3). */
#define KV_DVV_FORMAT 1

/*
 * One version. @meta (e.g. file attributes) and @body are opaque; a
 * tombstone has an empty body and may carry metadata. A request id of all
 * zero bytes means "none" and never matches a retry. Versions inside a set
 * own their bytes (@storage, private); borrow @meta and @body only while the
 * set is unchanged.
 */
struct kv_version {
	struct kv_dot dot;
	int64_t timestamp_ns; /* wall clock, for display order only */
	uint8_t request_id[KV_REQUEST_ID_LEN];
	bool tombstone;
	struct kv_slice meta;
	struct kv_slice body;
	uint8_t *storage; /* private: owns meta ‖ body */
};

/*
 * A sibling set. Invariants: @v sorted by dot, no two versions with one dot,
 * and @ctx covers every version's dot. Caller-owned: kv_dvv_init() /
 * kv_dvv_release(). Read the fields freely; change them only through these
 * functions.
 */
struct kv_dvv {
	struct kv_ctx ctx;
	struct kv_version *v;
	size_t n, cap;
};

#define KV_DVV_INIT { KV_CTX_INIT, NULL, 0, 0 }

/* What a put may do; kv_dvv_limits_default() gives DESIGN's defaults. */
struct kv_dvv_limits {
	size_t max_value;    /* body bytes; above -> KV_ETOOBIG */
	size_t max_meta;     /* metadata bytes; above -> KV_ETOOBIG */
	size_t max_siblings; /* versions after the put; above -> KV_ESIBLINGS */
};

/* A put as the coordinating replica receives it. Everything is borrowed. */
struct kv_dvv_write {
	const struct kv_ctx *context; /* what the client saw; NULL = empty */
	uint8_t request_id[KV_REQUEST_ID_LEN];
	int64_t timestamp_ns;
	bool tombstone; /* a delete: @body must be empty */
	struct kv_slice meta;
	struct kv_slice body;
};

/* Flags of kv_dvv_display(). */
enum {
	KV_DVV_SHOW_TOMBSTONES = 1 << 0, /* include tombstones */
	KV_DVV_SHOW_DUPLICATES = 1 << 1, /* do not fold identical versions */
};

void kv_dvv_limits_default(struct kv_dvv_limits *lim);

/* Makes @s an empty set with an empty context. */
void kv_dvv_init(struct kv_dvv *s);
/* Frees everything @s holds and leaves it empty and reusable. */
void kv_dvv_release(struct kv_dvv *s);
/* Exchanges the contents of two sets (no allocation). */
void kv_dvv_swap(struct kv_dvv *a, struct kv_dvv *b);

/*
 * Replaces the contents of the initialized set @dst with a deep copy of
 * @src. Returns 0 or -ENOMEM (then @dst is unchanged).
 */
int kv_dvv_copy(struct kv_dvv *dst, const struct kv_dvv *src);

/*
 * Joins @src into @dst (DESIGN §4 "Replicas read, join, write"). A version
 * survives if both hold it, or if one holds it and the other's context does
 * not cover its dot; the context becomes the union. Commutative, associative
 * and idempotent: replicas converge in any order. (Should two sets disagree
 * on the content of one dot, which a correct cluster never produces, the
 * smaller content by kv_version_cmp() wins, so join stays commutative.)
 * Returns 0; KV_ESIBLINGS when the result would exceed KV_DVV_MAX_VERSIONS;
 * -ENOMEM. On failure @dst is unchanged. @src is copied, never changed.
 */
int kv_dvv_join(struct kv_dvv *dst, const struct kv_dvv *src);

/*
 * As kv_dvv_join(), but takes the bytes of @src's versions instead of copying
 * them. On success @src is left empty (released); on failure both sets are
 * unchanged.
 */
int kv_dvv_join_take(struct kv_dvv *dst, struct kv_dvv *src);

/*
 * Drops exactly the versions whose dots @ctx covers; the set's context gains
 * @ctx. Returns the number of versions dropped, or -ENOMEM (then @s is
 * unchanged).
 */
int kv_dvv_discard(struct kv_dvv *s, const struct kv_ctx *ctx);

/*
 * A put at the coordinating replica (DESIGN §4 "Who mints a dot"), acting as
 * @self, minting from @counter. In order:
 *   - a version in @s with the write's (non-zero) request id: a retry. *dot
 *     gets that version's dot; nothing changes; returns 1;
 *   - tombstone with a body: KV_EINVAL; body or meta over @lim: KV_ETOOBIG;
 *   - more than lim->max_siblings versions after the put: KV_ESIBLINGS;
 *   - no durable counter: -EAGAIN (persist a lease; see counter.h);
 *   - the counter at or below a dot of @self that @s's context or the write's
 *     context already mentions (the counter went backwards; the node must take
 *     a new epoch): KV_EINVAL;
 *   - otherwise: drops the versions the write's context covers, takes the next
 *     counter, adds the new version, returns 0 and its dot in *dot.
 * A put without a context (NULL or empty) destroys nothing; w->context may
 * point at s->ctx (a put with what was just read). On any failure nothing
 * changes, *dot is unset, and no counter is consumed. @lim may be NULL for
 * the defaults. The new version copies the write's bytes.
 */
int kv_dvv_put(struct kv_dvv *s, const struct kv_dvv_write *w, struct kv_actor self,
	       struct kv_counter *counter, const struct kv_dvv_limits *lim, struct kv_dot *dot);

/* The version with @dot, or NULL. Borrowed: valid while @s is unchanged. */
const struct kv_version *kv_dvv_find(const struct kv_dvv *s, struct kv_dot dot);

/* The version carrying request id @id, or NULL (always NULL for all zeros). */
const struct kv_version *kv_dvv_find_request(const struct kv_dvv *s,
					     const uint8_t id[KV_REQUEST_ID_LEN]);

/*
 * Total order over everything a version holds but its dot: timestamp,
 * request id, tombstone flag, meta, body. Returns <0, 0 or >0.
 */
int kv_version_cmp(const struct kv_version *a, const struct kv_version *b);

/* True when @a and @b show the same thing: body, meta and tombstone flag. */
bool kv_version_same_content(const struct kv_version *a, const struct kv_version *b);

/*
 * Display order (DESIGN §7 "Conflicts as files"): by timestamp, then dot.
 * Returns <0, 0 or >0; 0 only for one dot.
 */
int kv_version_display_cmp(const struct kv_version *a, const struct kv_version *b);

/*
 * Fills @out (room for s->n pointers) with the versions to show, in display
 * order, and returns how many. Unless @flags says otherwise, tombstones are
 * left out and versions with the same content are shown once, as the first
 * of them in display order. The pointers borrow from @s.
 */
size_t kv_dvv_display(const struct kv_dvv *s, unsigned flags, const struct kv_version **out);

/*
 * Replaces the initialized context @out with the context that names the
 * version with @dot and every version of @s with the same content — what
 * discarding that one shown sibling needs (DESIGN §7 "rm name.sibling-i").
 * Returns 0, KV_ENOTFOUND (no such version) or -ENOMEM; on failure @out is
 * unchanged.
 */
int kv_dvv_context_of(const struct kv_dvv *s, struct kv_dot dot, struct kv_ctx *out);

/* Versions that are not tombstones. */
size_t kv_dvv_live_count(const struct kv_dvv *s);

/*
 * What a client is shown of @s (DESIGN §4 "Deletes"): its tombstones are
 * dropped; the context still covers them. With @keep_meta, a set without
 * live versions keeps its latest tombstone that carries metadata (latest by
 * timestamp, then dot), so that a reader can tell what was deleted there
 * (doc/protocol.md §5.1). Returns 0 or -ENOMEM (then @s is unchanged).
 */
int kv_dvv_hide_tombstones(struct kv_dvv *s, bool keep_meta);

/*
 * True when no version of @s is live: every version is a tombstone (or there
 * is none). Such a key is a purge candidate (DESIGN §4 "Deletes").
 */
bool kv_dvv_tombstone_only(const struct kv_dvv *s);

/*
 * Drops @actor from @s's context (doc/versions.md §5).
 * Returns the number of context entries removed, or KV_EBUSY when a version
 * of @s still carries a dot of @actor (then nothing changes).
 */
int kv_dvv_retire(struct kv_dvv *s, struct kv_actor actor);

/* True when @a and @b hold the same context and the same versions. */
bool kv_dvv_equal(const struct kv_dvv *a, const struct kv_dvv *b);

/*
 * Appends the canonical encoding of @s to @out (doc/versions.md §6.3):
 * equal sets give equal bytes, so replicas may compare hashes of encodings.
 * Returns 0 or -ENOMEM (then @out is unchanged).
 */
int kv_dvv_encode(const struct kv_dvv *s, struct kv_buf *out);

/*
 * Decodes a set that fills all of @in into the initialized set @out,
 * replacing its contents; the versions copy their bytes out of @in. Returns
 * 0; KV_EVERSION for an unknown format byte; KV_ECORRUPT for anything
 * malformed or non-canonical (truncated, trailing bytes, overlong varints,
 * unsorted or duplicate dots, a dot its context does not cover, a tombstone
 * with a body, unknown flags, a length or count above its bound); -ENOMEM.
 * On failure @out is unchanged. Pure: reads only the @in.n bytes at @in.p.
 */
int kv_dvv_decode(struct kv_slice in, struct kv_dvv *out);

/*
 * kv_dvv_decode(), but every version's body is left out (empty), so a
 * listing copies only metadata (DESIGN §7 "Objects": a listing never reads
 * file bodies). The whole input is validated exactly as kv_dvv_decode()
 * does; the result is the set with its bodies emptied.
 */
int kv_dvv_decode_heads(struct kv_slice in, struct kv_dvv *out);

#endif
