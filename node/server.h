/*
 * server.h - the node on real sockets (DESIGN §1, §8, §9; issue 4): runs the
 * sans-I/O core (node.h) on a libuv loop with TCP for clients and peers,
 * timers, and the storage engine (src/lsm) with asynchronous, group-committed
 * writes. kvfsd is a thin main around it; the mount embeds one.
 *
 * Design note: doc/node.md "The libuv driver". Options: kvfsd(8), kvfs.conf(5).
 */
#ifndef KV_NODE_SERVER_H
#define KV_NODE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/auth.h"

#define KV_SERVER_MAX_MEMBERS 256
#define KV_SERVER_DEFAULT_PORT 7400

/* One member of the static member list: --members ID=HOST:PORT[/WEIGHT],... */
struct kv_server_member {
	uint32_t id;         /* numeric node id >= 1; its ring name is the decimal id */
	char host[64];       /* numeric IPv4 address, e.g. 127.0.0.12 */
	uint16_t port;
	double weight;       /* 0 = 1.0 */
};

/*
 * Everything a node needs to run. Filled by kv_server_options_default() and
 * then by the config file and flags (node/config.h); borrowed by
 * kv_server_start(), which copies what it keeps.
 */
struct kv_server_options {
	uint32_t node_id;                 /* --node-id: one of @members */
	char listen_host[64];             /* --listen HOST:PORT; default 127.0.0.1 */
	uint16_t listen_port;             /* default KV_SERVER_DEFAULT_PORT */
	char data_dir[4096];              /* --data DIR (required) */
	char cluster[65];                 /* --cluster-name; default "kvfs" */
	struct kv_auth_secret secret;     /* --secret-file; len 0 = none (loopback only) */
	struct kv_server_member members[KV_SERVER_MAX_MEMBERS]; /* --members */
	size_t n_members;
	uint32_t n, r, w;                 /* --n --r --w: defaults 3, 2, 2 (n capped to members) */
	uint32_t timeout_ms;              /* --timeout: default per-request deadline, 5000 */
	uint32_t forward_timeout_ms;      /* --forward-timeout: 1000 */
	uint32_t connect_timeout_ms;      /* --connect-timeout: peer connect, 1000 */
	uint32_t idle_timeout_ms;         /* --idle-timeout: a partial frame or a silent
					   * unauthenticated connection is closed after it; 10000 */
	char sync[32];                    /* --sync always|batch:MS|none; default "always" */
	size_t memtable_bytes;            /* --memtable-mb; default 16 MiB */
	uint64_t background_bytes_per_sec; /* --background-mbps; default 0, unpaced */
	size_t cache_bytes;               /* --cache-mb; default 32 MiB */
	size_t max_value;                 /* --max-value; default 4 MiB */
	size_t max_conn_queue_bytes;      /* --max-queue-mb: a connection's unsent replies
					   * above this stop reading from it; default 64 MiB */
	char log_file[4096];              /* --log FILE; "" = stderr */
	int log_level;                    /* --log-level error|warn|info|debug */
};

/* Fills the defaults above (no members, no data dir). */
void kv_server_options_default(struct kv_server_options *o);

struct kv_server;

/*
 * Opens the data directory (taking a new epoch when it is new or when
 * recovery reports possible loss, DESIGN §4 "Actors"), binds the listening
 * socket, and starts the node on a libuv loop in a thread of its own.
 * Returns 0 and sets *out once the node accepts connections; or a negative
 * error (-EADDRINUSE, -EACCES, KV_EINVAL for bad options, the engine's open
 * error...) with a one-line reason in @err (at least 256 bytes) and *out NULL.
 */
int kv_server_start(const struct kv_server_options *o, struct kv_server **out, char *err,
		    size_t errlen);

/*
 * Stops accepting, lets writes in flight complete, closes every connection
 * and the engine, joins the thread and frees @s. Returns 0 or the engine's
 * close error. Thread-safe against the node's thread; call once.
 */
int kv_server_stop(struct kv_server *s);

/* The port the node listens on (useful with --listen HOST:0). */
uint16_t kv_server_port(const struct kv_server *s);

#endif
