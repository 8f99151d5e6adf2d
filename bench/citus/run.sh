#!/bin/bash
# bsoncrypt on Citus (docs/citus.md): needs Citus 13.0 installed in PG_BINDIR's
# PostgreSQL (it is not a Debian package; this script does not build it).
#   bench/citus/run.sh [DOCS] [KEYS]     default 1000000 documents, 100000 keys
# Starts, on this machine, a coordinator with two workers and a single
# server, all with bsoncrypt, then
#   1. loads DOCS documents (~150 bytes) into a table distributed over the
#      two workers (8 shards) and into a plain table of the single server,
#      and times encrypting one field of every document (deterministic) in
#      one statement on each: the distributed UPDATE ... FROM (... ORDER BY)
#      that runs on every shard, and the single server's plain UPDATE;
#      then an INSERT ... SELECT that encrypts into a co-located table;
#   2. makes KEYS data keys on the coordinator (one statement, copied to
#      both workers), adds master key v2 to every node and times one
#      cluster-wide rotation (rotate_master_key() on the coordinator until
#      every node's rotation is done), against the same rotation of KEYS
#      keys on the single server; and create_data_key() one per
#      transaction (pgbench, 1000 transactions) on each.
# Run it as the postgres OS user (or as root: it re-runs itself as postgres).
set -euo pipefail
docs=${1:-1000000}
keys=${2:-100000}
if [ "$(id -u)" = 0 ]; then
	tmp=$(mktemp -d /tmp/bsoncrypt-bench.XXXXXX)
	cp "$0" "$tmp/run.sh"
	chown -R postgres "$tmp"
	exec runuser -u postgres -- env PG_BINDIR="${PG_BINDIR:-}" bash "$tmp/run.sh" "$docs" "$keys"
fi
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH=$PG_BINDIR:$PATH
if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
	echo "Citus is not installed in $(pg_config --bindir)'s PostgreSQL: nothing to measure" >&2
	exit 2
fi
dir=$(mktemp -d /tmp/bsoncrypt-citus-bench.XXXXXX)
base=${BENCH_PORT:-54470}
names=(coord w1 w2 single)
trap 'for n in "${names[@]}"; do pg_ctl -D "$dir/$n" -m immediate stop >/dev/null 2>&1 || true; done; rm -rf "$dir"' EXIT

newkey() { head -c 96 /dev/urandom | base64 -w0; }
umask 077
v1="v1 $(newkey)"
for i in "${!names[@]}"; do
	n=${names[$i]}
	port=$((base + i))
	echo "$v1" >"$dir/$n.key"
	initdb -D "$dir/$n" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
	preload=citus,bsoncrypt
	[ "$n" = single ] && preload=bsoncrypt
	cat >>"$dir/$n/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
port = $port
fsync = off
shared_buffers = 256MB
max_wal_size = 4GB
autovacuum = off
max_prepared_transactions = 100
shared_preload_libraries = '$preload'
bsoncrypt.local_master_key_file = '$dir/$n.key'
dynamic_library_path = '\$libdir/bsoncrypt_decoders:\$libdir'
citus.local_hostname = '127.0.0.1'
CONF
	pg_ctl -D "$dir/$n" -l "$dir/$n.log" -w start >/dev/null
done
q() { local port=$((base + $1)); shift; psql -h "$dir" -p "$port" -U postgres -XAtq -v ON_ERROR_STOP=1 -d postgres -c "$1"; }
secs() { local t0=$1; echo "$(date +%s.%N) - $t0" | bc; }
# seconds one statement takes on node $1
timed() { local t0; t0=$(date +%s.%N); q "$1" "$2" >/dev/null; secs "$t0"; }
C=0 W1=1 W2=2 S=3

for n in $C $W1 $W2; do q $n "CREATE EXTENSION citus"; done
q $C "SELECT citus_set_coordinator_host('127.0.0.1', $base)"
q $C "SELECT citus_add_node('127.0.0.1', $((base + 1)))" >/dev/null
q $C "SELECT citus_add_node('127.0.0.1', $((base + 2)))" >/dev/null
for n in $C $S; do
	q $n "CREATE EXTENSION bsoncrypt"
	q $n "SELECT bsoncrypt.create_data_key('local', '{bench}')" >/dev/null
done

load="SELECT g, bsoncrypt.bson_from_jsonb(jsonb_build_object('name', 'name ' || g, 'ssn', lpad(g::text, 9, '0'),
                                                        'city', 'city ' || (g % 1000), 'n', g))
        FROM generate_series(1, $docs) g"
