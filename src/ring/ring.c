/*
 * ring.c - the token ring and preference lists (see ring.h).
 *
 * Rules: doc/placement.md, DESIGN §3. The ring is a sorted array of tokens
 * with a parallel array of owners; a position is found by binary search and a
 * preference list by walking the array clockwise. Everything a walk needs
 * (replica group, rack, quotas) is precomputed per node, so a walk touches two
 * arrays and the caller's output, and allocates nothing.
 */
#include "ring/ring.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring/keys.h"
#include "util/checksum.h"
#include "util/error.h"

#define NO_GROUP (-1)

struct kv_ring {
	struct kv_ring_replicas rule;
	uint32_t n;         /* N: the rule's replica count */
	uint32_t n_reach;   /* replicas a list can have: sum of group_reach */
	uint32_t n_nodes;
	uint32_t n_data_nodes; /* nodes with holds_data */
	size_t n_tokens;
	struct kv_ring_node *nodes; /* sorted by id */
	int32_t *node_group;        /* replica group of each node, or NO_GROUP */
	uint64_t *tokens;           /* ascending */
	uint32_t *token_node;       /* owner of each token */
	/*
	 * Replica groups: the whole ring (a rule without DCs) or the rule's DCs
	 * in rule order. Per group: replicas wanted, replicas possible (the
	 * wanted count, or fewer when the group has fewer nodes), and racks.
	 */
	uint32_t n_groups;
	uint32_t group_quota[KV_RING_MAX_DCS];
	uint32_t group_reach[KV_RING_MAX_DCS];
	uint32_t group_racks[KV_RING_MAX_DCS];
	char *names; /* ids, dcs and racks, NUL-terminated, one block */
};

/* ---- replica rules -------------------------------------------------- */

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* A node id, dc or rack name: 1..KV_RING_NAME_MAX name characters. */
static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || n > KV_RING_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(s[i]))
			return false;
	return true;
}

static bool valid_cstr_name(const char *s)
{
	size_t n = strnlen(s, KV_RING_NAME_MAX + 1);
	return valid_name(s, n);
}

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Parses decimal digits at *pp into *out (at most 9 digits); 0 or -1. */
static int parse_count(const char **pp, uint32_t *out)
{
	const char *p = *pp;
	uint32_t v = 0;
	int digits = 0;
	while (*p >= '0' && *p <= '9') {
		if (++digits > 9)
			return -1;
		v = v * 10 + (uint32_t)(*p - '0');
		p++;
	}
	if (digits == 0)
		return -1;
	*pp = p;
	*out = v;
	return 0;
}

int kv_ring_replicas_parse(struct kv_ring_replicas *out, const char *spec)
{
	struct kv_ring_replicas r;
	memset(&r, 0, sizeof r);
	int err = KV_EINVAL;
	const char *p = skip_blanks(spec);
	if (*p >= '0' && *p <= '9') { /* "3": N anywhere */
		if (parse_count(&p, &r.n) < 0)
			goto out;
		if (*skip_blanks(p) != '\0')
			goto out;
	} else {
		for (;;) { /* "dc1:3,dc2:2" */
			p = skip_blanks(p);
			const char *name = p;
			while (is_name_char(*p))
				p++;
			size_t name_len = (size_t)(p - name);
			if (!valid_name(name, name_len) || r.n_dcs == KV_RING_MAX_DCS)
				goto out;
			p = skip_blanks(p);
			if (*p++ != ':')
				goto out;
			p = skip_blanks(p);
			struct kv_ring_dc_count *dc = &r.dcs[r.n_dcs];
			if (parse_count(&p, &dc->count) < 0 || dc->count > KV_RING_MAX_REPLICAS)
				goto out;
			memcpy(dc->dc, name, name_len);
			dc->dc[name_len] = '\0';
			for (uint32_t i = 0; i < r.n_dcs; i++)
				if (strcmp(r.dcs[i].dc, dc->dc) == 0)
					goto out; /* a DC named twice */
			r.n += dc->count;
			r.n_dcs++;
			p = skip_blanks(p);
			if (*p == '\0')
				break;
			if (*p++ != ',')
				goto out;
		}
	}
	if (r.n == 0 || r.n > KV_RING_MAX_REPLICAS)
		goto out;
	err = 0;
out:
	if (err)
		memset(out, 0, sizeof *out);
	else
		*out = r;
	return err;
}

