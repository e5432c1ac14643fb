"""Tests of the installed `jacservice` package against the real server (driven by
tests/JacService.Integration.Tests/PythonPackageTests.cs, which builds the venv, installs the package and starts the
servers). Run by hand:

    JACSERVICE_TARGET=127.0.0.1:50051 JACSERVICE_FIXTURES=tests/fixtures venv/bin/python -m unittest -v \\
        clients/python/tests/test_jacservice.py

Environment:
  JACSERVICE_TARGET     plaintext server serving the fixture models, `garbage` (fails to load) and `slow_queue`
                        (mlp_tanh waiting 10 s for company), with --Limits:MaxResponseMiB=4
  JACSERVICE_FIXTURES   tests/fixtures (the reference/*.json files)
  JACSERVICE_TLS_TARGET, JACSERVICE_TLS_CA, JACSERVICE_TOKEN, JACSERVICE_TOKEN_METADATA_ONLY
                        optional: a TLS server with JWT authentication, its CA, a token with the inference and
                        metadata scopes and one with the metadata scope only
  JACSERVICE_SERVER_DLL optional: the server's build, for the test that restarts a server of its own
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import shutil
import threading
import time
import unittest
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import grpc
import numpy as np

import jacservice
from jacservice import _core as core
from jacservice import errors

TARGET = os.environ.get("JACSERVICE_TARGET", "")
FIXTURES = Path(os.environ.get("JACSERVICE_FIXTURES", "tests/fixtures"))
TLS_TARGET = os.environ.get("JACSERVICE_TLS_TARGET", "")
TLS_CA = os.environ.get("JACSERVICE_TLS_CA", "")
TOKEN = os.environ.get("JACSERVICE_TOKEN", "")
TOKEN_METADATA_ONLY = os.environ.get("JACSERVICE_TOKEN_METADATA_ONLY", "")
SERVER_DLL = os.environ.get("JACSERVICE_SERVER_DLL", "")
# The server computes in float32, the references in float64: max |got - ref| <= REL_TOL * max |ref| per tensor.
REL_TOL = 1e-4
# An all-zero reference would otherwise demand bit-exact zeros from float32 arithmetic.
ABS_FLOOR = 1e-7
LIMIT_BYTES = 4 << 20  # the plaintext server's --Limits:MaxResponseMiB


def array(t: Dict[str, Any]) -> np.ndarray:
    return np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])


def load_references() -> List[Dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((FIXTURES / "reference").glob("*.json"))]


REFERENCES = load_references() if (FIXTURES / "reference").is_dir() else []


class Checks(unittest.TestCase):
    def close(self, got: np.ndarray, ref: np.ndarray, what: str, tol: float = REL_TOL) -> None:
        self.assertIsInstance(got, np.ndarray, what)
        self.assertEqual(got.dtype, np.float32, what)
        self.assertEqual(tuple(got.shape), tuple(ref.shape), f"{what}: shape")
        err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        allowed = max(tol * float(np.max(np.abs(ref))) if ref.size else 0.0, ABS_FLOOR)
        self.assertTrue(err <= allowed, f"{what}: max abs error {err:.3g}, allowed {allowed:.3g}")

    def same_numbers(self, results: Dict[str, Any], ref: Dict[str, Any]) -> None:
        """Every result of one reference model (see gather) against the reference file."""
        model = ref["model"]
        inputs = {n: array(t) for n, t in ref["inputs"].items()}
        for name, t in ref["outputs"].items():
            self.close(results["predict"].outputs[name], array(t), f"{model} predict {name}")
        for wrt, per_output in ref["jacobians"].items():
            for mode in ("auto", "forward", "reverse"):
                r = results[("batch_jacobian", wrt, mode)]
                if mode != "auto":
                    self.assertEqual(r.mode, jacservice.DerivativeMode[mode.upper()])
                for out, t in per_output.items():
                    self.close(r.jacobians[out], array(t), f"{model} batch_jacobian d{out}/d{wrt} {mode}")
                    self.close(r.outputs[out], array(ref["outputs"][out]), f"{model} batch_jacobian {out}")
            streamed = results[("stream", wrt)]
            for out, t in per_output.items():
                self.close(streamed.jacobians[out], array(t), f"{model} streamed d{out}/d{wrt}")
                self.close(streamed.outputs[out], array(ref["outputs"][out]), f"{model} streamed {out}")
            for b in range(ref["batch"]):
                r = results[("jacobian", wrt, b)]
                for out, t in per_output.items():
                    self.close(r.jacobians[out], array(t)[b], f"{model} jacobian sample {b} d{out}/d{wrt}")
                    self.close(r.outputs[out], array(ref["outputs"][out])[b], f"{model} jacobian sample {b} {out}")
        for wrt, j in ref["jvp"].items():
            for out, t in j["outputs"].items():
                self.close(results[("jvp", wrt)].jvps[out], array(t), f"{model} jvp d{out}/d{wrt}")
            self.close(results[("vjp", wrt)].vjp, array(ref["vjp"][wrt]["result"]), f"{model} vjp d/d{wrt}")
        for wrt, per_output in (ref.get("hessians") or {}).items():
            h = results[("hessian", wrt)]
            for out, t in per_output.items():
                self.close(h.hessians[out], array(t), f"{model} batch_hessian d²{out}/d{wrt}²")
                self.close(h.jacobians[out], array(ref["jacobians"][wrt][out])[:t["shape"][0]],
                           f"{model} batch_hessian d{out}/d{wrt}")
            for out, t in ref["laplacians"][wrt].items():
                self.close(results[("laplacian", wrt)].laplacians[out], array(t), f"{model} batch_laplacian Δ{out}")
                self.close(results[("laplacian", wrt)].jacobians[out], array(ref["jacobians"][wrt][out]),
                           f"{model} batch_laplacian d{out}/d{wrt}")
            for out, t in ref["laplacians_axes"]["values"][wrt].items():
                self.close(results[("laplacian_axes", wrt)].laplacians[out], array(t),
                           f"{model} batch_laplacian Δ{out} over {ref['laplacians_axes']['axes'][wrt]}")


def calls(ref: Dict[str, Any]) -> Dict[Any, Any]:
    """The calls whose results `same_numbers` checks, as (method name, args, kwargs), keyed like the results."""
    model = ref["model"]
    # float64 in: any float dtype is accepted and sent as float32 (the references' inputs are float32 values).
    inputs = {n: array(t) for n, t in ref["inputs"].items()}
    plan: Dict[Any, Any] = {"predict": ("predict", (model, inputs), {})}
    for wrt in ref["jacobians"]:
        for mode in ("auto", "forward", "reverse"):
            plan[("batch_jacobian", wrt, mode)] = ("batch_jacobian", (model, inputs), {"wrt": wrt, "mode": mode})
        plan[("stream", wrt)] = ("stream_batch_jacobian", (model, inputs), {"wrt": wrt, "max_rows_per_chunk": 1})
        for b in range(ref["batch"]):
            sample = {n: x[b] for n, x in inputs.items()}
            plan[("jacobian", wrt, b)] = ("jacobian", (model, sample), {"wrt": wrt})
    for wrt, j in ref["jvp"].items():
        plan[("jvp", wrt)] = ("jvp", (model, inputs, array(j["tangents"])), {"wrt": wrt})
        cotangents = {o: array(t) for o, t in ref["vjp"][wrt]["cotangents"].items()}
        plan[("vjp", wrt)] = ("vjp", (model, inputs, cotangents), {"wrt": wrt})
    for wrt, per_output in (ref.get("hessians") or {}).items():
        # Hessians are stored for the first S samples only where they are big (wide_classifier).
        s = next(iter(per_output.values()))["shape"][0]
        first = {n: x[:s] for n, x in inputs.items()}
        plan[("hessian", wrt)] = ("batch_hessian", (model, first), {"wrt": wrt, "include_jacobian": True})
        plan[("laplacian", wrt)] = ("batch_laplacian", (model, inputs), {"wrt": wrt, "include_jacobian": True})
        plan[("laplacian_axes", wrt)] = ("batch_laplacian", (model, inputs),
                                         {"wrt": wrt, "axes": ref["laplacians_axes"]["axes"][wrt]})
    return plan


def gather(client: jacservice.Client, ref: Dict[str, Any]) -> Dict[Any, Any]:
    return {key: getattr(client, method)(*args, **kwargs) for key, (method, args, kwargs) in calls(ref).items()}


async def gather_async(client: jacservice.AsyncClient, ref: Dict[str, Any]) -> Dict[Any, Any]:
    plan = calls(ref)
    # Concurrently, as an asyncio user would: the results must still each be their own call's.
    done = await asyncio.gather(*(getattr(client, m)(*a, **k) for m, a, k in plan.values()))
    return dict(zip(plan.keys(), done))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@unittest.skipUnless(TARGET, "JACSERVICE_TARGET not set")
class NumbersTests(Checks):
    def test_every_method_matches_the_references_sync(self) -> None:
        self.assertGreaterEqual(len(REFERENCES), 8)
        with jacservice.Client(TARGET, timeout=60) as client:
            for ref in REFERENCES:
                with self.subTest(model=ref["model"]):
                    self.same_numbers(gather(client, ref), ref)

    def test_every_method_matches_the_references_async(self) -> None:
        async def run() -> None:
            async with jacservice.AsyncClient(TARGET, timeout=60) as client:
                for ref in REFERENCES:
                    with self.subTest(model=ref["model"]):
                        self.same_numbers(await gather_async(client, ref), ref)
        asyncio.run(run())

    def test_jacobian_stream_answers_every_sample_in_order_and_a_bad_one_in_its_place(self) -> None:
        with jacservice.Client(TARGET, timeout=60) as client:
            for ref in REFERENCES:
                model = ref["model"]
                inputs = {n: array(t) for n, t in ref["inputs"].items()}
                for wrt, per_output in ref["jacobians"].items():
                    with self.subTest(model=model, wrt=wrt):
                        samples = [{n: x[b] for n, x in inputs.items()} for b in range(ref["batch"])]
                        # A sample with one element too few, between the good ones.
                        bad = {n: x.reshape(-1)[:-1] for n, x in samples[0].items()}
                        answers = list(client.jacobian_stream(model, samples[:1] + [bad] + samples[1:], wrt=wrt))
                        self.assertEqual(len(answers), ref["batch"] + 1)
                        self.assertIsInstance(answers[1], jacservice.InvalidArgumentError)
                        good = answers[:1] + answers[2:]
                        for b, r in enumerate(good):
                            for out, t in per_output.items():
                                self.close(r.jacobians[out], array(t)[b], f"{model} jacobian_stream sample {b} d{out}/d{wrt}")

    def test_async_jacobian_stream_takes_an_async_iterable_and_bare_arrays(self) -> None:
        ref = next(r for r in REFERENCES if r["model"] == "pinn")
        xs = array(ref["inputs"]["xt"])

        async def samples():
            for b in range(ref["batch"]):
                yield xs[b]  # a bare array: the client names the model's only input

        async def run() -> List[Any]:
            async with jacservice.AsyncClient(TARGET, timeout=60) as client:
                return [a async for a in client.jacobian_stream("pinn", samples())]
        answers = asyncio.run(run())
        self.assertEqual(len(answers), ref["batch"])
        for b, r in enumerate(answers):
            self.close(r.jacobians["u"], array(ref["jacobians"]["xt"]["u"])[b], f"pinn async jacobian_stream sample {b}")

    def test_list_models_and_get_model_describe_the_signatures(self) -> None:
        with jacservice.Client(TARGET, timeout=30) as client:
            listed = {(m.name, m.version): m for m in client.list_models()}
            for ref in REFERENCES:
                self.assertEqual(listed[(ref["model"], "1")].state, "READY")
            self.assertEqual(listed[("garbage", "1")].state, "FAILED")
            info = client.get_model("two_inputs")
            self.assertEqual([(t.name, t.shape, t.dtype) for t in info.inputs],
                             [("x", (-1, 8), "float"), ("z", (-1, 4), "float")])
            self.assertEqual([(t.name, t.shape) for t in info.outputs], [("y", (-1, 5))])
            self.assertEqual(client.get_model("mlp_tanh").version, "2")  # the highest version
            self.assertEqual(client.get_model("mlp_tanh", "1").version, "1")
            ready = client.wait_until_ready("pinn", timeout=30)
            self.assertEqual(ready.state, "READY")

    def test_async_list_models_get_model_and_wait(self) -> None:
        async def run() -> None:
            async with jacservice.AsyncClient(TARGET, timeout=30) as client:
                names = {m.name for m in await client.list_models()}
                self.assertTrue({r["model"] for r in REFERENCES} <= names)
                self.assertEqual((await client.get_model("pinn")).inputs[0].shape, (-1, 2))
                self.assertEqual((await client.wait_until_ready("pinn")).state, "READY")
                with self.assertRaises(jacservice.FailedPreconditionError) as failed:
                    await client.wait_until_ready("garbage", timeout=20)
                self.assertIn("failed to load", failed.exception.message)
        asyncio.run(run())

    def test_a_batch_whose_result_exceeds_one_message_is_streamed_and_reassembled(self) -> None:
        ref = next(r for r in REFERENCES if r["model"] == "mlp_tanh")
        repeats = 1000  # 3,000 rows x 16 x 32 floats: 6.1 MB, over the server's 4 MiB per message
        x = np.tile(array(ref["inputs"]["x"]), (repeats, 1)).astype(np.float32)
        expected = np.tile(array(ref["jacobians"]["x"]["y"]), (repeats, 1, 1))
        expected_y = np.tile(array(ref["outputs"]["y"]), (repeats, 1))
        self.assertGreater(expected.size * 4, LIMIT_BYTES)
        with jacservice.Client(TARGET, timeout=60) as client:
            with self.assertRaises(jacservice.ResourceExhaustedError) as refused:
                client.batch_jacobian("mlp_tanh", {"x": x}, stream=False)
            self.assertIn("over the limit", refused.exception.message)
            self.assertEqual(refused.exception.retry_pushback_ms, -1)  # too large for any retry: sent once
            # stream=None: refused as one message, so streamed; then with the client's own limit low, streamed at once.
            r = client.batch_jacobian("mlp_tanh", {"x": x})
            self.close(r.jacobians["y"], expected, "reassembled after the refusal")
            self.close(r.outputs["y"], expected_y, "reassembled outputs")
        with jacservice.Client(TARGET, timeout=60, max_message_bytes=LIMIT_BYTES) as client:
            r = client.batch_jacobian("mlp_tanh", x)
            self.close(r.jacobians["y"], expected, "streamed by the size estimate")

        async def run() -> None:
            async with jacservice.AsyncClient(TARGET, timeout=60) as client:
                r = await client.batch_jacobian("mlp_tanh", {"x": x})
                self.close(r.jacobians["y"], expected, "async reassembled")
                r = await client.stream_batch_jacobian("mlp_tanh", {"x": x}, max_rows_per_chunk=7)
                self.close(r.jacobians["y"], expected, "async streamed in 7-row chunks")
        asyncio.run(run())

    def test_any_float_dtype_torch_tensors_and_bare_arrays_give_the_same_numbers(self) -> None:
        ref = next(r for r in REFERENCES if r["model"] == "pinn")
        x = array(ref["inputs"]["xt"])
        expected = array(ref["jacobians"]["xt"]["u"])
        with jacservice.Client(TARGET, timeout=30) as client:
            for dtype in (np.float32, np.float64):
                got = client.batch_jacobian("pinn", {"xt": x.astype(dtype)}).jacobians["u"]
                self.close(got, expected, f"inputs as {np.dtype(dtype).name}")
            # Fortran order and a strided view are made contiguous float32 before sending.
            self.close(client.batch_jacobian("pinn", np.asfortranarray(x)).jacobians["u"], expected, "Fortran order")
            wide = np.zeros((3, 4))
            wide[:, ::2] = x
            self.close(client.batch_jacobian("pinn", wide[:, ::2]).jacobians["u"], expected, "strided view")
            self.close(client.predict("pinn", x.tolist()).outputs["u"], array(ref["outputs"]["u"]), "nested lists")
            # float16 rounds the inputs: compare with the float32 result of the rounded inputs.
            half = x.astype(np.float16)
            self.close(client.predict("pinn", half).outputs["u"],
                       client.predict("pinn", half.astype(np.float32)).outputs["u"].astype(np.float64), "float16")
            with self.assertRaises(TypeError):
                client.predict("pinn", x.astype(np.complex64))
            try:
                import torch
            except ImportError:
                return
            t = torch.tensor(x, requires_grad=True)
            r = client.batch_jacobian("pinn", {"xt": t})
            self.close(r.jacobians["u"], expected, "torch.Tensor inputs")
            as_torch = jacservice.interop.to_torch(r.jacobians["u"])
            self.assertIsInstance(as_torch, torch.Tensor)
            self.assertEqual(tuple(as_torch.shape), (3, 1, 2))

    def test_results_are_read_only_views_and_float32_inputs_are_not_copied(self) -> None:
        a = np.ones((2, 2), dtype=np.float32)
        self.assertIs(core.to_float32(a, "x"), a)
        with jacservice.Client(TARGET, timeout=30) as client:
            u = client.predict("pinn", {"xt": a}).outputs["u"]
            self.assertFalse(u.flags.writeable)
            self.assertFalse(u.flags.owndata)  # a view over the response's bytes


@unittest.skipUnless(TARGET, "JACSERVICE_TARGET not set")
class ErrorTests(Checks):
    def test_shapes_are_checked_before_sending_with_the_servers_own_messages(self) -> None:
        bad = [
            ("pinn", {"xt": np.zeros((2, 3))}, "predict"),
            ("pinn", {"xt": np.zeros((0, 2))}, "predict"),
            ("pinn", {"xt": np.zeros((2,))}, "batch_jacobian"),
            ("pinn", {"xy": np.zeros((2, 2))}, "predict"),
            ("two_inputs", {"x": np.zeros((2, 8))}, "batch_hessian"),
            ("two_inputs", {"x": np.zeros((2, 8)), "z": np.zeros((3, 4))}, "predict"),
            ("pinn", {"xt": np.zeros((3,))}, "jacobian"),
            ("small_cnn", {"image": np.zeros((28, 28))}, "jacobian"),
        ]
        with jacservice.Client(TARGET, timeout=30) as checked, \
                jacservice.Client(TARGET, timeout=30, check_shapes=False) as unchecked:
            for model, inputs, method in bad:
                with self.subTest(model=model, method=method, inputs={k: v.shape for k, v in inputs.items()}):
                    kwargs = {"wrt": "x"} if model == "two_inputs" and method != "predict" else {}
                    with self.assertRaises(jacservice.InvalidArgumentError) as local:
                        getattr(checked, method)(model, inputs, **kwargs)
                    with self.assertRaises(jacservice.InvalidArgumentError) as remote:
                        getattr(unchecked, method)(model, inputs, **kwargs)
                    self.assertTrue(local.exception.local)
                    self.assertFalse(remote.exception.local)
                    self.assertEqual(local.exception.message, remote.exception.message)
                    self.assertEqual(local.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_every_status_the_server_sends_is_its_own_exception_with_the_servers_message(self) -> None:
        x = np.zeros((2, 32), dtype=np.float32)
        with jacservice.Client(TARGET, timeout=30, retries=0) as client:
            with self.assertRaises(jacservice.InvalidArgumentError) as e:
                client.predict("pinn", {"xt": np.array([[0.1, np.nan]])})
            self.assertEqual(e.exception.message, "input 'xt' holds NaN at flat index 1; inputs must be finite")
            with self.assertRaises(jacservice.InvalidArgumentError) as e:
                client.batch_jacobian("two_inputs", {"x": np.zeros((1, 8)), "z": np.zeros((1, 4))}, wrt="w")
            self.assertEqual(e.exception.message, "unknown wrt 'w'; the model's float inputs are: x, z")
            with self.assertRaises(jacservice.InvalidArgumentError) as e:
                client.batch_laplacian("pinn", {"xt": np.zeros((1, 2))}, axes=[2])
            self.assertIn("axes holds 2, out of range", e.exception.message)
            with self.assertRaises(jacservice.NotFoundError) as e:
                client.predict("no_such_model", {"x": x})
            self.assertIn("no_such_model", e.exception.message)
            with self.assertRaises(jacservice.NotFoundError):
                client.get_model("mlp_tanh", "9")
            with self.assertRaises(jacservice.FailedPreconditionError) as e:
                client.predict("garbage", {"x": x})
            self.assertIn("garbage", e.exception.message)
            with self.assertRaises(jacservice.ResourceExhaustedError) as e:
                # 128 x 128 x 10 floats per sample: 300 samples are 78 MB of Hessians, over the 4 MiB limit.
                client.batch_hessian("wide_classifier", {"x": np.zeros((300, 128))})
            self.assertIn("over the limit", e.exception.message)
            self.assertEqual(e.exception.retry_pushback_ms, -1)
            with self.assertRaises(jacservice.DeadlineExceededError):
                client.predict("slow_queue", {"x": x}, timeout=0.5)
            for error in (e.exception,):
                self.assertIsInstance(error, jacservice.JacServiceError)
        # The client's default deadline applies when a call names none.
        with jacservice.Client(TARGET, timeout=0.5) as client:
            client.get_model("slow_queue")
            with self.assertRaises(jacservice.DeadlineExceededError) as e:
                client.jacobian("slow_queue", {"x": x[0]})
            self.assertEqual(e.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        # Nothing listening: UNAVAILABLE once the retries are spent.
        with jacservice.Client(f"127.0.0.1:{free_port()}", timeout=10, retries=2) as client:
            with self.assertRaises(jacservice.UnavailableError) as e:
                client.list_models()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_async_errors_and_deadlines(self) -> None:
        x = np.zeros((2, 32), dtype=np.float32)

        async def run() -> None:
            async with jacservice.AsyncClient(TARGET, timeout=30, retries=0) as client:
                with self.assertRaises(jacservice.NotFoundError):
                    await client.predict("no_such_model", {"x": x})
                with self.assertRaises(jacservice.InvalidArgumentError) as e:
                    await client.predict("pinn", {"xt": np.zeros((2, 3))})
                self.assertEqual(e.exception.message, "input 'xt': expected shape [B, 2], got [2, 3]")
                with self.assertRaises(jacservice.FailedPreconditionError):
                    await client.batch_jacobian("garbage", {"x": x})
                with self.assertRaises(jacservice.ResourceExhaustedError) as e:
                    await client.batch_hessian("wide_classifier", {"x": np.zeros((300, 128))})
                self.assertEqual(e.exception.retry_pushback_ms, -1)
                with self.assertRaises(jacservice.DeadlineExceededError):
                    await client.predict("slow_queue", {"x": x}, timeout=0.5)
                # Cancelling the task cancels the call: asyncio's own CancelledError, as for any coroutine.
                task = asyncio.ensure_future(client.predict("slow_queue", {"x": x}))
                await asyncio.sleep(0.3)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
            async with jacservice.AsyncClient(f"127.0.0.1:{free_port()}", timeout=10, retries=2) as client:
                with self.assertRaises(jacservice.UnavailableError):
                    await client.get_model("pinn")
        asyncio.run(run())

    def test_resource_exhausted_is_retried_unless_the_server_says_never(self) -> None:
        def refused(pushback: Optional[str]) -> errors.JacServiceError:
            fake = grpc.RpcError()
            fake.code = lambda: grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            fake.details = lambda: "the server holds 250.0 MiB for calls in progress"  # type: ignore[attr-defined]
            trailing = (("grpc-retry-pushback-ms", pushback),) if pushback is not None else ()
            fake.trailing_metadata = lambda: trailing  # type: ignore[attr-defined]
            return errors.from_rpc_error(fake)

        backoff = core.Backoff(retries=4)
        unsaid, wait, never, garbled = refused(None), refused("1500"), refused("-1"), refused("soon")
        self.assertEqual([e.retry_pushback_ms for e in (unsaid, wait, never, garbled)], [None, 1500, -1, -1])
        self.assertEqual([core.worth_retrying(e) for e in (unsaid, wait, never, garbled)], [True, True, False, False])
        self.assertEqual(backoff.delay(0, wait.retry_pushback_ms), 1.5)
        self.assertTrue(0.1 <= backoff.delay(0, unsaid.retry_pushback_ms) <= 0.2)
        # A check the client made itself is never retried.
        self.assertFalse(core.worth_retrying(errors.error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "too large", local=True)))

    def test_every_status_code_maps_to_its_class_and_keeps_the_message(self) -> None:
        expected = {
            grpc.StatusCode.INVALID_ARGUMENT: jacservice.InvalidArgumentError,
            grpc.StatusCode.NOT_FOUND: jacservice.NotFoundError,
            grpc.StatusCode.FAILED_PRECONDITION: jacservice.FailedPreconditionError,
            grpc.StatusCode.RESOURCE_EXHAUSTED: jacservice.ResourceExhaustedError,
            grpc.StatusCode.DEADLINE_EXCEEDED: jacservice.DeadlineExceededError,
            grpc.StatusCode.UNAVAILABLE: jacservice.UnavailableError,
            grpc.StatusCode.CANCELLED: jacservice.CallCancelledError,
            grpc.StatusCode.UNAUTHENTICATED: jacservice.UnauthenticatedError,
            grpc.StatusCode.PERMISSION_DENIED: jacservice.PermissionDeniedError,
            grpc.StatusCode.INTERNAL: jacservice.InternalError,
            grpc.StatusCode.UNKNOWN: jacservice.JacServiceError,
        }
        for code, cls in expected.items():
            fake = grpc.RpcError()
            fake.code = lambda code=code: code  # type: ignore[attr-defined]
            fake.details = lambda: "the server's words"  # type: ignore[attr-defined]
            error = errors.from_rpc_error(fake)
            self.assertIs(type(error), cls)
            self.assertIsInstance(error, jacservice.JacServiceError)
            self.assertEqual((error.code, error.message), (code, "the server's words"))
            self.assertEqual(str(error), f"{code.name}: the server's words")

    def test_a_stream_without_all_its_rows_is_an_error(self) -> None:
        def chunk(offset: int, count: int, total: int) -> Any:
            data = np.zeros((count, 1), dtype=np.float32)
            t = SimpleNamespace(shape=list(data.shape), data=data.tobytes())
            return SimpleNamespace(model="m", version="1", row_offset=offset, row_count=count, total_rows=total,
                                   outputs={"u": t}, jacobians={}, mode=1)
        assembler = core.ChunkAssembler()
        assembler.add(chunk(0, 2, 5))
        assembler.add(chunk(2, 2, 5))
        with self.assertRaises(jacservice.IncompleteResultError) as e:
            assembler.result()
        self.assertEqual(e.exception.message, "the stream ended after 4 of 5 rows")
        with self.assertRaises(jacservice.IncompleteResultError):
            assembler.add(chunk(5, 1, 5))  # a gap: row 4 is missing
        with self.assertRaises(jacservice.IncompleteResultError):
            core.ChunkAssembler().result()


@unittest.skipUnless(TLS_TARGET and TLS_CA and TOKEN, "no TLS server (JACSERVICE_TLS_TARGET, _TLS_CA, _TOKEN)")
class TlsTests(Checks):
    def test_numbers_over_tls_with_a_token_sync_and_async(self) -> None:
        tls = jacservice.Tls(ca=TLS_CA)
        for ref in [r for r in REFERENCES if r["model"] in ("pinn", "two_inputs")]:
            with jacservice.Client(TLS_TARGET, tls=tls, token=TOKEN, timeout=60) as client:
                self.same_numbers(gather(client, ref), ref)

            async def run() -> Dict[Any, Any]:
                # An https:// target means TLS; the CA file here as PEM bytes instead of a path.
                async with jacservice.AsyncClient(f"https://{TLS_TARGET}", tls=jacservice.Tls(ca=Path(TLS_CA).read_bytes()),
                                                  token=TOKEN, timeout=60) as client:
                    return await gather_async(client, ref)
            self.same_numbers(asyncio.run(run()), ref)

    def test_a_missing_or_insufficient_token_and_an_untrusted_certificate(self) -> None:
        tls = jacservice.Tls(ca=TLS_CA)
        x = {"xt": np.zeros((1, 2))}
        with jacservice.Client(TLS_TARGET, tls=tls, timeout=30, retries=0, check_shapes=False) as client:
            with self.assertRaises(jacservice.UnauthenticatedError):
                client.predict("pinn", x)
        with jacservice.Client(TLS_TARGET, tls=tls, token=TOKEN + "x", timeout=30, retries=0,
                               check_shapes=False) as client:
            with self.assertRaises(jacservice.UnauthenticatedError):
                client.predict("pinn", x)
        if TOKEN_METADATA_ONLY:
            with jacservice.Client(TLS_TARGET, tls=tls, token=TOKEN_METADATA_ONLY, timeout=30, retries=0) as client:
                self.assertEqual(client.get_model("pinn").state, "READY")
                with self.assertRaises(jacservice.PermissionDeniedError):
                    client.predict("pinn", x)
        # The system's CAs do not know the test CA: the handshake fails, which gRPC reports as UNAVAILABLE.
        with jacservice.Client(TLS_TARGET, tls=True, token=TOKEN, timeout=10, retries=0) as client:
            with self.assertRaises(jacservice.UnavailableError):
                client.list_models()


class ResetProxy:
    """A relay on a free loopback port in front of `target`. Its first `resets` connections speak just enough HTTP/2 to
    reset their first stream with INTERNAL_ERROR and close with GOAWAY, as a proxy whose upstream died mid-call does;
    later connections are relayed."""

    def __init__(self, target: str, resets: int) -> None:
        host, port = target.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._resets = resets
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            handler = self._reset if self.connections <= self._resets else self._relay
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    @staticmethod
    def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def _reset(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as incoming:
            try:
                conn.sendall(self._frame(0x4, 0, 0))  # SETTINGS
                incoming.read(24)  # the client's preface
                while header := incoming.read(9):
                    kind, flags, stream = header[3], header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                    incoming.read(int.from_bytes(header[:3], "big"))
                    if kind == 0x4 and not flags & 0x1:
                        conn.sendall(self._frame(0x4, 0x1, 0))  # SETTINGS ACK
                    if kind == 0x1:  # HEADERS: the first request
                        conn.sendall(self._frame(0x3, 0, stream, (2).to_bytes(4, "big"))  # RST_STREAM INTERNAL_ERROR
                                     + self._frame(0x7, 0, 0, stream.to_bytes(4, "big") + bytes(4)))  # GOAWAY
                        conn.shutdown(socket.SHUT_WR)
                        # Read on until the client closes: closing with its data unread would reset the connection.
                        while incoming.read(65536):
                            pass
                        return
            except OSError:
                pass

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self._upstream) as upstream:
            def copy(source: socket.socket, sink: socket.socket) -> None:
                try:
                    while data := source.recv(65536):
                        sink.sendall(data)
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            back = threading.Thread(target=copy, args=(upstream, conn), daemon=True)
            back.start()
            copy(conn, upstream)
            back.join()


@unittest.skipUnless(TARGET, "JACSERVICE_TARGET not set")
class TransitResetTests(Checks):
    """gRPC reports a stream reset in transit as INTERNAL; the clients retry it like UNAVAILABLE, and only it."""

    def test_a_stream_reset_in_transit_is_internal_without_retries(self) -> None:
        proxy = ResetProxy(TARGET, resets=1000)
        try:
            with jacservice.Client(proxy.address, timeout=10, retries=0, check_shapes=False) as client:
                with self.assertRaises(errors.InternalError) as caught:
                    client.list_models()
            self.assertIn("RST_STREAM", caught.exception.message)
        finally:
            proxy.close()

    def test_a_stream_reset_in_transit_is_retried_sync_and_async(self) -> None:
        ref = next(r for r in REFERENCES if r["model"] == "pinn")
        inputs = {"xt": array(ref["inputs"]["xt"])}
        proxy = ResetProxy(TARGET, resets=2)
        try:
            with jacservice.Client(proxy.address, timeout=30, retries=4, check_shapes=False) as client:
                r = client.batch_jacobian("pinn", inputs)
            self.close(r.jacobians["u"], array(ref["jacobians"]["xt"]["u"]), "sync")
            self.assertGreater(proxy.connections, 2)
        finally:
            proxy.close()

        async def run() -> Any:
            async with jacservice.AsyncClient(async_proxy.address, timeout=30, retries=4, check_shapes=False) as client:
                return await client.batch_jacobian("pinn", inputs)
        async_proxy = ResetProxy(TARGET, resets=2)
        try:
            r = asyncio.run(run())
            self.close(r.jacobians["u"], array(ref["jacobians"]["xt"]["u"]), "async")
            self.assertGreater(async_proxy.connections, 2)
        finally:
            async_proxy.close()


@unittest.skipUnless(SERVER_DLL, "JACSERVICE_SERVER_DLL not set")
class RestartTests(Checks):
    """A server of the test's own, on a port of its own, stopped and started again while a call is retrying."""

    def start(self, port: int, root: str) -> subprocess.Popen:
        return subprocess.Popen(["dotnet", SERVER_DLL, "--urls", f"http://127.0.0.1:{port}", f"--Models:Root={root}",
                                 f"--Telemetry:MetricsUrl=http://127.0.0.1:{free_port()}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "ASPNETCORE_ENVIRONMENT": "Production"})

    def stop(self, server: subprocess.Popen) -> None:
        if server.poll() is None:
            server.kill()
            server.wait(30)

    def test_a_call_is_retried_across_a_restarted_server(self) -> None:
        ref = next(r for r in REFERENCES if r["model"] == "pinn")
        inputs = {"xt": array(ref["inputs"]["xt"])}
        root = tempfile.mkdtemp(prefix="jacservice-py-restart-")
        shutil.copytree(FIXTURES / "models" / "pinn", Path(root) / "pinn")
        port = free_port()
        servers = [self.start(port, root)]
        try:
            with jacservice.Client(f"127.0.0.1:{port}", timeout=120, retries=30) as client:
                client.wait_until_ready("pinn", timeout=120)
                self.close(client.predict("pinn", inputs).outputs["u"], array(ref["outputs"]["u"]), "before")
                self.stop(servers[0])

                def restart() -> None:
                    time.sleep(2)  # the call below starts while nothing listens
                    servers.append(self.start(port, root))
                threading.Thread(target=restart).start()
                r = client.batch_jacobian("pinn", inputs)
                self.assertEqual(len(servers), 2, "answered before the restart")
                self.close(r.jacobians["u"], array(ref["jacobians"]["xt"]["u"]), "across the restart")

                async def run() -> Any:
                    async with jacservice.AsyncClient(f"127.0.0.1:{port}", timeout=120, retries=30) as aclient:
                        self.stop(servers[-1])
                        threading.Thread(target=restart).start()
                        return await aclient.batch_jacobian("pinn", inputs)
                r = asyncio.run(run())
                self.assertEqual(len(servers), 3, "answered before the second restart")
                self.close(r.jacobians["u"], array(ref["jacobians"]["xt"]["u"]), "async across the restart")
        finally:
            for s in servers:
                self.stop(s)
            shutil.rmtree(root, ignore_errors=True)


class PackageTests(unittest.TestCase):
    def test_installed_with_generated_stubs_and_type_information(self) -> None:
        package = Path(jacservice.__file__).parent
        self.assertTrue((package / "py.typed").is_file())
        for name in ("jacservice_pb2.py", "jacservice_pb2.pyi", "jacservice_pb2_grpc.py", "jacservice_wire_pb2.py"):
            self.assertTrue((package / "v1" / name).is_file(), name)
        from jacservice.v1 import jacservice_pb2, jacservice_pb2_grpc
        self.assertTrue(hasattr(jacservice_pb2_grpc, "JacobianServiceStub"))
        # Every RPC of the contract has a client method.
        rpcs = jacservice_pb2.DESCRIPTOR.services_by_name["JacobianService"].methods_by_name
        self.assertEqual(set(rpcs), set(core.METHODS))
        if os.environ.get("JACSERVICE_EXPECT_VENV"):
            self.assertTrue(str(package).startswith(sys.prefix), f"{package} is not inside the venv {sys.prefix}")
            self.assertNotEqual(sys.prefix, sys.base_prefix)


if __name__ == "__main__":
    unittest.main()
