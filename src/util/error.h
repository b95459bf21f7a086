/*
 * error.h - kvfs error codes.
 *
 * Functions return 0 (or a count) on success and a negative number on
 * failure: either -errno or one of the KV_E* codes below, which live in their
 * own range so they never collide with errno values.
 */
#ifndef KV_UTIL_ERROR_H
#define KV_UTIL_ERROR_H

enum {
	KV_EBASE = -10000,
	KV_ECORRUPT = KV_EBASE,    /* bytes on disk or on the wire fail a check */
	KV_ENOTFOUND = -10001,     /* no such key */
	KV_ETOOBIG = -10002,       /* a length above its limit */
	KV_EQUORUM = -10003,       /* fewer replicas answered than required */
	KV_ETIMEDOUT = -10004,     /* a peer or an operation ran out of time */
	KV_ECLOSED = -10005,       /* the object was closed or is shutting down */
	KV_EINVAL = -10006,        /* a malformed argument or message */
	KV_EVERSION = -10007,      /* a format or protocol version we do not speak */
	KV_ESIBLINGS = -10008,     /* too many live siblings for one key */
	KV_EBUSY = -10009,         /* locked by another process */
	KV_EEND = -10010,          /* end of the range */
};

/* A static description of @err (a KV_E* code or a negative errno). */
const char *kv_strerror(int err);

#endif
