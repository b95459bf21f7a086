/*
 * banned.h - functions that invite buffer overflows, made into compile errors.
 *
 * Included into every translation unit by meson.build (-include). Use
 * snprintf, memcpy with an explicit length, or the kv_buf helpers instead.
 * Same idea as git's banned.h.
 */
#ifndef KV_BANNED_H
#define KV_BANNED_H

/* The real declarations come first, so the macros below only catch uses. */
#include <stdio.h>
#include <string.h>

#define KV_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) KV_BANNED(strcpy)
#undef strcat
#define strcat(x, y) KV_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) KV_BANNED(strncpy)
#undef sprintf
#define sprintf(...) KV_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) KV_BANNED(vsprintf)
#undef gets
#define gets(x) KV_BANNED(gets)
#undef strtok
#define strtok(x, y) KV_BANNED(strtok)

#endif
