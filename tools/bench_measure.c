/*
 * bench_measure.c - `kvfs-bench measure -- CMD ARGS...`: runs a command and
 * reports what it wrote and how much memory it peaked at, so another
 * engine's own benchmark tool (RocksDB's db_bench) is measured exactly like
 * kvfs-bench measures itself.
 *
 * The child is waited for with WNOWAIT, which leaves it a zombie: all its
 * threads have exited, so /proc/<pid>/io holds its final totals, and it is
 * still there to read. Only then is it reaped, with wait4(), whose rusage
 * gives the peak RSS (ru_maxrss) and CPU times.
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/time.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench measure [--out=FILE] -- COMMAND [ARGS...]\n"
		"Runs COMMAND and then prints one line (to FILE, or stderr):\n"
		"  measure: status=S elapsed_s=T user_s=U sys_s=K maxrss_kib=M peak_anon_kib=A wchar=W\n"
		"           rchar=R write_bytes=B read_bytes=D cancelled_write_bytes=C\n"
		"Exits with COMMAND's status (128+N if killed by signal N).\n");
}

/* RssAnon of @pid in KiB from /proc/PID/status, or 0. */
static long anon_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long kib = 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "RssAnon:", 8)) {
			kib = strtol(line + 8, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

int bench_measure_main(int argc, char **argv)
{
	const char *out_path = NULL;
	int i = 2;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strncmp(argv[i], "--out=", 6)) {
			out_path = argv[i] + 6;
		} else {
			fprintf(stderr, "kvfs-bench measure: unknown flag '%s' (see --help)\n",
				argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "kvfs-bench measure: no command given (kvfs-bench measure -- CMD)\n");
		return 2;
	}

	fflush(NULL);
	uint64_t start = kv_now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "kvfs-bench measure: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		execvp(argv[i], argv + i);
		fprintf(stderr, "kvfs-bench measure: cannot run %s: %s\n", argv[i], strerror(errno));
		_exit(127);
	}

	/*
	 * Poll rather than block, sampling the child's anonymous memory
	 * (RssAnon) every 10 ms: ru_maxrss also counts file pages an engine
	 * maps (tables read through mmap), which are page cache, not memory
	 * the engine allocated.
	 */
	siginfo_t info;
	long peak_anon_kib = 0;
	for (;;) {
		memset(&info, 0, sizeof info);
		int r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT | WNOHANG);
		if (r != 0 && errno == EINTR)
			continue;
		if (r != 0 || info.si_pid == pid)
			break;
		long anon = anon_kib(pid);
		if (anon > peak_anon_kib)
			peak_anon_kib = anon;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	double elapsed = (double)(kv_now_ns() - start) / 1e9;
	struct bench_procio io;
	bench_procio_read(pid, &io);

	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "kvfs-bench measure: wait4: %s\n", strerror(errno));
			return 1;
		}
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

	FILE *out = stderr;
	if (out_path) {
		out = fopen(out_path, "w");
		if (!out) {
			fprintf(stderr, "kvfs-bench measure: cannot write %s: %s\n", out_path,
				strerror(errno));
			return code ? code : 1;
		}
	}
	if (!io.valid)
		fprintf(stderr, "kvfs-bench measure: /proc/%d/io was not readable\n", (int)pid);
	fprintf(out,
		"measure: status=%d elapsed_s=%.3f user_s=%.3f sys_s=%.3f maxrss_kib=%ld "
		"peak_anon_kib=%ld wchar=%llu rchar=%llu write_bytes=%llu read_bytes=%llu "
		"cancelled_write_bytes=%llu\n",
		code, elapsed, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss,
		peak_anon_kib, (unsigned long long)io.wchar, (unsigned long long)io.rchar,
		(unsigned long long)io.write_bytes, (unsigned long long)io.read_bytes,
		(unsigned long long)io.cancelled_write_bytes);
	if (out != stderr)
		fclose(out);
	return code;
}
