#!/usr/bin/env bash
# The GPU device check (issue 17, docs/gpu.md), as one command on the GPU machine, from the repository root:
#
#   scripts/device/check.sh OUT_DIR [PACK_DIR]
#
# PACK_DIR (default artifacts/device-pack) holds what scripts/device/pack.sh made here: app.tar.xz (the server and
# jac, self-contained, without libtorch), torchsharp-native.tar.xz (TorchSharp's native sources) and tls/ (a
# throw-away certificate for the TLS bar). The machine has
# torch with CUDA, nvcc, CMake, ninja and JAX, but no .NET and no network. In order, each step recording its outcome
# in OUT_DIR/steps.txt and going on when one fails, so one run brings back as much as it can:
#   1. the machine (GPU, driver, torch, CUDA, JAX) into env.txt;
#   2. JAX's jit(vmap(jacfwd/jacrev)) and vmap(vjp) on the fixtures (bench/peer_jax.py) in the background, while
#   3. libLibTorchSharp is compiled from TorchSharp's sources against the machine's libtorch (functions that no
#      longer compile cut out, scripts/device/build_torchsharp.py), and beside it
#   4. libJacServiceCudaGraphs from src/Native (CMake; a direct g++ line if CMake cannot find Torch);
#   5. per Engine:CudaGraphs on, then off: the server on the GPU, every fixture's Predict, BatchJacobian (forward and
#      reverse) and Jacobian against the references (scripts/device/compare.py, 3 runs each with graphs: eager, recorded,
#      replayed), BatchJacobian throughput at batch 1, 16 and 256 (AUTO; and at 1 and 256 FORWARD and REVERSE beside
#      it, to see whether AUTO's eager timing still picks the faster graph) and single-sample Jacobian latency (jac load;
#      the server's own p50/p99 from its request-duration histogram), GetModel after it all; after the graphs-on pass,
#      a Jacobian batch's parts timed apart in-process (bench --gpu-phases: inputs up, the pass eager and replayed,
#      results down, and the alternatives to each);
#   6. with JAC_CHECK_CPU_BARS=1, the CPU bars below;
#   7. summary.md from the result files.
# A shorter rerun (what a second call within the device budget can afford): JAC_CHECK_PEER=0 skips JAX,
# JAC_CHECK_GRAPHS=on runs the server with graphs only, JAC_CHECK_WIDE=0 leaves out the load of 16 callers over 4
# connections at batch 256 (on the H200 it doubled what 4 callers on one connection got), JAC_CHECK_PHASES=0 skips the
# in-process timing of a batch's parts after the graphs-on pass.
# JAC_CHECK_CPU_BARS=1 adds, at the end, issue 13's stream bar (bench/stream_bar.sh), issue 15's TLS + JWT bar
# (bench/auth_cost.sh) and issue 11's modes bar for wide_classifier (bench --derivatives) on the machine's CPUs, the
# server (--Engine:Device=cpu) on one half of the cores and the client on the other: on the 2-core VM client and server
# share both cores. JAC_CHECK_GRAPHS=none skips the GPU passes altogether.
# JAC_CHECK_DEVICE=cpu rehearses it all on a CPU machine (scripts/device/rehearse-cpu.sh): CPU libtorch from the NuGet
# package, the build's libLibTorchSharp, no graph library, JAX only if it imports.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
# The device tool brings back at most 8 files from its $OUT: every result goes to $res, and publish() leaves
# summary.md, steps.txt and results.tar.gz (all of $res) in OUT_DIR after each phase and at the end, so a run stopped
# at the tool's limit still returns what it had.
res=$(mktemp -d)
pack=$(cd "${2:-artifacts/device-pack}" && pwd)
device=${JAC_CHECK_DEVICE:-cuda}
perf_models=${JAC_CHECK_MODELS:-mlp_tanh,pinn,wide_classifier,small_cnn}
mode_models=${JAC_CHECK_MODE_MODELS-mlp_tanh,wide_classifier}
seconds=${JAC_CHECK_SECONDS:-3}
peer=${JAC_CHECK_PEER:-1}
graph_settings=${JAC_CHECK_GRAPHS:-on off}
[[ "$graph_settings" == none ]] && graph_settings=
cpu_bars=${JAC_CHECK_CPU_BARS:-0}
wide=${JAC_CHECK_WIDE:-1}
phases=${JAC_CHECK_PHASES:-1}
# Past this many seconds the remaining load runs are skipped, so the results come back within the tool's 10 minutes.
budget=${JAC_CHECK_BUDGET_S:-510}
started=$SECONDS
work=$(mktemp -d)
server=
jax=
publish() {
  python3 scripts/device/summarize.py "$res" > "$res/summary.md" 2>&1
  cp "$res/summary.md" "$res/steps.txt" "$out/" 2>/dev/null
  python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1] + ".part", "w:gz"); t.add(sys.argv[2], arcname="results"); t.close()' "$out/results.tar.gz" "$res" \
    && mv "$out/results.tar.gz.part" "$out/results.tar.gz"
}
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [[ -n "$jax" ]] && kill "$jax" 2>/dev/null
  publish
  rm -rf "$work" "$res"
}
trap cleanup EXIT

