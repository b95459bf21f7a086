/*
 * badframe.c - malformed kvfs frames for the cluster suite's bad-input test
 * (tests/cluster/test_badinput.sh; issue 4 "Show it works", DESIGN §9).
 *
 * The frames are built with the real codec (src/proto), so each one is wrong
 * in exactly one way and passes every check before that one
 * (doc/protocol.md §2.1 header, §2.3 order of checks, §4 handshake).
 *
 *   badframe MODE
 *     writes a frame to stdout, for a connection that has not authenticated:
 *       hello        a valid client HELLO (cluster "kvfs")
 *       truncated    that HELLO without its last 10 bytes
 *       huge         a HELLO header, correct header check, body length
 *                    0xffffffff, and no body
 *       bad-trailer  the valid HELLO with its trailer check flipped
 *       bad-hcheck   the valid HELLO with its header check flipped
 *
 *   badframe --connect HOST:PORT [--wait MS] MODE
 *     authenticates as a client (cluster "kvfs", no secret: loopback
 *     clusters only), then sends, on the authenticated connection:
 *       huge          a GET header announcing 0xffffffff bytes
 *       big           a GET header announcing 300 MiB (above the 280 MiB
 *                     default limit, below the 1 GiB hard one)
 *       truncated     a valid GET frame without its last 10 bytes
 *       unknown-type  a valid frame of unassigned type 0x0200
 *       bad-body      a GET frame whose body is 3 bytes of nonsense
 *     and prints what the node did, one line: "closed after 0.01s: ERROR
 *     -10002: ..." or "open after 2.00s: ERROR -10007: ...; then STATS
 *     answered" (for the last two a STATS request follows the bad frame, to
 *     show that the connection still works). Exit 0 when the probe ran, 1
 *     when it could not (connect or handshake failed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/auth.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "util/checksum.h"
#include "util/error.h"
#include "util/slice.h"

#define CLUSTER "kvfs"

/* Builds a bare header of @type announcing @body_len bytes, with a correct check. */
static void header(uint8_t h[KV_FRAME_HEADER_SIZE], uint16_t type, uint64_t request_id,
		   uint32_t body_len)
{
	uint32_t check;

	memset(h, 0, KV_FRAME_HEADER_SIZE);
	h[0] = KV_FRAME_MAGIC0;
	h[1] = KV_FRAME_MAGIC1;
	h[2] = KV_FRAME_MAGIC2;
	h[3] = KV_FRAME_MAGIC3;
	h[4] = KV_PROTO_VERSION_MIN;
	h[6] = (uint8_t)(type & 0xff);
	h[7] = (uint8_t)(type >> 8);
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)(request_id >> (8 * i));
	for (int i = 0; i < 4; i++)
		h[16 + i] = (uint8_t)(body_len >> (8 * i));
	check = kv_checksum32(h, 20);
	for (int i = 0; i < 4; i++)
		h[20 + i] = (uint8_t)(check >> (8 * i));
}

static void hello_msg(struct kv_msg *m)
{
	kv_msg_init(m, KV_MSG_HELLO);
	m->hello.min_version = KV_PROTO_VERSION_MIN;
	m->hello.max_version = KV_PROTO_VERSION_MAX;
	m->hello.role = KV_MSG_ROLE_CLIENT;
	m->hello.cluster = (struct kv_slice){ (const uint8_t *)CLUSTER, sizeof(CLUSTER) - 1 };
	memset(m->hello.nonce, 0x5a, sizeof(m->hello.nonce));
}

/* The unauthenticated frames of the first form. Returns 0, 2 (usage) or a KV_E* code. */
static int plain_frame(const char *mode, struct kv_buf *out)
{
	struct kv_msg m;
	uint8_t h[KV_FRAME_HEADER_SIZE];
	int rc;

	if (strcmp(mode, "huge") == 0) {
		header(h, KV_MSG_HELLO, 0, 0xffffffffu);
		return kv_buf_append(out, h, sizeof(h));
	}
	hello_msg(&m);
	rc = kv_msg_encode_frame(&m, NULL, KV_PROTO_VERSION_MIN, 0, 0, out);
	kv_msg_release(&m);
	if (rc != 0)
		return rc;
	if (strcmp(mode, "hello") == 0)
		return 0;
	if (strcmp(mode, "truncated") == 0)
		out->n -= 10;
	else if (strcmp(mode, "bad-trailer") == 0)
		out->p[out->n - 1] ^= 0xff;
	else if (strcmp(mode, "bad-hcheck") == 0)
		out->p[20] ^= 0xff;
	else
		return 2;
	return 0;
}

