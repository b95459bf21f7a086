/*
 * msg.h - the kvfs message set: one tagged struct per message type, with
 * pure encoders into a kv_buf and pure, bounded decoders over a frame body.
 *
 * Message bodies: doc/protocol.md §4 (handshake), §5 (client ops), §6 (peer
 * ops), §7 (limits), §3 (what an old peer does with an unknown type).
 * Framing lives in frame.h; a message travels as one frame whose type is the
 * message type.
 */
#ifndef KV_PROTO_MSG_H
#define KV_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"
#include "util/slice.h"
#include "version/dot.h"
#include "version/siblings.h"

/*
 * Message types (doc/protocol.md §3.2). Requests are even and their reply is
 * the next odd number; handshake messages and ERROR stand alone. Ranges
 * marked reserved belong to later modules; until they exist, decoding one
 * gives KV_EVERSION.
 */
enum kv_msg_type {
	KV_MSG_NONE = 0x0000, /* never on the wire: an empty struct kv_msg */

	/* 0x0001-0x000f: handshake and errors (§4) */
	KV_MSG_HELLO = 0x0001,
	KV_MSG_CHALLENGE = 0x0002,
	KV_MSG_AUTH = 0x0003,
	KV_MSG_WELCOME = 0x0004,
	KV_MSG_ERROR = 0x000f,

	/* 0x0010-0x003f: client ops (§5) */
	KV_MSG_GET = 0x0010,
	KV_MSG_GET_REPLY = 0x0011,
	KV_MSG_PUT = 0x0012,
	KV_MSG_PUT_REPLY = 0x0013,
	KV_MSG_DELETE = 0x0014,
	KV_MSG_DELETE_REPLY = 0x0015,
	KV_MSG_LIST = 0x0016,
	KV_MSG_LIST_REPLY = 0x0017,
	KV_MSG_STATS = 0x0018,
	KV_MSG_STATS_REPLY = 0x0019,
	/* Chunks (§5.9): the reserved chunk key space, DESIGN §7 "Chunks". */
	KV_MSG_CHUNK_PUT = 0x001a,
	KV_MSG_CHUNK_PUT_REPLY = 0x001b,
	KV_MSG_CHUNK_GET = 0x001c,
	KV_MSG_CHUNK_GET_REPLY = 0x001d,
	KV_MSG_CHUNK_TOUCH = 0x001e,
	KV_MSG_CHUNK_TOUCH_REPLY = 0x001f,

	/* 0x0040-0x007f: peer ops (§6) */
	KV_MSG_FORWARD_PUT = 0x0040,
	KV_MSG_FORWARD_PUT_REPLY = 0x0041,
	KV_MSG_REPLICA_WRITE = 0x0042,
	KV_MSG_REPLICA_WRITE_ACK = 0x0043,
	KV_MSG_REPLICA_READ = 0x0044,
	KV_MSG_REPLICA_READ_REPLY = 0x0045,
	KV_MSG_REPLICA_LIST = 0x0046,
	KV_MSG_REPLICA_LIST_REPLY = 0x0047,
	KV_MSG_READ_REPAIR = 0x0048,
	KV_MSG_READ_REPAIR_ACK = 0x0049,
	/* The coordinating replica took a FORWARD_PUT (same request id, empty
	 * body, no reply): the forwarder stops its forward timer and waits for
	 * the final reply until the request's deadline (§6.1). */
	KV_MSG_FORWARD_PUT_ACCEPTED = 0x004a,
	/* Chunks and their reclamation (§6.6, §6.7). */
	KV_MSG_REPLICA_CHUNK_PUT = 0x004c,
	KV_MSG_REPLICA_CHUNK_PUT_ACK = 0x004d,
	KV_MSG_REPLICA_CHUNK_GET = 0x004e,
	KV_MSG_REPLICA_CHUNK_GET_REPLY = 0x004f,
	KV_MSG_CHUNK_MARK = 0x0050,
	KV_MSG_CHUNK_MARK_ACK = 0x0051,
	KV_MSG_GC_MARK = 0x0052,
	KV_MSG_GC_MARK_DONE = 0x0053,
	KV_MSG_GC_SWEEP = 0x0054,
	KV_MSG_GC_SWEEP_DONE = 0x0055,

