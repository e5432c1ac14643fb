#!/usr/bin/python3
"""The Open Inference Protocol on a running JacService server, from Python grpcio with stubs generated at run time
from the protocol's .proto alone (inference/open_inference_grpc.proto; JacService's own .proto is never compiled):

    /usr/bin/python3 tests/clients/python/check_oip.py --target 127.0.0.1:PORT --fixtures tests/fixtures --proto src/Protos

For each reference in <fixtures>/reference/*.json: ServerReady, ModelReady, ModelMetadata (the reference's tensors,
FP32, -1 for the batch axis), ModelInfer for Predict with fp32_contents and with raw_input_contents, and ModelInfer
for the Jacobian with respect to each input (parameters jacservice.derivative and jacservice.wrt), compared with the
float64 references as check_server.py compares them. Prints one PASS/FAIL line per check and a summary; exits 0 only
if all passed.
"""

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import grpc
import numpy as np

from check_server import Reference, load_references

PROTO_FILE = "inference/open_inference_grpc.proto"
REL_TOL = 1e-4
ZERO_TOL = 1e-7


def generate_stubs(proto_root: Path, out_dir: Path, protoc: str, plugin: str):
    cmd = [protoc, f"-I{proto_root}", f"--python_out={out_dir}", f"--grpc_out={out_dir}",
           f"--plugin=protoc-gen-grpc={plugin}", PROTO_FILE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    sys.path.insert(0, str(out_dir))
    return (importlib.import_module("inference.open_inference_grpc_pb2"),
            importlib.import_module("inference.open_inference_grpc_pb2_grpc"))


def problems_of(got: np.ndarray, expected: np.ndarray) -> List[str]:
    if list(got.shape) != list(expected.shape):
        return [f"shape {list(got.shape)} != expected {list(expected.shape)}"]
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    tol = REL_TOL * scale if scale > 0 else ZERO_TOL
    err = float(np.max(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
    return [] if err <= tol else [f"max abs err {err:.3g} > tol {tol:.3g}"]


class Tally:
    """Counts checks and prints one PASS/FAIL line for each."""

    def __init__(self) -> None:
        self.passed = self.failed = 0

    def record(self, label: str, problems: List[str]) -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {label}: " + "; ".join(problems), flush=True)
        else:
            self.passed += 1
            print(f"PASS {label}", flush=True)

    def summary(self) -> int:
        """Prints the counts; the exit status: 0 only if every check passed."""
        print(f"summary: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


class Checker(Tally):
    def __init__(self, pb2, stub, timeout: float) -> None:
        super().__init__()
        self.pb2, self.stub, self.timeout = pb2, stub, timeout

    def call(self, label: str, rpc, request):
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self.record(label, [f"RPC failed: {e.code().name}: {e.details()}"])
            return None

    def request(self, ref: Reference, raw: bool):
        pb2 = self.pb2
        req = pb2.ModelInferRequest(model_name=ref.model)
        for name, x in ref.inputs.items():
            tensor = pb2.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=list(x.shape))
            if raw:
                req.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
            else:
                tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
            req.inputs.append(tensor)
        return req

    @staticmethod
    def outputs(resp):
        """Output name -> array, from raw_output_contents or fp32_contents, each in its shape."""
        arrays = {}
        for i, o in enumerate(resp.outputs):
            if o.datatype != "FP32":
                raise ValueError(f"output {o.name} has datatype {o.datatype}")
            data = (np.frombuffer(resp.raw_output_contents[i], dtype="<f4") if resp.raw_output_contents
                    else np.asarray(o.contents.fp32_contents, dtype=np.float32))
            arrays[o.name] = data.reshape(list(o.shape))
        return arrays

    def compare(self, label: str, resp, expected) -> None:
        got = self.outputs(resp)
        problems = [] if list(got) == list(expected) else [f"outputs {list(got)} != expected {list(expected)}"]
        for name in expected:
            if name in got:
                problems += [f"{name}: {p}" for p in problems_of(got[name], expected[name])]
        self.record(label, problems)

    def check_model(self, ref: Reference) -> None:
        pb2, name = self.pb2, ref.model
        ready = self.call(f"{name} ModelReady", self.stub.ModelReady, pb2.ModelReadyRequest(name=name))
        if ready is not None:
            self.record(f"{name} ModelReady", [] if ready.ready else ["not ready"])
        meta = self.call(f"{name} ModelMetadata", self.stub.ModelMetadata, pb2.ModelMetadataRequest(name=name))
        if meta is not None:
            problems = []
            for kind, got, want in [("inputs", meta.inputs, ref.inputs), ("outputs", meta.outputs, ref.outputs)]:
                got_sig = [(t.name, t.datatype, list(t.shape)) for t in got]
                want_sig = [(n, "FP32", [-1, *a.shape[1:]]) for n, a in want.items()]
                if got_sig != want_sig:
                    problems.append(f"{kind} {got_sig} != expected {want_sig}")
            if meta.name != name or meta.platform != "onnx_onnxv1" or not meta.versions:
                problems.append(f"name {meta.name!r}, platform {meta.platform!r}, versions {list(meta.versions)}")
            self.record(f"{name} ModelMetadata", problems)

        for raw in (False, True):
            label = f"{name} ModelInfer predict B={ref.batch} {'raw' if raw else 'fp32_contents'}"
            resp = self.call(label, self.stub.ModelInfer, self.request(ref, raw))
            if resp is not None:
                self.compare(label, resp, ref.outputs)

        for wrt, per_output in ref.jacobians.items():
            label = f"{name} ModelInfer jacobian wrt {wrt}"
            req = self.request(ref, raw=True)
            req.parameters["jacservice.derivative"].string_param = "jacobian"
            req.parameters["jacservice.wrt"].string_param = wrt
            resp = self.call(label, self.stub.ModelInfer, req)
            if resp is not None:
                expected = dict(ref.outputs)
                expected.update({f"{o}__jacobian__{wrt}": j for o, j in per_output.items()})
                self.compare(label, resp, expected)

    def check_errors(self, ref: Reference) -> None:
        pb2 = self.pb2
        for label, code, req in [
            ("errors: unknown model -> NOT_FOUND", grpc.StatusCode.NOT_FOUND,
             pb2.ModelInferRequest(model_name="no_such_model")),
            ("errors: unknown jacservice parameter -> INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT,
             self.with_parameter(self.request(ref, raw=False), "jacservice.derivatve", "jacobian")),
        ]:
            try:
                self.stub.ModelInfer(req, timeout=self.timeout)
                self.record(label, [f"expected {code.name}, but the call succeeded"])
            except grpc.RpcError as e:
                self.record(label, [] if e.code() == code else [f"expected {code.name}, got {e.code().name}: {e.details()}"])

    @staticmethod
    def with_parameter(req, key: str, value: str):
        req.parameters[key].string_param = value
        return req


def main() -> int:
    here = Path(__file__).resolve().parent
    repo = here.parents[2]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--fixtures", type=Path, default=repo / "tests" / "fixtures")
    p.add_argument("--proto", type=Path, default=repo / "src" / "Protos", help=f"proto root holding {PROTO_FILE}")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--protoc", default="/usr/bin/protoc")
    p.add_argument("--grpc-plugin", default="/usr/bin/grpc_python_plugin")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="oip_stubs_") as tmp:
        pb2, pb2_grpc = generate_stubs(args.proto, Path(tmp), args.protoc, args.grpc_plugin)
        refs = load_references(args.fixtures)
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(args.target, options=options) as channel:
            checker = Checker(pb2, pb2_grpc.GRPCInferenceServiceStub(channel), args.timeout)
            ready = checker.call("ServerReady", checker.stub.ServerReady, pb2.ServerReadyRequest())
            if ready is not None:
                checker.record("ServerReady", [] if ready.ready else ["not ready"])
            for ref in refs:
                checker.check_model(ref)
            checker.check_errors(next(r for r in refs if r.model == "mlp_tanh"))
    return checker.summary()


if __name__ == "__main__":
    sys.exit(main())
