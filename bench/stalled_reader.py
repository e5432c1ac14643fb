"""A client that stops reading a StreamBatchJacobian (docs/security.md, "A client that stops reading"): reads the first
chunk, then nothing for SECONDS, sampling the server's call memory held and its stalled-response count every 5 s; then
reads on and prints how the call ended.

Usage: python3 bench/stalled_reader.py HOST:PORT METRICS_HOST:PORT ROWS ROWS_PER_CHUNK SECONDS
Debian's python3-grpcio (/usr/bin/python3) and the stubs of examples/python/generate.sh; the model is the fixture
mlp_tanh (x: [B, 32]).
"""
import os
import sys
import time
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "python", "gen"))
from jacservice.v1 import jacservice_pb2 as pb  # noqa: E402
from jacservice.v1 import jacservice_pb2_grpc as rpc  # noqa: E402


def metric(metrics, name, label=""):
    text = urllib.request.urlopen(f"http://{metrics}/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") and label in line)


def main(target, metrics, rows, chunk, seconds):
    x = pb.Tensor(shape=[rows, 32], data=[((i * 7919) % 1000) / 1000.0 - 0.5 for i in range(rows * 32)])
    request = pb.BatchJacobianRequest(model="mlp_tanh", inputs={"x": x}, max_rows_per_chunk=chunk)
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)]) as channel:
        chunks = rpc.JacobianServiceStub(channel).StreamBatchJacobian(request)
        first = next(chunks)
        started = time.monotonic()
        print(f"read chunk 1 ({first.row_count} rows); reading nothing for {seconds:.0f} s", flush=True)
        while (elapsed := time.monotonic() - started) < seconds:
            held = metric(metrics, "jacservice_call_memory_held_bytes")
            stalled = metric(metrics, "jacservice_messages_stalled_total", 'direction="response"')
            print(f"{elapsed:5.1f} s: call memory held {held / 1e6:.1f} MB, stalled responses {stalled:.0f}", flush=True)
            time.sleep(5)
        read = first.row_count
        try:
            for c in chunks:
                read += c.row_count
            print(f"read on: all {read} rows", flush=True)
        except grpc.RpcError as e:
            print(f"read on: {read} rows, then {e.code().name}: {e.details()}", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), float(a[4]))
