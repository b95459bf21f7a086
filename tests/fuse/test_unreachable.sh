#!/usr/bin/env bash
# tests/fuse/test_unreachable.sh - with every node killed, cat fails with
# EIO within the mount's timeout (plus a margin) and ls does not hang; after
# the nodes restart the same mount works again by itself (issue 5 "Show it
# works"; DESIGN §7 "Failure").
. "$(dirname "$0")/lib.sh"
fz_setup fuse_unreachable 7640 "$@"

TIMEOUT_S=3
MARGIN_S=4
fz_up 3 -- --n 3 --r 2 --w 2 --timeout 2000
fz_mount m --cluster "$(fz_all)" -o "timeout=$TIMEOUT_S"
M=$(fz_mnt m)
echo data >"$M/f" || fail "write f"
mkdir "$M/d" || fail "mkdir d"
assert_eq "$(cat "$M/f")" data "cat f"

step "killing every node"
for i in 1 2 3; do kc kill "$i" || fail "kill node $i"; done

step "cat f fails with EIO within ${TIMEOUT_S}s + ${MARGIN_S}s"
t0=$(now_ms)
run timeout 30 cat "$M/f"
dt=$(($(now_ms) - t0))
[ "$RC" -ne 124 ] || fail "cat hung (killed after 30 s)"
[ "$RC" -ne 0 ] || fail "cat succeeded with every node down: '$(cat "$KV_TMP/out")'"
grep -q 'Input/output error' "$KV_TMP/err" || fail "cat: want EIO, got: $(cat "$KV_TMP/err")"
[ "$dt" -le $(((TIMEOUT_S + MARGIN_S) * 1000)) ] || fail "cat took $dt ms (timeout ${TIMEOUT_S}s)"
step "cat failed after $dt ms: $(cat "$KV_TMP/err")"

step "ls does not hang"
for what in "$M" "$M/d"; do
  t0=$(now_ms)
  run timeout 30 ls -l "$what"
  dt=$(($(now_ms) - t0))
  [ "$RC" -ne 124 ] || fail "ls -l $what hung (killed after 30 s)"
  [ "$dt" -le $(((TIMEOUT_S + MARGIN_S) * 1000)) ] || fail "ls -l $what took $dt ms"
  step "ls -l $what: exit $RC after $dt ms $(head -c 200 "$KV_TMP/err")"
done
t0=$(now_ms)
run timeout 30 sh -c "echo new >'$M/g'"
dt=$(($(now_ms) - t0))
[ "$RC" -ne 124 ] || fail "a write hung (killed after 30 s)"
[ "$RC" -ne 0 ] || fail "a write succeeded with every node down"
[ "$dt" -le $(((TIMEOUT_S * 2 + MARGIN_S) * 1000)) ] || fail "the failed write took $dt ms"

step "restarting the nodes; the same mount recovers by itself"
for i in 1 2 3; do kc start "$i" || fail "start node $i"; done
ok=0
for _ in $(seq 1 30); do
  if [ "$(timeout 10 cat "$M/f" 2>/dev/null)" = data ]; then ok=1; break; fi
  sleep 1
done
[ "$ok" -eq 1 ] || fail "cat f still fails 30 s after the restart"
echo again >"$M/g" || fail "write after the restart"
assert_eq "$(cat "$M/g")" again "cat g after the restart"
assert_eq "$(fz_names "$M")" "d f g" "ls after the restart"
fz_done
