/*
 * conn.c - one blocking client connection to a kvfs node: connect with a
 * deadline, the connecting side of the handshake, and request/reply round
 * trips. Handshake: doc/protocol.md §4; framing: §2.
 */
#include "client/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/error.h"
#include "util/time.h"

#define RECV_CHUNK ((size_t)256 << 10)

static void set_err(struct kv_conn_err *err, bool unreachable, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct kv_conn_err *err, bool unreachable, const char *fmt, ...)
{
	va_list ap;
	err->unreachable = unreachable;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* Milliseconds left until @deadline_ns for poll(), 0 when past. */
static int ms_left(uint64_t deadline_ns)
{
	uint64_t now = kv_now_ns();
	if (now >= deadline_ns)
		return 0;
	uint64_t ms = (deadline_ns - now + 999999) / 1000000;
	return ms > 1000000000 ? 1000000000 : (int)ms;
}

/* Waits for @events on @fd until the deadline. 0, KV_ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	for (;;) {
		int ms = ms_left(deadline_ns);
		if (ms == 0)
			return KV_ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = events };
		int rc = poll(&pfd, 1, ms);
		if (rc > 0)
			return 0;
		if (rc == 0)
			continue; /* re-check the deadline */
		if (errno != EINTR)
			return -errno;
	}
}

/* Writes all @n bytes. 0, KV_ETIMEDOUT or -errno. */
static int send_all(int fd, const uint8_t *p, size_t n, uint64_t deadline_ns)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = wait_fd(fd, POLLOUT, deadline_ns);
			if (rc < 0)
				return rc;
			continue;
		}
		return k < 0 ? -errno : -EIO;
	}
	return 0;
}

/*
 * Reads one frame: one recv() of whatever has arrived (up to RECV_CHUNK),
 * after waiting for it, rather than a recv() per header and body. Bytes past
 * the frame stay in c->rbuf for the next call (a node sends nothing
 * unasked but a closing ERROR, which kv_conn_idle_ok() then sees).
 * 0, KV_ECLOSED (EOF), KV_ETIMEDOUT, -errno or the decoder's error.
 */
static int recv_frame(struct kv_conn *c, uint64_t deadline_ns, struct kv_frame *out,
		      bool *got_bytes)
{
	int rc;
	bool waited = false;
	for (;;) {
		while (c->rlen > 0) {
			size_t used = 0;
			rc = kv_frame_decoder_feed(&c->dec, c->rbuf + c->roff, c->rlen, &used);
			c->roff += used;
			c->rlen -= used;
			if (rc < 0)
				goto out;
			if (rc == 1) {
				rc = kv_frame_decoder_take(&c->dec, out);
				goto out;
			}
			if (used == 0) {
				rc = KV_ECORRUPT; /* cannot happen: 0 means all was consumed */
				goto out;
			}
		}
		c->roff = 0;
		if (!waited) {
			/* The reply is rarely there yet: wait first, then one recv(). */
			rc = wait_fd(c->fd, POLLIN, deadline_ns);
			if (rc < 0)
				goto out;
			waited = true;
		}
		/* In a large body (a chunk): straight into it, one copy fewer. */
		size_t room = 0;
		uint8_t *direct = kv_frame_decoder_body_room(&c->dec, RECV_CHUNK, &room);
		ssize_t k = direct ? recv(c->fd, direct, room, 0) : recv(c->fd, c->rbuf, RECV_CHUNK, 0);
		if (k == 0) {
			rc = KV_ECLOSED;
			goto out;
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				waited = false;
				continue;
			}
			rc = -errno;
			goto out;
		}
		*got_bytes = true;
		if (direct) {
			kv_frame_decoder_wrote(&c->dec, (size_t)k);
			continue; /* EAGAIN, when the rest is not there yet, waits */
		}
		c->rlen = (size_t)k;
	}
out:
	return rc;
}

static bool errno_unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -ECONNABORTED ||
	       rc == -EHOSTUNREACH || rc == -ENETUNREACH || rc == -EPIPE ||
	       rc == -ENETDOWN || rc == -EHOSTDOWN || rc == -EADDRNOTAVAIL ||
	       rc == KV_ECLOSED || rc == -ETIMEDOUT;
}

static const char *io_what(int rc)
{
	if (rc == KV_ECLOSED)
		return "connection closed by the node";
	if (rc == KV_ETIMEDOUT)
		return "timed out";
	return kv_strerror(rc);
}