	/* 0x0180-0x01ff: admin (kvfsctl) */
	KV_MSG_GC = 0x0180,
	KV_MSG_GC_REPLY = 0x0181,
};

/* The peer-op types of §6: a node takes them only from a node's connection. */
#define KV_MSG_PEER_FIRST KV_MSG_FORWARD_PUT
#define KV_MSG_PEER_LAST KV_MSG_GC_SWEEP_DONE

/* Reserved ranges (inclusive), for the modules of later issues. */
#define KV_MSG_RANGE_GOSSIP_FIRST 0x0080
#define KV_MSG_RANGE_GOSSIP_LAST 0x00bf
#define KV_MSG_RANGE_HINTS_FIRST 0x00c0
#define KV_MSG_RANGE_HINTS_LAST 0x00ff
#define KV_MSG_RANGE_AAE_FIRST 0x0100
#define KV_MSG_RANGE_AAE_LAST 0x013f
#define KV_MSG_RANGE_STREAM_FIRST 0x0140
#define KV_MSG_RANGE_STREAM_LAST 0x017f
#define KV_MSG_RANGE_ADMIN_FIRST 0x0180
#define KV_MSG_RANGE_ADMIN_LAST 0x01ff

/* Fixed sizes and bounds of the message set (doc/protocol.md §7). */
#define KV_MSG_NONCE_LEN 32
#define KV_MSG_MAC_LEN 32 /* HMAC-SHA256 */
#define KV_MSG_NAME_ID_MAX 64 /* node id, cluster name: [A-Za-z0-9._-] */
#define KV_MSG_ERROR_TEXT_MAX 1024
#define KV_MSG_QUORUM_MAX 16 /* r, w: 0 = cluster default, else 1..16 */
#define KV_MSG_STAT_NAME_MAX 255
#define KV_MSG_STATS_MAX 65536
#define KV_MSG_HOPS_MAX 8
#define KV_MSG_KEY_MAX 4096

/* Handshake roles. */
#define KV_MSG_ROLE_CLIENT 0
#define KV_MSG_ROLE_NODE 1

/* Flags of GET and REPLICA_READ. */
#define KV_MSG_GET_F_HEAD 0x01 /* reply with every body empty: meta and context only */
/*
 * GET and LIST: a name without live versions is answered with its latest
 * tombstone that carries metadata, if it has one (what was deleted there:
 * the mount's rmdir, DESIGN §7 "Directories"); without the flag it is hidden.
 */
#define KV_MSG_GET_F_TOMBSTONES 0x02
#define KV_MSG_LIST_F_TOMBSTONES 0x02
/* Flags of PUT and FORWARD_PUT. */
#define KV_MSG_PUT_F_TOMBSTONE 0x01
/* Flags of PUT_REPLY, DELETE_REPLY, FORWARD_PUT_REPLY. */
#define KV_MSG_PUT_REPLY_F_RETRY 0x01 /* a retried request: the dot is the first one's */
/* Flags of LIST_REPLY and REPLICA_LIST_REPLY. */
#define KV_MSG_LIST_F_MORE 0x01
/* Flags of CHUNK_PUT_REPLY and REPLICA_CHUNK_PUT_ACK. */
#define KV_MSG_CHUNK_F_EXISTED 0x01 /* it was there already: its age was refreshed */
/* Flags of CHUNK_TOUCH and CHUNK_MARK. */
#define KV_MSG_CHUNK_F_TOUCH 0x01 /* refresh each chunk's age */
#define KV_MSG_CHUNK_F_MARK 0x02  /* record the mark of epoch (CHUNK_MARK only) */
/* Chunk content hashes: SHA-256, or BLAKE2b-256 for older chunks (proto/chunkhash.h). */
#define KV_MSG_CHUNK_HASH_LEN 32
/* Hashes in one CHUNK_TOUCH or CHUNK_MARK at most. */
#define KV_MSG_CHUNK_KEYS_MAX 65536

