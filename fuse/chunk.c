/*
 * chunk.c - chunk hashes, chunk keys, byte ranges and manifests (see
 * chunk.h). Format: doc/fs-format.md#chunks.
 */
#include "fuse/chunk.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "proto/chunkhash.h"
#include "util/coding.h"
#include "util/error.h"

static const uint8_t chunk_key_prefix[KV_FS_CHUNK_KEY_PREFIX_LEN] = { 0x00, 'c' };
static const uint8_t manifest_magic[2] = { 'k', 'M' };

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

/*
 * sodium_init() picks the fastest implementations. It fails only when it
 * cannot reach an entropy source, which hashing does not need: the portable
 * implementations then serve, with the same results.
 */
static void sodium_setup(void)
{
	if (sodium_init() < 0)
		return;
}

void kv_fs_hash(const void *p, size_t n, uint8_t out[KV_FS_HASH_LEN])
{
	pthread_once(&sodium_once, sodium_setup);
	crypto_generichash(out, KV_FS_HASH_LEN, p, n, NULL, 0);
}

void kv_fs_hasher_init(struct kv_fs_hasher *h)
{
	pthread_once(&sodium_once, sodium_setup);
	crypto_generichash_init(&h->st, NULL, 0, KV_FS_HASH_LEN);
}

void kv_fs_hasher_update(struct kv_fs_hasher *h, const void *p, size_t n)
{
	crypto_generichash_update(&h->st, p, n);
}

void kv_fs_hasher_final(struct kv_fs_hasher *h, uint8_t out[KV_FS_HASH_LEN])
{
	crypto_generichash_final(&h->st, out, KV_FS_HASH_LEN);
}

bool kv_fs_hash_is_hole(const uint8_t hash[KV_FS_HASH_LEN])
{
	uint8_t acc = 0;
	for (size_t i = 0; i < KV_FS_HASH_LEN; i++)
		acc |= hash[i];
	return acc == 0;
}

void kv_fs_chunk_key(const uint8_t hash[KV_FS_HASH_LEN], uint8_t key[KV_FS_CHUNK_KEY_LEN])
{
	memcpy(key, chunk_key_prefix, KV_FS_CHUNK_KEY_PREFIX_LEN);
	memcpy(key + KV_FS_CHUNK_KEY_PREFIX_LEN, hash, KV_FS_HASH_LEN);
}

bool kv_fs_key_is_chunk(struct kv_slice key)
{
	return kv_slice_has_prefix(key, kv_slice_make(chunk_key_prefix, sizeof chunk_key_prefix));
}

int kv_fs_chunk_key_parse(struct kv_slice key, uint8_t hash[KV_FS_HASH_LEN])
{
	if (key.n != KV_FS_CHUNK_KEY_LEN || !kv_fs_key_is_chunk(key) ||
	    kv_fs_hash_is_hole(key.p + KV_FS_CHUNK_KEY_PREFIX_LEN))
		return KV_EINVAL;
	memcpy(hash, key.p + KV_FS_CHUNK_KEY_PREFIX_LEN, KV_FS_HASH_LEN);
	return 0;
}

int kv_fs_chunk_verify(const uint8_t hash[KV_FS_HASH_LEN], struct kv_slice data)
{
	if (data.n > ((size_t)1 << KV_FS_CHUNK_SHIFT_MAX))
		return KV_ECORRUPT;
	int ok = kv_chunk_hash_check(hash, data.p, data.n);
	return ok < 0 ? ok : ok ? 0 : KV_ECORRUPT;
}

uint64_t kv_fs_chunk_count(uint64_t size, unsigned shift)
{
	return (size >> shift) + ((size & (((uint64_t)1 << shift) - 1)) != 0);
}

/* ---- byte ranges ---- */

void kv_fs_range_init(struct kv_fs_range *r, uint64_t off, uint64_t len, uint64_t limit,
		      unsigned shift)
{
	assert(shift >= KV_FS_CHUNK_SHIFT_MIN && shift <= KV_FS_CHUNK_SHIFT_MAX);
	uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
	if (end > limit)
		end = limit;
	r->pos = off < end ? off : end;
	r->end = end;
	r->shift = shift;
}

bool kv_fs_range_next(struct kv_fs_range *r, struct kv_fs_span *span)
{
	if (r->pos >= r->end)
		return false;
	uint64_t size = (uint64_t)1 << r->shift;
	uint64_t index = r->pos >> r->shift;
	uint64_t within = r->pos & (size - 1);
	uint64_t take = size - within;
	if (take > r->end - r->pos)
		take = r->end - r->pos;
	span->index = index;
	span->offset = (uint32_t)within;
	span->len = (uint32_t)take;
	span->file_offset = r->pos;
	r->pos += take;
	return true;
}

/* ---- manifests ---- */

void kv_fs_manifest_init(struct kv_fs_manifest *m, unsigned shift)
{
	m->shift = shift;
	m->chunks = NULL;
	m->n = 0;
	m->cap = 0;
}

