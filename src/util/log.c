/*
 * log.c - leveled logging (see log.h).
 */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = -1; /* guarded by atomics; -1 = not read yet */
static kv_log_sink_fn log_sink;   /* guarded by log_lock */
static void *log_sink_arg;        /* guarded by log_lock */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

enum kv_log_level kv_log_get_level(void)
{
	int lvl = atomic_load(&log_level);
	if (lvl < 0) {
		const char *env = getenv("KV_LOG_LEVEL");
		lvl = env ? atoi(env) : KV_LOG_WARN;
		if (lvl < KV_LOG_ERROR)
			lvl = KV_LOG_ERROR;
		if (lvl > KV_LOG_DEBUG)
			lvl = KV_LOG_DEBUG;
		atomic_store(&log_level, lvl);
	}
	return (enum kv_log_level)lvl;
}

void kv_log_set_level(enum kv_log_level level)
{
	atomic_store(&log_level, (int)level);
}

void kv_log_set_sink(kv_log_sink_fn sink, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_sink_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

void kv_log(enum kv_log_level level, const char *fmt, ...)
{
	if ((int)level > (int)kv_log_get_level())
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	if (log_sink)
		log_sink(level, msg, log_sink_arg);
	else
		fprintf(stderr, "kvfs %s: %s\n", level_names[level], msg);
	pthread_mutex_unlock(&log_lock);
}
