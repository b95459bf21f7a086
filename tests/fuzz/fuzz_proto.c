/*
 * fuzz_proto.c - libFuzzer target for the wire protocol (src/proto; format:
 * doc/protocol.md).
 *
 * Two modes, chosen by the first byte. Below 0x80 the rest is a byte
 * stream from a peer: it is fed to the streaming frame decoder in chunks of
 * that many bytes (0 = all at once), and every complete frame is decoded as
 * a message. From 0x80 up, the next two bytes are a message type (le16) and
 * the rest is a body, decoded directly, so mutations reach the message
 * decoders without having to fix frame checksums. A message that decodes must
 * re-encode to exactly its body (bodies are canonical), and the re-encoding
 * must decode to an equal message. Nothing may crash, leak or read out of
 * bounds. Seed corpus: tests/fuzz/corpus/proto/ (regenerate with
 * KV_CORPUS_OUT=DIR build/tests/unit/test_proto).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/msg.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_body(uint16_t type, struct kv_slice body, const struct kv_msg_limits *lim)
{
	struct kv_msg m, back;
	struct kv_buf enc = KV_BUF_INIT;
	if (kv_msg_decode(type, body, lim, &m) != 0) {
		if (m.type != KV_MSG_NONE)
			abort(); /* a failed decode leaves an empty message */
		return;
	}
	if (kv_msg_encode(&m, lim, &enc) != 0)
		abort();
	if (enc.n != body.n || (enc.n && memcmp(enc.p, body.p, enc.n) != 0))
		abort();
	if (kv_msg_decode(m.type, kv_buf_slice(&enc), lim, &back) != 0)
		abort();
	if (!kv_msg_equal(&m, &back))
		abort();
	kv_msg_release(&back);
	kv_msg_release(&m);
	kv_buf_release(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv_frame_decoder d;
	struct kv_msg_limits lim;
	kv_msg_limits_default(&lim);
	/* A small limit keeps allocations proportional to the input. */
	kv_frame_decoder_init(&d, 1 << 20);

	if (size >= 3 && data[0] >= 0x80) {
		uint16_t type = (uint16_t)(data[1] | (data[2] << 8));
		/* A private copy of exactly the body, so ASan sees overreads. */
		uint8_t *body = malloc(size - 3 + 1);
		if (!body)
			goto out;
		memcpy(body, data + 3, size - 3);
		check_body(type, kv_slice_make(body, size - 3), &lim);
		free(body);
		goto out;
	}
	/* The first byte picks the chunk size: 0 = all at once. */
	size_t step = size ? data[0] : 0;
	size_t off = size ? 1 : 0;
	while (off < size) {
		size_t chunk = step ? step : size - off;
		if (chunk > size - off)
			chunk = size - off;
		size_t at = 0;
		while (at < chunk) {
			size_t used = 0;
			int rc = kv_frame_decoder_feed(&d, data + off + at, chunk - at, &used);
			at += used;
			if (rc < 0)
				goto out;
			if (rc == 1) {
				struct kv_frame f = KV_FRAME_INIT;
				if (kv_frame_decoder_take(&d, &f) != 0)
					abort();
				check_body(f.type, f.body, &lim);
				kv_frame_release(&f);
			} else if (at != chunk) {
				abort(); /* "need more" must mean the chunk was consumed */
			}
		}
		off += chunk;
	}
out:
	kv_frame_decoder_release(&d);
	return 0;
}