int kv_ring_replicas_format(const struct kv_ring_replicas *r, char *buf, size_t cap)
{
	size_t len = 0;
	int w;
	if (r->n_dcs == 0) {
		w = snprintf(buf, cap, "%u", (unsigned)r->n);
		if (w < 0 || (size_t)w >= cap)
			return KV_ETOOBIG;
		return w;
	}
	if (cap > 0)
		buf[0] = '\0';
	for (uint32_t i = 0; i < r->n_dcs; i++) {
		if (len >= cap)
			return KV_ETOOBIG;
		w = snprintf(buf + len, cap - len, "%s%s:%u", i ? "," : "", r->dcs[i].dc,
			     (unsigned)r->dcs[i].count);
		if (w < 0 || (size_t)w >= cap - len)
			return KV_ETOOBIG;
		len += (size_t)w;
	}
	return (int)len;
}

void kv_ring_config_init(struct kv_ring_config *cfg, uint32_t n)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->replicas.n = n;
	cfg->tokens_per_weight = KV_RING_DEFAULT_TOKENS;
}

/* ---- building a ring ------------------------------------------------- */

uint64_t kv_ring_token_of(const char *id, uint32_t index)
{
	uint8_t buf[KV_RING_NAME_MAX + 4];
	size_t n = strnlen(id, KV_RING_NAME_MAX);
	memcpy(buf, id, n);
	buf[n] = (uint8_t)(index >> 24);
	buf[n + 1] = (uint8_t)(index >> 16);
	buf[n + 2] = (uint8_t)(index >> 8);
	buf[n + 3] = (uint8_t)index;
	return kv_hash64(buf, n + 4);
}

static const char *tag(const char *s)
{
	return s ? s : "";
}

static int cmp_member_id(const void *a, const void *b)
{
	const struct kv_ring_member *ma = *(const struct kv_ring_member *const *)a;
	const struct kv_ring_member *mb = *(const struct kv_ring_member *const *)b;
	return strcmp(ma->id, mb->id);
}

static int cmp_node_rack(const void *a, const void *b)
{
	const struct kv_ring_node *na = *(const struct kv_ring_node *const *)a;
	const struct kv_ring_node *nb = *(const struct kv_ring_node *const *)b;
	int c = strcmp(na->dc, nb->dc);
	return c ? c : strcmp(na->rack, nb->rack);
}

struct token_entry {
	uint64_t token;
	uint32_t node;
};

static int cmp_token(const void *a, const void *b)
{
	const struct token_entry *ta = a;
	const struct token_entry *tb = b;
	if (ta->token != tb->token)
		return ta->token < tb->token ? -1 : 1;
	/* Equal tokens (a 2^-64 event) go to the smaller id first, the same on
	 * every node. */
	return ta->node < tb->node ? -1 : ta->node > tb->node;
}

/* Checks the rule and the token setting of @cfg. */
static int check_config(const struct kv_ring_config *cfg)
{
	const struct kv_ring_replicas *r = &cfg->replicas;
	if (r->n == 0 || r->n > KV_RING_MAX_REPLICAS || r->n_dcs > KV_RING_MAX_DCS)
		return KV_EINVAL;
	if (cfg->tokens_per_weight > KV_RING_MAX_NODE_TOKENS)
		return KV_ETOOBIG;
	if (r->n_dcs == 0)
		return 0;
	uint32_t sum = 0;
	for (uint32_t i = 0; i < r->n_dcs; i++) {
		if (!valid_cstr_name(r->dcs[i].dc) || r->dcs[i].count > KV_RING_MAX_REPLICAS)
			return KV_EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(r->dcs[i].dc, r->dcs[j].dc) == 0)
				return KV_EINVAL;
		sum += r->dcs[i].count;
	}
	return sum == r->n ? 0 : KV_EINVAL;
}

