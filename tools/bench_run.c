/*
 * bench_run.c - the benchmark driver of kvfs-bench: db_bench's benchmark
 * shapes run through one struct bench_engine (bench.h), so kvfs and LevelDB
 * are measured by the same loop and print the same lines.
 *
 * Semantics follow db_bench (LevelDB's and RocksDB's alike), so figures
 * compare one to one:
 *   - keys are the numbers 0..num-1 written as zero-padded decimal,
 *     key_size bytes; fillrandom, overwrite, readrandom and seekrandom draw
 *     them uniformly WITH replacement (so a fillrandom of N keys leaves about
 *     63% of them present, and readrandom finds about that many);
 *   - every thread does --num writes (fills) or --reads reads; the threads
 *     of a fillseq all write the same keys 0..num-1;
 *   - fillseq and fillrandom start from an empty database (the previous one
 *     is deleted); every other benchmark keeps the database as it is;
 *   - micros/op is thread time per operation (summed over threads, divided
 *     by all operations); ops/sec and MB/s are all operations over the wall
 *     time from the first thread's start to the last one's end; MB is 2^20
 *     bytes of key + value (reads count only what they found);
 *   - values come from one buffer of compressible bytes built from --seed:
 *     each 100-byte piece is --compression_ratio random printable bytes, the
 *     rest repeats them (db_bench's RandomGenerator).
 * Method: doc/benchmarks.md.
 */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/rng.h"
#include "util/time.h"

enum kind {
	FILLSEQ,
	FILLRANDOM,
	OVERWRITE,
	READRANDOM,
	READSEQ,
	SEEKRANDOM,
	COMPACT,
	WAITFORCOMPACTION,
	STATS,
};

static const struct {
	const char *name;
	enum kind kind;
} benchmarks[] = {
	{ "fillseq", FILLSEQ },
	{ "fillrandom", FILLRANDOM },
	{ "overwrite", OVERWRITE },
	{ "readrandom", READRANDOM },
	{ "readseq", READSEQ },
	{ "seekrandom", SEEKRANDOM },
	{ "compact", COMPACT },
	{ "waitforcompaction", WAITFORCOMPACTION },
	{ "stats", STATS },
};

#define N_BENCHMARKS (sizeof(benchmarks) / sizeof(benchmarks[0]))

static bool is_fill(enum kind k)
{
	return k == FILLSEQ || k == FILLRANDOM || k == OVERWRITE;
}

/* Fills that start from an empty database, as in db_bench. */
static bool wants_fresh_db(enum kind k)
{
	return k == FILLSEQ || k == FILLRANDOM;
}

/* Everything one kvfs-bench run shares; owned by bench_run(). */
struct run {
	const struct bench_engine *engine;
	const struct bench_flags *f;
	struct bench_db *db;
	char *values;            /* the value source, read-only once built */
	size_t values_len;
	uint64_t threads_started; /* seeds each thread differently */
	/* Since the database was last created (or opened, with an existing one): */
	uint64_t user_bytes;     /* key + value bytes written by the benchmarks */
	struct bench_procio io_base;
	bool pristine;           /* nothing has run on it yet */
};

/* What one benchmark's threads share; guarded by mu. */
struct start_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t ready; /* threads waiting at the gate */
	bool open;
};

/* One benchmark thread; filled by the thread, read after it is joined. */
struct thread_state {
	struct run *run;
	struct start_gate *gate;
	enum kind kind;
	const char *bench_name;
	struct kv_rng rng;
	size_t value_pos;
	uint64_t ops, bytes, found;
	uint64_t start_ns, finish_ns;
	int error;
	/* Async writes (--inflight): amu guards inflight, async_error, hist, free_slots. */
	pthread_mutex_t amu;
	pthread_cond_t acv;
	int64_t inflight;
	int async_error;
	struct async_slot *slots;
	struct async_slot **free_slots;
	int64_t n_free;
	struct bench_hist hist;
};

/* One async write in flight. */
struct async_slot {
	struct thread_state *ts;
	uint64_t t0;
};

bool bench_known(const char *name)
{
	for (size_t i = 0; i < N_BENCHMARKS; i++)
		if (!strcmp(benchmarks[i].name, name))
			return true;
	return false;
}

/* ---- Keys and values ----------------------------------------------------- */

