#!/usr/bin/python3
"""Image classifiers from torchvision beside PyTorch: Predict and the saliency Vjp (the gradient of one logit per image
with respect to the image, what attribution methods ask for), served by JacService against eager PyTorch in the same
process, float32, the peer at 1 and 2 threads.

Needs Debian's python3-torchvision (0.14; not installed by scripts/install-test-deps.sh: the tests do not need it) and
the Python client on the path (clients/python, built: `pip install clients/python` or PYTHONPATH=clients/python/src
with its generated jacservice/v1).

    /usr/bin/python3 bench/vision_peer.py export DIR [--models resnet18,mobilenet_v2,convnext_tiny]
    dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll --urls http://127.0.0.1:50912 \\
        --Models:Root=DIR --Telemetry:MetricsUrl= &
    /usr/bin/python3 bench/vision_peer.py run --target 127.0.0.1:50912 [--models ...] [--batch 1,8,32] [--seconds 4]
    /usr/bin/python3 bench/vision_peer.py first --target 127.0.0.1:50912 [--models ...] [--batch 1,8] [--pid SERVER_PID]

Weights are torchvision's initialisation under torch.manual_seed(0) (no download), the same in both processes. Every
point is warmed up once, then timed for --seconds (at least 3 calls); medians are printed, one line per (model, batch).
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torchvision


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def export(folder: str, models: list) -> None:
    for name in models:
        path = os.path.join(folder, name, "1", "model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.onnx.export(build(name), torch.randn(1, 3, 224, 224), path, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
        print(f"{path}: {os.path.getsize(path):,} bytes")


def median_seconds(call, seconds: float) -> float:
    call()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(target: str, models: list, batches: list, seconds: float) -> None:
    import jacservice

    client = jacservice.Client(target, timeout=600)
    for name in models:
        model = build(name)
        for batch in batches:
            rng = np.random.default_rng(batch)
            images = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            cotangents = np.zeros((batch, 1000), np.float32)
            cotangents[np.arange(batch), rng.integers(0, 1000, batch)] = 1
            x, u = torch.from_numpy(images), torch.from_numpy(cotangents)

            def peer_vjp():
                xx = x.clone().requires_grad_(True)
                torch.autograd.grad(model(xx), xx, u)

            def peer_predict():
                with torch.no_grad():
                    model(x)

            served_vjp = median_seconds(lambda: client.vjp(name, {"image": images}, {"logits": cotangents}), seconds)
            served_predict = median_seconds(lambda: client.predict(name, {"image": images}), seconds)
            peer = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                peer[threads] = (median_seconds(peer_vjp, seconds), median_seconds(peer_predict, seconds))
            print(f"{name} batch {batch}: Vjp served {1e3 * served_vjp:.0f} ms, PyTorch {1e3 * peer[1][0]:.0f} ms (1 thread) "
                  f"{1e3 * peer[2][0]:.0f} ms (2 threads), ratio to the best {min(p[0] for p in peer.values()) / served_vjp:.2f}; "
                  f"Predict served {1e3 * served_predict:.0f} ms, PyTorch {1e3 * peer[1][1]:.0f} / {1e3 * peer[2][1]:.0f} ms, "
                  f"ratio {min(p[1] for p in peer.values()) / served_predict:.2f}", flush=True)


def first_calls(target: str, models: list, batches: list, pid: int) -> None:
    """The first three calls of each kind and batch size on a fresh server, in milliseconds: what the warm-up leaves to
    the first callers (a batch size it did not warm times the compiled graph against the interpreter). With --pid, the
    server's resident memory before and after."""
    import jacservice

    def resident() -> str:
        if not pid:
            return ""
        with open(f"/proc/{pid}/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        return f"{kib // 1024:,} MiB"

    client = jacservice.Client(target, timeout=600)
    print(f"server resident: {resident()}", flush=True)
    for name in models:
        rng = np.random.default_rng(1)
        points = []
        for batch in batches:
            images = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            cotangents = np.zeros((batch, 1000), np.float32)
            cotangents[:, 3] = 1
            for kind, call in (("Vjp", lambda: client.vjp(name, {"image": images}, {"logits": cotangents})),
                               ("Predict", lambda: client.predict(name, {"image": images}))):
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    call()
                    times.append(f"{1e3 * (time.perf_counter() - start):,.0f}")
                points.append(f"{kind} of {batch}: {' / '.join(times)} ms")
        print(f"{name}: {'; '.join(points)}", flush=True)
    print(f"server resident: {resident()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["export", "run", "first"])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--target", default="127.0.0.1:50912")
    parser.add_argument("--models", default="resnet18,mobilenet_v2,convnext_tiny")
    parser.add_argument("--batch", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--pid", type=int, default=0, help="first: the server's process, for its resident memory")
    args = parser.parse_args()
    models = args.models.split(",")
    if args.what == "export":
        export(args.folder, models)
    elif args.what == "first":
        first_calls(args.target, models, [int(b) for b in args.batch.split(",")], args.pid)
    else:
        run(args.target, models, [int(b) for b in args.batch.split(",")], args.seconds)


if __name__ == "__main__":
    main()
