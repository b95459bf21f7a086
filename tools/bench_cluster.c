/*
 * bench_cluster.c - `kvfs-bench cluster`: a load generator for a running
 * kvfs cluster through the client library (src/client/client.h), and for
 * etcd's v3 JSON gateway, so that both are measured by the same loop, the
 * same threads and the same histogram (issue 4, "Benchmark it").
 *
 * --concurrency threads each make one blocking call at a time: closed loop
 * by default (as fast as replies come back), or open loop with --rate, where
 * each thread's requests are scheduled at fixed intervals and latency runs
 * from the scheduled start, not the actual send, so a stall is charged to
 * every request it delayed (no coordinated omission; Gil Tene's wrk2 rule).
 * Method and figures: doc/benchmarks.md "The cluster"; flags: kvfs-bench(1).
 */
#include "bench_cluster.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/rng.h"
#include "util/time.h"

#ifdef KVFS_BENCH_CLUSTER_CLIENT
#include "client/client.h"
#include "proto/auth.h"
#include "util/error.h"
#include "version/siblings.h"
#endif

enum op { OP_PUT, OP_GET, N_OPS };
static const char *const op_names[N_OPS] = { "put", "get" };

enum put_mode { PUT_CTX, PUT_BLIND, PUT_RMW };
enum target { TARGET_KVFS, TARGET_ETCD };

#define MAX_ENDPOINTS 64
#define LATE_NS 1000000ull          /* an open-loop send this far behind schedule is late */
#define HTTP_MAX_RESPONSE (16u << 20)
#define MAX_ERRORS_PRINTED 5
#define ERROR_PAUSE_NS 10000000L    /* closed loop: a thread's pause after a failed call */

struct cluster_flags {
	char nodes[4096];
	enum target target;
	unsigned weight[N_OPS];
	size_t value_size;
	uint64_t keys;
	unsigned concurrency;
	double duration_s;
	double rate;              /* 0 = closed loop */
	unsigned r, w;            /* 0 = the cluster's */
	char secret_file[4096];
	char prefix[256];
	unsigned dirs;
	enum put_mode put_mode;
	bool preload;
	uint32_t timeout_ms;
	uint64_t seed;
	bool progress;
};

/* One etcd gateway endpoint. */
struct endpoint {
	char host[64];
	char port[8];
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/* Per operation type; guarded by the owning worker's mu. */
struct op_stats {
	uint64_t ops;      /* completed without error */
	uint64_t errors;
	uint64_t found;    /* gets: at least one live version */
	uint64_t siblings; /* gets: more than one live version */
	uint64_t late;     /* open loop: sent more than LATE_NS behind schedule */
	struct bench_hist hist;
};

/* A keep-alive HTTP/1.1 connection of one worker (etcd). */
struct http_conn {
	int fd;                 /* -1 when closed */
	const struct endpoint *ep;
	char *buf;              /* received bytes */
	size_t len, cap;
	bool dropped;           /* the peer closed or reset it (not a timeout) */
	char *body;             /* the latest response body, NUL-terminated */
	size_t body_len, body_cap;
};

struct run;

/* One load thread. Everything but mu-guarded stats belongs to the thread. */
struct worker {
	struct run *run;
	unsigned id;
	pthread_t thread;
	struct kv_rng rng;
	uint8_t *value;           /* value_size bytes, refreshed before every put */
	char key[512];
	size_t key_len;
	uint64_t n_owned;         /* keys k with k % concurrency == id */
#ifdef KVFS_BENCH_CLUSTER_CLIENT
	struct kv_ctx *ctxs;      /* PUT_CTX: context of this thread's last put, per owned key */
	struct kv_ctx ctx_tmp;
	struct kv_dvv got;
#endif
	struct http_conn http;
	char *req;                /* etcd request body */
	size_t req_cap;
	char *b64;                /* base64 scratch */
	size_t b64_cap;
	bool preloading;
	uint64_t finish_ns;
	pthread_mutex_t mu;       /* guards st */
	struct op_stats st[N_OPS];
};

/* What the whole run shares; set up by main before the threads start. */
struct run {
	const struct cluster_flags *f;
#ifdef KVFS_BENCH_CLUSTER_CLIENT
	struct kv_client *client;
	struct kv_auth_secret secret;
#endif
	struct endpoint eps[MAX_ENDPOINTS];
	size_t n_eps;
	unsigned weight_total;
	pthread_barrier_t gate;
	uint64_t start_ns, end_ns;
	atomic_uint errors_printed;
	struct worker *workers;
};

/* ---- Flags -------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench cluster -c HOST:PORT[,...] [flags]\n"
		"  -c, --cluster LIST     nodes (kvfs) or gateway endpoints (etcd) to load\n"
		"      --system kvfs|etcd what -c names (default kvfs; etcd: its v3 JSON gateway)\n"
		"      --ops LIST         mix of put:W,get:W (default put:50,get:50)\n"
		"      --value-size N     value bytes (default 1024)\n"
		"      --keys N           keys, drawn uniformly (default 100000)\n"
		"      --concurrency N    threads, one blocking call each (default 64)\n"
		"      --duration S       seconds of measured load (default 30; 0: only --preload)\n"
		"      --rate OPS         open loop: total ops/s on a fixed schedule (default: closed loop)\n"
		"  -r R, -w W             read and write quorums (default: the cluster's)\n"
		"      --put-mode MODE    ctx (default): put with this thread's last context of the key;\n"
		"                         rmw: read the context first; blind: no context (siblings)\n"
		"      --preload          write every key once (not measured) before the load\n"
		"      --prefix P         key directory (default /bench); keys P/dNNNN/kNNNNNNNN\n"
		"      --dirs N           directories the keys are spread over (default 64)\n"
		"      --secret-file F    the cluster secret (kvfs)\n"
		"      --timeout MS       per-call deadline (default 5000)\n"
		"      --seed N           seed of key choice and values (default 301)\n"
		"      --no-progress      no progress line each second\n"
		"See kvfs-bench(1) and doc/benchmarks.md.\n");
}

static void bad_flag(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "kvfs-bench cluster: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, " (try kvfs-bench cluster --help)\n");
	exit(2);
}

static uint64_t parse_u64(const char *name, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		char range[64];
		snprintf(range, sizeof(range), "%llu..%llu", (unsigned long long)min,
			 (unsigned long long)max);
		fprintf(stderr, "kvfs-bench cluster: --%s: '%s' is not a number in %s\n", name, s,
			range);
		exit(2);
	}
	return v;
}

static double parse_double(const char *name, const char *s, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		bad_flag("--%s: '%s' is not a number in range", name, s);
	return v;
}

static void copy_str(char *dst, size_t cap, const char *name, const char *s)
{
	if (strlen(s) >= cap)
		bad_flag("--%s: '%s' is too long", name, s);
	memcpy(dst, s, strlen(s) + 1);
}

/* "put:50,get:50" -> weights. */
static void parse_ops(struct cluster_flags *f, const char *s)
{
	char buf[256];
	copy_str(buf, sizeof(buf), "ops", s);
	memset(f->weight, 0, sizeof(f->weight));
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(item, ':');
		unsigned w = 1;
		if (colon) {
			*colon = '\0';
			w = (unsigned)parse_u64("ops", colon + 1, 0, 1000000);
		}
		int op = -1;
		for (int i = 0; i < N_OPS; i++)
			if (!strcmp(item, op_names[i]))
				op = i;
		if (op < 0)
			bad_flag("--ops: unknown operation '%s'%s (put and get exist)", item, "");
		f->weight[op] = w;
	}
	if (f->weight[OP_PUT] + f->weight[OP_GET] == 0)
		bad_flag("--ops: '%s' has no operation with a weight above 0%s", s, "");
}

