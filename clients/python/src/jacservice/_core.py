"""What the sync and async clients share: arrays to and from the wire, the signature check, request building, result
types, retries' backoff, channel settings. No I/O happens here."""

from __future__ import annotations

import collections.abc
import enum
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import grpc
import numpy as np

from . import errors
from .v1 import jacservice_pb2 as _pb
from .v1 import jacservice_wire_pb2 as wire

ArrayLike = Any  # np.ndarray, anything np.asarray takes, a torch.Tensor or a jax.Array
Inputs = Union[Mapping[str, ArrayLike], ArrayLike]

SERVICE = _pb.DESCRIPTOR.services_by_name["JacobianService"].full_name

_FLOAT32 = np.dtype("<f4")


class DerivativeMode(enum.IntEnum):
    """How the server computes Jacobians (the proto's DerivativeMode); AUTO lets it choose."""

    AUTO = 0
    FORWARD = 1
    REVERSE = 2


ModeLike = Union[DerivativeMode, str, int]


_MODES = (DerivativeMode.AUTO, DerivativeMode.FORWARD, DerivativeMode.REVERSE)
_MODE_NAMES = {"auto": 0, "forward": 1, "reverse": 2}


def mode_of(value: int) -> DerivativeMode:
    return _MODES[value] if 0 <= value < len(_MODES) else DerivativeMode(value)


def as_mode(mode: ModeLike) -> int:
    if isinstance(mode, str):
        fast = _MODE_NAMES.get(mode)
        if fast is not None:
            return fast
        try:
            return DerivativeMode[mode.upper()]
        except KeyError:
            raise ValueError(f"mode must be auto, forward or reverse, got {mode!r}") from None
    return DerivativeMode(mode)


@dataclass
class TensorInfo:
    name: str
    # -1 for the batch axis and any other dynamic axis.
    shape: Tuple[int, ...]
    # ONNX element type in lower case: "float", "int64", ...
    dtype: str


@dataclass
class ModelInfo:
    """GetModel's answer; `raw` is the message itself (batching statistics, AUTO's choices, history ...)."""

    name: str
    version: str
    state: str
    error: str
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    opset: int
    default_mode: DerivativeMode
    raw: Any = field(repr=False)
    # (batched, ((name, shape), ...)) of inputs already found to fit, so a repeated shape is checked by one lookup.
    known_good: Set[Any] = field(default_factory=set, repr=False, compare=False)


@dataclass
class Prediction:
    model: str
    version: str
    outputs: Dict[str, np.ndarray]


@dataclass
class JacobianResult:
    """outputs[o], and jacobians[o] of shape ([B] ++) out_shape(o) ++ in_shape(wrt).

    `mode` is what computed them (FORWARD or REVERSE); for a streamed result, the first chunk's (under AUTO a chunk of
    another size may have run in the other mode, with the same values)."""

    model: str
    version: str
    outputs: Dict[str, np.ndarray]
    jacobians: Dict[str, np.ndarray]
    mode: DerivativeMode


@dataclass
class JvpResult:
    """jvps[o] = J_o · v in the tangents' layout: [B] ++ out_shape(o) or [B, T] ++ out_shape(o)."""

    model: str
    version: str
    outputs: Dict[str, np.ndarray]
    jvps: Dict[str, np.ndarray]
    mode: DerivativeMode


@dataclass
class VjpResult:
    """vjp = sum over o of cotangent(o)ᵀ · J_o, in the cotangents' layout: [B] ++ in_shape or [B, T] ++ in_shape."""

    model: str
    version: str
    outputs: Dict[str, np.ndarray]
    vjp: np.ndarray
    mode: DerivativeMode


@dataclass
class HessianResult:
    """hessians[o]: [B] ++ out_shape(o) ++ in_shape(wrt) ++ in_shape(wrt); jacobians only with include_jacobian."""

    model: str
    version: str
    outputs: Dict[str, np.ndarray]
    hessians: Dict[str, np.ndarray]
    jacobians: Dict[str, np.ndarray]


