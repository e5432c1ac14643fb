#!/usr/bin/env bash
# Generates the Python stubs from the project's .proto into ./gen, as examples/python/generate.sh does (not committed:
# the .proto is the only source, so a contract change reaches this example the next time it is generated).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="${1:-$here/../../src/Protos}"
rm -rf "$here/gen"
mkdir -p "$here/gen"
protoc -I"$proto_root" --python_out="$here/gen" --grpc_out="$here/gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" jacservice/v1/jacservice.proto
echo "stubs: $here/gen/jacservice/v1/"
