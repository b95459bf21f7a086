/*
 * client.h - the kvfs client library: a thread-safe, blocking client of a
 * kvfs cluster (DESIGN §1, §3, §4; issue 4).
 *
 * A client knows a list of nodes, any of which can take a request. It keeps a
 * small pool of authenticated connections per node (doc/protocol.md §4),
 * gives each call one connection, fails over to the next node of the list
 * when one is unreachable, bounds every call by a deadline that covers
 * connect, send and reply, and retries a put with the same 16-byte request id
 * so that it is applied once (DESIGN §4 "Idempotent retries").
 * Wire format: doc/protocol.md. Command-line front end: kvfsctl(8).
 */
#ifndef KV_CLIENT_CLIENT_H
#define KV_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/auth.h"
#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

#define KV_CLIENT_DEFAULT_PORT 7400
#define KV_CLIENT_DEFAULT_CLUSTER "kvfs"
#define KV_CLIENT_DEFAULT_TIMEOUT_MS 5000
#define KV_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define KV_CLIENT_DEFAULT_CONNS_PER_NODE 4
#define KV_CLIENT_MAX_NODES 256
/* Room for any message kv_client_errmsg() returns, NUL included. */
#define KV_CLIENT_ERRMSG_MAX 1536

/*
 * How to reach the cluster. Borrowed by kv_client_new(), which copies what it
 * keeps; every field may be 0 / NULL for its default.
 */
struct kv_client_config {
	const char *nodes;     /* "host:port,host:port" ("[v6]:port"; port default 7400);
				* required, 1..KV_CLIENT_MAX_NODES entries */
	const char *cluster;   /* cluster name for HELLO; NULL = "kvfs" */
	const struct kv_auth_secret *secret; /* NULL = the empty secret */
	uint32_t timeout_ms;   /* default deadline of a call; 0 = 5000 */
	uint32_t connect_timeout_ms; /* one connect + handshake attempt; 0 = 1000,
				      * never beyond the call's deadline */
	uint8_t r, w;          /* default quorums sent with each call; 0 = the cluster's */
	unsigned conns_per_node; /* connections per node at most, kept open for reuse;
				  * a call finding all busy waits for one (within its
				  * deadline); 0 = 4. One request in flight each. */
	size_t max_value;      /* largest body a put may send; 0 = 4 MiB */
};

/*
 * Per-call options. NULL, or a struct from kv_client_call_init() /
 * KV_CLIENT_CALL_INIT, means the client's defaults. Borrowed for the call.
 */
struct kv_client_call {
	uint8_t r, w;          /* 0 = the client's default (then the cluster's) */
	uint32_t timeout_ms;   /* deadline of the whole call; 0 = the client's default */
	int node;              /* -1 = any (round robin; a PUT or DELETE goes first to
				* the node that coordinated its placement key's last
				* put, doc/protocol.md §5.3); else the index into the
				* node list (config order) to try first; fail-over
				* continues with the next ones */
	bool head;             /* GET only: bodies left empty (metadata and context) */
	const uint8_t *request_id; /* PUT/DELETE: KV_REQUEST_ID_LEN bytes to use as the
				    * request id (to retry a put across calls, DESIGN §7);
				    * NULL = a fresh random id for this call */
	bool tombstones;       /* GET and LIST: a name without live versions comes
				* with its latest tombstone that carries metadata, if
				* any (doc/protocol.md §5.1); else it is hidden */
};

#define KV_CLIENT_CALL_INIT { 0, 0, 0, -1, false, NULL, false }

/* Sets @call to the defaults (same as KV_CLIENT_CALL_INIT). */
void kv_client_call_init(struct kv_client_call *call);

struct kv_client;

/*
 * Parses @cfg, resolves every node address (numeric or by name) and returns
 * a client in *out. Connects lazily: no connection is made here. Returns 0;
 * KV_EINVAL for a bad node list, cluster name or option (with the reason in
 * kv_client_errmsg()); -ENOMEM; -EIO when libsodium cannot start. On failure
 * *out is NULL. Free with kv_client_free().
 */
int kv_client_new(const struct kv_client_config *cfg, struct kv_client **out);

/*
 * Closes every connection and frees @c (NULL is fine). No call may be in
 * progress on @c, in any thread.
 */
void kv_client_free(struct kv_client *c);

/* Number of nodes in the list, and node @i as "host:port" (borrowed, lives with @c). */
size_t kv_client_node_count(const struct kv_client *c);
const char *kv_client_node_name(const struct kv_client *c, size_t i);

/*
 * The cluster's N and default R and W from the latest WELCOME. Returns true
 * and sets the (non-NULL) outputs once some handshake completed, else false.
 */
bool kv_client_quorum(struct kv_client *c, uint8_t *n, uint8_t *r, uint8_t *w);

