"""The kernel-level API: one batch gradient, one SGD step, whole epochs, in compiled code.

Arrays follow torch's layout: ``X`` is ``(M, N)``, ``Y`` is ``(M, U)`` (or ``(M,)`` when
``U == 1``), ``W`` is ``(U, N)`` and ``b`` is ``(U,)`` or ``None`` for a model without a bias.
Every function takes ``backend=None`` (``"cpp"``, ``"numba"``; ``"cuda"`` where built);
``LINSGD_BACKEND`` overrides the default. GPU arrays (torch CUDA tensors, CuPy arrays, anything
with ``__cuda_array_interface__``) go to the CUDA backend and are updated in place there.

Inputs, and what is done with them
----------------------------------
* ``X``, ``Y`` (and ``eval_set``): numpy arrays, ``np.memmap`` files, CPU torch tensors or
  anything ``np.asarray`` takes, of dtype float32 or float64 (``X``'s dtype is the model's;
  ``Y`` must have the same). They are read only, so read-only arrays are fine. A C-contiguous,
  aligned array in native byte order is used as it is, without a copy (a memmap is read straight
  from its file); any other layout (Fortran order, slices with steps, negative strides,
  unaligned or byte-swapped data) is copied once per call into a C-contiguous array.
  Integer, bool, complex and object arrays are refused (``TypeError``): cast them first.
* ``W``, ``b``: updated in place by ``step``/``epoch``/``train``, so they must be writable,
  C-contiguous, aligned arrays of ``X``'s dtype in native byte order (numpy arrays or CPU torch
  tensors, used without a copy); anything else is refused (``ValueError``/``TypeError`` naming
  the argument) rather than silently trained on a copy. ``loss`` and ``gradient`` only read
  them (any layout; copied when needed). Parameters must not share memory with ``X``, ``Y``,
  ``sample_weight``, ``order`` or each other (``ValueError``).
* ``state``: a dict; the momentum buffers it holds must be writable C-contiguous arrays of
  ``W``'s and ``b``'s shape and dtype (they are updated in place).
* ``order``/``orders``: integer row indices in ``[0, M)``. Indices may repeat and an epoch may
  have fewer or more rows than ``X`` (sampling with replacement, bootstrap epochs).
* Empty data (``M == 0``), a ``batch_size`` below 1, non-finite hyper-parameters, NaN or infinity
  in ``W``/``b`` (always) or in the data (with ``check_finite=True``, the default) raise a
  ``ValueError`` naming the argument. ``N == 0`` features is allowed (a bias-only model). A
  ``batch_size`` larger than the epoch means one batch per epoch.

Divergence, interruption, threads
---------------------------------
* ``step`` and ``epoch`` raise :class:`~linsgd.DivergenceError` (a ``FloatingPointError``)
  naming the epoch and step whose loss was NaN/infinite (that step is not applied) or whose
  update made ``W``/``b`` non-finite (they then hold those values); ``train`` reports
  ``status="diverged"``.
* Ctrl-C (``KeyboardInterrupt``) stops a running call within a fraction of a second on every
  CPU backend (the numba backend runs long calls in chunks of about 50 ms for this; the chunks
  give the same bits as one call). ``W``, ``b`` and the momentum buffers in ``state`` then hold
  the values of some step part-way through the call, and ``state["step"]`` is not advanced: copy
  them first if they must survive an interruption (:class:`~linsgd.LinearRegressor` does; its
  model is left unchanged).
* The kernels release the GIL (all but calls of a few microseconds, which keep it: handing
  it over would cost more than they take), so calls on different models run in parallel
  threads and give exactly the results they give one after the other. Updating the same
  ``W``/``b``/``state`` from two threads at once is a data race: serialising such calls is
  the caller's job.
* ``n_threads`` (``train``, ``epoch``, ``step``; default 1) splits each step of the C++
  backend over that many host threads (-1: ``os.cpu_count()``), with the same bits for every
  count. Only steps with ``batch_size * N * U >= 2**14`` are split (the validation loss then
  too); smaller ones would spend more on the hand-offs than they save. The numba backend
  runs on one thread and the CUDA backend on the GPU: both check ``n_threads`` and ignore it.

Speed of a call
---------------
A call with numpy arrays that need no conversion, Python scalars, a constant learning rate (or
a float64 array of one per epoch), no row order and no sample weights goes straight to one
compiled function that checks it (dtypes, shapes, layouts, memory overlap, finiteness) and runs
it: a few microseconds of Python for the whole call. Any other call, a refused one included,
takes the general path, which converts what it may convert and raises the errors described
above.
"""

from __future__ import annotations

import math
import operator
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _cuda_dispatch as _cd
from ._backends import resolve_backend
from .exceptions import DivergenceError

try:  # a tight C++ loop: one pass, no allocation, GIL released for large arrays
    from ._core import all_finite as _core_all_finite
    from ._core import run as _core_run
except ImportError:  # a numba-only install
    _core_all_finite = _core_run = None

__all__ = ["TrainResult", "epoch", "gradient", "loss", "step", "train"]

