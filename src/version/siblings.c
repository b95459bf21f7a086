/*
 * siblings.c - sibling sets: join, discard, put, order, encoding (see
 * siblings.h). Model, rules and encoding: doc/versions.md.
 *
 * Every change first allocates whatever it needs (new arrays, copies of
 * bytes, the new context) and only then, when nothing can fail, installs the
 * result; so a failed call leaves the set as it was.
 */
#include "version/siblings.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/coding.h"
#include "util/error.h"
#include "version/codec_int.h"

/* Smallest encoded version: dot 3, timestamp 8, request id 16, flags 1, two lengths. */
#define MIN_VERSION_BYTES (3 + 8 + KV_REQUEST_ID_LEN + 1 + 1 + 1)
#define FLAG_TOMBSTONE 0x01

void kv_dvv_limits_default(struct kv_dvv_limits *lim)
{
	lim->max_value = KV_DVV_MAX_VALUE_DEFAULT;
	lim->max_meta = KV_DVV_MAX_META_DEFAULT;
	lim->max_siblings = KV_DVV_MAX_SIBLINGS;
}

void kv_dvv_init(struct kv_dvv *s)
{
	kv_ctx_init(&s->ctx);
	s->v = NULL;
	s->n = 0;
	s->cap = 0;
}

void kv_dvv_release(struct kv_dvv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].storage);
	free(s->v);
	kv_ctx_release(&s->ctx);
	kv_dvv_init(s);
}

void kv_dvv_swap(struct kv_dvv *a, struct kv_dvv *b)
{
	struct kv_dvv t = *a;
	*a = *b;
	*b = t;
}

/*
 * Makes @dst a version with @hdr's dot, timestamp, request id and flag and
 * its own copy of @meta and @body. Returns 0 or -ENOMEM (then @dst is unset).
 */
static int version_fill(struct kv_version *dst, const struct kv_version *hdr,
			struct kv_slice meta, struct kv_slice body)
{
	uint8_t *p = NULL;
	if (meta.n + body.n) {
		p = malloc(meta.n + body.n);
		if (!p)
			return -ENOMEM;
		if (meta.n)
			memcpy(p, meta.p, meta.n);
		if (body.n)
			memcpy(p + meta.n, body.p, body.n);
	}
	dst->dot = hdr->dot;
	dst->timestamp_ns = hdr->timestamp_ns;
	memcpy(dst->request_id, hdr->request_id, KV_REQUEST_ID_LEN);
	dst->tombstone = hdr->tombstone;
	dst->storage = p;
	dst->meta = kv_slice_make(p, meta.n);
	dst->body = p ? kv_slice_make(p + meta.n, body.n) : kv_slice_make(NULL, 0);
	return 0;
}

static int version_copy(struct kv_version *dst, const struct kv_version *src)
{
	return version_fill(dst, src, src->meta, src->body);
}

int kv_dvv_copy(struct kv_dvv *dst, const struct kv_dvv *src)
{
	if (dst == src)
		return 0;
	int err = -ENOMEM;
	struct kv_dvv t = KV_DVV_INIT;
	if (src->n) {
		t.v = calloc(src->n, sizeof *t.v);
		if (!t.v)
			goto out;
		t.cap = src->n;
	}
	for (; t.n < src->n; t.n++)
		if (version_copy(&t.v[t.n], &src->v[t.n]))
			goto out;
	err = kv_ctx_copy(&t.ctx, &src->ctx);
	if (err)
		goto out;
	kv_dvv_swap(dst, &t);
out:
	kv_dvv_release(&t);
	return err;
}

int kv_version_cmp(const struct kv_version *a, const struct kv_version *b)
{
	if (a->timestamp_ns != b->timestamp_ns)
		return a->timestamp_ns < b->timestamp_ns ? -1 : 1;
	int r = memcmp(a->request_id, b->request_id, KV_REQUEST_ID_LEN);
	if (r)
		return r < 0 ? -1 : 1;
	if (a->tombstone != b->tombstone)
		return a->tombstone ? 1 : -1;
	r = kv_slice_cmp(a->meta, b->meta);
	if (r)
		return r < 0 ? -1 : 1;
	r = kv_slice_cmp(a->body, b->body);
	return r < 0 ? -1 : r > 0;
}

bool kv_version_same_content(const struct kv_version *a, const struct kv_version *b)
{
	return a->tombstone == b->tombstone && kv_slice_eq(a->meta, b->meta) &&
	       kv_slice_eq(a->body, b->body);
}

