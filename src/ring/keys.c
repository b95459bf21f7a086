/*
 * keys.c - placement keys and storage-key encoding (see keys.h).
 *
 * Format: doc/placement.md#storage-key. The escape is the one FoundationDB's
 * tuple layer uses for byte strings: 00 becomes 00 FF, and 00 01 ends the
 * string. Inside an escaped string a 00 is always followed by FF, so the
 * terminator cannot occur there, and since 01 < FF a string sorts before every
 * longer string it is a prefix of: bytewise order of encodings equals bytewise
 * order of keys.
 */
#include "ring/keys.h"

#include <string.h>

#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"

#define ESC 0x00      /* the byte that needs escaping, and the escape lead */
#define ESC_ZERO 0xff /* 00 FF: a literal 00 */
#define ESC_TERM 0x01 /* 00 01: end of the escaped key */
/* 00 02 sorts after the terminator and before any continuation: the bound
 * just past every storage key of one key, whatever suffix follows it. */
#define ESC_PAST 0x02

struct kv_slice kv_key_placement(struct kv_slice key)
{
	/* DESIGN §2: only keys that start with '/' are placed by their parent. */
	if (key.n == 0 || key.p[0] != '/')
		return key;
	size_t last = key.n - 1;
	while (key.p[last] != '/')
		last--; /* stops at index 0 at the latest */
	return kv_slice_make(key.p, last);
}

uint64_t kv_key_position(struct kv_slice key)
{
	struct kv_slice pk = kv_key_placement(key);
	return kv_hash64(pk.p, pk.n);
}

/* "" and "/" both name the root; its children have placement key "". */
static struct kv_slice normalize_dir(struct kv_slice dir)
{
	if (dir.n == 1 && dir.p[0] == '/')
		return kv_slice_make(dir.p, 0);
	return dir;
}

bool kv_key_is_child(struct kv_slice dir, struct kv_slice key)
{
	if (key.n == 0 || key.p[0] != '/')
		return false;
	return kv_slice_eq(kv_key_placement(key), normalize_dir(dir));
}

static size_t escaped_size(struct kv_slice s)
{
	size_t n = s.n;
	for (size_t i = 0; i < s.n; i++)
		n += s.p[i] == ESC;
	return n;
}

size_t kv_skey_size(struct kv_slice key)
{
	return KV_SKEY_POS_SIZE + escaped_size(key) + KV_SKEY_TERM_SIZE;
}

/* Writes escape(@s) to @dst (room for escaped_size(s)); returns the end. */
static uint8_t *escape_to(uint8_t *dst, struct kv_slice s)
{
	const uint8_t *p = s.p;
	const uint8_t *end = s.p + s.n;
	while (p < end) {
		const uint8_t *zero = memchr(p, ESC, (size_t)(end - p));
		size_t run = zero ? (size_t)(zero - p) : (size_t)(end - p);
		if (run) {
			memcpy(dst, p, run);
			dst += run;
			p += run;
		}
		if (zero) {
			*dst++ = ESC;
			*dst++ = ESC_ZERO;
			p++;
		}
	}
	return dst;
}

int kv_skey_encode_to(uint8_t *dst, size_t cap, struct kv_slice key)
{
	if (key.n > KV_KEY_MAX)
		return KV_ETOOBIG;
	size_t size = kv_skey_size(key);
	if (size > cap)
		return KV_EINVAL;
	kv_put_be64(dst, kv_key_position(key));
	uint8_t *p = escape_to(dst + KV_SKEY_POS_SIZE, key);
	*p++ = ESC;
	*p++ = ESC_TERM;
	return (int)size;
}

int kv_skey_encode(struct kv_buf *out, struct kv_slice key)
{
	if (key.n > KV_KEY_MAX)
		return KV_ETOOBIG;
	size_t size = kv_skey_size(key);
	int err = kv_buf_reserve(out, size);
	if (err)
		return err;
	int n = kv_skey_encode_to(out->p + out->n, size, key);
	if (n < 0)
		return n; /* cannot happen: the size and the limit were checked */
	out->n += (size_t)n;
	return 0;
}

int kv_skey_escape(struct kv_buf *out, struct kv_slice key)
{
	size_t size = escaped_size(key) + KV_SKEY_TERM_SIZE;
	int err = kv_buf_reserve(out, size);
	if (err)
		return err;
	uint8_t *p = escape_to(out->p + out->n, key);
	*p++ = ESC;
	*p++ = ESC_TERM;
	out->n += size;
	return 0;
}