@dataclass
class LaplacianResult:
    """laplacians[o]: [B] ++ out_shape(o); jacobians only with include_jacobian."""

    model: str
    version: str
    outputs: Dict[str, np.ndarray]
    laplacians: Dict[str, np.ndarray]
    jacobians: Dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------------- arrays


def to_numpy(value: ArrayLike) -> np.ndarray:
    """An array from NumPy input, nested lists, a torch.Tensor or a jax.Array (neither is imported unless given)."""
    if isinstance(value, np.ndarray):
        return value
    module = type(value).__module__
    if module.startswith("torch"):
        # detach: a tensor that requires grad refuses .numpy(); cpu: a CUDA tensor has no host buffer to share.
        return value.detach().cpu().numpy()  # type: ignore[no-any-return]
    # jax.Array implements __array__, which np.asarray uses (copying from the device when it is not the CPU).
    return np.asarray(value)


def to_float32(value: ArrayLike, what: str, name: str = "") -> np.ndarray:
    """float32, C order, little-endian: the array itself when it already is, otherwise one converted copy.
    (`what` and `name` make the error message; they are not formatted on the way that succeeds.)"""
    a = value if type(value) is np.ndarray else to_numpy(value)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what.format(name)}: expected numbers (any float dtype, or integers for integer inputs), "
                        f"got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=_FLOAT32)


def wire_tensor(target: Any, a: np.ndarray) -> None:
    """Fills a wire Tensor from a float32 C-order array: the buffer goes in as bytes, no per-element loop."""
    target.shape.extend(a.shape)
    target.data = a.tobytes()


def from_wire(t: Any) -> np.ndarray:
    """A read-only float32 array over the message's bytes (no copy); .copy() it to write."""
    try:
        return np.frombuffer(t.data, dtype=_FLOAT32).reshape(t.shape)
    except ValueError:
        # The byte count does not fit the shape (checked this way round because it costs nothing when it does).
        raise errors.IncompleteResultError(f"a tensor of shape {list(t.shape)} came with {len(t.data)} bytes, "
                                           f"expected {4 * math.prod(t.shape)}") from None


def tensors(m: Any) -> Dict[str, np.ndarray]:
    # Keys and m[key], not m.items(): a protobuf map's items() is the Mapping ABC's, a Python-level generator.
    return {name: from_wire(m[name]) for name in m}


# ---------------------------------------------------------------------------------------------------- signatures


def model_info(m: Any) -> ModelInfo:
    def infos(ts: Iterable[Any]) -> List[TensorInfo]:
        return [TensorInfo(t.name, tuple(t.shape), t.dtype) for t in ts]

    return ModelInfo(m.name, m.version, m.state, m.error, infos(m.inputs), infos(m.outputs), m.opset,
                     DerivativeMode(m.default_mode), m)


def _shape_text(shape: Sequence[int], batched: bool) -> str:
    return "[" + ", ".join(str(d) if d >= 0 else "B" if batched and i == 0 else "?" for i, d in enumerate(shape)) + "]"


def _describe(info: ModelInfo, batched: bool) -> str:
    return ", ".join(f"{s.name} {_shape_text(s.shape if batched else s.shape[1:], batched)} {s.dtype}" for s in info.inputs)


def check_inputs(info: ModelInfo, arrays: Dict[str, np.ndarray], batched: bool) -> Optional[str]:
    """The server's INVALID_ARGUMENT message for these inputs, word for word (RequestValidator.ValidateInputs), or
    None when names and shapes fit the signature. Values are left to the server."""
    key = (batched, tuple([(name, a.shape) for name, a in arrays.items()]))
    if key in info.known_good:
        return None
    problem = _check_inputs(info, arrays, batched)
    # Bounded: a caller cycling through many batch sizes gets the full check beyond this, not a growing set.
    if problem is None and len(info.known_good) < 1024:
        info.known_good.add(key)
    return problem


