/*
 * kvfsctl - the data and admin command line of kvfs (DESIGN §1, §9; issue 4):
 * put, get, delete, list and stats against a cluster through the client
 * library (src/client/client.h). Manual: man/kvfsctl.8.
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
		{ NULL, 0, NULL, 0 },
	};
	const char *ctx_arg = NULL;
	bool blind = false, verbose = o->verbose;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		if (ch == 'C')
			ctx_arg = optarg;
		else if (ch == 'B')
			blind = true;
		else if (ch == 'v')
			verbose = true;
		else
			usage();
	}
	if (argc - optind < 1 || argc - optind > 2 || (ctx_arg && blind))
		usage();
	struct kv_slice key;
	uint8_t *owned = NULL;
	struct kv_buf value = KV_BUF_INIT;
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
	struct kv_dot dot;
	rc = kv_client_put(c, key, &ctx, kv_slice_make(NULL, 0), kv_buf_slice(&value), NULL, &dot,
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
	optind = 1;
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
	optind = 1;
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
	optind = 1;
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
	optind = 1;
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
	optind = 1;
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