int kv_version_display_cmp(const struct kv_version *a, const struct kv_version *b)
{
	if (a->timestamp_ns != b->timestamp_ns)
		return a->timestamp_ns < b->timestamp_ns ? -1 : 1;
	return kv_dot_cmp(a->dot, b->dot);
}

/* Index of the first version whose dot is not below @dot. */
static size_t version_lower_bound(const struct kv_dvv *s, struct kv_dot dot)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (kv_dot_cmp(s->v[mid].dot, dot) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct kv_version *kv_dvv_find(const struct kv_dvv *s, struct kv_dot dot)
{
	size_t i = version_lower_bound(s, dot);
	return i < s->n && kv_dot_eq(s->v[i].dot, dot) ? &s->v[i] : NULL;
}

static bool request_id_is_none(const uint8_t id[KV_REQUEST_ID_LEN])
{
	for (size_t i = 0; i < KV_REQUEST_ID_LEN; i++)
		if (id[i])
			return false;
	return true;
}

const struct kv_version *kv_dvv_find_request(const struct kv_dvv *s,
					     const uint8_t id[KV_REQUEST_ID_LEN])
{
	if (request_id_is_none(id))
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		if (memcmp(s->v[i].request_id, id, KV_REQUEST_ID_LEN) == 0)
			return &s->v[i];
	return NULL;
}

/* Where a surviving version of a join comes from. */
struct pick {
	bool from_src;
	size_t idx;
};

static int dvv_join(struct kv_dvv *dst, struct kv_dvv *src, bool take)
{
	int err = -ENOMEM;
	struct kv_ctx ctx = KV_CTX_INIT;
	struct pick *picks = NULL;
	bool *keep = NULL;
	struct kv_version *nv = NULL;
	size_t np = 0, filled = 0;

	if (dst == src)
		return 0; /* idempotent */
	picks = malloc((dst->n + src->n + 1) * sizeof *picks);
	keep = calloc(dst->n + 1, sizeof *keep);
	if (!picks || !keep)
		goto out;

	/* Both arrays are sorted by dot: walk them together (doc/versions.md §3.1). */
	size_t i = 0, j = 0;
	while (i < dst->n || j < src->n) {
		int r = i == dst->n ? 1 : j == src->n ? -1 : kv_dot_cmp(dst->v[i].dot, src->v[j].dot);
		if (r < 0) {
			if (!kv_ctx_covers(&src->ctx, dst->v[i].dot))
				picks[np++] = (struct pick){ false, i };
			i++;
		} else if (r > 0) {
			if (!kv_ctx_covers(&dst->ctx, src->v[j].dot))
				picks[np++] = (struct pick){ true, j };
			j++;
		} else {
			/* Both hold the dot: the same version, unless something is broken. */
			if (kv_version_cmp(&src->v[j], &dst->v[i]) < 0)
				picks[np++] = (struct pick){ true, j };
			else
				picks[np++] = (struct pick){ false, i };
			i++;
			j++;
		}
	}
	if (np > KV_DVV_MAX_VERSIONS) {
		err = KV_ESIBLINGS;
		goto out;
	}

	err = kv_ctx_copy(&ctx, &dst->ctx);
	if (!err)
		err = kv_ctx_merge(&ctx, &src->ctx);
	if (err)
		goto out;

	err = -ENOMEM;
	if (np) {
		nv = calloc(np, sizeof *nv);
		if (!nv)
			goto out;
	}
	for (; filled < np; filled++) {
		const struct pick *pk = &picks[filled];
		if (!pk->from_src) {
			nv[filled] = dst->v[pk->idx];
			keep[pk->idx] = true;
		} else if (take) {
			nv[filled] = src->v[pk->idx];
		} else if (version_copy(&nv[filled], &src->v[pk->idx])) {
			goto out;
		}
	}

	/* Nothing can fail from here on: install. */
	for (size_t k = 0; k < dst->n; k++)
		if (!keep[k])
			free(dst->v[k].storage);
	free(dst->v);
	dst->v = nv;
	dst->n = np;
	dst->cap = np;
	kv_ctx_swap(&dst->ctx, &ctx);
	if (take) {
		for (size_t k = 0; k < np; k++)
			if (picks[k].from_src)
				src->v[picks[k].idx].storage = NULL;
		kv_dvv_release(src);
	}
	nv = NULL;
	filled = 0;
	err = 0;
out:
	if (nv) {
		for (size_t k = 0; k < filled; k++)
			if (picks[k].from_src && !take)
				free(nv[k].storage);
		free(nv);
	}
	kv_ctx_release(&ctx);
	free(keep);
	free(picks);
	return err;
}

int kv_dvv_join(struct kv_dvv *dst, const struct kv_dvv *src)
{
	/* Not taking: @src is only read. */
	return dvv_join(dst, (struct kv_dvv *)src, false);
}

int kv_dvv_join_take(struct kv_dvv *dst, struct kv_dvv *src)
{
	return dvv_join(dst, src, true);
}

/* Drops (and frees) the versions that @ctx covers; returns how many. */
static size_t drop_covered(struct kv_dvv *s, const struct kv_ctx *ctx)
{
	size_t w = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (kv_ctx_covers(ctx, s->v[i].dot))
			free(s->v[i].storage);
		else
			s->v[w++] = s->v[i];
	}
	size_t dropped = s->n - w;
	s->n = w;
	return dropped;
}

