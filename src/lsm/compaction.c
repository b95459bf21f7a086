/*
 * compaction.c - leveled compaction (see lsm.h, DESIGN §6).
 *
 * Why leveled: kvfs reads far more often than it overwrites whole keys, and a
 * point read should touch at most one table per level (plus level 0).
 * Leveled compaction bounds space amplification to about 1.1x and read
 * amplification to the number of levels, at the price of more write
 * amplification than size-tiered; the block cache and bloom filters then
 * make a miss cost one bloom probe per level. Size-tiered would suit
 * write-once chunk data better; chunk keys may move to key-value separation
 * later (DESIGN §6, WiscKey).
 *
 * Scores: level 0 by table count (l0_compaction_trigger), deeper levels by
 * bytes (level1_bytes × level_multiplier^(L-1)); the highest score >= 1 is
 * compacted. Level 0 is compacted whole into level 1; a deeper level
 * compacts one table (round robin over the key space) with the tables of the
 * next level it overlaps. A single table that overlaps nothing below is
 * moved by a manifest edit alone.
 *
 * What is dropped (LevelDB's rules): an entry shadowed by a newer entry of
 * the same key that every snapshot sees; a delete marker that every
 * snapshot sees and below which no older entry of its key can exist (no
 * deeper level holds the key). kvfs tombstones are values here: purging them
 * is the node's decision, not the engine's.
 */
#include "lsm/db_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/merge.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

static uint64_t max_bytes_for_level(const struct kv_lsm *db, int level)
{
	uint64_t b = db->opt.level1_bytes;
	for (int l = 1; l < level; l++)
		b *= db->opt.level_multiplier;
	return b;
}

/* The level most in need of compaction and its score (mu held). */
static double best_score(struct kv_lsm *db, int *level)
{
	const struct kv_version *v = db->current;
	double best = (double)v->nfiles[0] / db->opt.l0_compaction_trigger;
	*level = 0;
	for (int l = 1; l < KV_LSM_LEVELS - 1; l++) {
		double s = (double)kv_version_level_bytes(v, l) / (double)max_bytes_for_level(db, l);
		if (s > best) {
			best = s;
			*level = l;
		}
	}
	return best;
}

bool kv_db_needs_compaction(struct kv_lsm *db)
{
	int level;
	return !db->shutting_down && best_score(db, &level) >= 1.0;
}

struct compaction {
	int level;                     /* inputs[0] come from here */
	int out_level;
	struct kv_file_meta **inputs[2];
	size_t ninputs[2];
	struct kv_version *v;          /* the version the inputs were picked from */
	uint64_t smallest_snapshot;
	/* Drop state, for keep(). */
	struct kv_buf cur_ukey;
	bool has_cur;
	uint64_t last_seq_for_key;
	uint64_t dropped;
	bool manual;                   /* rewrite every input, even alone */
};

static void compaction_release(struct compaction *c)
{
	for (int i = 0; i < 2; i++) {
		for (size_t j = 0; j < c->ninputs[i]; j++)
			kv_file_meta_unref(c->inputs[i][j]);
		free(c->inputs[i]);
	}
	if (c->v)
		kv_version_unref(c->v);
	kv_buf_release(&c->cur_ukey);
}

static int add_input(struct compaction *c, int which, struct kv_file_meta *f)
{
	void *p = realloc(c->inputs[which], (c->ninputs[which] + 1) * sizeof *c->inputs[which]);
	if (!p)
		return -ENOMEM;
	c->inputs[which] = p;
	kv_file_meta_ref(f);
	c->inputs[which][c->ninputs[which]++] = f;
	return 0;
}

/* The user-key range [lo, hi] of a set of tables (borrowed slices). */
static void key_range(struct kv_file_meta **files, size_t n, struct kv_slice *lo, struct kv_slice *hi)
{
	*lo = kv_ikey_user(kv_buf_slice(&files[0]->smallest));
	*hi = kv_ikey_user(kv_buf_slice(&files[0]->largest));
	for (size_t i = 1; i < n; i++) {
		struct kv_slice s = kv_ikey_user(kv_buf_slice(&files[i]->smallest));
		struct kv_slice l = kv_ikey_user(kv_buf_slice(&files[i]->largest));
		if (kv_slice_cmp(s, *lo) < 0)
			*lo = s;
		if (kv_slice_cmp(l, *hi) > 0)
			*hi = l;
	}
}

/* Adds the tables of @level overlapping inputs[0] as inputs[1]. */
static int add_overlaps(struct compaction *c, int level)
{
	struct kv_slice lo, hi;
	key_range(c->inputs[0], c->ninputs[0], &lo, &hi);
	struct kv_file_meta **over = NULL;
	int n = kv_version_overlapping(c->v, level, lo, hi, &over);
	if (n < 0)
		return n;
	int r = 0;
	for (int i = 0; i < n && !r; i++)
		r = add_input(c, 1, over[i]);
	free(over);
	return r;
}

