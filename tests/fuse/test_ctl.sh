#!/usr/bin/env bash
# tests/fuse/test_ctl.sh - `kvfsctl conflicts` and `kvfsctl fsck` over a
# mounted tree (issue 5; DESIGN §7 "Conflicts as files", "Directories";
# doc/fs.md §6; man/kvfsctl.8).
#
# Conflicts: two blind puts of one name (the hidden `put --fs-file --blind`)
# make two live versions; with root and nft, also a real one (partition
# 1 | 2,3 and two r=1,w=1 mounts, as test_conflicts.sh). `conflicts /` must
# list each with its versions in the mount's numbering and exit 3, and 0 once
# resolved through the mount. fsck: a planted intent record "SRC\0DST" is
# finished (the tree moves, the record goes); `--leases-older-than 0` removes
# a planted lease object and `--leases-older-than 3600` keeps a fresh one.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_ctl 7780 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000 --forward-timeout 500 --connect-timeout 500
ro="attr_timeout=0"
fz_mount m --cluster "$(fz_addr 1)" -o "timeout=5,$ro"
M=$(fz_mnt m)

step "no conflicts in a fresh tree: exit 0"
mkdir -p "$M/c/sub" "$M/src/deep" || fail "mkdir"
echo one >"$M/c/plain" || fail "write c/plain"
run ctl 1 conflicts /
assert_eq "$RC" 0 "conflicts / on a tree without conflicts: exit"
assert_eq "$(cat "$KV_TMP/out")" "" "conflicts / on a tree without conflicts: output"

step "two blind puts make a conflict in c/sub/g; conflicts lists it, exit 3"
printf 'first\n' >"$KV_TMP/v1"
printf 'second-longer\n' >"$KV_TMP/v2"
expect_ok "put --fs-file --blind v1" ctl 1 put --fs-file --blind /c/sub/g "$KV_TMP/v1"
sleep 0.05 # v2 gets the later timestamp: sibling-2
expect_ok "put --fs-file --blind v2" ctl 2 put --fs-file --blind /c/sub/g "$KV_TMP/v2"
run ctl 1 conflicts /
assert_eq "$RC" 3 "conflicts / with a conflict: exit (stderr: $(cat "$KV_TMP/err"))"
assert_eq "$(head -n 1 "$KV_TMP/out")" "$(printf '/c/sub/g\t2 versions')" "conflicts /: header"
assert_eq "$(wc -l <"$KV_TMP/out")" 3 "conflicts /: one header and two version lines"
assert_eq "$(sed -n 2p "$KV_TMP/out" | cut -f2,5)" "sibling-1	6 bytes" "conflicts /: version 1"
assert_eq "$(sed -n 3p "$KV_TMP/out" | cut -f2,5)" "sibling-2	14 bytes" "conflicts /: version 2"
run ctl 1 conflicts /c/sub
assert_eq "$RC" 3 "conflicts /c/sub: exit"
run ctl 1 conflicts /src
assert_eq "$RC" 0 "conflicts /src (no conflict below): exit"
# the mount shows the same numbering
assert_eq "$(fz_names "$M/c/sub")" "g g.sibling-1 g.sibling-2" "the mount's names"
assert_eq "$(cat "$M/c/sub/g.sibling-1")" first "the mount's sibling-1"
assert_eq "$(cat "$M/c/sub/g.sibling-2")" second-longer "the mount's sibling-2"

step "resolving through the mount: conflicts exits 0"
echo resolved >"$M/c/sub/g" || fail "write c/sub/g"
run ctl 1 conflicts /
assert_eq "$RC" 0 "conflicts / after resolving: exit (out: $(cat "$KV_TMP/out"))"

