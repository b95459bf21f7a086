/*
 * test_db_crash.c - the storage engine's proof of durability (DESIGN §6,
 * issue 2 "Show it works"): crashes, torn writes, I/O errors and bit rot
 * through the in-memory fault-injecting VFS (lsm/vfs.h).
 *
 * A seeded workload (puts, deletes, multi-key batches, flushes, compactions,
 * clean reopens; sync=always, deterministic mode, tiny memtables and tables so
 * that flushes, compactions and manifest stores happen all the time) runs
 * once without faults to count the VFS's modifying operations, then once per
 * crash point with the machine "dying" at that operation. After the crash
 * the store must reopen and hold every acknowledged write (or its delete),
 * nothing that was never written, and each batch whole or not at all.
 *
 * A thin tracing VFS sits between the engine and the in-memory one: it names
 * every modifying operation (WAL append, log switch, flush, compaction,
 * recovery, manifest store, removal) so the sweep can prove it crashed in
 * each, and it arms torn writes and injected errors at an exact operation.
 *
 * Every randomized test prints its seed; KV_SEED=<seed> replays it,
 * KV_CRASH_POINT=<nth> limits the sweeps to one crash point,
 * KV_TEST_FILTER=<pattern> picks tests, KV_CRASH_TRACE=1 prints every
 * modifying operation and KV_CRASH_VERBOSE=1 keeps the engine's log.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lsm/lsm.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

#define NKEYS 64
#define MAX_BATCH 8
#define DB_DIR "/db"

/* The seed of the running test, for failure messages (KV_SEED=...). */
static uint64_t test_seed;

static uint64_t seed_for(const char *test_name)
{
	test_seed = kv_test_seed(test_name);
	return test_seed;
}

/* ---- The tracing VFS ------------------------------------------------------ */

/* What the engine was doing at a modifying operation. */
enum ev_class {
	EV_WAL,        /* appending to or syncing the commit log */
	EV_LOG_SWITCH, /* creating a new log and syncing its directory entry */
	EV_FLUSH,      /* writing a level-0 table from a memtable */
	EV_COMPACT,    /* writing a compaction's output tables */
	EV_RECOVERY,   /* writing the table of replayed logs during open */
	EV_MANIFEST,   /* MANIFEST.tmp, its rename, the directory sync */
	EV_REMOVE,     /* deleting obsolete logs and tables */
	EV_OTHER,      /* mkdir, LOCK, quarantine */
	EV_NCLASS,
};

static const char *const ev_class_name[EV_NCLASS] = {
	"wal-append", "log-switch", "flush", "compaction", "recovery", "manifest", "remove", "other",
};

#define EV_WRITE 0x80 /* the operation was a pwrite or append */

enum file_kind { F_OTHER, F_LOG, F_SST, F_MANIFEST };
enum phase { PH_RECOVERY, PH_FLUSH, PH_COMPACT };
enum last_ev { LAST_NONE, LAST_LOG_CREATE, LAST_MANIFEST_RENAME };

struct tvfs {
	struct kv_vfs base;
	struct kv_vfs *mem;
	pthread_mutex_t mu; /* serializes modifying calls, so events line up */
	enum phase phase;
	enum last_ev last;
	const char *path; /* of the operation in progress, for KV_CRASH_TRACE */
	uint8_t *ev; /* class | EV_WRITE of modifying operation i+1 */
	size_t nev, cap;
	/* A torn write at operation tear_at (0: none), keeping tear_frac of it. */
	uint64_t tear_at;
	double tear_frac;
	bool tear_fired;
	/* Injected failures: fail[i].count operations from fail[i].at on. */
	struct {
		uint64_t at;
		unsigned count;
		int err;
	} fail[4];
	int nfail;
};

struct tfile {
	struct kv_file base;
	struct kv_file *in;
	struct tvfs *t;
	enum file_kind kind;
	char path[64];
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

static enum file_kind kind_of(const char *path)
{
	if (ends_with(path, ".log"))
		return F_LOG;
	if (ends_with(path, ".sst"))
		return F_SST;
	if (ends_with(path, "/MANIFEST.tmp"))
		return F_MANIFEST;
	return F_OTHER;
}

static enum ev_class table_class(const struct tvfs *t)
{
	return t->phase == PH_RECOVERY ? EV_RECOVERY : t->phase == PH_FLUSH ? EV_FLUSH : EV_COMPACT;
}

/* Called with t->mu held before a modifying call: arms what is due. */
static void before_op(struct tvfs *t, bool is_write, size_t n)
{
	uint64_t next = kv_vfs_mem_ops(t->mem) + 1;
	for (int i = 0; i < t->nfail; i++)
		if (next == t->fail[i].at)
			kv_vfs_mem_fail_next(t->mem, t->fail[i].count, t->fail[i].err);
	if (is_write && t->tear_at && next == t->tear_at) {
		kv_vfs_mem_tear_next_write(t->mem, (size_t)((double)n * t->tear_frac));
		t->tear_fired = true;
	}
}

/* Called with t->mu held after it: records the operation if it counted. */
static void after_op(struct tvfs *t, uint64_t before, enum ev_class c, bool is_write, enum last_ev last)
{
	if (kv_vfs_mem_ops(t->mem) == before)
		return;
	assert_int_equal(kv_vfs_mem_ops(t->mem), before + 1);
	if (t->nev == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 1024;
		t->ev = realloc(t->ev, t->cap);
		assert_non_null(t->ev);
	}
	t->ev[t->nev++] = (uint8_t)(c | (is_write ? EV_WRITE : 0));
	t->last = last;
	if (getenv("KV_CRASH_TRACE"))
		fprintf(stderr, "op %zu: %s%s %s\n", t->nev, ev_class_name[c], is_write ? " (write)" : "",
			t->path ? t->path : "");
}

#define TFILE(f) ((struct tfile *)(f))

static ssize_t tf_pread(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	return kv_file_pread(TFILE(f)->in, buf, n, off);
}

static enum ev_class file_class(const struct tfile *tf)
{
	switch (tf->kind) {
	case F_LOG:
		return EV_WAL;
	case F_SST:
		return table_class(tf->t);
	case F_MANIFEST:
		return EV_MANIFEST;
	default:
		return EV_OTHER;
	}
}

/* One traced file operation: @op 0 pwrite, 1 append, 2 sync, 3 truncate. */
static int tf_traced(struct kv_file *f, int op, const void *buf, size_t n, uint64_t off)
{
	struct tfile *tf = TFILE(f);
	struct tvfs *t = tf->t;
	bool is_write = op <= 1;
	pthread_mutex_lock(&t->mu);
	t->path = tf->path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, is_write, n);
	int r;
	switch (op) {
	case 0:
		r = kv_file_pwrite(tf->in, buf, n, off);
		break;
	case 1:
		r = kv_file_append(tf->in, buf, n);
		break;
	case 2:
		r = kv_file_sync(tf->in);
		break;
	default:
		r = kv_file_truncate(tf->in, off);
		break;
	}
	after_op(t, before, file_class(tf), is_write, LAST_NONE);
	pthread_mutex_unlock(&t->mu);
	return r;
}

static int tf_pwrite(struct kv_file *f, const void *buf, size_t n, uint64_t off)
{
	return tf_traced(f, 0, buf, n, off);
}

static int tf_append(struct kv_file *f, const void *buf, size_t n)
{
	return tf_traced(f, 1, buf, n, 0);
}

static int tf_sync(struct kv_file *f)
{
	return tf_traced(f, 2, NULL, 0, 0);
}

static int tf_truncate(struct kv_file *f, uint64_t size)
{
	return tf_traced(f, 3, NULL, 0, size);
}

static int tf_size(struct kv_file *f, uint64_t *out)
{
	return kv_file_size(TFILE(f)->in, out);
}

static int tf_close(struct kv_file *f)
{
	int r = kv_file_close(TFILE(f)->in);
	free(f);
	return r;
}

static const struct kv_file_ops tfile_ops = {
	.pread = tf_pread,
	.pwrite = tf_pwrite,
	.append = tf_append,
	.sync = tf_sync,
	.size = tf_size,
	.truncate = tf_truncate,
	.close = tf_close,
};

#define TVFS(v) ((struct tvfs *)(v))

static int wrap_file(struct tvfs *t, struct kv_file *in, enum file_kind kind, const char *path,
		     struct kv_file **out)
{
	struct tfile *tf = calloc(1, sizeof *tf);
	assert_non_null(tf);
	tf->base.ops = &tfile_ops;
	tf->in = in;
	tf->t = t;
	tf->kind = kind;
	snprintf(tf->path, sizeof tf->path, "%s", path);
	*out = &tf->base;
	return 0;
}

