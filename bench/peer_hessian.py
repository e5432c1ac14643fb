#!/usr/bin/python3
"""PyTorch/functorch peer for the second-order benchmark (BatchHessian, BatchLaplacian).

Times, on the fixture models (same architectures and weights as the served ones, rebuilt from
tests/fixtures/fixture_models.py with their fixed seeds), in float32:

    hessian        functorch.vmap(functorch.hessian(f))          per-sample Hessians [B, out, in, in]
                                                                 (hessian = jacfwd(jacrev(f)): forward over reverse)
    hessian_trace  the same, then the trace over the input axes  per-sample Laplacians [B, out]: the slow way, what
                                                                 a user without a Laplacian method does

each at every thread count in --threads (torch.set_num_threads; default 1 and 2) and every chunk size in --chunks,
after a warm-up, reporting the median time of computing the whole batch. A chunk size c < B computes the batch as
ceil(B / c) vmapped calls of c samples: vmap over the whole batch is not functorch's fastest way at larger batches
(mlp_tanh's Hessian intermediates grow as B x 32 tangents x 16 cotangents x 256 features and fall out of cache: a
probe at batch 256 and 1 thread measured 53 samples/s for one call against 313/s in chunks of 4), so the peer's best
configuration includes the best chunking a user could pick. The derivatives are taken with respect to the first input, of all outputs, over every element of
the input (the peer of BatchLaplacian with empty `axes`); like peer_functorch.py, the outputs themselves are not
computed (BatchHessian and BatchLaplacian return them too).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peer_hessian.py \\
        [--batch 1,16,256] [--models pinn,mlp_tanh] [--seconds 3] [--threads 1,2] [--chunks 0,16,4,1]
        [--ops hessian,hessian_trace]

stdout: one JSON object per line, per (model, batch), in the style of peer_functorch.py:
  - one line per configuration (op x threads x chunk):
      {"peer": "functorch", "model": ..., "batch": ..., "op": "hessian"|"hessian_trace", "threads": ..., "chunk": ...,
       "median_ms": ..., "samples_per_s": ..., "repeats": ..., "peak_rss_mb": ...}
    hessian lines also carry "hessians_per_s", hessian_trace lines "laplacians_per_s" (both = samples_per_s), so a
    reader that takes the highest "hessians_per_s" (or "laplacians_per_s") of a point gets the right quantity;
  - then one "best" line per quantity, the fastest configuration of the point:
      {"peer": "functorch", "model": ..., "batch": ..., "op": "best", "quantity": "hessian"|"laplacian",
       "mode": "hessian"|"hessian_trace", "threads": ..., "chunk": ..., "median_ms": ..., "samples_per_s": ...,
       "hessians_per_s"|"laplacians_per_s": ...}
  A configuration that cannot run carries "skipped" (the reason) and null timings. functorch.hessian (forward over
  reverse) has no forward-mode rule for the backward of LayerNorm or LogSoftmax in torch 1.13 (layernorm_gelu,
  relu_classifier, attention); those models are timed by vmap(jacrev(jacrev)) instead.
torch's build/BLAS configuration goes to stderr once (so stdout stays parseable).

A C# benchmark can run this as a subprocess, as bench/JacService.Bench/ModesBench.cs runs peer_functorch.py
(OPENBLAS_CORETYPE=SkylakeX in its environment), and read the "best" lines.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

# The fixtures folder and bench/ are committed: keep them free of __pycache__ (set before importing either).
sys.dont_write_bytecode = True

import functorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
import fixture_models  # noqa: E402  (needs the sys.path entry above)
from peer_functorch import NO_VMAP, _status_kb, measure, reset_peak_rss  # noqa: E402  (same warm-up and timing)

OPS = ["hessian", "hessian_trace"]
# The quantity each op computes, and the rate key its lines carry.
QUANTITY = {"hessian": "hessian", "hessian_trace": "laplacian"}
RATE_KEY = {"hessian": "hessians_per_s", "laplacian": "laplacians_per_s"}


def make_call(op: str, name: str, fx: fixture_models.Fixture, inputs: List[torch.Tensor], chunk: int) -> Callable[[], object]:
    """A zero-argument call that computes `op` for the whole batch (with respect to the first input), in vmapped
    calls of `chunk` samples each."""
    f = fixture_models.per_sample(fx)
    hess = functorch.vmap(functorch.hessian(f, argnums=0))
    revrev = functorch.jacrev(functorch.jacrev(f, argnums=0), argnums=0)
    if name in NO_VMAP:
        # Neither vmap nor forward mode runs (NO_VMAP): reverse over reverse, one sample at a time.
        hess = lambda x: torch.stack([revrev(sample) for sample in x])  # noqa: E731
    n_in = math.prod(inputs[0].shape[1:])
    batch = inputs[0].shape[0]
    parts = [[x[start:start + chunk] for x in inputs] for start in range(0, batch, chunk)]
    try:
        hess(*parts[0])
    except NotImplementedError:
        # functorch.hessian is forward over reverse; torch 1.13 has no forward-mode rule for the backward of LayerNorm
        # or LogSoftmax, so for those models the peer's best is reverse over reverse, still vmapped.
        hess = functorch.vmap(revrev)

    def hessians(part):
        out = hess(*part)
        return out if isinstance(out, tuple) else (out,)

    if op == "hessian":
        return lambda: [hessians(part) for part in parts]
    if op == "hessian_trace":

        def laplacians(part):
            # [c] + out + in + in -> [c, n_out, n_in, n_in] -> trace -> [c, n_out]
            rows = part[0].shape[0]
            return tuple(torch.diagonal(h.reshape(rows, -1, n_in, n_in), dim1=-2, dim2=-1).sum(-1) for h in hessians(part))

        return lambda: [laplacians(part) for part in parts]
    raise ValueError(op)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="1,16,256", help="comma-separated batch sizes")
    p.add_argument("--models", default="pinn,mlp_tanh", help="comma-separated subset of: " + ",".join(fixture_models.NAMES))
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration")
    p.add_argument("--threads", default="1,2",
                   help="comma-separated torch.set_num_threads values to time each op at (0: torch's default)")
    p.add_argument("--chunks", default="0,16,4,1",
                   help="comma-separated samples per vmapped call (0: the whole batch in one call); sizes not below "
                        "the batch are skipped")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of: " + ",".join(OPS))
    args = p.parse_args()

    batches = sorted({int(b) for b in args.batch.split(",") if b})
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(fixture_models.NAMES))
    if unknown:
        p.error(f"unknown models {unknown}; known: {fixture_models.NAMES}")
    ops = [o for o in args.ops.split(",") if o]
    if set(ops) - set(OPS):
        p.error(f"unknown ops {sorted(set(ops) - set(OPS))}; known: {OPS}")
    default_threads = torch.get_num_threads()
    threads_list = [int(t) or default_threads for t in args.threads.split(",") if t]
    chunk_sizes = [int(c) for c in args.chunks.split(",") if c]

    # Which BLAS/LAPACK and how many threads decide the numbers: record them with the run.
    print(torch.__config__.show(), file=sys.stderr)
    print(torch.__config__.parallel_info(), file=sys.stderr, flush=True)

    for name in models:
        fx = fixture_models.build(name)  # float32, eval mode, fixed seed
        for batch in batches:
            inputs = fixture_models.sample_inputs(name, batch)
            best: Dict[str, Optional[dict]] = {QUANTITY[op]: None for op in ops}
            # The whole batch (0) first, then each smaller chunk size once.
            chunks = list(dict.fromkeys(batch if c == 0 else c for c in chunk_sizes if c == 0 or c < batch))
            if name in NO_VMAP:
                chunks = [batch]  # one sample at a time whatever the chunk: the others would time the same loop again
            for threads, chunk, op in [(t, c, o) for t in threads_list for c in chunks for o in ops]:
                # As in peer_functorch.py: switching within one process is fine, the warm-up absorbs the pool's start.
                torch.set_num_threads(threads)
                quantity = QUANTITY[op]
                record = {"peer": "functorch", "model": name, "batch": batch, "op": op, "threads": threads,
                          "chunk": chunk}
                call = make_call(op, name, fx, inputs, chunk)
                try:
                    call()
                except (NotImplementedError, RuntimeError) as e:
                    reason = str(e).splitlines()[0]
                    record.update(median_ms=None, samples_per_s=None, skipped=reason)
                    record[RATE_KEY[quantity]] = None
                    print(json.dumps(record), flush=True)
                    continue
                tracked = reset_peak_rss()
                rss_before = _status_kb("VmRSS")
                times = measure(call, args.seconds)
                peak = _status_kb("VmHWM")
                median = statistics.median(times)
                rate = round(batch / median, 1)
                record.update(median_ms=round(median * 1e3, 4), samples_per_s=rate, repeats=len(times))
                record[RATE_KEY[quantity]] = rate
                if tracked and rss_before is not None and peak is not None:
                    record["peak_rss_mb"] = round(max(0, peak - rss_before) / 1024, 1)
                print(json.dumps(record), flush=True)
                if best[quantity] is None or rate > best[quantity]["samples_per_s"]:
                    best[quantity] = {"peer": "functorch", "model": name, "batch": batch, "op": "best",
                                      "quantity": quantity, "mode": op, "threads": threads, "chunk": chunk,
                                      "median_ms": record["median_ms"], "samples_per_s": rate,
                                      RATE_KEY[quantity]: rate}
                del call
            for quantity, line in best.items():
                if line is None:
                    line = {"peer": "functorch", "model": name, "batch": batch, "op": "best", "quantity": quantity,
                            "mode": None, "threads": None, "chunk": None, "median_ms": None, "samples_per_s": None,
                            RATE_KEY[quantity]: None, "skipped": "every configuration was skipped"}
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
