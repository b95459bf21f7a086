#!/usr/bin/env bash
# tools/bench-cluster-smoke.sh KVFS_BENCH KVFS_BUILD - the `bench_cluster_smoke`
# meson test (suite cluster): `kvfs-bench cluster` against a real 3-node
# cluster on loopback (tools/kvfs-cluster, ports 27801-27803), checking
# behaviour, never speed: every mode prints its result lines with no error,
# --put-mode ctx leaves no siblings, gets find the preloaded keys, open loop
# keeps its rate, bad flags exit 2 and an unreachable cluster exits 1 with
# one line. With etcd installed (tools/bench-cluster installs it), also the
# etcd gateway client against one member. Exit 77 (skipped) without kvfsd.
# Everything it starts is stopped, and its temp dir removed, on every exit.
# ok never fails, so `COND && ok || fail ...` is an if-then-else here.
# shellcheck disable=SC2015
set -euo pipefail

bench=${1:?usage: bench-cluster-smoke.sh path/to/kvfs-bench BUILD_DIR}
build=${2:?usage: bench-cluster-smoke.sh path/to/kvfs-bench BUILD_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster_tool=$root/tools/kvfs-cluster
[ -x "$build/node/kvfsd" ] || { echo "SKIP: kvfsd is not built"; exit 77; }
# Output captured, not piped into grep -q: under pipefail, grep leaving early
# can fail the pipeline with the writer's SIGPIPE.
probe=$("$bench" cluster -c 127.0.0.1:1 --system kvfs --duration 0 2>&1 || true)
if [[ $probe == *'not built in'* ]]; then
  echo "SKIP: kvfs-bench was built without the client library"; exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-bench-cluster-smoke.XXXXXX")
etcd_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  KVFS_BUILD=$build "$cluster_tool" --dir "$tmp/kvfs" down >/dev/null 2>&1 || true
  if [ -n "$etcd_pid" ]; then
    kill -TERM "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
pass=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { pass=$((pass + 1)); }

# expect OUTPUT REGEX DESCRIPTION
expect() {
  if grep -Eq -- "$2" <<<"$1"; then ok; else fail "$3: no line matching /$2/"; echo "$1" >&2; fi
}
# field OUTPUT OP NAME: the number before NAME on OP's summary line.
field() { sed -nE "s/^$2 +:.* ([0-9]+) $3.*/\\1/p" <<<"$1" | head -n 1; }

line_re() { echo "^$1 +: +[0-9]+\\.[0-9] ops/sec p50 [0-9.]+ p99 [0-9.]+ p999 [0-9.]+ micros; [0-9]+ ops, 0 errors"; }

KVFS_BUILD=$build "$cluster_tool" --dir "$tmp/kvfs" up -n 3 --base-port 27800 -- \
  --n 3 --r 2 --w 2 --sync always >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log" >&2; exit 1; }
nodes=$(KVFS_BUILD=$build "$cluster_tool" --dir "$tmp/kvfs" env --nodes)
base=(-c "$nodes" --concurrency 8 --keys 400 --value-size 512)
common=("${base[@]}" --no-progress)

# A mix after a preload: every get finds its key, and nothing has siblings.
out=$("$bench" cluster "${common[@]}" --duration 1.5 --preload --prefix /s1 2>"$tmp/err") ||
  fail "mix: exit $? ($(tail -n 3 "$tmp/err"))"
expect "$out" "$(line_re preload)" "mix: preload line"
expect "$out" "$(line_re put)" "mix: put line"
expect "$out" "$(line_re get)" "mix: get line"
expect "$out" "$(line_re all)" "mix: all line"
gets=$(field "$out" get ops,)
found=$(field "$out" get found,)
[ -n "$gets" ] && [ "$gets" -gt 0 ] && [ "$gets" = "$found" ] && ok ||
  fail "mix: $found of $gets gets found their key"
expect "$out" ' 0 with siblings' "mix: --put-mode ctx leaves no siblings"

# Read-modify-write puts (to any key: two threads may write one key at once,
# and then make siblings, as two real clients would).
out=$("$bench" cluster "${common[@]}" --duration 1 --put-mode rmw --prefix /s1 2>"$tmp/err") ||
  fail "rmw: exit $? ($(tail -n 3 "$tmp/err"))"
expect "$out" "$(line_re put)" "rmw: put line"
expect "$out" "$(line_re get)" "rmw: get line"

# Blind puts on few keys: siblings appear (and are counted), no error while
# no key reaches 64 of them.
out=$("$bench" cluster "${common[@]}" --keys 64 --duration 0.5 --put-mode blind --prefix /s2 \
  --value-size 16 2>"$tmp/err") || fail "blind: exit $? ($(tail -n 3 "$tmp/err"))"
sib=$(sed -nE 's/^get .* ([0-9]+) with siblings/\1/p' <<<"$out")
[ -n "$sib" ] && [ "$sib" -gt 0 ] && ok || fail "blind: no get saw siblings ($out)"

# Open loop: keeps its rate, reports late requests; put-only, one directory.
out=$("$bench" cluster "${common[@]}" --ops put:100 --rate 200 --duration 2 --dirs 1 \
  --prefix /s3 2>"$tmp/err") || fail "open loop: exit $? ($(tail -n 3 "$tmp/err"))"
expect "$out" "$(line_re put), [0-9]+ late" "open loop: put line with late count"
expect "$out" '^rate +: target 200\.0 ops/s, achieved (1[6-9][0-9]|2[0-3][0-9])\.[0-9] ops/s' \
  "open loop: achieved rate within 20% of 200"

# Progress lines on stderr.
"$bench" cluster "${base[@]}" --duration 2.2 --prefix /s4 >/dev/null 2>"$tmp/err" || fail "progress: exit $?"
n=$(grep -cE '^\[ +[0-9]+s\] +[0-9]+ ops/s' "$tmp/err" || true)
[ "$n" -ge 2 ] && ok || fail "progress: $n progress lines, expected 2"

# Bad flags exit 2; an unreachable cluster exits 1 with one clear line.
for args in "" "-c $nodes --ops del:1" "-c $nodes --keys 0" "-c $nodes --rate x" \
            "-c $nodes --put-mode maybe" "-c $nodes --bogus" "-c $nodes --keys 4 --concurrency 8"; do
  rc=0
  # shellcheck disable=SC2086 # split on purpose
  "$bench" cluster $args >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 2 ] && ok || fail "bad flags '$args': exit $rc, expected 2"
