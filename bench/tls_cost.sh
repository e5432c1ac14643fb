#!/usr/bin/env bash
# TLS cost per call (issue 15): one server serving the same models on a plaintext (h2c) endpoint and on a TLS one
# (Kestrel:Endpoints, an ECDSA P-256 certificate openssl makes for the run), loaded in turn by `jac load` with 64
# callers sending single-sample Jacobians of mlp_tanh. Both endpoints are warmed up first (tiered JIT settles in
# ~10 s under load), then the runs alternate plaintext/TLS so machine noise hits both alike. Each run reports jac's
# summary plus the server's CPU per call from /proc/PID/stat and jac's own (client and server share the machine's cores).
# Usage: bench/tls_cost.sh [seconds per run] [repetitions]   (defaults 20 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
reps=${2:-3}
plain=50998
tls=50997
metrics=59998
work=$(mktemp -d)

dotnet build src/Server -c Release -v q -nologo >/dev/null
dotnet build src/Jac -c Release -v q -nologo >/dev/null

# A throw-away CA and a server certificate for 127.0.0.1 (never committed).
bench/bench_certs.sh "$work"

dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll --Models:Root=tests/fixtures/models \
  --Logging:LogLevel:Default=Warning --Telemetry:MetricsUrl=http://127.0.0.1:$metrics \
  --Kestrel:Endpoints:Plain:Url=http://127.0.0.1:$plain \
  --Kestrel:Endpoints:Tls:Url=https://127.0.0.1:$tls \
  --Kestrel:Endpoints:Tls:Certificate:Path="$work/server.crt" --Kestrel:Endpoints:Tls:Certificate:KeyPath="$work/server.key" \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
jac() { dotnet src/Jac/bin/Release/net10.0/linux-x64/jac.dll "$@"; }
target() { if [ "$1" = tls ]; then echo "-t 127.0.0.1:$tls --ca $work/ca.crt"; else echo "-t 127.0.0.1:$plain"; fi; }
for _ in $(seq 300); do jac models -t "127.0.0.1:$plain" -m mlp_tanh 2>/dev/null | grep -q READY && break; sleep 0.2; done
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; } # utime + stime, in clock ticks
tick=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in plain tls; do
  # shellcheck disable=SC2046
  jac load $(target $kind) -M jacobian -m mlp_tanh -c 64 -z "${warmup:-15}s" --no-progress >/dev/null
done
for rep in $(seq "$reps"); do
  for kind in plain tls; do
    before=$(cpu)
    # shellcheck disable=SC2046
    out=$(jac load $(target $kind) -M jacobian -m mlp_tanh -c 64 -z "${seconds}s" --no-progress -o json)
    after=$(cpu)
    summary=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["count"], r["ok"], r["errors"], round(r["rps"],1), r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["client_cpu_us_per_call"])' <<<"$out")
    read -r count ok errors rps p50 p99 client_us <<<"$summary"
    server_us=$(python3 -c "print(round(($after - $before) / $tick / $count * 1e6, 1))")
    echo "run=$rep kind=$kind calls=$count ok=$ok errors=$errors rps=$rps p50_ms=$p50 p99_ms=$p99 server_cpu_us_per_call=$server_us client_cpu_us_per_call=$client_us load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
