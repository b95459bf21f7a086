/*
 * node.h - the node's sans-I/O core (DESIGN §8): kv_node_step().
 *
 * The node is a single-threaded state machine. The driver (libuv in kvfsd,
 * the simulator in tests/sim, a tiny harness in tests/unit/node_fx.c) feeds
 * it one input at a time — a client request, a peer message, a timer firing,
 * a storage completion — and carries out the effects it asks for: messages to
 * peers, replies to clients, timers to set or cancel, storage reads and
 * writes. The core never reads a clock, draws randomness other than from the
 * seeded source in its config, or touches storage. Design note: doc/node.md.
 */
#ifndef KV_NODE_NODE_H
#define KV_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/msg.h"
#include "ring/ring.h"
#include "util/rng.h"
#include "util/slice.h"
#include "version/counter.h"
#include "version/siblings.h"

/* One member of the static member list (DESIGN §4 "Membership"). */
struct kv_node_member {
	uint32_t id;      /* numeric node id, the actor's node (unique, never reused) */
	const char *name; /* ring name: [A-Za-z0-9._-], unique; copied at init */
	double weight;    /* 0 means 1.0 */
};

/*
 * Configuration. Borrowed by kv_node_init(), which copies what it keeps.
 * kv_node_config_default() fills the defaults; set self_id and members.
 */
struct kv_node_config {
	uint32_t self_id; /* must be one of @members */
	uint32_t epoch;   /* the actor's epoch (DESIGN §4 "Actors") */
	const struct kv_node_member *members;
	size_t n_members;
	uint32_t n;                  /* replicas per key, fixed per cluster */
	uint32_t r, w;               /* default quorums, 1..n */
	uint32_t tokens_per_weight;  /* ring tokens; 0 = KV_RING_DEFAULT_TOKENS */
	uint64_t forward_timeout_ns; /* FORWARD_PUT unanswered -> next replica */
	uint64_t request_timeout_ns; /* W acks / R replies not in -> error */
	struct kv_dvv_limits limits; /* value, metadata and sibling limits of a put */
	uint64_t counter_lease;      /* the dot counter's last persisted lease for
				      * this epoch: kv_node_lease_decode() of the
				      * record under kv_node_lease_skey(), or 0 for
				      * a new epoch (doc/node.md "Counter leases") */
	uint64_t counter_block;      /* lease size; 0 = KV_COUNTER_BLOCK_DEFAULT */
	struct kv_rng rng;           /* seeded; the only randomness of the core */
};

void kv_node_config_default(struct kv_node_config *cfg);

/* ---- Inputs ---------------------------------------------------------- */

enum kv_input_type {
	KV_INPUT_CLIENT = 1, /* a client request (GET, PUT, DELETE, LIST) */
	KV_INPUT_PEER,       /* a peer message: request, reply or ERROR */
	KV_INPUT_TIMER,      /* a timer set by a KV_EFFECT timer fired */
	KV_INPUT_READ_DONE,  /* a storage read effect completed */
	KV_INPUT_WRITE_DONE, /* a storage write effect completed (durably) */
	KV_INPUT_RANGE_DONE, /* a storage range read effect completed */
};

/* One entry of a range read: a storage key and its stored bytes. */
struct kv_node_range_entry {
	struct kv_slice key;   /* the storage key */
	struct kv_slice value; /* the stored sibling-set encoding */
};

/*
 * One input. Everything is borrowed for the duration of kv_node_step(): the
 * node copies what it keeps, so the caller may free the message and bytes
 * as soon as the call returns.
 */
struct kv_input {
	enum kv_input_type type;
	union {
		struct {
			uint64_t conn;       /* the client connection, echoed in replies */
			uint64_t request_id; /* the frame's request id, echoed */
			const struct kv_msg *msg;
		} client;
		struct {
			uint32_t from;       /* sender's node id */
			uint64_t request_id; /* a request's id, or the id a reply echoes */
			const struct kv_msg *msg;
		} peer;
		struct {
			uint64_t id;
		} timer;
		struct {
			uint64_t op;
			int status;            /* 0 found, KV_ENOTFOUND, or an error */
			struct kv_slice value; /* the stored bytes when status == 0 */
		} read;
		struct {
			uint64_t op;
			int status; /* 0 = durable, else an error */
		} write;
		struct {
			uint64_t op;
			int status; /* 0, or an error (then no entries) */
			/* ascending by storage key; fewer than the effect's max
			 * means the range holds no more */
			const struct kv_node_range_entry *entries;
			size_t n;
		} range;
	};
};

/* ---- Effects --------------------------------------------------------- */

