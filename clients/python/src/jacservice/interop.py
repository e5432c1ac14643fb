"""Optional bridges to PyTorch and JAX; neither is needed, and neither is imported until a helper is called.

Inputs need no helper: every client method accepts torch.Tensor and jax.Array wherever it takes an array. These turn
results (read-only NumPy arrays) into the framework's own tensors.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def to_torch(a: np.ndarray, device: Optional[Any] = None) -> Any:
    """A torch.Tensor with the array's values (a copy: results are read-only, which torch.from_numpy dislikes)."""
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs PyTorch (Debian: python3-torch)") from None
    return torch.tensor(a, device=device)


def to_jax(a: np.ndarray) -> Any:
    """A jax.Array with the array's values, on JAX's default device."""
    try:
        import jax.numpy as jnp
    except ImportError:
        raise ImportError("to_jax needs JAX") from None
    return jnp.asarray(a)


def dict_to_torch(arrays: Mapping[str, np.ndarray], device: Optional[Any] = None) -> Dict[str, Any]:
    """to_torch for every tensor of a result's mapping, e.g. result.jacobians."""
    return {name: to_torch(a, device) for name, a in arrays.items()}


def dict_to_jax(arrays: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    return {name: to_jax(a) for name, a in arrays.items()}
