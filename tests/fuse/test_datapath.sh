#!/usr/bin/env bash
# tests/fuse/test_datapath.sh - the mount's data path (doc/fs.md §4) where
# it is concurrent: chunks a sequential writer fills are uploaded in the
# background while it goes on (SENDING, SENT), and sequential reads read
# several chunks ahead. Each case writes through one open descriptor of the
# mount and, in step, a local mirror file, then compares: through the same
# descriptor, after close, and after a remount (read cold from the cluster).
# Cases: overwrite inside a chunk already stored, rewrite of a whole chunk
# while its upload may run, truncate into a stored chunk then extend,
# fsync between chunks, reads of chunks in flight, and concurrent readers
# of one file whose read-ahead windows overlap.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_datapath 7730 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 5000
fz_mount m --cluster "$(fz_all)"
M=$(fz_mnt m)
L=$KV_TMP/local
mkdir -p "$L"
command -v python3 >/dev/null || skip "needs python3"

# ops.py MOUNT_FILE LOCAL_FILE CASE: applies CASE to both files through one
# descriptor each, checking every read through the mount's descriptor.
cat >"$KV_TMP/ops.py" <<'EOF'
import os, sys, hashlib
CS = 4 << 20
mpath, lpath, case = sys.argv[1], sys.argv[2], sys.argv[3]
m = os.open(mpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
l = os.open(lpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
seed = sum(map(ord, case))
def data(n, k):
    return hashlib.shake_256(b"%d-%d" % (seed, k)).digest(n)
def w(off, buf):
    assert os.pwrite(m, buf, off) == len(buf)
    assert os.pwrite(l, buf, off) == len(buf)
def t(size):
    os.ftruncate(m, size); os.ftruncate(l, size)
def check(what):
    size = os.fstat(l).st_size
    assert os.fstat(m).st_size == size, (what, os.fstat(m).st_size, size)
    off = 0
    while off < size:
        a = os.pread(m, 1 << 20, off); b = os.pread(l, 1 << 20, off)
        assert a == b, "%s: differs in [%d, %d)" % (what, off, off + (1 << 20))
        off += len(b)
def seq(start, n, step=1 << 20, k=0):
    for i in range(n):
        w(start + i * step, data(step, k + i))
if case == "overwrite-stored":
    seq(0, 12)                      # chunks 0..2 filled: uploaded behind the writer
    w(CS + 12345, data(1000, 99))   # into chunk 1, stored or in flight
    seq(12 << 20, 5, k=20)          # and on
elif case == "rewrite-chunk":
    seq(0, 4)                       # chunk 0 full: its upload starts
    seq(0, 4, k=50)                 # the whole chunk again at once
    seq(4 << 20, 6, k=60)
elif case == "truncate-extend":
    seq(0, 10)
    t(CS + 777)                     # into chunk 1 (SENT or SENDING)
    check("after truncate")
    t(3 * CS + 5)                   # extend: zeros
    w(2 * CS - 10, data(20, 7))
elif case == "fsync-between":
    seq(0, 9)
    os.fsync(m)                     # a flush in the middle
    seq(9 << 20, 9, k=30)
    w(100, data(10, 31))            # into chunk 0, already in a manifest
elif case == "read-in-flight":
    for i in range(16):
        w(i << 20, data(1 << 20, i))
        check("after write %d" % i) if i % 4 == 3 else None
elif case == "zeros":
    w(0, bytes(CS))                 # an all-zero chunk: a hole
    seq(CS, 5)
    w(7 * CS, bytes(CS))
else:
    sys.exit("unknown case " + case)
check("before close")
os.close(m); os.close(l)
EOF

CASES="overwrite-stored rewrite-chunk truncate-extend fsync-between read-in-flight zeros"
for c in $CASES; do
  step "case $c"
  python3 "$KV_TMP/ops.py" "$M/$c" "$L/$c" "$c" || fail "case $c: the mount read back something else (above)"
  assert_same_file "$M/$c" "$L/$c" "case $c after close"
done

step "remount: every case read cold from the cluster"
fz_remount m --cluster "$(fz_all)"
for c in $CASES; do assert_same_file "$M/$c" "$L/$c" "case $c after remount"; done

step "concurrent readers of one file (read-ahead windows overlap)"
head -c $((40 << 20)) /dev/urandom >"$L/big" || fail "head /dev/urandom"
expect_ok "cp in" cp "$L/big" "$M/big"
fz_remount m --cluster "$(fz_all)"
want=$(sha256sum <"$L/big" | cut -d' ' -f1)
pids=()
for i in 1 2 3; do
  (sha256sum <"$M/big" | cut -d' ' -f1 >"$KV_TMP/sum$i") &
  pids+=($!)
done
# A reader that starts in the middle, and one that reads backwards.
(tail -c $((17 << 20)) "$M/big" | sha256sum | cut -d' ' -f1 >"$KV_TMP/sumtail") &
pids+=($!)
for p in "${pids[@]}"; do wait "$p" || fail "a reader failed"; done
for i in 1 2 3; do assert_eq "$(cat "$KV_TMP/sum$i")" "$want" "reader $i"; done
assert_eq "$(cat "$KV_TMP/sumtail")" "$(tail -c $((17 << 20)) "$L/big" | sha256sum | cut -d' ' -f1)" "tail reader"
python3 - "$M/big" "$L/big" <<'EOF' || fail "backward reads differ"
import os, sys
m = os.open(sys.argv[1], os.O_RDONLY); l = os.open(sys.argv[2], os.O_RDONLY)
size = os.fstat(l).st_size
off = size
while off > 0:
    n = min(300000, off); off -= n
    assert os.pread(m, n, off) == os.pread(l, n, off), off
EOF
fz_done