_STATUS = {0: "completed", 1: "target_loss", 2: "diverged", 3: "interrupted"}
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
_REAL_TYPES = (int, float, np.integer, np.floating)
_NAN = float("nan")
_ND = np.ndarray
_MAX_THREADS = 1024  # as _core.train


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    losses : ndarray of shape (epochs, steps_per_epoch)
        The batch loss of every step, before its update; NaN where a step did not run.
    valid_losses : ndarray of shape (epochs,) or None
        The full validation-set MSE after each epoch (NaN where the epoch did not finish),
        when ``eval_set`` was given.
    steps : int
        Steps whose update was applied.
    epochs : int
        Epochs run to their end.
    status : str
        ``"completed"``, ``"target_loss"`` (stopped after the first step whose batch loss fell
        below ``target_loss``), ``"diverged"`` (a non-finite loss or parameter) or
        ``"interrupted"``.
    """

    losses: np.ndarray
    valid_losses: np.ndarray | None
    steps: int
    epochs: int
    status: str


# ----------------------------------------------------------------------------- finiteness


def _all_finite(a: np.ndarray) -> bool:
    """Whether every element of the float32/float64 array ``a`` is finite, without allocating."""
    if _core_all_finite is not None:
        return _core_all_finite(a)
    if a.size == 0:
        return True
    # min and max propagate NaN and expose +-inf: two passes, no temporary the size of a
    return math.isfinite(a.min()) and math.isfinite(a.max())


def _require_finite(a: np.ndarray, name: str) -> None:
    if not _all_finite(a):
        raise ValueError(f"{name} contains NaN or infinity")


# ----------------------------------------------------------------------------- arrays


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _as_ndarray(obj: Any, name: str) -> np.ndarray:
    """``obj`` as a base-class ndarray sharing its memory where it can (no dtype change)."""
    if isinstance(obj, np.ndarray):
        if isinstance(obj, np.ma.MaskedArray):
            raise TypeError(f"{name} is a masked array; pass {name}.filled(...) or the valid rows")
        # np.memmap, np.matrix, ...: the same memory seen as a plain ndarray
        return obj if type(obj) is np.ndarray else obj.view(np.ndarray)
    if obj is None:
        raise TypeError(f"{name} must be an array, got None")
    if _is_torch_tensor(obj):
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


def _native_float(dt: np.dtype) -> np.dtype | None:
    """float32 or float64 (native byte order) for a float32/float64 dtype of any byte order."""
    if dt is _F64 or dt is _F32:
        return dt
    if dt.kind == "f" and dt.itemsize in (4, 8):
        return _F64 if dt.itemsize == 8 else _F32
    return None


def _dtype_error(name: str, dt: np.dtype, want: str) -> TypeError:
    hint = ""
    if dt.kind in "biu":
        hint = f"; cast it first, e.g. {name}.astype(np.float64)"
    elif dt.kind == "c":
        hint = "; complex values are not supported"
    return TypeError(f"{name} must have dtype {want}, got {dt}{hint}")


def _behaved(a: np.ndarray) -> bool:
    f = a.flags
    return f.c_contiguous and f.aligned


def _readable(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous aligned array of the native dtype ``dt``: itself when it is one."""
    if a.dtype is dt or a.dtype == dt:
        if _behaved(a):
            return a
    out = np.ascontiguousarray(a, dtype=dt)
    if not out.flags.aligned:
        out = out.copy()
    return out


def _data(
    X: Any, Y: Any, check_finite: bool, xname: str = "X", yname: str = "Y"
) -> tuple[np.ndarray, np.ndarray]:
    x = X if type(X) is np.ndarray else _as_ndarray(X, xname)
    dt = _native_float(x.dtype)
    if dt is None:
        raise _dtype_error(xname, x.dtype, "float32 or float64")
    if x.ndim != 2:
        raise ValueError(f"{xname} must be 2-D (samples, features), got shape {x.shape}")
    m = x.shape[0]
    if m < 1:
        raise ValueError(f"{xname} must have at least one row, got shape {x.shape}")
    y = Y if type(Y) is np.ndarray else _as_ndarray(Y, yname)
    ydt = _native_float(y.dtype)
    if ydt is not dt:
        if ydt is None:
            raise _dtype_error(yname, y.dtype, f"{dt} (the dtype of {xname})")
        raise TypeError(f"{yname} must have the same dtype as {xname} ({dt}), got {y.dtype}")
    yshape = y.shape
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != m or y.shape[1] < 1:
        raise ValueError(
            f"{yname} must have shape ({m}, U) with U >= 1, or ({m},), to match {xname}, "
            f"got {yshape}"
        )
    x = _readable(x, dt)
    y = _readable(y, dt)
    if check_finite:
        _require_finite(x, xname)
        _require_finite(y, yname)
    return x, y


def _param(obj: Any, name: str, dt: np.dtype, shape: tuple, writable: bool) -> np.ndarray:
    if (
        writable
        and type(obj) is not np.ndarray
        and not (isinstance(obj, np.ndarray) or _is_torch_tensor(obj))
    ):
        raise TypeError(
            f"{name} must be a numpy array or a CPU torch tensor: it is updated in place, "
            f"got {type(obj).__name__}"
        )
    a = obj if type(obj) is np.ndarray else _as_ndarray(obj, name)
    adt = a.dtype
    if adt is not dt and adt != dt:
        if _native_float(adt) is not dt:
            raise _dtype_error(name, adt, f"{dt} (the dtype of X)")
        if writable:
            raise TypeError(f"{name} must have native byte order ({dt}): it is updated in place")
    if a.shape != shape:
        what = "(U, N)" if len(shape) == 2 else "(U,)"
        extra = "" if len(shape) == 2 else " or be None"
        raise ValueError(f"{name} must have shape {what} = {shape}{extra}, got {a.shape}")
    if writable:
        f = a.flags
        if not f.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: it is updated in place")
        if not f.writeable:
            raise ValueError(f"{name} must be writable: it is updated in place")
        if not f.aligned:
            raise ValueError(f"{name} must be aligned: it is updated in place")
    else:
        a = _readable(a, dt)
    _require_finite(a, name)
    return a


