/*
 * test_proto.c - the wire protocol: framing, the streaming decoder, and every
 * message type (src/proto; format: doc/protocol.md).
 *
 * Randomized tests print their seed; KV_SEED=... replays. With
 * KV_CORPUS_OUT=DIR set, the seed corpus for tests/fuzz/fuzz_proto.c is
 * (re)written into DIR. With KV_PROTO_EXAMPLES=1 the worked examples of
 * doc/protocol.md §8 are printed in hex.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/frame.h"
#include "proto/msg.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"
#include "version/counter.h"
#include "version/dot.h"
#include "version/siblings.h"

/* ---- helpers -------------------------------------------------------------------- */

/* Every type this code knows, requests and replies. */
static const uint16_t all_types[] = {
	KV_MSG_HELLO, KV_MSG_CHALLENGE, KV_MSG_AUTH, KV_MSG_WELCOME, KV_MSG_ERROR,
	KV_MSG_GET, KV_MSG_GET_REPLY, KV_MSG_PUT, KV_MSG_PUT_REPLY, KV_MSG_DELETE,
	KV_MSG_DELETE_REPLY, KV_MSG_LIST, KV_MSG_LIST_REPLY, KV_MSG_STATS,
	KV_MSG_STATS_REPLY, KV_MSG_FORWARD_PUT, KV_MSG_FORWARD_PUT_REPLY,
	KV_MSG_REPLICA_WRITE, KV_MSG_REPLICA_WRITE_ACK, KV_MSG_REPLICA_READ,
	KV_MSG_REPLICA_READ_REPLY, KV_MSG_REPLICA_LIST, KV_MSG_REPLICA_LIST_REPLY,
	KV_MSG_READ_REPAIR, KV_MSG_READ_REPAIR_ACK,
};
#define NTYPES (sizeof all_types / sizeof all_types[0])

/* Owns the bytes that random messages borrow. */
struct pool {
	void *items[4096];
	size_t n;
};

static void pool_free(struct pool *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		free(pl->items[i]);
	pl->n = 0;
}

static struct kv_slice pool_bytes(struct pool *pl, struct kv_rng *r, size_t len)
{
	assert_true(pl->n < sizeof pl->items / sizeof pl->items[0]);
	uint8_t *p = malloc(len ? len : 1);
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)kv_rng_next(r);
	pl->items[pl->n++] = p;
	return kv_slice_make(p, len);
}

/* Random bytes of a random length below @max, short lengths more likely. */
static struct kv_slice rand_bytes(struct pool *pl, struct kv_rng *r, size_t max)
{
	size_t len = kv_rng_below(r, 4) == 0 ? kv_rng_below(r, max + 1)
					     : kv_rng_below(r, (max < 16 ? max : 16) + 1);
	return pool_bytes(pl, r, len);
}

static struct kv_slice rand_id(struct pool *pl, struct kv_rng *r)
{
	static const char alphabet[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
	size_t len = 1 + kv_rng_below(r, KV_MSG_NAME_ID_MAX);
	struct kv_slice s = pool_bytes(pl, r, len);
	for (size_t i = 0; i < len; i++)
		((uint8_t *)s.p)[i] = (uint8_t)alphabet[kv_rng_below(r, sizeof alphabet - 1)];
	return s;
}

/*
 * A random sibling set: a few actors write concurrently (some with the
 * context of what they saw), then every set is joined. @bodies false gives
 * a set as LIST carries it.
 */
static void rand_set(struct kv_rng *r, struct kv_dvv *out, size_t max_puts, bool bodies)
{
	size_t nactors = 1 + kv_rng_below(r, 3);
	for (size_t a = 0; a < nactors; a++) {
		struct kv_dvv s = KV_DVV_INIT;
		struct kv_counter c;
		uint64_t lease;
		kv_counter_init(&c, kv_rng_below(r, 1000), 1u << 20);
		if (kv_counter_lease_request(&c, &lease) == 1)
			kv_counter_lease_durable(&c, lease);
		struct kv_actor self = { (uint32_t)(1 + kv_rng_below(r, 300)),
					 (uint32_t)(1 + kv_rng_below(r, 3)) };
		size_t puts = kv_rng_below(r, max_puts + 1);
		for (size_t i = 0; i < puts; i++) {
			uint8_t meta[40], body[200];
			struct kv_dvv_write w;
			memset(&w, 0, sizeof w);
			for (size_t k = 0; k < sizeof meta; k++)
				meta[k] = (uint8_t)kv_rng_next(r);
			for (size_t k = 0; k < sizeof body; k++)
				body[k] = (uint8_t)kv_rng_next(r);
			w.context = kv_rng_below(r, 3) == 0 ? &s.ctx : NULL;
			for (size_t k = 0; k < KV_REQUEST_ID_LEN; k++)
				w.request_id[k] = (uint8_t)kv_rng_next(r);
			w.timestamp_ns = (int64_t)(kv_rng_next(r) >> 2);
			w.tombstone = kv_rng_below(r, 5) == 0;
			w.meta = kv_slice_make(meta, kv_rng_below(r, sizeof meta + 1));
			if (bodies && !w.tombstone)
				w.body = kv_slice_make(body, kv_rng_below(r, sizeof body + 1));
			struct kv_dot dot;
			assert_true(kv_dvv_put(&s, &w, self, &c, NULL, &dot) >= 0);
		}
		assert_int_equal(kv_dvv_join(out, &s), 0);
		kv_dvv_release(&s);
	}
}

static void rand_ctx(struct kv_rng *r, struct kv_ctx *c)
{
	size_t n = kv_rng_below(r, 6);
	for (size_t i = 0; i < n; i++) {
		struct kv_dot d = { { (uint32_t)kv_rng_below(r, 5), (uint32_t)kv_rng_below(r, 3) },
				    1 + kv_rng_below(r, 40) };
		assert_int_equal(kv_ctx_add(c, d), 0);
	}
}

static void rand_fill(struct kv_rng *r, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)kv_rng_next(r);
}

