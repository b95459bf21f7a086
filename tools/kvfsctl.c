/*
 * kvfsctl - the data and admin command line of kvfs (DESIGN §1, §9; issue 4):
 * put, get, delete, list and stats against a cluster through the client
 * library (src/client/client.h); conflicts and fsck over the file system's
 * objects (fuse/object.h, fuse/siblings.h; doc/fs.md §6). Manual:
 * man/kvfsctl.8.
 *
 * Exit codes: 0 success, 1 error (one line on stderr), 2 not found, 3 get
 * found several siblings (all printed).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "fuse/object.h"
#include "fuse/siblings.h"
#include "proto/auth.h"
#include "util/error.h"
#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

#define EXIT_ERR 1
#define EXIT_NOTFOUND 2
#define EXIT_SIBLINGS 3

#define DEFAULT_NODES "127.0.0.1:7400"
#define MAX_VALUE ((size_t)4 << 20)

struct opts {
	const char *nodes;
	const char *cluster;
	const char *secret_file;
	uint8_t r, w;
	uint32_t timeout_ms;
	bool verbose;
	bool key_hex;
};

static const char *usage_text =
	"usage: kvfsctl [-c HOST:PORT[,...]] [-r R] [-w W] [-t TIMEOUT_MS]\n"
	"               [--secret-file F] [--cluster NAME] [-v] [--key-hex] COMMAND ...\n"
	"commands:\n"
	"  put KEY [FILE|-] [--context CTX | --blind]\n"
	"  get KEY [--sibling I | --context]\n"
	"  delete KEY [--context CTX]\n"
	"  list DIR [-l]\n"
	"  stats [-n NODE_INDEX]\n"
	"  gc [--grace SECONDS]\n"
	"  conflicts PATH\n"
	"  fsck [--leases-older-than SECONDS]\n"
	"See kvfsctl(8).\n";

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(EXIT_ERR);
}

/* Key or dir as printable text for messages: non-printable bytes as \xNN. */
static const char *show(struct kv_slice k)
{
	static char buf[512];
	size_t o = 0, i = 0;
	for (; i < k.n && o + 8 < sizeof(buf); i++) {
		uint8_t ch = k.p[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", ch);
	}
	if (i < k.n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static void fail(const char *cmd, struct kv_slice key, bool with_key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(const char *cmd, struct kv_slice key, bool with_key, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "kvfsctl: %s", cmd);
	if (with_key)
		fprintf(stderr, " %s", show(key));
	fputs(": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The one-line reason of a failed client call. */
static const char *why(struct kv_client *c, int rc)
{
	const char *m = kv_client_errmsg(c);
	return m && m[0] ? m : kv_strerror(rc);
}

static int parse_quorum(const char *s, uint8_t *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > 16)
		return -1;
	*out = (uint8_t)v;
	return 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * A key or dir argument: its raw bytes, or with --key-hex or a "hex:"
 * prefix the bytes its hex digits spell. *owned gets what to free.
 */
static int parse_key(const struct opts *o, const char *arg, struct kv_slice *key, uint8_t **owned)
{
	*owned = NULL;
	const char *hex = NULL;
	if (o->key_hex)
		hex = arg;
	else if (strncmp(arg, "hex:", 4) == 0)
		hex = arg + 4;
	if (!hex) {
		*key = kv_slice_str(arg);
		return key->n > KV_MSG_KEY_MAX ? -2 : 0; /* doc/protocol.md §7 */
	}
	size_t n = strlen(hex);
	if (n % 2)
		return -1;
	uint8_t *p = malloc(n / 2 + 1);
	if (!p)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(p);
			return -1;
		}
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	*owned = p;
	*key = kv_slice_make(p, n / 2);
	return key->n > KV_MSG_KEY_MAX ? -2 : 0;
}

static void format_dot(struct kv_dot d, char *buf, size_t n)
{
	snprintf(buf, n, "%u.%u:%llu", d.actor.node, d.actor.epoch, (unsigned long long)d.counter);
}

static void format_time(int64_t ns, char *buf, size_t n)
{
	time_t secs = (time_t)(ns / 1000000000);
	long ms = (long)((ns % 1000000000) / 1000000);
	if (ns < 0) {
		secs -= 1;
		ms += 1000;
		if (ms >= 1000)
			ms -= 1000, secs += 1;
	}
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, n, "?");
		return;
	}
	char date[32];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03ldZ", date, ms);
}

/* The context as one base64 line (canonical encoding, doc/versions.md §6.2). */
static int print_context(const struct kv_ctx *ctx)
{
	struct kv_buf b = KV_BUF_INIT;
	int rc = kv_ctx_encode(ctx, &b);
	if (rc < 0)
		return rc;
	size_t len = sodium_base64_ENCODED_LEN(b.n, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(len);
	if (!s) {
		kv_buf_release(&b);
		return -ENOMEM;
	}
	sodium_bin2base64(s, len, b.p, b.n, sodium_base64_VARIANT_ORIGINAL);
	printf("%s\n", s);
	free(s);
	kv_buf_release(&b);
	return 0;
}

static int parse_context(const char *s, struct kv_ctx *out)
{
	size_t slen = strlen(s), blen = 0;
	uint8_t *bin = malloc(slen + 1);
	int rc = KV_EINVAL;
	if (!bin)
		return -ENOMEM;
	if (sodium_base642bin(bin, slen + 1, s, slen, " \t\r\n", &blen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) == 0)
		rc = kv_ctx_decode(kv_slice_make(bin, blen), out);
	free(bin);
	return rc;
}

static bool write_all(const void *p, size_t n)
{
	return n == 0 || fwrite(p, 1, n, stdout) == n;
}

/* Reads a whole file (or stdin for NULL or "-") up to @max bytes. */
static int read_value(const char *path, size_t max, struct kv_buf *out, const char **what)
{
	FILE *f = stdin;
	int rc = 0;
	*what = path && strcmp(path, "-") ? path : "stdin";
	if (path && strcmp(path, "-")) {
		f = fopen(path, "rb");
		if (!f)
			return -errno;
	}
	for (;;) {
		if (kv_buf_reserve(out, 65536) < 0) {
			rc = -ENOMEM;
			break;
		}
		size_t k = fread(out->p + out->n, 1, 65536, f);
		out->n += k;
		if (out->n > max) {
			rc = KV_ETOOBIG;
			break;
		}
		if (k == 0) {
			if (ferror(f))
				rc = -EIO;
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	return rc;
}

/* Reads the context of @key at R (a GET with HEAD). */
static int read_context(struct kv_client *c, struct kv_slice key, struct kv_ctx *ctx,
			size_t *versions)
{
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	struct kv_dvv set = KV_DVV_INIT;
	call.head = true;
	int rc = kv_client_get(c, key, &call, &set);
	if (rc == 0) {
		kv_ctx_swap(ctx, &set.ctx);
		*versions = kv_dvv_live_count(&set);
	}
	kv_dvv_release(&set);
	return rc;
}

/* ---- commands ---- */

static int cmd_put(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "context", required_argument, NULL, 'C' },
		{ "blind", no_argument, NULL, 'B' },
		{ "verbose", no_argument, NULL, 'v' },
		/* hidden, for tests: store the value as a kvfs inline file object */
		{ "fs-file", no_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ctx_arg = NULL;
	bool blind = false, verbose = o->verbose, fs_file = false;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		if (ch == 'C')
			ctx_arg = optarg;
		else if (ch == 'B')
			blind = true;
		else if (ch == 'F')
			fs_file = true;
		else if (ch == 'v')
			verbose = true;
		else
			usage();
	}
	if (argc - optind < 1 || argc - optind > 2 || (ctx_arg && blind))
		usage();
	struct kv_slice key;
	uint8_t *owned = NULL;
	struct kv_buf value = KV_BUF_INIT, meta = KV_BUF_INIT;
	struct kv_ctx ctx = KV_CTX_INIT;
	const char *what;
	int rc, ex = EXIT_ERR;
	if ((rc = parse_key(o, argv[optind], &key, &owned)) < 0) {
		if (rc == -2)
			fail("put", key, false, "key of %zu bytes is above the 4096-byte limit", key.n);
		else
			fail("put", key, false, "bad hex key '%s'", argv[optind]);
		goto out;
	}
	rc = read_value(argc - optind == 2 ? argv[optind + 1] : NULL, MAX_VALUE, &value, &what);
	if (rc == KV_ETOOBIG) {
		fail("put", key, true, "value above the %zu-byte (4 MiB) limit", MAX_VALUE);
		goto out;
	}
	if (rc < 0) {
		fail("put", key, true, "cannot read %s: %s", what, kv_strerror(rc));
		goto out;
	}
	if (ctx_arg) {
		if (parse_context(ctx_arg, &ctx) < 0) {
			fail("put", key, true, "bad --context: not a base64 causal context");
			goto out;
		}
	} else if (!blind) {
		size_t n;
		rc = read_context(c, key, &ctx, &n);
		if (rc < 0) {
			fail("put", key, true, "reading its context: %s", why(c, rc));
			goto out;
		}
	}
	if (fs_file) {
		/* a file as the mount writes it (doc/fs-format.md): mode 0644, times now */
		struct kv_fs_meta m;
		struct timespec now;
		memset(&m, 0, sizeof(m));
		clock_gettime(CLOCK_REALTIME, &now);
		m.type = KV_FS_FILE;
		m.mode = 0644;
		m.mtime_ns = m.ctime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
		kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_buf_slice(&value), value.n);
		rc = kv_fs_meta_encode(&m, &meta);
		if (rc < 0) {
			fail("put", key, true, "--fs-file: %s", kv_strerror(rc));
			goto out;
		}
	}
	struct kv_dot dot;
	rc = kv_client_put(c, key, &ctx, kv_buf_slice(&meta), kv_buf_slice(&value), NULL, &dot,
			   NULL);
	if (rc < 0) {
		fail("put", key, true, "%s", why(c, rc));
		goto out;
	}
	if (verbose) {
		char d[64];
		format_dot(dot, d, sizeof(d));
		printf("%s\n", d);
	}
	ex = 0;
out:
	kv_ctx_release(&ctx);
	kv_buf_release(&value);
	kv_buf_release(&meta);
	free(owned);
	return ex;
}

static int cmd_get(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "context", no_argument, NULL, 'C' },
		{ "sibling", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	bool only_ctx = false;
	long sibling = 0;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (ch == 'C') {
			only_ctx = true;
		} else if (ch == 'S') {
			char *end;
			sibling = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || sibling < 1)
				usage();
		} else {
			usage();
		}
	}
	if (argc - optind != 1)
		usage();
	struct kv_slice key;
	uint8_t *owned = NULL;
	struct kv_dvv set = KV_DVV_INIT;
	const struct kv_version **shown = NULL;
	int rc, ex = EXIT_ERR;
	if ((rc = parse_key(o, argv[optind], &key, &owned)) < 0) {
		if (rc == -2)
			fail("get", key, false, "key of %zu bytes is above the 4096-byte limit", key.n);
		else
			fail("get", key, false, "bad hex key '%s'", argv[optind]);
		goto out;
	}
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.head = only_ctx;
	rc = kv_client_get(c, key, &call, &set);
	if (rc < 0) {
		fail("get", key, true, "%s", why(c, rc));
		goto out;
	}
	if (only_ctx) {
		ex = print_context(&set.ctx) < 0 ? EXIT_ERR : 0;
		goto out;
	}
	shown = calloc(set.n ? set.n : 1, sizeof(*shown));
	if (!shown) {
		fail("get", key, true, "out of memory");
		goto out;
	}
	size_t n = kv_dvv_display(&set, 0, shown);
	if (n == 0) {
		fail("get", key, true, "not found");
		ex = EXIT_NOTFOUND;
		goto out;
	}
	if (sibling) {
		if ((size_t)sibling > n) {
			fail("get", key, true, "no sibling %ld: %zu version%s", sibling, n,
			     n == 1 ? "" : "s");
			goto out;
		}
		ex = write_all(shown[sibling - 1]->body.p, shown[sibling - 1]->body.n) ? 0 : EXIT_ERR;
		goto out;
	}
	if (n == 1) {
		ex = write_all(shown[0]->body.p, shown[0]->body.n) ? 0 : EXIT_ERR;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char ts[64], d[64];
		format_time(shown[i]->timestamp_ns, ts, sizeof(ts));
		format_dot(shown[i]->dot, d, sizeof(d));
		printf("--- sibling %zu of %zu: %s dot %s (%zu bytes)\n", i + 1, n, ts, d,
		       shown[i]->body.n);
		write_all(shown[i]->body.p, shown[i]->body.n);
		if (shown[i]->body.n && shown[i]->body.p[shown[i]->body.n - 1] != '\n')
			putchar('\n');
	}
	ex = EXIT_SIBLINGS;
out:
	if (fflush(stdout) != 0 && ex != EXIT_ERR) {
		fail("get", key, true, "writing stdout: %s", strerror(errno));
		ex = EXIT_ERR;
	}
	free(shown);
	kv_dvv_release(&set);
	free(owned);
	return ex;
}

static int cmd_delete(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "context", required_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ctx_arg = NULL;
	bool verbose = o->verbose;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		if (ch == 'C')
			ctx_arg = optarg;
		else if (ch == 'v')
			verbose = true;
		else
			usage();
	}
	if (argc - optind != 1)
		usage();
	struct kv_slice key;
	uint8_t *owned = NULL;
	struct kv_ctx ctx = KV_CTX_INIT;
	int rc, ex = EXIT_ERR;
	if ((rc = parse_key(o, argv[optind], &key, &owned)) < 0) {
		if (rc == -2)
			fail("delete", key, false, "key of %zu bytes is above the 4096-byte limit", key.n);
		else
			fail("delete", key, false, "bad hex key '%s'", argv[optind]);
		goto out;
	}
	if (ctx_arg) {
		if (parse_context(ctx_arg, &ctx) < 0) {
			fail("delete", key, true, "bad --context: not a base64 causal context");
			goto out;
		}
	} else {
		size_t live = 0;
		rc = read_context(c, key, &ctx, &live);
		if (rc < 0) {
			fail("delete", key, true, "reading its context: %s", why(c, rc));
			goto out;
		}
		if (live == 0) {
			fail("delete", key, true, "not found");
			ex = EXIT_NOTFOUND;
			goto out;
		}
	}
	struct kv_dot dot;
	rc = kv_client_delete(c, key, &ctx, NULL, &dot, NULL);
	if (rc < 0) {
		fail("delete", key, true, "%s", why(c, rc));
		goto out;
	}
	if (verbose) {
		char d[64];
		format_dot(dot, d, sizeof(d));
		printf("%s\n", d);
	}
	ex = 0;
out:
	kv_ctx_release(&ctx);
	free(owned);
	return ex;
}

