/*
 * db_crash_vfs.c - the tracing VFS of the durability tests (test_db_crash*.c):
 * it forwards every call to the in-memory fault-injecting VFS (lsm/vfs.h),
 * records the class of each modifying operation (WAL append, log switch,
 * flush, compaction, recovery, manifest store, removal), and arms torn
 * writes and injected errors at an exact operation. API: db_crash_fx.h.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/lsm.h"

#include "db_crash_fx.h"

const char *const ev_class_name[EV_NCLASS] = {
	"wal-append", "log-switch", "flush", "compaction", "recovery", "manifest", "remove", "other",
};

enum file_kind { F_OTHER, F_LOG, F_SST, F_MANIFEST };

struct tfile {
	struct kv_file base;
	struct kv_file *in;
	struct tvfs *t;
	enum file_kind kind;
	char path[64];
};

bool ends_with(const char *s, const char *suffix)
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
struct tvfs *tvfs_new(void)
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
int tvfs_class(struct tvfs *t, uint64_t nth)
{
	pthread_mutex_lock(&t->mu);
	int c = nth >= 1 && nth <= t->nev ? t->ev[nth - 1] & ~EV_WRITE : -1;
	pthread_mutex_unlock(&t->mu);
	return c;
}
