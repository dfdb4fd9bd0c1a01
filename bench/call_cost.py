"""Per-call cost, side by side: the refactored ``linsgd`` against the baseline ``linsgd_base``.

Both packages are imported into one process and every case is timed on both, in interleaved
blocks (old, new, new, old, ...), so that drifts of the machine (frequency, caches, other
load) fall on both alike. Each block times ``inner`` back-to-back calls with
``time.perf_counter_ns`` (garbage collection off) after untimed warm-up calls; the table gives
the median over blocks of the time per call and the ratio new/old.

The cases are the calls of the seed notebooks (``X`` 100 x 4, ``batch_size=33``, ``lr=0.01``)
through ``linsgd.kernels`` and ``linsgd.LinearRegressor``, for the ``cpp`` and ``numba``
backends, and one large call (``kernels.epoch`` on 1M x 64 float64, ``batch_size=1024``) that
shows the cost of the compiled loop itself.

Build ``linsgd_base`` as described in ``bench/same_bits.py``, then::

    PYTHONPATH=/work/base_site python bench/call_cost.py              # linsgd_base vs linsgd
    PYTHONPATH=/work/base_site python bench/call_cost.py --new linsgd_base   # A/A: the noise
    python bench/call_cost.py -k fit -k epoch --backend cpp --no-large     # a subset

``--budget`` sets the seconds spent timing each small case per side (default 0.3; every
small case gets 200 to 2000 calls per side).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

BACKENDS = ("cpp", "numba")
BLOCKS = 40  # timed blocks per side for a small case
MIN_CALLS, MAX_CALLS = 200, 2000  # calls per side for a small case
LARGE_BLOCKS = 7  # timed calls per side for the large case

# A case: name -> make(module, backend, data) -> setup, where setup() (untimed, once per block)
# returns the zero-argument callable that is timed.
Setup = Callable[[], Callable[[], Any]]


def make_data(large: bool) -> dict[str, np.ndarray]:
    """The data of every case (deterministic; shared by both packages).

    Parameters
    ----------
    large : bool
        Also make the 1M x 64 float64 set of the large case (512 MiB).

    Returns
    -------
    dict
        Arrays by name: ``X``, ``y`` (100 x 4, 1-D targets), ``X32``/``y32``, ``Y3``
        (100 x 3 targets), ``Xv``/``yv`` (10000 x 4), and ``XL``/``yL`` when ``large``.
    """
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4))
    w = np.array([1.0, -2.0, 0.5, 3.0])
    y = X @ w + 0.3 + 0.1 * rng.standard_normal(100)
    Xv = rng.standard_normal((10000, 4))
    yv = Xv @ w + 0.3 + 0.1 * rng.standard_normal(10000)
    Y3 = np.stack([y, 2.0 * y, -y], axis=1) + 0.1 * rng.standard_normal((100, 3))
    d = {
        "X": X,
        "y": y,
        "X32": X.astype(np.float32),
        "y32": y.astype(np.float32),
        "Y3": np.ascontiguousarray(Y3),
        "Xv": Xv,
        "yv": yv,
    }
    if large:
        XL = rng.standard_normal((1_000_000, 64))
        d["XL"] = XL
        d["yL"] = XL @ rng.standard_normal(64) + 0.1 * rng.standard_normal(1_000_000)
    return d


def _params(U: int, N: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((U, N), dtype), np.zeros(U, dtype)


def c_epoch(m: ModuleType, be: str, d: dict, x: str = "X", y: str = "y") -> Setup:
    """``kernels.epoch(X, y, W, b, batch_size=33, lr=0.01)``."""
    X, Y = d[x], d[y]
    U = 1 if Y.ndim == 1 else Y.shape[1]

    def setup() -> Callable[[], Any]:
        W, b = _params(U, X.shape[1], X.dtype)
        return lambda: m.kernels.epoch(X, Y, W, b, batch_size=33, lr=0.01, backend=be)

    return setup


def c_step(m: ModuleType, be: str, d: dict) -> Setup:
    """``kernels.step(X[:33], y[:33], W, b, lr=0.01, momentum=0.9, state=st)``."""
    X, Y = d["X"][:33], d["y"][:33]  # sliced once, outside the timed call

    def setup() -> Callable[[], Any]:
        W, b = _params(1, 4, X.dtype)
        st: dict = {}
        return lambda: m.kernels.step(X, Y, W, b, lr=0.01, momentum=0.9, state=st, backend=be)

    return setup


def c_train(m: ModuleType, be: str, d: dict) -> Setup:
    """``kernels.train(X, y, W, b, batch_size=33, lr=0.01, epochs=16, eval_set=(Xv, yv))``."""
    X, Y, ev = d["X"], d["y"], (d["Xv"], d["yv"])

    def setup() -> Callable[[], Any]:
        W, b = _params(1, 4, X.dtype)
        return lambda: m.kernels.train(
            X, Y, W, b, batch_size=33, lr=0.01, epochs=16, eval_set=ev, backend=be
        )

    return setup


def c_fit(m: ModuleType, be: str, d: dict, eval_set: bool = False, **kw: Any) -> Setup:
    """``LinearRegressor(lr=0.01, batch_size=33, epochs=16, **kw).fit(X, y[, eval_set])``."""
    X, Y = d["X"], d["y"]
    fit_kw = {"eval_set": (d["Xv"], d["yv"])} if eval_set else {}

    def setup() -> Callable[[], Any]:
        return lambda: m.LinearRegressor(lr=0.01, batch_size=33, epochs=16, backend=be, **kw).fit(
            X, Y, **fit_kw
        )

    return setup


def c_partial_fit(m: ModuleType, be: str, d: dict) -> Setup:
    """``est.partial_fit(X, y)`` on a fitted ``LinearRegressor(lr=0.01, batch_size=33)``.

    A fresh estimator per block keeps its history short (it grows by one epoch per call).
    """
    X, Y = d["X"], d["y"]

    def setup() -> Callable[[], Any]:
        est = m.LinearRegressor(lr=0.01, batch_size=33, epochs=16, backend=be).fit(X, Y)
        return lambda: est.partial_fit(X, Y)

    return setup


def c_epoch_large(m: ModuleType, be: str, d: dict) -> Setup:
    """``kernels.epoch(X, y, W, b, batch_size=1024, lr=1e-4)`` on 1M x 64 float64."""
    X, Y = d["XL"], d["yL"]

    def setup() -> Callable[[], Any]:
        W, b = _params(1, 64, X.dtype)
        return lambda: m.kernels.epoch(X, Y, W, b, batch_size=1024, lr=1e-4, backend=be)

    return setup


SMALL_CASES: list[tuple[str, Callable[..., Setup]]] = [
    ("epoch f64 100x4", c_epoch),
    ("epoch f32 100x4", lambda m, be, d: c_epoch(m, be, d, "X32", "y32")),
    ("epoch f64 100x4 Y(100,3)", lambda m, be, d: c_epoch(m, be, d, "X", "Y3")),
    ("step 33x4 momentum state", c_step),
    ("train 16 ep eval 10000", c_train),
    ("fit 16 ep", c_fit),
    ("fit 16 ep eval 10000", lambda m, be, d: c_fit(m, be, d, eval_set=True)),
    ("fit 16 ep momentum=0.9", lambda m, be, d: c_fit(m, be, d, momentum=0.9)),
    ("fit 16 ep shuffle rs=0", lambda m, be, d: c_fit(m, be, d, shuffle=True, random_state=0)),
    ("partial_fit 1 ep", c_partial_fit),
]
LARGE_CASE = ("epoch f64 1Mx64 bs=1024", c_epoch_large)


def _time_block(fn: Callable[[], Any], inner: int) -> float:
    """Nanoseconds per call of ``inner`` back-to-back calls."""
    t0 = time.perf_counter_ns()
    for _ in range(inner):
        fn()
    return (time.perf_counter_ns() - t0) / inner


def time_pair(
    old: Setup, new: Setup, *, budget: float, blocks: int, fixed_calls: int | None = None
) -> tuple[float, float, int]:
    """Time two setups in interleaved blocks; return their medians (ns per call) and calls.

    Parameters
    ----------
    old, new : callable
        ``setup() -> fn``; ``setup`` runs once per block, untimed, and ``fn()`` is timed.
    budget : float
        Seconds per side to aim for (it sets the number of calls, within 200..2000).
    blocks : int
        Timed blocks per side.
    fixed_calls : int, optional
        Calls per block (no calibration; for the large case: 1).

    Returns
    -------
    (float, float, int)
        Median ns per call of old and new, and the calls timed per side.
    """
    # warm-up (numba compilation, caches, the estimator's checked-parameter cache) and
    # calibration: the slower side sets the number of calls
    per_call = []
    for side, setup in (("old", old), ("new", new)):
        try:
            fn = setup()
            fn()
        except Exception as exc:
            raise RuntimeError(f"{side} raised {type(exc).__name__}: {exc}") from exc
        n = 1 if fixed_calls else 5
        t = _time_block(fn, n)
        if not fixed_calls:
            t = _time_block(fn, max(5, min(200, int(0.02e9 / max(t, 1.0)))))
        per_call.append(t)
    if fixed_calls:
        inner = fixed_calls
    else:
        calls = int(budget * 1e9 / max(per_call))
        calls = max(MIN_CALLS, min(MAX_CALLS, calls))
        inner = max(1, calls // blocks)
    res: dict[str, list[float]] = {"old": [], "new": []}
    sides = (("old", old), ("new", new))
    gc_was_enabled = gc.isenabled()
    gc.collect()  # once: a full collection costs tens of ms with numba and sklearn loaded
    gc.disable()
    try:
        for i in range(blocks):
            for key, setup in sides if i % 2 == 0 else sides[::-1]:
                fn = setup()
                res[key].append(_time_block(fn, inner))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(res["old"]), statistics.median(res["new"]), inner * blocks


def _import(name: str) -> ModuleType:
    module = importlib.import_module(name)
    print(f"# {name} {getattr(module, '__version__', '?')} from {module.__file__}")
    return module


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        0, or 1 when a case raised on either side.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--old", default="linsgd_base", help="baseline package (linsgd_base)")
    ap.add_argument("--new", default="linsgd", help="new package (linsgd)")
    ap.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable")
    ap.add_argument("-k", action="append", metavar="SUBSTRING", help="only matching cases")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per small case and side")
    ap.add_argument("--no-large", action="store_true", help="skip the 1M x 64 case")
    args = ap.parse_args(argv)

    old_mod, new_mod = _import(args.old), _import(args.new)
    backends = args.backend or list(BACKENDS)
    cases = SMALL_CASES + ([] if args.no_large else [LARGE_CASE])
    if args.k:
        cases = [c for c in cases if any(s in c[0] for s in args.k)]
    data = make_data(large=any(c is LARGE_CASE for c in cases))
    print(f"# numpy {np.__version__}, python {sys.version.split()[0]}, interleaved blocks")
    header = (
        f"{'case':<28} {'backend':<7} {'old µs':>10} {'new µs':>10} {'new/old':>8} {'calls':>6}"
    )
    print(header)
    print("-" * len(header))
    status = 0
    for name, make in cases:
        for be in backends:
            large = (name, make) == LARGE_CASE
            try:
                t_old, t_new, calls = time_pair(
                    make(old_mod, be, data),
                    make(new_mod, be, data),
                    budget=args.budget,
                    blocks=LARGE_BLOCKS if large else BLOCKS,
                    fixed_calls=1 if large else None,
                )
            except Exception as exc:
                status = 1
                print(f"{name:<28} {be:<7} ERROR {str(exc)[:90]}")
                continue
            print(
                f"{name:<28} {be:<7} {t_old / 1e3:>10.2f} {t_new / 1e3:>10.2f} "
                f"{t_new / t_old:>8.3f} {calls:>6}",
                flush=True,
            )
    return status


if __name__ == "__main__":
    sys.exit(main())
