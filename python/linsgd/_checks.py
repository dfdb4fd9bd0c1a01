"""The one set of scalar and array checks and coercions that every linsgd module uses.

Each checker returns its argument unchanged, in its first lines, when it is already what the
caller needs (a Python ``float``/``int``/``bool`` of the right kind, an exact C-contiguous
``ndarray`` of the right dtype): the common call pays a few type tests. Anything else is
converted once or refused with a ``TypeError`` (wrong kind) or ``ValueError`` (wrong value)
whose message names the argument.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from typing import Any

import numpy as np

try:  # one pass, no allocation, the GIL released for large arrays
    from ._core import all_finite as _core_all_finite
except ImportError:  # a numba-only install
    _core_all_finite = None

__all__ = [
    "F32",
    "F64",
    "MAX_THREADS",
    "all_finite",
    "as_ndarray",
    "dtype_error",
    "flag",
    "integer",
    "is_bool",
    "is_torch_tensor",
    "native_float",
    "nesterov_rule",
    "no_shared_memory",
    "readable",
    "real",
    "real_array",
    "require_finite",
    "thread_count",
]

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
MAX_THREADS = 1024  # as the compiled bindings
_ND = np.ndarray


# ----------------------------------------------------------------------------- scalars


def is_bool(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy bool."""
    return isinstance(value, (bool, np.bool_))


def real(
    value: Any, name: str, *, minimum: float | None = None, allow_none: bool = False
) -> float | None:
    """``value`` as a finite Python float (``None`` passes when ``allow_none``)."""
    if type(value) is float and math.isfinite(value) and (minimum is None or value >= minimum):
        return value
    if value is None and allow_none:
        return None
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def integer(value: Any, name: str, *, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (numpy integers accepted, bools refused)."""
    if type(value) is int and value >= minimum:
        return value
    if is_bool(value):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def flag(value: Any, name: str) -> bool:
    """``value`` as a Python bool (numpy bools accepted)."""
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def nesterov_rule(momentum: float, dampening: float, nesterov: bool) -> None:
    """Refuse ``nesterov=True`` without momentum or with dampening, as ``torch.optim.SGD`` does."""
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError(
            f"nesterov=True requires momentum > 0 and dampening == 0, got momentum={momentum} "
            f"and dampening={dampening}"
        )


def thread_count(value: Any, name: str = "n_threads") -> int:
    """A thread count: an int from 1 to :data:`MAX_THREADS`, or -1 for ``os.cpu_count()``."""
    if type(value) is int and 1 <= value <= MAX_THREADS:
        return value
    v = integer(value, name, minimum=-1)
    if v == -1:
        return max(1, min(os.cpu_count() or 1, MAX_THREADS))
    if not 1 <= v <= MAX_THREADS:
        raise ValueError(
            f"{name} must be -1 (all CPUs) or an integer from 1 to {MAX_THREADS}, got {v}"
        )
    return v


# ----------------------------------------------------------------------------- arrays


def is_torch_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a torch tensor (answered without importing torch)."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def as_ndarray(obj: Any, name: str) -> np.ndarray:
    """``obj`` as a base-class ndarray sharing its memory where it can (no dtype change).

    A CPU torch tensor becomes a numpy view of its storage; a GPU tensor is refused (the CUDA
    backend takes those as they are, see :mod:`linsgd._cuda_dispatch`).
    """
    if isinstance(obj, _ND):
        if type(obj) is _ND:
            return obj
        if isinstance(obj, np.ma.MaskedArray):
            raise TypeError(f"{name} is a masked array; pass {name}.filled(...) or the valid rows")
        return obj.view(_ND)  # np.memmap, np.matrix, ...: the same memory as a plain ndarray
    if obj is None:
        raise TypeError(f"{name} must be an array, got None")
    if is_torch_tensor(obj):
        if obj.device.type != "cpu":
            raise ValueError(
                f"{name} is a torch tensor on {obj.device}; the CPU backends need CPU tensors "
                "(use backend='cuda' for GPU data where linsgd's CUDA module is available)"
            )
        try:
            return obj.detach().numpy()
        except (TypeError, RuntimeError) as exc:
            raise TypeError(f"{name} is a torch tensor numpy cannot view ({exc})") from None
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(obj).__name__} ({exc})") from None


def real_array(a: Any, name: str) -> np.ndarray:
    """``a`` (array-like, CPU torch tensor) as a float64 ndarray; bools and integers cast."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if is_torch_tensor(a):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def native_float(dt: np.dtype) -> np.dtype | None:
    """float32 or float64 in native byte order for a float32/float64 dtype of any byte order."""
    if dt is F64 or dt is F32:
        return dt
    if dt.kind == "f" and dt.itemsize in (4, 8):
        return F64 if dt.itemsize == 8 else F32
    return None


def dtype_error(name: str, dt: np.dtype, want: str) -> TypeError:
    """The ``TypeError`` for an array of the wrong dtype, with a hint for the usual fix."""
    hint = ""
    if dt.kind in "biu":
        hint = f"; cast it first, e.g. {name}.astype(np.float64)"
    elif dt.kind == "c":
        hint = "; complex values are not supported"
    return TypeError(f"{name} must have dtype {want}, got {dt}{hint}")


def readable(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array of the native dtype ``dt``: itself when it is one.

    Dtypes are compared by equality, not identity: an unpickled array's dtype is equal to
    ``np.dtype(np.float64)`` but is another object.
    """
    if a.dtype == dt:
        f = a.flags
        if f.c_contiguous and f.aligned:
            return a
    out = np.ascontiguousarray(a, dtype=dt)
    if not out.flags.aligned:
        out = out.copy()
    return out


def _all_finite_numpy(a: np.ndarray) -> bool:
    if a.size == 0:
        return True
    # min and max propagate NaN and expose +-inf: two passes, no temporary the size of a
    return math.isfinite(a.min()) and math.isfinite(a.max())


#: all_finite(a) -> bool: whether every element of the float32/float64 array ``a`` is finite,
#: without allocating (the compiled scan where ``_core`` is built).
all_finite = _all_finite_numpy if _core_all_finite is None else _core_all_finite


def require_finite(a: np.ndarray, name: str) -> None:
    """Refuse NaN or infinity in ``a`` with a ``ValueError`` naming it."""
    if not all_finite(a):
        raise ValueError(f"{name} contains NaN or infinity")


def _owns_memory(a: Any) -> bool:
    return type(a) is _ND and a.flags.owndata


def _owner(a: np.ndarray) -> Any:
    base = a.base
    return a if base is None else base


def no_shared_memory(outputs: list, inputs: list) -> None:
    """Refuse an output array that shares memory with any other argument.

    ``outputs`` and ``inputs`` are lists of ``(array or None, name)``. Arrays that own their
    memory, or views of such arrays, are told apart by their owners at once; only other pairs
    (views of foreign buffers) take ``np.may_share_memory``'s bounds test, exact here since
    every array is contiguous.
    """
    outs = [(a, n) for a, n in outputs if a is not None and a.size]
    everything = outs + [(a, n) for a, n in inputs if a is not None and a.size]
    for i, (a, an) in enumerate(outs):
        oa = _owner(a)
        for j, (c, cn) in enumerate(everything):
            if j == i:
                continue
            oc = _owner(c)
            if oa is not oc and _owns_memory(oa) and _owns_memory(oc):
                continue  # two separate allocations
            if np.may_share_memory(a, c):
                raise ValueError(f"{an} shares memory with {cn}; pass separate arrays")
