#!/usr/bin/env bash
# Cost of authentication per call: single-sample Jacobians on mlp_tanh from 64 closed-loop callers against four
# servers started side by side, anonymous plaintext (no Auth settings), JWT bearer (HS256, the section `dotnet user-jwts`
# writes), an API key, and JWT bearer over TLS (Kestrel:Endpoints with an ECDSA P-256 certificate openssl makes for the
# run: the cost bar of issue 15 is TLS+JWT against anonymous plaintext), and on request jwtnocache (JWT bearer validating
# every call: Auth:TokenCacheSeconds=0), each warmed up for 15 s, then measured in
# alternating runs of 20 s (ROUNDS of each); at the end the medians of each mode.
# Usage: bench/auth_cost.sh [ROUNDS] [OUTDIR] [MODES]   (after: dotnet build JacService.sln -c Release; MODES default
# "anonymous jwt apikey tlsjwt")
# Environment, for the GPU machine's many cores (scripts/device/check.sh): SERVER_CMD and JAC_CMD (default: the Release
# builds under dotnet), SERVER_ARGS (added to every server's), SERVER_CPUS and CLIENT_CPUS (taskset lists: the servers
# and jac pinned apart, bench/pinned.py), TLS_DIR (a ca.crt, server.crt and server.key made beforehand, for a machine
# without openssl), SECONDS_PER_RUN (20) and WARMUP (15). LOAD replaces the call (default "-M jacobian -m mlp_tanh",
# the cheapest derivative call, where authentication weighs most; e.g. "-M batch-jacobian -b 16 -m mlp_tanh").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} out=${2:-bench/results}
read -r -a modes <<<"${3:-anonymous jwt apikey tlsjwt}"
read -r -a server_cmd <<<"${SERVER_CMD:-dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll}"
read -r -a jac_cmd <<<"${JAC_CMD:-dotnet src/Jac/bin/Release/net10.0/linux-x64/jac.dll}"
read -r -a server_args <<<"${SERVER_ARGS:-}"
seconds=${SECONDS_PER_RUN:-20} warmup=${WARMUP:-15}
read -r -a call <<<"${LOAD:--M jacobian -m mlp_tanh}"
model=mlp_tanh
for ((i = 0; i + 1 < ${#call[@]}; i++)); do [[ ${call[i]} == -m ]] && model=${call[i + 1]}; done
jac() { bench/pinned.py "${CLIENT_CPUS:-}" "${jac_cmd[@]}" "$@"; }
stamp=$(date -u +%Y-%m-%dT%H%M)  # runs of one day do not overwrite each other
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

# A throw-away CA and a server certificate for 127.0.0.1 (never committed), or those in TLS_DIR.
work=$(mktemp -d)
if [[ -n "${TLS_DIR:-}" ]]; then cp "$TLS_DIR"/{ca.crt,server.crt,server.key} "$work/"; else bench/bench_certs.sh "$work"; fi

pids=()
declare -A spid
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start() { # NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  bench/pinned.py "${SERVER_CPUS:-}" "${server_cmd[@]}" --urls http://127.0.0.1:$port --Models:Root=tests/fixtures/models \
    --Logging:LogLevel:Default=Warning --Telemetry:MetricsUrl= "${server_args[@]}" "$@" >/dev/null 2>&1 &
  pids+=($!)
  spid[$name]=$!
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
base=$((20000 + RANDOM % 20000))
declare -A port=([anonymous]=$base [jwt]=$((base + 1)) [apikey]=$((base + 2)) [tlsjwt]=$((base + 3)) [jwtnocache]=$((base + 4)))
# jac makes a host:port target https:// when --ca is given.
declare -A creds=([anonymous]="" [jwt]="--token $token" [apikey]="--api-key $apikey" [tlsjwt]="--ca $work/ca.crt --token $token" [jwtnocache]="--token $token")
jwt=(--Authentication:Schemes:Bearer:ValidIssuer=dotnet-user-jwts --Authentication:Schemes:Bearer:ValidAudiences:0=jacservice-bench
  --Authentication:Schemes:Bearer:SigningKeys:0:Issuer=dotnet-user-jwts --Authentication:Schemes:Bearer:SigningKeys:0:Value=$key)
for mode in "${modes[@]}"; do
  case $mode in
    anonymous) start anonymous ${port[anonymous]} ;;
    jwt) start jwt ${port[jwt]} "${jwt[@]}" ;;
    jwtnocache) start jwtnocache ${port[jwtnocache]} "${jwt[@]}" --Auth:TokenCacheSeconds=0 ;;
    apikey) start apikey ${port[apikey]} --Auth:ApiKeys:0:Name=bench --Auth:ApiKeys:0:Hash=$apihash --Auth:ApiKeys:0:Scopes:0=jacservice.inference ;;
    tlsjwt) start tlsjwt ${port[tlsjwt]} "${jwt[@]}" --Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:${port[tlsjwt]} \
      --Kestrel:Endpoints:Grpc:Certificate:Path="$work/server.crt" --Kestrel:Endpoints:Grpc:Certificate:KeyPath="$work/server.key" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done

