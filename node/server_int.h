/*
 * server_int.h - private state of the libuv driver (server.c: lifecycle,
 * effects, storage, the NODE state file; server_net.c: connections, the
 * handshake, peers). Not part of the API: see server.h and doc/node.md
 * "The libuv driver".
 *
 * Threads: everything here belongs to the node's loop thread, except the
 * fields marked "done_lock" (engine threads push write completions) and what
 * kv_server_start() sets before the thread starts.
 */
#ifndef KV_NODE_SERVER_INT_H
#define KV_NODE_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <uv.h>

#include "lsm/lsm.h"
#include "node/chunkstore.h"
#include "node/node.h"
#include "node/server.h"
#include "proto/frame.h"
#include "proto/msg.h"

#define SRV_HASH_BUCKETS 1024u
#define SRV_READ_BUF (64u * 1024)

/* A core timer (KV_EFFECT timers) as a uv timer; freed in its close callback. */
struct srv_timer {
	struct srv_timer *hnext; /* s->timers[] bucket */
	struct kv_server *s;
	uint64_t id;
	uv_timer_t h;
};

enum srv_conn_state {
	CONN_HANDSHAKE, /* before WELCOME: small frame limit, handshake types only */
	CONN_READY,     /* authenticated */
	CONN_CLOSING,   /* uv_close() called, or closing once its writes drain */
};

struct srv_peer;
struct srv_read;

/*
 * One TCP connection: accepted (a client or a peer's outgoing connection)
 * or our own outgoing connection to a peer (@peer set). Freed in the tcp
 * handle's close callback; unlinked from the lists when closing starts.
 */
struct srv_conn {
	struct srv_conn *next, *prev; /* s->conns */
	struct srv_conn *hnext;       /* s->conn_hash[] bucket */
	struct kv_server *s;
	uint64_t id;                  /* the core's client connection id */
	uv_tcp_t tcp;
	enum srv_conn_state state;
	bool outgoing;
	struct srv_peer *peer;        /* outgoing: its peer; NULL once detached */
	bool is_node;                 /* authenticated with role node */
	uint32_t node_id;             /* is_node: the peer's id */
	bool paused;                  /* reading stopped by backpressure */
	bool close_when_flushed;      /* an ERROR was sent before closing */
	bool closed;                  /* uv_close() called: freed in its callback */
	uint64_t closing_since_ns;    /* close_when_flushed since */
	size_t queued_bytes;          /* in @obuf or written, not yet completed */
	struct kv_buf obuf;           /* frames not handed to uv_write yet: written
				       * out once per loop iteration (kv_srv__flush) */
	bool dirty;                   /* on s->dirty (obuf not empty) */
	struct srv_conn *dnext;       /* s->dirty */
	uint64_t opened_ns;           /* accept or connect time (uv_hrtime) */
	uint64_t partial_since_ns;    /* a partial frame buffered since, or 0 */
	struct kv_frame_decoder dec;
	uint8_t *rbuf;                /* SRV_READ_BUF bytes for uv reads */
	/* handshake (doc/protocol.md §4): copies the MACs are computed over */
	int hs_step;
	struct kv_msg_hello hello;
	struct kv_msg_challenge challenge;
	uint8_t hello_id[KV_MSG_NAME_ID_MAX], hello_cluster[KV_MSG_NAME_ID_MAX];
	uint8_t challenge_id[KV_MSG_NAME_ID_MAX];
};

enum srv_peer_state {
	PEER_IDLE,       /* no connection; the next send connects */
	PEER_CONNECTING, /* connect or handshake in progress; sends queue */
	PEER_READY,      /* authenticated; sends go out at once */
	PEER_DOWN,       /* failed; requests fail fast until retry_at_ns */
};

/* A request sent (or queued) to a peer and not answered yet. */
struct srv_outstanding {
	uint64_t request_id;
	uint64_t sent_ns;
};

/* Another member: our one outgoing connection to it (DESIGN §9). */
struct srv_peer {
	struct kv_server *s;
	uint32_t id;
	struct sockaddr_in addr;
	enum srv_peer_state state;
	struct srv_conn *conn;         /* the outgoing connection, or NULL */
	uv_connect_t connect_req;
	uv_timer_t connect_timer;      /* connect + handshake deadline */
	struct kv_buf pending;         /* frames queued while connecting */
	struct srv_outstanding *out;   /* requests awaiting an answer */
	size_t nout, capout;
	uint64_t retry_at_ns, backoff_ns;
	bool logged_down;              /* "unreachable" logged for this outage */
};

/* Synthetic inputs queued while effects are applied (never nested steps). */
struct srv_synth {
	uint32_t from;
	uint64_t request_id;
};

/* Request counters: names in ascending order are built at STATS time. */
struct srv_counters {
	uint64_t by_type[0x200]; /* frames received per message type (< 0x200) */
	uint64_t unknown_type;
	uint64_t errors_sent;
	uint64_t connections_accepted;
	uint64_t bad_frames;
	uint64_t auth_failures;
	uint64_t peer_connects;
	uint64_t peer_failures;
	uint64_t fast_failovers;
	uint64_t idle_closed;
	uint64_t reads_inline; /* point reads answered on the loop from memory */
	uint64_t reads_pool;   /* point reads sent to the pool (they need the disk) */
	uint64_t commits_loop;   /* write groups committed on the loop (kv_srv__commit_round) */
	uint64_t commits_handed; /* rounds whose writes went to the engine's commit thread */
	uint64_t frames_sent;    /* frames queued on connections */
	uint64_t socket_writes;  /* uv_write()s they went out in (coalesced) */
};

