/*
 * bench_flags.c - db_bench-style flags for `kvfs-bench storage|leveldb`.
 *
 * Accepts --flag=value, --flag value and db_bench's single-dash -flag=value;
 * a boolean flag alone means 1. One table holds every flag, its default and
 * its help text, so --help and the parser never disagree. The man page
 * (man/kvfs-bench.1) documents the same list.
 */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum flag_type { FLAG_INT, FLAG_SIZE, FLAG_BOOL, FLAG_DOUBLE, FLAG_STR };

struct flag_def {
	const char *name;
	enum flag_type type;
	size_t offset;    /* into struct bench_flags */
	size_t str_cap;   /* FLAG_STR: buffer size */
	int64_t min, max; /* FLAG_INT, FLAG_SIZE */
	bool kvfs_only;
	const char *help;
};

#define OFF(field) offsetof(struct bench_flags, field)
#define STR(field) OFF(field), sizeof(((struct bench_flags *)0)->field)

static const struct flag_def flag_defs[] = {
	{ "benchmarks", FLAG_STR, STR(benchmarks), 0, 0, false,
	  "comma list run in order: fillseq fillrandom overwrite readrandom readseq "
	  "seekrandom compact waitforcompaction stats" },
	{ "num", FLAG_SIZE, OFF(num), 0, 1, INT64_C(1) << 40, false,
	  "keys in the key space; each thread does this many writes in a fill" },
	{ "reads", FLAG_SIZE, OFF(reads), 0, -1, INT64_C(1) << 40, false,
	  "operations per thread in a read benchmark (-1: --num)" },
	{ "value_size", FLAG_SIZE, OFF(value_size), 0, 0, 64 << 20, false, "value bytes" },
	{ "key_size", FLAG_INT, OFF(key_size), 0, 1, 1024, false,
	  "key bytes: a zero-padded decimal number" },
	{ "sync", FLAG_BOOL, OFF(sync), 0, 0, 1, false,
	  "1: every write is durable (fsync) before it returns" },
	{ "threads", FLAG_INT, OFF(threads), 0, 1, 1024, false,
	  "threads per benchmark, each doing --num writes or --reads reads" },
	{ "db", FLAG_STR, STR(db), 0, 0, false, "database directory" },
	{ "use_existing_db", FLAG_BOOL, OFF(use_existing_db), 0, 0, 1, false,
	  "keep the database; skip fillseq and fillrandom" },
	{ "write_buffer_size", FLAG_SIZE, OFF(write_buffer_size), 0, 64 << 10,
	  INT64_C(1) << 34, false, "memtable bytes" },
	{ "cache_size", FLAG_SIZE, OFF(cache_size), 0, 0, INT64_C(1) << 40, false,
	  "block cache bytes (kvfs: 0 disables it)" },
	{ "block_size", FLAG_SIZE, OFF(block_size), 0, 0, INT64_C(1) << 26, false,
	  "data block bytes before compression (0: the engine's default)" },
	{ "bloom_bits", FLAG_INT, OFF(bloom_bits), 0, 0, 64, false,
	  "bloom filter bits per key (0: no filter)" },
	{ "compression", FLAG_STR, STR(compression), 0, 0, false,
	  "kvfs: lz4|none; leveldb: snappy|none" },
	{ "compression_ratio", FLAG_DOUBLE, OFF(compression_ratio), 0, 0, 0, false,
	  "fraction of each value that is random; the rest repeats it" },
	{ "seed", FLAG_INT, OFF(seed), 0, 0, INT64_MAX, false,
	  "seed for keys and values (same seed, same run)" },
	{ "compact_at_end", FLAG_BOOL, OFF(compact_at_end), 0, 0, 1, false,
	  "compact everything at the end and report the space used after it" },
	{ "report_rss", FLAG_BOOL, OFF(report_rss), 0, 0, 1, false,
	  "print the peak resident set size at the end" },
	{ "histogram", FLAG_BOOL, OFF(histogram), 0, 0, 1, false,
	  "print p50 p75 p99 p99.9 max instead of p50 p99" },
	{ "settle_ms", FLAG_INT, OFF(settle_ms), 0, 10, 600000, false,
	  "waitforcompaction: quiet time (no bytes written) that counts as done" },
	{ "sync_policy", FLAG_STR, STR(sync_policy), 0, 0, true,
	  "kvfs only: always|none|batch:MS, overrides --sync" },
	{ "inflight", FLAG_INT, OFF(inflight), 0, 0, 65536, true,
	  "kvfs only: fills keep this many async writes in flight per thread (0: sync calls)" },
};

