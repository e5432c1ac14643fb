#!/usr/bin/env bash
# Server CPU per request at a fixed open-loop rate, with the given server settings: a steadier measure of
# telemetry's cost than saturated throughput on a shared 2-core machine.
# Usage: bench/telemetry_cpu.sh NAME RPS [server args...]   (after: dotnet build JacService.sln -c Release)
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 rps=$2; shift 2
server=src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
port=$((20000 + RANDOM % 20000))
dotnet $server --urls http://127.0.0.1:$port --Models:Root=tests/fixtures/models --Logging:LogLevel:Default=Warning \
  --Telemetry:MetricsUrl=http://127.0.0.1:$((port + 1)) "$@" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do dotnet $jac models --target 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.3; done
load() { dotnet $jac load --target 127.0.0.1:$port --method jacobian --model mlp_tanh --rps "$rps" --duration "$1" --no-progress -o json; }
load 15s >/dev/null 2>&1   # warm-up: tiered JIT settles only after ~10 s of load (docs/benchmarks.md), plans, buffers
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
before=$(ticks)
report=$(load 8s 2>/dev/null)
after=$(ticks)
echo "$report" | python3 -c "
import json, os, sys
r = json.load(sys.stdin)
hz = os.sysconf('SC_CLK_TCK')
print(f\"$name: {r['ok']} ok, server CPU {($after - $before) / hz * 1e6 / r['ok']:.0f} us/request, p50 {r['latency_ms']['p50']:.2f} ms\")"
