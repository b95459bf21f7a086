#!/usr/bin/env bash
# tests/fuse/test_unlink.sh - write-behind unlink (doc/fs.md §5, kvfs(1)
# "sync_unlink"): unlink answers once its DELETE is queued, and the rules
# keep that invisible to the shell: rm of many files then rmdir works and
# leaves nothing in the cluster (request counters, kvfsctl list, a second
# mount); unlink then create of the same name never makes a sibling; ls
# after rm never shows the name; unmount right after rm leaves nothing
# behind; a background delete that fails is reported by fsync of the
# directory, and with every node killed rm fails within the timeout.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_unlink 7850 "$@"

N=${KV_UNLINK_N:-300}
TIMEOUT_S=3
MARGIN_S=4
fz_up 3 -- --n 3 --r 2 --w 2 --timeout 2000 --sync batch:5
fz_mount a --cluster "$(fz_all)"
fz_mount b --cluster "$(fz_addr 2)"
A=$(fz_mnt a)
B=$(fz_mnt b)

# delta NAME: counter NAME between $KV_TMP/before and $KV_TMP/after.
delta() {
  join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$KV_TMP/before" "$KV_TMP/after" |
    awk -v n="$1" '$1 == n { s += $3 - $2 } END { print s + 0 }'
}

# mkfiles DIR N [PREFIX]: N small files DIR/PREFIXnnnnn.
mkfiles() {
  python3 - "$1" "$2" "${3:-f}" <<'EOF' || fail "creating $2 files in $1"
import os, sys
d, n, p = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    with open(os.path.join(d, "%s%05d" % (p, i)), "wb") as f:
        f.write(b"x" * (i % 100 + 1))
EOF
}

step "rm of $N files then rmdir (names this mount wrote: no read before the delete)"
mkdir "$A/d" || fail "mkdir d"
mkfiles "$A/d" "$N"
fz_counters >"$KV_TMP/before"
t0=$(now_ms)
expect_ok "rm of $N files" find "$A/d" -type f -delete
t1=$(now_ms)
expect_ok "rmdir d right after rm" rmdir "$A/d"
t2=$(now_ms)
fz_counters >"$KV_TMP/after"
step "rm: $((t1 - t0)) ms, rmdir (waits for the queued deletes): $((t2 - t1)) ms"
# One DELETE per file; the directory's tombstone carries its metadata (a
# PUT with the TOMBSTONE flag, doc/fs.md §2); no GET per file.
assert_eq "$(delta delete_requests)" "$N" "DELETE requests of rm of $N files"
assert_eq "$(delta put_requests)" 1 "PUT requests of rm of $N files and rmdir (the rmdir's tombstone)"
gets=$(delta get_requests)
[ "$gets" -le 10 ] || fail "rm of $N files cost $gets GETs (want none per file)"
[ ! -e "$A/d" ] || fail "d still exists through a"
[ ! -e "$B/d" ] || fail "d still exists through b (another node)"
expect_ok "kvfsctl list /" ctl 1 list /
grep -qx d "$KV_TMP/out" && fail "kvfsctl list / still shows d"
expect_ok "kvfsctl list /d" ctl 3 list /d
assert_eq "$(cat "$KV_TMP/out")" "" "kvfsctl list /d after rm and rmdir"

step "rm -r of a tree after a remount (names resolved from the listing)"
mkdir -p "$A/t/s1" "$A/t/s2" || fail "mkdir -p t/s1 t/s2"
mkfiles "$A/t/s1" 60
mkfiles "$A/t/s2" 60
fz_remount a --cluster "$(fz_all)"
ls -l "$A/t/s1" "$A/t/s2" >/dev/null || fail "ls -l t/s1 t/s2"
expect_ok "rm -r t" rm -r "$A/t"
[ ! -e "$A/t" ] || fail "t still exists after rm -r"
[ ! -e "$B/t" ] || fail "t still exists through b after rm -r"

