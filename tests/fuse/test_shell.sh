#!/usr/bin/env bash
# tests/fuse/test_shell.sh - the shell tools on a mount of a 3-node cluster
# (issue 5 "Show it works", first item): mkdir -p, echo >, cat, cp -r of a
# real tree then diff -r, ls -l, mv of files and directories, rm -r, ln -s,
# chmod, touch -d, tar and rsync round trips, git init/add/commit inside the
# mount, sed -i; then a remount, to see it all came from the cluster.
. "$(dirname "$0")/lib.sh"
fz_setup fuse_shell 7610 "$@"

fz_up 3 -- --n 3 --r 2 --w 2 --timeout 3000
fz_mount m --cluster "$(fz_all)"
M=$(fz_mnt m)
L=$KV_TMP/local
mkdir -p "$L"
# A real tree: the repository's src/ (C sources, headers, meson files).
SRC=$FZ_REPO/src

step "mkdir -p, echo >, cat"
expect_ok "mkdir -p" mkdir -p "$M/a/b/c"
[ -d "$M/a/b/c" ] || fail "mkdir -p: $M/a/b/c is not a directory"
echo hello >"$M/a/b/c/f" || fail "echo > a/b/c/f failed"
assert_eq "$(cat "$M/a/b/c/f")" hello "cat a/b/c/f"
echo more >>"$M/a/b/c/f" || fail "echo >> failed"
assert_eq "$(cat "$M/a/b/c/f")" "$(printf 'hello\nmore')" "cat after >>"

step "cp -r $SRC, diff -r"
expect_ok "cp -r" cp -r "$SRC" "$M/tree"
expect_ok "diff -r after cp -r" diff -r "$SRC" "$M/tree"

step "ls -l"
expect_ok "ls -l" ls -l "$M/tree"
want=$(cd "$SRC" && LC_ALL=C ls -A | LC_ALL=C sort)
got=$(cd "$M/tree" && LC_ALL=C ls -A | LC_ALL=C sort)
assert_eq "$got" "$want" "names listed in tree/"
# Sizes as ls -l shows them, file by file.
want=$(cd "$SRC" && find . -type f -printf '%P %s\n' | LC_ALL=C sort)
got=$(cd "$M/tree" && find . -type f -printf '%P %s\n' | LC_ALL=C sort)
assert_eq "$got" "$want" "find -printf sizes"

step "mv of files and directories"
expect_ok "mv file" mv "$M/a/b/c/f" "$M/a/f2"
[ ! -e "$M/a/b/c/f" ] || fail "mv: the old name a/b/c/f still exists"
assert_eq "$(cat "$M/a/f2")" "$(printf 'hello\nmore')" "cat after mv"
expect_ok "mv dir" mv "$M/tree" "$M/tree2"
[ ! -e "$M/tree" ] || fail "mv dir: tree still exists"
expect_ok "diff -r after mv dir" diff -r "$SRC" "$M/tree2"
expect_ok "mv dir into a dir" mv "$M/tree2" "$M/a/b/"
expect_ok "diff -r after second mv" diff -r "$SRC" "$M/a/b/tree2"

step "ln -s, chmod, touch -d"
expect_ok "ln -s" ln -s ../f2 "$M/a/b/link"
assert_eq "$(readlink "$M/a/b/link")" "../f2" "readlink"
assert_eq "$(cat "$M/a/b/link")" "$(printf 'hello\nmore')" "cat through the symlink"
expect_ok "chmod" chmod 640 "$M/a/f2"
assert_eq "$(stat -c %a "$M/a/f2")" 640 "mode after chmod"
expect_ok "chmod dir" chmod 750 "$M/a/b"
assert_eq "$(stat -c %a "$M/a/b")" 750 "dir mode after chmod"
expect_ok "touch -d" touch -d '2001-02-03 04:05:06 UTC' "$M/a/f2"
assert_eq "$(stat -c %Y "$M/a/f2")" "$(date -d '2001-02-03 04:05:06 UTC' +%s)" "mtime after touch -d"
expect_ok "touch -h -d (symlink)" touch -h -d '2002-01-01 00:00:00 UTC' "$M/a/b/link"
assert_eq "$(stat -c %Y "$M/a/b/link")" "$(date -d '2002-01-01 00:00:00 UTC' +%s)" "symlink mtime after touch -h"