/* Checks @m and works out its weight and token count. */
static int check_member(const struct kv_ring_member *m, uint32_t tokens_per_weight,
			double *weight, uint32_t *tokens)
{
	if (!m->id || !valid_cstr_name(m->id))
		return KV_EINVAL;
	if ((m->dc && m->dc[0] && !valid_cstr_name(m->dc)) ||
	    (m->rack && m->rack[0] && !valid_cstr_name(m->rack)))
		return KV_EINVAL;
	double w = m->weight == 0 ? 1.0 : m->weight;
	if (!isfinite(w) || w <= 0)
		return KV_EINVAL;
	if (m->tokens) {
		if (m->tokens > KV_RING_MAX_NODE_TOKENS)
			return KV_ETOOBIG;
		*tokens = m->tokens;
	} else {
		double t = round((double)tokens_per_weight * w);
		if (t > KV_RING_MAX_NODE_TOKENS)
			return KV_ETOOBIG;
		*tokens = t < 1 ? 1 : (uint32_t)t;
	}
	*weight = w;
	return 0;
}

/* Gives every (dc, rack) pair a dense index, in name order. */
static int assign_racks(struct kv_ring *ring)
{
	if (ring->n_nodes == 0)
		return 0;
	struct kv_ring_node **by_rack = malloc(ring->n_nodes * sizeof *by_rack);
	if (!by_rack)
		return -ENOMEM;
	for (uint32_t i = 0; i < ring->n_nodes; i++)
		by_rack[i] = &ring->nodes[i];
	qsort(by_rack, ring->n_nodes, sizeof *by_rack, cmp_node_rack);
	uint32_t rack = 0;
	for (uint32_t i = 0; i < ring->n_nodes; i++) {
		if (i > 0 && cmp_node_rack(&by_rack[i - 1], &by_rack[i]) != 0)
			rack++;
		by_rack[i]->rack_index = rack;
	}
	free(by_rack);
	return 0;
}

/* Sorts nodes into replica groups and counts what each group can reach. */
static int assign_groups(struct kv_ring *ring)
{
	const struct kv_ring_replicas *r = &ring->rule;
	ring->n_groups = r->n_dcs ? r->n_dcs : 1;
	if (r->n_dcs == 0)
		ring->group_quota[0] = r->n;
	for (uint32_t g = 0; g < r->n_dcs; g++)
		ring->group_quota[g] = r->dcs[g].count;

	uint32_t members[KV_RING_MAX_DCS] = { 0 };
	for (uint32_t i = 0; i < ring->n_nodes; i++) {
		int32_t group = r->n_dcs ? NO_GROUP : 0;
		for (uint32_t g = 0; g < r->n_dcs; g++)
			if (strcmp(ring->nodes[i].dc, r->dcs[g].dc) == 0 && r->dcs[g].count > 0)
				group = (int32_t)g;
		ring->node_group[i] = group;
		ring->nodes[i].holds_data = group != NO_GROUP;
		if (group != NO_GROUP) {
			members[group]++;
			ring->n_data_nodes++;
		}
	}

	/* Racks per group: rack indices are dense, so one bitmap covers them. */
	uint8_t *seen = calloc(ring->n_nodes ? ring->n_nodes : 1, 1);
	if (!seen)
		return -ENOMEM;
	for (uint32_t g = 0; g < ring->n_groups; g++) {
		memset(seen, 0, ring->n_nodes ? ring->n_nodes : 1);
		uint32_t racks = 0;
		for (uint32_t i = 0; i < ring->n_nodes; i++) {
			uint32_t rack = ring->nodes[i].rack_index;
			if (ring->node_group[i] == (int32_t)g && !seen[rack]) {
				seen[rack] = 1;
				racks++;
			}
		}
		ring->group_racks[g] = racks;
		ring->group_reach[g] =
			members[g] < ring->group_quota[g] ? members[g] : ring->group_quota[g];
		ring->n_reach += ring->group_reach[g];
	}
	free(seen);
	return 0;
}