step() { printf '%4ds %-6s %s\n' $((SECONDS - started)) "$1" "$2" | tee -a "$res/steps.txt"; }
late() { (( SECONDS - started > budget )); }

# ---- 1. the machine ---------------------------------------------------------------------------------------------
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  nproc; free -g | head -2
  python3 -c 'import torch, os; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cxx11 abi", torch._C._GLIBCXX_USE_CXX11_ABI, "dir", os.path.dirname(torch.__file__))' 2>&1
  python3 -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, jax.devices())' 2>&1
  nvcc --version 2>&1 | tail -1; cmake --version 2>&1 | head -1; g++ --version | head -1
} > "$res/env.txt" 2>&1
step info "machine: $(head -2 "$res/env.txt" | tail -1)"

if [[ "$device" == cuda ]]; then
  torch_dir=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
  torch_lib=$torch_dir/lib
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
else
  torch_lib=$work/torchlib
  mkdir -p "$torch_lib"
  cp ~/.nuget/packages/libtorch-cpu-linux-x64/*/runtimes/linux-x64/native/* "$torch_lib/"
fi

# ---- 2. the JAX peer, while the native libraries compile (it needs the GPU, they need the CPUs) -------------------
if [[ "$peer" != 1 ]]; then
  step skip "JAX peer: JAC_CHECK_PEER=$peer"
elif python3 -c 'import jax' 2>/dev/null; then
  # No preallocation: the server shares the GPU later, and JAX is done before the server's own timing starts.
  # Unbuffered, so a peer stopped at its time limit has written what it timed.
  PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 300 python3 bench/peer_jax.py --models "$perf_models" --batch 1,16,256 \
    --ops jacfwd,jacrev,vjp --seconds 1 > "$res/jax.jsonl" 2> "$res/jax.log" &
  jax=$!
  step start "JAX peer (pid $jax)"
else
  step skip "JAX peer: jax does not import here"
fi

# ---- 4. libJacServiceCudaGraphs (run beside step 3's compilers) -------------------------------------------------
build_graphs() {
  if cmake -S src/Native -B "$work/native" -G Ninja -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
       > "$res/build-graphs.log" 2>&1 && cmake --build "$work/native" >> "$res/build-graphs.log" 2>&1; then
    cp "$work/native/libJacServiceCudaGraphs.so" "$app/"
    step ok "libJacServiceCudaGraphs built with CMake"
  else
    cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
    if g++ -O2 -fPIC -shared -std=c++17 -fvisibility=hidden -D_GLIBCXX_USE_CXX11_ABI="$abi" -I"$torch_dir/include" \
         -I"$torch_dir/include/torch/csrc/api/include" -I"$cuda_home/include" src/Native/cuda_graphs.cpp -o "$app/libJacServiceCudaGraphs.so" \
         -L"$torch_lib" -Wl,--no-as-needed -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda -L"$cuda_home/lib64" -lcudart -Wl,-rpath,"$torch_lib" \
         >> "$res/build-graphs.log" 2>&1; then
      step ok "libJacServiceCudaGraphs built with g++ (CMake failed: build-graphs.log)"
    else
      step FAIL "libJacServiceCudaGraphs did not build: build-graphs.log"
    fi
  fi
}

# ---- 3. the app and libLibTorchSharp ------------------------------------------------------------------------------
unpack() { python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
metrics_now() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$metrics/metrics"; }
unpack "$pack/app.tar.xz" "$work"
app=$work/app
step $([[ -x "$app/JacService.Server" ]] && echo ok || echo FAIL) "unpacked the app ($(du -sh "$app" | cut -f1))"
if [[ "$device" == cuda ]]; then
  mkdir -p "$work/torchsharp"
  unpack "$pack/torchsharp-native.tar.xz" "$work/torchsharp"
  src=$work/torchsharp/src/Native/LibTorchSharp
  flags=(-O2 -fPIC -std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI="$abi" -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include")
  # libJacServiceCudaGraphs (step 4) compiles beside it.
  build_graphs &
  graphs_build=$!
  # One compiler per file, 12 at a time (4 cores left to JAX). A file that fails is compiled again without the
  # functions its errors point into (torch 2.11 is not the 2.10 these sources target); build-torchsharp.log lists them.
  built=$(python3 scripts/device/build_torchsharp.py "$src" "$work/ts-obj" "$res/build-torchsharp.log" --jobs 12 -- "${flags[@]}")
  # --no-as-needed: nothing here calls into libtorch_cuda, but loading it registers CUDA with libtorch (Ubuntu's linker
  # drops unreferenced libraries by default; PyTorch's own CMake config keeps this one the same way).
  if g++ -shared -o "$app/libLibTorchSharp.so" "$work"/ts-obj/*.o -L"$torch_lib" -Wl,--no-as-needed -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda \
       -Wl,-rpath,"$torch_lib" >> "$res/build-torchsharp.log" 2>&1; then
    step ok "libLibTorchSharp built against torch $(python3 -c 'import torch; print(torch.__version__)'): $built"
  else
    step FAIL "libLibTorchSharp did not link ($built): build-torchsharp.log"
  fi
  wait "$graphs_build"
else
  cp src/Server/bin/Release/net10.0/linux-x64/libLibTorchSharp.so "$app/"
  step ok "libLibTorchSharp: the build's (CPU rehearsal)"
  step skip "libJacServiceCudaGraphs: no CUDA here"
fi

if [[ -n "$jax" ]]; then
  wait "$jax"
  step $([[ $? == 0 ]] && echo ok || echo FAIL) "JAX peer: $(grep -c '"op": "best"' "$res/jax.jsonl") points (jax.jsonl, jax.log)"
  jax=
fi
publish

# ---- 5. the server, with graphs off and on ------------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
jac=("$app/jac")
# Graphs on first: the bars are measured with graphs, and if the time runs short it is the eager runs that are skipped.
for graphs in $graph_settings; do
  [[ "$device" == cpu && "$graphs" == on ]] && { step skip "graphs on: no CUDA here"; continue; }
  LD_LIBRARY_PATH="$torch_lib" "$app/JacService.Server" --urls "http://127.0.0.1:$port" --Models:Root="$PWD/tests/fixtures/models" \
    --Telemetry:MetricsUrl="http://127.0.0.1:$metrics" --Engine:Device="$device" --Engine:CudaGraphs="$graphs" \
    --Batching:MaxBatchSize=256 > "$res/server-graphs-$graphs.log" 2>&1 &
  server=$!
  ready=
  for _ in $(seq 1 180); do
    # Up once every fixture has loaded (READY, or FAILED: compare.py then says which).
    "${jac[@]}" models --target "127.0.0.1:$port" -o json > "$res/models-graphs-$graphs-start.json" 2>/dev/null &&
      python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); sys.exit(0 if m and all(x["state"] in ("READY", "FAILED") for x in m) else 1)' \
        "$res/models-graphs-$graphs-start.json" && { ready=1; break; }
    kill -0 "$server" 2>/dev/null || break
    sleep 1
  done
  if [[ -z "$ready" ]]; then
    step FAIL "server (graphs $graphs) did not come up: server-graphs-$graphs.log"
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; server=
    continue
  fi
  step ok "server up, graphs $graphs: $(grep -m1 -o 'Tensors live on [^(]*' "$res/server-graphs-$graphs.log"); $(grep -m1 -o 'CUDA graphs [^\"]*' "$res/server-graphs-$graphs.log")"

  repeat=$([[ "$graphs" == on ]] && echo 3 || echo 1)
  python3 scripts/device/compare.py --jac "${jac[0]}" --target "127.0.0.1:$port" --repeat "$repeat" \
    --out "$res/compare-graphs-$graphs.json" > "$res/compare-graphs-$graphs.txt" 2>&1
  step $([[ $? == 0 ]] && echo ok || echo FAIL) "references, graphs $graphs: $(tail -1 "$res/compare-graphs-$graphs.txt")"

  for model in ${perf_models//,/ }; do
    for batch in 1 16 256; do
      late && { step skip "load $model b=$batch graphs $graphs: past the budget"; continue; }
      "${jac[@]}" load --target "127.0.0.1:$port" -M batch-jacobian -m "$model" -b "$batch" -c 4 -z "${seconds}s" --warmup 1s \
        --no-progress -o json --out "$res/load-graphs-$graphs-$model-b$batch.json" > /dev/null 2>&1
      step ok "BatchJacobian $model b=$batch graphs $graphs: $(python3 scripts/device/summarize.py --brief "$res/load-graphs-$graphs-$model-b$batch.json")"
    done
    if [[ "$wide" == 1 ]] && ! late; then
      "${jac[@]}" load --target "127.0.0.1:$port" -M batch-jacobian -m "$model" -b 256 -c 16 --connections 4 -z "${seconds}s" --warmup 1s \
        --no-progress -o json --out "$res/wide-graphs-$graphs-$model-b256.json" > /dev/null 2>&1
      step ok "BatchJacobian $model b=256 graphs $graphs, 16 callers on 4 connections: $(python3 scripts/device/summarize.py --brief "$res/wide-graphs-$graphs-$model-b256.json")"
    fi
    # AUTO times eager passes; with graphs the launch overhead it measured is gone, so each mode's own rate beside it
    # says whether its choice still holds (mode_models only, for the budget).
    for batch in 1 256; do
      [[ ",$mode_models," == *",$model,"* ]] || continue
      for mode in forward reverse; do
        late && { step skip "$mode $model b=$batch graphs $graphs: past the budget"; continue; }
        "${jac[@]}" load --target "127.0.0.1:$port" -M batch-jacobian -m "$model" -b "$batch" --mode "$mode" -c 4 -z "${seconds}s" \
          --warmup 1s --no-progress -o json --out "$res/mode-graphs-$graphs-$model-b$batch-$mode.json" > /dev/null 2>&1
        step ok "BatchJacobian $model b=$batch $mode graphs $graphs: $(python3 scripts/device/summarize.py --brief "$res/mode-graphs-$graphs-$model-b$batch-$mode.json")"
      done
    done
    late && continue
    metrics_now > "$work/before.prom"
    "${jac[@]}" load --target "127.0.0.1:$port" -M jacobian -m "$model" -c 1 -z "${seconds}s" --warmup 1s \
      --no-progress -o json --out "$res/latency-graphs-$graphs-$model.json" > /dev/null 2>&1
    metrics_now > "$work/after.prom"
    python3 scripts/device/compare.py --quantiles "$work/before.prom" "$work/after.prom" --method Jacobian --model "$model" \
      > "$res/latency-graphs-$graphs-$model-server.json"
    step ok "Jacobian latency $model graphs $graphs: client $(python3 scripts/device/summarize.py --brief "$res/latency-graphs-$graphs-$model.json"); server $(cat "$res/latency-graphs-$graphs-$model-server.json")"
  done
  "${jac[@]}" models --target "127.0.0.1:$port" -o json > "$res/models-graphs-$graphs-end.json" 2>&1
  metrics_now > "$res/metrics-graphs-$graphs.prom"
  # What the server holds on the GPU after it all: parameters, the caching allocator's blocks and the graphs' pools.
  [[ "$device" == cuda ]] && nvidia-smi --query-compute-apps=pid,used_memory --format=csv > "$res/gpu-memory-graphs-$graphs.csv" 2>&1
  kill "$server"; wait "$server" 2>/dev/null; server=
  publish
  # With the GPU to itself again: a Jacobian batch's parts timed apart in-process (bench --gpu-phases).
  if [[ "$phases" == 1 && ( "$graphs" == on || "$device" == cpu ) ]] && ! late; then
    LD_LIBRARY_PATH="$torch_lib" timeout 120 "$app/JacService.Bench" --gpu-phases --root "$PWD" --device "$([[ "$device" == cuda ]] && echo cuda:0 || echo cpu)" \
      --batch 1,256 --seconds 1 \
      > "$res/phases.md" 2> "$res/phases.log"
    step $([[ $? == 0 ]] && echo ok || echo FAIL) "batch phases in-process: phases.md ($(grep -c '^| [a-z_]* | [0-9]' "$res/phases.md") rows)"
    publish
  fi
done

# ---- 6. the CPU bars, server and client on cores of their own ----------------------------------------------------
if [[ "$cpu_bars" == 1 ]]; then
  n=$(nproc); half=$((n / 2))
  split=(SERVER_CPUS="0-$((half - 1))" CLIENT_CPUS="$half-$((n - 1))")
  (( n < 2 )) && split=()
  bars=(env "${split[@]}" LD_LIBRARY_PATH="$torch_lib" SERVER_CMD="$app/JacService.Server" JAC_CMD="$app/jac" SERVER_ARGS=--Engine:Device=cpu)
  # Each bar takes 2-3 minutes: after a whole GPU pass they would outlast the tool's 10 minutes (run them alone).
  if late; then step skip "stream bar on the CPUs: past the budget"; else
    "${bars[@]}" timeout 200 bench/stream_bar.sh 3 10 > "$res/cpu-stream-bar.txt" 2>&1
    step $([[ $? == 0 ]] && echo ok || echo FAIL) "stream bar on the CPUs (${split[*]}): $(tail -1 "$res/cpu-stream-bar.txt")"
    publish
  fi
  # The certificates pack.sh made, where it made them: openssl may be missing here.
  tls_dir=$([[ -f "$pack/tls/server.crt" ]] && echo "$pack/tls")
  if late; then step skip "TLS + JWT bar on the CPUs: past the budget"; else
    "${bars[@]}" TLS_DIR="$tls_dir" SECONDS_PER_RUN=10 WARMUP=20 timeout 260 bench/auth_cost.sh 3 "$res/auth" "anonymous jwt tlsjwt" \
      > "$res/cpu-auth.txt" 2>&1
    step $([[ $? == 0 ]] && echo ok || echo FAIL) "TLS + JWT bar on the CPUs: $(tail -1 "$res/cpu-auth.txt")"
    publish
  fi
  # Issue 11's bar on the fixture that misses it on the 2-core VM: server (an executor per core) and functorch on the
  # same half of the cores, the benchmark's callers on the other.
  if (( n >= 4 )) && ! late; then
    # Whatever is left of the tool's 10 minutes, less a margin for the summary.
    JAC_BENCH_SERVER_CPUS="0-$((half - 1))" JAC_BENCH_PYTHON=python3 LD_LIBRARY_PATH="$torch_lib" timeout $((570 - (SECONDS - started))) \
      bench/pinned.py "$half-$((n - 1))" "$app/JacService.Bench" --derivatives --root "$PWD" --batch 256 --seconds 2 \
      --models wide_classifier --callers 2,4,8,16 --peer-threads "1,2,4,$half" \
      -- --Batching:MaxBatchSize=256 --Engine:Device=cpu --Batching:ExecutorThreads=$half > "$res/cpu-modes.md" 2> "$res/cpu-modes.log"
    step $([[ $? == 0 ]] && echo ok || echo FAIL) "modes bar on the CPUs: $(grep '^| wide_classifier | 256 |' "$res/cpu-modes.md" | head -1)"
    publish
  fi
fi

# ---- 7. summary (and the bundle, by the exit trap) ----------------------------------------------------------------
step done "summary.md, steps.txt and results.tar.gz in $out"
! grep -q ' FAIL ' "$res/steps.txt"