static int tv_open(struct kv_vfs *vfs, const char *path, int flags, struct kv_file **out)
{
	struct tvfs *t = TVFS(vfs);
	enum file_kind kind = kind_of(path);
	struct kv_file *in = NULL;
	pthread_mutex_lock(&t->mu);
	t->path = path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_open(t->mem, path, flags, &in);
	enum ev_class c = EV_OTHER;
	enum last_ev last = LAST_NONE;
	if (kind == F_LOG && (flags & KV_VFS_CREATE)) {
		c = EV_LOG_SWITCH;
		last = LAST_LOG_CREATE;
		/* A new log: a memtable is about to be flushed. */
		if (t->phase != PH_RECOVERY)
			t->phase = PH_FLUSH;
	} else if (kind == F_SST) {
		c = table_class(t);
	} else if (kind == F_MANIFEST) {
		c = EV_MANIFEST;
	}
	after_op(t, before, c, false, last);
	pthread_mutex_unlock(&t->mu);
	if (r)
		return r;
	return wrap_file(t, in, kind, path, out);
}

static int tv_rename(struct kv_vfs *vfs, const char *from, const char *to)
{
	struct tvfs *t = TVFS(vfs);
	pthread_mutex_lock(&t->mu);
	t->path = to;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_rename(t->mem, from, to);
	bool manifest = ends_with(to, "/MANIFEST");
	after_op(t, before, manifest ? EV_MANIFEST : EV_OTHER, false,
		 manifest ? LAST_MANIFEST_RENAME : LAST_NONE);
	/* After a manifest store, new tables come from compactions. */
	if (manifest)
		t->phase = PH_COMPACT;
	pthread_mutex_unlock(&t->mu);
	return r;
}

static int tv_remove(struct kv_vfs *vfs, const char *path)
{
	struct tvfs *t = TVFS(vfs);
	pthread_mutex_lock(&t->mu);
	t->path = path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_remove(t->mem, path);
	after_op(t, before, EV_REMOVE, false, LAST_NONE);
	pthread_mutex_unlock(&t->mu);
	return r;
}

static int tv_mkdir(struct kv_vfs *vfs, const char *path)
{
	struct tvfs *t = TVFS(vfs);
	pthread_mutex_lock(&t->mu);
	t->path = path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_mkdir(t->mem, path);
	after_op(t, before, EV_OTHER, false, LAST_NONE);
	pthread_mutex_unlock(&t->mu);
	return r;
}

static int tv_sync_dir(struct kv_vfs *vfs, const char *path)
{
	struct tvfs *t = TVFS(vfs);
	pthread_mutex_lock(&t->mu);
	t->path = path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_sync_dir(t->mem, path);
	enum ev_class c = t->last == LAST_LOG_CREATE	   ? EV_LOG_SWITCH
			  : t->last == LAST_MANIFEST_RENAME ? EV_MANIFEST
							    : EV_OTHER;
	after_op(t, before, c, false, LAST_NONE);
	pthread_mutex_unlock(&t->mu);
	return r;
}

static int tv_list(struct kv_vfs *vfs, const char *path, char ***names, size_t *count)
{
	return kv_vfs_list(TVFS(vfs)->mem, path, names, count);
}

static int tv_exists(struct kv_vfs *vfs, const char *path)
{
	return kv_vfs_exists(TVFS(vfs)->mem, path);
}

static int tv_lock(struct kv_vfs *vfs, const char *path, struct kv_file **out)
{
	struct tvfs *t = TVFS(vfs);
	struct kv_file *in = NULL;
	pthread_mutex_lock(&t->mu);
	t->path = path;
	uint64_t before = kv_vfs_mem_ops(t->mem);
	before_op(t, false, 0);
	int r = kv_vfs_lock(t->mem, path, &in);
	after_op(t, before, EV_OTHER, false, LAST_NONE);
	pthread_mutex_unlock(&t->mu);
	if (r)
		return r;
	return wrap_file(t, in, F_OTHER, path, out);
}

static void tv_destroy(struct kv_vfs *vfs)
{
	struct tvfs *t = TVFS(vfs);
	kv_vfs_destroy(t->mem);
	pthread_mutex_destroy(&t->mu);
	free(t->ev);
	free(t);
}

static const struct kv_vfs_ops tvfs_ops = {
	.open = tv_open,
	.rename = tv_rename,
	.remove = tv_remove,
	.mkdir = tv_mkdir,
	.sync_dir = tv_sync_dir,
	.list = tv_list,
	.exists = tv_exists,
	.lock = tv_lock,
	.destroy = tv_destroy,
};

/* A tracing VFS over a fresh in-memory one; kv_vfs_destroy() frees both. */
static struct tvfs *tvfs_new(void)
{
	struct tvfs *t = calloc(1, sizeof *t);
	assert_non_null(t);
	t->base.ops = &tvfs_ops;
	t->mem = kv_vfs_mem_new();
	assert_non_null(t->mem);
	pthread_mutex_init(&t->mu, NULL);
	t->phase = PH_RECOVERY;
	return t;
}

/* The class of modifying operation @nth (1-based), or -1 if it never ran. */
static int tvfs_class(struct tvfs *t, uint64_t nth)
{
	pthread_mutex_lock(&t->mu);
	int c = nth >= 1 && nth <= t->nev ? t->ev[nth - 1] & ~EV_WRITE : -1;
	pthread_mutex_unlock(&t->mu);
	return c;
}

/* ---- Keys, values, the workload ------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static struct kv_slice key_slice(int k, char *buf, size_t n)
{
	int len = snprintf(buf, n, "key%03d", k);
	return kv_slice_make(buf, (size_t)len);
}

#define VALUE_HEADER 16 /* "v%03d:%010d:" */

/*
 * The value write @id puts under key @k: a header naming both, then filler
 * whose length and bytes follow from them, so any value read back can be
 * traced to exactly one write. Mostly small, some empty, a few kilobytes.
 */
static void make_value(int k, int64_t id, struct kv_buf *out)
{
	uint64_t h = mix64((uint64_t)k * 1000003u ^ (uint64_t)id);
	uint64_t r = h % 100;
	size_t extra = r < 4 ? 1000 + (size_t)(h >> 20) % 3000 : r < 10 ? 0 : (size_t)(h >> 20) % 180;
	kv_buf_reset(out);
	assert_int_equal(kv_buf_reserve(out, VALUE_HEADER + extra + 1), 0);
	snprintf((char *)out->p, VALUE_HEADER + 1, "v%03d:%010" PRId64 ":", k, id);
	uint64_t x = h | 1;
	for (size_t i = 0; i < extra; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out->p[VALUE_HEADER + i] = (uint8_t)(i % 3 ? 'a' + (i % 26) : x);
	}
	out->n = VALUE_HEADER + extra;
}

/* The write id of @v if it is exactly a value make_value() makes for key @k;
 * otherwise -2 (a value that was never written). */
static int64_t parse_value(int k, struct kv_slice v, struct kv_buf *scratch)
{
	if (v.n < VALUE_HEADER || v.p[0] != 'v' || v.p[4] != ':' || v.p[15] != ':')
		return -2;
	int64_t id = 0;
	for (int i = 5; i < 15; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -2;
		id = id * 10 + (v.p[i] - '0');
	}
	make_value(k, id, scratch);
	return kv_slice_eq(v, kv_buf_slice(scratch)) ? id : -2;
}

enum op_kind { OP_PUT, OP_DEL, OP_BATCH, OP_ASYNC, OP_FLUSH, OP_COMPACT, OP_REOPEN, OP_GET };

/*
 * One workload step. Entry j of step i writes id i * 16 + j (or deletes).
 * OP_ASYNC submits its entries as separate one-entry asynchronous writes.
 */
struct op {
	enum op_kind kind;
	int n;
	int keys[MAX_BATCH];
	bool del[MAX_BATCH];
};

static void plan_op(struct kv_rng *rng, struct op *o)
{
	uint64_t p = kv_rng_below(rng, 1000);
	memset(o, 0, sizeof *o);
	o->n = 1;
	o->keys[0] = (int)kv_rng_below(rng, NKEYS);
	if (p < 540) {
		o->kind = OP_PUT;
	} else if (p < 680) {
		o->kind = OP_DEL;
		o->del[0] = true;
	} else if (p < 880) {
		o->kind = OP_BATCH;
		o->n = 2 + (int)kv_rng_below(rng, MAX_BATCH - 1);
		for (int j = 0; j < o->n; j++) {
			o->keys[j] = (int)kv_rng_below(rng, NKEYS);
			o->del[j] = kv_rng_below(rng, 4) == 0;
		}
	} else if (p < 905) {
		o->kind = OP_ASYNC;
		o->n = 1 + (int)kv_rng_below(rng, 4);
		for (int j = 0; j < o->n; j++) {
			o->keys[j] = (int)kv_rng_below(rng, NKEYS);
			o->del[j] = kv_rng_below(rng, 5) == 0;
		}
	} else if (p < 920) {
		o->kind = OP_FLUSH;
	} else if (p < 935) {
		o->kind = OP_COMPACT;
	} else if (p < 950) {
		o->kind = OP_REOPEN;
	} else {
		o->kind = OP_GET;
	}
}

