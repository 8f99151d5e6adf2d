#!/bin/bash
# bench/fle/run.sh — throughput of FLE1 field encryption in SQL, with
# libmongocrypt measured on the same machine in the same run as the baseline.
#
# Builds the libmongocrypt oracle (test/oracle) if needed; bsoncrypt must be
# installed.  Starts a throwaway cluster (scripts/cluster.sh; as root
# PostgreSQL runs as the postgres OS user) with a fresh random local master
# key, creates one data key with libmongocrypt (mongocrypt_oracle create-key)
# and imports it (bsoncrypt.import_key), so both sides use the same key.
# Loads NDOCS documents {"_id": n, "s": <100-byte string>} and times, in one
# backend (no parallel workers, no JIT), best of RUNS, over the whole table:
#   encrypt_field(doc, 's', 'bench', 'deterministic')
#   encrypt_field(doc, 's', 'bench', 'random')
#   decrypt_field(doc, 's')      over a pre-encrypted copy
#   decrypt(doc)                 over the same copy
# and `mongocrypt_oracle bench` (libmongocrypt's explicit encryption API on
# the same 100-byte string: deterministic encrypt, random encrypt, decrypt).
# RUNS rounds alternate one SQL pass and one libmongocrypt pass, so both
# see the same machine load; each side keeps its best round.  Prints values/s and the ratio SQL / libmongocrypt
# (> 1: the SQL path is faster), and writes the table to bench/out/fle.txt.
# A plain scan (count(doc)) is timed too, to show the fixed per-row cost;
# the rates are NOT corrected for it.  The cluster is stopped and removed.
#
#   bench/fle/run.sh            # PORT, DIR, NDOCS, RUNS, ORACLE_COUNT may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-54360}
dir=${DIR:-/tmp/bsoncrypt-bench-fle}
ndocs=${NDOCS:-1000000}
runs=${RUNS:-3}
oracle_count=${ORACLE_COUNT:-300000}
out=$top/bench/out/fle.txt
oracle=$top/test/oracle/mongocrypt_oracle

[ -x "$oracle" ] || make -s -C "$top/test/oracle" >/dev/null
[ -x "$oracle" ] || { echo "cannot build $oracle" >&2; exit 1; }

run=()
if [ "$(id -u)" = 0 ]; then
	run=(runuser -u postgres --)
fi

stop_cluster() {
	"${run[@]}" "$top/scripts/cluster.sh" stop "$dir" || true
	rm -rf "$dir"
}

[ -d "$dir/data" ] && "${run[@]}" "$top/scripts/cluster.sh" stop "$dir" || true
rm -rf "$dir"
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
"${run[@]}" "$top/scripts/cluster.sh" start "$dir" "$port"
trap stop_cluster EXIT

