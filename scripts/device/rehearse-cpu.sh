#!/usr/bin/env bash
# Rehearses on a CPU machine what the device check does with the pack (scripts/device/pack.sh): unpack app.tar.zst;
# supply libtorch from outside the app folder (here the NuGet package's CPU libtorch, standing in for the GPU machine's
# torch/lib) and libLibTorchSharp (here the build's, standing in for the one built there); start the server from the
# unpacked folder; and check through the unpacked jac that every fixture model is READY and answers BatchJacobian.
# Usage: scripts/device/rehearse-cpu.sh PACK_DIR   (after dotnet build JacService.sln -c Release)
set -euo pipefail
cd "$(dirname "$0")/../.."
pack=$(cd "$1" && pwd)
work=$(mktemp -d)
server=
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

zstd -d -q -c "$pack/app.tar.zst" | tar -C "$work" -xf -
mkdir "$work/torchlib"
cp ~/.nuget/packages/libtorch-cpu-linux-x64/*/runtimes/linux-x64/native/* "$work/torchlib/"
cp src/Server/bin/Release/net10.0/linux-x64/libLibTorchSharp.so "$work/app/"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LD_LIBRARY_PATH="$work/torchlib" "$work/app/JacService.Server" --urls "http://127.0.0.1:$port" \
  --Models:Root="$PWD/tests/fixtures/models" --Telemetry:MetricsUrl= > "$work/server.log" 2>&1 &
server=$!
jac=("$work/app/jac")
for _ in $(seq 1 120); do
  "${jac[@]}" models --target "127.0.0.1:$port" > "$work/models.txt" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; echo "the server exited" >&2; exit 1; }
  sleep 1
done
grep -m1 "Tensors live on" "$work/server.log"
failed=0
# The fixtures with functorch references; wrt is the first input the reference differentiates.
for reference in tests/fixtures/reference/*.json; do
  model=$(basename "$reference" .json)
  wrt=$(python3 -c 'import json, sys; print(next(iter(json.load(open(sys.argv[1]))["jacobians"])))' "$reference")
  if ! "${jac[@]}" load --target "127.0.0.1:$port" -M batch-jacobian -m "$model" --wrt "$wrt" -b 4 -n 20 --no-progress > "$work/load.txt" 2>&1; then
    echo "$model: jac load failed"; cat "$work/load.txt"; failed=1; continue
  fi
  grep -q "20 ok, 0 errors" "$work/load.txt" && echo "$model: 20 BatchJacobian calls ok" || { echo "$model: errors"; grep -m3 "│" "$work/load.txt"; failed=1; }
done
exit $failed
