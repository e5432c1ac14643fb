#!/usr/bin/env bash
# Rehearses, on a CPU machine, what the device check does with TorchSharp's native library: compile it from TorchSharp's
# sources against a libtorch it was not written for (scripts/device/build_torchsharp.py), link it, and serve the
# fixtures from the pack's server on that libtorch, checked against the references. Debian's libtorch (1.13, from
# `apt-get install libtorch-dev`) is three years older than the 2.10 the sources target, a harder case than the GPU
# machine's 2.11.
# Usage: scripts/device/rehearse-foreign-libtorch.sh OUT_DIR [PACK_DIR]   (after scripts/device/pack.sh with sources)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
pack=$(cd "${2:-artifacts/device-pack}" && pwd)
lib=/usr/lib/x86_64-linux-gnu
[[ -f /usr/include/torch/csrc/api/include/torch/torch.h ]] || { echo "libtorch's headers are missing: apt-get install libtorch-dev" >&2; exit 1; }
work=$(mktemp -d)
server=
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
unpack() { python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
unpack "$pack/app.tar.xz" "$work"
unpack "$pack/torchsharp-native.tar.xz" "$work"

# -O0: the errors are what is rehearsed, and the front end finds them at any level.
python3 scripts/device/build_torchsharp.py "$work/src/Native/LibTorchSharp" "$work/obj" "$out/build-torchsharp.log" --jobs "$(nproc)" \
  -- -O0 -fPIC -std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI=1 -I/usr/include/torch/csrc/api/include | tee "$out/build.txt" || true
g++ -shared -o "$work/app/libLibTorchSharp.so" "$work"/obj/*.o -L"$lib" -ltorch -ltorch_cpu -lc10
exports() { nm -D --defined-only "$1" | awk '/ T THS/ {print $3}' | sort; }
echo "THS exports: $(exports "$work/app/libLibTorchSharp.so" | wc -l) built here, $(exports src/Server/bin/Release/net10.0/linux-x64/libLibTorchSharp.so | wc -l) in TorchSharp's package; missing:" \
  "$(comm -13 <(exports "$work/app/libLibTorchSharp.so") <(exports src/Server/bin/Release/net10.0/linux-x64/libLibTorchSharp.so) | paste -sd' ')" | tee -a "$out/build.txt"
echo "undefined symbols: $(ldd -r "$work/app/libLibTorchSharp.so" 2>&1 | grep -c 'undefined symbol' || true)" | tee -a "$out/build.txt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LD_LIBRARY_PATH=$lib "$work/app/JacService.Server" --urls "http://127.0.0.1:$port" --Models:Root="$PWD/tests/fixtures/models" \
  --Engine:Device=cpu --Telemetry:MetricsUrl="http://127.0.0.1:$metrics" > "$out/server.log" 2>&1 &
server=$!
# Up once every fixture has loaded (READY, or FAILED: compare.py then says which).
for _ in $(seq 1 180); do
  "$work/app/jac" models --target "127.0.0.1:$port" -o json > "$work/models.json" 2>/dev/null &&
    python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); sys.exit(0 if m and all(x["state"] in ("READY", "FAILED") for x in m) else 1)' \
      "$work/models.json" && break
  kill -0 "$server" 2>/dev/null || { echo "the server ended: $out/server.log" >&2; exit 1; }
  sleep 1
done
grep -o "/[^ ]*libtorch_cpu[^ ]*" "/proc/$server/maps" | sort -u | sed 's/^/server maps /' | tee -a "$out/build.txt"
python3 scripts/device/compare.py --jac "$work/app/jac" --target "127.0.0.1:$port" --repeat 1 --out "$out/compare.json" | tee "$out/compare.txt" | tail -1