def _check_inputs(info: ModelInfo, arrays: Dict[str, np.ndarray], batched: bool) -> Optional[str]:
    names = {s.name for s in info.inputs}
    for name in arrays:
        if name not in names:
            return f"unknown input '{name}'; model '{info.name}' takes {_describe(info, batched)}"
    batch = -1
    for s in info.inputs:
        given = arrays.get(s.name)
        if given is None:
            return f"missing input '{s.name}'; model '{info.name}' takes {_describe(info, batched)}"
        expected = s.shape if batched else s.shape[1:]
        shape = given.shape
        fits = len(shape) == len(expected) and all(g >= 1 if e < 0 else g == e for g, e in zip(shape, expected))
        if not fits:
            # As the server words it: right rank and fixed sizes, so an open axis came with no element.
            empty_open_axis = len(shape) == len(expected) and all(e < 0 or g == e for g, e in zip(shape, expected))
            return (f"input '{s.name}': expected shape {_shape_text(expected, batched)}, got [{', '.join(map(str, shape))}]"
                    + ("; every open axis (B, ?) needs at least 1" if empty_open_axis else ""))
        b = shape[0] if batched else 1
        if batch >= 0 and b != batch:
            return f"input '{s.name}' has batch size {b}, other inputs have {batch}"
        batch = b
    return None


def input_arrays(inputs: Inputs, info: Optional[ModelInfo]) -> Dict[str, np.ndarray]:
    """Named float32 arrays; a bare array stands for the only input of a one-input model."""
    # dict first: isinstance against the Mapping ABC is slow, and a dict is what callers pass.
    if isinstance(inputs, dict) or isinstance(inputs, collections.abc.Mapping):
        return {name: to_float32(v, "input '{}'", name) for name, v in inputs.items()}
    if info is None or len(info.inputs) != 1:
        raise TypeError("pass inputs as {name: array} (a bare array needs a model with exactly one input)")
    name = info.inputs[0].name
    return {name: to_float32(inputs, "input '{}'", name)}


def needs_signature(inputs: Inputs) -> bool:
    return not (isinstance(inputs, dict) or isinstance(inputs, collections.abc.Mapping))


def result_bytes(info: ModelInfo, arrays: Mapping[str, np.ndarray], wrt: str, of: Sequence[str]) -> Optional[int]:
    """Size of a BatchJacobian result from the signature, or None when an output's shape is not static."""
    float_inputs = [s for s in info.inputs if s.dtype in ("float", "double", "float16", "bfloat16")]
    x = arrays.get(wrt) if wrt else (arrays.get(float_inputs[0].name) if len(float_inputs) == 1 else None)
    if x is None or x.ndim == 0:
        return None
    batch, per_input = x.shape[0], math.prod(x.shape[1:])
    total = 0
    for o in info.outputs:
        if any(d < 0 for d in o.shape[1:]):
            return None
        per_output = math.prod(o.shape[1:])
        total += per_output
        if not of or o.name in of:
            total += per_output * per_input
    return 4 * batch * total


def is_result_too_large(e: errors.JacServiceError) -> bool:
    # The server's words for a unary result over Limits:MaxResponseMiB (ModelVersion.CheckResultSize).
    return e.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.message.startswith("the result would take")


# ---------------------------------------------------------------------------------------------------- requests


def _fields(**fields: Any) -> Dict[str, Any]:
    """The keywords with values other than proto3's defaults: a message constructor is slower per keyword."""
    return {k: v for k, v in fields.items() if v}


def predict_request(model: str, version: str, arrays: Mapping[str, np.ndarray]) -> Any:
    r = wire.PredictRequest(model=model, version=version) if version else wire.PredictRequest(model=model)
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    return r


def jacobian_request(model: str, version: str, arrays: Mapping[str, np.ndarray], wrt: str, of: Sequence[str],
                     mode: ModeLike) -> Any:
    r = wire.JacobianRequest(**_fields(model=model, version=version, wrt=wrt, of=of, mode=as_mode(mode)))
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    return r


def batch_jacobian_request(model: str, version: str, arrays: Mapping[str, np.ndarray], wrt: str, of: Sequence[str],
                           mode: ModeLike, max_rows_per_chunk: int) -> Any:
    r = wire.BatchJacobianRequest(**_fields(model=model, version=version, wrt=wrt, of=of, mode=as_mode(mode),
                                            max_rows_per_chunk=max_rows_per_chunk))
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    return r


