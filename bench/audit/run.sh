#!/bin/bash
# bench/audit/run.sh — what the audit trail costs decryption: decrypt
# throughput with bsoncrypt.audit off (the baseline), on (the default), and
# on with bsoncrypt.audit_log (one JSON line per event).
#
# Starts a throwaway cluster (scripts/cluster.sh) with the local provider,
# and times with pgbench, one client, BENCH_SECONDS each (default 5), best of
# RUNS rounds (default 3) that alternate the modes, the statement
#     SELECT decrypt_value(c) FROM one      (a 100-byte string)
#   warm         the data key is cached: the hot path, where the audit trail
#                does nothing at all
#   cold         bsoncrypt.key_cache_ttl = 0: every statement unwraps the data
#                key, and the audit trail counts the unwrap
#   new session  pgbench -C: every statement in a new session, whose exit
#                queues its unwrap count for the audit writer
# and, in one statement, the decryption of NKEYS values each under its own
# data key (one unwrap, and one count, per key):
#   per key      microseconds per data key (the session's exit then queues
#                one count per key: NKEYS events for the writer)
# Before each timing the script waits until the audit writer has written
# what earlier runs queued, so that its work does not fall into another
# mode's figures (on 2 CPUs it competes with pgbench and the session).
# Prints a table with ratios against "off" (same run) and writes it to
# bench/out/audit.txt.  Run as root (it runs the server as the postgres OS
# user) or as the postgres user.
#
#   bench/audit/run.sh          # PG_BINDIR, PORT, BENCH_SECONDS, RUNS, NKEYS may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$top/bench/out"
	chown postgres "$top/bench/out"
	exec runuser -u postgres -- env PG_BINDIR="${PG_BINDIR:-}" PORT="${PORT:-}" \
		BENCH_SECONDS="${BENCH_SECONDS:-}" NKEYS="${NKEYS:-}" RUNS="${RUNS:-}" \
		bash "$0" "$@"
fi
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR PATH=$PG_BINDIR:$PATH
port=${PORT:-54472}
seconds=${BENCH_SECONDS:-5}
runs=${RUNS:-3}
nkeys=${NKEYS:-2000}
dir=$(mktemp -d /tmp/bsoncrypt-bench-audit.XXXXXX)
out=$top/bench/out/audit.txt
mkdir -p "$top/bench/out"

cleanup() {
	"$top/scripts/cluster.sh" stop "$dir/pg" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

echo "starting a cluster in $dir ..."
"$top/scripts/cluster.sh" start "$dir/pg" "$port"
export PGHOST=$dir/pg PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

value=$(printf 'x%.0s' $(seq 1 100))
q "CREATE EXTENSION bsoncrypt"
q "SELECT bsoncrypt.create_data_key('local', '{bench}')" >/dev/null
q "CREATE TABLE one AS SELECT bsoncrypt.encrypt_value('{\"\": \"$value\"}', 'bench', 'random') AS c"
echo "making $nkeys data keys and values ..."
q "INSERT INTO bsoncrypt.key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
   SELECT gen_random_uuid(), ARRAY['m_' || i], (m).key_material, (m).master_key, (m).master_key_version
     FROM (SELECT i, bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $nkeys) i) s"
q "CREATE TABLE many AS SELECT bsoncrypt.encrypt_value('{\"\": \"$value\"}', 'm_' || i, 'random') AS c
     FROM generate_series(1, $nkeys) i"
echo 'SELECT bsoncrypt.decrypt_value(c) FROM one;' >"$dir/decrypt.sql"

set_mode() {	# off | on | log: bsoncrypt.audit is a postgresql.conf setting
	case $1 in
	off) q "ALTER SYSTEM SET bsoncrypt.audit = off" ;;
	*) q "ALTER SYSTEM SET bsoncrypt.audit = on" ;;
	esac
	q "SELECT pg_reload_conf()" >/dev/null
	sleep 0.3
}
pgopts() { [ "$1" = log ] && echo "-c bsoncrypt.audit_log=on" || true; }

# wait until the audit writer has written what earlier runs queued
drain() {
	for _ in $(seq 1 600); do
		[ "$(q "SELECT coalesce(queued, 0) FROM bsoncrypt.key_audit_queue_status()")" = 0 ] && return
		sleep 0.1
	done
}

tps() {	# mode extra-pgbench-options extra-PGOPTIONS
	drain
	PGOPTIONS="$(pgopts "$1") $3" pgbench -n $2 -T "$seconds" -f "$dir/decrypt.sql" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

per_key_us() {	# mode: microseconds per data key unwrapped (best of 3)
	local best=""
	for _ in 1 2 3; do
		local ms
		drain
		ms=$(PGOPTIONS="$(pgopts "$1")" psql -XAtq -c '\timing on' \
			-c "SELECT count(bsoncrypt.decrypt_value(c)) FROM many" |
			sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
		if [ -z "$best" ] || awk -v a="$ms" -v b="$best" 'BEGIN { exit !(a + 0 < b + 0) }'; then best=$ms; fi
	done
	awk -v ms="$best" -v n="$nkeys" 'BEGIN { printf "%.1f", ms * 1000 / n }'
}

modes="off on log"
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
declare -A warm cold fresh perkey
for round in $(seq 1 "$runs"); do
	for m in $modes; do
		echo "round $round: audit $m ..."
		set_mode "$m"
		warm[$m]=$(best "${warm[$m]:-0}" "$(tps "$m" "" "")")
		cold[$m]=$(best "${cold[$m]:-0}" "$(tps "$m" "" "-c bsoncrypt.key_cache_ttl=0")")
		fresh[$m]=$(best "${fresh[$m]:-0}" "$(tps "$m" "-C" "")")
	done
done
for m in $modes; do
	set_mode "$m"
	perkey[$m]=$(per_key_us "$m")
done
set_mode on
rows=$(q "SELECT count(*) FROM bsoncrypt.key_audit")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b + 0 > 0) ? a / b : 0 }'; }
{
	echo "bsoncrypt audit trail, $(date -u +%Y-%m-%d), $(nproc) CPUs, one pgbench client, best of $runs rounds of ${seconds}s"
	echo "statement: decrypt_value of a 100-byte string; provider local"
	echo
	printf '%-8s %12s %12s %14s %10s   %s\n' audit 'warm tps' 'cold tps' 'new-sess tps' 'us/key' 'ratios to off (warm, cold, new session, per key)'
	for m in $modes; do
		printf '%-8s %12.0f %12.0f %14.0f %10s   %s %s %s %s\n' "$m" "${warm[$m]}" "${cold[$m]}" "${fresh[$m]}" "${perkey[$m]}" \
			"$(ratio "${warm[$m]}" "${warm[off]}")" "$(ratio "${cold[$m]}" "${cold[off]}")" \
			"$(ratio "${fresh[$m]}" "${fresh[off]}")" "$(ratio "${perkey[$m]}" "${perkey[off]}")"
	done
	echo
	echo "off: bsoncrypt.audit = off; on: the default; log: on, with bsoncrypt.audit_log = on"
	echo "warm: data key cached; cold: bsoncrypt.key_cache_ttl = 0 (every statement unwraps);"
	echo "new-sess: pgbench -C; us/key: one statement unwrapping $nkeys data keys"
	echo "rows in bsoncrypt.key_audit at the end: $rows"
} | tee "$out"
