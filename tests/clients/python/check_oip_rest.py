#!/usr/bin/python3
"""The Open Inference Protocol's HTTP/REST binding on a running JacService server, from Python's standard library
(urllib and json; no client library, no stubs) with numpy for the numbers:

    /usr/bin/python3 tests/clients/python/check_oip_rest.py --url http://127.0.0.1:PORT --fixtures tests/fixtures

For each reference in <fixtures>/reference/*.json: the model's readiness and metadata (the reference's tensors, FP32,
-1 for the batch axis), infer for Predict with the inputs nested as numpy's tolist() writes them, and infer for the
Jacobian with respect to each input (parameters jacservice.derivative and jacservice.wrt), compared with the float64
references as check_server.py compares them; the same Jacobians again through Triton's binary tensor data extension (the
inputs' float32 bytes after the JSON, every output's bytes after the answer's, framed by Inference-Header-Content-Length,
as tritonclient.http sends and reads them); then the server's health and the error statuses. Prints one PASS/FAIL line
per check and a summary; exits 0 only if all passed.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from check_oip import Tally, problems_of
from check_server import Reference, load_references


class Checker(Tally):
    def __init__(self, url: str, timeout: float) -> None:
        super().__init__()
        self.url, self.timeout = url.rstrip("/"), timeout

    def call(self, path: str, body: Optional[dict] = None) -> Tuple[int, Any]:
        """The HTTP status and the JSON body (None when empty) of a GET, or of a POST of body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        return status, json.loads(text) if text else None

    def call_binary(self, path: str, body: dict, tensors: List[np.ndarray]) -> Tuple[int, Any, dict]:
        """A POST of body with the tensors' little-endian bytes after it: the HTTP status, the answer's JSON, and its
        binary outputs by name, each as the float32 array its shape and binary_data_size describe."""
        head = json.dumps(body).encode()
        data = head + b"".join(np.ascontiguousarray(t, dtype="<f4").tobytes() for t in tensors)
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers={
            "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, text, length = response.status, response.read(), response.headers.get("Inference-Header-Content-Length")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), {}
        if length is None:
            return status, json.loads(text), {}
        answer, at, binary = json.loads(text[:int(length)]), int(length), {}
        for output in answer["outputs"]:
            size = output.get("parameters", {}).get("binary_data_size")
            if size is not None:
                binary[output["name"]] = np.frombuffer(text[at:at + size], dtype="<f4").astype(np.float64).reshape(output["shape"])
                at += size
        if at != len(text):
            raise ValueError(f"{len(text) - at} bytes after the binary outputs")
        return status, answer, binary

    @staticmethod
    def outputs(response: dict) -> dict:
        return {o["name"]: np.array(o["data"], dtype=np.float64).reshape(o["shape"]) for o in response["outputs"]}

    def check_model(self, ref: Reference) -> None:
        model = ref.model
        status, _ = self.call(f"/v2/models/{model}/ready")
        self.record(f"{model} ready", [] if status == 200 else [f"HTTP {status}"])

        status, metadata = self.call(f"/v2/models/{model}")
        if status != 200:
            self.record(f"{model} metadata", [f"HTTP {status}: {metadata}"])
        else:
            expected = [(n, "FP32", [-1, *a.shape[1:]]) for n, a in ref.inputs.items()]
            got = [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]]
            self.record(f"{model} metadata", [] if got == expected and metadata["platform"] == "onnx_onnxv1"
                        else [f"inputs {got}, platform {metadata['platform']}; expected {expected}"])

        inputs = [{"name": n, "shape": list(a.shape), "datatype": "FP32", "data": a.tolist()} for n, a in ref.inputs.items()]
        status, response = self.call(f"/v2/models/{model}/infer", {"id": f"rest-{model}", "inputs": inputs})
        if status != 200:
            self.record(f"{model} infer", [f"HTTP {status}: {response}"])
        else:
            got = self.outputs(response)
            problems = [] if response.get("id") == f"rest-{model}" else [f"id {response.get('id')!r}"]
            for name, expected in ref.outputs.items():
                problems += [f"{name}: {p}" for p in (problems_of(got[name], expected) if name in got else ["missing"])]
            self.record(f"{model} infer", problems)

        for wrt, per_output in ref.jacobians.items():
            body = {"inputs": inputs, "parameters": {"jacservice.derivative": "jacobian", "jacservice.wrt": wrt}}
            status, response = self.call(f"/v2/models/{model}/infer", body)
            label = f"{model} infer jacobian wrt {wrt}"
            if status != 200:
                self.record(label, [f"HTTP {status}: {response}"])
                continue
            got = self.outputs(response)
            problems = []
            for output, expected in per_output.items():
                name = f"{output}__jacobian__{wrt}"
                problems += [f"{name}: {p}" for p in (problems_of(got[name], expected) if name in got else ["missing"])]
            self.record(label, problems)

        binary_inputs = [{"name": n, "shape": list(a.shape), "datatype": "FP32", "parameters": {"binary_data_size": a.size * 4}}
                         for n, a in ref.inputs.items()]
        for wrt, per_output in ref.jacobians.items():
            body = {"inputs": binary_inputs, "parameters": {"jacservice.derivative": "jacobian", "jacservice.wrt": wrt,
                                                            "binary_data_output": True}}
            label = f"{model} infer jacobian wrt {wrt}, binary tensor data"
            status, response, got = self.call_binary(f"/v2/models/{model}/infer", body, list(ref.inputs.values()))
            if status != 200:
                self.record(label, [f"HTTP {status}: {response}"])
                continue
            problems = [] if len(got) == len(response["outputs"]) else [f"{len(got)} of {len(response['outputs'])} outputs binary"]
            for output, expected in [*ref.outputs.items(), *((f"{o}__jacobian__{wrt}", e) for o, e in per_output.items())]:
                problems += [f"{output}: {p}" for p in (problems_of(got[output], expected) if output in got else ["missing"])]
            self.record(label, problems)

    def check_server(self) -> None:
        for path in ("/v2/health/live", "/v2/health/ready"):
            status, _ = self.call(path)
            self.record(path, [] if status == 200 else [f"HTTP {status}"])
        status, metadata = self.call("/v2")
        self.record("server metadata", [] if status == 200 and metadata["name"] == "jacservice"
                    and {"jacservice_derivatives", "binary_tensor_data"} <= set(metadata["extensions"]) else [f"HTTP {status}: {metadata}"])

    def check_errors(self, ref: Reference) -> None:
        x = next(iter(ref.inputs.values()))
        good = {"name": next(iter(ref.inputs)), "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}
        cases = [
            ("unknown model", "/v2/models/no_such_model/infer", {"inputs": [good]}, 404, "not found"),
            ("wrong shape", f"/v2/models/{ref.model}/infer",
             {"inputs": [{**good, "shape": [x.size]}]}, 400, "expected shape"),
            ("values short of the shape", f"/v2/models/{ref.model}/infer",
             {"inputs": [{**good, "data": x.reshape(-1)[1:].tolist()}]}, 400, "values in data"),
            ("unknown model ready", "/v2/models/no_such_model/ready", None, 400, None),
        ]
        for label, path, body, code, message in cases:
            status, error = self.call(path, body)
            problems = [] if status == code else [f"HTTP {status}, expected {code}: {error}"]
            if message is not None and not (isinstance(error, dict) and message in error.get("error", "")):
                problems.append(f"error body {error!r} lacks {message!r}")
            self.record(f"error: {label}", problems)


def main() -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--fixtures", type=Path, default=here.parents[1] / "fixtures")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()

    checker = Checker(args.url, args.timeout)
    checker.check_server()
    refs = load_references(args.fixtures)
    for ref in refs:
        checker.check_model(ref)
    checker.check_errors(next(r for r in refs if r.model == "mlp_tanh"))
    return checker.summary()


if __name__ == "__main__":
    sys.exit(main())