static void parse_flags(struct cluster_flags *f, int argc, char **argv)
{
	memset(f, 0, sizeof(*f));
	f->target = TARGET_KVFS;
	f->weight[OP_PUT] = 50;
	f->weight[OP_GET] = 50;
	f->value_size = 1024;
	f->keys = 100000;
	f->concurrency = 64;
	f->duration_s = 30;
	f->dirs = 64;
	f->put_mode = PUT_CTX;
	f->timeout_ms = 5000;
	f->seed = 301;
	f->progress = true;
	memcpy(f->prefix, "/bench", sizeof("/bench"));

	enum { O_SYSTEM = 256, O_OPS, O_VALUE, O_KEYS, O_CONC, O_DUR, O_RATE, O_PUTMODE,
	       O_PRELOAD, O_PREFIX, O_DIRS, O_SECRET, O_TIMEOUT, O_SEED, O_NOPROGRESS };
	static const struct option longopts[] = {
		{ "cluster", required_argument, NULL, 'c' },
		{ "system", required_argument, NULL, O_SYSTEM },
		{ "ops", required_argument, NULL, O_OPS },
		{ "value-size", required_argument, NULL, O_VALUE },
		{ "keys", required_argument, NULL, O_KEYS },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "duration", required_argument, NULL, O_DUR },
		{ "rate", required_argument, NULL, O_RATE },
		{ "put-mode", required_argument, NULL, O_PUTMODE },
		{ "preload", no_argument, NULL, O_PRELOAD },
		{ "load", no_argument, NULL, O_PRELOAD },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "dirs", required_argument, NULL, O_DIRS },
		{ "secret-file", required_argument, NULL, O_SECRET },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "seed", required_argument, NULL, O_SEED },
		{ "no-progress", no_argument, NULL, O_NOPROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	opterr = 0;
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, ":c:r:w:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			copy_str(f->nodes, sizeof(f->nodes), "cluster", optarg);
			break;
		case O_SYSTEM:
			if (!strcmp(optarg, "kvfs"))
				f->target = TARGET_KVFS;
			else if (!strcmp(optarg, "etcd"))
				f->target = TARGET_ETCD;
			else
				bad_flag("--system: '%s' is not kvfs or etcd%s", optarg, "");
			break;
		case O_OPS:
			parse_ops(f, optarg);
			break;
		case O_VALUE:
			f->value_size = parse_u64("value-size", optarg, 0, 4u << 20);
			break;
		case O_KEYS:
			f->keys = parse_u64("keys", optarg, 1, 100000000);
			break;
		case O_CONC:
			f->concurrency = (unsigned)parse_u64("concurrency", optarg, 1, 4096);
			break;
		case O_DUR:
			f->duration_s = parse_double("duration", optarg, 0, 86400);
			break;
		case O_RATE:
			f->rate = parse_double("rate", optarg, 0.001, 1e8);
			break;
		case 'r':
			f->r = (unsigned)parse_u64("r", optarg, 1, 255);
			break;
		case 'w':
			f->w = (unsigned)parse_u64("w", optarg, 1, 255);
			break;
		case O_PUTMODE:
			if (!strcmp(optarg, "ctx"))
				f->put_mode = PUT_CTX;
			else if (!strcmp(optarg, "blind"))
				f->put_mode = PUT_BLIND;
			else if (!strcmp(optarg, "rmw"))
				f->put_mode = PUT_RMW;
			else
				bad_flag("--put-mode: '%s' is not ctx, rmw or blind%s", optarg, "");
			break;
		case O_PRELOAD:
			f->preload = true;
			break;
		case O_PREFIX:
			copy_str(f->prefix, sizeof(f->prefix), "prefix", optarg);
			break;
		case O_DIRS:
			f->dirs = (unsigned)parse_u64("dirs", optarg, 1, 1000000);
			break;
		case O_SECRET:
			copy_str(f->secret_file, sizeof(f->secret_file), "secret-file", optarg);
			break;
		case O_TIMEOUT:
			f->timeout_ms = (uint32_t)parse_u64("timeout", optarg, 1, 3600000);
			break;
		case O_SEED:
			f->seed = parse_u64("seed", optarg, 0, UINT64_MAX);
			break;
		case O_NOPROGRESS:
			f->progress = false;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_flag("%s needs a value%s", argv[optind - 1], "");
			break;
		default:
			bad_flag("unknown flag '%s'%s", argv[optind - 1], "");
		}
	}
	if (optind < argc)
		bad_flag("unexpected argument '%s'%s", argv[optind], "");
	if (!f->nodes[0])
		bad_flag("-c HOST:PORT[,...] is required%s%s", "", "");
	if (f->prefix[0] != '/')
		bad_flag("--prefix: '%s' must start with '/'%s", f->prefix, "");
	if (f->put_mode == PUT_CTX && f->keys < f->concurrency && f->weight[OP_PUT] > 0)
		bad_flag("--put-mode ctx gives each thread its own keys: --keys must be at least "
			 "--concurrency%s%s", "", "");
	if (f->target == TARGET_ETCD && (f->r || f->w || f->secret_file[0]))
		bad_flag("-r, -w and --secret-file are for kvfs only%s%s", "", "");
}