/*
 * Decoder limits (doc/protocol.md §7). kv_msg_limits_default() gives:
 * key 4 KiB, body 4 MiB, metadata 64 KiB, 64 siblings in client replies,
 * 10,000 list entries a page, names 4 KiB. A limit may be raised or
 * lowered per connection; hard bounds (KV_MSG_KEY_MAX, the sibling set
 * decoder's) still apply.
 */
struct kv_msg_limits {
	size_t max_key;            /* key and LIST dir bytes, <= KV_MSG_KEY_MAX */
	size_t max_value;          /* PUT body bytes */
	size_t max_meta;           /* PUT metadata bytes */
	size_t max_reply_siblings; /* versions in a GET_REPLY set or LIST_REPLY entry */
	size_t max_list_entries;   /* entries in one LIST page, and LIST's max_entries */
	size_t max_name;           /* LIST entry names and cursors */
};

#define KV_MSG_MAX_LIST_ENTRIES_DEFAULT 10000

void kv_msg_limits_default(struct kv_msg_limits *lim);

/*
 * Message bodies. Slices (struct kv_slice) are borrowed: after decoding they
 * point into the frame body, so keep the frame alive while the message is
 * used; when encoding they point wherever the caller likes. Contexts
 * (struct kv_ctx) and sibling sets (struct kv_dvv) are owned by the message
 * and freed by kv_msg_release(); move them in or out without a copy with
 * kv_ctx_swap() / kv_dvv_swap().
 */

/* HELLO: the connecting side opens (§4.1). */
struct kv_msg_hello {
	uint8_t min_version, max_version; /* protocol versions it speaks */
	uint8_t role;                     /* KV_MSG_ROLE_CLIENT or _NODE */
	struct kv_slice node_id;          /* its node id; empty for a client */
	struct kv_slice cluster;          /* the cluster it wants to join or use */
	uint8_t nonce[KV_MSG_NONCE_LEN];
};

/* CHALLENGE: the accepting side answers HELLO (§4.2). */
struct kv_msg_challenge {
	uint8_t version;          /* the version chosen for the connection */
	struct kv_slice node_id;  /* the accepting node's id */
	uint8_t nonce[KV_MSG_NONCE_LEN];
	uint8_t mac[KV_MSG_MAC_LEN]; /* proves the secret: kv_msg_auth_transcript(server) */
};

/* AUTH: the connecting side proves the secret (§4.3). */
struct kv_msg_auth {
	uint8_t mac[KV_MSG_MAC_LEN]; /* kv_msg_auth_transcript(client) */
};

/* WELCOME: authenticated; the cluster's replication settings (§4.4). */
struct kv_msg_welcome {
	uint8_t n, r, w;
};

/* ERROR: the reply to any request that failed, or to a bad frame (§4.5). */
struct kv_msg_error {
	int32_t code;         /* a KV_E* code or a negative errno; < 0 */
	struct kv_slice text; /* UTF-8, at most KV_MSG_ERROR_TEXT_MAX bytes */
};

/* GET (§5.1) and REPLICA_READ (§6.3; r and timeout_ms are ignored, 0). */
struct kv_msg_get {
	uint8_t flags;       /* KV_MSG_GET_F_* */
	uint8_t r;           /* 0 = cluster default */
	uint32_t timeout_ms; /* 0 = node default */
	struct kv_slice key;
};

/*
 * GET_REPLY (§5.2) and REPLICA_READ_REPLY (§6.3): a sibling set with its
 * context. Not found = no versions; the context may still cover deleted
 * versions, and a put with it supersedes them.
 */
struct kv_msg_set_reply {
	struct kv_dvv set;
};

/*
 * PUT (§5.3), DELETE (§5.5: meta and body empty, no flags) and FORWARD_PUT
 * (§6.1: a PUT or DELETE forwarded to the coordinating replica, hops >= 1).
 */
struct kv_msg_put {
	uint8_t flags;       /* KV_MSG_PUT_F_TOMBSTONE (PUT and FORWARD_PUT only) */
	uint8_t w;           /* 0 = cluster default */
	uint8_t hops;        /* FORWARD_PUT only: forwards so far, 1..KV_MSG_HOPS_MAX */
	uint32_t timeout_ms; /* 0 = node default */
	uint8_t request_id[KV_REQUEST_ID_LEN]; /* the client's; all zero = none */
	struct kv_slice key;
	struct kv_ctx context; /* what the client saw; empty = a blind write */
	struct kv_slice meta;  /* small metadata, kept apart from the body */
	struct kv_slice body;  /* empty for a tombstone */
};