static int cmd_list(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	bool longfmt = false;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt(argc, argv, "l")) != -1) {
		if (ch == 'l')
			longfmt = true;
		else
			usage();
	}
	if (argc - optind != 1)
		usage();
	struct kv_slice dir;
	uint8_t *owned = NULL;
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	const struct kv_version **shown = NULL;
	int rc, ex = EXIT_ERR;
	if ((rc = parse_key(o, argv[optind], &dir, &owned)) < 0) {
		if (rc == -2)
			fail("list", dir, false, "dir of %zu bytes is above the 4096-byte limit", dir.n);
		else
			fail("list", dir, false, "bad hex dir '%s'", argv[optind]);
		goto out;
	}
	/* "/" names the root, whose directory key is "" (DESIGN §2) */
	if (dir.n == 1 && dir.p[0] == '/')
		dir.n = 0;
	for (;;) {
		rc = kv_client_list(c, dir, kv_buf_slice(&cursor), 1000, NULL, &page);
		if (rc < 0) {
			fail("list", dir, true, "%s", why(c, rc));
			goto out;
		}
		for (size_t i = 0; i < page.n; i++) {
			struct kv_client_list_entry *e = &page.entries[i];
			if (longfmt) {
				free(shown);
				shown = calloc(e->set.n ? e->set.n : 1, sizeof(*shown));
				if (!shown) {
					fail("list", dir, true, "out of memory");
					goto out;
				}
				size_t n = kv_dvv_display(&e->set, 0, shown);
				char ts[64] = "-";
				size_t meta = n ? shown[n - 1]->meta.n : 0;
				if (n)
					format_time(shown[n - 1]->timestamp_ns, ts, sizeof(ts));
				printf("%3zu %8zu %s ", n, meta, ts);
			}
			write_all(e->name.p, e->name.n);
			putchar('\n');
		}
		if (!page.more)
			break;
		/* a cursor must move forward, or a broken node could loop us */
		if (page.next_cursor.n == 0 ||
		    kv_slice_cmp(kv_buf_slice(&page.next_cursor), kv_buf_slice(&cursor)) <= 0) {
			fail("list", dir, true, "the node returned a cursor that does not advance");
			goto out;
		}
		kv_buf_reset(&cursor);
		if (kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n) < 0) {
			fail("list", dir, true, "out of memory");
			goto out;
		}
	}
	ex = 0;
