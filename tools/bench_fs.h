/*
 * bench_fs.h - `kvfs-bench fs MOUNTPOINT`: file system workloads on any
 * mounted directory (a kvfs mount, sshfs, passthrough_ll, the local disk),
 * so that tools/bench-fs compares them with one program (bench_fs.c).
 * Method: doc/benchmarks.md "The mount"; flags: man/kvfs-bench.1.
 */
#ifndef KV_TOOLS_BENCH_FS_H
#define KV_TOOLS_BENCH_FS_H

/*
 * Runs `kvfs-bench fs` with argv[1] == "fs". Prints progress and notes on
 * stderr and one "PHASE VALUE UNIT" line per phase that succeeded on stdout.
 * A failed phase (an I/O error, a short read, wrong content) is reported on
 * stderr and the phases that do not depend on it still run. Returns the
 * exit status: 0; 1 when a phase or a remount failed; 2 for bad flags.
 */
int bench_fs_main(int argc, char **argv);

#endif
