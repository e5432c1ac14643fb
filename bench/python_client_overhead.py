#!/usr/bin/python3
"""Per-call cost of the `jacservice` Python package against a bare generated stub, in the same run, same server.

One caller, sequential calls at batch 1 (where a client's own work weighs most), alternating call by call between the
bare stub and the package (which goes first flips every round) so that machine noise hits both alike.
The bare stub gets every advantage: its request is built from a ready Python list and its answer is left as the
protobuf container; the package takes and returns NumPy arrays, checks the shapes against the signature and wraps the
call in its deadline and retry loop. Both channels carry the same options.

    bench/python_client_overhead.sh            # builds and starts the server, makes a venv, installs the package
    venv/bin/python bench/python_client_overhead.py --target 127.0.0.1:50998 --warmup 15 --rounds 10 --calls 500
"""

import argparse
import asyncio
import statistics
import time
import timeit
from typing import Callable, Dict, List

import grpc
import numpy as np

import jacservice
from jacservice import _core as core
from jacservice.v1 import jacservice_pb2 as pb
from jacservice.v1 import jacservice_pb2_grpc as rpc


def bare_calls(stub: rpc.JacobianServiceStub, model: str, name: str, x: np.ndarray) -> Dict[str, Callable[[], object]]:
    shape, data = list(x.shape), x.ravel().tolist()

    def predict() -> object:
        r = stub.Predict(pb.PredictRequest(model=model, inputs={name: pb.Tensor(shape=shape, data=data)}), timeout=10)
        return r.outputs

    def batch_jacobian() -> object:
        r = stub.BatchJacobian(pb.BatchJacobianRequest(model=model, inputs={name: pb.Tensor(shape=shape, data=data)}),
                               timeout=10)
        return r.jacobians

    return {"predict": predict, "batch_jacobian": batch_jacobian}


def package_calls(client: jacservice.Client, model: str, name: str, x: np.ndarray) -> Dict[str, Callable[[], object]]:
    return {"predict": lambda: client.predict(model, {name: x}).outputs,
            "batch_jacobian": lambda: client.batch_jacobian(model, {name: x}).jacobians}


class Samples:
    """Wall and client-CPU seconds of each call, per kind (client CPU includes gRPC's own threads in this process)."""

    def __init__(self) -> None:
        self.wall: Dict[str, List[float]] = {"bare": [], "package": []}
        self.cpu: Dict[str, List[float]] = {"bare": [], "package": []}

    def add(self, kind: str, wall: float, cpu: float) -> None:
        self.wall[kind].append(wall)
        self.cpu[kind].append(cpu)


def measure(samples: Samples, kinds: Dict[str, Callable[[], object]], rounds: int, calls: int) -> None:
    for r in range(rounds):
        order = ["bare", "package"] if r % 2 == 0 else ["package", "bare"]
        for _ in range(calls):
            for kind in order:
                c0, t0 = time.process_time(), time.perf_counter()
                kinds[kind]()
                samples.add(kind, time.perf_counter() - t0, time.process_time() - c0)


async def measure_async(samples: Samples, kinds: Dict[str, Callable[[], object]], rounds: int, calls: int) -> None:
    for r in range(rounds):
        order = ["bare", "package"] if r % 2 == 0 else ["package", "bare"]
        for _ in range(calls):
            for kind in order:
                c0, t0 = time.process_time(), time.perf_counter()
                await kinds[kind]()  # type: ignore[misc]
                samples.add(kind, time.perf_counter() - t0, time.process_time() - c0)


