# tests/cluster/lib.sh - shared setup of the cluster suite (issue 4 "Show it
# works"): real kvfsd processes on loopback, driven with kvfsctl and
# tools/kvfs-cluster. Sourced by each tests/cluster/test_*.sh.
#
#   . "$(dirname "$0")/lib.sh"
#   kv_setup NAME BASE_PORT "$@"   # "$@": the meson build dir (or $KVFS_BUILD)
#   kv_up 3 -- --n 3 --timeout 2000
#
# kv_setup makes a temp dir and a trap that, on every exit path, runs
# `kvfs-cluster down` on the test's cluster (printing the nodes' log tails
# when the test failed) and removes the temp dir. Each test passes its own
# BASE_PORT so that tests never collide. KV_KEEP=1 keeps the temp dir (logs,
# data) for a post-mortem; the nodes are stopped anyway. Exit status 77 (meson: skipped) when
# kvfsd or kvfsctl is not built.
# shellcheck shell=bash

set -euo pipefail

KV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KV_CLUSTER_TOOL=$KV_LIB_DIR/../../tools/kvfs-cluster
KV_RAWSEND=$KV_LIB_DIR/rawsend.py
KV_TEST=${KV_TEST:-cluster}
KV_TMP=
KV_DIR=
KV_FAILED=0
KV_T0=$(date +%s.%N)

# Progress and failure reports, with the seconds since the test started.
kv_elapsed() { awk -v a="$KV_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.2f", b - a }'; }
step() { echo "[$(kv_elapsed)s] $KV_TEST: $*"; }
fail() {
  KV_FAILED=1
  echo "[$(kv_elapsed)s] FAIL $KV_TEST: $*" >&2
  exit 1
}
skip() { echo "SKIP $KV_TEST: $*"; exit 77; }

kv_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  # Kill background helpers this test started (their pids in KV_BG).
  local p
  for p in ${KV_BG:-}; do
    pkill -P "$p" 2>/dev/null # its kvfsctl or python3, by parent pid
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ -n "$KV_DIR" ] && [ -f "$KV_DIR/cluster.env" ]; then
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] || [ "$KV_FAILED" -ne 0 ]; then
      echo "---- $KV_TEST failed (status $rc); node status and log tails:" >&2
      "$KV_CLUSTER_TOOL" --dir "$KV_DIR" status >&2
      for f in "$KV_DIR"/n*/stderr "$KV_DIR"/n*/log; do
        [ -s "$f" ] && { echo "---- $f" >&2; tail -n 15 "$f" >&2; }
      done
    fi
    "$KV_CLUSTER_TOOL" --dir "$KV_DIR" down >/dev/null 2>&1 ||
      echo "$KV_TEST: kvfs-cluster down failed" >&2
    # A sanitizer report from any node (e.g. a -Db_sanitize build) fails the
    # test, even when every request was answered.
    local san='ERROR: (Address|Leak|Thread)Sanitizer|runtime error:'
    for f in "$KV_DIR"/n*/stderr; do
      if [ -f "$f" ] && grep -q -E "$san" "$f"; then
        echo "---- FAIL $KV_TEST: sanitizer report in $f:" >&2
        grep -A 12 -E "$san" "$f" | head -n 40 >&2 || true
        [ "$rc" -eq 0 ] && rc=1
      fi
    done
  fi
  if [ -n "$KV_TMP" ]; then
    if [ -n "${KV_KEEP:-}" ]; then echo "$KV_TEST: kept $KV_TMP (KV_KEEP)" >&2; else rm -rf "$KV_TMP"; fi
  fi
  exit "$rc"
}

