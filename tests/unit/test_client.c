/*
 * test_client.c - the client library (src/client/client.h) against fake
 * nodes served by threads of this test on 127.0.0.1: the accepting side of
 * the handshake (doc/protocol.md §4) with kv_auth_*, a tiny in-memory store
 * built on kv_dvv_put(), and misbehaving modes (silent, garbage, a body that
 * does not decode, a node that drops the connection after reading a request).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "client/client.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "util/error.h"
#include "util/time.h"
#include "version/counter.h"

/* ---- the fake node ---- */

#define STORE_MAX 128
#define SEEN_MAX 1024
#define FAKE_CONNS_MAX 64

enum fake_mode {
	FAKE_OK,      /* a working node */
	FAKE_SILENT,  /* handshake, then never answers */
	FAKE_GARBAGE, /* answers every request with bytes that are not a frame */
	FAKE_BAD_BODY, /* answers with a well-framed reply whose body does not decode */
	FAKE_DROP,    /* reads a request, records it, closes the connection */
	FAKE_SPLIT,   /* an empty GET_REPLY in two pieces 20 ms apart, then a stray
		       * ERROR (request id 0) as a node sends before closing */
};

/* Shared by the fake nodes of one test; guarded by @lock. */
struct fake_store {
	pthread_mutex_t lock;
	struct {
		struct kv_buf key;
		struct kv_dvv set;
	} e[STORE_MAX]; /* ascending by key */
	size_t n;
	struct kv_counter counter;
	uint8_t seen[SEEN_MAX][KV_REQUEST_ID_LEN]; /* request ids of every PUT/DELETE read */
	size_t nseen;
	atomic_int requests;
};

struct fake {
	int lfd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	enum fake_mode mode;
	struct kv_auth_secret secret;
	struct fake_store *store;
	atomic_int conns; /* connections that completed the handshake */
	pthread_t conn_threads[FAKE_CONNS_MAX]; /* accept thread only */
	int conn_fds[FAKE_CONNS_MAX];
	size_t nconn;
};

struct fake_conn_arg {
	struct fake *f;
	int fd;
};

static void store_init(struct fake_store *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	kv_counter_init(&s->counter, 0, 100000);
	uint64_t lease;
	if (kv_counter_lease_request(&s->counter, &lease) == 1)
		kv_counter_lease_durable(&s->counter, lease);
}

static void store_release(struct fake_store *s)
{
	for (size_t i = 0; i < s->n; i++) {
		kv_buf_release(&s->e[i].key);
		kv_dvv_release(&s->e[i].set);
	}
	pthread_mutex_destroy(&s->lock);
}

/* The entry of @key, created when @create; NULL when absent. Lock held. */
static struct kv_dvv *store_find(struct fake_store *s, struct kv_slice key, bool create)
{
	size_t i = 0;
	while (i < s->n && kv_slice_cmp(kv_buf_slice(&s->e[i].key), key) < 0)
		i++;
	if (i < s->n && kv_slice_eq(kv_buf_slice(&s->e[i].key), key))
		return &s->e[i].set;
	if (!create || s->n == STORE_MAX)
		return NULL;
	memmove(&s->e[i + 1], &s->e[i], (s->n - i) * sizeof(s->e[0]));
	kv_buf_init(&s->e[i].key);
	kv_buf_append(&s->e[i].key, key.p, key.n);
	kv_dvv_init(&s->e[i].set);
	s->n++;
	return &s->e[i].set;
}

/* Reads one frame with 50 ms polls, giving up when the fake stops. */
static int fake_read(struct fake *f, int fd, struct kv_frame_decoder *d, struct kv_frame *out)
{
	uint8_t buf[65536];
	for (;;) {
		if (atomic_load(&f->stop))
			return KV_ECLOSED;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int rc = poll(&pfd, 1, 50);
		if (rc <= 0)
			continue;
		size_t need = kv_frame_decoder_need(d);
		if (need > sizeof(buf))
			need = sizeof(buf);
		ssize_t k = recv(fd, buf, need, 0);
		if (k <= 0)
			return KV_ECLOSED;
		size_t used;
		rc = kv_frame_decoder_feed(d, buf, (size_t)k, &used);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return kv_frame_decoder_take(d, out);
	}
}

