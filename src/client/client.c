/*
 * client.c - the kvfs client library: node list, connection pools,
 * fail-over and deadlines, and the client operations of doc/protocol.md §5.
 * API and contracts: client.h; connections and handshake: conn.c.
 */
#include "client/client.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <sodium.h>

#include "client/conn.h"
#include "proto/chunkhash.h"
#include "proto/msg.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/error.h"
#include "util/time.h"

/* How long a node that could not be reached is tried after the others. */
#define NODE_DOWN_NS ((uint64_t)1000 * 1000000)

/*
 * Coordinator hints (doc/protocol.md §5.3 "Which node to send a put to"):
 * slots of (high bits of the placement key's hash | node index + 1), so a
 * put goes straight to the node that coordinated the last put of its
 * placement key instead of being forwarded there (two peer messages and a
 * note less). Only a hint: any node takes any put.
 */
#define HINT_SLOTS 4096u
#define HINT_IDX_MASK ((uint64_t)0xffff)

static _Thread_local char tls_errmsg[KV_CLIENT_ERRMSG_MAX];

struct client_node {
	char name[300];                 /* "host:port" as configured; immutable */
	struct sockaddr_storage addr;   /* immutable after kv_client_new() */
	socklen_t addrlen;
	pthread_mutex_t lock;           /* guards everything below */
	pthread_cond_t freed;           /* a connection became idle or was closed */
	struct kv_conn *idle;           /* idle, authenticated connections */
	unsigned nopen;                 /* idle + lent + being opened */
	uint64_t down_until_ns;         /* unreachable lately: try it last */
	_Atomic uint32_t node_id;       /* from the latest handshake; 0 = unknown */
};

struct kv_client {
	struct client_node *nodes;      /* immutable array */
	size_t nnodes;
	char cluster[KV_MSG_NAME_ID_MAX + 1];
	struct kv_auth_secret secret;
	uint32_t timeout_ms, connect_timeout_ms;
	uint8_t r, w;
	unsigned conns_per_node;
	struct kv_msg_limits limits;
	atomic_uint rr;                 /* round robin for node -1 */
	pthread_mutex_t info_lock;      /* guards n, r_def, w_def, have_info */
	bool have_info;
	uint8_t n, r_def, w_def;
	_Atomic uint64_t hint[HINT_SLOTS]; /* coordinator hints, lock-free */
};

static void set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void set_errmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tls_errmsg, sizeof(tls_errmsg), fmt, ap);
	va_end(ap);
}

const char *kv_client_errmsg(const struct kv_client *c)
{
	(void)c;
	return tls_errmsg;
}

void kv_client_call_init(struct kv_client_call *call)
{
	struct kv_client_call d = KV_CLIENT_CALL_INIT;
	*call = d;
}

void kv_client_request_id(uint8_t id[KV_REQUEST_ID_LEN])
{
	uint8_t nonce[KV_MSG_NONCE_LEN];
	kv_auth_nonce(nonce);
	memcpy(id, nonce, KV_REQUEST_ID_LEN);
}

/* ---- configuration ---- */