/* Writes @k as a zero-padded decimal number filling @len bytes. */
static void format_key(char *buf, size_t len, uint64_t k)
{
	memset(buf, '0', len);
	for (size_t i = len; i > 0 && k > 0; i--) {
		buf[i - 1] = (char)('0' + k % 10);
		k /= 10;
	}
}

static int build_values(struct run *r)
{
	const struct bench_flags *f = r->f;
	size_t len = 1 << 20;
	if ((size_t)f->value_size * 2 > len)
		len = (size_t)f->value_size * 2;
	len = (len + 99) / 100 * 100;
	r->values = malloc(len);
	if (!r->values)
		return -1;
	r->values_len = len;
	struct kv_rng rng;
	kv_rng_seed(&rng, (uint64_t)f->seed);
	size_t raw = (size_t)(100 * f->compression_ratio);
	if (raw < 1)
		raw = 1;
	for (size_t piece = 0; piece < len; piece += 100) {
		char *p = r->values + piece;
		for (size_t i = 0; i < raw; i++)
			p[i] = (char)(' ' + kv_rng_below(&rng, 95));
		for (size_t i = raw; i < 100; i++)
			p[i] = p[i - raw];
	}
	return 0;
}

static struct kv_slice next_value(struct thread_state *ts)
{
	size_t n = (size_t)ts->run->f->value_size;
	if (ts->value_pos + n > ts->run->values_len)
		ts->value_pos = 0;
	struct kv_slice v = kv_slice_make(ts->run->values + ts->value_pos, n);
	ts->value_pos += n;
	return v;
}

/* ---- The benchmarks ------------------------------------------------------ */

/* Returns an unused slot (its write was never queued). */
static void async_unused(struct async_slot *slot)
{
	struct thread_state *ts = slot->ts;
	pthread_mutex_lock(&ts->amu);
	ts->free_slots[ts->n_free++] = slot;
	ts->inflight--;
	pthread_mutex_unlock(&ts->amu);
}

static void async_done(void *arg, int status)
{
	struct async_slot *slot = arg;
	struct thread_state *ts = slot->ts;
	uint64_t now = kv_now_ns();
	pthread_mutex_lock(&ts->amu);
	bench_hist_add(&ts->hist, now - slot->t0);
	if (status < 0 && ts->async_error == 0)
		ts->async_error = status;
	ts->free_slots[ts->n_free++] = slot;
	ts->inflight--;
	pthread_cond_signal(&ts->acv);
	pthread_mutex_unlock(&ts->amu);
}

static void do_fill(struct thread_state *ts, char *key)
{
	const struct bench_flags *f = ts->run->f;
	const struct bench_engine *e = ts->run->engine;
	size_t ksize = (size_t)f->key_size;
	bool async = f->inflight > 0 && e->put_async;
	for (int64_t i = 0; i < f->num; i++) {
		uint64_t k = ts->kind == FILLSEQ ? (uint64_t)i : kv_rng_below(&ts->rng, (uint64_t)f->num);
		format_key(key, ksize, k);
		struct kv_slice v = next_value(ts);
		if (async) {
			pthread_mutex_lock(&ts->amu);
			while (ts->n_free == 0)
				pthread_cond_wait(&ts->acv, &ts->amu);
			struct async_slot *slot = ts->free_slots[--ts->n_free];
			ts->inflight++;
			int failed = ts->async_error;
			pthread_mutex_unlock(&ts->amu);
			if (failed) {
				fprintf(stderr, "kvfs-bench: %s: an async write failed\n", ts->bench_name);
				ts->error = -1;
				async_unused(slot);
				break;
			}
			slot->t0 = kv_now_ns();
			if (e->put_async(ts->run->db, kv_slice_make(key, ksize), v, async_done, slot) < 0) {
				ts->error = -1;
				async_unused(slot);
				break;
			}
		} else {
			uint64_t t0 = kv_now_ns();
			if (e->put(ts->run->db, kv_slice_make(key, ksize), v) < 0) {
				ts->error = -1;
				break;
			}
			bench_hist_add(&ts->hist, kv_now_ns() - t0);
		}
		ts->ops++;
		ts->bytes += ksize + v.n;
	}
	if (async) {
		pthread_mutex_lock(&ts->amu);
		while (ts->inflight > 0)
			pthread_cond_wait(&ts->acv, &ts->amu);
		if (ts->async_error && !ts->error) {
			fprintf(stderr, "kvfs-bench: %s: an async write failed (%d)\n", ts->bench_name,
				ts->async_error);
			ts->error = -1;
		}
		pthread_mutex_unlock(&ts->amu);
	}
}