int kv_dvv_discard(struct kv_dvv *s, const struct kv_ctx *ctx)
{
	struct kv_ctx merged = KV_CTX_INIT;
	int err = kv_ctx_copy(&merged, &s->ctx);
	if (!err)
		err = kv_ctx_merge(&merged, ctx);
	if (!err) {
		err = (int)drop_covered(s, ctx);
		kv_ctx_swap(&s->ctx, &merged);
	}
	kv_ctx_release(&merged);
	return err;
}

int kv_dvv_hide_tombstones(struct kv_dvv *s, bool keep_meta)
{
	const struct kv_version *keep = NULL;
	if (keep_meta && kv_dvv_live_count(s) == 0)
		for (size_t i = 0; i < s->n; i++) {
			const struct kv_version *v = &s->v[i];
			if (v->meta.n > 0 &&
			    (keep == NULL || v->timestamp_ns > keep->timestamp_ns ||
			     (v->timestamp_ns == keep->timestamp_ns &&
			      kv_dot_cmp(v->dot, keep->dot) > 0)))
				keep = v;
		}
	struct kv_ctx drop = KV_CTX_INIT;
	int err = 0;
	for (size_t i = 0; !err && i < s->n; i++)
		if (s->v[i].tombstone && &s->v[i] != keep)
			err = kv_ctx_add(&drop, s->v[i].dot);
	if (!err && !kv_ctx_is_empty(&drop))
		err = kv_dvv_discard(s, &drop) < 0 ? -ENOMEM : 0;
	kv_ctx_release(&drop);
	return err;
}

int kv_dvv_put(struct kv_dvv *s, const struct kv_dvv_write *w, struct kv_actor self,
	       struct kv_counter *counter, const struct kv_dvv_limits *lim, struct kv_dot *dot)
{
	static const struct kv_ctx empty = KV_CTX_INIT;
	struct kv_dvv_limits defaults;
	struct kv_ctx ctx = KV_CTX_INIT;
	struct kv_version nv;
	bool filled = false;
	int err;

	if (!lim) {
		kv_dvv_limits_default(&defaults);
		lim = &defaults;
	}
	const struct kv_ctx *K = w->context ? w->context : &empty;

	/* A retry returns the dot of its first attempt (DESIGN §4 "Idempotent retries"). */
	const struct kv_version *prev = kv_dvv_find_request(s, w->request_id);
	if (prev) {
		*dot = prev->dot;
		return 1;
	}

