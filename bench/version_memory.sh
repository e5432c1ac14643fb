#!/usr/bin/env bash
# What each model version costs a running server: a live repository that starts empty gets MODEL as a new model N times,
# one after another (each READY, warm-up included, before the next), and the server's resident size is read after each;
# then all but the first are removed, and the resident size is read once they are freed.
# Each checkout in turn, so two builds are compared on the same machine in one run.
# Usage: bench/version_memory.sh MODEL.onnx N CHECKOUT... [-- SERVER ARGS]
#   each checkout built with `dotnet build src/Server -c Release`; jac comes from this checkout's build.
#   A model large enough to see: /usr/bin/python3 bench/big_mlp.py /tmp/big_mlp.onnx
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "$1"); n=$2; shift 2
checkouts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do checkouts+=("$(cd "$1" && pwd)"); shift; done
[ $# -gt 0 ] && shift
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for checkout in "${checkouts[@]}"; do
  repo=$(mktemp -d); port=$(free_port)
  dotnet "$checkout/src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll" --urls "http://127.0.0.1:$port" \
    --Models:Root="$repo" --Models:PollSeconds=0.5 --Logging:LogLevel:Default=Warning "$@" > /dev/null 2>&1 &
  server=$!
  line="$checkout:"
  for k in $(seq 1 "$n"); do
    # Copied under a name the scanner skips, then renamed, so that no half-written file is loaded.
    mkdir -p "$repo/m$k/tmp" && cp "$model" "$repo/m$k/tmp/model.onnx" && mv "$repo/m$k/tmp" "$repo/m$k/1"
    for _ in $(seq 1 600); do
      dotnet "$jac" models -t "127.0.0.1:$port" -m "m$k" -o json 2>/dev/null | grep -q '"state": "READY"' && break
      sleep 1
    done
    line="$line $(awk '/VmRSS/{printf "%d", $2/1024}' "/proc/$server/status")"
  done
  for k in $(seq 2 "$n"); do rm -rf "$repo/m$k"; done
  for k in $(seq 2 "$n"); do
    for _ in $(seq 1 600); do
      dotnet "$jac" models -t "127.0.0.1:$port" -m "m$k" -o json 2>/dev/null | grep -q '"state": "READY"' || break
      sleep 1
    done
  done
  sleep 3 # the last version is freed after its listing goes
  echo "$line MiB resident after each version; $(awk '/VmRSS/{printf "%d", $2/1024}' "/proc/$server/status") MiB once all but the first are freed"
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$repo"
done