/* The frame sent after the handshake. Returns 0, 2 (usage) or a KV_E* code. */
static int authed_frame(const char *mode, struct kv_buf *out)
{
	static const char key[] = "/badframe/k";
	static const uint8_t nonsense[3] = { 0xff, 0xfe, 0xfd };
	uint8_t h[KV_FRAME_HEADER_SIZE];
	struct kv_msg m;
	int rc;

	if (strcmp(mode, "huge") == 0 || strcmp(mode, "big") == 0) {
		header(h, KV_MSG_GET, 7, strcmp(mode, "huge") == 0 ? 0xffffffffu : 300u << 20);
		return kv_buf_append(out, h, sizeof(h));
	}
	if (strcmp(mode, "unknown-type") == 0)
		return kv_frame_encode(out, KV_PROTO_VERSION_MIN, 0, 0x0200, 7,
				       (struct kv_slice){ NULL, 0 });
	if (strcmp(mode, "bad-body") == 0)
		return kv_frame_encode(out, KV_PROTO_VERSION_MIN, 0, KV_MSG_GET, 7,
				       (struct kv_slice){ nonsense, sizeof(nonsense) });
	if (strcmp(mode, "truncated") != 0)
		return 2;
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = (struct kv_slice){ (const uint8_t *)key, sizeof(key) - 1 };
	rc = kv_msg_encode_frame(&m, NULL, KV_PROTO_VERSION_MIN, 0, 7, out);
	kv_msg_release(&m);
	if (rc == 0)
		out->n -= 10;
	return rc;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/*
 * Reads the next frame into @f until @deadline (now_s()). Returns 1 with a
 * frame (kv_frame_release() it), 0 on EOF or reset, KV_ETIMEDOUT, or the
 * decoder's error.
 */
static int read_frame(int fd, struct kv_frame_decoder *dec, double deadline, struct kv_frame *f)
{
	static uint8_t buf[65536];
	static size_t have, at;
	int rc;

	for (;;) {
		while (at < have) {
			size_t used = 0;
			rc = kv_frame_decoder_feed(dec, buf + at, have - at, &used);
			at += used;
			if (rc < 0)
				return rc;
			if (rc == 1)
				return kv_frame_decoder_take(dec, f) == 0 ? 1 : KV_EINVAL;
		}
		double left = deadline - now_s();
		if (left <= 0)
			return KV_ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		rc = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0)
			return KV_ETIMEDOUT;
		ssize_t k = recv(fd, buf, sizeof(buf), 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return 0;
		have = (size_t)k;
		at = 0;
	}
}

/* Appends "ERROR code: text" or the frame's type name to @desc. */
static void describe(const struct kv_frame *f, char *desc, size_t len)
{
	struct kv_msg m;
	size_t n = strlen(desc);

	kv_msg_init(&m, KV_MSG_NONE);
	if (f->type == KV_MSG_ERROR && kv_msg_decode_frame(f, NULL, &m) == 0)
		snprintf(desc + n, len - n, "%sERROR %d: %.*s", n ? "; " : "", m.error.code,
			 (int)m.error.text.n, (const char *)m.error.text.p);
	else
		snprintf(desc + n, len - n, "%sframe %s", n ? "; " : "",
			 kv_msg_type_name(f->type) ? kv_msg_type_name(f->type) : "of unknown type");
	kv_msg_release(&m);
}

/* Connects and runs the client side of the handshake. Returns the fd or -1. */
static int handshake(const char *hostport, struct kv_frame_decoder *dec, double deadline)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(hostport, ':');
	struct kv_auth_secret secret = { .len = 0 };
	struct kv_msg hello, reply, auth;
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_buf out = KV_BUF_INIT;
	int fd = -1, ok = 0, rc;

	kv_msg_init(&reply, KV_MSG_NONE);
	kv_msg_init(&auth, KV_MSG_AUTH);
	hello_msg(&hello);
	if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "badframe: bad address '%s' (want HOST:PORT)\n", hostport);
		goto out;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "badframe: bad IPv4 address '%s'\n", host);
		goto out;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "badframe: connect %s: %s\n", hostport, strerror(errno));
		goto out;
	}
	rc = kv_msg_encode_frame(&hello, NULL, KV_PROTO_VERSION_MIN, 0, 0, &out);
	if (rc == 0)
		rc = send_all(fd, out.p, out.n);
	if (rc == 0 && (rc = read_frame(fd, dec, deadline, &f)) == 1)
		rc = kv_msg_decode_frame(&f, NULL, &reply);
	if (rc == 0 && reply.type != KV_MSG_CHALLENGE)
		rc = KV_EINVAL;
	if (rc == 0)
		rc = kv_auth_mac(&secret, false, &hello.hello, &reply.challenge, auth.auth.mac);
	out.n = 0;
	if (rc == 0)
		rc = kv_msg_encode_frame(&auth, NULL, reply.challenge.version, 0, 0, &out);
	if (rc == 0)
		rc = send_all(fd, out.p, out.n);
	kv_msg_release(&reply);
	kv_frame_release(&f);
	if (rc == 0 && (rc = read_frame(fd, dec, deadline, &f)) == 1)
		rc = kv_msg_decode_frame(&f, NULL, &reply);
	if (rc == 0 && reply.type != KV_MSG_WELCOME)
		rc = KV_EINVAL;
	if (rc != 0) {
		fprintf(stderr, "badframe: handshake with %s failed: %s\n", hostport,
			rc == KV_EINVAL ? "unexpected reply" : kv_strerror(rc));
		goto out;
	}
	kv_frame_decoder_set_max(dec, KV_FRAME_MAX_BODY_DEFAULT);
	ok = 1;
