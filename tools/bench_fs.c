/*
 * bench_fs.c - `kvfs-bench fs MOUNTPOINT`: the mount's benchmark (issue 5,
 * "Benchmark it"), run the same way on kvfs and on the references
 * (tools/bench-fs: sshfs, passthrough_ll, the local disk):
 *
 *   seq_write  one --size file (1 GiB) in 1 MiB writes, fsync, close: MB/s
 *   seq_read   that file, cold: MB/s
 *   create     --files (10,000) 4 KiB files in one directory: files/s
 *   stat       lstat of each, cold: files/s
 *   read       each file's content, cold: files/s
 *   ls_l       `ls -l` of that directory, cold: seconds
 *   delete     unlink of each, then rmdir of the directory, timed together: files/s
 *
 * "Cold": before a read phase, --remount CMD (run with sh -c from /) mounts
 * the file system afresh, then the page cache is dropped (sync, then
 * "3" > /proc/sys/vm/drop_caches; root only, else a note on stderr). Every
 * block and every small file carries its own index, so content-addressed
 * deduplication cannot flatter a figure, and reads check it.
 * MB is 10^6 bytes. Method: doc/benchmarks.md; flags: kvfs-bench(1).
 */
#include "bench_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)      /* seq_write / seq_read request size */
#define SMALL 4096u           /* the small files' size */
#define STAMP_EVERY 4096u     /* a block index every 4 KiB */
#define NPHASES 7

extern char **environ;

static const char *const phase_names[NPHASES] = {
	"seq_write", "seq_read", "create", "stat", "read", "ls_l", "delete",
};

struct fs_flags {
	const char *mnt;
	uint64_t size;            /* bytes of the sequential file */
	uint64_t files;           /* small files */
	const char *remount;      /* shell command, or NULL */
	bool drop_caches;
	bool phase[NPHASES];
};

struct fs_run {
	const struct fs_flags *f;
	char dir[4096];           /* MOUNTPOINT/kvfs-bench-fs.PID */
	char seq[4200];           /* dir/seq */
	char small[4200];         /* dir/small */
	uint8_t *buf;             /* BLOCK bytes of random data, stamped per block */
	uint8_t *rbuf;            /* BLOCK bytes */
	bool warned_drop;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench fs MOUNTPOINT [flags]\n"
		"  --size BYTES      sequential file size, K/M/G suffixes (default 1G)\n"
		"  --files N         small 4 KiB files, and entries listed by ls -l (default 10000)\n"
		"  --remount CMD     shell command run before each read phase to remount\n"
		"                    MOUNTPOINT (from /; e.g. 'fusermount3 -u M && kvfs M')\n"
		"  --no-drop-caches  do not write to /proc/sys/vm/drop_caches\n"
		"  --phases LIST     comma list of seq_write,seq_read,create,stat,read,ls_l,delete\n"
		"                    (default all; seq_read needs seq_write, the rest create)\n"
		"Prints 'PHASE VALUE UNIT' lines (MB = 10^6 bytes). See kvfs-bench(1).\n");
}