def report(label: str, s: Samples) -> None:
    b, p = statistics.median(s.wall["bare"]), statistics.median(s.wall["package"])
    q = lambda v, f: sorted(v)[int(f * (len(v) - 1))]  # noqa: E731
    cb, cp = statistics.mean(s.cpu["bare"]), statistics.mean(s.cpu["package"])
    print(f"{label:<22} bare median {b * 1e6:7.1f} us (p90 {q(s.wall['bare'], 0.9) * 1e6:7.1f})   "
          f"package median {p * 1e6:7.1f} us (p90 {q(s.wall['package'], 0.9) * 1e6:7.1f})   ratio {p / b:.3f}   "
          f"client CPU/call bare {cb * 1e6:6.1f} us, package {cp * 1e6:6.1f} us", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--model", default="pinn")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of calls of both kinds before measuring "
                                                             "(the server rejits hot paths for ~10 s after a start)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=500, help="calls per method, kind and round")
    p.add_argument("--no-async", action="store_true", help="skip the grpc.aio rows")
    args = p.parse_args()

    options = core.channel_options(256 << 20, None)
    channel = grpc.insecure_channel(args.target, options=options)
    stub = rpc.JacobianServiceStub(channel)
    client = jacservice.Client(args.target, timeout=10)
    info = client.wait_until_ready(args.model, timeout=120)
    name = info.inputs[0].name
    x = (np.arange(int(np.prod([d if d > 0 else 1 for d in info.inputs[0].shape])), dtype=np.float32) % 7 * 0.1 - 0.3
         ).reshape([d if d > 0 else 1 for d in info.inputs[0].shape])
    bare, package = bare_calls(stub, args.model, name, x), package_calls(client, args.model, name, x)
    print(f"model {args.model}, input {name}{list(x.shape)}, {args.rounds} rounds x {args.calls} calls per method "
          f"and kind, one caller, after {args.warmup:g} s of warm-up", flush=True)

    end = time.monotonic() + args.warmup
    while time.monotonic() < end:
        for method in bare:
            bare[method]()
            package[method]()

    for method in bare:
        samples = Samples()
        measure(samples, {"bare": bare[method], "package": package[method]}, args.rounds, args.calls)
        report(f"sync {method}", samples)
    pieces(client, stub, args.model, name, x)
    client.close()
    channel.close()

    if not args.no_async:
        asyncio.run(main_async(args, x, name))


def pieces(client: jacservice.Client, stub: rpc.JacobianServiceStub, model: str, name: str, x: np.ndarray) -> None:
    """The client-side work alone, without the network: best of 5 timeit runs, in microseconds per call."""
    shape, data = list(x.shape), x.ravel().tolist()
    request = core.batch_jacobian_request(model, "", {name: x}, "", (), "auto", 0)
    answer = client._unary("BatchJacobian", request, None).SerializeToString()
    work = {
        "bare request": lambda: pb.BatchJacobianRequest(model=model, inputs={name: pb.Tensor(shape=shape, data=data)})
        .SerializeToString(),
        "package request": lambda: core.batch_jacobian_request(
            model, "", client._inputs(model, "", {name: x}, True, None), "", (), "auto", 0).SerializeToString(),
        "bare answer": lambda: pb.BatchJacobianResponse.FromString(answer).jacobians,
        "package answer": lambda: core.jacobian_result(core.wire.BatchJacobianResponse.FromString(answer)),
    }
    print("client-side work per batch_jacobian call, no network (best of 5): " + ", ".join(
        f"{k} {min(timeit.repeat(f, number=5000, repeat=5)) / 5000 * 1e6:.1f} us" for k, f in work.items()), flush=True)

    # A larger answer: 256 rows of a 16 x 32 Jacobian (mlp_tanh's), made up here, read into a NumPy array.
    big = pb.BatchJacobianResponse(model=model, version="1")
    big.jacobians["y"].shape.extend([256, 16, 32])
    big.jacobians["y"].data.extend(np.linspace(-1, 1, 256 * 16 * 32, dtype=np.float32).tolist())
    big_answer = big.SerializeToString()
    read = {
        "bare": lambda: np.array(pb.BatchJacobianResponse.FromString(big_answer).jacobians["y"].data,
                                 dtype=np.float32).reshape(256, 16, 32),
        "package": lambda: core.jacobian_result(core.wire.BatchJacobianResponse.FromString(big_answer)).jacobians["y"],
    }
    assert np.array_equal(read["bare"](), read["package"]())
    print("a 256 x 16 x 32 Jacobian answer read into a NumPy array, no network (best of 5): " + ", ".join(
        f"{k} {min(timeit.repeat(f, number=20, repeat=5)) / 20 * 1e6:.0f} us" for k, f in read.items()), flush=True)


async def main_async(args: argparse.Namespace, x: np.ndarray, name: str) -> None:
    channel = grpc.aio.insecure_channel(args.target, options=core.channel_options(256 << 20, None))
    stub = rpc.JacobianServiceStub(channel)
    client = jacservice.AsyncClient(args.target, timeout=10)
    shape, data = list(x.shape), x.ravel().tolist()

    async def bare_predict() -> object:
        r = await stub.Predict(pb.PredictRequest(model=args.model, inputs={name: pb.Tensor(shape=shape, data=data)}),
                               timeout=10)
        return r.outputs

    async def bare_jacobian() -> object:
        r = await stub.BatchJacobian(pb.BatchJacobianRequest(model=args.model,
                                                             inputs={name: pb.Tensor(shape=shape, data=data)}), timeout=10)
        return r.jacobians

    async def package_predict() -> object:
        return (await client.predict(args.model, {name: x})).outputs

    async def package_jacobian() -> object:
        return (await client.batch_jacobian(args.model, {name: x})).jacobians

    bare = {"predict": bare_predict, "batch_jacobian": bare_jacobian}
    package = {"predict": package_predict, "batch_jacobian": package_jacobian}
    end = time.monotonic() + min(args.warmup, 5.0)
    while time.monotonic() < end:
        for method in bare:
            await bare[method]()
            await package[method]()
    for method in bare:
        samples = Samples()
        await measure_async(samples, {"bare": bare[method], "package": package[method]}, args.rounds, args.calls)
        report(f"async {method}", samples)
    await client.close()
    await channel.close()


if __name__ == "__main__":
    main()
