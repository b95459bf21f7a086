/*
 * config.c - kvfsd's flags and config file (see config.h).
 *
 * One table of keys serves both the file (`key = value` lines) and the
 * command line (`--key value`); each value goes through one setter, and the
 * result is completed and checked as a whole at the end (finish()). Errors
 * are one line naming the key and, for the file, file:line.
 * Reference: man/kvfsd.8, man/kvfs.conf.5.
 */
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "lsm/lsm.h"
#include "proto/auth.h"
#include "ring/ring.h"
#include "util/error.h"
#include "util/log.h"

enum key_id {
	K_CONFIG,
	K_NODE_ID,
	K_LISTEN,
	K_DATA,
	K_MEMBERS,
	K_CLUSTER_NAME,
	K_SECRET_FILE,
	K_SYNC,
	K_N,
	K_R,
	K_W,
	K_TIMEOUT,
	K_FORWARD_TIMEOUT,
	K_CONNECT_TIMEOUT,
	K_IDLE_TIMEOUT,
	K_MEMTABLE_MB,
	K_BACKGROUND_MBPS,
	K_CACHE_MB,
	K_MAX_VALUE,
	K_MAX_QUEUE_MB,
	K_LOG,
	K_LOG_LEVEL,
	K_COUNT
};

static const char *const key_names[K_COUNT] = {
	[K_CONFIG] = "config",
	[K_NODE_ID] = "node-id",
	[K_LISTEN] = "listen",
	[K_DATA] = "data",
	[K_MEMBERS] = "members",
	[K_CLUSTER_NAME] = "cluster-name",
	[K_SECRET_FILE] = "secret-file",
	[K_SYNC] = "sync",
	[K_N] = "n",
	[K_R] = "r",
	[K_W] = "w",
	[K_TIMEOUT] = "timeout",
	[K_FORWARD_TIMEOUT] = "forward-timeout",
	[K_CONNECT_TIMEOUT] = "connect-timeout",
	[K_IDLE_TIMEOUT] = "idle-timeout",
	[K_MEMTABLE_MB] = "memtable-mb",
	[K_BACKGROUND_MBPS] = "background-mbps",
	[K_CACHE_MB] = "cache-mb",
	[K_MAX_VALUE] = "max-value",
	[K_MAX_QUEUE_MB] = "max-queue-mb",
	[K_LOG] = "log",
	[K_LOG_LEVEL] = "log-level",
};

/* Bounds of the numeric keys (man/kvfs.conf.5 lists them). */
#define TIMEOUT_MS_MAX 3600000u           /* one hour */
#define MEMTABLE_MB_MAX 4096u
#define BACKGROUND_MBPS_MAX 65536u
#define CACHE_MB_MAX 65536u
#define QUEUE_MB_MAX 65536u
#define MAX_VALUE_MAX ((uint64_t)4 << 20) /* frames hold 64 siblings of 4 MiB */
#define WEIGHT_MAX 1000.0

/* Where a key's value came from: a file line, or a flag (file == NULL). */
struct origin {
	bool set;
	const char *file;
	unsigned line;
};

/* The state of one parse: the options being filled and where each key came from. */
struct ctx {
	struct kv_server_options *o;
	struct origin from[K_COUNT];
	const char *file; /* the file being read, or NULL for flags */
	unsigned line;
	char secret_path[4096];
	char *err;
	size_t errlen;
};

static void ctx_init(struct ctx *c, struct kv_server_options *o, char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->o = o;
	c->err = err;
	c->errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static int fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return KV_EINVAL;
}

/* Copies at most 48 bytes of @s into @dst for a message, '?' for unprintables. */
static const char *shown(char *dst, size_t len, const char *s)
{
	size_t i = 0;

	for (; s[i] && i + 4 < len && i < 48; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] && i + 4 <= len) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
	return dst;
}

/*
 * Names key @k as the user wrote it, for messages: "'n' at kvfs.conf:4" for
 * the value being read from a file, "--n" for a flag.
 */
static const char *where_now(const struct ctx *c, enum key_id k, char *dst, size_t len)
{
	if (c->file)
		snprintf(dst, len, "'%s' at %s:%u", key_names[k], c->file, c->line);
	else
		snprintf(dst, len, "--%s", key_names[k]);
	return dst;
}

