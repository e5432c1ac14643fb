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
     "jacobians_per_s": ..., "threads": ..., "repeats": ...}
and torch's build/BLAS configuration once on stderr (so stdout stays parseable).

Only the Jacobians are timed: jacfwd does not return the outputs, whereas the
service's BatchJacobian returns them too. For models with several inputs the
Jacobian is taken with respect to the first; with several outputs, all outputs
are differentiated (as BatchJacobian does with an empty `of`).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

# The fixtures folder is committed: keep it free of __pycache__.
sys.dont_write_bytecode = True

import functorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
import fixture_models  # noqa: E402  (needs the sys.path entry above)

# Minimum timed repeats per point, so the median means something even when one
# call takes longer than --seconds.
MIN_REPEATS = 5


def measure(call: Callable[[], object], seconds: float) -> List[float]:
    """Per-call wall times (s) after a warm-up.

    The warm-up absorbs one-off costs (functorch's first trace through the
    batching rules, allocator growth, OpenMP/BLAS thread start-up) that a
    long-running server would not pay per request. The median over repeats is
    robust to the occasional scheduler hiccup on a shared machine.
    """
    warm_until = time.perf_counter() + min(1.0, 0.2 * seconds)
    warm = 0
    while warm < 3 or time.perf_counter() < warm_until:
        call()
        warm += 1

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
    args = p.parse_args()

    batches = [int(b) for b in args.batch.split(",") if b]
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
        for batch in batches:
            inputs = fixture_models.sample_inputs(name, batch)
            times = measure(lambda: jac(*inputs), args.seconds)
            median = statistics.median(times)
            print(json.dumps({
                "peer": "functorch",
                "model": name,
                "batch": batch,
                "median_ms": round(median * 1e3, 4),
                "jacobians_per_s": round(batch / median, 1),
                "threads": torch.get_num_threads(),
                "repeats": len(times),
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