/* ---- The model ------------------------------------------------------------ */

/* A state of one key: what write @op left there; @id < 0 means absent. */
struct cand {
	int64_t op;
	int64_t id;
};

struct key_model {
	struct cand acked;    /* the last acknowledged write (op -1: none) */
	struct cand *pending; /* failed writes after it: unknown outcome */
	size_t npending, pending_cap;
	int64_t *written;     /* every id ever attempted for the key */
	size_t nwritten, written_cap;
};

struct failed_batch {
	int64_t op;
	int n;
	int keys[MAX_BATCH];
	int64_t ids[MAX_BATCH]; /* the batch's final effect per key */
};

struct model {
	struct key_model k[NKEYS];
	struct failed_batch *fb;
	size_t nfb, fb_cap;
};

static void model_init(struct model *m)
{
	memset(m, 0, sizeof *m);
	for (int k = 0; k < NKEYS; k++)
		m->k[k].acked = (struct cand){ -1, -1 };
}

static void model_release(struct model *m)
{
	for (int k = 0; k < NKEYS; k++) {
		free(m->k[k].pending);
		free(m->k[k].written);
	}
	free(m->fb);
	memset(m, 0, sizeof *m);
}

#define GROW(arr, n, cap)                                                  \
	do {                                                               \
		if ((n) == (cap)) {                                        \
			(cap) = (cap) ? 2 * (cap) : 8;                     \
			(arr) = realloc((arr), (cap) * sizeof *(arr));     \
			assert_non_null(arr);                              \
		}                                                          \
	} while (0)

/* The final effect of @o per distinct key (a batch's last entry wins). */
static int op_effects(int64_t i, const struct op *o, int *keys, int64_t *ids)
{
	int n = 0;
	for (int j = 0; j < o->n; j++) {
		int64_t id = o->del[j] ? -1 : i * 16 + j;
		int at = n;
		for (int q = 0; q < n; q++)
			if (keys[q] == o->keys[j])
				at = q;
		keys[at] = o->keys[j];
		ids[at] = id;
		if (at == n)
			n++;
	}
	return n;
}

/* Records the outcome of one write of step @i, whose final effects are
 * @keys <- @ids: acknowledged (rc 0) or not. */
static void model_apply_effects(struct model *m, int64_t i, int n, const int *keys, const int64_t *ids, int rc)
{
	for (int q = 0; q < n; q++) {
		struct key_model *km = &m->k[keys[q]];
		struct cand c = { i, ids[q] };
		if (ids[q] >= 0) {
			GROW(km->written, km->nwritten, km->written_cap);
			km->written[km->nwritten++] = ids[q];
		}
		if (rc == 0) {
			km->acked = c;
			km->npending = 0;
		} else {
			GROW(km->pending, km->npending, km->pending_cap);
			km->pending[km->npending++] = c;
		}
	}
	if (rc != 0 && n > 1) {
		GROW(m->fb, m->nfb, m->fb_cap);
		struct failed_batch *b = &m->fb[m->nfb++];
		b->op = i;
		b->n = n;
		memcpy(b->keys, keys, (size_t)n * sizeof *keys);
		memcpy(b->ids, ids, (size_t)n * sizeof *ids);
	}
}

/* Records the outcome of write step @i: acknowledged (rc 0) or not. */
static void model_apply(struct model *m, int64_t i, const struct op *o, int rc)
{
	int keys[MAX_BATCH];
	int64_t ids[MAX_BATCH];
	int n = op_effects(i, o, keys, ids);
	model_apply_effects(m, i, n, keys, ids, rc);
}

/* After a check: what the store holds is now the truth for every key. */
static void model_settle(struct model *m, const int64_t *state, int64_t op)
{
	for (int k = 0; k < NKEYS; k++) {
		struct key_model *km = &m->k[k];
		struct cand c = { op, state[k] };
		for (size_t q = 0; q < km->npending; q++)
			if (km->pending[q].id == state[k])
				c.op = km->pending[q].op;
		if (km->acked.id == state[k])
			c.op = km->acked.op;
		km->acked = c;
		km->npending = 0;
	}
	m->nfb = 0;
}

static bool was_written(const struct key_model *km, int64_t id)
{
	for (size_t q = 0; q < km->nwritten; q++)
		if (km->written[q] == id)
			return true;
	return false;
}

/* ---- Running a workload against one VFS ----------------------------------- */

struct run {
	struct tvfs *tv;
	struct kv_lsm_options opt;
	struct kv_lsm *db;
	struct model m;
	struct kv_lsm_batch *batch;
	struct kv_buf val, scratch;
	char what[512]; /* seed and crash point, for failure messages */
	int64_t next_op; /* ops after the workload number from here */
	uint64_t acked, failed;
};

static void crash_options(struct kv_lsm_options *o, struct kv_vfs *vfs)
{
	kv_lsm_options_init(o);
	o->vfs = vfs;
	o->deterministic = true;
	o->sync = KV_SYNC_ALWAYS;
	o->memtable_bytes = 8 << 10;
	o->block_bytes = 512;
	o->table_bytes = 4 << 10;
	o->level1_bytes = 8 << 10;
	o->level_multiplier = 2;
	o->l0_compaction_trigger = 2;
	o->block_cache_bytes = 8 << 10;
}

static void run_init(struct run *r, const char *what)
{
	memset(r, 0, sizeof *r);
	r->tv = tvfs_new();
	crash_options(&r->opt, &r->tv->base);
	model_init(&r->m);
	r->batch = kv_lsm_batch_new();
	assert_non_null(r->batch);
	kv_buf_init(&r->val);
	kv_buf_init(&r->scratch);
	snprintf(r->what, sizeof r->what, "%s", what);
}

static void run_release(struct run *r)
{
	if (r->db)
		kv_lsm_close(r->db);
	r->db = NULL;
	kv_vfs_destroy(&r->tv->base);
	model_release(&r->m);
	kv_lsm_batch_free(r->batch);
	kv_buf_release(&r->val);
	kv_buf_release(&r->scratch);
}

static int run_open(struct run *r, struct kv_lsm_open_report *rep)
{
	pthread_mutex_lock(&r->tv->mu);
	r->tv->phase = PH_RECOVERY;
	pthread_mutex_unlock(&r->tv->mu);
	int rc = kv_lsm_open(DB_DIR, &r->opt, &r->db, rep);
	pthread_mutex_lock(&r->tv->mu);
	r->tv->phase = PH_COMPACT;
	pthread_mutex_unlock(&r->tv->mu);
	return rc;
}

/*
 * Reads key @k and returns its state (write id, or -1 when absent). Fails
 * the test when the value is not one that was ever written to @k, or (with
 * @exact) when the state is neither the acknowledged one nor that of a
 * failed write after it. KV_ECORRUPT is allowed only when @allow_corrupt
 * (then *corrupt is set and -3 returned).
 */
static int64_t read_state(struct run *r, int k, bool exact, bool allow_corrupt, bool *corrupt)
{
	char kb[16];
	struct kv_buf got = KV_BUF_INIT;
	int rc = kv_lsm_get(r->db, NULL, key_slice(k, kb, sizeof kb), &got);
	int64_t state = -4;
	if (rc == 0) {
		state = parse_value(k, kv_buf_slice(&got), &r->scratch);
		if (state < 0)
			fail_msg("%s: key %d holds a value that was never written (len %zu)", r->what, k, got.n);
		if (!was_written(&r->m.k[k], state))
			fail_msg("%s: key %d holds id %" PRId64 ", never written to it", r->what, k, state);
	} else if (rc == KV_ENOTFOUND) {
		state = -1;
	} else if (rc == KV_ECORRUPT && allow_corrupt) {
		*corrupt = true;
		kv_buf_release(&got);
		return -3;
	} else {
		fail_msg("%s: get key %d: %s", r->what, k, kv_strerror(rc));
	}
	kv_buf_release(&got);
	if (!exact)
		return state;
	const struct key_model *km = &r->m.k[k];
	bool ok = km->acked.id == state;
	for (size_t q = 0; q < km->npending && !ok; q++)
		ok = km->pending[q].id == state;
	if (!ok)
		fail_msg("%s: key %d is in state %" PRId64 "; acknowledged %" PRId64 " (step %" PRId64
			 ") with %zu failed writes after it",
			 r->what, k, state, km->acked.id, km->acked.op, km->npending);
	return state;
}

/* A failed batch is whole or absent: if one key shows it, all do (or show a
 * later write to that key). */