def jvp_request(model: str, version: str, arrays: Mapping[str, np.ndarray], tangents: ArrayLike, wrt: str,
                of: Sequence[str]) -> Any:
    r = wire.JvpRequest(**_fields(model=model, version=version, wrt=wrt, of=of))
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    wire_tensor(r.tangents, to_float32(tangents, "tangents"))
    return r


def vjp_request(model: str, version: str, arrays: Mapping[str, np.ndarray], cotangents: Mapping[str, ArrayLike],
                wrt: str, of: Sequence[str]) -> Any:
    r = wire.VjpRequest(**_fields(model=model, version=version, wrt=wrt, of=of))
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    for name, c in cotangents.items():
        wire_tensor(r.cotangents[name], to_float32(c, "cotangents for '{}'", name))
    return r


def hessian_request(model: str, version: str, arrays: Mapping[str, np.ndarray], wrt: str, of: Sequence[str],
                    include_jacobian: bool) -> Any:
    r = wire.BatchHessianRequest(model=model, version=version, wrt=wrt, of=of, include_jacobian=include_jacobian)
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    return r


def laplacian_request(model: str, version: str, arrays: Mapping[str, np.ndarray], wrt: str, of: Sequence[str],
                      axes: Sequence[int], include_jacobian: bool) -> Any:
    r = wire.BatchLaplacianRequest(model=model, version=version, wrt=wrt, of=of, axes=axes,
                                   include_jacobian=include_jacobian)
    for name, a in arrays.items():
        wire_tensor(r.inputs[name], a)
    return r


# ---------------------------------------------------------------------------------------------------- responses


def prediction(r: Any) -> Prediction:
    return Prediction(r.model, r.version, tensors(r.outputs))


def jacobian_result(r: Any) -> JacobianResult:
    return JacobianResult(r.model, r.version, tensors(r.outputs), tensors(r.jacobians), mode_of(r.mode))


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def stream_answer(r: Any) -> Union[JacobianResult, errors.JacServiceError]:
    """One JacobianStreamResponse: the result, or the error the server answered that request with."""
    if r.code == 0:
        return jacobian_result(r.result)
    return errors.error_for(_CODES.get(r.code, grpc.StatusCode.UNKNOWN), r.message)


def jvp_result(r: Any) -> JvpResult:
    return JvpResult(r.model, r.version, tensors(r.outputs), tensors(r.jvps), mode_of(r.mode))


def vjp_result(r: Any) -> VjpResult:
    return VjpResult(r.model, r.version, tensors(r.outputs), from_wire(r.vjp), mode_of(r.mode))


def hessian_result(r: Any) -> HessianResult:
    return HessianResult(r.model, r.version, tensors(r.outputs), tensors(r.hessians), tensors(r.jacobians))


def laplacian_result(r: Any) -> LaplacianResult:
    return LaplacianResult(r.model, r.version, tensors(r.outputs), tensors(r.laplacians), tensors(r.jacobians))


class ChunkAssembler:
    """Puts StreamBatchJacobian's chunks back into one result: each chunk's rows are copied once into arrays
    allocated from the first chunk's total_rows."""

    def __init__(self) -> None:
        self._outputs: Dict[str, np.ndarray] = {}
        self._jacobians: Dict[str, np.ndarray] = {}
        self._rows = 0
        self._total = -1
        self._model = self._version = ""
        self._mode = DerivativeMode.AUTO

    def add(self, chunk: Any) -> None:
        if self._total < 0:
            self._total = chunk.total_rows
            self._model, self._version, self._mode = chunk.model, chunk.version, mode_of(chunk.mode)
        if chunk.row_offset != self._rows:
            raise errors.IncompleteResultError(f"a chunk starts at row {chunk.row_offset}, expected row {self._rows}")
        end = self._rows + chunk.row_count
        if end > self._total:
            raise errors.IncompleteResultError(f"a chunk ends at row {end}, past the {self._total} rows of the result")
        for into, parts in ((self._outputs, chunk.outputs), (self._jacobians, chunk.jacobians)):
            for name, t in parts.items():
                part = from_wire(t)
                whole = into.get(name)
                if whole is None:
                    whole = into[name] = np.empty((self._total,) + part.shape[1:], dtype=np.float32)
                whole[self._rows:end] = part
        self._rows = end

    def result(self) -> JacobianResult:
        if self._total < 0 or self._rows != self._total:
            raise errors.IncompleteResultError(
                f"the stream ended after {self._rows} of {max(self._total, 0)} rows" if self._total >= 0
                else "the stream ended without a chunk")
        return JacobianResult(self._model, self._version, self._outputs, self._jacobians, self._mode)


