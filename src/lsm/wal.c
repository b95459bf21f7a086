/*
 * wal.c - the commit log: block-structured, checksummed records that carry
 * their log number (see wal.h).
 *
 * Format: doc/storage-format.md#wal
 *
 * Writer: one record = one buffer formatted here + one pwrite. Reader: reads
 * whole 32 KiB blocks, checks every fragment, reassembles records, and
 * classifies whatever it cannot use as a bad region (good records follow) or
 * a torn tail (nothing good follows).
 */
#include "lsm/wal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"

/* Header field offsets (doc: "Physical record"). */
#define HDR_CHECKSUM 0
#define HDR_LENGTH 4
#define HDR_TYPE 6
#define HDR_LOGNUM 7
/* The checksum covers type, log number and payload: bytes [6, 11 + length). */
#define CHECKSUMMED_HEADER (KV_WAL_HEADER - HDR_TYPE)

/* The writer drops a formatting buffer that grew past this after a record. */
#define WRITER_KEEP_BYTES (1u << 20)

/* ---- Writer -------------------------------------------------------------- */

struct kv_wal_writer {
	struct kv_file *file;   /* borrowed */
	uint32_t log_number;    /* low 32 bits, as stored in headers */
	uint64_t start_offset;
	uint64_t offset;        /* where the next record goes */
	uint64_t synced_offset; /* everything before this is durable */
	size_t block_offset;    /* offset % KV_WAL_BLOCK */
	uint64_t ready;         /* the file holds bytes [0, ready): kv_wal_writer_ahead */
	uint32_t ahead;         /* zeros are written this far ahead; 0: off */
	int error;              /* sticky: 0 or the failure */
	struct kv_buf buf;      /* reused for every record */
};

int kv_wal_writer_new(struct kv_file *f, uint64_t log_number, uint64_t start_offset,
		      struct kv_wal_writer **out)
{
	struct kv_wal_writer *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->file = f;
	w->log_number = (uint32_t)log_number;
	w->start_offset = start_offset;
	w->offset = start_offset;
	w->synced_offset = start_offset;
	w->block_offset = (size_t)(start_offset % KV_WAL_BLOCK);
	kv_buf_init(&w->buf);
	*out = w;
	return 0;
}

void kv_wal_writer_ahead(struct kv_wal_writer *w, uint64_t file_size, uint32_t step)
{
	w->ready = file_size;
	w->ahead = step;
}

/*
 * Before a record that ends at @end: zeros from the end of what the file
 * holds to the next multiple of w->ahead past @end (kv_wal_writer_ahead).
 */
static void write_ahead(struct kv_wal_writer *w, uint64_t end)
{
	static const uint8_t zeros[64u << 10];
	if (!w->ahead || end <= w->ready)
		return;
	uint64_t from = w->ready > w->offset ? w->ready : w->offset;
	uint64_t to = (end / w->ahead + 1) * w->ahead;
	while (from < to) {
		size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
		int err = kv_file_pwrite(w->file, zeros, n, from);
		if (err) {
			/* The record itself may still fit: append from now on. */
			kv_warn("wal %" PRIu32 ": writing ahead at %" PRIu64 " failed: %s",
				w->log_number, from, kv_strerror(err));
			w->ahead = 0;
			return;
		}
		from += n;
	}
	w->ready = to;
}

void kv_wal_writer_free(struct kv_wal_writer *w)
{
	if (!w)
		return;
	kv_buf_release(&w->buf);
	free(w);
}

/*
 * Upper bound of the bytes a record of @n payload bytes takes when it starts
 * anywhere in a block: a padding trailer, then one header per fragment.
 */
static size_t record_bound(size_t n)
{
	size_t per_block = KV_WAL_BLOCK - KV_WAL_HEADER;
	return KV_WAL_HEADER + n + (n / per_block + 2) * KV_WAL_HEADER;
}

/* Cursor over the caller's slices, copying them out in order. */
struct gather {
	const struct kv_slice *parts;
	size_t nparts;
	size_t part;
	size_t pos;
};

static void gather_copy(struct gather *g, uint8_t *dst, size_t n)
{
	while (n > 0) {
		assert(g->part < g->nparts);
		const struct kv_slice *s = &g->parts[g->part];
		size_t take = s->n - g->pos;
		if (take > n)
			take = n;
		if (take)
			memcpy(dst, s->p + g->pos, take);
		dst += take;
		n -= take;
		g->pos += take;
		if (g->pos == s->n) {
			g->part++;
			g->pos = 0;
		}
	}
}