#define N_FLAGS (sizeof(flag_defs) / sizeof(flag_defs[0]))

static void set_defaults(struct bench_flags *f, const char *engine)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->benchmarks, sizeof(f->benchmarks), "%s",
		 "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom");
	f->num = 1000000;
	f->reads = -1;
	f->value_size = 100;
	f->key_size = 16;
	f->threads = 1;
	const char *tmp = getenv("TMPDIR");
	snprintf(f->db, sizeof(f->db), "%s/kvfs-bench-%s", tmp && *tmp ? tmp : "/tmp", engine);
	f->write_buffer_size = 16 << 20;
	f->cache_size = 32 << 20;
	f->bloom_bits = 10;
	snprintf(f->compression, sizeof(f->compression), "%s",
		 strcmp(engine, "leveldb") == 0 ? "snappy" : "lz4");
	f->compression_ratio = 0.5;
	f->seed = 301; /* db_bench's RandomGenerator seed */
	f->settle_ms = 1000;
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kvfs-bench: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* Parses an integer with an optional k/m/g (binary) suffix when @sized. */
static bool parse_int(const char *s, bool sized, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return false;
	int shift = 0;
	if (sized && *end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return false;
		}
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
	}
	if (*end)
		return false;
	if (shift && (v > (INT64_MAX >> shift) || v < -(INT64_MAX >> shift)))
		return false;
	*out = (int64_t)v * (INT64_C(1) << shift);
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes")) {
		*out = true;
		return true;
	}
	if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no")) {
		*out = false;
		return true;
	}
	return false;
}

static const struct flag_def *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_FLAGS; i++)
		if (strlen(flag_defs[i].name) == len && !strncmp(flag_defs[i].name, name, len))
			return &flag_defs[i];
	return NULL;
}

static void set_flag(struct bench_flags *f, const struct flag_def *d, const char *value)
{
	char *base = (char *)f + d->offset;
	switch (d->type) {
	case FLAG_INT:
	case FLAG_SIZE: {
		int64_t v;
		if (!parse_int(value, d->type == FLAG_SIZE, &v))
			die("--%s: not a number: '%s'", d->name, value);
		if (v < d->min || v > d->max)
			die("--%s: %s is out of range (allowed %lld..%lld)", d->name, value,
			    (long long)d->min, (long long)d->max);
		memcpy(base, &v, sizeof(v));
		break;
	}
	case FLAG_BOOL: {
		bool v;
		if (!parse_bool(value, &v))
			die("--%s: expected 0 or 1, got '%s'", d->name, value);
		memcpy(base, &v, sizeof(v));
		break;
	}
	case FLAG_DOUBLE: {
		char *end;
		errno = 0;
		double v = strtod(value, &end);
		if (errno || end == value || *end)
			die("--%s: not a number: '%s'", d->name, value);
		memcpy(base, &v, sizeof(v));
		break;
	}
	case FLAG_STR:
		if (strlen(value) >= d->str_cap)
			die("--%s: too long: '%s'", d->name, value);
		snprintf(base, d->str_cap, "%s", value);
		break;
	}
}

/* Decimal digits needed to write @v. */
static int64_t digits(uint64_t v)
{
	int64_t n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static void check_benchmarks(const char *list)
{
	char name[64];
	size_t count = 0;
	const char *p = list;
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(name))
			die("--benchmarks: bad list '%s'", list);
		memcpy(name, p, len);
		name[len] = '\0';
		if (!bench_known(name))
			die("--benchmarks: unknown benchmark '%s' (see --help)", name);
		if (++count > BENCH_MAX_BENCHMARKS)
			die("--benchmarks: more than 32 benchmarks in '%s'", list);
		p += len;
		if (*p == ',')
			p++;
	}
	if (count == 0)
		die("--benchmarks: empty list");
}