echo "loading $docs documents ..."
q $C "CREATE TABLE docs (id bigint PRIMARY KEY, doc bsoncrypt.bson)"
q $C "SELECT create_distributed_table('docs', 'id', shard_count => 8)" >/dev/null
q $C "CREATE TABLE docs_enc (id bigint PRIMARY KEY, doc bsoncrypt.bson)"
q $C "SELECT create_distributed_table('docs_enc', 'id', colocate_with => 'docs')" >/dev/null
q $C "INSERT INTO docs $load"
q $S "CREATE TABLE docs (id bigint PRIMARY KEY, doc bsoncrypt.bson)"
q $S "CREATE TABLE docs_enc (id bigint PRIMARY KEY, doc bsoncrypt.bson)"
q $S "INSERT INTO docs $load"
for n in $C $W1 $W2 $S; do q $n "CHECKPOINT"; done
q $C "VACUUM ANALYZE docs"
q $S "VACUUM ANALYZE docs"

echo "encrypting one field of $docs documents ..."
single_update=$(timed $S "UPDATE docs SET doc = bsoncrypt.encrypt_field(doc, 'ssn', 'bench', 'deterministic')")
dist_update=$(timed $C "UPDATE docs d SET doc = e.doc
        FROM (SELECT id, bsoncrypt.encrypt_field(doc, 'ssn', 'bench', 'deterministic') AS doc
                FROM docs ORDER BY id) e
       WHERE d.id = e.id")
insert_select="INSERT INTO docs_enc SELECT id, bsoncrypt.encrypt_field(doc, 'name', 'bench') FROM docs"
single_insert=$(timed $S "$insert_select")
dist_insert=$(timed $C "$insert_select")
[ "$(q $C "SELECT count(*) FROM docs_enc WHERE bsoncrypt.decrypt_get_text(doc, 'ssn') = lpad(id::text, 9, '0')")" = "$docs" ] ||
	{ echo "the distributed documents do not decrypt" >&2; exit 1; }

echo "making $keys data keys ..."
mk="INSERT INTO bsoncrypt.key_vault (_id, key_material, master_key, master_key_version)
    SELECT gen_random_uuid(), (m).key_material, '{\"provider\": \"local\"}', (m).master_key_version
      FROM (SELECT bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $keys)) s"
dist_create=$(timed $C "$mk")
single_create=$(timed $S "$mk")
# one key per transaction: what an application creating keys waits for
echo "SELECT bsoncrypt.create_data_key('local');" >"$dir/create.sql"
tps() { pgbench -n -t 1000 -f "$dir/create.sql" -h "$dir" -p $((base + $1)) -U postgres postgres 2>/dev/null |
	sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
single_tps=$(tps $S)
dist_tps=$(tps $C)
for n in $C $W1 $W2 $S; do q $n "VACUUM ANALYZE bsoncrypt.key_vault"; q $n "CHECKPOINT"; done

v2="v2 $(newkey)"
for n in "${names[@]}"; do echo "$v2" >>"$dir/$n.key"; done
total=$(q $C "SELECT count(*) FROM bsoncrypt.key_vault")
echo "rotating $total keys on the cluster and $(q $S "SELECT count(*) FROM bsoncrypt.key_vault") on the single server ..."
t0=$(date +%s.%N)
q $C "SELECT bsoncrypt.rotate_master_key()" >/dev/null
until [ "$(q $C "SELECT count(*) FILTER (WHERE state = 'done' AND node_error IS NULL)
                  FROM bsoncrypt.cluster_rotation_status")" = 3 ]; do sleep 0.1; done
dist_rotation=$(secs "$t0")
[ "$(q $W2 "SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'")" = "$total" ] ||
	{ echo "not every key of a worker is on v2" >&2; exit 1; }
t0=$(date +%s.%N)
q $S "SELECT bsoncrypt.rotate_master_key()" >/dev/null
until [ "$(q $S "SELECT state FROM bsoncrypt.rotation_status")" = done ]; do sleep 0.1; done
single_rotation=$(secs "$t0")

ratio() { echo "scale=2; $1 / $2" | bc; }
printf '\n%-52s %10s %10s %8s\n' "$docs documents, $keys keys" "1 server" "2 workers" "ratio"
printf '%-52s %10.2f %10.2f %8s\n' "UPDATE encrypting one field (s)" "$single_update" "$dist_update" "$(ratio "$single_update" "$dist_update")"
printf '%-52s %10.2f %10.2f %8s\n' "INSERT ... SELECT encrypting one field (s)" "$single_insert" "$dist_insert" "$(ratio "$single_insert" "$dist_insert")"
printf '%-52s %10.2f %10.2f %8s\n' "make $keys keys in one statement (s)" "$single_create" "$dist_create" "$(ratio "$single_create" "$dist_create")"
printf '%-52s %10.1f %10.1f %8s\n' "create_data_key(), one per transaction (tps)" "$single_tps" "$dist_tps" "$(ratio "$dist_tps" "$single_tps")"
printf '%-52s %10.2f %10.2f %8s\n' "rotate every key to v2, request to done (s)" "$single_rotation" "$dist_rotation" "$(ratio "$single_rotation" "$dist_rotation")"
echo "(ratio: single server / cluster for times, cluster / single server for tps; above 1 the cluster is faster)"