step "tar round trip"
expect_ok "tar c (local)" tar -C "$SRC" -cf "$KV_TMP/src.tar" .
mkdir -p "$M/untar" || fail "mkdir untar"
expect_ok "tar x into the mount" tar -C "$M/untar" -xf "$KV_TMP/src.tar"
expect_ok "diff -r after tar x" diff -r "$SRC" "$M/untar"
expect_ok "tar c from the mount" tar -C "$M/untar" -cf "$KV_TMP/back.tar" .
mkdir -p "$L/untar"
expect_ok "tar x (local)" tar -C "$L/untar" -xf "$KV_TMP/back.tar"
expect_ok "diff -r after the round trip" diff -r "$SRC" "$L/untar"

step "rsync round trip"
command -v rsync >/dev/null || fail "rsync is not installed (tools/deps.sh lists it)"
expect_ok "rsync -a into the mount" rsync -a "$SRC/" "$M/rs/"
expect_ok "diff -r after rsync in" diff -r "$SRC" "$M/rs"
expect_ok "rsync -a out of the mount" rsync -a "$M/rs/" "$L/rs/"
expect_ok "diff -r after rsync out" diff -r "$SRC" "$L/rs"
# A second rsync finds nothing to do: sizes and mtimes came back exactly.
expect_ok "rsync -ai again" rsync -ai "$SRC/" "$M/rs/"
assert_eq "$(grep -v '^\.d' "$KV_TMP/out" || true)" "" "second rsync transferred files"
# rsync -a onto an existing file: it writes a temp file and renames it over.
echo changed >"$L/rs/changed.txt"
cp "$L/rs/changed.txt" "$KV_TMP/changed.txt"
expect_ok "rsync of one changed file" rsync -a "$KV_TMP/changed.txt" "$M/rs/changed.txt"
assert_eq "$(cat "$M/rs/changed.txt")" changed "file written by rsync's rename"

step "git init/add/commit inside the mount"
command -v git >/dev/null || fail "git is not installed"
mkdir -p "$M/repo" || fail "mkdir repo"
cp -r "$SRC/util" "$M/repo/" || fail "cp into repo"
(
  cd "$M/repo"
  export GIT_CONFIG_NOSYSTEM=1 HOME=$KV_TMP
  git init -q . &&
    git -c user.name=t -c user.email=t@example.com add -A &&
    git -c user.name=t -c user.email=t@example.com commit -q -m 'first' &&
    echo '/* edit */' >>util/log.c &&
    git -c user.name=t -c user.email=t@example.com commit -q -am 'second' &&
    git log --oneline | wc -l >"$KV_TMP/gitlog" &&
    git status --porcelain >"$KV_TMP/gitstatus" &&
    git fsck --no-progress 2>&1
) >"$KV_TMP/git.out" 2>&1 || fail "git in the mount failed: $(tail -n 5 "$KV_TMP/git.out")"
assert_eq "$(tr -d ' ' <"$KV_TMP/gitlog")" 2 "git log length"
assert_eq "$(cat "$KV_TMP/gitstatus")" "" "git status after commit"

step "sed -i"
echo 'alpha beta' >"$M/a/sed.txt"
expect_ok "sed -i" sed -i 's/beta/gamma/' "$M/a/sed.txt"
assert_eq "$(cat "$M/a/sed.txt")" "alpha gamma" "content after sed -i"
assert_eq "$(ls "$M/a" | grep -c '^sed' || true)" 1 "sed's temp file left behind"

step "rm -r"
expect_ok "rm -r" rm -r "$M/untar"
[ ! -e "$M/untar" ] || fail "rm -r: untar still exists"
expect_ok "rm file" rm "$M/a/b/link"

step "remount: everything came from the cluster"
fz_remount m --cluster "$(fz_all)"
expect_ok "diff -r after remount" diff -r "$SRC" "$M/a/b/tree2"
expect_ok "diff -r rs after remount" diff -r "$L/rs" "$M/rs"
assert_eq "$(stat -c %a "$M/a/f2")" 640 "mode after remount"
assert_eq "$(stat -c %Y "$M/a/f2")" "$(date -d '2001-02-03 04:05:06 UTC' +%s)" "mtime after remount"
[ ! -e "$M/untar" ] || fail "untar came back after remount"
assert_eq "$(cat "$M/a/sed.txt")" "alpha gamma" "sed.txt after remount"
(cd "$M/repo" && HOME=$KV_TMP git fsck --no-progress) >"$KV_TMP/git.out" 2>&1 ||
  fail "git fsck after remount: $(tail -n 5 "$KV_TMP/git.out")"
fz_done
