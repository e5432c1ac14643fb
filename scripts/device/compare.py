#!/usr/bin/env python3
"""Checks a running server's answers against the fixtures' functorch references, through `jac` (the device check's
client: the GPU machine has numpy and torch but no grpcio).

For every fixture in tests/fixtures/reference: Predict on the reference batch; BatchJacobian for each input the
reference differentiates, in forward and in reverse mode; Jacobian of the first sample alone. Each call is made
--repeat times, because with CUDA graphs the first run of a shape is eager, the second records its graph and the later
ones replay it: all of them must match. The error of a tensor is max |served - reference| over the largest
|reference| entry (at least 1), the tests' measure; the bar is 1e-4.

    scripts/device/compare.py --jac PATH/jac --target 127.0.0.1:PORT [--repeat 3] [--out result.json]

Prints one line per check and a summary; exits 1 if any check fails. Also:

    scripts/device/compare.py --quantiles BEFORE.prom AFTER.prom --method Jacobian --model mlp_tanh

prints the p50 and p99 of jacservice_request_duration_seconds between two scrapes of /metrics, and of the same
window's one-row Jacobian batches of the model (jacservice_batch_duration_seconds, bucket 1), each interpolated within
buckets, so only as fine as the buckets.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ROOT / "tests" / "fixtures" / "reference"
TOLERANCE = 1e-4


def relative_error(got, want):
    if got["shape"] != want["shape"]:
        return float("inf"), f"shape {got['shape']}, expected {want['shape']}"
    scale = max([1.0] + [abs(v) for v in want["data"]])
    worst = max((abs(g - w) for g, w in zip(got["data"], want["data"])), default=0.0)
    if any(g != g for g in got["data"]):
        return float("inf"), "NaN in the answer"
    return worst / scale, ""


def sample(tensor, index):
    per = len(tensor["data"]) // tensor["shape"][0]
    return {"shape": tensor["shape"][1:], "data": tensor["data"][index * per:(index + 1) * per]}


def call(jac, target, verb, model, inputs, extra, scratch):
    out = Path(scratch) / "answer.json"
    args = [jac, verb, "-t", target, "-m", model, "-i", str(inputs), "--out", str(out), "--timeout", "120s", *extra]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[:400]}")
    return json.loads(out.read_text())


def checks(reference):
    """(label, verb, input file key, extra args, expected tensors as {section: {name: tensor}})."""
    yield "predict", "predict", "batch", [], {"outputs": reference["outputs"]}
    for wrt, jacobians in reference["jacobians"].items():
        for mode in ("forward", "reverse"):
            yield (f"batch-jacobian d/d{wrt} {mode}", "batch-jacobian", "batch", ["--wrt", wrt, "--mode", mode],
                   {"outputs": reference["outputs"], "jacobians": jacobians})
        yield (f"jacobian (sample 0) d/d{wrt}", "jacobian", "sample", ["--wrt", wrt],
               {"outputs": {k: sample(v, 0) for k, v in reference["outputs"].items()},
                "jacobians": {k: sample(v, 0) for k, v in jacobians.items()}})


def run_checks(args):
    results, failed = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(REFERENCES.glob("*.json")):
            reference = json.loads(path.read_text())
            model = reference["model"]
            files = {"batch": path, "sample": Path(scratch) / f"{model}-sample.json"}
            files["sample"].write_text(json.dumps({"inputs": {k: sample(v, 0) for k, v in reference["inputs"].items()}}))
            for label, verb, inputs, extra, expected in checks(reference):
                for run in range(args.repeat):
                    entry = {"model": model, "check": label, "run": run}
                    try:
                        answer = call(args.jac, args.target, verb, model, files[inputs], extra, scratch)
                        worst, problems = 0.0, []
                        for section, tensors in expected.items():
                            for tensor_name, want in tensors.items():
                                got = answer.get(section, {}).get(tensor_name)
                                if got is None:
                                    problems.append(f"no {section}.{tensor_name}")
                                    continue
                                error, why = relative_error(got, want)
                                worst = max(worst, error)
                                if why:
                                    problems.append(f"{section}.{tensor_name}: {why}")
                        entry.update(error=worst, mode=answer.get("mode", ""), ok=not problems and worst <= TOLERANCE,
                                     problems=problems)
                    except RuntimeError as e:
                        entry.update(error=None, ok=False, problems=[str(e)])
                    failed += not entry["ok"]
                    results.append(entry)
                    err = "-" if entry["error"] is None else f"{entry['error']:.2e}"
                    print(f"{'ok  ' if entry['ok'] else 'FAIL'} {model:16} {label:36} run {run}  error {err}  {'; '.join(entry['problems'])}",
                          flush=True)
    print(f"{len(results) - failed} of {len(results)} checks within {TOLERANCE:g} of the references")
    if args.out:
        Path(args.out).write_text(json.dumps({"tolerance": TOLERANCE, "failed": failed, "checks": results}, indent=1))
    return 1 if failed else 0


def buckets(text, metric, wanted):
    """Cumulative counts by upper bound of one histogram, summed over the series whose labels include `wanted`."""
    found = {}
    pattern = re.compile(r'^' + metric + r'_bucket\{(.*)\} (\S+)$')
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(labels.get(k) == v for k, v in wanted.items()):
            bound = float(labels["le"])
            found[bound] = found.get(bound, 0.0) + float(m.group(2))
    return found


def percentiles(before, after):
    """p50 and p99 (ms) of what a histogram counted between two scrapes, interpolated within a bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    out = {"count": total}
    for q in (0.5, 0.99):
        target, value, lower, below = q * total, None, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts):
            if cumulative >= target and total > 0:
                upper = bound if bound != float("inf") else lower
                share = (target - below) / max(cumulative - below, 1e-12)
                value = lower + (upper - lower) * share
                break
            lower, below = bound, cumulative
        out[f"p{int(q * 100)}_ms"] = None if value is None else round(value * 1000, 3)
    return out


def quantiles(args):
    before, after = (Path(p).read_text() for p in args.quantiles)
    request = {"method": args.method, "model": args.model, "status": "OK"}
    out = {"method": args.method, "model": args.model}
    out.update(percentiles(buckets(before, "jacservice_request_duration_seconds", request),
                           buckets(after, "jacservice_request_duration_seconds", request)))
    # The same window's one-row batches (one caller: every batch is one request's row), all modes together: how much of
    # a request's time its batch took, without reading it off a mean.
    batch = {"model": args.model, "kind": "jacobian", "bucket": "1"}
    rows = percentiles(buckets(before, "jacservice_batch_duration_seconds", batch),
                       buckets(after, "jacservice_batch_duration_seconds", batch))
    out.update({f"batch_{k}": v for k, v in rows.items()})
    print(json.dumps(out))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jac")
    parser.add_argument("--target")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--quantiles", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--method")
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.quantiles:
        return quantiles(args)
    if not args.jac or not args.target:
        parser.error("--jac and --target are required")
    return run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
