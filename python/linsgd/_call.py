"""One training call of a backend, checked and converted once: ``prepare`` builds it.

:mod:`linsgd.kernels` hands every training call to ``prepare``, which checks and converts each
argument once (host arrays here, GPU arrays through :mod:`linsgd._cuda_dispatch`) into a
``TrainCall``: the backend's ``train`` arguments in its order (see :mod:`linsgd._backends`),
with the momentum buffers made for it. ``TrainCall.run`` runs it and keeps the optimizer
state. ``run_call`` hands a call that needs no conversion to the backend directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _checks as ck
from . import _cuda_dispatch as _cd
from ._backends import resolve_backend
from ._sparse import CsrX, csr_arg, is_sparse
from .exceptions import DivergenceError

_I64 = np.dtype(np.int64)
_F32 = ck.F32
_F64 = ck.F64
_finite = ck.all_finite
_ND = np.ndarray


# ----------------------------------------------------------------------------- host arrays


def _data(
    X: Any, Y: Any, check_finite: bool, xname: str = "X", yname: str = "Y"
) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (M >= 1, N) and ``Y`` as (M, U), C-contiguous, of one float dtype."""
    if type(X) is _ND and type(Y) is _ND:
        dt = X.dtype
        if (dt is _F64 or dt is _F32) and Y.dtype is dt and X.ndim == 2:
            m = X.shape[0]
            y = Y.reshape(m, 1) if Y.ndim == 1 and Y.shape[0] == m else Y
            fx, fy = X.flags, y.flags
            if (
                m and y.ndim == 2 and y.shape[0] == m and y.shape[1]
                and fx.c_contiguous and fx.aligned and fy.c_contiguous and fy.aligned
                and (not check_finite or (_finite(X) and _finite(y)))
            ):  # fmt: skip
                return X, y
    sparse = is_sparse(X)
    if sparse:  # (checked for finiteness here)
        x = csr_arg(X, xname, check_finite)
        dt = x.dtype
    else:
        x = X if type(X) is _ND else ck.as_ndarray(X, xname)
        dt = ck.native_float(x.dtype)
        if dt is None:
            raise ck.dtype_error(xname, x.dtype, "float32 or float64")
        if x.ndim != 2:
            raise ValueError(f"{xname} must be 2-D (samples, features), got shape {x.shape}")
    m = x.shape[0]
    if m < 1:
        raise ValueError(f"{xname} must have at least one row, got shape {x.shape}")
    y = Y if type(Y) is _ND else ck.as_ndarray(Y, yname)
    ydt = ck.native_float(y.dtype)
    if ydt is not dt:
        if ydt is None:
            raise ck.dtype_error(yname, y.dtype, f"{dt} (the dtype of {xname})")
        raise TypeError(f"{yname} must have the same dtype as {xname} ({dt}), got {y.dtype}")
    yshape = y.shape
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != m or y.shape[1] < 1:
        raise ValueError(
            f"{yname} must have shape ({m}, U) with U >= 1, or ({m},), to match {xname}, "
            f"got {yshape}"
        )
    if not sparse:
        x = ck.readable(x, dt)
    y = ck.readable(y, dt)
    if check_finite:
        if not sparse:
            ck.require_finite(x, xname)
        ck.require_finite(y, yname)
    return x, y


def _param(
    obj: Any, name: str, dt: np.dtype, shape: tuple, writable: bool, ref: str = "X"
) -> np.ndarray:
    if type(obj) is _ND and obj.dtype is dt and obj.shape == shape:
        f = obj.flags
        if f.c_contiguous and f.aligned and (f.writeable or not writable) and _finite(obj):
            return obj
    if writable and not isinstance(obj, _ND) and not ck.is_torch_tensor(obj):
        raise TypeError(
            f"{name} must be a numpy array or a CPU torch tensor: it is updated in place, "
            f"got {type(obj).__name__}"
        )
    a = obj if type(obj) is _ND else ck.as_ndarray(obj, name)
    adt = a.dtype
    if adt != dt:
        if ck.native_float(adt) is not dt:
            raise ck.dtype_error(name, adt, f"{dt} (the dtype of {ref})")
        if writable:
            raise TypeError(f"{name} must have native byte order ({dt}): it is updated in place")
    if a.shape != shape:
        what = "(U, N)" if len(shape) == 2 else "(U,)"
        extra = "" if len(shape) == 2 else " or be None"
        raise ValueError(f"{name} must have shape {what} = {shape}{extra}, got {a.shape}")
    if writable:
        _require_in_place(a, name)
    else:
        a = ck.readable(a, dt)
    ck.require_finite(a, name)
    return a