static void check_batches(struct run *r, const int64_t *state)
{
	for (size_t b = 0; b < r->m.nfb; b++) {
		const struct failed_batch *fb = &r->m.fb[b];
		int shown = -1;
		for (int q = 0; q < fb->n && shown < 0; q++)
			if (fb->ids[q] >= 0 && state[fb->keys[q]] == fb->ids[q])
				shown = q;
		if (shown < 0)
			continue;
		for (int q = 0; q < fb->n; q++) {
			int k = fb->keys[q];
			if (state[k] == fb->ids[q])
				continue;
			/* A later write to the key may hide the batch's entry. */
			const struct key_model *km = &r->m.k[k];
			bool later = km->acked.op > fb->op && km->acked.id == state[k];
			for (size_t p = 0; p < km->npending && !later; p++)
				later = km->pending[p].op > fb->op && km->pending[p].id == state[k];
			if (!later)
				fail_msg("%s: batch of step %" PRId64 " is torn: key %d shows it, key %d is in "
					 "state %" PRId64 " instead of %" PRId64,
					 r->what, fb->op, fb->keys[shown], k, state[k], fb->ids[q]);
		}
	}
}

/* Scans everything: exactly the keys @state says are present, same values. */
static void check_scan(struct run *r, const int64_t *state)
{
	struct kv_iter *it = kv_lsm_iter(r->db, NULL);
	assert_non_null(it);
	int expect_k = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice key = kv_iter_key(it);
		int k = -1;
		if (key.n == 6 && !memcmp(key.p, "key", 3))
			k = (key.p[3] - '0') * 100 + (key.p[4] - '0') * 10 + (key.p[5] - '0');
		if (k < 0 || k >= NKEYS)
			fail_msg("%s: the scan yields a key that was never written (len %zu)", r->what, key.n);
		while (expect_k < k && state[expect_k] < 0)
			expect_k++;
		if (k != expect_k)
			fail_msg("%s: the scan yields key %d, expected key %d next", r->what, k, expect_k);
		int64_t id = parse_value(k, kv_iter_value(it), &r->scratch);
		if (id != state[k])
			fail_msg("%s: the scan shows key %d in state %" PRId64 ", get %" PRId64, r->what, k, id,
				 state[k]);
		expect_k++;
	}
	if (kv_iter_status(it))
		fail_msg("%s: scan: %s", r->what, kv_strerror(kv_iter_status(it)));
	kv_iter_destroy(it);
	while (expect_k < NKEYS && state[expect_k] < 0)
		expect_k++;
	if (expect_k != NKEYS)
		fail_msg("%s: key %d is missing from the scan", r->what, expect_k);
}

/* The full check against the model; then the model takes what was seen. */
static void check_model(struct run *r)
{
	int64_t state[NKEYS];
	for (int k = 0; k < NKEYS; k++)
		state[k] = read_state(r, k, true, false, NULL);
	check_batches(r, state);
	check_scan(r, state);
	model_settle(&r->m, state, r->next_op++);
}

/* Completions of one OP_ASYNC step. */
struct async_step {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status[MAX_BATCH];
};

struct async_slot {
	struct async_step *step;
	int j;
};

static void on_async_done(void *arg, int status)
{
	struct async_slot *slot = arg;
	pthread_mutex_lock(&slot->step->mu);
	slot->step->status[slot->j] = status;
	slot->step->done++;
	pthread_cond_signal(&slot->step->cv);
	pthread_mutex_unlock(&slot->step->mu);
}

/*
 * Submits the entries of step @i as asynchronous writes, waits for their
 * callbacks, and records each: acknowledged only with status 0. Returns the
 * first failure.
 */
static int exec_async(struct run *r, int64_t i, const struct op *o)
{
	char kb[16];
	struct async_step step = { .done = 0 };
	struct async_slot slots[MAX_BATCH];
	int submit[MAX_BATCH];
	pthread_mutex_init(&step.mu, NULL);
	pthread_cond_init(&step.cv, NULL);
	int expected = 0;
	for (int j = 0; j < o->n; j++) {
		struct kv_lsm_batch *b = kv_lsm_batch_new();
		assert_non_null(b);
		struct kv_slice key = key_slice(o->keys[j], kb, sizeof kb);
		if (o->del[j]) {
			assert_int_equal(kv_lsm_batch_delete(b, key), 0);
		} else {
			make_value(o->keys[j], i * 16 + j, &r->val);
			assert_int_equal(kv_lsm_batch_put(b, key, kv_buf_slice(&r->val)), 0);
		}
		slots[j] = (struct async_slot){ &step, j };
		submit[j] = kv_lsm_write_async(r->db, b, on_async_done, &slots[j]);
		if (submit[j])
			kv_lsm_batch_free(b); /* refused: the callback never comes */
		else
			expected++;
	}
	pthread_mutex_lock(&step.mu);
	while (step.done < expected)
		pthread_cond_wait(&step.cv, &step.mu);
	pthread_mutex_unlock(&step.mu);
	int first = 0;
	for (int j = 0; j < o->n; j++) {
		int rc = submit[j] ? submit[j] : step.status[j];
		int key = o->keys[j];
		int64_t id = o->del[j] ? -1 : i * 16 + j;
		model_apply_effects(&r->m, i, 1, &key, &id, rc);
		if (rc == 0)
			r->acked++;
		else
			r->failed++;
		if (rc && !first)
			first = rc;
	}
	pthread_cond_destroy(&step.cv);
	pthread_mutex_destroy(&step.mu);
	return first;
}