/* Appends a record of @parts, or (@finish) the END fragment. */
static int add(struct kv_wal_writer *w, const struct kv_slice *parts, size_t nparts, bool finish)
{
	if (w->error)
		return w->error;
	size_t total = 0;
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].n > KV_WAL_MAX_RECORD - total)
			return KV_ETOOBIG;
		total += parts[i].n;
	}

	kv_buf_reset(&w->buf);
	int err = kv_buf_reserve(&w->buf, record_bound(total));
	if (err)
		return err; /* nothing written: the writer stays usable */

	struct gather g = { parts, nparts, 0, 0 };
	uint8_t *out = w->buf.p;
	size_t block_offset = w->block_offset;
	size_t left = total;
	bool begin = true;
	for (;;) {
		size_t avail = KV_WAL_BLOCK - block_offset;
		if (avail < KV_WAL_HEADER) {
			/* Too little room for a header: pad the block's trailer. */
			memset(out, 0, avail);
			out += avail;
			block_offset = 0;
			continue;
		}
		size_t frag = avail - KV_WAL_HEADER;
		if (frag > left)
			frag = left;
		bool end = frag == left;
		uint8_t type = begin ? (end ? KV_WAL_FULL : KV_WAL_FIRST)
				     : (end ? KV_WAL_LAST : KV_WAL_MIDDLE);
		if (finish)
			type = KV_WAL_END; /* (no payload: one fragment) */
		kv_put_le16(out + HDR_LENGTH, (uint16_t)frag);
		out[HDR_TYPE] = type;
		kv_put_le32(out + HDR_LOGNUM, w->log_number);
		gather_copy(&g, out + KV_WAL_HEADER, frag);
		kv_put_le32(out + HDR_CHECKSUM,
			    kv_checksum32(out + HDR_TYPE, CHECKSUMMED_HEADER + frag));
		out += KV_WAL_HEADER + frag;
		block_offset += KV_WAL_HEADER + frag;
		left -= frag;
		begin = false;
		if (end)
			break; /* (an empty record still gets its FULL fragment) */
	}
	w->buf.n = (size_t)(out - w->buf.p);
	assert(w->buf.n <= w->buf.cap);

	write_ahead(w, w->offset + w->buf.n);
	err = kv_file_pwrite(w->file, w->buf.p, w->buf.n, w->offset);
	if (err) {
		/*
		 * Part of the record may be on disk. Nothing may follow it, so
		 * the writer is done (wal.h: failure is sticky).
		 */
		w->error = err;
		kv_error("wal %" PRIu32 ": write of %zu bytes at %" PRIu64 " failed: %s",
			 w->log_number, w->buf.n, w->offset, kv_strerror(err));
		return err;
	}
	w->offset += w->buf.n;
	w->block_offset = block_offset == KV_WAL_BLOCK ? 0 : block_offset;
	if (w->buf.cap > WRITER_KEEP_BYTES)
		kv_buf_release(&w->buf);
	return 0;
}

int kv_wal_addv(struct kv_wal_writer *w, const struct kv_slice *parts, size_t nparts)
{
	return add(w, parts, nparts, false);
}

int kv_wal_add(struct kv_wal_writer *w, struct kv_slice payload)
{
	return kv_wal_addv(w, &payload, 1);
}

int kv_wal_finish(struct kv_wal_writer *w)
{
	return add(w, NULL, 0, true);
}

int kv_wal_sync(struct kv_wal_writer *w)
{
	if (w->error)
		return w->error;
	if (w->synced_offset == w->offset)
		return 0;
	int err = kv_file_sync(w->file);
	if (err) {
		/* After a failed fsync the kernel may have dropped the pages. */
		w->error = err;
		kv_error("wal %" PRIu32 ": sync failed: %s", w->log_number, kv_strerror(err));
		return err;
	}
	w->synced_offset = w->offset;
	return 0;
}

uint64_t kv_wal_bytes(const struct kv_wal_writer *w)
{
	return w->offset - w->start_offset;
}

uint64_t kv_wal_offset(const struct kv_wal_writer *w)
{
	return w->offset;
}

int kv_wal_error(const struct kv_wal_writer *w)
{
	return w->error;
}

/* ---- Reader -------------------------------------------------------------- */

struct kv_wal_reader {
	struct kv_file *file;  /* borrowed */
	uint32_t log_number;
	uint8_t *block;        /* KV_WAL_BLOCK bytes */
	size_t block_len;      /* valid bytes in block */
	size_t pos;            /* parse position in block */
	uint64_t block_off;    /* file offset of block */
	uint64_t next_off;     /* file offset of the next block to read */
	bool last_block;       /* block is the file's last (short or empty) */
	bool done;             /* the end was reached and classified */
	int error;             /* sticky I/O or version error */