/* A random, valid message of @type whose bytes @pl owns. */
static void rand_msg(struct kv_rng *r, struct pool *pl, uint16_t type, struct kv_msg *m)
{
	kv_msg_init(m, type);
	switch (type) {
	case KV_MSG_HELLO:
		m->hello.min_version = (uint8_t)(1 + kv_rng_below(r, 3));
		m->hello.max_version = (uint8_t)(m->hello.min_version + kv_rng_below(r, 3));
		m->hello.role = (uint8_t)kv_rng_below(r, 2);
		if (m->hello.role == KV_MSG_ROLE_NODE)
			m->hello.node_id = rand_id(pl, r);
		m->hello.cluster = rand_id(pl, r);
		rand_fill(r, m->hello.nonce, KV_MSG_NONCE_LEN);
		break;
	case KV_MSG_CHALLENGE:
		m->challenge.version = (uint8_t)(1 + kv_rng_below(r, 3));
		m->challenge.node_id = rand_id(pl, r);
		rand_fill(r, m->challenge.nonce, KV_MSG_NONCE_LEN);
		rand_fill(r, m->challenge.mac, KV_MSG_MAC_LEN);
		break;
	case KV_MSG_AUTH:
		rand_fill(r, m->auth.mac, KV_MSG_MAC_LEN);
		break;
	case KV_MSG_WELCOME:
		m->welcome.n = (uint8_t)(1 + kv_rng_below(r, KV_MSG_QUORUM_MAX));
		m->welcome.r = (uint8_t)(1 + kv_rng_below(r, m->welcome.n));
		m->welcome.w = (uint8_t)(1 + kv_rng_below(r, m->welcome.n));
		break;
	case KV_MSG_ERROR:
		m->error.code = -(int32_t)(1 + kv_rng_below(r, 20000));
		m->error.text = rand_bytes(pl, r, KV_MSG_ERROR_TEXT_MAX);
		break;
	case KV_MSG_GET:
	case KV_MSG_REPLICA_READ:
		m->get.flags = (uint8_t)kv_rng_below(r, 4); /* HEAD, TOMBSTONES */
		m->get.r = (uint8_t)kv_rng_below(r, KV_MSG_QUORUM_MAX + 1);
		m->get.timeout_ms = (uint32_t)kv_rng_next(r) >> kv_rng_below(r, 32);
		m->get.key = rand_bytes(pl, r, KV_MSG_KEY_MAX);
		break;
	case KV_MSG_GET_REPLY:
	case KV_MSG_REPLICA_READ_REPLY:
		rand_set(r, &m->set_reply.set, 8, true);
		break;
	case KV_MSG_PUT:
	case KV_MSG_DELETE:
	case KV_MSG_FORWARD_PUT:
		m->put.w = (uint8_t)kv_rng_below(r, KV_MSG_QUORUM_MAX + 1);
		m->put.timeout_ms = (uint32_t)kv_rng_next(r) >> kv_rng_below(r, 32);
		rand_fill(r, m->put.request_id, KV_REQUEST_ID_LEN);
		m->put.key = rand_bytes(pl, r, KV_MSG_KEY_MAX);
		rand_ctx(r, &m->put.context);
		if (type != KV_MSG_DELETE) {
			m->put.flags = (uint8_t)(kv_rng_below(r, 4) == 0 ? KV_MSG_PUT_F_TOMBSTONE : 0);
			m->put.meta = rand_bytes(pl, r, 300);
			if (!m->put.flags)
				m->put.body = rand_bytes(pl, r, 5000);
		}
		if (type == KV_MSG_FORWARD_PUT)
			m->put.hops = (uint8_t)(1 + kv_rng_below(r, KV_MSG_HOPS_MAX));
		break;
	case KV_MSG_PUT_REPLY:
	case KV_MSG_DELETE_REPLY:
	case KV_MSG_FORWARD_PUT_REPLY:
		rand_ctx(r, &m->put_reply.context);
		m->put_reply.dot.actor.node = (uint32_t)kv_rng_next(r);
		m->put_reply.dot.actor.epoch = (uint32_t)kv_rng_below(r, 9);
		m->put_reply.dot.counter = 1 + (kv_rng_next(r) >> kv_rng_below(r, 64));
		if (m->put_reply.dot.counter == 0)
			m->put_reply.dot.counter = 1;
		assert_int_equal(kv_ctx_add(&m->put_reply.context, m->put_reply.dot), 0);
		m->put_reply.flags = (uint8_t)kv_rng_below(r, 2);
		break;
	case KV_MSG_LIST:
	case KV_MSG_REPLICA_LIST:
		if (type == KV_MSG_LIST && kv_rng_below(r, 2))
			m->list.flags = KV_MSG_LIST_F_TOMBSTONES;
		m->list.r = (uint8_t)kv_rng_below(r, KV_MSG_QUORUM_MAX + 1);
		m->list.timeout_ms = (uint32_t)kv_rng_below(r, 100000);
		m->list.max_entries = (uint32_t)(1 + kv_rng_below(r, 10000));
		m->list.dir = rand_bytes(pl, r, 200);
		m->list.cursor = rand_bytes(pl, r, 200);
		break;
	case KV_MSG_LIST_REPLY:
	case KV_MSG_REPLICA_LIST_REPLY: {
		size_t n = kv_rng_below(r, 12);
		for (size_t i = 0; i < n; i++) {
			/* Names "e<index, 4 digits><random>" are strictly ascending. */
			struct kv_slice name = pool_bytes(pl, r, 5 + kv_rng_below(r, 20));
			char head[32];
			snprintf(head, sizeof head, "e%04zu", i);
			memcpy((uint8_t *)name.p, head, 5);
			struct kv_dvv set = KV_DVV_INIT;
			rand_set(r, &set, 4, false);
			assert_int_equal(kv_msg_list_push(m, name, &set), 0);
			kv_dvv_release(&set);
		}
		if (kv_rng_below(r, 2)) {
			m->list_reply.flags = KV_MSG_LIST_F_MORE;
			m->list_reply.next_cursor = n ? m->list_reply.entries[n - 1].name
						      : kv_slice_str("x");
		}
		break;
	}
	case KV_MSG_STATS:
		break;
	case KV_MSG_STATS_REPLY: {
		size_t n = kv_rng_below(r, 20);
		for (size_t i = 0; i < n; i++) {
			struct kv_slice name = pool_bytes(pl, r, 8);
			char head[32];
			snprintf(head, sizeof head, "ctr_%03zu_", i);
			memcpy((uint8_t *)name.p, head, 8);
			uint64_t v = kv_rng_next(r) >> kv_rng_below(r, 64);
			assert_int_equal(kv_msg_stats_push(m, name, v), 0);
		}
		break;
	}
	case KV_MSG_REPLICA_WRITE:
	case KV_MSG_READ_REPAIR:
		m->replica_write.key = rand_bytes(pl, r, KV_MSG_KEY_MAX);
		rand_set(r, &m->replica_write.set, 8, true);
		break;
	case KV_MSG_REPLICA_WRITE_ACK:
	case KV_MSG_READ_REPAIR_ACK:
		m->replica_ack.set_hash = kv_rng_next(r);
		m->replica_ack.nversions = (uint32_t)kv_rng_below(r, KV_DVV_MAX_VERSIONS + 1);
		break;
	default:
		fail_msg("no generator for type 0x%04x", type);
	}
}

/* Encodes @m's body into @out (emptied first) and asserts success. */
static void encode_ok(const struct kv_msg *m, struct kv_buf *out)
{
	kv_buf_reset(out);
	int rc = kv_msg_encode(m, NULL, out);
	if (rc)
		fail_msg("encode %s: %s", kv_msg_type_name(m->type), kv_strerror(rc));
}

static int decode_body(uint16_t type, const uint8_t *p, size_t n)
{
	struct kv_msg m;
	/* A private copy, so ASan sees any read past the end. */
	uint8_t *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	if (n)
		memcpy(copy, p, n);
	int rc = kv_msg_decode(type, kv_slice_make(copy, n), NULL, &m);
	if (rc)
		assert_int_equal(m.type, KV_MSG_NONE);
	kv_msg_release(&m);
	free(copy);
	return rc;
}

/* ---- framing -------------------------------------------------------------------- */

static void test_proto__frame_round_trips(void **state)
{
	(void)state;
	struct kv_buf out = KV_BUF_INIT;
	const char *body = "hello, kvfs";
	assert_int_equal(kv_frame_encode(&out, 1, KV_FRAME_F_RETRY, 0x1234, 0x0102030405060708ull,
					 kv_slice_str(body)), 0);
	assert_int_equal(out.n, KV_FRAME_HEADER_SIZE + strlen(body) + KV_FRAME_TRAILER_SIZE);
	assert_memory_equal(out.p, "kvfs", 4);

	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_DEFAULT);
	size_t used = 0;
	assert_int_equal(kv_frame_decoder_feed(&d, out.p, out.n, &used), 1);
	assert_int_equal(used, out.n);
	assert_int_equal(kv_frame_decoder_need(&d), 0);
	struct kv_frame f = KV_FRAME_INIT;
	assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
	assert_int_equal(f.version, 1);
	assert_int_equal(f.flags, KV_FRAME_F_RETRY);
	assert_int_equal(f.type, 0x1234);
	assert_true(f.request_id == 0x0102030405060708ull);
	assert_true(kv_slice_eq(f.body, kv_slice_str(body)));
	assert_int_equal(kv_frame_decoder_take(&d, &f), KV_EINVAL);
	/* The body's block can be kept without a copy; the frame is then empty. */
	const uint8_t *bp = f.body.p;
	uint8_t *block = kv_frame_detach(&f);
	assert_non_null(block);
	assert_true(bp >= block);
	assert_memory_equal(bp, body, strlen(body));
	assert_null(f.body.p);
	assert_int_equal(f.body.n, 0);
	assert_null(kv_frame_detach(&f));
	kv_frame_release(&f); /* still safe */
	free(block);

	/* An empty body is still a frame with a trailer. */
	kv_buf_reset(&out);
	assert_int_equal(kv_frame_encode(&out, 1, 0, KV_MSG_STATS, 7, kv_slice_make(NULL, 0)), 0);
	assert_int_equal(out.n, KV_FRAME_HEADER_SIZE + KV_FRAME_TRAILER_SIZE);
	assert_int_equal(kv_frame_decoder_feed(&d, out.p, KV_FRAME_HEADER_SIZE, &used), 0);
	assert_int_equal(kv_frame_decoder_need(&d), KV_FRAME_TRAILER_SIZE);
	assert_true(kv_frame_decoder_partial(&d));
	assert_int_equal(kv_frame_decoder_feed(&d, out.p + KV_FRAME_HEADER_SIZE, 4, &used), 1);
	assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
	assert_int_equal(f.body.n, 0);
	assert_false(kv_frame_decoder_partial(&d));
	kv_frame_release(&f);

	/* The encoder refuses what no decoder accepts. */
	size_t before = out.n;
	assert_int_equal(kv_frame_encode(&out, 2, 0, 1, 1, kv_slice_str("x")), KV_EINVAL);
	assert_int_equal(kv_frame_encode(&out, 1, 0x80, 1, 1, kv_slice_str("x")), KV_EINVAL);
	assert_int_equal(out.n, before);
	kv_frame_decoder_release(&d);
	kv_buf_release(&out);
}

