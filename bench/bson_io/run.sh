#!/bin/bash
# bench/bson_io/run.sh — throughput of bsoncrypt.bson text I/O, with jsonb
# measured in the same run as the baseline.
#
# Builds nothing: bsoncrypt must be installed.  Starts a throwaway cluster
# (scripts/cluster.sh; as root PostgreSQL runs as the postgres OS user),
# loads NDOCS generated documents of about 1 KB (strings, int32, int64,
# doubles, dates, ObjectIds, nested documents, arrays) as Extended JSON
# text, then times, best of RUNS, each conversion over the whole table:
#   text -> bson, text -> jsonb, bson -> text (relaxed: doc::text;
#   canonical: bson_to_json(doc, true)), jsonb -> text
# and prints input MB/s and the speed relative to jsonb (jsonb time / bson
# time, > 1 means bson is faster).  Times are both wall clock
# (clock_timestamp() deltas) and the backend's CPU time (user + system, from
# /proc), which other load on the machine disturbs far less; MB/s and the
# ratios use CPU time.  The table also goes to bench/out/bson_io.txt.  The
# cluster is stopped and removed at the end.
#
#   bench/bson_io/run.sh            # PORT, DIR, NDOCS, RUNS may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-54350}
dir=${DIR:-/tmp/bsoncrypt-bench-io}
ndocs=${NDOCS:-100000}
runs=${RUNS:-3}
out=$top/bench/out/bson_io.txt

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

# room for all three tables in shared buffers
psql_run -c "ALTER SYSTEM SET shared_buffers = '1GB'"
"${run[@]}" "$top/scripts/cluster.sh" stop "$dir"
"${run[@]}" "$top/scripts/cluster.sh" start "$dir" "$port"

echo "== loading $ndocs documents"
psql_run -v ndocs="$ndocs" <<'SQL'
CREATE EXTENSION bsoncrypt;
\o /dev/null
SELECT setseed(0.42);
\o

