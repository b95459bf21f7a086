/*
 * server_net.c - the node's sockets (server.h; issue 4): the listener,
 * connections with their frame decoders and bounded write queues, the
 * handshake on both sides (doc/protocol.md §4), request dispatch, and one
 * outgoing connection per peer, bound to our own listen address (DESIGN §9),
 * with queueing while it connects, backoff, and fast fail-over.
 *
 * Design note: doc/node.md "The libuv driver".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/server_int.h"
#include "proto/auth.h"
#include "util/error.h"
#include "util/log.h"

#define BACKOFF_MIN_NS 100000000ull  /* 100 ms */
#define BACKOFF_MAX_NS 500000000ull /* 0.5 s: a healed peer is used again soon */
#define OUTSTANDING_MAX 65536u

static void conn_close(struct srv_conn *c, int err);
static void peer_lost(struct srv_peer *p, int err);

/* ---- Connections ------------------------------------------------------- */

static struct srv_conn **conn_hslot(struct kv_server *s, uint64_t id)
{
	struct srv_conn **pp = &s->conn_hash[id % SRV_HASH_BUCKETS];
	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->hnext;
	return pp;
}

struct srv_conn *kv_srv__conn_find(struct kv_server *s, uint64_t id)
{
	struct srv_conn *c = *conn_hslot(s, id);
	return c != NULL && !c->closed ? c : NULL;
}

static struct srv_conn *conn_new(struct kv_server *s, bool outgoing)
{
	struct srv_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->rbuf = malloc(SRV_READ_BUF);
	if (c->rbuf == NULL) {
		free(c);
		return NULL;
	}
	c->s = s;
	c->id = ++s->next_conn_id;
	c->outgoing = outgoing;
	c->opened_ns = kv_srv__now();
	kv_frame_decoder_init(&c->dec, KV_FRAME_MAX_BODY_HANDSHAKE);
	uv_tcp_init(&s->loop, &c->tcp);
	c->tcp.data = c;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	struct srv_conn **pp = &s->conn_hash[c->id % SRV_HASH_BUCKETS];
	c->hnext = *pp;
	*pp = c;
	return c;
}

static void conn_free_cb(uv_handle_t *h)
{
	struct srv_conn *c = h->data;
	kv_buf_release(&c->obuf);
	kv_frame_decoder_release(&c->dec);
	free(c->rbuf);
	free(c);
}

/*
 * Closes @c now (pending writes are cancelled). For our outgoing connection
 * to a peer, the peer is lost with @err (fast fail-over of what it owes).
 */
static void conn_close(struct srv_conn *c, int err)
{
	if (c->closed)
		return;
	struct kv_server *s = c->s;
	c->closed = true;
	c->state = CONN_CLOSING;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	struct srv_conn **pp = conn_hslot(s, c->id);
	if (*pp == c)
		*pp = c->hnext;
	if (c->dirty) {
		/* Frames not written yet are dropped with the connection. */
		struct srv_conn **dp = &s->dirty;
		while (*dp != c)
			dp = &(*dp)->dnext;
		*dp = c->dnext;
		c->dirty = false;
		c->dnext = NULL;
	}
	c->queued_bytes -= c->obuf.n;
	kv_buf_release(&c->obuf);
	struct srv_peer *p = c->peer;
	c->peer = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
	if (p != NULL && p->conn == c) {
		p->conn = NULL;
		peer_lost(p, err);
	}
}

/* Closes @c once what was written to it (an ERROR, say) has gone out. */
static void conn_close_flushed(struct srv_conn *c)
{
	if (c->closed || c->close_when_flushed)
		return;
	c->close_when_flushed = true;
	c->closing_since_ns = kv_srv__now();
	c->state = CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (c->queued_bytes == 0)
		conn_close(c, KV_ECLOSED);
}