/* A storage write in flight; engine threads append it to s->done (done_lock). */
struct srv_write {
	struct srv_write *next;
	struct kv_server *s;
	uint64_t op;
	int status;
};

struct kv_server {
	struct kv_server_options o;   /* copy; read-only after start */
	char self_name[16];           /* decimal node id */
	uint32_t n, r, w;             /* effective (n capped to the members) */
	struct kv_msg_limits limits;
	uint32_t epoch;
	bool started_clean;

	uv_loop_t loop;
	uv_thread_t thread;
	bool thread_started;
	uv_tcp_t listener;
	bool listener_up, sweep_up;   /* handles initialized (to close) */
	uv_async_t stop_async;
	uv_async_t done_async;
	uv_timer_t sweep_timer;
	uint16_t port;

	struct kv_lsm *db;
	struct kv_chunkstore *chunks; /* chunk bodies (chunkstore.h); thread-safe */
	struct kv_node node;
	bool node_ready;
	struct kv_effects fx;
	bool in_step;
	struct srv_synth *synth;
	size_t nsynth, capsynth;

	struct srv_conn *conns;       /* every open connection */
	struct srv_conn *dirty;       /* connections with bytes in obuf */
	uv_prepare_t flush_prepare;   /* flush s->dirty before the loop blocks */
	uv_check_t flush_check;       /* and after each round of I/O callbacks */
	bool flush_up;                /* both initialized (to close) */
	struct srv_conn *conn_hash[SRV_HASH_BUCKETS];
	uint64_t next_conn_id;
	struct srv_timer *timers[SRV_HASH_BUCKETS];
	struct srv_peer *peers;       /* one per member but self */
	size_t npeers;

	pthread_mutex_t done_lock;
	struct srv_write *done;       /* done_lock: completed writes, newest first */

	unsigned work_inflight;       /* reads and range reads on the pool or batched */
	struct srv_read *rbatch, *rbatch_tail; /* point reads of this loop round, not
				       * queued yet (kv_srv__reads_flush) */
	unsigned writes_inflight;     /* kv_lsm_write_async() not completed */
	bool writes_deferred;         /* kv_lsm_write_deferred() since the last commit */
	bool committing_here;         /* in kv_lsm_commit_here() on the loop thread */
	unsigned chunk_writes;        /* chunk body writes on the pool */
	pthread_t loop_tid;           /* the thread that runs the loop */
	bool stopping;
	struct srv_counters c;
	bool own_log_sink;
	void *log_file;               /* FILE *, when own_log_sink */
};

/* server.c */
uint64_t kv_srv__now(void);
void kv_srv__client_input(struct kv_server *s, struct srv_conn *c, const struct kv_frame *f,
			  const struct kv_msg *m);
void kv_srv__peer_input(struct kv_server *s, uint32_t from, uint64_t request_id,
			const struct kv_msg *m);
void kv_srv__synth_error(struct kv_server *s, uint32_t from, uint64_t request_id);
void kv_srv__stats_reply(struct kv_server *s, struct srv_conn *c, uint64_t request_id);
void kv_srv__maybe_finish(struct kv_server *s);
/* Feeds @in to the core and carries out its effects. */
void kv_srv__step(struct kv_server *s, const struct kv_input *in);

/* server_net.c */
/* Writes every connection's queued frames (and sends the batched reads). */
void kv_srv__flush_dirty(struct kv_server *s);

/* server_storage.c */
/* Sends the point reads batched in this loop round to the pool. */
void kv_srv__reads_flush(struct kv_server *s);
/* A point read (@range false) or a range [@key, @end) for operation @op;
 * takes the buffers' contents. */
void kv_srv__queue_read(struct kv_server *s, uint64_t op, struct kv_buf *key, struct kv_buf *end,
			uint32_t max, uint32_t max_bytes, bool range);
void kv_srv__queue_write(struct kv_server *s, struct kv_node_storage_out *st);
/* s->done_async: completes the writes the engine finished. */
void kv_srv__done_async_cb(uv_async_t *h);
/*
 * Flushes the round's frames, then commits the writes it deferred on the
 * loop thread and steps their completions (the prepare and check handles).
 */
void kv_srv__commit_round(struct kv_server *s);

/* server_net.c */
int kv_srv__net_start(struct kv_server *s, char *err, size_t errlen);
void kv_srv__net_stop(struct kv_server *s);
void kv_srv__net_close_handles(struct kv_server *s);
struct srv_conn *kv_srv__conn_find(struct kv_server *s, uint64_t id);
int kv_srv__conn_send(struct srv_conn *c, const struct kv_msg *m, uint64_t request_id);
void kv_srv__conn_error(struct srv_conn *c, uint64_t request_id, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Resets our connection to peer @id, dropping what is queued or in transit. */
void kv_srv__peer_abort(struct kv_server *s, uint32_t id);
void kv_srv__peer_send(struct kv_server *s, uint32_t to, const struct kv_msg *m,
		       uint64_t request_id);
void kv_srv__peer_answered(struct kv_server *s, uint32_t from, uint64_t request_id);

#endif