out:
	fflush(stdout);
	free(shown);
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	free(owned);
	return ex;
}

static int cmd_stats(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	(void)o;
	long node = -1;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt(argc, argv, "n:")) != -1) {
		if (ch == 'n') {
			char *end;
			node = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || node < 0 || node > INT_MAX)
				usage();
		} else {
			usage();
		}
	}
	if (argc != optind)
		usage();
	struct kv_client_stats st = KV_CLIENT_STATS_INIT;
	int rc = kv_client_stats(c, (int)node, NULL, &st);
	if (rc < 0) {
		fprintf(stderr, "kvfsctl: stats: %s\n", why(c, rc));
		return EXIT_ERR;
	}
	for (size_t i = 0; i < st.n; i++)
		printf("%s %llu\n", st.v[i].name, (unsigned long long)st.v[i].value);
	kv_client_stats_release(&st);
	return 0;
}

/*
 * gc [--grace SECONDS]: one mark-and-sweep of the chunks over the whole
 * cluster (kvfsctl(8); DESIGN §7 "Reclaiming chunks"). Default grace one
 * hour; default deadline 10 minutes (-t overrides).
 */
static int cmd_gc(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "grace", required_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t grace = -1;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (ch != 'g')
			usage();
		char *end;
		errno = 0;
		unsigned long long v = strtoull(optarg, &end, 10);
		if (*optarg == '\0' || *optarg == '-' || *end != '\0' || errno != 0 ||
		    v > (unsigned long long)INT64_MAX) {
			fprintf(stderr, "kvfsctl: gc: --grace: expected seconds, got '%s'\n", optarg);
			return EXIT_ERR;
		}
		grace = (int64_t)v;
	}
	if (argc != optind)
		usage();
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.timeout_ms = o->timeout_ms ? o->timeout_ms : 600000;
	struct kv_client_gc_result r;
	int rc = kv_client_gc(c, grace, &call, &r);
	if (rc < 0) {
		fprintf(stderr, "kvfsctl: gc: %s\n", why(c, rc));
		return EXIT_ERR;
	}
	printf("epoch %llu: %llu nodes, %llu versions scanned, %llu chunk records marked\n"
	       "swept %llu chunks, freed %llu bytes, kept %llu chunk records\n",
	       (unsigned long long)r.epoch, (unsigned long long)r.nodes,
	       (unsigned long long)r.versions, (unsigned long long)r.refs,
	       (unsigned long long)r.swept, (unsigned long long)r.bytes,
	       (unsigned long long)r.kept);
	return 0;
}