/* Picks an automatic compaction (mu held). Returns 1 picked, 0 none, <0. */
static int pick(struct kv_lsm *db, struct compaction *c)
{
	int level;
	if (best_score(db, &level) < 1.0)
		return 0;
	c->v = db->current;
	kv_version_ref(c->v);
	c->level = level;
	c->out_level = level + 1;
	int r = 0;
	if (level == 0) {
		for (size_t i = 0; i < c->v->nfiles[0] && !r; i++)
			r = add_input(c, 0, c->v->files[0][i]);
	} else {
		/* The first table after the level's compact pointer, wrapping. */
		struct kv_buf *ptr = &db->compact_pointer[level];
		size_t n = c->v->nfiles[level], pickidx = 0;
		for (size_t i = 0; i < n; i++) {
			if (!ptr->n || kv_ikey_cmp(kv_buf_slice(&c->v->files[level][i]->largest),
						  kv_buf_slice(ptr)) > 0) {
				pickidx = i;
				break;
			}
		}
		if (ptr->n && kv_ikey_cmp(kv_buf_slice(&c->v->files[level][n - 1]->largest),
					  kv_buf_slice(ptr)) <= 0)
			pickidx = 0;
		struct kv_file_meta *f = c->v->files[level][pickidx];
		r = add_input(c, 0, f);
		kv_buf_reset(ptr);
		if (!r)
			r = kv_buf_append(ptr, f->largest.p, f->largest.n);
	}
	if (!r)
		r = add_overlaps(c, c->out_level);
	return r ? r : 1;
}

/* A manual compaction: every table, into the deepest non-empty level. */
static int pick_all(struct kv_lsm *db, struct compaction *c)
{
	c->v = db->current;
	kv_version_ref(c->v);
	int deepest = 0;
	size_t total = 0;
	for (int l = 0; l < KV_LSM_LEVELS; l++) {
		if (c->v->nfiles[l])
			deepest = l;
		total += c->v->nfiles[l];
	}
	if (total == 0)
		return 0;
	c->level = 0;
	c->out_level = deepest > 1 ? deepest : 1;
	int r = 0;
	for (int l = 0; l < KV_LSM_LEVELS && !r; l++)
		for (size_t i = 0; i < c->v->nfiles[l] && !r; i++)
			r = add_input(c, l == c->out_level ? 1 : 0, c->v->files[l][i]);
	return r ? r : 1;
}

/* True if no level below the output can hold @ukey. */
static bool is_base_level_for(const struct compaction *c, struct kv_slice ukey)
{
	for (int l = c->out_level + 1; l < KV_LSM_LEVELS; l++) {
		for (size_t i = 0; i < c->v->nfiles[l]; i++) {
			const struct kv_file_meta *f = c->v->files[l][i];
			if (kv_slice_cmp(ukey, kv_ikey_user(kv_buf_slice(&f->smallest))) >= 0 &&
			    kv_slice_cmp(ukey, kv_ikey_user(kv_buf_slice(&f->largest))) <= 0)
				return false;
		}
	}
	return true;
}

static bool keep(void *arg, struct kv_slice ikey)
{
	struct compaction *c = arg;
	struct kv_ikey ik;
	if (kv_ikey_parse(ikey, &ik))
		return true; /* kv_db_write_tables rejects it */
	if (!c->has_cur || !kv_slice_eq(ik.ukey, kv_buf_slice(&c->cur_ukey))) {
		kv_buf_reset(&c->cur_ukey);
		if (kv_buf_append(&c->cur_ukey, ik.ukey.p, ik.ukey.n))
			return true; /* keeping is always safe */
		c->has_cur = true;
		c->last_seq_for_key = UINT64_MAX;
	}
	bool drop = false;
	if (c->last_seq_for_key <= c->smallest_snapshot)
		drop = true; /* a newer entry that every snapshot sees hides it */
	else if (ik.type == KV_TYPE_DEL && ik.seq <= c->smallest_snapshot && is_base_level_for(c, ik.ukey))
		drop = true; /* nothing older to hide */
	c->last_seq_for_key = ik.seq;
	if (drop)
		c->dropped++;
	return !drop;
}

static uint64_t smallest_snapshot(struct kv_lsm *db)
{
	if (db->snapshots.next != &db->snapshots)
		return db->snapshots.next->seq;
	return atomic_load(&db->last_seq);
}

/*
 * After a merge failed with KV_ECORRUPT: reads every input table through and
 * quarantines those that fail their checks, as a read would, so that one
 * corrupt table cannot stop compaction (and with it every write) for good.
 * Returns how many were quarantined. mu not held.
 */
static int quarantine_corrupt_inputs(struct kv_lsm *db, struct compaction *c)
{
	int found = 0;
	for (int w = 0; w < 2; w++) {
		for (size_t i = 0; i < c->ninputs[w]; i++) {
			struct kv_iter *it = kv_level_iter_new(&c->inputs[w][i], 1, false);
			if (!it)
				return found;
			for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it))
				;
			int r = kv_iter_status(it);
			kv_iter_destroy(it);
			if (r == KV_ECORRUPT) {
				kv_db_quarantine(db, c->inputs[w][i]->number);
				found++;
			}
		}
	}
	return found;
}