# kv_setup NAME BASE_PORT [BUILD_DIR]
kv_setup() {
  KV_TEST=$1
  KV_BASE_PORT=$2
  if [ $# -ge 3 ] && [ -n "$3" ]; then KVFS_BUILD=$3; fi
  [ -n "${KVFS_BUILD:-}" ] || KVFS_BUILD=$KV_LIB_DIR/../../build
  KVFS_BUILD=$(cd "$KVFS_BUILD" && pwd) || skip "no build directory $KVFS_BUILD"
  export KVFS_BUILD
  KVFSD=$KVFS_BUILD/node/kvfsd
  KVFSCTL=$KVFS_BUILD/tools/kvfsctl
  KV_BADFRAME=$KVFS_BUILD/tests/cluster/badframe
  [ -x "$KVFSD" ] || skip "kvfsd is not built ($KVFSD)"
  [ -x "$KVFSCTL" ] || skip "kvfsctl is not built ($KVFSCTL)"
  export KVFSD
  unset KVFS_NODES
  KV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-$KV_TEST.XXXXXX")
  KV_DIR=$KV_TMP/cluster
  KV_BG=
  trap kv_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  step "temp dir $KV_TMP, ports $((KV_BASE_PORT + 1))..."
}

# kc ARGS...: kvfs-cluster on this test's cluster.
kc() { "$KV_CLUSTER_TOOL" --dir "$KV_DIR" "$@"; }

# kv_up N [-- KVFSD-FLAGS]: starts the cluster, or fails the test. Without
# flags, a cluster that was up before comes back with its saved flags.
# $KV_KVFSD_FLAGS (e.g. "--log-level debug") is added to the flags given.
kv_up() {
  local n=$1 more=()
  shift
  if [ $# -gt 0 ] && [ -n "${KV_KVFSD_FLAGS:-}" ]; then
    read -ra more <<<"$KV_KVFSD_FLAGS"
  fi
  kc up -n "$n" --base-port "$KV_BASE_PORT" "$@" "${more[@]+"${more[@]}"}" ||
    fail "kvfs-cluster up -n $n failed"
}

# addr I: node I's client address.
addr() { echo "127.0.0.$((10 + $1)):$((KV_BASE_PORT + $1))"; }
host() { echo "127.0.0.$((10 + $1))"; }
port() { echo "$((KV_BASE_PORT + $1))"; }

# ctl I ARGS...: kvfsctl through node I (stdin passed on), bounded to 60 s.
ctl() {
  local i=$1
  shift
  timeout 60 "$KVFSCTL" -c "$(addr "$i")" "$@"
}

# run CMD...: runs CMD with stdout in $KV_TMP/out and stderr in $KV_TMP/err,
# sets RC (never fails the shell).
run() {
  RC=0
  "$@" >"$KV_TMP/out" 2>"$KV_TMP/err" || RC=$?
}

# expect_rc WANT DESCRIPTION CMD...: runs CMD; fails the test unless it
# exits WANT. Its stdout is left in $KV_TMP/out.
expect_rc() {
  local want=$1 what=$2
  shift 2
  run "$@"
  if [ "$RC" -ne "$want" ]; then
    fail "$what: exit $RC, want $want; stderr: $(head -c 600 "$KV_TMP/err")"
  fi
}

# expect_ok DESCRIPTION CMD...: expect_rc 0.
expect_ok() { expect_rc 0 "$@"; }

# expect_fail DESCRIPTION CMD...: CMD must fail (non-zero, not a timeout or
# a crash) with one clear line on stderr. The line is left in ERRLINE.
expect_fail() {
  local what=$1
  shift
  run "$@"
  [ "$RC" -ne 0 ] || fail "$what: succeeded, want an error"
  [ "$RC" -ne 124 ] || fail "$what: hung (killed by timeout)"
  [ "$RC" -lt 128 ] || fail "$what: died of signal $((RC - 128)); stderr: $(head -c 600 "$KV_TMP/err")"
  ERRLINE=$(head -n 1 "$KV_TMP/err" | cut -c1-300)
  [ -n "$ERRLINE" ] || fail "$what: exit $RC with nothing on stderr"
}

# assert_eq GOT WANT DESCRIPTION
assert_eq() {
  [ "$1" = "$2" ] || fail "$3: got '$(printf '%s' "$1" | head -c 300)', want '$(printf '%s' "$2" | head -c 300)'"
}

# assert_same_file GOT WANT DESCRIPTION: byte-identical files.
assert_same_file() {
  cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1) (sizes $(stat -c %s "$1") and $(stat -c %s "$2"))"
}

# assert_alive I: node I still runs.
assert_alive() {
  local st
  st=$(kc status) || fail "kvfs-cluster status failed"
  grep -q "^$1 .* up$" <<<"$st" || fail "node $1 is not running: $(tr '\n' ';' <<<"$st")"
}

# assert_all_down: no node of the cluster runs.
assert_all_down() {
  local st
  st=$(kc status) || fail "kvfs-cluster status failed"
  if grep -q ' up$' <<<"$st"; then fail "nodes still up: $(tr '\n' ';' <<<"$st")"; fi
}

# now_ms: milliseconds since the epoch.
now_ms() { date +%s%3N; }