/* Where @k's final value came from, for whole-config checks: "(at f:3)", "(--n)", "". */
static const char *came_from(const struct ctx *c, enum key_id k, char *dst, size_t len)
{
	const struct origin *f = &c->from[k];

	if (!f->set)
		snprintf(dst, len, "(default)");
	else if (f->file)
		snprintf(dst, len, "(at %s:%u)", f->file, f->line);
	else
		snprintf(dst, len, "(--%s)", key_names[k]);
	return dst;
}

static int bad_value(struct ctx *c, enum key_id k, const char *value, const char *expected)
{
	char w[4400], v[64];

	return fail(c, "bad value '%s' for %s: expected %s", shown(v, sizeof v, value),
		    where_now(c, k, w, sizeof w), expected);
}

/* Parses a decimal integer: digits only, no sign, no blanks. 0 or KV_EINVAL. */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return KV_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return KV_EINVAL;
	*out = v;
	return 0;
}

static int set_uint(struct ctx *c, enum key_id k, const char *value, uint64_t lo, uint64_t hi,
		    uint64_t *out)
{
	char expected[96];
	uint64_t v;

	if (parse_u64(value, &v) || v < lo || v > hi) {
		snprintf(expected, sizeof expected, "an integer from %llu to %llu",
			 (unsigned long long)lo, (unsigned long long)hi);
		return bad_value(c, k, value, expected);
	}
	*out = v;
	return 0;
}

/* A byte count with an optional K or M suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char digits[32];
	size_t len = strlen(s);
	uint64_t mult = 1, v;

	if (len == 0 || len >= sizeof digits)
		return KV_EINVAL;
	if (s[len - 1] == 'K' || s[len - 1] == 'k')
		mult = 1024;
	else if (s[len - 1] == 'M' || s[len - 1] == 'm')
		mult = 1024 * 1024;
	if (mult > 1)
		len--;
	memcpy(digits, s, len);
	digits[len] = '\0';
	if (parse_u64(digits, &v) || v > UINT64_MAX / mult)
		return KV_EINVAL;
	*out = v * mult;
	return 0;
}

/* An IPv4 address in dotted-quad form (stored canonical) and a port. */
static int parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
			  uint16_t min_port)
{
	char buf[64];
	const char *colon = strrchr(s, ':');
	struct in_addr addr;
	uint64_t p;

	if (!colon || (size_t)(colon - s) >= sizeof buf || colon == s)
		return KV_EINVAL;
	memcpy(buf, s, (size_t)(colon - s));
	buf[colon - s] = '\0';
	if (inet_pton(AF_INET, buf, &addr) != 1)
		return KV_EINVAL;
	if (parse_u64(colon + 1, &p) || p < min_port || p > 65535)
		return KV_EINVAL;
	if (!inet_ntop(AF_INET, &addr, host, (socklen_t)hostlen))
		return KV_EINVAL;
	*port = (uint16_t)p;
	return 0;
}

static bool is_loopback(const char *host)
{
	struct in_addr addr;

	return inet_pton(AF_INET, host, &addr) == 1 && (ntohl(addr.s_addr) >> 24) == 127;
}

static bool is_wildcard(const char *host)
{
	return strcmp(host, "0.0.0.0") == 0;
}

/* Copies @value into @dst of @len bytes, refusing empty or too long values. */
static int set_string(struct ctx *c, enum key_id k, const char *value, char *dst, size_t len)
{
	char expected[64];
	size_t n = strlen(value);

	if (n == 0 || n >= len) {
		snprintf(expected, sizeof expected, "1 to %zu bytes", len - 1);
		return bad_value(c, k, value, expected);
	}
	memcpy(dst, value, n + 1);
	return 0;
}

/* One ID=HOST:PORT[/WEIGHT] item of --members. */
static int parse_member(const char *item, struct kv_server_member *m)
{
	char buf[160];
	char *eq, *slash, *end;
	uint64_t id;
	size_t len = strlen(item);

	if (len == 0 || len >= sizeof buf)
		return KV_EINVAL;
	memcpy(buf, item, len + 1);
	eq = strchr(buf, '=');
	if (!eq)
		return KV_EINVAL;
	*eq = '\0';
	if (parse_u64(buf, &id) || id < 1 || id > UINT32_MAX)
		return KV_EINVAL;
	m->id = (uint32_t)id;
	m->weight = 1.0;
	slash = strchr(eq + 1, '/');
	if (slash) {
		*slash = '\0';
		if (slash[1] < '0' || slash[1] > '9')
			return KV_EINVAL;
		errno = 0;
		m->weight = strtod(slash + 1, &end);
		if (errno || *end || !isfinite(m->weight) || m->weight <= 0 ||
		    m->weight > WEIGHT_MAX)
			return KV_EINVAL;
	}
	return parse_hostport(eq + 1, m->host, sizeof m->host, &m->port, 1);
}

