/*
 * manifest.c - encode, decode, store and load the manifest (see manifest.h).
 *
 * Format: doc/storage-format.md#manifest
 *
 * The file is a fixed frame (magic, version, body length ... checksum) around
 * a body whose layout belongs to the major version. Decoding checks the frame
 * and the checksum first, then the version, then every count, length and
 * field of the body; encoding refuses what decoding would refuse.
 */
#include "lsm/manifest.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/ikey.h"
#include "lsm/lsm.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"

_Static_assert(KV_MANIFEST_LEVELS == KV_LSM_LEVELS, "a level byte per engine level");
_Static_assert(KV_MANIFEST_MAX_KEY == KV_LSM_MAX_KEY + KV_IKEY_TRAILER, "largest internal key");

/* Frame (doc: "Layout"). */
static const uint8_t manifest_magic[8] = { 'K', 'V', 'F', 'S', '-', 'M', 'A', 'N' };
#define FRAME_HEADER 16 /* magic 8 | major le16 | minor le16 | body length le32 */
#define FRAME_CHECKSUM 4
#define OFF_MAJOR 8
#define OFF_MINOR 10
#define OFF_BODY_LEN 12

/* Body (major version 1). */
#define BODY_FIXED 32   /* next file, last sequence, log number, P, T */
#define PROP_MIN 10     /* name length u8, 1 name byte, value le64 */
#define TABLE_FIXED 33  /* level u8, file number, size, entries, 2 key lengths */
#define TABLE_MIN (TABLE_FIXED + 2 * KV_IKEY_TRAILER)

void kv_manifest_init(struct kv_manifest *m)
{
	memset(m, 0, sizeof *m);
	m->minor_version = KV_MANIFEST_MINOR;
}

static void table_release(struct kv_manifest_table *t)
{
	kv_buf_release(&t->smallest);
	kv_buf_release(&t->largest);
}

void kv_manifest_release(struct kv_manifest *m)
{
	for (size_t i = 0; i < m->ntables; i++)
		table_release(&m->tables[i]);
	free(m->tables);
	free(m->props);
	kv_manifest_init(m);
}

/* ---- Validation shared by the helpers, encode and decode ----------------- */

