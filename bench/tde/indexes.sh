#!/bin/bash
# bench/tde/indexes.sh — cost of encrypted indexes (the encrypted_btree
# index access method), measured in the same run against
#   heap      heap tables, btree primary keys (stock PostgreSQL)
#   enc_heap  encrypted_heap tables, btree primary keys (keys in clear)
#   enc_all   encrypted_heap tables, encrypted_btree primary keys
#             (pgbench -i under bsoncrypt.encrypt_indexes = on)
#
#   1. pgbench scale SCALE, TPC-B and select-only (-S), one database per
#      configuration; runs alternate (order rotating), each after a
#      CHECKPOINT; best of RUNS, T seconds each, CLIENTS clients.  Prints
#      TPS, the ratio enc_all / heap (the target: >= 0.85 TPC-B, >= 0.90
#      select-only) and enc_all / enc_heap (the indexes' own cost).
#   2. The same workloads side by side, SIDE_RUNS times: heap and enc_all
#      at the same time, half the clients each, so that both meet the same
#      load from other jobs on the machine; the median ratio, and that of
#      a control (heap and heap at the same time, which should be 1).
#   3. CREATE INDEX on NROWS rows of an encrypted_heap table (an int key
#      and a text key), btree against encrypted_btree, best of BUILD_RUNS.
#
# Builds nothing: bsoncrypt must be installed in PG_BINDIR's PostgreSQL.
# Starts a throwaway cluster (scripts/cluster.sh, fsync = off), removes it
# at the end.  The table also goes to bench/out/tde_indexes.txt.
#
# SHARED_BUFFERS (e.g. 1GB) restarts the cluster with that setting, so that
# every database stays in memory and the ratios show CPU cost only.
#
#   bench/tde/indexes.sh    # PG_BINDIR PORT DIR SCALE RUNS T CLIENTS MODES NROWS BUILD_RUNS SIDE_RUNS SHARED_BUFFERS may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-54361}
dir=${DIR:-/tmp/bsoncrypt-bench-indexes}
scale=${SCALE:-10}
runs=${RUNS:-3}
secs=${T:-15}
clients=${CLIENTS:-4}
modes=${MODES:-select tpcb}
nrows=${NROWS:-1000000}
build_runs=${BUILD_RUNS:-2}
side_runs=${SIDE_RUNS:-5}
out=${OUT:-$top/bench/out/tde_indexes.txt}

. "$top/bench/tde/common.sh"
bench_cluster_start

configs=(heap enc_heap enc_all)
declare -A tam=([heap]=heap [enc_heap]=encrypted_heap [enc_all]=encrypted_heap)
declare -A encidx=([heap]=off [enc_heap]=off [enc_all]=on)
for c in "${configs[@]}"; do
	psql -d postgres -c "CREATE DATABASE bench_$c"
	psql -d "bench_$c" -c "CREATE EXTENSION bsoncrypt"
	PGOPTIONS="-c default_table_access_method=${tam[$c]} -c bsoncrypt.encrypt_indexes=${encidx[$c]}" \
		pgbench -i -q -s "$scale" "bench_$c" >"$dir/init_$c.log" 2>&1 || { cat "$dir/init_$c.log" >&2; exit 1; }
	psql -d "bench_$c" -c "VACUUM ANALYZE"
