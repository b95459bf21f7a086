/*
 * bench_fsync.c - `kvfs-bench fsync`: the raw durable-write latency of a
 * disk, the floor under every synced write of every engine.
 *
 * It does what a WAL does for one small synced write: append --size bytes
 * to a file and fdatasync(2) it (the append grows the file, so the sync also
 * carries the new size), --count times, and prints a db_bench-style line
 * with p50, p99 and the mean. With --prealloc the file is first allocated
 * and synced, and the writes overwrite it in place, so each sync carries
 * data only (what a preallocated or recycled WAL would pay). doc/benchmarks.md
 * explains how to read the group-commit ratio against it.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/time.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench fsync [--dir=DIR] [--count=N] [--size=BYTES] [--fsync] [--prealloc]\n"
		"  --dir    directory on the disk to measure [.]\n"
		"  --count  appends, each followed by a sync [200]\n"
		"  --size   bytes per append [4096]\n"
		"  --fsync  use fsync(2) instead of fdatasync(2)\n"
		"  --prealloc  allocate and sync the file first, then overwrite it in place\n");
}

static long parse_count(const char *flag, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "kvfs-bench fsync: %s: expected %ld..%ld, got '%s'\n", flag,
			min, max, s);
		exit(2);
	}
	return v;
}

int bench_fsync_main(int argc, char **argv)
{
	const char *dir = ".";
	long count = 200, size = 4096;
	bool full = false, prealloc = false;
	for (int i = 2; i < argc; i++) {
		const char *v;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--fsync")) {
			full = true;
		} else if (!strcmp(argv[i], "--prealloc")) {
			prealloc = true;
		} else if ((v = bench_flag_value("--dir", argc, argv, &i))) {
			dir = v;
		} else if ((v = bench_flag_value("--count", argc, argv, &i))) {
			count = parse_count("--count", v, 1, 10000000);
		} else if ((v = bench_flag_value("--size", argc, argv, &i))) {
			size = parse_count("--size", v, 1, 64L << 20);
		} else {
			fprintf(stderr, "kvfs-bench fsync: unknown flag '%s' (see --help)\n", argv[i]);
			return 2;
		}
	}

	char path[4200];
	snprintf(path, sizeof(path), "%s/.kvfs-bench-fsync.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		fprintf(stderr, "kvfs-bench fsync: cannot create a file in %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	unlink(path); /* the open descriptor keeps it alive until close */

	char *buf = malloc((size_t)size);
	if (!buf) {
		close(fd);
		fprintf(stderr, "kvfs-bench fsync: out of memory\n");
		return 1;
	}
	memset(buf, 'x', (size_t)size);
	struct bench_hist *h = malloc(sizeof(*h));
	if (!h) {
		free(buf);
		close(fd);
		fprintf(stderr, "kvfs-bench fsync: out of memory\n");
		return 1;
	}
	bench_hist_init(h);

	int rc = 0;
	if (prealloc) {
		int err = posix_fallocate(fd, 0, (off_t)count * size);
		if (err || fsync(fd) != 0) {
			fprintf(stderr, "kvfs-bench fsync: preallocating %ld bytes: %s\n", count * size,
				strerror(err ? err : errno));
			rc = 1;
			count = 0;
		}
	}
	uint64_t start = kv_now_ns();
	for (long i = 0; i < count; i++) {
		uint64_t t0 = kv_now_ns();
		ssize_t n = pwrite(fd, buf, (size_t)size, (off_t)i * size);
		int s = n == (ssize_t)size ? (full ? fsync(fd) : fdatasync(fd)) : -1;
		if (s != 0) {
			fprintf(stderr, "kvfs-bench fsync: %s: %s\n",
				n != (ssize_t)size ? "write" : "sync",
				n < 0 || s < 0 ? strerror(errno) : "short write");
			rc = 1;
			break;
		}
		bench_hist_add(h, kv_now_ns() - t0);
	}
	double secs = (double)(kv_now_ns() - start) / 1e9;
	if (rc == 0 && count > 0) {
		double us = secs * 1e6 / (double)count;
		printf("%-12s : %11.3f micros/op %ld ops/sec; %ld-byte %s + %s, %ld times; "
		       "p50 %.1f p99 %.1f mean %.1f max %.1f micros\n",
		       "fsync", us, (long)((double)count / secs), size,
		       prealloc ? "overwrite" : "append",
		       full ? "fsync" : "fdatasync", count, bench_hist_quantile(h, 0.50) / 1e3,
		       bench_hist_quantile(h, 0.99) / 1e3, (double)h->sum_ns / (double)count / 1e3,
		       (double)h->max_ns / 1e3);
	}
	free(h);
	free(buf);
	close(fd);
	return rc;
}