/*
 * An outgoing message. The effect owns @msg (its contexts and sets) and
 * @bytes, which backs every slice of @msg; kv_effects_clear() frees both.
 * A consumer may take them over by swapping in an empty message and buffer.
 */
struct kv_node_msg_out {
	uint32_t to;         /* peer node id (sends) — unused for replies */
	uint64_t conn;       /* client connection (replies) — unused for sends */
	uint64_t request_id; /* frame request id: a new id, or the one echoed */
	struct kv_msg msg;
	struct kv_buf bytes;
};

struct kv_node_timer_out {
	uint64_t id;
	uint64_t at_ns; /* absolute, in the clock of the now_ns inputs */
};

/*
 * A storage operation, completed later by a KV_INPUT_READ_DONE or
 * KV_INPUT_WRITE_DONE input with the same @op. @key is the storage key
 * (kv_skey_encode()); @value, for writes, the canonical sibling-set encoding
 * — or, under the reserved kv_node_lease_skey(), the lease record; under a
 * chunk key, the chunk's stored form, and under a chunk record key, the
 * record (see "Chunks" below).
 * A write completes only once durable under the sync policy (DESIGN §3).
 */
struct kv_node_storage_out {
	uint64_t op;
	struct kv_buf key;
	struct kv_buf value; /* writes only */
	bool del;            /* writes only: delete @key instead (@value empty);
			      * completed like a write (doc/node.md "Chunks") */
};

/*
 * A storage range read: up to @max entries whose storage keys lie in
 * [@start, @end), in ascending order, completed by a KV_INPUT_RANGE_DONE
 * input with the same @op. Used by LIST (doc/node.md "List").
 */
struct kv_node_range_out {
	uint64_t op;
	struct kv_buf start, end; /* an empty @end: to the end of the key space */
	uint32_t max;
	uint32_t max_bytes; /* 0, or: the page may also end after the entry that
			     * brings its key and value bytes to max_bytes; such
			     * a page can hold fewer than @max entries though the
			     * range holds more, so a scan that sets it goes on
			     * until a page comes back empty (gc scans) */
};

#define KV_NODE_EFFECT_ARRAY(T) \
	struct {                \
		T *v;           \
		size_t n, cap;  \
	}

/*
 * The effects of one or more steps, appended in order within each array.
 * Caller-owned: kv_effects_init() / kv_effects_release(); kv_effects_clear()
 * empties it (freeing what the entries own) and keeps the arrays.
 */
struct kv_effects {
	KV_NODE_EFFECT_ARRAY(struct kv_node_msg_out) sends;   /* to peers */
	KV_NODE_EFFECT_ARRAY(struct kv_node_msg_out) replies; /* to clients */
	KV_NODE_EFFECT_ARRAY(struct kv_node_timer_out) timers;
	KV_NODE_EFFECT_ARRAY(uint64_t) cancels;               /* timer ids */
	KV_NODE_EFFECT_ARRAY(struct kv_node_storage_out) reads;
	KV_NODE_EFFECT_ARRAY(struct kv_node_storage_out) writes;
	KV_NODE_EFFECT_ARRAY(struct kv_node_range_out) ranges; /* range reads */
	/*
	 * Peer ids whose connection the node gave up on: whatever is still
	 * queued or in transit to that peer must never be delivered (drop the
	 * queue, reset the connection; replies to requests in flight on it may
	 * come back as ERROR KV_ECLOSED). Carry these out before the sends of
	 * the same step. doc/node.md "Put": a FORWARD_PUT held up by a
	 * partition and delivered once it heals would be coordinated twice.
	 */
	KV_NODE_EFFECT_ARRAY(uint32_t) aborts;
};

void kv_effects_init(struct kv_effects *e);
void kv_effects_clear(struct kv_effects *e);
void kv_effects_release(struct kv_effects *e);

/* ---- The node -------------------------------------------------------- */

struct kv_node_key;   /* private: a per-key queue (node_int.h) */
struct kv_node_op;    /* private: an operation in flight */

/*
 * Counters since kv_node_init() (kv_node_get_stats(); STATS reports them,
 * doc/protocol.md §5.8).
 */
struct kv_node_stats {
	uint64_t chunk_read_repairs;     /* copies of a chunk a CHUNK_GET coordinated
					  * here sent to (or stored on) replicas that
					  * answered it "not found" or "corrupt" */
	uint64_t chunk_damaged_replaced; /* stores here that replaced a damaged copy
					  * (doc/node.md "Chunks and reclamation") */
};

/* Chunks whose copy a read on this node found missing or damaged, at most. */
#define KV_NODE_CHUNK_SUSPECT_MAX 16

