#!/usr/bin/env bash
# Cost of authentication per call: single-sample Jacobians on mlp_tanh from 64 closed-loop callers against three
# servers started side by side, anonymous plaintext (no Auth settings), JWT bearer (HS256, the section `dotnet user-jwts`
# writes) and an API key, each warmed up for 15 s, then measured in alternating 20 s runs (ROUNDS of each).
# Usage: bench/auth_cost.sh [ROUNDS] [OUTDIR]   (after: dotnet build JacService.sln -c Release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} out=${2:-bench/results}
server=src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
stamp=$(date -u +%Y-%m-%d)
mkdir -p "$out"

# A random HS256 key as user-jwts makes one, a token with the inference scope signed with it, and an API key.
read -r key token apikey apihash < <(/usr/bin/python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = os.urandom(32)
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
claims = {"iss": "dotnet-user-jwts", "aud": "jacservice-bench", "sub": "bench", "scope": "jacservice.inference", "nbf": now - 60, "iat": now - 60, "exp": now + 3600}
body = b64(json.dumps(claims).encode())
sig = b64(hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest())
apikey = os.urandom(32).hex()
print(base64.b64encode(key).decode(), f"{header}.{body}.{sig}", apikey, hashlib.sha256(apikey.encode()).hexdigest())
PY
)

pids=()
declare -A spid
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
start() { # NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  dotnet $server --urls http://127.0.0.1:$port --Models:Root=tests/fixtures/models --Logging:LogLevel:Default=Warning \
    --Telemetry:MetricsUrl= "$@" >/dev/null 2>&1 &
  pids+=($!)
  spid[$name]=$!
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
base=$((20000 + RANDOM % 20000))
declare -A port=([anonymous]=$base [jwt]=$((base + 1)) [apikey]=$((base + 2)))
declare -A creds=([anonymous]="" [jwt]="--token $token" [apikey]="--api-key $apikey")
start anonymous ${port[anonymous]}
start jwt ${port[jwt]} --Authentication:Schemes:Bearer:ValidIssuer=dotnet-user-jwts --Authentication:Schemes:Bearer:ValidAudiences:0=jacservice-bench \
  --Authentication:Schemes:Bearer:SigningKeys:0:Issuer=dotnet-user-jwts --Authentication:Schemes:Bearer:SigningKeys:0:Value=$key
start apikey ${port[apikey]} --Auth:ApiKeys:0:Name=bench --Auth:ApiKeys:0:Hash=$apihash --Auth:ApiKeys:0:Scopes:0=jacservice.inference

modes=(anonymous jwt apikey)
for mode in "${modes[@]}"; do
  # shellcheck disable=SC2086
  for _ in $(seq 1 100); do dotnet $jac models -t 127.0.0.1:${port[$mode]} ${creds[$mode]} >/dev/null 2>&1 && break; sleep 0.5; done
  # shellcheck disable=SC2086
  dotnet $jac load -t 127.0.0.1:${port[$mode]} ${creds[$mode]} -M jacobian -m mlp_tanh -c 64 -z 15s --no-progress >/dev/null
done
echo "load before the runs: $(uptime)"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    file="$out/auth-$stamp-$mode-$round.txt" json=$(mktemp)
    before=$(ticks "${spid[$mode]}")
    { echo "# $mode, round $round: jac load -M jacobian -m mlp_tanh -c 64 -z 20s; $(uptime)"
      # shellcheck disable=SC2086
      dotnet $jac load -t 127.0.0.1:${port[$mode]} ${creds[$mode]} -M jacobian -m mlp_tanh -c 64 -z 20s --no-progress --out "$json"; } > "$file"
    after=$(ticks "${spid[$mode]}")
    # Server CPU (all its threads) over the run per answered call: steadier than throughput on a shared machine.
    /usr/bin/python3 -c "
import json, os
r = json.load(open('$json'))
print(f\"# {r['ok']} ok in 20 s: {r['ok'] / 20:.0f}/s, server CPU {($after - $before) / os.sysconf('SC_CLK_TCK') * 1e6 / r['ok']:.0f} us/request\")" >> "$file"
    rm -f "$json"
    echo "$mode round $round: $(tail -1 "$file")"
  done
done