static void do_readrandom(struct thread_state *ts, char *key)
{
	const struct bench_flags *f = ts->run->f;
	size_t ksize = (size_t)f->key_size;
	for (int64_t i = 0; i < f->reads; i++) {
		format_key(key, ksize, kv_rng_below(&ts->rng, (uint64_t)f->num));
		size_t vlen = 0;
		uint64_t t0 = kv_now_ns();
		int rc = ts->run->engine->get(ts->run->db, kv_slice_make(key, ksize), &vlen);
		bench_hist_add(&ts->hist, kv_now_ns() - t0);
		if (rc < 0) {
			ts->error = -1;
			return;
		}
		if (rc == 1) {
			if (vlen != (size_t)f->value_size && !f->use_existing_db) {
				fprintf(stderr, "kvfs-bench: readrandom: key %.*s has a %zu-byte value, "
					"expected %lld\n", (int)ksize, key, vlen, (long long)f->value_size);
				ts->error = -1;
				return;
			}
			ts->found++;
			ts->bytes += ksize + vlen;
		}
		ts->ops++;
	}
}

static void do_readseq(struct thread_state *ts)
{
	const struct bench_engine *e = ts->run->engine;
	struct bench_iter *it = e->iter_new(ts->run->db);
	if (!it) {
		ts->error = -1;
		return;
	}
	e->iter_seek_first(it);
	for (int64_t i = 0; i < ts->run->f->reads && e->iter_valid(it); i++) {
		uint64_t t0 = kv_now_ns();
		size_t n = e->iter_key(it).n + e->iter_value(it).n;
		e->iter_next(it);
		bench_hist_add(&ts->hist, kv_now_ns() - t0);
		ts->ops++;
		ts->found++;
		ts->bytes += n;
	}
	if (e->iter_status(it) < 0)
		ts->error = -1;
	e->iter_free(it);
}

static void do_seekrandom(struct thread_state *ts, char *key)
{
	const struct bench_flags *f = ts->run->f;
	const struct bench_engine *e = ts->run->engine;
	size_t ksize = (size_t)f->key_size;
	/* One iterator per thread, reused for every seek (RocksDB's db_bench). */
	struct bench_iter *it = e->iter_new(ts->run->db);
	if (!it) {
		ts->error = -1;
		return;
	}
	for (int64_t i = 0; i < f->reads; i++) {
		format_key(key, ksize, kv_rng_below(&ts->rng, (uint64_t)f->num));
		struct kv_slice target = kv_slice_make(key, ksize);
		uint64_t t0 = kv_now_ns();
		e->iter_seek(it, target);
		if (e->iter_valid(it)) {
			struct kv_slice k = e->iter_key(it);
			if (kv_slice_eq(k, target)) {
				ts->found++;
				ts->bytes += k.n + e->iter_value(it).n;
			}
		}
		bench_hist_add(&ts->hist, kv_now_ns() - t0);
		ts->ops++;
	}
	if (e->iter_status(it) < 0)
		ts->error = -1;
	e->iter_free(it);
}

static void *thread_main(void *arg)
{
	struct thread_state *ts = arg;
	char *key = malloc((size_t)ts->run->f->key_size);
	if (!key) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		ts->error = -1;
	}

	pthread_mutex_lock(&ts->gate->mu);
	ts->gate->ready++;
	pthread_cond_broadcast(&ts->gate->cv);
	while (!ts->gate->open)
		pthread_cond_wait(&ts->gate->cv, &ts->gate->mu);
	pthread_mutex_unlock(&ts->gate->mu);

	ts->start_ns = kv_now_ns();
	if (key) {
		switch (ts->kind) {
		case FILLSEQ:
		case FILLRANDOM:
		case OVERWRITE:
			do_fill(ts, key);
			break;
		case READRANDOM:
			do_readrandom(ts, key);
			break;
		case READSEQ:
			do_readseq(ts);
			break;
		case SEEKRANDOM:
			do_seekrandom(ts, key);
			break;
		default:
			break;
		}
	}
	ts->finish_ns = kv_now_ns();
	free(key);
	return NULL;
}

/* ---- Reporting ----------------------------------------------------------- */

static double mib(uint64_t bytes)
{
	return (double)bytes / 1048576.0;
}

