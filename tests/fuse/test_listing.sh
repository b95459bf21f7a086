#!/usr/bin/env bash
# tests/fuse/test_listing.sh - `ls -l` of a 10,000-entry directory, after a
# remount (nothing cached), costs a handful of LIST requests and no
# per-entry request of any kind (issue 5 "Show it works"; DESIGN §7
# "Listing"). Checked with the nodes' request counters (kvfsctl stats),
# summed over the nodes, before and after; never with timings.
# KV_LIST_N sets the number of entries (default 10000).
. "$(dirname "$0")/lib.sh"
fz_setup fuse_listing 7650 "$@"

N=${KV_LIST_N:-10000}
fz_up 3 -- --n 3 --r 2 --w 2 --timeout 5000 --sync batch:5
fz_mount m --cluster "$(fz_all)"
M=$(fz_mnt m)

step "creating $N files in big/"
mkdir "$M/big" || fail "mkdir big"
python3 - "$M/big" "$N" <<'EOF' || fail "creating the files failed"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "w") as f:
        f.write("x" * (i % 100))
EOF
fz_remount m --cluster "$(fz_all)"
# Look the directory itself up before counting: that lookup is one entry,
# not a per-entry cost of the listing.
[ -d "$M/big" ] || fail "big/ is gone after the remount"

fz_counters >"$KV_TMP/before"
step "ls -l big/"
t0=$(now_ms)
LC_ALL=C ls -l "$M/big" >"$KV_TMP/ls.out" 2>"$KV_TMP/ls.err" || fail "ls -l failed: $(head -c 300 "$KV_TMP/ls.err")"
dt=$(($(now_ms) - t0))
fz_counters >"$KV_TMP/after"
lines=$(grep -c '^-' "$KV_TMP/ls.out" || true)
assert_eq "$lines" "$N" "files shown by ls -l"
# Sizes came from the listing: f00042 holds 42 bytes.
assert_eq "$(awk '$NF == "f00042" { print $5 }' "$KV_TMP/ls.out")" 42 "size of f00042 in ls -l"

join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$KV_TMP/before" "$KV_TMP/after" |
  awk '{ d = $3 - $2; if (d != 0) print $1, d }' >"$KV_TMP/delta"
step "ls -l of $N entries took $dt ms; counter deltas: $(tr '\n' ';' <"$KV_TMP/delta")"
list=$(awk '$1 ~ /list/ && $1 ~ /_requests$/ { s += $2 } END { print s + 0 }' "$KV_TMP/delta")
other=$(awk '$1 !~ /list/ && $1 ~ /_(requests|received)$/ { s += $2 } END { print s + 0 }' "$KV_TMP/delta")
# A handful: pages of the listing on R replicas (LIST + REPLICA_LIST each).
# A per-entry cost would be >= N.
[ "$list" -ge 1 ] || fail "ls -l sent no LIST request"
[ "$list" -le 200 ] || fail "ls -l of $N entries cost $list LIST-type requests (want a handful)"
[ "$other" -le 20 ] || fail "ls -l of $N entries cost $other non-LIST requests (want none per entry): $(tr '\n' ';' <"$KV_TMP/delta")"

# readdir answers while the listing thread still reads later pages
# (doc/fs.md §2): a reader that stops early closes the directory mid-way;
# the mount stops that listing and still unmounts cleanly.
step "ls -f big/ | head -1, then unmount"
first=$({ ls -f "$M/big" 2>/dev/null || true; } | head -1)
[ -n "$first" ] || fail "ls -f big/ printed nothing"
fz_umount m
fz_done "$list LIST-type requests, $other others"
