#!/usr/bin/env bash
# A model's load time, warm-up time (the server's "Warmed up MODEL version 1 in N ms") and the server's resident peak from
# two builds, alternating fresh servers.
# Usage: bench/warmup_ab.sh A_CHECKOUT B_CHECKOUT MODELS_ROOT MODEL [ROUNDS]   (each checkout built: dotnet build src/Server -c Release)
#   e.g. /usr/bin/python3 bench/big_mlp.py /tmp/big/big_mlp/1/model.onnx 64 4096 3 (a 200 MB MLP), then
#        bench/warmup_ab.sh /work/ab-a . /tmp/big big_mlp 3
set -euo pipefail
a=$1 b=$2 root=$3 model=$4 rounds=${5:-3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    dir=$([ "$side" = A ] && echo "$a" || echo "$b")
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dotnet "$dir/src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll" --Models:Root="$root" \
      --urls "http://127.0.0.1:$port" --Telemetry:MetricsUrl= "--Logging:Console:TimestampFormat=HH:mm:ss.fff " > "$log" 2>&1 &
    server=$!
    for _ in $(seq 1 600); do grep -q "Repository loaded" "$log" && break; sleep 0.5; done
    # Loading: from the repository's scan to the version's "Loaded" line (the timestamp is on the line before each message).
    loaded=$(awk '/^[0-9:.]+ / { t = $1 } /Found [0-9]+ model versions/ { found = t } /Loaded '"$model"' version/ { split(found, a, ":"); split(t, b, ":");
      printf "%.0f", ((b[1] - a[1]) * 3600 + (b[2] - a[2]) * 60 + (b[3] - a[3])) * 1000 }' "$log")
    echo "$side round $round: loaded in ${loaded:-?} ms, $(grep -o "Warmed up $model version [0-9]* in [0-9]* ms" "$log" || echo 'no warm-up line'), resident peak $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' /proc/$server/status)"
    kill $server; wait $server 2>/dev/null || true
  done
done
