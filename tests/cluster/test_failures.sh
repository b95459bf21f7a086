#!/usr/bin/env bash
# tests/cluster/test_failures.sh [BUILD_DIR] - issue 4 "Show it works": with
# one node of three killed, R=2 and W=2 puts and gets succeed through each
# live node; with two killed, a W=2 put fails with a clear error within the
# timeout (< timeout + 3 s): no hang, no false success. (The value may remain
# on the live replica, DESIGN §3; this test does not look.)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup failures 27200 "${1:-}"

timeout_ms=2000
kv_up 3 -- --n 3 --timeout "$timeout_ms"

step "all up: a first value"
expect_ok "put /f/before" ctl 1 -w 3 put /f/before - < <(printf 'before')

step "SIGKILL node 3"
kc kill 3 || fail "kvfs-cluster kill 3"

for i in 1 2; do
  step "one node down: put -r 2 -w 2 through node $i"
  t0=$(now_ms)
  expect_ok "put -r 2 -w 2 of /f/one$i through node $i with node 3 down" \
    ctl "$i" -r 2 -w 2 -t "$timeout_ms" put "/f/one$i" - < <(printf 'one %s' "$i")
  step "  took $(( $(now_ms) - t0 )) ms"
done
for i in 1 2; do
  for k in 1 2; do
    expect_ok "get -r 2 of /f/one$k through node $i with node 3 down" \
      ctl "$i" -r 2 -t "$timeout_ms" get "/f/one$k"
    assert_eq "$(cat "$KV_TMP/out")" "one $k" "get -r 2 of /f/one$k through node $i"
  done
  expect_ok "get -r 2 of /f/before through node $i with node 3 down" \
    ctl "$i" -r 2 -t "$timeout_ms" get /f/before
  assert_eq "$(cat "$KV_TMP/out")" "before" "get -r 2 of /f/before through node $i"
done
step "delete -w 2 with node 3 down"
expect_ok "delete /f/one1 with node 3 down" ctl 2 -r 2 -w 2 -t "$timeout_ms" delete /f/one1
expect_rc 2 "get -r 2 of /f/one1 after its delete" ctl 1 -r 2 -t "$timeout_ms" get /f/one1

step "SIGKILL node 2 too: one node of three left"
kc kill 2 || fail "kvfs-cluster kill 2"

limit_ms=$((timeout_ms + 3000))
# -r 1 so that the context read succeeds and the write quorum is what fails;
# then the plain put (context read at R=2), and a blind put.
for variant in "-r 1" "" "--blind"; do
  case "$variant" in
    "-r 1") args=(-r 1 -w 2 -t "$timeout_ms" put /f/two -) ;;
    "") args=(-w 2 -t "$timeout_ms" put /f/two -) ;;
    --blind) args=(-w 2 -t "$timeout_ms" put --blind /f/two -) ;;
  esac
  step "two nodes down: kvfsctl ${args[*]} through node 1 must fail"
  t0=$(now_ms)
  expect_fail "W=2 put ($variant) with two of three nodes down" ctl 1 "${args[@]}" < <(printf 'two')
  took=$(( $(now_ms) - t0 ))
  step "  failed after $took ms (limit $limit_ms): $ERRLINE"
  [ "$took" -lt "$limit_ms" ] ||
    fail "W=2 put ($variant) took $took ms to fail; want < $limit_ms ms (timeout $timeout_ms ms + 3 s)"
  [ "$(wc -l <"$KV_TMP/err")" -le 1 ] ||
    fail "W=2 put ($variant): want one line on stderr, got: $(tr '\n' '|' <"$KV_TMP/err")"
done

step "two nodes down: a get at R=2 fails too, within the timeout"
t0=$(now_ms)
expect_fail "R=2 get with two of three nodes down" ctl 1 -r 2 -t "$timeout_ms" get /f/before
took=$(( $(now_ms) - t0 ))
step "  failed after $took ms: $ERRLINE"
[ "$took" -lt "$limit_ms" ] || fail "R=2 get took $took ms to fail; want < $limit_ms ms"

step "R=1 still reads through the live node"
expect_ok "get -r 1 of /f/before through node 1" ctl 1 -r 1 -t "$timeout_ms" get /f/before
assert_eq "$(cat "$KV_TMP/out")" "before" "get -r 1 of /f/before"
assert_alive 1

step "restart nodes 2 and 3: W=3 works again"
kc start 2 || fail "kvfs-cluster start 2"
kc start 3 || fail "kvfs-cluster start 3"
# A restarted node greets its peers at start, which ends their reconnect
# backoff towards it: the very first W=3 put must succeed.
expect_ok "put -w 3 right after the restarts" ctl 3 -w 3 put /f/after - < <(printf 'after')
for i in 1 2 3; do
  expect_ok "get -r 3 of /f/after through node $i" ctl "$i" -r 3 get /f/after
  assert_eq "$(cat "$KV_TMP/out")" "after" "get -r 3 of /f/after through node $i"
done
step "PASS"