/* ---- Keys and values ------------------------------------------------------ */

/*
 * Key @k: PREFIX/dDDDD/kKKKKKKKK. Directories are picked by a multiplicative
 * hash of k, so each thread's keys (k = id mod concurrency) cover them all.
 * A kvfs key is placed by its directory (DESIGN §2): --dirs spreads the keys
 * over replica sets and coordinators; --dirs 1 is the hot-directory case.
 */
static void make_key(struct worker *w, uint64_t k)
{
	const struct cluster_flags *f = w->run->f;
	int n;
	if (f->dirs > 1) {
		unsigned dir = (unsigned)(((k * 0x9E3779B97F4A7C15ull) >> 32) % f->dirs);
		n = snprintf(w->key, sizeof(w->key), "%s/d%04u/k%08llu", f->prefix, dir,
			     (unsigned long long)k);
	} else {
		n = snprintf(w->key, sizeof(w->key), "%s/k%08llu", f->prefix, (unsigned long long)k);
	}
	w->key_len = n < 0 ? 0 : (size_t)n < sizeof(w->key) ? (size_t)n : sizeof(w->key) - 1;
}

/* Fresh random bytes for every put, so no engine compresses repeats. */
static void fill_value(struct worker *w)
{
	size_t n = w->run->f->value_size;
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = kv_rng_next(&w->rng);
		size_t take = n - i < 8 ? n - i : 8;
		memcpy(w->value + i, &r, take);
	}
}

/* Records the first few errors on stderr; later ones are only counted. */
static void report_error(struct worker *w, const char *what, const char *msg)
{
	unsigned seen = atomic_fetch_add(&w->run->errors_printed, 1);
	if (seen < MAX_ERRORS_PRINTED)
		fprintf(stderr, "kvfs-bench cluster: %s %.*s: %s%s\n", what, (int)w->key_len, w->key,
			msg, seen + 1 == MAX_ERRORS_PRINTED ? " (further errors only counted)" : "");
}

/* ---- etcd: the v3 JSON gateway over keep-alive HTTP/1.1 ------------------ */

static int parse_endpoints(struct run *run, const char *list)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", list);
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (run->n_eps == MAX_ENDPOINTS) {
			fprintf(stderr, "kvfs-bench cluster: more than %d endpoints\n", MAX_ENDPOINTS);
			return -1;
		}
		if (!strncmp(item, "http://", 7))
			item += 7;
		struct endpoint *ep = &run->eps[run->n_eps];
		char *colon = strrchr(item, ':');
		if (!colon || colon == item || strlen(colon + 1) >= sizeof(ep->port) ||
		    (size_t)(colon - item) >= sizeof(ep->host)) {
			fprintf(stderr, "kvfs-bench cluster: '%s' is not HOST:PORT\n", item);
			return -1;
		}
		memcpy(ep->host, item, (size_t)(colon - item));
		ep->host[colon - item] = '\0';
		memcpy(ep->port, colon + 1, strlen(colon + 1) + 1);
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
		struct addrinfo *ai = NULL;
		int rc = getaddrinfo(ep->host, ep->port, &hints, &ai);
		if (rc != 0 || !ai) {
			fprintf(stderr, "kvfs-bench cluster: %s:%s: %s\n", ep->host, ep->port,
				gai_strerror(rc));
			return -1;
		}
		memcpy(&ep->addr, ai->ai_addr, ai->ai_addrlen);
		ep->addrlen = ai->ai_addrlen;
		freeaddrinfo(ai);
		run->n_eps++;
	}
	if (run->n_eps == 0) {
		fprintf(stderr, "kvfs-bench cluster: -c names no endpoint\n");
		return -1;
	}
	return 0;
}

static void http_close(struct http_conn *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->len = 0;
}

