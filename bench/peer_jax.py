#!/usr/bin/python3
"""JAX peer for JacService's GPU benchmark.

Times, on the fixture models (same architectures and weights, rebuilt from
tests/fixtures/fixture_models.py with their fixed seeds, in float32), on JAX's
default device (the GPU where JAX has one):

    jacfwd  jax.jit(jax.vmap(jax.jacfwd(f)))   per-sample Jacobians, forward mode
    jacrev  jax.jit(jax.vmap(jax.jacrev(f)))   per-sample Jacobians, reverse mode
    vjp     jax.jit(jax.vmap(vjp)) with one cotangent per sample   (the peer of a Vjp RPC)

at every batch size in --batch, reporting the median call time after a warm-up,
and the time of the first call (trace + XLA compile + one run) separately.

    python3 bench/peer_jax.py [--batch 1,16,256] [--models mlp_tanh,pinn] [--seconds 2]
        [--ops jacfwd,jacrev,vjp] [--precision float32]

needs jax (with CUDA), numpy and torch. torch only rebuilds the fixtures' weights
and reference outputs; JAX never sees a torch tensor.

    /usr/bin/python3 bench/peer_jax.py --check

needs numpy and torch only (no JAX): it runs the very forward functions that JAX
differentiates, with numpy as the array namespace, against the torch modules.
That is how the JAX translations of the models are verified on a machine without
JAX; the timing mode repeats the comparison with JAX itself before timing a model.

stdout: one JSON object per line, per (model, batch):
  - one line per op:
      {"peer": "jax", "model": ..., "batch": ..., "op": "jacfwd"|"jacrev"|"vjp",
       "median_ms": ..., "samples_per_s": ..., "repeats": ..., "compile_ms": ...,
       "device": ..., "precision": ...}
    Jacobian lines (jacfwd, jacrev) also carry "jacobians_per_s" (= samples_per_s);
    vjp lines deliberately do not, as in peer_functorch.py.
  - then one "best" line, the faster of jacfwd and jacrev:
      {"peer": "jax", "model": ..., "batch": ..., "op": "best", "mode": "jacfwd"|"jacrev",
       "median_ms": ..., "jacobians_per_s": ..., "samples_per_s": ..., "device": ..., "precision": ...}
  A configuration that did not run (e.g. out of GPU memory) carries "skipped" (the
  reason) and null timings; a model whose JAX forward does not match torch gets one
  "skipped" line and is not timed.
JAX's version, backend and devices go to stderr once (so stdout stays parseable).

Only the derivatives are timed, on the first input and all outputs (as BatchJacobian
does with an empty `of`); two_inputs' second input is a per-sample argument, not a
constant, so XLA cannot fold it. jacfwd/jacrev do not return the outputs, vjp does.

Precision: on Ampere and later GPUs JAX's default float32 matmuls and convolutions
run on TF32 tensor cores (about 3 significant digits). The service computes in true
float32, so --precision defaults to "float32" (true float32); pass "tensorfloat32"
or "default" to time the TF32 path (its forward check is then held to 1e-2
instead of 1e-4).

The model code below is written once, over an array namespace `xp` (numpy or
jax.numpy) and an `erf`, with only operations both namespaces have with the same
meaning: no in-place updates, no torch-specific ops. Convolutions are im2col
(shifted slices of the padded input) + einsum for that reason, so the JAX numbers
are for XLA's fusion of that formulation, not for cuDNN's convolution kernels.
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# The fixtures folder is committed: keep it free of __pycache__.
sys.dont_write_bytecode = True

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import fixture_models  # noqa: E402  (needs the sys.path entry above)

# Minimum timed calls per point, so the median means something even when one call
# takes longer than --seconds.
MIN_REPEATS = 5
WARMUP_CALLS = 3
# Largest error of a translated forward, relative to max(1, max |torch output|).
CHECK_TOL = 1e-4
# TF32 keeps 10 mantissa bits: the reduced precisions cannot meet CHECK_TOL.
CHECK_TOL_REDUCED = 1e-2
CHECK_BATCH = 8

OPS = ["jacfwd", "jacrev", "vjp"]
JACOBIAN_OPS = {"jacfwd", "jacrev"}

# torch's default eps for BatchNorm2d and LayerNorm, which the fixtures keep.
BN_EPS = 1e-5
LN_EPS = 1e-5

Params = Dict[str, object]


# ---- building blocks, over xp (numpy or jax.numpy) ------------------------------

def linear(p: Params, name: str, x):
    """nn.Linear on the last axis (works for [in] and [tokens, in])."""
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def conv2d(xp, x, weight, bias, padding: int, groups: int):
    """nn.Conv2d (stride 1) of ONE sample [C, H, W] -> [O, H', W'].

    im2col: every kernel offset is a shifted slice of the padded input, and the
    convolution is one einsum of those slices with the weights, per group.
    """
    c, h, w = x.shape
    o, c_per_group, kh, kw = weight.shape
    xpad = xp.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    oh, ow = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    patches = xp.stack([xpad[:, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw)], axis=1)
    patches = patches.reshape(groups, c_per_group, kh * kw, oh, ow)
    wg = weight.reshape(groups, o // groups, c_per_group, kh * kw)
    out = xp.einsum("gock,gckhw->gohw", wg, patches).reshape(o, oh, ow)
    return out + bias[:, None, None]


def pool2x2(xp, x, reduce):
    """2x2 pooling with stride 2 of [C, H, W] (H, W even), `reduce` = xp.max or xp.mean."""
    c, h, w = x.shape
    return reduce(x.reshape(c, h // 2, 2, w // 2, 2), axis=(2, 4))


def softplus(xp, x):
    # torch's softplus (beta 1, threshold 20) returns x above the threshold. The
    # minimum keeps exp() finite in the branch where() discards: an inf there
    # would turn JAX's gradient into 0 * inf = NaN.
    return xp.where(x > 20.0, x, xp.log1p(xp.exp(xp.minimum(x, 20.0))))


def sigmoid(xp, x):
    # Exact identity; unlike 1 / (1 + exp(-x)) it never overflows, so its
    # derivative stays finite for large |x|.
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


def elu(xp, x):
    # expm1 of the clipped value, for the same reason as in softplus.
    return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0.0)))


def log_softmax(xp, z):
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


# ---- the fixture models, one sample each (no batch axis) -------------------------

def mlp_tanh(p, xp, erf, x):
    return linear(p, "l3", xp.tanh(linear(p, "l2", xp.tanh(linear(p, "l1", x)))))


def pinn(p, xp, erf, xt):
    h = xp.concatenate([xt, xp.sin(math.pi * xt)])
    for layer in ("l1", "l2", "l3", "l4"):
        h = xp.tanh(linear(p, layer, h))
    return softplus(xp, linear(p, "head", h))


def relu_classifier(p, xp, erf, x):
    h = xp.maximum(linear(p, "l1", x), 0.0)
    h = linear(p, "l2", h)
    h = xp.where(h > 0, h, 0.1 * h)  # LeakyReLU(0.1)
    return log_softmax(xp, linear(p, "l3", h))


def small_cnn(p, xp, erf, image):
    x = conv2d(xp, image, p["conv1.weight"], p["conv1.bias"], padding=1, groups=1)
    # BatchNorm2d in eval mode: the running statistics, per channel.
    scale = p["bn.weight"] / xp.sqrt(p["bn.running_var"] + BN_EPS)
    x = (x - p["bn.running_mean"][:, None, None]) * scale[:, None, None] + p["bn.bias"][:, None, None]
    x = pool2x2(xp, xp.maximum(x, 0.0), xp.max)
    x = conv2d(xp, x, p["conv2.weight"], p["conv2.bias"], padding=1, groups=2)
    x = pool2x2(xp, elu(xp, x), xp.mean)
    return linear(p, "fc", x.reshape(-1))  # [C, H, W] order, as torch's view()


def two_outputs(p, xp, erf, x):
    h = sigmoid(xp, linear(p, "trunk", x))
    return linear(p, "mean_head", h), softplus(xp, linear(p, "log_var_head", h))


def two_inputs(p, xp, erf, x, z):
    hx = xp.tanh(linear(p, "lx", x))
    zsq = z * z
    ratio = x[4:] / xp.sqrt(1.0 + zsq)
    return linear(p, "out", xp.concatenate([hx, z * x[:4], ratio, zsq]))


def layernorm_gelu(p, xp, erf, x):
    h = linear(p, "l1", x)  # [tokens, 32]
    mu = xp.mean(h, axis=-1, keepdims=True)
    var = xp.mean((h - mu) ** 2, axis=-1, keepdims=True)  # biased, as LayerNorm
    h = (h - mu) / xp.sqrt(var + LN_EPS) * p["ln.weight"] + p["ln.bias"]
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))  # exact GELU
    return xp.mean(linear(p, "l2", h), axis=0)  # mean over tokens -> [8]


def wide_classifier(p, xp, erf, x):
    h = xp.maximum(linear(p, "l1", x), 0.0)
    h = xp.maximum(linear(p, "l2", h), 0.0)
    return linear(p, "l3", h)


def layer_norm(p, xp, name, x):
    mu = xp.mean(x, axis=-1, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=-1, keepdims=True)  # biased, as LayerNorm
    return (x - mu) / xp.sqrt(var + LN_EPS) * p[name + ".weight"] + p[name + ".bias"]


def attention(p, xp, erf, x):
    """The pre-norm encoder layer of fixture_models.Attention on one sample [6 tokens, 8 features]."""
    tokens, width, heads = 6, 8, 2
    h = x + p["position"]
    a = layer_norm(p, xp, "layer.norm1", h)
    qkv = a @ p["layer.self_attn.in_proj_weight"].T + p["layer.self_attn.in_proj_bias"]  # [tokens, 3 * width]
    q, k, v = (qkv[:, i * width:(i + 1) * width].reshape(tokens, heads, width // heads).transpose(1, 0, 2) for i in range(3))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(width // heads) + p["causal"]
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))  # the -inf of the mask gives 0
    mixed = (e / xp.sum(e, axis=-1, keepdims=True)) @ v  # [heads, tokens, width / heads]
    h = h + linear(p, "layer.self_attn.out_proj", mixed.transpose(1, 0, 2).reshape(tokens, width))
    f = linear(p, "layer.linear1", layer_norm(p, xp, "layer.norm2", h))
    h = h + linear(p, "layer.linear2", 0.5 * f * (1.0 + erf(f / math.sqrt(2.0))))
    return linear(p, "head", xp.mean(h, axis=0))


# Model name -> (forward of one sample, its input names in argument order).
MODELS: Dict[str, Tuple[Callable, List[str]]] = {
    "mlp_tanh": (mlp_tanh, ["x"]),
    "pinn": (pinn, ["xt"]),
    "relu_classifier": (relu_classifier, ["x"]),
    "small_cnn": (small_cnn, ["image"]),
    "two_outputs": (two_outputs, ["x"]),
    "two_inputs": (two_inputs, ["x", "z"]),
    "layernorm_gelu": (layernorm_gelu, ["x"]),
    "wide_classifier": (wide_classifier, ["x"]),
    "attention": (attention, ["x"]),
}


# ---- shared with the check -------------------------------------------------------

def load(name: str) -> Tuple[fixture_models.Fixture, Dict[str, np.ndarray]]:
    """The torch fixture and its float parameters/buffers as float32 numpy arrays."""
    fx = fixture_models.build(name)
    forward_inputs = MODELS[name][1]
    if [n for n, _ in fx.inputs] != forward_inputs:
        raise SystemExit(f"{name}: fixture inputs {fx.inputs} do not match the translation's {forward_inputs}")
    # Integer buffers (BatchNorm's num_batches_tracked) play no part in eval mode.
    params = {k: v.detach().cpu().numpy().astype(np.float32)
              for k, v in fx.module.state_dict().items() if v.is_floating_point()}
    return fx, params


def torch_outputs(fx: fixture_models.Fixture, inputs: Sequence[torch.Tensor]) -> List[np.ndarray]:
    with torch.no_grad():
        out = fx.module(*inputs)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def relative_error(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """Largest |got - want| over all outputs, relative to max(1, max |want|)."""
    if len(got) != len(want):
        return math.inf
    worst = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != w.shape:
            return math.inf
        scale = max(1.0, float(np.abs(w).max()))
        worst = max(worst, float(np.abs(g - w).max()) / scale)
    return worst


def as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def numpy_erf(a: np.ndarray) -> np.ndarray:
    # math.erf per element: numpy has no erf, and scipy is not needed for 8 samples.
    return np.vectorize(math.erf, otypes=[np.float64])(a).astype(a.dtype)


def check_numpy(models: List[str]) -> int:
    """--check: the numpy evaluation of every translation against torch, sample by sample."""
    failed = []
    for name in models:
        forward, _ = MODELS[name]
        fx, params = load(name)
        inputs = fixture_models.sample_inputs(name, CHECK_BATCH)
        want = torch_outputs(fx, inputs)
        arrays = [t.numpy() for t in inputs]
        per_sample = [as_tuple(forward(params, np, numpy_erf, *(a[i] for a in arrays))) for i in range(CHECK_BATCH)]
        got = [np.stack([s[k] for s in per_sample]) for k in range(len(per_sample[0]))]
        # float32 all the way through, as JAX will run it (a float64 leak would flatter the check).
        dtypes = sorted({str(g.dtype) for g in got})
        err = relative_error(got, want)
        ok = err <= CHECK_TOL and dtypes == ["float32"]
        print(f"{name:16s} max rel error {err:.3e}  dtype {','.join(dtypes)}  {'ok' if ok else 'FAIL'}", flush=True)
        if not ok:
            failed.append(name)
    if failed:
        print(f"FAILED: {', '.join(failed)} (tolerance {CHECK_TOL:g}, relative to max(1, max |output|))")
        return 1
    print(f"all {len(models)} models match torch within {CHECK_TOL:g}")
    return 0


# ---- timing with JAX -------------------------------------------------------------

def measure(call: Callable[[], object], seconds: float) -> Tuple[float, List[float]]:
    """(first call's wall time, per-call wall times after the warm-up), in seconds.

    The first call traces and compiles, which a long-running server pays once, so
    it is reported apart; the further warm-up calls absorb allocator growth and
    autotuning. The median is robust to the occasional hiccup on a shared host.
    """
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(WARMUP_CALLS):
        call()
    times: List[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < MIN_REPEATS or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, times


def make_batched(jax, jnp, op: str, forward: Callable) -> Callable:
    """jit(vmap(op)) of forward, as fn(params, *args); args are the inputs, preceded
    by the cotangents for vjp. Derivatives are w.r.t. the first input only."""
    erf = jax.scipy.special.erf

    def model(params):
        return lambda *xs: forward(params, jnp, erf, *xs)

    if op == "jacfwd":
        def batched(params, *inputs):
            return jax.vmap(jax.jacfwd(model(params), argnums=0))(*inputs)
    elif op == "jacrev":
        def batched(params, *inputs):
            return jax.vmap(jax.jacrev(model(params), argnums=0))(*inputs)
    elif op == "vjp":
        def batched(params, cots, *inputs):
            f = model(params)

            def one(x0, cot, *rest):
                # The other inputs are vmapped arguments closed over here, so they stay per-sample.
                out, pullback = jax.vjp(lambda a: f(a, *rest), x0)
                (grad,) = pullback(cot)
                return out, grad

            return jax.vmap(one)(inputs[0], cots, *inputs[1:])
    else:
        raise ValueError(op)
    # Parameters are an argument rather than closed-over constants, so XLA treats
    # them as the served model's weights (device buffers), not compile-time literals.
    return jax.jit(batched)


def short_reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def run_jax(models: List[str], batches: List[int], ops: List[str], seconds: float, precision: str) -> int:
    import jax
    import jax.numpy as jnp
    import jax.scipy.special  # noqa: F401  (jax.scipy is not imported by `import jax` in every version)

    # "float32" and "tensorfloat32" are the names every JAX since 0.4 accepts
    # ("highest" is newer); "default" leaves the option unset.
    if precision != "default":
        jax.config.update("jax_default_matmul_precision", precision)
    tol = CHECK_TOL if precision == "float32" else CHECK_TOL_REDUCED
    try:
        from importlib.metadata import version
        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001  (only informational)
        jaxlib_version = "unknown"
    device = str(jax.devices()[0])
    print(f"jax {jax.__version__}, jaxlib {jaxlib_version}, backend {jax.default_backend()}, "
          f"devices {jax.devices()}, matmul precision {precision}", file=sys.stderr, flush=True)

    common = {"peer": "jax", "device": device, "precision": precision}
    for name in models:
        forward, _ = MODELS[name]
        fx, params_np = load(name)
        params = jax.device_put(params_np)

        check_inputs = fixture_models.sample_inputs(name, CHECK_BATCH)
        want = torch_outputs(fx, check_inputs)
        try:
            got = jax.jit(jax.vmap(lambda *xs: forward(params, jnp, jax.scipy.special.erf, *xs)))(
                *(jax.device_put(t.numpy()) for t in check_inputs))
            err = relative_error([np.asarray(g) for g in as_tuple(got)], want)
        except Exception as e:  # noqa: BLE001  (report and go on with the next model)
            err, why = math.inf, short_reason(e)
        else:
            why = f"max rel error {err:.3e}"
        print(f"{name}: JAX forward vs torch, {why}", file=sys.stderr, flush=True)
        if not err <= tol:
            print(f"error: {name}: JAX forward does not match torch ({why}, tolerance {tol:g}); not timed",
                  file=sys.stderr, flush=True)
            print(json.dumps({**common, "model": name, "batch": None, "op": None,
                              "skipped": f"forward check failed: {why} > {tol:g}"}), flush=True)
            continue
        out_shapes = [w.shape[1:] for w in want]

        for batch in batches:
            inputs_np = [t.numpy() for t in fixture_models.sample_inputs(name, batch)]
            best: Optional[dict] = None
            for op in ops:
                record = {**common, "model": name, "batch": batch, "op": op}
                try:
                    fn = make_batched(jax, jnp, op, forward)
                    args = [jax.device_put(a) for a in inputs_np]
                    if op == "vjp":
                        # One cotangent per sample and output; values do not affect the timing.
                        rng = np.random.default_rng(0)
                        cots = [jax.device_put(rng.standard_normal((batch, *s), dtype=np.float32))
                                for s in out_shapes]
                        args = [tuple(cots) if len(cots) > 1 else cots[0]] + args
                    first, times = measure(lambda: jax.block_until_ready(fn(params, *args)), seconds)
                except Exception as e:  # noqa: BLE001  (e.g. out of GPU memory: report, keep going)
                    record.update(median_ms=None, samples_per_s=None, repeats=None, compile_ms=None,
                                  skipped=short_reason(e))
                    if op in JACOBIAN_OPS:
                        record["jacobians_per_s"] = None
                    print(json.dumps(record), flush=True)
                    continue
                finally:
                    fn = args = None  # release the device buffers before the next configuration

                median = statistics.median(times)
                rate = round(batch / median, 1)
                record.update(median_ms=round(median * 1e3, 4), samples_per_s=rate, repeats=len(times),
                              compile_ms=round(first * 1e3, 1))
                if op in JACOBIAN_OPS:
                    record["jacobians_per_s"] = rate
                    if best is None or rate > best["jacobians_per_s"]:
                        best = {**common, "model": name, "batch": batch, "op": "best", "mode": op,
                                "median_ms": record["median_ms"], "jacobians_per_s": rate, "samples_per_s": rate}
                print(json.dumps(record), flush=True)
            if JACOBIAN_OPS & set(ops):
                if best is None:
                    best = {**common, "model": name, "batch": batch, "op": "best", "mode": None,
                            "median_ms": None, "jacobians_per_s": None, "samples_per_s": None,
                            "skipped": "every Jacobian configuration was skipped"}
                print(json.dumps(best), flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="1,16,256", help="comma-separated batch sizes")
    p.add_argument("--models", default="", help="comma-separated subset of: " + ",".join(fixture_models.NAMES))
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of: " + ",".join(OPS))
    p.add_argument("--precision", default="float32", choices=["float32", "tensorfloat32", "default"],
                   help="jax_default_matmul_precision for matmuls and einsums: float32 (true float32, the "
                        "default), tensorfloat32, or default (leave JAX's own default: TF32 on recent GPUs)")
    p.add_argument("--check", action="store_true",
                   help="no timing and no JAX: check the numpy evaluation of every translation against torch")
    args = p.parse_args()

    models = [m for m in args.models.split(",") if m] or fixture_models.NAMES
    unknown = sorted(set(models) - set(fixture_models.NAMES))
    if unknown:
        p.error(f"unknown models {unknown}; known: {fixture_models.NAMES}")
    untranslated = sorted(set(models) - set(MODELS))
    if untranslated:
        p.error(f"no JAX translation for {untranslated}: add it to MODELS")
    if args.check:
        return check_numpy(models)

    ops = [o for o in args.ops.split(",") if o]
    if set(ops) - set(OPS):
        p.error(f"unknown ops {sorted(set(ops) - set(OPS))}; known: {OPS}")
    batches = sorted({int(b) for b in args.batch.split(",") if b})
    return run_jax(models, batches, ops, args.seconds, args.precision)


if __name__ == "__main__":
    sys.exit(main())
