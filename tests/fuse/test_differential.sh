#!/usr/bin/env bash
# tests/fuse/test_differential.sh - the differential test (issue 5 "Show it
# works", last item): fsdiff.py applies one seeded random sequence of file
# operations to a directory on local disk and to a 3-node cluster's mount,
# comparing every result and the final trees. It prints its seed;
# KV_SEED=<seed> replays it. KV_DIFF_OPS sets the length (default 2000).
. "$(dirname "$0")/lib.sh"
fz_setup fuse_differential 7670 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000 --sync batch:5
fz_mount m --cluster "$(fz_all)"

# Found by seed 3329246033: a directory moved (onto an empty one) kept the
# listing of its old keys, so a rename onto a name in it, within
# attr_timeout, wrote with the old key's context and left the moved version
# as a sibling.
step "a rename onto a name inside a just-moved directory replaces it"
R="$(fz_mnt m)/moved"
mkdir -p "$R/src" "$R/dst" || fail "mkdir"
ln -s nowhere "$R/src/a" && echo old > "$R/src/b" || fail "fill src"
ls -l "$R/src" "$R/dst" >/dev/null
python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$R/src" "$R/dst" || fail "rename src dst"
echo new > "$R/f" || fail "write f"
python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$R/f" "$R/dst/a" || fail "rename f dst/a"
assert_eq "$(ls "$R/dst" | tr '\n' ' ')" "a b " "the moved directory after the rename"
assert_eq "$(cat "$R/dst/a")" "new" "the renamed file's content"
rm -r "$R" || fail "rm -r moved"

mkdir -p "$KV_TMP/local" "$(fz_mnt m)/t" || fail "mkdir"
python3 "$FZ_LIB_DIR/fsdiff.py" "$KV_TMP/local" "$(fz_mnt m)/t" --ops "${KV_DIFF_OPS:-2000}" ||
  fail "the mount differs from the local disk (see above)"
step "remount: the tree is the same from the cluster"
fz_remount m --cluster "$(fz_all)"
expect_ok "diff -r after remount" diff -r --no-dereference "$KV_TMP/local" "$(fz_mnt m)/t"
fz_done