/* Runs step @i of the workload; returns the engine's result. */
static int exec_op(struct run *r, int64_t i, const struct op *o)
{
	char kb[16];
	int rc;
	if (!r->db && (rc = run_open(r, NULL)))
		return rc;
	switch (o->kind) {
	case OP_PUT:
		make_value(o->keys[0], i * 16, &r->val);
		rc = kv_lsm_put(r->db, key_slice(o->keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
		break;
	case OP_DEL:
		rc = kv_lsm_delete(r->db, key_slice(o->keys[0], kb, sizeof kb));
		break;
	case OP_BATCH:
		kv_lsm_batch_clear(r->batch);
		for (int j = 0; j < o->n; j++) {
			struct kv_slice key = key_slice(o->keys[j], kb, sizeof kb);
			if (o->del[j]) {
				assert_int_equal(kv_lsm_batch_delete(r->batch, key), 0);
			} else {
				make_value(o->keys[j], i * 16 + j, &r->val);
				assert_int_equal(kv_lsm_batch_put(r->batch, key, kv_buf_slice(&r->val)), 0);
			}
		}
		rc = kv_lsm_write(r->db, r->batch);
		break;
	case OP_ASYNC:
		return exec_async(r, i, o);
	case OP_FLUSH:
		return kv_lsm_flush(r->db);
	case OP_COMPACT:
		return kv_lsm_compact(r->db);
	case OP_REOPEN:
		rc = kv_lsm_close(r->db);
		r->db = NULL;
		if (rc)
			return rc;
		return run_open(r, NULL);
	case OP_GET:
		/* Reads never fail, whatever the disk does to writes. */
		read_state(r, o->keys[0], true, false, NULL);
		return 0;
	}
	model_apply(&r->m, i, o, rc);
	if (rc == 0)
		r->acked++;
	else
		r->failed++;
	return rc;
}

/*
 * Runs @nops steps of the workload of @seed. With @stop_after >= 0, stops
 * that many steps after the first failure (a crash test: the machine is
 * dead); otherwise runs them all. Returns the number of failed steps.
 */
static int run_workload(struct run *r, uint64_t seed, int64_t nops, int stop_after)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	int failures = 0;
	int64_t stop_at = -1;
	for (int64_t i = 0; i < nops; i++) {
		struct op o;
		plan_op(&rng, &o);
		if (exec_op(r, i, &o))
			failures++;
		if (failures && stop_after >= 0 && stop_at < 0)
			stop_at = i + stop_after;
		if (stop_at >= 0 && i >= stop_at)
			break;
	}
	r->next_op = nops;
	return failures;
}

/* Writes a few fresh keys, which must be acknowledged. */
static void write_more(struct run *r, int count)
{
	char kb[16];
	for (int j = 0; j < count; j++) {
		int64_t i = r->next_op++;
		struct op o = { .kind = OP_PUT, .n = 1, .keys = { (int)(mix64((uint64_t)i) % NKEYS) } };
		make_value(o.keys[0], i * 16, &r->val);
		int rc = kv_lsm_put(r->db, key_slice(o.keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
		if (rc)
			fail_msg("%s: a write after recovery failed: %s", r->what, kv_strerror(rc));
		model_apply(&r->m, i, &o, 0);
	}
}

/* One more put, through the model; returns the engine's result. */
static int try_write(struct run *r)
{
	char kb[16];
	int64_t i = r->next_op++;
	struct op o = { .kind = OP_PUT, .n = 1, .keys = { (int)(mix64((uint64_t)i) % NKEYS) } };
	make_value(o.keys[0], i * 16, &r->val);
	int rc = kv_lsm_put(r->db, key_slice(o.keys[0], kb, sizeof kb), kv_buf_slice(&r->val));
	model_apply(&r->m, i, &o, rc);
	return rc;
}

/* Reopen after a crash must succeed, lose nothing, accept writes, and
 * survive one more clean reopen. */
static void recover_and_check(struct run *r)
{
	struct kv_lsm_open_report rep;
	int rc = run_open(r, &rep);
	if (rc)
		fail_msg("%s: reopen failed: %s", r->what, kv_strerror(rc));
	if (rep.possible_loss || rep.tables_quarantined || rep.wal_bad_regions)
		fail_msg("%s: reopen reports damage: loss %d, quarantined %u, bad regions %" PRIu64,
			 r->what, rep.possible_loss, rep.tables_quarantined, rep.wal_bad_regions);
	check_model(r);
	write_more(r, 5);
	rc = kv_lsm_flush(r->db);
	if (rc)
		fail_msg("%s: flush after recovery: %s", r->what, kv_strerror(rc));
	write_more(r, 3);
	rc = kv_lsm_close(r->db);
	r->db = NULL;
	if (rc)
		fail_msg("%s: clean close after recovery: %s", r->what, kv_strerror(rc));
	rc = run_open(r, &rep);
	if (rc)
		fail_msg("%s: second reopen failed: %s", r->what, kv_strerror(rc));
	if (rep.possible_loss || rep.wal_torn_tail)
		fail_msg("%s: a clean reopen reports damage", r->what);
	check_model(r);
	kv_lsm_close(r->db);
	r->db = NULL;
}

/* ---- Crash sweeps --------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sweep_stats {
	double t0;
	uint64_t points, torn;
	uint64_t by_class[EV_NCLASS];
	uint64_t acked, failed;
};

static void print_stats(const char *name, const struct sweep_stats *s)
{
	char line[512];
	size_t n = 0;
	for (int c = 0; c < EV_NCLASS; c++)
		n += (size_t)snprintf(line + n, sizeof line - n, " %s %" PRIu64, ev_class_name[c], s->by_class[c]);
	print_message("%s: %" PRIu64 " points (%" PRIu64 " torn writes); landed in:%s; %" PRIu64
		      " writes acknowledged, %" PRIu64 " failed; %.1f s\n",
		      name, s->points, s->torn, line, s->acked, s->failed, now_s() - s->t0);
}

/* The number of modifying operations of a fault-free run, and its trace. */
static uint64_t clean_run(uint64_t seed, int64_t nops, uint8_t **trace)
{
	struct run r;
	char what[96];
	snprintf(what, sizeof what, "seed %" PRIu64 " clean run", seed);
	run_init(&r, what);
	int failures = run_workload(&r, seed, nops, -1);
	if (failures)
		fail_msg("%s: %d steps failed without faults", what, failures);
	uint64_t ops = r.tv->nev;
	if (trace) {
		*trace = malloc(ops ? ops : 1);
		assert_non_null(*trace);
		memcpy(*trace, r.tv->ev, ops);
	}
	if (kv_lsm_close(r.db))
		fail_msg("%s: close failed without faults", what);
	r.db = NULL;
	recover_and_check(&r);
	run_release(&r);
	return ops;
}

/*
 * One crash: the machine dies at operation @nth of the workload (with
 * @tear_frac >= 0, that operation is a write torn after that fraction of
 * its bytes, and the machine dies right after it). Then reopen and check.
 */
static void crash_at(uint64_t seed, int64_t nops, uint64_t nth, double tear_frac, const uint8_t *trace,
		     struct sweep_stats *st)
{
	struct run r;
	char what[160];
	snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " (workload seed %" PRIu64 ", %" PRId64
		 " steps) crash point %" PRIu64 "%s",
		 test_seed, seed, nops, nth, tear_frac >= 0 ? " (torn write)" : "");
	run_init(&r, what);
	if (tear_frac >= 0) {
		r.tv->tear_at = nth;
		r.tv->tear_frac = tear_frac;
		kv_vfs_mem_crash_after(r.tv->mem, nth + 1);
	} else {
		kv_vfs_mem_crash_after(r.tv->mem, nth);
	}
	/* Usually a step fails; not when the engine ignores the failure of
	 * the last operation (removing an obsolete file). */
	run_workload(&r, seed, nops, 2);
	if (tear_frac >= 0 && !r.tv->tear_fired)
		fail_msg("%s: the write to tear never came", what);
	if (tear_frac < 0 && !kv_vfs_mem_tripped(r.tv->mem))
		fail_msg("%s: the machine never died", what);
	int c = tvfs_class(r.tv, nth);
	if (c < 0 || (trace && c != (trace[nth - 1] & ~EV_WRITE)))
		fail_msg("%s: the run is not deterministic (operation class %d, clean run %d)", what, c,
			 trace ? trace[nth - 1] & ~EV_WRITE : -1);
	st->by_class[c]++;
	st->points++;
	if (tear_frac >= 0)
		st->torn++;
	st->acked += r.acked;
	st->failed += r.failed;
	if (r.db)
		kv_lsm_close(r.db); /* may fail: the disk is gone */
	r.db = NULL;
	kv_vfs_mem_crash(r.tv->mem);
	recover_and_check(&r);
	run_release(&r);
}

/*
 * One injected error (@err) at operation @nth, no crash: the step that hit
 * it finishes, the store is closed and reopened at once. Nothing
 * acknowledged may be lost, whichever operation failed (say the directory
 * sync that makes a new manifest durable, after its rename went through).
 */
static void fail_then_close(uint64_t seed, int64_t nops, uint64_t nth, int err, struct sweep_stats *st)
{
	struct run r;
	char what[160];
	snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " (workload seed %" PRIu64 ", %" PRId64
		 " steps) %s at operation %" PRIu64 ", then close",
		 test_seed, seed, nops, err == -EIO ? "EIO" : "ENOSPC", nth);
	run_init(&r, what);
	r.tv->fail[0].at = nth;
	r.tv->fail[0].count = 1;
	r.tv->fail[0].err = err;
	r.tv->nfail = 1;
	run_workload(&r, seed, nops, 0);
	int c = tvfs_class(r.tv, nth);
	if (c < 0)
		fail_msg("%s: operation %" PRIu64 " never ran", what, nth);
	st->by_class[c]++;
	st->points++;
	st->acked += r.acked;
	st->failed += r.failed;
	if (r.db)
		kv_lsm_close(r.db); /* may report the error */
	r.db = NULL;
	recover_and_check(&r);
	run_release(&r);
}

static uint64_t only_point(void)
{
	const char *s = getenv("KV_CRASH_POINT");
	return s ? strtoull(s, NULL, 10) : 0;
}

/* The sweep crashed mid-WAL-append, mid-flush, mid-compaction and
 * mid-manifest-store (unless limited to one point). */
static void assert_crashed_everywhere(const struct sweep_stats *st)
{
	if (only_point())
		return;
	assert_true(st->by_class[EV_WAL] > 0);
	assert_true(st->by_class[EV_FLUSH] > 0);
	assert_true(st->by_class[EV_COMPACT] > 0);
	assert_true(st->by_class[EV_MANIFEST] > 0);
}

static void test_db_crash__every_point_of_short_workloads(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__every_point_of_short_workloads");
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 5; w++) {
		uint64_t wseed = seed + w;
		int64_t nops = 80;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(wseed, nops, &trace);
		for (uint64_t nth = 1; nth <= total; nth++)
			if (!only_point() || only_point() == nth)
				crash_at(wseed, nops, nth, -1, trace, &st);
		free(trace);
	}
	print_stats("every point", &st);
	assert_crashed_everywhere(&st);
}

/*
 * A longer workload, crashed at a seeded sample of its operations: some from
 * each kind of operation, the rest anywhere.
 */
static void test_db_crash__sampled_points_of_long_workloads(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__sampled_points_of_long_workloads");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x5eed);
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 2; w++) {
		uint64_t wseed = seed + 1000 + w;
		int64_t nops = 800;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(wseed, nops, &trace);
		/* Per class, up to 25 points of that class; then 100 anywhere. */
		uint64_t *of = malloc(total * sizeof *of);
		assert_non_null(of);
		for (int c = 0; c < EV_NCLASS; c++) {
			uint64_t n = 0;
			for (uint64_t i = 0; i < total; i++)
				if ((trace[i] & ~EV_WRITE) == c)
					of[n++] = i + 1;
			for (int j = 0; j < 25 && n; j++) {
				uint64_t nth = of[kv_rng_below(&rng, n)];
				if (!only_point() || only_point() == nth)
					crash_at(wseed, nops, nth, -1, trace, &st);
			}
		}
		free(of);
		for (int j = 0; j < 100; j++) {
			uint64_t nth = 1 + kv_rng_below(&rng, total);
			if (!only_point() || only_point() == nth)
				crash_at(wseed, nops, nth, -1, trace, &st);
		}
		free(trace);
	}
	print_stats("sampled", &st);
	assert_crashed_everywhere(&st);
}

