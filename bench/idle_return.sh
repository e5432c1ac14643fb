#!/usr/bin/env bash
# Engine:ReturnMemoryWhenIdleSeconds on large models: one server over a repository of torchvision classifiers (exported by
# `bench/vision_peer.py export DIR`), default settings. Prints the resident size once every version is READY and after an
# idle spell, then runs `vision_peer.py first` (the first three Vjp and Predict calls of each model at each batch size, with
# the resident size before and after), waits out another idle spell, and runs it again: the resident size the calls
# leave, what the idle return gives back, and what the calls after a return cost. Ends with the server's log lines of
# each return.
# Usage: bench/idle_return.sh DIR MODELS [BATCHES] [WAIT_SECONDS]   e.g. bench/idle_return.sh /tmp/vision resnet18,densenet121 1,8 45
#   DIR holds one folder per model (more than MODELS is fine: all of them load); WAIT_SECONDS (45) must exceed the
#   setting (30 s by default) plus its check period. Needs python3-torchvision and the Python client (vision_peer.py).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$1 models=$2 batches=${3:-1,8} wait=${4:-45}
count=$(find "$root" -mindepth 1 -maxdepth 1 -type d | wc -l)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll --urls "http://127.0.0.1:$port" --Models:Root="$root" \
  --Telemetry:MetricsUrl= --Logging:LogLevel:Default=Warning \
  --Logging:LogLevel:JacService.Server.Execution.IdleMemoryReturn=Information > "$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
resident() { awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$server/status"; }
start=$(date +%s)
until [ "$(dotnet src/Jac/bin/Release/net10.0/linux-x64/jac.dll models --target "127.0.0.1:$port" -o json 2>/dev/null | grep -c '"state": "READY"')" = "$count" ]; do
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
echo "$count versions READY after $(( $(date +%s) - start )) s: resident $(resident)"
first() { PYTHONPATH=clients/python/build/lib /usr/bin/python3 bench/vision_peer.py first --target "127.0.0.1:$port" --models "$models" --batch "$batches" --pid $server; }
sleep "$wait"; echo "after ${wait} s idle: resident $(resident)"
first
sleep "$wait"; echo "after ${wait} s idle: resident $(resident)"
first
grep -h "No batch for" "$log" | sed 's/^ *//'
