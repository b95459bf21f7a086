/*
 * node_int.h - private state of the node core (node.c, node_put.c,
 * node_get.c, node_list.c, node_chunk.c, node_gc.c). Not part of the API:
 * see node.h and doc/node.md.
 */
#ifndef KV_NODE_NODE_INT_H
#define KV_NODE_NODE_INT_H

#include "node/node.h"

/* Where an operation's answer goes. */
enum kv_node_origin_kind {
	ORIGIN_NONE,   /* internal (a local read repair): nobody to answer */
	ORIGIN_CLIENT, /* a client connection */
	ORIGIN_PEER,   /* a peer's request */
};

struct kv_node_origin {
	enum kv_node_origin_kind kind;
	uint64_t conn;     /* ORIGIN_CLIENT */
	uint32_t from;     /* ORIGIN_PEER */
	uint64_t req_id;   /* the frame request id to echo */
	uint16_t req_type; /* the request's message type; picks the reply type */
};

enum kv_node_op_kind {
	OP_FORWARD,    /* a put on its way to the coordinating replica */
	OP_COORD_PUT,  /* a put at the coordinating replica: mint, write, ship */
	OP_JOIN,       /* REPLICA_WRITE / READ_REPAIR: read, join, write, ack */
	OP_GET,        /* a GET: R replica reads, join, reply, repair */
	OP_REPLICA_READ, /* a peer's REPLICA_READ: read, reply */
	OP_LIST,       /* a LIST: R replica pages, merge by name, reply */
	OP_REPLICA_LIST, /* a peer's REPLICA_LIST: range read, reply */
	OP_CHUNK_PUT,  /* CHUNK_PUT: store on the chunk's N replicas, reply at W */
	OP_CHUNK_GET,  /* CHUNK_GET: read one replica after the other */
	OP_CHUNK_RGET, /* a peer's REPLICA_CHUNK_GET: read, check, reply */
	OP_CHUNK_REC,  /* queued on a chunk key: store, touch/mark, or sweep it */
	OP_CHUNK_BATCH, /* runs OP_CHUNK_REC over a list of local chunks */
	OP_CHUNK_TOUCH, /* CHUNK_TOUCH: fan the hashes out to their replicas */
	OP_GC,         /* GC at its orchestrator: mark on all, then sweep on all */
	OP_GC_SCAN,    /* GC_MARK at a member: scan every set, mark its chunks */
	OP_GC_SWEEP,   /* GC_SWEEP at a member: delete the unmarked, old chunks */
};

/* What an OP_CHUNK_REC does to its chunk (doc/node.md "Chunks"). */
enum kv_node_chunk_mode {
	CHUNK_STORE = 1, /* put-if-absent: a present chunk only gets its age refreshed */
	CHUNK_UPDATE,    /* touch and/or mark a present chunk's record */
	CHUNK_SWEEP,     /* delete it when unmarked in the epoch and past the grace */
};

/* A request sent to a peer by an operation with more than N peers to hear from. */
struct kv_node_peer_req {
	uint32_t to;
	uint64_t req;
};

/*
 * Chunk and gc state of an operation (node_chunk.c, node_gc.c); owned by
 * the operation and freed with it.
 */
struct kv_node_chunk {
	uint64_t id;          /* names this operation to the ones it starts */
	uint64_t parent;      /* the operation to tell when done, 0 = answer origin */
	uint32_t parent_slot; /* OP_CHUNK_PUT parent: the preference slot */
	enum kv_node_chunk_mode mode;
	uint8_t flags;        /* KV_MSG_CHUNK_F_* */
	uint64_t epoch;       /* mark or sweep epoch; STORE: the mark its record keeps */
	uint64_t grace_ns;    /* sweep */
	int64_t wall;         /* the wall clock when the request came in */
	uint64_t deadline_ns;
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	struct kv_buf data;   /* STORE, PUT: the bytes; BATCH, TOUCH: hashes */
	int step;             /* REC: where it is (STORE: rec_on_read, rec_on_write) */
	bool existed;         /* STORE: found; PUT: every ack said existed */
	uint64_t size;        /* REC SWEEP: bytes freed */
	size_t next;          /* BATCH: the next hash to start */
	uint32_t running;     /* BATCH: records in progress */
	uint64_t pending;     /* answers outstanding (peers and children) */
	struct kv_msg_gc_reply sums; /* what was done, for the answer */
	int err;              /* the first failure, 0 = none */
	char errtext[256];
	struct kv_node_peer_req *peers;
	size_t npeers, cappeers;
	struct kv_buf cursor; /* scans: the first storage key of the next page */
	int phase;            /* OP_GC: 1 mark, 2 sweep */
	uint32_t corrupt;     /* OP_CHUNK_GET: copies that failed their hash */
	uint32_t lacking;     /* OP_CHUNK_GET: bit i set when slot i answered
			       * "not found" or "corrupt" (read repair) */
	bool rec_found;       /* REC STORE of a suspect copy: its record was there */
};

