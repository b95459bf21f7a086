/*
 * time.h - clocks for code that is allowed to read them (not the node core,
 * which gets time as an input; DESIGN §8).
 */
#ifndef KV_UTIL_TIME_H
#define KV_UTIL_TIME_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t kv_now_ns(void);
/* CLOCK_REALTIME in nanoseconds since the epoch. */
uint64_t kv_wall_ns(void);

#endif