void kv_fs_manifest_release(struct kv_fs_manifest *m)
{
	free(m->chunks);
	kv_fs_manifest_init(m, m->shift);
}

uint64_t kv_fs_manifest_size(const struct kv_fs_manifest *m)
{
	uint64_t size = 0;
	for (size_t i = 0; i < m->n; i++)
		size += m->chunks[i].len;
	return size;
}

static bool shift_ok(unsigned shift)
{
	return shift >= KV_FS_CHUNK_SHIFT_MIN && shift <= KV_FS_CHUNK_SHIFT_MAX;
}

int kv_fs_manifest_append(struct kv_fs_manifest *m, const uint8_t *hash, uint32_t len)
{
	if (!shift_ok(m->shift) || len == 0 || len > ((uint32_t)1 << m->shift))
		return KV_EINVAL;
	if (m->n && m->chunks[m->n - 1].len != ((uint32_t)1 << m->shift))
		return KV_EINVAL; /* only the last chunk may be short */
	if (m->n >= KV_FS_MANIFEST_MAX_CHUNKS)
		return KV_ETOOBIG;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct kv_fs_chunk_ref *p = realloc(m->chunks, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		m->chunks = p;
		m->cap = cap;
	}
	struct kv_fs_chunk_ref *c = &m->chunks[m->n++];
	if (hash)
		memcpy(c->hash, hash, KV_FS_HASH_LEN);
	else
		memset(c->hash, 0, KV_FS_HASH_LEN);
	c->len = len;
	return 0;
}

int kv_fs_manifest_check(const struct kv_fs_manifest *m)
{
	if (!shift_ok(m->shift) || m->n == 0 || m->n > KV_FS_MANIFEST_MAX_CHUNKS)
		return KV_EINVAL;
	uint32_t full = (uint32_t)1 << m->shift;
	for (size_t i = 0; i < m->n; i++) {
		uint32_t len = m->chunks[i].len;
		if (len == 0 || len > full || (i + 1 < m->n && len != full))
			return KV_EINVAL;
	}
	return 0;
}

int kv_fs_manifest_encode(const struct kv_fs_manifest *m, struct kv_buf *out)
{
	int err = kv_fs_manifest_check(m);
	if (err)
		return err;
	err = kv_buf_reserve(out, KV_FS_MANIFEST_HEADER + m->n * KV_FS_MANIFEST_ENTRY);
	if (err)
		return err;
	/* Room is reserved: the appends below cannot fail. */
	(void)kv_buf_append(out, manifest_magic, sizeof manifest_magic);
	(void)kv_buf_append_u8(out, KV_FS_MANIFEST_FORMAT);
	(void)kv_buf_append_u8(out, (uint8_t)m->shift);
	(void)kv_buf_append_le32(out, (uint32_t)m->n);
	for (size_t i = 0; i < m->n; i++) {
		(void)kv_buf_append(out, m->chunks[i].hash, KV_FS_HASH_LEN);
		(void)kv_buf_append_le32(out, m->chunks[i].len);
	}
	return 0;
}

int kv_fs_manifest_decode(struct kv_slice in, struct kv_fs_manifest *out)
{
	int err = KV_ECORRUPT;
	struct kv_fs_manifest m;
	kv_fs_manifest_init(&m, 0);

	if (in.n < KV_FS_MANIFEST_HEADER || memcmp(in.p, manifest_magic, sizeof manifest_magic))
		goto out;
	if (in.p[2] != KV_FS_MANIFEST_FORMAT) {
		err = KV_EVERSION;
		goto out;
	}
	m.shift = in.p[3];
	uint32_t count = kv_get_le32(in.p + 4);
	if (!shift_ok(m.shift) || count == 0 || count > KV_FS_MANIFEST_MAX_CHUNKS)
		goto out;
	/* The count must match the bytes exactly before anything is allocated. */
	if ((in.n - KV_FS_MANIFEST_HEADER) % KV_FS_MANIFEST_ENTRY ||
	    (in.n - KV_FS_MANIFEST_HEADER) / KV_FS_MANIFEST_ENTRY != count)
		goto out;
	m.chunks = malloc((size_t)count * sizeof *m.chunks);
	if (!m.chunks) {
		err = -ENOMEM;
		goto out;
	}
	m.cap = count;
	const uint8_t *p = in.p + KV_FS_MANIFEST_HEADER;
	for (; m.n < count; m.n++, p += KV_FS_MANIFEST_ENTRY) {
		memcpy(m.chunks[m.n].hash, p, KV_FS_HASH_LEN);
		m.chunks[m.n].len = kv_get_le32(p + KV_FS_HASH_LEN);
	}
	if (kv_fs_manifest_check(&m))
		goto out;
	kv_fs_manifest_release(out);
	*out = m;
	kv_fs_manifest_init(&m, 0);
	err = 0;
out:
	kv_fs_manifest_release(&m);
	return err;
}