static int build_tokens(struct kv_ring *ring)
{
	if (ring->n_tokens == 0)
		return 0;
	struct token_entry *all = malloc(ring->n_tokens * sizeof *all);
	if (!all)
		return -ENOMEM;
	size_t k = 0;
	for (uint32_t i = 0; i < ring->n_nodes; i++) {
		for (uint32_t t = 0; t < ring->nodes[i].n_tokens; t++) {
			all[k].token = kv_ring_token_of(ring->nodes[i].id, t);
			all[k].node = i;
			k++;
		}
	}
	qsort(all, ring->n_tokens, sizeof *all, cmp_token);
	for (size_t i = 0; i < ring->n_tokens; i++) {
		ring->tokens[i] = all[i].token;
		ring->token_node[i] = all[i].node;
	}
	free(all);
	return 0;
}

/* Copies @s into the name block at *pp; returns the copy. */
static const char *copy_name(char **pp, const char *s)
{
	char *dst = *pp;
	size_t n = strlen(s) + 1;
	memcpy(dst, s, n);
	*pp = dst + n;
	return dst;
}

int kv_ring_new(struct kv_ring **out, const struct kv_ring_config *cfg,
		const struct kv_ring_member *members, size_t n_members)
{
	struct kv_ring *ring = NULL;
	const struct kv_ring_member **sorted = NULL;
	uint32_t tpw = cfg->tokens_per_weight ? cfg->tokens_per_weight : KV_RING_DEFAULT_TOKENS;
	int err = check_config(cfg);
	if (err)
		goto out;
	if (n_members > KV_RING_MAX_NODES) {
		err = KV_ETOOBIG;
		goto out;
	}
	err = -ENOMEM;
	ring = calloc(1, sizeof *ring);
	if (!ring)
		goto out;
	ring->rule = cfg->replicas;
	ring->n = cfg->replicas.n;
	ring->n_nodes = (uint32_t)n_members;
	size_t alloc_nodes = n_members ? n_members : 1;
	ring->nodes = calloc(alloc_nodes, sizeof *ring->nodes);
	ring->node_group = calloc(alloc_nodes, sizeof *ring->node_group);
	sorted = malloc(alloc_nodes * sizeof *sorted);
	if (!ring->nodes || !ring->node_group || !sorted)
		goto out;

	/* The ring depends on the set of members, not their order. */
	size_t name_bytes = 0;
	for (size_t i = 0; i < n_members; i++) {
		double weight;
		uint32_t tokens;
		err = check_member(&members[i], tpw, &weight, &tokens);
		if (err)
			goto out;
		sorted[i] = &members[i];
		name_bytes += strlen(members[i].id) + strlen(tag(members[i].dc)) +
			      strlen(tag(members[i].rack)) + 3;
	}
	qsort(sorted, n_members, sizeof *sorted, cmp_member_id);
	for (size_t i = 1; i < n_members; i++) {
		if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
			err = KV_EINVAL;
			goto out;
		}
	}

	err = -ENOMEM;
	ring->names = malloc(name_bytes ? name_bytes : 1);
	if (!ring->names)
		goto out;
	char *np = ring->names;
	for (size_t i = 0; i < n_members; i++) {
		struct kv_ring_node *node = &ring->nodes[i];
		err = check_member(sorted[i], tpw, &node->weight, &node->n_tokens);
		if (err)
			goto out; /* cannot happen: every member passed above */
		node->id = copy_name(&np, sorted[i]->id);
		node->dc = copy_name(&np, tag(sorted[i]->dc));
		node->rack = copy_name(&np, tag(sorted[i]->rack));
		ring->n_tokens += node->n_tokens;
	}
	if (ring->n_tokens > KV_RING_MAX_TOKENS) {
		err = KV_ETOOBIG;
		goto out;
	}

	err = -ENOMEM;
	size_t alloc_tokens = ring->n_tokens ? ring->n_tokens : 1;
	ring->tokens = malloc(alloc_tokens * sizeof *ring->tokens);
	ring->token_node = malloc(alloc_tokens * sizeof *ring->token_node);
	if (!ring->tokens || !ring->token_node)
		goto out;
	err = assign_racks(ring);
	if (err)
		goto out;
	err = assign_groups(ring);
	if (err)
		goto out;
	err = build_tokens(ring);
