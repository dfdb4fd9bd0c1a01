"""Shared helpers for the benchmark scripts: timing, machine description, read bandwidth.

Import ``_env`` before this module (it pins the thread pools before numpy is loaded).
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import _env

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- timing


def measure(
    fn: Callable[[], Any],
    *,
    repeats: int = 7,
    min_batch_s: float = 0.005,
    max_total_s: float = 5.0,
    min_repeats: int = 3,
) -> dict[str, float | int]:
    """Time ``fn()``: one warm-up call, then ``repeats`` batches of ``inner`` calls each.

    ``inner`` is chosen so that a batch lasts at least ``min_batch_s`` (fast calls are timed in
    loops, so the timer's resolution and overhead do not count); the number of batches is cut
    down to keep the whole measurement near ``max_total_s`` (but never below ``min_repeats``).

    Returns
    -------
    dict
        ``median_s`` and ``min_s`` (seconds per call, over the batches), ``repeats`` (batches),
        ``inner`` (calls per batch), ``warmup_s`` (the first call, JIT compilation included).
    """
    clock = time.perf_counter
    t0 = clock()
    fn()
    warm = clock() - t0
    # a second single call: the first may include compilation or page faults
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-9)
    inner = max(1, math.ceil(min_batch_s / one))
    n = max(min_repeats, min(repeats, int(max_total_s / (one * inner))))
    samples = []
    for _ in range(n):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) / inner)
    return {
        "median_s": float(np.median(samples)),
        "min_s": float(np.min(samples)),
        "repeats": n,
        "inner": inner,
        "warmup_s": warm,
    }


def measure_interleaved(
    entries: dict[str, Callable[[], Any]],
    *,
    repeats: int = 7,
    min_batch_s: float = 0.005,
    max_total_s: float = 5.0,
    min_repeats: int = 3,
    on_error: Callable[[str, BaseException], None] | None = None,
) -> dict[str, dict[str, float | int]]:
    """Time several functions in interleaved rounds (for a machine whose load varies).

    Each function gets one warm-up call and a calibration call that sets its ``inner`` count
    (a batch lasts at least ``min_batch_s``); then every round times one batch of each function
    in turn, so a load change hits all of them alike and their ratios stay meaningful. The
    number of rounds is cut down so that the slowest function takes about ``max_total_s``
    (never fewer than ``min_repeats``). A function that raises is dropped and reported to
    ``on_error(name, exception)``.

    Returns
    -------
    dict
        Per name, as :func:`measure`: ``median_s``, ``min_s``, ``repeats``, ``inner``,
        ``warmup_s``.
    """
    clock = time.perf_counter
    live: dict[str, dict[str, Any]] = {}
    for name, fn in entries.items():
        try:
            t0 = clock()
            fn()
            warm = clock() - t0
            t0 = clock()
            fn()
            one = max(clock() - t0, 1e-9)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(name, exc)
            continue
        inner = max(1, math.ceil(min_batch_s / one))
        live[name] = {"fn": fn, "inner": inner, "batch": one * inner, "warm": warm, "samples": []}
    if not live:
        return {}
    slowest = max(v["batch"] for v in live.values())
    rounds = max(min_repeats, min(repeats, int(max_total_s / slowest)))
    for _ in range(rounds):
        for name in list(live):
            v = live[name]
            fn, inner = v["fn"], v["inner"]
            try:
                t0 = clock()
                for _ in range(inner):
                    fn()
                v["samples"].append((clock() - t0) / inner)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(name, exc)
                del live[name]
    return {
        name: {
            "median_s": float(np.median(v["samples"])),
            "min_s": float(np.min(v["samples"])),
            "repeats": len(v["samples"]),
            "inner": v["inner"],
            "warmup_s": v["warm"],
        }
        for name, v in live.items()
    }


# ----------------------------------------------------------------------------- bandwidth


def _numba_reader() -> Callable[[np.ndarray], float] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(fastmath=True, nogil=True, cache=False)
    def read_sum(a):  # pragma: no cover - compiled
        s0 = 0.0
        for i in range(a.size):
            s0 += a[i]
        return s0

    return read_sum


def read_bandwidth(nbytes: int, repeats: int = 5) -> dict[str, Any]:
    """Single-core read bandwidth, from summing a float64 array far larger than the caches.

    Two methods: numpy's ``a.sum()`` (pairwise SIMD sum) and a compiled loop (numba, fastmath:
    LLVM vectorises and unrolls it into several independent accumulators). The faster of the two
    is used for the floor: it is the best read rate this process reached on this machine.
    """
    a = np.ones(nbytes // 8, dtype=np.float64)  # touches every page
    methods: dict[str, dict[str, float]] = {}

    def rate(fn: Callable[[], Any]) -> dict[str, float]:
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        med, best = float(np.median(ts)), float(np.min(ts))
        return {
            "median_s": med,
            "GBps_median": a.nbytes / med / 1e9,
            "GBps_best": a.nbytes / best / 1e9,
        }

    methods["numpy a.sum()"] = rate(a.sum)
    reader = _numba_reader()
    if reader is not None:
        methods["numba fastmath loop"] = rate(lambda: reader(a))
    best_name = max(methods, key=lambda k: methods[k]["GBps_median"])
    return {
        "array_bytes": int(nbytes),
        "methods": methods,
        "method": best_name,
        "GBps": methods[best_name]["GBps_median"],
        "note": "median over repeats of one full read of a float64 array of array_bytes; "
        "the faster method's median is the bandwidth used for the floor",
    }


# ----------------------------------------------------------------------------- machine info


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": run("rev-parse", "--short", "HEAD") or None,
        "dirty": bool(run("status", "--porcelain", "--untracked-files=no")),
    }


def _version(mod: str) -> str | None:
    m = sys.modules.get(mod)
    return getattr(m, "__version__", None) if m is not None else None


def threadpools() -> list[dict[str, Any]]:
    """threadpoolctl's view of the native thread pools loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed (pip install threadpoolctl)"}]
    keep = (
        "user_api",
        "internal_api",
        "version",
        "num_threads",
        "threading_layer",
        "architecture",
        "filepath",
    )
    return [{k: d.get(k) for k in keep if k in d} for d in threadpool_info()]


