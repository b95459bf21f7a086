#!/usr/bin/env bash
# tests/cluster/test_durability.sh [BUILD_DIR] - issue 4 "Show it works",
# durability: SIGKILL a replica while a client writes with W=3 (a bounded
# loop of puts of distinct keys, recording the acknowledged ones); restart
# it; stop the other two nodes; that replica alone (-r 1, through itself)
# returns every acknowledged write. With N=3 and three nodes every node is a
# replica of every key. (The fault-injecting VFS of issue 2 proves fsync;
# this proves the daemon's recovery path.)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup durability 27400 "${1:-}"

kv_up 3 -- --n 3 --timeout 2000

acked=$KV_TMP/acked
: >"$acked"
# The writer: puts /dur/<dir>/k<i> = "value <i>" with W=3 through node 1,
# at most 600 puts or 40 s, until it sees 3 failures in a row (node 3 dead).
writer() {
  local i fails=0 end=$((SECONDS + 40)) d
  for ((i = 1; i <= 600 && SECONDS < end; i++)); do
    d=$((i % 4))
    if timeout 20 "$KVFSCTL" -c "$(addr 1)" -w 3 -t 2000 put "/dur/d$d/k$i" - \
         < <(printf 'value %s' "$i") >/dev/null 2>>"$KV_TMP/writer.err"; then
      echo "$i" >>"$acked"
      fails=0
    else
      fails=$((fails + 1))
      [ "$fails" -lt 3 ] || break
    fi
  done
  echo "$i" >"$KV_TMP/writer.last"
}
writer &
KV_BG="$KV_BG $!"
writer_pid=$!

step "writer running; waiting for 40 acknowledged W=3 puts"
for _ in $(seq 1 200); do
  [ "$(wc -l <"$acked")" -ge 40 ] && break
  kill -0 "$writer_pid" 2>/dev/null || break
  sleep 0.1
done
n_before=$(wc -l <"$acked")
[ "$n_before" -ge 40 ] || fail "only $n_before W=3 puts acknowledged before the kill; writer errors: $(tail -n 3 "$KV_TMP/writer.err" 2>/dev/null)"

step "SIGKILL node 3 mid-stream ($n_before acknowledged so far)"
kc kill 3 || fail "kvfs-cluster kill 3"
wait "$writer_pid" || true
n_acked=$(wc -l <"$acked")
step "writer stopped after put $(cat "$KV_TMP/writer.last"); $n_acked acknowledged; last error: $(tail -n 1 "$KV_TMP/writer.err" 2>/dev/null)"

step "restart node 3, stop nodes 1 and 2"
kc start 3 || fail "kvfs-cluster start 3"
kc stop 1 || fail "kvfs-cluster stop 1"
kc stop 2 || fail "kvfs-cluster stop 2"

step "node 3 alone (-r 1) returns every acknowledged write"
missing=0
while read -r i; do
  d=$((i % 4))
  run ctl 3 -r 1 -t 2000 get "/dur/d$d/k$i"
  if [ "$RC" -ne 0 ] || [ "$(cat "$KV_TMP/out")" != "value $i" ]; then
    echo "  lost: /dur/d$d/k$i (exit $RC, got '$(head -c 80 "$KV_TMP/out")', $(head -n 1 "$KV_TMP/err"))" >&2
    missing=$((missing + 1))
  fi
done <"$acked"
[ "$missing" -eq 0 ] || fail "$missing of $n_acked acknowledged W=3 writes missing on node 3 after SIGKILL and restart"
step "all $n_acked acknowledged writes are on node 3"
assert_alive 3
step "PASS"
