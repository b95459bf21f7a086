# tests/fuse/lib.sh - shared setup of the fuse suite (issue 5 "Show it
# works"): real kvfs mounts over a real local cluster (tools/kvfs-cluster),
# driven with the shell tools people use. Sourced by tests/fuse/test_*.sh.
#
#   . "$(dirname "$0")/lib.sh"
#   fz_setup NAME BASE_PORT "$@"       # "$@": the meson build dir (or $KVFS_BUILD)
#   fz_up 3 -- --n 3 --timeout 2000
#   fz_mount a --cluster "$(fz_addr 1)" -o r=1,w=1   # mounted at $KV_TMP/a
#
# fz_setup makes a temp dir and a trap that, on every exit path, unmounts
# every mount the test made (fusermount3 -u, then -uz, then SIGTERM/SIGKILL
# of the kvfs process), stops the test's cluster (printing log tails when
# the test failed), removes partition rules, and removes the temp dir. A
# mount runs in the foreground (-f) as a child of the test, so its pid is
# known (peak RSS, cleanup). Each test passes its own BASE_PORT. KV_KEEP=1
# keeps the temp dir for a post-mortem; KV_KEEP_GOING=1 reports every failed
# check instead of stopping at the first (the test still fails). Exit status 77 (meson: skipped) when
# kvfs, kvfsd or kvfsctl is not built or FUSE is not usable.
# shellcheck shell=bash

set -euo pipefail
export LC_ALL=C

FZ_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FZ_REPO=$(cd "$FZ_LIB_DIR/../.." && pwd)
KV_CLUSTER_TOOL=$FZ_REPO/tools/kvfs-cluster
KV_TEST=${KV_TEST:-fuse}
KV_TMP=
KV_DIR=
KV_FAILED=0
KV_T0=$(date +%s.%N)
declare -A FZ_PID=()   # mount name -> pid of its kvfs -f process
FZ_NAMES=()            # mount names, in mount order

kv_elapsed() { awk -v a="$KV_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.2f", b - a }'; }
step() { echo "[$(kv_elapsed)s] $KV_TEST: $*"; }
fail() {
  KV_FAILED=1
  echo "[$(kv_elapsed)s] FAIL $KV_TEST: $*" >&2
  [ -z "${KV_KEEP_GOING:-}" ] || return 0 # diagnosis: report every failure
  exit 1
}
skip() { echo "SKIP $KV_TEST: $*"; exit 77; }

# fz_mnt NAME: the mount point of mount NAME.
fz_mnt() { echo "$KV_TMP/$1"; }

# fz_stop_mount NAME: unmounts NAME and waits (10 s) for its process to end;
# SIGTERM, then SIGKILL, if it does not. Never fails.
fz_stop_mount() {
  local name=$1 mnt pid i
  mnt=$(fz_mnt "$name")
  pid=${FZ_PID[$name]:-}
  if mountpoint -q "$mnt" 2>/dev/null; then
    timeout 20 fusermount3 -u "$mnt" 2>/dev/null || timeout 20 fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$KV_TEST: mount $name (pid $pid) still running after unmount; SIGTERM" >&2
      kill -TERM "$pid" 2>/dev/null
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    FZ_PID[$name]=
  fi
  # A killed daemon leaves the mount point dead ("Transport endpoint is not
  # connected"): lazily detach it.
  if mountpoint -q "$mnt" 2>/dev/null || ! stat "$mnt" >/dev/null 2>&1; then
    fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
  return 0
}

