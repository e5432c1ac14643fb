"""The asyncio client: Client's methods as coroutines, over a grpc.aio channel."""

from __future__ import annotations

import asyncio
import collections.abc
import time
from typing import Any, AsyncIterable, AsyncIterator, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from . import _core as core
from . import errors
from ._core import (ArrayLike, HessianResult, Inputs, JacobianResult, JvpResult, LaplacianResult, ModeLike,
                    ModelInfo, Prediction, Tls, VjpResult)


class AsyncClient:
    """Client with every call a coroutine (grpc.aio); `async with` it or await close(). Create it inside
    the event loop that uses it.

    Every call has a deadline (`timeout` seconds unless the call names its own, retries included) and is retried on
    UNAVAILABLE, on INTERNAL from a stream reset in transit, and on RESOURCE_EXHAUSTED unless the server marks it final
    (a negative grpc-retry-pushback-ms), up to `retries` times with jittered exponential backoff or after the wait the
    server names: every JacService call is idempotent. Inputs are
    NumPy arrays (any float dtype; torch.Tensor and jax.Array too), sent as float32; their names and shapes are checked
    against the model's signature first (fetched once per model and version), refusing a bad one with the server's
    own INVALID_ARGUMENT message. Results are read-only float32 arrays over the received bytes.

    tls: False/None (plaintext), True (TLS, the system's CAs) or a Tls(ca=..., cert=..., key=...); a target starting
    with https:// means TLS too. token: a JWT sent as `authorization: Bearer`; api_key: sent as `x-api-key`.
    """

    def __init__(self, target: str, *, timeout: float = 30.0, retries: int = 4, tls: Union[bool, Tls, None] = None,
                 token: Optional[str] = None, api_key: Optional[str] = None, max_message_bytes: int = 256 << 20,
                 check_shapes: bool = True, channel_options: Sequence[Tuple[str, Any]] = ()) -> None:
        address, settings = core.split_target(target, tls)
        options = core.channel_options(max_message_bytes, settings) + list(channel_options)
        self._channel = (grpc.aio.secure_channel(address, core.credentials(settings), options=options) if settings
                         else grpc.aio.insecure_channel(address, options=options))
        self._methods = core.bind(self._channel)
        self._metadata = core.metadata(token, api_key)
        self._timeout = timeout
        self._backoff = core.Backoff(retries)
        self._max_message_bytes = max_message_bytes
        self._check_shapes = check_shapes
        self._signatures: Dict[Tuple[str, str], ModelInfo] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel, e.g. for jacservice.v1.jacservice_pb2_grpc.JacobianServiceStub(client.channel)."""
        return self._channel

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------------ the RPCs

    async def predict(self, model: str, inputs: Inputs, *, version: str = "", timeout: Optional[float] = None) -> Prediction:
        """Outputs for a batch: every input with the batch axis first."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        return core.prediction(await self._unary("Predict", core.predict_request(model, version, arrays), timeout))

    async def jacobian(self, model: str, inputs: Inputs, *, wrt: str = "", of: Sequence[str] = (), mode: ModeLike = "auto",
                 version: str = "", timeout: Optional[float] = None) -> JacobianResult:
        """Outputs and Jacobians of ONE sample (inputs without the batch axis): jacobians[o] = out_shape ++ in_shape."""
        arrays = await self._inputs(model, version, inputs, batched=False, timeout=timeout)
        request = core.jacobian_request(model, version, arrays, wrt, of, mode)
        return core.jacobian_result(await self._unary("Jacobian", request, timeout))

    async def jacobian_stream(self, model: str, samples: Union[Iterable[Inputs], AsyncIterable[Inputs]], *, wrt: str = "",
                              of: Sequence[str] = (), mode: ModeLike = "auto", version: str = "",
                              timeout: Optional[float] = None) -> AsyncIterator[Union[JacobianResult, errors.JacServiceError]]:
        """As Client.jacobian_stream: one sample's outputs and Jacobians per item of `samples` (an iterable or an async
        iterable), over one JacobianStream call, in order; a refused sample yields its error, the call's own failure
        raises. `timeout` bounds the whole call."""
        async def requests() -> AsyncIterator[Any]:
            async for inputs in _each(samples):
                info = await self._signature(model, version, timeout) if core.needs_signature(inputs) else None
                yield core.jacobian_request(model, version, core.input_arrays(inputs, info), wrt, of, mode)

        call = self._methods["JacobianStream"](requests(), timeout=self._timeout if timeout is None else timeout,
                                               metadata=self._metadata)
        try:
            async for answer in call:
                yield core.stream_answer(answer)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    async def batch_jacobian(self, model: str, inputs: Inputs, *, wrt: str = "", of: Sequence[str] = (),
                       mode: ModeLike = "auto", version: str = "", timeout: Optional[float] = None,
                       stream: Optional[bool] = None, max_rows_per_chunk: int = 0) -> JacobianResult:
        """Outputs and per-sample Jacobians of a batch: jacobians[o] = [B] ++ out_shape ++ in_shape.

        stream=None sends one BatchJacobian unless the result will not fit one message (by the signature, or because
        the server refuses it as over its limit), and then streams it in chunks and reassembles them; True always
        streams (max_rows_per_chunk bounds a chunk), False never does."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        request = core.batch_jacobian_request(model, version, arrays, wrt, of, mode, max_rows_per_chunk)
        fall_back = stream is None
        if stream is None:
            info = self._signatures.get((model, version))
            size = core.result_bytes(info, arrays, wrt, of) if info else None
            stream = size is not None and size > self._max_message_bytes
        if stream:
            return await self._stream(request, timeout)
        try:
            return core.jacobian_result(await self._unary("BatchJacobian", request, timeout))
        except errors.ResourceExhaustedError as e:
            if not (fall_back and core.is_result_too_large(e)):
                raise
            return await self._stream(request, timeout)

    async def stream_batch_jacobian(self, model: str, inputs: Inputs, *, wrt: str = "", of: Sequence[str] = (),
                              mode: ModeLike = "auto", version: str = "", timeout: Optional[float] = None,
                              max_rows_per_chunk: int = 0) -> JacobianResult:
        """batch_jacobian through StreamBatchJacobian, whatever the size: the chunks reassembled into one result."""
        return await self.batch_jacobian(model, inputs, wrt=wrt, of=of, mode=mode, version=version, timeout=timeout,
                                   stream=True, max_rows_per_chunk=max_rows_per_chunk)

    async def jvp(self, model: str, inputs: Inputs, tangents: ArrayLike, *, wrt: str = "", of: Sequence[str] = (),
            version: str = "", timeout: Optional[float] = None) -> JvpResult:
        """J·v for a batch: tangents [B] ++ in_shape(wrt) (one direction per sample) or [B, T] ++ in_shape(wrt)."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        return core.jvp_result(await self._unary("Jvp", core.jvp_request(model, version, arrays, tangents, wrt, of), timeout))

    async def vjp(self, model: str, inputs: Inputs, cotangents: Mapping[str, ArrayLike], *, wrt: str = "",
            of: Sequence[str] = (), version: str = "", timeout: Optional[float] = None) -> VjpResult:
        """uᵀ·J for a batch: one cotangent per output, [B] ++ out_shape(o) or [B, T] ++ out_shape(o)."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        request = core.vjp_request(model, version, arrays, cotangents, wrt, of)
        return core.vjp_result(await self._unary("Vjp", request, timeout))

    async def batch_hessian(self, model: str, inputs: Inputs, *, wrt: str = "", of: Sequence[str] = (),
                      include_jacobian: bool = False, version: str = "",
                      timeout: Optional[float] = None) -> HessianResult:
        """Per-sample Hessians [B] ++ out_shape ++ in_shape ++ in_shape (and the Jacobians with include_jacobian)."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        request = core.hessian_request(model, version, arrays, wrt, of, include_jacobian)
        return core.hessian_result(await self._unary("BatchHessian", request, timeout))

    async def batch_laplacian(self, model: str, inputs: Inputs, *, wrt: str = "", of: Sequence[str] = (),
                        axes: Sequence[int] = (), include_jacobian: bool = False, version: str = "",
                        timeout: Optional[float] = None) -> LaplacianResult:
        """Per-sample Laplacians [B] ++ out_shape: the Hessian's trace over `axes` (flat indices; all by default)."""
        arrays = await self._inputs(model, version, inputs, batched=True, timeout=timeout)
        request = core.laplacian_request(model, version, arrays, wrt, of, axes, include_jacobian)
        return core.laplacian_result(await self._unary("BatchLaplacian", request, timeout))

    async def list_models(self, *, timeout: Optional[float] = None) -> List[ModelInfo]:
        """Every model version in the repository, whatever its state."""
        response = await self._unary("ListModels", core.wire.ListModelsRequest(), timeout)
        return [core.model_info(m) for m in response.models]

    async def get_model(self, model: str, version: str = "", *, timeout: Optional[float] = None) -> ModelInfo:
        """One version's signature and state ("" means the highest version)."""
        info = core.model_info(await self._unary("GetModel", core.wire.GetModelRequest(model=model, version=version), timeout))
        if info.state == "READY":
            self._signatures[(model, version)] = info
        return info

    async def wait_until_ready(self, model: str, version: str = "", *, timeout: Optional[float] = None,
                         poll: float = 0.2) -> ModelInfo:
        """Waits until the server answers and the model is READY; raises FailedPreconditionError if it FAILED to
        load, DeadlineExceededError if `timeout` (else the client's) passes first."""
        wait = core.ReadinessWait(model, self._timeout if timeout is None else timeout, poll)
        while True:
            remaining = wait.remaining()
            try:
                # wait_for_ready: a server that is not up yet is waited for, not an error.
                response = await self._methods["GetModel"](core.wire.GetModelRequest(model=model, version=version),
                                                     timeout=remaining, metadata=self._metadata, wait_for_ready=True)
                info = wait.answer(response)
                if info is not None:
                    self._signatures[(model, version)] = info
                    return info
            except grpc.RpcError as e:
                wait.refused(e)
            await asyncio.sleep(wait.pause())

    # ------------------------------------------------------------------------------------------------ plumbing

    async def _signature(self, model: str, version: str, timeout: Optional[float], refresh: bool = False) -> Optional[ModelInfo]:
        info = None if refresh else self._signatures.get((model, version))
        if info is None:
            info = await self.get_model(model, version, timeout=timeout)
        # A version still loading (or failed) has no signature to check against: the server will say why.
        return info if info.state == "READY" else None

    async def _inputs(self, model: str, version: str, inputs: Inputs, batched: bool,
                timeout: Optional[float]) -> Dict[str, np.ndarray]:
        if not self._check_shapes and not core.needs_signature(inputs):
            return core.input_arrays(inputs, None)
        info = await self._signature(model, version, timeout)
        arrays = core.input_arrays(inputs, info)
        if self._check_shapes and info is not None and core.check_inputs(info, arrays, batched) is not None:
            # The cached signature may be of a version since replaced: look again before refusing.
            info = await self._signature(model, version, timeout, refresh=True)
            problem = core.check_inputs(info, arrays, batched) if info else None
            if problem is not None:
                raise errors.error_for(grpc.StatusCode.INVALID_ARGUMENT, problem, local=True)
        return arrays

    async def _unary(self, method: str, request: Any, timeout: Optional[float]) -> Any:
        call = self._methods[method]
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        attempt = 0
        while True:
            try:
                return await call(request, timeout=deadline - time.monotonic(), metadata=self._metadata)
            except grpc.RpcError as e:
                error = errors.from_rpc_error(e)
            await self._before_retry(error, attempt, deadline)
            attempt += 1

    async def _stream(self, request: Any, timeout: Optional[float]) -> JacobianResult:
        call = self._methods["StreamBatchJacobian"]
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        attempt = 0
        while True:
            assembler = core.ChunkAssembler()
            try:
                async for chunk in call(request, timeout=deadline - time.monotonic(), metadata=self._metadata):
                    assembler.add(chunk)
                return assembler.result()
            except grpc.RpcError as e:
                error = errors.from_rpc_error(e)
            await self._before_retry(error, attempt, deadline)
            attempt += 1

    async def _before_retry(self, error: errors.JacServiceError, attempt: int, deadline: float) -> None:
        """Raises `error` unless it is worth another attempt; otherwise sleeps the backoff."""
        if not core.worth_retrying(error) or attempt >= self._backoff.retries:
            raise error
        delay = self._backoff.delay(attempt, error.retry_pushback_ms)
        if time.monotonic() + delay >= deadline:
            raise error
        await asyncio.sleep(delay)


async def _each(items: Union[Iterable[Any], AsyncIterable[Any]]) -> AsyncIterator[Any]:
    """An async iteration over either kind of iterable."""
    if isinstance(items, collections.abc.AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