/* PUT_REPLY, DELETE_REPLY, FORWARD_PUT_REPLY (§5.4). */
struct kv_msg_put_reply {
	struct kv_dot dot;     /* the new version's dot (or the first try's) */
	uint8_t flags;         /* KV_MSG_PUT_REPLY_F_* */
	struct kv_ctx context; /* the resulting set's context, for the next put */
};

/* LIST (§5.6) and REPLICA_LIST (§6.4). */
struct kv_msg_list {
	uint8_t flags;         /* LIST: KV_MSG_LIST_F_TOMBSTONES; REPLICA_LIST: 0 */
	uint8_t r;             /* LIST: 0 = cluster default; REPLICA_LIST: 0 */
	uint32_t timeout_ms;   /* 0 = node default */
	uint32_t max_entries;  /* 1..limits.max_list_entries */
	struct kv_slice dir;   /* the directory's key, "" for the root */
	struct kv_slice cursor; /* list names strictly after this; "" = from the start */
};

/*
 * One LIST entry: a name and its versions as a sibling set whose bodies are
 * all empty (dot, timestamp, request id, tombstone flag, metadata) with the
 * entry's context.
 */
struct kv_msg_list_entry {
	struct kv_slice name;
	struct kv_dvv set;
};

/* LIST_REPLY (§5.7; no tombstones, by convention) and REPLICA_LIST_REPLY (§6.4). */
struct kv_msg_list_reply {
	uint8_t flags;               /* KV_MSG_LIST_F_MORE */
	struct kv_slice next_cursor; /* with MORE: resume after it; else "" */
	struct kv_msg_list_entry *entries; /* strictly ascending by name */
	size_t n, cap;
};

/* STATS_REPLY (§5.8): counters, strictly ascending by name. */
struct kv_msg_stat {
	struct kv_slice name;
	uint64_t value;
};

struct kv_msg_stats_reply {
	struct kv_msg_stat *stats;
	size_t n, cap;
};

/* REPLICA_WRITE (§6.2) and READ_REPAIR (§6.5): join this set into yours. */
struct kv_msg_replica_write {
	struct kv_slice key;
	struct kv_dvv set;
};

/*
 * REPLICA_WRITE_ACK and READ_REPAIR_ACK (§6.2): the write is durable; the
 * joined set hashes to @set_hash (kv_hash64 of its kv_dvv_encode() bytes)
 * and holds @nversions versions.
 */
struct kv_msg_replica_ack {
	uint64_t set_hash;
	uint32_t nversions;
};

/*
 * CHUNK_PUT (§5.9) and REPLICA_CHUNK_PUT (§6.6; w 0): store @data under
 * chunk key @key put-if-absent. CHUNK_GET and REPLICA_CHUNK_GET use @key
 * alone (w 0, data empty).
 */
struct kv_msg_chunk {
	uint8_t w;           /* CHUNK_PUT: 0 = cluster default */
	uint32_t timeout_ms; /* 0 = node default */
	struct kv_slice key; /* a chunk key: 00 63 + 32-byte hash */
	struct kv_slice data; /* CHUNK_PUT only: at most limits.max_value */
};

/* CHUNK_PUT_REPLY, REPLICA_CHUNK_PUT_ACK: KV_MSG_CHUNK_F_EXISTED. */
struct kv_msg_chunk_put_reply {
	uint8_t flags;
};

/* CHUNK_GET_REPLY, REPLICA_CHUNK_GET_REPLY: the chunk's bytes. */
struct kv_msg_chunk_data {
	struct kv_slice data;
};

/*
 * CHUNK_TOUCH (§5.9, flags TOUCH, epoch 0) and CHUNK_MARK (§6.7): chunks
 * named by their content hashes, @n * 32 bytes at @hashes (borrowed).
 */