static void check_sync_policy(const char *s)
{
	if (!*s || !strcmp(s, "always") || !strcmp(s, "none"))
		return;
	if (!strncmp(s, "batch:", 6) && s[6] && strspn(s + 6, "0123456789") == strlen(s + 6))
		return;
	die("--sync_policy: expected always, none or batch:MS, got '%s'", s);
}

static void validate(struct bench_flags *f, const char *engine)
{
	bool leveldb = strcmp(engine, "leveldb") == 0;
	check_benchmarks(f->benchmarks);
	if (f->reads < 0)
		f->reads = f->num;
	if (digits((uint64_t)(f->num - 1)) > f->key_size)
		die("--key_size %lld is too small: --num %lld needs %lld decimal digits",
		    (long long)f->key_size, (long long)f->num,
		    (long long)digits((uint64_t)(f->num - 1)));
	if (!(f->compression_ratio > 0 && f->compression_ratio <= 1))
		die("--compression_ratio: must be in (0, 1]");
	if (leveldb) {
		if (strcmp(f->compression, "snappy") && strcmp(f->compression, "none"))
			die("--compression: LevelDB supports snappy or none, not '%s'",
			    f->compression);
	} else if (strcmp(f->compression, "lz4") && strcmp(f->compression, "none")) {
		die("--compression: kvfs supports lz4 or none, not '%s'", f->compression);
	}
	check_sync_policy(f->sync_policy);
	if (!f->db[0])
		die("--db: empty path");
}

void bench_flags_usage(FILE *out, const char *engine)
{
	struct bench_flags d;
	bool leveldb = strcmp(engine, "leveldb") == 0;
	set_defaults(&d, engine);
	fprintf(out, "usage: kvfs-bench %s [--flag=value ...]\n\nflags (default in brackets):\n",
		leveldb ? "leveldb" : "storage");
	for (size_t i = 0; i < N_FLAGS; i++) {
		const struct flag_def *fd = &flag_defs[i];
		const char *base = (const char *)&d + fd->offset;
		if (fd->kvfs_only && leveldb)
			continue;
		char def[600];
		switch (fd->type) {
		case FLAG_INT:
		case FLAG_SIZE: {
			int64_t v;
			memcpy(&v, base, sizeof(v));
			snprintf(def, sizeof(def), "%lld", (long long)v);
			break;
		}
		case FLAG_BOOL: {
			bool v;
			memcpy(&v, base, sizeof(v));
			snprintf(def, sizeof(def), "%d", v ? 1 : 0);
			break;
		}
		case FLAG_DOUBLE: {
			double v;
			memcpy(&v, base, sizeof(v));
			snprintf(def, sizeof(def), "%g", v);
			break;
		}
		case FLAG_STR:
			snprintf(def, sizeof(def), "%s", base);
			break;
		}
		fprintf(out, "  --%-18s %s [%s]\n", fd->name, fd->help, def);
	}
	fprintf(out, "\nSizes take k, m or g (binary) suffixes. See kvfs-bench(1).\n");
}

void bench_flags_parse(struct bench_flags *f, const char *engine, int argc, char **argv,
		       int first)
{
	set_defaults(f, engine);
	bool leveldb = strcmp(engine, "leveldb") == 0;
	for (int i = first; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "-help")) {
			bench_flags_usage(stdout, engine);
			exit(0);
		}
		if (arg[0] != '-')
			die("unexpected argument '%s' (flags look like --num=1000)", arg);
		const char *name = arg + (arg[1] == '-' ? 2 : 1);
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const struct flag_def *d = find_flag(name, len);
		if (!d)
			die("unknown flag '%s' (see kvfs-bench %s --help)", arg,
			    leveldb ? "leveldb" : "storage");
		if (d->kvfs_only && leveldb)
			die("--%s applies to kvfs only", d->name);
		const char *value;
		if (eq) {
			value = eq + 1;
		} else if (d->type == FLAG_BOOL) {
			bool ignored;
			if (i + 1 < argc && parse_bool(argv[i + 1], &ignored))
				value = argv[++i];
			else
				value = "1";
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			die("--%s needs a value", d->name);
		}
		set_flag(f, d, value);
	}
	validate(f, engine);
}