/* ---- the file system's view: conflicts and fsck (DESIGN §7; doc/fs.md §6) ---- */

/* The reserved directory of the mount, and the records it keeps there. */
#define FS_RESERVED_NAME ".kvfs"
#define FS_INTENT_DIR "/.kvfs/intents"
#define FS_LEASE_DIR "/.kvfs/leases"
/* Entries per LIST page; pages per directory; directory depth: bounds, so a
 * broken or hostile cluster cannot keep us walking forever. */
#define FS_LIST_PAGE 1000
#define FS_LIST_MAX_PAGES 10000
#define FS_MAX_DEPTH 256

/* "dir/name" as a new NUL-terminated key (malloc; the caller frees), or NULL. */
static char *child_key(struct kv_slice dir, struct kv_slice name)
{
	char *k = malloc(dir.n + 1 + name.n + 1);
	if (!k)
		return NULL;
	if (dir.n)
		memcpy(k, dir.p, dir.n);
	k[dir.n] = '/';
	if (name.n)
		memcpy(k + dir.n + 1, name.p, name.n);
	k[dir.n + 1 + name.n] = '\0';
	return k;
}

/* True when some live version of @set is a directory per its metadata. */
static bool set_is_dir(const struct kv_dvv *set)
{
	for (size_t j = 0; j < set->n; j++) {
		struct kv_fs_meta m;
		if (!set->v[j].tombstone && kv_fs_meta_decode(set->v[j].meta, &m) == 0 &&
		    m.type == KV_FS_DIR)
			return true;
	}
	return false;
}

/*
 * Advances @cursor to @page's next cursor; fails when it does not move
 * forward (a broken node could loop us). Returns 0 or -1 (message printed).
 */
static int next_cursor(const char *cmd, struct kv_slice dir, struct kv_client_list_page *page,
		       struct kv_buf *cursor)
{
	if (page->next_cursor.n == 0 ||
	    kv_slice_cmp(kv_buf_slice(&page->next_cursor), kv_buf_slice(cursor)) <= 0) {
		fail(cmd, dir, true, "the node returned a cursor that does not advance");
		return -1;
	}
	kv_buf_reset(cursor);
	if (kv_buf_append(cursor, page->next_cursor.p, page->next_cursor.n) < 0) {
		fail(cmd, dir, true, "out of memory");
		return -1;
	}
	return 0;
}

