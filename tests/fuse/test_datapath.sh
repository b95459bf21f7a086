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
# of one file whose read-ahead windows overlap. A sequential writer's
# chunks never touch staging (MEM, MSENDING, STORED): cases that write
# sequentially then overwrite, truncate or append into those chunks, leave
# holes, or mix small writes and fsyncs; each is also read through a second
# mount of the same cluster (sha256) after close.
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
elif case == "seq-overwrite-middle":
    seq(0, 14, step=300000)         # chunk 0 stored from memory, chunk 1 partly in memory
    check("after seq")
    w(CS - 5000, data(10000, 70))   # across chunks 0 (MSENDING/STORED) and 1 (MEM)
    w(2 * CS + 4096, data(4096, 71)) # past the end, in the chunk after the buffer
    check("after overwrite")
    seq(3 * CS, 6, k=72)            # and on, sequentially
elif case == "seq-hole":
    seq(0, 6)                       # chunk 0 stored, chunk 1 half in memory
    w(9 * CS + 1000, data(3 << 20, 80)) # far past a hole
    check("after hole")
    seq(6 << 20, 2, k=81)           # fill the rest of chunk 1
    w(3 * CS - 1, data(2, 82))      # a byte at each side of a boundary inside the hole
elif case == "truncate-mem":
    seq(0, 6)                       # chunk 1 in memory: 2 MiB
    t(CS + 1000)                    # into the chunk in memory
    check("after truncate down")
    t(CS + (3 << 20))               # and up: zeros
    w(CS + 2000, data(500, 90))     # inside the zeros
    check("after truncate up")
    seq(CS + (3 << 20), 3, k=91)    # fills chunk 1, into chunk 2
    t(2 * CS)                       # the end of chunk 1 exactly
    seq(2 * CS, 5, k=95)
elif case == "small-then-big":
    w(0, data(5000, 100)); os.fsync(m) # inline, kept in memory
    w(5000, data(3000, 101)); os.fsync(m)
    w(3, data(10, 102))
    seq(8000, 10, step=1 << 20, k=103) # grows past the inline limit and a chunk
    os.fsync(m)
    check("after fsync")
    w(CS + 17, data(100, 120))      # into a chunk a manifest names (fetched back)
    w(1 << 20, data(2 << 20, 121))  # and chunk 0
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
CASES="$CASES seq-overwrite-middle seq-hole truncate-mem small-then-big"
for c in $CASES; do
  step "case $c"
  python3 "$KV_TMP/ops.py" "$M/$c" "$L/$c" "$c" || fail "case $c: the mount read back something else (above)"
  assert_same_file "$M/$c" "$L/$c" "case $c after close"
done

step "O_APPEND after a sequential run"
head -c $((9 << 20)) /dev/urandom >"$L/app" || fail "head /dev/urandom"
head -c $((6 << 20)) "$L/app" >"$M/app" || fail "head into the mount"
python3 - "$M/app" "$L/app" <<'EOF' || fail "O_APPEND writes failed"
import os, sys
src = open(sys.argv[2], "rb").read()
f = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.pwrite(f, src[6 << 20:(6 << 20) + 700000], 0)   # O_APPEND: at the end whatever the offset
os.write(f, src[(6 << 20) + 700000:])
os.close(f)
EOF
assert_same_file "$M/app" "$L/app" "O_APPEND after a sequential run"

step "a second mount of the cluster reads every file alike (sha256)"
fz_mount m2 --cluster "$(fz_all)"
M2=$(fz_mnt m2)
for c in $CASES app; do
  assert_eq "$(sha256sum <"$M2/$c" | cut -d' ' -f1)" "$(sha256sum <"$L/$c" | cut -d' ' -f1)" \
    "$c through a second mount"
done
fz_umount m2

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

step "background uploads fail while every node is down: the close stores the chunks"
python3 - "$M/down" "$L/down" "$KV_CLUSTER_TOOL" "$KV_DIR" <<'EOF' || fail "writes across a cluster outage differ"
import os, sys, subprocess
mpath, lpath, tool, kdir = sys.argv[1:5]
m = os.open(mpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
l = os.open(lpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
def seq(first, n):
    for i in range(first, first + n):
        buf = os.urandom(1 << 20)
        assert os.pwrite(m, buf, i << 20) == len(buf)
        os.pwrite(l, buf, i << 20)
seq(0, 6)                      # chunk 0 stored, chunk 1 in memory
for i in (1, 2, 3):
    subprocess.run([tool, "--dir", kdir, "kill", str(i)], check=True)
seq(6, 10)                     # chunks 1..3 fill; their uploads fail
for i in (1, 2, 3):
    subprocess.run([tool, "--dir", kdir, "start", str(i)], check=True)
seq(16, 3)
os.close(l)
os.close(m)                    # the flush stores what failed, or this fails
EOF
assert_same_file "$M/down" "$L/down" "written across an outage"
fz_remount m --cluster "$(fz_all)"
assert_same_file "$M/down" "$L/down" "written across an outage, after remount"
fz_done
