#!/bin/bash
# bench/tde/run.sh — cost of at-rest encryption (the encrypted_heap table
# access method) against plain heap, measured in the same run.
#
#   1. pgbench scale SCALE, TPC-B and select-only (-S): one database per
#      access method, initialized with default_table_access_method set to
#      it; runs alternate between the two, best of RUNS, T seconds each,
#      CLIENTS clients, each after a CHECKPOINT.  Prints TPS and the ratio
#      encrypted/heap.
#   2. bulk COPY of NDOCS JSON documents of about 1 KB into a jsonb column,
#      best of COPY_RUNS per access method; prints seconds and the ratio.
#
# Builds nothing: bsoncrypt must be installed.  Starts a throwaway cluster
# (scripts/cluster.sh, which sets fsync = off for both alike; as root
# PostgreSQL runs as the postgres OS user), removes it at the end.  The
# table also goes to bench/out/tde.txt.
#
# MODES (default "tpcb select") picks the pgbench workloads; NDOCS=0 skips
# the COPY.
#
# SHARED_BUFFERS (e.g. 1GB) restarts the cluster with that setting, so that
# both databases stay in memory and the ratio shows CPU cost only.
#
#   bench/tde/run.sh        # PORT DIR SCALE RUNS T CLIENTS MODES NDOCS COPY_RUNS SHARED_BUFFERS PG_BINDIR may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-54360}
dir=${DIR:-/tmp/bsoncrypt-bench-tde}
scale=${SCALE:-10}
runs=${RUNS:-3}
secs=${T:-20}
clients=${CLIENTS:-4}
ndocs=${NDOCS:-1000000}
copy_runs=${COPY_RUNS:-2}
modes=${MODES:-tpcb select}
out=${OUT:-$top/bench/out/tde.txt}
. "$top/bench/tde/common.sh"
bench_cluster_start

ams=(heap encrypted_heap)
for am in "${ams[@]}"; do
	psql -d postgres -c "CREATE DATABASE bench_$am"
	psql -d "bench_$am" -c "CREATE EXTENSION bsoncrypt"
	PGOPTIONS="-c default_table_access_method=$am" pgbench -i -q -s "$scale" "bench_$am" >"$dir/init_$am.log" 2>&1 || { cat "$dir/init_$am.log" >&2; exit 1; }
	psql -d "bench_$am" -c "VACUUM ANALYZE"
done
psql -d bench_encrypted_heap -Atc "SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'encrypted_heap' AND c.relname LIKE 'pgbench%'" |
	grep -qx 4 || { echo "pgbench tables are not encrypted_heap" >&2; exit 1; }

declare -A best pairs last
for mode in $modes; do
	args=()
	[ "$mode" = select ] && args=(-S)
	for am in "${ams[@]}"; do best[$mode,$am]=0; done
	for r in $(seq "$runs"); do
		order=("${ams[@]}")
		[ $((r % 2)) = 0 ] && order=("${ams[1]}" "${ams[0]}")	# alternate who goes first
		for am in "${order[@]}"; do
			# every run starts clean: no dirty buffers or checkpoint left
			# over from the run before (which would be paid by this one)
			psql -d postgres -c CHECKPOINT
			t=$(tps "bench_$am" "${args[@]}")
			best[$mode,$am]=$(awk -v a="${best[$mode,$am]}" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
			echo "  $mode $am run $r: $t tps" >&2
			last[$am]=$t
		done
		pairs[$mode]="${pairs[$mode]:-} $(awk -v e="${last[encrypted_heap]}" -v h="${last[heap]}" 'BEGIN { print e / h }')"
	done
done

# bulk COPY of ~1 KB JSON documents
copy_docs() {
	local docs=$dir/docs.json
	psql -d postgres -c "COPY (SELECT jsonb_build_object('_id', g, 'name', 'user ' || g, 'email', md5(g::text) || '@example.com',
		'tags', jsonb_build_array(md5((g + 1)::text), md5((g + 2)::text)), 'score', g % 1000,
		'bio', repeat(md5((g * 7)::text), 24)) FROM generate_series(1, $ndocs) g) TO '$docs'"
	docbytes=$(stat -c %s "$docs")
	for am in "${ams[@]}"; do
		copy_best[$am]=999999
		for r in $(seq "$copy_runs"); do
			psql -d bench_encrypted_heap -c "DROP TABLE IF EXISTS load_$am" -c "CREATE TABLE load_$am (doc jsonb) USING $am"
			start=$(date +%s.%N)
			psql -d bench_encrypted_heap -c "COPY load_$am FROM '$docs'"
			end=$(date +%s.%N)
			s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
			echo "  copy $am run $r: $s s" >&2
			copy_best[$am]=$(awk -v a="${copy_best[$am]}" -v b="$s" 'BEGIN { print (b < a) ? b : a }')
		done
	done
	heap_size=$(psql -d bench_encrypted_heap -Atc "SELECT pg_total_relation_size('load_heap')")
	enc_size=$(psql -d bench_encrypted_heap -Atc "SELECT pg_total_relation_size('load_encrypted_heap')")
}
declare -A copy_best
[ "$ndocs" -gt 0 ] && copy_docs
accounts() { psql -d "bench_$1" -Atc "SELECT pg_relation_size('pgbench_accounts') / 1048576"; }

mkdir -p "$(dirname "$out")"
{
	echo "encrypted_heap vs heap, same cluster and run ($(date -u +%Y-%m-%d), $(nproc) CPUs, fsync=off, shared_buffers=$(psql -d postgres -Atc 'SHOW shared_buffers'))"
	echo "pgbench scale $scale, $clients clients, ${secs}s per run, best of $runs"
	printf '%-22s %12s %12s %8s %12s %14s\n' workload heap encrypted ratio "median pair" "pairs q1-q3"
	echo "pgbench_accounts: heap $(accounts heap) MB, encrypted_heap $(accounts encrypted_heap) MB"
	for mode in $modes; do
		h=${best[$mode,heap]} e=${best[$mode,encrypted_heap]}
		# median and quartiles (nearest rank) of the per-pair ratios
		read -r med q1 q3 < <(echo ${pairs[$mode]} | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 }
			END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
				  print m, v[int((NR + 3) / 4)], v[NR + 1 - int((NR + 3) / 4)] }')
		printf '%-22s %12.1f %12.1f %8.3f %12.3f %8.3f-%.3f\n' "$mode (tps)" "$h" "$e" \
			"$(awk -v a="$e" -v b="$h" 'BEGIN { print a / b }')" "$med" "$q1" "$q3"
	done
	if [ "$ndocs" -gt 0 ]; then
		h=${copy_best[heap]} e=${copy_best[encrypted_heap]}
		printf '%-22s %12.2f %12.2f %8.3f\n' "COPY $ndocs docs (s)" "$h" "$e" "$(awk -v a="$h" -v b="$e" 'BEGIN { print a / b }')"
		echo "COPY input $((docbytes / 1024 / 1024)) MB; table+TOAST size heap $((heap_size / 1024 / 1024)) MB, encrypted $((enc_size / 1024 / 1024)) MB"
	fi
	echo "ratio: best encrypted / best heap throughput; median pair: median over runs of encrypted/heap;"
	echo "pairs q1-q3: the middle half of those per-run ratios, min-max below 5 runs (how much the machine varied)"
	echo "measured back to back in the same run (order alternating), 1.0 = no overhead"
} | tee "$out"