/*
 * The message of the calling thread's latest failed call (any client): the
 * node's one-line ERROR text when a node answered ERROR ("write quorum not
 * met: 1 of 2 acks within 5s"), else a description of what failed ("no node
 * reachable: 127.0.0.1:7400: connection refused"). "" after a successful
 * call. Borrowed: valid until the thread's next call. Thread-safe.
 */
const char *kv_client_errmsg(const struct kv_client *c);

/* Fills @id with KV_REQUEST_ID_LEN random bytes (for kv_client_call.request_id). */
void kv_client_request_id(uint8_t id[KV_REQUEST_ID_LEN]);

/*
 * Common results of the calls below (besides each one's own):
 *   KV_ETIMEDOUT  the deadline passed (connect, send or reply);
 *   -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, KV_ECLOSED (EOF): every node
 *                 tried was unreachable (the last node's error);
 *   KV_ECORRUPT, KV_EVERSION, KV_ETOOBIG: a malformed or unexpected reply
 *                 (that connection is closed; the call is not retried);
 *   -EACCES       the handshake failed: the node's proof of the secret did
 *                 not verify, or the node refused ours;
 *   any code a node sent in an ERROR reply (KV_EQUORUM, KV_ESIBLINGS,
 *                 KV_ETOOBIG, KV_EINVAL, ...), returned as is, never retried.
 * kv_client_errmsg() says more. A put or delete that failed may still have
 * reached some replicas (DESIGN §3).
 * Only failures to reach a node (connect refused or timed out, reset, EOF
 * before the reply) move on to the next node, within the same deadline.
 */

/*
 * Reads @key (at most 4096 bytes, any bytes) at R. On success returns 0 and
 * replaces the contents of the initialized set @out with every live version
 * and the key's causal context; a key that does not exist is a set without
 * versions (its context may still cover deleted versions). With call->head
 * every body is empty. On failure @out is unchanged.
 */
int kv_client_get(struct kv_client *c, struct kv_slice key, const struct kv_client_call *call,
		  struct kv_dvv *out);

/*
 * Writes @meta and @body to @key at W with context @ctx (what the caller
 * read; NULL or empty = a blind put that destroys nothing and joins what is
 * there as a sibling). The request id (call->request_id or a fresh random
 * one) is the same in every attempt of this call. On success returns 0, or 1
 * when the node reports the request id as already applied (a retry: the dot
 * is the first attempt's); sets *dot_out (if not NULL) to the version's dot
 * and replaces the initialized context @ctx_out (if not NULL) with the
 * resulting context, the one to pass to the next put. On failure the outputs
 * are unchanged. Everything passed in is borrowed.
 */
int kv_client_put(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
		  struct kv_slice meta, struct kv_slice body, const struct kv_client_call *call,
		  struct kv_dot *dot_out, struct kv_ctx *ctx_out);

/*
 * Deletes exactly the versions of @key that @ctx covers (a tombstone
 * through the put path, DESIGN §4 "Deletes"); with NULL or an empty context
 * nothing is deleted. Request id, results and outputs as kv_client_put().
 */
int kv_client_delete(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
		     const struct kv_client_call *call, struct kv_dot *dot_out,
		     struct kv_ctx *ctx_out);

/*
 * As kv_client_delete(), with a tombstone that carries @meta (what was
 * deleted: a PUT with the TOMBSTONE flag, doc/protocol.md §5.3), which a
 * call with `tombstones` set reads back while the key has no live version.
 */
int kv_client_delete_meta(struct kv_client *c, struct kv_slice key, const struct kv_ctx *ctx,
			  struct kv_slice meta, const struct kv_client_call *call,
			  struct kv_dot *dot_out, struct kv_ctx *ctx_out);

/* One directory entry: its name (without the directory) and its versions. */
struct kv_client_list_entry {
	struct kv_buf name; /* owned */
	struct kv_dvv set;  /* owned; every body empty; the entry's context */
};

/*
 * One page of a listing. Caller-owned: zero it (or KV_CLIENT_LIST_PAGE_INIT)
 * before the first call; kv_client_list() replaces its contents;
 * kv_client_list_page_release() frees them.
 */
struct kv_client_list_page {
	struct kv_client_list_entry *entries; /* ascending by name */
	size_t n;
	bool more;                /* another page follows: pass next_cursor */
	struct kv_buf next_cursor; /* with @more, the cursor of the next page; else empty */
};

#define KV_CLIENT_LIST_PAGE_INIT { NULL, 0, false, KV_BUF_INIT }

/* Frees what @page holds and leaves it empty. Safe to repeat. */
void kv_client_list_page_release(struct kv_client_list_page *page);

/*
 * Lists directory @dir (a directory key, "" for the root, DESIGN §2) at R:
 * up to @max_entries (1..10,000; 0 = 1,000) names strictly after @cursor
 * (empty = from the start). On success returns 0 and replaces the contents
 * of @out (released first); on failure @out is unchanged.
 */
