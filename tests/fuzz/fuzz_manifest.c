/*
 * fuzz_manifest.c - libFuzzer target for the manifest decoder.
 *
 * Format: doc/storage-format.md#manifest
 *
 * Decodes the input, then a copy whose body length and checksum are made
 * right (so the fuzzer reaches the body's rules). Whatever decodes must
 * encode (encode and decode apply the same rules), and the encoding must
 * decode to a manifest that encodes to the very same bytes. Seed corpus: tests/fuzz/corpus/manifest/
 * (regenerate with KV_CORPUS_OUT=DIR build/tests/unit/test_manifest).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/manifest.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Damage is logged; thousands of inputs a second would drown the output. */
static void quiet_sink(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

static void check(const uint8_t *data, size_t size)
{
	struct kv_manifest m, m2;
	struct kv_buf a = KV_BUF_INIT, b = KV_BUF_INIT;
	int rc = kv_manifest_decode(kv_slice_make(data, size), &m);
	if (rc == KV_ECORRUPT || rc == KV_EVERSION) {
		if (m.ntables || m.nprops || m.tables || m.props)
			abort(); /* left empty on failure */
		return;
	}
	if (rc != 0)
		abort();
	if (kv_manifest_encode(&m, &a) || kv_manifest_decode(kv_buf_slice(&a), &m2) ||
	    kv_manifest_encode(&m2, &b) || !kv_slice_eq(kv_buf_slice(&a), kv_buf_slice(&b)))
		abort();
	kv_manifest_release(&m);
	kv_manifest_release(&m2);
	kv_buf_release(&a);
	kv_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		kv_log_set_sink(quiet_sink, NULL);
		quiet = true;
	}
	check(data, size);
	if (size < 20 || size > KV_MANIFEST_MAX_BYTES)
		return 0;
	uint8_t *sealed = malloc(size);
	if (!sealed)
		abort();
	memcpy(sealed, data, size);
	kv_put_le32(sealed + 12, (uint32_t)(size - 20));
	kv_put_le32(sealed + size - 4, kv_checksum32(sealed, size - 4));
	check(sealed, size);
	free(sealed);
	return 0;
}
