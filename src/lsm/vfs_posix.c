/*
 * vfs_posix.c - the VFS over the real file system (see vfs.h).
 *
 * Thin: each call is one or two system calls, retried on EINTR. Locks are
 * open-file-description locks (F_OFD_SETLK), so a second open of the same
 * database conflicts even inside one process.
 */
#include "lsm/vfs.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct posix_file {
	struct kv_file base;
	int fd;
	bool direct;    /* opened with O_DIRECT (KV_VFS_DIRECT), not yet cleared */
	bool end_known; /* append's cached end of file (one writer a handle) */
	uint64_t end;
	_Atomic(const uint8_t *) map; /* read-only mapping, made on first use */
	_Atomic uint64_t map_len;
};

static int posix_fd(struct kv_file *f)
{
	return ((struct posix_file *)f)->fd;
}

static ssize_t posix_pread(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	ssize_t r;
	do
		r = pread(posix_fd(f), buf, n, (off_t)off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Writes all @n bytes at @off, retrying short writes and EINTR. */
static int write_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* no progress: do not spin */
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/*
 * O_DIRECT wants the buffer, length and offset aligned to the device's
 * logical block; 4096 covers every block size Linux file systems use.
 * Unaligned data is copied through a per-thread bounce buffer, reused so
 * that its pages stay resident: fresh pages are what direct I/O avoids.
 */
#define DIO_ALIGN 4096u
#define BOUNCE_BYTES (1u << 20)

static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static void bounce_key_make(void)
{
	(void)pthread_key_create(&bounce_key, free);
}

static uint8_t *bounce_buffer(void)
{
	if (pthread_once(&bounce_once, bounce_key_make) != 0)
		return NULL;
	uint8_t *b = pthread_getspecific(bounce_key);
	if (!b) {
		void *p = NULL;
		if (posix_memalign(&p, DIO_ALIGN, BOUNCE_BYTES) != 0)
			return NULL;
		if (pthread_setspecific(bounce_key, p) != 0) {
			free(p);
			return NULL;
		}
		b = p;
	}
	return b;
}

/* Goes back to the page cache for the rest of the handle's life. */
static void drop_direct(struct posix_file *pf)
{
	int fl = fcntl(pf->fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(pf->fd, F_SETFL, fl & ~O_DIRECT);
	pf->direct = false;
}

/*
 * Writes the whole-block prefix of @n bytes at an aligned @off with
 * O_DIRECT; *done gets how many bytes it wrote. Any failure of the direct
 * write itself (a file system that takes O_DIRECT at open but not for this
 * write) is no error: the caller writes the rest through the page cache.
 */
static int direct_prefix(struct posix_file *pf, const uint8_t *p, size_t n, uint64_t off,
			 size_t *done)
{
	*done = 0;
	size_t whole = n & ~(size_t)(DIO_ALIGN - 1);
	bool aligned = ((uintptr_t)p & (DIO_ALIGN - 1)) == 0;
	uint8_t *bounce = aligned ? NULL : bounce_buffer();
	if (!aligned && !bounce)
		return 0;
	while (*done < whole) {
		size_t len = whole - *done;
		const uint8_t *src = p + *done;
		if (!aligned) {
			if (len > BOUNCE_BYTES)
				len = BOUNCE_BYTES;
			memcpy(bounce, src, len);
			src = bounce;
		}
		ssize_t r = pwrite(pf->fd, src, len, (off_t)(off + *done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EINVAL)
			return -errno;
		if (r <= 0 || ((size_t)r & (DIO_ALIGN - 1)) != 0) {
			/* Refused, or a partial block: the page cache does the rest. */
			if (r > 0)
				*done += (size_t)r;
			return 0;
		}
		*done += (size_t)r;
	}
	return 0;
}

static int posix_pwrite(struct kv_file *f, const void *buf, size_t n, uint64_t off)
{
	/* A write past the cached end moves the end append writes at. */
	struct posix_file *pf = (struct posix_file *)f;
	size_t done = 0;
	int r = 0;
	if (pf->direct && (off & (DIO_ALIGN - 1)) == 0)
		r = direct_prefix(pf, buf, n, off, &done);
	if (r == 0 && done < n) {
		if (pf->direct)
			drop_direct(pf);
		r = write_all(pf->fd, (const uint8_t *)buf + done, n - done, off + done);
	}
	if (r)
		pf->end_known = false; /* a partial write may have moved the end */
	else if (pf->end_known && n > 0 && off + n > pf->end)
		pf->end = off + n;
	return r;
}

static int posix_append(struct kv_file *f, const void *buf, size_t n)
{
	/* No O_APPEND: the end is read once, then tracked, saving a syscall. */
	struct posix_file *pf = (struct posix_file *)f;
	if (pf->direct)
		drop_direct(pf);
	if (!pf->end_known) {
		struct stat st;
		if (fstat(pf->fd, &st) < 0)
			return -errno;
		pf->end = (uint64_t)st.st_size;
		pf->end_known = true;
	}
	int r = write_all(pf->fd, buf, n, pf->end);
	if (r == 0)
		pf->end += n;
	else
		pf->end_known = false; /* a partial write moved the end */
	return r;
}

static int posix_sync(struct kv_file *f)
{
	int r;
	do
		r = fdatasync(posix_fd(f));
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int posix_size(struct kv_file *f, uint64_t *out)
{
	struct stat st;
	if (fstat(posix_fd(f), &st) < 0)
		return -errno;
	*out = (uint64_t)st.st_size;
	return 0;
}

static int posix_truncate(struct kv_file *f, uint64_t size)
{
	((struct posix_file *)f)->end_known = false;
	return ftruncate(posix_fd(f), (off_t)size) < 0 ? -errno : 0;
}

/*
 * Maps the file once, on first use; racing callers agree on one mapping (the
 * loser unmaps its own). Only the bytes the file holds now are mapped, so a
 * table shorter than its manifest claims is caught by bounds checks, not by
 * SIGBUS. A file truncated by someone else after mapping would raise SIGBUS:
 * tables are never truncated.
 */
static const uint8_t *posix_map(struct kv_file *f, uint64_t *len)
{
	struct posix_file *pf = (struct posix_file *)f;
	const uint8_t *m = atomic_load_explicit(&pf->map, memory_order_acquire);
	if (m) {
		*len = atomic_load_explicit(&pf->map_len, memory_order_relaxed);
		return m;
	}
	struct stat st;
	if (fstat(pf->fd, &st) < 0 || st.st_size <= 0)
		return NULL;
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, pf->fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	const uint8_t *expected = NULL;
	atomic_store_explicit(&pf->map_len, (uint64_t)st.st_size, memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&pf->map, &expected, (const uint8_t *)p,
						     memory_order_acq_rel, memory_order_acquire)) {
		munmap(p, (size_t)st.st_size);
		*len = atomic_load_explicit(&pf->map_len, memory_order_relaxed);
		return expected;
	}
	*len = (uint64_t)st.st_size;
	return p;
}

static int posix_close(struct kv_file *f)
{
	struct posix_file *pf = (struct posix_file *)f;
	const uint8_t *m = atomic_load(&pf->map);
	if (m)
		munmap((void *)m, (size_t)atomic_load(&pf->map_len));
	int r = close(posix_fd(f));
	free(f);
	return r < 0 && errno != EINTR ? -errno : 0;
}

static int posix_writeback(struct kv_file *f, uint64_t off, uint64_t n)
{
	/* Asynchronous: queue the dirty pages for writing, wait for nothing. */
	if (sync_file_range(posix_fd(f), (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE) < 0 &&
	    errno != EINTR)
		return -errno;
	return 0;
}

static const struct kv_file_ops posix_file_ops = {
	.pread = posix_pread,
	.pwrite = posix_pwrite,
	.append = posix_append,
	.sync = posix_sync,
	.size = posix_size,
	.truncate = posix_truncate,
	.close = posix_close,
	.map = posix_map,
	.writeback = posix_writeback,
};

static int wrap_fd(int fd, struct kv_file **out)
{
	struct posix_file *pf = malloc(sizeof *pf);
	if (!pf) {
		close(fd);
		return -ENOMEM;
	}
	pf->base.ops = &posix_file_ops;
	pf->fd = fd;
	pf->direct = false;
	pf->end_known = false;
	pf->end = 0;
	atomic_init(&pf->map, NULL);
	atomic_init(&pf->map_len, 0);
	*out = &pf->base;
	return 0;
}

static int posix_open(struct kv_vfs *vfs, const char *path, int flags, struct kv_file **out)
{
	(void)vfs;
	*out = NULL;
	int oflags = O_CLOEXEC | ((flags & KV_VFS_WRITE) ? O_RDWR : O_RDONLY);
	if (flags & KV_VFS_CREATE)
		oflags |= O_CREAT | O_RDWR;
	if (flags & KV_VFS_EXCL)
		oflags |= O_EXCL;
	if (flags & KV_VFS_TRUNC)
		oflags |= O_TRUNC;
	int fd;
	bool direct = (flags & KV_VFS_DIRECT) != 0;
	do
		fd = open(path, oflags | (direct ? O_DIRECT : 0), 0644);
	while (fd < 0 && errno == EINTR);
	if (fd < 0 && direct && errno == EINVAL) {
		/* No O_DIRECT here (tmpfs): the page cache it is. */
		direct = false;
		do
			fd = open(path, oflags, 0644);
		while (fd < 0 && errno == EINTR);
	}
	if (fd < 0)
		return -errno;
	int r = wrap_fd(fd, out);
	if (r == 0)
		((struct posix_file *)*out)->direct = direct;
	return r;
}

static int posix_rename(struct kv_vfs *vfs, const char *from, const char *to)
{
	(void)vfs;
	return rename(from, to) < 0 ? -errno : 0;
}

static int posix_remove(struct kv_vfs *vfs, const char *path)
{
	(void)vfs;
	if (unlink(path) == 0)
		return 0;
	if (errno == EISDIR || errno == EPERM)
		return rmdir(path) < 0 ? -errno : 0;
	return -errno;
}

static int posix_mkdir(struct kv_vfs *vfs, const char *path)
{
	(void)vfs;
	return mkdir(path, 0755) < 0 ? -errno : 0;
}

static int posix_sync_dir(struct kv_vfs *vfs, const char *path)
{
	(void)vfs;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r;
	do
		r = fsync(fd);
	while (r < 0 && errno == EINTR);
	int err = r < 0 ? -errno : 0;
	close(fd);
	return err;
}

static int posix_list(struct kv_vfs *vfs, const char *path, char ***names, size_t *count)
{
	(void)vfs;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	struct dirent *de;
	for (;;) {
		errno = 0;
		if (!(de = readdir(d))) {
			err = -errno; /* 0 at the end; a read error must not truncate */
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				err = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		if (!(v[n] = strdup(de->d_name))) {
			err = -ENOMEM;
			goto out;
		}
		n++;
	}
out:
	closedir(d);
	if (err) {
		kv_vfs_names_free(v, n);
		return err;
	}
	*names = v;
	*count = n;
	return 0;
}

static int posix_exists(struct kv_vfs *vfs, const char *path)
{
	(void)vfs;
	struct stat st;
	return stat(path, &st) < 0 ? -errno : 0;
}

static int posix_lock(struct kv_vfs *vfs, const char *path, struct kv_file **out)
{
	(void)vfs;
	*out = NULL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int err = (errno == EAGAIN || errno == EACCES) ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	return wrap_fd(fd, out);
}

static const struct kv_vfs_ops posix_vfs_ops = {
	.open = posix_open,
	.rename = posix_rename,
	.remove = posix_remove,
	.mkdir = posix_mkdir,
	.sync_dir = posix_sync_dir,
	.list = posix_list,
	.exists = posix_exists,
	.lock = posix_lock,
	.destroy = NULL,
};

static struct kv_vfs posix_vfs = { &posix_vfs_ops };

struct kv_vfs *kv_vfs_posix(void)
{
	return &posix_vfs;
}