/* Prints the conflicted name @nm of directory @dir: a header, then each version. */
static void print_conflict(struct kv_slice dir, const struct kv_fs_name *nm)
{
	char *key = child_key(dir, kv_slice_make((const uint8_t *)nm->name, nm->name_len));
	if (!key)
		return;
	fputs(show(kv_slice_str(key)), stdout);
	printf("\t%zu versions%s\n", nm->nfiles, nm->is_dir ? " beside a directory" : "");
	for (size_t i = 0; i < nm->nfiles; i++) {
		const struct kv_version *v = nm->files[i];
		char ts[64], d[64], size[32] = "?";
		struct kv_fs_meta m;
		format_time(v->timestamp_ns, ts, sizeof(ts));
		format_dot(v->dot, d, sizeof(d));
		if (kv_fs_meta_decode(v->meta, &m) == 0)
			snprintf(size, sizeof(size), "%llu", (unsigned long long)m.size);
		printf("\tsibling-%zu\t%s\tdot %s\t%s bytes\n", i + 1, ts, d, size);
	}
	free(key);
}

/*
 * Walks directory @dir (a directory key) and its subdirectories, printing
 * each name shown with siblings (kv_fs_view_build: the mount's numbering).
 * Adds the conflicted names to *found. Returns 0 or -1 (message printed).
 */
static int walk_conflicts(struct kv_client *c, struct kv_slice dir, int depth, size_t *found)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct kv_fs_view view = KV_FS_VIEW_INIT;
	struct kv_fs_listing_entry *in = NULL;
	int rc, ret = -1;
	struct kv_slice here = dir.n ? dir : kv_slice_str("/"); /* for messages */
	if (depth > FS_MAX_DEPTH) {
		fail("conflicts", here, true, "deeper than %d directories", FS_MAX_DEPTH);
		return -1;
	}
	for (int pages = 0;; pages++) {
		if (pages == FS_LIST_MAX_PAGES) {
			fail("conflicts", here, true, "more than %d pages", FS_LIST_MAX_PAGES);
			goto out;
		}
		rc = kv_client_list(c, dir, kv_buf_slice(&cursor), FS_LIST_PAGE, NULL, &page);
		if (rc < 0) {
			fail("conflicts", here, true, "%s", why(c, rc));
			goto out;
		}
		free(in);
		in = calloc(page.n ? page.n : 1, sizeof(*in));
		if (!in) {
			fail("conflicts", here, true, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < page.n; i++) {
			in[i].name = kv_buf_slice(&page.entries[i].name);
			in[i].set = &page.entries[i].set;
			in[i].has_live_child = false;
		}
		rc = kv_fs_view_build(&view, in, page.n, NULL);
		if (rc < 0) {
			fail("conflicts", here, true, "%s", kv_strerror(rc));
			goto out;
		}
		for (size_t i = 0; i < view.nnames; i++) {
			const struct kv_fs_name *nm = &view.names[i];
			if (dir.n == 0 && nm->name_len == strlen(FS_RESERVED_NAME) &&
			    memcmp(nm->name, FS_RESERVED_NAME, nm->name_len) == 0)
				continue; /* the mount's own records (doc/fs.md §6) */
			if (nm->hidden)
				continue;
			if (nm->nfiles > 1 || (nm->is_dir && nm->nfiles > 0)) {
				print_conflict(dir, nm);
				(*found)++;
			}
			if (nm->is_dir && nm->dir) {
				char *sub = child_key(dir, kv_slice_make((const uint8_t *)nm->name,
									 nm->name_len));
				if (!sub) {
					fail("conflicts", here, true, "out of memory");
					goto out;
				}
				rc = walk_conflicts(c, kv_slice_str(sub), depth + 1, found);
				free(sub);
				if (rc < 0)
					goto out;
			}
		}
		if (!page.more)
			break;
		if (next_cursor("conflicts", dir, &page, &cursor) < 0)
			goto out;
	}
	ret = 0;
out:
	free(in);
	kv_fs_view_release(&view);
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return ret;
}

/*
 * conflicts PATH: every file under directory PATH with more than one live
 * version, with its versions in the mount's numbering (DESIGN §7
 * "Conflicts as files"). Exit 0 none, 3 some, 1 error.
 */
static int cmd_conflicts(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	if (getopt(argc, argv, "") != -1 || argc - optind != 1)
		usage();
	struct kv_slice dir;
	uint8_t *owned = NULL;
	size_t found = 0;
	int rc, ex = EXIT_ERR;
	if ((rc = parse_key(o, argv[optind], &dir, &owned)) < 0) {
		fail("conflicts", dir, false, "bad path '%s'", argv[optind]);
		goto out;
	}
	/* "/" names the root, whose directory key is "" (DESIGN §2); "/a/" is "/a" */
	while (dir.n > 0 && dir.p[dir.n - 1] == '/')
		dir.n--;
	if (dir.n > 0 && dir.p[0] != '/') {
		fail("conflicts", dir, true, "not a path: it must start with '/'");
		goto out;
	}
	if (walk_conflicts(c, dir, 0, &found) < 0)
		goto out;
	ex = found ? EXIT_SIBLINGS : 0;
out:
	if (fflush(stdout) != 0 && ex != EXIT_ERR) {
		fprintf(stderr, "kvfsctl: conflicts: writing stdout: %s\n", strerror(errno));
		ex = EXIT_ERR;
	}
	free(owned);
	return ex;
}

