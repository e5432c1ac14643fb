"""JacService from Python: predictions and exact input-derivatives of ONNX models, as NumPy arrays.

    import numpy as np, jacservice
    with jacservice.Client("127.0.0.1:50051", timeout=10) as jac:
        r = jac.batch_jacobian("pinn", {"xt": np.array([[0.5, 0.1], [0.2, 0.3]])})
        print(r.outputs["u"], r.jacobians["u"])      # [2, 1] and [2, 1, 2]

Client (blocking) and AsyncClient (asyncio) have the same methods; errors are JacServiceError subclasses (see
jacservice.errors); jacservice.v1 holds the generated stubs for anything else.
"""

from . import interop
from ._aio import AsyncClient
from ._client import Client
from ._core import (DerivativeMode, HessianResult, JacobianResult, JvpResult, LaplacianResult, ModelInfo, Prediction,
                    TensorInfo, Tls, VjpResult)
from .errors import (CallCancelledError, DeadlineExceededError, FailedPreconditionError, IncompleteResultError,
                     InternalError, InvalidArgumentError, JacServiceError, NotFoundError, PermissionDeniedError,
                     ResourceExhaustedError, UnauthenticatedError, UnavailableError)

__version__ = "1.0.0"

__all__ = [
    "interop", "Client", "AsyncClient", "Tls", "DerivativeMode", "ModelInfo", "TensorInfo", "Prediction", "JacobianResult",
    "JvpResult", "VjpResult", "HessianResult", "LaplacianResult", "JacServiceError", "InvalidArgumentError",
    "NotFoundError", "FailedPreconditionError", "ResourceExhaustedError", "DeadlineExceededError", "UnavailableError",
    "CallCancelledError", "UnauthenticatedError", "PermissionDeniedError", "InternalError", "IncompleteResultError",
]
