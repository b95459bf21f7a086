#!/usr/bin/env bash
# tests/fuse/test_chunkrepair.sh - read repair of chunks (doc/node.md "Read
# repair of chunks"). A file written while node 3 is down has its chunks on
# nodes 1 and 2 only (chunks have no hints). A cold read through a mount on
# node 3, which reads each chunk from itself first, finds them missing, reads
# them from another replica and stores them on node 3 (counted by
# chunk_read_repairs). Then, with nodes 1 and 2 killed, node 3 alone serves
# the whole file with the same sha256.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_chunkrepair 7870 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000 --sync batch:5
head -c $((9 * 1024 * 1024)) /dev/urandom >"$KV_TMP/big" || fail "head /dev/urandom"
want=$(sha256sum <"$KV_TMP/big" | cut -d' ' -f1)

step "node 3 down; a 9 MiB file written through nodes 1 and 2"
kc kill 3 || fail "kill node 3"
fz_mount w --cluster "$(fz_addr 1),$(fz_addr 2)" -o timeout=5
cp "$KV_TMP/big" "$(fz_mnt w)/big" || fail "cp big with node 3 down"
fz_umount w || fail "unmount w"
kc start 3 || fail "start node 3"

repairs() { ctl 3 stats | awk '$1 == "chunk_read_repairs" { print $2 }'; }
assert_eq "$(repairs)" 0 "chunk_read_repairs on node 3 before any read"

step "a cold read through node 3 repairs node 3's chunks"
fz_mount r --cluster "$(fz_addr 3)" -o timeout=5
got=$(sha256sum <"$(fz_mnt r)/big" | cut -d' ' -f1)
assert_eq "$got" "$want" "sha256 of big read through node 3"
fz_umount r || fail "unmount r"
n=$(repairs)
[ "${n:-0}" -ge 3 ] || fail "chunk_read_repairs on node 3 is ${n:-none}, want one per chunk (3 or more)"
step "node 3 stored $n chunks it lacked"

step "nodes 1 and 2 killed: node 3 alone serves the file"
# The file's key reached node 3 by read repair at that read (or by hinted
# handoff): wait, bounded, until node 3 answers it at R=1 by itself.
kc kill 1 || fail "kill node 1"
kc kill 2 || fail "kill node 2"
ok=0
for try in $(seq 1 50); do
  rc=0
  ctl 3 -r 1 -t 2000 get /big >"$KV_TMP/out" 2>"$KV_TMP/err" || rc=$?
  if [ "$rc" -eq 0 ]; then ok=1; break; fi
  sleep 0.1
done
[ "$ok" -eq 1 ] || fail "node 3 alone does not have /big: $(cat "$KV_TMP/err")"
fz_mount s --cluster "$(fz_addr 3)" -o r=1,w=1,timeout=5
got=$(sha256sum <"$(fz_mnt s)/big" | cut -d' ' -f1)
assert_eq "$got" "$want" "sha256 of big read from node 3 alone"
fz_umount s || fail "unmount s"
fz_done