/*
 * The next read goes to the connection's read buffer, or, in the middle of
 * a body with at least SRV_READ_BUF of it to come (a chunk's 4 MiB), straight
 * into the decoder's body: one copy of every byte fewer (read_cb).
 */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct srv_conn *c = h->data;
	size_t room = 0;
	uint8_t *direct = c->closed ? NULL
				    : kv_frame_decoder_body_room(&c->dec, SRV_READ_BUF, &room);
	if (direct != NULL) {
		*buf = uv_buf_init((char *)direct, room > UINT32_MAX ? UINT32_MAX : (unsigned)room);
		return;
	}
	*buf = uv_buf_init((char *)c->rbuf, SRV_READ_BUF);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct srv_conn *c)
{
	if (!c->closed && !c->close_when_flushed)
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

struct srv_wreq {
	uv_write_t req;
	struct srv_conn *c;
	uint8_t *p;
	size_t n;
};

static void write_cb(uv_write_t *req, int status)
{
	struct srv_wreq *wr = req->data;
	struct srv_conn *c = wr->c;
	c->queued_bytes -= wr->n;
	free(wr->p);
	free(wr);
	if (c->closed)
		return;
	if (status < 0) {
		kv_debug("node %s: write to connection %" PRIu64 ": %s", c->s->self_name, c->id,
			 uv_strerror(status));
		conn_close(c, status);
		return;
	}
	if (c->close_when_flushed) {
		if (c->queued_bytes == 0)
			conn_close(c, KV_ECLOSED);
		return;
	}
	/* Backpressure: resume reading once half the queue has drained. */
	if (c->paused && c->queued_bytes <= c->s->o.max_conn_queue_bytes / 2) {
		c->paused = false;
		conn_read_start(c);
	}
}

/*
 * Writes the frames queued in c->obuf with one write(2): uv_try_write()
 * first, which needs no write request, no completion callback and, in this
 * libuv, no epoll_ctl() afterwards (a finished uv_write() costs one); what
 * the socket does not take goes to one uv_write(). Returns 0, or an error
 * or KV_ECLOSED when @c was closed (by a failure, or because it was closing
 * once flushed).
 */
static int conn_flush(struct srv_conn *c)
{
	if (c->closed || c->obuf.n == 0)
		return c->closed ? KV_ECLOSED : 0;
	struct kv_server *s = c->s;
	s->c.socket_writes++;
	uv_buf_t ub = uv_buf_init((char *)c->obuf.p, (unsigned)c->obuf.n);
	int k = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
	if (k < 0 && k != UV_EAGAIN) {
		conn_close(c, k);
		return k;
	}
	size_t done = k > 0 ? (size_t)k : 0;
	c->queued_bytes -= done;
	if (done == c->obuf.n) {
		c->obuf.n = 0; /* all written: keep the buffer for the next round */
		if (c->close_when_flushed && c->queued_bytes == 0) {
			conn_close(c, KV_ECLOSED);
			return KV_ECLOSED;
		}
		if (c->paused && c->queued_bytes <= s->o.max_conn_queue_bytes / 2) {
			c->paused = false;
			conn_read_start(c);
		}
		return 0;
	}
	struct srv_wreq *wr = calloc(1, sizeof *wr);
	if (wr == NULL) {
		conn_close(c, -ENOMEM);
		return -ENOMEM;
	}
	wr->c = c;
	wr->n = c->obuf.n - done;
	/* The rest is written from where the kernel stopped taking it: no
	 * memmove of what can be megabytes (a chunk frame). */
	size_t whole;
	wr->p = kv_buf_detach(&c->obuf, &whole);
	wr->req.data = wr;
	ub = uv_buf_init((char *)wr->p + done, (unsigned)wr->n);
	int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &ub, 1, write_cb);
	if (rc != 0) {
		c->queued_bytes -= wr->n;
		free(wr->p);
		free(wr);
		conn_close(c, rc);
		return rc;
	}
	return 0;
}

/*
 * Writes every connection's queued frames: called before the loop blocks
 * (prepare) and after each round of I/O callbacks (check), so the replies,
 * acks and replica writes that one round produced for one connection leave
 * in one write(2) instead of one each.
 */
void kv_srv__flush_dirty(struct kv_server *s)
{
	kv_srv__reads_flush(s);
	while (s->dirty != NULL) {
		struct srv_conn *c = s->dirty;
		s->dirty = c->dnext;
		c->dnext = NULL;
		c->dirty = false;
		(void)conn_flush(c); /* may close @c (unlinked already) */
	}
}

/* Both also commit the round's writes (kv_srv__commit_round flushes first). */
static void flush_prepare_cb(uv_prepare_t *h)
{
	kv_srv__commit_round(h->data);
}

static void flush_check_cb(uv_check_t *h)
{
	kv_srv__commit_round(h->data);
}

/* A connection's obuf above this is written at once, not at the end of the round. */
#define OBUF_FLUSH_BYTES (256u * 1024)

/*
 * Queues @nbytes just appended to c->obuf: counts them, marks @c for the
 * flush at the end of the loop round, and applies backpressure.
 */
