/*
 * test_auth.c - the handshake MACs and secret files (src/proto/auth.h,
 * doc/protocol.md §4.6).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/auth.h"
#include "util/error.h"

static void make_handshake(struct kv_msg_hello *h, struct kv_msg_challenge *c)
{
	memset(h, 0, sizeof(*h));
	memset(c, 0, sizeof(*c));
	h->min_version = 1;
	h->max_version = 1;
	h->role = KV_MSG_ROLE_NODE;
	h->node_id = kv_slice_str("2");
	h->cluster = kv_slice_str("kvfs");
	kv_auth_nonce(h->nonce);
	c->version = 1;
	c->node_id = kv_slice_str("1");
	kv_auth_nonce(c->nonce);
}

static void test_auth__both_sides_agree_with_one_secret(void **state)
{
	(void)state;
	struct kv_auth_secret s;
	assert_int_equal(kv_auth_secret_set(&s, kv_slice_str("sesame")), 0);
	struct kv_msg_hello h;
	struct kv_msg_challenge c;
	make_handshake(&h, &c);
	uint8_t mac_s[KV_MSG_MAC_LEN], mac_c[KV_MSG_MAC_LEN];
	assert_int_equal(kv_auth_mac(&s, true, &h, &c, mac_s), 0);
	assert_int_equal(kv_auth_mac(&s, false, &h, &c, mac_c), 0);
	/* distinct labels: a reflected MAC is not the other side's */
	assert_memory_not_equal(mac_s, mac_c, KV_MSG_MAC_LEN);
	assert_int_equal(kv_auth_verify(&s, true, &h, &c, mac_s), 0);
	assert_int_equal(kv_auth_verify(&s, false, &h, &c, mac_c), 0);
	assert_int_equal(kv_auth_verify(&s, false, &h, &c, mac_s), KV_EINVAL);
	kv_auth_secret_release(&s);
}

static void test_auth__wrong_secret_or_changed_transcript_fails(void **state)
{
	(void)state;
	struct kv_auth_secret s, t;
	assert_int_equal(kv_auth_secret_set(&s, kv_slice_str("sesame")), 0);
	assert_int_equal(kv_auth_secret_set(&t, kv_slice_str("sesamf")), 0);
	struct kv_msg_hello h;
	struct kv_msg_challenge c;
	make_handshake(&h, &c);
	uint8_t mac[KV_MSG_MAC_LEN];
	assert_int_equal(kv_auth_mac(&s, true, &h, &c, mac), 0);
	assert_int_equal(kv_auth_verify(&t, true, &h, &c, mac), KV_EINVAL);
	h.cluster = kv_slice_str("other"); /* a relay into another cluster */
	assert_int_equal(kv_auth_verify(&s, true, &h, &c, mac), KV_EINVAL);
	h.cluster = kv_slice_str("kvfs");
	c.nonce[0] ^= 1; /* a replay against a fresh nonce */
	assert_int_equal(kv_auth_verify(&s, true, &h, &c, mac), KV_EINVAL);
}

static void test_auth__empty_secret_still_macs(void **state)
{
	(void)state;
	struct kv_auth_secret s = { .len = 0 };
	struct kv_msg_hello h;
	struct kv_msg_challenge c;
	make_handshake(&h, &c);
	uint8_t mac[KV_MSG_MAC_LEN];
	assert_int_equal(kv_auth_mac(&s, false, &h, &c, mac), 0);
	assert_int_equal(kv_auth_verify(&s, false, &h, &c, mac), 0);
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void test_auth__secret_file_trailing_newline_and_limits(void **state)
{
	(void)state;
	char path[] = "/tmp/kvfs-test-auth-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct kv_auth_secret s;

	write_file(path, "abc\n", 4);
	assert_int_equal(kv_auth_secret_load(path, &s), 0);
	assert_int_equal(s.len, 3);
	assert_memory_equal(s.bytes, "abc", 3);

	write_file(path, "", 0);
	assert_int_equal(kv_auth_secret_load(path, &s), KV_EINVAL);
	assert_int_equal(s.len, 0);

	char *big = malloc(KV_AUTH_SECRET_MAX + 10);
	assert_non_null(big);
	memset(big, 'x', KV_AUTH_SECRET_MAX + 10);
	write_file(path, big, KV_AUTH_SECRET_MAX + 10);
	assert_int_equal(kv_auth_secret_load(path, &s), KV_ETOOBIG);
	write_file(path, big, KV_AUTH_SECRET_MAX);
	assert_int_equal(kv_auth_secret_load(path, &s), 0);
	assert_int_equal(s.len, KV_AUTH_SECRET_MAX);
	free(big);

	unlink(path);
	assert_true(kv_auth_secret_load(path, &s) < 0);
	assert_int_equal(s.len, 0);
}

int main(void)
{
	if (kv_auth_init() != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth__both_sides_agree_with_one_secret),
		cmocka_unit_test(test_auth__wrong_secret_or_changed_transcript_fails),
		cmocka_unit_test(test_auth__empty_secret_still_macs),
		cmocka_unit_test(test_auth__secret_file_trailing_newline_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