/* Reads one handshake frame of type @want; turns ERROR into its code. */
static int handshake_read(struct kv_conn *c, uint64_t deadline_ns, uint16_t want,
			  struct kv_frame *f, struct kv_msg *m, struct kv_conn_err *err)
{
	bool got = false;
	int rc = recv_frame(c, deadline_ns, f, &got);
	if (rc < 0) {
		bool unreach = errno_unreachable(rc) || rc == KV_ETIMEDOUT;
		set_err(err, unreach, "handshake: %s", io_what(rc));
		return rc;
	}
	if (!kv_msg_type_is_handshake(f->type)) {
		set_err(err, false, "handshake: unexpected message type 0x%04x", f->type);
		return KV_ECORRUPT;
	}
	rc = kv_msg_decode_frame(f, NULL, m);
	if (rc < 0) {
		set_err(err, false, "handshake: malformed %s from the node: %s",
			kv_msg_type_name(f->type) ? kv_msg_type_name(f->type) : "message",
			kv_strerror(rc));
		return rc;
	}
	if (m->type == KV_MSG_ERROR) {
		int code = m->error.code < 0 ? m->error.code : KV_ECORRUPT;
		set_err(err, false, "%.*s", (int)m->error.text.n, (const char *)m->error.text.p);
		if (m->error.text.n == 0)
			set_err(err, false, "handshake refused: %s", kv_strerror(code));
		return code;
	}
	if (m->type != want) {
		set_err(err, false, "handshake: expected %s, got %s", kv_msg_type_name(want),
			kv_msg_type_name(m->type));
		return KV_ECORRUPT;
	}
	return 0;
}

static int send_msg(struct kv_conn *c, const struct kv_msg *m, uint8_t version, uint64_t id,
		    uint64_t deadline_ns, struct kv_conn_err *err)
{
	struct kv_buf b = KV_BUF_INIT;
	int rc = kv_msg_encode_frame(m, NULL, version, 0, id, &b);
	if (rc < 0) {
		set_err(err, false, "cannot encode %s: %s", kv_msg_type_name(m->type),
			kv_strerror(rc));
		goto out;
	}
	rc = send_all(c->fd, b.p, b.n, deadline_ns);
	if (rc < 0)
		set_err(err, errno_unreachable(rc) || rc == KV_ETIMEDOUT, "send: %s", io_what(rc));
out:
	kv_buf_release(&b);
	return rc;
}

static int do_connect(struct kv_conn *c, const struct kv_conn_params *p, uint64_t deadline_ns,
		      struct kv_conn_err *err)
{
	int rc;
	c->fd = socket(p->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		set_err(err, false, "socket: %s", kv_strerror(rc));
		return rc;
	}
	int one = 1;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, p->addr, p->addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		rc = -errno;
		set_err(err, true, "connect: %s", kv_strerror(rc));
		return rc;
	}
	rc = wait_fd(c->fd, POLLOUT, deadline_ns);
	if (rc < 0) {
		set_err(err, true, "connect: %s", io_what(rc));
		return rc;
	}
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0) {
		set_err(err, true, "connect: %s", kv_strerror(-soerr));
		return -soerr;
	}
	return 0;
}