/* Prints write amplification since @base for @user bytes, and the space used. */
static void report_io(struct run *r, const char *label, const struct bench_procio *base,
		      const struct bench_engine_io *ebase, uint64_t user)
{
	struct bench_procio now;
	bench_procio_read(0, &now);
	if (user == 0) {
		printf("  write-amp  : n/a (no writes)%s\n", label);
	} else if (!now.valid || !base->valid) {
		printf("  write-amp  : n/a (/proc/self/io unreadable)%s\n", label);
	} else {
		uint64_t w = now.wchar - base->wchar;
		uint64_t disk = (now.write_bytes - base->write_bytes) -
				(now.cancelled_write_bytes - base->cancelled_write_bytes);
		if ((int64_t)disk < 0)
			disk = 0;
		printf("  write-amp  : %.2f wchar (%.1f MB written for %.1f MB of keys+values); "
		       "%.2f block-layer",
		       (double)w / (double)user, mib(w), mib(user), (double)disk / (double)user);
		if (r->engine->engine_io && ebase) {
			struct bench_engine_io e;
			r->engine->engine_io(r->db, &e);
			if (e.valid) {
				double u = (double)user;
				double wal = (double)(e.wal - ebase->wal) / u;
				double fl = (double)(e.flush - ebase->flush) / u;
				double co = (double)(e.compaction - ebase->compaction) / u;
				double ma = (double)(e.manifest - ebase->manifest) / u;
				printf("; %.2f engine (wal %.2f flush %.2f compaction %.2f manifest %.2f)",
				       wal + fl + co + ma, wal, fl, co, ma);
			}
		}
		printf("%s\n", label);
	}
	printf("  space      : %.1f MB in %s%s\n", mib(bench_dir_bytes(r->f->db)), r->f->db, label);
	fflush(stdout);
}

static void print_result(const char *name, const struct thread_state *ts, int64_t n,
			 bool show_found, bool more_percentiles)
{
	uint64_t ops = 0, bytes = 0, found = 0, start = UINT64_MAX, finish = 0;
	double thread_secs = 0;
	struct bench_hist *h = malloc(sizeof(*h));
	if (!h)
		return;
	bench_hist_init(h);
	for (int64_t i = 0; i < n; i++) {
		ops += ts[i].ops;
		bytes += ts[i].bytes;
		found += ts[i].found;
		thread_secs += (double)(ts[i].finish_ns - ts[i].start_ns) / 1e9;
		if (ts[i].start_ns < start)
			start = ts[i].start_ns;
		if (ts[i].finish_ns > finish)
			finish = ts[i].finish_ns;
		bench_hist_merge(h, &ts[i].hist);
	}
	double elapsed = (double)(finish - start) / 1e9;
	if (elapsed <= 0)
		elapsed = 1e-9;
	uint64_t done = ops ? ops : 1; /* as db_bench: pretend one op was done */
	printf("%-12s : %11.3f micros/op %lld ops/sec; %6.1f MB/s", name,
	       thread_secs * 1e6 / (double)done, (long long)((double)ops / elapsed),
	       mib(bytes) / elapsed);
	if (show_found)
		printf(" (%llu of %llu found)", (unsigned long long)found, (unsigned long long)ops);
	if (more_percentiles)
		printf(" p50 %.1f p75 %.1f p99 %.1f p99.9 %.1f max %.1f micros",
		       bench_hist_quantile(h, 0.50) / 1e3, bench_hist_quantile(h, 0.75) / 1e3,
		       bench_hist_quantile(h, 0.99) / 1e3, bench_hist_quantile(h, 0.999) / 1e3,
		       (double)h->max_ns / 1e3);
	else
		printf(" p50 %.1f p99 %.1f micros", bench_hist_quantile(h, 0.50) / 1e3,
		       bench_hist_quantile(h, 0.99) / 1e3);
	printf("\n");
	fflush(stdout);
	free(h);
}

/* ---- Running ------------------------------------------------------------- */