static int fake_send(int fd, const struct kv_msg *m, uint64_t id)
{
	struct kv_buf b = KV_BUF_INIT;
	int rc = kv_msg_encode_frame(m, NULL, 1, 0, id, &b);
	if (rc == 0 && send(fd, b.p, b.n, MSG_NOSIGNAL) != (ssize_t)b.n)
		rc = -EIO;
	kv_buf_release(&b);
	return rc;
}

static int fake_send_error(int fd, uint64_t id, int code, const char *text)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_ERROR);
	m.error.code = code;
	m.error.text = kv_slice_str(text);
	return fake_send(fd, &m, id);
}

/* The accepting side of doc/protocol.md §4. */
static int fake_handshake(struct fake *f, int fd, struct kv_frame_decoder *d)
{
	struct kv_frame fh = KV_FRAME_INIT, fa = KV_FRAME_INIT;
	struct kv_msg hello, chal, auth, welcome;
	kv_msg_init(&hello, KV_MSG_NONE);
	kv_msg_init(&chal, KV_MSG_CHALLENGE);
	kv_msg_init(&auth, KV_MSG_NONE);
	kv_msg_init(&welcome, KV_MSG_WELCOME);
	int rc = fake_read(f, fd, d, &fh);
	if (rc < 0 || (rc = kv_msg_decode_frame(&fh, NULL, &hello)) < 0)
		goto out;
	if (hello.type != KV_MSG_HELLO || hello.hello.role != KV_MSG_ROLE_CLIENT ||
	    !kv_slice_eq(hello.hello.cluster, kv_slice_str("kvfs"))) {
		rc = KV_EINVAL;
		goto out;
	}
	chal.challenge.version = 1;
	chal.challenge.node_id = kv_slice_str("1");
	kv_auth_nonce(chal.challenge.nonce);
	kv_auth_mac(&f->secret, true, &hello.hello, &chal.challenge, chal.challenge.mac);
	if ((rc = fake_send(fd, &chal, 0)) < 0)
		goto out;
	if ((rc = fake_read(f, fd, d, &fa)) < 0 || (rc = kv_msg_decode_frame(&fa, NULL, &auth)) < 0)
		goto out;
	if (auth.type != KV_MSG_AUTH ||
	    kv_auth_verify(&f->secret, false, &hello.hello, &chal.challenge, auth.auth.mac) < 0) {
		fake_send_error(fd, 0, KV_EINVAL, "bad cluster secret");
		rc = KV_EINVAL;
		goto out;
	}
	welcome.welcome.n = 3;
	welcome.welcome.r = 2;
	welcome.welcome.w = 2;
	rc = fake_send(fd, &welcome, 0);
	kv_frame_decoder_set_max(d, KV_FRAME_MAX_BODY_DEFAULT);
out:
	kv_msg_release(&hello);
	kv_msg_release(&chal);
	kv_msg_release(&auth);
	kv_msg_release(&welcome);
	kv_frame_release(&fh);
	kv_frame_release(&fa);
	return rc;
}

