"""Errors raised by the client: one class per gRPC status the server uses, all under JacServiceError.

Every error carries the status code and the server's message unchanged, so `except jacservice.NotFoundError` and
`except jacservice.JacServiceError as e: e.code` both work. Checks the client makes itself before sending (input
shapes against the model's signature) raise the same class with the same message the server would have sent.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "JacServiceError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError", "ResourceExhaustedError",
    "DeadlineExceededError", "UnavailableError", "CallCancelledError", "UnauthenticatedError", "PermissionDeniedError",
    "InternalError", "IncompleteResultError", "from_rpc_error",
]


class JacServiceError(Exception):
    """A call that failed: `code` is the gRPC status, `message` the server's words (or the client's, for `local`)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, local: bool = False,
                 retry_pushback_ms: Optional[int] = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        # True when the client refused the call before sending it (the server never saw it).
        self.local = local
        # The server's grpc-retry-pushback-ms: how long to wait before trying again, negative for never; None if unsaid.
        self.retry_pushback_ms = retry_pushback_ms


class InvalidArgumentError(JacServiceError):
    """INVALID_ARGUMENT: a shape, name, value or option the model cannot take; the message says which."""


class NotFoundError(JacServiceError):
    """NOT_FOUND: no such model or version."""


class FailedPreconditionError(JacServiceError):
    """FAILED_PRECONDITION: the model version failed to load (the message carries the load error)."""


class ResourceExhaustedError(JacServiceError):
    """RESOURCE_EXHAUSTED: the call is over the server's size limits (`retry_pushback_ms` is then negative), or its
    queue, its memory for calls in progress or the caller's quota is full for now, after every retry."""


class DeadlineExceededError(JacServiceError):
    """DEADLINE_EXCEEDED: the call's timeout passed (retries included)."""


class UnavailableError(JacServiceError):
    """UNAVAILABLE: no server answered, or the model is still loading, after every retry."""


class CallCancelledError(JacServiceError):
    """CANCELLED: the call was cancelled (not asyncio.CancelledError, which cancelling a task still raises)."""


class UnauthenticatedError(JacServiceError):
    """UNAUTHENTICATED: the server requires a token (or API key) and got none, or an invalid one."""


class PermissionDeniedError(JacServiceError):
    """PERMISSION_DENIED: the token is valid but lacks the scope this call needs."""


class InternalError(JacServiceError):
    """INTERNAL: a server bug; the message has a correlation id to find the details in the server's log."""


class IncompleteResultError(JacServiceError):
    """A streamed result ended cleanly without all of its rows, or a tensor's bytes do not match its shape."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DATA_LOSS, message, local=True)


_BY_CODE: Dict[grpc.StatusCode, Type[JacServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def error_for(code: grpc.StatusCode, message: str, *, local: bool = False,
              retry_pushback_ms: Optional[int] = None) -> JacServiceError:
    return _BY_CODE.get(code, JacServiceError)(code, message, local=local, retry_pushback_ms=retry_pushback_ms)


def from_rpc_error(error: grpc.RpcError) -> JacServiceError:
    """The JacServiceError for a failed grpc call (sync or grpc.aio)."""
    code: Optional[grpc.StatusCode] = error.code()  # type: ignore[attr-defined]
    details: Optional[str] = error.details()  # type: ignore[attr-defined]
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "", retry_pushback_ms=_retry_pushback_ms(error))


def _retry_pushback_ms(error: grpc.RpcError) -> Optional[int]:
    """grpc-retry-pushback-ms from the call's trailing metadata (gRFC A6: a value that is not an integer means stop)."""
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == "grpc-retry-pushback-ms":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            try:
                return int(text)
            except ValueError:
                return -1
    return None