static bool valid_name_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > KV_MSG_NAME_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* Parses one "host[:port]" or "[v6]:port" of @len bytes and resolves it. */
static int parse_node(const char *s, size_t len, struct client_node *nd)
{
	char host[256], port[16];
	const char *colon;
	if (len == 0 || len >= sizeof(nd->name)) {
		set_errmsg("bad node address '%.*s'", (int)len, s);
		return KV_EINVAL;
	}
	memcpy(nd->name, s, len);
	nd->name[len] = '\0';
	const char *hs = nd->name, *he;
	if (hs[0] == '[') {
		he = strchr(hs, ']');
		if (!he) {
			set_errmsg("bad node address '%s': no ']'", nd->name);
			return KV_EINVAL;
		}
		hs++;
		colon = he[1] == ':' ? he + 1 : NULL;
		if (he[1] != '\0' && he[1] != ':') {
			set_errmsg("bad node address '%s'", nd->name);
			return KV_EINVAL;
		}
	} else {
		colon = strrchr(hs, ':');
		he = colon ? colon : hs + strlen(hs);
	}
	size_t hlen = (size_t)(he - hs);
	if (hlen == 0 || hlen >= sizeof(host)) {
		set_errmsg("bad node address '%s': no host", nd->name);
		return KV_EINVAL;
	}
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	if (colon) {
		const char *ps = colon + 1;
		char *end = NULL;
		errno = 0;
		unsigned long pv = strtoul(ps, &end, 10);
		if (*ps == '\0' || *end != '\0' || errno || pv == 0 || pv > 65535) {
			set_errmsg("bad node address '%s': bad port", nd->name);
			return KV_EINVAL;
		}
		snprintf(port, sizeof(port), "%lu", pv);
	} else {
		snprintf(port, sizeof(port), "%d", KV_CLIENT_DEFAULT_PORT);
	}
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0 || !res) {
		set_errmsg("cannot resolve node '%s': %s", nd->name, gai_strerror(g));
		if (res)
			freeaddrinfo(res);
		return KV_EINVAL;
	}
	memcpy(&nd->addr, res->ai_addr, res->ai_addrlen);
	nd->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int kv_client_new(const struct kv_client_config *cfg, struct kv_client **out)
{
	struct kv_client *c = NULL;
	size_t count = 0;
	int rc;
	*out = NULL;
	tls_errmsg[0] = '\0';
	if (kv_auth_init() < 0) {
		set_errmsg("cannot initialize libsodium");
		return -EIO;
	}
	if (!cfg || !cfg->nodes || !cfg->nodes[0]) {
		set_errmsg("no nodes given");
		return KV_EINVAL;
	}
	const char *cluster = cfg->cluster ? cfg->cluster : KV_CLIENT_DEFAULT_CLUSTER;
	if (!valid_name_id(cluster)) {
		set_errmsg("bad cluster name '%s': 1-64 bytes of [A-Za-z0-9._-]", cluster);
		return KV_EINVAL;
	}
	if (cfg->r > KV_MSG_QUORUM_MAX || cfg->w > KV_MSG_QUORUM_MAX) {
		set_errmsg("r and w must be 0..%d", KV_MSG_QUORUM_MAX);
		return KV_EINVAL;
	}
	for (const char *p = cfg->nodes; *p; p++)
		count += *p == ',';
	count++;
	if (count > KV_CLIENT_MAX_NODES) {
		set_errmsg("too many nodes (at most %d)", KV_CLIENT_MAX_NODES);
		return KV_EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&c->info_lock, NULL);
	c->nodes = calloc(count, sizeof(*c->nodes));
	if (!c->nodes) {
		rc = -ENOMEM;
		goto out;
	}
	const char *s = cfg->nodes;
	for (size_t i = 0; i < count; i++) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		pthread_mutex_init(&c->nodes[i].lock, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->nodes[i].freed, &ca);
		pthread_condattr_destroy(&ca);
		c->nnodes = i + 1;
		rc = parse_node(s, len, &c->nodes[i]);
		if (rc < 0)
			goto out;
		s = e ? e + 1 : s + len;
	}
	snprintf(c->cluster, sizeof(c->cluster), "%s", cluster);
	if (cfg->secret) {
		rc = kv_auth_secret_set(&c->secret,
					kv_slice_make(cfg->secret->bytes, cfg->secret->len));
		if (rc < 0) {
			set_errmsg("bad secret: %s", kv_strerror(rc));
			goto out;
		}
	}
	c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : KV_CLIENT_DEFAULT_TIMEOUT_MS;
	c->connect_timeout_ms =
		cfg->connect_timeout_ms ? cfg->connect_timeout_ms : KV_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
	c->r = cfg->r;
	c->w = cfg->w;
	c->conns_per_node = cfg->conns_per_node ? cfg->conns_per_node : KV_CLIENT_DEFAULT_CONNS_PER_NODE;
	kv_msg_limits_default(&c->limits);
	if (cfg->max_value)
		c->limits.max_value = cfg->max_value;
	rc = 0;
out:
	if (rc < 0) {
		if (rc == -ENOMEM)
			set_errmsg("out of memory");
		kv_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void kv_client_free(struct kv_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nnodes; i++) {
		struct client_node *nd = &c->nodes[i];
		while (nd->idle) {
			struct kv_conn *k = nd->idle;
			nd->idle = k->next;
			kv_conn_close(k);
		}
		pthread_mutex_destroy(&nd->lock);
		pthread_cond_destroy(&nd->freed);
	}
	free(c->nodes);
	pthread_mutex_destroy(&c->info_lock);
	kv_auth_secret_release(&c->secret);
	free(c);
}

size_t kv_client_node_count(const struct kv_client *c)
{
	return c->nnodes;
}

const char *kv_client_node_name(const struct kv_client *c, size_t i)
{
	return i < c->nnodes ? c->nodes[i].name : NULL;
}