static int http_connect(struct http_conn *h, uint32_t timeout_ms, char *err, size_t errlen)
{
	h->fd = socket(h->ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		goto fail;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	int one = 1;
	if (setsockopt(h->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(h->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	if (connect(h->fd, (const struct sockaddr *)&h->ep->addr, h->ep->addrlen) < 0)
		goto fail;
	h->len = 0;
	return 0;
fail:
	snprintf(err, errlen, "%s:%s: %s", h->ep->host, h->ep->port, strerror(errno));
	http_close(h);
	return -1;
}

static int grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	char *q = realloc(*p, n);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

/* Reads more bytes into h->buf. 0, or -1 with @err set (EOF, timeout, error). */
static int http_fill(struct http_conn *h, char *err, size_t errlen)
{
	if (h->len >= HTTP_MAX_RESPONSE) {
		snprintf(err, errlen, "response above %u bytes", HTTP_MAX_RESPONSE);
		return -1;
	}
	if (grow(&h->buf, &h->cap, h->len + 16384) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ssize_t n;
	do
		n = recv(h->fd, h->buf + h->len, h->cap - h->len, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0 || (n < 0 && errno == ECONNRESET)) {
		snprintf(err, errlen, "connection %s by %s:%s", n == 0 ? "closed" : "reset",
			 h->ep->host, h->ep->port);
		h->dropped = true;
		return -1;
	}
	if (n < 0) {
		snprintf(err, errlen, "%s", errno == EAGAIN || errno == EWOULDBLOCK ?
			 "timed out" : strerror(errno));
		return -1;
	}
	h->len += (size_t)n;
	return 0;
}

/* Finds "\r\n" at or after @from in h->buf; returns its offset or -1. */
static long find_crlf(const struct http_conn *h, size_t from)
{
	for (size_t i = from; i + 1 < h->len; i++)
		if (h->buf[i] == '\r' && h->buf[i + 1] == '\n')
			return (long)i;
	return -1;
}

/*
 * Reads one response: status line, headers, and a body framed by
 * Content-Length or chunked transfer coding, into h->body (NUL-terminated).
 * Returns the status code, or -1 with @err set.
 */
static int http_read_response(struct http_conn *h, bool *close_after, char *err, size_t errlen)
{
	size_t hdr_end;
	for (;;) {
		char *p = h->len ? memmem(h->buf, h->len, "\r\n\r\n", 4) : NULL;
		if (p) {
			hdr_end = (size_t)(p - h->buf) + 4;
			break;
		}
		if (h->len > 65536) {
			snprintf(err, errlen, "response headers above 64 KiB");
			return -1;
		}
		if (http_fill(h, err, errlen) < 0)
			return -1;
	}
	int status = 0;
	if (h->len < 12 || strncmp(h->buf, "HTTP/1.", 7) ||
	    sscanf(h->buf + 9, "%3d", &status) != 1 || status < 100) {
		snprintf(err, errlen, "not an HTTP/1.x response");
		return -1;
	}
	long content_length = -1;
	bool chunked = false;
	*close_after = false;
	size_t line = (size_t)find_crlf(h, 0) + 2;
	while (line + 2 <= hdr_end - 2) {
		long eol = find_crlf(h, line);
		if (eol < 0)
			break;
		const char *l = h->buf + line;
		size_t ll = (size_t)eol - line;
		if (ll > 15 && !strncasecmp(l, "content-length:", 15)) {
			content_length = strtol(l + 15, NULL, 10);
		} else if (ll > 18 && !strncasecmp(l, "transfer-encoding:", 18)) {
			chunked = memmem(l, ll, "chunked", 7) != NULL;
		} else if (ll > 11 && !strncasecmp(l, "connection:", 11)) {
			*close_after = memmem(l, ll, "close", 5) != NULL;
		}
		line = (size_t)eol + 2;
	}
	h->body_len = 0;
	size_t pos = hdr_end;
	if (!chunked) {
		if (content_length < 0 || content_length > (long)HTTP_MAX_RESPONSE) {
			snprintf(err, errlen, "response without a usable Content-Length");
			return -1;
		}
		while (h->len < pos + (size_t)content_length)
			if (http_fill(h, err, errlen) < 0)
				return -1;
		if (grow(&h->body, &h->body_cap, (size_t)content_length + 1) < 0)
			goto oom;
		memcpy(h->body, h->buf + pos, (size_t)content_length);
		h->body_len = (size_t)content_length;
		pos += (size_t)content_length;
	} else {
		for (;;) {
			long eol;
			while ((eol = find_crlf(h, pos)) < 0)
				if (http_fill(h, err, errlen) < 0)
					return -1;
			char *end;
			unsigned long size = strtoul(h->buf + pos, &end, 16);
			if (end == h->buf + pos || size > HTTP_MAX_RESPONSE ||
			    h->body_len + size > HTTP_MAX_RESPONSE) {
				snprintf(err, errlen, "bad chunk size in response");
				return -1;
			}
			pos = (size_t)eol + 2;
			while (h->len < pos + size + 2)
				if (http_fill(h, err, errlen) < 0)
					return -1;
			if (grow(&h->body, &h->body_cap, h->body_len + size + 1) < 0)
				goto oom;
			if (h->buf[pos + size] != '\r' || h->buf[pos + size + 1] != '\n') {
				snprintf(err, errlen, "bad chunk framing in response");
				return -1;
			}
			memcpy(h->body + h->body_len, h->buf + pos, size);
			h->body_len += size;
			pos += size + 2;
			if (size == 0) /* no trailers from the gateway */
				break;
		}
	}
	if (grow(&h->body, &h->body_cap, h->body_len + 1) < 0)
		goto oom;
	h->body[h->body_len] = '\0';
	memmove(h->buf, h->buf + pos, h->len - pos);
	h->len -= pos;
	return status;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/*
 * POSTs @body to @path and reads the reply into w->http.body. Reconnects once
 * when a kept-alive connection turns out closed (the server may close an idle
 * one) before any byte of the reply came; never after a timeout.
 * Returns the HTTP status, or -1 with @err set.
 */
static int http_post(struct worker *w, const char *path, const char *body, size_t blen,
		     char *err, size_t errlen)
{
	struct http_conn *h = &w->http;
	char head[512];
	int hn = snprintf(head, sizeof(head),
			  "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n", path, h->ep->host, h->ep->port, blen);
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = h->fd >= 0;
		h->dropped = false;
		if (h->fd < 0 && http_connect(h, w->run->f->timeout_ms, err, errlen) < 0)
			return -1;
		struct iovec iov[2] = { { head, (size_t)hn }, { (void *)body, blen } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
		size_t total = (size_t)hn + blen, sent = 0;
		bool failed = false;
		while (sent < total) {
			ssize_t n = sendmsg(h->fd, &msg, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				snprintf(err, errlen, "send to %s:%s: %s", h->ep->host, h->ep->port,
					 n < 0 ? strerror(errno) : "nothing sent");
				h->dropped = n < 0 && (errno == EPIPE || errno == ECONNRESET);
				failed = true;
				break;
			}
			sent += (size_t)n;
			size_t adv = (size_t)n;
			while (msg.msg_iovlen && adv >= msg.msg_iov[0].iov_len) {
				adv -= msg.msg_iov[0].iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			}
			if (msg.msg_iovlen) {
				msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + adv;
				msg.msg_iov[0].iov_len -= adv;
			}
		}
		bool close_after = false;
		int status = failed ? -1 : http_read_response(h, &close_after, err, errlen);
		if (status >= 0) {
			if (close_after)
				http_close(h);
			return status;
		}
		bool retry = reused && h->dropped && h->len == 0;
		http_close(h);
		if (!retry)
			return -1;
	}
	return -1;
}

/* Base64 of @n bytes at @p into w->b64 (NUL-terminated). 0 or -1. */
static int b64(struct worker *w, const void *p, size_t n)
{
	size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	if (grow(&w->b64, &w->b64_cap, need) < 0)
		return -1;
	sodium_bin2base64(w->b64, need, p, n, sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

/* Appends @s to the request body at *len. */
static int req_add(struct worker *w, size_t *len, const char *s)
{
	size_t n = strlen(s);
	if (grow(&w->req, &w->req_cap, *len + n + 1) < 0)
		return -1;
	memcpy(w->req + *len, s, n + 1);
	*len += n;
	return 0;
}

/* etcd put or range. Returns 0 (found set for gets) or -1 after report_error. */
static int etcd_call(struct worker *w, enum op op, bool *found)
{
	char err[256];
	size_t len = 0;
	if (b64(w, w->key, w->key_len) < 0 || req_add(w, &len, "{\"key\":\"") < 0 ||
	    req_add(w, &len, w->b64) < 0)
		goto oom;
	if (op == OP_PUT) {
		if (b64(w, w->value, w->run->f->value_size) < 0 ||
		    req_add(w, &len, "\",\"value\":\"") < 0 || req_add(w, &len, w->b64) < 0)
			goto oom;
	}
	if (req_add(w, &len, "\"}") < 0)
		goto oom;
	/* Range reads are linearizable unless "serializable":true is asked for. */
	int status = http_post(w, op == OP_PUT ? "/v3/kv/put" : "/v3/kv/range", w->req, len,
			       err, sizeof(err));
	if (status < 0) {
		report_error(w, op_names[op], err);
		return -1;
	}
	if (status != 200) {
		snprintf(err, sizeof(err), "HTTP %d: %.200s", status, w->http.body);
		report_error(w, op_names[op], err);
		return -1;
	}
	if (found)
		*found = strstr(w->http.body, "\"kvs\"") != NULL;
	return 0;
oom:
	report_error(w, op_names[op], "out of memory");
	return -1;
}

/*
 * One range call through each endpoint a thread will use, so an unreachable
 * gateway is one clear line before the load starts.
 */
static int etcd_probe(struct run *run)
{
	for (unsigned i = 0; i < run->n_eps && i < run->f->concurrency; i++) {
		struct worker *w = &run->workers[i];
		char err[512];
		static const char body[] = "{\"key\":\"cHJvYmU=\"}"; /* "probe" */
		int status = http_post(w, "/v3/kv/range", body, sizeof(body) - 1, err, sizeof(err));
		if (status != 200) {
			if (status > 0)
				snprintf(err, sizeof(err), "%s:%s: HTTP %d: %.200s", w->http.ep->host,
					 w->http.ep->port, status, w->http.body);
			fprintf(stderr, "kvfs-bench cluster: %s\n", err);
			return -1;
		}
	}
	return 0;
}

/* ---- kvfs: the client library ------------------------------------------- */

#ifdef KVFS_BENCH_CLUSTER_CLIENT
static void kvfs_error(struct worker *w, const char *what, int rc)
{
	const char *msg = kv_client_errmsg(w->run->client);
	char buf[KV_CLIENT_ERRMSG_MAX + 64];
	snprintf(buf, sizeof(buf), "%s", msg && msg[0] ? msg : kv_strerror(rc));
	report_error(w, what, buf);
}

/*
 * One kvfs put of the thread's current key, whose index among the thread's
 * own keys is @local (UINT64_MAX: not one of them). @mode says which context
 * to send (see doc/benchmarks.md "Which context a put sends").
 */
static int kvfs_put(struct worker *w, uint64_t local, enum put_mode mode)
{
	struct kv_client *c = w->run->client;
	struct kv_slice key = kv_slice_make(w->key, w->key_len);
	struct kv_slice body = kv_slice_make(w->value, w->run->f->value_size);
	struct kv_slice meta = kv_slice_make(NULL, 0);
	const struct kv_ctx *ctx = NULL;
	if (mode == PUT_RMW) {
		struct kv_client_call head = KV_CLIENT_CALL_INIT;
		head.head = true;
		int rc = kv_client_get(c, key, &head, &w->got);
		if (rc < 0) {
			kvfs_error(w, "put (reading the context)", rc);
			return -1;
		}
		ctx = &w->got.ctx;
	} else if (mode == PUT_CTX && local != UINT64_MAX) {
		ctx = &w->ctxs[local];
	}
	/* With --put-mode ctx, remember the new context for this thread's next put. */
	bool keep = w->ctxs && local != UINT64_MAX;
	int rc = kv_client_put(c, key, ctx, meta, body, NULL, NULL, keep ? &w->ctx_tmp : NULL);
	if (rc < 0) {
		kvfs_error(w, "put", rc);
		return -1;
	}
	if (keep)
		kv_ctx_swap(&w->ctxs[local], &w->ctx_tmp);
	return 0;
}

static int kvfs_get(struct worker *w, bool *found, bool *siblings)
{
	struct kv_slice key = kv_slice_make(w->key, w->key_len);
	int rc = kv_client_get(w->run->client, key, NULL, &w->got);
	if (rc < 0) {
		kvfs_error(w, "get", rc);
		return -1;
	}
	size_t live = kv_dvv_live_count(&w->got);
	*found = live > 0;
	*siblings = live > 1;
	if (live > 0) {
		for (size_t i = 0; i < w->got.n; i++) {
			if (!w->got.v[i].tombstone && w->got.v[i].body.n != w->run->f->value_size) {
				char msg[128];
				snprintf(msg, sizeof(msg), "a %zu-byte value, expected %zu (an older run's?"
					 " use a fresh --prefix)", w->got.v[i].body.n,
					 w->run->f->value_size);
				report_error(w, "get", msg);
				return -1;
			}
		}
	}
	return 0;
}

static int kvfs_open(struct run *run)
{
	const struct cluster_flags *f = run->f;
	int rc;
	if (f->secret_file[0]) {
		rc = kv_auth_secret_load(f->secret_file, &run->secret);
		if (rc < 0) {
			fprintf(stderr, "kvfs-bench cluster: %s: %s\n", f->secret_file, kv_strerror(rc));
			return -1;
		}
	}
	struct kv_client_config cfg = {
		.nodes = f->nodes,
		.secret = f->secret_file[0] ? &run->secret : NULL,
		.timeout_ms = f->timeout_ms,
		.r = (uint8_t)f->r,
		.w = (uint8_t)f->w,
		/* Every thread may hold a connection to every node at once. */
		.conns_per_node = f->concurrency,
		.max_value = f->value_size > 0 ? f->value_size : 1,
	};
	rc = kv_client_new(&cfg, &run->client);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench cluster: -c %s: %s\n", f->nodes,
			kv_client_errmsg(NULL)[0] ? kv_client_errmsg(NULL) : kv_strerror(rc));
		return -1;
	}
	/* One call up front, so a dead cluster is one clear line, not 64 threads of errors. */
	struct kv_dvv probe;
	kv_dvv_init(&probe);
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.head = true;
	rc = kv_client_get(run->client, kv_slice_str(f->prefix), &call, &probe);
	kv_dvv_release(&probe);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench cluster: %s: %s\n", f->nodes,
			kv_client_errmsg(run->client)[0] ? kv_client_errmsg(run->client)
							 : kv_strerror(rc));
		return -1;
	}
	uint8_t n = 0, r = 0, w = 0;
	if (kv_client_quorum(run->client, &n, &r, &w))
		fprintf(stderr, "kvfs-bench cluster: %zu nodes; cluster N=%u R=%u W=%u; using R=%u "
			"W=%u\n", kv_client_node_count(run->client), n, r, w, f->r ? f->r : r,
			f->w ? f->w : w);
	return 0;
}
#endif

/* ---- The load loop ------------------------------------------------------- */

static enum op pick_op(struct worker *w)
{
	const struct cluster_flags *f = w->run->f;
	if (f->weight[OP_GET] == 0)
		return OP_PUT;
	if (f->weight[OP_PUT] == 0)
		return OP_GET;
	return kv_rng_below(&w->rng, w->run->weight_total) < f->weight[OP_PUT] ? OP_PUT : OP_GET;
}

/*
 * Runs one operation on key @k and records it, latency from @sched_ns: the
 * scheduled start in open loop; 0 in closed loop, where the clock starts once
 * the key and value are ready.
 */
static void run_op(struct worker *w, enum op op, uint64_t k, uint64_t sched_ns, bool late)
{
	const struct cluster_flags *f = w->run->f;
	uint64_t local = k % f->concurrency == w->id ? k / f->concurrency : UINT64_MAX;
	make_key(w, k);
	bool found = false, siblings = false;
	int rc;
	if (op == OP_PUT)
		fill_value(w);
	if (sched_ns == 0)
		sched_ns = kv_now_ns();
	if (f->target == TARGET_ETCD) {
		rc = etcd_call(w, op, op == OP_GET ? &found : NULL);
	} else {
#ifdef KVFS_BENCH_CLUSTER_CLIENT
		enum put_mode mode = f->put_mode;
		if (w->preloading && mode == PUT_CTX)
			mode = PUT_RMW; /* a rerun on an old prefix replaces, never adds siblings */
		rc = op == OP_PUT ? kvfs_put(w, local, mode) : kvfs_get(w, &found, &siblings);
#else
		rc = -1;
#endif
	}
	uint64_t done = kv_now_ns();
	struct op_stats *st = &w->st[op];
	pthread_mutex_lock(&w->mu);
	if (rc < 0) {
		st->errors++;
	} else {
		st->ops++;
		bench_hist_add(&st->hist, done - sched_ns);
		st->found += found;
		st->siblings += siblings;
	}
	st->late += late;
	pthread_mutex_unlock(&w->mu);
	if (rc < 0 && !w->run->f->rate) {
		/* Closed loop: do not hammer a node that refuses at once. */
		struct timespec pause = { 0, ERROR_PAUSE_NS };
		nanosleep(&pause, NULL);
	}
}

/* Preload: every key this thread owns, once, in order. */
static void preload_loop(struct worker *w)
{
	const struct cluster_flags *f = w->run->f;
	for (uint64_t i = 0; i < w->n_owned; i++)
		run_op(w, OP_PUT, i * f->concurrency + w->id, 0, false);
}

static void load_loop(struct worker *w)
{
	const struct cluster_flags *f = w->run->f;
	const struct run *run = w->run;
	uint64_t interval = 0, next = run->start_ns;
	if (f->rate > 0) {
		interval = (uint64_t)(1e9 * f->concurrency / f->rate);
		if (interval == 0)
			interval = 1;
		next = run->start_ns + interval * w->id / f->concurrency; /* staggered */
	}
	for (;;) {
		uint64_t now = kv_now_ns();
		uint64_t sched = 0; /* closed loop: timed from the send */
		bool late = false;
		if (interval) {
			if (next >= run->end_ns)
				break;
			if (now < next) {
				struct timespec ts = { (time_t)(next / 1000000000u),
						       (long)(next % 1000000000u) };
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
					;
				now = kv_now_ns();
			}
			sched = next;
			late = now - sched > LATE_NS;
			next += interval;
		} else if (now >= run->end_ns) {
			break;
		}
		enum op op = pick_op(w);
		uint64_t k;
		if (op == OP_PUT && f->put_mode == PUT_CTX)
			k = kv_rng_below(&w->rng, w->n_owned) * f->concurrency + w->id;
		else
			k = kv_rng_below(&w->rng, f->keys);
		run_op(w, op, k, sched, late);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&w->run->gate);
	if (w->preloading)
		preload_loop(w);
	else
		load_loop(w);
	w->finish_ns = kv_now_ns();
	return NULL;
}

/* ---- Reporting ------------------------------------------------------------ */

/* Sums every worker's stats for @op (both ops when @op is N_OPS) into @out. */
static void collect(struct run *run, int op, struct op_stats *out)
{
	memset(out, 0, sizeof(*out));
	bench_hist_init(&out->hist);
	for (unsigned i = 0; i < run->f->concurrency; i++) {
		struct worker *w = &run->workers[i];
		pthread_mutex_lock(&w->mu);
		for (int o = 0; o < N_OPS; o++) {
			if (op != N_OPS && o != op)
				continue;
			out->ops += w->st[o].ops;
			out->errors += w->st[o].errors;
			out->found += w->st[o].found;
			out->siblings += w->st[o].siblings;
			out->late += w->st[o].late;
			bench_hist_merge(&out->hist, &w->st[o].hist);
		}
		pthread_mutex_unlock(&w->mu);
	}
}

static void print_summary_line(const char *name, const struct op_stats *s, double secs,
			       bool open_loop)
{
	printf("%-12s : %10.1f ops/sec p50 %.1f p99 %.1f p999 %.1f micros; %llu ops, %llu errors",
	       name, secs > 0 ? (double)s->ops / secs : 0, bench_hist_quantile(&s->hist, 0.5) / 1e3,
	       bench_hist_quantile(&s->hist, 0.99) / 1e3, bench_hist_quantile(&s->hist, 0.999) / 1e3,
	       (unsigned long long)s->ops, (unsigned long long)s->errors);
	if (open_loop)
		printf(", %llu late", (unsigned long long)s->late);
	if (!strcmp(name, "get"))
		printf(", %llu found, %llu with siblings", (unsigned long long)s->found,
		       (unsigned long long)s->siblings);
	printf("\n");
}

/* Starts every worker, waits for them, and returns the phase's wall time in s. */
static int run_phase(struct run *run, bool preload, double *secs)
{
	const struct cluster_flags *f = run->f;
	unsigned started = 0;
	int ret = -1;
	if (pthread_barrier_init(&run->gate, NULL, f->concurrency + 1) != 0) {
		fprintf(stderr, "kvfs-bench cluster: pthread_barrier_init failed\n");
		return -1;
	}
	for (unsigned i = 0; i < f->concurrency; i++) {
		struct worker *w = &run->workers[i];
		w->preloading = preload;
		pthread_mutex_lock(&w->mu);
		for (int o = 0; o < N_OPS; o++) {
			memset(&w->st[o], 0, sizeof(w->st[o]));
			bench_hist_init(&w->st[o].hist);
		}
		pthread_mutex_unlock(&w->mu);
	}
	for (; started < f->concurrency; started++) {
		if (pthread_create(&run->workers[started].thread, NULL, worker_main,
				   &run->workers[started]) != 0) {
			fprintf(stderr, "kvfs-bench cluster: cannot start thread %u\n", started);
			/* Release the ones waiting: they see an end time in the past. */
			run->start_ns = run->end_ns = kv_now_ns();
			for (unsigned i = 0; i < started; i++)
				run->workers[i].preloading = false;
			break;
		}
	}
	if (started == f->concurrency) {
		run->start_ns = kv_now_ns();
		run->end_ns = run->start_ns + (uint64_t)(f->duration_s * 1e9);
		ret = 0;
	}
	if (started < f->concurrency) {
		/* The barrier counts f->concurrency + 1: stand in for the missing threads. */
		for (unsigned i = started; i < f->concurrency; i++)
			pthread_barrier_wait(&run->gate);
	}
	pthread_barrier_wait(&run->gate);

	uint64_t last_ops = 0, last_ns = run->start_ns;
	unsigned second = 0;
	struct bench_hist *last_hist = calloc(2, sizeof(*last_hist));
	if (last_hist)
		bench_hist_init(last_hist);
	while (ret == 0 && !preload && f->progress) {
		uint64_t tick = run->start_ns + (uint64_t)(second + 1) * 1000000000u;
		if (tick > run->end_ns)
			break;
		struct timespec ts = { (time_t)(tick / 1000000000u), (long)(tick % 1000000000u) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		second++;
		struct op_stats all;
		collect(run, N_OPS, &all);
		uint64_t now = kv_now_ns();
		double p99_second = 0;
		if (last_hist) {
			bench_hist_since(&last_hist[1], &all.hist, &last_hist[0]);
			p99_second = bench_hist_quantile(&last_hist[1], 0.99) / 1e3;
			last_hist[0] = all.hist;
		}
		fprintf(stderr, "[%4us] %9.0f ops/s  %llu ops  %llu errors  p99 %.0f us so far,"
			" %.0f us this second\n",
			second, (double)(all.ops - last_ops) * 1e9 / (double)(now - last_ns),
			(unsigned long long)all.ops, (unsigned long long)all.errors,
			bench_hist_quantile(&all.hist, 0.99) / 1e3, p99_second);
		last_ops = all.ops;
		last_ns = now;
	}
	free(last_hist);
	uint64_t finish = run->start_ns;
	for (unsigned i = 0; i < started; i++) {
		pthread_join(run->workers[i].thread, NULL);
		if (run->workers[i].finish_ns > finish)
			finish = run->workers[i].finish_ns;
	}
	pthread_barrier_destroy(&run->gate);
	*secs = (double)(finish - run->start_ns) / 1e9;
	return ret;
}

/* ---- Main ------------------------------------------------------------------ */

static int workers_init(struct run *run)
{
	const struct cluster_flags *f = run->f;
	run->workers = calloc(f->concurrency, sizeof(*run->workers));
	if (!run->workers)
		return -1;
	for (unsigned i = 0; i < f->concurrency; i++) {
		struct worker *w = &run->workers[i];
		w->run = run;
		w->id = i;
		w->http.fd = -1;
		w->http.ep = run->n_eps ? &run->eps[i % run->n_eps] : NULL;
		pthread_mutex_init(&w->mu, NULL);
		kv_rng_seed(&w->rng, f->seed * 1000003u + i);
		w->n_owned = i < f->keys ? (f->keys - i + f->concurrency - 1) / f->concurrency : 0;
		w->value = malloc(f->value_size ? f->value_size : 1);
		if (!w->value)
			return -1;
#ifdef KVFS_BENCH_CLUSTER_CLIENT
		kv_ctx_init(&w->ctx_tmp);
		kv_dvv_init(&w->got);
		if (f->target == TARGET_KVFS && f->put_mode == PUT_CTX && w->n_owned) {
			w->ctxs = calloc(w->n_owned, sizeof(*w->ctxs));
			if (!w->ctxs)
				return -1;
			for (uint64_t k = 0; k < w->n_owned; k++)
				kv_ctx_init(&w->ctxs[k]);
		}
#endif
	}
	return 0;
}

static void workers_free(struct run *run)
{
	if (!run->workers)
		return;
	for (unsigned i = 0; i < run->f->concurrency; i++) {
		struct worker *w = &run->workers[i];
		if (!w->run)
			continue;
#ifdef KVFS_BENCH_CLUSTER_CLIENT
		if (w->ctxs)
			for (uint64_t k = 0; k < w->n_owned; k++)
				kv_ctx_release(&w->ctxs[k]);
		free(w->ctxs);
		kv_ctx_release(&w->ctx_tmp);
		kv_dvv_release(&w->got);
#endif
		http_close(&w->http);
		free(w->http.buf);
		free(w->http.body);
		free(w->req);
		free(w->b64);
		free(w->value);
		pthread_mutex_destroy(&w->mu);
	}
	free(run->workers);
	run->workers = NULL;
}

int bench_cluster_main(int argc, char **argv)
{
	struct cluster_flags f;
	/* argv[1] is "cluster": getopt sees it as the program name. */
	parse_flags(&f, argc - 1, argv + 1);
	struct run *run = calloc(1, sizeof(*run));
	int status = 1;
	if (!run) {
		fprintf(stderr, "kvfs-bench cluster: out of memory\n");
		return 1;
	}
	run->f = &f;
	run->weight_total = f.weight[OP_PUT] + f.weight[OP_GET];
	if (f.target == TARGET_KVFS) {
#ifdef KVFS_BENCH_CLUSTER_CLIENT
		if (kvfs_open(run) < 0)
			goto out;
#else
		fprintf(stderr, "kvfs-bench cluster: kvfs: not built in (the client library was "
				"not found at configure time); --system etcd works\n");
		status = 2;
		goto out;
#endif
	} else if (parse_endpoints(run, f.nodes) < 0) {
		goto out;
	}
	if (workers_init(run) < 0) {
		fprintf(stderr, "kvfs-bench cluster: out of memory\n");
		goto out;
	}
	if (f.target == TARGET_ETCD && etcd_probe(run) < 0)
		goto out;
	const char *mode = f.rate > 0 ? "open loop" : "closed loop";
	fprintf(stderr, "kvfs-bench cluster: %s at %s: ops put:%u,get:%u, %llu keys under %s "
		"(%u dirs), %zu-byte values, %u threads, %s, %.1f s%s\n",
		f.target == TARGET_KVFS ? "kvfs" : "etcd", f.nodes, f.weight[OP_PUT],
		f.weight[OP_GET], (unsigned long long)f.keys, f.prefix, f.dirs, f.value_size,
		f.concurrency, mode, f.duration_s, f.preload ? " after a preload" : "");
	if (f.rate > 0)
		fprintf(stderr, "kvfs-bench cluster: target rate %.0f ops/s (%.1f per thread)\n",
			f.rate, f.rate / f.concurrency);

	bool errors = false;
	double secs = 0;
	if (f.preload) {
		if (run_phase(run, true, &secs) < 0)
			goto out;
		struct op_stats s;
		collect(run, OP_PUT, &s);
		printf("%-12s : %10.1f ops/sec p50 %.1f p99 %.1f p999 %.1f micros; %llu ops, "
		       "%llu errors (every key once, %.1f s)\n", "preload",
		       secs > 0 ? (double)s.ops / secs : 0, bench_hist_quantile(&s.hist, 0.5) / 1e3,
		       bench_hist_quantile(&s.hist, 0.99) / 1e3,
		       bench_hist_quantile(&s.hist, 0.999) / 1e3, (unsigned long long)s.ops,
		       (unsigned long long)s.errors, secs);
		fflush(stdout);
		errors |= s.errors > 0;
	}
	if (f.duration_s > 0) {
		if (run_phase(run, false, &secs) < 0)
			goto out;
		struct op_stats s[N_OPS + 1];
		for (int o = 0; o <= N_OPS; o++)
			collect(run, o, &s[o]);
		for (int o = 0; o < N_OPS; o++)
			if (f.weight[o] > 0)
				print_summary_line(op_names[o], &s[o], secs, f.rate > 0);
		if (f.weight[OP_PUT] > 0 && f.weight[OP_GET] > 0)
			print_summary_line("all", &s[N_OPS], secs, f.rate > 0);
		if (f.rate > 0) {
			uint64_t done = s[N_OPS].ops + s[N_OPS].errors;
			printf("%-12s : target %.1f ops/s, achieved %.1f ops/s; %llu of %llu requests "
			       "sent more than %llu us behind schedule\n", "rate", f.rate,
			       secs > 0 ? (double)done / secs : 0, (unsigned long long)s[N_OPS].late,
			       (unsigned long long)done, LATE_NS / 1000);
		}
		errors |= s[N_OPS].errors > 0;
	}
	status = errors ? 1 : 0;
out:
	workers_free(run);
#ifdef KVFS_BENCH_CLUSTER_CLIENT
	kv_client_free(run->client);
	kv_auth_secret_release(&run->secret);
#endif
	free(run);
	return status;
}