	/* Unusable bytes seen since the last good record (doc: "Reading and recovery"). */
	uint64_t pending_bytes;
	uint64_t pending_start;
	bool pending_corrupt;  /* some of it is damage, not just stale records */
	bool pending_stale;

	struct kv_wal_stats stats;
};

/* What next_fragment() found. */
enum frag_kind {
	FRAG_GOOD,  /* a fragment of this log: type, payload, size */
	FRAG_BAD,   /* damage, already counted as pending */
	FRAG_STALE, /* a sound fragment of another log, counted as pending */
	FRAG_END,   /* end of file */
	FRAG_FINISH, /* this log's END fragment: nothing after it is this log's */
};

struct frag {
	uint8_t type;
	struct kv_slice payload; /* points into the reader's block */
	size_t size;             /* header + payload */
};

int kv_wal_reader_new(struct kv_file *f, uint64_t log_number, struct kv_wal_reader **out)
{
	struct kv_wal_reader *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->block = malloc(KV_WAL_BLOCK);
	if (!r->block) {
		free(r);
		return -ENOMEM;
	}
	r->file = f;
	r->log_number = (uint32_t)log_number;
	*out = r;
	return 0;
}

void kv_wal_reader_free(struct kv_wal_reader *r)
{
	if (!r)
		return;
	free(r->block);
	free(r);
}

void kv_wal_reader_stats(const struct kv_wal_reader *r, struct kv_wal_stats *out)
{
	*out = r->stats;
}

static void pend(struct kv_wal_reader *r, uint64_t off, uint64_t n, bool stale)
{
	if (n == 0)
		return;
	if ((!r->pending_corrupt && !r->pending_stale) || off < r->pending_start)
		r->pending_start = off;
	r->pending_bytes += n;
	if (stale)
		r->pending_stale = true;
	else
		r->pending_corrupt = true;
}

static void pending_clear(struct kv_wal_reader *r)
{
	r->pending_bytes = 0;
	r->pending_corrupt = false;
	r->pending_stale = false;
}

/* A good record follows the pending bytes: they were a bad region. */
static void pending_commit(struct kv_wal_reader *r)
{
	if (!r->pending_corrupt && !r->pending_stale)
		return;
	r->stats.bad_regions++;
	r->stats.bytes_skipped += r->pending_bytes;
	kv_warn("wal %" PRIu32 ": skipped %" PRIu64 " damaged bytes at offset %" PRIu64
		", followed by good records (possible loss)",
		r->log_number, r->pending_bytes, r->pending_start);
	pending_clear(r);
}

/* Nothing good follows the pending bytes: a torn tail or a stale end. */
static void pending_finish(struct kv_wal_reader *r)
{
	if (r->pending_corrupt) {
		r->stats.torn_tail = true;
		r->stats.tail_bytes += r->pending_bytes;
		kv_info("wal %" PRIu32 ": torn tail of %" PRIu64 " bytes at offset %" PRIu64,
			r->log_number, r->pending_bytes, r->pending_start);
	} else if (r->pending_stale) {
		r->stats.stale_bytes += r->pending_bytes;
	}
	pending_clear(r);
}

