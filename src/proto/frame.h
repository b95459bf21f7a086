/*
 * frame.h - the kvfs wire framing: a fixed 24-byte header, a body, and a
 * checksum trailer, with a streaming decoder for partial reads.
 *
 * Pure: no I/O. A libuv reader feeds whatever bytes arrived to
 * kv_frame_decoder_feed(); a writer appends whole frames to a kv_buf.
 * Format and version rule: doc/protocol.md §2 (framing) and §3 (versions).
 */
#ifndef KV_PROTO_FRAME_H
#define KV_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

/* doc/protocol.md §2.1: "kvfs" in ASCII, the first 4 bytes of every frame. */
#define KV_FRAME_MAGIC0 0x6b
#define KV_FRAME_MAGIC1 0x76
#define KV_FRAME_MAGIC2 0x66
#define KV_FRAME_MAGIC3 0x73

#define KV_FRAME_HEADER_SIZE 24
#define KV_FRAME_TRAILER_SIZE 4

/* Protocol versions this code speaks (doc/protocol.md §3). */
#define KV_PROTO_VERSION_MIN 1
#define KV_PROTO_VERSION_MAX 1

/*
 * Frame flags (doc/protocol.md §2.2). Bits 0-3 are advisory: a receiver that
 * does not know one ignores it. Bits 4-7 must be understood: a frame with an
 * unknown one is refused with KV_EVERSION.
 */
#define KV_FRAME_F_RETRY 0x01         /* a retransmission of this request id */
#define KV_FRAME_F_ADVISORY_MASK 0x0f
#define KV_FRAME_F_REQUIRED_MASK 0xf0
#define KV_FRAME_F_KNOWN (KV_FRAME_F_ADVISORY_MASK) /* no required bit defined yet */

/*
 * Body size limits. The default fits a full sibling set: 64 siblings of
 * 4 MiB bodies and 64 KiB metadata (260 MiB) plus contexts and headers.
 * Before authentication a connection uses the small handshake limit.
 */
#define KV_FRAME_MAX_BODY_DEFAULT ((size_t)280 << 20)
#define KV_FRAME_MAX_BODY_HANDSHAKE ((size_t)4096)
/* The largest limit kv_frame_decoder_set_max() accepts (1 GiB). */
#define KV_FRAME_MAX_BODY_LIMIT ((size_t)1 << 30)

/*
 * One decoded frame. @body borrows from @storage, which the frame owns:
 * kv_frame_release() frees it. Message decoders may borrow from @body, so
 * keep the frame alive while a message decoded from it is used.
 */
struct kv_frame {
	uint8_t version;
	uint8_t flags;
	uint16_t type;
	uint64_t request_id;
	struct kv_slice body;
	uint8_t *storage; /* private: owns the body (may be NULL for 0 bytes) */
};

#define KV_FRAME_INIT { 0, 0, 0, 0, { NULL, 0 }, NULL }

/* Frees the body and leaves @f empty. Safe on an empty frame. */
void kv_frame_release(struct kv_frame *f);

/*
 * Hands the frame's buffer over to the caller, who frees it with free():
 * the malloc'd block that holds @f->body (so a large body is kept without
 * a copy; slices decoded from the body stay valid while the block lives),
 * or NULL when @f owns none. @f is left empty.
 */
uint8_t *kv_frame_detach(struct kv_frame *f);

/*
 * Appends one complete frame (header, @body, trailer) to @out.
 * Returns 0, KV_EINVAL (unknown required flag bit, or version outside
 * [KV_PROTO_VERSION_MIN, KV_PROTO_VERSION_MAX]), KV_ETOOBIG (body above
 * KV_FRAME_MAX_BODY_LIMIT) or -ENOMEM; on failure @out is unchanged.
 */
int kv_frame_encode(struct kv_buf *out, uint8_t version, uint8_t flags, uint16_t type,
		    uint64_t request_id, struct kv_slice body);

/*
 * Two-step encoding, so a body can be encoded in place without a copy:
 * kv_frame_begin() appends a header placeholder, sets *offset to where it
 * starts in @out and returns 0, or an error as kv_frame_encode() (then @out
 * is unchanged); the caller appends the body;
 * kv_frame_finish() fills in the header and appends the trailer, and returns
 * 0, KV_ETOOBIG (body above KV_FRAME_MAX_BODY_LIMIT) or -ENOMEM. On a
 * failure of finish, or when the caller gives up, truncate @out back to
 * *offset (out->n = offset).
 */
int kv_frame_begin(struct kv_buf *out, uint8_t version, uint8_t flags, uint16_t type,
		   uint64_t request_id, size_t *offset);
int kv_frame_finish(struct kv_buf *out, size_t offset);

/* The decoded fixed header (doc/protocol.md §2.1). */
struct kv_frame_header {
	uint8_t version;
	uint8_t flags;
	uint16_t type;
	uint64_t request_id;
	uint32_t body_len;
};

