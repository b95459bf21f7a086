/*
 * bench_hiccup.c - `kvfs-bench hiccup`: how long this machine stops running
 * a thread that only wants to wake up every millisecond.
 *
 * One thread per online CPU, each pinned to its CPU and (with --realtime)
 * scheduled SCHED_FIFO at the lowest real-time priority, so that no process
 * of ours can delay it: it sleeps --interval-us, again and again, and counts
 * by how much each wake-up came late. A gap of many milliseconds on such a
 * thread means that the CPU itself did not run, which in a virtual machine
 * is the host taking the vCPU away (steal), or a long non-preemptible
 * stretch in the kernel. tools/bench-cluster runs it during each open-loop
 * measurement, so that a p99 can be read beside the stalls the machine had
 * meanwhile (doc/benchmarks.md, "The seventh session").
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/time.h"

#define HICCUP_MAX_CPUS 256

struct meter {
	pthread_t thread;
	int cpu;
	uint64_t interval_ns, end_ns;
	bool realtime, rt_ok;
	uint64_t wakeups, over1, over10, over50; /* gaps > 1, 10, 50 ms */
	uint64_t max_ns, lost10_ns;              /* longest gap; time in gaps > 10 ms */
};

static atomic_bool g_stop;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&g_stop, true);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench hiccup [--duration=SECONDS] [--interval-us=US] [--realtime]\n"
		"  --duration     how long to measure, fractions allowed [10]; SIGINT or\n"
		"                 SIGTERM ends it early, with the result so far\n"
		"  --interval-us  each thread's sleep [1000]\n"
		"  --realtime     SCHED_FIFO priority 1 (root), so that no ordinary process\n"
		"                 delays the meter: what remains is the CPU not running\n"
		"Prints one line: gaps (wake-ups later than asked) above 1, 10 and 50 ms,\n"
		"the longest and on which CPU, and the time lost in gaps above 10 ms.\n");
}

/* Says what was wrong with a flag; returns the exit status 2. */
static int bad_flag(const char *flag, const char *value)
{
	if (value)
		fprintf(stderr, "kvfs-bench hiccup: %s: bad value '%s' (see --help)\n", flag, value);
	else
		fprintf(stderr, "kvfs-bench hiccup: unknown flag '%s' (see --help)\n", flag);
	return 2;
}

static void *meter_main(void *arg)
{
	struct meter *m = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(m->cpu, &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	if (m->realtime) {
		struct sched_param sp = { .sched_priority = 1 };
		m->rt_ok = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	}
	struct timespec ts = { (time_t)(m->interval_ns / 1000000000u),
			       (long)(m->interval_ns % 1000000000u) };
	while (!atomic_load(&g_stop)) {
		uint64_t t0 = kv_now_ns();
		if (t0 >= m->end_ns)
			break;
		(void)nanosleep(&ts, NULL); /* EINTR: the gap is measured anyway */
		uint64_t slept = kv_now_ns() - t0;
		uint64_t gap = slept > m->interval_ns ? slept - m->interval_ns : 0;
		m->wakeups++;
		if (gap > m->max_ns)
			m->max_ns = gap;
		if (gap > 1000000u)
			m->over1++;
		if (gap > 10000000u) {
			m->over10++;
			m->lost10_ns += gap;
		}
		if (gap > 50000000u)
			m->over50++;
	}
	return NULL;
}

int bench_hiccup_main(int argc, char **argv)
{
	double duration = 10;
	long interval_us = 1000;
	bool realtime = false;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v;
		char *end = NULL;
		errno = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--realtime")) {
			realtime = true;
		} else if ((v = bench_flag_value("--duration", argc, argv, &i))) {
			duration = strtod(v, &end);
			if (errno || end == v || *end || !(duration >= 0 && duration <= 86400))
				return bad_flag("--duration", v);
		} else if ((v = bench_flag_value("--interval-us", argc, argv, &i))) {
			interval_us = strtol(v, &end, 10);
			if (errno || end == v || *end || interval_us < 10 || interval_us > 1000000)
				return bad_flag("--interval-us", v);
		} else {
			return bad_flag(a, NULL);
		}
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > HICCUP_MAX_CPUS)
		ncpu = HICCUP_MAX_CPUS;
	struct meter *m = calloc((size_t)ncpu, sizeof *m);
	if (!m) {
		fprintf(stderr, "kvfs-bench hiccup: out of memory\n");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	uint64_t start = kv_now_ns();
	uint64_t end = start + (uint64_t)(duration * 1e9);
	long started = 0;
	for (long c = 0; c < ncpu; c++) {
		m[c].cpu = (int)c;
		m[c].interval_ns = (uint64_t)interval_us * 1000u;
		m[c].end_ns = end;
		m[c].realtime = realtime;
		if (pthread_create(&m[c].thread, NULL, meter_main, &m[c]) != 0)
			break;
		started++;
	}
	struct meter t = { .cpu = -1 };
	int max_cpu = -1;
	bool rt_all = started > 0;
	for (long c = 0; c < started; c++) {
		pthread_join(m[c].thread, NULL);
		t.wakeups += m[c].wakeups;
		t.over1 += m[c].over1;
		t.over10 += m[c].over10;
		t.over50 += m[c].over50;
		t.lost10_ns += m[c].lost10_ns;
		if (m[c].max_ns >= t.max_ns) {
			t.max_ns = m[c].max_ns;
			max_cpu = m[c].cpu;
		}
		rt_all = rt_all && m[c].rt_ok;
	}
	free(m);
	if (started == 0) {
		fprintf(stderr, "kvfs-bench hiccup: cannot start a thread\n");
		return 1;
	}
	if (realtime && !rt_all)
		fprintf(stderr, "kvfs-bench hiccup: SCHED_FIFO refused (not root?): measured at "
				"normal priority, where our own processes can delay the meter\n");
	double secs = (double)(kv_now_ns() - start) / 1e9;
	printf("%-12s : %.1f s, %ld CPUs, %ld-us sleeps (%s), %" PRIu64 " wake-ups: gaps > 1 ms %" PRIu64
	       ", > 10 ms %" PRIu64 ", > 50 ms %" PRIu64 "; max %.1f ms (cpu %d); %.1f ms in gaps > 10 ms\n",
	       "hiccup", secs, started, interval_us, realtime && rt_all ? "SCHED_FIFO" : "normal priority",
	       t.wakeups, t.over1, t.over10, t.over50, (double)t.max_ns / 1e6, max_cpu,
	       (double)t.lost10_ns / 1e6);
	return 0;
}
