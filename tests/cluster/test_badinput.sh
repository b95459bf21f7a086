#!/usr/bin/env bash
# tests/cluster/test_badinput.sh [BUILD_DIR] - issue 4 "Show it works", bad
# input (DESIGN §9: every length read off the wire is bounded; bad input gets
# a clear error, never a crash): random bytes, a truncated frame, a frame
# header with a huge length, a bad header check, a bad trailer, and idle
# half-open connections on a node's port get an error or a closed
# connection, while the node keeps serving kvfsctl get/put meanwhile. The
# same after the handshake (badframe --connect): huge and oversized lengths
# and partial frames close the connection; an unknown type or a bad body
# gets an ERROR and the connection keeps serving.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup badinput 27500 "${1:-}"
[ -x "$KV_BADFRAME" ] || fail "badframe helper not built ($KV_BADFRAME)"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"

# A short idle timeout, so that partial frames and silent connections are
# closed within the test (server.h: --idle-timeout, default 10 s).
idle_ms=2000
kv_up 3 -- --n 3 --idle-timeout "$idle_ms"

h=$(host 1)
p=$(port 1)
raw() { timeout 30 python3 "$KV_RAWSEND" "$h" "$p" "$@"; }

# serving N: a put and a get through node 1 work (checked between probes).
serving() {
  expect_ok "put through node 1 $1" ctl 1 put "/bad/k" - < <(printf 'ok %s' "$1")
  expect_ok "get through node 1 $1" ctl 1 get "/bad/k"
  assert_eq "$(cat "$KV_TMP/out")" "ok $1" "get through node 1 $1"
}
serving "before the probes"

# expect_closed WHAT FILE WAIT: sending FILE gets the connection closed
# (with or without an ERROR frame) within WAIT seconds.
expect_closed() {
  local what=$1 file=$2 wait=$3 out
  out=$(raw "$file" --wait "$wait") || fail "$what: rawsend failed: $out"
  step "  $what: $out"
  case "$out" in closed*) ;; *) fail "$what: the node kept the connection open: $out" ;; esac
}

step "random bytes"
for s in 1 24 4096 65536 1048576; do
  head -c "$s" /dev/urandom >"$KV_TMP/random"
  # A random stream may start with a valid "k": then the node waits for the
  # rest of the frame, until the idle timeout closes it.
  expect_closed "$s random bytes" "$KV_TMP/random" $((idle_ms / 1000 + 5))
done
serving "after random bytes"

step "an HTTP request"
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >"$KV_TMP/http"
expect_closed "HTTP GET" "$KV_TMP/http" 5

step "crafted frames"
for mode in huge bad-hcheck bad-trailer; do
  "$KV_BADFRAME" "$mode" >"$KV_TMP/$mode" || fail "badframe $mode"
  expect_closed "frame: $mode" "$KV_TMP/$mode" 5
done
serving "after crafted frames"

step "bad frames on an authenticated connection"
# authed MODE WANT: badframe --connect, and its report must start with WANT.
authed() {
  local out
  out=$(timeout 30 "$KV_BADFRAME" --connect "$(addr 1)" --wait $((idle_ms + 3000)) "$1" 2>&1) ||
    fail "badframe --connect $1: $out"
  step "  after auth, $1: $out"
  case "$out" in "$2"*) ;; *) fail "after auth, $1: want '$2...', got: $out" ;; esac
}
authed huge "closed after"          # header alone says 4 GiB: refused before allocation
authed big "closed after"           # 300 MiB > the 280 MiB frame limit
authed truncated "closed after"     # partial frame: closed after the idle timeout
authed unknown-type "open after"    # ERROR, framing intact: the connection keeps serving
authed bad-body "open after"
for m in unknown-type bad-body; do
  run "$KV_BADFRAME" --connect "$(addr 1)" "$m"
  grep -q 'ERROR .*then STATS answered' "$KV_TMP/out" ||
    fail "after auth, $m: want an ERROR and then a working connection: $(cat "$KV_TMP/out" "$KV_TMP/err")"
done
serving "after bad frames on authenticated connections"

step "a truncated frame and idle half-open connections, while serving"
"$KV_BADFRAME" truncated >"$KV_TMP/truncated" || fail "badframe truncated"
: >"$KV_TMP/empty"
# Hold 20 truncated and 50 silent connections open in the background.
hold_s=$((idle_ms / 1000 + 4))
timeout 60 python3 "$KV_RAWSEND" "$h" "$p" "$KV_TMP/truncated" --conns 20 --hold --wait "$hold_s" \
  >"$KV_TMP/hold-truncated" 2>&1 &
KV_BG="$KV_BG $!"
pid_t=$!
timeout 60 python3 "$KV_RAWSEND" "$h" "$p" "$KV_TMP/empty" --conns 50 --hold --wait "$hold_s" \
  >"$KV_TMP/hold-idle" 2>&1 &
KV_BG="$KV_BG $!"
pid_i=$!
sleep 0.5
for n in 1 2 3; do serving "with 70 stuck connections open ($n)"; done
wait "$pid_t" || fail "holding truncated frames failed: $(cat "$KV_TMP/hold-truncated")"
wait "$pid_i" || fail "holding idle connections failed: $(cat "$KV_TMP/hold-idle")"
step "  truncated frames: $(cat "$KV_TMP/hold-truncated")"
step "  idle connections: $(cat "$KV_TMP/hold-idle")"
# Each was open for hold_s > idle timeout: the node must have closed them all.
grep -q ', 20 closed by the node' "$KV_TMP/hold-truncated" ||
  fail "partial frames were not timed out after ${idle_ms} ms: $(cat "$KV_TMP/hold-truncated")"
grep -q ', 50 closed by the node' "$KV_TMP/hold-idle" ||
  fail "silent connections were not timed out after ${idle_ms} ms: $(cat "$KV_TMP/hold-idle")"

step "a truncated frame alone is closed after the idle timeout"
expect_closed "truncated frame" "$KV_TMP/truncated" $((idle_ms / 1000 + 5))

step "a valid HELLO is answered (the probe speaks the protocol)"
"$KV_BADFRAME" hello >"$KV_TMP/hello" || fail "badframe hello"
out=$(raw "$KV_TMP/hello" --wait 1) || fail "hello: rawsend failed: $out"
step "  hello: $out"
case "$out" in *", 0 bytes received"*) fail "the node did not answer a valid HELLO: $out" ;; esac

serving "after every probe"
for i in 1 2 3; do assert_alive "$i"; done
step "PASS"