static int run_threads(struct run *r, enum kind kind, const char *name)
{
	const struct bench_flags *f = r->f;
	int64_t n = f->threads;
	struct thread_state *ts = calloc((size_t)n, sizeof(*ts));
	pthread_t *tids = calloc((size_t)n, sizeof(*tids));
	struct start_gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };
	int64_t started = 0;
	int rc = -1;
	bool async = is_fill(kind) && f->inflight > 0 && r->engine->put_async;
	if (!ts || !tids) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		goto out;
	}
	for (int64_t i = 0; i < n; i++) {
		struct thread_state *t = &ts[i];
		t->run = r;
		t->gate = &gate;
		t->kind = kind;
		t->bench_name = name;
		kv_rng_seed(&t->rng, (uint64_t)f->seed * 1000003u + ++r->threads_started);
		bench_hist_init(&t->hist);
		pthread_mutex_init(&t->amu, NULL);
		pthread_cond_init(&t->acv, NULL);
		if (async) {
			t->slots = calloc((size_t)f->inflight, sizeof(*t->slots));
			t->free_slots = calloc((size_t)f->inflight, sizeof(*t->free_slots));
			if (!t->slots || !t->free_slots) {
				fprintf(stderr, "kvfs-bench: out of memory\n");
				goto out;
			}
			for (int64_t s = 0; s < f->inflight; s++) {
				t->slots[s].ts = t;
				t->free_slots[s] = &t->slots[s];
			}
			t->n_free = f->inflight;
		}
	}
	for (; started < n; started++) {
		int err = pthread_create(&tids[started], NULL, thread_main, &ts[started]);
		if (err) {
			fprintf(stderr, "kvfs-bench: pthread_create: %s\n", strerror(err));
			break;
		}
	}
	pthread_mutex_lock(&gate.mu);
	while (gate.ready < started)
		pthread_cond_wait(&gate.cv, &gate.mu);
	gate.open = true;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
	for (int64_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (started < n)
		goto out;

	rc = 0;
	uint64_t written = 0;
	for (int64_t i = 0; i < n; i++) {
		if (ts[i].error)
			rc = -1;
		if (is_fill(kind))
			written += ts[i].bytes;
	}
	r->user_bytes += written;
	if (rc == 0)
		print_result(name, ts, n, kind == READRANDOM || kind == SEEKRANDOM, f->histogram);
out:
	if (ts) {
		for (int64_t i = 0; i < n; i++) {
			free(ts[i].slots);
			free(ts[i].free_slots);
			pthread_mutex_destroy(&ts[i].amu);
			pthread_cond_destroy(&ts[i].acv);
		}
	}
	free(ts);
	free(tids);
	return rc;
}

/*
 * waitforcompaction: waits until the engine has written nothing for
 * --settle_ms and reports no queued flush; the engines give no exact "idle"
 * signal, so, like RocksDB's db_bench, this is "probably done".
 */
static int wait_for_compaction(struct run *r)
{
	const uint64_t poll_ns = 100 * 1000000ull, limit_ns = 600ull * 1000000000ull;
	uint64_t settle_ns = (uint64_t)r->f->settle_ms * 1000000ull;
	uint64_t start = kv_now_ns(), quiet_since = start;
	struct bench_procio last;
	bench_procio_read(0, &last);
	for (;;) {
		struct timespec ts = { 0, (long)poll_ns };
		nanosleep(&ts, NULL);
		struct bench_procio io;
		bench_procio_read(0, &io);
		uint64_t now = kv_now_ns();
		bool busy = r->engine->busy && r->engine->busy(r->db);
		if (!io.valid || io.wchar != last.wchar || busy)
			quiet_since = now;
		last = io;
		if (now - quiet_since >= settle_ns)
			break;
		if (now - start >= limit_ns) {
			fprintf(stderr, "kvfs-bench: waitforcompaction: still writing after 600 s\n");
			break;
		}
	}
	double secs = (double)(kv_now_ns() - start - settle_ns) / 1e9;
	printf("%-12s : %11.3f seconds (then %lld ms without writes)\n", "waitforcompaction",
	       secs < 0 ? 0 : secs, (long long)r->f->settle_ms);
	fflush(stdout);
	return 0;
}

static int open_db(struct run *r, bool fresh)
{
	if (fresh && bench_dir_wipe(r->f->db) < 0)
		return -1;
	if (mkdir(r->f->db, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "kvfs-bench: cannot create %s: %s\n", r->f->db, strerror(errno));
		return -1;
	}
	if (r->engine->open(r->f, &r->db) < 0)
		return -1;
	r->user_bytes = 0;
	bench_procio_read(0, &r->io_base);
	r->pristine = true;
	return 0;
}

static int close_db(struct run *r)
{
	int rc = 0;
	if (r->db)
		rc = r->engine->close(r->db);
	r->db = NULL;
	return rc;
}

