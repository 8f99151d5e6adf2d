#!/bin/bash
# Summarize one `make run` fuzzing session of bench/fuzz (used by the Makefile).
#   summarize.sh TARGET LOG ARTIFACT_DIR
# Prints executions, speed, coverage and crashes from libFuzzer's fork-mode
# log, then replays each crash artifact once to list the distinct findings.
set -u
target=$1 log=$2 artifacts=$3

last=$(grep -a -E '^#[0-9]+: cov:' "$log" | tail -n 1)
if [ -z "$last" ]; then
	echo "fuzz_bson_$target: no progress line in $log"; tail -n 20 "$log"; exit 1
fi
execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$last")
ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$last")
corp=$(sed -E 's/.* corp: ([0-9]+).*/\1/' <<<"$last")
crashes=$(sed -E 's|.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*|\3|' <<<"$last")
ooms=$(sed -E 's|.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*|\1/\2|' <<<"$last")
secs=$(grep -a -E '^INFO: exiting: .* time: [0-9]+s' "$log" | tail -n 1 | sed -E 's/.* time: ([0-9]+)s.*/\1/')
secs=${secs:-$(sed -E 's/.* time: ([0-9]+)s.*/\1/' <<<"$last")}
rate=$(( execs / (secs > 0 ? secs : 1) ))
echo "fuzz_bson_$target: $execs execs in $secs s ($rate exec/s), cov: $cov ft: $ft corpus: $corp, oom/timeout: $ooms, crashes: $crashes"

shopt -s nullglob
files=("$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/oom-* "$artifacts"/timeout-*)
if [ ${#files[@]} -gt 0 ]; then
	echo "  distinct findings among ${#files[@]} artifacts in $artifacts:"
	for f in "${files[@]}"; do
		"./fuzz_bson_$target" "$f" 2>&1 | grep -a -m 1 -E '^FINDING|ERROR: (Address|Undefined|Leak)Sanitizer|runtime error' |
			sed -E 's/==[0-9]+==//; s/0x[0-9a-f]+/ADDR/g'
	done | sort | uniq -c | sed 's/^/  /' | grep . || echo "    (none reproduces any more)"
fi
