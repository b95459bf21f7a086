/*
 * object.c - the file object's metadata codec, body check and xattr
 * sections (see object.h). Format: doc/fs-format.md#metadata.
 */
#include "fuse/object.h"

#include <errno.h>
#include <string.h>

#include "util/coding.h"
#include "util/error.h"

static const uint8_t meta_magic[2] = { 'k', 'F' };

/* Offsets of the fixed part (doc/fs-format.md#metadata). */
enum {
	OFF_MAGIC = 0,
	OFF_FORMAT = 2,
	OFF_TYPE = 3,
	OFF_STORAGE = 4,
	OFF_RESERVED = 5,
	OFF_MODE = 6,
	OFF_UID = 8,
	OFF_GID = 12,
	OFF_SIZE = 16,
	OFF_MTIME = 24,
	OFF_CTIME = 32,
	OFF_HASH = 40,
	OFF_TARGET_LEN = KV_FS_META_FIXED,
};

/* ---- xattr sections ---- */

/* A cursor over a section's entries; every step checks the bytes left. */
struct xattr_rd {
	const uint8_t *p;
	size_t n;
	size_t left; /* entries not read yet */
};

struct xattr_entry {
	struct kv_slice name, value;
	struct kv_slice whole; /* the entry's bytes */
};

static int xattr_rd_init(struct xattr_rd *r, struct kv_slice section)
{
	if (section.n == 0) {
		r->p = NULL;
		r->n = 0;
		r->left = 0;
		return 0;
	}
	if (section.n < 2 || section.n > KV_FS_XATTRS_MAX)
		return KV_ECORRUPT;
	r->left = kv_get_le16(section.p);
	r->p = section.p + 2;
	r->n = section.n - 2;
	return 0;
}

/* Reads the next entry: 1 and *e, 0 at the end (all bytes used), or KV_ECORRUPT. */
static int xattr_rd_next(struct xattr_rd *r, struct xattr_entry *e)
{
	if (r->left == 0)
		return r->n == 0 ? 0 : KV_ECORRUPT;
	const uint8_t *start = r->p;
	if (r->n < 1)
		return KV_ECORRUPT;
	size_t name_len = r->p[0];
	if (name_len == 0 || r->n < 1 + name_len + 2)
		return KV_ECORRUPT;
	e->name = kv_slice_make(r->p + 1, name_len);
	size_t value_len = kv_get_le16(r->p + 1 + name_len);
	size_t used = 1 + name_len + 2 + value_len;
	if (r->n < used)
		return KV_ECORRUPT;
	e->value = kv_slice_make(r->p + 1 + name_len + 2, value_len);
	e->whole = kv_slice_make(start, used);
	if (memchr(e->name.p, 0, e->name.n))
		return KV_ECORRUPT;
	r->p += used;
	r->n -= used;
	r->left--;
	return 1;
}

int kv_fs_xattr_check(struct kv_slice section)
{
	struct xattr_rd r;
	struct xattr_entry e, prev = { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } };
	bool first = true;
	int rc = xattr_rd_init(&r, section);
	while (rc == 0 && (rc = xattr_rd_next(&r, &e)) == 1) {
		if (!first && kv_slice_cmp(prev.name, e.name) >= 0)
			return KV_ECORRUPT; /* unsorted or duplicate */
		prev = e;
		first = false;
		rc = 0;
	}
	return rc;
}

size_t kv_fs_xattr_count(struct kv_slice section)
{
	return section.n >= 2 ? kv_get_le16(section.p) : 0;
}

int kv_fs_xattr_get(struct kv_slice section, struct kv_slice name, struct kv_slice *value)
{
	struct xattr_rd r;
	struct xattr_entry e;
	if (xattr_rd_init(&r, section))
		return -ENODATA;
	while (xattr_rd_next(&r, &e) == 1) {
		if (kv_slice_eq(e.name, name)) {
			*value = e.value;
			return 0;
		}
	}
	return -ENODATA;
}

/*
 * Builds in @out a section of @section's entries, @name left out and, when
 * @value is not NULL, @name = *@value put in its sorted place. Returns 0,
 * -ENOSPC or -ENOMEM.
 */
