/*
 * frame.c - kvfs wire framing: header, body, trailer; streaming decoder.
 *
 * Layout (doc/protocol.md §2.1):
 *   0 magic "kvfs" | 4 version | 5 flags | 6 type le16 | 8 request id le64 |
 *   16 body length le32 | 20 header check le32 | 24 body | body+24 trailer le32
 * The header check covers bytes 0..19, so a corrupt length is caught before
 * anything is allocated or waited for; the trailer covers header ‖ body.
 */
#include "proto/frame.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

static const uint8_t frame_magic[4] = { KV_FRAME_MAGIC0, KV_FRAME_MAGIC1, KV_FRAME_MAGIC2,
					KV_FRAME_MAGIC3 };

#define HDR_CHECKED 20 /* bytes covered by the header check */

void kv_frame_release(struct kv_frame *f)
{
	free(f->storage);
	memset(f, 0, sizeof *f);
}

uint8_t *kv_frame_detach(struct kv_frame *f)
{
	uint8_t *p = f->storage;
	memset(f, 0, sizeof *f);
	return p;
}

static int check_encode_args(uint8_t version, uint8_t flags)
{
	if (version < KV_PROTO_VERSION_MIN || version > KV_PROTO_VERSION_MAX)
		return KV_EINVAL;
	if (flags & KV_FRAME_F_REQUIRED_MASK & ~KV_FRAME_F_KNOWN)
		return KV_EINVAL;
	return 0;
}

int kv_frame_begin(struct kv_buf *out, uint8_t version, uint8_t flags, uint16_t type,
		   uint64_t request_id, size_t *offset)
{
	int rc = check_encode_args(version, flags);
	if (rc)
		return rc;
	rc = kv_buf_reserve(out, KV_FRAME_HEADER_SIZE);
	if (rc)
		return rc;
	uint8_t *h = out->p + out->n;
	memcpy(h, frame_magic, 4);
	h[4] = version;
	h[5] = flags;
	kv_put_le16(h + 6, type);
	kv_put_le64(h + 8, request_id);
	memset(h + 16, 0, 8); /* length and check: kv_frame_finish() */
	*offset = out->n;
	out->n += KV_FRAME_HEADER_SIZE;
	return 0;
}

int kv_frame_finish(struct kv_buf *out, size_t offset)
{
	size_t body_len = out->n - offset - KV_FRAME_HEADER_SIZE;
	if (body_len > KV_FRAME_MAX_BODY_LIMIT)
		return KV_ETOOBIG;
	int rc = kv_buf_reserve(out, KV_FRAME_TRAILER_SIZE);
	if (rc)
		return rc;
	uint8_t *h = out->p + offset;
	kv_put_le32(h + 16, (uint32_t)body_len);
	kv_put_le32(h + 20, kv_checksum32(h, HDR_CHECKED));
	uint32_t sum = kv_checksum32(h, KV_FRAME_HEADER_SIZE + body_len);
	kv_put_le32(out->p + out->n, sum);
	out->n += KV_FRAME_TRAILER_SIZE;
	return 0;
}

int kv_frame_encode(struct kv_buf *out, uint8_t version, uint8_t flags, uint16_t type,
		    uint64_t request_id, struct kv_slice body)
{
	size_t offset = 0, before = out->n;
	if (body.n > KV_FRAME_MAX_BODY_LIMIT)
		return KV_ETOOBIG;
	int rc = check_encode_args(version, flags);
	if (rc)
		return rc;
	rc = kv_buf_reserve(out, KV_FRAME_HEADER_SIZE + body.n + KV_FRAME_TRAILER_SIZE);
	if (rc)
		return rc;
	rc = kv_frame_begin(out, version, flags, type, request_id, &offset);
	if (rc == 0)
		rc = kv_buf_append(out, body.p, body.n);
	if (rc == 0)
		rc = kv_frame_finish(out, offset);
	if (rc)
		out->n = before; /* cannot happen after the reserve; kept for safety */
	return rc;
}

int kv_frame_header_decode(const uint8_t *p, size_t n, uint8_t min_version,
			   uint8_t max_version, size_t max_body, struct kv_frame_header *h)
{
	if (n < KV_FRAME_HEADER_SIZE)
		return KV_ECORRUPT;
	if (memcmp(p, frame_magic, 4) != 0)
		return KV_ECORRUPT;
	/* The version is checked before the header check: a newer header layout
	 * must be reported as a version mismatch (doc/protocol.md §3). */
	if (p[4] < min_version || p[4] > max_version)
		return KV_EVERSION;
	if (kv_get_le32(p + 20) != kv_checksum32(p, HDR_CHECKED))
		return KV_ECORRUPT;
	if (p[5] & KV_FRAME_F_REQUIRED_MASK & ~KV_FRAME_F_KNOWN)
		return KV_EVERSION;
	uint32_t body_len = kv_get_le32(p + 16);
	if (body_len > max_body)
		return KV_ETOOBIG;
	h->version = p[4];
	h->flags = p[5];
	h->type = kv_get_le16(p + 6);
	h->request_id = kv_get_le64(p + 8);
	h->body_len = body_len;
	return 0;
}

static size_t clamp_max(size_t max_body)
{
	return max_body > KV_FRAME_MAX_BODY_LIMIT ? KV_FRAME_MAX_BODY_LIMIT : max_body;
}

void kv_frame_decoder_init(struct kv_frame_decoder *d, size_t max_body)
{
	memset(d, 0, sizeof *d);
	d->max_body = clamp_max(max_body);
	d->min_version = KV_PROTO_VERSION_MIN;
	d->max_version = KV_PROTO_VERSION_MAX;
}