/* Parses "123", "4K", "1M", "2G" into @out; -EINVAL otherwise. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || s[0] == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -EINVAL;
	}
	if (*end != '\0' || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_phases(const char *list, bool *phase)
{
	char tmp[256];
	if (strlen(list) >= sizeof tmp)
		return -EINVAL;
	memcpy(tmp, list, strlen(list) + 1);
	for (int i = 0; i < NPHASES; i++)
		phase[i] = false;
	char *save = NULL;
	for (char *tok = strtok_r(tmp, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int i = 0;
		while (i < NPHASES && strcmp(tok, phase_names[i]) != 0)
			i++;
		if (i == NPHASES)
			return -EINVAL;
		phase[i] = true;
	}
	return 0;
}

static int parse_flags(int argc, char **argv, struct fs_flags *f)
{
	memset(f, 0, sizeof *f);
	f->size = 1ull << 30;
	f->files = 10000;
	f->drop_caches = true;
	for (int i = 0; i < NPHASES; i++)
		f->phase[i] = true;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--no-drop-caches")) {
			f->drop_caches = false;
		} else if (!strcmp(a, "--size") && v != NULL) {
			if (parse_size(v, &f->size) != 0 || f->size == 0)
				goto bad;
			i++;
		} else if (!strcmp(a, "--files") && v != NULL) {
			if (parse_size(v, &f->files) != 0 || f->files == 0 || f->files > 10000000)
				goto bad;
			i++;
		} else if (!strcmp(a, "--remount") && v != NULL) {
			f->remount = v;
			i++;
		} else if (!strcmp(a, "--phases") && v != NULL) {
			if (parse_phases(v, f->phase) != 0)
				goto bad;
			i++;
		} else if (a[0] != '-' && f->mnt == NULL) {
			f->mnt = a;
		} else {
			goto bad;
		}
		continue;
bad:
		fprintf(stderr, "kvfs-bench fs: bad flag or value: %s%s%s\n", a, v ? " " : "",
			v && a[0] == '-' ? v : "");
		return -EINVAL;
	}
	if (f->mnt == NULL) {
		usage(stderr);
		return -EINVAL;
	}
	if (f->phase[1] && !f->phase[0]) {
		fprintf(stderr, "kvfs-bench fs: seq_read needs seq_write\n");
		return -EINVAL;
	}
	for (int i = 3; i < NPHASES; i++)
		if (f->phase[i] && !f->phase[2]) {
			fprintf(stderr, "kvfs-bench fs: %s needs create\n", phase_names[i]);
			return -EINVAL;
		}
	return 0;
}

/* Writes @idx into the first 8 bytes of every 4 KiB of @p (@n bytes). */
static void stamp(uint8_t *p, size_t n, uint64_t idx)
{
	for (size_t off = 0; off + sizeof idx <= n; off += STAMP_EVERY)
		memcpy(p + off, &idx, sizeof idx);
}

static bool stamped(const uint8_t *p, size_t n, uint64_t idx)
{
	for (size_t off = 0; off + sizeof idx <= n; off += STAMP_EVERY)
		if (memcmp(p + off, &idx, sizeof idx) != 0)
			return false;
	return true;
}

/* Runs `sh -c CMD` (from /, so that it never holds the mount busy) and
 * waits for it. Returns its exit status, or -errno when it could not run. */