def _params(
    W: Any, b: Any, x: np.ndarray, y: np.ndarray, *, writable: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    u, n = y.shape[1], x.shape[1]
    w = _param(W, "W", x.dtype, (u, n), writable)
    bias = None if b is None else _param(b, "b", x.dtype, (u,), writable)
    return w, bias


def _sample_weight(sample_weight: Any, x: np.ndarray) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = _as_ndarray(sample_weight, "sample_weight")
    if sw.dtype.kind not in "fiu":
        raise _dtype_error("sample_weight", sw.dtype, "real (float or integer)")
    if sw.shape != (x.shape[0],):
        raise ValueError(
            f"sample_weight must have shape ({x.shape[0]},), one weight per row, got {sw.shape}"
        )
    sw = _readable(sw, x.dtype)
    if not _all_finite(sw) or sw.min() < 0:
        raise ValueError("sample_weight must be finite and >= 0")
    return sw


def _no_shared_memory(outputs: list, inputs: list) -> None:
    """Refuse parameters that share memory with anything else (the compiled binding does this
    itself; the other backends rely on this check). Every array here is contiguous, so the
    bounds test of ``np.may_share_memory`` is exact."""
    outputs = [(a, n) for a, n in outputs if a is not None and a.size]
    everything = outputs + [(a, n) for a, n in inputs if a is not None and a.size]
    for i, (a, an) in enumerate(outputs):
        for j, (c, cn) in enumerate(everything):
            if j != i and np.may_share_memory(a, c):
                raise ValueError(f"{an} shares memory with {cn}; pass separate arrays")


# ----------------------------------------------------------------------------- scalars


def _real(value: Any, name: str, minimum: float | None = None) -> float:
    if type(value) is float:
        v = value
    elif isinstance(value, _REAL_TYPES) and not isinstance(value, (bool, np.bool_)):
        v = float(value)
    else:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _flag(value: Any, name: str) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _count(value: Any, name: str, minimum: int) -> int:
    if type(value) is not int:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer, got bool")
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _hyper(
    weight_decay: Any,
    decay_bias: Any,
    l2: Any,
    momentum: Any,
    dampening: Any,
    nesterov: Any,
    maximize: Any,
) -> tuple:
    wd = _real(weight_decay, "weight_decay", 0.0)
    db = _flag(decay_bias, "decay_bias")
    l2v = _real(l2, "l2", 0.0)
    mu = _real(momentum, "momentum", 0.0)
    damp = _real(dampening, "dampening")
    nest = _flag(nesterov, "nesterov")
    maxi = _flag(maximize, "maximize")
    if nest and (mu <= 0.0 or damp != 0.0):
        raise ValueError("nesterov=True requires momentum > 0 and dampening == 0")
    return wd, db, l2v, mu, damp, nest, maxi


def _learning_rates(lr: Any, epochs: int) -> np.ndarray:
    if type(lr) is float and math.isfinite(lr) and lr >= 0.0:
        out = np.empty(epochs)
        out.fill(lr)
        return out
    if isinstance(lr, np.ndarray) or (isinstance(lr, Sequence) and not isinstance(lr, str)):
        if isinstance(lr, np.ndarray) and lr.dtype.kind in "fiu":
            rates = np.array(lr, dtype=np.float64).reshape(-1)
            if rates.size and not (_all_finite(rates) and rates.min() >= 0.0):
                raise ValueError("lr must hold finite values >= 0")
        else:
            rates = np.array([_real(v, "lr", 0.0) for v in lr], dtype=np.float64)
        if np.ndim(lr) != 1 or rates.shape != (epochs,):
            raise ValueError(
                f"lr must be a number or a sequence of {epochs} per-epoch values, "
                f"got shape {np.shape(lr)}"
            )
        return rates
    return np.full(epochs, _real(lr, "lr", 0.0))


def _orders(order: Any, m: int, epochs: int, name: str) -> np.ndarray | None:
    """Row indices as a C-contiguous int64 ``(epochs, R)`` array, every one checked."""
    if order is None:
        return None
    o = order if type(order) is np.ndarray else _as_ndarray(order, name)
    if o.dtype.kind not in "iu":
        raise _dtype_error(name, o.dtype, "integer (row indices)")
    want = 1 if name == "order" else 2
    if o.ndim != want or (want == 2 and o.shape[0] != epochs):
        shape = "(R,)" if want == 1 else f"({epochs}, R)"
        raise ValueError(f"{name} must have shape {shape} of row indices, got {o.shape}")
    if o.shape[-1] == 0:
        raise ValueError(f"{name} must select at least one row per epoch, got shape {o.shape}")
    if o.size:
        lo, hi = o.min(), o.max()
        if lo < 0 or hi >= m:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} holds row index {bad}, outside [0, {m}) for X's {m} rows")
    o = _readable(o, _I64)
    return o.reshape(epochs, o.shape[-1])