/* Runs @c with mu not held; installs the result. */
static int run(struct kv_lsm *db, struct compaction *c)
{
	struct kv_version_edit edit;
	kv_version_edit_init(&edit);
	int r = 0;
	uint64_t read = 0, written = 0, start_ns = kv_now_ns();

	for (int w = 0; w < 2; w++)
		for (size_t i = 0; i < c->ninputs[w]; i++)
			read += c->inputs[w][i]->size;

	bool trivial = !c->manual && c->ninputs[0] == 1 && c->ninputs[1] == 0 && c->level != c->out_level;
	if (trivial) {
		/* Nothing to merge with: move the table down by a manifest edit. */
		struct kv_file_meta *f = c->inputs[0][0];
		r = kv_version_edit_remove(&edit, c->level, f->number);
		if (!r)
			r = kv_version_edit_add(&edit, c->out_level, f);
		if (!r) {
			pthread_mutex_lock(&db->install_mu);
			r = kv_db_install(db, &edit);
			pthread_mutex_unlock(&db->install_mu);
		}
		if (!r)
			kv_info("compaction: moved table %" PRIu64 " (%.1f MB) from L%d to L%d",
				f->number, (double)f->size / 1e6, c->level, c->out_level);
		kv_version_edit_release(&edit);
		return r;
	}

	size_t n = c->ninputs[0] + c->ninputs[1];
	struct kv_iter **children = calloc(n ? n : 1, sizeof *children);
	if (!children)
		return -ENOMEM;
	size_t k = 0;
	for (int w = 0; w < 2; w++) {
		for (size_t i = 0; i < c->ninputs[w]; i++) {
			/* Level-0 inputs are newest first; order among equal
			 * internal keys never matters (sequences are unique). */
			children[k] = kv_level_iter_new(&c->inputs[w][i], 1, false);
			if (!children[k]) {
				while (k > 0)
					kv_iter_destroy(children[--k]);
				free(children);
				return -ENOMEM;
			}
			k++;
		}
	}
	struct kv_iter *merged = kv_merge_iter_new(kv_ikey_cmp, children, k);
	free(children);
	if (!merged)
		return -ENOMEM;
	kv_iter_seek_first(merged);
	r = kv_db_write_tables(db, merged, keep, c, c->out_level, &edit, &written);
	kv_iter_destroy(merged);
	if (r == KV_ECORRUPT && quarantine_corrupt_inputs(db, c) > 0) {
		/* The next pick works without the quarantined tables. */
		kv_version_edit_release(&edit);
		return 0;
	}
	if (!r) {
		for (int w = 0; w < 2; w++)
			for (size_t i = 0; i < c->ninputs[w]; i++) {
				struct kv_file_meta *f = c->inputs[w][i];
				int lvl = w == 0 ? c->level : c->out_level;
				/* A manual compaction takes inputs from every level. */
				for (int l = 0; l < KV_LSM_LEVELS; l++)
					for (size_t j = 0; j < c->v->nfiles[l]; j++)
						if (c->v->files[l][j] == f)
							lvl = l;
				if ((r = kv_version_edit_remove(&edit, lvl, f->number)))
					break;
			}
	}
	bool install_failed = false;
	if (!r) {
		pthread_mutex_lock(&db->install_mu);
		r = kv_db_install(db, &edit);
		pthread_mutex_unlock(&db->install_mu);
		install_failed = r != 0;
	}
	if (r) {
		/*
		 * Delete what we wrote; the inputs stay live. Not after a failed
		 * manifest store, though: its rename may have gone through (only
		 * the directory sync failing), and then MANIFEST on disk names
		 * these tables and not the inputs. Keep them: the next install
		 * or open settles it, and open removes the tables its manifest
		 * does not name.
		 */
		for (size_t i = 0; i < edit.nadded && !install_failed; i++)
			atomic_store(&edit.added[i].file->obsolete, true);
	} else {
		atomic_fetch_add_explicit(&db->c.compaction_read, read, memory_order_relaxed);
		atomic_fetch_add_explicit(&db->c.compaction_written, written, memory_order_relaxed);
		atomic_fetch_add_explicit(&db->c.compactions, 1, memory_order_relaxed);
		/* One line per compaction, for whoever wonders where the disk went. */
		kv_info("compaction: L%d %zu table(s) + L%d %zu table(s), %.1f MB read, %.1f MB "
			"written in %.0f ms",
			c->level, c->ninputs[0], c->out_level, c->ninputs[1], (double)read / 1e6,
			(double)written / 1e6, (double)(kv_now_ns() - start_ns) / 1e6);
	}
	kv_version_edit_release(&edit);
	return r;
}

int kv_db_compact_once(struct kv_lsm *db, bool manual)
{
	struct compaction c;
	memset(&c, 0, sizeof c);
	kv_buf_init(&c.cur_ukey);
	c.manual = manual;
	int r = manual ? pick_all(db, &c) : pick(db, &c);
	if (r <= 0) {
		compaction_release(&c);
		return r;
	}
	c.smallest_snapshot = smallest_snapshot(db);
	pthread_mutex_unlock(&db->mu);
	r = run(db, &c);
	compaction_release(&c);
	pthread_mutex_lock(&db->mu);
	return r;
}