/* Torn writes: a write that reached the platter only in part, then the
 * power went out. Sampled across log, table and manifest writes. */
static void test_db_crash__torn_writes(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__torn_writes");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7ea5);
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 3; w++) {
		int64_t nops = 400;
		uint8_t *trace = NULL;
		uint64_t total = clean_run(seed + w, nops, &trace);
		uint64_t *writes = malloc(total * sizeof *writes), nwrites = 0;
		for (uint64_t i = 0; i < total; i++)
			if (trace[i] & EV_WRITE)
				writes[nwrites++] = i + 1;
		assert_true(nwrites > 0);
		/* Every class of write gets some, then random ones. */
		for (int c = 0; c < EV_NCLASS; c++) {
			int done = 0;
			for (uint64_t tries = 0; tries < 4 * nwrites && done < 20; tries++) {
				uint64_t nth = writes[kv_rng_below(&rng, nwrites)];
				if ((trace[nth - 1] & ~EV_WRITE) != c)
					continue;
				double frac = kv_rng_double(&rng);
				if (!only_point() || only_point() == nth)
					crash_at(seed + w, nops, nth, frac, trace, &st);
				done++;
			}
		}
		for (int j = 0; j < 80; j++) {
			uint64_t nth = writes[kv_rng_below(&rng, nwrites)];
			double frac = kv_rng_below(&rng, 8) == 0 ? 0.0 : kv_rng_double(&rng);
			if (!only_point() || only_point() == nth)
				crash_at(seed + w, nops, nth, frac, trace, &st);
		}
		free(writes);
		free(trace);
	}
	print_stats("torn writes", &st);
	if (!only_point()) {
		assert_true(st.by_class[EV_WAL] > 0);
		assert_true(st.by_class[EV_FLUSH] + st.by_class[EV_COMPACT] > 0);
		assert_true(st.by_class[EV_MANIFEST] > 0);
	}
}

/* ---- I/O errors without a crash ------------------------------------------ */

static void test_db_crash__io_error_at_every_point_then_close(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_error_at_every_point_then_close");
	struct sweep_stats st;
	memset(&st, 0, sizeof st);
	st.t0 = now_s();
	for (uint64_t w = 0; w < 4; w++) {
		int64_t nops = 70;
		uint64_t total = clean_run(seed + 100 + w, nops, NULL);
		for (uint64_t nth = 1; nth <= total; nth++)
			if (!only_point() || only_point() == nth)
				fail_then_close(seed + 100 + w, nops, nth, nth % 2 ? -EIO : -ENOSPC, &st);
	}
	print_stats("one I/O error, then close", &st);
}

static void test_db_crash__io_errors_fail_writes_not_the_store(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_errors_fail_writes_not_the_store");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x10e7);
	int64_t nops = 400;
	uint64_t total = clean_run(seed, nops, NULL);
	uint64_t failed_steps = 0, acked = 0, runs = 0, retries = 0;
	double t0 = now_s();
	for (int j = 0; j < 250; j++) {
		struct run r;
		char what[512];
		/* One to three stretches of failures: a few operations, or
		 * a disk full for a while. */
		int nwin = 1 + (int)kv_rng_below(&rng, 3);
		uint64_t at[3], end = 0;
		unsigned count[3];
		int err[3];
		int len = snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " I/O error run %d:", test_seed, j);
		for (int w = 0; w < nwin; w++) {
			at[w] = 1 + kv_rng_below(&rng, total);
			count[w] = 1 + (unsigned)kv_rng_below(&rng, kv_rng_below(&rng, 4) == 0 ? 40 : 6);
			err[w] = kv_rng_below(&rng, 2) ? -EIO : -ENOSPC;
			if (at[w] + count[w] > end)
				end = at[w] + count[w];
			len += snprintf(what + len, sizeof what - (size_t)len, " %u x %s at operation %" PRIu64,
					count[w], err[w] == -EIO ? "EIO" : "ENOSPC", at[w]);
		}
		if (only_point() && only_point() != at[0])
			continue;
		run_init(&r, what);
		for (int w = 0; w < nwin; w++) {
			r.tv->fail[w].at = at[w];
			r.tv->fail[w].count = count[w];
			r.tv->fail[w].err = err[w];
		}
		r.tv->nfail = nwin;
		struct kv_rng wl;
		kv_rng_seed(&wl, seed);
		int64_t first_ok_after = -1;
		for (int64_t i = 0; i < nops; i++) {
			struct op o;
			plan_op(&wl, &o);
			bool faults_over = kv_vfs_mem_ops(r.tv->mem) >= end;
			int rc = exec_op(&r, i, &o);
			if (rc)
				failed_steps++;
			if (!faults_over)
				continue;
			/* Once the faults stop, at most one step may still fail
			 * (it clears the state the failure left); no more. */
			if (rc == 0 && first_ok_after < 0)
				first_ok_after = i;
			if (rc && first_ok_after >= 0)
				fail_msg("%s: step %" PRId64 " failed (%s) long after the faults stopped", what, i,
					 kv_strerror(rc));
			if (rc && first_ok_after < 0)
				retries++;
		}
		r.next_op = nops;
		/* The faults stop (if the workload did not use them all up). */
		kv_vfs_mem_fail_next(r.tv->mem, 0, 0);
		r.tv->nfail = 0;
		if (!r.db) {
			int rc = run_open(&r, NULL);
			if (rc)
				fail_msg("%s: open after the faults: %s", what, kv_strerror(rc));
		}
		/* The store still serves reads and takes writes; one write
		 * may still fail, clearing what the failure left. */
		for (int k = 0; k < NKEYS; k++)
			read_state(&r, k, true, false, NULL);
		if (try_write(&r))
			retries++;
		write_more(&r, 4);
		acked += r.acked;
		kv_lsm_close(r.db); /* may report the background error */
		r.db = NULL;
		/* A clean reopen: what the model allows, nothing lost. */
		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: clean reopen failed: %s", what, kv_strerror(rc));
		if (rep.possible_loss || rep.tables_quarantined)
			fail_msg("%s: clean reopen after I/O errors reports loss (quarantined %u)", what,
				 rep.tables_quarantined);
		check_model(&r);
		write_more(&r, 2);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
		runs++;
	}
	print_message("I/O errors: %" PRIu64 " runs, %" PRIu64 " steps failed, %" PRIu64
		      " writes needed a retry, %" PRIu64 " writes acknowledged; %.1f s\n",
		      runs, failed_steps, retries, acked, now_s() - t0);
	if (!only_point())
		assert_true(failed_steps > 0);
}

/*
 * The same with background threads: a failed flush or compaction sets the
 * engine's background error, which fails writes until the thread's retry
 * (a second later) succeeds. Writes must come back within a few seconds.
 */
static void test_db_crash__io_errors_under_the_threaded_engine(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__io_errors_under_the_threaded_engine");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7e);
	uint64_t failed_steps = 0, waited_ms = 0;
	double t0 = now_s();
	for (int j = 0; j < 12; j++) {
		struct run r;
		char what[160];
		int64_t nops = 300, fault_step = 30 + (int64_t)kv_rng_below(&rng, 200);
		if (j % 2) {
			/* Fail the background work: start at a flush or compaction. */
			struct kv_rng plan;
			kv_rng_seed(&plan, seed + (uint64_t)j);
			for (int64_t i = 0; i < nops; i++) {
				struct op o;
				plan_op(&plan, &o);
				if (i >= fault_step && (o.kind == OP_FLUSH || o.kind == OP_COMPACT)) {
					fault_step = i;
					break;
				}
			}
		}
		unsigned count = 1 + (unsigned)kv_rng_below(&rng, 30);
		int err = kv_rng_below(&rng, 2) ? -EIO : -ENOSPC;
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " threaded I/O error run %d: %u x %s from step %" PRId64,
			 test_seed, j, count, err == -EIO ? "EIO" : "ENOSPC", fault_step);
		run_init(&r, what);
		r.opt.deterministic = false;
		struct kv_rng wl;
		kv_rng_seed(&wl, seed + (uint64_t)j);
		uint64_t end = UINT64_MAX;
		double over_at = 0;
		for (int64_t i = 0; i < nops; i++) {
			if (i == fault_step) {
				pthread_mutex_lock(&r.tv->mu);
				uint64_t at = kv_vfs_mem_ops(r.tv->mem) + 1;
				kv_vfs_mem_fail_next(r.tv->mem, count, err);
				end = at + count;
				pthread_mutex_unlock(&r.tv->mu);
			}
			struct op o;
			plan_op(&wl, &o);
			int rc = exec_op(&r, i, &o);
			failed_steps += rc != 0;
			if (kv_vfs_mem_ops(r.tv->mem) < end)
				continue;
			if (over_at == 0)
				over_at = now_s();
			if (rc && now_s() - over_at > 5)
				fail_msg("%s: step %" PRId64 " still fails (%s) 5 s after the faults stopped", what, i,
					 kv_strerror(rc));
			if (rc) {
				struct timespec ts = { 0, 20 * 1000000 };
				nanosleep(&ts, NULL);
				waited_ms += 20;
			}
		}
		r.next_op = nops;
		kv_vfs_mem_fail_next(r.tv->mem, 0, 0);
		if (!r.db && run_open(&r, NULL))
			fail_msg("%s: open after the faults failed", what);
		double t_retry = now_s();
		while (try_write(&r)) {
			if (now_s() - t_retry > 5)
				fail_msg("%s: writes still fail 5 s after the faults stopped", what);
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
			waited_ms += 20;
		}
		write_more(&r, 10);
		kv_lsm_close(r.db);
		r.db = NULL;
		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: clean reopen failed: %s", what, kv_strerror(rc));
		if (rep.possible_loss || rep.tables_quarantined)
			fail_msg("%s: clean reopen after I/O errors reports loss", what);
		check_model(&r);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
	}
	print_message("threaded I/O errors: 12 runs, %" PRIu64 " steps failed, %" PRIu64
		      " ms waiting for writes to come back; %.1f s\n",
		      failed_steps, waited_ms, now_s() - t0);
}

