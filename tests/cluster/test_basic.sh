#!/usr/bin/env bash
# tests/cluster/test_basic.sh [BUILD_DIR] - issue 4 "Show it works", first
# scenario: 3 nodes, N=3. put/get/delete/list round trips through every node;
# values of 0 B, 1 B, 100 KiB, 1 MiB and exactly 4 MiB read back identical and
# 4 MiB + 1 gets a clear error; keys with odd bytes (\0 included, as hex:
# keys), spaces, UTF-8, and a 4096-byte key (4097 bytes: a clear error).
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
kv_setup basic 27100 "${1:-}"

kv_up 3 -- --n 3

step "put through each node, get through every node"
for i in 1 2 3; do
  expect_ok "put /rt/k$i through node $i" ctl "$i" put "/rt/k$i" - < <(printf 'value %s' "$i")
done
for i in 1 2 3; do
  for j in 1 2 3; do
    expect_ok "get /rt/k$i through node $j" ctl "$j" get "/rt/k$i"
    assert_eq "$(cat "$KV_TMP/out")" "value $i" "get /rt/k$i through node $j"
  done
done

step "overwrite through another node replaces the value (no sibling)"
expect_ok "put /rt/k1 through node 2" ctl 2 put /rt/k1 - < <(printf 'value 1b')
for j in 1 2 3; do
  expect_ok "get /rt/k1 through node $j after overwrite" ctl "$j" get /rt/k1
  assert_eq "$(cat "$KV_TMP/out")" "value 1b" "get /rt/k1 through node $j after overwrite"
done

step "list /rt through every node"
for j in 1 2 3; do
  expect_ok "list /rt through node $j" ctl "$j" list /rt
  for i in 1 2 3; do
    grep -q "k$i" "$KV_TMP/out" || fail "list /rt through node $j lacks k$i: $(tr '\n' ' ' <"$KV_TMP/out")"
  done
done

step "delete through each node"
for i in 1 2 3; do
  d=$(( i % 3 + 1 ))
  expect_ok "delete /rt/k$i through node $d" ctl "$d" delete "/rt/k$i"
  for j in 1 2 3; do
    expect_rc 2 "get /rt/k$i through node $j after delete (want not found)" ctl "$j" get "/rt/k$i"
  done
done
for j in 1 2 3; do
  expect_ok "list /rt through node $j after deletes" ctl "$j" list /rt
  if grep -q "k[123]" "$KV_TMP/out"; then
    fail "list /rt through node $j still shows deleted keys: $(tr '\n' ' ' <"$KV_TMP/out")"
  fi
done
expect_rc 2 "get of a key never written" ctl 1 get /rt/never

step "values of 0 B, 1 B, 100 KiB, 1 MiB, 4 MiB"
sizes=(0 1 102400 1048576 4194304)
for s in "${sizes[@]}"; do
  head -c "$s" /dev/urandom >"$KV_TMP/v$s"
  expect_ok "put of $s bytes through node 1" ctl 1 put "/sz/v$s" "$KV_TMP/v$s"
done
for s in "${sizes[@]}"; do
  for j in 2 3; do
    expect_ok "get of $s bytes through node $j" ctl "$j" get "/sz/v$s"
    assert_same_file "$KV_TMP/out" "$KV_TMP/v$s" "value of $s bytes read through node $j"
  done
done
step "a value of 4 MiB + 1 gets a clear error"
head -c 4194305 /dev/urandom >"$KV_TMP/vbig"
expect_fail "put of 4 MiB + 1 bytes" ctl 1 put /sz/vbig "$KV_TMP/vbig"
step "  error: $ERRLINE"
expect_rc 2 "get of the refused 4 MiB + 1 value (want not found)" ctl 2 get /sz/vbig
step "a 4 MiB value from stdin"
expect_ok "put of 4 MiB from stdin" ctl 2 put /sz/stdin - <"$KV_TMP/v4194304"
expect_ok "get of the 4 MiB value put from stdin" ctl 3 get /sz/stdin
assert_same_file "$KV_TMP/out" "$KV_TMP/v4194304" "4 MiB value put from stdin"

step "odd keys: NUL bytes (hex:), spaces, UTF-8, 4096 bytes"
# hex key -> value; keys that differ only after a NUL must stay apart.
hexkeys=(
  2f6f64642f6100      # "/odd/a\0"
  2f6f64642f610062    # "/odd/a\0b"
  2f6f64642f610063    # "/odd/a\0c"
  2f6f64642f0a        # "/odd/\n"
  00ff0a0d7f          # no leading /: "\0\xff\n\r\x7f"
  2f6f64642f01fe80    # "/odd/\x01\xfe\x80" (not UTF-8)
)
for k in "${hexkeys[@]}"; do
  expect_ok "put of key hex:$k" ctl 1 put "hex:$k" - < <(printf 'hex %s' "$k")
done
for k in "${hexkeys[@]}"; do
  expect_ok "get of key hex:$k through node 3" ctl 3 get "hex:$k"
  assert_eq "$(cat "$KV_TMP/out")" "hex $k" "value of key hex:$k"
done
expect_ok "get of hex:2f6f64642f6100 with --key-hex" ctl 2 --key-hex get 2f6f64642f6100
assert_eq "$(cat "$KV_TMP/out")" "hex 2f6f64642f6100" "value of key --key-hex 2f6f64642f6100"
expect_rc 2 "get of \"/odd/a\" (the NUL keys are other keys)" ctl 2 get /odd/a

textkeys=("/odd/with space" "/odd/ tab	and  spaces " "/odd/ünïcødé/日本語/ключ" "/odd/emoji 🙂")
for k in "${textkeys[@]}"; do
  expect_ok "put of key '$k'" ctl 2 put "$k" - < <(printf 'text %s' "$k")
done
for k in "${textkeys[@]}"; do
  expect_ok "get of key '$k' through node 1" ctl 1 get "$k"
  assert_eq "$(cat "$KV_TMP/out")" "text $k" "value of key '$k'"
done

long=/long/$(head -c 4090 /dev/zero | tr '\0' x)
[ ${#long} -eq 4096 ] || fail "test bug: long key has ${#long} bytes"
expect_ok "put of a 4096-byte key" ctl 3 put "$long" - < <(printf 'long')
expect_ok "get of a 4096-byte key through node 1" ctl 1 get "$long"
assert_eq "$(cat "$KV_TMP/out")" "long" "value of the 4096-byte key"
expect_fail "put of a 4097-byte key" ctl 3 put "${long}y" - < <(printf 'too long')
case "$ERRLINE" in
  *"above the 4096-byte limit"*) ;;
  *) fail "put of a 4097-byte key: want a one-line limit error, got: $ERRLINE" ;;
esac
step "  error: $ERRLINE"

# The puts above were committed by the nodes' event loops themselves
# (doc/node.md "Output and reads per loop round"), not all handed to the
# engine's commit thread.
loop_commits=0
for i in 1 2 3; do
  n=$(ctl "$i" stats | awk '$1 == "commits_loop" { print $2 }')
  [ -n "$n" ] || fail "node $i: no commits_loop in kvfsctl stats"
  loop_commits=$((loop_commits + n))
done
[ "$loop_commits" -gt 0 ] || fail "no write group was committed on a node's loop"
step "  write groups committed on the loops: $loop_commits"

for i in 1 2 3; do assert_alive "$i"; done
step "PASS"