/* Builds a stream of @nframes random frames; their bodies go to @bodies. */
static void make_stream(struct kv_rng *r, struct kv_buf *stream, struct kv_buf *bodies,
			size_t nframes)
{
	for (size_t i = 0; i < nframes; i++) {
		size_t len = kv_rng_below(r, 4) == 0 ? kv_rng_below(r, 70000) : kv_rng_below(r, 64);
		uint8_t *p = malloc(len + 1);
		assert_non_null(p);
		rand_fill(r, p, len);
		assert_int_equal(kv_frame_encode(stream, 1, (uint8_t)kv_rng_below(r, 16),
						 (uint16_t)i, i * 3, kv_slice_make(p, len)), 0);
		bodies[i] = (struct kv_buf)KV_BUF_INIT;
		assert_int_equal(kv_buf_append(&bodies[i], p, len), 0);
		free(p);
	}
}

/*
 * Feeds @stream in chunks (size 1 when @max_chunk is 1) and checks every
 * frame. With @direct, a chunk that starts inside a body of which at least
 * @direct bytes are missing is written straight into the decoder's body
 * (kv_frame_decoder_body_room and _wrote, as the node's reader does).
 */
static void feed_stream_direct(struct kv_rng *r, const struct kv_buf *stream,
			       struct kv_buf *bodies, size_t nframes, size_t max_chunk, size_t direct)
{
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_DEFAULT);
	size_t off = 0, got = 0;
	while (off < stream->n) {
		size_t chunk = max_chunk == 1 ? 1 : 1 + kv_rng_below(r, max_chunk);
		if (chunk > stream->n - off)
			chunk = stream->n - off;
		size_t room = 0;
		uint8_t *into = direct ? kv_frame_decoder_body_room(&d, direct, &room) : NULL;
		if (into != NULL) {
			assert_true(room >= direct);
			if (chunk > room)
				chunk = room;
			memcpy(into, stream->p + off, chunk);
			kv_frame_decoder_wrote(&d, chunk);
			off += chunk;
			continue;
		}
		size_t at = 0;
		while (at < chunk) {
			size_t used = 0;
			int rc = kv_frame_decoder_feed(&d, stream->p + off + at, chunk - at, &used);
			assert_true(rc == 0 || rc == 1);
			at += used;
			if (rc == 1) {
				struct kv_frame f = KV_FRAME_INIT;
				assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
				assert_true(got < nframes);
				assert_int_equal(f.type, (uint16_t)got);
				assert_true(f.request_id == got * 3);
				assert_true(kv_slice_eq(f.body, kv_buf_slice(&bodies[got])));
				kv_frame_release(&f);
				got++;
			} else {
				assert_int_equal(at, chunk);
			}
		}
		off += chunk;
	}
	assert_int_equal(got, nframes);
	assert_false(kv_frame_decoder_partial(&d));
	kv_frame_decoder_release(&d);
}

static void feed_stream(struct kv_rng *r, const struct kv_buf *stream, struct kv_buf *bodies,
			size_t nframes, size_t max_chunk)
{
	feed_stream_direct(r, stream, bodies, nframes, max_chunk, 0);
}

static void test_proto__frame_decoder_takes_one_byte_at_a_time(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__frame_decoder_takes_one_byte_at_a_time"));
	struct kv_buf stream = KV_BUF_INIT, bodies[12];
	make_stream(&r, &stream, bodies, 12);
	feed_stream(&r, &stream, bodies, 12, 1);
	for (size_t i = 0; i < 12; i++)
		kv_buf_release(&bodies[i]);
	kv_buf_release(&stream);
}

static void test_proto__frame_decoder_takes_random_chunks(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__frame_decoder_takes_random_chunks"));
	for (int round = 0; round < 20; round++) {
		struct kv_buf stream = KV_BUF_INIT, bodies[30];
		make_stream(&r, &stream, bodies, 30);
		static const size_t max_chunks[] = { 2, 7, 25, 100, 4096, 1 << 20 };
		feed_stream(&r, &stream, bodies, 30, max_chunks[round % 6]);
		for (size_t i = 0; i < 30; i++)
			kv_buf_release(&bodies[i]);
		kv_buf_release(&stream);
	}
}

/*
 * Bodies read straight into the decoder (kv_frame_decoder_body_room) give
 * the same frames as bytes fed, in any split; the room never reaches past a
 * body, and a byte changed on the way in is still caught by the trailer.
 */
static void test_proto__frame_decoder_takes_bodies_read_in_place(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__frame_decoder_takes_bodies_read_in_place"));
	for (int round = 0; round < 20; round++) {
		struct kv_buf stream = KV_BUF_INIT, bodies[30];
		make_stream(&r, &stream, bodies, 30);
		static const size_t max_chunks[] = { 7, 100, 4096, 1 << 20 };
		static const size_t mins[] = { 1, 5, 64, 1000 };
		feed_stream_direct(&r, &stream, bodies, 30, max_chunks[round % 4], mins[round / 5]);
		for (size_t i = 0; i < 30; i++)
			kv_buf_release(&bodies[i]);
		kv_buf_release(&stream);
	}

	/* One frame of 100,000 body bytes: written in place, one byte changed. */
	struct kv_buf one = KV_BUF_INIT;
	uint8_t *body = malloc(100000);
	assert_non_null(body);
	for (size_t i = 0; i < 100000; i++)
		body[i] = (uint8_t)(i * 13);
	assert_int_equal(kv_frame_encode(&one, 1, 0, 7, 9, kv_slice_make(body, 100000)), 0);
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_DEFAULT);
	size_t used = 0, room = 0;
	assert_null(kv_frame_decoder_body_room(&d, 1, &room)); /* no header yet */
	assert_int_equal(kv_frame_decoder_feed(&d, one.p, KV_FRAME_HEADER_SIZE + 10, &used), 0);
	uint8_t *into = kv_frame_decoder_body_room(&d, 1, &room);
	assert_non_null(into);
	assert_int_equal(room, 100000 - 10);
	assert_null(kv_frame_decoder_body_room(&d, room + 1, &room));
	memcpy(into, one.p + KV_FRAME_HEADER_SIZE + 10, 100000 - 10);
	into[500] ^= 1;
	kv_frame_decoder_wrote(&d, 100000 - 10);
	assert_null(kv_frame_decoder_body_room(&d, 1, &room)); /* the trailer is not body */
	size_t at = KV_FRAME_HEADER_SIZE + 100000;
	assert_int_equal(kv_frame_decoder_feed(&d, one.p + at, one.n - at, &used), KV_ECORRUPT);
	kv_frame_decoder_release(&d);
	kv_buf_release(&one);
	free(body);
}

/* Feeds @n bytes at once to a fresh decoder; returns its result. */
static int feed_all(const uint8_t *p, size_t n, size_t max_body)
{
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, max_body);
	size_t used = 0;
	int rc = kv_frame_decoder_feed(&d, p, n, &used);
	if (rc < 0) {
		/* Sticky: nothing more is accepted. */
		size_t again = 0;
		assert_int_equal(kv_frame_decoder_feed(&d, p, n, &again), rc);
		assert_int_equal(again, 0);
		assert_int_equal(kv_frame_decoder_need(&d), 0);
	}
	kv_frame_decoder_release(&d);
	return rc;
}

/* Rewrites the header check after a deliberate header change. */
static void reseal_header(uint8_t *h)
{
	kv_put_le32(h + 20, kv_checksum32(h, 20));
}