	/* Limits (DESIGN §4 "Limits"). */
	if (w->tombstone && w->body.n)
		return KV_EINVAL;
	if (w->body.n > lim->max_value || w->body.n > KV_DVV_MAX_BODY ||
	    w->meta.n > lim->max_meta || w->meta.n > KV_DVV_MAX_META)
		return KV_ETOOBIG;
	size_t survivors = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!kv_ctx_covers(K, s->v[i].dot))
			survivors++;
	if (survivors + 1 > lim->max_siblings || survivors + 1 > KV_DVV_MAX_VERSIONS)
		return KV_ESIBLINGS;

	uint64_t c;
	err = kv_counter_peek(counter, &c);
	if (err)
		return err;
	/* A dot already mentioned would be born covered: a lost write. */
	if (c <= kv_ctx_max(&s->ctx, self) || c <= kv_ctx_max(K, self))
		return KV_EINVAL;
	struct kv_dot minted = { self, c };

	/*
	 * The new context: what the set saw, what the client saw, and every dot
	 * of @self up to the new one. The jump is sound because only @self
	 * mints its dots and this replica holds all it minted for this key
	 * (doc/versions.md §3.4).
	 */
	err = kv_ctx_copy(&ctx, &s->ctx);
	if (!err)
		err = kv_ctx_merge(&ctx, K);
	if (!err)
		err = kv_ctx_advance(&ctx, minted);
	if (err)
		goto out;

	struct kv_version hdr = { .dot = minted, .timestamp_ns = w->timestamp_ns,
				  .tombstone = w->tombstone };
	memcpy(hdr.request_id, w->request_id, KV_REQUEST_ID_LEN);
	err = version_fill(&nv, &hdr, w->meta, w->body);
	if (err)
		goto out;
	filled = true;

	if (s->n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4;
		struct kv_version *p = realloc(s->v, cap * sizeof *p);
		if (!p) {
			err = -ENOMEM;
			goto out;
		}
		s->v = p;
		s->cap = cap;
	}

	/* Nothing can fail from here on. */
	err = kv_counter_next(counter, &c);
	assert(err == 0 && c == minted.counter);
	drop_covered(s, K);
	size_t at = version_lower_bound(s, minted);
	memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof *s->v);
	s->v[at] = nv;
	s->n++;
	filled = false;
	kv_ctx_swap(&s->ctx, &ctx);
	*dot = minted;
	err = 0;
out:
	if (filled)
		free(nv.storage);
	kv_ctx_release(&ctx);
	return err;
}

static int display_qsort_cmp(const void *a, const void *b)
{
	const struct kv_version *const *x = a;
	const struct kv_version *const *y = b;
	return kv_version_display_cmp(*x, *y);
}

size_t kv_dvv_display(const struct kv_dvv *s, unsigned flags, const struct kv_version **out)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].tombstone || (flags & KV_DVV_SHOW_TOMBSTONES))
			out[n++] = &s->v[i];
	if (n > 1)
		qsort(out, n, sizeof *out, display_qsort_cmp);
	if (flags & KV_DVV_SHOW_DUPLICATES)
		return n;
	/* Keep the first of each group of equal contents (DESIGN §4: shown once). */
	size_t kept = 0;
	for (size_t k = 0; k < n; k++) {
		bool dup = false;
		for (size_t m = 0; m < kept && !dup; m++)
			dup = kv_version_same_content(out[m], out[k]);
		if (!dup)
			out[kept++] = out[k];
	}
	return kept;
}

int kv_dvv_context_of(const struct kv_dvv *s, struct kv_dot dot, struct kv_ctx *out)
{
	const struct kv_version *shown = kv_dvv_find(s, dot);
	if (!shown)
		return KV_ENOTFOUND;
	struct kv_ctx ctx = KV_CTX_INIT;
	int err = 0;
	for (size_t i = 0; i < s->n && !err; i++)
		if (kv_version_same_content(&s->v[i], shown))
			err = kv_ctx_add(&ctx, s->v[i].dot);
	if (!err)
		kv_ctx_swap(out, &ctx);
	kv_ctx_release(&ctx);
	return err;
}

size_t kv_dvv_live_count(const struct kv_dvv *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += !s->v[i].tombstone;
	return n;
}

bool kv_dvv_tombstone_only(const struct kv_dvv *s)
{
	return kv_dvv_live_count(s) == 0;
}

int kv_dvv_retire(struct kv_dvv *s, struct kv_actor actor)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_actor_eq(s->v[i].dot.actor, actor))
			return KV_EBUSY;
	return (int)kv_ctx_retire(&s->ctx, actor);
}

bool kv_dvv_equal(const struct kv_dvv *a, const struct kv_dvv *b)
{
	if (a->n != b->n || !kv_ctx_equal(&a->ctx, &b->ctx))
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!kv_dot_eq(a->v[i].dot, b->v[i].dot) || kv_version_cmp(&a->v[i], &b->v[i]))
			return false;
	return true;
}

