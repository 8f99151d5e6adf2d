#!/bin/bash
# bench/kms/run.sh — encryption and decryption with each master-key provider
# (local, command, kmip with secret data, kmip delegated), warm and cold.
#
# Starts a throwaway cluster (scripts/cluster.sh) and a PyKMIP server
# (scripts/kmip-test-server.sh, 127.0.0.1), makes one data key per provider,
# and times with pgbench, one client, BENCH_SECONDS each (default 5), best
# of RUNS rounds (default 3) that alternate the providers, the statement
#     SELECT decrypt_value(encrypt_value('{"": "<100 bytes>"}', <key>, 'random'))
# (one data key unwrap when it is not cached):
#   warm         the session's key cache holds the data key (the usual case)
#   cold         bsoncrypt.key_cache_ttl = 0: every statement unwraps the data
#                key, so the provider is asked for the master key every time
#                (local: reads the key file; command: runs the command; kmip:
#                a KMIP Get over the session's TLS connection; delegated: a
#                KMIP Decrypt)
#   new session  pgbench -C: every statement in a new session (empty caches:
#                for kmip also a new TLS connection)
# and, in one statement, the decryption of NKEYS values each under its own
# data key with the master key cached (kmip secret data is fetched once;
# delegated does one Decrypt per data key; command runs once per data key):
#   per key      microseconds per data key unwrapped
# Prints a table with ratios against local (the baseline, same run), and
# writes it to bench/out/kms.txt.  Run as root (it runs the servers as the
# postgres OS user) or as the postgres user.
#
#   bench/kms/run.sh            # PG_BINDIR, PORT, KMIP_PORT, BENCH_SECONDS, RUNS, NKEYS may be set
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$top/bench/out"
	chown postgres "$top/bench/out"
	exec runuser -u postgres -- env PG_BINDIR="${PG_BINDIR:-}" PORT="${PORT:-}" \
		KMIP_PORT="${KMIP_PORT:-}" BENCH_SECONDS="${BENCH_SECONDS:-}" NKEYS="${NKEYS:-}" RUNS="${RUNS:-}" \
		bash "$0" "$@"
fi
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR PATH=$PG_BINDIR:$PATH
port=${PORT:-54470}
kmip_port=${KMIP_PORT:-54471}
seconds=${BENCH_SECONDS:-5}
runs=${RUNS:-3}
nkeys=${NKEYS:-2000}
dir=$(mktemp -d /tmp/bsoncrypt-bench-kms.XXXXXX)
out=$top/bench/out/kms.txt
mkdir -p "$top/bench/out"

cleanup() {
	"$top/scripts/cluster.sh" stop "$dir/pg" >/dev/null 2>&1 || true
	"$top/scripts/kmip-test-server.sh" stop "$dir/kmip" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

echo "starting a KMIP server (PyKMIP) and a cluster in $dir ..."
"$top/scripts/kmip-test-server.sh" start "$dir/kmip" "$kmip_port"
"$top/scripts/cluster.sh" start "$dir/pg" "$port"
umask 077
echo "c1 $(head -c 96 /dev/urandom | base64 -w0)" >"$dir/command.key"
printf '#!/bin/sh\ncat %s\n' "$dir/command.key" >"$dir/kms.sh"
chmod 700 "$dir/kms.sh"
cat >>"$dir/pg/data/postgresql.conf" <<CONF
bsoncrypt.master_key_command = '$dir/kms.sh'
bsoncrypt.kmip_endpoint = '127.0.0.1:$kmip_port'
bsoncrypt.kmip_ca_file = '$dir/kmip/ca.crt'
bsoncrypt.kmip_cert_file = '$dir/kmip/client.crt'
bsoncrypt.kmip_key_file = '$dir/kmip/client.key'
CONF
pg_ctl -D "$dir/pg/data" reload >/dev/null
sleep 0.5
export PGHOST=$dir/pg PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

q "CREATE EXTENSION bsoncrypt"
secret=$(q "SELECT bsoncrypt.kmip_create_master_key()")
aes=$(q "SELECT bsoncrypt.kmip_create_master_key(true)")
q "SELECT bsoncrypt.create_data_key('local', '{b_local}')" >/dev/null
q "SELECT bsoncrypt.create_data_key('command', '{b_command}')" >/dev/null
q "SELECT bsoncrypt.create_data_key('kmip', '{b_kmip}', NULL, '{\"keyId\": \"$secret\"}')" >/dev/null
q "SELECT bsoncrypt.create_data_key('kmip', '{b_delegated}', NULL, '{\"keyId\": \"$aes\", \"delegated\": true}')" >/dev/null

providers="local command kmip delegated"
value=$(printf 'x%.0s' $(seq 1 100))
echo "making $nkeys data keys and values per provider ..."
q "CREATE TABLE many (provider text, c bsoncrypt.bson)"
for p in $providers; do
	case $p in
	kmip) opts="{\"keyId\": \"$secret\"}"; prov=kmip ;;
	delegated) opts="{\"keyId\": \"$aes\", \"delegated\": true}"; prov=kmip ;;
	*) opts='{}'; prov=$p ;;
	esac
	q "INSERT INTO bsoncrypt.key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
	   SELECT gen_random_uuid(), ARRAY['m_${p}_' || i], (m).key_material, (m).master_key, (m).master_key_version
	     FROM (SELECT i, bsoncrypt._new_key_material('$prov', NULL, '$opts') AS m
	             FROM generate_series(1, $nkeys) i) s"
	q "INSERT INTO many SELECT '$p', bsoncrypt.encrypt_value('{\"\": \"$value\"}', 'm_${p}_' || i, 'random')
	     FROM generate_series(1, $nkeys) i"