/* Reads the next block (short only at the end of the file). */
static int read_block(struct kv_wal_reader *r)
{
	size_t got = 0;
	while (got < KV_WAL_BLOCK) {
		ssize_t n = kv_file_pread(r->file, r->block + got, KV_WAL_BLOCK - got,
					  r->next_off + got);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	r->block_off = r->next_off;
	r->next_off += KV_WAL_BLOCK;
	r->block_len = got;
	r->pos = 0;
	r->last_block = got < KV_WAL_BLOCK;
	return 0;
}

/*
 * Finds the next physical record. Every length is checked against the block
 * (and so the file) before any byte of the payload is touched.
 */
static int next_fragment(struct kv_wal_reader *r, struct frag *f)
{
	for (;;) {
		size_t left = r->block_len - r->pos;
		if (left < KV_WAL_HEADER) {
			if (!r->last_block) {
				/* A full block's trailer (padding), or no block yet. */
				int err = read_block(r);
				if (err)
					return err;
				continue;
			}
			/*
			 * The file ends here. Bytes where a header would still fit
			 * in the block are a header cut short; bytes in the
			 * block's trailer zone are padding.
			 */
			if (left > 0 && r->pos + KV_WAL_HEADER <= KV_WAL_BLOCK) {
				pend(r, r->block_off + r->pos, left, false);
				r->pos = r->block_len;
			}
			return FRAG_END;
		}

		const uint8_t *h = r->block + r->pos;
		uint64_t off = r->block_off + r->pos;
		size_t len = kv_get_le16(h + HDR_LENGTH);
		static const uint8_t zero_header[KV_WAL_HEADER];
		if (!memcmp(h, zero_header, KV_WAL_HEADER)) {
			/*
			 * Eleven zero bytes: zeroed space (a spare file written
			 * with zeros), never a header. Like a stale fragment it
			 * ends a log quietly, and is a bad region when good
			 * records follow; the rest of the block is skipped.
			 */
			pend(r, off, left, true);
			r->pos = r->block_len;
			return FRAG_STALE;
		}
		if (len > left - KV_WAL_HEADER ||
		    kv_get_le32(h + HDR_CHECKSUM) !=
			    kv_checksum32(h + HDR_TYPE, CHECKSUMMED_HEADER + len)) {
			/*
			 * A length past the block (or the file), or a checksum
			 * mismatch: nothing in the rest of this block can be
			 * trusted. Resynchronise at the next block.
			 */
			pend(r, off, left, false);
			r->pos = r->block_len;
			return FRAG_BAD;
		}
		size_t size = KV_WAL_HEADER + len;
		r->pos += size;
		if (kv_get_le32(h + HDR_LOGNUM) != r->log_number) {
			/* Sound, but from the log this file held before. */
			pend(r, off, size, true);
			return FRAG_STALE;
		}
		uint8_t type = h[HDR_TYPE];
		if (type == KV_WAL_END)
			return FRAG_FINISH;
		if (type >= KV_WAL_SKIPPABLE) {
			r->stats.skipped_records++;
			continue;
		}
		if (type == KV_WAL_ZERO) {
			pend(r, off, size, false);
			return FRAG_BAD;
		}
		if (type > KV_WAL_LAST)
			return KV_EVERSION;
		f->type = type;
		f->payload = kv_slice_make(h + KV_WAL_HEADER, len);
		f->size = size;
		return FRAG_GOOD;
	}
}

int kv_wal_read(struct kv_wal_reader *r, struct kv_buf *record)
{
	kv_buf_reset(record);
	if (r->error)
		return r->error;
	if (r->done)
		return 0;

	bool in_record = false;
	uint64_t partial_start = 0, partial_bytes = 0;
	int err;
	for (;;) {
		struct frag f = { 0, { NULL, 0 }, 0 };
		int kind = next_fragment(r, &f);
		if (kind < 0) {
			err = kind;
			goto out;
		}
		if (in_record && (kind != FRAG_GOOD || f.type == KV_WAL_FULL ||
				  f.type == KV_WAL_FIRST)) {
			/* The record being assembled never got its LAST. */
			pend(r, partial_start, partial_bytes, false);
			in_record = false;
			kv_buf_reset(record);
		}
		if (kind == FRAG_END) {
			pending_finish(r);
			r->done = true;
			kv_buf_reset(record);
			return 0;
		}
		if (kind == FRAG_FINISH) {
			/* A sound fragment of this log: damage before it was a
			 * bad region; what follows it (a recycled file's old
			 * contents) is not this log's. */
			pending_commit(r);
			r->stats.end_offset = r->block_off + r->pos;
			r->stats.finished = true;
			r->done = true;
			kv_buf_reset(record);
			return 0;
		}
		if (kind != FRAG_GOOD)
			continue;

		uint64_t off = r->block_off + r->pos - f.size;
		switch (f.type) {
		case KV_WAL_FULL:
		case KV_WAL_FIRST:
			in_record = true;
			partial_start = off;
			partial_bytes = 0;
			break;
		case KV_WAL_MIDDLE:
		case KV_WAL_LAST:
			if (!in_record) {
				/* An orphan: its start was lost to damage. */
				pend(r, off, f.size, false);
				continue;
			}
			break;
		default:
			assert(0 && "next_fragment returns known types only");
		}
		if (f.payload.n > KV_WAL_MAX_RECORD - record->n) {
			/* Only a forged log gets here: drop the record. */
			pend(r, partial_start, partial_bytes + f.size, false);
			in_record = false;
			kv_buf_reset(record);
			continue;
		}
		err = kv_buf_append(record, f.payload.p, f.payload.n);
		if (err)
			goto out;
		partial_bytes += f.size;
		if (f.type == KV_WAL_FULL || f.type == KV_WAL_LAST) {
			pending_commit(r);
			r->stats.records++;
			r->stats.end_offset = r->block_off + r->pos;
			return 1;
		}
	}
out:
	r->error = err;
	kv_buf_reset(record);
	return err;
}