static void test_proto__frame_rejects_corruption_in_every_field(void **state)
{
	(void)state;
	struct kv_buf f = KV_BUF_INIT;
	assert_int_equal(kv_frame_encode(&f, 1, 0, KV_MSG_GET, 42, kv_slice_str("body!")), 0);
	uint8_t *copy = malloc(f.n);
	assert_non_null(copy);
	assert_int_equal(feed_all(f.p, f.n, 1000), 1);

	/* A flipped bit anywhere in the frame is caught. */
	for (size_t i = 0; i < f.n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, f.p, f.n);
			copy[i] ^= (uint8_t)(1u << bit);
			int rc = feed_all(copy, f.n, 1000);
			if (i == 4) /* the version byte is checked before the header check */
				assert_int_equal(rc, KV_EVERSION);
			else
				assert_int_equal(rc, KV_ECORRUPT);
		}
	}

	/* Field by field, with the header check recomputed. */
	/* magic */
	for (size_t i = 0; i < 4; i++) {
		memcpy(copy, f.p, f.n);
		copy[i] = 'X';
		reseal_header(copy);
		assert_int_equal(feed_all(copy, f.n, 1000), KV_ECORRUPT);
	}
	/* version: 0 and a newer one */
	memcpy(copy, f.p, f.n);
	copy[4] = 0;
	reseal_header(copy);
	assert_int_equal(feed_all(copy, f.n, 1000), KV_EVERSION);
	copy[4] = KV_PROTO_VERSION_MAX + 1;
	reseal_header(copy);
	assert_int_equal(feed_all(copy, f.n, 1000), KV_EVERSION);
	/* flags: an unknown required bit is refused, an unknown advisory bit is not */
	memcpy(copy, f.p, f.n);
	copy[5] = 0x10;
	reseal_header(copy);
	assert_int_equal(feed_all(copy, f.n, 1000), KV_EVERSION);
	memcpy(copy, f.p, f.n);
	copy[5] = 0x08;
	reseal_header(copy);
	/* ... but the trailer covers the header, so reseal it too */
	kv_put_le32(copy + f.n - 4, kv_checksum32(copy, f.n - 4));
	assert_int_equal(feed_all(copy, f.n, 1000), 1);
	/* type and request id: covered by the trailer */
	for (size_t i = 6; i < 16; i++) {
		memcpy(copy, f.p, f.n);
		copy[i] ^= 0x01;
		reseal_header(copy);
		assert_int_equal(feed_all(copy, f.n, 1000), KV_ECORRUPT);
	}
	/* body length: longer waits for more bytes then fails; shorter fails the trailer */
	memcpy(copy, f.p, f.n);
	kv_put_le32(copy + 16, 4);
	reseal_header(copy);
	assert_int_equal(feed_all(copy, f.n, 1000), KV_ECORRUPT);
	memcpy(copy, f.p, f.n);
	kv_put_le32(copy + 16, 6);
	reseal_header(copy);
	assert_int_equal(feed_all(copy, f.n, 1000), 0);
	/* header check and trailer themselves */
	memcpy(copy, f.p, f.n);
	copy[20] ^= 0xff;
	assert_int_equal(feed_all(copy, f.n, 1000), KV_ECORRUPT);
	memcpy(copy, f.p, f.n);
	copy[f.n - 1] ^= 0xff;
	assert_int_equal(feed_all(copy, f.n, 1000), KV_ECORRUPT);

	/* Truncation at every offset: incomplete, never an error or a frame. */
	for (size_t n = 0; n < f.n; n++)
		assert_int_equal(feed_all(f.p, n, 1000), 0);
	free(copy);
	kv_buf_release(&f);
}

static void test_proto__frame_rejects_bad_magic_at_its_first_byte(void **state)
{
	(void)state;
	const char *http = "GET / HTTP/1.1\r\n\r\n";
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, 1000);
	size_t used = 0;
	assert_int_equal(kv_frame_decoder_feed(&d, (const uint8_t *)http, strlen(http), &used),
			 KV_ECORRUPT);
	assert_int_equal(used, 1);
	kv_frame_decoder_release(&d);

	kv_frame_decoder_init(&d, 1000);
	assert_int_equal(kv_frame_decoder_feed(&d, (const uint8_t *)"kvfX", 4, &used), KV_ECORRUPT);
	assert_int_equal(used, 4);
	kv_frame_decoder_release(&d);
}

static void test_proto__frame_oversize_length_is_refused_before_allocation(void **state)
{
	(void)state;
	/* A valid header announcing 4 GiB - 1: refused from the 24 header bytes. */
	uint8_t h[KV_FRAME_HEADER_SIZE] = { 'k', 'v', 'f', 's', 1, 0, 0x10, 0 };
	kv_put_le32(h + 16, UINT32_MAX);
	reseal_header(h);
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_DEFAULT);
	size_t used = 0;
	assert_int_equal(kv_frame_decoder_feed(&d, h, sizeof h, &used), KV_ETOOBIG);
	assert_int_equal(used, sizeof h);
	assert_null(d.buf); /* nothing was allocated */
	kv_frame_decoder_release(&d);

	/* The handshake limit: 4096 passes, 4097 does not. */
	kv_put_le32(h + 16, KV_FRAME_MAX_BODY_HANDSHAKE + 1);
	reseal_header(h);
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_HANDSHAKE);
	assert_int_equal(kv_frame_decoder_feed(&d, h, sizeof h, &used), KV_ETOOBIG);
	kv_frame_decoder_release(&d);
	kv_put_le32(h + 16, KV_FRAME_MAX_BODY_HANDSHAKE);
	reseal_header(h);
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_HANDSHAKE);
	assert_int_equal(kv_frame_decoder_feed(&d, h, sizeof h, &used), 0);
	assert_int_equal(kv_frame_decoder_need(&d), KV_FRAME_MAX_BODY_HANDSHAKE + 4);
	kv_frame_decoder_release(&d);

	/* Raising the limit after the handshake applies to the next header. */
	kv_put_le32(h + 16, 1 << 20);
	reseal_header(h);
	kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_HANDSHAKE);
	kv_frame_decoder_set_max(&d, KV_FRAME_MAX_BODY_DEFAULT);
	assert_int_equal(kv_frame_decoder_feed(&d, h, sizeof h, &used), 0);
	kv_frame_decoder_release(&d);
	kv_frame_decoder_init(&d, SIZE_MAX);
	assert_true(d.max_body == KV_FRAME_MAX_BODY_LIMIT);
	kv_frame_decoder_release(&d);
}

static void test_proto__frame_version_range_can_be_narrowed(void **state)
{
	(void)state;
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, 100);
	assert_int_equal(kv_frame_decoder_set_versions(&d, 0, 1), KV_EINVAL);
	assert_int_equal(kv_frame_decoder_set_versions(&d, 1, 2), KV_EINVAL);
	assert_int_equal(kv_frame_decoder_set_versions(&d, 1, 1), 0);
	kv_frame_decoder_release(&d);
}

static void test_proto__frame_waiting_frame_must_be_taken_first(void **state)
{
	(void)state;
	struct kv_buf s = KV_BUF_INIT;
	assert_int_equal(kv_frame_encode(&s, 1, 0, 1, 1, kv_slice_str("a")), 0);
	assert_int_equal(kv_frame_encode(&s, 1, 0, 2, 2, kv_slice_str("b")), 0);
	struct kv_frame_decoder d;
	kv_frame_decoder_init(&d, 100);
	size_t used = 0, more = 0;
	assert_int_equal(kv_frame_decoder_feed(&d, s.p, s.n, &used), 1);
	assert_int_equal(used, s.n / 2);
	assert_int_equal(kv_frame_decoder_feed(&d, s.p + used, s.n - used, &more), KV_EINVAL);
	assert_int_equal(more, 0);
	struct kv_frame f = KV_FRAME_INIT;
	assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
	kv_frame_release(&f);
	assert_int_equal(kv_frame_decoder_feed(&d, s.p + used, s.n - used, &more), 1);
	assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
	assert_int_equal(f.type, 2);
	kv_frame_release(&f);
	/* Released with a partial frame inside: no leak. */
	assert_int_equal(kv_frame_decoder_feed(&d, s.p, 26, &used), 0);
	kv_frame_decoder_release(&d);
	kv_buf_release(&s);
}

