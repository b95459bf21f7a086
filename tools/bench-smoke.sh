#!/usr/bin/env bash
# tools/bench-smoke.sh KVFS_BENCH - the `bench_smoke` meson test (suite unit).
#
# Runs every kvfs-bench benchmark on a tiny database and checks behaviour,
# never speed: each benchmark prints its result line, reads find what the
# fills wrote, the database survives a reopen (--use_existing_db), the
# write-amplification, space and RSS reports appear, and bad flags exit 2.
# Also runs the LevelDB side when it is built in, and the fsync, hiccup and
# measure helpers.
set -euo pipefail

bench=${1:?usage: bench-smoke.sh path/to/kvfs-bench}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-bench-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

failures=0
pass=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { pass=$((pass + 1)); }

# expect OUTPUT REGEX DESCRIPTION
expect() {
  if grep -Eq -- "$2" <<<"$1"; then ok; else fail "$3: no line matching /$2/"; fi
}

result_re='^%s +: +[0-9]+\.[0-9]{3} micros/op [0-9]+ ops/sec; +[0-9]+\.[0-9] MB/s'

engines=(storage)
if "$bench" leveldb --help >/dev/null 2>&1; then engines+=(leveldb); fi

for engine in "${engines[@]}"; do
  db="$tmp/$engine"
  all=fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom

  # Every benchmark of the standard list prints its line.
  out=$("$bench" "$engine" --num 2000 --benchmarks=$all --db "$db" --compact_at_end 1 \
        --report_rss 1) || fail "$engine: $all exited $?"
  for b in ${all//,/ }; do
    # shellcheck disable=SC2059
    expect "$out" "$(printf "$result_re" "$b").* p50 [0-9.]+ p99 [0-9.]+ micros" "$engine $b"
  done
  expect "$out" '^  write-amp  : [0-9.]+ wchar' "$engine write amplification"
  expect "$out" '^  space      : [0-9.]+ MB .*\(after compaction\)' "$engine space after compaction"
  expect "$out" '^peak RSS +: [0-9.]+ MB' "$engine peak RSS"

  # After a fillseq every key is there: readrandom and seekrandom find them
  # all and readseq walks exactly --num entries.
  out=$("$bench" "$engine" --num 2000 --benchmarks=fillseq,readrandom,seekrandom,readseq \
        --db "$db" --threads 2) || fail "$engine: fillseq,... exited $?"
  expect "$out" '^readrandom +: .*\(4000 of 4000 found\)' "$engine readrandom after fillseq"
  expect "$out" '^seekrandom +: .*\(4000 of 4000 found\)' "$engine seekrandom after fillseq"
  expect "$out" '^readseq +: .* [0-9]+ ops/sec' "$engine readseq"

  # The database survives close and reopen; fills are skipped.
  out=$("$bench" "$engine" --num 2000 --benchmarks=fillseq,readrandom --use_existing_db 1 \
        --db "$db") || fail "$engine: --use_existing_db exited $?"
  expect "$out" '^fillseq +: skipped' "$engine fillseq skipped with --use_existing_db"
  expect "$out" '^readrandom +: .*\(2000 of 2000 found\)' "$engine readrandom after reopen"

  # Synced writes from several threads, then compaction benchmarks.
  out=$("$bench" "$engine" --num 200 --sync 1 --threads 4 \
        --benchmarks=fillrandom,waitforcompaction,compact,stats --settle_ms 100 \
        --db "$db") || fail "$engine: --sync 1 --threads 4 exited $?"
  # shellcheck disable=SC2059
  expect "$out" "$(printf "$result_re" fillrandom)" "$engine synced fillrandom"
  expect "$out" '^waitforcompaction : ' "$engine waitforcompaction"
  expect "$out" '^compact +: +[0-9.]+ seconds' "$engine compact"
done

# kvfs only: async writes in flight.
out=$("$bench" storage --num 2000 --inflight 8 --sync 1 --benchmarks=fillrandom,readrandom \
      --db "$tmp/async") || fail "storage --inflight exited $?"
# shellcheck disable=SC2059
expect "$out" "$(printf "$result_re" fillrandom)" "storage --inflight fillrandom"

# Bad flags: one line on stderr, exit 2.
for bad in "--num=abc" "--benchmarks=fillfast" "--nosuchflag=1" "--compression=zstd" \
           "--key_size=2"; do
  set +e
  err=$("$bench" storage "$bad" --db "$tmp/bad" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$err")" -eq 1 ]; then ok; else
    fail "storage $bad: exit $rc, stderr: $err"; fi
done

# A directory that holds files but no database is never wiped.
mkdir -p "$tmp/precious" && echo keep >"$tmp/precious/file"
if "$bench" storage --num 10 --benchmarks=fillseq --db "$tmp/precious" >/dev/null 2>&1; then
  fail "storage wiped a directory that is not a database"
elif [ -f "$tmp/precious/file" ]; then ok; else fail "precious file removed"; fi

# fsync and measure.
out=$("$bench" fsync --dir "$tmp" --count 5) || fail "fsync exited $?"
expect "$out" '^fsync +: .* p50 [0-9.]+ p99 [0-9.]+ mean [0-9.]+' "fsync line"

# hiccup: one line with the gap counts; bad flags exit 2.
out=$("$bench" hiccup --duration 0.3 --interval-us 500) || fail "hiccup exited $?"
expect "$out" '^hiccup +: 0\.[0-9] s, [0-9]+ CPUs, 500-us sleeps \(normal priority\), [0-9]+ wake-ups: gaps > 1 ms [0-9]+, > 10 ms [0-9]+, > 50 ms [0-9]+; max [0-9.]+ ms \(cpu [0-9]+\); [0-9.]+ ms in gaps > 10 ms$' "hiccup line"
for bad in "--duration x" "--interval-us 5" "--nope"; do
  # shellcheck disable=SC2086 # split on purpose
  rc=0; "$bench" hiccup $bad >/dev/null 2>&1 || rc=$?
  if [ "$rc" -eq 2 ]; then ok; else fail "hiccup $bad exited $rc, not 2"; fi
done
"$bench" measure --out="$tmp/m" -- sh -c 'head -c 100000 /dev/zero >"$1"' sh "$tmp/w" ||
  fail "measure exited $?"
m=$(cat "$tmp/m")
expect "$m" '^measure: status=0 .*maxrss_kib=[0-9]+ peak_anon_kib=[0-9]+ wchar=[0-9]+' "measure line"
w=$(sed -E 's/.* wchar=([0-9]+).*/\1/' <<<"$m")
if [ "$w" -ge 100000 ]; then ok; else fail "measure: wchar $w < 100000 bytes written"; fi

echo "bench_smoke: $pass passed, $failures failed"
[ "$failures" -eq 0 ]
