#!/usr/bin/python3
"""PyTorch/functorch peer for the JacService benchmark.

Times functorch.vmap(functorch.jacfwd(f)) on the fixture models: the same
computation BatchJacobian performs (per-sample forward-mode Jacobians, the tangent
basis carried as a batch axis), on the same weights, rebuilt from
tests/fixtures/fixture_models.py with their fixed seeds.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peer_functorch.py \\
        [--batch 1,16,256] [--models mlp_tanh,pinn] [--seconds 3] [--threads N]

Prints one JSON object per (model, batch) on stdout:
    {"peer": "functorch", "model": ..., "batch": ..., "median_ms": ...,
     "jacobians_per_s": ..., "threads": ..., "repeats": ..., "peak_rss_mb": ...}
and torch's build/BLAS configuration once on stderr (so stdout stays parseable).

Memory guard: forward mode materialises batch x (input size) tangent copies of
every activation; for small_cnn that is ~80 MB per sample, so batch 256 peaks at
~20 GB (and takes over a minute per call, mostly in the kernel zeroing fresh pages). Batches run in ascending order,
each point's peak RSS per sample is measured, and a larger batch whose estimated
peak exceeds --max-memory-gb is not run: its line carries "skipped" (the reason)
and null timings instead.

Only the Jacobians are timed: jacfwd does not return the outputs, whereas the
service's BatchJacobian returns them too. For models with several inputs the
Jacobian is taken with respect to the first; with several outputs, all outputs
are differentiated (as BatchJacobian does with an empty `of`).
"""

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

# The fixtures folder is committed: keep it free of __pycache__.
sys.dont_write_bytecode = True

import functorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
import fixture_models  # noqa: E402  (needs the sys.path entry above)

# Minimum timed repeats per point, so the median means something even when one
# call takes longer than --seconds.
MIN_REPEATS = 3


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="1,16,256", help="comma-separated batch sizes")
    p.add_argument("--models", default="", help="comma-separated subset of: " + ",".join(fixture_models.NAMES))
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per (model, batch) point")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="skip a batch whose estimated peak RSS growth exceeds this (0: no limit)")
    args = p.parse_args()

    # Ascending, so each point's measured memory per sample can vet the next one.
    batches = sorted({int(b) for b in args.batch.split(",") if b})
    models = [m for m in args.models.split(",") if m] or fixture_models.NAMES
    unknown = sorted(set(models) - set(fixture_models.NAMES))
    if unknown:
        p.error(f"unknown models {unknown}; known: {fixture_models.NAMES}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    # Which BLAS/LAPACK and how many threads decide the numbers: record them with the run.
    print(torch.__config__.show(), file=sys.stderr)
    print(torch.__config__.parallel_info(), file=sys.stderr, flush=True)

    for name in models:
        fx = fixture_models.build(name)  # float32, eval mode, fixed seed
        # jacfwd differentiates w.r.t. argnums=0: the first input.
        jac = functorch.vmap(functorch.jacfwd(fixture_models.per_sample(fx), argnums=0))
        mb_per_sample: Optional[float] = None
        for batch in batches:
            record = {"peer": "functorch", "model": name, "batch": batch}
            if args.max_memory_gb > 0 and mb_per_sample is not None:
                estimate_gb = mb_per_sample * batch / 1024
                if estimate_gb > args.max_memory_gb:
                    record.update(median_ms=None, jacobians_per_s=None, threads=torch.get_num_threads(),
                                  skipped=f"estimated peak {estimate_gb:.1f} GB > --max-memory-gb {args.max_memory_gb:g}")
                    print(json.dumps(record), flush=True)
                    continue
            inputs = fixture_models.sample_inputs(name, batch)
            tracked = reset_peak_rss()
            rss_before = _status_kb("VmRSS")
            times = measure(lambda: jac(*inputs), args.seconds)
            peak = _status_kb("VmHWM")
            median = statistics.median(times)
            record.update(
                median_ms=round(median * 1e3, 4),
                jacobians_per_s=round(batch / median, 1),
                threads=torch.get_num_threads(),
                repeats=len(times),
            )
            if tracked and rss_before is not None and peak is not None:
                # Includes per-call fixed costs, so dividing by the batch
                # overestimates per-sample memory: the guard errs on the safe side.
                growth_mb = max(0, peak - rss_before) / 1024
                mb_per_sample = growth_mb / batch
                record["peak_rss_mb"] = round(growth_mb, 1)
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