/* Answers one request of a working node. */
static int fake_answer(struct fake *f, int fd, const struct kv_frame *fr, const struct kv_msg *req)
{
	struct fake_store *s = f->store;
	struct kv_msg rep;
	int rc;
	kv_msg_init(&rep, kv_msg_reply_type(req->type));
	pthread_mutex_lock(&s->lock);
	switch (req->type) {
	case KV_MSG_GET: {
		struct kv_dvv *set = store_find(s, req->get.key, false);
		if (set)
			kv_dvv_copy(&rep.set_reply.set, set);
		break;
	}
	case KV_MSG_PUT:
	case KV_MSG_DELETE: {
		if (kv_slice_eq(req->put.key, kv_slice_str("/quorum"))) {
			pthread_mutex_unlock(&s->lock);
			kv_msg_release(&rep);
			return fake_send_error(fd, fr->request_id, KV_EQUORUM,
					       "write quorum not met: 1 of 2 acks within 5s");
		}
		struct kv_dvv *set = store_find(s, req->put.key, true);
		struct kv_dvv_write w = {
			.context = &req->put.context,
			.timestamp_ns = (int64_t)kv_wall_ns(),
			.tombstone = req->type == KV_MSG_DELETE,
			.meta = req->put.meta,
			.body = req->put.body,
		};
		memcpy(w.request_id, req->put.request_id, KV_REQUEST_ID_LEN);
		struct kv_actor self = { 1, 1 };
		rc = kv_dvv_put(set, &w, self, &s->counter, NULL, &rep.put_reply.dot);
		if (rc < 0) {
			pthread_mutex_unlock(&s->lock);
			kv_msg_release(&rep);
			return fake_send_error(fd, fr->request_id, rc, "put failed");
		}
		rep.put_reply.flags = rc == 1 ? KV_MSG_PUT_REPLY_F_RETRY : 0;
		kv_ctx_copy(&rep.put_reply.context, &set->ctx);
		break;
	}
	case KV_MSG_LIST: {
		struct kv_buf prefix = KV_BUF_INIT;
		kv_buf_append(&prefix, req->list.dir.p, req->list.dir.n);
		kv_buf_append_u8(&prefix, '/');
		size_t added = 0;
		for (size_t i = 0; i < s->n; i++) {
			struct kv_slice k = kv_buf_slice(&s->e[i].key);
			if (!kv_slice_has_prefix(k, kv_buf_slice(&prefix)))
				continue;
			struct kv_slice name = kv_slice_make(k.p + prefix.n, k.n - prefix.n);
			if (name.n == 0 || memchr(name.p, '/', name.n))
				continue; /* not a child of this directory */
			if (req->list.cursor.n && kv_slice_cmp(name, req->list.cursor) <= 0)
				continue;
			if (added == req->list.max_entries) {
				rep.list_reply.flags = KV_MSG_LIST_F_MORE;
				rep.list_reply.next_cursor = rep.list_reply.entries[added - 1].name;
				break;
			}
			struct kv_dvv copy = KV_DVV_INIT;
			kv_dvv_copy(&copy, &s->e[i].set);
			kv_msg_list_push(&rep, name, &copy);
			kv_dvv_release(&copy);
			added++;
		}
		pthread_mutex_unlock(&s->lock);
		rc = fake_send(fd, &rep, fr->request_id);
		kv_buf_release(&prefix);
		kv_msg_release(&rep);
		return rc;
	}
	case KV_MSG_STATS:
		kv_msg_stats_push(&rep, kv_slice_str("get_requests"), 7);
		kv_msg_stats_push(&rep, kv_slice_str("put_requests"), 3);
		break;
	default:
		pthread_mutex_unlock(&s->lock);
		kv_msg_release(&rep);
		return fake_send_error(fd, fr->request_id, KV_EINVAL, "not a client request");
	}
	pthread_mutex_unlock(&s->lock);
	rc = fake_send(fd, &rep, fr->request_id);
	kv_msg_release(&rep);
	return rc;
}

