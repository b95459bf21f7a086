/*
 * skiplist.c - the lock-free-read skiplist (see skiplist.h for the contract).
 *
 * Memory ordering: a node's key, payload and next pointers are written with
 * plain or relaxed stores, then the node is published at each level by a
 * release store into its predecessor's next pointer. Readers load next
 * pointers with acquire, so whatever they reach is complete. max_height is
 * only a hint: a reader that sees a raised height before the head links the
 * new levels finds NULL there and simply drops a level.
 *
 * The writer keeps the last node of every level (tail[]), so appending a key
 * larger than all others (bulk loads, ranges streamed in order) costs one
 * comparison instead of a search.
 */
#include "lsm/skiplist.h"

#include <assert.h>
#include <errno.h>
#include <stdalign.h>

struct kv_skiplist_node {
	const uint8_t *key; /* set before the node is linked, then immutable */
	uint32_t key_len;
	uint8_t height;     /* levels in next[]; 1..KV_SKIPLIST_MAX_HEIGHT */
	/* next[i]: successor at level i; release-stored, acquire-loaded. */
	_Atomic(struct kv_skiplist_node *) next[];
};

#define NODE_HEADER offsetof(struct kv_skiplist_node, next)
#define NODE_ALIGN alignof(struct kv_skiplist_node)

static inline struct kv_slice node_key(const struct kv_skiplist_node *n)
{
	return kv_slice_make(n->key, n->key_len);
}