fz_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local p n still=0
  exec 9<&- # a test's open descriptor on a mount (test_reclaim)
  for p in ${KV_BG:-}; do
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for n in "${FZ_NAMES[@]}"; do fz_stop_mount "$n"; done
  local failed=0
  if { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; } || [ "$KV_FAILED" -ne 0 ]; then failed=1; fi
  [ "$KV_FAILED" -eq 0 ] || [ "$rc" -ne 0 ] || rc=1
  if [ "$failed" -eq 1 ]; then
    for n in "${FZ_NAMES[@]}"; do
      [ -s "$KV_TMP/$n.log" ] && { echo "---- mount $n log tail:" >&2; tail -n 20 "$KV_TMP/$n.log" >&2; }
    done
  fi
  if [ -n "$KV_DIR" ] && [ -f "$KV_DIR/cluster.env" ]; then
    if [ "$failed" -eq 1 ]; then
      echo "---- $KV_TEST failed (status $rc); node status and log tails:" >&2
      "$KV_CLUSTER_TOOL" --dir "$KV_DIR" status >&2
      for f in "$KV_DIR"/n*/stderr "$KV_DIR"/n*/log; do
        [ -s "$f" ] && { echo "---- $f" >&2; tail -n 15 "$f" >&2; }
      done
    fi
    "$KV_CLUSTER_TOOL" --dir "$KV_DIR" down >/dev/null 2>&1 ||
      echo "$KV_TEST: kvfs-cluster down failed" >&2
  fi
  # A sanitizer report from a node or a mount fails the test.
  local san='ERROR: (Address|Leak|Thread)Sanitizer|runtime error:'
  if [ -n "$KV_TMP" ]; then
    for f in "$KV_DIR"/n*/stderr "$KV_TMP"/*.log; do
      if [ -f "$f" ] && grep -q -E "$san" "$f"; then
        echo "---- FAIL $KV_TEST: sanitizer report in $f:" >&2
        grep -A 12 -E "$san" "$f" | head -n 40 >&2 || true
        [ "$rc" -eq 0 ] && rc=1
      fi
    done
    # Never recurse into a mount that is still attached.
    for n in "${FZ_NAMES[@]}"; do
      mountpoint -q "$(fz_mnt "$n")" 2>/dev/null && still=1
    done
    if [ "$still" -eq 1 ]; then
      echo "$KV_TEST: a mount is still attached; left $KV_TMP in place" >&2
      [ "$rc" -eq 0 ] && rc=1
    elif [ -n "${KV_KEEP:-}" ]; then
      echo "$KV_TEST: kept $KV_TMP (KV_KEEP)" >&2
    else
      rm -rf --one-file-system "$KV_TMP"
    fi
  fi
  exit "$rc"
}

# fz_setup NAME BASE_PORT [BUILD_DIR]
fz_setup() {
  KV_TEST=$1
  KV_BASE_PORT=$2
  if [ $# -ge 3 ] && [ -n "$3" ]; then KVFS_BUILD=$3; fi
  [ -n "${KVFS_BUILD:-}" ] || KVFS_BUILD=$FZ_REPO/build
  KVFS_BUILD=$(cd "$KVFS_BUILD" && pwd) || skip "no build directory $KVFS_BUILD"
  export KVFS_BUILD
  KVFSD=$KVFS_BUILD/node/kvfsd
  KVFSCTL=$KVFS_BUILD/tools/kvfsctl
  KVFS=${KVFS:-$KVFS_BUILD/fuse/kvfs}
  [ -x "$KVFSD" ] || skip "kvfsd is not built ($KVFSD)"
  [ -x "$KVFSCTL" ] || skip "kvfsctl is not built ($KVFSCTL)"
  [ -x "$KVFS" ] || skip "the mount is not built ($KVFS)"
  [ -c /dev/fuse ] || skip "no /dev/fuse"
  command -v fusermount3 >/dev/null || skip "no fusermount3 (Debian package fuse3)"
  export KVFSD
  unset KVFS_NODES
  KV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-$KV_TEST.XXXXXX")
  KV_DIR=$KV_TMP/cluster
  KV_BG=
  trap fz_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  step "temp dir $KV_TMP, ports $((KV_BASE_PORT + 1))..."
}

# kc ARGS...: kvfs-cluster on this test's cluster.
kc() { "$KV_CLUSTER_TOOL" --dir "$KV_DIR" "$@"; }

# fz_up N [-- KVFSD-FLAGS]: starts the cluster, or fails the test.
fz_up() {
  local n=$1
  shift
  FZ_NODES=$n
  kc up -n "$n" --base-port "$KV_BASE_PORT" "$@" || fail "kvfs-cluster up -n $n failed"
}

# fz_addr I: node I's client address; fz_all: every node's, comma-joined.
fz_addr() { echo "127.0.0.$((10 + $1)):$((KV_BASE_PORT + $1))"; }
fz_all() {
  local i out=
  for i in $(seq 1 "$FZ_NODES"); do out=${out:+$out,}$(fz_addr "$i"); done
  echo "$out"
}

# ctl I ARGS...: kvfsctl through node I, bounded to 60 s.
ctl() {
  local i=$1
  shift
  timeout 60 "$KVFSCTL" -c "$(fz_addr "$i")" "$@"
}

# fz_mount NAME KVFS-ARGS...: mounts kvfs at $KV_TMP/NAME (in the
# foreground, as a background child; its log in $KV_TMP/NAME.log) and waits
# (20 s at most) until the mount answers. Fails the test otherwise.
fz_mount() {
  local name=$1 mnt pid i
  shift
  mnt=$(fz_mnt "$name")
  mkdir -p "$mnt"
  "$KVFS" -f "$@" "$mnt" >>"$KV_TMP/$name.log" 2>&1 &
  pid=$!
  FZ_PID[$name]=$pid
  FZ_NAMES+=("$name")
  for i in $(seq 1 200); do
    if mountpoint -q "$mnt" && timeout 5 stat "$mnt/." >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "kvfs $* $mnt exited: $(tail -n 5 "$KV_TMP/$name.log")"
    sleep 0.1
  done
  fail "kvfs $* $mnt: not mounted after 20 s: $(tail -n 5 "$KV_TMP/$name.log")"
}

# fz_umount NAME: unmounts NAME and checks that its process exited cleanly.
fz_umount() {
  local name=$1 mnt pid rc=0 i
  mnt=$(fz_mnt "$name")
  pid=${FZ_PID[$name]}
  if ! timeout 30 fusermount3 -u "$mnt"; then
    fail "fusermount3 -u $mnt failed"
    return 1
  fi
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "mount $name: kvfs still running 10 s after fusermount3 -u"
    return 1
  fi
  wait "$pid" || rc=$?
  FZ_PID[$name]=
  [ "$rc" -eq 0 ] || fail "mount $name: kvfs exited $rc after unmount: $(tail -n 5 "$KV_TMP/$name.log")"
}

# fz_remount NAME KVFS-ARGS...: unmount, then mount again with the args.
fz_remount() {
  local name=$1
  shift
  fz_umount "$name" || return 1
  local keep=("${FZ_NAMES[@]}") n
  FZ_NAMES=()
  for n in "${keep[@]}"; do [ "$n" = "$name" ] || FZ_NAMES+=("$n"); done
  fz_mount "$name" "$@"
}

# fz_counters: prints "NAME VALUE" lines, each counter summed over the nodes
# that answer (stats requests themselves left out).
fz_counters() {
  local i
  for i in $(seq 1 "$FZ_NODES"); do
    ctl "$i" stats || fail "kvfsctl stats on node $i failed"
  done | awk '$1 != "stats_requests" && $2 ~ /^[0-9]+$/ { s[$1] += $2 }
              END { for (k in s) print k, s[k] }' | sort
}

# run CMD...: runs CMD with stdout in $KV_TMP/out and stderr in
# $KV_TMP/err, sets RC (never fails the shell).
run() {
  RC=0
  "$@" >"$KV_TMP/out" 2>"$KV_TMP/err" || RC=$?
}

# expect_ok DESCRIPTION CMD...: CMD must exit 0; its stdout is in $KV_TMP/out.
expect_ok() {
  local what=$1
  shift
  run "$@"
  [ "$RC" -eq 0 ] || fail "$what: exit $RC; stderr: $(head -c 600 "$KV_TMP/err")"
}

# assert_eq GOT WANT DESCRIPTION
assert_eq() {
  [ "$1" = "$2" ] || fail "$3: got '$(printf '%s' "$1" | head -c 400)', want '$(printf '%s' "$2" | head -c 400)'"
}

# assert_same_file GOT WANT DESCRIPTION: byte-identical files.
assert_same_file() {
  cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1) (sizes $(stat -c %s "$1" 2>&1) and $(stat -c %s "$2" 2>&1))"
}

# now_ms: milliseconds since the epoch.
now_ms() { date +%s%3N; }

# fz_names DIR: the names in DIR, one line, sorted, space-separated.
fz_names() { (cd "$1" && LC_ALL=C ls -A) | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }

# fz_done [NOTE]: the test's last line: ok, or FAILED when KV_KEEP_GOING
# let failed checks pass by.
fz_done() {
  if [ "$KV_FAILED" -ne 0 ]; then step "FAILED (see the FAIL lines above)"; exit 1; fi
  step "ok${1:+: $1}"
}
