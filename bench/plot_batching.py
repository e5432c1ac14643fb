#!/usr/bin/python3
"""Draws the latency/throughput curve of the micro-batching benchmark.

    /usr/bin/python3 bench/plot_batching.py bench/results/batching-2026-11-28.md docs/batching-curve.png

Reads the markdown table that `JacService.Bench --batching` prints (rows "| on | 64 | 9337 | 6.832 | ...") and plots
p50 and p99 latency against throughput for batching on and off, one point per concurrency level, labelled with the
concurrency. Needs Debian's python3-matplotlib (only for this picture, not for the tests).
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    rows = {}
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("on", "off"):
            mode, conc, rate, p50, p95, p99, mean = cells
            rows.setdefault(mode, []).append((int(conc), float(rate), float(p50), float(p99), float(mean)))
    return rows


def main(source, target):
    rows = read(source)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for mode, colour in (("on", "tab:blue"), ("off", "tab:red")):
        points = sorted(rows.get(mode, []))
        rates = [p[1] for p in points]
        ax.plot(rates, [p[2] for p in points], "o-", color=colour, label=f"batching {mode}, p50")
        ax.plot(rates, [p[3] for p in points], "s--", color=colour, alpha=0.5, label=f"batching {mode}, p99")
        for conc, rate, p50, _, _ in points:
            ax.annotate(str(conc), (rate, p50), textcoords="offset points", xytext=(4, -10), fontsize=8, color=colour)
    ax.set_xlabel("throughput, single-sample Jacobians/s")
    ax.set_ylabel("latency, ms (log)")
    ax.set_yscale("log")
    ax.set_title("mlp_tanh over gRPC, 2 vCPU; labels = concurrent callers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
