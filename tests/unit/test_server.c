/*
 * test_server.c - the libuv driver (node/server.h; doc/node.md "The libuv
 * driver"): three nodes in this process on 127.0.0.1, each in its own temp
 * directory, spoken to through a tiny blocking client written here (the
 * handshake of doc/protocol.md §4, then frames). Every socket wait is
 * bounded by poll() timeouts; every server is stopped on every path the
 * test controls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "port_fx.h"

#include "client/client.h"
#include "node/node.h"
#include "node/server.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"

#define NNODES 3
#define WAIT_MS 8000

/* ---- A blocking test client --------------------------------------------- */

struct tc {
	int fd;
	struct kv_frame_decoder dec;
	uint64_t next_req;
	uint8_t n, r, w;
	struct kv_buf in; /* received, not yet fed */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int tc_open(struct tc *c, uint16_t port)
{
	memset(c, 0, sizeof *c);
	c->next_req = 1;
	kv_frame_decoder_init(&c->dec, KV_FRAME_MAX_BODY_DEFAULT);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -errno;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0)
		return -errno;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return 0;
}

static void tc_close(struct tc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	kv_frame_decoder_release(&c->dec);
	kv_buf_release(&c->in);
}

static void tc_write_raw(struct tc *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);
		if (k <= 0)
			return; /* the server may have closed: the reader sees it */
		b += k;
		n -= (size_t)k;
	}
}

static void tc_send(struct tc *c, const struct kv_msg *m, uint64_t req)
{
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_msg_encode_frame(m, NULL, 1, 0, req, &b), 0);
	tc_write_raw(c, b.p, b.n);
	kv_buf_release(&b);
}

/* 1: a frame in @f; 0: the server closed; -1: nothing within @ms. */
static int tc_recv(struct tc *c, struct kv_frame *f, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	for (;;) {
		while (c->in.n > 0) {
			size_t used = 0;
			int rc = kv_frame_decoder_feed(&c->dec, c->in.p, c->in.n, &used);
			memmove(c->in.p, c->in.p + used, c->in.n - used);
			c->in.n -= used;
			assert_true(rc >= 0);
			if (rc == 1) {
				assert_int_equal(kv_frame_decoder_take(&c->dec, f), 0);
				return 1;
			}
		}
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			return -1;
		uint8_t buf[65536];
		ssize_t k = recv(c->fd, buf, sizeof buf, 0);
		if (k <= 0)
			return 0;
		assert_int_equal(kv_buf_append(&c->in, buf, (size_t)k), 0);
	}
}

/* Waits for the server to close the connection (returns true) within @ms. */
static bool tc_wait_closed(struct tc *c, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	uint8_t buf[4096];
	while (now_ms() < deadline) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t k = recv(c->fd, buf, sizeof buf, 0);
		if (k <= 0)
			return true;
	}
	return false;
}

/*
 * The handshake as a client with @secret. Returns 0 (welcomed), or the
 * code of the ERROR the server sent, or KV_ECLOSED.
 */