static inline struct kv_skiplist_node *next_acquire(const struct kv_skiplist_node *n, int level)
{
	return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

static inline size_t node_size(int height)
{
	return NODE_HEADER + (size_t)height * sizeof(_Atomic(struct kv_skiplist_node *));
}

/* Height 1 always; each further level with probability 1/KV_SKIPLIST_BRANCHING. */
static int random_height(struct kv_skiplist *sl)
{
	static_assert(KV_SKIPLIST_BRANCHING == 4, "two random bits per level");
	uint64_t r = kv_rng_next(&sl->rng);
	int height = 1;
	while (height < KV_SKIPLIST_MAX_HEIGHT && (r & 3) == 0) {
		height++;
		r >>= 2;
	}
	return height;
}

/* The probe used when the target is itself a key. */
struct key_probe {
	kv_cmp_fn cmp;
	struct kv_slice target;
};

static int key_probe_cmp(struct kv_slice key, const void *probe)
{
	const struct key_probe *kp = probe;
	return kp->cmp(key, kp->target);
}

/*
 * The first node whose key is >= the probe, or NULL. When @prev is set,
 * prev[i] receives the last node before the probe at each level in use.
 * Always inlined so that with key_probe_cmp the compiler calls the list's
 * comparator directly.
 */
static inline __attribute__((always_inline)) struct kv_skiplist_node *
find_ge(const struct kv_skiplist *sl, kv_skiplist_probe_fn fn, const void *probe,
	struct kv_skiplist_node **prev)
{
	struct kv_skiplist_node *x = sl->head;
	int level = atomic_load_explicit(&sl->max_height, memory_order_relaxed) - 1;
	/* A node already known to be >= the probe: no need to compare it again. */
	const struct kv_skiplist_node *known_ge = NULL;

	for (;;) {
		struct kv_skiplist_node *next = next_acquire(x, level);
		if (next && next != known_ge && fn(node_key(next), probe) < 0) {
			x = next;
			continue;
		}
		if (prev)
			prev[level] = x;
		if (level == 0)
			return next;
		known_ge = next;
		level--;
	}
}

int kv_skiplist_init(struct kv_skiplist *sl, struct kv_arena *arena, kv_cmp_fn cmp,
		     uint64_t seed)
{
	struct kv_skiplist_node *head =
		kv_arena_alloc_aligned(arena, node_size(KV_SKIPLIST_MAX_HEIGHT), NODE_ALIGN);
	if (!head)
		return -ENOMEM;
	head->key = NULL;
	head->key_len = 0;
	head->height = KV_SKIPLIST_MAX_HEIGHT;
	for (int i = 0; i < KV_SKIPLIST_MAX_HEIGHT; i++) {
		atomic_init(&head->next[i], NULL);
		sl->tail[i] = head;
	}
	sl->cmp = cmp;
	sl->arena = arena;
	sl->head = head;
	atomic_init(&sl->max_height, 1);
	kv_rng_seed(&sl->rng, seed);
	return 0;
}

void *kv_skiplist_alloc_node(struct kv_skiplist *sl, size_t payload,
			     struct kv_skiplist_node **node)
{
	int height = random_height(sl);
	size_t header = node_size(height);
	if (payload > SIZE_MAX - header)
		return NULL;
	struct kv_skiplist_node *n = kv_arena_alloc_aligned(sl->arena, header + payload, NODE_ALIGN);
	if (!n)
		return NULL;
	n->height = (uint8_t)height;
	*node = n;
	return (uint8_t *)n + header;
}

int kv_skiplist_insert(struct kv_skiplist *sl, struct kv_skiplist_node *node,
		       struct kv_slice key)
{
	assert(key.n <= KV_SKIPLIST_MAX_KEY);
	struct kv_skiplist_node *prev[KV_SKIPLIST_MAX_HEIGHT];
	int height = node->height;
	int max_height = atomic_load_explicit(&sl->max_height, memory_order_relaxed);

	node->key = key.p;
	node->key_len = (uint32_t)key.n;

	struct kv_skiplist_node *last = sl->tail[0];
	if (last == sl->head || sl->cmp(node_key(last), key) < 0) {
		/* Larger than every key: the tails are the predecessors. */
		for (int i = 0; i < height; i++)
			prev[i] = sl->tail[i];
	} else {
		struct key_probe kp = { sl->cmp, key };
		struct kv_skiplist_node *ge = find_ge(sl, key_probe_cmp, &kp, prev);
		if (ge && sl->cmp(node_key(ge), key) == 0)
			return 0;
		for (int i = max_height; i < height; i++)
			prev[i] = sl->head;
	}

	if (height > max_height) {
		/*
		 * Readers may see the new height before the head links this
		 * node at those levels; they then find NULL and go down a level.
		 */
		atomic_store_explicit(&sl->max_height, height, memory_order_relaxed);
	}

	for (int i = 0; i < height; i++) {
		struct kv_skiplist_node *succ =
			atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed);
		atomic_store_explicit(&node->next[i], succ, memory_order_relaxed);
		/* Publishes the node (key, payload, next[i]) at level i. */
		atomic_store_explicit(&prev[i]->next[i], node, memory_order_release);
		if (!succ)
			sl->tail[i] = node;
	}
	return 1;
}

bool kv_skiplist_contains(const struct kv_skiplist *sl, struct kv_slice key)
{
	struct key_probe kp = { sl->cmp, key };
	struct kv_skiplist_node *ge = find_ge(sl, key_probe_cmp, &kp, NULL);
	return ge && sl->cmp(node_key(ge), key) == 0;
}

void kv_skiplist_iter_init(struct kv_skiplist_iter *it, const struct kv_skiplist *sl)
{
	it->list = sl;
	it->node = NULL;
}

struct kv_slice kv_skiplist_iter_key(const struct kv_skiplist_iter *it)
{
	assert(it->node);
	return node_key(it->node);
}

void kv_skiplist_iter_next(struct kv_skiplist_iter *it)
{
	assert(it->node);
	it->node = next_acquire(it->node, 0);
}

void kv_skiplist_iter_seek_first(struct kv_skiplist_iter *it)
{
	it->node = next_acquire(it->list->head, 0);
}

void kv_skiplist_iter_seek(struct kv_skiplist_iter *it, struct kv_slice target)
{
	struct key_probe kp = { it->list->cmp, target };
	it->node = find_ge(it->list, key_probe_cmp, &kp, NULL);
}

void kv_skiplist_iter_seek_probe(struct kv_skiplist_iter *it, kv_skiplist_probe_fn fn,
				 const void *probe)
{
	it->node = find_ge(it->list, fn, probe, NULL);
}