def _momentum_buffers(
    state: dict | None, w: np.ndarray, bias: np.ndarray | None, momentum: float
) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    if momentum == 0.0:
        return None, None, False
    if state is not None and "momentum_buffer_W" in state:
        bw = state["momentum_buffer_W"]
        bb = state.get("momentum_buffer_b") if bias is not None else None
        for buf, p, key in ((bw, w, "momentum_buffer_W"), (bb, bias, "momentum_buffer_b")):
            if p is None:
                continue
            if not isinstance(buf, np.ndarray) or buf.shape != p.shape or buf.dtype != p.dtype:
                raise ValueError(
                    f"state[{key!r}] does not match {'W' if p is w else 'b'} (shape {p.shape}, "
                    f"dtype {p.dtype}), got {getattr(buf, 'shape', None)} "
                    f"{getattr(buf, 'dtype', type(buf).__name__)}"
                )
            f = buf.flags
            if not (f.c_contiguous and f.writeable and f.aligned) or buf.dtype is not p.dtype:
                raise ValueError(
                    f"state[{key!r}] must be a writable, aligned, C-contiguous array in native "
                    "byte order: it is updated in place"
                )
        return bw, bb, True
    return np.zeros_like(w), (None if bias is None else np.zeros_like(bias)), False


def _n_threads(value: Any) -> int:
    """``n_threads`` as a thread count: an int from 1 to 1024, or -1 for ``os.cpu_count()``."""
    if type(value) is not int:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError("n_threads must be an integer, got bool")
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"n_threads must be an integer, got {type(value).__name__}") from None
    if value == -1:
        return max(1, min(os.cpu_count() or 1, _MAX_THREADS))
    if not 1 <= value <= _MAX_THREADS:
        raise ValueError(
            f"n_threads must be -1 (all CPUs) or an integer from 1 to {_MAX_THREADS}, got {value}"
        )
    return value


# One learning-rate array per (lr, epochs) seen lately: the kernels only read it, and building
# it costs more than the dict look-up. Zero is left out (0.0 and -0.0 are one key but not the
# same bits).
_RATES: dict = {}


def _constant_rates(lr: float, epochs: int) -> np.ndarray:
    if lr == 0.0:
        out = np.empty(epochs)
        out.fill(lr)
        return out
    key = (lr, epochs)
    out = _RATES.get(key)
    if out is None:
        if len(_RATES) >= 64:
            _RATES.clear()
        out = np.empty(epochs)
        out.fill(lr)
        _RATES[key] = out
    return out


# ----------------------------------------------------------------------------- the runner


def _is_numba(mod: Any) -> bool:
    return mod.__name__ == "linsgd._numba"


# The numba kernel cannot look for a pending Ctrl-C itself, so long runs are cut into calls of
# about this many seconds, between which Python raises KeyboardInterrupt. Any cut gives the
# same bits: every step sees the same rows, learning rate and momentum state.
_CHUNK_SECONDS = 0.05
_FIRST_CHUNK_WORK = 1 << 22  # multiply-adds in the first chunk, before any timing is known


def _store_state(state: dict | None, bw, bb, initialized: bool, steps: int) -> None:
    """Keep the momentum buffers (once a momentum step ran) and the step count in ``state``."""
    if state is None:
        return
    if bw is not None and (initialized or steps > 0):
        state["momentum_buffer_W"] = bw
        if bb is not None:
            state["momentum_buffer_b"] = bb
    state["step"] = int(state.get("step", 0)) + int(steps)