static int tc_handshake(struct tc *c, const char *secret)
{
	struct kv_auth_secret sec;
	memset(&sec, 0, sizeof sec);
	assert_int_equal(kv_auth_secret_set(&sec, kv_slice_str(secret)), 0);
	struct kv_msg hello;
	kv_msg_init(&hello, KV_MSG_HELLO);
	hello.hello.min_version = 1;
	hello.hello.max_version = 1;
	hello.hello.role = KV_MSG_ROLE_CLIENT;
	hello.hello.cluster = kv_slice_str("test");
	kv_auth_nonce(hello.hello.nonce);
	tc_send(c, &hello, 0);
	struct kv_frame f = KV_FRAME_INIT;
	int rc = KV_ECLOSED;
	if (tc_recv(c, &f, WAIT_MS) != 1)
		goto out;
	struct kv_msg ch;
	kv_msg_init(&ch, KV_MSG_NONE);
	assert_int_equal(kv_msg_decode_frame(&f, NULL, &ch), 0);
	assert_int_equal(ch.type, KV_MSG_CHALLENGE);
	/* A client with the wrong secret sees the server's MAC fail; it goes on
	 * here anyway, to see the server refuse it. */
	struct kv_msg auth;
	kv_msg_init(&auth, KV_MSG_AUTH);
	assert_int_equal(kv_auth_mac(&sec, false, &hello.hello, &ch.challenge, auth.auth.mac), 0);
	kv_msg_release(&ch);
	kv_frame_release(&f);
	tc_send(c, &auth, 0);
	if (tc_recv(c, &f, WAIT_MS) != 1)
		goto out;
	struct kv_msg w;
	kv_msg_init(&w, KV_MSG_NONE);
	assert_int_equal(kv_msg_decode_frame(&f, NULL, &w), 0);
	if (w.type == KV_MSG_ERROR) {
		rc = w.error.code;
	} else {
		assert_int_equal(w.type, KV_MSG_WELCOME);
		c->n = w.welcome.n;
		c->r = w.welcome.r;
		c->w = w.welcome.w;
		rc = 0;
	}
	kv_msg_release(&w);
out:
	kv_frame_release(&f);
	return rc;
}

/* Sends @m and decodes the reply into @reply (borrowing from @f). */
static void tc_call(struct tc *c, const struct kv_msg *m, struct kv_frame *f, struct kv_msg *reply)
{
	uint64_t req = c->next_req++;
	tc_send(c, m, req);
	assert_int_equal(tc_recv(c, f, WAIT_MS), 1);
	assert_int_equal(f->request_id, req);
	kv_msg_init(reply, KV_MSG_NONE);
	assert_int_equal(kv_msg_decode_frame(f, NULL, reply), 0);
}

/* PUT @value at @key with context @ctx (may be NULL). Returns 0 or the ERROR code. */
static int tc_put(struct tc *c, const char *key, const char *value, const struct kv_ctx *ctx,
		  uint32_t timeout_ms)
{
	static uint64_t rid = 1;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.key = kv_slice_str(key);
	m.put.body = kv_slice_str(value);
	m.put.timeout_ms = timeout_ms;
	uint64_t r = rid++;
	memcpy(m.put.request_id, &r, sizeof r);
	m.put.request_id[15] = 0x7e;
	if (ctx != NULL)
		assert_int_equal(kv_ctx_copy(&m.put.context, ctx), 0);
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_msg rep;
	tc_call(c, &m, &f, &rep);
	int rc = rep.type == KV_MSG_ERROR ? rep.error.code : 0;
	if (rc == 0)
		assert_int_equal(rep.type, KV_MSG_PUT_REPLY);
	else
		print_message("put %s: %.*s\n", key, (int)rep.error.text.n,
			      (const char *)rep.error.text.p);
	kv_msg_release(&rep);
	kv_msg_release(&m);
	kv_frame_release(&f);
	return rc;
}

/* GET @key into @set. Returns 0 or the ERROR code. */
static int tc_get(struct tc *c, const char *key, struct kv_dvv *set)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str(key);
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_msg rep;
	tc_call(c, &m, &f, &rep);
	int rc = rep.type == KV_MSG_ERROR ? rep.error.code : 0;
	if (rc == 0) {
		assert_int_equal(rep.type, KV_MSG_GET_REPLY);
		assert_int_equal(kv_dvv_copy(set, &rep.set_reply.set), 0);
	}
	kv_msg_release(&rep);
	kv_msg_release(&m);
	kv_frame_release(&f);
	return rc;
}

static void check_value(struct tc *c, const char *key, const char *value)
{
	struct kv_dvv set = KV_DVV_INIT;
	assert_int_equal(tc_get(c, key, &set), 0);
	assert_int_equal(set.n, 1);
	assert_int_equal(set.v[0].body.n, strlen(value));
	assert_memory_equal(set.v[0].body.p, value, strlen(value));
	kv_dvv_release(&set);
}

