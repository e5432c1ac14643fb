#!/usr/bin/env bash
# Load generator overhead: what `jac load` reaches against trivial RPCs (health, GetModel) and, for scale, against
# the service's real work (single-sample Jacobians), on the same machine in the same session, repeated and
# interleaved so machine noise hits every row alike. Prints one CSV row per run (jac's --output csv).
# Usage: bench/jac_overhead.sh [seconds per run] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
reps=${2:-3}
port=50999

dotnet build src/Server -c Release -v q -nologo >/dev/null
dotnet build src/Jac -c Release -v q -nologo >/dev/null
dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll --urls "http://127.0.0.1:$port" \
  --Models:Root=tests/fixtures/models --Logging:LogLevel:Default=Warning >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
jac() { dotnet src/Jac/bin/Release/net10.0/linux-x64/jac.dll "$@"; }
for _ in $(seq 50); do jac models -t "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.2; done

runs=(
  "-M health -c 64"
  "-M get-model -m mlp_tanh -c 256"
  "-M health --rps 8000 -c 256"
  "-M jacobian -m mlp_tanh -c 64"
)
header=1
for rep in $(seq "$reps"); do
  for args in "${runs[@]}"; do
    # shellcheck disable=SC2086
    out=$(jac load -t "127.0.0.1:$port" $args -z "${seconds}s" --warmup 1s -o csv)
    if [ $header = 1 ]; then echo "rep,load_avg,$(head -1 <<<"$out")"; header=0; fi
    echo "$rep,$(cut -d' ' -f1 /proc/loadavg),$(tail -1 <<<"$out")"
  done
done
