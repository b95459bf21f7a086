/*
 * dot.c - actors, dots and causal contexts (see dot.h).
 *
 * Every change builds the new context in fresh arrays and installs them only
 * when nothing can fail any more, so a failed call leaves its input as it
 * was. Model and encoding: doc/versions.md.
 */
#include "version/dot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/coding.h"
#include "util/error.h"
#include "version/codec_int.h"

int kv_actor_cmp(struct kv_actor a, struct kv_actor b)
{
	if (a.node != b.node)
		return a.node < b.node ? -1 : 1;
	if (a.epoch != b.epoch)
		return a.epoch < b.epoch ? -1 : 1;
	return 0;
}

bool kv_actor_eq(struct kv_actor a, struct kv_actor b)
{
	return a.node == b.node && a.epoch == b.epoch;
}

int kv_dot_cmp(struct kv_dot a, struct kv_dot b)
{
	int r = kv_actor_cmp(a.actor, b.actor);
	if (r)
		return r;
	if (a.counter != b.counter)
		return a.counter < b.counter ? -1 : 1;
	return 0;
}

bool kv_dot_eq(struct kv_dot a, struct kv_dot b)
{
	return kv_actor_eq(a.actor, b.actor) && a.counter == b.counter;
}

int kv_dot_encode(struct kv_dot dot, struct kv_buf *out)
{
	uint8_t t[3 * KV_VARINT64_MAX];
	size_t n = kv_varint_encode(t, dot.actor.node);
	n += kv_varint_encode(t + n, dot.actor.epoch);
	n += kv_varint_encode(t + n, dot.counter);
	return kv_buf_append(out, t, n);
}

int kv_dot_decode_prefix(struct kv_slice in, struct kv_dot *out)
{
	struct kv_rd r = { in.p, in.n };
	struct kv_dot d;
	if (kv_rd_u32(&r, &d.actor.node) || kv_rd_u32(&r, &d.actor.epoch) ||
	    kv_rd_varint(&r, &d.counter) || d.counter == 0)
		return KV_ECORRUPT;
	*out = d;
	return (int)(in.n - r.n);
}

void kv_ctx_init(struct kv_ctx *c)
{
	struct kv_ctx empty = KV_CTX_INIT;
	*c = empty;
}

void kv_ctx_release(struct kv_ctx *c)
{
	free(c->vv);
	free(c->cloud);
	kv_ctx_init(c);
}

void kv_ctx_clear(struct kv_ctx *c)
{
	c->nvv = 0;
	c->ncloud = 0;
}

void kv_ctx_swap(struct kv_ctx *a, struct kv_ctx *b)
{
	struct kv_ctx t = *a;
	*a = *b;
	*b = t;
}