static int set_members(struct ctx *c, const char *value)
{
	struct kv_server_options *o = c->o;
	char w[4400], v[64];
	const char *p = value;
	size_t count = 0;

	while (*p) {
		char item[160];
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		struct kv_server_member *m;

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len >= sizeof item)
			len = sizeof item - 1;
		memcpy(item, p, len);
		item[len] = '\0';
		if (count == KV_SERVER_MAX_MEMBERS)
			return fail(c, "too many members in %s: at most %d",
				    where_now(c, K_MEMBERS, w, sizeof w), KV_SERVER_MAX_MEMBERS);
		m = &o->members[count];
		if (parse_member(item, m))
			return fail(c, "bad member '%s' in %s: expected ID=HOST:PORT[/WEIGHT] "
				       "(numeric IPv4, id >= 1, weight in (0, 1000])",
				    shown(v, sizeof v, item), where_now(c, K_MEMBERS, w, sizeof w));
		for (size_t i = 0; i < count; i++) {
			if (o->members[i].id == m->id)
				return fail(c, "duplicate member id %u in %s", m->id,
					    where_now(c, K_MEMBERS, w, sizeof w));
			if (o->members[i].port == m->port && !strcmp(o->members[i].host, m->host))
				return fail(c, "members %u and %u share the address %s:%u in %s",
					    o->members[i].id, m->id, m->host, m->port,
					    where_now(c, K_MEMBERS, w, sizeof w));
		}
		if (is_wildcard(m->host))
			return fail(c, "member %u has the wildcard address 0.0.0.0 in %s: "
				       "give the address peers reach it at",
				    m->id, where_now(c, K_MEMBERS, w, sizeof w));
		count++;
		if (!comma)
			break;
		p = comma + 1;
		if (!*p)
			return fail(c, "bad member '' in %s: expected ID=HOST:PORT[/WEIGHT]",
				    where_now(c, K_MEMBERS, w, sizeof w));
	}
	if (count == 0)
		return bad_value(c, K_MEMBERS, value, "ID=HOST:PORT[/WEIGHT],...");
	o->n_members = count;
	return 0;
}

static int set_cluster_name(struct ctx *c, const char *value)
{
	size_t n = strlen(value);

	if (n == 0 || n >= sizeof c->o->cluster || n > KV_MSG_NAME_ID_MAX)
		return bad_value(c, K_CLUSTER_NAME, value, "1 to 64 characters of [A-Za-z0-9._-]");
	for (size_t i = 0; i < n; i++) {
		char ch = value[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return bad_value(c, K_CLUSTER_NAME, value,
					 "1 to 64 characters of [A-Za-z0-9._-]");
	}
	memcpy(c->o->cluster, value, n + 1);
	return 0;
}

static int set_log_level(struct ctx *c, const char *value)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (!strcmp(value, names[i])) {
			c->o->log_level = i; /* enum kv_log_level order */
			return 0;
		}
	}
	return bad_value(c, K_LOG_LEVEL, value, "error, warn, info or debug");
}