done
rc=0
err=$("$bench" cluster -c 127.0.0.1:1 --duration 1 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q 'refused' <<<"$err" && ok ||
  fail "unreachable: exit $rc, stderr '$err'"

# etcd's gateway, when etcd is installed: one member on 127.0.0.31.
if command -v etcd >/dev/null 2>&1; then
  etcd --name s --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.31:27821 \
    --advertise-client-urls http://127.0.0.31:27821 --listen-peer-urls http://127.0.0.31:27822 \
    --initial-advertise-peer-urls http://127.0.0.31:27822 \
    --initial-cluster s=http://127.0.0.31:27822 >"$tmp/etcd.log" 2>&1 </dev/null &
  etcd_pid=$!
  up=0
  for _ in $(seq 100); do
    if "$bench" cluster --system etcd -c 127.0.0.31:27821 --duration 0 >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" -eq 1 ]; then
    out=$("$bench" cluster --system etcd -c 127.0.0.31:27821 --concurrency 4 --keys 100 \
      --value-size 3000 --duration 1 --preload --prefix /e --no-progress 2>"$tmp/err") ||
      fail "etcd: exit $? ($(tail -n 3 "$tmp/err"))"
    expect "$out" "$(line_re get)" "etcd: get line (chunked replies: 3000-byte values)"
    gets=$(field "$out" get ops,); found=$(field "$out" get found,)
    [ -n "$gets" ] && [ "$gets" = "$found" ] && ok || fail "etcd: $found of $gets gets found"
  else
    fail "etcd: the member did not answer within 10 s ($(tail -n 3 "$tmp/etcd.log"))"
  fi
else
  echo "note: etcd not installed; its part is not checked"
fi

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
