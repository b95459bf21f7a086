#!/usr/bin/env bash
# tests/fuse/test_conflicts.sh - the conflict story (issue 5 "Show it works";
# DESIGN §7 "Conflicts as files"), with real partitions (nftables: root).
#
# Mount A talks to node 1 and mount B to node 2, each -o r=1,w=1 so that
# both keep working while cut apart. gK/f exists before the cut; with
# `partition 1 2,3` each side writes a different content to gK/f (one directory per gesture, so every gesture
# gets a fresh conflict); after `heal`, mounts RA (node 1) and RB (node 2)
# with -o r=3 both list f, f.sibling-1, f.sibling-2 with the same numbering
# and contents. Then each gesture, made through RA, must end with the chosen
# outcome as seen through RA and through RB.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_conflicts 7630 "$@"
[ "$(id -u)" -eq 0 ] || skip "partitions need root (nftables)"
command -v nft >/dev/null || skip "no nft command"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000 --forward-timeout 500 --connect-timeout 500
ro="attr_timeout=0"
fz_mount a --cluster "$(fz_addr 1)" -o "r=1,w=1,timeout=5,$ro"
fz_mount b --cluster "$(fz_addr 2)" -o "r=1,w=1,timeout=5,$ro"
fz_mount ra --cluster "$(fz_addr 1)" -o "r=3,timeout=5,$ro"
fz_mount rb --cluster "$(fz_addr 2)" -o "r=3,timeout=5,$ro"
A=$(fz_mnt a) B=$(fz_mnt b) RA=$(fz_mnt ra) RB=$(fz_mnt rb)

GESTURES=(write mv_sibling cp_sibling edit_sibling rm_sibling rm_name mv_sibling_out mv_name new_sibling_name)
step "directories for ${#GESTURES[@]} gestures"
# f exists before the cut, so the writes below overwrite it on each side;
# lone/ gets a file created on one side only (checked at the end).
for g in "${GESTURES[@]}"; do
  mkdir "$RA/$g" || fail "mkdir $g"
  echo base >"$RA/$g/f" || fail "write $g/f"
done
mkdir "$RA/lone" || fail "mkdir lone"
mkdir -p "$RA/raced/sub" "$RA/raced2/sub" || fail "mkdir raced/sub raced2/sub"
# More removed-but-alive directories in one directory than a listing ever
# checked at once before (16).
MANY=$(seq -f 'm%02g' 1 20)
(cd "$RA" && mkdir many && cd many && mkdir $MANY) || fail "mkdir many/m01..m20"
for g in "${GESTURES[@]}"; do
  assert_eq "$(cat "$A/$g/f")" base "A sees $g/f before the partition"
  assert_eq "$(cat "$B/$g/f")" base "B sees $g/f before the partition"
done

step "partition 1 | 2,3; different contents through A and B"
kc partition 1 2,3 || fail "kvfs-cluster partition failed"
for g in "${GESTURES[@]}"; do
  echo "from-A $g" >"$A/$g/f" || fail "write through A (node 1, cut off) $g/f"
done
echo "only A" >"$A/lone/f" || fail "create lone/f through A (node 1, cut off)"
# A create racing an rmdir (DESIGN §7 "Directories"): B sees raced/sub empty
# and removes it, while A creates a file in it.
echo "kept" >"$A/raced/sub/f" || fail "create raced/sub/f through A (node 1, cut off)"
echo "kept" >"$A/raced2/sub/f" || fail "create raced2/sub/f through A (node 1, cut off)"
sleep 0.05 # B's versions get the later timestamps: sibling-1 is A's, sibling-2 is B's
for g in "${GESTURES[@]}"; do
  echo "from-B $g" >"$B/$g/f" || fail "write through B (node 2) $g/f"
done
rmdir "$B/raced/sub" "$B/raced2/sub" || fail "rmdir raced/sub raced2/sub through B (node 2)"
for m in $MANY; do echo "kept $m" >"$A/many/$m/f" || fail "create many/$m/f through A"; done
(cd "$B/many" && rmdir $MANY) || fail "rmdir many/m01..m20 through B (node 2)"
for g in "${GESTURES[@]}"; do
  assert_eq "$(cat "$A/$g/f")" "from-A $g" "A reads its own write while cut off ($g)"
  assert_eq "$(cat "$B/$g/f")" "from-B $g" "B reads its own write while cut off ($g)"
