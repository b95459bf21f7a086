#!/bin/sh
# run-fuzz.sh - runs one libFuzzer target for $FUZZ_SECONDS seconds (default
# 20) on a scratch copy of its seed corpus, so the repository's corpus is
# never modified. Crash reproducers are kept in the current directory (the
# build directory under meson test) as <target>-crash-<sha1>.
#
#   run-fuzz.sh FUZZER CORPUS_DIR
set -eu

if [ $# -ne 2 ]; then
	echo "usage: run-fuzz.sh FUZZER CORPUS_DIR" >&2
	exit 2
fi
fuzzer=$1
corpus=$2
seconds=${FUZZ_SECONDS:-20}
name=$(basename "$fuzzer")
artifacts=$(pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir "$work/corpus"
if [ -d "$corpus" ]; then
	cp -R "$corpus"/. "$work/corpus/"
fi

# libFuzzer stops itself after max_total_time; timeout(1) is the safety net
# for a hang that -timeout (per input) does not catch.
status=0
timeout $((seconds + 120)) "$fuzzer" "$work/corpus" \
	-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	-artifact_prefix="$artifacts/$name-" -print_final_stats=1 || status=$?
if [ $status -ne 0 ]; then
	echo "run-fuzz.sh: $name failed (exit $status); reproducers: $artifacts/$name-*" >&2
fi
exit $status