static void *fake_conn_main(void *argp)
{
	struct fake_conn_arg *arg = argp;
	struct fake *f = arg->f;
	int fd = arg->fd;
	free(arg);
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_HANDSHAKE);
	if (fake_handshake(f, fd, &d) < 0)
		goto out;
	atomic_fetch_add(&f->conns, 1);
	for (;;) {
		struct kv_frame fr = KV_FRAME_INIT;
		struct kv_msg req;
		kv_msg_init(&req, KV_MSG_NONE);
		if (fake_read(f, fd, &d, &fr) < 0)
			break;
		atomic_fetch_add(&f->store->requests, 1);
		int rc = kv_msg_decode_frame(&fr, NULL, &req);
		if (rc == 0 && (req.type == KV_MSG_PUT || req.type == KV_MSG_DELETE)) {
			pthread_mutex_lock(&f->store->lock);
			if (f->store->nseen < SEEN_MAX)
				memcpy(f->store->seen[f->store->nseen++], req.put.request_id,
				       KV_REQUEST_ID_LEN);
			pthread_mutex_unlock(&f->store->lock);
		}
		bool close_it = false;
		if (rc < 0) {
			fake_send_error(fd, fr.request_id, rc, "bad request");
		} else if (f->mode == FAKE_OK) {
			close_it = fake_answer(f, fd, &fr, &req) < 0;
		} else if (f->mode == FAKE_GARBAGE) {
			const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
			(void)!send(fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL);
			close_it = true;
		} else if (f->mode == FAKE_BAD_BODY) {
			struct kv_buf b = KV_BUF_INIT;
			const uint8_t bad[] = { 0xff, 0xff, 0xff, 0xff };
			kv_frame_encode(&b, 1, 0, kv_msg_reply_type(fr.type), fr.request_id,
					kv_slice_make(bad, sizeof(bad)));
			(void)!send(fd, b.p, b.n, MSG_NOSIGNAL);
			kv_buf_release(&b);
		} else if (f->mode == FAKE_DROP) {
			close_it = true;
		} else if (f->mode == FAKE_SPLIT) {
			struct kv_buf b = KV_BUF_INIT;
			struct kv_msg m;
			kv_msg_init(&m, KV_MSG_GET_REPLY);
			assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, fr.request_id, &b), 0);
			kv_msg_release(&m);
			kv_msg_init(&m, KV_MSG_ERROR);
			m.error.code = KV_ETIMEDOUT;
			m.error.text = kv_slice_str("idle; closing");
			assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 0, &b), 0);
			(void)!send(fd, b.p, 10, MSG_NOSIGNAL);
			usleep(20000);
			(void)!send(fd, b.p + 10, b.n - 10, MSG_NOSIGNAL);
			kv_buf_release(&b);
		} /* FAKE_SILENT: read on, answer nothing */
		kv_msg_release(&req);
		kv_frame_release(&fr);
		if (close_it)
			break;
	}
out:
	kv_frame_decoder_release(&d);
	shutdown(fd, SHUT_RDWR);
	return NULL;
}

static void *fake_accept_main(void *argp)
{
	struct fake *f = argp;
	while (!atomic_load(&f->stop)) {
		struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (f->nconn == FAKE_CONNS_MAX) {
			close(fd);
			continue;
		}
		struct fake_conn_arg *arg = malloc(sizeof(*arg));
		arg->f = f;
		arg->fd = fd;
		f->conn_fds[f->nconn] = fd;
		if (pthread_create(&f->conn_threads[f->nconn], NULL, fake_conn_main, arg) != 0) {
			free(arg);
			close(fd);
			continue;
		}
		f->nconn++;
	}
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode, const char *secret,
		       struct fake_store *store)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->store = store;
	assert_int_equal(kv_auth_secret_set(&f->secret, kv_slice_str(secret)), 0);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 64), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_accept_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	for (size_t i = 0; i < f->nconn; i++) {
		pthread_join(f->conn_threads[i], NULL);
		close(f->conn_fds[i]);
	}
	close(f->lfd);
	kv_auth_secret_release(&f->secret);
}

/* A loopback port where nothing listens (connect is refused). */
static uint16_t dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