enum kv_node_op_state {
	ST_QUEUED, /* waiting in the key's queue */
	ST_READ,   /* storage read outstanding */
	ST_WRITE,  /* storage write outstanding (the key's queue waits) */
	ST_WAIT,   /* waiting for peers (acks, replies, a forward) */
	ST_LEASE,  /* OP_COORD_PUT: read done, waiting for a durable counter lease */
};

/* A put's arguments, owned copies of a PUT / DELETE / FORWARD_PUT. */
struct kv_node_put_args {
	uint8_t flags; /* KV_MSG_PUT_F_TOMBSTONE */
	uint8_t w;
	uint8_t hops;
	uint32_t timeout_ms;
	uint8_t request_id[KV_REQUEST_ID_LEN];
	struct kv_ctx context;
	struct kv_buf meta;
	struct kv_buf body;
};

#define KV_NODE_MAX_PEERS KV_RING_MAX_REPLICAS

/* The text of KV_ECLOSED once node->actor_tainted is set (node_put.c). */
#define KV_NODE_TAINTED_TEXT "local storage failed; restart the node"

/*
 * One operation in flight. Lives on node->ops from creation to
 * op_finish(); an operation of a key's queue is also on that key's list.
 * Ids (storage_op, timer, peer_req[]) are unique within the node, so an
 * input finds its operation by id; an id of 0 means none.
 */
struct kv_node_op {
	struct kv_node_op *next, *prev; /* node->ops */
	struct kv_node_op *qnext;       /* key queue */
	struct kv_node_key *queue;      /* the queue it is on, or NULL */
	enum kv_node_op_kind kind;
	enum kv_node_op_state state;
	struct kv_node_origin origin;
	struct kv_buf key; /* the user key */
	uint64_t storage_op;
	uint64_t timer;
	bool replied;

	uint32_t pref[KV_NODE_MAX_PEERS]; /* node ids, coordinator first */
	uint32_t npref;
	uint64_t peer_req[KV_NODE_MAX_PEERS]; /* outstanding peer request per slot */
	bool answered[KV_NODE_MAX_PEERS];
	struct kv_dvv replies[KV_NODE_MAX_PEERS]; /* OP_GET: each replica's set */
	uint32_t nanswered;
	uint32_t needed; /* W or R */
	uint32_t try_idx; /* OP_FORWARD: the slot being tried */
	bool accepted;    /* OP_FORWARD: that slot sent FORWARD_PUT_ACCEPTED */
	uint64_t deadline_ns; /* OP_FORWARD: the request's own deadline */
	uint32_t nfailed;     /* OP_GET, OP_LIST: slots that answered ERROR or failed to read */
	uint8_t get_flags;    /* OP_GET: the request's KV_MSG_GET_F_* */

	struct kv_node_put_args put;
	struct kv_dvv set;  /* OP_COORD_PUT result, OP_JOIN incoming, OP_GET merged */
	struct kv_dot dot;  /* OP_COORD_PUT: the minted (or retried) dot */
	uint64_t written_hash; /* kv_hash64() of the set's encoding that
				* kv_node__storage_write() wrote (the join's ack) */
	bool written_hash_ok;
	bool retry;         /* OP_COORD_PUT: kv_dvv_put() found the request id */
	uint64_t lease_round; /* ST_LEASE: node->lease_round when it last tried */
	struct kv_node_list *list; /* OP_LIST, OP_REPLICA_LIST (node_list.c) */
	struct kv_node_chunk *chunk; /* OP_CHUNK_*, OP_GC* (node_chunk.c, node_gc.c) */
};

/* A key with queued operations; removed when its queue empties. */
struct kv_node_key {
	struct kv_node_key *next;
	struct kv_buf key;
	struct kv_node_op *head, *tail; /* head is the running operation */
};