static uint64_t stat_value(struct tc *c, const char *name)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_STATS);
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_msg rep;
	tc_call(c, &m, &f, &rep);
	assert_int_equal(rep.type, KV_MSG_STATS_REPLY);
	uint64_t v = UINT64_MAX;
	for (size_t i = 0; i < rep.stats_reply.n; i++) {
		if (i > 0)
			assert_true(kv_slice_cmp(rep.stats_reply.stats[i - 1].name,
						 rep.stats_reply.stats[i].name) < 0);
		if (kv_slice_eq(rep.stats_reply.stats[i].name, kv_slice_str(name)))
			v = rep.stats_reply.stats[i].value;
	}
	kv_msg_release(&rep);
	kv_frame_release(&f);
	return v;
}

/* ---- A cluster of three servers ----------------------------------------- */

struct cluster {
	char dir[256];
	uint16_t ports[NNODES];
	struct kv_server *srv[NNODES];
	uint32_t forward_timeout_ms;
};

static uint16_t free_port(void)
{
	uint16_t port = kv_test_free_port();
	assert_int_not_equal(port, 0);
	return port;
}

static void options(struct cluster *cl, int i, struct kv_server_options *o)
{
	kv_server_options_default(o);
	o->node_id = (uint32_t)(i + 1);
	snprintf(o->listen_host, sizeof o->listen_host, "127.0.0.1");
	o->listen_port = cl->ports[i];
	snprintf(o->data_dir, sizeof o->data_dir, "%s/n%d", cl->dir, i + 1);
	snprintf(o->cluster, sizeof o->cluster, "test");
	assert_int_equal(kv_auth_secret_set(&o->secret, kv_slice_str("s3cret")), 0);
	for (int k = 0; k < NNODES; k++) {
		o->members[k].id = (uint32_t)(k + 1);
		snprintf(o->members[k].host, sizeof o->members[k].host, "127.0.0.1");
		o->members[k].port = cl->ports[k];
	}
	o->n_members = NNODES;
	o->n = 3;
	o->r = 2;
	o->w = 2;
	o->timeout_ms = 3000;
	o->forward_timeout_ms = cl->forward_timeout_ms ? cl->forward_timeout_ms : 1000;
	o->connect_timeout_ms = 500;
	o->idle_timeout_ms = 300;
	o->memtable_bytes = 1 << 20;
	o->cache_bytes = 1 << 20;
	o->log_level = KV_LOG_WARN;
}

static void node_start(struct cluster *cl, int i)
{
	struct kv_server_options *o = malloc(sizeof *o);
	assert_non_null(o);
	options(cl, i, o);
	char err[256];
	int rc = kv_server_start(o, &cl->srv[i], err, sizeof err);
	if (rc != 0)
		print_message("node %d: %s\n", i + 1, err);
	assert_int_equal(rc, 0);
	assert_int_equal(kv_server_port(cl->srv[i]), cl->ports[i]);
	free(o);
}

static void node_stop(struct cluster *cl, int i)
{
	if (cl->srv[i] != NULL)
		assert_int_equal(kv_server_stop(cl->srv[i]), 0);
	cl->srv[i] = NULL;
}

static void cluster_up(struct cluster *cl, uint32_t forward_timeout_ms)
{
	memset(cl, 0, sizeof *cl);
	snprintf(cl->dir, sizeof cl->dir, "/tmp/kvfs-test-server-XXXXXX");
	assert_non_null(mkdtemp(cl->dir));
	cl->forward_timeout_ms = forward_timeout_ms;
	for (int i = 0; i < NNODES; i++)
		cl->ports[i] = free_port();
	for (int i = 0; i < NNODES; i++)
		node_start(cl, i);
}

