#!/usr/bin/env bash
# tests/cluster/test_restart.sh [BUILD_DIR] - issue 4 "Show it works":
# restarting every node, once after SIGTERM (kvfs-cluster down) and once
# after SIGKILL (kvfs-cluster kill on each), keeps every acknowledged write.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup restart 27600 "${1:-}"

kv_up 3 -- --n 3

# put_batch FROM TO: puts /rs/k<i> = "value <i>" through node (i % 3) + 1
# with the default W=2; every put must be acknowledged.
put_batch() {
  local i
  for ((i = $1; i <= $2; i++)); do
    expect_ok "put /rs/k$i" ctl $((i % 3 + 1)) put "/rs/k$i" - < <(printf 'value %s' "$i")
  done
}
# check_all TO WHEN: every key 1..TO reads back through node (i+1) % 3 + 1.
check_all() {
  local i
  for ((i = 1; i <= $1; i++)); do
    expect_ok "get /rs/k$i $2" ctl $(((i + 1) % 3 + 1)) get "/rs/k$i"
    assert_eq "$(cat "$KV_TMP/out")" "value $i" "/rs/k$i $2"
  done
}

step "60 acknowledged puts"
put_batch 1 60
# A key overwritten, and one deleted, must stay so after restarts.
expect_ok "overwrite /rs/k1" ctl 2 put /rs/k1 - < <(printf 'value 1')
expect_ok "put /rs/gone" ctl 1 put /rs/gone - < <(printf 'gone')
expect_ok "delete /rs/gone" ctl 3 delete /rs/gone

step "SIGTERM every node (down), then up"
kc down || fail "kvfs-cluster down"
assert_all_down
kv_up 3
check_all 60 "after SIGTERM and restart"
expect_rc 2 "get /rs/gone after SIGTERM and restart (deleted)" ctl 1 get /rs/gone

step "60 more puts, then SIGKILL every node, then up"
put_batch 61 120
for i in 1 2 3; do kc kill "$i" || fail "kvfs-cluster kill $i"; done
assert_all_down
kv_up 3
check_all 120 "after SIGKILL and restart"
expect_rc 2 "get /rs/gone after SIGKILL and restart (deleted)" ctl 2 get /rs/gone

step "and the restarted cluster takes new writes"
expect_ok "put after the restarts" ctl 3 -w 3 put /rs/new - < <(printf 'new')
expect_ok "get -r 3 after the restarts" ctl 1 -r 3 get /rs/new
assert_eq "$(cat "$KV_TMP/out")" "new" "/rs/new after the restarts"
step "PASS"