struct kv_msg_chunk_keys {
	uint8_t flags;       /* KV_MSG_CHUNK_F_* */
	uint32_t timeout_ms; /* 0 = node default */
	uint64_t epoch;      /* CHUNK_MARK with MARK: the gc epoch; else 0 */
	const uint8_t *hashes;
	size_t n;            /* 1..KV_MSG_CHUNK_KEYS_MAX */
};

/* CHUNK_TOUCH_REPLY, CHUNK_MARK_ACK: chunk records found and updated. */
struct kv_msg_count {
	uint64_t count;
};

/* GC (§6.7, epoch 0), GC_MARK (grace 0) and GC_SWEEP (§6.7). */
struct kv_msg_gc {
	uint32_t timeout_ms; /* 0 = node default */
	uint64_t epoch;      /* GC_MARK, GC_SWEEP: the epoch; GC: 0 */
	uint64_t grace_s;    /* GC, GC_SWEEP: keep chunks touched more recently */
};

/* GC_REPLY, GC_MARK_DONE and GC_SWEEP_DONE: what a gc (or its part) did. */
struct kv_msg_gc_reply {
	uint64_t epoch;
	uint64_t nodes;    /* members that took part */
	uint64_t versions; /* live versions scanned */
	uint64_t refs;     /* chunk references marked (each replica counts) */
	uint64_t kept;     /* chunk records the sweep looked at and kept */
	uint64_t swept;    /* chunks deleted */
	uint64_t bytes;    /* chunk bytes deleted */
};

/*
 * A message: @type says which member of the union is valid. Caller-owned:
 * kv_msg_init() / kv_msg_release(). STATS has no fields.
 */
struct kv_msg {
	uint16_t type;
	union {
		struct kv_msg_hello hello;
		struct kv_msg_challenge challenge;
		struct kv_msg_auth auth;
		struct kv_msg_welcome welcome;
		struct kv_msg_error error;
		struct kv_msg_get get;             /* GET, REPLICA_READ */
		struct kv_msg_set_reply set_reply; /* GET_REPLY, REPLICA_READ_REPLY */
		struct kv_msg_put put;             /* PUT, DELETE, FORWARD_PUT */
		struct kv_msg_put_reply put_reply; /* PUT_/DELETE_/FORWARD_PUT_REPLY */
		struct kv_msg_list list;           /* LIST, REPLICA_LIST */
		struct kv_msg_list_reply list_reply; /* LIST_REPLY, REPLICA_LIST_REPLY */
		struct kv_msg_stats_reply stats_reply;
		struct kv_msg_replica_write replica_write; /* REPLICA_WRITE, READ_REPAIR */
		struct kv_msg_replica_ack replica_ack;     /* ..._ACK */
		struct kv_msg_chunk chunk;                 /* CHUNK_PUT/GET, REPLICA_CHUNK_* */
		struct kv_msg_chunk_put_reply chunk_put_reply;
		struct kv_msg_chunk_data chunk_data;       /* CHUNK_GET_REPLY, REPLICA_..._REPLY */
		struct kv_msg_chunk_keys chunk_keys;       /* CHUNK_TOUCH, CHUNK_MARK */
		struct kv_msg_count count;                 /* CHUNK_TOUCH_REPLY, CHUNK_MARK_ACK */
		struct kv_msg_gc gc;                       /* GC, GC_MARK, GC_SWEEP */
		struct kv_msg_gc_reply gc_reply;           /* GC_REPLY, GC_*_DONE */
	};
};

/*
 * Makes @m an empty message of @type: every field zero, slices empty,
 * contexts and sets initialized and empty. Any 16-bit @type is accepted
 * (KV_MSG_NONE for "no message"); only known types encode.
 */
void kv_msg_init(struct kv_msg *m, uint16_t type);

/* Frees what @m owns and leaves it an empty KV_MSG_NONE. Safe to repeat. */
void kv_msg_release(struct kv_msg *m);

/* The message type's name ("GET", "REPLICA_WRITE_ACK"), or NULL if unknown. */
const char *kv_msg_type_name(uint16_t type);

/* True for the types this code can encode and decode. */
bool kv_msg_type_known(uint16_t type);

/* True for the types allowed before authentication (HELLO..WELCOME, ERROR). */
bool kv_msg_type_is_handshake(uint16_t type);

