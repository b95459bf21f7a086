/*
 * time.c - clock readings (see time.h).
 */
#include "util/time.h"

#include <time.h>

static uint64_t read_clock(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t kv_now_ns(void)
{
	return read_clock(CLOCK_MONOTONIC);
}

uint64_t kv_wall_ns(void)
{
	return read_clock(CLOCK_REALTIME);
}
