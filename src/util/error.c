/*
 * error.c - descriptions of kvfs error codes (see error.h).
 */
#include "util/error.h"

#include <string.h>

const char *kv_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case KV_ECORRUPT: return "corrupt data";
	case KV_ENOTFOUND: return "not found";
	case KV_ETOOBIG: return "length above its limit";
	case KV_EQUORUM: return "quorum not met";
	case KV_ETIMEDOUT: return "timed out";
	case KV_ECLOSED: return "closed";
	case KV_EINVAL: return "invalid argument or message";
	case KV_EVERSION: return "unsupported format or protocol version";
	case KV_ESIBLINGS: return "too many siblings";
	case KV_EBUSY: return "locked by another process";
	case KV_EEND: return "end of range";
	default: break;
	}
	if (err < 0 && err > KV_EBASE)
		return strerror(-err);
	return "unknown error";
}
