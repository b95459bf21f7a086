/*
 * bench_cluster.h - `kvfs-bench cluster`, the load generator for a running
 * kvfs cluster and for etcd's v3 JSON gateway (bench_cluster.c).
 * Method: doc/benchmarks.md "The cluster"; flags: man/kvfs-bench.1.
 */
#ifndef KV_TOOLS_BENCH_CLUSTER_H
#define KV_TOOLS_BENCH_CLUSTER_H

#include "bench.h"

/*
 * Runs `kvfs-bench cluster` with argv[1] == "cluster". Prints progress on
 * stderr and one summary line per operation type on stdout. Returns the exit
 * status: 0, 1 when the target failed or any operation failed, 2 for bad
 * flags (bad flags exit 2 directly).
 */
int bench_cluster_main(int argc, char **argv);

#endif