/* ---- messages ------------------------------------------------------------------- */

static void test_proto__every_message_type_round_trips(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__every_message_type_round_trips"));
	struct kv_buf enc = KV_BUF_INIT, again = KV_BUF_INIT, frame = KV_BUF_INIT;
	for (int round = 0; round < 40; round++) {
		for (size_t t = 0; t < NTYPES; t++) {
			struct pool pl = { .n = 0 };
			struct kv_msg m, back;
			rand_msg(&r, &pl, all_types[t], &m);
			encode_ok(&m, &enc);
			int rc = kv_msg_decode(m.type, kv_buf_slice(&enc), NULL, &back);
			if (rc)
				fail_msg("decode %s: %s", kv_msg_type_name(m.type), kv_strerror(rc));
			assert_true(kv_msg_equal(&m, &back));
			/* Canonical: the decoded message re-encodes to the same bytes. */
			encode_ok(&back, &again);
			assert_int_equal(again.n, enc.n);
			assert_memory_equal(again.p, enc.p, enc.n);
			kv_msg_release(&back);

			/* As a frame, through the streaming decoder. */
			kv_buf_reset(&frame);
			assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 99 + t, &frame), 0);
			assert_int_equal(frame.n, enc.n + KV_FRAME_HEADER_SIZE + 4);
			struct kv_frame_decoder d;
			kv_frame_decoder_init(&d, KV_FRAME_MAX_BODY_DEFAULT);
			size_t used = 0;
			assert_int_equal(kv_frame_decoder_feed(&d, frame.p, frame.n, &used), 1);
			struct kv_frame f = KV_FRAME_INIT;
			assert_int_equal(kv_frame_decoder_take(&d, &f), 0);
			assert_int_equal(f.type, m.type);
			assert_true(f.request_id == 99 + t);
			assert_int_equal(kv_msg_decode_frame(&f, NULL, &back), 0);
			assert_true(kv_msg_equal(&m, &back));
			kv_msg_release(&back);
			kv_frame_release(&f);
			kv_frame_decoder_release(&d);

			assert_non_null(kv_msg_type_name(m.type));
			kv_msg_release(&m);
			kv_msg_release(&m); /* twice is harmless */
			pool_free(&pl);
		}
	}
	kv_buf_release(&frame);
	kv_buf_release(&again);
	kv_buf_release(&enc);
}

static void test_proto__truncation_at_every_offset_is_refused(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__truncation_at_every_offset_is_refused"));
	struct kv_buf enc = KV_BUF_INIT;
	for (int round = 0; round < 3; round++) {
		for (size_t t = 0; t < NTYPES; t++) {
			struct pool pl = { .n = 0 };
			struct kv_msg m;
			rand_msg(&r, &pl, all_types[t], &m);
			encode_ok(&m, &enc);
			for (size_t n = 0; n < enc.n; n++) {
				int rc = decode_body(m.type, enc.p, n);
				if (rc != KV_ECORRUPT && rc != KV_ETOOBIG)
					fail_msg("%s cut at %zu of %zu: %d", kv_msg_type_name(m.type),
						 n, enc.n, rc);
			}
			/* A trailing byte is refused too. */
			assert_int_equal(kv_buf_append_u8(&enc, 0), 0);
			assert_int_equal(decode_body(m.type, enc.p, enc.n), KV_ECORRUPT);
			kv_msg_release(&m);
			pool_free(&pl);
		}
	}
	kv_buf_release(&enc);
}

static void test_proto__random_corruption_never_crashes(void **state)
{
	(void)state;
	struct kv_rng r;
	kv_rng_seed(&r, kv_test_seed("test_proto__random_corruption_never_crashes"));
	struct kv_buf enc = KV_BUF_INIT, again = KV_BUF_INIT;
	size_t accepted = 0, refused = 0;
	for (int round = 0; round < 60; round++) {
		for (size_t t = 0; t < NTYPES; t++) {
			struct pool pl = { .n = 0 };
			struct kv_msg m, back;
			rand_msg(&r, &pl, all_types[t], &m);
			encode_ok(&m, &enc);
			if (enc.n == 0) {
				kv_msg_release(&m);
				pool_free(&pl);
				continue;
			}
			size_t flips = 1 + kv_rng_below(&r, 3);
			for (size_t k = 0; k < flips; k++)
				enc.p[kv_rng_below(&r, enc.n)] ^= (uint8_t)(1 + kv_rng_below(&r, 255));
			if (kv_msg_decode(m.type, kv_buf_slice(&enc), NULL, &back) == 0) {
				/* Whatever is accepted is canonical. */
				encode_ok(&back, &again);
				assert_int_equal(again.n, enc.n);
				assert_memory_equal(again.p, enc.p, enc.n);
				kv_msg_release(&back);
				accepted++;
			} else {
				refused++;
			}
			kv_msg_release(&m);
			pool_free(&pl);
		}
	}
	print_message("corrupted bodies: %zu accepted (canonical), %zu refused\n", accepted,
		      refused);
	kv_buf_release(&again);
	kv_buf_release(&enc);
}

static void test_proto__unknown_type_is_a_version_error(void **state)
{
	(void)state;
	static const uint16_t unknown[] = {
		KV_MSG_NONE, 0x0005, 0x000e, 0x0020, 0x003f, 0x004b, 0x007f,
		KV_MSG_RANGE_GOSSIP_FIRST, KV_MSG_RANGE_HINTS_FIRST, KV_MSG_RANGE_AAE_LAST,
		KV_MSG_RANGE_STREAM_FIRST, KV_MSG_RANGE_ADMIN_LAST, 0x0200, 0xffff,
	};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		assert_false(kv_msg_type_known(unknown[i]));
		assert_null(kv_msg_type_name(unknown[i]));
		assert_int_equal(decode_body(unknown[i], (const uint8_t *)"abc", 3), KV_EVERSION);
		assert_int_equal(decode_body(unknown[i], NULL, 0), KV_EVERSION);
		struct kv_msg m;
		struct kv_buf out = KV_BUF_INIT;
		kv_msg_init(&m, unknown[i]);
		assert_int_equal(kv_msg_encode(&m, NULL, &out), KV_EINVAL);
		assert_int_equal(out.n, 0);
		kv_msg_release(&m);
	}
	assert_int_equal(kv_msg_reply_type(KV_MSG_GET), KV_MSG_GET_REPLY);
	assert_int_equal(kv_msg_reply_type(KV_MSG_DELETE), KV_MSG_DELETE_REPLY);
	assert_int_equal(kv_msg_reply_type(KV_MSG_READ_REPAIR), KV_MSG_READ_REPAIR_ACK);
	assert_int_equal(kv_msg_reply_type(KV_MSG_GET_REPLY), KV_MSG_NONE);
	assert_int_equal(kv_msg_reply_type(0x4242), KV_MSG_NONE);
	for (size_t t = 0; t < NTYPES; t++) {
		uint16_t reply = kv_msg_reply_type(all_types[t]);
		if (reply != KV_MSG_NONE)
			assert_int_equal(reply, all_types[t] + 1);
	}
	assert_true(kv_msg_type_is_handshake(KV_MSG_HELLO));
	assert_true(kv_msg_type_is_handshake(KV_MSG_ERROR));
	assert_false(kv_msg_type_is_handshake(KV_MSG_GET));
}

/* Encodes @m with a fresh buffer and returns kv_msg_encode()'s result. */
static int try_encode(const struct kv_msg *m, const struct kv_msg_limits *lim)
{
	struct kv_buf out = KV_BUF_INIT;
	int rc = kv_msg_encode(m, lim, &out);
	if (rc)
		assert_int_equal(out.n, 0);
	kv_buf_release(&out);
	return rc;
}

