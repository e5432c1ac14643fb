#!/usr/bin/env bash
# Throughput and server CPU in 5 s windows over the first 30 s after a fresh server starts, under 64 closed-loop
# callers: how long tiered JIT takes to settle, with telemetry off and on. With OTLP=1 the server exports to a
# throw-away OTLP/HTTP sink (a few lines of Python) on loopback.
# Usage: bench/telemetry_warmup.sh NAME [server args...]   (after: dotnet build JacService.sln -c Release)
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
server=src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll
jac=src/Jac/bin/Release/net10.0/linux-x64/jac.dll
port=$((20000 + RANDOM % 20000))
out=$(mktemp -d)
python3 - $((port + 2)) <<'PY' &
import sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)  # an empty Export*ServiceResponse is zero bytes of protobuf
        self.send_header("Content-Type", "application/x-protobuf"); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
sink=$!
OTEL_EXPORTER_OTLP_ENDPOINT=${OTLP:+http://127.0.0.1:$((port + 2))} OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
  dotnet $server --urls http://127.0.0.1:$port --Models:Root=tests/fixtures/models --Logging:LogLevel:Default=Warning \
  --Telemetry:MetricsUrl=http://127.0.0.1:$((port + 1)) "$@" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid $sink 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf $out' EXIT
for _ in $(seq 1 100); do dotnet $jac models --target 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.3; done
dotnet $jac load --target 127.0.0.1:$port --method jacobian --model mlp_tanh -c 64 --duration 30s --no-progress -o json >$out/load.json 2>/dev/null &
load=$!
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
cpu=() previous=$(ticks)
for _ in 1 2 3 4 5 6; do sleep 5; now=$(ticks); cpu+=($((now - previous))); previous=$now; done
wait $load
python3 - "$name" $out/load.json "$(getconf CLK_TCK)" "${cpu[@]}" <<'PY'
import json, sys
name, hz, cpu = sys.argv[1], int(sys.argv[3]), [int(c) for c in sys.argv[4:]]
with open(sys.argv[2]) as f:
    report = json.load(f)
ok = [0] * 6
for point in report["timeline"]:
    ok[min(int(point["time_s"] // 5), 5)] += point["ok"]
print(f"| {name} | " + " | ".join(f"{n / 5:.0f}" for n in ok) + " | " + " | ".join(f"{c / hz / 5:.2f}" for c in cpu)
      + f" | {report['ok'] / report['elapsed_s']:.0f} |")
PY