static void conn_queued(struct srv_conn *c, size_t nbytes)
{
	struct kv_server *s = c->s;
	c->queued_bytes += nbytes;
	s->c.frames_sent++;
	if (!c->dirty) {
		c->dirty = true;
		c->dnext = s->dirty;
		s->dirty = c;
	}
	if (c->obuf.n >= OBUF_FLUSH_BYTES || !s->flush_up) {
		/* Large, or no flush handles (not started / stopping): now. */
		struct srv_conn **dp = &s->dirty;
		while (*dp != c)
			dp = &(*dp)->dnext;
		*dp = c->dnext;
		c->dirty = false;
		c->dnext = NULL;
		if (conn_flush(c) != 0)
			return;
	}
	/* A client that does not read its replies stops being read (DESIGN §9). */
	if (!c->outgoing && !c->paused && c->queued_bytes > s->o.max_conn_queue_bytes) {
		c->paused = true;
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
}

/* Queues the bytes of @b (taken over; @b is left empty). 0 or an error. */
static int conn_write(struct srv_conn *c, struct kv_buf *b)
{
	if (c->closed) {
		kv_buf_release(b);
		return KV_ECLOSED;
	}
	size_t n = b->n;
	if (c->obuf.n == 0) {
		struct kv_buf empty = c->obuf; /* take @b's bytes over: no copy */
		c->obuf = *b;
		*b = empty;
	} else if (kv_buf_append(&c->obuf, b->p, b->n) != 0) {
		kv_buf_release(b);
		return -ENOMEM;
	}
	kv_buf_release(b);
	conn_queued(c, n);
	return 0;
}

static int encode(struct kv_server *s, const struct kv_msg *m, uint64_t request_id,
		  struct kv_buf *out)
{
	return kv_msg_encode_frame(m, &s->limits, KV_PROTO_VERSION_MIN, 0, request_id, out);
}

int kv_srv__conn_send(struct srv_conn *c, const struct kv_msg *m, uint64_t request_id)
{
	struct kv_server *s = c->s;
	if (c->closed)
		return KV_ECLOSED;
	size_t before = c->obuf.n;
	int rc = encode(s, m, request_id, &c->obuf); /* appends; unchanged on failure */
	if (rc != 0) {
		if (m->type == KV_MSG_ERROR)
			return rc;
		kv_warn("node %s: cannot encode %s: %s", s->self_name, kv_msg_type_name(m->type),
			kv_strerror(rc));
		kv_srv__conn_error(c, request_id, rc == KV_ETOOBIG && m->type == KV_MSG_GET_REPLY
						       ? KV_ESIBLINGS : rc,
				   "cannot encode the %s: %s", kv_msg_type_name(m->type),
				   kv_strerror(rc));
		return rc;
	}
	if (m->type == KV_MSG_ERROR)
		s->c.errors_sent++;
	conn_queued(c, c->obuf.n - before);
	return 0;
}

void kv_srv__conn_error(struct srv_conn *c, uint64_t request_id, int code, const char *fmt, ...)
{
	char text[KV_MSG_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_ERROR);
	m.error.code = code < 0 ? code : KV_EINVAL;
	m.error.text = kv_slice_str(text);
	(void)kv_srv__conn_send(c, &m, request_id);
	kv_msg_release(&m);
}

/* ---- Peers: the outgoing side ------------------------------------------ */

static struct srv_peer *peer_find(struct kv_server *s, uint32_t id)
{
	for (size_t i = 0; i < s->npeers; i++)
		if (s->peers[i].id == id)
			return &s->peers[i];
	return NULL;
}

static void outstanding_add(struct srv_peer *p, uint64_t request_id)
{
	struct kv_server *s = p->s;
	uint64_t now = kv_srv__now();
	if (p->nout == p->capout) {
		/* Forget requests far past any deadline: their op is gone. */
		uint64_t horizon = 2ull * (s->o.timeout_ms + s->o.forward_timeout_ms) * 1000000u;
		size_t k = 0;
		for (size_t i = 0; i < p->nout; i++)
			if (now - p->out[i].sent_ns < horizon)
				p->out[k++] = p->out[i];
		p->nout = k;
	}
	if (p->nout == p->capout) {
		if (p->capout >= OUTSTANDING_MAX) {
			memmove(p->out, p->out + 1, (p->nout - 1) * sizeof *p->out);
			p->nout--;
		} else {
			size_t cap = p->capout ? p->capout * 2 : 64;
			struct srv_outstanding *o = realloc(p->out, cap * sizeof *o);
			if (o == NULL)
				return;
			p->out = o;
			p->capout = cap;
		}
	}
	p->out[p->nout++] = (struct srv_outstanding){ request_id, now };
}

void kv_srv__peer_answered(struct kv_server *s, uint32_t from, uint64_t request_id)
{
	struct srv_peer *p = peer_find(s, from);
	if (p == NULL)
		return;
	for (size_t i = p->nout; i-- > 0;)
		if (p->out[i].request_id == request_id) {
			memmove(p->out + i, p->out + i + 1, (p->nout - i - 1) * sizeof *p->out);
			p->nout--;
			return;
		}
}

/*
 * The peer is unreachable (connect refused or timed out, connection reset,
 * handshake refused) or its connection ended. Every request it owes an
 * answer is answered by a synthetic ERROR KV_ECLOSED (fast fail-over); a
 * failed connect or handshake also starts a backoff, during which requests
 * to it fail at once.
 */
static void peer_lost(struct srv_peer *p, int err)
{
	struct kv_server *s = p->s;
	bool was_ready = p->state == PEER_READY;
	uv_timer_stop(&p->connect_timer);
	kv_buf_release(&p->pending);
	s->c.peer_failures++;
	if (was_ready && err == UV_EOF) {
		p->state = PEER_IDLE; /* a clean end: the next send reconnects at once */
		kv_info("node %s: connection to node %" PRIu32 " ended", s->self_name, p->id);
	} else {
		p->backoff_ns = p->backoff_ns ? p->backoff_ns * 2 : BACKOFF_MIN_NS;
		if (p->backoff_ns > BACKOFF_MAX_NS)
			p->backoff_ns = BACKOFF_MAX_NS;
		p->retry_at_ns = kv_srv__now() + p->backoff_ns;
		p->state = PEER_DOWN;
		if (!p->logged_down && !s->stopping)
			kv_warn("node %s: node %" PRIu32 " unreachable: %s", s->self_name, p->id,
				err == UV_EOF ? "connection closed" : kv_strerror(err));
		p->logged_down = true;
	}
	struct srv_outstanding *out = p->out;
	size_t nout = p->nout;
	p->out = NULL;
	p->nout = p->capout = 0;
	for (size_t i = 0; i < nout; i++)
		kv_srv__synth_error(s, p->id, out[i].request_id);
	free(out);
}

static void send_hello(struct srv_conn *c)
{
	struct kv_server *s = c->s;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_HELLO);
	struct kv_msg_hello *h = &m.hello;
	h->min_version = KV_PROTO_VERSION_MIN;
	h->max_version = KV_PROTO_VERSION_MAX;
	h->role = KV_MSG_ROLE_NODE;
	size_t nid = strlen(s->self_name), ncl = strlen(s->o.cluster);
	memcpy(c->hello_id, s->self_name, nid);
	memcpy(c->hello_cluster, s->o.cluster, ncl);
	h->node_id = kv_slice_make(c->hello_id, nid);
	h->cluster = kv_slice_make(c->hello_cluster, ncl);
	kv_auth_nonce(h->nonce);
	c->hello = *h;
	c->hs_step = 0;
	(void)kv_srv__conn_send(c, &m, 0);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct srv_conn *c = req->data;
	if (c->closed)
		return;
	if (status < 0) {
		conn_close(c, status);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_read_start(c);
	send_hello(c);
}

static void connect_timeout_cb(uv_timer_t *h)
{
	struct srv_peer *p = h->data;
	if (p->conn != NULL)
		conn_close(p->conn, KV_ETIMEDOUT);
}

/* Starts connecting to @p; on a synchronous failure @p is left PEER_DOWN. */
static void peer_connect(struct srv_peer *p)
{
	struct kv_server *s = p->s;
	struct srv_conn *c = conn_new(s, true);
	if (c == NULL) {
		peer_lost(p, -ENOMEM);
		return;
	}
	c->peer = p;
	p->conn = c;
	p->state = PEER_CONNECTING;
	s->c.peer_connects++;
	/* DESIGN §9: bind to our own address, so rules and captures tell nodes apart. */
	struct sockaddr_in local;
	int rc = uv_ip4_addr(s->o.listen_host, 0, &local);
	if (rc == 0)
		rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&local, 0);
	if (rc == 0) {
		p->connect_req.data = c;
		rc = uv_tcp_connect(&p->connect_req, &c->tcp, (const struct sockaddr *)&p->addr,
				    connect_cb);
	}
	if (rc != 0) {
		conn_close(c, rc);
		return;
	}
	uv_timer_start(&p->connect_timer, connect_timeout_cb, s->o.connect_timeout_ms, 0);
}

