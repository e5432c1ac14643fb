#!/usr/bin/env bash
# Soak (issue 15): a fresh server on loopback with the fixture models; its capacity for mixed calls (Predict, Jacobian,
# BatchJacobian, Jvp, Vjp of mlp_tanh; BatchHessian, BatchLaplacian of pinn; through the client library) measured with
# 64 closed-loop callers, then the same mix open loop at 80 % of it for the soak's length, with the server's resident
# memory, threads, open file descriptors and GC heap sampled every 10 s into a CSV (bench/JacService.Bench/SoakBench.cs).
# Usage: bench/soak.sh [seconds] [csv file] [more SoakBench flags, e.g. --rps 800]   (defaults 1800 and bench/results/soak.csv)
# A short run checks the script itself: bench/soak.sh 60 /tmp/soak.csv --capacity-seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1800}
csv=${2:-bench/results/soak.csv}
mkdir -p "$(dirname "$csv")"
dotnet build bench/JacService.Bench -c Release -v q -nologo >/dev/null
dotnet build src/Server -c Release -v q -nologo >/dev/null
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet bench/JacService.Bench/bin/Release/net10.0/linux-x64/JacService.Bench.dll --soak --seconds "$seconds" --csv "$csv" "${@:3}"
echo "# $(date -u +%FT%TZ) load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