static void cluster_down(struct cluster *cl)
{
	for (int i = 0; i < NNODES; i++)
		node_stop(cl, i);
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", cl->dir);
	assert_int_equal(system(cmd), 0);
}

static void client(struct cluster *cl, int i, struct tc *c)
{
	assert_int_equal(tc_open(c, cl->ports[i]), 0);
	assert_int_equal(tc_handshake(c, "s3cret"), 0);
	assert_int_equal(c->n, 3);
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(kv_auth_init(), 0);
	return 0;
}

/* ---- Tests -------------------------------------------------------------- */

static void test_server__round_trips_through_every_node(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	struct tc c[NNODES];
	for (int i = 0; i < NNODES; i++)
		client(&cl, i, &c[i]);
	char key[64], val[64];
	for (int i = 0; i < NNODES; i++) {
		snprintf(key, sizeof key, "/dir/k%d", i);
		snprintf(val, sizeof val, "value %d", i);
		assert_int_equal(tc_put(&c[i], key, val, NULL, 0), 0);
	}
	for (int i = 0; i < NNODES; i++)
		for (int j = 0; j < NNODES; j++) {
			snprintf(key, sizeof key, "/dir/k%d", i);
			snprintf(val, sizeof val, "value %d", i);
			check_value(&c[j], key, val);
		}
	/* LIST through each node sees the three children. */
	for (int j = 0; j < NNODES; j++) {
		struct kv_msg m;
		kv_msg_init(&m, KV_MSG_LIST);
		m.list.dir = kv_slice_str("/dir");
		m.list.max_entries = 100;
		struct kv_frame f = KV_FRAME_INIT;
		struct kv_msg rep;
		tc_call(&c[j], &m, &f, &rep);
		assert_int_equal(rep.type, KV_MSG_LIST_REPLY);
		assert_int_equal(rep.list_reply.n, 3);
		assert_true(kv_slice_eq(rep.list_reply.entries[0].name, kv_slice_str("k0")));
		kv_msg_release(&rep);
		kv_frame_release(&f);
	}
	/* Replace with the context read, then delete with the new context. */
	struct kv_dvv set = KV_DVV_INIT;
	assert_int_equal(tc_get(&c[1], "/dir/k0", &set), 0);
	assert_int_equal(tc_put(&c[2], "/dir/k0", "second", &set.ctx, 0), 0);
	check_value(&c[0], "/dir/k0", "second");
	kv_dvv_release(&set);
	assert_int_equal(tc_get(&c[0], "/dir/k0", &set), 0);
	struct kv_msg del;
	kv_msg_init(&del, KV_MSG_DELETE);
	del.put.key = kv_slice_str("/dir/k0");
	assert_int_equal(kv_ctx_copy(&del.put.context, &set.ctx), 0);
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_msg rep;
	tc_call(&c[1], &del, &f, &rep);
	assert_int_equal(rep.type, KV_MSG_DELETE_REPLY);
	kv_msg_release(&rep);
	kv_msg_release(&del);
	kv_frame_release(&f);
	kv_dvv_release(&set);
	for (int j = 0; j < NNODES; j++) {
		assert_int_equal(tc_get(&c[j], "/dir/k0", &set), 0);
		assert_int_equal(set.n, 0);
		kv_dvv_release(&set);
	}
	/* STATS: ascending names; the counters saw the requests. */
	assert_true(stat_value(&c[0], "get_requests") >= 2);
	assert_true(stat_value(&c[0], "put_requests") >= 1);
	assert_true(stat_value(&c[0], "lsm_writes") >= 1);
	assert_true(stat_value(&c[0], "connections_accepted") >= 1);
	assert_int_equal(stat_value(&c[0], "epoch"), 1);
	for (int i = 0; i < NNODES; i++)
		tc_close(&c[i]);
	cluster_down(&cl);
}