/* node.c: shared helpers. */
uint64_t kv_node__id(struct kv_node *node);
struct kv_node_op *kv_node__op_new(struct kv_node *node, enum kv_node_op_kind kind,
				   const struct kv_node_origin *origin, struct kv_slice key);
void kv_node__op_finish(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
int kv_node__enqueue(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
void kv_node__dequeue(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
struct kv_node_msg_out *kv_node__send(struct kv_effects *out, uint32_t to, uint64_t req_id,
				      uint16_t type);
struct kv_node_msg_out *kv_node__answer(struct kv_effects *out,
					const struct kv_node_origin *origin, uint16_t type);
int kv_node__own_key(struct kv_node_msg_out *m, struct kv_slice key, struct kv_slice *dst);
void kv_node__answer_error(struct kv_effects *out, const struct kv_node_origin *origin,
			   int code, const char *text);
int kv_node__timer(struct kv_node *node, struct kv_node_op *op, uint64_t at_ns,
		   struct kv_effects *out);
void kv_node__cancel_timer(struct kv_node_op *op, struct kv_effects *out);
/* Asks the driver to drop everything still on its way to @peer (kv_effects.aborts). */
void kv_node__abort_peer(struct kv_effects *out, uint32_t peer);
int kv_node__storage_read(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
int kv_node__storage_write(struct kv_node *node, struct kv_node_op *op, const struct kv_dvv *set,
			   struct kv_effects *out);
int kv_node__decode_stored(const struct kv_input *in, struct kv_dvv *out);
uint64_t kv_node__deadline(const struct kv_node *node, uint64_t now_ns, uint32_t timeout_ms);

/* The per-kind handlers. Each returns 0 or a negative error. */
int kv_node__put_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			 const struct kv_msg *msg, struct kv_effects *out);
int kv_node__join_request(struct kv_node *node, const struct kv_node_origin *origin,
			  struct kv_slice key, const struct kv_dvv *set, struct kv_effects *out);
int kv_node__get_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			 const struct kv_msg *msg, struct kv_effects *out);
int kv_node__replica_read_request(struct kv_node *node, const struct kv_node_origin *origin,
				  const struct kv_msg *msg, struct kv_effects *out);

/* A queued operation reached the head of its key's queue. */
int kv_node__start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);

/* node_get.c */
int kv_node__get_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			 struct kv_effects *out);
int kv_node__get_on_reply(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
			  const struct kv_msg *msg, struct kv_effects *out);
int kv_node__get_on_timer(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
int kv_node__rread_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out);
/* Reads @key from all its replicas and repairs those behind (no client;
 * timer at @at_ns). For LIST's read repair. Returns 0 or -ENOMEM. */
int kv_node__repair_key(struct kv_node *node, struct kv_slice key, uint64_t at_ns,
			struct kv_effects *out);

/* node_list.c */
struct kv_node_list;
void kv_node__list_free(struct kv_node_list *list);
int kv_node__list_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			  const struct kv_msg *msg, struct kv_effects *out);
int kv_node__replica_list_request(struct kv_node *node, const struct kv_node_origin *origin,
				  const struct kv_msg *msg, struct kv_effects *out);
int kv_node__list_on_range(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out);
int kv_node__list_on_reply(struct kv_node *node, struct kv_node_op *op, uint32_t slot,
			   const struct kv_msg *msg, struct kv_effects *out);