bool kv_client_quorum(struct kv_client *c, uint8_t *n, uint8_t *r, uint8_t *w)
{
	pthread_mutex_lock(&c->info_lock);
	bool have = c->have_info;
	if (have) {
		*n = c->n;
		*r = c->r_def;
		*w = c->w_def;
	}
	pthread_mutex_unlock(&c->info_lock);
	return have;
}

/* ---- the pool ---- */

/*
 * Borrows a connection of @nd: an idle one (*conn set), or the right to open
 * one (*conn NULL; the slot is counted in nopen, give it back with
 * pool_give(c, nd, NULL) when the open fails). With conns_per_node open and
 * none idle, waits until one is given back or the deadline passes
 * (KV_ETIMEDOUT). Returns 0 or KV_ETIMEDOUT.
 */
static int pool_take(struct kv_client *c, struct client_node *nd, uint64_t deadline_ns,
		     struct kv_conn **conn)
{
	int rc = 0;
	*conn = NULL;
	pthread_mutex_lock(&nd->lock);
	for (;;) {
		while (nd->idle) {
			struct kv_conn *k = nd->idle;
			nd->idle = k->next;
			k->next = NULL;
			if (kv_conn_idle_ok(k)) {
				*conn = k;
				goto out;
			}
			kv_conn_close(k); /* closed by the node while idle */
			nd->nopen--;
		}
		if (nd->nopen < c->conns_per_node) {
			nd->nopen++;
			goto out;
		}
		struct timespec ts = { (time_t)(deadline_ns / 1000000000u),
				       (long)(deadline_ns % 1000000000u) };
		int w = pthread_cond_timedwait(&nd->freed, &nd->lock, &ts);
		if (w == ETIMEDOUT && kv_now_ns() >= deadline_ns) {
			rc = KV_ETIMEDOUT;
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&nd->lock);
	return rc;
}

/* Gives back a healthy connection (@k) or the slot of a closed one (NULL). */
static void pool_give(struct kv_client *c, struct client_node *nd, struct kv_conn *k)
{
	(void)c;
	pthread_mutex_lock(&nd->lock);
	if (k) {
		k->next = nd->idle;
		nd->idle = k;
	} else {
		nd->nopen--;
	}
	pthread_cond_signal(&nd->freed);
	pthread_mutex_unlock(&nd->lock);
}

/* Closes a broken connection and frees its slot. */
static void pool_drop(struct kv_client *c, struct client_node *nd, struct kv_conn *k)
{
	kv_conn_close(k);
	pool_give(c, nd, NULL);
}

static void node_mark(struct client_node *nd, bool down)
{
	pthread_mutex_lock(&nd->lock);
	nd->down_until_ns = down ? kv_now_ns() + NODE_DOWN_NS : 0;
	pthread_mutex_unlock(&nd->lock);
}

static bool node_is_down(struct client_node *nd, uint64_t now)
{
	pthread_mutex_lock(&nd->lock);
	bool down = nd->down_until_ns > now;
	pthread_mutex_unlock(&nd->lock);
	return down;
}

/* ---- one call with fail-over ---- */

struct call_state {
	uint64_t deadline_ns;
	size_t order[KV_CLIENT_MAX_NODES];
	size_t norder;
};

/*
 * Orders the nodes to try: @first (or round robin) then the rest in list
 * order; nodes that were unreachable lately go last, unless named.
 */
static void plan(struct kv_client *c, int first, bool only_first, struct call_state *cs)
{
	uint64_t now = kv_now_ns();
	size_t start = first >= 0 ? (size_t)first : atomic_fetch_add(&c->rr, 1) % c->nnodes;
	size_t up[KV_CLIENT_MAX_NODES], down[KV_CLIENT_MAX_NODES], nup = 0, ndown = 0;
	cs->norder = 0;
	if (only_first) {
		cs->order[cs->norder++] = start;
		return;
	}
	for (size_t k = 0; k < c->nnodes; k++) {
		size_t i = (start + k) % c->nnodes;
		if ((first >= 0 && k == 0) || !node_is_down(&c->nodes[i], now))
			up[nup++] = i;
		else
			down[ndown++] = i;
	}
	for (size_t k = 0; k < nup; k++)
		cs->order[cs->norder++] = up[k];
	for (size_t k = 0; k < ndown; k++)
		cs->order[cs->norder++] = down[k];
}

/* The timeout_ms to send the node: a little less than what is left, so the
 * node's own error (KV_EQUORUM) arrives before our deadline. */
static uint32_t node_timeout_ms(uint64_t deadline_ns)
{
	uint64_t now = kv_now_ns();
	if (now >= deadline_ns)
		return 1;
	uint64_t left = (deadline_ns - now) / 1000000;
	uint64_t margin = left / 10;
	if (margin < 20)
		margin = 20;
	if (margin > 500)
		margin = 500;
	uint64_t ms = left > margin ? left - margin : 1;
	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void set_timeout_field(struct kv_msg *req, uint32_t ms)
{
	switch (req->type) {
	case KV_MSG_GET:
		req->get.timeout_ms = ms;
		break;
	case KV_MSG_PUT:
	case KV_MSG_DELETE:
		req->put.timeout_ms = ms;
		break;
	case KV_MSG_LIST:
		req->list.timeout_ms = ms;
		break;
	case KV_MSG_CHUNK_PUT:
	case KV_MSG_CHUNK_GET:
		req->chunk.timeout_ms = ms;
		break;
	case KV_MSG_CHUNK_TOUCH:
		req->chunk_keys.timeout_ms = ms;
		break;
	case KV_MSG_GC:
		req->gc.timeout_ms = ms;
		break;
	default:
		break;
	}
}

/*
 * Sends @req to the planned nodes in turn until one answers, and decodes the
 * answer into @reply (with its frame in @frame, which @reply borrows from).
 * An ERROR reply becomes its code (with the node's text in errmsg). Returns 0
 * or a negative error; on error @frame and @reply are empty.
 */
static int run_call(struct kv_client *c, struct call_state *cs, struct kv_msg *req,
		    struct kv_frame *frame, struct kv_msg *reply)
{
	uint16_t want = kv_msg_reply_type(req->type);
	char tried[KV_CLIENT_ERRMSG_MAX] = "";
	size_t tlen = 0;
	int rc = KV_ETIMEDOUT;
	struct kv_conn_err err;
	bool any_tried = false;

	for (size_t k = 0; k < cs->norder; k++) {
		struct client_node *nd = &c->nodes[cs->order[k]];
		/* a pooled connection may be stale: one more try on a fresh one */
		for (int attempt = 0; attempt < 2; attempt++) {
			if (kv_now_ns() >= cs->deadline_ns) {
				rc = KV_ETIMEDOUT;
				if (!any_tried)
					set_errmsg("timed out before any node was tried");
				goto out;
			}
			any_tried = true;
			struct kv_conn *conn = NULL;
			rc = pool_take(c, nd, cs->deadline_ns, &conn);
			if (rc < 0) {
				set_errmsg("%s: timed out waiting for one of its %u connections",
					   nd->name, c->conns_per_node);
				goto out;
			}
			bool reused = conn != NULL;
			if (!conn) {
				uint64_t cdl = kv_now_ns() + (uint64_t)c->connect_timeout_ms * 1000000;
				if (cdl > cs->deadline_ns)
					cdl = cs->deadline_ns;
				rc = kv_conn_open(&(struct kv_conn_params){
							  .addr = (const struct sockaddr *)&nd->addr,
							  .addrlen = nd->addrlen,
							  .cluster = c->cluster,
							  .secret = &c->secret,
							  .limits = &c->limits,
						  },
						  cdl, &conn, &err);
				if (rc < 0) {
					pool_give(c, nd, NULL);
					if (rc == KV_ETIMEDOUT && kv_now_ns() < cs->deadline_ns)
						err.unreachable = true; /* our connect budget, not the call's */
					goto failed;
				}
				atomic_store_explicit(&nd->node_id, conn->node_id,
						      memory_order_relaxed);
				pthread_mutex_lock(&c->info_lock);
				c->have_info = true;
				c->n = conn->n;
				c->r_def = conn->r;
				c->w_def = conn->w;
				pthread_mutex_unlock(&c->info_lock);
			}
			set_timeout_field(req, node_timeout_ms(cs->deadline_ns));
			rc = kv_conn_call(conn, req, &c->limits, cs->deadline_ns, frame, &err);
			if (rc < 0) {
				pool_drop(c, nd, conn);
				if (reused && err.unreachable)
					continue; /* stale pooled connection: fresh one, same node */
				goto failed;
			}
			node_mark(nd, false);
			if (frame->type != KV_MSG_ERROR && frame->type != want) {
				set_errmsg("%s: unexpected reply %s (0x%04x) to %s", nd->name,
					   kv_msg_type_name(frame->type) ? kv_msg_type_name(frame->type)
									 : "?",
					   frame->type, kv_msg_type_name(req->type));
				pool_drop(c, nd, conn);
				rc = KV_ECORRUPT;
				goto out;
			}
			rc = kv_msg_decode_frame(frame, &c->limits, reply);
			if (rc < 0) {
				set_errmsg("%s: malformed %s: %s", nd->name,
					   kv_msg_type_name(frame->type), kv_strerror(rc));
				pool_drop(c, nd, conn);
				goto out;
			}
			pool_give(c, nd, conn);
			if (reply->type == KV_MSG_ERROR) {
				rc = reply->error.code < 0 ? reply->error.code : KV_ECORRUPT;
				if (reply->error.text.n)
					set_errmsg("%.*s", (int)reply->error.text.n,
						   (const char *)reply->error.text.p);
				else
					set_errmsg("%s: %s", nd->name, kv_strerror(rc));
				goto out;
			}
			rc = 0;
			goto out;
failed:
			if (!err.unreachable || kv_now_ns() >= cs->deadline_ns) {
				if (rc == KV_ETIMEDOUT || (err.unreachable && kv_now_ns() >= cs->deadline_ns)) {
					rc = KV_ETIMEDOUT;
					set_errmsg("timed out%s%s%s: %s: %s", tlen ? " (" : "", tried,
						   tlen ? ")" : "", nd->name, err.msg);
				} else {
					set_errmsg("%s: %s", nd->name, err.msg);
				}
				goto out;
			}
			node_mark(nd, true);
			int w = snprintf(tried + tlen, sizeof(tried) - tlen, "%s%s: %s",
					 tlen ? "; " : "", nd->name, err.msg);
			if (w > 0)
				tlen += (size_t)w < sizeof(tried) - tlen ? (size_t)w
									 : sizeof(tried) - tlen - 1;
			break; /* next node */
		}
	}
	set_errmsg("no node reachable: %s", tried);
out:
	if (rc < 0) {
		kv_msg_release(reply);
		kv_frame_release(frame);
	}
	return rc;
}

static uint64_t deadline_of(struct kv_client *c, const struct kv_client_call *call)
{
	uint32_t ms = call && call->timeout_ms ? call->timeout_ms : c->timeout_ms;
	return kv_now_ns() + (uint64_t)ms * 1000000;
}

static int check_call(struct kv_client *c, const struct kv_client_call *call)
{
	if (!call)
		return 0;
	if (call->node < -1 || (call->node >= 0 && (size_t)call->node >= c->nnodes)) {
		set_errmsg("node index %d out of range (0..%zu)", call->node, c->nnodes - 1);
		return KV_EINVAL;
	}
	if (call->r > KV_MSG_QUORUM_MAX || call->w > KV_MSG_QUORUM_MAX) {
		set_errmsg("r and w must be 0..%d", KV_MSG_QUORUM_MAX);
		return KV_EINVAL;
	}
	return 0;
}

static uint8_t pick_r(struct kv_client *c, const struct kv_client_call *call)
{
	return call && call->r ? call->r : c->r;
}

static uint8_t pick_w(struct kv_client *c, const struct kv_client_call *call)
{
	return call && call->w ? call->w : c->w;
}

/*
 * The node to send a put of @key to first: the one that coordinated the
 * last put of the key's placement key (when it is not known to be down),
 * or -1 for round robin. @h is kv_hash64() of the placement key.
 */
static int hint_get(struct kv_client *c, uint64_t h)
{
	uint64_t v = atomic_load_explicit(&c->hint[h % HINT_SLOTS], memory_order_relaxed);
	uint64_t idx1 = v & HINT_IDX_MASK;
	if (idx1 == 0 || idx1 > c->nnodes || (v & ~HINT_IDX_MASK) != (h & ~HINT_IDX_MASK))
		return -1;
	if (node_is_down(&c->nodes[idx1 - 1], kv_now_ns()))
		return -1;
	return (int)(idx1 - 1);
}

/* Remembers that node id @coordinator minted the latest put of hash @h. */
static void hint_set(struct kv_client *c, uint64_t h, uint32_t coordinator)
{
	uint64_t v = 0;
	for (size_t i = 0; i < c->nnodes && coordinator != 0; i++)
		if (atomic_load_explicit(&c->nodes[i].node_id, memory_order_relaxed) == coordinator) {
			v = (h & ~HINT_IDX_MASK) | (uint64_t)(i + 1);
			break;
		}
	/* A coordinator we have no address of: forget the hint (round robin). */
	atomic_store_explicit(&c->hint[h % HINT_SLOTS], v, memory_order_relaxed);
}

/* ---- operations ---- */

int kv_client_get(struct kv_client *c, struct kv_slice key, const struct kv_client_call *call,
		  struct kv_dvv *out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_GET);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	cs.deadline_ns = deadline_of(c, call);
	plan(c, call ? call->node : -1, false, &cs);
	req.get.flags = (call && call->head ? KV_MSG_GET_F_HEAD : 0) |
			(call && call->tombstones ? KV_MSG_GET_F_TOMBSTONES : 0);
	req.get.r = pick_r(c, call);
	req.get.key = key;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	kv_dvv_swap(out, &reply.set_reply.set);
out:
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

static int write_op(struct kv_client *c, uint16_t type, uint8_t flags, struct kv_slice key,
		    const struct kv_ctx *ctx, struct kv_slice meta, struct kv_slice body,
		    const struct kv_client_call *call, struct kv_dot *dot_out,
		    struct kv_ctx *ctx_out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, type);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (ctx) {
		rc = kv_ctx_copy(&req.put.context, ctx);
		if (rc < 0) {
			set_errmsg("out of memory");
			goto out;
		}
	}
	cs.deadline_ns = deadline_of(c, call);
	/*
	 * No node named: start at the node that coordinated this placement
	 * key's last put (a hint; a wrong one only costs the forward it saves).
	 */
	uint64_t ph = kv_hash64(kv_key_placement(key).p, kv_key_placement(key).n);
	int first = call ? call->node : -1;
	if (first < 0)
		first = hint_get(c, ph);
	plan(c, first, false, &cs);
	req.put.w = pick_w(c, call);
	/* DESIGN §4 "Idempotent retries": one id for every attempt of this call. */
	if (call && call->request_id)
		memcpy(req.put.request_id, call->request_id, KV_REQUEST_ID_LEN);
	else
		kv_client_request_id(req.put.request_id);
	req.put.flags = flags;
	req.put.key = key;
	req.put.meta = meta;
	req.put.body = body;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	/* The dot's actor is the coordinating replica (DESIGN §4 "Who mints a dot"). */
	hint_set(c, ph, reply.put_reply.dot.actor.node);
	if (dot_out)
		*dot_out = reply.put_reply.dot;
	if (ctx_out)
		kv_ctx_swap(ctx_out, &reply.put_reply.context);
	rc = (reply.put_reply.flags & KV_MSG_PUT_REPLY_F_RETRY) ? 1 : 0;
out:
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

int kv_client_put(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
		  struct kv_slice meta, struct kv_slice body, const struct kv_client_call *call,
		  struct kv_dot *dot_out, struct kv_ctx *ctx_out)
{
	return write_op(c, KV_MSG_PUT, 0, key, ctx, meta, body, call, dot_out, ctx_out);
}

int kv_client_delete(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
		     const struct kv_client_call *call, struct kv_dot *dot_out,
		     struct kv_ctx *ctx_out)
{
	return write_op(c, KV_MSG_DELETE, 0, key, ctx, kv_slice_make(NULL, 0),
			kv_slice_make(NULL, 0), call, dot_out, ctx_out);
}

int kv_client_delete_meta(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
			  struct kv_slice meta, const struct kv_client_call *call,
			  struct kv_dot *dot_out, struct kv_ctx *ctx_out)
{
	return write_op(c, KV_MSG_PUT, KV_MSG_PUT_F_TOMBSTONE, key, ctx, meta,
			kv_slice_make(NULL, 0), call, dot_out, ctx_out);
}

void kv_client_list_page_release(struct kv_client_list_page *page)
{
	for (size_t i = 0; i < page->n; i++) {
		kv_buf_release(&page->entries[i].name);
		kv_dvv_release(&page->entries[i].set);
	}
	free(page->entries);
	page->entries = NULL;
	page->n = 0;
	page->more = false;
	kv_buf_release(&page->next_cursor);
}

int kv_client_list(struct kv_client *c, struct kv_slice dir, struct kv_slice cursor,
		   uint32_t max_entries, const struct kv_client_call *call,
		   struct kv_client_list_page *out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_LIST);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (max_entries == 0)
		max_entries = 1000;
	if (max_entries > c->limits.max_list_entries) {
		set_errmsg("max_entries %u above %zu", max_entries, c->limits.max_list_entries);
		rc = KV_EINVAL;
		goto out;
	}
	cs.deadline_ns = deadline_of(c, call);
	plan(c, call ? call->node : -1, false, &cs);
	req.list.flags = call && call->tombstones ? KV_MSG_LIST_F_TOMBSTONES : 0;
	req.list.r = pick_r(c, call);
	req.list.max_entries = max_entries;
	req.list.dir = dir;
	req.list.cursor = cursor;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	struct kv_msg_list_reply *lr = &reply.list_reply;
	if (lr->n) {
		page.entries = calloc(lr->n, sizeof(*page.entries));
		if (!page.entries) {
			rc = -ENOMEM;
			goto nomem;
		}
	}
	for (size_t i = 0; i < lr->n; i++) {
		struct kv_client_list_entry *e = &page.entries[i];
		kv_buf_init(&e->name);
		kv_dvv_init(&e->set);
		page.n = i + 1;
		rc = kv_buf_append(&e->name, lr->entries[i].name.p, lr->entries[i].name.n);
		if (rc < 0)
			goto nomem;
		kv_dvv_swap(&e->set, &lr->entries[i].set);
	}
	page.more = (lr->flags & KV_MSG_LIST_F_MORE) != 0;
	rc = kv_buf_append(&page.next_cursor, lr->next_cursor.p, lr->next_cursor.n);
	if (rc < 0)
		goto nomem;
	kv_client_list_page_release(out);
	*out = page;
	page = (struct kv_client_list_page)KV_CLIENT_LIST_PAGE_INIT;
	rc = 0;
	goto out;
nomem:
	set_errmsg("out of memory");
out:
	kv_client_list_page_release(&page);
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

void kv_client_stats_release(struct kv_client_stats *st)
{
	for (size_t i = 0; i < st->n; i++)
		free(st->v[i].name);
	free(st->v);
	st->v = NULL;
	st->n = 0;
}

int kv_client_stats(struct kv_client *c, int node, const struct kv_client_call *call,
		    struct kv_client_stats *out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct kv_client_stats st = KV_CLIENT_STATS_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_STATS);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (node < -1 || (node >= 0 && (size_t)node >= c->nnodes)) {
		set_errmsg("node index %d out of range (0..%zu)", node, c->nnodes - 1);
		rc = KV_EINVAL;
		goto out;
	}
	cs.deadline_ns = deadline_of(c, call);
	plan(c, node, node >= 0, &cs);
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	struct kv_msg_stats_reply *sr = &reply.stats_reply;
	if (sr->n) {
		st.v = calloc(sr->n, sizeof(*st.v));
		if (!st.v) {
			rc = -ENOMEM;
			set_errmsg("out of memory");
			goto out;
		}
	}
	for (size_t i = 0; i < sr->n; i++) {
		char *name = malloc(sr->stats[i].name.n + 1);
		if (!name) {
			rc = -ENOMEM;
			set_errmsg("out of memory");
			goto out;
		}
		memcpy(name, sr->stats[i].name.p, sr->stats[i].name.n);
		name[sr->stats[i].name.n] = '\0';
		st.v[i].name = name;
		st.v[i].value = sr->stats[i].value;
		st.n = i + 1;
	}
	kv_client_stats_release(out);
	*out = st;
	st = (struct kv_client_stats)KV_CLIENT_STATS_INIT;
	rc = 0;
out:
	kv_client_stats_release(&st);
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

/* ---- Chunks (doc/protocol.md §5.9) and gc (§8.1) ---------------------- */

/* A chunk key: 00 63 followed by a 32-byte hash (doc/fs-format.md §4). */
static bool chunk_key_ok(struct kv_slice key)
{
	return key.n == 2 + KV_MSG_CHUNK_HASH_LEN && key.p[0] == 0 && key.p[1] == 'c';
}

int kv_client_chunk_put(struct kv_client *c, struct kv_slice key, struct kv_slice data,
			const struct kv_client_call *call)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_CHUNK_PUT);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (!chunk_key_ok(key)) {
		set_errmsg("not a chunk key (00 63 and a 32-byte hash)");
		rc = KV_EINVAL;
		goto out;
	}
	cs.deadline_ns = deadline_of(c, call);
	plan(c, call ? call->node : -1, false, &cs);
	req.chunk.w = pick_w(c, call);
	req.chunk.key = key;
	req.chunk.data = data;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	rc = (reply.chunk_put_reply.flags & KV_MSG_CHUNK_F_EXISTED) ? 1 : 0;
out:
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

int kv_client_chunk_get(struct kv_client *c, struct kv_slice key, const struct kv_client_call *call,
			struct kv_buf *out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_CHUNK_GET);
	kv_msg_init(&reply, KV_MSG_NONE);
	kv_buf_reset(out);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (!chunk_key_ok(key)) {
		set_errmsg("not a chunk key (00 63 and a 32-byte hash)");
		rc = KV_EINVAL;
		goto out;
	}
	cs.deadline_ns = deadline_of(c, call);
	plan(c, call ? call->node : -1, false, &cs);
	req.chunk.key = key;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	/* Checked again here: the node's check does not cover the way back. */
	struct kv_slice data = reply.chunk_data.data;
	int ok = kv_chunk_hash_check(key.p + 2, data.p, data.n);
	if (ok < 0) {
		set_errmsg("out of memory");
		rc = ok;
		goto out;
	}
	if (!ok) {
		set_errmsg("the chunk read does not match its hash");
		rc = KV_ECORRUPT;
		goto out;
	}
	const uint8_t *body = frame.body.p;
	uint8_t *p = NULL;
	if (data.n > 0 && body != NULL && data.p >= body &&
	    data.p + data.n <= body + frame.body.n && (p = kv_frame_detach(&frame)) != NULL) {
		/*
		 * No second 4 MiB buffer: the frame's block becomes @out, the
		 * chunk moved to its start (cheaper than fresh pages and a copy).
		 * The body lies within the block (frame.h), so it starts at or
		 * after @p.
		 */
		memmove(p, data.p, data.n);
		kv_buf_release(out);
		out->p = p;
		out->n = data.n;
		out->cap = data.n;
	} else if (kv_buf_append(out, data.p, data.n) != 0) {
		set_errmsg("out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		kv_buf_reset(out);
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

int kv_client_chunk_touch(struct kv_client *c, const struct kv_slice *keys, size_t n,
			  const struct kv_client_call *call)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	uint8_t *hashes = NULL;
	int rc;
	kv_msg_init(&req, KV_MSG_CHUNK_TOUCH);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	if (n == 0 || n > KV_MSG_CHUNK_KEYS_MAX) {
		set_errmsg("touch 1..%d chunks at a time", KV_MSG_CHUNK_KEYS_MAX);
		rc = KV_EINVAL;
		goto out;
	}
	hashes = malloc(n * KV_MSG_CHUNK_HASH_LEN);
	if (hashes == NULL) {
		set_errmsg("out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!chunk_key_ok(keys[i])) {
			set_errmsg("key %zu is not a chunk key (00 63 and a 32-byte hash)", i);
			rc = KV_EINVAL;
			goto out;
		}
		memcpy(hashes + i * KV_MSG_CHUNK_HASH_LEN, keys[i].p + 2, KV_MSG_CHUNK_HASH_LEN);
	}
	cs.deadline_ns = deadline_of(c, call);
	plan(c, call ? call->node : -1, false, &cs);
	req.chunk_keys.flags = KV_MSG_CHUNK_F_TOUCH;
	req.chunk_keys.hashes = hashes;
	req.chunk_keys.n = n;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	rc = reply.count.count > INT32_MAX ? INT32_MAX : (int)reply.count.count;
out:
	free(hashes);
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}

int kv_client_gc(struct kv_client *c, int64_t grace_s, const struct kv_client_call *call,
		 struct kv_client_gc_result *out)
{
	struct kv_msg req, reply;
	struct kv_frame frame = KV_FRAME_INIT;
	struct call_state cs;
	int rc;
	kv_msg_init(&req, KV_MSG_GC);
	kv_msg_init(&reply, KV_MSG_NONE);
	tls_errmsg[0] = '\0';
	rc = check_call(c, call);
	if (rc < 0)
		goto out;
	cs.deadline_ns = deadline_of(c, call);
	/* Not retried on another node: a gc is long, and one is enough. */
	plan(c, call ? call->node : -1, false, &cs);
	req.gc.grace_s = grace_s < 0 ? KV_CLIENT_GC_GRACE_DEFAULT_S : (uint64_t)grace_s;
	rc = run_call(c, &cs, &req, &frame, &reply);
	if (rc < 0)
		goto out;
	if (out != NULL) {
		const struct kv_msg_gc_reply *g = &reply.gc_reply;
		*out = (struct kv_client_gc_result){ g->epoch, g->nodes, g->versions, g->refs,
						     g->kept, g->swept, g->bytes };
	}
	rc = 0;
out:
	kv_msg_release(&reply);
	kv_msg_release(&req);
	kv_frame_release(&frame);
	return rc;
}
