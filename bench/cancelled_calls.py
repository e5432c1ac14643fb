"""Unary Jacobians cancelled a moment after they start (docs/security.md, "Connections and idle streams"): CONCURRENCY
loops on one connection, each starting a call on mlp_tanh and cancelling it after DELAY seconds (HTTP/2 HEADERS, DATA,
then RST_STREAM), for SECONDS. Count the server's error lines beside it.

Usage: python3 bench/cancelled_calls.py HOST:PORT SECONDS CONCURRENCY DELAY
Debian's python3-grpcio (/usr/bin/python3) and the stubs of examples/python/generate.sh.
"""
import asyncio
import os
import sys
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "python", "gen"))
from jacservice.v1 import jacservice_pb2 as pb  # noqa: E402
from jacservice.v1 import jacservice_pb2_grpc as rpc  # noqa: E402


async def cancel_calls(stub, request, end, delay, counter):
    while time.monotonic() < end:
        call = stub.Jacobian(request)
        if delay:
            await asyncio.sleep(delay)
        call.cancel()
        counter[0] += 1


async def main(target, seconds, concurrency, delay):
    request = pb.JacobianRequest(model="mlp_tanh", inputs={"x": pb.Tensor(shape=[32], data=[0.1] * 32)})
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rpc.JacobianServiceStub(channel)
        end, counter = time.monotonic() + seconds, [0]
        await asyncio.gather(*(cancel_calls(stub, request, end, delay, counter) for _ in range(concurrency)))
        print(f"{counter[0]} calls started and cancelled ({counter[0] / seconds:.0f}/s)", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], float(a[1]), int(a[2]), float(a[3])))
    # grpc's aio channels can keep the process alive after close; the measurement is done.
    os._exit(0)
