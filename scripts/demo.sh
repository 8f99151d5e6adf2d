#!/bin/bash
# README command 1: install everything bsoncrypt needs on Debian 12, build and
# install it, start a throwaway cluster in ./tmp_demo and run the demo SQL
# (scripts/demo.sql): documents stored, fields encrypted, ciphertext shown,
# decrypted again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
cd "$top"
install_packages
build_and_install

demo=$top/tmp_demo
port=${BSONCRYPT_DEMO_PORT:-54330}
run=()
if [ "$(id -u)" = 0 ]; then
	run=(runuser -u postgres --)
fi
[ -d "$demo/data" ] && "${run[@]}" scripts/cluster.sh stop "$demo"
rm -rf "$demo"
mkdir -p "$demo"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$demo"
"${run[@]}" scripts/cluster.sh start "$demo" "$port"
trap '"${run[@]}" scripts/cluster.sh stop "$demo"' EXIT
echo "== demo on a throwaway cluster in $demo (port $port)"
BSONCRYPT_DEMO_DIR=$demo "${run[@]}" psql -X -h "$demo" -p "$port" -U postgres -d postgres \
	-v ON_ERROR_STOP=1 -f scripts/demo.sql
