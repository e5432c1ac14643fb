#!/usr/bin/env bash
# Configures and builds ./build/jacclient with CMake, generating the C++ stubs from the project's .proto on the way.
# ./build.sh OTHER_PROTO_ROOT uses another copy of the .proto (a folder holding jacservice/v1/jacservice.proto).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$(cd "${1:-$here/../../src/Protos}" && pwd)"
cmake -S "$here" -B "$here/build" -DPROTO_ROOT="$proto_root" > "$here/build.log" 2>&1 || { cat "$here/build.log" >&2; exit 1; }
cmake --build "$here/build" -j "$(nproc)" >> "$here/build.log" 2>&1 || { cat "$here/build.log" >&2; exit 1; }
echo "built $here/build/jacclient"
