# Shared helpers for bsoncrypt's set-up scripts (sourced, not run).
# Works as root (CI) and as a normal user with sudo.

# PG_BINDIR may name another PostgreSQL 15 installation (a private copy for
# parallel development); Debian's is the default.
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PACKAGES="postgresql-15 postgresql-server-dev-15 libssl-dev libbson-dev
  libmongocrypt-dev pkg-config make gcc libipc-run-perl python3 python3-pykmip
  sudo procps valgrind"

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
	local missing=""
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing Debian packages:$missing"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $missing >/dev/null
	fi
}

build_and_install() {
	echo "== building bsoncrypt"
	make -s -j2 PG_CONFIG=$PG_BINDIR/pg_config
	as_root make -s install PG_CONFIG=$PG_BINDIR/pg_config >/dev/null
}

# Run "$@" as an unprivileged OS user in a private copy of the tree when we
# are root (PostgreSQL refuses to run as root); directly otherwise.
# Sets RUN_DIR to where it ran.
run_unprivileged() {
	local src=$1; shift
	if [ "$(id -u)" = 0 ]; then
		RUN_DIR=$(mktemp -d /tmp/bsoncrypt-run.XXXXXX)
		cp -a "$src/." "$RUN_DIR/"
		chown -R postgres:postgres "$RUN_DIR"
		(cd "$RUN_DIR" && runuser -u postgres -- env HOME="$RUN_DIR" PATH="$PATH" PG_BINDIR="$PG_BINDIR" "$@")
	else
		RUN_DIR=$src
		(cd "$src" && "$@")
	fi
}