/* A node id as kvfsd names itself in CHALLENGE ("12"); 0 when it is not one. */
static uint32_t parse_node_id(struct kv_slice name)
{
	uint64_t v = 0;
	if (name.n == 0 || name.n > 10 || name.p[0] == '0')
		return 0;
	for (size_t i = 0; i < name.n; i++) {
		if (name.p[i] < '0' || name.p[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(name.p[i] - '0');
	}
	return v > UINT32_MAX ? 0 : (uint32_t)v;
}

int kv_conn_open(const struct kv_conn_params *p, uint64_t deadline_ns, struct kv_conn **out,
		 struct kv_conn_err *err)
{
	struct kv_frame f1 = KV_FRAME_INIT, f2 = KV_FRAME_INIT;
	struct kv_msg hello, chal, auth, welcome;
	kv_msg_init(&hello, KV_MSG_HELLO);
	kv_msg_init(&chal, KV_MSG_NONE);
	kv_msg_init(&auth, KV_MSG_AUTH);
	kv_msg_init(&welcome, KV_MSG_NONE);
	int rc;
	*out = NULL;
	err->unreachable = false;
	err->sent = false;
	err->msg[0] = '\0';

	struct kv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		set_err(err, false, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	c->fd = -1;
	c->next_id = 1;
	kv_frame_decoder_init(&c->dec, KV_FRAME_MAX_BODY_HANDSHAKE);
	/* One receive buffer for the connection's life, not one per reply. */
	c->rbuf = malloc(RECV_CHUNK);
	if (!c->rbuf) {
		set_err(err, false, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = do_connect(c, p, deadline_ns, err);
	if (rc < 0)
		goto out;

	/* §4.1 HELLO, always a version 1 frame. */
	hello.hello.min_version = KV_PROTO_VERSION_MIN;
	hello.hello.max_version = KV_PROTO_VERSION_MAX;
	hello.hello.role = KV_MSG_ROLE_CLIENT;
	hello.hello.node_id = kv_slice_make(NULL, 0);
	hello.hello.cluster = kv_slice_str(p->cluster);
	kv_auth_nonce(hello.hello.nonce);
	rc = send_msg(c, &hello, 1, 0, deadline_ns, err);
	if (rc < 0)
		goto out;

	/* §4.2 CHALLENGE: check the node's proof before proving ours. */
	rc = handshake_read(c, deadline_ns, KV_MSG_CHALLENGE, &f1, &chal, err);
	if (rc < 0)
		goto out;
	if (chal.challenge.version < KV_PROTO_VERSION_MIN ||
	    chal.challenge.version > KV_PROTO_VERSION_MAX) {
		set_err(err, false, "handshake: the node chose protocol version %u, we speak %d..%d",
			chal.challenge.version, KV_PROTO_VERSION_MIN, KV_PROTO_VERSION_MAX);
		rc = KV_EVERSION;
		goto out;
	}
	rc = kv_auth_verify(p->secret, true, &hello.hello, &chal.challenge, chal.challenge.mac);
	if (rc < 0) {
		if (rc == KV_EINVAL) {
			set_err(err, false,
				"bad cluster secret: the node's proof of the secret did not verify");
			rc = -EACCES;
		} else {
			set_err(err, false, "handshake: %s", kv_strerror(rc));
		}
		goto out;
	}
	c->version = chal.challenge.version;
	c->node_id = parse_node_id(chal.challenge.node_id);

	/* §4.3 AUTH */
	rc = kv_auth_mac(p->secret, false, &hello.hello, &chal.challenge, auth.auth.mac);
	if (rc < 0) {
		set_err(err, false, "handshake: %s", kv_strerror(rc));
		goto out;
	}
	rc = send_msg(c, &auth, c->version, 0, deadline_ns, err);
	if (rc < 0)
		goto out;
	rc = kv_frame_decoder_set_versions(&c->dec, c->version, c->version);
	if (rc < 0)
		goto out;

	/* §4.4 WELCOME, or ERROR when the node refused our proof. */
	rc = handshake_read(c, deadline_ns, KV_MSG_WELCOME, &f2, &welcome, err);
	if (rc < 0) {
		if (rc == KV_EINVAL && !err->unreachable) {
			char node_msg[sizeof(err->msg)];
			memcpy(node_msg, err->msg, sizeof(node_msg));
			set_err(err, false, "the node refused our proof of the secret: %s", node_msg);
			rc = -EACCES;
		}
		goto out;
	}
	c->n = welcome.welcome.n;
	c->r = welcome.welcome.r;
	c->w = welcome.welcome.w;
	kv_frame_decoder_set_max(&c->dec, KV_FRAME_MAX_BODY_DEFAULT);
	rc = 0;
out:
	kv_msg_release(&hello);
	kv_msg_release(&chal);
	kv_msg_release(&auth);
	kv_msg_release(&welcome);
	kv_frame_release(&f1);
	kv_frame_release(&f2);
	if (rc < 0)
		kv_conn_close(c);
	else
		*out = c;
	return rc;
}

void kv_conn_close(struct kv_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	kv_frame_decoder_release(&c->dec);
	free(c->rbuf);
	free(c);
}

bool kv_conn_idle_ok(struct kv_conn *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	if (c->rlen > 0)
		return false; /* stray bytes after the last reply (a closing ERROR) */
	int rc = poll(&pfd, 1, 0);
	if (rc != 0)
		return false; /* readable (EOF, reset, stray bytes) or a poll error */
	return !kv_frame_decoder_partial(&c->dec);
}

int kv_conn_call(struct kv_conn *c, const struct kv_msg *req, const struct kv_msg_limits *lim,
		 uint64_t deadline_ns, struct kv_frame *reply, struct kv_conn_err *err)
{
	struct kv_buf b = KV_BUF_INIT;
	uint64_t id = c->next_id++;
	int rc;
	err->unreachable = false;
	err->sent = false;
	err->msg[0] = '\0';

	rc = kv_msg_encode_frame(req, lim, c->version, 0, id, &b);
	if (rc < 0) {
		set_err(err, false, "cannot send %s: %s", kv_msg_type_name(req->type),
			kv_strerror(rc));
		goto out;
	}
	rc = send_all(c->fd, b.p, b.n, deadline_ns);
	if (rc < 0) {
		set_err(err, errno_unreachable(rc), "send: %s", io_what(rc));
		goto out;
	}
	err->sent = true;
	bool got = false;
	rc = recv_frame(c, deadline_ns, reply, &got);
	if (rc < 0) {
		if (rc == KV_ECORRUPT || rc == KV_EVERSION || rc == KV_ETOOBIG)
			set_err(err, false, "malformed reply frame: %s", kv_strerror(rc));
		else
			set_err(err, errno_unreachable(rc) && !got, "%s", io_what(rc));
		goto out;
	}
	if (reply->request_id != id) {
		set_err(err, false, "reply for request id %llu, expected %llu",
			(unsigned long long)reply->request_id, (unsigned long long)id);
		kv_frame_release(reply);
		rc = KV_ECORRUPT;
		goto out;
	}
out:
	kv_buf_release(&b);
	return rc;
}