-- about 1 KB of relaxed Extended JSON per document
CREATE TABLE texts AS
SELECT g AS id, format(
	'{"_id": {"$oid": "%s"}, "seq": %s, "account": %s, "name": "%s", '
	'"email": "%s", "active": %s, "score": %s, "balance": %s, '
	'"created": {"$date": "%s"}, "updated": {"$date": "%s"}, '
	'"address": {"street": "%s", "city": "%s", "zip": "%s", "geo": [%s, %s]}, '
	'"tags": [%s], "orders": [%s], "notes": "%s"}',
	substr(md5(g::text), 1, 24),
	g,
	3000000000 + g::bigint * 7919,
	'Customer ' || substr(md5(g::text || 'n'), 1, 10),
	substr(md5(g::text || 'e'), 1, 8) || '@example.com',
	(g % 3 > 0)::text,
	round((random() * 100)::numeric, 4),
	round((random() * 100000 - 5000)::numeric, 2),
	to_char(timestamp '2019-01-01' + random() * interval '1500 days', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
	to_char(timestamp '2023-01-01' + random() * interval '600 days', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
	(g % 997) || ' ' || substr(md5(g::text || 's'), 1, 12) || ' Street',
	(ARRAY['Lisbon', 'Oslo', 'Kyoto', 'Denver', 'Nairobi', 'Lima'])[1 + g % 6],
	lpad((g % 100000)::text, 5, '0'),
	round((random() * 360 - 180)::numeric, 6),
	round((random() * 180 - 90)::numeric, 6),
	(SELECT string_agg('"' || substr(md5(g::text || t), 1, 6) || '"', ', ')
	   FROM generate_series(1, 3 + g % 3) t),
	(SELECT string_agg(format(
		'{"id": {"$oid": "%s"}, "sku": "SKU-%s", "qty": %s, "price": %s, '
		'"ts": {"$date": "%s"}, "items": [%s, %s, %s]}',
		substr(md5(g::text || 'o' || o), 1, 24),
		(g * 31 + o) % 100000, 1 + (g + o) % 9,
		round((random() * 500)::numeric, 2),
		to_char(timestamp '2022-01-01' + random() * interval '700 days',
				'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
		g % 50, o * 7, (g + o) % 1000), ', ')
	   FROM generate_series(1, 3) o),
	repeat(substr(md5(g::text || 'x'), 1, 16) || ' ', 8)) AS t
FROM generate_series(1, :ndocs) g;

CREATE TABLE docs AS SELECT id, t::bsoncrypt.bson AS doc FROM texts;
CREATE TABLE jdocs AS SELECT id, t::jsonb AS j FROM texts;
VACUUM ANALYZE texts, docs, jdocs;
SQL

echo "== measuring (best of $runs)"
mkdir -p "$(dirname "$out")"
{
	echo "bsoncrypt.bson text I/O throughput, $(date -u +%Y-%m-%d), $(nproc) cores," \
		"PostgreSQL $(psql_run -At -c 'SHOW server_version' | cut -d' ' -f1), best of $runs runs"
	psql_run -v runs="$runs" -v hz="$(getconf CLK_TCK)" <<'SQL'
SET max_parallel_workers_per_gather = 0;
SET jit = off;

-- this backend's user + system CPU time in ms (/proc/PID/stat fields 14, 15)
CREATE FUNCTION pg_temp.cpu_ms(hz int) RETURNS float8
LANGUAGE sql AS $$
	SELECT (f[12]::bigint + f[13]::bigint) * 1000.0 / hz
	FROM (SELECT string_to_array(split_part(
			pg_read_file('/proc/' || pg_backend_pid() || '/stat'), ') ', 2), ' ') AS f) s
$$;

-- best of runs: wall ms and CPU ms (each its own minimum)
CREATE FUNCTION pg_temp.best(q text, runs int, hz int, wall OUT float8, cpu OUT float8)
LANGUAGE plpgsql AS $$
DECLARE
	t0			timestamptz;
	c0			float8;
	r			bigint;
BEGIN
	wall := 'Infinity';
	cpu := 'Infinity';
	FOR i IN 1..runs LOOP
		t0 := clock_timestamp();
		c0 := pg_temp.cpu_ms(hz);
		EXECUTE q INTO r;
		cpu := least(cpu, pg_temp.cpu_ms(hz) - c0);
		wall := least(wall, extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END $$;

CREATE TEMP TABLE input AS SELECT
	(SELECT count(*) FROM texts) AS docs,
	(SELECT sum(octet_length(t)) FROM texts) AS text_bytes,
	(SELECT sum(octet_length(doc::bytea)) FROM docs) AS bson_bytes,
	(SELECT sum(pg_column_size(j)) FROM jdocs) AS jsonb_bytes;

SELECT format('%s documents, on average %s B of JSON text, %s B of BSON, %s B of jsonb',
			  docs, round(text_bytes / docs), round(bson_bytes / docs),
			  round(jsonb_bytes / docs)) AS summary FROM input \gset
\echo :summary
\echo 'MB/s: input bytes (text, BSON or jsonb) per CPU second; speed vs jsonb: jsonb CPU time / bson CPU time'
\echo

CREATE TEMP TABLE result (n int, op text, baseline text, input_bytes numeric,
						  wall float8, cpu float8);
INSERT INTO result SELECT 1, 'text -> bson', 'text -> jsonb', text_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(octet_length(t::bsoncrypt.bson::bytea)) FROM texts', :runs, :hz) b;
INSERT INTO result SELECT 2, 'text -> jsonb', NULL, text_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(pg_column_size(t::jsonb)) FROM texts', :runs, :hz) b;
INSERT INTO result SELECT 3, 'bson -> text (relaxed)', 'jsonb -> text', bson_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(octet_length(doc::text)) FROM docs', :runs, :hz) b;
INSERT INTO result SELECT 4, 'bson -> text (canonical)', 'jsonb -> text', bson_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(octet_length(bsoncrypt.bson_to_json(doc, true))) FROM docs', :runs, :hz) b;
INSERT INTO result SELECT 5, 'jsonb -> text', NULL, jsonb_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(octet_length(j::text)) FROM jdocs', :runs, :hz) b;
INSERT INTO result SELECT 6, 'scan only (text)', NULL, text_bytes, b.*
	FROM input, pg_temp.best('SELECT sum(octet_length(t)) FROM texts', :runs, :hz) b;

SELECT r.op AS "conversion",
	   round(r.input_bytes / 1e6, 1) AS "input MB",
	   round(r.wall::numeric, 0) AS "wall ms",
	   round(r.cpu::numeric, 0) AS "CPU ms",
	   round((r.input_bytes / 1e6 / (greatest(r.cpu, 1) / 1000))::numeric, 1) AS "MB/s",
	   coalesce(to_char(b.cpu / greatest(r.cpu, 1), 'FM990.00') || ' x ' || r.baseline, '') AS "speed vs jsonb"
FROM result r LEFT JOIN result b ON b.op = r.baseline
ORDER BY r.n;
SQL
} | tee "$out"
echo "== written to $out"
