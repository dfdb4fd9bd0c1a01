"""Recognise GPU arrays and hand them to the CUDA backend without copies.

``linsgd._cuda`` takes, for every array argument, either a numpy array (copied to the device
once per call and, when written, back) or any object exposing ``__cuda_array_interface__``
(torch CUDA tensors, CuPy arrays, Numba device arrays), used in place. This module decides
which of those a caller's object is and converts the rest.

:mod:`linsgd._call` asks :func:`any_device_array` first; GPU arrays then go through
:func:`as_cuda_arg` and :func:`as_2d_targets` to the CUDA backend, which checks their dtype,
shape, contiguity and writability itself; :func:`all_finite` runs the finiteness checks where
the arrays live and :func:`zeros_like` makes the momentum buffers there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import is_torch_tensor

__all__ = [
    "all_finite",
    "any_device_array",
    "as_2d_targets",
    "as_cuda_arg",
    "is_device_array",
    "zeros_like",
]

# DLPack device types whose memory the CUDA backend can address.
_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _is_torch_tensor(obj: Any) -> bool:
    return is_torch_tensor(obj) and hasattr(obj, "is_cuda")


def _dlpack_on_cuda(obj: Any) -> bool:
    probe = getattr(obj, "__dlpack_device__", None)
    if probe is None:
        return False
    try:
        kind, _ = probe()
    except Exception:
        return False
    return int(kind) in _DLPACK_CUDA


def is_device_array(obj: Any) -> bool:
    """Whether ``obj`` lives in GPU memory (and so belongs to the CUDA backend).

    True for objects exposing ``__cuda_array_interface__``, torch tensors with ``is_cuda``
    (including ones that require grad, which hide that interface) and objects whose
    ``__dlpack_device__`` reports a CUDA device.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if _is_torch_tensor(obj):
        return bool(obj.is_cuda)
    try:
        if hasattr(obj, "__cuda_array_interface__"):
            return True
    except Exception:  # an interface property that raises still marks a device array
        return True
    return _dlpack_on_cuda(obj)


def any_device_array(*objs: Any) -> bool:
    """Whether any of ``objs`` is a device array (see :func:`is_device_array`)."""
    return any(is_device_array(o) for o in objs)


def as_cuda_arg(obj: Any, name: str) -> Any:
    """``obj`` in a form ``linsgd._cuda`` accepts, sharing its memory whenever it is on the GPU.

    torch CUDA tensors are detached (same storage, so in-place updates reach a layer's
    parameters); objects exposing ``__cuda_array_interface__`` and numpy arrays pass through;
    DLPack-only GPU objects are wrapped as torch tensors (or CuPy arrays when torch is absent);
    torch CPU tensors become numpy views; anything else goes through ``np.asarray``.

    Raises
    ------
    TypeError
        For a DLPack GPU object when neither torch nor CuPy is installed to wrap it.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return obj
    if _is_torch_tensor(obj):
        return obj.detach() if obj.is_cuda else obj.detach().numpy()
    try:
        if hasattr(obj, "__cuda_array_interface__"):
            return obj
    except Exception:
        return obj  # let _cuda report the interface's own error
    if _dlpack_on_cuda(obj):
        return _wrap_dlpack(obj, name)
    return np.asarray(obj)


def _wrap_dlpack(obj: Any, name: str) -> Any:
    try:
        import torch
    except ImportError:
        pass
    else:
        return torch.from_dlpack(obj)
    try:
        import cupy
    except ImportError:
        pass
    else:
        return cupy.from_dlpack(obj)
    raise TypeError(
        f"{name} is a GPU array known only through DLPack; install torch or cupy so that "
        "linsgd can use it in place, or pass a torch CUDA tensor or a CuPy array"
    )


def as_2d_targets(y: Any) -> Any:
    """``y`` of shape ``(M,)`` as ``(M, 1)`` (a view, on whatever device it lives); others as is."""
    shape = getattr(y, "shape", None)
    if shape is not None and len(shape) == 1:
        return y.reshape(-1, 1)
    return y


def zeros_like(a: Any) -> Any:
    """A zero array of ``a``'s shape and dtype on ``a``'s device (numpy for host arrays)."""
    if a is None:
        return None
    if _is_torch_tensor(a):
        import torch

        return torch.zeros_like(a, memory_format=torch.contiguous_format)
    if isinstance(a, np.ndarray):
        return np.zeros_like(a, order="C")
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy.zeros_like(a, order="C")
    raise TypeError(
        f"cannot allocate a device array like {type(a).__name__}: "
        "pass a torch tensor or a CuPy array"
    )


def all_finite(a: Any) -> bool:
    """Whether every element of ``a`` is finite, computed where ``a`` lives.

    numpy, torch and CuPy arrays are checked; other device arrays (no library at hand to
    reduce them on the device) are reported finite.
    """
    if a is None:
        return True
    if _is_torch_tensor(a):
        import torch

        return bool(torch.isfinite(a).all())
    if isinstance(a, np.ndarray):
        return bool(np.isfinite(a).all())
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return bool(cupy.isfinite(a).all())
    return True  # unknown device array: nothing to compute it with