static struct kv_client *client_for(const char *nodes, const char *secret, uint32_t timeout_ms,
				    unsigned conns)
{
	struct kv_auth_secret s;
	assert_int_equal(kv_auth_secret_set(&s, kv_slice_str(secret)), 0);
	struct kv_client_config cfg = {
		.nodes = nodes,
		.secret = &s,
		.timeout_ms = timeout_ms,
		.conns_per_node = conns,
	};
	struct kv_client *c = NULL;
	int rc = kv_client_new(&cfg, &c);
	kv_auth_secret_release(&s);
	assert_int_equal(rc, 0);
	return c;
}

static struct kv_slice S(const char *s)
{
	return kv_slice_str(s);
}

/* ---- tests ---- */

static void test_client__handshake_gives_cluster_settings(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "sesame", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "sesame", 2000, 2);
	uint8_t n, r, w;
	assert_false(kv_client_quorum(c, &n, &r, &w));
	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, S("/missing"), NULL, &got), 0);
	assert_int_equal(got.n, 0); /* not found: a set with no versions */
	assert_true(kv_client_quorum(c, &n, &r, &w));
	assert_int_equal(n, 3);
	assert_int_equal(r, 2);
	assert_int_equal(w, 2);
	assert_string_equal(kv_client_errmsg(c), "");
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__wrong_secret_is_refused(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "sesame", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "not-sesame", 2000, 2);
	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), -EACCES);
	assert_non_null(strstr(kv_client_errmsg(c), "secret"));
	assert_int_equal(atomic_load(&f.conns), 0);
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__put_get_and_delete_round_trip(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	const uint8_t odd_key[] = { '/', 'k', 0, 'y', 0xff };
	struct kv_slice key = kv_slice_make(odd_key, sizeof(odd_key));
	struct kv_dot dot1, dot2;
	struct kv_ctx ctx = KV_CTX_INIT;
	assert_int_equal(kv_client_put(c, key, NULL, S("m"), S("hello"), NULL, &dot1, &ctx), 0);
	assert_true(kv_ctx_covers(&ctx, dot1));

	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, key, NULL, &got), 0);
	assert_int_equal(got.n, 1);
	assert_true(kv_dot_eq(got.v[0].dot, dot1));
	assert_true(kv_slice_eq(got.v[0].body, S("hello")));
	assert_true(kv_slice_eq(got.v[0].meta, S("m")));

	/* a put with the context read replaces; a blind put adds a sibling */
	assert_int_equal(kv_client_put(c, key, &got.ctx, S(""), S("v2"), NULL, &dot2, NULL), 0);
	assert_int_equal(kv_client_put(c, key, NULL, S(""), S("v3"), NULL, NULL, NULL), 0);
	assert_int_equal(kv_client_get(c, key, NULL, &got), 0);
	assert_int_equal(got.n, 2);

	/* delete with that context: a tombstone covering both */
	struct kv_dot dot3;
	assert_int_equal(kv_client_delete(c, key, &got.ctx, NULL, &dot3, &ctx), 0);
	assert_int_equal(kv_client_get(c, key, NULL, &got), 0);
	assert_int_equal(kv_dvv_live_count(&got), 0);
	assert_true(kv_ctx_covers(&got.ctx, dot2));

	kv_ctx_release(&ctx);
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__known_request_id_returns_the_first_dot(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	uint8_t id[KV_REQUEST_ID_LEN];
	kv_client_request_id(id);
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.request_id = id;
	struct kv_dot d1, d2;
	assert_int_equal(kv_client_put(c, S("/r"), NULL, S(""), S("x"), &call, &d1, NULL), 0);
	assert_int_equal(kv_client_put(c, S("/r"), NULL, S(""), S("x"), &call, &d2, NULL), 1);
	assert_true(kv_dot_eq(d1, d2));
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__error_reply_is_returned_not_retried(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f1, f2;
	store_init(&st);
	fake_start(&f1, FAKE_OK, "", &st);
	fake_start(&f2, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u,127.0.0.1:%u", f1.port, f2.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	assert_int_equal(kv_client_put(c, S("/quorum"), NULL, S(""), S("x"), NULL, NULL, NULL),
			 KV_EQUORUM);
	assert_string_equal(kv_client_errmsg(c), "write quorum not met: 1 of 2 acks within 5s");
	assert_int_equal(atomic_load(&st.requests), 1);
	kv_client_free(c);
	fake_stop(&f1);
	fake_stop(&f2);
	store_release(&st);
}

static void test_client__fails_over_with_the_same_request_id(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake drop, live;
	store_init(&st);
	fake_start(&drop, FAKE_DROP, "", &st);
	fake_start(&live, FAKE_OK, "", &st);
	char nodes[128];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", dead_port(),
		 drop.port, live.port);
	struct kv_client *c = client_for(nodes, "", 3000, 2);
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.node = 0; /* dead first, then the one that drops, then the live one */
	struct kv_dot dot;
	assert_int_equal(kv_client_put(c, S("/f"), NULL, S(""), S("once"), &call, &dot, NULL), 0);
	assert_int_equal(st.nseen, 2); /* read by the dropping node, then by the live one */
	assert_memory_equal(st.seen[0], st.seen[1], KV_REQUEST_ID_LEN);
	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, S("/f"), NULL, &got), 0);
	assert_int_equal(got.n, 1);
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&drop);
	fake_stop(&live);
	store_release(&st);
}