static void test_proto__limits_are_enforced_both_ways(void **state)
{
	(void)state;
	struct kv_msg_limits lim;
	kv_msg_limits_default(&lim);
	assert_int_equal(lim.max_key, 4096);
	assert_int_equal(lim.max_value, 4u << 20);
	assert_int_equal(lim.max_meta, 64u << 10);
	assert_int_equal(lim.max_reply_siblings, 64);
	assert_int_equal(lim.max_list_entries, 10000);
	static uint8_t big[(4u << 20) + 1];
	struct kv_buf enc = KV_BUF_INIT;
	struct kv_msg m;

	/* Key: 4096 passes, 4097 is too big, in the encoder and the decoder. */
	kv_msg_init(&m, KV_MSG_GET);
	m.get.key = kv_slice_make(big, 4096);
	assert_int_equal(try_encode(&m, NULL), 0);
	m.get.key = kv_slice_make(big, 4097);
	assert_int_equal(try_encode(&m, NULL), KV_ETOOBIG);
	uint8_t get[8] = { 0, 0, 0, 0x81, 0x20 }; /* key length 4097, no bytes */
	assert_int_equal(decode_body(KV_MSG_GET, get, 5), KV_ETOOBIG);
	get[3] = 0x80; /* 4096 claimed, none there: truncated */
	assert_int_equal(decode_body(KV_MSG_GET, get, 5), KV_ECORRUPT);
	kv_msg_release(&m);

	/* Body and metadata of a PUT. */
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.body = kv_slice_make(big, 4u << 20);
	assert_int_equal(try_encode(&m, NULL), 0);
	m.put.body = kv_slice_make(big, (4u << 20) + 1);
	assert_int_equal(try_encode(&m, NULL), KV_ETOOBIG);
	struct kv_msg_limits roomy = lim;
	roomy.max_value = 8u << 20;
	assert_int_equal(try_encode(&m, &roomy), 0);
	assert_int_equal(kv_msg_encode(&m, &roomy, &enc), 0);
	assert_int_equal(decode_body(KV_MSG_PUT, enc.p, enc.n), KV_ETOOBIG);
	kv_buf_reset(&enc);
	m.put.body = kv_slice_make(NULL, 0);
	m.put.meta = kv_slice_make(big, (64u << 10) + 1);
	assert_int_equal(try_encode(&m, NULL), KV_ETOOBIG);
	kv_msg_release(&m);

	/* Siblings: 64 in a client reply; more only between replicas. */
	kv_msg_init(&m, KV_MSG_GET_REPLY);
	struct kv_counter c;
	uint64_t lease;
	kv_counter_init(&c, 0, 1000);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	kv_counter_lease_durable(&c, lease);
	struct kv_dvv_limits dl;
	kv_dvv_limits_default(&dl);
	dl.max_siblings = 100;
	for (int i = 0; i < 65; i++) {
		struct kv_dvv_write w;
		struct kv_dot dot;
		memset(&w, 0, sizeof w);
		w.timestamp_ns = i;
		assert_int_equal(kv_dvv_put(&m.set_reply.set, &w, (struct kv_actor){ 1, 1 }, &c,
					    &dl, &dot), 0);
		assert_int_equal(try_encode(&m, NULL), i < 64 ? 0 : KV_ETOOBIG);
	}
	assert_int_equal(kv_dvv_encode(&m.set_reply.set, &enc), 0);
	assert_int_equal(decode_body(KV_MSG_GET_REPLY, enc.p, enc.n), KV_ETOOBIG);
	assert_int_equal(decode_body(KV_MSG_REPLICA_READ_REPLY, enc.p, enc.n), 0);
	kv_buf_reset(&enc);
	kv_msg_release(&m);

	/* List entries: a count above the page limit, or above what the bytes
	 * could hold, is refused before anything is allocated for it. */
	uint8_t lr[16] = { 0, 0 };
	size_t n = 2 + kv_varint_encode(lr + 2, 10001);
	assert_int_equal(decode_body(KV_MSG_LIST_REPLY, lr, n), KV_ETOOBIG);
	n = 2 + kv_varint_encode(lr + 2, 10000);
	assert_int_equal(decode_body(KV_MSG_LIST_REPLY, lr, n), KV_ECORRUPT);
	n = 2 + kv_varint_encode(lr + 2, UINT64_MAX);
	assert_int_equal(decode_body(KV_MSG_LIST_REPLY, lr, n), KV_ETOOBIG);
	n = kv_varint_encode(lr, UINT64_MAX);
	assert_int_equal(decode_body(KV_MSG_STATS_REPLY, lr, n), KV_ETOOBIG);
	n = kv_varint_encode(lr, 1000);
	assert_int_equal(decode_body(KV_MSG_STATS_REPLY, lr, n), KV_ECORRUPT);

	/* LIST's page size: 1..max_list_entries. */
	kv_msg_init(&m, KV_MSG_LIST);
	m.list.max_entries = 0;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list.max_entries = 10001;
	assert_int_equal(try_encode(&m, NULL), KV_ETOOBIG);
	m.list.max_entries = 10000;
	assert_int_equal(try_encode(&m, NULL), 0);
	/* LIST's flags: TOMBSTONES only; REPLICA_LIST's: none. */
	m.list.flags = KV_MSG_LIST_F_TOMBSTONES;
	assert_int_equal(try_encode(&m, NULL), 0);
	m.list.flags = 0x01;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.type = KV_MSG_REPLICA_LIST;
	m.list.flags = KV_MSG_LIST_F_TOMBSTONES;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list.flags = 0;
	assert_int_equal(try_encode(&m, NULL), 0);
	kv_msg_release(&m);
	uint8_t list[] = { KV_MSG_LIST_F_TOMBSTONES, 0, 0, 1, 0, 0 }; /* flags r timeout max "" "" */
	assert_int_equal(decode_body(KV_MSG_LIST, list, sizeof list), 0);
	assert_int_equal(decode_body(KV_MSG_REPLICA_LIST, list, sizeof list), KV_ECORRUPT);
	list[0] = 0x80;
	assert_int_equal(decode_body(KV_MSG_LIST, list, sizeof list), KV_ECORRUPT);

	/* Error text: 1024 bytes at most. */
	kv_msg_init(&m, KV_MSG_ERROR);
	m.error.code = KV_EQUORUM;
	m.error.text = kv_slice_make(big, 1025);
	assert_int_equal(try_encode(&m, NULL), KV_ETOOBIG);
	kv_msg_release(&m);
	kv_buf_release(&enc);
}

