"""Which compute backends this install has, and how one is chosen: the one place that decides.

A backend is a module with the same entry points, with the same signatures, whatever
it runs on: ``linsgd._core`` (compiled C++, the default), ``linsgd._numba`` (numba, the
fallback) and ``linsgd._cuda`` (CUDA, where it is built and a device is visible). The
environment variable ``LINSGD_BACKEND`` forces one; asking for one that is missing raises a
``ValueError`` that says what is missing and how to get it.

``linsgd.kernels`` hands a call that needs no conversion straight to the backend, and converts
any other first (see :mod:`linsgd._call`). ``train`` checks every argument itself (the numba
backend through ``linsgd._core``'s check, where it is built): every dtype, shape, stride,
alignment, writability, index and memory overlap, and the values, so that a direct call can
never read or write out of bounds and accepts exactly what ``linsgd.kernels`` accepts with the
same meaning. ``T`` is float32 or float64; every array is C-contiguous and of dtype ``T`` unless
stated otherwise; ``b``-like arguments are ``None`` for a model without a bias::

    loss(X, Y, W, b, sample_weight=None) -> float
        X (M, N), Y (M, U), W (U, N), b (U,) or None.  MSE over all M*U entries, in T:
        P = dot over features, then + b;  e = P - Y;  cascade sum of e*e;  / (M*U).

    gradient(X, Y, W, b, gW, gb, sample_weight=None) -> float
        Writes gW (U, N) and gb (U,) (gb is None when b is None); returns the batch loss.

    partial_gradient(X, Y, W, b, gW, gb, n_total, sample_weight=None, weight_total=None)
        -> float
        gradient's arithmetic for rows that are part of a batch of n_total (>= M) rows: the
        scaled errors are 2 e / (U n_total) (2 w e / (U weight_total) with sample weights;
        weight_total None: these rows' weight sum). Writes gW, gb; returns the rows' (weighted)
        sum of squared errors, a value in T. With n_total = M it is gradient's bits.

    update(W, b, gW, gb, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov,
           maximize, buf_W, buf_b, momentum_initialized) -> bool
        The update half of one train step, by the gradient (gW, gb) (read only), at the one
        learning rate lr: W, b, buf_W, buf_b in place, as train. Returns whether every
        parameter is finite afterwards.

    train(X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2,
          momentum, dampening, nesterov, maximize, buf_W, buf_b, momentum_initialized,
          X_valid, Y_valid, target_loss, sample_weight=None, threads=1, flags=3)
        -> (steps_done, status, losses, valid_losses)
        E = epochs (>= 0) epochs in one call. Y (and Y_valid) may be (M,) for one output.
        lr: a Python number, the learning rate of every epoch, or float64 (E,), one per
        epoch (finite, >= 0). order is int64 (E, R) (or (R,) when E == 1) with
        0 <= order[e, i] < M (the rows of epoch e, in order; rows may repeat and R may differ
        from M) or None (rows 0..M-1, R = M). batch_size >= 1 or None (R); one larger than R
        means one batch per epoch. Steps per epoch S = ceil(R / batch_size); the last batch of
        an epoch may be ragged. The penalties and momentum are finite and >= 0, and nesterov
        needs momentum > 0 and dampening == 0, as in torch.optim.SGD. W, b, buf_W (U, N),
        buf_b (U,) are updated in place; buf_* are read only when momentum_initialized is
        true (else the first step copies the direction into them, as torch does); they are
        None when momentum == 0. X_valid/Y_valid are None or both given: the full-set MSE
        after each epoch. target_loss: None, or stop after the first step whose batch loss is
        < target_loss. sample_weight: None or T (M,) non-negative row weights; each batch's
        loss is then the weighted mean sum(w e^2) / (U sum(w)) (unit weights reproduce the
        unweighted bits). threads: host threads for large steps, 1..1024, the same bits for
        every count (ignored by the numba and CUDA backends). flags: 1 refuse NaN/infinity in
        X, Y, X_valid, Y_valid; 2 in W, b; 4 check only (no step runs). Returned: losses,
        float64 (E*S,), the batch loss of every step (before its update), and valid_losses,
        float64 (E,) or None, both NaN where nothing ran; status 0 completed, 1 target_loss
        reached, 2 diverged (a non-finite loss: that step is not applied; or a non-finite
        parameter after a step); on Ctrl-C the call raises KeyboardInterrupt. steps_done
        counts the steps whose update was applied. Anything else raises TypeError or
        ValueError naming the argument before anything is written. The GIL is released while
        the kernel runs (but for calls of a few microseconds): calls on different arrays may
        run in parallel threads.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = [
    "BACKEND_ENV",
    "available_backends",
    "backend_name",
    "default_backend",
    "get_backend",
    "resolve_backend",
]

BACKEND_ENV = "LINSGD_BACKEND"
_KNOWN = ("cpp", "cuda", "numba")
_MODULES = {"cpp": "linsgd._core", "cuda": "linsgd._cuda", "numba": "linsgd._numba"}
_cache: dict[str, ModuleType] = {}
_errors: dict[str, str] = {}


def _load(name: str) -> ModuleType | None:
    if name in _cache:
        return _cache[name]
    if name in _errors:
        return None
    try:
        mod = importlib.import_module(_MODULES[name])
        if name == "cuda" and not mod.device_available():
            raise ImportError("the _cuda module is built but no CUDA device is visible")
    except ImportError as exc:
        if name == "cuda":
            _errors[name] = (
                f"the CUDA backend is unavailable: {exc}"
                if "device" in str(exc)
                else "the CUDA backend is unavailable: linsgd was built without its _cuda module "
                "(reinstall with -C cmake.define.LINSGD_CUDA=ON on a machine with nvcc)"
            )
        elif name == "numba":
            _errors[name] = f"the numba backend is unavailable: numba cannot be imported ({exc})"
        else:
            _errors[name] = (
                f"the C++ backend is unavailable: the compiled module linsgd._core "
                f"cannot be imported ({exc}); reinstall linsgd with `pip install .`"
            )
        return None
    _cache[name] = mod
    return mod


# os.environ.get of a missing key costs a microsecond (a KeyError inside); on every kernel call
# that is worth avoiding: look in os.environ's own store (the one os.environ[...] = and
# monkeypatch.setenv update), falling back to the public API where that store is not there.
_ENV = os.environ
try:
    _ENV_STORE = _ENV._data  # type: ignore[attr-defined]
    _ENV_KEY = _ENV.encodekey(BACKEND_ENV)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - other Pythons
    _ENV_STORE = None


def _env_backend() -> str | None:
    if _ENV_STORE is not None and os.environ is _ENV:
        raw = _ENV_STORE.get(_ENV_KEY)
        return None if raw is None else _ENV.decodevalue(raw)  # type: ignore[attr-defined]
    return os.environ.get(BACKEND_ENV)


def available_backends() -> list[str]:
    """List the backends this install can run, in order of preference.

    Returns
    -------
    list of str
        A subset of ``["cpp", "cuda", "numba"]``.
    """
    return [name for name in _KNOWN if _load(name) is not None]


def default_backend() -> str:
    """Name the backend used when none is asked for.

    ``LINSGD_BACKEND`` wins when set; otherwise the compiled C++ backend, then numba.

    Returns
    -------
    str
        The backend's name.
    """
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced:
        _check_name(forced, f"environment variable {BACKEND_ENV}")
        return forced
    for name in ("cpp", "numba"):
        if _load(name) is not None:
            return name
    raise ImportError(
        "linsgd has no usable backend: " + "; ".join(_errors.get(n, n) for n in ("cpp", "numba"))
    )


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or name not in _KNOWN:
        raise ValueError(f"{what} must be one of {list(_KNOWN)} or None, got {name!r}")


def get_backend(name: str | None = None) -> ModuleType:
    """Return the module implementing backend ``name`` (the default one when ``None``).

    Parameters
    ----------
    name : {"cpp", "cuda", "numba"} or None
        The backend to use.

    Returns
    -------
    module
        A module with ``loss``, ``gradient`` and ``train``.

    Raises
    ------
    ValueError
        If ``name`` is not a known backend, or is known but not usable on this install (the
        message says what is missing).
    """
    if name is None:
        name = default_backend()
    else:
        _check_name(name, "backend")
    mod = _load(name)
    if mod is None:
        raise ValueError(_errors[name])
    return mod


def resolve_backend(name: str | None = None) -> tuple[str, ModuleType]:
    """Like :func:`get_backend`, but also return the backend's name; cheap on every call.

    Parameters
    ----------
    name : {"cpp", "cuda", "numba"} or None
        The backend to use; the default one (``LINSGD_BACKEND`` first) when None.

    Returns
    -------
    (str, module)
        The backend's name and its module.

    Raises
    ------
    ValueError
        As :func:`get_backend`.
    """
    if name is None:
        forced = _env_backend()
        if not forced:
            mod = _cache.get("cpp")
            if mod is not None:
                return "cpp", mod
        name = default_backend()
    else:
        mod = _cache.get(name) if type(name) is str else None
        if mod is not None:
            return name, mod
    return name, get_backend(name)


def backend_name(backend: str | None = None) -> str:
    """Name the backend that a call with ``backend=backend`` runs on, checking that it is usable.

    Parameters
    ----------
    backend : {"cpp", "cuda", "numba"} or None, default=None
        The backend asked for; None: the default one (``LINSGD_BACKEND`` first, then
        ``"cpp"``, then ``"numba"``).

    Returns
    -------
    str
        The backend's name.

    Raises
    ------
    ValueError
        If ``backend`` is not a known backend, or is not usable on this install (the message
        says what is missing).
    """
    return resolve_backend(backend)[0]
