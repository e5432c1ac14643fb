#!/usr/bin/python3
"""Deep graphs: what a model of many sequential nodes costs before its first answers. The model is a tanh recurrence of
16 units unrolled by torch's exporter over a number of steps (3 nodes a step in the file, 8 in its reverse derivative
graph), the shape of a scripted loop or a very deep network. What grows with the steps is
ONNX Runtime's preparation of each session: Predict's session at load and each compiled derivative graph's on its first
call.

    /usr/bin/python3 bench/deep_graphs.py export DIR [--steps 150,300,600,1200]
    /usr/bin/python3 bench/deep_graphs.py first --target 127.0.0.1:PORT [--steps ...]

`first` times, per model, the first call of each kind and the median of five later ones: a single-sample reverse-mode
Jacobian, a Vjp and a Predict, in that order. `bench/deep_graphs.sh` runs it against server builds in turn.
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch


class Recurrence(torch.nn.Module):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.state = torch.nn.Linear(16, 16)
        self.input = torch.nn.Linear(3, 16)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 16)
        for _ in range(self.steps):
            h = torch.tanh(self.state(h) + self.input(x))
        return h


def export(folder: str, steps: list) -> None:
    for n in steps:
        torch.manual_seed(0)
        path = os.path.join(folder, f"deep{n}", "1", "model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.onnx.export(Recurrence(n), torch.randn(2, 3), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
        print(f"{path}: {os.path.getsize(path):,} bytes")


def first_calls(target: str, steps: list) -> None:
    import jacservice

    client = jacservice.Client(target, timeout=600)
    x = {"x": np.random.default_rng(1).standard_normal((1, 3)).astype(np.float32)}
    cotangent = {"y": np.ones((1, 16), np.float32)}
    for n in steps:
        name = f"deep{n}"
        points = []
        for kind, call in (("Jacobian", lambda: client.batch_jacobian(name, x, mode="reverse")),
                           ("Vjp", lambda: client.vjp(name, x, cotangent)),
                           ("Predict", lambda: client.predict(name, x))):
            start = time.perf_counter()
            call()
            first = time.perf_counter() - start
            later = []
            for _ in range(5):
                start = time.perf_counter()
                call()
                later.append(time.perf_counter() - start)
            points.append(f"{kind} {1e3 * first:,.0f} ms first, {1e3 * statistics.median(later):,.1f} ms later")
        print(f"{name}: {'; '.join(points)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["export", "first"])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--target", default="127.0.0.1:50912")
    parser.add_argument("--steps", default="150,300,600,1200")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if args.what == "export":
        export(args.folder, steps)
    else:
        first_calls(args.target, steps)


if __name__ == "__main__":
    main()
