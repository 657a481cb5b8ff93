#!/bin/sh
# protoc_flat.sh OUTDIR PROTO_ROOT GRPC_CPP_PLUGIN PROTO...
# Runs protoc (C++ messages and gRPC stubs) on PROTO... (paths relative to PROTO_ROOT) and
# puts the generated files flat into OUTDIR: meson accepts custom_target outputs only in the
# current build dir, while protoc nests them under the proto's package path. The generated
# files' #includes of each other are rewritten to the flat names.
set -eu
out=$(cd "$1" && pwd) root=$2 plugin=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc -I "$root" --cpp_out="$tmp" --grpc_out="$tmp" \
	--plugin=protoc-gen-grpc="$plugin" "$@"
cd "$tmp"
: >"$tmp/.rewrite.sed"
files=$(find . -type f -name '*.pb.*' | sed 's|^\./||' | sort)
for f in $files; do
	b=$(basename "$f")
	if [ -e "$tmp/.seen.$b" ]; then
		echo "protoc_flat.sh: two generated files named $b" >&2
		exit 1
	fi
	: >"$tmp/.seen.$b"
	echo "s|^#include \"$f\"|#include \"$b\"|" >>"$tmp/.rewrite.sed"
done
for f in $files; do
	sed -f "$tmp/.rewrite.sed" "$f" >"$out/$(basename "$f").tmp"
	mv "$out/$(basename "$f").tmp" "$out/$(basename "$f")"
done