/* The context of @key read at R (HEAD), into the initialized @set. */
static int head(struct kv_client *c, const char *key, struct kv_dvv *set)
{
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.head = true;
	return kv_client_get(c, kv_slice_str(key), &call, set);
}

/*
 * Moves the object at @sk (a file, symlink or conflicted name) to @dk: every
 * version shown is put at @dk, the first with @dk's context, the others blind
 * so they stay siblings; then @sk is tombstoned with the context read (as
 * fuse/fs_rename.c move_versions).
 */
static int move_object(struct kv_client *c, const char *sk, const char *dk)
{
	struct kv_dvv full = KV_DVV_INIT, dfull = KV_DVV_INIT;
	const struct kv_version **vs = NULL;
	int rc = kv_client_get(c, kv_slice_str(sk), NULL, &full);
	if (rc < 0)
		goto out;
	rc = head(c, dk, &dfull);
	if (rc < 0)
		goto out;
	vs = calloc(full.n + 1, sizeof(*vs));
	if (!vs) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nv = kv_dvv_display(&full, 0, vs);
	for (size_t i = 0; i < nv; i++) {
		rc = kv_client_put(c, kv_slice_str(dk), i == 0 ? &dfull.ctx : NULL, vs[i]->meta,
				   vs[i]->body, NULL, NULL, NULL);
		if (rc < 0)
			goto out;
	}
	rc = full.n ? kv_client_delete(c, kv_slice_str(sk), &full.ctx, NULL, NULL, NULL) : 0;
out:
	free(vs);
	kv_dvv_release(&full);
	kv_dvv_release(&dfull);
	return rc;
}

/*
 * Moves the directory tree @src to @dst as the mount does (fuse/fs_rename.c
 * move_tree, doc/fs.md §6): the directory object, then each child, depth
 * first, then @src's tombstone. Idempotent. Returns 0 or the error (with
 * the key it concerns in @where, which the caller frees).
 */