step "unlink then create of the same name, 100 times: content right, no sibling"
mkdir "$A/u" || fail "mkdir u"
mkfiles "$A/u" 5 g
python3 - "$A/u" <<'EOF' || fail "unlink/create loop"
import os, sys
d = sys.argv[1]
for r in range(100):
    p = os.path.join(d, "g%05d" % (r % 5))
    os.unlink(p)
    with open(p, "wb") as f:
        f.write(b"round %d\n" % r)
    with open(p, "rb") as f:
        got = f.read()
    if got != b"round %d\n" % r:
        sys.exit("%s: read back %r after round %d" % (p, got, r))
EOF
assert_eq "$(fz_names "$A/u")" "g00000 g00001 g00002 g00003 g00004" "u/ through a"
assert_eq "$(fz_names "$B/u")" "g00000 g00001 g00002 g00003 g00004" "u/ through b (no sibling)"
for k in 0 1 2 3 4; do
  assert_eq "$(cat "$B/u/g0000$k")" "round $((95 + k))" "u/g0000$k through b"
done

step "unlink then ls never shows the name"
mkdir "$A/v" || fail "mkdir v"
python3 - "$A/v" <<'EOF' || fail "unlink then listdir"
import os, sys
d = sys.argv[1]
for i in range(50):
    p = os.path.join(d, "h%03d" % i)
    with open(p, "wb") as f:
        f.write(b"h")
    os.unlink(p)
    names = os.listdir(d)
    if names:
        sys.exit("round %d: listdir shows %s right after unlink" % (i, names))
    if os.path.lexists(p):
        sys.exit("round %d: %s still exists after unlink" % (i, p))
EOF
mkfiles "$A/v" 100 k
python3 - "$A/v" <<'EOF' || fail "rm of 100 files then listdir"
import os, sys
d = sys.argv[1]
for n in sorted(os.listdir(d)):
    os.unlink(os.path.join(d, n))
left = os.listdir(d)
if left:
    sys.exit("listdir right after the unlinks shows %d names: %s" % (len(left), left[:5]))
EOF
assert_eq "$(fz_names "$B/v")" "" "v/ through b after the unlinks"

step "unlink after a remount: read-ahead pages taken while deletes are queued hide nothing"
mkdir "$A/x" || fail "mkdir x"
mkfiles "$A/x" 600
fz_remount a --cluster "$(fz_all)"
python3 - "$A/x" 600 <<'EOF' || fail "unlink after a remount, then lstat"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
# Descending: each read-ahead page (names after the one looked up) covers
# names just unlinked, whose deletes may still be queued.
for i in reversed(range(n)):
    os.unlink(os.path.join(d, "f%05d" % i))
    for j in (i + 2, i + 5):
        if j < n and os.path.lexists(os.path.join(d, "f%05d" % j)):
            sys.exit("f%05d exists again after the unlink of f%05d" % (j, i))
# Lookups of names whose deletes may still be queued or done: each absent.
# A read-ahead page read while a delete was queued must not bring it back.
back = [i for i in range(n) if os.path.lexists(os.path.join(d, "f%05d" % i))]
if back:
    sys.exit("%d unlinked names exist again: f%05d..." % (len(back), back[0]))
EOF
assert_eq "$(fz_names "$A/x")" "" "x/ after the unlinks (through a)"
assert_eq "$(fz_names "$B/x")" "" "x/ after the unlinks (through b)"

step "unmount right after rm: the queued deletes are sent before the mount exits"
mkdir "$A/w" || fail "mkdir w"
mkfiles "$A/w" 200
fz_counters >"$KV_TMP/before"
expect_ok "rm of 200 files" find "$A/w" -type f -delete
fz_umount a
fz_counters >"$KV_TMP/after"
assert_eq "$(delta delete_requests)" 200 "DELETE requests of rm of 200 files, then unmount"
expect_ok "kvfsctl list /w" ctl 2 list /w
assert_eq "$(cat "$KV_TMP/out")" "" "kvfsctl list /w after rm and unmount"
assert_eq "$(fz_names "$B/w")" "" "w/ through b after rm and unmount"