int kv_skey_decode(struct kv_slice skey, uint64_t *pos, uint8_t *key, size_t *key_len)
{
	if (skey.n < KV_SKEY_POS_SIZE + KV_SKEY_TERM_SIZE)
		return KV_ECORRUPT;
	/*
	 * Decode into @key as we go (it has room for KV_KEY_MAX bytes), but
	 * report nothing until the whole key has been checked.
	 */
	const uint8_t *p = skey.p + KV_SKEY_POS_SIZE;
	const uint8_t *end = skey.p + skey.n;
	size_t n = 0;
	for (;;) {
		if (p == end)
			return KV_ECORRUPT; /* no terminator */
		if (*p != ESC) {
			if (n == KV_KEY_MAX)
				return KV_ECORRUPT;
			key[n++] = *p++;
			continue;
		}
		if (end - p < 2)
			return KV_ECORRUPT; /* a lone 00 at the end */
		if (p[1] == ESC_TERM) {
			p += 2;
			break;
		}
		if (p[1] != ESC_ZERO || n == KV_KEY_MAX)
			return KV_ECORRUPT;
		key[n++] = 0;
		p += 2;
	}
	uint64_t stored = kv_get_be64(skey.p);
	if (stored != kv_key_position(kv_slice_make(key, n)))
		return KV_ECORRUPT;
	*pos = stored;
	*key_len = n;
	return (int)(p - skey.p);
}

int kv_skey_dir_range(struct kv_buf *lo, struct kv_buf *hi, struct kv_slice dir,
		      struct kv_slice after)
{
	int err = 0;
	kv_buf_reset(lo);
	kv_buf_reset(hi);
	dir = normalize_dir(dir);
	/* A directory is the root or an absolute path without a trailing '/'. */
	if (dir.n > 0 && (dir.p[0] != '/' || dir.p[dir.n - 1] == '/')) {
		err = KV_EINVAL;
		goto out;
	}
	if (dir.n + 1 > KV_KEY_MAX || (after.p && dir.n + 1 + after.n > KV_KEY_MAX)) {
		err = KV_ETOOBIG;
		goto out;
	}
	uint8_t be[KV_SKEY_POS_SIZE];
	kv_put_be64(be, kv_hash64(dir.p, dir.n));
	/* The children of dir are the keys dir + "/" + name, name without '/'.
	 * Their storage keys all start with be64(pos(dir)) ‖ escape(dir + "/"),
	 * and a grandchild has another position (DESIGN §2). */
	size_t prefix_size = KV_SKEY_POS_SIZE + escaped_size(dir) + 1;
	err = kv_buf_reserve(lo, prefix_size + (after.p ? escaped_size(after) + 2 : 0));
	if (err)
		goto out;
	err = kv_buf_reserve(hi, prefix_size);
	if (err)
		goto out;
	memcpy(lo->p, be, sizeof be);
	uint8_t *p = escape_to(lo->p + KV_SKEY_POS_SIZE, dir);
	*p++ = '/';
	lo->n = prefix_size;
	memcpy(hi->p, lo->p, prefix_size);
	hi->n = prefix_size;
	hi->p[prefix_size - 1] = '/' + 1;
	if (after.p) {
		/* Past "dir/after" ‖ 00 01 ‖ any suffix, before "dir/after" ‖ more. */
		p = escape_to(p, after);
		*p++ = ESC;
		*p++ = ESC_PAST;
		lo->n = (size_t)(p - lo->p);
	}
out:
	if (err) {
		kv_buf_reset(lo);
		kv_buf_reset(hi);
	}
	return err;
}

int kv_skey_token_spans(uint64_t start, uint64_t end, struct kv_skey_span spans[2])
{
	/* Positions in (start, end]; storage keys with position p sort in
	 * [be64(p), be64(p + 1)). */
	if (start == end) { /* the whole circle */
		kv_put_be64(spans[0].lo, 0);
		memset(spans[0].hi, 0, sizeof spans[0].hi);
		spans[0].hi_unbounded = true;
		return 1;
	}
	int n = 0;
	if (start < end) {
		kv_put_be64(spans[0].lo, start + 1);
		spans[0].hi_unbounded = end == UINT64_MAX;
		kv_put_be64(spans[0].hi, spans[0].hi_unbounded ? 0 : end + 1);
		return 1;
	}
	/* Wraps: [0, end] then (start, 2^64 - 1], in storage-key order. */
	kv_put_be64(spans[n].lo, 0);
	kv_put_be64(spans[n].hi, end + 1);
	spans[n].hi_unbounded = false;
	n++;
	if (start != UINT64_MAX) {
		kv_put_be64(spans[n].lo, start + 1);
		memset(spans[n].hi, 0, sizeof spans[n].hi);
		spans[n].hi_unbounded = true;
		n++;
	}
	return n;
}

bool kv_skey_span_contains(const struct kv_skey_span *span, struct kv_slice skey)
{
	if (kv_slice_cmp(skey, kv_slice_make(span->lo, sizeof span->lo)) < 0)
		return false;
	return span->hi_unbounded ||
	       kv_slice_cmp(skey, kv_slice_make(span->hi, sizeof span->hi)) < 0;
}