static bool prop_name_ok(const uint8_t *p, size_t n)
{
	if (n < 1 || n > KV_MANIFEST_MAX_PROP_NAME)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

static bool key_ok(struct kv_slice k)
{
	struct kv_ikey parsed;
	return k.n <= KV_MANIFEST_MAX_KEY && kv_ikey_parse(k, &parsed) == 0;
}

/* The per-table rules (doc: "Table"), except uniqueness. */
static bool table_ok(unsigned level, struct kv_slice smallest, struct kv_slice largest)
{
	return level < KV_MANIFEST_LEVELS && key_ok(smallest) && key_ok(largest) &&
	       kv_ikey_cmp(smallest, largest) <= 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * The whole-manifest rules: file numbers unique and below next_file_number,
 * property names valid and unique. Returns 0, @bad, or -ENOMEM.
 */
static int check_manifest(const struct kv_manifest *m, int bad)
{
	if (m->ntables > KV_MANIFEST_MAX_TABLES || m->nprops > KV_MANIFEST_MAX_PROPS)
		return bad;
	for (size_t i = 0; i < m->nprops; i++) {
		const char *name = m->props[i].name;
		size_t n = strnlen(name, KV_MANIFEST_MAX_PROP_NAME + 1);
		if (!prop_name_ok((const uint8_t *)name, n))
			return bad;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(name, m->props[j].name))
				return bad;
	}
	if (m->ntables == 0)
		return 0;
	uint64_t *numbers = malloc(m->ntables * sizeof *numbers);
	if (!numbers)
		return -ENOMEM;
	int err = 0;
	for (size_t i = 0; i < m->ntables; i++) {
		const struct kv_manifest_table *t = &m->tables[i];
		if (t->file_number >= m->next_file_number ||
		    !table_ok(t->level, kv_buf_slice(&t->smallest), kv_buf_slice(&t->largest))) {
			err = bad;
			goto out;
		}
		numbers[i] = t->file_number;
	}
	qsort(numbers, m->ntables, sizeof *numbers, cmp_u64);
	for (size_t i = 1; i < m->ntables; i++) {
		if (numbers[i] == numbers[i - 1]) {
			err = bad;
			goto out;
		}
	}
out:
	free(numbers);
	return err;
}

/* ---- Helpers --------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* Appends a table without the uniqueness check (the callers do it). */
static int push_table(struct kv_manifest *m, unsigned level, uint64_t file_number,
		      uint64_t file_size, uint64_t entries, struct kv_slice smallest,
		      struct kv_slice largest)
{
	int err = grow((void **)&m->tables, &m->tables_cap, m->ntables, sizeof *m->tables);
	if (err)
		return err;
	struct kv_manifest_table *t = &m->tables[m->ntables];
	t->level = level;
	t->file_number = file_number;
	t->file_size = file_size;
	t->entries = entries;
	kv_buf_init(&t->smallest);
	kv_buf_init(&t->largest);
	if ((err = kv_buf_append(&t->smallest, smallest.p, smallest.n)) ||
	    (err = kv_buf_append(&t->largest, largest.p, largest.n))) {
		table_release(t);
		return err;
	}
	m->ntables++;
	return 0;
}

int kv_manifest_add_table(struct kv_manifest *m, unsigned level, uint64_t file_number,
			  uint64_t file_size, uint64_t entries, struct kv_slice smallest,
			  struct kv_slice largest)
{
	if (!table_ok(level, smallest, largest) || m->ntables >= KV_MANIFEST_MAX_TABLES ||
	    kv_manifest_find_table(m, file_number))
		return KV_EINVAL;
	return push_table(m, level, file_number, file_size, entries, smallest, largest);
}

int kv_manifest_remove_table(struct kv_manifest *m, uint64_t file_number)
{
	for (size_t i = 0; i < m->ntables; i++) {
		if (m->tables[i].file_number != file_number)
			continue;
		table_release(&m->tables[i]);
		memmove(&m->tables[i], &m->tables[i + 1],
			(m->ntables - i - 1) * sizeof *m->tables);
		m->ntables--;
		return 0;
	}
	return KV_ENOTFOUND;
}

const struct kv_manifest_table *kv_manifest_find_table(const struct kv_manifest *m,
						       uint64_t file_number)
{
	for (size_t i = 0; i < m->ntables; i++)
		if (m->tables[i].file_number == file_number)
			return &m->tables[i];
	return NULL;
}

static struct kv_manifest_prop *find_prop(const struct kv_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->nprops; i++)
		if (!strcmp(m->props[i].name, name))
			return &m->props[i];
	return NULL;
}

/* Appends a property whose name is valid and new. */
static int push_prop(struct kv_manifest *m, const uint8_t *name, size_t n, uint64_t value)
{
	int err = grow((void **)&m->props, &m->props_cap, m->nprops, sizeof *m->props);
	if (err)
		return err;
	struct kv_manifest_prop *p = &m->props[m->nprops++];
	memset(p->name, 0, sizeof p->name);
	memcpy(p->name, name, n);
	p->value = value;
	return 0;
}

int kv_manifest_set_prop(struct kv_manifest *m, const char *name, uint64_t value)
{
	size_t n = strnlen(name, KV_MANIFEST_MAX_PROP_NAME + 1);
	if (!prop_name_ok((const uint8_t *)name, n))
		return KV_EINVAL;
	struct kv_manifest_prop *p = find_prop(m, name);
	if (p) {
		p->value = value;
		return 0;
	}
	if (m->nprops >= KV_MANIFEST_MAX_PROPS)
		return KV_EINVAL;
	return push_prop(m, (const uint8_t *)name, n, value);
}

int kv_manifest_get_prop(const struct kv_manifest *m, const char *name, uint64_t *value)
{
	const struct kv_manifest_prop *p = find_prop(m, name);
	if (!p)
		return KV_ENOTFOUND;
	*value = p->value;
	return 0;
}

