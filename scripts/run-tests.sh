#!/bin/bash
# Run bsoncrypt's whole test suite as an unprivileged user, after
# scripts/test.sh has installed packages and the extension:
#   1. pure-crypto unit tests (no server)
#   2. fuzz seeds replayed; libmongocrypt oracle self-test (no server)
#   3. pg_regress + isolation tests against a throwaway cluster
#   4. TAP tests (each starts its own clusters), whose summary ends the run
# With arguments, runs only the tests named (sql/NAME.sql, specs/NAME.spec,
# t/NNN_name.pl), for development.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR PATH=$PG_BINDIR:$PATH
pgxs=$(dirname "$PG_BINDIR")/lib/pgxs
top=$(pwd)
tmp=$top/tmp_run
rm -rf "$tmp"; mkdir -p "$tmp"
port=${BSONCRYPT_TEST_PORT:-54329}

regress=() isolation=() tap=()
for arg in "$@"; do
	case $arg in
	sql/*.sql) name=${arg#sql/}; regress+=("${name%.sql}") ;;
	specs/*.spec) name=${arg#specs/}; isolation+=("${name%.spec}") ;;
	t/*.pl) tap+=("$arg") ;;
	*) echo "unknown test: $arg (give sql/NAME.sql, specs/NAME.spec or t/NNN_name.pl)" >&2; exit 2 ;;
	esac
done

if [ $# = 0 ]; then
	if [ -f test/unit/Makefile ]; then
		echo "== unit tests (pure crypto)"
		make -s -C test/unit check
	fi
	echo "== fuzz seed replay (validator and Extended JSON round trips)"
	make -s -C bench/fuzz check

	if [ -f test/oracle/Makefile ]; then
		echo "== libmongocrypt oracle self-test"
		make -s -C test/oracle check
	fi
fi

if [ $# = 0 ] || [ ${#regress[@]} -gt 0 ] || [ ${#isolation[@]} -gt 0 ]; then
	echo "== pg_regress and isolation tests"
	scripts/cluster.sh start "$tmp/regress" "$port"
	trap 'scripts/cluster.sh stop "$tmp/regress"' EXIT
	make_args=()
	if [ $# -gt 0 ]; then
		make_args=("REGRESS=${regress[*]:-}" "ISOLATION=${isolation[*]:-}")
	fi
	status=0
	PGHOST=$tmp/regress PGPORT=$port PGUSER=postgres \
		make -s installcheck "${make_args[@]}" || status=$?
	if [ $status != 0 ]; then
		[ -f regression.diffs ] && head -200 regression.diffs
		exit $status
	fi
	scripts/cluster.sh stop "$tmp/regress"
	trap - EXIT
fi

if [ $# = 0 ] || [ ${#tap[@]} -gt 0 ]; then
	echo "== TAP tests"
	export PERL5LIB=$pgxs/src/test/perl${PERL5LIB:+:$PERL5LIB}
	export TESTDIR=$top PG_REGRESS=$pgxs/src/test/regress/pg_regress
	export BSONCRYPT_SRC=$top
	rm -rf tmp_check; mkdir -p tmp_check
	if [ ${#tap[@]} -gt 0 ]; then
		prove --timer -I t "${tap[@]}"
	else
		prove --timer -I t t/*.pl
	fi
fi
