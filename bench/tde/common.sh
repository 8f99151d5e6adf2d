# bench/tde/common.sh — sourced by the bench/tde scripts (run.sh,
# indexes.sh, key_uses.sh): a throwaway cluster made by scripts/cluster.sh
# (as the postgres OS user when run as root), and psql, pgbench and tps
# helpers against it.  The sourcing script sets top, dir and port (and secs,
# clients for tps; threads, pgbench's -j, is 2 unless set) first.
#
#   PG_BINDIR       the PostgreSQL to run (default: Debian's 15)
#   SHARED_BUFFERS  (e.g. 1GB) restart the cluster with that setting, so that
#                   the databases stay in memory and ratios show CPU cost only

bin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bin

run=()
if [ "$(id -u)" = 0 ]; then
	run=(runuser -u postgres --)
fi

psql() { "${run[@]}" $bin/psql -h "$dir" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
pgbench() { "${run[@]}" env PGOPTIONS="${PGOPTIONS:-}" $bin/pgbench -h "$dir" -p "$port" -U postgres "$@"; }

cluster() { "${run[@]}" env PG_BINDIR="$bin" "$top/scripts/cluster.sh" "$@"; }

# A new cluster in $dir on $port, removed when the script exits.
bench_cluster_start() {
	"${run[@]}" rm -rf "$dir" 2>/dev/null || rm -rf "$dir"
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	cluster start "$dir" "$port"
	trap 'cluster stop "$dir"; rm -rf "$dir"' EXIT
	if [ -n "${SHARED_BUFFERS:-}" ]; then
		psql -d postgres -c "ALTER SYSTEM SET shared_buffers = '$SHARED_BUFFERS'"
		cluster stop "$dir"
		cluster start "$dir" "$port"
	fi
}

# pgbench throughput of database $1 ($secs seconds, $clients clients; more
# pgbench arguments after it)
tps() {
	local db=$1; shift
	pgbench -n -T "$secs" -c "$clients" -j "${threads:-2}" "$@" "$db" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