int kv_dvv_encode(const struct kv_dvv *s, struct kv_buf *out)
{
	size_t start = out->n;
	int err = kv_buf_append_u8(out, KV_DVV_FORMAT);
	if (!err)
		err = kv_ctx_encode(&s->ctx, out);
	if (!err)
		err = kv_buf_append_varint(out, s->n);
	for (size_t i = 0; !err && i < s->n; i++) {
		const struct kv_version *v = &s->v[i];
		err = kv_dot_encode(v->dot, out);
		if (!err)
			err = kv_buf_append_le64(out, (uint64_t)v->timestamp_ns);
		if (!err)
			err = kv_buf_append(out, v->request_id, KV_REQUEST_ID_LEN);
		if (!err)
			err = kv_buf_append_u8(out, v->tombstone ? FLAG_TOMBSTONE : 0);
		if (!err)
			err = kv_buf_append_lenbytes(out, v->meta);
		if (!err)
			err = kv_buf_append_lenbytes(out, v->body);
	}
	if (err)
		out->n = start;
	return err;
}

/* kv_dvv_decode() and kv_dvv_decode_heads(): @heads leaves bodies out. */
static int dvv_decode(struct kv_slice in, struct kv_dvv *out, bool heads)
{
	int err = KV_ECORRUPT;
	struct kv_dvv s = KV_DVV_INIT;
	struct kv_rd r = { in.p, in.n };
	const uint8_t *fmt;
	uint64_t nver;

	if (kv_rd_bytes(&r, 1, &fmt))
		goto out;
	if (*fmt != KV_DVV_FORMAT) {
		err = KV_EVERSION;
		goto out;
	}
	int used = kv_ctx_decode_prefix(kv_slice_make(r.p, r.n), &s.ctx);
	if (used < 0) {
		err = used;
		goto out;
	}
	r.p += used;
	r.n -= (size_t)used;

	/* Bound the count by the bytes left before allocating for it. */
	if (kv_rd_varint(&r, &nver) || nver > KV_DVV_MAX_VERSIONS || nver > r.n / MIN_VERSION_BYTES)
		goto out;
	if (nver) {
		s.v = calloc(nver, sizeof *s.v);
		if (!s.v) {
			err = -ENOMEM;
			goto out;
		}
		s.cap = nver;
	}
	for (uint64_t k = 0; k < nver; k++) {
		struct kv_version hdr;
		const uint8_t *p;
		uint64_t meta_len, body_len;
		const uint8_t *meta, *body;

		used = kv_dot_decode_prefix(kv_slice_make(r.p, r.n), &hdr.dot);
		if (used < 0)
			goto out;
		r.p += used;
		r.n -= (size_t)used;
		if (kv_rd_bytes(&r, 8, &p))
			goto out;
		hdr.timestamp_ns = (int64_t)kv_get_le64(p);
		if (kv_rd_bytes(&r, KV_REQUEST_ID_LEN, &p))
			goto out;
		memcpy(hdr.request_id, p, KV_REQUEST_ID_LEN);
		if (kv_rd_bytes(&r, 1, &p) || (*p & ~FLAG_TOMBSTONE))
			goto out;
		hdr.tombstone = *p & FLAG_TOMBSTONE;
		if (kv_rd_varint(&r, &meta_len) || meta_len > KV_DVV_MAX_META ||
		    kv_rd_bytes(&r, (size_t)meta_len, &meta))
			goto out;
		if (kv_rd_varint(&r, &body_len) || body_len > KV_DVV_MAX_BODY ||
		    kv_rd_bytes(&r, (size_t)body_len, &body))
			goto out;
		if (hdr.tombstone && body_len)
			goto out;
		if (s.n && kv_dot_cmp(s.v[s.n - 1].dot, hdr.dot) >= 0)
			goto out; /* unsorted or duplicate */
		if (!kv_ctx_covers(&s.ctx, hdr.dot))
			goto out; /* the context must cover every version */
		if (heads)
			body_len = 0; /* validated above, not copied */
		if (version_fill(&s.v[s.n], &hdr, kv_slice_make(meta, (size_t)meta_len),
				 kv_slice_make(body, (size_t)body_len))) {
			err = -ENOMEM;
			goto out;
		}
		s.n++;
	}
	if (r.n != 0)
		goto out; /* trailing bytes */
	kv_dvv_swap(out, &s);
	err = 0;
out:
	kv_dvv_release(&s);
	return err;
}

int kv_dvv_decode(struct kv_slice in, struct kv_dvv *out)
{
	return dvv_decode(in, out, false);
}

int kv_dvv_decode_heads(struct kv_slice in, struct kv_dvv *out)
{
	return dvv_decode(in, out, true);
}