done
kc heal || fail "kvfs-cluster heal failed"
# A healed node fails requests to the peers it gave up on until its
# reconnect backoff ends (at most 0.5 s) or they reconnect to it: wait,
# bounded, until every node reads at R=3 again.
for i in 1 2 3; do
  for try in $(seq 1 100); do
    rc=0
    ctl "$i" -r 3 -t 2000 get "/${GESTURES[0]}/f" >/dev/null 2>&1 || rc=$?
    { [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; } && break
    [ "$try" -eq 100 ] && fail "node $i cannot read at R=3 10 s after the heal (exit $rc)"
    sleep 0.1
  done
done

# seen DIR G: "names | f=content | ..." of directory G through DIR.
seen() {
  local d=$1/$2 n out
  out=$(fz_names "$d")
  for n in $out; do
    [ -f "$d/$n" ] && out="$out | $n=$(cat "$d/$n" 2>&1)"
  done
  echo "$out"
}
# both G WANT WHAT: G as seen through RA and RB is WANT.
both() {
  assert_eq "$(seen "$RA" "$1")" "$2" "$3 (through RA, node 1)"
  assert_eq "$(seen "$RB" "$1")" "$2" "$3 (through RB, node 2)"
}

step "after heal, r=3 on each side shows both versions with the same numbers"
for g in "${GESTURES[@]}"; do
  both "$g" "f f.sibling-1 f.sibling-2 | f=from-B $g | f.sibling-1=from-A $g | f.sibling-2=from-B $g" \
    "conflict in $g"
done
n=$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.kvfs.siblings").decode().strip("\0\n "))' \
  "$RA/write/f" 2>&1) || fail "getxattr user.kvfs.siblings: $n"
assert_eq "$n" 2 "user.kvfs.siblings of a conflicted f"

g=write
step "gesture: write f"
echo "resolved" >"$RA/$g/f" || fail "write f"
both "$g" "f | f=resolved" "after writing f"

g=mv_sibling
step "gesture: mv f.sibling-1 f"
ls "$RA/$g" >/dev/null
mv "$RA/$g/f.sibling-1" "$RA/$g/f" || fail "mv f.sibling-1 f"
both "$g" "f | f=from-A $g" "after mv f.sibling-1 f"

g=cp_sibling
step "gesture: cp f.sibling-2 f"
ls "$RA/$g" >/dev/null
cp "$RA/$g/f.sibling-2" "$RA/$g/f" || fail "cp f.sibling-2 f"
both "$g" "f | f=from-B $g" "after cp f.sibling-2 f"

g=edit_sibling
step "gesture: sed -i on f.sibling-1"
ls "$RA/$g" >/dev/null
sed -i 's/from-A/edited/' "$RA/$g/f.sibling-1" || fail "sed -i f.sibling-1"
both "$g" "f | f=edited $g" "after sed -i f.sibling-1"

g=rm_sibling
step "gesture: rm f.sibling-1"
ls "$RA/$g" >/dev/null
rm "$RA/$g/f.sibling-1" || fail "rm f.sibling-1"
both "$g" "f | f=from-B $g" "after rm f.sibling-1"

g=rm_name
step "gesture: rm f, then rm f.sibling-2 quietly"
ls "$RA/$g" >/dev/null
rm "$RA/$g/f" || fail "rm f"
run rm "$RA/$g/f.sibling-2"
[ "$RC" -eq 0 ] || fail "rm f.sibling-2 after rm f: exit $RC: $(cat "$KV_TMP/err")"
assert_eq "$(cat "$KV_TMP/err")" "" "rm f.sibling-2 after rm f: stderr"
both "$g" "" "after rm f"

g=mv_sibling_out
step "gesture: mv f.sibling-1 g"
ls "$RA/$g" >/dev/null
mv "$RA/$g/f.sibling-1" "$RA/$g/g" || fail "mv f.sibling-1 g"
both "$g" "f g | f=from-B $g | g=from-A $g" "after mv f.sibling-1 g"

g=mv_name
step "gesture: mv f g (g gets both versions)"
ls "$RA/$g" >/dev/null
mv "$RA/$g/f" "$RA/$g/g" || fail "mv f g"
both "$g" "g g.sibling-1 g.sibling-2 | g=from-B $g | g.sibling-1=from-A $g | g.sibling-2=from-B $g" \
  "after mv f g"

g=new_sibling_name
step "gesture: creating x.sibling-3 is refused with EINVAL"
got=$(python3 - "$RA/$g/x.sibling-3" <<'EOF'
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644))
    print("created")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
)
assert_eq "$got" EINVAL "open(O_CREAT) of x.sibling-3"
got=$(python3 -c 'import errno, os, sys
try:
    os.mkdir(sys.argv[1]); print("created")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))' "$RA/$g/d.sibling-1")
assert_eq "$got" EINVAL "mkdir d.sibling-1"
both "$g" "f f.sibling-1 f.sibling-2 | f=from-B $g | f.sibling-1=from-A $g | f.sibling-2=from-B $g" \
  "the refused create changed nothing"
