#!/usr/bin/env bash
# Issue 13's stream bar with jac against one server: 64 single-sample callers, each on its own JacobianStream with one
# sample in flight, against the same work sent ready-made as BatchJacobian calls of 64 rows from 1 and from 2 callers.
# The three runs alternate, ROUNDS times, each SECONDS long after a warm-up; each reports rows/s, p50, the mean batch,
# and the CPU per row of the server (/proc/PID/stat) and of jac. At the end: medians, and the stream's rate over the
# best pre-batched rate (the bar: at least 70 %).
# SERVER_CPUS and CLIENT_CPUS (taskset lists, e.g. 0-7 and 8-15) pin the server and jac apart, for a machine with cores
# enough to give the client its own; unset, they share the machine as in `JacService.Bench --batching`.
# Usage: bench/stream_bar.sh [ROUNDS] [SECONDS]   (after `dotnet build JacService.sln -c Release`)
#   Environment: SERVER_CMD and JAC_CMD (default: the Release builds under dotnet; the published binaries on the GPU
#   machine), SERVER_ARGS (added to the server's), MODEL (mlp_tanh), WARMUP (seconds of streams first, 15).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} seconds=${2:-10}
model=${MODEL:-mlp_tanh}
read -r -a server_cmd <<<"${SERVER_CMD:-dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll}"
read -r -a jac_cmd <<<"${JAC_CMD:-dotnet src/Jac/bin/Release/net10.0/linux-x64/jac.dll}"
read -r -a server_args <<<"${SERVER_ARGS:-}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bench/pinned.py "${SERVER_CPUS:-}" "${server_cmd[@]}" --urls "http://127.0.0.1:$port" --Models:Root=tests/fixtures/models \
  --Logging:LogLevel:Default=Warning --Telemetry:MetricsUrl= "${server_args[@]}" > /dev/null 2>&1 &
server=$!
runs=$(mktemp -d)
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$runs"' EXIT
jac() { bench/pinned.py "${CLIENT_CPUS:-}" "${jac_cmd[@]}" "$@"; }
for _ in $(seq 1 240); do
  jac models --target "127.0.0.1:$port" -m "$model" -o json 2>/dev/null | grep -q '"state": "READY"' && break
  kill -0 $server 2>/dev/null || { echo "the server exited" >&2; exit 1; }
  sleep 0.5
done

declare -A load=([stream]="-M jacobian-stream -b 1 -c 64" [prebatched-1]="-M batch-jacobian -b 64 -c 1"
  [prebatched-2]="-M batch-jacobian -b 64 -c 2")
kinds=(stream prebatched-1 prebatched-2)
run() { # KIND SECONDS [OUT]
  # shellcheck disable=SC2086
  jac load --target "http://127.0.0.1:$port" ${load[$1]} -m "$model" -z "${2}s" --no-progress -o json --out "${3:-/dev/null}" > /dev/null
}
echo "# bench/stream_bar.sh $rounds $seconds: $model, server CPUs ${SERVER_CPUS:-all}, client CPUs ${CLIENT_CPUS:-all}, $(nproc) CPUs; $(uptime)"
run stream "${WARMUP:-15}"
run prebatched-1 3
run prebatched-2 3
for round in $(seq 1 "$rounds"); do
  for kind in "${kinds[@]}"; do
    before=$(awk '{print $14 + $15}' /proc/$server/stat)
    run "$kind" "$seconds" "$runs/$kind-$round.json"
    after=$(awk '{print $14 + $15}' /proc/$server/stat)
    python3 - "$runs/$kind-$round.json" "$kind" "$round" $((after - before)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, kind, round_, ticks, tck = sys.argv[1:]
r = json.load(open(path))
rows = r["rows_per_s"] * r["elapsed_s"]
r["server_cpu_us_per_row"] = int(ticks) / int(tck) * 1e6 / rows
json.dump(r, open(path, "w"))
print(f"{kind} round {round_}: {r['rows_per_s']:.0f} rows/s, p50 {r['latency_ms']['p50']} ms, mean batch "
      f"{r['server_batching']['mean_batch']:.1f}, server CPU {r['server_cpu_us_per_row']:.1f} us/row, "
      f"jac CPU {r['client_cpu_s'] * 1e6 / rows:.1f} us/row, {r['errors']} errors")
PY
  done
done
python3 - "$runs" "$rounds" "${kinds[@]}" <<'PY'
import json, statistics, sys
runs, rounds, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
median = {k: statistics.median(json.load(open(f"{runs}/{k}-{n}.json"))["rows_per_s"] for n in range(1, rounds + 1)) for k in kinds}
for k in kinds:
    print(f"median {k}: {median[k]:.0f} rows/s")
best = max(median["prebatched-1"], median["prebatched-2"])
print(f"stream / best pre-batched: {median['stream'] / best:.2f} (bar 0.70)")
PY