static void print_header(const struct run *r)
{
	const struct bench_flags *f = r->f;
	double raw = (double)(int)(100 * f->compression_ratio) / 100.0;
	printf("kvfs-bench %s: %s\n", r->engine->name, f->db);
	printf("Keys:       %lld bytes each\n", (long long)f->key_size);
	printf("Values:     %lld bytes each (%lld bytes after compression)\n",
	       (long long)f->value_size, (long long)((double)f->value_size * raw));
	printf("Entries:    %lld per thread, %lld threads, reads %lld per thread\n",
	       (long long)f->num, (long long)f->threads, (long long)f->reads);
	printf("Options:    write_buffer_size %lld, cache_size %lld, bloom_bits %lld, "
	       "compression %s, sync %s, inflight %lld, seed %lld\n",
	       (long long)f->write_buffer_size, (long long)f->cache_size, (long long)f->bloom_bits,
	       f->compression, f->sync_policy[0] ? f->sync_policy : f->sync ? "1" : "0",
	       (long long)f->inflight, (long long)f->seed);
	printf("------------------------------------------------\n");
	fflush(stdout);
}

int bench_run(const struct bench_engine *engine, const struct bench_flags *f)
{
	struct run r;
	const struct bench_engine_io since_open = { 0 }; /* engine counters start at open */
	memset(&r, 0, sizeof(r));
	r.engine = engine;
	r.f = f;
	int rc = 1;
	if (build_values(&r) < 0) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return 1;
	}
	print_header(&r);
	if (open_db(&r, !f->use_existing_db) < 0)
		goto out;

	const char *p = f->benchmarks;
	while (*p) {
		char name[64];
		size_t len = strcspn(p, ",");
		snprintf(name, sizeof(name), "%.*s", (int)len, p);
		p += len;
		if (*p == ',')
			p++;
		enum kind kind = FILLSEQ;
		for (size_t i = 0; i < N_BENCHMARKS; i++)
			if (!strcmp(benchmarks[i].name, name))
				kind = benchmarks[i].kind;

		if (wants_fresh_db(kind)) {
			if (f->use_existing_db) {
				printf("%-12s : skipped (--use_existing_db is true)\n", name);
				continue;
			}
			if (!r.pristine) {
				if (close_db(&r) < 0 || open_db(&r, true) < 0)
					goto out;
			}
		}
		r.pristine = false;

		struct bench_procio io0;
		struct bench_engine_io e0 = { 0 };
		bench_procio_read(0, &io0);
		if (engine->engine_io)
			engine->engine_io(r.db, &e0);
		uint64_t user0 = r.user_bytes;

		switch (kind) {
		case COMPACT: {
			uint64_t t0 = kv_now_ns();
			if (engine->compact(r.db) < 0)
				goto out;
			printf("%-12s : %11.3f seconds\n", name, (double)(kv_now_ns() - t0) / 1e9);
			report_io(&r, " (since the database was created)", &r.io_base,
				  &since_open, r.user_bytes);
			break;
		}
		case WAITFORCOMPACTION:
			wait_for_compaction(&r);
			break;
		case STATS:
			if (engine->print_stats)
				engine->print_stats(r.db, stdout);
			break;
		default:
			if (run_threads(&r, kind, name) < 0)
				goto out;
			if (is_fill(kind))
				report_io(&r, "", &io0, &e0, r.user_bytes - user0);
			break;
		}
	}

	printf("%-12s : %.1f MB of keys+values written since the database was %s\n", "total",
	       mib(r.user_bytes), f->use_existing_db ? "opened" : "created");
	report_io(&r, "", &r.io_base, &since_open, r.user_bytes);
	if (f->compact_at_end) {
		uint64_t t0 = kv_now_ns();
		if (engine->compact(r.db) < 0)
			goto out;
		printf("%-12s : %11.3f seconds\n", "compact_at_end", (double)(kv_now_ns() - t0) / 1e9);
		report_io(&r, " (after compaction)", &r.io_base, &since_open, r.user_bytes);
	}
	rc = 0;
out:
	if (close_db(&r) < 0)
		rc = 1;
	if (f->report_rss) {
		printf("%-12s : %.1f MB (budgets: write buffer %.1f MB + cache %.1f MB)\n", "peak RSS",
		       (double)bench_peak_rss_kib() / 1024.0, mib((uint64_t)f->write_buffer_size),
		       mib((uint64_t)f->cache_size));
	}
	fflush(stdout);
	free(r.values);
	return rc;
}