static void test_server__wrong_secret_is_refused(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	struct tc bad, good;
	assert_int_equal(tc_open(&bad, cl.ports[0]), 0);
	assert_int_equal(tc_handshake(&bad, "not the secret"), KV_EINVAL);
	assert_true(tc_wait_closed(&bad, WAIT_MS));
	tc_close(&bad);
	client(&cl, 0, &good);
	assert_int_equal(stat_value(&good, "auth_failures"), 1);
	tc_close(&good);
	cluster_down(&cl);
}

/* Expects an ERROR frame (its code) on @c within the wait. */
static int check_error(struct tc *c, uint64_t *req)
{
	struct kv_frame f = KV_FRAME_INIT;
	assert_int_equal(tc_recv(c, &f, WAIT_MS), 1);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_NONE);
	assert_int_equal(kv_msg_decode_frame(&f, NULL, &m), 0);
	assert_int_equal(m.type, KV_MSG_ERROR);
	int code = m.error.code;
	if (req != NULL)
		*req = f.request_id;
	kv_msg_release(&m);
	kv_frame_release(&f);
	return code;
}

static void test_server__bad_input_gets_an_error_and_others_keep_working(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	struct tc good, b;
	client(&cl, 0, &good);
	assert_int_equal(tc_put(&good, "/x/a", "alive", NULL, 0), 0);

	/* Random bytes: ERROR, then the connection closes. */
	assert_int_equal(tc_open(&b, cl.ports[0]), 0);
	uint8_t junk[512];
	srand(7);
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 'G'; /* not the magic */
	tc_write_raw(&b, junk, sizeof junk);
	assert_int_equal(check_error(&b, NULL), KV_ECORRUPT);
	assert_true(tc_wait_closed(&b, WAIT_MS));
	tc_close(&b);

	/* A huge declared length, after authenticating: refused from the header. */
	client(&cl, 0, &b);
	uint8_t hdr[KV_FRAME_HEADER_SIZE] = { 'k', 'v', 'f', 's', 1, 0 };
	kv_put_le16(hdr + 6, KV_MSG_PUT);
	kv_put_le64(hdr + 8, 9);
	kv_put_le32(hdr + 16, 0xfffffff0u);
	kv_put_le32(hdr + 20, kv_checksum32(hdr, 20));
	tc_write_raw(&b, hdr, sizeof hdr);
	assert_int_equal(check_error(&b, NULL), KV_ETOOBIG);
	assert_true(tc_wait_closed(&b, WAIT_MS));
	tc_close(&b);

	/* A truncated frame: closed after the idle timeout (300 ms here). */
	client(&cl, 0, &b);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_str("/x/a");
	struct kv_buf fr = KV_BUF_INIT;
	assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 5, &fr), 0);
	tc_write_raw(&b, fr.p, fr.n - 3);
	kv_buf_release(&fr);
	assert_int_equal(check_error(&b, NULL), KV_ETIMEDOUT);
	assert_true(tc_wait_closed(&b, WAIT_MS));
	tc_close(&b);

	/* A silent connection that never says HELLO is closed too. */
	assert_int_equal(tc_open(&b, cl.ports[0]), 0);
	assert_int_equal(check_error(&b, NULL), KV_ETIMEDOUT);
	assert_true(tc_wait_closed(&b, WAIT_MS));
	tc_close(&b);

	/* Errors that keep the connection: an unknown type, a bad body, a peer
	 * message from a client. */
	client(&cl, 0, &b);
	uint64_t req = 0;
	struct kv_buf raw = KV_BUF_INIT;
	assert_int_equal(kv_frame_encode(&raw, 1, 0, 0x0123, 41, kv_slice_make("abc", 3)), 0);
	assert_int_equal(kv_frame_encode(&raw, 1, 0, KV_MSG_GET, 42, kv_slice_make("\xff", 1)), 0);
	tc_write_raw(&b, raw.p, raw.n);
	kv_buf_release(&raw);
	assert_int_equal(check_error(&b, &req), KV_EVERSION);
	assert_int_equal(req, 41);
	assert_int_equal(check_error(&b, &req), KV_ECORRUPT);
	assert_int_equal(req, 42);
	struct kv_msg rw;
	kv_msg_init(&rw, KV_MSG_REPLICA_READ);
	rw.get.key = kv_slice_str("/x/a");
	tc_send(&b, &rw, 43);
	assert_int_equal(check_error(&b, &req), KV_EINVAL);
	assert_int_equal(req, 43);
	check_value(&b, "/x/a", "alive");
	tc_close(&b);

	/* The first connection never noticed. */
	check_value(&good, "/x/a", "alive");
	assert_true(stat_value(&good, "bad_frames") >= 2);
	assert_true(stat_value(&good, "idle_closed") >= 2);
	tc_close(&good);
	cluster_down(&cl);
}