static void test_client__no_node_reachable_fails_fast(void **state)
{
	(void)state;
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u,127.0.0.1:%u", dead_port(), dead_port());
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	struct kv_dvv got = KV_DVV_INIT;
	uint64_t t0 = kv_now_ns();
	assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), -ECONNREFUSED);
	assert_true(kv_now_ns() - t0 < 1000000000ull);
	assert_non_null(strstr(kv_client_errmsg(c), "no node reachable"));
	kv_client_free(c);
}

static void test_client__deadline_is_respected_when_node_is_silent(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_SILENT, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 5000, 2);
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.timeout_ms = 300;
	struct kv_dvv got = KV_DVV_INIT;
	uint64_t t0 = kv_now_ns();
	assert_int_equal(kv_client_get(c, S("/a"), &call, &got), KV_ETIMEDOUT);
	uint64_t ms = (kv_now_ns() - t0) / 1000000;
	assert_true(ms >= 290);
	assert_true(ms < 1500);
	assert_non_null(strstr(kv_client_errmsg(c), "timed out"));
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__garbage_reply_is_a_clean_error(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake g, b;
	store_init(&st);
	fake_start(&g, FAKE_GARBAGE, "", &st);
	fake_start(&b, FAKE_BAD_BODY, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", g.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), KV_ECORRUPT);
	assert_non_null(strstr(kv_client_errmsg(c), "malformed"));
	kv_client_free(c);

	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", b.port);
	c = client_for(nodes, "", 2000, 2);
	assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), KV_ECORRUPT);
	assert_non_null(strstr(kv_client_errmsg(c), "malformed GET_REPLY"));
	struct kv_client_stats sts = KV_CLIENT_STATS_INIT;
	assert_int_equal(kv_client_stats(c, 0, NULL, &sts), KV_ECORRUPT);
	assert_int_equal(sts.n, 0);
	kv_client_free(c);
	fake_stop(&g);
	fake_stop(&b);
	store_release(&st);
}