static void test_proto__malformed_fields_are_refused(void **state)
{
	(void)state;
	struct kv_msg m;
	struct kv_buf enc = KV_BUF_INIT;

	/* A tombstone with a body; a DELETE with flags; a FORWARD_PUT with no hops. */
	kv_msg_init(&m, KV_MSG_PUT);
	m.put.flags = KV_MSG_PUT_F_TOMBSTONE;
	m.put.body = kv_slice_str("x");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.put.body = kv_slice_str("");
	assert_int_equal(try_encode(&m, NULL), 0);
	m.put.flags = 0x02;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.put.flags = 0;
	m.put.w = 17;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.put.w = 16;
	m.put.hops = 1;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.type = KV_MSG_FORWARD_PUT;
	assert_int_equal(try_encode(&m, NULL), 0);
	m.put.hops = 0;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.put.hops = KV_MSG_HOPS_MAX + 1;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.type = KV_MSG_DELETE;
	m.put.hops = 0;
	m.put.flags = KV_MSG_PUT_F_TOMBSTONE;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.put.flags = 0;
	assert_int_equal(try_encode(&m, NULL), 0);
	kv_msg_release(&m);

	/* The same rules in the decoder: flag bits, quorum, non-minimal varint. */
	uint8_t get[] = { 0, 0, 0, 1, 'k' };
	assert_int_equal(decode_body(KV_MSG_GET, get, sizeof get), 0);
	get[0] = KV_MSG_GET_F_HEAD | KV_MSG_GET_F_TOMBSTONES;
	assert_int_equal(decode_body(KV_MSG_GET, get, sizeof get), 0);
	get[0] = 0x04;
	assert_int_equal(decode_body(KV_MSG_GET, get, sizeof get), KV_ECORRUPT);
	get[0] = 0;
	get[1] = 17;
	assert_int_equal(decode_body(KV_MSG_GET, get, sizeof get), KV_ECORRUPT);
	uint8_t get2[] = { 0, 0, 0x80, 0x00, 1, 'k' }; /* timeout 0 in two bytes */
	assert_int_equal(decode_body(KV_MSG_GET, get2, sizeof get2), KV_ECORRUPT);
	uint8_t get3[] = { 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 'k' }; /* 2^32 */
	assert_int_equal(decode_body(KV_MSG_GET, get3, sizeof get3), KV_ECORRUPT);

	/* Handshake ids: alphabet, length, role. */
	kv_msg_init(&m, KV_MSG_HELLO);
	m.hello.min_version = m.hello.max_version = 1;
	m.hello.cluster = kv_slice_str("prod-1");
	assert_int_equal(try_encode(&m, NULL), 0);
	m.hello.node_id = kv_slice_str("n1");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL); /* a client has no id */
	m.hello.role = KV_MSG_ROLE_NODE;
	assert_int_equal(try_encode(&m, NULL), 0);
	m.hello.node_id = kv_slice_str("n 1");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.hello.node_id = kv_slice_str("n1");
	m.hello.role = 2;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.hello.role = KV_MSG_ROLE_NODE;
	m.hello.cluster = kv_slice_str("");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.hello.cluster = kv_slice_str("c");
	m.hello.min_version = 2;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	kv_msg_release(&m);

	/* ERROR codes are negative; WELCOME's quorums fit N. */
	kv_msg_init(&m, KV_MSG_ERROR);
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.error.code = -1;
	assert_int_equal(try_encode(&m, NULL), 0);
	kv_msg_release(&m);
	kv_msg_init(&m, KV_MSG_WELCOME);
	m.welcome.n = 3;
	m.welcome.r = 2;
	m.welcome.w = 4;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.welcome.w = 2;
	assert_int_equal(try_encode(&m, NULL), 0);
	kv_msg_release(&m);

	/* PUT_REPLY: the context must cover the dot. */
	kv_msg_init(&m, KV_MSG_PUT_REPLY);
	m.put_reply.dot = (struct kv_dot){ { 1, 1 }, 5 };
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	assert_int_equal(kv_ctx_add(&m.put_reply.context, m.put_reply.dot), 0);
	assert_int_equal(try_encode(&m, NULL), 0);
	kv_msg_release(&m);

	/* LIST_REPLY: names ascending and unique, no bodies, MORE iff cursor. */
	kv_msg_init(&m, KV_MSG_LIST_REPLY);
	struct kv_dvv set = KV_DVV_INIT;
	assert_int_equal(kv_msg_list_push(&m, kv_slice_str("b"), &set), 0);
	assert_int_equal(kv_msg_list_push(&m, kv_slice_str("c"), &set), 0);
	assert_int_equal(try_encode(&m, NULL), 0);
	m.list_reply.flags = KV_MSG_LIST_F_MORE;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list_reply.next_cursor = kv_slice_str("c");
	assert_int_equal(try_encode(&m, NULL), 0);
	m.list_reply.flags = 0;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list_reply.next_cursor = kv_slice_str("");
	m.list_reply.entries[1].name = kv_slice_str("b");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list_reply.entries[1].name = kv_slice_str("a");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list_reply.entries[1].name = kv_slice_str("");
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.list_reply.entries[1].name = kv_slice_str("c");
	/* a version with a body in a listing */
	struct kv_counter c;
	uint64_t lease;
	kv_counter_init(&c, 0, 100);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	kv_counter_lease_durable(&c, lease);
	struct kv_dvv_write w;
	struct kv_dot dot;
	memset(&w, 0, sizeof w);
	w.body = kv_slice_str("body");
	assert_int_equal(kv_dvv_put(&m.list_reply.entries[0].set, &w, (struct kv_actor){ 1, 1 },
				    &c, NULL, &dot), 0);
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	m.type = KV_MSG_REPLICA_LIST_REPLY;
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	kv_msg_release(&m);

	/* STATS_REPLY: names ascending, unique, 1..255 bytes. */
	kv_msg_init(&m, KV_MSG_STATS_REPLY);
	assert_int_equal(kv_msg_stats_push(&m, kv_slice_str("get"), 1), 0);
	assert_int_equal(kv_msg_stats_push(&m, kv_slice_str("put"), 2), 0);
	assert_int_equal(try_encode(&m, NULL), 0);
	assert_int_equal(kv_msg_stats_push(&m, kv_slice_str("list"), 3), 0);
	assert_int_equal(try_encode(&m, NULL), KV_EINVAL);
	kv_msg_release(&m);
	/* Pushing onto the wrong type is refused. */
	kv_msg_init(&m, KV_MSG_GET);
	assert_int_equal(kv_msg_stats_push(&m, kv_slice_str("x"), 1), KV_EINVAL);
	assert_int_equal(kv_msg_list_push(&m, kv_slice_str("x"), &set), KV_EINVAL);
	kv_msg_release(&m);

	/* A sibling set with a bad format byte inside a frame is corrupt. */
	uint8_t badset[] = { 2, 0, 0, 0 };
	assert_int_equal(decode_body(KV_MSG_GET_REPLY, badset, sizeof badset), KV_ECORRUPT);
	badset[0] = 1;
	assert_int_equal(decode_body(KV_MSG_GET_REPLY, badset, sizeof badset), 0);
	kv_dvv_release(&set);
	kv_buf_release(&enc);
}

static void test_proto__auth_transcript_binds_both_sides(void **state)
{
	(void)state;
	struct kv_msg hello, ch;
	kv_msg_init(&hello, KV_MSG_HELLO);
	kv_msg_init(&ch, KV_MSG_CHALLENGE);
	hello.hello.min_version = hello.hello.max_version = 1;
	hello.hello.cluster = kv_slice_str("c1");
	memset(hello.hello.nonce, 0x11, KV_MSG_NONCE_LEN);
	ch.challenge.version = 1;
	ch.challenge.node_id = kv_slice_str("n1");
	memset(ch.challenge.nonce, 0x22, KV_MSG_NONCE_LEN);

	struct kv_buf s = KV_BUF_INIT, c = KV_BUF_INIT, x = KV_BUF_INIT;
	assert_int_equal(kv_msg_auth_transcript(&s, true, &hello.hello, &ch.challenge), 0);
	assert_int_equal(kv_msg_auth_transcript(&c, false, &hello.hello, &ch.challenge), 0);
	assert_false(kv_slice_eq(kv_buf_slice(&s), kv_buf_slice(&c)));
	/* 1+19 label, version, role, 2 nonces, cluster, client id, server id. */
	assert_int_equal(s.n, 20 + 1 + 1 + 64 + 3 + 1 + 3);
	/* Every input changes the transcript. */
	hello.hello.nonce[5] ^= 1;
	assert_int_equal(kv_msg_auth_transcript(&x, true, &hello.hello, &ch.challenge), 0);
	assert_false(kv_slice_eq(kv_buf_slice(&s), kv_buf_slice(&x)));
	hello.hello.nonce[5] ^= 1;
	kv_buf_reset(&x);
	ch.challenge.nonce[31] ^= 1;
	assert_int_equal(kv_msg_auth_transcript(&x, true, &hello.hello, &ch.challenge), 0);
	assert_false(kv_slice_eq(kv_buf_slice(&s), kv_buf_slice(&x)));
	ch.challenge.nonce[31] ^= 1;
	kv_buf_reset(&x);
	hello.hello.cluster = kv_slice_str("c2");
	assert_int_equal(kv_msg_auth_transcript(&x, true, &hello.hello, &ch.challenge), 0);
	assert_false(kv_slice_eq(kv_buf_slice(&s), kv_buf_slice(&x)));
	kv_buf_reset(&x);
	hello.hello.cluster = kv_slice_str("c1");
	ch.challenge.version = 2;
	assert_int_equal(kv_msg_auth_transcript(&x, true, &hello.hello, &ch.challenge), 0);
	assert_false(kv_slice_eq(kv_buf_slice(&s), kv_buf_slice(&x)));
	kv_buf_release(&x);
	kv_buf_release(&c);
	kv_buf_release(&s);
	kv_msg_release(&ch);
	kv_msg_release(&hello);
}

/* ---- worked examples (doc/protocol.md §8) and the fuzz corpus ---------------------- */

static void example_get(struct kv_msg *m)
{
	kv_msg_init(m, KV_MSG_GET);
	m->get.r = 2;
	m->get.timeout_ms = 5000;
	m->get.key = kv_slice_str("/docs/a.txt");
}

