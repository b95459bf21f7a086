/*
 * checker.c - the simulator's checker: true causal history, lost writes,
 * invented siblings, dot reuse, replica convergence (checker.h).
 */
#include "checker.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version/dot.h"

static void fail(struct checker *c, const char *fmt, ...)
{
	if (c->failed)
		return;
	c->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
}

void chk_init(struct checker *c, int nkeys)
{
	memset(c, 0, sizeof *c);
	c->nkeys = nkeys;
	c->final = calloc((size_t)nkeys, sizeof *c->final);
	c->final_done = calloc((size_t)nkeys, sizeof *c->final_done);
	if (c->final == NULL || c->final_done == NULL)
		abort();
	for (int k = 0; k < nkeys; k++)
		kv_dvv_init(&c->final[k]);
	c->bykey = calloc((size_t)nkeys, sizeof *c->bykey);
	c->nbykey = calloc((size_t)nkeys, sizeof *c->nbykey);
	c->capbykey = calloc((size_t)nkeys, sizeof *c->capbykey);
	if (c->bykey == NULL || c->nbykey == NULL || c->capbykey == NULL)
		abort();
}

void chk_release(struct checker *c)
{
	for (size_t i = 0; i < c->nputs; i++)
		kv_ctx_release(&c->puts[i].seen);
	free(c->puts);
	for (int k = 0; k < c->nkeys; k++)
		kv_dvv_release(&c->final[k]);
	free(c->final);
	free(c->final_done);
	for (int k = 0; k < c->nkeys; k++)
		free(c->bykey[k]);
	free(c->bykey);
	free(c->nbykey);
	free(c->capbykey);
	free(c->dots);
	memset(c, 0, sizeof *c);
}

size_t chk_put_issued(struct checker *c, int key, const char *body, int side,
		      const struct kv_ctx *seen, uint32_t w)
{
	if (c->nputs == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->puts = realloc(c->puts, c->cap * sizeof *c->puts);
		if (c->puts == NULL)
			abort();
	}
	struct chk_put *p = &c->puts[c->nputs];
	memset(p, 0, sizeof *p);
	p->key = key;
	snprintf(p->body, sizeof p->body, "%s", body);
	p->side = side;
	kv_ctx_init(&p->seen);
	if (seen != NULL && kv_ctx_copy(&p->seen, seen) != 0)
		abort();
	p->state = CHK_PUT_PENDING;
	p->w = w;
	if (key < 0 || key >= c->nkeys)
		abort();
	if (c->nbykey[key] == c->capbykey[key]) {
		c->capbykey[key] = c->capbykey[key] ? 2 * c->capbykey[key] : 32;
		c->bykey[key] = realloc(c->bykey[key], c->capbykey[key] * sizeof *c->bykey[key]);
		if (c->bykey[key] == NULL)
			abort();
	}
	c->bykey[key][c->nbykey[key]++] = c->nputs;
	return c->nputs++;
}

static size_t dot_hash(struct kv_dot d)
{
	uint64_t h = ((uint64_t)d.actor.node << 32 | d.actor.epoch) * 0x9e3779b97f4a7c15ull;
	h ^= d.counter * 0xbf58476d1ce4e5b9ull;
	return (size_t)(h ^ (h >> 31));
}

/* Records acked put @put's dot; returns the index of an earlier put with the same dot, or -1. */
static long dot_record(struct checker *c, size_t put)
{
	if (2 * (c->ndots + 1) > c->capdots) {
		size_t ncap = c->capdots ? 2 * c->capdots : 256;
		size_t *nd = calloc(ncap, sizeof *nd);
		if (nd == NULL)
			abort();
		for (size_t i = 0; i < c->capdots; i++) {
			if (c->dots[i] == 0)
				continue;
			size_t j = dot_hash(c->puts[c->dots[i] - 1].dot) & (ncap - 1);
			while (nd[j] != 0)
				j = (j + 1) & (ncap - 1);
			nd[j] = c->dots[i];
		}
		free(c->dots);
		c->dots = nd;
		c->capdots = ncap;
	}
	struct kv_dot d = c->puts[put].dot;
	size_t j = dot_hash(d) & (c->capdots - 1);
	while (c->dots[j] != 0) {
		if (kv_dot_eq(c->puts[c->dots[j] - 1].dot, d))
			return (long)(c->dots[j] - 1);
		j = (j + 1) & (c->capdots - 1);
	}
	c->dots[j] = put + 1;
	c->ndots++;
	return -1;
}

void chk_put_acked(struct checker *c, size_t put, struct kv_dot dot)
{
	struct chk_put *p = &c->puts[put];
	if (p->state != CHK_PUT_PENDING)
		fail(c, "put %s answered twice", p->body);
	p->state = CHK_PUT_ACKED;
	p->dot = dot;
	p->acked_seq = ++c->ack_seq;
	c->puts_acked++;
	/* Dot reuse: another acked put of any key with the same dot. */
	long other = dot_record(c, put);
	if (other >= 0)
		fail(c, "dot (%u,%u,%llu) acknowledged for two puts: %s and %s", dot.actor.node,
		     dot.actor.epoch, (unsigned long long)dot.counter, c->puts[other].body, p->body);
}