out:
	free(sorted);
	if (err) {
		kv_ring_free(ring);
		ring = NULL;
	}
	*out = ring;
	return err;
}

void kv_ring_free(struct kv_ring *ring)
{
	if (!ring)
		return;
	free(ring->nodes);
	free(ring->node_group);
	free(ring->tokens);
	free(ring->token_node);
	free(ring->names);
	free(ring);
}

/* ---- queries --------------------------------------------------------- */

uint32_t kv_ring_n(const struct kv_ring *ring)
{
	return ring->n;
}

const struct kv_ring_replicas *kv_ring_rule(const struct kv_ring *ring)
{
	return &ring->rule;
}

uint32_t kv_ring_node_count(const struct kv_ring *ring)
{
	return ring->n_nodes;
}

const struct kv_ring_node *kv_ring_node(const struct kv_ring *ring, uint32_t idx)
{
	return idx < ring->n_nodes ? &ring->nodes[idx] : NULL;
}

int kv_ring_find(const struct kv_ring *ring, const char *id)
{
	uint32_t lo = 0;
	uint32_t hi = ring->n_nodes;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ring->nodes[mid].id, id);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return KV_ENOTFOUND;
}

size_t kv_ring_token_count(const struct kv_ring *ring)
{
	return ring->n_tokens;
}

void kv_ring_token_at(const struct kv_ring *ring, size_t i, uint64_t *token, uint32_t *node)
{
	*token = ring->tokens[i];
	*node = ring->token_node[i];
}

size_t kv_ring_token_index(const struct kv_ring *ring, uint64_t pos)
{
	/* Lower bound: the first token >= pos, so token i owns
	 * (token[i-1], token[i]] and the first of equal tokens wins. */
	size_t lo = 0;
	size_t hi = ring->n_tokens;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ring->tokens[mid] < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == ring->n_tokens ? 0 : lo;
}

static bool holds(const uint32_t *set, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == v)
			return true;
	return false;
}

/*
 * State of one preference-list walk. Racks in use and deferred nodes are
 * bounded by N, so everything fits on the stack.
 */
struct walk {
	uint32_t taken[KV_RING_MAX_DCS];
	uint32_t racks_used[KV_RING_MAX_DCS];
	uint32_t deferred_in[KV_RING_MAX_DCS];
	uint32_t used_racks[KV_RING_MAX_REPLICAS];
	uint32_t n_used_racks;
	uint32_t deferred[KV_RING_MAX_REPLICAS];
	uint32_t n_deferred;
};

/* Moves group @g's deferred nodes, oldest first, to the list while the group
 * wants more; drops the rest of them. */
static void drain(const struct kv_ring *ring, struct walk *w, int32_t g, uint32_t *out,
		  size_t *count, size_t want)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < w->n_deferred; i++) {
		uint32_t node = w->deferred[i];
		if (ring->node_group[node] != g) {
			w->deferred[kept++] = node;
			continue;
		}
		if (w->taken[g] < ring->group_reach[g] && *count < want) {
			out[(*count)++] = node;
			w->taken[g]++;
		}
	}
	w->n_deferred = kept;
	w->deferred_in[g] = 0;
}

/*
 * The preference list from token index @start (DESIGN §3): the first
 * distinct nodes clockwise, each group filled to its quota, a node on a
 * rack its group already uses passed over (deferred) while the group has
 * unused racks. Writes at most @cap; returns the count.
 */
