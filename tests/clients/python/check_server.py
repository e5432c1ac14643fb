#!/usr/bin/python3
"""End-to-end check of a running JacService server from Python, a real second-language client.

    /usr/bin/python3 tests/clients/python/check_server.py \\
        --target 127.0.0.1:PORT --fixtures tests/fixtures --proto src/Protos

Stubs are generated from the .proto at run time (protoc + grpc_python_plugin) rather
than committed, so this client always speaks the contract as it is in the tree and a
contract change the server did not follow shows up as a failure here.

Every reference in <fixtures>/reference/*.json (or those named by --models) must be
served READY, or that is a failure. For each, it calls GetModel, Predict (the batch), Jacobian (each sample alone, inputs
without the batch axis, once per input as `wrt`) and BatchJacobian (the batch, once
per input), and compares against the float64 references: shapes exactly as the proto
comments specify, values to max abs error <= 1e-4 * max(|reference|) per tensor.
Then it checks that invalid requests fail with the right status codes.

Prints one PASS/FAIL line per check and a summary; exits 0 only if all passed.
`--self-test` needs no server: it generates and imports the stubs, loads the
references, and exercises message building and the comparison logic.
"""

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import grpc
import numpy as np

MAX_MESSAGE = 64 * 1024 * 1024
REL_TOL = 1e-4
# Absolute floor for an all-zero reference tensor, where REL_TOL * 0 would demand
# bit-exact zeros; float32 noise on an exact zero is well below this.
ZERO_TOL = 1e-7
PROTO_FILE = "jacservice/v1/jacservice.proto"


# ------------------------------------------------------------------------------ stubs