/*
 * The reply type of request @type (GET -> GET_REPLY, DELETE -> DELETE_REPLY,
 * REPLICA_WRITE -> REPLICA_WRITE_ACK, ...), or KV_MSG_NONE when @type is not
 * a request with a reply of its own. Any request may also be answered by
 * ERROR.
 */
uint16_t kv_msg_reply_type(uint16_t type);

/*
 * Adds a LIST entry to a LIST_REPLY or REPLICA_LIST_REPLY: @name is
 * borrowed, and @set is moved into the message (left empty). Entries must be
 * added in strictly ascending name order (checked at encode time).
 * Returns 0, KV_EINVAL when @m is of another type, or -ENOMEM (then nothing
 * changes).
 */
int kv_msg_list_push(struct kv_msg *m, struct kv_slice name, struct kv_dvv *set);

/*
 * Adds a counter to a STATS_REPLY; @name is borrowed. Counters must be added
 * in strictly ascending name order (checked at encode time). Returns 0,
 * KV_EINVAL when @m is of another type, or -ENOMEM.
 */
int kv_msg_stats_push(struct kv_msg *m, struct kv_slice name, uint64_t value);

/*
 * Appends the body of @m to @out. The message is validated first against
 * @lim (NULL = kv_msg_limits_default()) with exactly the decoder's rules,
 * so whatever encodes decodes. Returns 0; KV_EINVAL for an unknown type or
 * a field the decoder would refuse (bad flag, quorum above 16, unsorted
 * entries, a bad id); KV_ETOOBIG for a length above its limit; -ENOMEM.
 * On failure @out is unchanged.
 */
int kv_msg_encode(const struct kv_msg *m, const struct kv_msg_limits *lim, struct kv_buf *out);

/*
 * Appends @m as one complete frame (protocol @version, frame @flags,
 * @request_id) to @out, encoding the body in place. Returns as
 * kv_msg_encode() or kv_frame_encode(); on failure @out is unchanged.
 */
int kv_msg_encode_frame(const struct kv_msg *m, const struct kv_msg_limits *lim,
			uint8_t version, uint8_t flags, uint64_t request_id, struct kv_buf *out);

/*
 * Decodes a body of message @type. A pure function of (@type, @body, @lim);
 * @lim NULL = kv_msg_limits_default(). On success returns 0 and *out (which
 * must be empty: fresh, initialized or released; it is overwritten, not
 * released) holds the message; its slices borrow from
 * @body, its contexts and sets are its own (kv_msg_release()). On failure
 * *out is left an empty KV_MSG_NONE message and the result is: KV_EVERSION
 * for a type this code does not know (reserved or unassigned: answer ERROR
 * and keep the connection); KV_ETOOBIG for a length or count above its
 * limit; KV_ECORRUPT for anything else malformed (truncated, trailing bytes,
 * non-minimal varints, unknown flag bits, unsorted entries, a bad sibling
 * set or context); -ENOMEM. Never reads outside @body.
 */
int kv_msg_decode(uint16_t type, struct kv_slice body, const struct kv_msg_limits *lim,
		  struct kv_msg *out);

/* As kv_msg_decode() on a frame's type and body; @out borrows from @f. */
int kv_msg_decode_frame(const struct kv_frame *f, const struct kv_msg_limits *lim,
			struct kv_msg *out);

/* True when two messages have the same type and equal fields. */
bool kv_msg_equal(const struct kv_msg *a, const struct kv_msg *b);

/*
 * The bytes each side of a handshake MACs (doc/protocol.md §4.6): appends to
 * @out a domain label ("kvfs-auth-v1 server" or "... client"), the version
 * chosen, both nonces, the cluster name and both node ids, each
 * length-prefixed. The caller computes HMAC-SHA256(cluster secret, these
 * bytes) and puts it in CHALLENGE.mac (@server true) or AUTH.mac (@server
 * false). Returns 0 or -ENOMEM (then @out is unchanged).
 */
int kv_msg_auth_transcript(struct kv_buf *out, bool server, const struct kv_msg_hello *hello,
			   const struct kv_msg_challenge *challenge);

#endif