/* Index of @actor in c->vv, or of where it would go; *found says which. */
static size_t vv_find(const struct kv_ctx *c, struct kv_actor actor, bool *found)
{
	size_t lo = 0, hi = c->nvv;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = kv_actor_cmp(c->vv[mid].actor, actor);
		if (r == 0) {
			*found = true;
			return mid;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static uint64_t vv_get(const struct kv_ctx *c, struct kv_actor actor)
{
	bool found;
	size_t i = vv_find(c, actor, &found);
	return found ? c->vv[i].max : 0;
}

/* Index of the first cloud dot not below @dot. */
static size_t cloud_lower_bound(const struct kv_ctx *c, struct kv_dot dot)
{
	size_t lo = 0, hi = c->ncloud;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (kv_dot_cmp(c->cloud[mid], dot) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool kv_ctx_covers(const struct kv_ctx *c, struct kv_dot dot)
{
	if (dot.counter <= vv_get(c, dot.actor))
		return true;
	size_t i = cloud_lower_bound(c, dot);
	return i < c->ncloud && kv_dot_eq(c->cloud[i], dot);
}

uint64_t kv_ctx_max(const struct kv_ctx *c, struct kv_actor actor)
{
	/* The cloud dots of @actor are above its vector entry; find the last. */
	struct kv_dot past = { actor, UINT64_MAX };
	size_t i = cloud_lower_bound(c, past);
	if (i < c->ncloud && kv_dot_eq(c->cloud[i], past))
		return UINT64_MAX;
	if (i > 0 && kv_actor_eq(c->cloud[i - 1].actor, actor))
		return c->cloud[i - 1].counter;
	return vv_get(c, actor);
}

/*
 * Puts the union of @a and @b (each sorted and duplicate-free, but not
 * necessarily normalized against each other) into @out in normal form. @out
 * is a fresh context; on -ENOMEM it is left empty.
 */
static int ctx_union(const struct kv_ctx_entry *avv, size_t anvv, const struct kv_dot *acl,
		     size_t ancl, const struct kv_ctx_entry *bvv, size_t bnvv,
		     const struct kv_dot *bcl, size_t bncl, struct kv_ctx *out)
{
	int err = -ENOMEM;
	struct kv_ctx_entry *vv = NULL;
	struct kv_ctx_entry *uvv = NULL;
	struct kv_dot *cloud = NULL;
	size_t nuvv = 0, nvv = 0, ncloud = 0, ncl = 0;

	/* Bounds: every input entry may become at most one output entry. */
	size_t vvcap = anvv + bnvv + ancl + bncl;
	size_t clcap = ancl + bncl;
	if (vvcap) {
		vv = calloc(vvcap, sizeof *vv);
		uvv = calloc(anvv + bnvv ? anvv + bnvv : 1, sizeof *uvv);
		if (!vv || !uvv)
			goto out;
	}
	if (clcap) {
		cloud = calloc(clcap, sizeof *cloud);
		if (!cloud)
			goto out;
	}

	/* Union of the vectors: per actor, the larger max. */
	size_t i = 0, j = 0;
	while (i < anvv || j < bnvv) {
		int r = i == anvv ? 1 : j == bnvv ? -1 : kv_actor_cmp(avv[i].actor, bvv[j].actor);
		if (r < 0) {
			uvv[nuvv++] = avv[i++];
		} else if (r > 0) {
			uvv[nuvv++] = bvv[j++];
		} else {
			uvv[nuvv] = avv[i];
			if (bvv[j].max > uvv[nuvv].max)
				uvv[nuvv].max = bvv[j].max;
			nuvv++;
			i++;
			j++;
		}
	}
	/* Union of the clouds, sorted, duplicates dropped. */
	i = j = 0;
	while (i < ancl || j < bncl) {
		int r = i == ancl ? 1 : j == bncl ? -1 : kv_dot_cmp(acl[i], bcl[j]);
		if (r <= 0) {
			cloud[ncl++] = acl[i++];
			if (r == 0)
				j++;
		} else {
			cloud[ncl++] = bcl[j++];
		}
	}

	/*
	 * Normalize, walking actors in order: cloud dots at or below the vector
	 * are dropped, a dot at max + 1 extends the vector, the rest stay. Once
	 * one dot stays, every later dot of that actor is above it and stays
	 * too, so the walk never revisits an emitted dot.
	 */
	i = j = 0;
	while (i < nuvv || j < ncl) {
		struct kv_actor actor;
		if (j == ncl || (i < nuvv && kv_actor_cmp(uvv[i].actor, cloud[j].actor) <= 0))
			actor = uvv[i].actor;
		else
			actor = cloud[j].actor;
		uint64_t max = 0;
		if (i < nuvv && kv_actor_eq(uvv[i].actor, actor))
			max = uvv[i++].max;
		for (; j < ncl && kv_actor_eq(cloud[j].actor, actor); j++) {
			uint64_t c = cloud[j].counter;
			if (c <= max)
				continue;
			if (c == max + 1)
				max = c;
			else
				cloud[ncloud++] = cloud[j]; /* ncloud <= j: in place */
		}
		if (max > 0) {
			vv[nvv].actor = actor;
			vv[nvv].max = max;
			nvv++;
		}
	}

	out->vv = vv;
	out->nvv = nvv;
	out->capvv = vvcap;
	out->cloud = cloud;
	out->ncloud = ncloud;
	out->capcloud = clcap;
	vv = NULL;
	cloud = NULL;
	err = 0;
out:
	free(uvv);
	free(vv);
	free(cloud);
	return err;
}

/* Replaces @dst with the union of @dst and the raw parts given. */
static int ctx_merge_raw(struct kv_ctx *dst, const struct kv_ctx_entry *vv, size_t nvv,
			 const struct kv_dot *cloud, size_t ncloud)
{
	struct kv_ctx u = KV_CTX_INIT;
	int err = ctx_union(dst->vv, dst->nvv, dst->cloud, dst->ncloud, vv, nvv, cloud, ncloud, &u);
	if (err)
		return err;
	kv_ctx_swap(dst, &u);
	kv_ctx_release(&u);
	return 0;
}

int kv_ctx_copy(struct kv_ctx *dst, const struct kv_ctx *src)
{
	if (dst == src)
		return 0;
	/*
	 * @src is normalized (dot.h), so it is its own union with nothing: a
	 * plain copy, into @dst's arrays when they are large enough (a put's
	 * and a join's contexts are copied several times per message).
	 */
	struct kv_ctx_entry *vv = dst->vv;
	struct kv_dot *cloud = dst->cloud;
	size_t capvv = dst->capvv, capcloud = dst->capcloud;
	bool new_vv = src->nvv > capvv, new_cloud = src->ncloud > capcloud;
	if (new_vv) {
		vv = malloc(src->nvv * sizeof *vv);
		if (!vv)
			return -ENOMEM;
		capvv = src->nvv;
	}
	if (new_cloud) {
		cloud = malloc(src->ncloud * sizeof *cloud);
		if (!cloud) {
			if (new_vv)
				free(vv);
			return -ENOMEM;
		}
		capcloud = src->ncloud;
	}
	if (new_vv)
		free(dst->vv);
	if (new_cloud)
		free(dst->cloud);
	if (src->nvv)
		memcpy(vv, src->vv, src->nvv * sizeof *vv);
	if (src->ncloud)
		memcpy(cloud, src->cloud, src->ncloud * sizeof *cloud);
	dst->vv = vv;
	dst->nvv = src->nvv;
	dst->capvv = capvv;
	dst->cloud = cloud;
	dst->ncloud = src->ncloud;
	dst->capcloud = capcloud;
	return 0;
}

int kv_ctx_add(struct kv_ctx *c, struct kv_dot dot)
{
	if (dot.counter == 0)
		return KV_EINVAL;
	if (kv_ctx_covers(c, dot))
		return 0;
	return ctx_merge_raw(c, NULL, 0, &dot, 1);
}

int kv_ctx_merge(struct kv_ctx *dst, const struct kv_ctx *src)
{
	/* Both normalized: with either side empty the union is the other. */
	if (src->nvv == 0 && src->ncloud == 0)
		return 0;
	if (dst->nvv == 0 && dst->ncloud == 0)
		return kv_ctx_copy(dst, src);
	return ctx_merge_raw(dst, src->vv, src->nvv, src->cloud, src->ncloud);
}

int kv_ctx_advance(struct kv_ctx *c, struct kv_dot through)
{
	if (through.counter == 0)
		return KV_EINVAL;
	bool found;
	size_t i = vv_find(c, through.actor, &found);
	if (found && c->vv[i].max >= through.counter)
		return 0;
	/*
	 * Without cloud dots (the usual context), raising or inserting one
	 * actor's max keeps the context normalized: done in place when the
	 * arrays have room (a put advances its context once per mint).
	 */
	if (c->ncloud == 0 && found) {
		c->vv[i].max = through.counter;
		return 0;
	}
	if (c->ncloud == 0 && c->nvv < c->capvv) {
		memmove(&c->vv[i + 1], &c->vv[i], (c->nvv - i) * sizeof *c->vv);
		c->vv[i] = (struct kv_ctx_entry){ through.actor, through.counter };
		c->nvv++;
		return 0;
	}
	struct kv_ctx_entry e = { through.actor, through.counter };
	return ctx_merge_raw(c, &e, 1, NULL, 0);
}

size_t kv_ctx_retire(struct kv_ctx *c, struct kv_actor actor)
{
	size_t removed = 0, w = 0;
	for (size_t i = 0; i < c->nvv; i++) {
		if (kv_actor_eq(c->vv[i].actor, actor))
			removed++;
		else
			c->vv[w++] = c->vv[i];
	}
	c->nvv = w;
	w = 0;
	for (size_t i = 0; i < c->ncloud; i++) {
		if (kv_actor_eq(c->cloud[i].actor, actor))
			removed++;
		else
			c->cloud[w++] = c->cloud[i];
	}
	c->ncloud = w;
	return removed;
}

bool kv_ctx_equal(const struct kv_ctx *a, const struct kv_ctx *b)
{
	if (a->nvv != b->nvv || a->ncloud != b->ncloud)
		return false;
	for (size_t i = 0; i < a->nvv; i++)
		if (!kv_actor_eq(a->vv[i].actor, b->vv[i].actor) || a->vv[i].max != b->vv[i].max)
			return false;
	for (size_t i = 0; i < a->ncloud; i++)
		if (!kv_dot_eq(a->cloud[i], b->cloud[i]))
			return false;
	return true;
}

static int put_varint(struct kv_buf *out, uint64_t v)
{
	return kv_buf_append_varint(out, v);
}

int kv_ctx_encode(const struct kv_ctx *c, struct kv_buf *out)
{
	size_t start = out->n;
	int err = put_varint(out, c->nvv);
	for (size_t i = 0; !err && i < c->nvv; i++) {
		err = put_varint(out, c->vv[i].actor.node);
		if (!err)
			err = put_varint(out, c->vv[i].actor.epoch);
		if (!err)
			err = put_varint(out, c->vv[i].max);
	}
	/* The cloud, grouped by actor; counters as gaps (doc/versions.md §6.2). */
	size_t ngroups = 0;
	for (size_t i = 0; i < c->ncloud; i++)
		if (i == 0 || !kv_actor_eq(c->cloud[i].actor, c->cloud[i - 1].actor))
			ngroups++;
	if (!err)
		err = put_varint(out, ngroups);
	size_t i = 0;
	while (!err && i < c->ncloud) {
		struct kv_actor actor = c->cloud[i].actor;
		size_t end = i;
		while (end < c->ncloud && kv_actor_eq(c->cloud[end].actor, actor))
			end++;
		err = put_varint(out, actor.node);
		if (!err)
			err = put_varint(out, actor.epoch);
		if (!err)
			err = put_varint(out, end - i);
		/* First gap from vv + 2 (a dot at vv + 1 would be folded). */
		uint64_t prev = vv_get(c, actor) + 1;
		for (; !err && i < end; i++) {
			err = put_varint(out, c->cloud[i].counter - prev - 1);
			prev = c->cloud[i].counter;
		}
	}
	if (err)
		out->n = start;
	return err;
}

int kv_ctx_decode_prefix(struct kv_slice in, struct kv_ctx *out)
{
	int err = KV_ECORRUPT;
	struct kv_rd r = { in.p, in.n };
	struct kv_ctx c = KV_CTX_INIT;
	uint64_t nvv, ngroups;

	/* Each vector entry takes at least 3 bytes: bound the count first. */
	if (kv_rd_varint(&r, &nvv) || nvv > KV_CTX_MAX_ACTORS || nvv > r.n / 3)
		goto out;
	if (nvv) {
		c.vv = calloc(nvv, sizeof *c.vv);
		if (!c.vv) {
			err = -ENOMEM;
			goto out;
		}
		c.capvv = nvv;
	}
	for (uint64_t k = 0; k < nvv; k++) {
		struct kv_ctx_entry e;
		if (kv_rd_u32(&r, &e.actor.node) || kv_rd_u32(&r, &e.actor.epoch) ||
		    kv_rd_varint(&r, &e.max) || e.max == 0)
			goto out;
		if (c.nvv && kv_actor_cmp(c.vv[c.nvv - 1].actor, e.actor) >= 0)
			goto out; /* unsorted or duplicate */
		c.vv[c.nvv++] = e;
	}

	/* Each group takes at least 4 bytes, each dot at least 1. */
	if (kv_rd_varint(&r, &ngroups) || ngroups > KV_CTX_MAX_ACTORS || ngroups > r.n / 4)
		goto out;
	for (uint64_t g = 0; g < ngroups; g++) {
		struct kv_actor actor;
		uint64_t ndots;
		if (kv_rd_u32(&r, &actor.node) || kv_rd_u32(&r, &actor.epoch) ||
		    kv_rd_varint(&r, &ndots) || ndots == 0 || ndots > r.n ||
		    ndots > KV_CTX_MAX_CLOUD - c.ncloud)
			goto out;
		if (c.ncloud && kv_actor_cmp(c.cloud[c.ncloud - 1].actor, actor) >= 0)
			goto out;
		if (c.ncloud + ndots > c.capcloud) {
			/* Doubling, but never past the bound or what the input can hold. */
			size_t need = c.ncloud + (size_t)ndots;
			size_t room = c.ncloud + r.n;
			size_t cap = c.capcloud * 2;
			if (cap > room)
				cap = room;
			if (cap > KV_CTX_MAX_CLOUD)
				cap = KV_CTX_MAX_CLOUD;
			if (cap < need)
				cap = need;
			struct kv_dot *p = realloc(c.cloud, cap * sizeof *p);
			if (!p) {
				err = -ENOMEM;
				goto out;
			}
			c.cloud = p;
			c.capcloud = cap;
		}
		uint64_t prev = vv_get(&c, actor);
		if (prev == UINT64_MAX)
			goto out;
		prev++;
		for (uint64_t k = 0; k < ndots; k++) {
			uint64_t gap;
			if (kv_rd_varint(&r, &gap))
				goto out;
			/* counter = prev + 1 + gap, without overflow. */
			if (prev == UINT64_MAX || gap > UINT64_MAX - prev - 1)
				goto out;
			prev = prev + 1 + gap;
			c.cloud[c.ncloud].actor = actor;
			c.cloud[c.ncloud].counter = prev;
			c.ncloud++;
		}
	}

	kv_ctx_swap(out, &c);
	err = (int)(in.n - r.n);
out:
	kv_ctx_release(&c);
	return err;
}

int kv_ctx_decode(struct kv_slice in, struct kv_ctx *out)
{
	struct kv_ctx c = KV_CTX_INIT;
	int used = kv_ctx_decode_prefix(in, &c);
	if (used >= 0 && (size_t)used != in.n)
		used = KV_ECORRUPT; /* trailing bytes */
	if (used >= 0)
		kv_ctx_swap(out, &c);
	kv_ctx_release(&c);
	return used < 0 ? used : 0;
}