static int move_tree(struct kv_client *c, const char *src, const char *dst, int depth,
		     char **where)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct kv_dvv set = KV_DVV_INIT, dset = KV_DVV_INIT;
	const struct kv_version **shown = NULL;
	int rc;
	if (depth > FS_MAX_DEPTH) {
		rc = -ELOOP;
		goto fail;
	}
	rc = kv_client_get(c, kv_slice_str(src), NULL, &set);
	if (rc == 0)
		rc = head(c, dst, &dset);
	if (rc < 0)
		goto fail;
	shown = calloc(set.n + 1, sizeof(*shown));
	if (!shown) {
		rc = -ENOMEM;
		goto out;
	}
	size_t ns = kv_dvv_display(&set, 0, shown);
	if (ns > 0) {
		rc = kv_client_put(c, kv_slice_str(dst), &dset.ctx, shown[ns - 1]->meta,
				   shown[ns - 1]->body, NULL, NULL, NULL);
		if (rc < 0)
			goto fail;
	}
	for (int pages = 0;; pages++) {
		if (pages == FS_LIST_MAX_PAGES) {
			rc = KV_ETOOBIG;
			goto fail;
		}
		rc = kv_client_list(c, kv_slice_str(src), kv_buf_slice(&cursor), FS_LIST_PAGE, NULL,
				    &page);
		if (rc < 0)
			goto fail;
		for (size_t i = 0; i < page.n; i++) {
			struct kv_client_list_entry *e = &page.entries[i];
			if (kv_dvv_live_count(&e->set) == 0)
				continue;
			struct kv_slice name = kv_buf_slice(&e->name);
			char *sk = child_key(kv_slice_str(src), name);
			char *dk = child_key(kv_slice_str(dst), name);
			if (!sk || !dk) {
				free(sk);
				free(dk);
				rc = -ENOMEM;
				goto out;
			}
			if (set_is_dir(&e->set)) {
				rc = move_tree(c, sk, dk, depth + 1, where);
			} else {
				rc = move_object(c, sk, dk);
				if (rc < 0 && !*where)
					*where = strdup(sk);
			}
			free(sk);
			free(dk);
			if (rc < 0)
				goto out;
		}
		if (!page.more)
			break;
		if (page.next_cursor.n == 0 ||
		    kv_slice_cmp(kv_buf_slice(&page.next_cursor), kv_buf_slice(&cursor)) <= 0) {
			rc = KV_ECORRUPT;
			goto fail;
		}
		kv_buf_reset(&cursor);
		if (kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = set.n ? kv_client_delete(c, kv_slice_str(src), &set.ctx, NULL, NULL, NULL) : 0;
	if (rc < 0)
		goto fail;
	goto out;
fail:
	if (!*where)
		*where = strdup(src);
out:
	free(shown);
	kv_dvv_release(&set);
	kv_dvv_release(&dset);
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return rc;
}

/* A path key as an intent names it: "/" then bytes without NUL. */
static bool is_path_key(const uint8_t *p, size_t n)
{
	return n >= 2 && p[0] == '/' && !memchr(p, 0, n) && n <= KV_MSG_KEY_MAX;
}

struct fsck_counts {
	size_t intents_done, intents_failed, malformed, leases_removed, leases_kept, errors;
};

/*
 * Finishes the intent record @key (doc/fs.md §6: body "SRC\0DST"): moves
 * each live version's SRC to DST, then deletes the record with the context
 * read. A version that does not spell two path keys is reported and dropped
 * with the record, as the mount does.
 */
static void fsck_intent(struct kv_client *c, const char *key, struct fsck_counts *n)
{
	struct kv_dvv full = KV_DVV_INIT;
	size_t moved = 0;
	int rc = kv_client_get(c, kv_slice_str(key), NULL, &full);
	if (rc < 0) {
		fprintf(stderr, "kvfsctl: fsck: intent %s: reading it: %s\n", key, why(c, rc));
		n->intents_failed++;
		goto out;
	}
	for (size_t j = 0; j < full.n; j++) {
		const struct kv_version *v = &full.v[j];
		if (v->tombstone)
			continue;
		const uint8_t *nul = v->body.n ? memchr(v->body.p, 0, v->body.n) : NULL;
		size_t sl = nul ? (size_t)(nul - v->body.p) : 0;
		size_t dl = nul ? v->body.n - sl - 1 : 0;
		if (!nul || !is_path_key(v->body.p, sl) || !is_path_key(nul + 1, dl)) {
			printf("intent %s: malformed record (%zu bytes), removed\n", key, v->body.n);
			n->malformed++;
			continue;
		}
		char *src = strndup((const char *)v->body.p, sl);
		char *dst = strndup((const char *)nul + 1, dl);
		char *where = NULL;
		rc = src && dst ? move_tree(c, src, dst, 0, &where) : -ENOMEM;
		if (rc == 0)
			printf("intent %s: moved %s to %s\n", key, src, show(kv_slice_str(dst)));
		else
			fprintf(stderr, "kvfsctl: fsck: intent %s: moving %s: %s; left for later\n",
				key, where ? show(kv_slice_str(where)) : "?", why(c, rc));
		free(where);
		free(src);
		free(dst);
		if (rc < 0) {
			n->intents_failed++;
			goto out;
		}
		moved++;
	}
	if (full.n) {
		rc = kv_client_delete(c, kv_slice_str(key), &full.ctx, NULL, NULL, NULL);
		if (rc < 0) {
			fprintf(stderr, "kvfsctl: fsck: intent %s: deleting it: %s\n", key, why(c, rc));
			n->intents_failed++;
			goto out;
		}
	}
	if (moved)
		n->intents_done++;
out:
	kv_dvv_release(&full);
}

/*
 * Deletes the lease object of @e (under FS_LEASE_DIR) when the latest mtime
 * of its live versions is more than @older_ns before @now_ns; a version
 * whose metadata does not decode counts as old (nothing else reads it).
 */
static void fsck_lease(struct kv_client *c, const struct kv_client_list_entry *e, int64_t now_ns,
		       int64_t older_ns, struct fsck_counts *n)
{
	int64_t newest = INT64_MIN;
	for (size_t j = 0; j < e->set.n; j++) {
		struct kv_fs_meta m;
		if (!e->set.v[j].tombstone && kv_fs_meta_decode(e->set.v[j].meta, &m) == 0 &&
		    m.mtime_ns > newest)
			newest = m.mtime_ns;
	}
	char *key = child_key(kv_slice_str(FS_LEASE_DIR), kv_buf_slice(&e->name));
	if (!key) {
		n->errors++;
		return;
	}
	if (newest != INT64_MIN && (newest > now_ns || now_ns - newest <= older_ns)) {
		n->leases_kept++;
		goto out;
	}
	int rc = kv_client_delete(c, kv_slice_str(key), &e->set.ctx, NULL, NULL, NULL);
	if (rc < 0) {
		fprintf(stderr, "kvfsctl: fsck: lease %s: deleting it: %s\n", show(kv_slice_str(key)),
			why(c, rc));
		n->errors++;
		goto out;
	}
	char ts[64] = "unreadable metadata";
	if (newest != INT64_MIN)
		format_time(newest, ts, sizeof(ts));
	printf("lease %s: removed (mtime %s)\n", show(kv_slice_str(key)), ts);
	n->leases_removed++;
out:
	free(key);
}

/*
 * Lists @dir (every page) and calls fsck_intent or fsck_lease on each entry
 * with a live version. Returns 0 or -1 (message printed).
 */
static int fsck_dir(struct kv_client *c, const char *dir, bool leases, int64_t older_ns,
		    struct fsck_counts *n)
{
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	struct timespec now;
	int ret = -1;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	for (int pages = 0;; pages++) {
		if (pages == FS_LIST_MAX_PAGES) {
			fail("fsck", kv_slice_str(dir), true, "more than %d pages", FS_LIST_MAX_PAGES);
			goto out;
		}
		int rc = kv_client_list(c, kv_slice_str(dir), kv_buf_slice(&cursor), FS_LIST_PAGE,
					NULL, &page);
		if (rc < 0) {
			fail("fsck", kv_slice_str(dir), true, "%s", why(c, rc));
			goto out;
		}
		for (size_t i = 0; i < page.n; i++) {
			struct kv_client_list_entry *e = &page.entries[i];
			if (kv_dvv_live_count(&e->set) == 0)
				continue;
			if (leases) {
				fsck_lease(c, e, now_ns, older_ns, n);
				continue;
			}
			char *key = child_key(kv_slice_str(dir), kv_buf_slice(&e->name));
			if (!key) {
				n->errors++;
				continue;
			}
			fsck_intent(c, key, n);
			free(key);
		}
		if (!page.more)
			break;
		if (next_cursor("fsck", kv_slice_str(dir), &page, &cursor) < 0)
			goto out;
	}
	ret = 0;
out:
	kv_buf_release(&cursor);
	kv_client_list_page_release(&page);
	return ret;
}

/*
 * fsck [--leases-older-than SECONDS]: finishes every pending directory
 * rename intent (doc/fs.md §6), and with the option deletes lease objects
 * (doc/fs.md, fs_data_pin) older than SECONDS. Exit 0 clean or repaired, 1
 * on error.
 */
static int cmd_fsck(struct kv_client *c, const struct opts *o, int argc, char **argv)
{
	(void)o;
	static const struct option lo[] = {
		{ "leases-older-than", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t older_s = -1;
	int ch;
	optind = 0; /* glibc: start over and permute (main's "+" stopped at the command) */
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (ch != 'L')
			usage();
		char *end;
		errno = 0;
		unsigned long long v = strtoull(optarg, &end, 10);
		if (*optarg == '\0' || *optarg == '-' || *end != '\0' || errno != 0 ||
		    v > (unsigned long long)(INT64_MAX / 1000000000)) {
			fprintf(stderr, "kvfsctl: fsck: --leases-older-than: expected seconds, got '%s'\n",
				optarg);
			return EXIT_ERR;
		}
		older_s = (int64_t)v;
	}
	if (argc != optind)
		usage();
	struct fsck_counts n = { 0 };
	int rc = fsck_dir(c, FS_INTENT_DIR, false, 0, &n);
	if (rc == 0 && older_s >= 0)
		rc = fsck_dir(c, FS_LEASE_DIR, true, older_s * 1000000000, &n);
	printf("fsck: %zu intent%s finished, %zu left for later, %zu malformed removed",
	       n.intents_done, n.intents_done == 1 ? "" : "s", n.intents_failed, n.malformed);
	if (older_s >= 0)
		printf("; %zu lease%s removed, %zu kept", n.leases_removed,
		       n.leases_removed == 1 ? "" : "s", n.leases_kept);
	printf("\n");
	fflush(stdout);
	return rc == 0 && n.intents_failed == 0 && n.errors == 0 ? 0 : EXIT_ERR;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "secret-file", required_argument, NULL, 'S' },
		{ "cluster", required_argument, NULL, 'K' },
		{ "key-hex", no_argument, NULL, 'X' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	struct kv_auth_secret secret = { .len = 0 };
	struct kv_client *c = NULL;
	int ch, ex = EXIT_ERR;
	o.nodes = getenv("KVFS_NODES");
	if (!o.nodes || !o.nodes[0])
		o.nodes = DEFAULT_NODES;
	/* "+": options of kvfsctl stop at the command; the command parses its own */
	while ((ch = getopt_long(argc, argv, "+c:r:w:t:vh", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.nodes = optarg;
			break;
		case 'r':
			if (parse_quorum(optarg, &o.r) < 0) {
				fprintf(stderr, "kvfsctl: -r: expected 1..16, got '%s'\n", optarg);
				return EXIT_ERR;
			}
			break;
		case 'w':
			if (parse_quorum(optarg, &o.w) < 0) {
				fprintf(stderr, "kvfsctl: -w: expected 1..16, got '%s'\n", optarg);
				return EXIT_ERR;
			}
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || v == 0 || v > 3600000) {
				fprintf(stderr, "kvfsctl: -t: expected milliseconds 1..3600000\n");
				return EXIT_ERR;
			}
			o.timeout_ms = (uint32_t)v;
			break;
		}
		case 'S':
			o.secret_file = optarg;
			break;
		case 'K':
			o.cluster = optarg;
			break;
		case 'X':
			o.key_hex = true;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	const char *cmd = argv[optind];
	int cargc = argc - optind;
	char **cargv = argv + optind;
	int (*fn)(struct kv_client *, const struct opts *, int, char **) = NULL;
	if (!strcmp(cmd, "put"))
		fn = cmd_put;
	else if (!strcmp(cmd, "get"))
		fn = cmd_get;
	else if (!strcmp(cmd, "delete"))
		fn = cmd_delete;
	else if (!strcmp(cmd, "list"))
		fn = cmd_list;
	else if (!strcmp(cmd, "stats"))
		fn = cmd_stats;
	else if (!strcmp(cmd, "gc"))
		fn = cmd_gc;
	else if (!strcmp(cmd, "conflicts"))
		fn = cmd_conflicts;
	else if (!strcmp(cmd, "fsck"))
		fn = cmd_fsck;
	if (!fn) {
		fprintf(stderr, "kvfsctl: unknown command '%s'\n", cmd);
		usage();
	}
	if (kv_auth_init() < 0) {
		fprintf(stderr, "kvfsctl: cannot initialize libsodium\n");
		return EXIT_ERR;
	}
	if (o.secret_file) {
		int rc = kv_auth_secret_load(o.secret_file, &secret);
		if (rc < 0) {
			fprintf(stderr, "kvfsctl: --secret-file %s: %s\n", o.secret_file,
				kv_strerror(rc));
			return EXIT_ERR;
		}
	}
	struct kv_client_config cfg = {
		.nodes = o.nodes,
		.cluster = o.cluster,
		.secret = &secret,
		.timeout_ms = o.timeout_ms,
		.r = o.r,
		.w = o.w,
		.conns_per_node = 1,
	};
	int rc = kv_client_new(&cfg, &c);
	if (rc < 0) {
		fprintf(stderr, "kvfsctl: %s\n", why(NULL, rc));
		goto out;
	}
	ex = fn(c, &o, cargc, cargv);
out:
	kv_client_free(c);
	kv_auth_secret_release(&secret);
	return ex;
}