/*
 * A node. Caller-owned: kv_node_init() / kv_node_release(). The fields are
 * private; single-threaded (guarded by whoever calls kv_node_step()).
 */
struct kv_node {
	uint32_t self_id;
	uint32_t self_idx; /* in the ring */
	struct kv_actor actor;
	struct kv_ring *ring;
	uint32_t *ring_to_id; /* ring index -> node id */
	uint32_t n, r, w;
	uint64_t forward_timeout_ns, request_timeout_ns;
	struct kv_dvv_limits limits;
	struct kv_counter counter;
	struct kv_rng rng;
	uint64_t next_id;          /* op, timer and peer request ids */
	struct kv_node_key *keys;  /* keys with queued operations */
	struct kv_node_op *ops;    /* every operation in flight */
	uint64_t lease_op;         /* storage op id of the lease write, 0 = none */
	uint64_t lease_pending;    /* the lease that write persists */
	uint64_t lease_round;      /* bumped per lease completion: resumes puts once */
	uint64_t gc_epoch_last;    /* the last gc epoch this node orchestrated */
	uint64_t now_ns;           /* the now_ns of the step in progress */
	int64_t wall_ns;           /* set by the driver before each step: the wall
				    * clock (CLOCK_REALTIME ns) that stamps new
				    * versions (DESIGN §4: a timestamp orders
				    * siblings for display). 0 = stamp with now_ns,
				    * as the simulator does with its virtual time. */
	struct kv_node_stats stats;
	/* Hashes (chunk names, 32 bytes) of chunks whose copy here a read found
	 * missing or damaged, oldest overwritten: the next store of one checks
	 * the copy and replaces it when bad (node_chunk.c "Read repair"). */
	uint8_t chunk_suspect[KV_NODE_CHUNK_SUSPECT_MAX][32];
	uint32_t chunk_nsuspect, chunk_suspect_next;
	bool actor_tainted;        /* a coordinated put's local write failed after
				    * its set was shipped: this actor mints no more
				    * (kv_node_actor_tainted()). A driver may also
				    * set it for a write failure it no longer steps
				    * into the core (while stopping). */
};

/*
 * Builds a node from @cfg (copied). Returns 0, KV_EINVAL (self not a member,
 * bad quorums, bad names), or -ENOMEM; on failure @node holds nothing.
 */
int kv_node_init(struct kv_node *node, const struct kv_node_config *cfg);

/* Frees everything @node holds; operations in flight are dropped silently. */
void kv_node_release(struct kv_node *node);

/*
 * Handles one input at time @now_ns and appends the resulting effects to
 * @out (which it never clears). Returns 0; KV_EINVAL for an input the node
 * cannot use (unknown type; a bad client request is answered with ERROR and
 * still returns 0); -ENOMEM, after which the operation concerned has been
 * answered with an error where possible. Inputs for ids the node no longer
 * knows (late replies, cancelled timers) are ignored.
 */
int kv_node_step(struct kv_node *node, uint64_t now_ns, const struct kv_input *in,
		 struct kv_effects *out);

/*
 * The preference list of @key as node ids, coordinating replica first
 * (DESIGN §3): writes at most @cap ids to @ids (KV_RING_MAX_REPLICAS is
 * always enough) and returns how many — fewer than N when the ring has too
 * few nodes.
 */
int kv_node_preflist(const struct kv_node *node, struct kv_slice key, uint32_t *ids, size_t cap);

/*
 * The counter lease record (doc/node.md "Counter leases"). The node persists
 * its dot counter's lease (DESIGN §4 "Actors") as an ordinary storage write
 * effect under a reserved, node-local storage key: kv_node_lease_skey(),
 * which is no storage key of the ring's key space (every one of those is at
 * least 10 bytes long, and it sorts before all of them, so no token span or
 * directory range holds it). A driver carries it out like any other write.
 * The value is KV_NODE_LEASE_RECORD_SIZE bytes: magic "KVLS", le32 epoch,
 * le64 lease. At start the driver reads that key and, when its epoch is the
 * node's, passes the lease as kv_node_config.counter_lease.
 */
#define KV_NODE_LEASE_RECORD_SIZE 16

/* The reserved storage key of the lease record; static bytes, never freed. */
struct kv_slice kv_node_lease_skey(void);

/*
 * Decodes a lease record into *epoch and *lease. Returns 0, or KV_ECORRUPT
 * (wrong size or magic; then both are untouched: the node cannot tell which
 * counters were used, and must take a new epoch).
 */
int kv_node_lease_decode(struct kv_slice value, uint32_t *epoch, uint64_t *lease);

