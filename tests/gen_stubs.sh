#!/bin/sh
# Generates Python stubs for the tests into $1 (default build/pygen):
#   collector.*_pb2(_grpc)     from proto/collector
#   stdgrpc.<area>.*_pb2(_grpc) from Debian's grpc-proto. Their import paths are rewritten
#   from grpc/ to stdgrpc/, because a top-level package named grpc would shadow grpcio.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/pygen}" && cd "${1:-$top/build/pygen}" && pwd)
src=${GRPC_PROTO_DIR:-/usr/share/grpc-proto}
stage=$out/.stage
rm -rf "$out"
mkdir -p "$stage/stdgrpc"
for area in core health/v1 reflection/v1 reflection/v1alpha testing; do
	mkdir -p "$stage/stdgrpc/$area"
	for f in "$src/grpc/$area"/*.proto; do
		sed 's|import "grpc/|import "stdgrpc/|' "$f" >"$stage/stdgrpc/$area/$(basename "$f")"
	done
done
cp -r "$top/proto/collector" "$stage/collector"
cd "$stage"
protos=$(find stdgrpc collector -name '*.proto' | sort)
protoc -I . -I /usr/include --python_out="$out" --grpc_out="$out" \
	--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin $protos
cd "$out"
find . -path ./.stage -prune -o -type d -print | while read -r d; do touch "$d/__init__.py"; done
rm -rf "$stage"
