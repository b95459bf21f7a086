/*
 * kvfsd.c - the kvfs node daemon: a thin main around kv_server (server.h).
 *
 * Parses flags and the config file (config.h), starts the node, prints one
 * line saying where it listens, waits for SIGTERM or SIGINT and stops the
 * node cleanly. Startup errors are one line on stderr and exit status 1.
 * The server applies --log and --log-level itself.
 * Reference: man/kvfsd.8, man/kvfs.conf.5; issue 4.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/server.h"
#include "proto/auth.h"
#include "util/error.h"

#ifndef KVFS_VERSION
#define KVFS_VERSION "unknown"
#endif

int main(int argc, char **argv)
{
	struct kv_server_options *o = calloc(1, sizeof *o);
	struct kv_server *server = NULL;
	sigset_t stop_signals;
	char err[512];
	int rc, sig = 0, status = 1;

	if (!o) {
		fprintf(stderr, "kvfsd: out of memory\n");
		return 1;
	}
	/*
	 * Chunk frames are 4 MiB: keep them on the heap and keep up to 64 MiB
	 * of freed heap instead of mapping and unmapping each one — on a VM
	 * that hands freed memory back to its host, every fresh page faults
	 * twice (fuse/kvfs.c does the same for the mount). And two arenas, not
	 * one per thread: the event loop, which makes the chunk frames, runs
	 * on a thread of its own, and a thread's arena is a chain of 64 MiB
	 * heaps, each unmapped as soon as it empties, so that its 4 MiB
	 * buffers kept coming back as fresh pages (a 512 MiB write: 120-140k
	 * faults in the nodes, 98-100k with two arenas; doc/benchmarks.md).
	 */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_ARENA_MAX, 2);
	if (kv_auth_init() < 0) {
		fprintf(stderr, "kvfsd: cannot initialize libsodium\n");
		goto out;
	}
	kv_server_options_default(o);
	rc = kv_config_parse_args(o, argc, argv, err, sizeof err);
	if (rc == KV_CONFIG_HELP) {
		fputs(kv_config_usage(), stdout);
		status = 0;
		goto out;
	}
	if (rc == KV_CONFIG_VERSION) {
		printf("kvfsd %s\n", KVFS_VERSION);
		status = 0;
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "kvfsd: %s\n", err);
		goto out;
	}

	/*
	 * Block the stop signals before the server's thread exists, so that it
	 * inherits the mask and only sigwait() below receives them. A peer that
	 * closes its socket must not kill the process either.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	rc = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	if (rc) {
		fprintf(stderr, "kvfsd: cannot block signals: %s\n", strerror(rc));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);

	err[0] = '\0';
	rc = kv_server_start(o, &server, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "kvfsd: %s\n", err[0] ? err : "cannot start the node");
		goto out;
	}
	fprintf(stderr, "kvfsd: node %u listening on %s:%u (data %s, N=%u, R=%u, W=%u, sync=%s)\n",
		o->node_id, o->listen_host, kv_server_port(server), o->data_dir, o->n, o->r, o->w,
		o->sync);

	do {
		rc = sigwait(&stop_signals, &sig);
	} while (rc == EINTR);
	if (rc) {
		fprintf(stderr, "kvfsd: sigwait: %s\n", strerror(rc));
		sig = 0;
	}

	fprintf(stderr, "kvfsd: node %u stopping (%s)\n", o->node_id,
		sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "error");
	rc = kv_server_stop(server);
	server = NULL;
	if (rc < 0) {
		fprintf(stderr, "kvfsd: node %u did not stop cleanly: %s\n", o->node_id,
			kv_strerror(rc));
		goto out;
	}
	status = 0;
out:
	if (o)
		kv_auth_secret_release(&o->secret);
	free(o);
	return status;
}
