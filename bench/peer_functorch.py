#!/usr/bin/python3
"""PyTorch/functorch peer for the JacService benchmark.

Times, on the fixture models (same architectures and weights, rebuilt from
tests/fixtures/fixture_models.py with their fixed seeds):

    jacfwd  functorch.vmap(functorch.jacfwd(f))   per-sample Jacobians, forward mode
    jacrev  functorch.vmap(functorch.jacrev(f))   per-sample Jacobians, reverse mode
    vjp     functorch.vmap(vjp) with one cotangent per sample   (the peer of a Vjp RPC)
    jvp     functorch.vmap(jvp) with one tangent per sample     (the peer of a Jvp RPC)

each at every thread count in --threads (torch.set_num_threads; default 1 and 2),
after a warm-up, reporting the median call time.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peer_functorch.py \\
        [--batch 1,16,256] [--models mlp_tanh,pinn] [--seconds 3] [--threads 1,2] [--ops jacfwd,jacrev,vjp,jvp]

stdout: one JSON object per line, per (model, batch):
  - one line per configuration (op x threads):
      {"peer": "functorch", "model": ..., "batch": ..., "op": "jacfwd"|"jacrev"|"vjp"|"jvp",
       "threads": ..., "median_ms": ..., "samples_per_s": ..., "repeats": ..., "peak_rss_mb": ...}
    Jacobian lines (jacfwd, jacrev) also carry "jacobians_per_s" (= samples_per_s);
    vjp/jvp lines deliberately do not, so a reader that takes the best
    "jacobians_per_s" of a point never picks a vjp rate.
  - then one "best" line: the fastest Jacobian configuration of the point,
      {"peer": "functorch", "model": ..., "batch": ..., "op": "best", "mode": "jacfwd"|"jacrev",
       "threads": ..., "median_ms": ..., "jacobians_per_s": ..., "samples_per_s": ...}
  A configuration that was not run carries "skipped" (the reason) and null timings.
torch's build/BLAS configuration goes to stderr once (so stdout stays parseable).

Compatibility with bench/JacService.Bench (Program.cs), which runs this script once
with "--threads 1" and once with "--threads 2" and keeps, per (model, batch), the
line with the highest "jacobians_per_s": that still yields the fastest Jacobian
configuration, now the best of jacfwd AND jacrev (read "mode" on the best line to
know which). It also times vjp/jvp in each run unless it passes --ops jacfwd,jacrev.

Memory guard: forward mode materialises batch x (input size) tangent copies of
every activation; for small_cnn that is ~80 MB per sample, so batch 256 peaks at
~20 GB (and takes over a minute per call, mostly in the kernel zeroing fresh
pages). Batches run in ascending order, each configuration's peak RSS per sample
is measured, and a larger batch whose estimated peak exceeds --max-memory-gb is
not run for that op (its line carries "skipped"). When the smallest batch asked
for is larger than PROBE_BATCH, each op first makes one untimed call at
PROBE_BATCH to measure its memory per sample (a run of --batch 256 alone once
took small_cnn's jacfwd to 21 GB and 12 minutes on a 24 GB machine). That call
runs in a child process of its own: in this one, memory freed by the models
before (kept by glibc under the bench's allocator settings) hides the growth.

Only the derivatives are timed, on the first input (wrt) and all outputs (as
BatchJacobian does with an empty `of`). jacfwd/jacrev do not return the outputs,
whereas the service's BatchJacobian does; vjp and jvp do compute them (functorch
evaluates the primal on the way).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

# The fixtures folder is committed: keep it free of __pycache__.
sys.dont_write_bytecode = True

try:
    import functorch
except ImportError:
    # Recent PyTorch wheels (the GPU machine's) may leave out the old top-level package; torch.func has the same five.
    import torch.func as functorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
import fixture_models  # noqa: E402  (needs the sys.path entry above)

# Minimum timed repeats per point, so the median means something even when one
# call takes longer than --seconds.
MIN_REPEATS = 3

# The batch of the one untimed call that measures an op's memory per sample when no
# smaller batch was asked for.
PROBE_BATCH = 4


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0) so the next reading is this point's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_growth_mb(call: Callable[[], object]) -> Optional[float]:
    """Peak RSS growth (MB) of one call, or None where /proc cannot say."""
    tracked = reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    call()
    peak = _status_kb("VmHWM")
    if not tracked or rss_before is None or peak is None:
        return None
    return max(0, peak - rss_before) / 1024


def measure(call: Callable[[], object], seconds: float) -> List[float]:
    """Per-call wall times (s) after a warm-up.

    The warm-up absorbs one-off costs (functorch's first pass through the
    batching rules, allocator growth, OpenMP/BLAS thread start-up) that a
    long-running server would not pay per request: at least one call, more while
    within its small time budget. The median over repeats is robust to the
    occasional scheduler hiccup on a shared machine.
    """
    warm_until = time.perf_counter() + min(1.0, 0.2 * seconds)
    call()
    while time.perf_counter() < warm_until:
        call()

    times: List[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < MIN_REPEATS or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


# Every derivative is taken w.r.t. the first input (argnums=0), like BatchJacobian's
# default wrt for single-input models.
OPS = ["jacfwd", "jacrev", "vjp", "jvp"]
JACOBIAN_OPS = {"jacfwd", "jacrev"}


# torch 1.13's recurrent layers run under neither functorch.vmap nor jacfwd ("Batching rule not implemented for
# aten::unsafe_split"). Their samples are independent, so the peer computes what needs no vmap: each output element's
# gradient over the whole batch by one backward pass (torch.autograd.functional.jacobian of the outputs summed over the
# batch: one row of every sample's Jacobian per pass), a Jvp by one forward-mode pass over the batch, a Vjp by one
# backward pass over the batch.
# torch 1.13's grid_sampler_2d has no forward-mode AD at all, and functorch's vmapped vjp fails on it: for
# neural_field the peer has the same reverse-mode calls without vmap, and no forward mode.
NO_VMAP = {"sequences": "torch 1.13's recurrent layers have no batching rule for forward mode (aten::unsafe_split)",
           "neural_field": "torch 1.13's grid_sampler_2d has no forward-mode AD"}
NO_FORWARD_MODE = {"neural_field"}


def skip_reason(op: str, name: str) -> Optional[str]:
    if name in NO_FORWARD_MODE and op in ("jacfwd", "jvp"):
        return NO_VMAP[name]
    return NO_VMAP[name] if name in NO_VMAP and op == "jacfwd" else None


def make_unbatched_call(op: str, fx: fixture_models.Fixture, inputs: List[torch.Tensor]) -> Callable[[], object]:
    """`op` for a model whose samples are independent, without vmap (see NO_VMAP); one input."""
    x = inputs[0]
    gen = torch.Generator().manual_seed(0)
    if op == "jacrev":
        return lambda: torch.autograd.functional.jacobian(lambda v: fx.module(v).sum(0), x)
    if op == "jvp":
        tangent = torch.randn(x.shape, generator=gen)
        return lambda: functorch.jvp(fx.module, (x,), (tangent,))
    if op == "vjp":
        with torch.no_grad():
            cot = torch.randn(fx.module(x).shape, generator=gen)

        def call():
            out, pullback = functorch.vjp(fx.module, x)
            return out, pullback(cot)

        return call
    raise ValueError(op)


def make_call(op: str, fx: fixture_models.Fixture, inputs: List[torch.Tensor], name: str = "") -> Callable[[], object]:
    """A zero-argument call that computes `op` for the whole batch."""
    if name in NO_VMAP:
        return make_unbatched_call(op, fx, inputs)
    f = fixture_models.per_sample(fx)
    if op == "jacfwd":
        jac = functorch.vmap(functorch.jacfwd(f, argnums=0))
        return lambda: jac(*inputs)
    if op == "jacrev":
        jac = functorch.vmap(functorch.jacrev(f, argnums=0))
        return lambda: jac(*inputs)

    def wrt_first(rest):
        # f of the first input alone, the others fixed (a Jvp/Vjp with wrt = first input).
        return lambda x0: f(x0, *rest)

    # One direction per sample, drawn once (its values do not affect the timing).
    gen = torch.Generator().manual_seed(0)
    if op == "jvp":
        tangent = torch.randn(inputs[0].shape, generator=gen)

        def one_jvp(x0, t, *rest):
            return functorch.jvp(wrt_first(rest), (x0,), (t,))

        batched = functorch.vmap(one_jvp)
        return lambda: batched(inputs[0], tangent, *inputs[1:])
    if op == "vjp":
        with torch.no_grad():
            outs = fx.module(*inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        cots = tuple(torch.randn(o.shape, generator=gen) for o in outs)
        several = len(outs) > 1

        def one_vjp(x0, cot, *rest):
            out, pullback = functorch.vjp(wrt_first(rest), x0)
            return out, pullback(cot if several else cot[0])

        batched = functorch.vmap(one_vjp)
        return lambda: batched(inputs[0], cots, *inputs[1:])
    raise ValueError(op)


def probe_memory(name: str, ops: List[str]) -> Dict[str, float]:
    """Peak RSS growth per sample (MB) of one call of each op at PROBE_BATCH."""
    fx = fixture_models.build(name)
    inputs = fixture_models.sample_inputs(name, PROBE_BATCH)
    result: Dict[str, float] = {}
    for op in ops:
        if skip_reason(op, name):
            continue
        growth = peak_growth_mb(make_call(op, fx, inputs, name))
        if growth is not None:
            result[op] = growth / PROBE_BATCH
    return result


def probe_memory_in_child(name: str, ops: List[str]) -> Dict[str, float]:
    """probe_memory in a fresh interpreter, so that no earlier model's freed memory absorbs the growth."""
    child = subprocess.run([sys.executable, __file__, "--probe-memory", "--models", name, "--ops", ",".join(ops)],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="1,16,256", help="comma-separated batch sizes")
    p.add_argument("--models", default="", help="comma-separated subset of: " + ",".join(fixture_models.NAMES))
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration")
    p.add_argument("--threads", default="1,2",
                   help="comma-separated torch.set_num_threads values to time each op at (0: torch's default)")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of: " + ",".join(OPS))
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="skip a batch whose estimated peak RSS growth exceeds this (0: no limit)")
    p.add_argument("--probe-memory", action="store_true",
                   help="print only the peak memory per sample of one call of each op at a small batch, as JSON (one model)")
    args = p.parse_args()

    # Ascending, so each point's measured memory per sample can vet the next one.
    batches = sorted({int(b) for b in args.batch.split(",") if b})
    models = [m for m in args.models.split(",") if m] or fixture_models.NAMES
    unknown = sorted(set(models) - set(fixture_models.NAMES))
    if unknown:
        p.error(f"unknown models {unknown}; known: {fixture_models.NAMES}")
    ops = [o for o in args.ops.split(",") if o]
    if set(ops) - set(OPS):
        p.error(f"unknown ops {sorted(set(ops) - set(OPS))}; known: {OPS}")
    if args.probe_memory:
        print(json.dumps(probe_memory(models[0], ops)))
        return 0
    default_threads = torch.get_num_threads()
    threads_list = [int(t) or default_threads for t in args.threads.split(",") if t]

    # Which BLAS/LAPACK and how many threads decide the numbers: record them with the run.
    print(torch.__config__.show(), file=sys.stderr)
    print(torch.__config__.parallel_info(), file=sys.stderr, flush=True)

    for name in models:
        fx = fixture_models.build(name)  # float32, eval mode, fixed seed
        # Per op: peak RSS growth per sample at the last batch that ran (the guard's estimate).
        mb_per_sample: Dict[str, float] = {}
        if args.max_memory_gb > 0 and batches[0] > PROBE_BATCH:
            mb_per_sample.update(probe_memory_in_child(name, ops))
            print(f"{name}: memory per sample at batch {PROBE_BATCH} (MB): "
                  + json.dumps({op: round(mb, 2) for op, mb in mb_per_sample.items()}), file=sys.stderr, flush=True)
        for batch in batches:
            inputs = fixture_models.sample_inputs(name, batch)
            best: Optional[dict] = None
            for threads in threads_list:
                # Switching within one process is fine: torch.set_num_threads sets the
                # OpenMP thread count, which OpenBLAS (openmp build) reads per call;
                # the warm-up in measure() absorbs the thread pool's start.
                torch.set_num_threads(threads)
                for op in ops:
                    record = {"peer": "functorch", "model": name, "batch": batch, "op": op, "threads": threads}
                    estimate_gb = mb_per_sample.get(op, 0.0) * batch / 1024
                    reason = skip_reason(op, name)
                    if reason is None and args.max_memory_gb > 0 and estimate_gb > args.max_memory_gb:
                        reason = f"estimated peak {estimate_gb:.1f} GB > --max-memory-gb {args.max_memory_gb:g}"
                    if reason is not None:
                        record.update(median_ms=None, samples_per_s=None, skipped=reason)
                        if op in JACOBIAN_OPS:
                            record["jacobians_per_s"] = None
                        print(json.dumps(record), flush=True)
                        continue
                    call = make_call(op, fx, inputs, name)
                    tracked = reset_peak_rss()
                    rss_before = _status_kb("VmRSS")
                    times = measure(call, args.seconds)
                    peak = _status_kb("VmHWM")
                    median = statistics.median(times)
                    rate = round(batch / median, 1)
                    record.update(median_ms=round(median * 1e3, 4), samples_per_s=rate, repeats=len(times))
                    if op in JACOBIAN_OPS:
                        record["jacobians_per_s"] = rate
                        if best is None or rate > best["jacobians_per_s"]:
                            best = {"peer": "functorch", "model": name, "batch": batch, "op": "best", "mode": op,
                                    "threads": threads, "median_ms": record["median_ms"],
                                    "jacobians_per_s": rate, "samples_per_s": rate}
                    if tracked and rss_before is not None and peak is not None:
                        # Includes per-call fixed costs, so dividing by the batch
                        # overestimates per-sample memory: the guard errs on the safe side.
                        growth_mb = max(0, peak - rss_before) / 1024
                        mb_per_sample[op] = max(mb_per_sample.get(op, 0.0), growth_mb / batch)
                        record["peak_rss_mb"] = round(growth_mb, 1)
                    print(json.dumps(record), flush=True)
                    del call
            if JACOBIAN_OPS & set(ops):
                if best is None:
                    best = {"peer": "functorch", "model": name, "batch": batch, "op": "best", "mode": None,
                            "threads": None, "median_ms": None, "jacobians_per_s": None, "samples_per_s": None,
                            "skipped": "every Jacobian configuration was skipped"}
                print(json.dumps(best), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
