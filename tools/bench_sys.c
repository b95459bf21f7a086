/*
 * bench_sys.c - what kvfs-bench reads from the operating system: a
 * process's I/O counters (/proc/<pid>/io, see proc(5)), the space a database
 * directory takes, peak memory; and the guarded removal of a database
 * directory before a fresh run.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

void bench_procio_read(int pid, struct bench_procio *out)
{
	char path[64];
	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/io");
	else
		snprintf(path, sizeof(path), "/proc/%d/io", pid);
	memset(out, 0, sizeof(*out));
	FILE *fp = fopen(path, "r");
	if (!fp)
		return;
	char name[64];
	uint64_t value;
	unsigned seen = 0;
	while (fscanf(fp, "%63[^:]: %" SCNu64 " ", name, &value) == 2) {
		if (!strcmp(name, "rchar"))
			out->rchar = value, seen |= 1;
		else if (!strcmp(name, "wchar"))
			out->wchar = value, seen |= 2;
		else if (!strcmp(name, "read_bytes"))
			out->read_bytes = value;
		else if (!strcmp(name, "write_bytes"))
			out->write_bytes = value;
		else if (!strcmp(name, "cancelled_write_bytes"))
			out->cancelled_write_bytes = value;
	}
	fclose(fp);
	out->valid = seen == 3;
}

/* nftw() takes no context argument: these carry its totals. */
static uint64_t walk_bytes;

static int add_file_bytes(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F)
		walk_bytes += (uint64_t)st->st_size;
	return 0;
}

uint64_t bench_dir_bytes(const char *dir)
{
	walk_bytes = 0;
	if (nftw(dir, add_file_bytes, 16, FTW_PHYS) != 0)
		return 0;
	return walk_bytes;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (remove(path) != 0 && errno != ENOENT) {
		fprintf(stderr, "kvfs-bench: cannot remove %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* True if @dir is empty or holds a file an LSM engine leaves behind. */
static bool looks_like_db(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return false;
	bool empty = true, db = false;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		empty = false;
		if (!strcmp(e->d_name, "LOCK") || !strcmp(e->d_name, "CURRENT") ||
		    !strncmp(e->d_name, "MANIFEST", 8))
			db = true;
	}
	closedir(d);
	return empty || db;
}

int bench_dir_wipe(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "kvfs-bench: --db %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kvfs-bench: --db %s is not a directory\n", dir);
		return -1;
	}
	if (!looks_like_db(dir)) {
		fprintf(stderr,
			"kvfs-bench: --db %s holds files but no database (no LOCK, CURRENT "
			"or MANIFEST); refusing to delete it\n", dir);
		return -1;
	}
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return -1;
	return 0;
}

uint64_t bench_peak_rss_kib(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)ru.ru_maxrss; /* KiB on Linux */
}

const char *bench_flag_value(const char *name, int argc, char **argv, int *i)
{
	const char *arg = argv[*i];
	size_t len = strlen(name);
	if (strncmp(arg, name, len) != 0)
		return NULL;
	if (arg[len] == '=')
		return arg + len + 1;
	if (arg[len] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}