/*
 * Chunks (doc/node.md "Chunks and reclamation"; DESIGN §7). A chunk key is
 * 00 63 ("\0c") followed by the 32-byte SHA-256 hash of the content (or,
 * for a chunk stored before SHA-256, its BLAKE2b-256: proto/chunkhash.h);
 * ordinary PUT, DELETE and GET of any key that starts with 00 63 are refused
 * (KV_EINVAL, "reserved key space"). A replica stores a chunk under the
 * storage key of its chunk key in its stored form (doc/storage-format.md
 * "Chunk store"): KV_NODE_CHUNK_HEADER bytes ("KVC2", le32 length, le64
 * XXH3-64 of the bytes) followed by the bytes; bodies written before that
 * form carry KV_NODE_CHUNK_HEADER_KVCK bytes ("KVCK", le32 length), are
 * still read, and are checked against the chunk's name (kv_chunk_hash_check). It keeps its age and gc mark
 * apart in a node-local record under 00 00 00 01 ‖ hash ‖ 00 (no ring storage key: a
 * storage key never ends with a lone 00), so a touch never rewrites the
 * chunk. The record is KV_NODE_CHUNK_RECORD_SIZE bytes: "KVCR", le32
 * length, le64 touched (wall ns), le64 last marked gc epoch.
 */
#define KV_NODE_CHUNK_HASH_LEN 32
#define KV_NODE_CHUNK_KEY_LEN 34
#define KV_NODE_CHUNK_HEADER 16     /* "KVC2" ‖ le32 length ‖ le64 XXH3-64 */
#define KV_NODE_CHUNK_HEADER_KVCK 8 /* the old form: "KVCK" ‖ le32 length */
#define KV_NODE_CHUNK_RECORD_SIZE 24
#define KV_NODE_CHUNK_RECORD_KEY_LEN 37

/* True when @key lies in the reserved chunk key space (starts with 00 63). */
bool kv_node_key_is_chunk(struct kv_slice key);

/*
 * Checks the header of a stored chunk body @stored (borrowed): the magic
 * ("KVC2" or "KVCK") and a length equal to what follows the header. It
 * does not check the bytes against their checksum or hash. On success
 * *bytes points into @stored at the chunk's bytes and the header's size is
 * returned (KV_NODE_CHUNK_HEADER or KV_NODE_CHUNK_HEADER_KVCK); otherwise
 * KV_ECORRUPT, and *bytes is empty.
 */
int kv_node_chunk_body_split(struct kv_slice stored, struct kv_slice *bytes);

/*
 * For drivers that keep chunk bodies outside the engine (node/chunkstore.h;
 * doc/node.md "Chunks and reclamation"): true when @skey is the storage key
 * of a chunk's body (kv_skey_encode() of a valid chunk key), and then its
 * hash is in @hash. Only those keys carry bodies; records never match.
 */
bool kv_node_chunk_skey_hash(struct kv_slice skey, uint8_t hash[KV_NODE_CHUNK_HASH_LEN]);

/*
 * Appends the storage key and the value of a chunk record (@size bytes,
 * age @touched in wall ns, never marked) to @skey and @value (caller-owned),
 * so a driver can adopt a body whose record a crash lost. Returns 0 or
 * -ENOMEM.
 */
int kv_node_chunk_record_encode(const uint8_t hash[KV_NODE_CHUNK_HASH_LEN], uint32_t size,
				int64_t touched, struct kv_buf *skey, struct kv_buf *value);

/*
 * The gc grace when a GC request names none: one hour, the longest upload
 * plus the hint lifetime (DESIGN §7 "Reclaiming chunks").
 */
#define KV_NODE_GC_GRACE_DEFAULT_S 3600u

/*
 * True once a coordinated put's local write failed after the put's sibling
 * set had been shipped to the other replicas (doc/node.md "Put"): replicas
 * may hold a dot of this actor that the node's own storage lost, so the node
 * mints nothing more under this actor — every later coordinated put is
 * answered ERROR KV_ECLOSED "local storage failed; restart the node" (a
 * forwarder then tries the next replica). Sticky until kv_node_release().
 * The driver must then treat its stop as unclean (keep the RUNNING marker),
 * so the restart takes a new epoch (DESIGN §4 "Actors").
 */
bool kv_node_actor_tainted(const struct kv_node *node);

/* Operations in flight (for tests and metrics). */
size_t kv_node_ops_in_flight(const struct kv_node *node);

/* Copies the node's counters into @out. */
void kv_node_get_stats(const struct kv_node *node, struct kv_node_stats *out);

#endif