if [ "$(id -u)" -eq 0 ] && command -v nft >/dev/null; then
  step "a real conflict: partition 1 | 2,3, writes through two r=1,w=1 mounts"
  fz_mount a --cluster "$(fz_addr 1)" -o "r=1,w=1,timeout=5,$ro"
  fz_mount b --cluster "$(fz_addr 2)" -o "r=1,w=1,timeout=5,$ro"
  A=$(fz_mnt a) B=$(fz_mnt b)
  mkdir "$M/p" && echo base >"$M/p/f" || fail "write p/f"
  assert_eq "$(cat "$A/p/f")" base "A sees p/f before the partition"
  assert_eq "$(cat "$B/p/f")" base "B sees p/f before the partition"
  kc partition 1 2,3 || fail "kvfs-cluster partition failed"
  echo "from-A" >"$A/p/f" || fail "write through A (cut off)"
  sleep 0.05
  echo "from-B" >"$B/p/f" || fail "write through B"
  kc heal || fail "kvfs-cluster heal failed"
  for i in 1 2 3; do
    for try in $(seq 1 100); do
      rc=0
      ctl "$i" -r 3 -t 2000 get /p/f >/dev/null 2>&1 || rc=$?
      { [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; } && break
      [ "$try" -eq 100 ] && fail "node $i cannot read at R=3 10 s after the heal (exit $rc)"
      sleep 0.1
    done
  done
  run ctl 1 -r 3 conflicts /
  assert_eq "$RC" 3 "conflicts -r 3 / after the heal: exit"
  assert_eq "$(head -n 1 "$KV_TMP/out")" "$(printf '/p/f\t2 versions')" "conflicts after the heal: header"
  fz_mount ra --cluster "$(fz_addr 1)" -o "r=3,timeout=5,$ro"
  RA=$(fz_mnt ra)
  assert_eq "$(fz_names "$RA/p")" "f f.sibling-1 f.sibling-2" "the mount's names after the heal"
  assert_eq "$(cat "$RA/p/f.sibling-1")" from-A "the mount's p/f.sibling-1"
  mv "$RA/p/f.sibling-1" "$RA/p/f" || fail "mv p/f.sibling-1 p/f"
  run ctl 1 -r 3 conflicts /
  assert_eq "$RC" 0 "conflicts -r 3 / after mv f.sibling-1 f: exit (out: $(cat "$KV_TMP/out"))"
else
  step "(not root or no nft: the partition conflict is skipped)"
fi

step "fsck on a clean tree"
run ctl 1 fsck
assert_eq "$RC" 0 "fsck, clean: exit (stderr: $(cat "$KV_TMP/err"))"
grep -q "^fsck: 0 intents finished" "$KV_TMP/out" || fail "fsck, clean: summary: $(cat "$KV_TMP/out")"

step "fsck finishes a planted intent record (src -> dst)"
echo x-content >"$M/src/x" || fail "write src/x"
echo y-content >"$M/src/deep/y" || fail "write src/deep/y"
printf '/src\0/dst' >"$KV_TMP/intent"
expect_ok "plant intent" ctl 1 put --fs-file --blind /.kvfs/intents/00112233aabbccdd "$KV_TMP/intent"
printf 'garbage' >"$KV_TMP/bad"
expect_ok "plant malformed intent" ctl 1 put --fs-file --blind /.kvfs/intents/ffffffffffffffff "$KV_TMP/bad"
run ctl 1 conflicts /
assert_eq "$RC" 0 "conflicts skips /.kvfs: exit (out: $(cat "$KV_TMP/out"))"
run ctl 1 fsck
assert_eq "$RC" 0 "fsck with intents: exit (stderr: $(cat "$KV_TMP/err"))"
grep -q "^intent /.kvfs/intents/00112233aabbccdd: moved /src to /dst$" "$KV_TMP/out" ||
  fail "fsck: report of the intent: $(cat "$KV_TMP/out")"
grep -q "^intent /.kvfs/intents/ffffffffffffffff: malformed record" "$KV_TMP/out" ||
  fail "fsck: report of the malformed intent: $(cat "$KV_TMP/out")"
grep -q "^fsck: 1 intent finished" "$KV_TMP/out" || fail "fsck: summary: $(cat "$KV_TMP/out")"
run ctl 1 get /dst/x
assert_eq "$(cat "$KV_TMP/out")" x-content "dst/x after fsck"
run ctl 1 get /dst/deep/y
assert_eq "$(cat "$KV_TMP/out")" y-content "dst/deep/y after fsck"
run ctl 1 get /src/x
assert_eq "$RC" 2 "src/x after fsck: exit (not found)"
run ctl 1 get /.kvfs/intents/00112233aabbccdd
assert_eq "$RC" 2 "the intent record after fsck: exit (not found)"
run ctl 1 get /.kvfs/intents/ffffffffffffffff
assert_eq "$RC" 2 "the malformed record after fsck: exit (not found)"
fz_remount m --cluster "$(fz_addr 1)" -o "timeout=5,$ro"
names=" $(fz_names "$M") "
case $names in *" dst "*) ;; *) fail "the root through a new mount has no dst:$names" ;; esac
case $names in *" src "*) fail "the root through a new mount still has src:$names" ;; esac
assert_eq "$(cat "$M/dst/deep/y")" y-content "dst/deep/y through a new mount"
run ctl 1 fsck
grep -q "^fsck: 0 intents finished" "$KV_TMP/out" || fail "fsck again: $(cat "$KV_TMP/out")"

step "fsck --leases-older-than"
expect_ok "plant lease" ctl 1 put --fs-file --blind /.kvfs/leases/0123456789abcdef "$KV_TMP/v1"
run ctl 1 fsck --leases-older-than 3600
assert_eq "$RC" 0 "fsck --leases-older-than 3600: exit"
grep -q "; 0 leases removed, 1 kept$" "$KV_TMP/out" || fail "a fresh lease is kept: $(cat "$KV_TMP/out")"
run ctl 1 get /.kvfs/leases/0123456789abcdef
assert_eq "$RC" 0 "the fresh lease is still there: exit"
sleep 1.1
run ctl 1 fsck --leases-older-than 0
assert_eq "$RC" 0 "fsck --leases-older-than 0: exit (stderr: $(cat "$KV_TMP/err"))"
grep -q "^lease /.kvfs/leases/0123456789abcdef: removed" "$KV_TMP/out" ||
  fail "fsck: report of the lease: $(cat "$KV_TMP/out")"
run ctl 1 get /.kvfs/leases/0123456789abcdef
assert_eq "$RC" 2 "the old lease after fsck: exit (not found)"
run ctl 1 fsck --leases-older-than -1
assert_eq "$RC" 1 "fsck --leases-older-than -1: exit"
fz_done