out:
	kv_msg_release(&reply);
	kv_frame_release(&f);
	kv_msg_release(&hello);
	kv_msg_release(&auth);
	kv_buf_release(&out);
	if (!ok && fd >= 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The --connect form. Returns the exit status. */
static int probe(const char *hostport, int wait_ms, const char *mode)
{
	struct kv_frame_decoder dec;
	struct kv_buf out = KV_BUF_INIT;
	struct kv_frame f = KV_FRAME_INIT;
	struct kv_msg stats;
	char desc[2048] = "";
	double start, deadline;
	int fd, rc, status = 1, closed = 0;

	kv_frame_decoder_init(&dec, KV_FRAME_MAX_BODY_HANDSHAKE);
	kv_msg_init(&stats, KV_MSG_STATS);
	rc = authed_frame(mode, &out);
	if (rc != 0) {
		fprintf(stderr, rc == 2 ? "badframe: unknown mode '%s'\n"
					: "badframe: cannot build frame %s\n", mode);
		goto out_nofd;
	}
	fd = handshake(hostport, &dec, now_s() + 5.0);
	if (fd < 0)
		goto out_nofd;
	start = now_s();
	deadline = start + wait_ms / 1000.0;
	rc = send_all(fd, out.p, out.n);
	if (rc != 0)
		closed = 1; /* reset while sending: an answer too */
	while (!closed) {
		rc = read_frame(fd, &dec, deadline, &f);
		if (rc == 1) {
			describe(&f, desc, sizeof(desc));
			kv_frame_release(&f);
			if (strcmp(mode, "unknown-type") == 0 || strcmp(mode, "bad-body") == 0) {
				/* The framing is intact: the connection must still serve. */
				out.n = 0;
				rc = kv_msg_encode_frame(&stats, NULL, KV_PROTO_VERSION_MIN, 0, 8, &out);
				if (rc == 0)
					rc = send_all(fd, out.p, out.n);
				if (rc == 0 && read_frame(fd, &dec, now_s() + 5.0, &f) == 1 &&
				    f.type == KV_MSG_STATS_REPLY)
					snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc),
						 "; then STATS answered");
				else
					snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc),
						 "; then STATS not answered");
				kv_frame_release(&f);
				break;
			}
			continue;
		}
		if (rc == 0 || rc == KV_ECLOSED)
			closed = 1;
		else if (rc != KV_ETIMEDOUT)
			snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc), "%sbad reply: %s",
				 desc[0] ? "; " : "", kv_strerror(rc));
		break;
	}
	printf("%s after %.2fs: %s\n", closed ? "closed" : "open", now_s() - start,
	       desc[0] ? desc : "no reply");
	status = 0;
	close(fd);
out_nofd:
	kv_msg_release(&stats);
	kv_buf_release(&out);
	kv_frame_decoder_release(&dec);
	return status;
}

int main(int argc, char **argv)
{
	struct kv_buf out = KV_BUF_INIT;
	int rc, status = 1;

	if (argc >= 4 && strcmp(argv[1], "--connect") == 0) {
		int wait_ms = 3000;
		if (argc == 6 && strcmp(argv[3], "--wait") == 0)
			wait_ms = atoi(argv[4]);
		else if (argc != 4)
			goto usage;
		if (kv_auth_init() != 0) {
			fprintf(stderr, "badframe: libsodium init failed\n");
			return 1;
		}
		return probe(argv[2], wait_ms, argv[argc - 1]);
	}
	if (argc != 2)
		goto usage;
	rc = plain_frame(argv[1], &out);
	if (rc == 2)
		goto usage;
	if (rc != 0) {
		fprintf(stderr, "badframe: cannot build the frame: %s\n", kv_strerror(rc));
		goto out;
	}
	if (fwrite(out.p, 1, out.n, stdout) != out.n || fflush(stdout) != 0) {
		perror("badframe: stdout");
		goto out;
	}
	status = 0;
	goto out;
usage:
	fprintf(stderr, "usage: badframe hello|truncated|huge|bad-trailer|bad-hcheck\n"
			"       badframe --connect HOST:PORT [--wait MS] "
			"huge|big|truncated|unknown-type|bad-body\n");
out:
	kv_buf_release(&out);
	return status;
}