static size_t walk_preflist(const struct kv_ring *ring, size_t start, uint32_t *out, size_t cap)
{
	size_t want = ring->n_reach < cap ? ring->n_reach : cap;
	size_t count = 0;
	if (ring->n_tokens == 0 || want == 0)
		return 0;
	struct walk w;
	for (uint32_t g = 0; g < ring->n_groups; g++)
		w.taken[g] = w.racks_used[g] = w.deferred_in[g] = 0;
	w.n_used_racks = 0;
	w.n_deferred = 0;
	size_t t = start;
	for (size_t step = 0; step < ring->n_tokens && count < want; step++) {
		uint32_t node = ring->token_node[t];
		if (++t == ring->n_tokens)
			t = 0;
		int32_t g = ring->node_group[node];
		if (g == NO_GROUP || w.taken[g] == ring->group_reach[g])
			continue;
		if (holds(out, count, node) || holds(w.deferred, w.n_deferred, node))
			continue;
		uint32_t rack = ring->nodes[node].rack_index;
		bool all_racks_used = w.racks_used[g] == ring->group_racks[g];
		if (!all_racks_used && !holds(w.used_racks, w.n_used_racks, rack)) {
			out[count++] = node;
			w.taken[g]++;
			w.used_racks[w.n_used_racks++] = rack;
			if (++w.racks_used[g] == ring->group_racks[g])
				drain(ring, &w, g, out, &count, want);
		} else if (all_racks_used) {
			out[count++] = node;
			w.taken[g]++;
		} else if (w.deferred_in[g] < ring->group_reach[g] - w.taken[g]) {
			/* Only the first (reach - taken) deferred nodes can ever
			 * be drained into the list; later ones are not kept. */
			w.deferred[w.n_deferred++] = node;
			w.deferred_in[g]++;
		}
	}
	/* A safety net: within one turn every rack of a group is met, and
	 * meeting the last one drains the group, so nothing is left here. */
	for (uint32_t g = 0; g < ring->n_groups && w.n_deferred; g++)
		drain(ring, &w, (int32_t)g, out, &count, want);
	return count;
}

int kv_ring_preflist(const struct kv_ring *ring, uint64_t pos, uint32_t *out, size_t cap)
{
	if (ring->n_tokens == 0)
		return 0;
	return (int)walk_preflist(ring, kv_ring_token_index(ring, pos), out, cap);
}

int kv_ring_preflist_key(const struct kv_ring *ring, struct kv_slice key, uint32_t *out,
			 size_t cap)
{
	return kv_ring_preflist(ring, kv_key_position(key), out, cap);
}

int kv_ring_preflist_ext(const struct kv_ring *ring, uint64_t pos, uint32_t *out, size_t cap,
			 size_t *n_pref)
{
	*n_pref = 0;
	if (ring->n_tokens == 0)
		return 0;
	size_t start = kv_ring_token_index(ring, pos);
	size_t count = walk_preflist(ring, start, out, cap);
	*n_pref = count;
	size_t want = ring->n_data_nodes < cap ? ring->n_data_nodes : cap;
	size_t t = start;
	for (size_t step = 0; step < ring->n_tokens && count < want; step++) {
		uint32_t node = ring->token_node[t];
		if (++t == ring->n_tokens)
			t = 0;
		if (ring->nodes[node].holds_data && !holds(out, count, node))
			out[count++] = node;
	}
	return (int)count;
}

bool kv_ring_is_replica(const struct kv_ring *ring, uint64_t pos, uint32_t node)
{
	uint32_t preflist[KV_RING_MAX_REPLICAS];
	int n = kv_ring_preflist(ring, pos, preflist, KV_RING_MAX_REPLICAS);
	return holds(preflist, (size_t)n, node);
}

bool kv_ring_range_contains(const struct kv_ring_range *range, uint64_t pos)
{
	if (range->start == range->end)
		return true;
	if (range->start < range->end)
		return pos > range->start && pos <= range->end;
	return pos > range->start || pos <= range->end;
}

/*
 * The range owned by token @i: (token[i-1], token[i]], wrapping for i == 0.
 * Returns false when it is empty (a repeated token); *whole is set when it is
 * the whole circle (every token equal).
 */
