#!/usr/bin/env bash
# Generates protobuf-c code from Protos/ into the GemmaProto target (sources beside headers
# under include/), and the Swift value types of the GemmaAPI target. With --check, generates into a scratch folder and fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
out=${1:-Sources/GemmaProto}
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/raw" "$scratch/protos/gemma/v1"
# protobuf-c keeps a string field as a NUL-terminated char*, which would cut a text at an
# embedded U+0000. The C code is generated from a copy in which string fields are bytes: the
# wire encoding is identical (both length-delimited), and GemmaAPI checks UTF-8 itself.
for f in Protos/gemma/v1/*.proto; do
  sed -E 's/^([[:space:]]*(repeated[[:space:]]+)?)string([[:space:]]+[A-Za-z_][A-Za-z0-9_]*[[:space:]]*=)/\1bytes\3/' \
    "$f" > "$scratch/protos/gemma/v1/$(basename "$f")"
done
protoc-c --proto_path="$scratch/protos" --c_out="$scratch/raw" "$scratch"/protos/gemma/v1/*.proto
mkdir -p "$scratch/target/gemma/v1" "$scratch/target/include/gemma/v1"
mv "$scratch"/raw/gemma/v1/*.pb-c.c "$scratch/target/gemma/v1/"
mv "$scratch"/raw/gemma/v1/*.pb-c.h "$scratch/target/include/gemma/v1/"
{
  echo "// Umbrella header of the generated protocol code (scripts/gen-proto.sh writes it)."
  for h in "$scratch"/target/include/gemma/v1/*.pb-c.h; do echo "#include \"gemma/v1/$(basename "$h")\""; done
} > "$scratch/target/include/gemma_proto.h"
printf 'module GemmaProto {\n    header "gemma_proto.h"\n    export *\n}\n' > "$scratch/target/include/module.modulemap"
swift_out=Sources/GemmaAPI/Messages.generated.swift
protoc --proto_path=Protos --include_imports --descriptor_set_out="$scratch/fds.pb" Protos/gemma/v1/*.proto
py=python3
[ -x "${GEMMA_VENV:-$HOME/.cache/gemma-serve/venv}/bin/python" ] && py="${GEMMA_VENV:-$HOME/.cache/gemma-serve/venv}/bin/python"
"$py" scripts/gen-swift-api.py "$scratch/fds.pb" > "$scratch/Messages.generated.swift"
if [ $check = 1 ]; then
  if ! cmp -s "$scratch/Messages.generated.swift" "$swift_out"; then
    echo "$swift_out is stale: run 'make proto'" >&2; exit 1
  fi
  if diff -r "$scratch/target" "$out" >/dev/null; then echo "protobuf-c code is up to date"; exit 0; fi
  echo "protobuf-c code in $out is stale: run 'make proto'" >&2
  diff -r "$scratch/target" "$out" | head -20 >&2
  exit 1
fi
rm -rf "$out/gemma" "$out/include"
cp -r "$scratch/target/." "$out/"
cp "$scratch/Messages.generated.swift" "$swift_out"
echo "generated into $out"
