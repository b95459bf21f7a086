/*
 * auth.c - cluster secret files and handshake MACs with libsodium
 * (doc/protocol.md §4.6).
 */
#include "proto/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "util/error.h"

int kv_auth_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

int kv_auth_secret_set(struct kv_auth_secret *out, struct kv_slice s)
{
	out->len = 0;
	if (s.n > KV_AUTH_SECRET_MAX)
		return KV_ETOOBIG;
	if (s.n > 0)
		memcpy(out->bytes, s.p, s.n);
	out->len = s.n;
	return 0;
}

int kv_auth_secret_load(const char *path, struct kv_auth_secret *out)
{
	uint8_t buf[KV_AUTH_SECRET_MAX + 2];
	size_t have = 0;
	int rc = 0;

	out->len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t got = read(fd, buf + have, sizeof(buf) - have);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (got == 0)
			break;
		have += (size_t)got;
		if (have == sizeof(buf))
			break;
	}
	if (have > 0 && buf[have - 1] == '\n')
		have--;
	if (have > KV_AUTH_SECRET_MAX) {
		rc = KV_ETOOBIG;
		goto out;
	}
	if (have == 0) {
		rc = KV_EINVAL;
		goto out;
	}
	memcpy(out->bytes, buf, have);
	out->len = have;
out:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

void kv_auth_secret_release(struct kv_auth_secret *s)
{
	sodium_memzero(s->bytes, sizeof(s->bytes));
	s->len = 0;
}

void kv_auth_nonce(uint8_t nonce[KV_MSG_NONCE_LEN])
{
	randombytes_buf(nonce, KV_MSG_NONCE_LEN);
}

int kv_auth_mac(const struct kv_auth_secret *secret, bool server,
		const struct kv_msg_hello *hello, const struct kv_msg_challenge *challenge,
		uint8_t mac[KV_MSG_MAC_LEN])
{
	struct kv_buf t = KV_BUF_INIT;
	int rc = kv_msg_auth_transcript(&t, server, hello, challenge);
	if (rc < 0)
		return rc;
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, secret->bytes, secret->len);
	crypto_auth_hmacsha256_update(&st, t.p, t.n);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
	kv_buf_release(&t);
	return 0;
}

int kv_auth_verify(const struct kv_auth_secret *secret, bool server,
		   const struct kv_msg_hello *hello, const struct kv_msg_challenge *challenge,
		   const uint8_t mac[KV_MSG_MAC_LEN])
{
	uint8_t want[KV_MSG_MAC_LEN];
	int rc = kv_auth_mac(secret, server, hello, challenge, want);
	if (rc < 0)
		return rc;
	rc = sodium_memcmp(want, mac, KV_MSG_MAC_LEN) == 0 ? 0 : KV_EINVAL;
	sodium_memzero(want, sizeof(want));
	return rc;
}
