/*
 * tmpdir_fx.h - a fresh directory on the real file system for the unit
 * tests that need one (the POSIX VFS, the engine on disk), under $TMPDIR or
 * /tmp.
 */
#ifndef KV_TEST_TMPDIR_FX_H
#define KV_TEST_TMPDIR_FX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * Makes $TMPDIR/<prefix>-XXXXXX (or /tmp/...) and writes its path to @dir
 * (@n bytes). False when the path would not fit (a long $TMPDIR) or
 * mkdtemp() fails.
 */
static inline bool kv_test_mkdtemp(char *dir, size_t n, const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	int len = snprintf(dir, n, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	return len > 0 && (size_t)len < n && mkdtemp(dir) != NULL;
}

#endif
