#!/usr/bin/env bash
# tests/fuse/test_reclaim.sh - chunk reclamation (issue 5 "Show it works";
# DESIGN §7 "Reclaiming chunks"): overwrite and delete large files, run a
# sweep (`kvfsctl gc --grace 0`); the space comes back on the nodes' disks,
# while a deduplicated copy (cp), a renamed file, a sibling (as root: made
# with a real partition) and an open-but-unlinked file that share chunks
# with what was deleted still read back intact.
# KV_RECLAIM_MB sets the size of each garbage file (default 64).
. "$(dirname "$0")/lib.sh"
fz_setup fuse_reclaim 7660 "$@"
ctl_help=$("$KVFSCTL" --help 2>&1 || true)
grep -qE '^ +gc( |$)' <<<"$ctl_help" || skip "kvfsctl gc is not built yet"
has_compact=0
grep -qE '^ +compact( |$)' <<<"$ctl_help" && has_compact=1

MB=${KV_RECLAIM_MB:-64}
fz_up 3 -- --n 3 --r 2 --w 2 --timeout 5000 --sync batch:5
fz_mount m --cluster "$(fz_all)"
M=$(fz_mnt m)

rnd() { head -c $(($2 * 1024 * 1024)) /dev/urandom >"$KV_TMP/$1" || fail "head /dev/urandom"; }
sum() { sha256sum <"$1" | cut -d' ' -f1; }
for f in g1a g1b g2; do rnd "$f" "$MB"; done
for f in s_dup s_ren s_sib s_open; do rnd "$f" 16; done

# data_kb: the nodes' data directories on disk (after a compaction, when
# kvfsctl offers one).
data_kb() {
  local i
  if [ "$has_compact" -eq 1 ]; then
    for i in $(seq 1 "$FZ_NODES"); do ctl "$i" compact >/dev/null || fail "kvfsctl compact on node $i"; done
  fi
  sync
  du -sk "$KV_DIR"/n*/ | awk '{ s += $1 } END { print s }'
}

step "shared chunks: a cp copy, a renamed file, an open-but-unlinked file"
cp "$KV_TMP/s_dup" "$M/orig" || fail "cp orig"
cp "$M/orig" "$M/dup" || fail "cp orig dup"
cp "$KV_TMP/s_ren" "$M/r1" || fail "cp r1"
mv "$M/r1" "$M/r2" || fail "mv r1 r2"
# The open-but-unlinked file is held through a second mount, o, which stays
# mounted (m is remounted below to read the rest cold).
fz_mount o --cluster "$(fz_all)"
O=$(fz_mnt o)
cp "$KV_TMP/s_open" "$O/ou" || fail "cp ou"
cp "$KV_TMP/s_open" "$M/ou-garbage" || fail "cp ou-garbage" # shares ou's chunks
exec 9<"$O/ou"
sib=0
if [ "$(id -u)" -eq 0 ] && command -v nft >/dev/null; then
  step "a sibling holding large content (partition 1 | 2,3)"
  sib=1
  fz_mount a --cluster "$(fz_addr 1)" -o r=1,w=1
  fz_mount b --cluster "$(fz_addr 2)" -o r=1,w=1
  cp "$KV_TMP/s_sib" "$M/sibsrc" || fail "cp sibsrc" # shares the sibling's chunks
  kc partition 1 2,3 || fail "partition"
  cp "$KV_TMP/s_sib" "$(fz_mnt a)/s" || fail "cp s through A"
  sleep 0.05
  echo small >"$(fz_mnt b)/s" || fail "write s through B"
  kc heal || fail "heal"
fi

step "garbage: overwrite and delete ${MB} MiB files"
cp "$KV_TMP/g1a" "$M/over" || fail "cp over"
cp "$KV_TMP/g1b" "$M/over" || fail "overwrite over"
cp "$KV_TMP/g2" "$M/del" || fail "cp del"
rm "$M/del" "$M/orig" "$M/ou-garbage" || fail "rm"
rm "$O/ou" || fail "rm ou (open)"
[ "$sib" -eq 0 ] || rm "$M/sibsrc" || fail "rm sibsrc"

before=$(data_kb)
step "sweep: kvfsctl gc --grace 0 (data dirs: $((before / 1024)) MiB)"
timeout 300 "$KVFSCTL" -c "$(fz_all)" gc --grace 0 >"$KV_TMP/gc.out" 2>&1 ||
  fail "kvfsctl gc --grace 0: $(tail -n 5 "$KV_TMP/gc.out")"
after=$(data_kb)
freed=$((before - after))
step "data dirs after the sweep: $((after / 1024)) MiB, $((freed / 1024)) MiB freed"
# Garbage: two ${MB} MiB files (the overwritten version and the deleted
# file), N=3 copies of each chunk. gc reports "freed N bytes".
want_bytes=$((MB * 1024 * 1024 * 2 * 3))
gc_freed=$(sed -n 's/.*freed \([0-9][0-9]*\) bytes.*/\1/p' "$KV_TMP/gc.out" | head -n 1)
step "gc: $(tr '\n' ' ' <"$KV_TMP/gc.out")"
if [ "$has_compact" -eq 1 ]; then
  # Measured on the nodes' disks, after a compaction.
  want=$((want_bytes / 1024 * 9 / 10))
  [ "$freed" -ge "$want" ] || fail "the sweep freed $((freed / 1024)) MiB of disk, want >= $((want / 1024)) MiB"
else
  # No compaction command: the engine may keep deleted bytes until it
  # compacts on its own, so count what the sweep deleted instead.
  [ -n "$gc_freed" ] || fail "kvfsctl gc printed no 'freed N bytes': $(cat "$KV_TMP/gc.out")"
  [ "$gc_freed" -ge $((want_bytes * 9 / 10)) ] ||
    fail "the sweep freed $gc_freed bytes, want >= 90% of $want_bytes (two ${MB} MiB files, 3 copies)"
fi

step "what shares the chunks still reads back intact"
fz_remount m --cluster "$(fz_all)"
assert_eq "$(sum "$M/over")" "$(sum "$KV_TMP/g1b")" "the overwritten file's new content"
assert_eq "$(sum "$M/dup")" "$(sum "$KV_TMP/s_dup")" "the cp copy of a deleted file"
assert_eq "$(sum "$M/r2")" "$(sum "$KV_TMP/s_ren")" "the renamed file"
assert_eq "$(sha256sum <&9 | cut -d' ' -f1)" "$(sum "$KV_TMP/s_open")" "the open-but-unlinked file"
exec 9<&-
if [ "$sib" -eq 1 ]; then
  fz_mount r3 --cluster "$(fz_all)" -o r=3
  R3=$(fz_mnt r3)
  assert_eq "$(fz_names "$R3" | tr ' ' '\n' | grep -c '^s\.sibling-' || true)" 2 "siblings of s"
  found=0
  for f in "$R3"/s.sibling-*; do
    [ "$(sum "$f")" = "$(sum "$KV_TMP/s_sib")" ] && found=1
  done
  [ "$found" -eq 1 ] || fail "no sibling of s holds the large version intact"
fi
fz_done