/*
 * Flushes that fail again and again (the disk full for a long while) while
 * writes go on, in deterministic mode: memtables wait for a flush that
 * works (no more of them than max_immutable), and then all of it reaches
 * the tables, nothing lost. (Threaded writers fail while the flush thread
 * retries: the threaded I/O error test.)
 */
static void test_db_crash__repeated_flush_failures_lose_nothing(void **state)
{
	(void)state;
	{
		struct run r;
		run_init(&r, "repeated flush failures");
		assert_int_equal(run_open(&r, NULL), 0);
		int failed = 0;
		for (int round = 0; round < 8; round++) {
			for (int j = 0; j < 10; j++)
				assert_int_equal(try_write(&r), 0);
			/* The switch to a new log works (2 operations); the
			 * flush's table cannot be created. */
			pthread_mutex_lock(&r.tv->mu);
			r.tv->fail[0].at = kv_vfs_mem_ops(r.tv->mem) + 3;
			r.tv->fail[0].count = 1;
			r.tv->fail[0].err = -ENOSPC;
			r.tv->nfail = 1;
			pthread_mutex_unlock(&r.tv->mu);
			failed += kv_lsm_flush(r.db) != 0;
			pthread_mutex_lock(&r.tv->mu);
			r.tv->nfail = 0;
			pthread_mutex_unlock(&r.tv->mu);
		}
		print_message("%s: %d of 8 flushes failed\n", r.what, failed);
		/* The disk has room again: writes and a flush work. */
		double t0 = now_s();
		while (try_write(&r)) {
			if (now_s() - t0 > 5)
				fail_msg("%s: writes do not come back", r.what);
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
		}
		for (int tries = 0; kv_lsm_flush(r.db); tries++)
			if (tries > 250)
				fail_msg("%s: flushes do not come back", r.what);
		check_model(&r);
		assert_int_equal(kv_lsm_close(r.db), 0);
		r.db = NULL;
		struct kv_lsm_open_report rep;
		assert_int_equal(run_open(&r, &rep), 0);
		assert_false(rep.possible_loss);
		check_model(&r);
		run_release(&r);
	}
}

/* ---- Bit rot and lost sectors -------------------------------------------- */

enum rot_target { ROT_WAL, ROT_SST, ROT_MANIFEST, ROT_NTARGETS };

/* Picks a file of @target in the database; returns false if there is none. */
static bool pick_file(struct kv_vfs *mem, enum rot_target target, struct kv_rng *rng, char *path, size_t n)
{
	char **names = NULL;
	size_t count = 0;
	assert_int_equal(kv_vfs_list(mem, DB_DIR, &names, &count), 0);
	const char *best = NULL;
	size_t nsst = 0;
	for (size_t i = 0; i < count; i++) {
		if (target == ROT_WAL && ends_with(names[i], ".log")) {
			if (!best || strcmp(names[i], best) > 0) /* the newest log */
				best = names[i];
		} else if (target == ROT_SST && ends_with(names[i], ".sst")) {
			if (kv_rng_below(rng, ++nsst) == 0) /* a random table */
				best = names[i];
		} else if (target == ROT_MANIFEST && !strcmp(names[i], "MANIFEST")) {
			best = names[i];
		}
	}
	if (best)
		snprintf(path, n, "%s/%s", DB_DIR, best);
	kv_vfs_names_free(names, count);
	return best != NULL;
}

/* Write @i of the damaged-log test: "@i:" then digits up to 1200 bytes. */
static void make_big_value(int i, struct kv_buf *out)
{
	char head[32];
	int hn = snprintf(head, sizeof head, "%d:", i);
	kv_buf_reset(out);
	assert_int_equal(kv_buf_append(out, head, (size_t)hn), 0);
	while (out->n < 1200)
		assert_int_equal(kv_buf_append_u8(out, (uint8_t)('0' + out->n % 10)), 0);
}

static uint64_t file_size(struct kv_vfs *mem, const char *path)
{
	struct kv_file *f = NULL;
	uint64_t size = 0;
	assert_int_equal(kv_vfs_open(mem, path, KV_VFS_READ, &f), 0);
	assert_int_equal(kv_file_size(f, &size), 0);
	kv_file_close(f);
	return size;
}

static void test_db_crash__bit_rot_and_truncation_are_reported_not_served(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__bit_rot_and_truncation_are_reported_not_served");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0xb17);
	uint64_t by_target[ROT_NTARGETS] = { 0 }, refused = 0, skipped = 0, quarantined = 0, corrupt_reads = 0,
		 exact = 0;
	double t0 = now_s();
	for (int j = 0; j < 400; j++) {
		struct run r;
		char what[512];
		enum rot_target target = (enum rot_target)kv_rng_below(&rng, ROT_NTARGETS);
		bool truncate = kv_rng_below(&rng, 3) == 0;
		int64_t nops = 60 + (int64_t)kv_rng_below(&rng, 200);
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " rot run %d", test_seed, j);
		run_init(&r, what);
		/* Keep writes in the log (no final flush); for log damage, a
		 * memtable big enough for a log of several 32 KiB blocks. */
		r.opt.memtable_bytes = target == ROT_WAL ? 160 << 10 : 16 << 10;
		assert_int_equal(run_workload(&r, seed + (uint64_t)j, nops, -1), 0);
		if (target == ROT_WAL)
			write_more(&r, 400); /* a log of a few blocks */
		assert_int_equal(kv_lsm_close(r.db), 0);
		r.db = NULL;
		char path[64];
		if (!pick_file(r.tv->mem, target, &rng, path, sizeof path)) {
			run_release(&r);
			continue;
		}
		uint64_t size = file_size(r.tv->mem, path);
		if (size == 0) {
			run_release(&r);
			continue;
		}
		uint64_t cut = size;
		if (truncate) {
			cut = kv_rng_below(&rng, size);
			assert_int_equal(kv_vfs_mem_truncate_file(r.tv->mem, path, cut), 0);
		} else {
			/* One to three distinct bits (two flips of one bit undo
			 * each other). */
			int flips = 1 + (int)kv_rng_below(&rng, 3), ndone = 0;
			uint64_t done[3];
			for (int f = 0; f < flips; f++) {
				uint64_t pos = kv_rng_below(&rng, size * 8);
				bool again = false;
				for (int g = 0; g < ndone; g++)
					again |= done[g] == pos;
				if (again)
					continue;
				done[ndone++] = pos;
				assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, pos / 8, (unsigned)(pos % 8)), 0);
			}
		}
		size_t wl = strlen(what);
		snprintf(what + wl, sizeof what - wl, ": %s %s (size %" PRIu64 ", cut at %" PRIu64 ")",
			 truncate ? "truncated" : "flipped bits in", path, size, cut);
		snprintf(r.what, sizeof r.what, "%s", what);
		by_target[target]++;

		struct kv_lsm_open_report rep;
		int rc = run_open(&r, &rep);
		if (target == ROT_MANIFEST) {
			/* The manifest is checksummed whole: damage is refused. */
			if (rc != KV_ECORRUPT)
				fail_msg("%s: open returned %s, want KV_ECORRUPT", what, kv_strerror(rc));
			assert_null(r.db);
			refused++;
			run_release(&r);
			continue;
		}
		if (rc)
			fail_msg("%s: open failed: %s (a damaged log or table must not keep the store down)", what,
				 kv_strerror(rc));
		if (rep.wal_bad_regions || rep.wal_bytes_skipped)
			skipped++;
		quarantined += rep.tables_quarantined;
		if ((rep.wal_bad_regions || rep.tables_quarantined) && !rep.possible_loss)
			fail_msg("%s: damage reported without possible_loss", what);
		/*
		 * Nothing reported: every key as the model says, or a read that
		 * finds the damage (KV_ECORRUPT). Something reported: any value
		 * ever written to the key (older ones may resurface), never one
		 * that was not.
		 */
		/* (A log cut at a record boundary looks like an unsynced tail.) */
		bool strict = !rep.possible_loss && !rep.wal_torn_tail && !(target == ROT_WAL && truncate);
		bool corrupt = false;
		for (int k = 0; k < NKEYS; k++) {
			/* A read that finds a corrupt table quarantines it. */
			struct kv_lsm_stats stats;
			kv_lsm_get_stats(r.db, &stats);
			corrupt |= stats.quarantined > 0;
			read_state(&r, k, strict && !corrupt, true, &corrupt);
		}
		if (strict && !corrupt)
			exact++;
		if (corrupt)
			corrupt_reads++;
		/* A scan yields only keys and values that were written. */
		struct kv_iter *it = kv_lsm_iter(r.db, NULL);
		for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
			struct kv_slice key = kv_iter_key(it);
			int k = key.n == 6 && !memcmp(key.p, "key", 3)
					? (key.p[3] - '0') * 100 + (key.p[4] - '0') * 10 + (key.p[5] - '0')
					: -1;
			if (k < 0 || k >= NKEYS)
				fail_msg("%s: the scan yields a key never written", what);
			int64_t id = parse_value(k, kv_iter_value(it), &r.scratch);
			if (id < 0 || !was_written(&r.m.k[k], id))
				fail_msg("%s: the scan yields a value never written to key %d", what, k);
		}
		int its = kv_iter_status(it);
		if (its && its != KV_ECORRUPT)
			fail_msg("%s: scan: %s", what, kv_strerror(its));
		kv_iter_destroy(it);
		/* The store takes writes, and the next reopen is clean. */
		write_more(&r, 3);
		kv_lsm_close(r.db);
		r.db = NULL;
		rc = run_open(&r, &rep);
		if (rc)
			fail_msg("%s: the reopen after the damaged one failed: %s", what, kv_strerror(rc));
		if (rep.wal_bad_regions || rep.wal_torn_tail)
			fail_msg("%s: the log damage is still there after a reopen", what);
		kv_lsm_close(r.db);
		r.db = NULL;
		run_release(&r);
	}
	print_message("bit rot: damaged %" PRIu64 " logs, %" PRIu64 " tables, %" PRIu64
		      " manifests; %" PRIu64 " refused, %" PRIu64 " opens skipped log damage, %" PRIu64
		      " tables quarantined, %" PRIu64 " runs read KV_ECORRUPT, %" PRIu64 " read exactly; %.1f s\n",
		      by_target[ROT_WAL], by_target[ROT_SST], by_target[ROT_MANIFEST], refused, skipped,
		      quarantined, corrupt_reads, exact, now_s() - t0);
	assert_true(refused > 0 && skipped > 0);
}