void kv_srv__peer_abort(struct kv_server *s, uint32_t id)
{
	struct srv_peer *p = peer_find(s, id);
	if (p == NULL || p->conn == NULL)
		return;
	struct srv_conn *c = p->conn;
	/*
	 * SO_LINGER 0: the close sends RST and the kernel discards what it
	 * still holds for the peer, so a frame held up by a partition is
	 * never delivered after it heals (kv_effects.aborts).
	 */
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	kv_info("node %s: gave up on node %" PRIu32 "; connection reset", s->self_name, id);
	conn_close(c, KV_ECLOSED);
}

void kv_srv__peer_send(struct kv_server *s, uint32_t to, const struct kv_msg *m,
		       uint64_t request_id)
{
	struct srv_peer *p = peer_find(s, to);
	if (p == NULL || s->stopping)
		return;
	bool request = kv_msg_reply_type(m->type) != KV_MSG_NONE;
	struct kv_buf b = KV_BUF_INIT;
	int rc = encode(s, m, request_id, &b);
	if (rc != 0) {
		kv_warn("node %s: cannot encode %s for node %" PRIu32 ": %s", s->self_name,
			kv_msg_type_name(m->type), to, kv_strerror(rc));
		kv_buf_release(&b);
		return; /* the core's timer handles it */
	}
	if (p->state == PEER_DOWN && kv_srv__now() >= p->retry_at_ns)
		p->state = PEER_IDLE;
	if (p->state == PEER_IDLE)
		peer_connect(p);
	switch (p->state) {
	case PEER_DOWN:
		/* Known unreachable: fail over now rather than at the timeout. */
		if (request)
			kv_srv__synth_error(s, p->id, request_id);
		break;
	case PEER_CONNECTING:
		if (p->pending.n + b.n > s->o.max_conn_queue_bytes) {
			kv_debug("node %s: queue to node %" PRIu32 " full; %s dropped",
				 s->self_name, to, kv_msg_type_name(m->type));
			break;
		}
		if (kv_buf_append(&p->pending, b.p, b.n) != 0)
			break;
		if (request)
			outstanding_add(p, request_id);
		break;
	case PEER_READY:
		if (p->conn->queued_bytes > s->o.max_conn_queue_bytes) {
			kv_debug("node %s: node %" PRIu32 " is not reading; %s dropped",
				 s->self_name, to, kv_msg_type_name(m->type));
			break;
		}
		if (request)
			outstanding_add(p, request_id);
		(void)conn_write(p->conn, &b);
		break;
	case PEER_IDLE:
		break;
	}
	kv_buf_release(&b);
}

/* ---- The handshake (doc/protocol.md §4) -------------------------------- */