static int xattr_rebuild(struct kv_slice section, struct kv_slice name,
			 const struct kv_slice *value, struct kv_buf *out)
{
	struct kv_buf b = KV_BUF_INIT;
	struct xattr_rd r;
	struct xattr_entry e;
	size_t count = 0;
	bool placed = value == NULL;
	int err = -ENOMEM;

	if (xattr_rd_init(&r, section))
		return -EINVAL; /* the caller passes checked sections */
	if (kv_buf_append_le16(&b, 0))
		goto out;
	for (;;) {
		int more = xattr_rd_next(&r, &e);
		if (!placed && (more != 1 || kv_slice_cmp(name, e.name) < 0)) {
			if (kv_buf_append_u8(&b, (uint8_t)name.n) || kv_buf_append(&b, name.p, name.n) ||
			    kv_buf_append_le16(&b, (uint16_t)value->n) ||
			    kv_buf_append(&b, value->p, value->n))
				goto out;
			count++;
			placed = true;
		}
		if (more != 1)
			break;
		if (kv_slice_eq(e.name, name))
			continue;
		if (kv_buf_append(&b, e.whole.p, e.whole.n))
			goto out;
		count++;
	}
	if (b.n > KV_FS_XATTRS_MAX || count > UINT16_MAX) {
		err = -ENOSPC;
		goto out;
	}
	kv_put_le16(b.p, (uint16_t)count);
	kv_buf_release(out);
	*out = b;
	kv_buf_init(&b);
	err = 0;
out:
	kv_buf_release(&b);
	return err;
}

int kv_fs_xattr_set(struct kv_slice section, struct kv_slice name, struct kv_slice value,
		    int flags, struct kv_buf *out)
{
	struct kv_slice old;
	if (name.n == 0 || memchr(name.p, 0, name.n) ||
	    (flags & ~(KV_FS_XATTR_CREATE | KV_FS_XATTR_REPLACE)) ||
	    flags == (KV_FS_XATTR_CREATE | KV_FS_XATTR_REPLACE))
		return -EINVAL;
	if (name.n > KV_FS_XATTR_NAME_MAX)
		return -ERANGE;
	if (kv_fs_xattr_check(section))
		return -EIO;
	if (value.n > KV_FS_XATTRS_MAX)
		return -ENOSPC;
	bool exists = kv_fs_xattr_get(section, name, &old) == 0;
	if (exists && (flags & KV_FS_XATTR_CREATE))
		return -EEXIST;
	if (!exists && (flags & KV_FS_XATTR_REPLACE))
		return -ENODATA;
	return xattr_rebuild(section, name, &value, out);
}

int kv_fs_xattr_remove(struct kv_slice section, struct kv_slice name, struct kv_buf *out)
{
	struct kv_slice old;
	if (kv_fs_xattr_check(section))
		return -EIO;
	if (kv_fs_xattr_get(section, name, &old))
		return -ENODATA;
	return xattr_rebuild(section, name, NULL, out);
}

int kv_fs_xattr_list(struct kv_slice section, struct kv_buf *out)
{
	struct xattr_rd r;
	struct xattr_entry e;
	size_t start = out->n;
	if (xattr_rd_init(&r, section))
		return 0;
	while (xattr_rd_next(&r, &e) == 1) {
		if (kv_buf_append(out, e.name.p, e.name.n) || kv_buf_append_u8(out, 0)) {
			out->n = start;
			return -ENOMEM;
		}
	}
	return (int)(out->n - start);
}

/* ---- metadata ---- */

/* The rules shared by the encoder and the decoder (object.h, kv_fs_meta_encode). */
static bool meta_valid(const struct kv_fs_meta *m)
{
	static const uint8_t zero[KV_FS_HASH_LEN];
	bool hash_zero = memcmp(m->content_hash, zero, KV_FS_HASH_LEN) == 0;

	if (m->mode & ~KV_FS_MODE_MASK)
		return false;
	if (m->type != KV_FS_SYMLINK && m->target.n != 0)
		return false;
	switch (m->type) {
	case KV_FS_FILE:
		if (m->storage == KV_FS_STORE_INLINE)
			return m->size <= KV_FS_INLINE_HARD_MAX;
		if (m->storage == KV_FS_STORE_CHUNKED)
			return m->size >= 1 && m->size <= KV_FS_FILE_MAX;
		return false;
	case KV_FS_DIR:
		return m->storage == KV_FS_STORE_NONE && m->size == 0 && hash_zero;
	case KV_FS_SYMLINK:
		return m->storage == KV_FS_STORE_NONE && hash_zero && m->target.n >= 1 &&
		       m->target.n <= KV_FS_TARGET_MAX && m->size == m->target.n &&
		       !memchr(m->target.p, 0, m->target.n);
	default:
		return false;
	}
}