/* Sets key @k to @value (trimmed, non-empty) and records where it came from. */
static int set_key(struct ctx *c, enum key_id k, const char *value)
{
	struct kv_server_options *o = c->o;
	uint64_t v = 0;
	int rc = 0;

	switch (k) {
	case K_CONFIG:
		/* Flags handle --config before anything else; a file cannot name one. */
		return fail(c, "'config' cannot be set in a config file (at %s:%u)",
			    c->file ? c->file : "?", c->line);
	case K_NODE_ID:
		rc = set_uint(c, k, value, 1, UINT32_MAX, &v);
		o->node_id = (uint32_t)v;
		break;
	case K_LISTEN:
		if (parse_hostport(value, o->listen_host, sizeof o->listen_host,
				   &o->listen_port, 0))
			rc = bad_value(c, k, value, "HOST:PORT with a numeric IPv4 HOST");
		break;
	case K_DATA:
		rc = set_string(c, k, value, o->data_dir, sizeof o->data_dir);
		break;
	case K_MEMBERS:
		rc = set_members(c, value);
		break;
	case K_CLUSTER_NAME:
		rc = set_cluster_name(c, value);
		break;
	case K_SECRET_FILE:
		rc = set_string(c, k, value, c->secret_path, sizeof c->secret_path);
		break;
	case K_SYNC: {
		enum kv_sync_mode mode;
		unsigned batch_ms;

		if (strlen(value) >= sizeof o->sync || kv_lsm_parse_sync(value, &mode, &batch_ms))
			rc = bad_value(c, k, value, "always, batch:MS or none");
		else
			memcpy(o->sync, value, strlen(value) + 1);
		break;
	}
	case K_N:
		rc = set_uint(c, k, value, 1, KV_RING_MAX_REPLICAS, &v);
		o->n = (uint32_t)v;
		break;
	case K_R:
		rc = set_uint(c, k, value, 1, KV_RING_MAX_REPLICAS, &v);
		o->r = (uint32_t)v;
		break;
	case K_W:
		rc = set_uint(c, k, value, 1, KV_RING_MAX_REPLICAS, &v);
		o->w = (uint32_t)v;
		break;
	case K_TIMEOUT:
		rc = set_uint(c, k, value, 1, TIMEOUT_MS_MAX, &v);
		o->timeout_ms = (uint32_t)v;
		break;
	case K_FORWARD_TIMEOUT:
		rc = set_uint(c, k, value, 1, TIMEOUT_MS_MAX, &v);
		o->forward_timeout_ms = (uint32_t)v;
		break;
	case K_CONNECT_TIMEOUT:
		rc = set_uint(c, k, value, 1, TIMEOUT_MS_MAX, &v);
		o->connect_timeout_ms = (uint32_t)v;
		break;
	case K_IDLE_TIMEOUT:
		rc = set_uint(c, k, value, 1, TIMEOUT_MS_MAX, &v);
		o->idle_timeout_ms = (uint32_t)v;
		break;
	case K_MEMTABLE_MB:
		rc = set_uint(c, k, value, 1, MEMTABLE_MB_MAX, &v);
		o->memtable_bytes = (size_t)v << 20;
		break;
	case K_BACKGROUND_MBPS:
		rc = set_uint(c, k, value, 0, BACKGROUND_MBPS_MAX, &v);
		o->background_bytes_per_sec = v << 20;
		break;
	case K_CACHE_MB:
		rc = set_uint(c, k, value, 0, CACHE_MB_MAX, &v);
		o->cache_bytes = (size_t)v << 20;
		break;
	case K_MAX_QUEUE_MB:
		rc = set_uint(c, k, value, 1, QUEUE_MB_MAX, &v);
		o->max_conn_queue_bytes = (size_t)v << 20;
		break;
	case K_MAX_VALUE:
		if (parse_size(value, &v) || v < 1 || v > MAX_VALUE_MAX)
			rc = bad_value(c, k, value, "a size from 1 to 4M (bytes, or with K or M)");
		else
			o->max_value = (size_t)v;
		break;
	case K_LOG:
		rc = set_string(c, k, value, o->log_file, sizeof o->log_file);
		break;
	case K_LOG_LEVEL:
		rc = set_log_level(c, value);
		break;
	case K_COUNT:
		rc = KV_EINVAL;
		break;
	}
	if (rc == 0) {
		c->from[k].set = true;
		c->from[k].file = c->file;
		c->from[k].line = c->line;
	}
	return rc;
}