step "-o sync_unlink: each unlink waits for its DELETE"
fz_mount s --cluster "$(fz_all)" -o sync_unlink
S=$(fz_mnt s)
mkfiles "$S/w" 20
fz_counters >"$KV_TMP/before"
expect_ok "rm with sync_unlink" find "$S/w" -type f -delete
fz_counters >"$KV_TMP/after"
assert_eq "$(delta delete_requests)" 20 "DELETE requests counted right after rm (sync_unlink)"
fz_stop_mount s

step "every node killed: a queued delete fails, fsync of the directory says EIO, rm fails in time"
# attr_timeout=30: the kernel keeps its entries, so the unlink of a name
# this mount wrote reaches the mount without a lookup and is queued.
fz_mount c --cluster "$(fz_all)" -o "timeout=$TIMEOUT_S,attr_timeout=30"
C=$(fz_mnt c)
mkdir "$C/e" || fail "mkdir e"
echo one >"$C/e/g1" || fail "write e/g1"
echo two >"$C/e/g2" || fail "write e/g2"
for i in 1 2 3; do kc kill "$i" || fail "kill node $i"; done
t0=$(now_ms)
run timeout 30 rm "$C/e/g1"
dt=$(($(now_ms) - t0))
[ "$RC" -ne 124 ] || fail "rm e/g1 hung (killed after 30 s)"
step "rm e/g1 with every node down: exit $RC after $dt ms (0: queued) $(head -c 200 "$KV_TMP/err")"
if [ "$RC" -eq 0 ]; then
  t0=$(now_ms)
  run timeout 30 python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$C/e"
  dt=$(($(now_ms) - t0))
  [ "$RC" -ne 124 ] || fail "fsync of e/ hung (killed after 30 s)"
  [ "$RC" -ne 0 ] || fail "fsync of e/ succeeded although the delete of e/g1 failed"
  grep -q 'Input/output error' "$KV_TMP/err" || fail "fsync of e/: want EIO, got: $(cat "$KV_TMP/err")"
  [ "$dt" -le $(((TIMEOUT_S + MARGIN_S) * 1000)) ] || fail "fsync of e/ took $dt ms (timeout ${TIMEOUT_S}s)"
  step "fsync of e/ failed with EIO after $dt ms"
fi
t0=$(now_ms)
run timeout 30 rm "$C/e/g2"
dt=$(($(now_ms) - t0))
[ "$RC" -ne 124 ] || fail "rm e/g2 hung (killed after 30 s)"
[ "$RC" -ne 0 ] || fail "rm e/g2 succeeded with every node down (after a failed call)"
grep -q 'Input/output error' "$KV_TMP/err" || fail "rm e/g2: want EIO, got: $(cat "$KV_TMP/err")"
[ "$dt" -le $(((TIMEOUT_S + MARGIN_S) * 1000)) ] || fail "rm e/g2 took $dt ms (timeout ${TIMEOUT_S}s)"
step "rm e/g2 failed with EIO after $dt ms"

step "restarting the nodes; the same mount recovers by itself"
for i in 1 2 3; do kc start "$i" || fail "start node $i"; done
ok=0
for _ in $(seq 1 30); do
  if [ "$(timeout 10 cat "$C/e/g2" 2>/dev/null)" = two ]; then ok=1; break; fi
  sleep 1
done
[ "$ok" -eq 1 ] || fail "cat e/g2 still fails 30 s after the restart"
# The delete of g1 failed: g1 is back, with its content.
assert_eq "$(fz_names "$C/e")" "g1 g2" "e/ after the restart"
assert_eq "$(cat "$C/e/g1")" one "e/g1 after its delete failed"
expect_ok "rm e/g1 e/g2 after the restart" rm "$C/e/g1" "$C/e/g2"
expect_ok "rmdir e after the restart" rmdir "$C/e"
assert_eq "$(fz_names "$B")" "u v w x" "the root through b at the end"
fz_done "write-behind unlink"
