#!/bin/bash
# Runs the interop clients against this project's interop server:
#   tests/interop/run_interop.sh [path/to/interop_server]   (default build/tests/interop/interop_server)
# Starts the server on a free port (--port 0, the port is read from its "listening on"
# line), runs the python grpcio client, the node grpc-js client, and this project's C
# client when it is built next to the server, each with --test_case all, then stops the
# server by its PID. Exits non-zero if any case failed, a client could not run, or the
# server did not exit cleanly (a sanitizer report counts as unclean).
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

"$server" --port 0 --use_tls=false >"$work/stdout" 2>"$work/stderr" &
pid=$!

port=
for _ in $(seq 200); do
	port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/stdout")
	[ -n "$port" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		break
	fi
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "run_interop: the server printed no 'listening on' line" >&2
	cat "$work/stdout" "$work/stderr" >&2
	exit 1
fi
echo "interop server $server (pid $pid) on 127.0.0.1:$port"

failed=0
run_client() {
	local name=$1
	shift
	echo "== $name"
	"$@" --server_host 127.0.0.1 --server_port "$port" --test_case all
	local rc=$?
	if [ $rc -ne 0 ]; then
		echo "== $name: exit $rc"
		failed=1
	fi
}

run_client "python grpcio" "$python" "$top/tests/interop/interop_client.py" --stubs "$pygen"
run_client "node grpc-js" "$node" "$node_dir/interop_client.js"
c_client=$(dirname "$server")/c_client
if [ -x "$c_client" ]; then
	run_client "c client" "$c_client"
fi

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
if [ $rc -ne 0 ]; then
	echo "run_interop: the server exited with $rc after SIGTERM" >&2
	failed=1
fi
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:' \
	"$work/stderr"; then
	echo "run_interop: the server reported a sanitizer error:" >&2
	failed=1
fi
if [ -s "$work/stderr" ]; then
	echo "-- server stderr:" >&2
	cat "$work/stderr" >&2
fi

if [ $failed -ne 0 ]; then
	echo "interop: FAILED"
	exit 1
fi
echo "interop: all passed"