# ---------------------------------------------------------------------------------------------------- channels


@dataclass
class Tls:
    """TLS settings: `ca` the PEM CAs the server's certificate must chain to (None: the system's store); `cert` and
    `key` a PEM client certificate for mutual TLS. Each is a path or the PEM bytes."""

    ca: Union[str, bytes, None] = None
    cert: Union[str, bytes, None] = None
    key: Union[str, bytes, None] = None
    # Overrides the name checked in the server's certificate (when connecting by address).
    server_name: Optional[str] = None


def _pem(value: Union[str, bytes, None]) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def split_target(target: str, tls: Union[bool, Tls, None]) -> Tuple[str, Optional[Tls]]:
    """host:port and the TLS settings; an https:// target turns TLS on, http:// keeps it off."""
    settings = tls if isinstance(tls, Tls) else (Tls() if tls else None)
    if target.startswith("https://"):
        return target[len("https://"):].rstrip("/"), settings or Tls()
    if target.startswith("http://"):
        if settings is not None:
            raise ValueError("an http:// target with tls: use https:// or host:port")
        return target[len("http://"):].rstrip("/"), None
    return target, settings


def channel_options(max_message_bytes: int, tls: Optional[Tls]) -> List[Tuple[str, Any]]:
    options: List[Tuple[str, Any]] = [
        # Jacobians grow as batch x outputs x inputs: gRPC's 4 MiB default is too small for real models.
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # A restarted server is found within about a second instead of after gRPC's backoff of up to two minutes.
        # (Not grpc.min_reconnect_backoff_ms: gRPC uses it as the connect timeout, and a server busy starting can take
        # longer than a second to send its first frame.)
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return options


def credentials(tls: Tls) -> grpc.ChannelCredentials:
    if (tls.cert is None) != (tls.key is None):
        raise ValueError("Tls: cert and key go together")
    return grpc.ssl_channel_credentials(root_certificates=_pem(tls.ca), private_key=_pem(tls.key),
                                        certificate_chain=_pem(tls.cert))


def metadata(token: Optional[str], api_key: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    pairs: List[Tuple[str, str]] = []
    if token:
        pairs.append(("authorization", f"Bearer {token}"))
    if api_key:
        pairs.append(("x-api-key", api_key))
    return tuple(pairs)


class ReadinessWait:
    """One wait_until_ready: the deadline, what the server last said, and what each answer means. The sync and async
    clients differ only in how they call GetModel and sleep."""

    # NOT_FOUND: the repository may not have been scanned yet; UNAVAILABLE: not up yet.
    _WAITABLE = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    def __init__(self, model: str, timeout: float, poll: float):
        self._clock = time.monotonic
        self.model = model
        self.poll = poll
        self.deadline = self._clock() + timeout
        self.last = "no answer yet"

    def remaining(self) -> float:
        """Seconds left for the next GetModel; raises DeadlineExceededError when none are."""
        left = self.deadline - self._clock()
        if left <= 0:
            raise errors.error_for(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"model '{self.model}' not READY in time; last seen: {self.last}", local=True)
        return left

    def answer(self, response: Any) -> Optional[ModelInfo]:
        """The model's info once READY, None to keep waiting; raises FailedPreconditionError once it FAILED."""
        info = model_info(response)
        if info.state == "READY":
            return info
        if info.state == "FAILED":
            raise errors.error_for(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"model '{self.model}' version {info.version} failed to load: {info.error}")
        self.last = info.state
        return None

    def refused(self, e: grpc.RpcError) -> None:
        """Records an error worth waiting through, or raises it."""
        error = errors.from_rpc_error(e)
        if error.code not in self._WAITABLE:
            raise error from None
        self.last = f"{error.code.name}: {error.message}"

    def pause(self) -> float:
        """Seconds to sleep before asking again."""
        return min(self.poll, max(0.0, self.deadline - self._clock()))


# What gRPC C-core says of a stream the connection reset (HTTP/2 RST_STREAM): INTERNAL, which no server of this project
# sends with these words. A server killed mid-call, or a proxy in front of one, can end a call that way.
_RESET_IN_TRANSIT = "Received RST_STREAM with error code "


def worth_retrying(error: errors.JacServiceError) -> bool:
    """UNAVAILABLE, or INTERNAL from a stream reset in transit: either way no server answered the call. Or
    RESOURCE_EXHAUSTED that passes (a full queue, the server's memory for calls in progress, a quota): the server marks
    a call too large for any retry with a negative pushback."""
    if isinstance(error, errors.ResourceExhaustedError):
        return not error.local and (error.retry_pushback_ms is None or error.retry_pushback_ms >= 0)
    return isinstance(error, errors.UnavailableError) or (
        isinstance(error, errors.InternalError) and error.message.startswith(_RESET_IN_TRANSIT))


@dataclass
class Backoff:
    """Attempts on what `worth_retrying` takes (every JacService call is idempotent): gRPC's jittered exponential
    backoff, or the wait the server asks for."""

    retries: int
    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0

    def delay(self, attempt: int, pushback_ms: Optional[int] = None) -> float:
        if pushback_ms is not None and pushback_ms >= 0:
            return pushback_ms / 1000
        base = min(self.maximum, self.initial * self.multiplier ** attempt)
        return base * random.uniform(0.5, 1.0)


# One method per RPC: (request type, response type, how each side streams). The wire types are the contract's messages with
# Tensor.data as bytes; their encoding is identical, so these are the real service's methods.
METHODS: Dict[str, Tuple[Any, Any, str]] = {
    "Predict": (wire.PredictRequest, wire.PredictResponse, "unary_unary"),
    "Jacobian": (wire.JacobianRequest, wire.JacobianResponse, "unary_unary"),
    "BatchJacobian": (wire.BatchJacobianRequest, wire.BatchJacobianResponse, "unary_unary"),
    "StreamBatchJacobian": (wire.BatchJacobianRequest, wire.BatchJacobianChunk, "unary_stream"),
    "JacobianStream": (wire.JacobianRequest, wire.JacobianStreamResponse, "stream_stream"),
    "Jvp": (wire.JvpRequest, wire.JvpResponse, "unary_unary"),
    "Vjp": (wire.VjpRequest, wire.VjpResponse, "unary_unary"),
    "BatchHessian": (wire.BatchHessianRequest, wire.BatchHessianResponse, "unary_unary"),
    "BatchLaplacian": (wire.BatchLaplacianRequest, wire.BatchLaplacianResponse, "unary_unary"),
    "ListModels": (wire.ListModelsRequest, wire.ListModelsResponse, "unary_unary"),
    "GetModel": (wire.GetModelRequest, wire.ModelInfo, "unary_unary"),
}


def bind(channel: Any) -> Dict[str, Any]:
    """The multi-callables of every RPC on `channel` (grpc.Channel or grpc.aio.Channel)."""
    missing = set(_pb.DESCRIPTOR.services_by_name["JacobianService"].methods_by_name) - set(METHODS)
    if missing:
        raise RuntimeError(f"the contract has RPCs this client does not know: {sorted(missing)}")
    bound = {}
    for name, (request, response, kind) in METHODS.items():
        make = getattr(channel, kind)
        bound[name] = make(f"/{SERVICE}/{name}", request_serializer=request.SerializeToString,
                           response_deserializer=response.FromString)
    return bound
