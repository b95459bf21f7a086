/*
 * auth.h - the cluster secret and the handshake MACs (doc/protocol.md §4,
 * §4.6; DESIGN §9 "Security").
 *
 * Both sides of a connection prove that they hold the cluster secret with
 * HMAC-SHA256 over kv_msg_auth_transcript(), computed with libsodium. The
 * node's driver (node/) and the client library (src/client) share this.
 */
#ifndef KV_PROTO_AUTH_H
#define KV_PROTO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/msg.h"
#include "util/slice.h"

/* The largest secret a secret file may hold. */
#define KV_AUTH_SECRET_MAX 1024

/*
 * A cluster secret. Caller-owned, plain bytes: kv_auth_secret_release()
 * wipes them. An empty secret (len 0) is allowed — a cluster without a
 * secret, on loopback only (kvfsd refuses to listen elsewhere without one).
 */
struct kv_auth_secret {
	uint8_t bytes[KV_AUTH_SECRET_MAX];
	size_t len;
};

/* Must be called once before any other kv_auth_ call; thread-safe. 0 or -EIO. */
int kv_auth_init(void);

/*
 * Reads a secret file: its bytes, less one trailing newline. Returns 0;
 * -errno when the file cannot be read; KV_ETOOBIG above KV_AUTH_SECRET_MAX;
 * KV_EINVAL for an empty file. On failure *out is empty (len 0).
 */
int kv_auth_secret_load(const char *path, struct kv_auth_secret *out);

/* Sets @out to the bytes of @s (at most KV_AUTH_SECRET_MAX; else KV_ETOOBIG). */
int kv_auth_secret_set(struct kv_auth_secret *out, struct kv_slice s);

/* Wipes the secret. */
void kv_auth_secret_release(struct kv_auth_secret *s);

/* Fills @nonce with KV_MSG_NONCE_LEN random bytes (libsodium's CSPRNG). */
void kv_auth_nonce(uint8_t nonce[KV_MSG_NONCE_LEN]);

/*
 * Computes the MAC one side sends: HMAC-SHA256(@secret, transcript(@server,
 * @hello, @challenge)) into @mac. Returns 0 or -ENOMEM.
 */
int kv_auth_mac(const struct kv_auth_secret *secret, bool server,
		const struct kv_msg_hello *hello, const struct kv_msg_challenge *challenge,
		uint8_t mac[KV_MSG_MAC_LEN]);

/*
 * Checks a received MAC in constant time. Returns 0 when it is the one the
 * other side (@server: the MAC is the server's) should have sent, KV_EINVAL
 * when not ("bad cluster secret"), -ENOMEM.
 */
int kv_auth_verify(const struct kv_auth_secret *secret, bool server,
		   const struct kv_msg_hello *hello, const struct kv_msg_challenge *challenge,
		   const uint8_t mac[KV_MSG_MAC_LEN]);

#endif
