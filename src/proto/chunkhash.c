/*
 * chunkhash.c - chunk names: SHA-256, and BLAKE2b-256 for chunks stored
 * before it (see chunkhash.h).
 */
#include "proto/chunkhash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

int kv_chunk_hash(const void *p, size_t n, uint8_t out[KV_CHUNK_HASH_LEN])
{
	static const uint8_t empty[1];
	unsigned int len = 0;
	if (EVP_Digest(n ? p : empty, n, out, &len, EVP_sha256(), NULL) != 1 ||
	    len != KV_CHUNK_HASH_LEN)
		return -ENOMEM; /* EVP fails only when it cannot allocate its context */
	return 0;
}

int kv_chunk_hash_check(const uint8_t hash[KV_CHUNK_HASH_LEN], const void *p, size_t n)
{
	static const uint8_t empty[1];
	uint8_t got[KV_CHUNK_HASH_LEN];
	int rc = kv_chunk_hash(p, n, got);
	if (rc < 0)
		return rc;
	if (memcmp(got, hash, sizeof got) == 0)
		return 1;
	/* sodium_init() is not needed for hashing: without it the portable
	 * BLAKE2b serves, with the same result. */
	crypto_generichash(got, sizeof got, n ? p : empty, n, NULL, 0);
	return memcmp(got, hash, sizeof got) == 0;
}