static void test_server__restart_keeps_acknowledged_writes(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	struct tc c;
	char key[64], val[64];
	client(&cl, 1, &c);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "/r/%d", i);
		snprintf(val, sizeof val, "v%d", i);
		assert_int_equal(tc_put(&c, key, val, NULL, 0), 0);
	}
	tc_close(&c);
	for (int i = 0; i < NNODES; i++)
		node_stop(&cl, i);
	for (int i = 0; i < NNODES; i++)
		node_start(&cl, i);
	for (int j = 0; j < NNODES; j++) {
		client(&cl, j, &c);
		for (int i = 0; i < 20; i++) {
			snprintf(key, sizeof key, "/r/%d", i);
			snprintf(val, sizeof val, "v%d", i);
			check_value(&c, key, val);
		}
		/* A clean restart keeps the epoch. */
		assert_int_equal(stat_value(&c, "epoch"), 1);
		tc_close(&c);
	}
	cluster_down(&cl);
}

static void test_server__data_dir_of_another_n_is_refused(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	node_stop(&cl, 0);
	struct kv_server_options *o = malloc(sizeof *o);
	assert_non_null(o);
	options(&cl, 0, o);
	o->n = 2;
	char err[256];
	struct kv_server *s = NULL;
	assert_int_equal(kv_server_start(o, &s, err, sizeof err), KV_EINVAL);
	assert_null(s);
	assert_string_equal(err, "--n 2 disagrees with this node's data (N=3)");
	options(&cl, 0, o);
	o->node_id = 2; /* node 1's directory */
	o->listen_port = free_port();
	assert_int_equal(kv_server_start(o, &s, err, sizeof err), KV_EINVAL);
	assert_non_null(strstr(err, "belongs to node 1"));
	free(o);
	cluster_down(&cl);
}

/*
 * Fast fail-over: with the key's coordinating replica stopped, a put
 * through another node is coordinated by the next replica long before the
 * forward timeout (5 s here), because the refused connect answers the
 * FORWARD_PUT with a synthetic ERROR KV_ECLOSED at once.
 */