def _require_in_place(a: np.ndarray, name: str) -> None:
    f = a.flags
    if not f.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous: it is updated in place")
    if not f.writeable:
        raise ValueError(f"{name} must be writable: it is updated in place")
    if not f.aligned:
        raise ValueError(f"{name} must be aligned: it is updated in place")


def _params(
    W: Any, b: Any, x: np.ndarray, y: np.ndarray, writable: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    u, n = y.shape[1], x.shape[1]
    w = _param(W, "W", x.dtype, (u, n), writable)
    bias = None if b is None else _param(b, "b", x.dtype, (u,), writable)
    return w, bias


def _sample_weight(sample_weight: Any, x: Any) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = ck.as_ndarray(sample_weight, "sample_weight")
    if sw.dtype.kind not in "fiu":
        raise ck.dtype_error("sample_weight", sw.dtype, "real (float or integer)")
    if sw.shape != (x.shape[0],):
        raise ValueError(
            f"sample_weight must have shape ({x.shape[0]},), one weight per row, got {sw.shape}"
        )
    sw = ck.readable(sw, x.dtype)
    if not ck.all_finite(sw) or sw.min() < 0:
        raise ValueError("sample_weight must be finite and >= 0")
    return sw


def _eval_arrays(eval_set: Any, x: np.ndarray, y: np.ndarray, check_finite: bool):
    xv, yv = _data(eval_set[0], eval_set[1], check_finite, "X_valid", "Y_valid")
    if isinstance(xv, CsrX) and not isinstance(x, CsrX):
        raise TypeError("X_valid is sparse but X is dense: pass both dense, or both sparse")
    if xv.dtype != x.dtype:
        raise TypeError(f"X_valid must have the same dtype as X ({x.dtype}), got {xv.dtype}")
    if xv.shape[1] != x.shape[1] or yv.shape[1] != y.shape[1]:
        raise ValueError(
            f"eval_set must have {x.shape[1]} features and {y.shape[1]} outputs, "
            f"got X_valid {xv.shape} and Y_valid {yv.shape}"
        )
    return xv, yv


# ----------------------------------------------------------------------------- device arrays
# GPU arrays go to the CUDA backend as they are: its binding checks their dtype, shape,
# contiguity and writability itself, naming the argument; only finiteness is checked here.


def _on_device(*objs: Any) -> bool:
    for o in objs:
        if o is not None and type(o) is not _ND and _cd.is_device_array(o):
            return True
    return False


def _device_backend(backend: str | None) -> Any:
    if backend not in (None, "cuda"):
        raise ValueError(
            f"X, Y, W or b is a CUDA array; use backend='cuda' (or None), not {backend!r}"
        )
    return resolve_backend("cuda")[1]


def _device_arrays(X: Any, Y: Any, W: Any, b: Any, check_finite: bool) -> tuple:
    x, y, w, bias = (_cd.as_cuda_arg(a, n) for a, n in ((X, "X"), (Y, "Y"), (W, "W"), (b, "b")))
    for a, n, always in ((x, "X", False), (y, "Y", False), (w, "W", True), (bias, "b", True)):
        if a is not None and (always or check_finite) and not _cd.all_finite(a):
            raise ValueError(f"{n} contains NaN or infinity")
    return x, _cd.as_2d_targets(y), w, bias


def _device_eval(eval_set: Any, check_finite: bool) -> tuple:
    xv = _cd.as_cuda_arg(eval_set[0], "X_valid")
    yv = _cd.as_2d_targets(_cd.as_cuda_arg(eval_set[1], "Y_valid"))
    for a, n in ((xv, "X_valid"), (yv, "Y_valid")):
        if check_finite and not _cd.all_finite(a):
            raise ValueError(f"{n} contains NaN or infinity")
    return xv, yv


# ----------------------------------------------------------------------------- scalars


def _hyper(
    weight_decay: Any,
    decay_bias: Any,
    l2: Any,
    momentum: Any,
    dampening: Any,
    nesterov: Any,
    maximize: Any,
) -> tuple:
    if (
        type(weight_decay) is float and type(l2) is float and type(momentum) is float
        and type(dampening) is float and weight_decay >= 0.0 and l2 >= 0.0 and momentum >= 0.0
        and math.isfinite(weight_decay + l2 + momentum + dampening)
        and (decay_bias is True or decay_bias is False)
        and (nesterov is False or (momentum > 0.0 and dampening == 0.0 and nesterov is True))
        and (maximize is True or maximize is False)
    ):  # fmt: skip
        return weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize
    wd = ck.real(weight_decay, "weight_decay", minimum=0.0)
    db = ck.flag(decay_bias, "decay_bias")
    l2v = ck.real(l2, "l2", minimum=0.0)
    mu = ck.real(momentum, "momentum", minimum=0.0)
    damp = ck.real(dampening, "dampening")
    nest = ck.flag(nesterov, "nesterov")
    maxi = ck.flag(maximize, "maximize")
    ck.nesterov_rule(mu, damp, nest)
    return wd, db, l2v, mu, damp, nest, maxi


def _learning_rates(lr: Any, epochs: int) -> float | np.ndarray:
    """A float for every epoch, or a float64 array of one per epoch."""
    if type(lr) is float and math.isfinite(lr) and lr >= 0.0:
        return lr
    if isinstance(lr, _ND) or (isinstance(lr, Sequence) and not isinstance(lr, str)):
        if isinstance(lr, _ND) and lr.dtype.kind in "fiu":
            rates = np.array(lr, dtype=np.float64).reshape(-1)
            if rates.size and not (ck.all_finite(rates) and rates.min() >= 0.0):
                raise ValueError("lr must hold finite values >= 0")
        else:
            rates = np.array([ck.real(v, "lr", minimum=0.0) for v in lr], dtype=np.float64)
        if np.ndim(lr) != 1 or rates.shape != (epochs,):
            raise ValueError(
                f"lr must be a number or a sequence of {epochs} per-epoch values, "
                f"got shape {np.shape(lr)}"
            )
        return rates
    return ck.real(lr, "lr", minimum=0.0)


def _orders(order: Any, m: int, epochs: int, name: str) -> np.ndarray:
    """Row indices as a C-contiguous int64 ``(epochs, R)`` array, every one checked."""
    o = order if type(order) is _ND else ck.as_ndarray(order, name)
    if o.dtype.kind not in "iu":
        raise ck.dtype_error(name, o.dtype, "integer (row indices)")
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
    return ck.readable(o, _I64).reshape(epochs, o.shape[-1])


def _momentum_buffers(state: dict | None, w: Any, bias: Any, device: bool) -> tuple:
    """The momentum buffers to update in place, and whether they already hold state."""
    if state is not None and "momentum_buffer_W" in state:
        bw = state["momentum_buffer_W"]
        bb = state.get("momentum_buffer_b") if bias is not None else None
        if not device:  # the CUDA binding checks device buffers itself
            for buf, p, key in ((bw, w, "momentum_buffer_W"), (bb, bias, "momentum_buffer_b")):
                if p is None:
                    continue
                if not isinstance(buf, _ND) or buf.shape != p.shape or buf.dtype != p.dtype:
                    raise ValueError(
                        f"state[{key!r}] does not match {'W' if p is w else 'b'} (shape "
                        f"{p.shape}, dtype {p.dtype}), got {getattr(buf, 'shape', None)} "
                        f"{getattr(buf, 'dtype', type(buf).__name__)}"
                    )
                f = buf.flags
                if not (f.c_contiguous and f.writeable and f.aligned):
                    raise ValueError(
                        f"state[{key!r}] must be a writable, aligned, C-contiguous array in "
                        "native byte order: it is updated in place"
                    )
        return bw, bb, True
    if device:
        return _cd.zeros_like(w), _cd.zeros_like(bias), False
    return np.zeros_like(w), (None if bias is None else np.zeros_like(bias)), False


# ----------------------------------------------------------------------------- the call


def _keep_state(state: dict, bw: Any, bb: Any, initialized: bool, steps: int) -> None:
    """Keep the momentum buffers (once a momentum step ran) and the step count in ``state``."""
    if bw is not None and (initialized or steps > 0):
        state["momentum_buffer_W"] = bw
        if bb is not None:
            state["momentum_buffer_b"] = bb
    state["step"] = int(state.get("step", 0)) + steps


class TrainCall:
    """One checked, converted call of a backend's ``train``: its arguments in the backend's
    order, and the optimizer state to keep once it ran."""

    __slots__ = ("args", "bb", "bw", "initialized", "module", "state")

    def run(self) -> tuple[np.ndarray, np.ndarray | None, int, int]:
        """Run the call; keep the momentum buffers and step count in ``state``.

        Returns ``(losses (E*S,), valid_losses (E,) or None, steps, status)``.
        """
        steps, status, losses, valid = self.module.train(*self.args)
        if self.state is not None:
            _keep_state(self.state, self.bw, self.bb, self.initialized, steps)
        return losses, valid, steps, status


def prepare(
    X, Y, W, b, batch_size, epochs, lr, orders, order_name, hyper, state, eval_set,
    target_loss, sample_weight, check_finite, backend, n_threads,
) -> TrainCall:  # fmt: skip
    """Check and convert every argument of a training call once; raise before anything runs."""
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict or None, got {type(state).__name__}")
    if eval_set is not None and not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
        raise TypeError("eval_set must be a pair (X_valid, Y_valid)")
    device = not (type(X) is _ND and type(W) is _ND) and _on_device(X, Y, W, b, *(eval_set or ()))
    if device:
        mod = _device_backend(backend)
        x, y, w, bias = _device_arrays(X, Y, W, b, check_finite)
    else:
        _, mod = resolve_backend(backend)
        x, y = _data(X, Y, check_finite)
        w, bias = _params(W, b, x, y, True)
    threads = ck.thread_count(n_threads)
    n_epochs = ck.integer(epochs, "epochs", minimum=0)
    m = int(x.shape[0])
    bs = None if batch_size is None else ck.integer(batch_size, "batch_size", minimum=1)
    h = _hyper(*hyper)
    rates = _learning_rates(lr, n_epochs)
    order = None
    rows = m
    if orders is not None:
        order = _orders(orders, m, n_epochs, order_name)
        if n_epochs == 0:
            order = None
        else:
            rows = order.shape[1]
    if bs is not None and bs > rows:
        bs = rows  # one batch per epoch: the same steps (and no int64 overflow in the kernel)
    target = None if target_loss is None else ck.real(target_loss, "target_loss")
    xv = yv = None
    if eval_set is not None:
        xv, yv = (
            _device_eval(eval_set, check_finite)
            if device
            else _eval_arrays(eval_set, x, y, check_finite)
        )
    if device:
        sw = None if sample_weight is None else _cd.as_cuda_arg(sample_weight, "sample_weight")
    else:
        sw = _sample_weight(sample_weight, x)
    bw = bb = None
    initialized = False
    if h[3] != 0.0:
        bw, bb, initialized = _momentum_buffers(state, w, bias, device)
    if not device and _core is None:  # the numba backend trusts its arguments then
        ck.no_shared_memory(
            [(w, "W"), (bias, "b"), (bw, "state['momentum_buffer_W']"),
             (bb, "state['momentum_buffer_b']")],
            [*_input_arrays(x, "X"), (y, "Y"), (sw, "sample_weight"), (order, order_name),
             *_input_arrays(xv, "X_valid"), (yv, "Y_valid")],
        )  # fmt: skip
    call = TrainCall()
    call.module = mod
    # flags 0: the finiteness asked for was checked above
    call.args = (
        x, y, w, bias, order, bs, rates, n_epochs, *h, bw, bb, initialized, xv, yv, target, sw,
        threads, 0,
    )  # fmt: skip
    call.bw, call.bb, call.initialized = bw, bb, initialized
    call.state = state
    return call


def _input_arrays(x: Any, name: str) -> list:
    """``[(array, name)]`` of an input for the overlap check: a sparse one's three arrays."""
    if isinstance(x, CsrX):
        return [(a, f"{name}.{part}") for a, part in zip(x, ("data", "indices", "indptr"))]
    return [(x, name)]


def raise_if_diverged(status: int, steps: int, steps_per_epoch: int, w: Any, bias: Any) -> None:
    """Raise :class:`~linsgd.DivergenceError` for a call that ended with status 2."""
    if status != 2:
        return
    params_finite = _cd.all_finite(w) and _cd.all_finite(bias)
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


def evaluation_arrays(X: Any, Y: Any, W: Any, b: Any, sample_weight: Any, backend: Any):
    """The backend and the read-only arrays of :func:`loss` and :func:`gradient`."""
    if not (type(X) is _ND and type(W) is _ND) and _on_device(X, Y, W, b):
        mod = _device_backend(backend)
        x, y, w, bias = _device_arrays(X, Y, W, b, True)
        sw = None if sample_weight is None else _cd.as_cuda_arg(sample_weight, "sample_weight")
        return mod, x, y, w, bias, sw, True
    _, mod = resolve_backend(backend)
    x, y = _data(X, Y, True)
    w, bias = _params(W, b, x, y, False)
    return mod, x, y, w, bias, _sample_weight(sample_weight, x), False


def update_arrays(
    W: Any, b: Any, gW: Any, gb: Any, momentum: float, state: dict | None, backend: Any
) -> tuple:
    """The backend and the checked arrays of :func:`linsgd.kernels.update`: the parameters
    (updated in place), their gradient and the momentum buffers."""
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict or None, got {type(state).__name__}")
    if not (type(W) is _ND and type(gW) is _ND) and _on_device(W, b, gW, gb):
        mod = _device_backend(backend)
        w, bias, gw, g_b = (
            _cd.as_cuda_arg(a, n) for a, n in ((W, "W"), (b, "b"), (gW, "gW"), (gb, "gb"))
        )
        bw = bb = None
        initialized = False
        if momentum != 0.0:  # (the CUDA binding checks everything else)
            bw, bb, initialized = _momentum_buffers(state, w, bias, True)
        return mod, w, bias, gw, g_b, bw, bb, initialized
    _, mod = resolve_backend(backend)
    if not hasattr(mod, "update"):  # a _cuda module built before it had one
        raise ValueError("this build of the CUDA backend has no update: rebuild linsgd")
    if not isinstance(W, _ND) and not ck.is_torch_tensor(W):
        raise TypeError(
            f"W must be a numpy array or a CPU torch tensor: it is updated in place, "
            f"got {type(W).__name__}"
        )
    w0 = W if type(W) is _ND else ck.as_ndarray(W, "W")
    dt = ck.native_float(w0.dtype)
    if dt is None:
        raise ck.dtype_error("W", w0.dtype, "float32 or float64")
    if w0.ndim != 2:
        raise ValueError(f"W must be 2-D (U, N), got shape {w0.shape}")
    shape_w = w0.shape
    w = _param(W, "W", dt, shape_w, True)
    bias = None if b is None else _param(b, "b", dt, (shape_w[0],), True, "W")
    if gW is None:
        raise TypeError("gW must be an array of W's shape, got None")
    gw = _param(gW, "gW", dt, shape_w, False, "W")
    if bias is None:
        g_b = None
    elif gb is None:
        raise ValueError("gb must be an array of shape (U,) when b is given")
    else:
        g_b = _param(gb, "gb", dt, (shape_w[0],), False, "W")
    bw = bb = None
    initialized = False
    if momentum != 0.0:
        bw, bb, initialized = _momentum_buffers(state, w, bias, False)
    ck.no_shared_memory(
        [(w, "W"), (bias, "b"), (bw, "state['momentum_buffer_W']"),
         (bb, "state['momentum_buffer_b']")],
        [(gw, "gW"), (g_b, "gb")],
    )  # fmt: skip
    return mod, w, bias, gw, g_b, bw, bb, initialized


def keep_state(state: dict | None, bw: Any, bb: Any, initialized: bool, steps: int) -> None:
    """:func:`_keep_state` when there is a state to keep."""
    if state is not None:
        _keep_state(state, bw, bb, initialized, steps)


# ----------------------------------------------------------------------------- one call

try:
    from . import _core
except ImportError:  # a numba-only install
    _core = None


def run_call(
    X, Y, W, b, batch_size, epochs, lr, orders, order_name, weight_decay, decay_bias, l2,
    momentum, dampening, nesterov, maximize, state, eval_set, target_loss, sample_weight,
    check_finite, backend, n_threads,
):  # fmt: skip
    """Check, convert and run one training call.

    Returns ``(losses (E*S,), valid_losses (E,) or None, steps, status)``.

    The arguments go to the backend's ``train`` as they are, first: it checks every one (the
    compiled check of ``linsgd._core``, which the numba backend runs too) and refuses, before
    anything is written, whatever is not exactly what it takes: numpy arrays of the model's
    dtype in the layout the kernels read, Python numbers and bools. So a call that needs no
    conversion costs one compiled check. A refused call goes to :func:`prepare`, which
    converts what it may and raises what it must, with the Python API's messages; GPU arrays
    go there at once. Without ``linsgd._core`` every call goes to :func:`prepare`.
    """
    if _core is not None and type(X) is _ND:
        direct = True
        bw = bb = None
        initialized = False
        if momentum:
            if type(state) is dict and "momentum_buffer_W" in state:
                bw = state["momentum_buffer_W"]
                bb = state.get("momentum_buffer_b") if b is not None else None
                initialized = True
            elif (
                type(W) is _ND
                and (b is None or type(b) is _ND)
                and (state is None or type(state) is dict)
            ):
                bw = np.zeros(W.shape, W.dtype)
                bb = None if b is None else np.zeros(b.shape, b.dtype)
            else:
                direct = False
        elif state is not None and type(state) is not dict:
            direct = False
        if orders is not None and getattr(orders, "ndim", 0) != (1 if order_name == "order" else 2):
            direct = False  # epoch's order is (R,), train's orders (E, R): as prepare wants them
        if eval_set is None:
            xv = yv = None
        elif (type(eval_set) is tuple or type(eval_set) is list) and len(eval_set) == 2:
            xv, yv = eval_set
        else:
            direct = False
        if direct:
            try:
                steps, status, losses, valid = resolve_backend(backend)[1].train(
                    X, Y, W, b, orders, batch_size, lr, epochs, weight_decay, decay_bias, l2,
                    momentum, dampening, nesterov, maximize, bw, bb, initialized, xv, yv,
                    target_loss, sample_weight, n_threads, 3 if check_finite else 2,
                )  # fmt: skip
            except (TypeError, ValueError):
                pass
            else:
                if state is not None:
                    _keep_state(state, bw, bb, initialized, steps)
                return losses, valid, steps, status
    hyper = (weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize)
    return prepare(
        X, Y, W, b, batch_size, epochs, lr, orders, order_name, hyper, state, eval_set,
        target_loss, sample_weight, check_finite, backend, n_threads,
    ).run()  # fmt: skip
