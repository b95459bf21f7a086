#!/usr/bin/env bash
# tests/fuse/test_differential.sh - the differential test (issue 5 "Show it
# works", last item): fsdiff.py applies one seeded random sequence of file
# operations to a directory on local disk and to a 3-node cluster's mount,
# comparing every result and the final trees. It prints its seed;
# KV_SEED=<seed> replays it. KV_DIFF_OPS sets the length (default 2000).
. "$(dirname "$0")/lib.sh"
fz_setup fuse_differential 7670 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000 --sync batch:5
fz_mount m --cluster "$(fz_all)"
mkdir -p "$KV_TMP/local" "$(fz_mnt m)/t" || fail "mkdir"
python3 "$FZ_LIB_DIR/fsdiff.py" "$KV_TMP/local" "$(fz_mnt m)/t" --ops "${KV_DIFF_OPS:-2000}" ||
  fail "the mount differs from the local disk (see above)"
step "remount: the tree is the same from the cluster"
fz_remount m --cluster "$(fz_all)"
expect_ok "diff -r after remount" diff -r --no-dereference "$KV_TMP/local" "$(fz_mnt m)/t"
fz_done
