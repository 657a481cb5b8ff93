#!/bin/bash
# Runs the interop clients against this project's interop server:
#   tests/interop/run_interop.sh [path/to/interop_server]   (default build/tests/interop/interop_server)
# Starts the server on a free port (--port 0, the port is read from its "listening on"
# line), runs the python grpcio client, the node grpc-js client, and this project's C
# client when it is built next to the server, each with --test_case all, then stops the
# server by its PID. Then the same over TLS (the server with --use_tls=true and a test
# certificate made here, the python and node clients with --use_tls=true and its CA).
# Exits non-zero if any case failed, a client could not run, or the server did not exit
# cleanly (a sanitizer report counts as unclean).
# Environment: PYGEN_DIR (python stubs, default build/pygen; generated when missing),
# PYTHON (default /usr/bin/python3), NODE (default node).
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
server=${1:-$top/build/tests/interop/interop_server}
pygen=${PYGEN_DIR:-$top/build/pygen}
python=${PYTHON:-/usr/bin/python3}
node=${NODE:-node}
node_dir=$top/tests/interop/node

if [ ! -x "$server" ]; then
	echo "run_interop: no server binary at $server (build it first: ninja -C build)" >&2
	exit 2
fi
if [ ! -d "$node_dir/node_modules/@grpc/grpc-js" ]; then
	echo "run_interop: node modules missing: run (cd tests/interop/node && npm ci)" >&2
	exit 2
fi
if [ ! -f "$pygen/stdgrpc/testing/test_pb2_grpc.py" ]; then
	sh "$top/tests/gen_stubs.sh" "$pygen" || exit 2
fi

work=$(mktemp -d)
pid=
cleanup() {
	# Only the server this script started, by its PID.
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# One pass: the server (plaintext, or TLS with the certificates in $work), every client.
run_pass() {
	local tls=$1 out=$work/$1
	mkdir -p "$out"
	local server_tls=(--use_tls=false) client_tls=(--use_tls=false)
	if [ "$tls" = tls ]; then
		server_tls=(--use_tls=true --tls_cert_file "$work/server.pem" --tls_key_file "$work/server.key")
		client_tls=(--use_tls=true --ca_file "$work/ca.pem" --server_host_override localhost)
	fi
	"$server" --port 0 "${server_tls[@]}" >"$out/stdout" 2>"$out/stderr" &
	pid=$!
	local port=
	for _ in $(seq 200); do
		port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out/stdout")
		[ -n "$port" ] && break
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	if [ -z "$port" ]; then
		echo "run_interop: the server printed no 'listening on' line" >&2
		cat "$out/stdout" "$out/stderr" >&2
		failed=1
		return
	fi
	echo "interop server $server ($tls, pid $pid) on 127.0.0.1:$port"
	run_client() {
		local name=$1
		shift
		echo "== $name ($tls)"
		"$@" --server_host 127.0.0.1 --server_port "$port" --test_case all "${client_tls[@]}"
		local rc=$?
		if [ $rc -ne 0 ]; then
			echo "== $name ($tls): exit $rc"
			failed=1
		fi
	}
	run_client "python grpcio" "$python" "$top/tests/interop/interop_client.py" --stubs "$pygen"
	run_client "node grpc-js" "$node" "$node_dir/interop_client.js"
	c_client=$(dirname "$server")/c_client
	if [ "$tls" = plain ] && [ -x "$c_client" ]; then
		run_client "c client" "$c_client"
	fi
	kill -TERM "$pid"
	wait "$pid"
	local rc=$?
	pid=
	if [ $rc -ne 0 ]; then
		echo "run_interop: the server exited with $rc after SIGTERM" >&2
		failed=1
	fi
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:' \
		"$out/stderr"; then
		echo "run_interop: the server reported a sanitizer error:" >&2
		failed=1
	fi
	if [ -s "$out/stderr" ]; then
		echo "-- server stderr ($tls):" >&2
		cat "$out/stderr" >&2
	fi
}

# A test CA and a server certificate for localhost / 127.0.0.1 (grpc's own test certificates,
# which stock interop clients embed, do not ship in Debian).
make_certs() {
	(cd "$work" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
			-out ca.pem -days 2 -subj /CN=interop-ca &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
			-out server.csr -subj /CN=localhost &&
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 2 -extfile server.ext) >/dev/null 2>&1
}

run_pass plain
if make_certs; then
	run_pass tls
else
	echo "run_interop: cannot make test certificates (openssl): the TLS pass did not run" >&2
	failed=1
fi

if [ $failed -ne 0 ]; then
	echo "interop: FAILED"
	exit 1
fi
echo "interop: all passed"