/* Parses a node id ("12") that must name a member. 0 when it does not. */
static uint32_t member_id(struct kv_server *s, struct kv_slice name)
{
	if (name.n == 0 || name.n > 10)
		return 0;
	uint64_t v = 0;
	for (size_t i = 0; i < name.n; i++) {
		if (name.p[i] < '0' || name.p[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(name.p[i] - '0');
	}
	if (name.p[0] == '0' || v > UINT32_MAX)
		return 0;
	for (size_t i = 0; i < s->o.n_members; i++)
		if (s->o.members[i].id == v)
			return (uint32_t)v;
	return 0;
}

static void refuse(struct srv_conn *c, int code, const char *what)
{
	kv_srv__conn_error(c, 0, code, "%s", what);
	conn_close_flushed(c);
}

static void become_ready(struct srv_conn *c)
{
	c->state = CONN_READY;
	kv_frame_decoder_set_max(&c->dec, KV_FRAME_MAX_BODY_DEFAULT);
	(void)kv_frame_decoder_set_versions(&c->dec, KV_PROTO_VERSION_MIN, KV_PROTO_VERSION_MIN);
}

/* The accepting side: HELLO -> CHALLENGE, AUTH -> WELCOME. */
static void hs_accept(struct srv_conn *c, const struct kv_msg *m)
{
	struct kv_server *s = c->s;
	char text[256];
	if (c->hs_step == 0 && m->type == KV_MSG_HELLO) {
		const struct kv_msg_hello *h = &m->hello;
		if (h->min_version > KV_PROTO_VERSION_MAX || h->max_version < KV_PROTO_VERSION_MIN) {
			snprintf(text, sizeof text, "no common protocol version (this node speaks %d-%d)",
				 KV_PROTO_VERSION_MIN, KV_PROTO_VERSION_MAX);
			refuse(c, KV_EVERSION, text);
			return;
		}
		if (!kv_slice_eq(h->cluster, kv_slice_str(s->o.cluster))) {
			snprintf(text, sizeof text, "cluster \"%.*s\" is not this node's (\"%s\")",
				 (int)h->cluster.n, (const char *)h->cluster.p, s->o.cluster);
			refuse(c, KV_EINVAL, text);
			return;
		}
		if (h->role == KV_MSG_ROLE_NODE) {
			c->node_id = member_id(s, h->node_id);
			if (c->node_id == 0) {
				snprintf(text, sizeof text, "node id \"%.*s\" is not a member of this cluster",
					 (int)h->node_id.n, (const char *)h->node_id.p);
				kv_warn("node %s: refused: %s", s->self_name, text);
				refuse(c, KV_EINVAL, text);
				return;
			}
		}
		memcpy(c->hello_id, h->node_id.p, h->node_id.n);
		memcpy(c->hello_cluster, h->cluster.p, h->cluster.n);
		c->hello = *h;
		c->hello.node_id = kv_slice_make(c->hello_id, h->node_id.n);
		c->hello.cluster = kv_slice_make(c->hello_cluster, h->cluster.n);
		struct kv_msg ch;
		kv_msg_init(&ch, KV_MSG_CHALLENGE);
		ch.challenge.version = KV_PROTO_VERSION_MAX < h->max_version ? KV_PROTO_VERSION_MAX
									       : h->max_version;
		size_t nid = strlen(s->self_name);
		memcpy(c->challenge_id, s->self_name, nid);
		ch.challenge.node_id = kv_slice_make(c->challenge_id, nid);
		kv_auth_nonce(ch.challenge.nonce);
		if (kv_auth_mac(&s->o.secret, true, &c->hello, &ch.challenge, ch.challenge.mac) != 0) {
			refuse(c, -ENOMEM, "out of memory");
			return;
		}
		c->challenge = ch.challenge;
		c->hs_step = 1;
		(void)kv_srv__conn_send(c, &ch, 0);
		return;
	}
	if (c->hs_step == 1 && m->type == KV_MSG_AUTH) {
		if (kv_auth_verify(&s->o.secret, false, &c->hello, &c->challenge, m->auth.mac) != 0) {
			s->c.auth_failures++;
			kv_warn("node %s: connection %" PRIu64 " refused: bad cluster secret",
				s->self_name, c->id);
			refuse(c, KV_EINVAL, "bad cluster secret");
			return;
		}
		struct kv_msg w;
		kv_msg_init(&w, KV_MSG_WELCOME);
		w.welcome.n = (uint8_t)s->n;
		w.welcome.r = (uint8_t)s->r;
		w.welcome.w = (uint8_t)s->w;
		c->is_node = c->hello.role == KV_MSG_ROLE_NODE;
		if (c->is_node) {
			/*
			 * The peer has just proved it is alive: end our backoff
			 * towards it, so a restarted node takes replica writes
			 * at once instead of after up to BACKOFF_MAX_NS.
			 */
			struct srv_peer *back = peer_find(s, c->node_id);
			if (back != NULL && back->state == PEER_DOWN) {
				back->state = PEER_IDLE;
				back->backoff_ns = 0;
				back->retry_at_ns = 0;
			}
		}
		become_ready(c);
		(void)kv_srv__conn_send(c, &w, 0);
		kv_debug("node %s: connection %" PRIu64 " authenticated (%s %" PRIu32 ")",
			 s->self_name, c->id, c->is_node ? "node" : "client", c->node_id);
		return;
	}
	snprintf(text, sizeof text, "unexpected %s during the handshake",
		 kv_msg_type_name(m->type));
	refuse(c, KV_EINVAL, text);
}

/* The connecting side: CHALLENGE -> AUTH, WELCOME -> ready. */
static void hs_connect(struct srv_conn *c, const struct kv_msg *m)
{
	struct kv_server *s = c->s;
	struct srv_peer *p = c->peer;
	char text[256];
	if (p == NULL) {
		conn_close(c, KV_ECLOSED);
		return;
	}
	if (c->hs_step == 0 && m->type == KV_MSG_CHALLENGE) {
		char want[16];
		snprintf(want, sizeof want, "%" PRIu32, p->id);
		if (m->challenge.version != KV_PROTO_VERSION_MIN ||
		    !kv_slice_eq(m->challenge.node_id, kv_slice_str(want))) {
			kv_error("node %s: the node at the address of node %" PRIu32
				 " answers as \"%.*s\" (version %u)", s->self_name, p->id,
				 (int)m->challenge.node_id.n, (const char *)m->challenge.node_id.p,
				 m->challenge.version);
			refuse(c, KV_EINVAL, "unexpected node id or version in CHALLENGE");
			return;
		}
		memcpy(c->challenge_id, m->challenge.node_id.p, m->challenge.node_id.n);
		c->challenge = m->challenge;
		c->challenge.node_id = kv_slice_make(c->challenge_id, m->challenge.node_id.n);
		if (kv_auth_verify(&s->o.secret, true, &c->hello, &c->challenge, m->challenge.mac) !=
		    0) {
			s->c.auth_failures++;
			kv_error("node %s: node %" PRIu32 " does not hold the cluster secret",
				 s->self_name, p->id);
			refuse(c, KV_EINVAL, "bad cluster secret");
			return;
		}
		struct kv_msg a;
		kv_msg_init(&a, KV_MSG_AUTH);
		if (kv_auth_mac(&s->o.secret, false, &c->hello, &c->challenge, a.auth.mac) != 0) {
			refuse(c, -ENOMEM, "out of memory");
			return;
		}
		c->hs_step = 1;
		(void)kv_srv__conn_send(c, &a, 0);
		return;
	}
	if (c->hs_step == 1 && m->type == KV_MSG_WELCOME) {
		if (m->welcome.n != s->n) {
			/* N is fixed per cluster (DESIGN §4): never talk to another N. */
			snprintf(text, sizeof text,
				 "N=%u of node %" PRIu32 " disagrees with N=%" PRIu32 " of node %s",
				 m->welcome.n, p->id, s->n, s->self_name);
			kv_error("node %s: refusing node %" PRIu32 ": %s", s->self_name, p->id, text);
			refuse(c, KV_EINVAL, text);
			return;
		}
		become_ready(c);
		c->is_node = true;
		c->node_id = p->id;
		p->state = PEER_READY;
		p->backoff_ns = 0;
		if (p->logged_down)
			kv_info("node %s: node %" PRIu32 " reachable again", s->self_name, p->id);
		p->logged_down = false;
		uv_timer_stop(&p->connect_timer);
		if (p->pending.n > 0) {
			struct kv_buf b = p->pending;
			kv_buf_init(&p->pending);
			(void)conn_write(c, &b);
		}
		return;
	}
	if (m->type == KV_MSG_ERROR) {
		kv_error("node %s: node %" PRIu32 " refused the connection: %.*s", s->self_name,
			 p->id, (int)m->error.text.n, (const char *)m->error.text.p);
		conn_close(c, m->error.code);
		return;
	}
	snprintf(text, sizeof text, "unexpected %s during the handshake",
		 kv_msg_type_name(m->type));
	refuse(c, KV_EINVAL, text);
}

/* ---- Frames ------------------------------------------------------------ */

static bool is_peer_type(uint16_t t)
{
	return t >= KV_MSG_PEER_FIRST && t <= KV_MSG_PEER_LAST;
}

static void handle_handshake_frame(struct srv_conn *c, const struct kv_frame *f)
{
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_NONE);
	if (!kv_msg_type_is_handshake(f->type)) {
		refuse(c, KV_EINVAL, "authenticate first: the connection starts with HELLO");
		return;
	}
	int rc = kv_msg_decode_frame(f, NULL, &m);
	if (rc != 0) {
		kv_srv__conn_error(c, f->request_id, rc, "bad %s body: %s",
				   kv_msg_type_name(f->type), kv_strerror(rc));
		conn_close_flushed(c);
		return;
	}
	if (m.type == KV_MSG_ERROR && !c->outgoing) {
		kv_info("node %s: connection %" PRIu64 " gave up: %.*s", c->s->self_name, c->id,
			(int)m.error.text.n, (const char *)m.error.text.p);
		conn_close(c, KV_ECLOSED);
	} else if (c->outgoing) {
		hs_connect(c, &m);
	} else {
		hs_accept(c, &m);
	}
	kv_msg_release(&m);
}

static void handle_frame(struct srv_conn *c, const struct kv_frame *f)
{
	struct kv_server *s = c->s;
	if (c->state == CONN_HANDSHAKE) {
		handle_handshake_frame(c, f);
		return;
	}
	uint16_t t = f->type;
	if (t < sizeof s->c.by_type / sizeof s->c.by_type[0] && kv_msg_type_known(t))
		s->c.by_type[t]++;
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_NONE);
	int rc = kv_msg_decode_frame(f, &s->limits, &m);
	if (rc == KV_EVERSION) {
		/* doc/protocol.md §3.1: answer, keep the connection. */
		s->c.unknown_type++;
		kv_srv__conn_error(c, f->request_id, KV_EVERSION, "unknown message type 0x%04x", t);
		goto out;
	}
	if (rc != 0) {
		kv_srv__conn_error(c, f->request_id, rc, "bad %s body: %s", kv_msg_type_name(t),
				   kv_strerror(rc));
		goto out;
	}
	switch (t) {
	case KV_MSG_GET:
	case KV_MSG_PUT:
	case KV_MSG_DELETE:
	case KV_MSG_LIST:
	case KV_MSG_CHUNK_PUT:
	case KV_MSG_CHUNK_GET:
	case KV_MSG_CHUNK_TOUCH:
	case KV_MSG_GC:
		kv_srv__client_input(s, c, f, &m);
		break;
	case KV_MSG_STATS:
		kv_srv__stats_reply(s, c, f->request_id);
		break;
	case KV_MSG_ERROR:
		if (c->is_node) {
			kv_srv__peer_answered(s, c->node_id, f->request_id);
			kv_srv__peer_input(s, c->node_id, f->request_id, &m);
		}
		if (f->request_id == 0)
			kv_info("node %s: connection %" PRIu64 " says: %.*s", s->self_name, c->id,
				(int)m.error.text.n, (const char *)m.error.text.p);
		break; /* an ERROR from a client answers nothing of ours */
	default:
		if (!is_peer_type(t)) {
			kv_srv__conn_error(c, f->request_id, KV_EINVAL, "unexpected %s",
					   kv_msg_type_name(t));
			break;
		}
		if (!c->is_node) {
			/* doc/protocol.md §6: peer operations need a node's handshake. */
			kv_srv__conn_error(c, f->request_id, KV_EINVAL,
					   "%s is a peer message; this connection is a client's",
					   kv_msg_type_name(t));
			break;
		}
		if (kv_msg_reply_type(t) == KV_MSG_NONE && t != KV_MSG_FORWARD_PUT_ACCEPTED)
			kv_srv__peer_answered(s, c->node_id, f->request_id);
		kv_srv__peer_input(s, c->node_id, f->request_id, &m);
		break;
	}
out:
	kv_msg_release(&m);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct srv_conn *c = stream->data;
	struct kv_server *s = c->s;
	if (c->closed)
		return;
	if (nread < 0) {
		conn_close(c, (int)nread);
		return;
	}
	if (buf->base != (char *)c->rbuf) {
		/* Read into the body itself (alloc_cb): the trailer follows. */
		if (nread > 0)
			kv_frame_decoder_wrote(&c->dec, (size_t)nread);
		if (c->partial_since_ns == 0)
			c->partial_since_ns = kv_srv__now();
		return;
	}
	const uint8_t *p = (const uint8_t *)buf->base;
	size_t n = (size_t)nread, off = 0;
	while (off < n) {
		if (c->closed || c->close_when_flushed)
			return;
		size_t used = 0;
		int rc = kv_frame_decoder_feed(&c->dec, p + off, n - off, &used);
		off += used;
		if (rc == 0)
			break;
		if (rc < 0) {
			/* The stream lost its framing (doc/protocol.md §2.3). */
			s->c.bad_frames++;
			kv_debug("node %s: connection %" PRIu64 ": bad frame: %s", s->self_name, c->id,
				 kv_strerror(rc));
			kv_srv__conn_error(c, 0, rc, "bad frame: %s; closing the connection",
					   kv_strerror(rc));
			conn_close_flushed(c);
			return;
		}
		struct kv_frame f = KV_FRAME_INIT;
		if (kv_frame_decoder_take(&c->dec, &f) == 0)
			handle_frame(c, &f);
		kv_frame_release(&f);
	}
	if (c->closed)
		return;
	if (kv_frame_decoder_partial(&c->dec)) {
		if (c->partial_since_ns == 0)
			c->partial_since_ns = kv_srv__now();
	} else {
		c->partial_since_ns = 0;
	}
}