def machine_info() -> dict[str, Any]:
    """Hardware, software and environment facts that the timings depend on."""
    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    info: dict[str, Any] = {
        "cpu_model": cpu.get("Model name") or platform.processor() or None,
        "cpus": os.cpu_count(),
        "cores_per_socket": cpu.get("Core(s) per socket"),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "sockets": cpu.get("Socket(s)"),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "caches": {k: cpu[k] for k in cpu if re.match(r"L\d\w? cache", k)},
        "avx2": "avx2" in flags,
        "avx512": sorted(f for f in flags if f.startswith("avx512")),
        "fma": "fma" in flags,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": _env.reported_env(),
        "imported_before_thread_pinning": _env.late_imports(),
        "git": _git(),
    }
    return info


def versions() -> dict[str, str | None]:
    """Versions of the libraries that were imported."""
    return {m: _version(m) for m in ("linsgd", "numpy", "torch", "sklearn", "numba", "matplotlib")}


def linsgd_info() -> dict[str, Any]:
    """Backends and the C++ instruction-set variant of the installed linsgd."""
    import linsgd

    out: dict[str, Any] = {"version": linsgd.__version__, "backends": linsgd.available_backends()}
    try:
        from linsgd import _core

        out["cpu_variant"] = _core.cpu_variant()
        out["supported_cpu_variants"] = list(_core.supported_cpu_variants())
    except (ImportError, AttributeError) as exc:
        out["cpu_variant"] = f"unavailable ({exc})"
    try:
        out["module"] = str(Path(linsgd.__file__).parent)
    except TypeError:
        pass
    return out


# ----------------------------------------------------------------------------- data


def make_problem(
    M: int, N: int, U: int, dtype: Any, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A well-conditioned noisy linear problem: X ~ N(0, 1), Y = X W* + b* + noise.

    Returns ``X (M, N)``, ``Y (M, U)``, an initial ``W (U, N)`` and ``b (U,)``, all C-contiguous
    in ``dtype``. The noise keeps the residuals away from zero (no denormals, however long the
    training runs).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N), dtype=np.float32 if dtype == np.float32 else np.float64)
    Wt = rng.standard_normal((U, N)) / math.sqrt(N)
    Y = X @ Wt.T.astype(X.dtype) + 0.5 + 0.1 * rng.standard_normal((M, U)).astype(X.dtype)
    W0 = 0.01 * rng.standard_normal((U, N))
    return (
        np.ascontiguousarray(X, dtype=dtype),
        np.ascontiguousarray(Y, dtype=dtype),
        np.ascontiguousarray(W0, dtype=dtype),
        np.zeros(U, dtype=dtype),
    )


def stable_lr(N: int, B: int) -> float:
    """A learning rate that is stable for the ``make_problem`` data at any (N, B) in the grid."""
    # the batch Hessian's largest eigenvalue is about 2 (1 + sqrt(N / B))^2
    return min(0.01, 0.2 / (1.0 + math.sqrt(N / B)) ** 2)


def fmt_time(s: float | None) -> str:
    """Seconds in a compact human unit."""
    if s is None or not math.isfinite(s):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"
