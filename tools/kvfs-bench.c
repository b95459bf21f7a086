/*
 * kvfs-bench - benchmarks for kvfs, and the side-by-side harness's helpers.
 *
 *   kvfs-bench storage [flags]    db_bench's shapes on the kvfs storage engine
 *   kvfs-bench leveldb [flags]    the same, on LevelDB through its C API
 *   kvfs-bench fsync [flags]      raw append + fdatasync latency of a disk
 *   kvfs-bench measure -- CMD     runs CMD, reports its wchar and peak RSS
 *   kvfs-bench hiccup             how long the machine stops running a thread
 *   kvfs-bench cluster -c ADDRS   load on a running kvfs cluster (or etcd's gateway)
 *   kvfs-bench fs MOUNTPOINT      file system workloads on a mount (tools/bench-fs)
 *
 * tools/bench-storage runs kvfs, LevelDB and RocksDB's db_bench one after
 * another with these. Manual: man/kvfs-bench.1; method: doc/benchmarks.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_cluster.h"
#include "bench_fs.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfs-bench COMMAND [flags]\n"
		"  storage  db_bench-style benchmarks of the kvfs storage engine\n"
		"  leveldb  the same benchmarks on LevelDB%s\n"
		"  fsync    raw durable-append latency of the disk under --dir\n"
		"  measure  run a command; report the bytes it wrote and its peak RSS\n"
		"  hiccup   how long this machine stops running a thread that sleeps 1 ms\n"
		"  cluster  put/get load on a running cluster (kvfs, or etcd for comparison)\n"
		"  fs       file workloads on a mounted directory (kvfs, sshfs, local disk)\n"
		"Run 'kvfs-bench COMMAND --help' for the flags; see kvfs-bench(1).\n",
#ifdef KVFS_BENCH_LEVELDB
		""
#else
		" (not built in: LevelDB was not found)"
#endif
	);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "storage")) {
		struct bench_flags f;
		bench_flags_parse(&f, "kvfs", argc, argv, 2);
		return bench_run(&bench_engine_kvfs, &f);
	}
	if (!strcmp(cmd, "leveldb")) {
#ifdef KVFS_BENCH_LEVELDB
		struct bench_flags f;
		bench_flags_parse(&f, "leveldb", argc, argv, 2);
		return bench_run(&bench_engine_leveldb, &f);
#else
		fprintf(stderr, "kvfs-bench: leveldb: not built in (install libleveldb-dev "
				"and reconfigure)\n");
		return 2;
#endif
	}
	if (!strcmp(cmd, "fsync"))
		return bench_fsync_main(argc, argv);
	if (!strcmp(cmd, "hiccup"))
		return bench_hiccup_main(argc, argv);
	if (!strcmp(cmd, "measure"))
		return bench_measure_main(argc, argv);
	if (!strcmp(cmd, "cluster"))
		return bench_cluster_main(argc, argv);
	if (!strcmp(cmd, "fs"))
		return bench_fs_main(argc, argv);
	fprintf(stderr, "kvfs-bench: unknown command '%s' (try kvfs-bench --help)\n", cmd);
	return 2;
}
