#!/usr/bin/env bash
# tests/cluster/test_siblings.sh [BUILD_DIR] - issue 4 "Show it works",
# siblings through a real network partition (nftables, so root): write V with
# all nodes up; `partition 1 2,3`; put A through node 1 and B through node 2,
# each with -r 1 -w 1 (each reads V's context on its side); heal; get -r 3
# shows exactly A and B (exit 3, never V); a put with their context resolves
# them and every node then returns the one value.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup siblings 27300 "${1:-}"

[ "$(id -u)" -eq 0 ] || skip "partitions need root (nftables)"
command -v nft >/dev/null 2>&1 || skip "nft is not installed"

kv_up 3 -- --n 3 --timeout 3000

key=/sib/doc.txt
step "V with all nodes up (W=3)"
expect_ok "put V" ctl 1 -w 3 put "$key" - < <(printf 'V')
for i in 1 2 3; do
  expect_ok "get -r 3 of V through node $i" ctl "$i" -r 3 get "$key"
  assert_eq "$(cat "$KV_TMP/out")" "V" "V through node $i"
done

step "partition 1 2,3"
kc partition 1 2,3 || fail "kvfs-cluster partition 1 2,3"

step "the cut is real: node 1 cannot reach the others at R=2"
expect_fail "get -r 2 through node 1 during the partition" ctl 1 -r 2 -t 3000 get "$key"
step "  error: $ERRLINE"

step "A through node 1, B through node 2, each -r 1 -w 1"
expect_ok "put A through node 1 (minority side)" ctl 1 -r 1 -w 1 put "$key" - < <(printf 'A')
expect_ok "put B through node 2 (majority side)" ctl 2 -r 1 -w 1 put "$key" - < <(printf 'B')
expect_ok "get -r 1 through node 1 during the partition" ctl 1 -r 1 get "$key"
assert_eq "$(cat "$KV_TMP/out")" "A" "node 1's side during the partition"
expect_ok "get -r 1 through node 2 during the partition" ctl 2 -r 1 get "$key"
assert_eq "$(cat "$KV_TMP/out")" "B" "node 2's side during the partition"

step "heal"
kc heal || fail "kvfs-cluster heal"

# Peer connections that were cut may need a moment (timeouts, reconnects):
# ask for up to 15 s, once a second.
step "get -r 3 through node 1 shows exactly A and B"
for try in $(seq 1 15); do
  run ctl 1 -r 3 -t 3000 get "$key"
  [ "$RC" -eq 3 ] && break
  step "  try $try: exit $RC ($(head -n 1 "$KV_TMP/err"))"
  sleep 1
done
[ "$RC" -eq 3 ] || fail "get -r 3 after heal: exit $RC, want 3 (siblings); stderr: $(cat "$KV_TMP/err"); stdout: $(head -c 300 "$KV_TMP/out")"
cp "$KV_TMP/out" "$KV_TMP/siblings"
headers=$(grep -a -c '^--- sibling [0-9]* of [0-9]*' "$KV_TMP/siblings" || true)
assert_eq "$headers" 2 "sibling header lines in: $(tr '\n' '|' <"$KV_TMP/siblings")"
grep -a -q '^--- sibling 1 of 2' "$KV_TMP/siblings" || fail "no '--- sibling 1 of 2' header: $(tr '\n' '|' <"$KV_TMP/siblings")"
bodies=()
for s in 1 2; do
  run ctl 1 -r 3 get --sibling "$s" "$key"
  [ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || fail "get --sibling $s: exit $RC; $(cat "$KV_TMP/err")"
  bodies+=("$(cat "$KV_TMP/out")")
done
sorted=$(printf '%s\n' "${bodies[@]}" | sort | tr '\n' ' ')
assert_eq "$sorted" "A B " "the two siblings (V must be gone)"
for i in 2 3; do
  run ctl "$i" -r 3 get "$key"
  assert_eq "$RC" 3 "exit of get -r 3 through node $i after heal (siblings)"
done

step "resolve with the context of the siblings"
expect_rc_any() { run "$@"; [ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || fail "$*: exit $RC; $(cat "$KV_TMP/err")"; }
expect_rc_any ctl 1 -r 3 get --context "$key"
ctx=$(head -n 1 "$KV_TMP/out")
[ -n "$ctx" ] || fail "get --context printed nothing"
[ "$(wc -l <"$KV_TMP/out")" -le 1 ] || fail "get --context: want one line, got $(wc -l <"$KV_TMP/out")"
step "  context $ctx"
# Options after the key, as kvfsctl(8) writes them, parse the same.
expect_rc_any ctl 1 -r 3 get "$key" --context
assert_eq "$(head -n 1 "$KV_TMP/out")" "$ctx" "get KEY --context (option after the key)"
expect_ok "put R with the siblings' context" ctl 2 put --context "$ctx" "$key" - < <(printf 'R')
for i in 1 2 3; do
  expect_ok "get -r 3 through node $i after the resolution (want one value)" ctl "$i" -r 3 get "$key"
  assert_eq "$(cat "$KV_TMP/out")" "R" "resolved value through node $i"
done
step "PASS"