int kv_manifest_copy(struct kv_manifest *dst, const struct kv_manifest *src)
{
	int err = 0;
	kv_manifest_init(dst);
	dst->next_file_number = src->next_file_number;
	dst->last_sequence = src->last_sequence;
	dst->log_number = src->log_number;
	dst->minor_version = src->minor_version;
	for (size_t i = 0; i < src->nprops; i++) {
		const struct kv_manifest_prop *p = &src->props[i];
		err = push_prop(dst, (const uint8_t *)p->name, strlen(p->name), p->value);
		if (err)
			goto out;
	}
	for (size_t i = 0; i < src->ntables; i++) {
		const struct kv_manifest_table *t = &src->tables[i];
		err = push_table(dst, t->level, t->file_number, t->file_size, t->entries,
				 kv_buf_slice(&t->smallest), kv_buf_slice(&t->largest));
		if (err)
			goto out;
	}
out:
	if (err)
		kv_manifest_release(dst);
	return err;
}

/* ---- Encode ---------------------------------------------------------------- */

int kv_manifest_encode(const struct kv_manifest *m, struct kv_buf *out)
{
	int err = check_manifest(m, KV_EINVAL);
	if (err)
		return err;

	size_t size = FRAME_HEADER + BODY_FIXED + FRAME_CHECKSUM;
	for (size_t i = 0; i < m->nprops; i++)
		size += 1 + strlen(m->props[i].name) + 8;
	for (size_t i = 0; i < m->ntables; i++)
		size += TABLE_FIXED + m->tables[i].smallest.n + m->tables[i].largest.n;
	if (size > KV_MANIFEST_MAX_BYTES)
		return KV_EINVAL;
	err = kv_buf_reserve(out, size);
	if (err)
		return err;

	/* Everything fits in the reserved room: the appends below cannot fail. */
	size_t start = out->n;
	kv_buf_append(out, manifest_magic, sizeof manifest_magic);
	kv_buf_append_le16(out, KV_MANIFEST_MAJOR);
	kv_buf_append_le16(out, KV_MANIFEST_MINOR);
	kv_buf_append_le32(out, (uint32_t)(size - FRAME_HEADER - FRAME_CHECKSUM));
	kv_buf_append_le64(out, m->next_file_number);
	kv_buf_append_le64(out, m->last_sequence);
	kv_buf_append_le64(out, m->log_number);
	kv_buf_append_le32(out, (uint32_t)m->nprops);
	kv_buf_append_le32(out, (uint32_t)m->ntables);
	for (size_t i = 0; i < m->nprops; i++) {
		size_t n = strlen(m->props[i].name);
		kv_buf_append_u8(out, (uint8_t)n);
		kv_buf_append(out, m->props[i].name, n);
		kv_buf_append_le64(out, m->props[i].value);
	}
	for (size_t i = 0; i < m->ntables; i++) {
		const struct kv_manifest_table *t = &m->tables[i];
		kv_buf_append_u8(out, (uint8_t)t->level);
		kv_buf_append_le64(out, t->file_number);
		kv_buf_append_le64(out, t->file_size);
		kv_buf_append_le64(out, t->entries);
		kv_buf_append_le32(out, (uint32_t)t->smallest.n);
		kv_buf_append(out, t->smallest.p, t->smallest.n);
		kv_buf_append_le32(out, (uint32_t)t->largest.n);
		kv_buf_append(out, t->largest.p, t->largest.n);
	}
	assert(out->n - start == size - FRAME_CHECKSUM);
	kv_buf_append_le32(out, kv_checksum32(out->p + start, size - FRAME_CHECKSUM));
	return 0;
}

/* ---- Decode ---------------------------------------------------------------- */

/* A bounds-checked cursor: every get fails once the input is short. */
struct cursor {
	const uint8_t *p;
	size_t left;
};

static bool take(struct cursor *c, size_t n, const uint8_t **out)
{
	if (n > c->left)
		return false;
	*out = c->p;
	c->p += n;
	c->left -= n;
	return true;
}

static bool get_u8(struct cursor *c, uint8_t *v)
{
	const uint8_t *p;
	if (!take(c, 1, &p))
		return false;
	*v = p[0];
	return true;
}

static bool get_le32(struct cursor *c, uint32_t *v)
{
	const uint8_t *p;
	if (!take(c, 4, &p))
		return false;
	*v = kv_get_le32(p);
	return true;
}