static int lookup(const char *name)
{
	for (int k = 0; k < K_COUNT; k++)
		if (!strcmp(name, key_names[k]))
			return k;
	return -1;
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* One line of a config file (NUL-terminated, without its newline). */
static int parse_line(struct ctx *c, char *line, bool seen[K_COUNT], unsigned first_line[K_COUNT])
{
	char v[64];
	char *s = trim(line), *eq, *key, *value, *hash;
	int k;

	if (*s == '\0' || *s == '#')
		return 0;
	eq = strchr(s, '=');
	if (!eq)
		return fail(c, "expected 'key = value' at %s:%u, found '%s'", c->file, c->line,
			    shown(v, sizeof v, s));
	*eq = '\0';
	key = trim(s);
	value = eq + 1;
	/* A '#' after a blank starts a comment (man/kvfs.conf.5). */
	for (hash = value; (hash = strchr(hash, '#')) != NULL; hash++) {
		if (hash == value || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = '\0';
			break;
		}
	}
	value = trim(value);
	if (*key == '\0')
		return fail(c, "expected 'key = value' at %s:%u, found no key", c->file, c->line);
	k = lookup(key);
	if (k < 0)
		return fail(c, "unknown key '%s' at %s:%u", shown(v, sizeof v, key), c->file,
			    c->line);
	if (seen[k])
		return fail(c, "duplicate key '%s' at %s:%u (first set at line %u)", key_names[k],
			    c->file, c->line, first_line[k]);
	if (*value == '\0')
		return fail(c, "missing value for '%s' at %s:%u", key_names[k], c->file, c->line);
	seen[k] = true;
	first_line[k] = c->line;
	return set_key(c, (enum key_id)k, value);
}

/* Reads the whole file (at most KV_CONFIG_FILE_MAX bytes) into a malloc'd buffer. */
static int read_file(struct ctx *c, const char *path, char **out, size_t *outlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, rc = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		fail(c, "cannot read config file %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : KV_EINVAL;
		fail(c, "cannot read config file %s: %s", path,
		     S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
		goto out;
	}
	if ((uint64_t)st.st_size > KV_CONFIG_FILE_MAX) {
		rc = KV_ETOOBIG;
		fail(c, "config file %s is larger than %zu bytes", path, KV_CONFIG_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		fail(c, "cannot read config file %s: out of memory", path);
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + len, (size_t)st.st_size - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			fail(c, "cannot read config file %s: %s", path, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int load_file(struct ctx *c, const char *path)
{
	bool seen[K_COUNT] = { false };
	unsigned first_line[K_COUNT] = { 0 };
	char *buf = NULL, *p;
	size_t len = 0;
	int rc;

	rc = read_file(c, path, &buf, &len);
	if (rc)
		goto out;
	c->file = path;
	c->line = 0;
	p = buf;
	while (p < buf + len) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		char *end = nl ? nl : buf + len;

		c->line++;
		if ((size_t)(end - p) > KV_CONFIG_LINE_MAX) {
			rc = fail(c, "line %s:%u is longer than %d bytes", path, c->line,
				  KV_CONFIG_LINE_MAX);
			goto out;
		}
		if (memchr(p, '\0', (size_t)(end - p))) {
			rc = fail(c, "NUL byte at %s:%u: not a text file", path, c->line);
			goto out;
		}
		*end = '\0';
		rc = parse_line(c, p, seen, first_line);
		if (rc)
			goto out;
		p = end + 1;
	}
out:
	c->file = NULL;
	c->line = 0;
	free(buf);
	return rc;
}

static int load_secret(struct ctx *c)
{
	char w[4400];
	int rc = kv_auth_secret_load(c->secret_path, &c->o->secret);

	came_from(c, K_SECRET_FILE, w, sizeof w);
	if (rc == KV_EINVAL)
		return fail(c, "secret file %s is empty %s", c->secret_path, w);
	if (rc == KV_ETOOBIG)
		return fail(c, "secret file %s is larger than %d bytes %s", c->secret_path,
			    KV_AUTH_SECRET_MAX, w);
	if (rc < 0) {
		fail(c, "cannot read secret file %s: %s %s", c->secret_path, kv_strerror(rc), w);
		return rc;
	}
	return 0;
}

/* Fills what the options imply and checks them as a whole (config.h). */
static int finish(struct ctx *c)
{
	struct kv_server_options *o = c->o;
	const struct kv_server_member *self = NULL;
	char w[4400];
	int rc;

	if (!c->from[K_NODE_ID].set)
		return fail(c, "missing --node-id (this node's id, one of --members)");
	if (!c->from[K_DATA].set)
		return fail(c, "missing --data (the node's data directory)");
	if (c->secret_path[0]) {
		rc = load_secret(c);
		if (rc)
			return rc;
	}

	if (!c->from[K_MEMBERS].set) {
		/* A one-member cluster of itself at its listen address. */
		memset(&o->members[0], 0, sizeof o->members[0]);
		o->members[0].id = o->node_id;
		memcpy(o->members[0].host, o->listen_host, sizeof o->members[0].host);
		o->members[0].port = o->listen_port;
		o->members[0].weight = 1.0;
		o->n_members = 1;
		self = &o->members[0];
	} else {
		for (size_t i = 0; i < o->n_members; i++)
			if (o->members[i].id == o->node_id)
				self = &o->members[i];
		if (!self) {
			char ids[128];
			size_t used = 0, i;

			for (i = 0; i < o->n_members && used + 20 < sizeof ids; i++)
				used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%u",
							 i ? ", " : "", o->members[i].id);
			if (i < o->n_members)
				snprintf(ids + used, sizeof ids - used, ", ...");
			return fail(c, "node-id %u %s is not among the members (%s)", o->node_id,
				    came_from(c, K_NODE_ID, w, sizeof w), ids);
		}
		if (!c->from[K_LISTEN].set) {
			memcpy(o->listen_host, self->host, sizeof o->listen_host);
			o->listen_port = self->port;
		} else if (o->listen_port != self->port ||
			   (strcmp(o->listen_host, self->host) && !is_wildcard(o->listen_host))) {
			return fail(c, "listen %s:%u %s is not node %u's member address %s:%u",
				    o->listen_host, o->listen_port,
				    came_from(c, K_LISTEN, w, sizeof w), self->id, self->host,
				    self->port);
		}
	}

	/* N is cluster-wide; explicit values are never capped (DESIGN §3). */
	if (c->from[K_N].set && o->n > o->n_members)
		return fail(c, "n = %u %s but the cluster has only %zu member%s%s", o->n,
			    came_from(c, K_N, w, sizeof w), o->n_members,
			    o->n_members == 1 ? "" : "s",
			    c->from[K_MEMBERS].set ? "" : " (no --members given)");
	if (!c->from[K_N].set && o->n > o->n_members)
		o->n = (uint32_t)o->n_members;
	if (o->n < 1 || o->n > KV_RING_MAX_REPLICAS)
		return fail(c, "n = %u is outside 1..%d", o->n, KV_RING_MAX_REPLICAS);
	if (!c->from[K_R].set && o->r > o->n)
		o->r = o->n;
	if (!c->from[K_W].set && o->w > o->n)
		o->w = o->n;
	if (o->r < 1 || o->r > o->n)
		return fail(c, "r = %u %s must be from 1 to n = %u", o->r,
			    came_from(c, K_R, w, sizeof w), o->n);
	if (o->w < 1 || o->w > o->n)
		return fail(c, "w = %u %s must be from 1 to n = %u", o->w,
			    came_from(c, K_W, w, sizeof w), o->n);

	/* DESIGN §9 "Security": only loopback may go without the cluster secret. */
	if (o->secret.len == 0) {
		if (!is_loopback(o->listen_host))
			return fail(c, "refusing to listen on %s without --secret-file",
				    o->listen_host);
		for (size_t i = 0; i < o->n_members; i++)
			if (!is_loopback(o->members[i].host))
				return fail(c, "refusing member %u at %s:%u without --secret-file "
					       "(only loopback peers may go without a cluster secret)",
					    o->members[i].id, o->members[i].host, o->members[i].port);
	}
	return 0;
}

/* Is @arg "--KEY" or "--KEY=..." for a key taking a value? Sets *k and *inline_value. */
static bool flag_key(const char *arg, int *k, const char **inline_value)
{
	char name[64];
	const char *eq;
	size_t len;

	if (strncmp(arg, "--", 2) != 0)
		return false;
	arg += 2;
	eq = strchr(arg, '=');
	len = eq ? (size_t)(eq - arg) : strlen(arg);
	if (len == 0 || len >= sizeof name)
		return false;
	memcpy(name, arg, len);
	name[len] = '\0';
	*k = lookup(name);
	*inline_value = eq ? eq + 1 : NULL;
	return *k >= 0;
}

int kv_config_parse_args(struct kv_server_options *o, int argc, char **argv, char *err,
			 size_t errlen)
{
	struct ctx *c = malloc(sizeof *c);
	const char *config_path = NULL;
	char v[64];
	int rc = 0, k;

	if (!c) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctx_init(c, o, err, errlen);

	/* First pass: --help, --version, --config; and every flag well-formed. */
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			rc = KV_CONFIG_HELP;
			goto out;
		}
		if (!strcmp(arg, "--version")) {
			rc = KV_CONFIG_VERSION;
			goto out;
		}
		if (!flag_key(arg, &k, &value)) {
			if (!strncmp(arg, "--", 2) || arg[0] == '-')
				rc = fail(c, "unknown option '%s' (see kvfsd --help)",
					  shown(v, sizeof v, arg));
			else
				rc = fail(c, "unexpected argument '%s' (see kvfsd --help)",
					  shown(v, sizeof v, arg));
			goto out;
		}
		if (!value) {
			if (i + 1 >= argc) {
				rc = fail(c, "missing value for --%s", key_names[k]);
				goto out;
			}
			value = argv[++i];
		}
		if (k == K_CONFIG) {
			if (config_path) {
				rc = fail(c, "--config given twice");
				goto out;
			}
			if (!*value) {
				rc = fail(c, "missing value for --config");
				goto out;
			}
			config_path = value;
		}
	}
	if (config_path) {
		rc = load_file(c, config_path);
		if (rc)
			goto out;
	}
	/* Second pass: flags override the file. */
	for (int i = 1; i < argc; i++) {
		const char *value = NULL;

		flag_key(argv[i], &k, &value);
		if (!value)
			value = argv[++i];
		if (k == K_CONFIG)
			continue;
		if (!*value) {
			rc = fail(c, "missing value for --%s", key_names[k]);
			goto out;
		}
		rc = set_key(c, (enum key_id)k, value);
		if (rc)
			goto out;
	}
	rc = finish(c);
out:
	if (rc < 0)
		kv_auth_secret_release(&o->secret);
	free(c);
	return rc;
}

int kv_config_load_file(struct kv_server_options *o, const char *path, char *err, size_t errlen)
{
	struct ctx *c = malloc(sizeof *c);
	int rc;

	if (!c) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctx_init(c, o, err, errlen);
	rc = load_file(c, path);
	if (rc == 0)
		rc = finish(c);
	if (rc < 0)
		kv_auth_secret_release(&o->secret);
	free(c);
	return rc;
}

const char *kv_config_usage(void)
{
	return "usage: kvfsd --node-id ID --data DIR [options]\n"
	       "       kvfsd --config FILE [options]\n"
	       "\n"
	       "Every option is also a key of the config file (kvfs.conf(5));\n"
	       "flags override the file. See kvfsd(8).\n"
	       "\n"
	       "  --config FILE            read FILE first (key = value lines)\n"
	       "  --node-id ID             this node's id (>= 1), one of --members\n"
	       "  --listen HOST:PORT       numeric IPv4 (default: the node's member\n"
	       "                           address, else 127.0.0.1:7400)\n"
	       "  --data DIR               data directory (required)\n"
	       "  --members ID=HOST:PORT[/WEIGHT],...\n"
	       "                           the static member list (default: this node alone)\n"
	       "  --cluster-name NAME      default kvfs\n"
	       "  --secret-file FILE       cluster secret; required off loopback\n"
	       "  --sync always|batch:MS|none\n"
	       "                           when a write is acknowledged (default always)\n"
	       "  --n N --r R --w W        replicas per key, read and write quorums\n"
	       "                           (default 3, 2, 2, capped to the members)\n"
	       "  --timeout MS             request deadline (default 5000)\n"
	       "  --forward-timeout MS     default 1000\n"
	       "  --connect-timeout MS     default 1000\n"
	       "  --idle-timeout MS        default 10000\n"
	       "  --memtable-mb MB         default 16\n"
	       "  --background-mbps MB     pace of flushes and compactions, MiB/s,\n"
	       "                           0 = unpaced (default 0)\n"
	       "  --cache-mb MB            block cache, 0 = none (default 32)\n"
	       "  --max-value BYTES        largest value, K/M suffixes, at most 4M (default 4M)\n"
	       "  --max-queue-mb MB        unsent replies per connection (default 64)\n"
	       "  --log FILE               log file (default stderr)\n"
	       "  --log-level LEVEL        error|warn|info|debug\n"
	       "  --help, --version\n";
}