/* ---- Listener, idle sweep, start and stop ------------------------------ */

static void connection_cb(uv_stream_t *server, int status)
{
	struct kv_server *s = server->data;
	if (status < 0) {
		kv_warn("node %s: accept: %s", s->self_name, uv_strerror(status));
		return;
	}
	struct srv_conn *c = conn_new(s, false);
	if (c == NULL) {
		kv_error("node %s: out of memory for a connection", s->self_name);
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || s->stopping) {
		conn_close(c, KV_ECLOSED);
		return;
	}
	s->c.connections_accepted++;
	uv_tcp_nodelay(&c->tcp, 1);
	conn_read_start(c);
}

/*
 * Closes connections that sit in the handshake or on a partial frame for
 * idle_timeout_ms, and connections whose final ERROR never drains.
 */
static void sweep_cb(uv_timer_t *h)
{
	struct kv_server *s = h->data;
	uint64_t now = kv_srv__now();
	uint64_t idle = (uint64_t)s->o.idle_timeout_ms * 1000000u;
	uint64_t ids[64];
	size_t n = 0;
	/* Collect first: closing a connection may run the core, which may
	 * close others. */
	for (struct srv_conn *c = s->conns; c != NULL && n < 64; c = c->next) {
		bool stuck = c->close_when_flushed
				     ? now - c->closing_since_ns > idle
				     : (!c->outgoing && c->state == CONN_HANDSHAKE &&
					now - c->opened_ns > idle) ||
					       (c->partial_since_ns != 0 &&
						now - c->partial_since_ns > idle);
		if (stuck)
			ids[n++] = c->id;
	}
	for (size_t i = 0; i < n; i++) {
		struct srv_conn *c = kv_srv__conn_find(s, ids[i]);
		if (c == NULL)
			continue;
		if (c->close_when_flushed) {
			conn_close(c, KV_ETIMEDOUT);
			continue;
		}
		s->c.idle_closed++;
		const char *what = c->state == CONN_HANDSHAKE ? "handshake" : "partial frame";
		kv_debug("node %s: connection %" PRIu64 " idle in a %s; closing", s->self_name,
			 c->id, what);
		kv_srv__conn_error(c, 0, KV_ETIMEDOUT, "%s timed out; closing the connection", what);
		conn_close_flushed(c);
	}
}

