#!/bin/bash
# Start or stop a throwaway PostgreSQL 15 cluster for bsoncrypt.
#   scripts/cluster.sh start DIR PORT   initdb DIR (if new), write a local master
#                                       key, preload bsoncrypt, start on PORT
#   scripts/cluster.sh stop DIR
# The socket lives in DIR; connect with: psql -h DIR -p PORT postgres
set -euo pipefail
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
cmd=$1 dir=$(realpath -m "$2")

# The test master key is MongoDB's spec LOCAL_MASTERKEY, so that the official
# FLE corpus key (wrapped by it) can be imported. Never use it for real data.
SPEC_LOCAL_MASTER_KEY=Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk

case $cmd in
start)
	port=$3
	if [ ! -d "$dir/data" ]; then
		mkdir -p "$dir"
		$PG_BINDIR/initdb -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log"
		umask 077
		echo "$SPEC_LOCAL_MASTER_KEY" >"$dir/master.key"
		cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/master.key'
max_prepared_transactions = 10
CONF
	fi
	$PG_BINDIR/pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	;;
stop)
	$PG_BINDIR/pg_ctl -D "$dir/data" -m fast -w stop >/dev/null || true
	;;
*)
	echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
