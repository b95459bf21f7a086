/*
 * iter.h - the forward iterator every layer of the engine speaks.
 *
 * Memtables, blocks, tables, the merge of many sources and the user-facing
 * database iterator all have this shape (LevelDB's Iterator, forward only).
 * An iterator starts unpositioned: call seek_first() or seek() before
 * anything else. key() and value() borrow bytes that stay valid until the
 * next seek/next or destroy. After an error valid() is false and status()
 * returns it (a negative errno or KV_ECORRUPT); status() is 0 otherwise.
 */
#ifndef KV_LSM_ITER_H
#define KV_LSM_ITER_H

#include <stdbool.h>

#include "util/slice.h"

struct kv_iter;

struct kv_iter_ops {
	bool (*valid)(struct kv_iter *it);
	void (*seek_first)(struct kv_iter *it);
	/* Positions at the first entry whose key is >= @target. */
	void (*seek)(struct kv_iter *it, struct kv_slice target);
	void (*next)(struct kv_iter *it); /* requires valid() */
	struct kv_slice (*key)(struct kv_iter *it);   /* requires valid() */
	struct kv_slice (*value)(struct kv_iter *it); /* requires valid() */
	int (*status)(struct kv_iter *it);
	void (*destroy)(struct kv_iter *it);
};

struct kv_iter {
	const struct kv_iter_ops *ops;
};

static inline bool kv_iter_valid(struct kv_iter *it) { return it->ops->valid(it); }
static inline void kv_iter_seek_first(struct kv_iter *it) { it->ops->seek_first(it); }
static inline void kv_iter_seek(struct kv_iter *it, struct kv_slice t) { it->ops->seek(it, t); }
static inline void kv_iter_next(struct kv_iter *it) { it->ops->next(it); }
static inline struct kv_slice kv_iter_key(struct kv_iter *it) { return it->ops->key(it); }
static inline struct kv_slice kv_iter_value(struct kv_iter *it) { return it->ops->value(it); }
static inline int kv_iter_status(struct kv_iter *it) { return it->ops->status(it); }
static inline void kv_iter_destroy(struct kv_iter *it)
{
	if (it)
		it->ops->destroy(it);
}

/* A key comparator: <0, 0, >0 like memcmp. */
typedef int (*kv_cmp_fn)(struct kv_slice a, struct kv_slice b);

#endif
