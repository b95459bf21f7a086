#!/usr/bin/env bash
# tests/fuse/test_lookups.sh - the lookup read-ahead (doc/fs.md §2, DESIGN §7
# "Listing"): after a remount, a stat loop over a directory, stats of names
# that do not exist, opens and unlinks cost a handful of LIST requests and
# no per-entry GET (checked with the nodes' request counters, never with
# timings); a file another mount creates is still seen within the timeout
# rules of kvfs(1) (attr_timeout, then the kernel's entry timeout), and
# open() still reads at R (close-to-open). KV_LOOKUP_N sets the number of
# files (default 600).
. "$(dirname "$0")/lib.sh"
fz_setup fuse_lookups 7690 "$@"

N=${KV_LOOKUP_N:-600}
fz_up 3 -- --n 3 --r 2 --w 2 --timeout 5000 --sync batch:5
fz_mount a --cluster "$(fz_all)"
fz_mount b --cluster "$(fz_addr 2)"
A=$(fz_mnt a)
B=$(fz_mnt b)

step "creating $N files in d/ through mount a"
mkdir "$A/d" || fail "mkdir d"
python3 - "$A/d" "$N" <<'EOF' || fail "creating the files failed"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    fd = os.open(os.path.join(d, "f%05d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"y" * (i % 50))
    os.close(fd)
EOF

# delta NAME-REGEX: the sum of the counters matching NAME-REGEX between
# $KV_TMP/before and $KV_TMP/after.
delta() {
  join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$KV_TMP/before" "$KV_TMP/after" |
    awk -v re="$1" '$1 ~ re { s += $3 - $2 } END { print s + 0 }'
}
report() {
  join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$KV_TMP/before" "$KV_TMP/after" |
    awk '$1 ~ /_requests$/ { d = $3 - $2; if (d != 0) printf "%s %d;", $1, d }'
}

# A phase: remount a, look the directory up, then count what CMD costs.
phase() {
  local what=$1
  shift
  fz_remount a --cluster "$(fz_all)"
  [ -d "$A/d" ] || fail "d/ is gone after the remount"
  fz_counters >"$KV_TMP/before"
  "$@" || fail "$what failed"
  fz_counters >"$KV_TMP/after"
  step "$what: $(report)"
}

step "stat of every file, in order, after a remount"
phase "stat loop" python3 - "$A/d" "$N" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    st = os.lstat(os.path.join(d, "f%05d" % i))
    if st.st_size != i % 50:
        sys.exit("f%05d: size %d, want %d" % (i, st.st_size, i % 50))
EOF
gets=$(delta '^get_requests$')
lists=$(delta '^list_requests$')
# A few lookups ask before the read-ahead starts (and again when a page
# outlives attr_timeout on a slow machine); a per-entry cost would be >= N.
[ "$gets" -le $((N / 20 + 10)) ] || fail "stat of $N files cost $gets GETs (want no per-entry GET)"
[ "$lists" -ge 1 ] || fail "stat of $N files read no LIST page: the read-ahead did not start"
[ "$lists" -le $((N / 20 + 10)) ] || fail "stat of $N files cost $lists LISTs (want a handful)"

step "stat of names that do not exist, after a remount"
phase "negative lookups" python3 - "$A/d" "$N" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    try:
        os.lstat(os.path.join(d, "g%05d" % i))
        sys.exit("g%05d exists" % i)
    except FileNotFoundError:
        pass
EOF
gets=$(delta '^get_requests$')
[ "$gets" -le $((N / 20 + 10)) ] || fail "$N negative lookups cost $gets GETs (want no per-entry GET)"

step "open and read of every file, after a remount: one GET each (close-to-open)"
phase "read loop" python3 - "$A/d" "$N" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "rb") as f:
        if f.read() != b"y" * (i % 50):
            sys.exit("f%05d: wrong content" % i)
EOF
gets=$(delta '^get_requests$')
[ "$gets" -ge "$N" ] || fail "$N opens cost only $gets GETs: open() must read at R"
[ "$gets" -le $((N + N / 20 + 10)) ] || fail "$N opens cost $gets GETs (want one each)"

step "a file another mount writes is seen within the timeouts, its content at once"
# Negative lookups past the last name: mount a gets a fresh read-ahead
# page of d/ that covers every name after g00002, new-b too.
python3 - "$A/d" <<'EOF' || fail "negative lookups on a"
import os, sys
for i in range(20):
    if os.path.lexists(os.path.join(sys.argv[1], "g%05d" % i)):
        sys.exit("g%05d exists" % i)
EOF
[ ! -e "$A/d/new-b" ] || fail "new-b exists before b wrote it"
echo from-b >"$B/d/new-b" || fail "write new-b through b"
t0=$(now_ms)
seen=0
for _ in $(seq 1 100); do
  if [ -e "$A/d/new-b" ]; then seen=1; break; fi
  sleep 0.1
done
dt=$(($(now_ms) - t0))
[ "$seen" -eq 1 ] || fail "a did not see new-b within 10 s"
# attr_timeout (1 s) for the page, then the kernel's negative entry (1 s).
[ "$dt" -le 3500 ] || fail "a saw new-b only after $dt ms (want within attr_timeout + entry timeout)"
step "a saw new-b after $dt ms"
assert_eq "$(cat "$A/d/new-b")" from-b "new-b read through a"
echo changed >"$B/d/f00007" || fail "overwrite f00007 through b"
assert_eq "$(cat "$A/d/f00007")" changed "f00007 read through a right after b's close (close-to-open)"

step "unlink of every file, after a remount: one DELETE each, no GET"
phase "unlink loop" python3 - "$A/d" "$N" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.unlink(os.path.join(d, "f%05d" % i))
# Unlinks are write-behind (doc/fs.md §5): fsync of the directory waits for
# their deletes, so the counters below see them all.
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
EOF
gets=$(delta '^get_requests$')
dels=$(delta '^delete_requests$')
assert_eq "$dels" "$N" "DELETE requests of $N unlinks"
[ "$gets" -le $((N / 20 + 10)) ] || fail "$N unlinks cost $gets GETs (want none per entry)"
assert_eq "$(fz_names "$A/d")" "new-b" "d/ after the unlinks (through a)"
assert_eq "$(fz_names "$B/d")" "new-b" "d/ after the unlinks (through b)"
fz_done "stat, negative lookups, reads and unlinks without per-entry GETs"
