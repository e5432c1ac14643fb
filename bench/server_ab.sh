#!/usr/bin/env bash
# Two server builds, alternately (A B, B A, ...), under the same jac load: rows/s, the server process's CPU and page faults per call,
# so that a change's effect is read against the drift of a shared machine rather than against a run an hour earlier.
# Usage: bench/server_ab.sh A_CHECKOUT B_CHECKOUT MODEL [ROUNDS] [SECONDS]
#   each checkout built with `dotnet build src/Server -c Release`; jac comes from this checkout's build.
#   Environment: BATCH (rows per request, 256), CONCURRENCY (callers, 2), METHOD (jac load -M, batch-jacobian), MODE (jac load
#   --mode for Jacobians: auto, forward or reverse; auto);
#   A_ENV and B_ENV, variables for each server ("DOTNET_GCgen0size=0x400000"), to compare runtime settings of one build;
#   MODELS_ROOT, the repository both serve (tests/fixtures/models; one holding MODEL alone keeps the others' warm-up,
#   which goes on after MODEL is READY, out of the measured windows).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); model=$3; rounds=${4:-3}; seconds=${5:-10}
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run() {
  local label=$1 checkout=$2 vars=$3 port metrics server calls t0 t1
  port=$(free_port); metrics=$(free_port)
  # shellcheck disable=SC2086
  env $vars dotnet "$checkout/src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll" --urls "http://127.0.0.1:$port" \
    --Models:Root="${MODELS_ROOT:-tests/fixtures/models}" --Logging:LogLevel:Default=Warning --Telemetry:MetricsUrl="http://127.0.0.1:$metrics" \
    --Batching:MaxBatchSize=256 > /dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 120); do sleep 0.5; (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; done
  # The port opens before the models have loaded; jac load refuses a version that is not READY yet.
  for _ in $(seq 1 240); do
    dotnet "$jac" models --target "127.0.0.1:$port" -m "$model" -o json 2>/dev/null | grep -q '"state": "READY"' && break
    sleep 0.5
  done
  local load=(dotnet "$jac" load --target "http://127.0.0.1:$port" -M "${METHOD:-batch-jacobian}" -m "$model" -b "${BATCH:-256}"
    -c "${CONCURRENCY:-2}" --mode "${MODE:-auto}" --no-progress)
  "${load[@]}" -z 5s > /dev/null 2>&1   # warm-up: plans, AUTO's timing, tiered JIT
  read -r t0 f0 < <(awk '{print $14 + $15, $10}' "/proc/$server/stat")
  "${load[@]}" -z "${seconds}s" -o json --out /tmp/server_ab_$$.json > /dev/null 2>&1
  read -r t1 f1 < <(awk '{print $14 + $15, $10}' "/proc/$server/stat")
  kill "$server"; wait "$server" 2>/dev/null || true
  python3 - "$label" "$model" "$t0" "$t1" "$(getconf CLK_TCK)" /tmp/server_ab_$$.json "$f0" "$f1" <<'PY'
import json, sys
label, model, t0, t1, tck, path, f0, f1 = sys.argv[1:]
run = json.load(open(path))
calls = max(run["count"], 1)
cpu_us = (float(t1) - float(t0)) / float(tck) * 1e6 / calls
faults = (int(f1) - int(f0)) / calls
print(f"{label} {model}: {run['rows_per_s']:.0f} rows/s, {run['count']} calls, server CPU/call {cpu_us:.0f} us, "
      f"page faults/call {faults:.0f}, p50 {run['latency_ms']['p50']} ms")
PY
}

# A B, B A, A B, ...: a machine whose rate drifts over the run would otherwise favour whichever build goes first in
# every pair (seen 2026-12-04: one build ran second in five pairs while the rate fell from 81k to 72k rows/s).
for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then
    run A "$a" "${A_ENV:-}"; run B "$b" "${B_ENV:-}"
  else
    run B "$b" "${B_ENV:-}"; run A "$a" "${A_ENV:-}"
  fi
done
rm -f /tmp/server_ab_$$.json
