#!/bin/bash
# Master-key rotation benchmark (docs/key-rotation.md).
#   bench/rotation/run.sh [KEYS] [BATCH_DELAY]     default 100000 keys, 3 ms (the setting's default)
# Starts a throwaway cluster, creates KEYS data keys under master key v1, then
#   1. measures a pgbench session encrypting and decrypting (baseline);
#   2. adds v2 and times a rotation of all the keys on an otherwise idle server;
#   3. adds v3, asks for a rotation and runs the same session meanwhile:
#      the session's throughput during the rotation against the baseline.
# Run it as the postgres OS user (or as root: it re-runs itself as postgres).
# BENCH_NICE sets bsoncrypt.rotation_nice (default: the setting's default).
set -euo pipefail
keys=${1:-100000}
delay=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" = 0 ]; then
	tmp=$(mktemp -d /tmp/bsoncrypt-bench.XXXXXX)
	cp "$0" "$tmp/run.sh"
	chown -R postgres "$tmp"
	exec runuser -u postgres -- bash "$tmp/run.sh" "$keys" "$delay"
fi
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH=$PG_BINDIR:$PATH
dir=$(mktemp -d /tmp/bsoncrypt-rotation.XXXXXX)
port=${BENCH_PORT:-54490}
trap 'pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

newkey() { head -c 96 /dev/urandom | base64 -w0; }
umask 077
echo "v1 $(newkey)" >"$dir/ring.key"
initdb -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
shared_buffers = 256MB
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/ring.key'
bsoncrypt.rotation_batch_delay = '${delay}ms'
${BENCH_NICE:+bsoncrypt.rotation_nice = $BENCH_NICE}
CONF
pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

echo "creating $keys data keys ..."
q "CREATE EXTENSION bsoncrypt"
q "INSERT INTO bsoncrypt.key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
   SELECT gen_random_uuid(), CASE WHEN i <= 100 THEN ARRAY['k' || i] ELSE '{}' END,
          (m).key_material, '{\"provider\": \"local\"}', (m).master_key_version
     FROM (SELECT i, bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $keys) i) s"
q "VACUUM ANALYZE bsoncrypt.key_vault"

cat >"$dir/session.sql" <<'SQL'
\set k random(1, 100)
SELECT bsoncrypt.decrypt_get_text(bsoncrypt.encrypt_field('{"ssn": "123-45-6789", "n": 1}', 'ssn', 'k' || :k), 'ssn');
SQL
duration=${BENCH_SECONDS:-5}
echo "baseline: one session encrypting + decrypting for ${duration}s ..."
base=$(pgbench -n -T "$duration" -f "$dir/session.sql" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')

echo "v2 $(newkey)" >>"$dir/ring.key"
echo "rotation of $keys keys to v2 on an idle server ..."
q "CHECKPOINT"
q "SELECT bsoncrypt.rotate_master_key()" >/dev/null
until [ "$(q "SELECT state FROM bsoncrypt.rotation_status")" = done ]; do sleep 0.1; done
idle_secs=$(q "SELECT extract(epoch FROM finished - started) FROM bsoncrypt.rotation_status")
[ "$(q "SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'")" = "$keys" ] ||
	{ echo "not every key is on v2" >&2; exit 1; }

q "VACUUM bsoncrypt.key_vault"
echo "v3 $(newkey)" >>"$dir/ring.key"
echo "rotation of $keys keys to v3 with the same session running ..."
start=$(date +%s.%N)
pgbench -n -T 60 -P 1 -f "$dir/session.sql" >"$dir/during.out" 2>"$dir/during.err" &
bench=$!
sleep 1
q "SELECT bsoncrypt.rotate_master_key()" >/dev/null
until [ "$(q "SELECT state FROM bsoncrypt.rotation_status")" = done ]; do sleep 0.2; done
sleep 1
kill -INT $bench 2>/dev/null || true
wait $bench 2>/dev/null || true
read -r rot_secs rot_from rot_to < <(q "SELECT extract(epoch FROM finished - started),
        extract(epoch FROM started) - $start, extract(epoch FROM finished) - $start
   FROM bsoncrypt.rotation_status" | tr '|' ' ')
[ "$(q "SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v3'")" = "$keys" ] ||
	{ echo "not every key is on v3" >&2; exit 1; }
# pgbench -P lines: "progress: T s, X tps, ..."; average the seconds inside the rotation
during=$(awk -v from="$rot_from" -v to="$rot_to" '
	/^progress:/ { t = $2 + 0; sub(",", "", $4); if (t - 1 >= from && t <= to) { s += $4; n++ } }
	END { if (n) printf "%.1f %d", s / n, n; else print "nan 0" }' "$dir/during.err")
read -r during_tps during_n <<<"$during"


# baseline again, after the rotation: the machine's speed drifts
after=$(pgbench -n -T "$duration" -f "$dir/session.sql" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
base=$(echo "($base + $after) / 2" | bc -l)

nice_setting=$(q "SHOW bsoncrypt.rotation_nice")
printf '\nrewrap of %d data keys, idle server: %.2f s (%.0f keys/s)\n' \
	"$keys" "$idle_secs" "$(echo "$keys / $idle_secs" | bc -l)"
printf 'rewrap of %d data keys, with the session running: %.2f s\n' "$keys" "$rot_secs"
printf 'concurrent session: baseline %.1f tps (mean of before and after), during rotation %.1f tps over %d s: ratio %.2f\n' \
	"$base" "$during_tps" "$during_n" "$(echo "$during_tps / $base" | bc -l)"
printf '(batch size 1000, batch delay %s ms, rotation_nice %s, %s CPUs)\n' "$delay" "$nice_setting" "$(nproc)"
