#!/bin/bash
# A throwaway KMIP server for tests and benchmarks: Debian's PyKMIP
# (python3-pykmip, /usr/bin/pykmip-server) on 127.0.0.1 only, with TLS
# certificates made here with the openssl CLI.
#
#   scripts/kmip-test-server.sh start DIR PORT   make DIR (certificates, server.conf,
#                                                an SQLite database) and start the
#                                                server; returns once it listens.
#                                                On an existing DIR, starts it again
#                                                with its database and certificates
#   scripts/kmip-test-server.sh stop DIR         stop it (its process group)
#
# DIR gets: ca.crt (the CA of the server and the client), client.crt/.key
# (CN=bsoncrypt, clientAuth), server.crt/.key (IP 127.0.0.1, DNS localhost),
# other-ca.crt and other-client.crt/.key (a CA the server does not trust),
# server.log, server.pid.  Keys are mode 0600.  If the server cannot run
# here, prints "skipped: <reason>" and exits 3.
set -euo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$dir" ] || { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }

skip() { echo "skipped: $*"; exit 3; }

cert() {	# name CN extfile-lines signing-ca
	local name=$1 cn=$2 ext=$3 ca=$4
	openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" \
		-subj "/CN=$cn" 2>/dev/null
	printf '%b\n' "$ext" >"$dir/$name.ext"
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
		-CAcreateserial -out "$dir/$name.crt" -days 2 -extfile "$dir/$name.ext" 2>/dev/null
	rm -f "$dir/$name.csr" "$dir/$name.ext"
}

make_certs() {
	local c
	for c in ca other-ca; do
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/$c.key" -out "$dir/$c.crt" \
			-days 2 -subj "/CN=bsoncrypt test $c" 2>/dev/null
	done
	cert server 127.0.0.1 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth' ca
	cert client bsoncrypt 'extendedKeyUsage=clientAuth' ca
	cert other-client bsoncrypt 'extendedKeyUsage=clientAuth' other-ca
	chmod 600 "$dir"/*.key
}

case $cmd in
start)
	port=${3:?port}
	server=$(command -v pykmip-server || true)
	[ -n "$server" ] || skip "pykmip-server is not installed (Debian package python3-pykmip)"
	command -v openssl >/dev/null || skip "the openssl command is not installed"
	head -1 "$server" | grep -q python3 || skip "$server is not a python3 script"
	python=$(head -1 "$server" | sed 's/^#! *//; s/ .*//')
	"$python" -c 'import kmip.services.server' 2>/dev/null ||
		skip "$python cannot import kmip.services.server"
	umask 077
	if [ ! -f "$dir/server.conf" ]; then
		mkdir -p "$dir/policies"
		make_certs
		cat >"$dir/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$dir/server.crt
key_path=$dir/server.key
ca_path=$dir/ca.crt
auth_suite=TLS1.2
policy_path=$dir/policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$dir/pykmip.sqlite
CONF
	fi
	started=$(grep -c 'Starting connection service' "$dir/server.log" 2>/dev/null || true)
	setsid "$server" -f "$dir/server.conf" -l "$dir/server.log" \
		>"$dir/server.out" 2>&1 </dev/null &
	echo $! >"$dir/server.pid"
	for _ in $(seq 1 300); do
		now=$(grep -c 'Starting connection service' "$dir/server.log" 2>/dev/null || true)
		if [ "${now:-0}" -gt "${started:-0}" ]; then
			exit 0
		fi
		kill -0 "$(cat "$dir/server.pid")" 2>/dev/null ||
			skip "pykmip-server exited: $(tail -3 "$dir/server.out" "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
		sleep 0.1
	done
	"$0" stop "$dir"
	skip "pykmip-server did not start listening on 127.0.0.1:$port within 30 s"
	;;
stop)
	if [ -f "$dir/server.pid" ]; then
		pid=$(cat "$dir/server.pid")
		# setsid made it a process group leader: stop it and its children
		kill -TERM -- "-$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 -- "-$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
		rm -f "$dir/server.pid"
	fi
	;;
*)
	echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