done
n=$(psql -d bench_enc_all -Atc "SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam
	WHERE a.amname = 'encrypted_btree' AND c.relname LIKE 'pgbench%pkey'")
[ "$n" = 3 ] || { echo "enc_all: $n pgbench primary keys are encrypted_btree, want 3" >&2; exit 1; }

declare -A best pairs_heap pairs_enc last
for mode in $modes; do
	args=()
	[ "$mode" = select ] && args=(-S)
	for c in "${configs[@]}"; do best[$mode,$c]=0; done
	for r in $(seq "$runs"); do
		# rotate who goes first
		k=$(((r - 1) % 3))
		order=("${configs[@]:$k}" "${configs[@]:0:$k}")
		for c in "${order[@]}"; do
			psql -d postgres -c CHECKPOINT
			t=$(tps "bench_$c" "${args[@]}")
			best[$mode,$c]=$(awk -v a="${best[$mode,$c]}" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
			echo "  $mode $c run $r: $t tps" >&2
			last[$c]=$t
		done
		pairs_heap[$mode]="${pairs_heap[$mode]:-} $(awk -v e="${last[enc_all]}" -v h="${last[heap]}" 'BEGIN { print e / h }')"
		pairs_enc[$mode]="${pairs_enc[$mode]:-} $(awk -v e="${last[enc_all]}" -v h="${last[enc_heap]}" 'BEGIN { print e / h }')"
	done
done

# Side by side: heap and enc_all at the same time, half the clients each,
# so that both meet the same load from the machine's other jobs (which
# moves single runs by tens of percent on a shared machine); and, as a
# control of the method, two runs on heap at the same time.
half=$(((clients + 1) / 2))
side_tps() {
	clients=$half threads=1 tps "$@"
}
declare -A side side_control
for mode in $modes; do
	args=()
	[ "$mode" = select ] && args=(-S)
	for r in $(seq "$side_runs"); do
		# which of the two starts first alternates (the control shows why)
		for pair in "heap enc_all" "heap heap"; do
			read -r a b <<<"$pair"
			[ $((r % 2)) = 0 ] && read -r b a <<<"$pair"
			psql -d postgres -c CHECKPOINT
			side_tps "bench_$a" "${args[@]}" >"$dir/side_a" &
			tb=$(side_tps "bench_$b" "${args[@]}")
			wait
			ta=$(cat "$dir/side_a")
			echo "  side by side $mode run $r: $a $ta tps (started first), $b $tb tps" >&2
			if [ "$pair" = "heap enc_all" ]; then
				[ "$a" = heap ] && ratio=$(awk -v h="$ta" -v e="$tb" 'BEGIN { print e / h }') ||
					ratio=$(awk -v h="$tb" -v e="$ta" 'BEGIN { print e / h }')
				side[$mode]="${side[$mode]:-} $ratio"
			else
				# the second started over the first
				side_control[$mode]="${side_control[$mode]:-} $(awk -v a="$ta" -v b="$tb" 'BEGIN { print b / a }')"
			fi
		done
	done
done

# index builds on an encrypted_heap table of NROWS rows
declare -A build_best build_size
if [ "$nrows" -gt 0 ]; then
	psql -d bench_enc_all -c "CREATE TABLE build (id int, email text) USING encrypted_heap" \
		-c "INSERT INTO build SELECT g, md5(g::text) || '@example.com' FROM generate_series(1, $nrows) g ORDER BY random()" \
		-c "VACUUM ANALYZE build"
	for col in id email; do
		for am in btree encrypted_btree; do
			build_best[$col,$am]=999999
			for r in $(seq "$build_runs"); do
				psql -d bench_enc_all -c "DROP INDEX IF EXISTS build_idx" -c CHECKPOINT
				start=$(date +%s.%N)
				psql -d bench_enc_all -c "SET bsoncrypt.encrypt_indexes = off" -c "SET maintenance_work_mem = '256MB'" \
					-c "CREATE INDEX build_idx ON build USING $am ($col)"
				end=$(date +%s.%N)
				s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
				echo "  build $col $am run $r: $s s" >&2
				build_best[$col,$am]=$(awk -v a="${build_best[$col,$am]}" -v b="$s" 'BEGIN { print (b < a) ? b : a }')
			done
			build_size[$col,$am]=$(psql -d bench_enc_all -Atc "SELECT pg_relation_size('build_idx') / 1048576")
		done
	done
fi

quartiles() { # the ratios: median q1 q3 (nearest rank)
	echo "$@" | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  print m, v[int((NR + 3) / 4)], v[NR + 1 - int((NR + 3) / 4)] }'
}
mkdir -p "$(dirname "$out")"
{
	echo "encrypted_btree primary keys, same cluster and run ($(date -u +%Y-%m-%d), $(nproc) CPUs, fsync=off, shared_buffers=$(psql -d postgres -Atc 'SHOW shared_buffers'))"
	echo "pgbench scale $scale, $clients clients, ${secs}s per run, best of $runs"
	echo "pgbench_accounts_pkey: heap $(psql -d bench_heap -Atc "SELECT pg_relation_size('pgbench_accounts_pkey') / 1048576") MB, enc_all $(psql -d bench_enc_all -Atc "SELECT pg_relation_size('pgbench_accounts_pkey') / 1048576") MB"
	printf '%-14s %10s %10s %10s %12s %16s %12s\n' workload heap enc_heap enc_all "enc_all/heap" "median (q1-q3)" "enc_all/enc_heap"
	for mode in $modes; do
		h=${best[$mode,heap]} eh=${best[$mode,enc_heap]} ea=${best[$mode,enc_all]}
		read -r med q1 q3 < <(quartiles ${pairs_heap[$mode]})
		read -r med2 _ _ < <(quartiles ${pairs_enc[$mode]})
		printf '%-14s %10.1f %10.1f %10.1f %12.3f %16s %12.3f\n' "$mode (tps)" "$h" "$eh" "$ea" \
			"$(awk -v a="$ea" -v b="$h" 'BEGIN { print a / b }')" "$(printf '%.3f (%.3f-%.3f)' "$med" "$q1" "$q3")" \
			"$(awk -v a="$ea" -v b="$eh" 'BEGIN { print a / b }')"
	done
	if [ "$side_runs" -gt 0 ]; then
		echo "side by side, $side_runs runs: heap and enc_all at once, $half clients each, either started first (control: heap and heap, second over first)"
		printf '%-14s %28s %28s\n' workload "enc_all/heap median (q1-q3)" "control median (q1-q3)"
		for mode in $modes; do
			read -r med q1 q3 < <(quartiles ${side[$mode]})
			read -r cmed cq1 cq3 < <(quartiles ${side_control[$mode]})
			printf '%-14s %28s %28s\n' "$mode" "$(printf '%.3f (%.3f-%.3f)' "$med" "$q1" "$q3")" \
				"$(printf '%.3f (%.3f-%.3f)' "$cmed" "$cq1" "$cq3")"
		done
	fi
	if [ "$nrows" -gt 0 ]; then
		echo "CREATE INDEX on $nrows rows of an encrypted_heap table (maintenance_work_mem 256MB), best of $build_runs"
		printf '%-14s %10s %10s %8s %14s\n' key btree encrypted "ratio" "size MB b/e"
		for col in id email; do
			b=${build_best[$col,btree]} e=${build_best[$col,encrypted_btree]}
			printf '%-14s %9.2fs %9.2fs %8.1f %14s\n' "$col" "$b" "$e" "$(awk -v a="$e" -v b="$b" 'BEGIN { print a / b }')" \
				"${build_size[$col,btree]}/${build_size[$col,encrypted_btree]}"
		done
	fi
	echo "ratios: best throughput of one configuration over another's; median (q1-q3): per-run pairs"
} | tee "$out"