def generate_stubs(proto_root: Path, out_dir: Path, protoc: str, plugin: str):
    """Compiles the proto into out_dir and imports (pb2, pb2_grpc)."""
    cmd = [
        protoc,
        f"-I{proto_root}",
        f"--python_out={out_dir}",
        f"--grpc_out={out_dir}",
        f"--plugin=protoc-gen-grpc={plugin}",
        PROTO_FILE,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    # The grpc stub imports "from jacservice.v1 import jacservice_pb2"; with out_dir
    # on sys.path those folders resolve as namespace packages, no __init__.py needed.
    sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("jacservice.v1.jacservice_pb2")
    pb2_grpc = importlib.import_module("jacservice.v1.jacservice_pb2_grpc")
    return pb2, pb2_grpc


# ------------------------------------------------------------------------- references


class Reference:
    """One reference JSON as numpy arrays (see tests/fixtures/README.md for the format)."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        self.path = path
        self.model: str = doc["model"]
        self.batch: int = doc["batch"]
        self.opset: Optional[int] = doc.get("opset")
        # Inputs are float32 on the wire, so keep them float32 here: these are the
        # exact values the references were computed from.
        self.inputs = {n: _array(t, np.float32) for n, t in doc["inputs"].items()}
        self.outputs = {n: _array(t, np.float64) for n, t in doc["outputs"].items()}
        self.jacobians = {
            w: {o: _array(t, np.float64) for o, t in per_out.items()} for w, per_out in doc["jacobians"].items()
        }
        for name, arr in [*self.inputs.items(), *self.outputs.items()]:
            if arr.shape[0] != self.batch:
                raise ValueError(f"{path}: {name} has batch {arr.shape[0]}, expected {self.batch}")
        for w, per_out in self.jacobians.items():
            for o, jac in per_out.items():
                want = self.outputs[o].shape + self.inputs[w].shape[1:]
                if jac.shape != want:
                    raise ValueError(f"{path}: jacobian d{o}/d{w} has shape {jac.shape}, expected {want}")

    def sample(self, b: int) -> Dict[str, np.ndarray]:
        return {n: a[b] for n, a in self.inputs.items()}


def _array(t: dict, dtype) -> np.ndarray:
    arr = np.asarray(t["data"], dtype=dtype)
    shape = tuple(t["shape"])
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"data length {arr.size} does not match shape {shape}")
    return arr.reshape(shape)


def load_references(fixtures: Path) -> List[Reference]:
    paths = sorted((fixtures / "reference").glob("*.json"))
    if not paths:
        raise RuntimeError(f"no reference JSON under {fixtures / 'reference'}")
    return [Reference(p) for p in paths]


# ------------------------------------------------------------------------ comparisons


def to_tensor(pb2, arr: np.ndarray):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pb2.Tensor(shape=list(arr.shape), data=arr.reshape(-1).tolist())


def to_tensor_map(pb2, arrays: Dict[str, np.ndarray]):
    return {n: to_tensor(pb2, a) for n, a in arrays.items()}


def compare(tensor, expected: np.ndarray) -> Optional[str]:
    """None if `tensor` matches `expected` in shape and value; otherwise why not."""
    shape = list(tensor.shape)
    if shape != list(expected.shape):
        return f"shape {shape} != expected {list(expected.shape)}"
    got = np.asarray(tensor.data, dtype=np.float64)
    if got.size != expected.size:
        return f"data length {got.size} != product(shape) {expected.size}"
    if not np.all(np.isfinite(got)):
        return "non-finite values"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    tol = REL_TOL * scale if scale > 0 else ZERO_TOL
    err = float(np.max(np.abs(got - expected.reshape(-1)))) if expected.size else 0.0
    if err > tol:
        worst = int(np.argmax(np.abs(got - expected.reshape(-1))))
        index = list(np.unravel_index(worst, expected.shape))
        return f"max abs err {err:.3g} > tol {tol:.3g} at {index} (got {got[worst]:.6g}, expected {expected.reshape(-1)[worst]:.6g})"
    return None


def compare_map(kind: str, got_map, expected: Dict[str, np.ndarray]) -> List[str]:
    """Compares a response map (outputs or jacobians) against `expected`, key set included."""
    problems = []
    got_keys, want_keys = set(got_map.keys()), set(expected.keys())
    if got_keys != want_keys:
        problems.append(f"{kind} keys {sorted(got_keys)} != expected {sorted(want_keys)}")
    for name in sorted(got_keys & want_keys):
        why = compare(got_map[name], expected[name])
        if why:
            problems.append(f"{kind}[{name}]: {why}")
    return problems


def summarize_errors(got_map, expected: Dict[str, np.ndarray]) -> str:
    """'name rel err' pairs for PASS lines, so a drifting result is visible before it fails."""
    parts = []
    for name in sorted(expected):
        if name in got_map:
            got = np.asarray(got_map[name].data, dtype=np.float64)
            scale = float(np.max(np.abs(expected[name]))) or 1.0
            parts.append(f"{name} {float(np.max(np.abs(got - expected[name].reshape(-1)))) / scale:.1e}")
    return "rel err " + ", ".join(parts)


# ---------------------------------------------------------------------------- checker


class Checker:
    def __init__(self, pb2, stub, timeout: float) -> None:
        self.pb2 = pb2
        self.stub = stub
        self.timeout = timeout
        self.passed = 0
        self.failed = 0

    def record(self, label: str, problems: List[str], detail: str = "") -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {label}: " + "; ".join(problems), flush=True)
        else:
            self.passed += 1
            print(f"PASS {label}" + (f": {detail}" if detail else ""), flush=True)

    def call(self, label: str, rpc: Callable, request):
        """Runs one RPC; a failure status is recorded against `label` and returns None."""
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self.record(label, [f"RPC failed: {e.code().name}: {e.details()}"])
            return None

    def expect_status(self, label: str, code: grpc.StatusCode, rpc: Callable, request) -> None:
        try:
            rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            ok = e.code() == code
            self.record(label, [] if ok else [f"expected {code.name}, got {e.code().name}: {e.details()}"],
                        f"{e.code().name}: {e.details()}")
            return
        self.record(label, [f"expected {code.name}, but the call succeeded"])

    # --------------------------------------------------------------- per-model checks

    def check_model(self, ref: Reference) -> None:
        pb2, name = self.pb2, ref.model
        info = self.call(f"{name} GetModel", self.stub.GetModel, pb2.GetModelRequest(model=name))
        version = info.version if info else None
        if info:
            self.record(f"{name} GetModel", self.model_info_problems(ref, info), f"version {info.version}, opset {info.opset}")

        # Predict: the whole batch.
        label = f"{name} Predict B={ref.batch}"
        resp = self.call(label, self.stub.Predict, pb2.PredictRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs)))
        if resp:
            problems = self.identity_problems(resp, name, version) + compare_map("outputs", resp.outputs, ref.outputs)
            self.record(label, problems, summarize_errors(resp.outputs, ref.outputs))

        # Several inputs: every one in turn, by name. A single input: the "" default,
        # plus one call naming it explicitly (both must mean the same thing).
        input_names = list(ref.inputs)
        wrts = input_names if len(input_names) > 1 else ["", input_names[0]]
        for wrt in wrts:
            wrt_name = wrt or input_names[0]
            shown = wrt if wrt else '"" (default)'
            # The explicit-name repeat of a single input only needs one sample.
            samples = [0] if (len(input_names) == 1 and wrt) else range(ref.batch)
            for b in samples:
                label = f"{name} Jacobian sample {b} wrt {shown}"
                req = pb2.JacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.sample(b)), wrt=wrt)
                resp = self.call(label, self.stub.Jacobian, req)
                if resp:
                    outs = {o: a[b] for o, a in ref.outputs.items()}
                    jacs = {o: j[b] for o, j in ref.jacobians[wrt_name].items()}
                    problems = (self.identity_problems(resp, name, version)
                                + compare_map("outputs", resp.outputs, outs)
                                + compare_map("jacobians", resp.jacobians, jacs))
                    self.record(label, problems, summarize_errors(resp.jacobians, jacs))

            label = f"{name} BatchJacobian B={ref.batch} wrt {shown}"
            req = pb2.BatchJacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs), wrt=wrt)
            resp = self.call(label, self.stub.BatchJacobian, req)
            if resp:
                problems = (self.identity_problems(resp, name, version)
                            + compare_map("outputs", resp.outputs, ref.outputs)
                            + compare_map("jacobians", resp.jacobians, ref.jacobians[wrt_name]))
                self.record(label, problems, summarize_errors(resp.jacobians, ref.jacobians[wrt_name]))

        if len(ref.outputs) > 1:
            # `of` restricts the Jacobians, never the outputs (always all of them).
            only = list(ref.outputs)[-1]
            label = f"{name} BatchJacobian of=[{only}]"
            req = pb2.BatchJacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs), wrt=input_names[0], of=[only])
            resp = self.call(label, self.stub.BatchJacobian, req)
            if resp:
                problems = (compare_map("outputs", resp.outputs, ref.outputs)
                            + compare_map("jacobians", resp.jacobians, {only: ref.jacobians[input_names[0]][only]}))
                self.record(label, problems)

        self.check_modes(ref, version)

        if len(input_names) > 1:
            # "" means "the model's only float input"; with several there is none.
            self.expect_status(f"{name} Jacobian wrt \"\" with several inputs -> INVALID_ARGUMENT",
                               grpc.StatusCode.INVALID_ARGUMENT, self.stub.Jacobian,
                               pb2.JacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.sample(0))))

    def check_modes(self, ref: Reference, version: Optional[str]) -> None:
        """BatchJacobian in each mode, then Jvp and Vjp along basis directions, against the reference Jacobians:
        J·e_k is column k of J and e_iᵀ·J is row i, so no separate JVP/VJP references are needed."""
        pb2, name = self.pb2, ref.model
        modes = {"AUTO": pb2.DERIVATIVE_MODE_AUTO, "FORWARD": pb2.DERIVATIVE_MODE_FORWARD, "REVERSE": pb2.DERIVATIVE_MODE_REVERSE}
        ran_names = {pb2.DERIVATIVE_MODE_FORWARD: "FORWARD", pb2.DERIVATIVE_MODE_REVERSE: "REVERSE"}
        for wrt, per_output in ref.jacobians.items():
            for mode_name, mode in modes.items():
                label = f"{name} BatchJacobian mode {mode_name} wrt {wrt}"
                req = pb2.BatchJacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs), wrt=wrt, mode=mode)
                resp = self.call(label, self.stub.BatchJacobian, req)
                if resp:
                    ran = ran_names.get(resp.mode)
                    problems = self.identity_problems(resp, name, version) + compare_map("jacobians", resp.jacobians, per_output)
                    if ran is None or (mode_name != "AUTO" and ran != mode_name):
                        problems.append(f"asked {mode_name}, the response says mode {resp.mode}")
                    self.record(label, problems, f"ran {ran}; " + summarize_errors(resp.jacobians, per_output))

                label = f"{name} Jacobian sample 0 mode {mode_name} wrt {wrt}"
                req = pb2.JacobianRequest(model=name, inputs=to_tensor_map(pb2, ref.sample(0)), wrt=wrt, mode=mode)
                resp = self.call(label, self.stub.Jacobian, req)
                if resp:
                    ran = ran_names.get(resp.mode)
                    sample = {o: j[0] for o, j in per_output.items()}
                    problems = self.identity_problems(resp, name, version) + compare_map("jacobians", resp.jacobians, sample)
                    if ran is None or (mode_name != "AUTO" and ran != mode_name):
                        problems.append(f"asked {mode_name}, the response says mode {resp.mode}")
                    self.record(label, problems, f"ran {ran}; " + summarize_errors(resp.jacobians, sample))

            x = ref.inputs[wrt]
            n = int(np.prod(x.shape[1:], dtype=np.int64))
            # Tangents [B, n, ..in]: direction k of every sample is the k-th basis vector.
            basis = np.broadcast_to(np.eye(n, dtype=np.float32).reshape((1, n) + x.shape[1:]), (ref.batch, n) + x.shape[1:])
            label = f"{name} Jvp basis tangents wrt {wrt}"
            resp = self.call(label, self.stub.Jvp, pb2.JvpRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs), wrt=wrt,
                                                                 tangents=to_tensor(pb2, basis)))
            if resp:
                # J [B, ..out, ..in] -> columns [B, n, ..out]
                columns = {}
                for o, jac in per_output.items():
                    out_shape = ref.outputs[o].shape[1:]
                    m = int(np.prod(out_shape, dtype=np.int64))
                    columns[o] = jac.reshape(ref.batch, m, n).transpose(0, 2, 1).reshape((ref.batch, n) + out_shape)
                problems = self.identity_problems(resp, name, version) + compare_map("jvps", resp.jvps, columns)
                if resp.mode != pb2.DERIVATIVE_MODE_FORWARD:
                    problems.append(f"Jvp says mode {resp.mode}, expected FORWARD")
                self.record(label, problems, summarize_errors(resp.jvps, columns))

            for o, jac in per_output.items():
                y = ref.outputs[o]
                m = int(np.prod(y.shape[1:], dtype=np.int64))
                cot = np.broadcast_to(np.eye(m, dtype=np.float32).reshape((1, m) + y.shape[1:]), (ref.batch, m) + y.shape[1:])
                label = f"{name} Vjp basis cotangents d{o}/d{wrt}"
                resp = self.call(label, self.stub.Vjp, pb2.VjpRequest(model=name, inputs=to_tensor_map(pb2, ref.inputs), wrt=wrt,
                                                                     cotangents={o: to_tensor(pb2, cot)}))
                if resp:
                    rows = jac.reshape((ref.batch, m) + x.shape[1:])
                    why = compare(resp.vjp, rows)
                    problems = self.identity_problems(resp, name, version) + ([f"vjp: {why}"] if why else [])
                    if resp.mode != pb2.DERIVATIVE_MODE_REVERSE:
                        problems.append(f"Vjp says mode {resp.mode}, expected REVERSE")
                    self.record(label, problems, summarize_errors({"vjp": resp.vjp}, {"vjp": rows}))

    def model_info_problems(self, ref: Reference, info) -> List[str]:
        problems = []
        if info.name != ref.model:
            problems.append(f"name {info.name!r}")
        if info.state != "READY":
            problems.append(f"state {info.state!r} (error {info.error!r})")
        if not info.version:
            problems.append("empty version")
        if ref.opset is not None and info.opset != ref.opset:
            problems.append(f"opset {info.opset} != {ref.opset}")
        # -1 stands for the (dynamic) batch axis; the fixtures have no other dynamic axis.
        for kind, got, want in [("inputs", info.inputs, ref.inputs), ("outputs", info.outputs, ref.outputs)]:
            got_sig = [(t.name, list(t.shape), t.dtype) for t in got]
            want_sig = [(n, [-1, *a.shape[1:]], "float") for n, a in want.items()]
            if got_sig != want_sig:
                problems.append(f"{kind} {got_sig} != expected {want_sig}")
        return problems

    @staticmethod
    def identity_problems(resp, name: str, version: Optional[str]) -> List[str]:
        problems = []
        if resp.model != name:
            problems.append(f"response model {resp.model!r} != {name!r}")
        # version "" in the request means the highest loaded one: the one GetModel reported.
        if version is not None and resp.version != version:
            problems.append(f"response version {resp.version!r} != GetModel's {version!r}")
        return problems

    # ---------------------------------------------------------------- error statuses

    def check_errors(self, ref: Reference) -> None:
        pb2, name, s = self.pb2, ref.model, self.stub
        NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
        first = list(ref.inputs)[0]
        batch_inputs = to_tensor_map(pb2, ref.inputs)
        sample_inputs = to_tensor_map(pb2, ref.sample(0))

        self.expect_status("errors: Predict unknown model -> NOT_FOUND", NOT_FOUND, s.Predict,
                           pb2.PredictRequest(model="no_such_model", inputs=batch_inputs))
        self.expect_status("errors: GetModel unknown model -> NOT_FOUND", NOT_FOUND, s.GetModel,
                           pb2.GetModelRequest(model="no_such_model"))
        self.expect_status("errors: Jacobian unknown model -> NOT_FOUND", NOT_FOUND, s.Jacobian,
                           pb2.JacobianRequest(model="no_such_model", inputs=sample_inputs))
        self.expect_status(f"errors: Predict {name} unknown version -> NOT_FOUND", NOT_FOUND, s.Predict,
                           pb2.PredictRequest(model=name, version="987654", inputs=batch_inputs))

        # One more feature than the model takes (data sized to match, so only the shape is wrong).
        wrong = dict(ref.inputs)
        x = ref.inputs[first]
        wrong[first] = np.zeros((x.shape[0], *x.shape[1:-1], x.shape[-1] + 1), dtype=np.float32)
        self.expect_status(f"errors: Predict {name} wrong input shape -> INVALID_ARGUMENT", INVALID, s.Predict,
                           pb2.PredictRequest(model=name, inputs=to_tensor_map(pb2, wrong)))
        # Jacobian takes ONE sample: a batch axis makes the rank wrong.
        self.expect_status(f"errors: Jacobian {name} input with batch axis -> INVALID_ARGUMENT", INVALID, s.Jacobian,
                           pb2.JacobianRequest(model=name, inputs=batch_inputs, wrt=first))
        bad_len = dict(batch_inputs)
        bad_len[first] = pb2.Tensor(shape=list(x.shape), data=x.reshape(-1)[:-1].tolist())
        self.expect_status(f"errors: Predict {name} data length != product(shape) -> INVALID_ARGUMENT", INVALID,
                           s.Predict, pb2.PredictRequest(model=name, inputs=bad_len))
        missing = {n: t for n, t in batch_inputs.items() if n != first}
        self.expect_status(f"errors: Predict {name} missing input -> INVALID_ARGUMENT", INVALID, s.Predict,
                           pb2.PredictRequest(model=name, inputs=missing))
        self.expect_status(f"errors: Jacobian {name} unknown wrt -> INVALID_ARGUMENT", INVALID, s.Jacobian,
                           pb2.JacobianRequest(model=name, inputs=sample_inputs, wrt="no_such_input"))
        self.expect_status(f"errors: BatchJacobian {name} unknown wrt -> INVALID_ARGUMENT", INVALID, s.BatchJacobian,
                           pb2.BatchJacobianRequest(model=name, inputs=batch_inputs, wrt="no_such_input"))
        self.expect_status(f"errors: BatchJacobian {name} unknown output in of -> INVALID_ARGUMENT", INVALID,
                           s.BatchJacobian,
                           pb2.BatchJacobianRequest(model=name, inputs=batch_inputs, wrt=first, of=["no_such_output"]))


# ------------------------------------------------------------------------------- runs


def run_against_server(args, pb2, pb2_grpc, refs: List[Reference]) -> int:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    with grpc.insecure_channel(args.target, options=options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            print(f"FAIL connect: no server at {args.target} within {args.connect_timeout}s")
            print("summary: 0 passed, 1 failed")
            return 1
        checker = Checker(pb2, pb2_grpc.JacobianServiceStub(channel), args.timeout)

        listing = checker.call("ListModels", checker.stub.ListModels, pb2.ListModelsRequest())
        if listing is None:
            print(f"summary: {checker.passed} passed, {checker.failed} failed")
            return 1
        states: Dict[str, List[str]] = {}
        for m in listing.models:
            states.setdefault(m.name, []).append(f"{m.version}:{m.state}")
        ready = {m.name for m in listing.models if m.state == "READY"}
        checker.record("ListModels", [], ", ".join(f"{n} [{' '.join(v)}]" for n, v in sorted(states.items())))

        required = [m for m in (args.require.split(",") if args.require else []) if m]
        for m in required:
            checker.record(f"required model {m} is READY", [] if m in ready else [f"states {states.get(m, 'absent')}"])

        checked = []
        for ref in refs:
            if args.models and ref.model not in args.models.split(","):
                continue
            if ref.model not in ready:
                # A reference the server does not serve is a failure, not a skip: a model that failed to load
                # must not turn this check green. --models narrows the check to the models meant to be served.
                checker.record(f"{ref.model} is READY", [f"states {states.get(ref.model, 'not listed')}"])
                continue
            checker.check_model(ref)
            checked.append(ref)

        if not checked:
            checker.record("at least one reference model is READY", ["none of the reference models is served"])
        else:
            # Error statuses against one served model: mlp_tanh if present (single
            # input, cheap), otherwise whichever was checked first.
            target = next((r for r in checked if r.model == "mlp_tanh"), checked[0])
            checker.check_errors(target)

    print(f"summary: {checker.passed} passed, {checker.failed} failed")
    return 0 if checker.failed == 0 else 1


def self_test(pb2, refs: List[Reference]) -> int:
    """Offline checks: messages build and round-trip, and compare() accepts/rejects as it should."""
    passed = failed = 0

    def record(label: str, ok: bool, detail: str = "") -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'} {label}" + (f": {detail}" if detail else ""))

    for ref in refs:
        req = pb2.BatchJacobianRequest(model=ref.model, inputs=to_tensor_map(pb2, ref.inputs), wrt=list(ref.inputs)[0])
        parsed = pb2.BatchJacobianRequest.FromString(req.SerializeToString())
        # Inputs were float32 to begin with, so the float wire format must carry them exactly.
        exact = all(
            np.array_equal(np.asarray(parsed.inputs[n].data, dtype=np.float32).reshape(a.shape), a)
            for n, a in ref.inputs.items()
        )
        record(f"self-test {ref.model}: request round-trips inputs exactly", exact)

        # A float32 rounding of the reference must pass; a perturbation of 1e-3 of the
        # scale in one element, or a wrong shape, must not.
        for w, per_out in ref.jacobians.items():
            for o, jac in per_out.items():
                t = to_tensor(pb2, jac)
                ok = compare(t, jac) is None
                bumped = jac.copy().reshape(-1)
                bumped[bumped.size // 2] += 1e-3 * float(np.max(np.abs(jac)))
                caught_value = compare(to_tensor(pb2, bumped.reshape(jac.shape)), jac) is not None
                caught_shape = compare(to_tensor(pb2, jac.reshape(jac.shape[0], -1)), jac) is not None
                record(f"self-test {ref.model} d{o}/d{w} {list(jac.shape)}: compare()",
                       ok and caught_value and caught_shape,
                       f"float32 ok={ok}, perturbation caught={caught_value}, shape caught={caught_shape}")
    print(f"summary: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main(argv: Optional[List[str]] = None) -> int:
    here = Path(__file__).resolve().parent
    repo = here.parents[2]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:50051", help="server address host:port")
    p.add_argument("--fixtures", type=Path, default=repo / "tests" / "fixtures", help="folder with reference/*.json")
    p.add_argument("--proto", type=Path, default=repo / "src" / "Protos", help=f"proto root holding {PROTO_FILE}")
    p.add_argument("--models", default="", help="comma-separated subset of reference models to check")
    p.add_argument("--require", default="", help="comma-separated models that must be READY (fail otherwise)")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per RPC, seconds")
    p.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for the server")
    p.add_argument("--protoc", default="/usr/bin/protoc")
    p.add_argument("--grpc-plugin", default="/usr/bin/grpc_python_plugin")
    p.add_argument("--self-test", action="store_true", help="no server: stubs, references and comparison logic only")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="jacservice_stubs_") as tmp:
        pb2, pb2_grpc = generate_stubs(args.proto, Path(tmp), args.protoc, args.grpc_plugin)
        refs = load_references(args.fixtures)
        print(f"stubs generated from {args.proto / PROTO_FILE}; {len(refs)} references: "
              + ", ".join(r.model for r in refs), flush=True)
        if args.self_test:
            return self_test(pb2, refs)
        return run_against_server(args, pb2, pb2_grpc, refs)


if __name__ == "__main__":
    sys.exit(main())