static void example_put(struct kv_msg *m)
{
	kv_msg_init(m, KV_MSG_PUT);
	m->put.w = 2;
	m->put.timeout_ms = 5000;
	m->put.request_id[0] = 0xaa;
	m->put.request_id[15] = 0x01;
	m->put.key = kv_slice_str("/docs/a.txt");
	/* The context of an earlier GET: vector (1,1) -> 7. */
	assert_int_equal(kv_ctx_add(&m->put.context, (struct kv_dot){ { 1, 1 }, 1 }), 0);
	assert_int_equal(kv_ctx_advance(&m->put.context, (struct kv_dot){ { 1, 1 }, 7 }), 0);
	m->put.meta = kv_slice_str("m");
	m->put.body = kv_slice_str("hi");
}

static void print_hex(const char *title, const struct kv_buf *b)
{
	printf("%s (%zu bytes):\n", title, b->n);
	for (size_t i = 0; i < b->n; i++)
		printf("%02x%s", b->p[i], (i % 16 == 15 || i + 1 == b->n) ? "\n" : " ");
}

static void test_proto__worked_examples_match_the_doc(void **state)
{
	(void)state;
	/* The frames shown in doc/protocol.md §8, byte for byte. */
	static const uint8_t get_frame[] = {
		0x6b, 0x76, 0x66, 0x73, 0x01, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x36, 0x4d, 0xb4, 0x7d,
		0x00, 0x02, 0x88, 0x27, 0x0b, 0x2f, 0x64, 0x6f, 0x63, 0x73, 0x2f, 0x61,
		0x2e, 0x74, 0x78, 0x74, 0xd6, 0x5d, 0x76, 0x2a,
	};
	static const uint8_t put_frame[] = {
		0x6b, 0x76, 0x66, 0x73, 0x01, 0x00, 0x12, 0x00, 0x02, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x3d, 0x39, 0xa4, 0x5b,
		0x00, 0x02, 0x88, 0x27, 0xaa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0b, 0x2f, 0x64, 0x6f,
		0x63, 0x73, 0x2f, 0x61, 0x2e, 0x74, 0x78, 0x74, 0x05, 0x01, 0x01, 0x01,
		0x07, 0x00, 0x01, 0x6d, 0x02, 0x68, 0x69, 0x9d, 0x81, 0x4f, 0x71,
	};
	struct kv_msg m;
	struct kv_buf f = KV_BUF_INIT;
	example_get(&m);
	assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 1, &f), 0);
	if (getenv("KV_PROTO_EXAMPLES"))
		print_hex("GET frame", &f);
	assert_int_equal(f.n, sizeof get_frame);
	assert_memory_equal(f.p, get_frame, f.n);
	kv_msg_release(&m);
	kv_buf_reset(&f);

	example_put(&m);
	assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 2, &f), 0);
	if (getenv("KV_PROTO_EXAMPLES"))
		print_hex("PUT frame", &f);
	assert_int_equal(f.n, sizeof put_frame);
	assert_memory_equal(f.p, put_frame, f.n);
	struct kv_msg back;
	assert_int_equal(kv_msg_decode(KV_MSG_PUT,
				       kv_slice_make(f.p + KV_FRAME_HEADER_SIZE,
						     f.n - KV_FRAME_HEADER_SIZE - 4),
				       NULL, &back), 0);
	assert_true(kv_msg_equal(&m, &back));
	kv_msg_release(&back);
	kv_msg_release(&m);
	kv_buf_release(&f);
}

/*
 * Writes one fuzz seed: fuzz_proto.c reads its first byte as the chunk size
 * it feeds the stream in (0 = all at once), then the frames; or, for a first
 * byte of 0x80 and up, a le16 type and a body (@type != KV_MSG_NONE here).
 */
static void write_seed(const char *dir, const char *name, uint8_t step, uint16_t type,
		       const struct kv_buf *b)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	if (type != KV_MSG_NONE) {
		uint8_t head[3] = { 0x80, (uint8_t)type, (uint8_t)(type >> 8) };
		assert_int_equal(fwrite(head, 1, 3, fp), 3);
	} else {
		assert_int_equal(fputc(step, fp), step);
	}
	assert_int_equal(fwrite(b->p, 1, b->n, fp), b->n);
	assert_int_equal(fclose(fp), 0);
}

static void test_proto__write_fuzz_corpus(void **state)
{
	(void)state;
	const char *dir = getenv("KV_CORPUS_OUT");
	if (!dir)
		skip();
	struct kv_rng r;
	kv_rng_seed(&r, 2024);
	struct kv_buf b = KV_BUF_INIT;
	char name[64];
	/* One frame of each type, small, then a few streams of several frames. */
	for (size_t t = 0; t < NTYPES; t++) {
		for (int k = 0, written = 0; k < 8 && written < 2; k++) {
			struct pool pl = { .n = 0 };
			struct kv_msg m;
			kv_buf_reset(&b);
			rand_msg(&r, &pl, all_types[t], &m);
			if (kv_msg_encode_frame(&m, NULL, 1, 0, t, &b) == 0 && b.n < 2048) {
				snprintf(name, sizeof name, "%s-%d", kv_msg_type_name(all_types[t]),
					 written);
				write_seed(dir, name, (uint8_t)(written ? 5 : 0), KV_MSG_NONE, &b);
				/* The same body alone, for the direct mode. */
				struct kv_buf body = KV_BUF_INIT;
				assert_int_equal(kv_buf_append(&body, b.p + KV_FRAME_HEADER_SIZE,
							       b.n - KV_FRAME_HEADER_SIZE - 4), 0);
				snprintf(name, sizeof name, "body-%s-%d",
					 kv_msg_type_name(all_types[t]), written);
				write_seed(dir, name, 0, all_types[t], &body);
				kv_buf_release(&body);
				written++;
			}
			kv_msg_release(&m);
			pool_free(&pl);
		}
	}
	for (int s = 0; s < 4; s++) {
		kv_buf_reset(&b);
		for (int k = 0; k < 4; k++) {
			struct pool pl = { .n = 0 };
			struct kv_msg m;
			uint16_t type = all_types[kv_rng_below(&r, NTYPES)];
			rand_msg(&r, &pl, type, &m);
			size_t before = b.n;
			if (kv_msg_encode_frame(&m, NULL, 1, 0, (uint64_t)k, &b) == 0 && b.n > 4096)
				b.n = before;
			kv_msg_release(&m);
			pool_free(&pl);
		}
		snprintf(name, sizeof name, "stream-%d", s);
		write_seed(dir, name, (uint8_t)(s * 3), KV_MSG_NONE, &b);
	}
	struct kv_msg m;
	kv_buf_reset(&b);
	example_get(&m);
	assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 1, &b), 0);
	kv_msg_release(&m);
	example_put(&m);
	assert_int_equal(kv_msg_encode_frame(&m, NULL, 1, 0, 2, &b), 0);
	kv_msg_release(&m);
	write_seed(dir, "examples", 1, KV_MSG_NONE, &b);
	kv_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proto__frame_round_trips),
		cmocka_unit_test(test_proto__frame_decoder_takes_one_byte_at_a_time),
		cmocka_unit_test(test_proto__frame_decoder_takes_bodies_read_in_place),
		cmocka_unit_test(test_proto__frame_decoder_takes_random_chunks),
		cmocka_unit_test(test_proto__frame_rejects_corruption_in_every_field),
		cmocka_unit_test(test_proto__frame_rejects_bad_magic_at_its_first_byte),
		cmocka_unit_test(test_proto__frame_oversize_length_is_refused_before_allocation),
		cmocka_unit_test(test_proto__frame_version_range_can_be_narrowed),
		cmocka_unit_test(test_proto__frame_waiting_frame_must_be_taken_first),
		cmocka_unit_test(test_proto__every_message_type_round_trips),
		cmocka_unit_test(test_proto__truncation_at_every_offset_is_refused),
		cmocka_unit_test(test_proto__random_corruption_never_crashes),
		cmocka_unit_test(test_proto__unknown_type_is_a_version_error),
		cmocka_unit_test(test_proto__limits_are_enforced_both_ways),
		cmocka_unit_test(test_proto__malformed_fields_are_refused),
		cmocka_unit_test(test_proto__auth_transcript_binds_both_sides),
		cmocka_unit_test(test_proto__worked_examples_match_the_doc),
		cmocka_unit_test(test_proto__write_fuzz_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