int kv_client_list(struct kv_client *c, struct kv_slice dir, struct kv_slice cursor,
		   uint32_t max_entries, const struct kv_client_call *call,
		   struct kv_client_list_page *out);

/* One request counter of a node. */
struct kv_client_stat {
	char *name; /* owned, NUL-terminated */
	uint64_t value;
};

/* A node's counters, ascending by name. Zero it or KV_CLIENT_STATS_INIT. */
struct kv_client_stats {
	struct kv_client_stat *v;
	size_t n;
};

#define KV_CLIENT_STATS_INIT { NULL, 0 }

/* Frees what @st holds and leaves it empty. Safe to repeat. */
void kv_client_stats_release(struct kv_client_stats *st);

/*
 * Reads the request counters of node @node (index into the node list; no
 * fail-over to another node), or of any node when @node is -1. On success
 * returns 0 and replaces the contents of @out; on failure @out is unchanged.
 * KV_EINVAL for an index out of range.
 */
int kv_client_stats(struct kv_client *c, int node, const struct kv_client_call *call,
		    struct kv_client_stats *out);

/* ---- Chunks (DESIGN §7 "Chunks"; doc/protocol.md "Chunks") ------------- */

/*
 * Stores an immutable chunk: @key is a chunk key (kv_fs_chunk_key(): the
 * reserved key space "\0c" + the SHA-256 hash of @data, kv_chunk_hash(); an
 * older chunk's BLAKE2b-256 is accepted too; ordinary puts cannot write
 * there), @data its bytes (at most the node's max value). The
 * chunk is placed by its own key across the whole ring and written
 * put-if-absent on W of its N replicas, with no version vector, so a retry
 * or a second upload of the same content is harmless; a put of a chunk that
 * exists refreshes its age (a sweep must not take a deduplicated chunk).
 * Returns 0 (stored), 1 (it was there already: age refreshed), KV_EINVAL
 * (not a chunk key, or @data does not hash to it), or the common results.
 */
int kv_client_chunk_put(struct kv_client *c, struct kv_slice key, struct kv_slice data,
			const struct kv_client_call *call);

/*
 * Reads chunk @key from one replica (the node tries the next replica when
 * one does not have it or is unreachable) into @out (reset first; the caller
 * owns it and frees it with kv_buf_release()). The bytes are checked against
 * the key's hash by the node and again here. Returns 0, KV_ENOTFOUND (no
 * replica has it), KV_ECORRUPT (every copy found failed its hash), or the
 * common results; on failure @out is empty.
 */
int kv_client_chunk_get(struct kv_client *c, struct kv_slice key, const struct kv_client_call *call,
			struct kv_buf *out);

/*
 * Refreshes the age of the @n chunks @keys (chunk keys, borrowed; 1..65,536)
 * on every replica that holds them: the lease of an upload in progress or
 * of an open but unlinked file (DESIGN §7 "Reclaiming chunks"), renewed
 * well within the gc grace. Returns the number of chunk records refreshed
 * (each replica counts; a chunk no replica has counts 0), KV_EINVAL (a key
 * that is not a chunk key, or @n out of range), or the common results (a
 * replica that could not be reached fails the call: retry it).
 */
int kv_client_chunk_touch(struct kv_client *c, const struct kv_slice *keys, size_t n,
			  const struct kv_client_call *call);

/* The gc grace when none is given: the node's KV_NODE_GC_GRACE_DEFAULT_S. */
#define KV_CLIENT_GC_GRACE_DEFAULT_S 3600

/* What a gc did (doc/protocol.md §6.7). */
struct kv_client_gc_result {
	uint64_t epoch;    /* the mark epoch */
	uint64_t nodes;    /* members that marked and swept */
	uint64_t versions; /* live versions scanned, on every replica */
	uint64_t refs;     /* chunk records marked (each replica counts) */
	uint64_t kept;     /* chunk records looked at by the sweep and kept */
	uint64_t swept;    /* chunks deleted (each replica counts) */
	uint64_t bytes;    /* chunk bytes freed */
};

/*
 * Runs one mark-and-sweep over the whole cluster (DESIGN §7 "Reclaiming
 * chunks"), orchestrated by the node the call reaches: every member marks
 * the chunks referenced by every version it stores; then, only if every
 * member completed its mark, each deletes its chunks that no mark named and
 * that were not stored or touched for @grace_s seconds (a negative @grace_s:
 * KV_CLIENT_GC_GRACE_DEFAULT_S, one hour). Takes long on a large store: give
 * call->timeout_ms generously (kvfsctl gc uses 10 minutes). Returns 0 and
 * fills *out (if not NULL), or the common results — a member that failed or
 * did not answer fails the gc (KV_EQUORUM-like codes from the node, with
 * its message in kv_client_errmsg()), and then nothing was swept.
 */
int kv_client_gc(struct kv_client *c, int64_t grace_s, const struct kv_client_call *call,
		 struct kv_client_gc_result *out);

#endif