int kv_fs_meta_encode(const struct kv_fs_meta *m, struct kv_buf *out)
{
	static const uint8_t empty_section[2] = { 0, 0 };
	struct kv_slice xattrs = m->xattrs.n ? m->xattrs : kv_slice_make(empty_section, 2);
	uint8_t fixed[KV_FS_META_FIXED + 2];

	if (!meta_valid(m) || kv_fs_xattr_check(xattrs))
		return KV_EINVAL;
	size_t total = sizeof fixed + m->target.n + xattrs.n;
	if (total > KV_FS_META_MAX)
		return KV_ETOOBIG; /* cannot happen with the bounds above; kept as a guard */

	memcpy(fixed + OFF_MAGIC, meta_magic, sizeof meta_magic);
	fixed[OFF_FORMAT] = KV_FS_META_FORMAT;
	fixed[OFF_TYPE] = m->type;
	fixed[OFF_STORAGE] = m->storage;
	fixed[OFF_RESERVED] = 0;
	kv_put_le16(fixed + OFF_MODE, m->mode);
	kv_put_le32(fixed + OFF_UID, m->uid);
	kv_put_le32(fixed + OFF_GID, m->gid);
	kv_put_le64(fixed + OFF_SIZE, m->size);
	kv_put_le64(fixed + OFF_MTIME, (uint64_t)m->mtime_ns);
	kv_put_le64(fixed + OFF_CTIME, (uint64_t)m->ctime_ns);
	memcpy(fixed + OFF_HASH, m->content_hash, KV_FS_HASH_LEN);
	kv_put_le16(fixed + OFF_TARGET_LEN, (uint16_t)m->target.n);

	int err = kv_buf_reserve(out, total);
	if (err)
		return err;
	/* Room is reserved: the appends cannot fail. */
	(void)kv_buf_append(out, fixed, sizeof fixed);
	(void)kv_buf_append(out, m->target.p, m->target.n);
	(void)kv_buf_append(out, xattrs.p, xattrs.n);
	return 0;
}

int kv_fs_meta_decode(struct kv_slice in, struct kv_fs_meta *out)
{
	struct kv_fs_meta m;
	const uint8_t *p = in.p;

	if (in.n < KV_FS_META_FIXED + 2 + 2 || in.n > KV_FS_META_MAX ||
	    memcmp(p + OFF_MAGIC, meta_magic, sizeof meta_magic))
		return KV_ECORRUPT;
	if (p[OFF_FORMAT] != KV_FS_META_FORMAT)
		return KV_EVERSION;
	if (p[OFF_RESERVED] != 0)
		return KV_ECORRUPT;
	m.type = p[OFF_TYPE];
	m.storage = p[OFF_STORAGE];
	m.mode = kv_get_le16(p + OFF_MODE);
	m.uid = kv_get_le32(p + OFF_UID);
	m.gid = kv_get_le32(p + OFF_GID);
	m.size = kv_get_le64(p + OFF_SIZE);
	m.mtime_ns = (int64_t)kv_get_le64(p + OFF_MTIME);
	m.ctime_ns = (int64_t)kv_get_le64(p + OFF_CTIME);
	memcpy(m.content_hash, p + OFF_HASH, KV_FS_HASH_LEN);

	size_t target_len = kv_get_le16(p + OFF_TARGET_LEN);
	size_t at = KV_FS_META_FIXED + 2;
	if (target_len > KV_FS_TARGET_MAX || in.n - at < target_len + 2)
		return KV_ECORRUPT;
	m.target = kv_slice_make(target_len ? p + at : NULL, target_len);
	at += target_len;
	m.xattrs = kv_slice_make(p + at, in.n - at);
	if (!meta_valid(&m) || kv_fs_xattr_check(m.xattrs))
		return KV_ECORRUPT;
	*out = m;
	return 0;
}

int kv_fs_meta_check_body(const struct kv_fs_meta *m, struct kv_slice body,
			  struct kv_fs_manifest *manifest)
{
	uint8_t hash[KV_FS_HASH_LEN];

	if (m->storage == KV_FS_STORE_NONE)
		return body.n == 0 ? 0 : KV_ECORRUPT;
	if (m->storage == KV_FS_STORE_INLINE && body.n != m->size)
		return KV_ECORRUPT;
	kv_fs_hash(body.p, body.n, hash);
	if (sodium_memcmp(hash, m->content_hash, KV_FS_HASH_LEN) != 0)
		return KV_ECORRUPT;
	if (m->storage != KV_FS_STORE_CHUNKED)
		return 0;

	struct kv_fs_manifest mf;
	kv_fs_manifest_init(&mf, 0);
	int err = kv_fs_manifest_decode(body, &mf);
	if (err)
		goto out;
	if (kv_fs_manifest_size(&mf) != m->size) {
		err = KV_ECORRUPT;
		goto out;
	}
	if (manifest) {
		kv_fs_manifest_release(manifest);
		*manifest = mf;
		kv_fs_manifest_init(&mf, 0);
	}
out:
	kv_fs_manifest_release(&mf);
	return err;
}

void kv_fs_meta_set_body(struct kv_fs_meta *m, uint8_t storage, struct kv_slice body,
			 uint64_t size)
{
	m->storage = storage;
	m->size = storage == KV_FS_STORE_INLINE ? body.n : size;
	kv_fs_hash(body.p, body.n, m->content_hash);
}