psql_run() {
	psql -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

# A fresh random master key: the server re-reads its key file on every use.
mk=$(head -c 96 /dev/urandom | base64 -w0)
(umask 077; echo "$mk" >"$dir/master.key.new")
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/master.key.new"
mv "$dir/master.key.new" "$dir/master.key"

# room for both tables in shared buffers
psql_run -c "ALTER SYSTEM SET shared_buffers = '1GB'"
"${run[@]}" "$top/scripts/cluster.sh" stop "$dir"
"${run[@]}" "$top/scripts/cluster.sh" start "$dir" "$port"

echo "== one data key, made by libmongocrypt, imported into bsoncrypt"
"$oracle" create-key --master-key "$mk" --alt-name bench >"$dir/vault.json"
psql_run -v key="$(cat "$dir/vault.json")" <<'SQL'
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.import_key(:'key') IS NOT NULL AS imported \gset
SQL

echo "== loading $ndocs documents"
psql_run -v ndocs="$ndocs" <<'SQL'
-- {"_id": n, "s": <100-byte string>}, like the oracle's 100-byte plaintext
CREATE TABLE t AS
SELECT format('{"_id": %s, "s": "%s"}', n, rpad(n::text || ' ', 100, 'x'))::bsoncrypt.bson AS doc
FROM generate_series(1, :ndocs) n;
CREATE TABLE t_enc AS
SELECT bsoncrypt.encrypt_field(doc, 's', 'bench', 'random') AS doc FROM t;
VACUUM ANALYZE t, t_enc;
SELECT octet_length(bsoncrypt.bson_get_text(doc, 's')) = 100 AS ok FROM t LIMIT 1 \gset
\if :ok
\else
\echo 'the string field is not 100 bytes'
\quit 1
\endif
SQL

# Rounds alternate the SQL pass and the libmongocrypt pass, so that both see
# the same machine load; each side keeps its best round.
cat >"$dir/round.sql" <<'SQL'
SET max_parallel_workers_per_gather = 0;
SET jit = off;
CREATE FUNCTION pg_temp.secs(q text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
	t0			timestamptz;
	r			bigint;
BEGIN
	t0 := clock_timestamp();
	EXECUTE q INTO r;
	RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
-- warm-up: key unwrap, function caches
SELECT count(bsoncrypt.decrypt(bsoncrypt.encrypt_field(doc, 's', 'bench', 'deterministic'))) AS warm
FROM (SELECT doc FROM t LIMIT 1000) s \gset
SELECT 'n', count(*) FROM t;
SELECT 'scan', pg_temp.secs('SELECT count(doc) FROM t');
SELECT 'det', pg_temp.secs($q$SELECT count(bsoncrypt.encrypt_field(doc, 's', 'bench', 'deterministic')) FROM t$q$);
SELECT 'rand', pg_temp.secs($q$SELECT count(bsoncrypt.encrypt_field(doc, 's', 'bench', 'random')) FROM t$q$);
SELECT 'decf', pg_temp.secs($q$SELECT count(bsoncrypt.decrypt_field(doc, 's')) FROM t_enc$q$);
SELECT 'dec', pg_temp.secs($q$SELECT count(bsoncrypt.decrypt(doc)) FROM t_enc$q$);
SQL

echo "== measuring, $runs rounds of: SQL over $ndocs documents, then libmongocrypt over $oracle_count values"
sql_rounds=()
oracle_results=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$runs"); do
	sql_rounds+=("$(psql_run -At -F ' ' -f "$dir/round.sql" | tr '\n' ';')")
	oracle_results+=("$("$oracle" bench --master-key "$mk" --key-vault "$dir/vault.json" \
		--key-alt-name bench --count "$oracle_count")")
	echo "   round $i: SQL ${sql_rounds[-1]} libmongocrypt ${oracle_results[-1]}"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$out")"
SQL_ROUNDS=$(printf '%s\n' "${sql_rounds[@]}") LOAD="$load_before -> $load_after" \
	python3 - "${oracle_results[@]}" <<'PY' | tee "$out"
import json, os, subprocess, sys, datetime

rounds = [dict(kv.split(' ', 1) for kv in line.split(';') if kv.strip())
          for line in os.environ['SQL_ROUNDS'].splitlines() if line.strip()]
n = int(rounds[0]['n'])
sql = {k: min(float(r[k]) for r in rounds) for k in rounds[0] if k != 'n'}
runs = [json.loads(a) for a in sys.argv[1:]]
best = {k: max(r[k] for r in runs) for k in runs[0]}
server = subprocess.run(['pg_config', '--version'], capture_output=True, text=True).stdout.strip()
print(f"FLE1 throughput, {datetime.date.today()}, {os.cpu_count()} cores, {server}, "
      f"one backend, best of {len(runs)} alternating rounds; {n} documents {{_id, s: 100-byte string}}")
print(f"load average (1/5/15 min) before -> after: {os.environ['LOAD']}")
print(f"plain scan, count(doc): {float(sql['scan']):.3f} s ({n / float(sql['scan']):,.0f} rows/s), included in the SQL rates below")
print()
rows = [
    ("encrypt_field deterministic", 'det', 'det_encrypt_per_s', 'encrypt deterministic'),
    ("encrypt_field random", 'rand', 'rand_encrypt_per_s', 'encrypt random'),
    ("decrypt_field", 'decf', 'decrypt_per_s', 'decrypt'),
    ("decrypt(doc)", 'dec', 'decrypt_per_s', 'decrypt'),
]
print(f"{'SQL operation':30} {'seconds':>8} {'values/s':>11}   {'libmongocrypt':22} {'values/s':>11}  {'SQL/libmongocrypt':>17}")
for name, k, ok, oname in rows:
    s = float(sql[k])
    rate = n / s
    print(f"{name:30} {s:8.3f} {rate:11,.0f}   {oname:22} {best[ok]:11,.0f}  {rate / best[ok]:16.2f}x")
PY
echo "== written to $out"