/* Every byte of the manifest is checked: any one bit flipped, and open
 * refuses it with KV_ECORRUPT. */
static void test_db_crash__every_manifest_bit_is_checked(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "manifest bit flips");
	assert_int_equal(run_workload(&r, 42, 120, -1), 0);
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	const char *path = DB_DIR "/MANIFEST";
	uint64_t size = file_size(r.tv->mem, path);
	for (uint64_t off = 0; off < size; off++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, off, bit), 0);
			int rc = run_open(&r, NULL);
			if (rc != KV_ECORRUPT)
				fail_msg("bit %u of byte %" PRIu64 " of %" PRIu64 " flipped: open returned %s", bit, off,
					 size, kv_strerror(rc));
			assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, off, bit), 0);
		}
	}
	assert_int_equal(run_open(&r, NULL), 0);
	check_model(&r);
	run_release(&r);
}

/* A damaged record in the middle of the log: the store opens, says it may
 * have lost writes, and keeps the good records after the damage. */
static void test_db_crash__bad_wal_record_followed_by_good_ones_is_skipped(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "bad record in the middle of the log");
	r.opt.memtable_bytes = 4 << 20; /* everything stays in the log */
	assert_int_equal(run_open(&r, NULL), 0);
	char kb[16];
	enum { NWRITES = 200 };
	/* Write i puts ~1.2 KiB under key i % NKEYS: about 27 records per
	 * 32 KiB log block, 8 blocks in all. */
	for (int i = 0; i < NWRITES; i++) {
		make_big_value(i, &r.val);
		assert_int_equal(kv_lsm_put(r.db, key_slice(i % NKEYS, kb, sizeof kb), kv_buf_slice(&r.val)), 0);
	}
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	char path[256];
	struct kv_rng rng;
	kv_rng_seed(&rng, 1);
	assert_true(pick_file(r.tv->mem, ROT_WAL, &rng, path, sizeof path));
	assert_true(file_size(r.tv->mem, path) > 6 * 32768);
	/* Rot a byte of the first record's value. */
	assert_int_equal(kv_vfs_mem_flip_bit(r.tv->mem, path, 40, 2), 0);
	struct kv_lsm_open_report rep;
	assert_int_equal(run_open(&r, &rep), 0);
	assert_true(rep.possible_loss);
	assert_true(rep.wal_bad_regions >= 1);
	assert_true(rep.wal_bytes_skipped > 0);
	assert_false(rep.wal_torn_tail);
	/* The last write of every key (i >= 128) lies blocks after the damage. */
	struct kv_buf got = KV_BUF_INIT;
	for (int k = 0; k < NKEYS; k++) {
		int last = k < NWRITES - 3 * NKEYS ? 3 * NKEYS + k : 2 * NKEYS + k;
		make_big_value(last, &r.val);
		assert_int_equal(kv_lsm_get(r.db, NULL, key_slice(k, kb, sizeof kb), &got), 0);
		assert_true(kv_slice_eq(kv_buf_slice(&got), kv_buf_slice(&r.val)));
	}
	kv_buf_release(&got);
	assert_int_equal(kv_lsm_close(r.db), 0);
	r.db = NULL;
	/* The damage is behind us: the next open is clean. */
	assert_int_equal(run_open(&r, &rep), 0);
	assert_false(rep.possible_loss);
	assert_int_equal(rep.wal_bad_regions, 0);
	run_release(&r);
}

/* ---- Crashes under the threaded engine ----------------------------------- */

/*
 * The same workload with background flush and compaction threads: crash
 * points are no longer exact, but the guarantees are the same.
 */
static void test_db_crash__threaded_engine_crash_points(void **state)
{
	(void)state;
	uint64_t seed = seed_for("test_db_crash__threaded_engine_crash_points");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed ^ 0x7d);
	int64_t nops = 300;
	uint64_t total = clean_run(seed, nops, NULL);
	uint64_t points = 0;
	double t0 = now_s();
	for (int j = 0; j < 100; j++) {
		struct run r;
		char what[160];
		uint64_t nth = 1 + kv_rng_below(&rng, total);
		snprintf(what, sizeof what, "KV_SEED=%" PRIu64 " threaded crash %d at operation %" PRIu64,
			 test_seed, j, nth);
		run_init(&r, what);
		r.opt.deterministic = false;
		kv_vfs_mem_crash_after(r.tv->mem, nth);
		run_workload(&r, seed, nops, 2);
		if (r.db)
			kv_lsm_close(r.db);
		r.db = NULL;
		kv_vfs_mem_crash(r.tv->mem);
		recover_and_check(&r);
		run_release(&r);
		points++;
	}
	print_message("threaded: %" PRIu64 " crash points; %.1f s\n", points, now_s() - t0);
}

/* Injected faults make the engine log errors by the thousand: drop them
 * (KV_CRASH_VERBOSE=1 keeps them). */
static void drop_log(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

static int quiet(void **state)
{
	(void)state;
	if (!getenv("KV_CRASH_VERBOSE"))
		kv_log_set_sink(drop_log, NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_db_crash__every_point_of_short_workloads),
		cmocka_unit_test(test_db_crash__sampled_points_of_long_workloads),
		cmocka_unit_test(test_db_crash__torn_writes),
		cmocka_unit_test(test_db_crash__io_error_at_every_point_then_close),
		cmocka_unit_test(test_db_crash__io_errors_fail_writes_not_the_store),
		cmocka_unit_test(test_db_crash__io_errors_under_the_threaded_engine),
		cmocka_unit_test(test_db_crash__repeated_flush_failures_lose_nothing),
		cmocka_unit_test(test_db_crash__bit_rot_and_truncation_are_reported_not_served),
		cmocka_unit_test(test_db_crash__every_manifest_bit_is_checked),
		cmocka_unit_test(test_db_crash__bad_wal_record_followed_by_good_ones_is_skipped),
		cmocka_unit_test(test_db_crash__threaded_engine_crash_points),
	};
	/* KV_TEST_FILTER=<pattern> runs only the matching tests ('*' wildcards). */
	if (getenv("KV_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KV_TEST_FILTER"));
	return cmocka_run_group_tests(tests, quiet, NULL);
}
