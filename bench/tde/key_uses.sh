#!/bin/bash
# bench/tde/key_uses.sh — counting uses of relation keys under many small
# writes to many tables: NROWS single-row INSERTs spread at random over
# NTABLES tables, in CLIENTS sessions (pgbench with a custom script), into
# encrypted_heap tables and into plain heap tables of the same cluster,
# alternating, best of RUNS.  Prints the throughput of each and the ratio,
# and how many keys the encrypted tables got (each starts with one; a key
# is replaced only when it has done bsoncrypt.at_rest_key_max_uses
# encryptions, so at the default limit every table keeps its one key),
# and how far the persisted bounds (relation_key_uses.reserved) are above
# the real number of encryptions.
#
# CONNECT=1 opens a new connection for every INSERT (pgbench -C), as
# clients behind a pooler that does not keep sessions do: every session
# then takes a new lease of each key it writes.
#
# Builds nothing: bsoncrypt must be installed (in PG_BINDIR's installation).
# Starts a throwaway cluster (scripts/cluster.sh, fsync = off, bsoncrypt
# preloaded; as root PostgreSQL runs as the postgres OS user) and removes
# it at the end.  The table also goes to bench/out/key_uses.txt.
#
#   bench/tde/key_uses.sh   # PORT DIR NTABLES NROWS CLIENTS RUNS MAX_USES CONNECT PG_BINDIR SHARED_BUFFERS may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-54361}
dir=${DIR:-/tmp/bsoncrypt-bench-key-uses}
ntables=${NTABLES:-100}
nrows=${NROWS:-1000000}
clients=${CLIENTS:-4}
runs=${RUNS:-1}
max_uses=${MAX_USES:-}
connect=${CONNECT:-0}
out=${OUT:-$top/bench/out/key_uses$([ "$connect" = 1 ] && echo _connect).txt}
. "$top/bench/tde/common.sh"
bench_cluster_start

psql -d postgres -c "CREATE EXTENSION bsoncrypt"
if [ -n "$max_uses" ]; then
	psql -d postgres -c "ALTER SYSTEM SET bsoncrypt.at_rest_key_max_uses = $max_uses" -c "SELECT pg_reload_conf()" >/dev/null
fi
limit=$(psql -d postgres -Atc "SHOW bsoncrypt.at_rest_key_max_uses")

make_tables() { # access method, prefix
	psql -d postgres -c "SET client_min_messages = warning" -c "DO \$\$ BEGIN
		FOR i IN 1..$ntables LOOP
			EXECUTE format('DROP TABLE IF EXISTS %s_%s', '$2', i);
			EXECUTE format('CREATE TABLE %s_%s (id bigint, t text) USING $1', '$2', i);
		END LOOP;
	END \$\$"
}

script=$dir/insert.sql
cat >"$script" <<SQL
\\set n random(1, $ntables)
INSERT INTO :prefix:n VALUES (:client_id, 'row written by client ' || :client_id);
SQL
[ "$(id -u)" = 0 ] && chown postgres "$script"

declare -A best
best[heap]=0 best[encrypted_heap]=0
per_client=$((nrows / clients))
for r in $(seq "$runs"); do
	order=(heap encrypted_heap)
	[ $((r % 2)) = 0 ] && order=(encrypted_heap heap)
	for am in "${order[@]}"; do
		prefix=$([ "$am" = heap ] && echo h_ || echo e_)
		make_tables "$am" "${prefix%_}"
		psql -d postgres -c CHECKPOINT
		start=$(date +%s.%N)
		pgbench -n -M simple $([ "$connect" = 1 ] && echo -C) -f "$script" -D prefix="$prefix" -c "$clients" -j "$clients" \
			-t "$per_client" postgres >"$dir/pgbench_$am.log" 2>&1 || { cat "$dir/pgbench_$am.log" >&2; exit 1; }
		end=$(date +%s.%N)
		t=$(awk -v a="$start" -v b="$end" -v n="$((per_client * clients))" 'BEGIN { printf "%.0f", n / (b - a) }')
		echo "  run $r $am: $t inserts/s" >&2
		best[$am]=$(awk -v a="${best[$am]}" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
	done
done

rows=$(psql -d postgres -Atc "SELECT $(for i in $(seq "$ntables"); do printf '(SELECT count(*) FROM e_%d) + ' "$i"; done) 0")
read -r tables kmin kavg kmax < <(psql -d postgres -AtF' ' -c "SELECT count(*), min(keys), round(avg(keys), 2), max(keys)
	FROM bsoncrypt.encrypted_relations WHERE relation::text ~ '^e_[0-9]+\$'")
reserved=$(psql -d postgres -Atc "SELECT sum(u.reserved) FROM bsoncrypt.relation_key_uses u JOIN bsoncrypt.relation_keys k USING (key_id)
	JOIN pg_class c ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode) WHERE c.relname ~ '^e_[0-9]+\$'")
bound=$(psql -d postgres -Atc "SELECT sum(key_uses_bound) FROM bsoncrypt.encrypted_relations WHERE relation::text ~ '^e_[0-9]+\$'")

mkdir -p "$(dirname "$out")"
{
	echo "key-use counting: $((per_client * clients)) single-row INSERTs over $ntables tables, $clients clients$([ "$connect" = 1 ] && echo ", a new connection per INSERT") ($(date -u +%Y-%m-%d), $(nproc) CPUs, fsync=off, bsoncrypt.at_rest_key_max_uses=$limit)"
	printf '%-26s %12s %12s %8s\n' workload heap encrypted ratio
	printf '%-26s %12s %12s %8.3f\n' "inserts/s (best of $runs)" "${best[heap]}" "${best[encrypted_heap]}" \
		"$(awk -v a="${best[encrypted_heap]}" -v b="${best[heap]}" 'BEGIN { print a / b }')"
	echo "encrypted tables: $tables, keys per table min $kmin avg $kavg max $kmax"
	echo "rows (= encryptions, one text column) $rows; counted uses (key_uses_bound) $bound; persisted bounds $reserved"
} | tee "$out"