static void test_server__put_fails_over_fast_when_the_coordinator_is_down(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 5000);
	/* The core's own placement, for a key whose first replica is node 3. */
	struct kv_node_member mem[NNODES] = { { 1, "1", 1.0 }, { 2, "2", 1.0 }, { 3, "3", 1.0 } };
	struct kv_node_config cfg;
	kv_node_config_default(&cfg);
	cfg.self_id = 1;
	cfg.members = mem;
	cfg.n_members = NNODES;
	struct kv_node probe;
	assert_int_equal(kv_node_init(&probe, &cfg), 0);
	char key[64];
	int found = 0;
	for (int i = 0; i < 1000 && !found; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		uint32_t ids[KV_RING_MAX_REPLICAS];
		int np = kv_node_preflist(&probe, kv_slice_str(key), ids, KV_RING_MAX_REPLICAS);
		found = np == 3 && ids[0] == 3;
	}
	kv_node_release(&probe);
	assert_true(found);

	struct tc c;
	client(&cl, 0, &c);
	assert_int_equal(tc_put(&c, key, "before", NULL, 0), 0);
	node_stop(&cl, 2);
	uint64_t t0 = now_ms();
	assert_int_equal(tc_put(&c, key, "after", NULL, 0), 0);
	uint64_t took = now_ms() - t0;
	print_message("put with its coordinator down took %llu ms\n", (unsigned long long)took);
	assert_true(took < 1000);
	/* Both versions (blind puts) are there, read through node 2. */
	struct tc c2;
	client(&cl, 1, &c2);
	struct kv_dvv set = KV_DVV_INIT;
	assert_int_equal(tc_get(&c2, key, &set), 0);
	assert_int_equal(set.n, 2);
	kv_dvv_release(&set);
	assert_true(stat_value(&c, "fast_failovers") >= 1);
	tc_close(&c);
	tc_close(&c2);
	cluster_down(&cl);
}

/* An unclean stop under sync=none (RUNNING left behind) takes a new epoch. */
static void test_server__unclean_stop_under_sync_none_takes_a_new_epoch(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	node_stop(&cl, 0);
	char path[512];
	snprintf(path, sizeof path, "%s/n1/RUNNING", cl.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("sync=none\n", f);
	fclose(f);
	node_start(&cl, 0);
	struct tc c;
	client(&cl, 0, &c);
	assert_int_equal(stat_value(&c, "epoch"), 2);
	tc_close(&c);
	node_stop(&cl, 0);
	node_start(&cl, 0); /* a clean stop keeps it */
	client(&cl, 0, &c);
	assert_int_equal(stat_value(&c, "epoch"), 2);
	assert_int_equal(tc_put(&c, "/e/k", "v", NULL, 0), 0);
	tc_close(&c);
	cluster_down(&cl);
}

/*
 * Output coalescing and batched reads (doc/node.md "The libuv driver"):
 * 64 PUTs pipelined in one write are all answered, each once, and the
 * replica writes they cause leave node 1 in fewer writes than frames.
 */
static void test_server__pipelined_puts_are_answered_with_coalesced_writes(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	struct tc c;
	client(&cl, 0, &c);
	uint64_t frames0 = stat_value(&c, "frames_sent"), writes0 = stat_value(&c, "socket_writes");
	enum { NPUT = 64 };
	struct kv_buf all = KV_BUF_INIT;
	char key[64];
	uint64_t first = c.next_req;
	for (int i = 0; i < NPUT; i++) {
		struct kv_msg m;
		kv_msg_init(&m, KV_MSG_PUT);
		snprintf(key, sizeof key, "/pipe/k%d", i);
		m.put.key = kv_slice_str(key);
		m.put.body = kv_slice_str("v");
		uint64_t r = 0x1000 + (uint64_t)i;
		memcpy(m.put.request_id, &r, sizeof r);
		m.put.request_id[15] = 0x5a;
		assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, c.next_req++, &all), 0);
		kv_msg_release(&m);
	}
	tc_write_raw(&c, all.p, all.n);
	kv_buf_release(&all);
	bool seen[NPUT] = { false };
	for (int i = 0; i < NPUT; i++) {
		struct kv_frame f = KV_FRAME_INIT;
		assert_int_equal(tc_recv(&c, &f, WAIT_MS), 1);
		assert_int_equal(f.type, KV_MSG_PUT_REPLY);
		assert_true(f.request_id >= first && f.request_id < first + NPUT);
		assert_false(seen[f.request_id - first]);
		seen[f.request_id - first] = true;
		kv_frame_release(&f);
	}
	uint64_t frames = stat_value(&c, "frames_sent") - frames0;
	uint64_t writes = stat_value(&c, "socket_writes") - writes0;
	print_message("node 1: %llu frames in %llu writes\n", (unsigned long long)frames,
		      (unsigned long long)writes);
	assert_true(frames >= NPUT);
	assert_true(writes < frames);
	for (int i = 0; i < NPUT; i += 7) {
		snprintf(key, sizeof key, "/pipe/k%d", i);
		check_value(&c, key, "v");
	}
	tc_close(&c);
	cluster_down(&cl);
}

