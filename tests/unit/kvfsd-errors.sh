#!/usr/bin/env bash
# kvfsd-errors.sh KVFSD - kvfsd's startup errors and clean stop (man/kvfsd.8,
# issue 4): each refused start exits 1 with one line on stderr; a node started
# on loopback stops cleanly on SIGTERM. Real processes on 127.0.0.0/8 only;
# every process and file is cleaned up on every path (trap). Bounded waits.
set -u

KVFSD=${1:?usage: kvfsd-errors.sh PATH-TO-KVFSD}
RUN=("$KVFSD") # how refused() runs kvfsd
T=$(mktemp -d /tmp/kvfsd-errors.XXXXXX)
PIDS=()
FAILED=0

# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	chmod -R u+rwx "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*"
	FAILED=1
}

# forget PID: it has been waited for, so its number may be reused; never kill it.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# start NAME ARGS...: starts kvfsd in the background, stderr to $T/NAME.err,
# and waits (at most 10 s) for its startup line. Sets START_PID and START_PORT.
start() {
	local name=$1 i
	shift
	"$KVFSD" "$@" 2>"$T/$name.err" &
	START_PID=$!
	PIDS+=("$START_PID")
	START_PORT=
	for ((i = 0; i < 100; i++)); do
		START_PORT=$(sed -n 's/^kvfsd: node [0-9]* listening on [0-9.]*:\([0-9]*\) (.*/\1/p' \
			"$T/$name.err")
		[ -n "$START_PORT" ] && return 0
		kill -0 "$START_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "$name: no startup line: $(cat "$T/$name.err")"
	kill -KILL "$START_PID" 2>/dev/null
	wait "$START_PID" 2>/dev/null
	forget "$START_PID"
	return 1
}

# stop NAME PID: SIGTERM, then waits (at most 10 s) for exit status 0.
stop() {
	local name=$1 pid=$2 i rc
	kill -TERM "$pid"
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		fail "$name: still running 10 s after SIGTERM"
		kill -KILL "$pid"
	fi
	wait "$pid"
	rc=$?
	forget "$pid"
	[ "$rc" -eq 0 ] || fail "$name: exit status $rc after SIGTERM: $(cat "$T/$name.err")"
	grep -q "^kvfsd: node [0-9]* stopping (SIGTERM)$" "$T/$name.err" ||
		fail "$name: no stopping line"
}

# refused NAME EXPECTED ARGS...: kvfsd must exit 1 within 10 s with EXPECTED
# (a fixed string, matched case-insensitively) as its one "kvfsd:" line.
refused() {
	local name=$1 want=$2 rc lines failed_before=$FAILED
	shift 2
	timeout 10 "${RUN[@]}" "$@" 2>"$T/$name.err" >/dev/null
	rc=$?
	[ "$rc" -eq 1 ] || fail "$name: exit status $rc, want 1"
	lines=$(grep -c '^kvfsd:' "$T/$name.err")
	[ "$lines" -eq 1 ] || fail "$name: $lines kvfsd: lines, want 1: $(cat "$T/$name.err")"
	grep -qiF -- "kvfsd: $want" "$T/$name.err" ||
		fail "$name: want 'kvfsd: $want', got: $(cat "$T/$name.err")"
	[ "$FAILED" -eq "$failed_before" ] && echo "ok: $name: $(grep '^kvfsd:' "$T/$name.err")"
}

# 1. Starts and stops cleanly on SIGTERM; while it runs, its port is in use.
failed_before=$FAILED
if start node1 --node-id 1 --data "$T/d1" --listen 127.0.0.1:0 --log-level warn; then
	PORT=$START_PORT
	PID1=$START_PID
	refused port-in-use "cannot listen on 127.0.0.1:$PORT: address already in use" \
		--node-id 1 --data "$T/d2" --listen "127.0.0.1:$PORT"
	stop node1 "$PID1"
	[ -f "$T/d1/NODE" ] || fail "node1: no NODE file in its data directory"
	[ "$FAILED" -eq "$failed_before" ] && echo "ok: starts on 127.0.0.1:$PORT and stops on SIGTERM"
fi

# 2. A data directory it cannot use. Root passes permission checks, so as
# root run kvfsd as nobody (setpriv) on a directory of mode 000.
mkdir -m 000 "$T/unreadable"
chmod 755 "$T"
if [ "$(id -u)" -ne 0 ]; then
	refused unreadable-data "data directory $T/unreadable is not usable: permission denied" \
		--node-id 1 --data "$T/unreadable" --listen 127.0.0.1:0
elif command -v setpriv >/dev/null; then
	RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups "$KVFSD")
	refused unreadable-data "data directory $T/unreadable is not usable: permission denied" \
		--node-id 1 --data "$T/unreadable" --listen 127.0.0.1:0
	RUN=("$KVFSD")
else
	echo "skip: unreadable data directory (root without setpriv)"
fi

# 3. A bad key in the config file, named with file:line.
printf 'node-id = 1\n# a comment\nfoo = bar\ndata = %s/d3\n' "$T" >"$T/kvfs.conf"
refused bad-key "unknown key 'foo' at $T/kvfs.conf:3" --config "$T/kvfs.conf"

# 4. An N that disagrees with the node's data: N=1 once, then N=3.
if start n1 --node-id 1 --data "$T/dn" --n 1 --listen 127.0.0.1:0 --log-level warn; then
	stop n1 "$START_PID"
	P=$((20000 + RANDOM % 20000))
	refused n-disagrees "--n 3 disagrees with this node's data (N=1)" \
		--node-id 1 --data "$T/dn" --n 3 \
		--members "1=127.0.0.21:$P,2=127.0.0.22:$P,3=127.0.0.23:$P"
fi

# 5. Options refused before anything starts.
refused no-secret "refusing to listen on 0.0.0.0 without --secret-file" \
	--node-id 1 --data "$T/d5" --listen 0.0.0.0:7400
refused no-data "missing --data" --node-id 1

[ "$FAILED" -eq 0 ] && echo "PASS" || echo "FAILED"
exit "$FAILED"