static bool get_le64(struct cursor *c, uint64_t *v)
{
	const uint8_t *p;
	if (!take(c, 8, &p))
		return false;
	*v = kv_get_le64(p);
	return true;
}

/* A key: le32 length (bounded) then the bytes. */
static bool get_key(struct cursor *c, struct kv_slice *key)
{
	uint32_t n;
	const uint8_t *p;
	if (!get_le32(c, &n) || n > KV_MANIFEST_MAX_KEY || !take(c, n, &p))
		return false;
	*key = kv_slice_make(p, n);
	return true;
}

/* Checks the frame; on success *body is the body and *major the version. */
static int decode_frame(struct kv_slice in, struct cursor *body, unsigned *major,
			unsigned *minor)
{
	if (in.n < FRAME_HEADER + FRAME_CHECKSUM || in.n > KV_MANIFEST_MAX_BYTES)
		return KV_ECORRUPT;
	if (memcmp(in.p, manifest_magic, sizeof manifest_magic))
		return KV_ECORRUPT;
	uint32_t body_len = kv_get_le32(in.p + OFF_BODY_LEN);
	if (body_len != in.n - FRAME_HEADER - FRAME_CHECKSUM)
		return KV_ECORRUPT;
	size_t covered = in.n - FRAME_CHECKSUM;
	if (kv_get_le32(in.p + covered) != kv_checksum32(in.p, covered))
		return KV_ECORRUPT;
	/* The frame is sound: now the version decides (doc: "Version rule"). */
	*major = kv_get_le16(in.p + OFF_MAJOR);
	*minor = kv_get_le16(in.p + OFF_MINOR);
	if (*major == 0)
		return KV_ECORRUPT;
	if (*major > KV_MANIFEST_MAJOR)
		return KV_EVERSION;
	body->p = in.p + FRAME_HEADER;
	body->left = body_len;
	return 0;
}

int kv_manifest_decode(struct kv_slice in, struct kv_manifest *out)
{
	struct kv_manifest m;
	struct cursor c;
	unsigned major, minor;
	uint32_t nprops, ntables;
	kv_manifest_init(&m);
	kv_manifest_init(out);

	int err = decode_frame(in, &c, &major, &minor);
	if (err)
		goto out;
	err = KV_ECORRUPT;
	m.minor_version = minor;
	if (!get_le64(&c, &m.next_file_number) || !get_le64(&c, &m.last_sequence) ||
	    !get_le64(&c, &m.log_number) || !get_le32(&c, &nprops) || !get_le32(&c, &ntables))
		goto out;
	/* Bound the counts by the bytes left before allocating anything. */
	if (nprops > KV_MANIFEST_MAX_PROPS || ntables > KV_MANIFEST_MAX_TABLES ||
	    (uint64_t)nprops * PROP_MIN + (uint64_t)ntables * TABLE_MIN > c.left)
		goto out;

	for (uint32_t i = 0; i < nprops; i++) {
		uint8_t n;
		const uint8_t *name;
		uint64_t value;
		if (!get_u8(&c, &n) || !take(&c, n, &name) || !get_le64(&c, &value) ||
		    !prop_name_ok(name, n))
			goto out;
		if ((err = push_prop(&m, name, n, value)))
			goto out;
		err = KV_ECORRUPT;
	}
	if (ntables) {
		m.tables = malloc(ntables * sizeof *m.tables);
		if (!m.tables) {
			err = -ENOMEM;
			goto out;
		}
		m.tables_cap = ntables;
	}
	for (uint32_t i = 0; i < ntables; i++) {
		uint8_t level;
		uint64_t number, size, entries;
		struct kv_slice smallest, largest;
		if (!get_u8(&c, &level) || !get_le64(&c, &number) || !get_le64(&c, &size) ||
		    !get_le64(&c, &entries) || !get_key(&c, &smallest) || !get_key(&c, &largest))
			goto out;
		if ((err = push_table(&m, level, number, size, entries, smallest, largest)))
			goto out;
		err = KV_ECORRUPT;
	}
	if (c.left != 0)
		goto out; /* trailing bytes inside the body */
	/* Field rules: levels, keys, unique file numbers, unique names. */
	err = check_manifest(&m, KV_ECORRUPT);
	if (err)
		goto out;
	*out = m;
	return 0;
out:
	kv_manifest_release(&m);
	return err;
}

