/*
 * merge.h - iterators that combine other iterators.
 *
 * The merging iterator yields the union of its children in comparator order
 * (a binary heap; equal keys come out child by child in the order the
 * children were given, so put newer sources first). The engine merges the
 * memtables, level-0 tables and one concatenating iterator per deeper level.
 */
#ifndef KV_LSM_MERGE_H
#define KV_LSM_MERGE_H

#include <stddef.h>

#include "lsm/iter.h"

/*
 * A merging iterator over @n children. Takes ownership of the children (and
 * destroys them with itself) and of nothing else; @children is copied.
 * Returns NULL on allocation failure, after destroying the children.
 */
struct kv_iter *kv_merge_iter_new(kv_cmp_fn cmp, struct kv_iter **children, size_t n);

/* An iterator over nothing; status() returns @status (0 or an error). */
struct kv_iter *kv_empty_iter_new(int status);

#endif