void chk_put_failed(struct checker *c, size_t put)
{
	struct chk_put *p = &c->puts[put];
	if (p->state != CHK_PUT_PENDING)
		fail(c, "put %s answered twice", p->body);
	p->state = CHK_PUT_FAILED;
	c->puts_failed++;
}

void chk_get_done(struct checker *c, bool ok)
{
	if (ok)
		c->gets_ok++;
	else
		c->gets_failed++;
}

uint64_t chk_get_begin(const struct checker *c)
{
	return c->ack_seq;
}

void chk_get_reply(struct checker *c, int key, uint32_t r, uint64_t snapshot,
		   const struct kv_ctx *ctx)
{
	for (size_t j = 0; j < c->nbykey[key]; j++) {
		const struct chk_put *p = &c->puts[c->bykey[key][j]];
		if (p->state != CHK_PUT_ACKED || p->acked_seq > snapshot ||
		    p->w + r <= c->n)
			continue;
		c->fresh_checked++;
		if (!kv_ctx_covers(ctx, p->dot))
			fail(c, "key %d: stale read: R=%u read misses %s (W=%u, N=%u) acked before it",
			     key, r, p->body, p->w, c->n);
	}
}

void chk_final_read(struct checker *c, int key, const struct kv_dvv *set)
{
	if (kv_dvv_copy(&c->final[key], set) != 0)
		abort();
	c->final_done[key] = true;
}

void chk_replicas(struct checker *c, int key, const struct kv_slice *enc, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (!kv_slice_eq(enc[0], enc[i])) {
			c->diverged++;
			fail(c, "key %d: replica 0 and replica %zu hold different sets (%zu vs %zu bytes)",
			     key, i, enc[0].n, enc[i].n);
			return;
		}
}

const struct chk_put *chk_find_body(const struct checker *c, int key, struct kv_slice body)
{
	if (key < 0 || key >= c->nkeys)
		return NULL;
	for (size_t j = 0; j < c->nbykey[key]; j++) {
		const struct chk_put *p = &c->puts[c->bykey[key][j]];
		if (kv_slice_eq(kv_slice_str(p->body), body))
			return p;
	}
	return NULL;
}

/* True when some put of @key (acked only, or any) carried a context covering @dot. */
static bool covered_by_put(const struct checker *c, int key, struct kv_dot dot, bool acked_only)
{
	for (size_t j = 0; j < c->nbykey[key]; j++) {
		const struct chk_put *q = &c->puts[c->bykey[key][j]];
		if (acked_only && q->state != CHK_PUT_ACKED)
			continue;
		if (kv_ctx_covers(&q->seen, dot))
			return true;
	}
	return false;
}

bool chk_verify(struct checker *c)
{
	for (size_t i = 0; i < c->nputs; i++)
		if (c->puts[i].state == CHK_PUT_PENDING)
			fail(c, "put %s never answered (no reply, no timeout)", c->puts[i].body);
	for (int k = 0; k < c->nkeys; k++) {
		if (!c->final_done[k]) {
			fail(c, "key %d: no final read", k);
			continue;
		}
		const struct kv_dvv *s = &c->final[k];
		/* No invented sibling; acked bodies carry their acked dot. */
		for (size_t v = 0; v < s->n; v++) {
			const struct chk_put *p = chk_find_body(c, k, s->v[v].body);
			if (p == NULL) {
				fail(c, "key %d: invented sibling \"%.*s\"", k, (int)s->v[v].body.n,
				     (const char *)s->v[v].body.p);
				continue;
			}
			/* The same put under a second dot: minted twice, by two
			 * coordinators (doc/node.md "Put": a forward timed out while
			 * the first coordinator's answer was lost). A duplicate, not
			 * an invention; whether the acked dot survived is the loss
			 * check's business below. */
			if (p->state == CHK_PUT_ACKED && !kv_dot_eq(p->dot, s->v[v].dot))
				c->duplicates++;
		}
		/* No acknowledged write lost. */
		for (size_t j = 0; j < c->nbykey[k]; j++) {
			const struct chk_put *p = &c->puts[c->bykey[k][j]];
			if (p->state != CHK_PUT_ACKED)
				continue;
			c->checked++;
			const struct kv_version *v = kv_dvv_find(s, p->dot);
			if (v != NULL) {
				if (!kv_slice_eq(v->body, kv_slice_str(p->body)))
					fail(c, "key %d: dot of %s holds \"%.*s\" (dot reused)", k,
					     p->body, (int)v->body.n, (const char *)v->body.p);
				continue;
			}
			if (covered_by_put(c, k, p->dot, true)) {
				c->superseded++;
				continue;
			}
			/* A failed put may still have reached replicas (DESIGN §3:
			 * "the write may still have reached some replicas"). */
			if (covered_by_put(c, k, p->dot, false)) {
				c->superseded_unacked++;
				continue;
			}
			fail(c, "key %d: LOST acknowledged write %s dot (%u,%u,%llu)%s", k, p->body,
			     p->dot.actor.node, p->dot.actor.epoch, (unsigned long long)p->dot.counter,
			     kv_ctx_covers(&s->ctx, p->dot) ? " (discarded: final context covers it)"
							    : " (never reached the final read)");
		}
	}
	return !c->failed;
}