int kv_srv__net_start(struct kv_server *s, char *err, size_t errlen)
{
	struct sockaddr_in addr;
	int rc = uv_ip4_addr(s->o.listen_host, s->o.listen_port, &addr);
	if (rc != 0) {
		snprintf(err, errlen, "bad listen address %s: want a numeric IPv4 address",
			 s->o.listen_host);
		return KV_EINVAL;
	}
	s->peers = calloc(s->o.n_members, sizeof *s->peers);
	if (s->peers == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->o.n_members; i++) {
		const struct kv_server_member *mb = &s->o.members[i];
		if (mb->id == s->o.node_id)
			continue;
		struct srv_peer *p = &s->peers[s->npeers];
		if (uv_ip4_addr(mb->host, mb->port, &p->addr) != 0) {
			snprintf(err, errlen, "bad address %s of member %" PRIu32, mb->host, mb->id);
			return KV_EINVAL;
		}
		p->s = s;
		p->id = mb->id;
		uv_timer_init(&s->loop, &p->connect_timer);
		p->connect_timer.data = p;
		s->npeers++;
	}
	/* Coalesced output (flush_dirty): unreferenced, they never keep the loop alive. */
	uv_prepare_init(&s->loop, &s->flush_prepare);
	uv_check_init(&s->loop, &s->flush_check);
	s->flush_prepare.data = s;
	s->flush_check.data = s;
	uv_prepare_start(&s->flush_prepare, flush_prepare_cb);
	uv_check_start(&s->flush_check, flush_check_cb);
	uv_unref((uv_handle_t *)&s->flush_prepare);
	uv_unref((uv_handle_t *)&s->flush_check);
	s->flush_up = true;
	uv_timer_init(&s->loop, &s->sweep_timer);
	s->sweep_timer.data = s;
	s->sweep_up = true;
	uint64_t every = s->o.idle_timeout_ms / 4;
	every = every < 10 ? 10 : every > 1000 ? 1000 : every;
	uv_timer_start(&s->sweep_timer, sweep_cb, every, every);

	uv_tcp_init(&s->loop, &s->listener);
	s->listener.data = s;
	s->listener_up = true;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 128, connection_cb);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s", s->o.listen_host,
			 s->o.listen_port, uv_strerror(rc));
		return rc;
	}
	struct sockaddr_storage ss;
	int len = sizeof ss;
	rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
	if (rc != 0) {
		snprintf(err, errlen, "getsockname: %s", uv_strerror(rc));
		return rc;
	}
	s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	/*
	 * Greet every peer now: a restarted node's incoming connection is
	 * what ends the peers' backoff towards it (hs_accept), so they send
	 * it replica writes again without waiting for a retry.
	 */
	for (size_t i = 0; i < s->npeers; i++)
		if (s->peers[i].state == PEER_IDLE)
			peer_connect(&s->peers[i]);
	return 0;
}

void kv_srv__net_stop(struct kv_server *s)
{
	if (s->flush_up) {
		kv_srv__flush_dirty(s);
		s->flush_up = false; /* from now on conn_queued() writes at once */
		uv_close((uv_handle_t *)&s->flush_prepare, NULL);
		uv_close((uv_handle_t *)&s->flush_check, NULL);
	}
	if (s->listener_up && !uv_is_closing((uv_handle_t *)&s->listener))
		uv_close((uv_handle_t *)&s->listener, NULL);
	while (s->conns != NULL)
		conn_close(s->conns, KV_ECLOSED);
	if (s->sweep_up && !uv_is_closing((uv_handle_t *)&s->sweep_timer))
		uv_close((uv_handle_t *)&s->sweep_timer, NULL);
	for (size_t i = 0; i < s->npeers; i++)
		if (!uv_is_closing((uv_handle_t *)&s->peers[i].connect_timer))
			uv_close((uv_handle_t *)&s->peers[i].connect_timer, NULL);
}

void kv_srv__net_close_handles(struct kv_server *s)
{
	kv_srv__net_stop(s);
}