static bool token_range(const struct kv_ring *ring, size_t i, uint64_t *start, bool *whole)
{
	uint64_t prev = ring->tokens[i ? i - 1 : ring->n_tokens - 1];
	*start = prev;
	*whole = false;
	if (prev != ring->tokens[i])
		return true;
	if (i != 0)
		return false;
	*whole = true; /* tokens are sorted: first == last means all equal */
	return true;
}

static bool same_list(const struct kv_ring_range *r, const uint32_t *list, uint32_t n)
{
	return r->n_replicas == n && memcmp(r->replicas, list, n * sizeof *list) == 0;
}

int kv_ring_ranges(const struct kv_ring *ring, uint32_t node, bool primary_only,
		   struct kv_ring_range **out, size_t *n_out)
{
	struct kv_ring_range *ranges = NULL;
	size_t n = 0;
	size_t cap = 0;
	int err = 0;
	bool last_adjacent = false; /* the last range ends where token i starts */
	if (node != KV_RING_ALL_NODES && node >= ring->n_nodes) {
		err = KV_EINVAL;
		goto out;
	}
	for (size_t i = 0; i < ring->n_tokens; i++) {
		uint64_t start;
		bool whole;
		if (!token_range(ring, i, &start, &whole))
			continue; /* empty: the range before it stays adjacent */
		uint32_t list[KV_RING_MAX_REPLICAS];
		uint32_t len = (uint32_t)walk_preflist(ring, i, list, KV_RING_MAX_REPLICAS);
		bool mine = node == KV_RING_ALL_NODES ||
			    (primary_only ? len > 0 && list[0] == node : holds(list, len, node));
		if (!mine) {
			last_adjacent = false;
			continue;
		}
		if (last_adjacent && same_list(&ranges[n - 1], list, len)) {
			ranges[n - 1].end = ring->tokens[i];
			continue;
		}
		if (n == cap) {
			size_t new_cap = cap ? cap * 2 : 16;
			struct kv_ring_range *grown = realloc(ranges, new_cap * sizeof *grown);
			if (!grown) {
				err = -ENOMEM;
				goto out;
			}
			ranges = grown;
			cap = new_cap;
		}
		struct kv_ring_range *r = &ranges[n++];
		memset(r, 0, sizeof *r);
		r->start = whole ? ring->tokens[i] : start;
		r->end = ring->tokens[i];
		r->n_replicas = len;
		memcpy(r->replicas, list, len * sizeof *list);
		last_adjacent = true;
	}
	/* Join the last range to the first when they meet at the wrap point. */
	if (n > 1 && last_adjacent && ranges[0].start == ranges[n - 1].end &&
	    ranges[n - 1].end == ring->tokens[ring->n_tokens - 1] &&
	    same_list(&ranges[0], ranges[n - 1].replicas, ranges[n - 1].n_replicas)) {
		ranges[0].start = ranges[n - 1].start;
		n--;
	}
out:
	if (err || n == 0) {
		free(ranges);
		ranges = NULL;
		n = 0;
	}
	*out = ranges;
	*n_out = n;
	return err;
}

int kv_ring_ownership(const struct kv_ring *ring, double *primary, double *replica)
{
	const double circle = 18446744073709551616.0; /* 2^64 */
	if (primary)
		memset(primary, 0, ring->n_nodes * sizeof *primary);
	if (replica)
		memset(replica, 0, ring->n_nodes * sizeof *replica);
	for (size_t i = 0; i < ring->n_tokens; i++) {
		uint64_t start;
		bool whole;
		if (!token_range(ring, i, &start, &whole))
			continue;
		double share = whole ? 1.0 : (double)(ring->tokens[i] - start) / circle;
		uint32_t list[KV_RING_MAX_REPLICAS];
		size_t len = walk_preflist(ring, i, list, KV_RING_MAX_REPLICAS);
		if (primary && len > 0)
			primary[list[0]] += share;
		for (size_t k = 0; replica && k < len; k++)
			replica[list[k]] += share;
	}
	return 0;
}