static int run_shell(const char *cmd)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (chdir("/") != 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Makes the next phase cold: remount, then drop the page cache. */
static int cold(struct fs_run *r)
{
	int rc = 0;
	if (r->f->remount != NULL) {
		rc = run_shell(r->f->remount);
		if (rc != 0) {
			fprintf(stderr, "kvfs-bench fs: remount command failed (%d): %s\n", rc,
				r->f->remount);
			return -EIO;
		}
	}
	sync();
	if (r->f->drop_caches) {
		int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "3\n", 2) != 2) {
			if (!r->warned_drop)
				fprintf(stderr, "kvfs-bench fs: note: page cache not dropped (%s); "
					"read phases may be warm\n", strerror(errno));
			r->warned_drop = true;
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static void small_name(const struct fs_run *r, uint64_t i, char *out, size_t n)
{
	snprintf(out, n, "%s/f%07llu", r->small, (unsigned long long)i);
}

static int phase_seq_write(struct fs_run *r, double *value)
{
	int fd = open(r->seq, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = 0;
	double t0 = now_s();
	for (uint64_t off = 0, blk = 0; off < r->f->size; off += BLOCK, blk++) {
		size_t n = r->f->size - off < BLOCK ? (size_t)(r->f->size - off) : BLOCK;
		stamp(r->buf, n, blk);
		ssize_t w = write(fd, r->buf, n);
		if (w != (ssize_t)n) {
			rc = w < 0 ? -errno : -EIO;
			goto out;
		}
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto out;
	}
	rc = close(fd) != 0 ? -errno : 0;
	fd = -1;
	*value = (double)r->f->size / 1e6 / (now_s() - t0);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int phase_seq_read(struct fs_run *r, double *value)
{
	int fd = open(r->seq, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	uint64_t got = 0, blk = 0;
	double t0 = now_s();
	for (;;) {
		size_t have = 0;
		while (have < BLOCK) {
			ssize_t n = read(fd, r->rbuf + have, BLOCK - have);
			if (n < 0) {
				rc = -errno;
				goto out;
			}
			if (n == 0)
				break;
			have += (size_t)n;
		}
		if (have == 0)
			break;
		if (!stamped(r->rbuf, have, blk)) {
			fprintf(stderr, "kvfs-bench fs: seq_read: wrong content in block %llu\n",
				(unsigned long long)blk);
			rc = -EIO;
			goto out;
		}
		got += have;
		blk++;
		if (have < BLOCK)
			break;
	}
	*value = (double)got / 1e6 / (now_s() - t0);
	if (got != r->f->size) {
		fprintf(stderr, "kvfs-bench fs: seq_read: %llu bytes, want %llu\n",
			(unsigned long long)got, (unsigned long long)r->f->size);
		rc = -EIO;
	}
out:
	close(fd);
	return rc;
}

static int phase_create(struct fs_run *r, double *value)
{
	char name[4300];
	if (mkdir(r->small, 0755) != 0)
		return -errno;
	double t0 = now_s();
	for (uint64_t i = 0; i < r->f->files; i++) {
		small_name(r, i, name, sizeof name);
		stamp(r->buf, SMALL, i);
		int fd = open(name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		ssize_t w = write(fd, r->buf, SMALL);
		int e = errno;
		if (close(fd) != 0)
			return -errno;
		if (w != (ssize_t)SMALL)
			return w < 0 ? -e : -EIO;
	}
	*value = (double)r->f->files / (now_s() - t0);
	return 0;
}

static int phase_stat(struct fs_run *r, double *value)
{
	char name[4300];
	struct stat st;
	double t0 = now_s();
	for (uint64_t i = 0; i < r->f->files; i++) {
		small_name(r, i, name, sizeof name);
		if (lstat(name, &st) != 0)
			return -errno;
		if (st.st_size != (off_t)SMALL) {
			fprintf(stderr, "kvfs-bench fs: stat: %s has %lld bytes\n", name,
				(long long)st.st_size);
			return -EIO;
		}
	}
	*value = (double)r->f->files / (now_s() - t0);
	return 0;
}

static int phase_read(struct fs_run *r, double *value)
{
	char name[4300];
	double t0 = now_s();
	for (uint64_t i = 0; i < r->f->files; i++) {
		small_name(r, i, name, sizeof name);
		int fd = open(name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		ssize_t n = read(fd, r->rbuf, SMALL + 1);
		int e = errno;
		close(fd);
		if (n < 0)
			return -e;
		if (n != (ssize_t)SMALL || !stamped(r->rbuf, SMALL, i)) {
			fprintf(stderr, "kvfs-bench fs: read: %s: %zd bytes or wrong content\n", name, n);
			return -EIO;
		}
	}
	*value = (double)r->f->files / (now_s() - t0);
	return 0;
}

/* `ls -l DIR > /dev/null`, as a user would run it. */
static int phase_ls_l(struct fs_run *r, double *value)
{
	posix_spawn_file_actions_t fa;
	int rc = posix_spawn_file_actions_init(&fa);
	if (rc != 0)
		return -rc;
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	char *argv[] = { "ls", "-l", r->small, NULL };
	double t0 = now_s();
	pid_t pid;
	rc = posix_spawnp(&pid, "ls", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -rc;
	int st = 0;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	*value = now_s() - t0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "kvfs-bench fs: ls -l %s failed\n", r->small);
		return -EIO;
	}
	return 0;
}

static int phase_delete(struct fs_run *r, double *value)
{
	char name[4300];
	double t0 = now_s();
	for (uint64_t i = 0; i < r->f->files; i++) {
		small_name(r, i, name, sizeof name);
		if (unlink(name) != 0)
			return -errno;
	}
	/* Timed too: a mount that deletes in the background answers rmdir
	 * only once every delete has landed. */
	if (rmdir(r->small) != 0)
		return -errno;
	*value = (double)r->f->files / (now_s() - t0);
	return 0;
}

typedef int (*phase_fn)(struct fs_run *, double *);
static const phase_fn phase_fns[NPHASES] = {
	phase_seq_write, phase_seq_read, phase_create, phase_stat, phase_read,
	phase_ls_l, phase_delete,
};
static const char *const phase_units[NPHASES] = {
	"MB/s", "MB/s", "files/s", "files/s", "files/s", "s", "files/s",
};
static const bool phase_cold[NPHASES] = { false, true, false, true, true, true, false };

int bench_fs_main(int argc, char **argv)
{
	struct fs_flags f;
	struct fs_run r;
	int status = 1;
	memset(&r, 0, sizeof r);
	if (parse_flags(argc, argv, &f) != 0)
		return 2;
	r.f = &f;
	snprintf(r.dir, sizeof r.dir, "%s/kvfs-bench-fs.%ld", f.mnt, (long)getpid());
	snprintf(r.seq, sizeof r.seq, "%s/seq", r.dir);
	snprintf(r.small, sizeof r.small, "%s/small", r.dir);
	r.buf = malloc(BLOCK);
	r.rbuf = malloc(BLOCK);
	if (r.buf == NULL || r.rbuf == NULL) {
		fprintf(stderr, "kvfs-bench fs: out of memory\n");
		goto out;
	}
	/* Incompressible bytes (xorshift64), stamped per block or file. */
	uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	for (size_t i = 0; i + 8 <= BLOCK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(r.buf + i, &x, 8);
	}
	if (mkdir(r.dir, 0755) != 0) {
		fprintf(stderr, "kvfs-bench fs: mkdir %s: %s\n", r.dir, strerror(errno));
		goto out;
	}
	fprintf(stderr, "kvfs-bench fs: %s: file %llu bytes, %llu small files, remount: %s\n",
		f.mnt, (unsigned long long)f.size, (unsigned long long)f.files,
		f.remount ? f.remount : "no");
	/* A failed phase is reported and the run goes on with the phases that
	 * do not need it (seq_read needs seq_write; the rest need create). */
	bool failed[NPHASES] = { false };
	bool any_failed = false;
	for (int p = 0; p < NPHASES; p++) {
		if (!f.phase[p] || (p == 1 && failed[0]) || (p >= 3 && failed[2]))
			continue;
		if (phase_cold[p] && cold(&r) != 0)
			goto out;
		double value = 0;
		int rc = phase_fns[p](&r, &value);
		if (rc != 0) {
			fprintf(stderr, "kvfs-bench fs: %s failed: %s\n", phase_names[p], strerror(-rc));
			failed[p] = any_failed = true;
		} else {
			printf("%-10s %12.3f %s\n", phase_names[p], value, phase_units[p]);
			fflush(stdout);
		}
		if (p == 1 || (p == 0 && (!f.phase[1] || failed[0])))
			unlink(r.seq);
	}
	status = any_failed ? 1 : 0;
out:
	/* Best effort: leave nothing behind on the mount. */
	if (r.small[0] != '\0' && status != 0) {
		char name[4300];
		for (uint64_t i = 0; i < f.files; i++) {
			small_name(&r, i, name, sizeof name);
			if (unlink(name) != 0 && errno == ENOENT && i > 0)
				break;
		}
		rmdir(r.small);
		unlink(r.seq);
	}
	if (r.dir[0] != '\0')
		rmdir(r.dir);
	free(r.buf);
	free(r.rbuf);
	return status;
}
