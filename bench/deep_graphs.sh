#!/usr/bin/env bash
# Deep graphs on server builds in turn (bench/deep_graphs.py): seconds from start until every model is READY (Predict's
# ONNX Runtime sessions are prepared at load), then the first and later calls of each kind.
# Usage: bench/deep_graphs.sh DIR CHECKOUT [CHECKOUT ...]
#   DIR from `/usr/bin/python3 bench/deep_graphs.py export DIR`; each checkout built with `dotnet build src/Server -c Release`.
#   Environment: STEPS (150,300,600,1200, the models exported), SERVER_ARGS (more server settings; by default the warm-up is
#   off, so that the first calls pay what a warm-up would, and Engine:MaxCompiledNodes is 100000, so that every graph compiles).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cd "$1" && pwd); shift
steps=${STEPS:-150,300,600,1200}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export PYTHONPATH=clients/python/build/lib${PYTHONPATH:+:$PYTHONPATH}

for checkout in "$@"; do
  port=$(free_port)
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  dotnet "$checkout/src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll" --urls "http://127.0.0.1:$port" \
    --Models:Root="$dir" --Models:Warmup=false --Engine:MaxCompiledNodes=100000 --Telemetry:MetricsUrl= \
    --Logging:LogLevel:Default=Warning ${SERVER_ARGS:-} > /dev/null 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  /usr/bin/python3 - "127.0.0.1:$port" "$steps" <<'PY'
import sys, jacservice
target, steps = sys.argv[1], sys.argv[2].split(",")
client = jacservice.Client(target, timeout=600)
for n in steps:
    client.wait_until_ready(f"deep{n}", timeout=600)
PY
  ready=$(date +%s.%N)
  echo "== $checkout: every model READY $(python3 -c "print(f'{$ready - $start:.1f}')") s after the start"
  /usr/bin/python3 bench/deep_graphs.py first --target "127.0.0.1:$port" --steps "$steps"
  echo "server resident: $(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$server/status") MiB"
  kill "$server"; wait "$server" 2>/dev/null || true
done