step "a directory removed on one side lives on through the file created in it on the other"
# Through RA and RB, and through a mount made after the heal that never saw
# raced/sub before its rmdir: the listing and the lookup both find it.
fz_mount rc --cluster "$(fz_addr 3)" -o "r=3,timeout=5,$ro"
RC=$(fz_mnt rc)
for m in "$RC" "$RA" "$RB"; do
  assert_eq "$(fz_names "$m/raced")" "sub" "$m/raced lists sub (alive through its child)"
  assert_eq "$(cat "$m/raced/sub/f" 2>&1)" "kept" "$m/raced/sub/f"
  [ -d "$m/raced/sub" ] || fail "$m/raced/sub is not a directory"
done
want_many=$(echo $MANY)
assert_eq "$(fz_names "$RC/many")" "$want_many" "many lists all 20 removed directories alive through a child"
for m in $MANY; do assert_eq "$(cat "$RC/many/$m/f" 2>&1)" "kept $m" "many/$m/f"; done
fz_umount rc || fail "unmount rc"
# A listing within attr_timeout of the last asks only for the listing: the
# checks of the removed directories are kept while their versions stay.
fz_mount rc --cluster "$(fz_addr 3)" -o "r=3,timeout=5,attr_timeout=60"
RC=$(fz_mnt rc)
lists() { fz_counters | awk '$1 == "list_requests" { print $2 }'; }
l0=$(lists)
assert_eq "$(fz_names "$RC/many")" "$want_many" "many through a mount with attr_timeout=60"
l1=$(lists)
assert_eq "$(fz_names "$RC/many")" "$want_many" "many listed again"
l2=$(lists)
step "LIST requests for many: $((l1 - l0)) the first time, $((l2 - l1)) again"
[ $((l1 - l0)) -ge 21 ] || fail "the first listing of many made $((l1 - l0)) LIST requests, want the page and 20 checks"
[ $((l2 - l1)) -le 2 ] || fail "listing many again made $((l2 - l1)) LIST requests, want only the page's"
fz_umount rc || fail "unmount rc"
fz_mount rc --cluster "$(fz_addr 3)" -o "r=3,timeout=5,$ro"
RC=$(fz_mnt rc)
assert_eq "$(stat -c %F "$RC/raced/sub" 2>&1)" "directory" "fresh mount: lookup of raced/sub before any listing"
# mv of the parent carries the removed directory, alive through its child.
mv "$RC/raced" "$RC/moved" || fail "mv raced moved"
fz_umount rc || fail "unmount rc"
fz_mount rc --cluster "$(fz_addr 3)" -o "r=3,timeout=5,$ro"
RC=$(fz_mnt rc)
names=" $(fz_names "$RC") "
[[ "$names" == *" moved "* && "$names" != *" raced "* ]] || fail "the root after mv raced moved: $names"
assert_eq "$(fz_names "$RC/moved")" "sub" "moved lists sub (alive through its child)"
assert_eq "$(cat "$RC/moved/sub/f" 2>&1)" "kept" "moved/sub/f"
rm "$RC/moved/sub/f" || fail "rm moved/sub/f"
assert_eq "$(fz_names "$RC/moved")" "" "with its last child gone the removed directory is gone"
fz_umount rc || fail "unmount rc"
# rm -r walks into such a directory and removes it quietly, as any other:
# with the default timeouts (many/m01..m20), and with attr_timeout=0
# (raced2), where the kernel looks the directory up again after its last
# child went, and the mount that emptied it still finds it for its rmdir.
rm_r_quietly() { # rm_r_quietly OPTIONS DIR: rm -r DIR through a fresh mount
  fz_mount rc --cluster "$(fz_addr 3)" -o "$1"
  RC=$(fz_mnt rc)
  out=$(rm -r "$RC/$2" 2>&1) || fail "rm -r $2 (-o $1): $out"
  assert_eq "$out" "" "rm -r $2 says nothing"
  [ ! -e "$RC/$2" ] || fail "$2 still exists after rm -r"
  fz_umount rc || fail "unmount rc"
}
rm_r_quietly "r=3,timeout=5" many
rm_r_quietly "r=3,timeout=5,$ro" raced2
fz_mount rc --cluster "$(fz_addr 3)" -o "r=3,timeout=5,$ro"
RC=$(fz_mnt rc)
[ ! -e "$RC/raced2" ] || fail "raced2 exists through a fresh mount after rm -r: $(fz_names "$RC/raced2")"
[ ! -e "$RC/many" ] || fail "many exists through a fresh mount after rm -r: $(fz_names "$RC/many")"
fz_umount rc || fail "unmount rc"

step "a file created on one side of the cut has one version after heal"
# (A create is a put with an empty context: a stale copy of it applied by
# another node after the heal would show up here as an empty sibling.)
both lone "f | f=only A" "lone/f, created through A while cut off"
fz_done
