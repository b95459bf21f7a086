/*
 * fuzz_siblings.c - libFuzzer target for the sibling set and context
 * decoders (src/version; format: doc/versions.md).
 *
 * Any input must be rejected cleanly or decode to a valid set whose encoding
 * is exactly the input (the encoding is canonical), which decodes back to an
 * equal set; join with itself must change nothing. Seed corpus:
 * tests/fuzz/corpus/siblings/ (regenerate with
 * KV_SEED=1 KV_DVV_WRITE_CORPUS=DIR build/tests/unit/test_dvv).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same_bytes(const struct kv_buf *enc, const uint8_t *data, size_t size)
{
	if (enc->n != size || (size && memcmp(enc->p, data, size) != 0))
		abort();
}

static void fuzz_set(struct kv_slice in)
{
	struct kv_dvv s = KV_DVV_INIT, back = KV_DVV_INIT;
	struct kv_buf enc = KV_BUF_INIT;
	const struct kv_version **shown = NULL;

	int hrc = kv_dvv_decode_heads(in, &back);
	if (kv_dvv_decode(in, &s) != 0) {
		if (hrc == 0)
			abort(); /* heads accept only what the full decode accepts */
		goto out;
	}
	if (hrc != 0 || back.n != s.n)
		abort();
	for (size_t i = 0; i < back.n; i++)
		if (back.v[i].body.n != 0 || back.v[i].meta.n != s.v[i].meta.n ||
		    kv_dot_cmp(back.v[i].dot, s.v[i].dot) != 0)
			abort();
	kv_dvv_release(&back);
	if (kv_dvv_encode(&s, &enc) != 0)
		abort();
	check_same_bytes(&enc, in.p, in.n);
	if (kv_dvv_decode(kv_buf_slice(&enc), &back) != 0 || !kv_dvv_equal(&s, &back))
		abort();
	if (kv_dvv_join(&back, &s) != 0 || !kv_dvv_equal(&s, &back))
		abort();
	for (size_t i = 0; i < s.n; i++)
		if (!kv_ctx_covers(&s.ctx, s.v[i].dot))
			abort();
	shown = calloc(s.n + 1, sizeof *shown);
	if (shown && kv_dvv_display(&s, 0, shown) > s.n)
		abort();
out:
	free(shown);
	kv_buf_release(&enc);
	kv_dvv_release(&back);
	kv_dvv_release(&s);
}

static void fuzz_ctx(struct kv_slice in)
{
	struct kv_ctx c = KV_CTX_INIT;
	struct kv_buf enc = KV_BUF_INIT;
	if (kv_ctx_decode(in, &c) == 0) {
		if (kv_ctx_encode(&c, &enc) != 0)
			abort();
		check_same_bytes(&enc, in.p, in.n);
	}
	kv_buf_release(&enc);
	kv_ctx_release(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv_slice in = kv_slice_make(data, size);
	fuzz_set(in);
	/* A set's encoding without its format byte starts with a context. */
	if (size > 0)
		fuzz_ctx(kv_slice_make(data + 1, size - 1));
	return 0;
}