void kv_frame_decoder_release(struct kv_frame_decoder *d)
{
	free(d->buf);
	d->buf = NULL;
	d->buf_have = 0;
	d->hdr_have = 0;
	d->in_body = false;
	d->ready = false;
}

void kv_frame_decoder_set_max(struct kv_frame_decoder *d, size_t max_body)
{
	d->max_body = clamp_max(max_body);
}

int kv_frame_decoder_set_versions(struct kv_frame_decoder *d, uint8_t min_version,
				  uint8_t max_version)
{
	if (min_version > max_version || min_version < KV_PROTO_VERSION_MIN ||
	    max_version > KV_PROTO_VERSION_MAX)
		return KV_EINVAL;
	d->min_version = min_version;
	d->max_version = max_version;
	return 0;
}

static int fail(struct kv_frame_decoder *d, int err)
{
	d->err = err;
	return err;
}

/* Consumes header bytes; returns 0 (more needed or header done) or an error. */
static int feed_header(struct kv_frame_decoder *d, const uint8_t *p, size_t n, size_t *used)
{
	size_t take = KV_FRAME_HEADER_SIZE - d->hdr_have;
	if (take > n)
		take = n;
	/* Reject a foreign stream at its first byte that is not our magic. */
	for (size_t i = 0; i < take; i++) {
		size_t at = d->hdr_have + i;
		if (at < 4 && p[i] != frame_magic[at]) {
			*used = i + 1;
			return fail(d, KV_ECORRUPT);
		}
	}
	memcpy(d->hdr + d->hdr_have, p, take);
	d->hdr_have += take;
	*used = take;
	if (d->hdr_have < KV_FRAME_HEADER_SIZE)
		return 0;
	int rc = kv_frame_header_decode(d->hdr, KV_FRAME_HEADER_SIZE, d->min_version,
					d->max_version, d->max_body, &d->h);
	if (rc)
		return fail(d, rc);
	/* The length is now trusted (header check) and bounded (max_body). */
	d->buf = malloc(d->h.body_len ? d->h.body_len : 1);
	if (!d->buf)
		return fail(d, -ENOMEM);
	d->buf_have = 0;
	d->in_body = true;
	return 0;
}

/* Consumes body and trailer bytes; returns 1 when the frame is complete. */
static int feed_body(struct kv_frame_decoder *d, const uint8_t *p, size_t n, size_t *used)
{
	size_t total = (size_t)d->h.body_len + KV_FRAME_TRAILER_SIZE;
	size_t take = total - d->buf_have;
	if (take > n)
		take = n;
	for (size_t i = 0; i < take;) {
		size_t at = d->buf_have + i;
		if (at < d->h.body_len) {
			size_t chunk = d->h.body_len - at;
			if (chunk > take - i)
				chunk = take - i;
			memcpy(d->buf + at, p + i, chunk);
			i += chunk;
		} else {
			d->trailer[at - d->h.body_len] = p[i];
			i++;
		}
	}
	d->buf_have += take;
	*used = take;
	if (d->buf_have < total)
		return 0;
	uint32_t sum = kv_checksum32_2(d->hdr, KV_FRAME_HEADER_SIZE, d->buf, d->h.body_len);
	if (kv_get_le32(d->trailer) != sum)
		return fail(d, KV_ECORRUPT);
	d->ready = true;
	d->frames++;
	return 1;
}

int kv_frame_decoder_feed(struct kv_frame_decoder *d, const uint8_t *p, size_t n,
			  size_t *used)
{
	size_t off = 0;
	int rc = 0;
	if (d->err) {
		rc = d->err;
		goto out;
	}
	if (d->ready) {
		rc = KV_EINVAL; /* take the waiting frame first; not sticky */
		goto out;
	}
	while (off < n) {
		size_t step = 0;
		if (!d->in_body) {
			rc = feed_header(d, p + off, n - off, &step);
			off += step;
			if (rc < 0)
				goto out;
			/* A frame with an empty body still needs its trailer. */
		} else {
			rc = feed_body(d, p + off, n - off, &step);
			off += step;
			if (rc != 0)
				goto out;
		}
	}
	rc = 0;
out:
	*used = off;
	return rc;
}

int kv_frame_decoder_take(struct kv_frame_decoder *d, struct kv_frame *out)
{
	if (!d->ready)
		return KV_EINVAL;
	out->version = d->h.version;
	out->flags = d->h.flags;
	out->type = d->h.type;
	out->request_id = d->h.request_id;
	out->storage = d->buf;
	out->body = kv_slice_make(d->buf, d->h.body_len);
	d->buf = NULL;
	d->buf_have = 0;
	d->hdr_have = 0;
	d->in_body = false;
	d->ready = false;
	return 0;
}

size_t kv_frame_decoder_need(const struct kv_frame_decoder *d)
{
	if (d->err || d->ready)
		return 0;
	if (!d->in_body)
		return KV_FRAME_HEADER_SIZE - d->hdr_have;
	return (size_t)d->h.body_len + KV_FRAME_TRAILER_SIZE - d->buf_have;
}

uint8_t *kv_frame_decoder_body_room(struct kv_frame_decoder *d, size_t min, size_t *room)
{
	if (d->err || d->ready || !d->in_body || d->buf_have >= d->h.body_len)
		return NULL;
	size_t left = (size_t)d->h.body_len - d->buf_have;
	if (left < min || left == 0)
		return NULL;
	*room = left;
	return d->buf + d->buf_have;
}

void kv_frame_decoder_wrote(struct kv_frame_decoder *d, size_t n)
{
	assert(d->in_body && !d->ready && n <= (size_t)d->h.body_len - d->buf_have);
	d->buf_have += n;
}

bool kv_frame_decoder_partial(const struct kv_frame_decoder *d)
{
	return !d->err && !d->ready && (d->in_body || d->hdr_have > 0);
}