def _train_chunked(mod, x, y, w, bias, order, bs, rates, h, bw, bb, initialized, losses,
                   xv, yv, vl, target, sw):  # fmt: skip
    """``mod.train`` over all epochs, in chunks of whole epochs or of one epoch's steps."""
    m = x.shape[0]
    rows = m if order is None else order.shape[1]
    n_epochs = rates.shape[0]
    steps_per_epoch = -(-rows // bs)
    total = n_epochs * steps_per_epoch
    work_per_step = min(bs, rows) * (x.shape[1] + 1) * (y.shape[1] + 1)
    budget = max(1, _FIRST_CHUNK_WORK // work_per_step)
    if budget >= total:  # one chunk: no bookkeeping between chunks is needed
        return mod.train(
            x, y, w, bias, order, bs, rates, *h, bw, bb, initialized, losses, xv, yv, vl,
            target, sw,
        )  # fmt: skip
    steps_done = 0
    g = 0  # the next global step index (epoch * steps_per_epoch + step)
    while g < total:
        e, s = divmod(g, steps_per_epoch)
        if s == 0 and budget >= steps_per_epoch:
            ne = min(budget // steps_per_epoch, n_epochs - e)
            k = ne * steps_per_epoch
            sub_order = None if order is None else order[e : e + ne]
            sub_rates = rates[e : e + ne]
            v = (xv, yv, None if vl is None else vl[e : e + ne])
        else:
            k = min(budget, steps_per_epoch - s)
            r0, r1 = s * bs, min((s + k) * bs, rows)
            sub_order = (
                np.arange(r0, r1, dtype=np.int64) if order is None else order[e, r0:r1]
            ).reshape(1, -1)
            sub_rates = rates[e : e + 1]
            ends_epoch = s + k == steps_per_epoch
            v = (xv, yv, vl[e : e + 1]) if ends_epoch and vl is not None else (None, None, None)
        t0 = time.perf_counter()
        st, status = mod.train(
            x, y, w, bias, sub_order, bs, sub_rates, *h,
            bw, bb, initialized, losses[g : g + k], v[0], v[1], v[2], target, sw,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        steps_done += st
        if bw is not None and st > 0:
            initialized = True
        if status != 0:
            return steps_done, status
        g += k
        # the next chunk: about _CHUNK_SECONDS at the speed just measured, growing at most 4x
        rate = k / max(elapsed, 1e-6)
        budget = max(1, min(int(rate * _CHUNK_SECONDS), 4 * k))
    return steps_done, 0


def _on_device(*objs: Any) -> bool:
    """Whether any argument is a GPU array (torch CUDA tensor, CuPy, ...): numpy arrays and
    None are answered without a look further."""
    for o in objs:
        if o is not None and type(o) is not np.ndarray and _cd.is_device_array(o):
            return True
    return False


def _device_module(backend: str | None):
    if backend not in (None, "cuda"):
        raise ValueError(
            f"X, Y, W or b is a CUDA array; use backend='cuda' (or None), not {backend!r}"
        )
    return resolve_backend("cuda")[1]


def _device_finite(a: Any, name: str) -> None:
    if a is not None and not _cd.all_finite(a):
        raise ValueError(f"{name} contains NaN or infinity")


def _run_device(
    X, Y, W, b, batch_size, epochs, lr, orders, order_name, hyper, state, eval_set,
    target_loss, sample_weight, check_finite, backend,
):  # fmt: skip
    """:func:`_run` for GPU arrays: they go to the CUDA backend in place (it checks their dtype,
    shape, contiguity and writability itself, naming the argument); the small host arrays
    (row orders, learning rates, losses) are built here as for the CPU backends."""
    mod = _device_module(backend)
    X, Y, W, b = (_cd.as_cuda_arg(a, n) for a, n in ((X, "X"), (Y, "Y"), (W, "W"), (b, "b")))
    Y = _cd.as_2d_targets(Y)
    if check_finite:
        _device_finite(X, "X")
        _device_finite(Y, "Y")
    _device_finite(W, "W")
    _device_finite(b, "b")
    n_epochs = _count(epochs, "epochs", 0)
    m = int(X.shape[0])
    bs = m if batch_size is None else _count(batch_size, "batch_size", 1)
    h = _hyper(*hyper)
    rates = _learning_rates(lr, n_epochs)
    order = None if orders is None or n_epochs == 0 else _orders(orders, m, n_epochs, order_name)
    rows = m if order is None else order.shape[1]
    bs = min(bs, max(rows, 1))
    target = _NAN if target_loss is None else _real(target_loss, "target_loss")
    xv = yv = vl = None
    if eval_set is not None:
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise TypeError("eval_set must be a pair (X_valid, Y_valid)")
        xv = _cd.as_cuda_arg(eval_set[0], "X_valid")
        yv = _cd.as_2d_targets(_cd.as_cuda_arg(eval_set[1], "Y_valid"))
        if check_finite:
            _device_finite(xv, "X_valid")
            _device_finite(yv, "Y_valid")
        vl = np.full(n_epochs, np.nan)
    sw = None if sample_weight is None else _cd.as_cuda_arg(sample_weight, "sample_weight")
    steps_per_epoch = -(-rows // bs) if rows else 0
    losses = np.full(n_epochs * steps_per_epoch, np.nan)
    bw = bb = None
    initialized = False
    if h[3] != 0.0:
        if state is not None and "momentum_buffer_W" in state:
            bw, bb, initialized = state["momentum_buffer_W"], state.get("momentum_buffer_b"), True
        else:
            bw, bb = _cd.zeros_like(W), _cd.zeros_like(b)
    if n_epochs == 0:
        steps, status = 0, 0
    else:
        steps, status = mod.train(
            X, Y, W, b, order, bs, rates, *h, bw, bb, initialized, losses, xv, yv, vl,
            target, sw,
        )  # fmt: skip
    _store_state(state, bw, bb, initialized, steps)
    return losses, vl, int(steps), int(status), max(steps_per_epoch, 1), W, b


def _fast_run(
    X, Y, W, b, batch_size, epochs, lr, wd, db, l2, mu, damp, nest, maxi, state, eval_set,
    target_loss, check_finite, backend, n_threads,
):  # fmt: skip
    """:func:`_run` for the common call in one compiled call, or None when ``_core.run`` refuses
    it; :func:`_run` then does the call the long way, with every check and its message.

    ``_core.run`` accepts less than :func:`_run` does (exact numpy arrays, Python scalars of the
    expected kinds, no row order, no sample weights), so whatever it accepts is accepted here
    with the same meaning; it refuses before anything is written. The numba backend has it check
    the call and make the loss arrays (flag 4), then runs the call itself.
    Returns ``(losses (E*S,), valid_losses or None, steps, status)``.
    """
    if _core_run is None or type(X) is not _ND or not (state is None or type(state) is dict):
        return None  # (GPU arrays, in particular, take the long way to the CUDA backend)
    bw = bb = None
    initialized = False
    if mu.__class__ is not float or mu != 0.0:
        if mu.__class__ is not float and mu.__class__ is not int:
            return None
        if mu != 0:
            if state is not None and "momentum_buffer_W" in state:
                bw = state["momentum_buffer_W"]
                bb = state.get("momentum_buffer_b") if b is not None else None
                initialized = True
            elif type(W) is _ND and (b is None or type(b) is _ND):
                bw = np.zeros(W.shape, W.dtype)
                bb = None if b is None else np.zeros(b.shape, b.dtype)
            else:
                return None
    xv = yv = None
    if eval_set is not None:
        if not ((type(eval_set) is tuple or type(eval_set) is list) and len(eval_set) == 2):
            return None
        xv, yv = eval_set
    if n_threads.__class__ is not int or n_threads < 1:
        if n_threads.__class__ is not int or n_threads != -1:
            return None
        n_threads = _n_threads(-1)
    name, mod = resolve_backend(backend)
    flags = 3 if check_finite else 2
    if name == "cpp":
        try:
            steps, status, losses, vl = _core_run(
                X, Y, W, b, batch_size, lr, epochs, wd, db, l2, mu, damp, nest, maxi, bw, bb,
                initialized, xv, yv, target_loss, n_threads, flags,
            )  # fmt: skip
        except (TypeError, ValueError):
            return None
    elif name == "numba":
        try:
            _, _, losses, vl = _core_run(
                X, Y, W, b, batch_size, lr, epochs, wd, db, l2, mu, damp, nest, maxi, bw, bb,
                initialized, xv, yv, target_loss, n_threads, flags | 4,
            )  # fmt: skip
        except (TypeError, ValueError):
            return None
        m, n = X.shape
        bs = m if batch_size is None or batch_size > m else batch_size
        target = _NAN if target_loss is None else target_loss
        total = losses.shape[0]
        if (
            bw is None and vl is None and type(lr) is not _ND
            # one chunk of _train_chunked: max(1, _FIRST_CHUNK_WORK // work per step) >= total
            and (bs * (n + 1) * (W.shape[0] + 1) * total <= _FIRST_CHUNK_WORK or total == 1)
        ):  # fmt: skip
            steps, status = mod.train_constant_lr(
                X, Y, W, b, bs, lr, epochs, wd, db, l2, maxi, losses, target
            )
        else:
            if Y.ndim == 1:
                Y = Y.reshape(m, 1)
            if yv is not None and yv.ndim == 1:
                yv = yv.reshape(-1, 1)
            rates = _constant_rates(float(lr), epochs) if type(lr) is not _ND else lr
            steps, status = _train_chunked(
                mod, X, Y, W, b, None, bs, rates, (wd, db, l2, mu, damp, nest, maxi), bw, bb,
                initialized, losses, xv, yv, vl, target, None,
            )  # fmt: skip
    else:
        return None
    if state is not None:
        _store_state(state, bw, bb, initialized, steps)
    return losses, vl, steps, status


def _run(
    X, Y, W, b, batch_size, epochs, lr, orders, order_name, hyper, state, eval_set,
    target_loss, sample_weight, check_finite, backend, n_threads=1,
):  # fmt: skip
    """Validate, then train; return (losses (E*S,), valid_losses, steps, status, S, w, bias)."""
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict or None, got {type(state).__name__}")
    if not (type(X) is np.ndarray and type(W) is np.ndarray) and _on_device(
        X, Y, W, b, *(eval_set if isinstance(eval_set, (tuple, list)) else ())
    ):
        _n_threads(n_threads)  # the CUDA backend has no use for it, but it must be valid
        return _run_device(
            X, Y, W, b, batch_size, epochs, lr, orders, order_name, hyper, state, eval_set,
            target_loss, sample_weight, check_finite, backend,
        )  # fmt: skip
    name, mod = resolve_backend(backend)
    x, y = _data(X, Y, check_finite)
    w, bias = _params(W, b, x, y, writable=True)
    n_epochs = _count(epochs, "epochs", 0)
    m = x.shape[0]
    bs = m if batch_size is None else _count(batch_size, "batch_size", 1)
    h = _hyper(*hyper)
    threads = _n_threads(n_threads)
    rates = _learning_rates(lr, n_epochs)
    order = None
    if orders is not None:
        order = _orders(orders, m, n_epochs, order_name)
        if n_epochs == 0:
            order = None
    rows = m if order is None else order.shape[1]
    if bs > rows:
        bs = rows  # one batch per epoch: the same steps, and no overflow in the kernel
    target = _NAN if target_loss is None else _real(target_loss, "target_loss")
    xv = yv = vl = None
    if eval_set is not None:
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise TypeError("eval_set must be a pair (X_valid, Y_valid)")
        xv, yv = _data(eval_set[0], eval_set[1], check_finite, "X_valid", "Y_valid")
        if xv.dtype is not x.dtype:
            raise TypeError(f"X_valid must have the same dtype as X ({x.dtype}), got {xv.dtype}")
        if xv.shape[1] != x.shape[1] or yv.shape[1] != y.shape[1]:
            raise ValueError(
                f"eval_set must have {x.shape[1]} features and {y.shape[1]} outputs, "
                f"got X_valid {xv.shape} and Y_valid {yv.shape}"
            )
        vl = np.full(n_epochs, np.nan)
    steps_per_epoch = -(-rows // bs)
    losses = np.empty(n_epochs * steps_per_epoch)
    losses.fill(_NAN)
    sw = _sample_weight(sample_weight, x)
    bw, bb, initialized = _momentum_buffers(state, w, bias, h[3])
    if name != "cpp":  # the compiled binding checks this itself, naming the arguments
        _no_shared_memory(
            [(w, "W"), (bias, "b"), (bw, "state['momentum_buffer_W']"),
             (bb, "state['momentum_buffer_b']")],
            [(x, "X"), (y, "Y"), (sw, "sample_weight"), (order, order_name),
             (xv, "X_valid"), (yv, "Y_valid")],
        )  # fmt: skip
    if n_epochs == 0:
        steps, status = 0, 0
    elif _is_numba(mod):
        steps, status = _train_chunked(
            mod, x, y, w, bias, order, bs, rates, h, bw, bb, initialized, losses, xv, yv, vl,
            target, sw,
        )  # fmt: skip
    elif name == "cpp":
        steps, status = mod.train(
            x, y, w, bias, order, bs, rates, *h, bw, bb, initialized, losses, xv, yv, vl,
            target, sw, threads,
        )  # fmt: skip
    else:
        steps, status = mod.train(
            x, y, w, bias, order, bs, rates, *h, bw, bb, initialized, losses, xv, yv, vl,
            target, sw,
        )  # fmt: skip
    _store_state(state, bw, bb, initialized, steps)
    return losses, vl, int(steps), int(status), steps_per_epoch, w, bias


def _raise_if_diverged(status: int, steps: int, steps_per_epoch: int, w, bias) -> None:
    if status != 2:
        return
    finite = _all_finite if isinstance(w, np.ndarray) else _cd.all_finite
    params_finite = finite(w) and (bias is None or finite(bias))
    # a non-finite loss stops before its step is applied; a non-finite parameter is found
    # right after the step that produced it
    k = steps if params_finite else max(steps - 1, 0)
    e, s = divmod(k, steps_per_epoch)
    what = (
        "its batch loss was NaN or infinite; the step was not applied, W and b hold the "
        "parameters from before it"
        if params_finite
        else "its update made W or b NaN or infinite; W and b hold those values"
    )
    raise DivergenceError(
        f"training diverged at epoch {e}, step {s} (0-based): {what} (try a smaller lr)",
        epoch=e,
        step=s,
    )


# ----------------------------------------------------------------------------- public API


def loss(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> float:
    """Mean squared error of the model on a data set, rounded as ``nn.MSELoss`` rounds it.

    Parameters
    ----------
    X : array_like of shape (M, N)
    Y : array_like of shape (M, U) or (M,)
    W : array_like of shape (U, N)
    b : array_like of shape (U,) or None
    sample_weight : array_like of shape (M,), optional
        Row weights: the loss becomes ``sum(w * e**2) / (U * sum(w))``.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    float
        The mean of the squared errors over all ``M * U`` entries.
    """
    if not (type(X) is np.ndarray and type(W) is np.ndarray) and _on_device(X, Y, W, b):
        mod = _device_module(backend)
        x, y, w, bias = (_cd.as_cuda_arg(a, n) for a, n in ((X, "X"), (Y, "Y"), (W, "W"), (b, "b")))
        for a, n in ((x, "X"), (y, "Y"), (w, "W"), (bias, "b")):
            _device_finite(a, n)
        sw = None if sample_weight is None else _cd.as_cuda_arg(sample_weight, "sample_weight")
        return float(mod.loss(x, _cd.as_2d_targets(y), w, bias, sample_weight=sw))
    _, mod = resolve_backend(backend)
    x, y = _data(X, Y, True)
    w, bias = _params(W, b, x, y, writable=False)
    sw = _sample_weight(sample_weight, x)
    if sw is None:
        return float(mod.loss(x, y, w, bias))
    return float(mod.loss(x, y, w, bias, sample_weight=sw))


def gradient(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Gradient of the batch MSE with respect to ``W`` and ``b``, without an update.

    Parameters
    ----------
    X : array_like of shape (B, N)
    Y : array_like of shape (B, U) or (B,)
    W : array_like of shape (U, N)
    b : array_like of shape (U,) or None
    sample_weight : array_like of shape (B,), optional
        Row weights, as in :func:`train`.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    gW : ndarray of shape (U, N)
    gb : ndarray of shape (U,) or None
        None when ``b`` is None.
    loss : float
        The batch MSE.
    """
    if not (type(X) is np.ndarray and type(W) is np.ndarray) and _on_device(X, Y, W, b):
        mod = _device_module(backend)
        x, y, w, bias = (_cd.as_cuda_arg(a, n) for a, n in ((X, "X"), (Y, "Y"), (W, "W"), (b, "b")))
        for a, n in ((x, "X"), (y, "Y"), (w, "W"), (bias, "b")):
            _device_finite(a, n)
        sw = None if sample_weight is None else _cd.as_cuda_arg(sample_weight, "sample_weight")
        gw, gb = _cd.zeros_like(w), _cd.zeros_like(bias)
        value = mod.gradient(x, _cd.as_2d_targets(y), w, bias, gw, gb, sample_weight=sw)
        return gw, gb, float(value)
    _, mod = resolve_backend(backend)
    x, y = _data(X, Y, True)
    w, bias = _params(W, b, x, y, writable=False)
    gw = np.empty_like(w)
    gb = None if bias is None else np.empty_like(bias)
    sw = _sample_weight(sample_weight, x)
    if sw is None:
        value = mod.gradient(x, y, w, bias, gw, gb)
    else:
        value = mod.gradient(x, y, w, bias, gw, gb, sample_weight=sw)
    return gw, gb, float(value)


def train(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    epochs: int,
    lr: float | Sequence[float],
    orders: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    eval_set: tuple[Any, Any] | None = None,
    target_loss: float | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> TrainResult:
    """Run several epochs of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Each step computes the batch MSE gradient and applies ``torch.optim.SGD``'s update with the
    given hyper-parameters, in torch's order of operations.

    Parameters
    ----------
    X : array_like of shape (M, N)
        Read only; used without a copy when C-contiguous (a memmap included).
    Y : array_like of shape (M, U) or (M,)
    W : array of shape (U, N)
        Updated in place: writable and C-contiguous, of ``X``'s dtype.
    b : array of shape (U,) or None
        Updated in place; None for a model without a bias.
    batch_size : int
        Rows per step; the last batch of an epoch may be smaller.
    epochs : int
        Epochs to run.
    lr : float or sequence of float
        The learning rate, or one per epoch (a schedule).
    orders : array_like of int, shape (epochs, R), optional
        The rows of each epoch, in order, each in ``[0, M)``. Rows may repeat and ``R`` may
        differ from ``M`` (a shorter ``R`` drops rows, a longer one samples with replacement).
        Rows ``0..M-1`` in order when None.
    weight_decay : float
        torch's coupled weight decay, ``d += weight_decay * p``.
    decay_bias : bool
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum, dampening : float
        As in ``torch.optim.SGD``.
    nesterov, maximize : bool
        As in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count); a fresh
        optimizer when None or empty.
    eval_set : tuple (X_valid, Y_valid), optional
        A validation set whose MSE is computed after every epoch.
    target_loss : float, optional
        Stop after the first step whose batch loss is below this value.
    sample_weight : array_like of shape (M,), optional
        Non-negative row weights (cast to ``X``'s dtype). Each batch's loss becomes the weighted
        mean ``sum(w * e**2) / (U * sum(w))`` over its rows, so unit weights give exactly the
        unweighted (torch) result and scaling all weights changes nothing; a batch whose weights
        are all zero contributes no gradient.
    check_finite : bool
        Check the data for NaN and infinity first (one pass over it, no allocation).
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.
    n_threads : int
        Host threads for the steps of the C++ backend, from 1 (the default) to 1024, or -1 for
        ``os.cpu_count()``. The results are the same bits for every count. Threads only start
        for steps with ``batch_size * N * U >= 2**14`` (smaller steps run on one thread: a
        hand-off would cost more than it saves), so they are for large batches and wide
        models, and on a machine with few cores they may not be faster. The numba backend
        runs on one thread and ignores ``n_threads`` (after checking it); so does the CUDA
        backend, which has its own parallelism.

    Returns
    -------
    TrainResult
        The per-step losses, the validation losses, the steps and epochs run and the status.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, within a fraction of a second; ``W``, ``b`` and ``state`` are then part-way
        through the run (see the module documentation).
    """
    r = None
    if orders is None and sample_weight is None:
        r = _fast_run(
            X, Y, W, b, batch_size, epochs, lr, weight_decay, decay_bias, l2, momentum,
            dampening, nesterov, maximize, state, eval_set, target_loss, check_finite, backend,
            n_threads,
        )  # fmt: skip
    if r is not None:
        losses, vl, steps, status = r
        n_epochs = epochs
        spe = losses.shape[0] // epochs
    else:
        losses, vl, steps, status, spe, _, _ = _run(
            X, Y, W, b, batch_size, epochs, lr, orders, "orders",
            (weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize), state,
            eval_set, target_loss, sample_weight, check_finite, backend, n_threads,
        )  # fmt: skip
        n_epochs = losses.shape[0] // spe
    return TrainResult(
        losses.reshape(n_epochs, spe), vl, steps, n_epochs if status == 0 else steps // spe,
        _STATUS[status],
    )  # fmt: skip


def epoch(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    lr: float,
    order: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> np.ndarray:
    """Run one epoch of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X, Y, W, b, batch_size, lr
        As in :func:`train`.
    weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize
        As in :func:`train`.
    state, sample_weight, check_finite, backend, n_threads
        As in :func:`train`.
    order : array_like of int, shape (R,), optional
        The rows of the epoch, in order, each in ``[0, M)`` (repeats allowed); rows
        ``0..M-1`` when None.

    Returns
    -------
    ndarray of float64, shape (steps,)
        The batch loss of every step, before its update.

    Raises
    ------
    DivergenceError
        When a loss or a parameter becomes NaN or infinite (its ``epoch`` is 0, its ``step``
        the step that diverged).
    """
    if order is None and sample_weight is None:
        r = _fast_run(
            X, Y, W, b, batch_size, 1, lr, weight_decay, decay_bias, l2, momentum, dampening,
            nesterov, maximize, state, None, None, check_finite, backend, n_threads,
        )  # fmt: skip
        if r is not None:
            if r[3] == 2:
                _raise_if_diverged(2, r[2], r[0].shape[0], W, b)
            return r[0]
    losses, _, steps, status, spe, w, bias = _run(
        X, Y, W, b, batch_size, 1, lr, order, "order",
        (weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize), state,
        None, None, sample_weight, check_finite, backend, n_threads,
    )  # fmt: skip
    _raise_if_diverged(status, steps, spe, w, bias)
    return losses


def step(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> float:
    """Take one SGD step on one batch (all of ``X``), updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X, Y, W, b, lr
        As in :func:`train`.
    weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize
        As in :func:`train`.
    state, sample_weight, check_finite, backend, n_threads
        As in :func:`train`; ``state`` carries the momentum buffers between steps.

    Returns
    -------
    float
        The batch loss before the update.

    Raises
    ------
    DivergenceError
        When the loss or a parameter becomes NaN or infinite.
    """
    if sample_weight is None:
        r = _fast_run(
            X, Y, W, b, None, 1, lr, weight_decay, decay_bias, l2, momentum, dampening,
            nesterov, maximize, state, None, None, check_finite, backend, n_threads,
        )  # fmt: skip
        if r is not None:
            if r[3] == 2:
                _raise_if_diverged(2, r[2], 1, W, b)
            return float(r[0][0])
    losses, _, steps, status, spe, w, bias = _run(
        X, Y, W, b, None, 1, lr, None, "order",
        (weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize), state,
        None, None, sample_weight, check_finite, backend, n_threads,
    )  # fmt: skip
    _raise_if_diverged(status, steps, spe, w, bias)
    return float(losses[0])