done

tps() {	# provider extra-pgbench-options PGOPTIONS
	local p=$1 opts=$2 pgopts=$3
	printf 'SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value(%s, %s, %s));\n' \
		"'{\"\": \"$value\"}'" "'b_$p'" "'random'" >"$dir/$p.sql"
	PGOPTIONS=$pgopts pgbench -n $opts -T "$seconds" -f "$dir/$p.sql" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

per_key_us() {	# provider: microseconds per data key unwrapped (best of 3)
	local p=$1 best=""
	for _ in 1 2 3; do
		local ms
		ms=$(psql -XAtq -c '\timing on' \
			-c "SELECT count(bsoncrypt.decrypt_value(c)) FROM many WHERE provider = '$p'" |
			sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
		if [ -z "$best" ] || awk -v a="$ms" -v b="$best" 'BEGIN { exit !(a + 0 < b + 0) }'; then best=$ms; fi
	done
	awk -v ms="$best" -v n="$nkeys" 'BEGIN { printf "%.1f", ms * 1000 / n }'
}

# rounds alternate the providers, so that all see the same machine load;
# each figure is the best of its rounds
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
declare -A warm cold fresh perkey
for round in $(seq 1 "$runs"); do
	for p in $providers; do
		echo "round $round: $p ..."
		warm[$p]=$(best "${warm[$p]:-0}" "$(tps "$p" "" "")")
		cold[$p]=$(best "${cold[$p]:-0}" "$(tps "$p" "" "-c bsoncrypt.key_cache_ttl=0")")
		fresh[$p]=$(best "${fresh[$p]:-0}" "$(tps "$p" "-C" "")")
	done
done
for p in $providers; do
	perkey[$p]=$(per_key_us "$p")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b + 0 > 0) ? a / b : 0 }'; }
{
	echo "bsoncrypt master-key providers, $(date -u +%Y-%m-%d), $(nproc) CPUs, one pgbench client, best of $runs rounds of ${seconds}s"
	echo "statement: decrypt_value(encrypt_value(100-byte string, key, 'random')); KMIP server: PyKMIP on 127.0.0.1"
	echo
	printf '%-10s %12s %12s %14s %12s   %s\n' provider 'warm tps' 'cold tps' 'new-sess tps' 'us/key' 'ratios to local (warm, cold, new session, per key)'
	for p in $providers; do
		printf '%-10s %12.0f %12.0f %14.0f %12s   %s %s %s %s\n' "$p" "${warm[$p]}" "${cold[$p]}" "${fresh[$p]}" "${perkey[$p]}" \
			"$(ratio "${warm[$p]}" "${warm[local]}")" "$(ratio "${cold[$p]}" "${cold[local]}")" \
			"$(ratio "${fresh[$p]}" "${fresh[local]}")" "$(ratio "${perkey[$p]}" "${perkey[local]}")"
	done
	echo
	echo "warm: data key cached; cold: bsoncrypt.key_cache_ttl = 0 (every statement unwraps);"
	echo "new-sess: pgbench -C (new session each statement); us/key: one statement unwrapping"
	echo "$nkeys data keys with the master key cached (kmip delegated: one KMIP Decrypt per key)"
} | tee "$out"