/* ---- Store and load ---------------------------------------------------------- */

/* "@dir/@name" in a malloc'd string, or NULL. */
static char *join_path(const char *dir, const char *name)
{
	size_t dn = strlen(dir);
	bool slash = dn > 0 && dir[dn - 1] != '/';
	size_t n = dn + slash + strlen(name) + 1;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s%s%s", dir, slash ? "/" : "", name);
	return p;
}

int kv_manifest_store(struct kv_vfs *vfs, const char *dir, const struct kv_manifest *m,
		      uint64_t *bytes)
{
	struct kv_buf buf = KV_BUF_INIT;
	struct kv_file *f = NULL;
	bool tmp_created = false;
	char *tmp = join_path(dir, KV_MANIFEST_TMP_NAME);
	char *path = join_path(dir, KV_MANIFEST_NAME);
	int err = -ENOMEM;
	if (!tmp || !path)
		goto out;
	err = kv_manifest_encode(m, &buf);
	if (err)
		goto out;

	/* 1. The new contents, durable under a name nobody reads. */
	err = kv_vfs_open(vfs, tmp, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f);
	if (err)
		goto out;
	tmp_created = true;
	if ((err = kv_file_append(f, buf.p, buf.n)) || (err = kv_file_sync(f)))
		goto out;
	err = kv_file_close(f);
	f = NULL;
	if (err)
		goto out;
	/* 2. The commit point: the name MANIFEST now means the new file... */
	err = kv_vfs_rename(vfs, tmp, path);
	if (err)
		goto out;
	tmp_created = false;
	/* 3. ...and durably so. */
	err = kv_vfs_sync_dir(vfs, dir);
	if (err)
		goto out;
	if (bytes)
		*bytes = buf.n;
out:
	if (f)
		kv_file_close(f);
	if (err && tmp_created)
		kv_vfs_remove(vfs, tmp); /* best effort: load ignores it anyway */
	if (err)
		kv_error("manifest: store in %s failed: %s", dir, kv_strerror(err));
	free(tmp);
	free(path);
	kv_buf_release(&buf);
	return err;
}

int kv_manifest_load(struct kv_vfs *vfs, const char *dir, struct kv_manifest *out)
{
	struct kv_file *f = NULL;
	uint8_t *data = NULL;
	uint64_t size = 0;
	char *tmp = join_path(dir, KV_MANIFEST_TMP_NAME);
	char *path = join_path(dir, KV_MANIFEST_NAME);
	int err = -ENOMEM;
	kv_manifest_init(out);
	if (!tmp || !path)
		goto out;

	/* An interrupted store left this; MANIFEST is still the truth. */
	if (kv_vfs_exists(vfs, tmp) == 0) {
		int rm = kv_vfs_remove(vfs, tmp);
		kv_info("manifest: removed leftover %s (%s)", tmp, rm ? kv_strerror(rm) : "ok");
	}

	err = kv_vfs_open(vfs, path, KV_VFS_READ, &f);
	if (err) {
		if (err == -ENOENT)
			err = KV_ENOTFOUND;
		goto out;
	}
	if ((err = kv_file_size(f, &size)))
		goto out;
	err = KV_ECORRUPT;
	if (size < FRAME_HEADER + FRAME_CHECKSUM || size > KV_MANIFEST_MAX_BYTES)
		goto out;
	err = -ENOMEM;
	if (!(data = malloc((size_t)size)))
		goto out;
	if ((err = kv_file_read_exact(f, data, (size_t)size, 0)))
		goto out;
	err = kv_manifest_decode(kv_slice_make(data, (size_t)size), out);
out:
	if (err && err != KV_ENOTFOUND)
		kv_error("manifest: cannot load %s: %s", path ? path : dir, kv_strerror(err));
	kv_file_close(f);
	free(data);
	free(tmp);
	free(path);
	return err;
}