/*
 * Checks and decodes the @n >= KV_FRAME_HEADER_SIZE bytes at @p as a header,
 * for a receiver that accepts versions [min_version, max_version] and bodies
 * up to @max_body bytes. Checks, in order: magic (KV_ECORRUPT), version
 * (KV_EVERSION), header checksum (KV_ECORRUPT), required flags (KV_EVERSION),
 * body length (KV_ETOOBIG). Returns 0 and sets *h, or the error and leaves *h
 * unset.
 */
int kv_frame_header_decode(const uint8_t *p, size_t n, uint8_t min_version,
			   uint8_t max_version, size_t max_body, struct kv_frame_header *h);

/*
 * The streaming decoder. Caller-owned: kv_frame_decoder_init() /
 * kv_frame_decoder_release(). Not thread-safe: one per connection, used by
 * the connection's loop only.
 */
struct kv_frame_decoder {
	size_t max_body;
	uint8_t min_version, max_version;
	/* private */
	int err;                            /* sticky error, 0 when healthy */
	bool in_body;                       /* header decoded, reading body+trailer */
	bool ready;                         /* a complete frame waits in @frame */
	uint8_t hdr[KV_FRAME_HEADER_SIZE];
	size_t hdr_have;
	struct kv_frame_header h;
	uint8_t *buf;                       /* body ‖ trailer, h.body_len + 4 */
	size_t buf_have;
	uint8_t trailer[KV_FRAME_TRAILER_SIZE];
	uint64_t frames;                    /* frames completed so far */
};

/*
 * Prepares @d to accept bodies up to @max_body bytes (clamped to
 * KV_FRAME_MAX_BODY_LIMIT) and every version this code speaks.
 */
void kv_frame_decoder_init(struct kv_frame_decoder *d, size_t max_body);

/* Frees a partial frame, if any. @d may be initialized again afterwards. */
void kv_frame_decoder_release(struct kv_frame_decoder *d);

/*
 * Changes the body limit for frames whose header has not been read yet (for
 * example from KV_FRAME_MAX_BODY_HANDSHAKE to the default once a connection
 * is authenticated). Clamped to KV_FRAME_MAX_BODY_LIMIT.
 */
void kv_frame_decoder_set_max(struct kv_frame_decoder *d, size_t max_body);

/*
 * Limits accepted versions to [min_version, max_version] (the version
 * agreed in the handshake). Returns 0 or KV_EINVAL for a range outside what
 * this code speaks.
 */
int kv_frame_decoder_set_versions(struct kv_frame_decoder *d, uint8_t min_version,
				  uint8_t max_version);

/*
 * Feeds up to @n bytes at @p. Consumes bytes until one frame completes or
 * the input runs out, and sets *used to the bytes consumed (also on error:
 * the bytes read before the error was found). Returns:
 *   1   a frame is ready: take it with kv_frame_decoder_take() before
 *       feeding the rest of the input (p + *used);
 *   0   every byte was consumed and the frame is incomplete;
 *       kv_frame_decoder_need() says how many more bytes are needed at least;
 *   <0  KV_ECORRUPT (bad magic, header or trailer checksum), KV_EVERSION
 *       (version or required flag), KV_ETOOBIG (body length above the limit;
 *       found from the header alone, before any allocation), KV_EINVAL
 *       (fed while a frame waits to be taken), -ENOMEM. Errors are sticky:
 *       the stream has lost its framing, so every later call returns the
 *       same error; answer with an ERROR message and close the connection.
 * A bad magic is reported as soon as its first wrong byte arrives.
 */
int kv_frame_decoder_feed(struct kv_frame_decoder *d, const uint8_t *p, size_t n,
			  size_t *used);

/*
 * Moves the ready frame into @out (which must be empty or released; it now
 * owns the body: kv_frame_release()). Returns 0, or KV_EINVAL when no frame
 * is ready (then @out is untouched).
 */
int kv_frame_decoder_take(struct kv_frame_decoder *d, struct kv_frame *out);

/*
 * Bytes still needed to finish the current stage: the rest of the header, or
 * the rest of body and trailer. At least 1 unless a frame is ready or the
 * decoder failed (then 0).
 */
size_t kv_frame_decoder_need(const struct kv_frame_decoder *d);

/* True when some bytes of an unfinished frame are buffered (a partial frame). */
bool kv_frame_decoder_partial(const struct kv_frame_decoder *d);

/*
 * Reading a large body without a copy: while the decoder is inside a body
 * with at least @min of the body's bytes still to come, returns where the
 * next of them go and sets *room to how many are missing (never past the
 * body: the trailer still goes through kv_frame_decoder_feed()); otherwise
 * NULL. A reader may read straight into it, then must call
 * kv_frame_decoder_wrote() with the count it read (at most *room) before
 * anything else touches the decoder.
 */
uint8_t *kv_frame_decoder_body_room(struct kv_frame_decoder *d, size_t min, size_t *room);
void kv_frame_decoder_wrote(struct kv_frame_decoder *d, size_t n);

#endif