/* Sum of a counter over every running node. */
static uint64_t cluster_stat(struct cluster *cl, const char *name)
{
	uint64_t sum = 0;
	for (int i = 0; i < NNODES; i++) {
		if (cl->srv[i] == NULL)
			continue;
		struct tc c;
		client(cl, i, &c);
		sum += stat_value(&c, name);
		tc_close(&c);
	}
	return sum;
}

/*
 * The client library sends a put straight to the node that coordinated the
 * last put of its placement key (doc/protocol.md §5.3): after the first few
 * puts of one directory, none is forwarded; with that node stopped, puts
 * fail over and still succeed.
 */
static void test_server__client_sends_puts_to_the_coordinating_replica(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_up(&cl, 0);
	char nodes[128];
	snprintf(nodes, sizeof nodes, "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", cl.ports[0],
		 cl.ports[1], cl.ports[2]);
	struct kv_auth_secret secret;
	memset(&secret, 0, sizeof secret);
	assert_int_equal(kv_auth_secret_set(&secret, kv_slice_str("s3cret")), 0);
	struct kv_client_config cfg = { .nodes = nodes, .cluster = "test", .secret = &secret };
	struct kv_client *kc = NULL;
	assert_int_equal(kv_client_new(&cfg, &kc), 0);
	char key[64];
	struct kv_dot dot;
	/* Warm up: every node is met once (round robin), the hint is learnt. */
	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof key, "/hint/w%d", i);
		assert_int_equal(kv_client_put(kc, kv_slice_str(key), NULL, kv_slice_make(NULL, 0),
					       kv_slice_str("v"), NULL, &dot, NULL),
				 0);
	}
	uint32_t coordinator = dot.actor.node;
	uint64_t fwd0 = cluster_stat(&cl, "forward_put_requests");
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof key, "/hint/k%d", i);
		assert_int_equal(kv_client_put(kc, kv_slice_str(key), NULL, kv_slice_make(NULL, 0),
					       kv_slice_str("v"), NULL, &dot, NULL),
				 0);
		assert_int_equal(dot.actor.node, coordinator);
	}
	assert_int_equal(cluster_stat(&cl, "forward_put_requests") - fwd0, 0);
	/* The hinted node goes away: puts fail over to another node and succeed. */
	node_stop(&cl, (int)coordinator - 1);
	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof key, "/hint/after%d", i);
		assert_int_equal(kv_client_put(kc, kv_slice_str(key), NULL, kv_slice_make(NULL, 0),
					       kv_slice_str("v"), NULL, &dot, NULL),
				 0);
		assert_int_not_equal(dot.actor.node, coordinator);
	}
	kv_client_free(kc);
	kv_auth_secret_release(&secret);
	cluster_down(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server__round_trips_through_every_node),
		cmocka_unit_test(test_server__wrong_secret_is_refused),
		cmocka_unit_test(test_server__bad_input_gets_an_error_and_others_keep_working),
		cmocka_unit_test(test_server__restart_keeps_acknowledged_writes),
		cmocka_unit_test(test_server__data_dir_of_another_n_is_refused),
		cmocka_unit_test(test_server__unclean_stop_under_sync_none_takes_a_new_epoch),
		cmocka_unit_test(test_server__put_fails_over_fast_when_the_coordinator_is_down),
		cmocka_unit_test(test_server__pipelined_puts_are_answered_with_coalesced_writes),
		cmocka_unit_test(test_server__client_sends_puts_to_the_coordinating_replica),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