static void test_client__list_walks_every_page(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	const char *names[] = { "a", "b", "c", "d", "e" };
	for (size_t i = 0; i < 5; i++) {
		char key[16];
		snprintf(key, sizeof(key), "/d/%s", names[i]);
		assert_int_equal(kv_client_put(c, S(key), NULL, S("attr"), S(""), NULL, NULL, NULL), 0);
	}
	assert_int_equal(kv_client_put(c, S("/d/e/deeper"), NULL, S(""), S(""), NULL, NULL, NULL), 0);
	struct kv_client_list_page page = KV_CLIENT_LIST_PAGE_INIT;
	struct kv_buf cursor = KV_BUF_INIT;
	size_t seen = 0, pages = 0;
	for (;;) {
		assert_int_equal(kv_client_list(c, S("/d"), kv_buf_slice(&cursor), 2, NULL, &page), 0);
		pages++;
		for (size_t i = 0; i < page.n; i++) {
			assert_true(seen < 5);
			assert_true(kv_slice_eq(kv_buf_slice(&page.entries[i].name), S(names[seen])));
			assert_int_equal(page.entries[i].set.n, 1);
			assert_true(kv_slice_eq(page.entries[i].set.v[0].meta, S("attr")));
			seen++;
		}
		if (!page.more)
			break;
		kv_buf_reset(&cursor);
		kv_buf_append(&cursor, page.next_cursor.p, page.next_cursor.n);
		assert_true(pages < 10);
	}
	assert_int_equal(seen, 5);
	assert_int_equal(pages, 3);
	kv_client_list_page_release(&page);
	kv_client_list_page_release(&page); /* safe to repeat */
	kv_buf_release(&cursor);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__stats_of_one_node(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u,127.0.0.1:%u", dead_port(), f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	struct kv_client_stats sts = KV_CLIENT_STATS_INIT;
	assert_int_equal(kv_client_stats(c, 1, NULL, &sts), 0);
	assert_int_equal(sts.n, 2);
	assert_string_equal(sts.v[0].name, "get_requests");
	assert_int_equal(sts.v[0].value, 7);
	assert_string_equal(sts.v[1].name, "put_requests");
	/* a named node: no fail-over to another */
	assert_int_equal(kv_client_stats(c, 0, NULL, &sts), -ECONNREFUSED);
	assert_int_equal(sts.n, 2); /* unchanged on failure */
	assert_int_equal(kv_client_stats(c, 2, NULL, &sts), KV_EINVAL);
	kv_client_stats_release(&sts);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

struct worker {
	struct kv_client *c;
	int id;
	int failures;
};

static void *worker_main(void *argp)
{
	struct worker *w = argp;
	struct kv_dvv got = KV_DVV_INIT;
	for (int i = 0; i < 40; i++) {
		char key[32], val[32];
		snprintf(key, sizeof(key), "/w/%d", w->id);
		snprintf(val, sizeof(val), "v%d", i);
		if (kv_client_get(w->c, S(key), NULL, &got) != 0) {
			w->failures++;
			continue;
		}
		if (kv_client_put(w->c, S(key), &got.ctx, S(""), S(val), NULL, NULL, NULL) != 0)
			w->failures++;
	}
	if (kv_client_get(w->c, S("/w/none"), NULL, &got) != 0)
		w->failures++;
	kv_dvv_release(&got);
	return NULL;
}

static void test_client__concurrent_calls_from_many_threads(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f1, f2;
	store_init(&st);
	fake_start(&f1, FAKE_OK, "", &st);
	fake_start(&f2, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u,127.0.0.1:%u", f1.port, f2.port);
	struct kv_client *c = client_for(nodes, "", 5000, 2);
	enum { NT = 8 };
	pthread_t th[NT];
	struct worker w[NT];
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .c = c, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	/* each key was read and overwritten in turn: one version left */
	struct kv_dvv got = KV_DVV_INIT;
	for (int i = 0; i < NT; i++) {
		char key[32];
		snprintf(key, sizeof(key), "/w/%d", i);
		assert_int_equal(kv_client_get(c, S(key), NULL, &got), 0);
		assert_int_equal(got.n, 1);
		assert_true(kv_slice_eq(got.v[0].body, S("v39")));
	}
	assert_int_equal(atomic_load(&st.requests), NT * 81 + NT);
	/* connections are pooled: far fewer than calls */
	assert_true(atomic_load(&f1.conns) <= 2);
	assert_true(atomic_load(&f2.conns) <= 2);
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&f1);
	fake_stop(&f2);
	store_release(&st);
}

static void test_client__connections_are_reused(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_OK, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	struct kv_dvv got = KV_DVV_INIT;
	for (int i = 0; i < 20; i++)
		assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), 0);
	assert_int_equal(atomic_load(&f.conns), 1);
	kv_dvv_release(&got);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

/*
 * A reply that arrives in pieces is put together; bytes after it (a
 * node's closing ERROR) are never taken for the next reply: that
 * connection is not reused.
 */
static void test_client__split_reply_and_stray_bytes(void **state)
{
	(void)state;
	struct fake_store st;
	struct fake f;
	store_init(&st);
	fake_start(&f, FAKE_SPLIT, "", &st);
	char nodes[64];
	snprintf(nodes, sizeof(nodes), "127.0.0.1:%u", f.port);
	struct kv_client *c = client_for(nodes, "", 2000, 2);
	for (int i = 0; i < 3; i++) {
		struct kv_dvv got = KV_DVV_INIT;
		assert_int_equal(kv_client_get(c, S("/a"), NULL, &got), 0);
		assert_int_equal(got.n, 0);
		kv_dvv_release(&got);
	}
	assert_int_equal(atomic_load(&f.conns), 3);
	kv_client_free(c);
	fake_stop(&f);
	store_release(&st);
}

static void test_client__bad_config_is_refused(void **state)
{
	(void)state;
	const char *bad[] = { "", "127.0.0.1:", "127.0.0.1:70000", ":7400", "[::1",
			      "127.0.0.1:7400,,127.0.0.1:7401", "no-such-host.invalid:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kv_client_config cfg = { .nodes = bad[i] };
		struct kv_client *c = (struct kv_client *)1;
		assert_int_equal(kv_client_new(&cfg, &c), KV_EINVAL);
		assert_null(c);
		assert_true(kv_client_errmsg(NULL)[0] != '\0');
	}
	struct kv_client_config cfg = { .nodes = "127.0.0.1", .cluster = "bad name" };
	struct kv_client *c = NULL;
	assert_int_equal(kv_client_new(&cfg, &c), KV_EINVAL);
	cfg.cluster = NULL;
	assert_int_equal(kv_client_new(&cfg, &c), 0);
	assert_string_equal(kv_client_node_name(c, 0), "127.0.0.1");
	struct kv_client_call call = KV_CLIENT_CALL_INIT;
	call.node = 5;
	struct kv_dvv got = KV_DVV_INIT;
	assert_int_equal(kv_client_get(c, S("/a"), &call, &got), KV_EINVAL);
	kv_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client__handshake_gives_cluster_settings),
		cmocka_unit_test(test_client__wrong_secret_is_refused),
		cmocka_unit_test(test_client__put_get_and_delete_round_trip),
		cmocka_unit_test(test_client__known_request_id_returns_the_first_dot),
		cmocka_unit_test(test_client__error_reply_is_returned_not_retried),
		cmocka_unit_test(test_client__fails_over_with_the_same_request_id),
		cmocka_unit_test(test_client__no_node_reachable_fails_fast),
		cmocka_unit_test(test_client__deadline_is_respected_when_node_is_silent),
		cmocka_unit_test(test_client__garbage_reply_is_a_clean_error),
		cmocka_unit_test(test_client__list_walks_every_page),
		cmocka_unit_test(test_client__stats_of_one_node),
		cmocka_unit_test(test_client__concurrent_calls_from_many_threads),
		cmocka_unit_test(test_client__connections_are_reused),
		cmocka_unit_test(test_client__split_reply_and_stray_bytes),
		cmocka_unit_test(test_client__bad_config_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