for mode in "${modes[@]}"; do
  # shellcheck disable=SC2086
  for _ in $(seq 1 240); do
    jac models -t 127.0.0.1:${port[$mode]} ${creds[$mode]} -m "$model" -o json 2>/dev/null | grep -q '"state": "READY"' && break
    sleep 0.5
  done
  # shellcheck disable=SC2086
  jac load -t 127.0.0.1:${port[$mode]} ${creds[$mode]} "${call[@]}" -c 64 -z ${warmup}s --no-progress >/dev/null
done
echo "load before the runs: $(uptime)"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    file="$out/auth-$stamp-$mode-$round.txt" json=$(mktemp)
    before=$(ticks "${spid[$mode]}")
    { echo "# $mode, round $round: jac load ${call[*]} -c 64 -z ${seconds}s; $(uptime)"
      # shellcheck disable=SC2086
      jac load -t 127.0.0.1:${port[$mode]} ${creds[$mode]} "${call[@]}" -c 64 -z ${seconds}s --no-progress --out "$json"; } > "$file"
    after=$(ticks "${spid[$mode]}")
    # Server CPU (all its threads) over the run per answered call: steadier than throughput on a shared machine.
    /usr/bin/python3 -c "
import json, os
r = json.load(open('$json'))
print(f\"# {r['ok']} ok in $seconds s: {r['ok'] / $seconds:.0f}/s, server CPU {($after - $before) / os.sysconf('SC_CLK_TCK') * 1e6 / r['ok']:.0f} us/request\")" >> "$file"
    rm -f "$json"
    echo "$mode round $round: $(tail -1 "$file")"
  done
done

# Medians over the rounds, per mode, with the change against anonymous plaintext.
/usr/bin/python3 - "$out" "$stamp" "${modes[@]}" <<'PY'
import re, statistics, sys
out, stamp, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
med = {}
for mode in modes:
    runs = []
    for n in range(1, 1000):
        try:
            last = open(f"{out}/auth-{stamp}-{mode}-{n}.txt").read().strip().splitlines()[-1]
        except FileNotFoundError:
            break
        m = re.search(r"(\d+)/s, server CPU (\d+) us", last)
        runs.append((int(m.group(1)), int(m.group(2))))
    med[mode] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
base = med.get("anonymous")
for mode, (rps, cpu) in med.items():
    change = f" ({(rps / base[0] - 1) * 100:+.1f} % calls/s, {cpu - base[1]:+.0f} us CPU against anonymous)" if base and mode != "anonymous" else ""
    print(f"median {mode}: {rps:.0f} calls/s, server CPU {cpu:.0f} us/call{change}")
PY
