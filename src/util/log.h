/*
 * log.h - leveled logging for library code.
 *
 * Library code never prints: it logs here. The default sink writes one line
 * per message to stderr; a program may install its own sink. Thread-safe.
 */
#ifndef KV_UTIL_LOG_H
#define KV_UTIL_LOG_H

enum kv_log_level {
	KV_LOG_ERROR = 0,
	KV_LOG_WARN = 1,
	KV_LOG_INFO = 2,
	KV_LOG_DEBUG = 3,
};

typedef void (*kv_log_sink_fn)(enum kv_log_level level, const char *msg, void *arg);

/* Messages above @level are dropped. Default: KV_LOG_WARN, or $KV_LOG_LEVEL. */
void kv_log_set_level(enum kv_log_level level);
enum kv_log_level kv_log_get_level(void);
/* Installs @sink (NULL restores stderr). */
void kv_log_set_sink(kv_log_sink_fn sink, void *arg);

void kv_log(enum kv_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define kv_error(...) kv_log(KV_LOG_ERROR, __VA_ARGS__)
#define kv_warn(...) kv_log(KV_LOG_WARN, __VA_ARGS__)
#define kv_info(...) kv_log(KV_LOG_INFO, __VA_ARGS__)
#define kv_debug(...) kv_log(KV_LOG_DEBUG, __VA_ARGS__)

#endif