int kv_node__list_on_timer(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
struct kv_node_range_out *kv_node__range_push(struct kv_effects *out);

/* node.c: effect slots for node_chunk.c and node_gc.c (zeroed; NULL on -ENOMEM). */
struct kv_node_storage_out *kv_node__read_push(struct kv_effects *out);
struct kv_node_storage_out *kv_node__write_push(struct kv_effects *out);
void kv_node__storage_pop(struct kv_effects *out, bool write);
void kv_node__send_pop(struct kv_effects *out);

/* node_chunk.c */

/* A replica's node-local record of one chunk (node.h "Chunks"). */
struct kv_node_chunk_rec {
	uint8_t hash[KV_NODE_CHUNK_HASH_LEN];
	uint32_t size;   /* the chunk's bytes */
	int64_t touched; /* wall ns of the last store, touch or put of it */
	uint64_t marked; /* the last gc epoch that marked it, 0 = none */
};

/* Decodes a record from its storage key and value: 0 or KV_ECORRUPT. */
int kv_node__chunk_rec_decode(struct kv_slice skey, struct kv_slice value,
			      struct kv_node_chunk_rec *rec);
/* Appends the bounds of the record key space [lo, hi) to the empty @lo, @hi. */
void kv_node__chunk_rec_span(struct kv_buf *lo, struct kv_buf *hi);
void kv_node__chunk_free(struct kv_node_chunk *ch);
int kv_node__chunk_client(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			  const struct kv_msg *msg, struct kv_effects *out);
int kv_node__chunk_peer(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			const struct kv_msg *msg, struct kv_effects *out);
struct kv_node_op *kv_node__chunk_find_peer(struct kv_node *node, uint64_t req_id, uint32_t from);
struct kv_node_op *kv_node__chunk_find(struct kv_node *node, uint64_t id);
int kv_node__chunk_on_reply(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    uint32_t from, uint64_t req_id, const struct kv_msg *msg,
			    struct kv_effects *out);
int kv_node__chunk_on_read(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			   const struct kv_input *in, struct kv_effects *out);
int kv_node__chunk_on_write(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			    struct kv_effects *out);
int kv_node__chunk_on_timer(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    struct kv_effects *out);
int kv_node__chunk_rec_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
/* A new operation of @kind with chunk state (ids set); NULL on -ENOMEM. */
struct kv_node_op *kv_node__chunk_op_new(struct kv_node *node, enum kv_node_op_kind kind,
					 const struct kv_node_origin *origin, struct kv_slice key);
/* Starts an OP_CHUNK_BATCH over @hashes (n * 32 bytes, copied) for @parent. */
int kv_node__chunk_batch(struct kv_node *node, struct kv_node_op *parent,
			 enum kv_node_chunk_mode mode, uint8_t flags, uint64_t epoch,
			 uint64_t grace_ns, int64_t wall, const uint8_t *hashes, size_t n,
			 struct kv_effects *out);
/* Fans @hashes out to their replicas as CHUNK_MARK (or a local batch), adding
 * to agg->chunk->pending. Returns 0 or -ENOMEM. */
int kv_node__chunk_fanout(struct kv_node *node, struct kv_node_op *agg, uint8_t flags,
			  uint64_t epoch, int64_t wall, const uint8_t *hashes, size_t n,
			  struct kv_effects *out);
/* Records a peer request of @op (for kv_node__chunk_find_peer). */
int kv_node__chunk_peer_add(struct kv_node_op *op, uint32_t to, uint64_t req);
void kv_node__chunk_fail(struct kv_node_chunk *ch, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* node_gc.c */
int kv_node__gc_request(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
			const struct kv_msg *msg, struct kv_effects *out);
int kv_node__gc_peer(struct kv_node *node, uint64_t now_ns, const struct kv_node_origin *origin,
		     const struct kv_msg *msg, struct kv_effects *out);
int kv_node__gc_on_range(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 const struct kv_input *in, struct kv_effects *out);
/* An aggregate (OP_CHUNK_TOUCH, OP_GC*) heard from a part; continues or ends it. */
int kv_node__gc_continue(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 struct kv_effects *out);
/* A member's mark or sweep is done (a peer's answer or a local part's). */
int kv_node__gc_member_done(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			    uint32_t member, int code, struct kv_slice text,
			    const struct kv_msg_gc_reply *r, struct kv_effects *out);
/* Chunk references of one stored version (node_gc.c): calls @fn per hash. */
int kv_node__chunk_refs(struct kv_slice meta, struct kv_slice body,
			int (*fn)(void *arg, const uint8_t *hash), void *arg);

/* node_put.c */
int kv_node__put_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
int kv_node__join_start(struct kv_node *node, struct kv_node_op *op, struct kv_effects *out);
int kv_node__put_on_read(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			 const struct kv_input *in, struct kv_effects *out);
int kv_node__put_on_write(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  const struct kv_input *in, struct kv_effects *out);
int kv_node__put_on_reply(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  uint32_t slot, const struct kv_msg *msg, struct kv_effects *out);
int kv_node__put_on_timer(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  struct kv_effects *out);
int kv_node__put_on_lease(struct kv_node *node, uint64_t now_ns, struct kv_node_op *op,
			  struct kv_effects *out);
int kv_node__join_on_read(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			  struct kv_effects *out);
int kv_node__join_on_write(struct kv_node *node, struct kv_node_op *op, const struct kv_input *in,
			   struct kv_effects *out);

#endif
