/*
 * conn.h - one blocking client connection to a kvfs node (private to
 * src/client): connect with a deadline, the connecting side of the handshake
 * (doc/protocol.md §4), and one request/reply round trip at a time.
 *
 * Sockets are non-blocking and every wait is a poll() bounded by the
 * caller's deadline (CLOCK_MONOTONIC nanoseconds, kv_now_ns()). A conn is
 * used by one thread at a time; the pool in client.c hands it out.
 */
#ifndef KV_CLIENT_CONN_H
#define KV_CLIENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/auth.h"
#include "proto/frame.h"
#include "proto/msg.h"

struct kv_conn {
	int fd;
	uint8_t version;       /* agreed in the handshake */
	uint8_t n, r, w;       /* from WELCOME */
	uint32_t node_id;      /* the node's numeric id from its (MAC-checked) CHALLENGE;
				* 0 when it is not a decimal id */
	uint64_t next_id;      /* frame request ids, from 1 */
	struct kv_frame_decoder dec;
	uint8_t *rbuf;         /* receive buffer (RECV_CHUNK bytes), owned */
	size_t roff, rlen;     /* bytes received past the last frame: rbuf[roff..+rlen) */
	struct kv_conn *next;  /* the pool's idle list (guarded by the node's lock) */
};

/* What the handshake needs; all borrowed. */
struct kv_conn_params {
	const struct sockaddr *addr;
	socklen_t addrlen;
	const char *cluster;
	const struct kv_auth_secret *secret;
	const struct kv_msg_limits *limits;
};

/*
 * Whether a failed call may move to another node: the failure says the node
 * could not be reached (refused, reset, EOF, connect or handshake timed out
 * before the call's deadline), not that the node answered.
 */
struct kv_conn_err {
	bool unreachable;
	bool sent;           /* the request had been fully written */
	char msg[1024];      /* what failed, for kv_client_errmsg() */
};

/*
 * Connects to p->addr and runs the handshake, giving up at @deadline_ns
 * (connect and handshake together). Returns 0 and a new connection in *out
 * (kv_conn_close() frees it); or a negative error with *out NULL and @err
 * filled: -errno of connect, KV_ETIMEDOUT, KV_ECLOSED (EOF), -EACCES (the
 * node's MAC did not verify), the code of an ERROR the node sent, or
 * KV_ECORRUPT / KV_EVERSION for a bad handshake message.
 */
int kv_conn_open(const struct kv_conn_params *p, uint64_t deadline_ns, struct kv_conn **out,
		 struct kv_conn_err *err);

/* Closes the socket and frees @c (NULL is fine). */
void kv_conn_close(struct kv_conn *c);

/*
 * True when an idle connection looks usable: nothing to read (no EOF, no
 * stray bytes) and no socket error.
 */
bool kv_conn_idle_ok(struct kv_conn *c);

/*
 * Sends @req as one frame and waits for the frame that answers it, until
 * @deadline_ns. Returns 0 with the reply frame in @reply (its type is not
 * checked here; the request id is); or a negative error with @err filled,
 * after which the connection must be closed: -errno of send/recv, KV_ECLOSED
 * (EOF), KV_ETIMEDOUT, KV_ECORRUPT / KV_EVERSION / KV_ETOOBIG (bad framing,
 * wrong request id), or kv_msg_encode()'s error for a request that cannot be
 * encoded (KV_ETOOBIG, KV_EINVAL; err->unreachable false).
 */
int kv_conn_call(struct kv_conn *c, const struct kv_msg *req, const struct kv_msg_limits *lim,
		 uint64_t deadline_ns, struct kv_frame *reply, struct kv_conn_err *err);

#endif
