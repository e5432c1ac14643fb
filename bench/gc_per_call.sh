#!/usr/bin/env bash
# What one kind of call costs the server's GC: a fresh server under `jac load` (a warm-up, then a measured run), with the
# allocated bytes, collections per generation and GC pause time per call from the server's own /metrics (System.Runtime),
# and its CPU per call from /proc. For A/B runs of GC settings and allocation changes (docs/benchmarks.md, "Large arrays
# of a call, pooled").
# Usage: bench/gc_per_call.sh [MODEL] [METHOD] [ROWS] [CALLERS] [SECONDS]   (defaults wide_classifier vjp 256 8 15)
#   SERVER: the server dll (default: this checkout's Release build); SERVER_ENV: variables for the server process only,
#   e.g. SERVER_ENV="DOTNET_GCLOHThreshold=0x2000000".
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-wide_classifier} method=${2:-vjp} rows=${3:-256} callers=${4:-8} seconds=${5:-15}
server=${SERVER:-src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll}
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port) metrics=$(free_port) work=$(mktemp -d)
# shellcheck disable=SC2086
env ${SERVER_ENV:-} dotnet "$server" --urls "http://127.0.0.1:$port" --Models:Root=tests/fixtures/models \
  --Logging:LogLevel:Default=Warning --Telemetry:MetricsUrl="http://127.0.0.1:$metrics" --Batching:MaxBatchSize=256 > /dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 240); do
  dotnet "$jac" models --target "127.0.0.1:$port" -m "$model" -o json 2>/dev/null | grep -q '"state": "READY"' && break
  sleep 0.5
done
load=(dotnet "$jac" load --target "http://127.0.0.1:$port" -M "$method" -m "$model" -b "$rows" -c "$callers" --no-progress)
"${load[@]}" -z 10s > /dev/null
gc() { curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^dotnet_gc_(collections_total|heap_total_allocated_bytes_total|pause_time_seconds_total)' || true; }
gc > "$work/before"; t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
"${load[@]}" -z "${seconds}s" -o json --out "$work/run.json" > /dev/null
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); gc > "$work/after"
python3 - "$work" "$t0" "$t1" "$(getconf CLK_TCK)" "$model $method, $rows rows, $callers callers, ${SERVER_ENV:-default settings}" <<'PY'
import json, re, sys
work, t0, t1, tck, label = sys.argv[1:]
run = json.load(open(f"{work}/run.json"))
calls = max(run["count"], 1)
def read(name):
    values = {}
    for line in open(f"{work}/{name}"):
        key, value = line.rsplit(" ", 1)
        gen = re.search(r'gc_heap_generation="(\w+)"', key)
        values[gen.group(1) if gen else key.split("{")[0]] = float(value)
    return values
before, after = read("before"), read("after")
per = {k: (after[k] - before.get(k, 0)) / calls for k in after}
cpu = (float(t1) - float(t0)) / float(tck) * 1e6 / calls
print(f"{label}: {run['rows_per_s']:.0f} rows/s, {calls} calls, server CPU/call {cpu:.0f} us, "
      f"allocated/call {per.get('dotnet_gc_heap_total_allocated_bytes_total', 0):.0f} B, "
      f"gen0/gen1/gen2 per call {per.get('gen0', 0):.4f}/{per.get('gen1', 0):.4f}/{per.get('gen2', 0):.4f}, "
      f"GC pause/call {per.get('dotnet_gc_pause_time_seconds_total', 0) * 1e6:.0f} us")
PY
