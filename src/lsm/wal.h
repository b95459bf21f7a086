/*
 * wal.h - the commit log (write-ahead log) of the storage engine (DESIGN §6).
 *
 * A log is a sequence of records (opaque byte strings; the engine writes one
 * per write group). The file is cut into 32 KiB blocks; a record is split into
 * fragments that never straddle a block boundary, and every fragment carries
 * a checksum and the low 32 bits of the log's number. Recovery reads up to the
 * last good record, tells a torn tail (normal after a crash) from damage that
 * is followed by good records (possible loss), and resynchronises after
 * damage at the next block.
 *
 * Format: doc/storage-format.md#wal
 */
#ifndef KV_LSM_WAL_H
#define KV_LSM_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/vfs.h"
#include "util/slice.h"

#define KV_WAL_BLOCK 32768u
/* checksum le32 | length le16 | type u8 | log number le32 */
#define KV_WAL_HEADER 11u
/* The largest record kv_wal_add() accepts and the reader assembles. */
#define KV_WAL_MAX_RECORD (1u << 30)

/* Fragment types (the type byte). */
enum kv_wal_type {
	KV_WAL_ZERO = 0,    /* never written: zeroed or preallocated space */
	KV_WAL_FULL = 1,    /* a whole record */
	KV_WAL_FIRST = 2,   /* the first fragment of a record */
	KV_WAL_MIDDLE = 3,
	KV_WAL_LAST = 4,
	/*
	 * 5..127: reserved for records a reader must understand (an older reader
	 * stops with KV_EVERSION); 128..255: reserved for records an older reader
	 * may skip.
	 */
	KV_WAL_SKIPPABLE = 128,
	/*
	 * The writer finished the log here (a length-0 fragment): nothing
	 * after it belongs to this log, whatever it looks like. In the
	 * skippable range, so a reader that predates it skips it.
	 */
	KV_WAL_END = 128,
};

/* ---- Writer -------------------------------------------------------------- */

struct kv_wal_writer;

/*
 * Starts writing log @log_number into @f at byte @start_offset (0 for a new
 * or recycled file; the end of the last good record to continue a log). The
 * writer borrows @f: it never closes it, and @f must outlive the writer.
 * Records are written with kv_file_pwrite at the writer's own offset, so a
 * recycled file is overwritten in place and anything after the offset is
 * left behind as the (stale or torn) tail.
 * Returns 0 and *out (free with kv_wal_writer_free), or -ENOMEM (*out unset).
 */
int kv_wal_writer_new(struct kv_file *f, uint64_t log_number, uint64_t start_offset,
		      struct kv_wal_writer **out);

/*
 * Makes the writer keep the file written ahead of its records: once a record
 * would reach past byte @file_size (what the file holds now), it first
 * writes zeros up to the next multiple of @step past the record's end, so
 * that most records overwrite bytes the file already holds and their sync
 * carries data only, never a new size or a newly allocated extent (on ext4
 * appending cost up to twice as much per synced write: doc/storage-format.md
 * "Spare logs"). The zeros read as the log's normal end. A
 * failed zero write is no error: the writer warns once and appends from
 * then on. @step 0 turns it off (the default).
 */
void kv_wal_writer_ahead(struct kv_wal_writer *w, uint64_t file_size, uint32_t step);

/* Frees the writer (not the file; nothing is synced). NULL is a no-op. */
void kv_wal_writer_free(struct kv_wal_writer *w);

/*
 * Appends one record holding @payload: formats its fragments into the
 * writer's reusable buffer and writes them with ONE kv_file_pwrite. The
 * record is durable only after a later successful kv_wal_sync().
 * Returns 0; KV_ETOOBIG if @payload is over KV_WAL_MAX_RECORD (nothing
 * written, the writer stays usable); or the write's negative errno.
 *
 * Failure is sticky: after a failed write (or sync) the writer is failed and
 * every later kv_wal_add/kv_wal_sync returns that same error without touching
 * the file, so no record can follow a half-written one and nothing after the
 * failure is ever acknowledged. The half-written record may be lost or, if
 * the device wrote it all before failing, replayed on recovery: the engine
 * must treat the failed write group as of unknown outcome, never reuse its
 * sequence numbers, and continue in a new log.
 */
int kv_wal_add(struct kv_wal_writer *w, struct kv_slice payload);

/*
 * Like kv_wal_add for the record made of @nparts slices concatenated (group
 * commit: many batches, one record, one copy). @parts may be NULL when
 * @nparts is 0 (an empty record).
 */
int kv_wal_addv(struct kv_wal_writer *w, const struct kv_slice *parts, size_t nparts);

/*
 * Ends the log with an END fragment, so that whatever the file holds after it
 * (a recycled file's old contents) is never read as this log's, not even as
 * a torn tail. Not synced. The writer must not add anything after it.
 * Returns 0 or the (sticky) error; a failed writer writes nothing.
 */
int kv_wal_finish(struct kv_wal_writer *w);

/*
 * Makes every record added so far durable (kv_file_sync; no system call when
 * nothing was added since the last sync). Returns 0 or the sticky error.
 */
int kv_wal_sync(struct kv_wal_writer *w);

/* Bytes this writer has written (headers and padding included). */
uint64_t kv_wal_bytes(const struct kv_wal_writer *w);

/* The file offset where the next record goes (start_offset + bytes). */
uint64_t kv_wal_offset(const struct kv_wal_writer *w);

/* 0, or the error that failed the writer. */
int kv_wal_error(const struct kv_wal_writer *w);

/* ---- Reader -------------------------------------------------------------- */

struct kv_wal_reader;

/* What a reader has found so far; final once kv_wal_read() returned 0. */
struct kv_wal_stats {
	uint64_t records;         /* records returned */
	uint64_t bad_regions;     /* damaged stretches followed by a good record */
	uint64_t bytes_skipped;   /* bytes in those stretches: possible loss */
	bool torn_tail;           /* the log ends in damage (a half-written
				   * record or garbage): normal after a crash,
				   * nothing acknowledged is lost */
	uint64_t tail_bytes;      /* bytes of that torn tail */
	uint64_t stale_bytes;     /* trailing records of an older log, or zeros
				   * (a recycled or spare file): the normal end */
	bool finished;            /* the log ends in its writer's END fragment */
	uint64_t skipped_records; /* records of types >= 128 passed over */
	uint64_t end_offset;      /* file offset just past the last good record */
};

/*
 * Reads log @log_number from @f, from offset 0. The reader borrows @f (never
 * closes it). Returns 0 and *out (free with kv_wal_reader_free), or -ENOMEM.
 */
int kv_wal_reader_new(struct kv_file *f, uint64_t log_number, struct kv_wal_reader **out);

/* Frees the reader (not the file). NULL is a no-op. */
void kv_wal_reader_free(struct kv_wal_reader *r);

/*
 * Reads the next good record into @record (reset first; the caller owns it).
 * Returns 1 for a record; 0 at the end of the log; a negative errno for an
 * I/O error or -ENOMEM; KV_EVERSION for a record type this reader must
 * understand but does not (written by a newer version: do not replay
 * further, do not write to the log). Damage is never an error: it is skipped
 * and counted in the stats. Errors and the end are sticky.
 */
int kv_wal_read(struct kv_wal_reader *r, struct kv_buf *record);

/* Copies the reader's statistics into @out. */
void kv_wal_reader_stats(const struct kv_wal_reader *r, struct kv_wal_stats *out);

#endif
