#!/usr/bin/env python3
"""Turns the result files of scripts/device/check.sh into one markdown page (its summary.md, for docs/gpu.md).

    scripts/device/summarize.py OUT_DIR > OUT_DIR/summary.md
    scripts/device/summarize.py --brief LOAD.json      one line on one jac load report, for the check's log

Missing files leave gaps ("-"), not errors: a check that stopped half-way still gets a summary of what it has.
"""

import json
import sys
from pathlib import Path


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def number(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def main(out):
    lines = ["# Device check results", ""]
    env = out / "env.txt"
    if env.exists():
        lines += ["```", env.read_text().strip(), "```", ""]

    lines += ["## Against the references (1e-4 of the largest entry)", "", "| graphs | checks | failed | worst error |", "|---|---:|---:|---:|"]
    for graphs in ("off", "on"):
        result = load(out / f"compare-graphs-{graphs}.json")
        if result is None:
            lines.append(f"| {graphs} | - | - | - |")
            continue
        errors = [c["error"] for c in result["checks"] if c["error"] is not None]
        lines.append(f"| {graphs} | {len(result['checks'])} | {result['failed']} | {max(errors, default=0):.1e} |")
    for graphs in ("off", "on"):
        result = load(out / f"compare-graphs-{graphs}.json") or {"checks": []}
        for c in result["checks"]:
            if not c["ok"]:
                lines.append(f"- graphs {graphs}: {c['model']} {c['check']} run {c['run']}: {'; '.join(c['problems']) or c['error']}")
    lines.append("")

    jax = {}
    for line in (out / "jax.jsonl").read_text().splitlines() if (out / "jax.jsonl").exists() else []:
        try:
            point = json.loads(line)
        except ValueError:
            continue
        jax[(point.get("model"), point.get("batch"), point.get("op"))] = point

    models = sorted({p.name.split("-")[3] for p in out.glob("load-graphs-*-b*.json")})
    lines += ["## BatchJacobian throughput (Jacobians/s; jac load, 4 callers)", "",
              "| model | batch | graphs off | graphs on | on / off | JAX jacfwd | JAX jacrev | on / JAX best |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model in models:
        for batch in (1, 16, 256):
            served = {}
            for graphs in ("off", "on"):
                run = load(out / f"load-graphs-{graphs}-{model}-b{batch}.json")
                served[graphs] = run["rows_per_s"] if run and run.get("ok") else None
            fwd = (jax.get((model, batch, "jacfwd")) or {}).get("jacobians_per_s")
            rev = (jax.get((model, batch, "jacrev")) or {}).get("jacobians_per_s")
            best = max([v for v in (fwd, rev) if v], default=None)
            lines.append(f"| {model} | {batch} | {number(served['off'])} | {number(served['on'])} | {ratio(served['on'], served['off'])} | "
                         f"{number(fwd)} | {number(rev)} | {ratio(served['on'] or served['off'], best)} |")
    lines.append("")

    wide = sorted(out.glob("wide-graphs-*-b256.json"))
    if wide:
        lines += ["## Batch 256 with 16 callers on 4 connections (JAC_CHECK_WIDE=1; Jacobians/s)", "",
                  "| model | graphs | 4 callers, 1 connection | 16 callers, 4 connections | 16 / 4 | 16 callers / JAX best |", "|---|---|---:|---:|---:|---:|"]
        for path in wide:
            graphs, model = path.name.split("-")[2], path.name.split("-")[3]
            many = (load(path) or {}).get("rows_per_s")
            few = (load(out / f"load-graphs-{graphs}-{model}-b256.json") or {}).get("rows_per_s")
            best = max([v for v in ((jax.get((model, 256, op)) or {}).get("jacobians_per_s") for op in ("jacfwd", "jacrev")) if v], default=None)
            lines.append(f"| {model} | {graphs} | {number(few)} | {number(many)} | {ratio(many, few)} | {ratio(many, best)} |")
        lines.append("")

    lines += ["## AUTO beside each mode (Jacobians/s; jac load, 4 callers)", "",
              "| model | batch | graphs | AUTO (chose) | FORWARD | REVERSE | AUTO / best mode |", "|---|---:|---|---:|---:|---:|---:|"]
    for model in sorted({p.name.split("-")[3] for p in out.glob("mode-graphs-*.json")}):
        for batch in (1, 256):
            for graphs in ("off", "on"):
                rates = {}
                for mode in ("forward", "reverse"):
                    run = load(out / f"mode-graphs-{graphs}-{model}-b{batch}-{mode}.json")
                    rates[mode] = run["rows_per_s"] if run and run.get("ok") else None
                auto = load(out / f"load-graphs-{graphs}-{model}-b{batch}.json")
                auto = auto["rows_per_s"] if auto and auto.get("ok") else None
                info = next((m for m in load(out / f"models-graphs-{graphs}-end.json") or [] if m["name"] == model), {})
                chose = next((c.get("mode", "?").replace("DERIVATIVE_MODE_", "").lower() for c in info.get("derivativeChoices", []) if int(c.get("batch", 0)) == batch), "?")
                best = max([v for v in rates.values() if v], default=None)
                lines.append(f"| {model} | {batch} | {graphs} | {number(auto)} ({chose}) | {number(rates['forward'])} | "
                             f"{number(rates['reverse'])} | {ratio(auto, best)} |")
    lines.append("")

    lines += ["## Single-sample Jacobian latency (ms; one caller)", "",
              "| model | graphs | client p50 | client p99 | server p50 | server p99 | its batch p50 | its batch p99 |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model in models:
        for graphs in ("off", "on"):
            client = (load(out / f"latency-graphs-{graphs}-{model}.json") or {}).get("latency_ms", {})
            server = load(out / f"latency-graphs-{graphs}-{model}-server.json") or {}
            lines.append(f"| {model} | {graphs} | {number(client.get('p50'), 3)} | {number(client.get('p99'), 3)} | "
                         f"{number(server.get('p50_ms'), 3)} | {number(server.get('p99_ms'), 3)} | "
                         f"{number(server.get('batch_p50_ms'), 3)} | {number(server.get('batch_p99_ms'), 3)} |")
    lines.append("")

    info = load(out / "models-graphs-on-end.json") or []
    if info:
        lines += ["## CUDA graphs per version after the run (GetModel)", "", "| model | recorded | eager passes |", "|---|---:|---|"]
        for m in sorted(info, key=lambda m: m["name"]):
            graphs = m.get("cudaGraphs") or {}
            eager = "; ".join(f"{f['pass']}: {f['reason'][:160]}" for f in graphs.get("fallbacks", [])) or "none"
            lines.append(f"| {m['name']} | {graphs.get('recorded', 0)} | {eager} |")
        lines.append("")

    phases = out / "phases.md"
    if phases.exists() and phases.read_text().strip():
        lines += ["## A Jacobian batch's parts, in-process (bench --gpu-phases)", "", phases.read_text().strip(), ""]

    # Issues 13 and 15's CPU bars with the server and jac on cores of their own (JAC_CHECK_CPU_BARS=1).
    for name, title in (("cpu-stream-bar.txt", "64 single-sample streams against pre-batched calls, CPU engine (issue 13)"),
                        ("cpu-auth.txt", "TLS and JWT against plaintext anonymous, CPU engine (issue 15)")):
        bar = out / name
        if bar.exists() and bar.read_text().strip():
            lines += [f"## {title}", "", "```", bar.read_text().strip(), "```", ""]
    modes = out / "cpu-modes.md"
    if modes.exists() and modes.read_text().strip():
        lines += ["## AUTO and Vjp against functorch, CPU engine, server and peer on the same cores (issue 11)", "",
                  modes.read_text().strip(), ""]

    steps = out / "steps.txt"
    if steps.exists():
        lines += ["## Steps", "", "```", steps.read_text().strip(), "```"]
    print("\n".join(lines))


def brief(path):
    run = load(path)
    if run is None:
        return f"no report ({path.name})"
    latency = run.get("latency_ms", {})
    return (f"{run.get('rows_per_s', 0):,.0f} rows/s, p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
            f"{run.get('errors')} errors of {run.get('count')}")


if __name__ == "__main__":
    if sys.argv[1] == "--brief":
        print(brief(Path(sys.argv[2])))
    else:
        main(Path(sys.argv[1]))
