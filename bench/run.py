"""linsgd benchmark: correctness first, then epoch times against torch, numpy, scikit-learn and
the memory-bandwidth floor, all in one process on one core.

    python bench/run.py [--quick] [--json F] [--out DIR]

Steps:

1. correctness (bench/check.py): linsgd's epoch against a naive numpy loop and torch on a small
   problem, within a few eps; exits with status 1 on a mismatch, before any timing;
2. the machine's single-core read bandwidth (the floor is bytes of X and Y / bandwidth);
3. per grid point (M, N, U, B) and dtype: one epoch of ``kernels.epoch`` per backend
   (``check_finite=False``) and once as a default call, ``LinearRegressor.fit`` (16 epochs,
   with a 10 000-row eval_set at the seed-size point), the torch loop (and at the seed-size
   point the 16-epoch torch loop with the same validation), a vectorised numpy loop and
   scikit-learn's ``SGDRegressor.partial_fit`` (U = 1);
4. microbenchmarks of the kernel pieces (bench/micro.py);
5. writes ``results.md``, ``results.json`` (or ``--json F``) and ``results.png`` into ``--out``.

Speed targets are printed as PASS/MISS, for information only: the exit status never depends on
speed (1: correctness failed; 2: a linsgd benchmark raised).
"""

from __future__ import annotations

import _env  # noqa: F401  (must come first: pins the thread pools before numpy is imported)

# isort: split

import argparse
import datetime as _dt
import json
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

import _roofline
from _common import (
    fmt_time,
    linsgd_info,
    machine_info,
    make_problem,
    measure_interleaved,
    read_bandwidth,
    stable_lr,
    threadpools,
    versions,
)

SEED_POINT = (100, 4, 1, 33)
FULL_GRID = (
    SEED_POINT,
    (100_000, 16, 1, 256),
    (1_000_000, 64, 1, 1024),
    (200_000, 256, 4, 512),
    (20_000, 1024, 1, 64),
)
# --quick (CI smoke test): the two small points of the full grid, and the three large shapes
# with fewer rows (so their targets do not apply: the data partly fits in the caches).
QUICK_GRID = (
    SEED_POINT,
    (100_000, 16, 1, 256),
    (50_000, 64, 1, 1024),
    (10_000, 256, 4, 512),
    (4_000, 1024, 1, 64),
)
FIT_EPOCHS = 16
VALID_ROWS = 10_000
DTYPES = {"float64": np.float64, "float32": np.float32}

# the targets (informative: PASS/MISS, never an error)
SPEEDUP_TARGETS = {  # (point, implementation) -> minimum speed-up over torch
    (SEED_POINT, "cpp"): 150.0,
    (SEED_POINT, "fit"): 100.0,
    ((100_000, 16, 1, 256), "cpp"): 60.0,
}
FLOOR_TARGETS = {  # point -> maximum (cpp epoch time / bandwidth floor)
    (1_000_000, 64, 1, 1024): 1.25,
    (200_000, 256, 4, 512): 1.5,
    (20_000, 1024, 1, 64): 1.5,
}
NUMBA_VS_CPP = 2.0  # numba's epoch within this factor of cpp's, at every point

LINSGD_IMPLS = ("cpp", "numba", "cuda", "epoch default call", "fit")

IMPL_LABELS = {
    "cpp": "linsgd cpp epoch",
    "numba": "linsgd numba epoch",
    "cuda": "linsgd cuda epoch",
    "epoch default call": "linsgd epoch, default call (check_finite=True)",
    "fit": f"LinearRegressor.fit ({FIT_EPOCHS} epochs) / {FIT_EPOCHS}",
    "torch": "torch loop",
    "torch fit": f"torch loop, {FIT_EPOCHS} epochs + validation / {FIT_EPOCHS}",
    "numpy": "numpy vectorised loop",
    "sklearn": "sklearn SGDRegressor.partial_fit (per sample)",
    "floor": "bandwidth floor",
}


_T0 = time.perf_counter()


def log(msg: str = "") -> None:
    if msg.startswith("=="):
        msg = f"{msg}  [{time.perf_counter() - _T0:.1f} s]"
    print(msg, flush=True)


# ----------------------------------------------------------------------------- implementations


def _torch_setup() -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started
        pass
    return torch


def torch_runners(torch: Any, X, Y, W0, b0, B: int, lr: float, valid=None):
    """The torch epoch loop, and (with ``valid``) a 16-epoch fit with per-epoch validation."""
    dt = torch.float64 if X.dtype == np.float64 else torch.float32
    M, N = X.shape
    U = Y.shape[1]
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    mse = torch.nn.MSELoss()
    layer = torch.nn.Linear(N, U, dtype=dt)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD(layer.parameters(), lr=lr)

    def epoch() -> None:
        for s in range(0, M, B):
            loss = mse(layer(Xt[s : s + B]), Yt[s : s + B])
            opt.zero_grad()
            loss.backward()
            opt.step()

    if valid is None:
        return epoch, None
    Xvt, Yvt = torch.from_numpy(valid[0]), torch.from_numpy(valid[1])

    def fit16() -> dict[str, list[float]]:
        # what LinearRegressor.fit does: a fresh model, per-step losses, per-epoch validation
        model = torch.nn.Linear(N, U, dtype=dt)
        optim = torch.optim.SGD(model.parameters(), lr=lr)
        hist: dict[str, list[float]] = {"train_loss": [], "valid_loss": []}
        for _ in range(FIT_EPOCHS):
            total, steps = 0.0, 0
            for s in range(0, M, B):
                loss = mse(model(Xt[s : s + B]), Yt[s : s + B])
                total += loss.item()
                steps += 1
                optim.zero_grad()
                loss.backward()
                optim.step()
            hist["train_loss"].append(total / steps)
            with torch.no_grad():
                hist["valid_loss"].append(mse(model(Xvt), Yvt).item())
        return hist

    return epoch, fit16


def numpy_runner(X, Y, W0, b0, B: int, lr: float):
    """A vectorised numpy mini-batch loop (same math as torch, BLAS matrix products)."""
    T = X.dtype.type
    W, b = W0.copy(), b0.copy()
    M, U = Y.shape
    rate = T(lr)

    def epoch() -> None:
        for s in range(0, M, B):
            xb, yb = X[s : s + B], Y[s : s + B]
            e = xb @ W.T
            e += b
            e -= yb
            e *= T(2.0 / (xb.shape[0] * U))
            W[...] -= rate * (e.T @ xb)
            b[...] -= rate * e.sum(axis=0)

    return epoch


def sklearn_runner(X, y, lr: float):
    """One epoch of per-sample SGD: ``SGDRegressor.partial_fit`` (constant rate, no penalty)."""
    from sklearn.linear_model import SGDRegressor

    reg = SGDRegressor(
        loss="squared_error",
        penalty=None,
        learning_rate="constant",
        eta0=lr,
        shuffle=False,
        average=False,
        tol=None,
    )

    def epoch() -> None:
        reg.partial_fit(X, y)

    return epoch


# ----------------------------------------------------------------------------- one grid point


def bench_point(
    point: tuple[int, int, int, int],
    dtype_name: str,
    *,
    backends: list[str],
    torch: Any,
    use_sklearn: bool,
    run_slow: bool,
    cpu_variants: list[str],
    bandwidth: float,
    timing: dict[str, Any],
    errors: list[dict[str, Any]],
    roof: dict[str, Any] | None = None,
    cache_repeats: int = 5,
) -> dict[str, Any]:
    """Time every implementation at one (M, N, U, B) and dtype (interleaved rounds)."""
    from linsgd import LinearRegressor, kernels

    M, N, U, B = point
    dtype = DTYPES[dtype_name]
    X, Y, W0, b0 = make_problem(M, N, U, dtype, seed=0)
    y = Y.reshape(-1) if U == 1 else Y
    lr = stable_lr(N, B)
    steps = -(-M // B)
    item = np.dtype(dtype).itemsize
    nbytes = M * (N + U) * item
    floor_s = nbytes / (bandwidth * 1e9)
    is_seed = point == SEED_POINT
    valid = eval_set = None
    if is_seed:
        Xv, Yv, _, _ = make_problem(VALID_ROWS, N, U, dtype, seed=2)
        valid = (Xv, Yv)
        eval_set = (Xv, Yv.reshape(-1) if U == 1 else Yv)
    rec: dict[str, Any] = {
        "M": M,
        "N": N,
        "U": U,
        "B": B,
        "dtype": dtype_name,
        "steps": steps,
        "lr": lr,
        "bytes": nbytes,
        "floor_s": floor_s,
        "impls": {},
        "skipped": [],
    }
    tag = f"M={M} N={N} U={U} B={B} {dtype_name}"
    # name -> (function timed, epochs per call, a failure is fatal, extra fields for the record)
    entries: dict[str, tuple[Any, int, bool, dict[str, Any]]] = {}

    def epoch_fn(backend: str | None, check_finite: bool, variant: str | None = None) -> Any:
        W, b = W0.copy(), b0.copy()
        kw = {} if backend is None else {"backend": backend}
        if not check_finite:
            kw["check_finite"] = False
        if variant is None:
            return lambda: kernels.epoch(X, Y, W, b, batch_size=B, lr=lr, **kw)
        from linsgd import _core

        def fn() -> None:
            current = _core.cpu_variant()
            _core.set_cpu_variant(variant)
            try:
                kernels.epoch(X, Y, W, b, batch_size=B, lr=lr, **kw)
            finally:
                _core.set_cpu_variant(current)

        return fn

    # linsgd's epoch, each backend, without the finiteness pass over the data
    for be in backends:
        entries[be] = (epoch_fn(be, False), 1, be != "cuda", {"backend": be})
    if "cpp" in backends and cpu_variants:
        from linsgd import _core

        for variant in cpu_variants:
            if variant != _core.cpu_variant():
                entries[f"cpp[{variant}]"] = (
                    epoch_fn("cpp", False, variant),
                    1,
                    True,
                    {"backend": "cpp", "cpu_variant": variant},
                )
    # the call as a user writes it: default backend, check_finite=True
    entries["epoch default call"] = (epoch_fn(None, True), 1, True, {})

    # the estimator: 16 epochs, validation at the seed-size point
    def fit() -> None:
        LinearRegressor(lr=lr, batch_size=B, epochs=FIT_EPOCHS, shuffle=False).fit(
            X, y, eval_set=eval_set
        )

    entries["fit"] = (fit, FIT_EPOCHS, True, {"eval_rows": VALID_ROWS if is_seed else 0})

    if run_slow:
        if torch is not None:
            t_epoch, t_fit = torch_runners(torch, X, Y, W0, b0, B, lr, valid)
            entries["torch"] = (t_epoch, 1, False, {})
            if t_fit is not None:
                entries["torch fit"] = (t_fit, FIT_EPOCHS, False, {"eval_rows": VALID_ROWS})
        else:
            rec["skipped"].append("torch (not installed, or --no-torch)")
        entries["numpy"] = (numpy_runner(X, Y, W0, b0, B, lr), 1, False, {})
        if use_sklearn and U == 1:
            entries["sklearn"] = (sklearn_runner(X, y, lr), 1, False, {})
        elif use_sklearn:
            rec["skipped"].append("sklearn (U > 1: SGDRegressor is single-output)")
    else:
        rec["skipped"].append("torch, numpy, sklearn (--quick at this size)")

    def on_error(name: str, exc: BaseException) -> None:
        errors.append(
            {
                "point": tag,
                "impl": name,
                "fatal": entries[name][2],
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        log(f"  {name:28s} ERROR {type(exc).__name__}: {exc}")

    timed = measure_interleaved({k: v[0] for k, v in entries.items()}, on_error=on_error, **timing)
    for name, (_, epochs, _, extra) in entries.items():
        if name not in timed:
            continue
        t = timed[name]
        total = t["median_s"]
        r = {
            "epoch_s": total / epochs,
            "step_s": total / (epochs * steps),
            "total_s": total,
            "epochs_per_call": epochs,
            "min_total_s": t["min_s"],
            "repeats": t["repeats"],
            "inner": t["inner"],
            "first_call_s": t["warmup_s"],
            **extra,
        }
        rec["impls"][name] = r
        log(
            f"  {name:28s} {fmt_time(r['epoch_s']):>10s}/epoch {fmt_time(r['step_s']):>10s}/step"
            f"  ({t['repeats']} rounds x {t['inner']})"
        )
    _ratios(rec)
    if roof is not None and "cpp" in backends:
        rec["in_cache"] = _roofline.in_cache(point, dtype, roof, cache_repeats)
        ic = rec["in_cache"]
        log(
            f"  {'cpp in cache':28s} {fmt_time(ic['epoch_s']):>10s}/epoch of {ic['rows']} rows"
            + (f", {ic['ratio']:.2f}x compute floor" if ic["ratio"] else "")
        )
    return rec


def _ratios(rec: dict[str, Any]) -> None:
    """Speed-up over torch and ratio to the floor for every implementation of one point."""
    impls = rec["impls"]
    torch_epoch = impls.get("torch", {}).get("epoch_s")
    torch_fit = impls.get("torch fit", {}).get("total_s")
    for name, r in impls.items():
        r["floor_ratio"] = r["epoch_s"] / rec["floor_s"]
        r["vs_torch"] = None
        if name == "fit":
            if torch_fit is not None:
                r["vs_torch"] = torch_fit / r["total_s"]
                r["vs_torch_reference"] = f"torch loop, {FIT_EPOCHS} epochs + validation"
            elif torch_epoch is not None:
                r["vs_torch"] = FIT_EPOCHS * torch_epoch / r["total_s"]
                r["vs_torch_reference"] = f"{FIT_EPOCHS} x torch epoch"
        elif name not in ("torch", "torch fit") and torch_epoch is not None:
            r["vs_torch"] = torch_epoch / r["epoch_s"]
            r["vs_torch_reference"] = "torch epoch"
        elif name == "torch fit" and torch_epoch is not None:
            r["vs_torch"] = FIT_EPOCHS * torch_epoch / r["total_s"]
            r["vs_torch_reference"] = f"{FIT_EPOCHS} x torch epoch"


def _target(
    rec: dict[str, Any], impl: str, what: str, value: float | None, op: str, threshold: float
) -> dict[str, Any]:
    if value is None:
        status = "n/a"
    else:
        ok = value >= threshold if op == ">=" else value <= threshold
        status = "PASS" if ok else "MISS"
    t = {
        "M": rec["M"],
        "N": rec["N"],
        "U": rec["U"],
        "B": rec["B"],
        "dtype": rec["dtype"],
        "impl": impl,
        "target": what,
        "value": value,
        "op": op,
        "threshold": threshold,
        "status": status,
    }
    rec["impls"].get(impl, {}).setdefault("targets", []).append(t)
    return t


def evaluate_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS/MISS for every target that applies to a measured point (informative only)."""
    out = []
    for rec in results:
        point = (rec["M"], rec["N"], rec["U"], rec["B"])
        impls = rec["impls"]
        for (p, impl), thr in SPEEDUP_TARGETS.items():
            if p == point:
                ref = "16-epoch torch loop" if impl == "fit" else "torch epoch"
                out.append(
                    _target(
                        rec,
                        impl,
                        f">= {thr:g}x faster than {ref}",
                        impls.get(impl, {}).get("vs_torch"),
                        ">=",
                        thr,
                    )
                )
        if point in FLOOR_TARGETS:
            thr = FLOOR_TARGETS[point]
            out.append(
                _target(
                    rec,
                    "cpp",
                    f"<= {thr:g}x bandwidth floor",
                    impls.get("cpp", {}).get("floor_ratio"),
                    "<=",
                    thr,
                )
            )
        if "numba" in impls and "cpp" in impls:
            out.append(
                _target(
                    rec,
                    "numba",
                    f"<= {NUMBA_VS_CPP:g}x cpp",
                    impls["numba"]["epoch_s"] / impls["cpp"]["epoch_s"],
                    "<=",
                    NUMBA_VS_CPP,
                )
            )
    return out


# ----------------------------------------------------------------------------- reports


def _x(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3g}x" if v < 1000 else f"{v:,.0f}x"


def results_table(results: list[dict[str, Any]]) -> str:
    """The main table, markdown."""
    lines = [
        "| M | N | U | B | dtype | implementation | time / epoch | time / step "
        "| speed-up vs torch | x floor | target |",
        "|--:|--:|--:|--:|---|---|--:|--:|--:|--:|---|",
    ]
    for rec in results:
        head = f"| {rec['M']:,} | {rec['N']} | {rec['U']} | {rec['B']} | {rec['dtype']} "
        for name, r in rec["impls"].items():
            label = IMPL_LABELS.get(name) or IMPL_LABELS["cpp"] + " " + name[3:]
            tg = "; ".join(
                f"{t['target']}: **{t['status']}**"
                + (
                    f" ({_x(t['value'])})"
                    if t["value"] is not None and "cpp" in t["target"]
                    else ""
                )
                for t in r.get("targets", [])
            )
            lines.append(
                f"{head}| {label} | {fmt_time(r['epoch_s'])} | {fmt_time(r['step_s'])} "
                f"| {_x(r['vs_torch'])} | {_x(r['floor_ratio'])} | {tg} |"
            )
        lines.append(
            f"{head}| {IMPL_LABELS['floor']} | {fmt_time(rec['floor_s'])} "
            f"| {fmt_time(rec['floor_s'] / rec['steps'])} | | 1x | |"
        )
        for s in rec["skipped"]:
            lines.append(f"{head}| *skipped: {s}* | | | | | |")
    return "\n".join(lines)


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = [
        "| point (M, N, U, B) | dtype | implementation | target | measured | status |",
        "|---|---|---|---|--:|---|",
    ]
    for t in targets:
        lines.append(
            f"| ({t['M']:,}, {t['N']}, {t['U']}, {t['B']}) | {t['dtype']} | {t['impl']} "
            f"| {t['target']} | {_x(t['value'])} | {t['status']} |"
        )
    return "\n".join(lines)


def write_markdown(
    path: Path, report: dict[str, Any], note: str | None, image: str | None = None
) -> None:
    import micro

    meta, bw, corr = report["meta"], report["bandwidth"], report["correctness"]
    m = meta["machine"]
    L: list[str] = ["# linsgd benchmark results", ""]
    if note:
        L += [note, ""]
    L += [
        f"- command: `{report['command']}`",
        f"- date: {report['date']} (total run time {report['elapsed_s']:.0f} s)",
        f"- machine: {m['cpu_model']}, {m['cpus']} logical CPUs "
        f"({m['cores_per_socket']} cores/socket x {m['sockets']} socket(s), "
        f"{m['threads_per_core']} thread(s)/core), hypervisor: {m['hypervisor'] or 'none'}; "
        f"avx2: {'yes' if m['avx2'] else 'no'}, avx512: {', '.join(m['avx512']) or 'no'}; "
        f"caches: {', '.join(f'{k} {v}' for k, v in m['caches'].items())}",
        f"- load average (1, 5, 15 min) at start: {_load(m['load_average'])}, "
        f"at end: {_load(report['load_average_end'])}",
        f"- software: Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f"; git {m['git']['commit']}{' (uncommitted changes)' if m['git']['dirty'] else ''}",
        f"- linsgd backends: {', '.join(meta['linsgd']['backends'])}; C++ instruction-set "
        f"variant: {meta['linsgd'].get('cpu_variant')} "
        f"(supported: {', '.join(meta['linsgd'].get('supported_cpu_variants', []))})",
        "- threads: 1 everywhere ("
        + ", ".join(f"{k}={v}" for k, v in m["env"].items() if k.endswith("THREADS"))
        + f"; torch.set_num_threads(1): {meta.get('torch_threads')})",
        "- BLAS/OpenMP tuning variables: "
        + (
            ", ".join(f"{k}={v}" for k, v in m["env"].items() if not k.endswith("THREADS") and v)
            or "none set"
        ),
        "- thread pools (threadpoolctl): "
        + (
            "; ".join(
                f"{p.get('internal_api', p.get('error'))} {p.get('version') or ''} "
                f"({_lib(p)}, {p.get('num_threads', '?')} thread(s)"
                + (f", {p['architecture']}" if p.get("architecture") else "")
                + ")"
                for p in meta["threadpools"]
            )
            or "none loaded"
        ),
        f"- read bandwidth (single core): **{bw['GBps']:.2f} GB/s** ({bw['method']}, "
        f"{bw['array_bytes'] / 1e9:.2f} GB float64 array, measured before and after the grid, "
        f"the higher used; "
        + "; ".join(
            f"{when}: " + ", ".join(f"{k} {v['GBps_median']:.2f}" for k, v in b["methods"].items())
            for when, b in (("before", bw.get("start", bw)), ("after", bw.get("end", bw)))
        )
        + " GB/s)",
        f"- timings: medians over repeats (time / step = time / epoch / ceil(M/B)); "
        f"repeat settings {report['timing']}",
        "",
        "## Correctness",
        "",
        f"linsgd epoch vs a naive numpy loop{' and torch' if corr['torch_compared'] else ''}"
        f" ({corr['problem']}), tolerance {corr['tolerance_eps']:g}"
        f" eps: **{'PASS' if corr['passed'] else 'FAIL'}**",
        "",
        "```",
        *report["correctness_lines"],
        "```",
        "",
        "## Epoch times",
        "",
        *([f"![time per epoch against data size]({image})", ""] if image else []),
        results_table(report["results"]),
        "",
        "## Roofline",
        "",
        _roofline.describe(report.get("roofline"), bw["GBps"]),
        "",
        _roofline.table(report["results"]),
        "",
        "## Targets (informative)",
        "",
        targets_table(report["targets"])
        if report["targets"]
        else "(no target applies to this grid)",
        "",
    ]
    if report["micro"]:
        L += [
            "## Microbenchmarks (kernel pieces)",
            "",
            "bytes = X and Y of the batch read once; flops = 4BNU + 4BU per gradient "
            "(+ 2U(N+1) for the update); the epoch piece runs on in-cache data.",
            "",
            micro.markdown(report["micro"]),
            "",
        ]
    if report["errors"]:
        L += (
            ["## Errors", ""]
            + [f"- {e['point']} {e['impl']}: {e['error']}" for e in report["errors"]]
            + [""]
        )
    path.write_text("\n".join(L))


def _lib(pool: dict[str, Any]) -> str:
    """The library file of a thread pool, with its folder (which package loaded it)."""
    return "/".join(Path(pool.get("filepath") or "?").parts[-2:])


def _load(v: list[float] | None) -> str:
    return "-" if not v else ", ".join(f"{x:.2f}" for x in v)


def write_plot(path: Path, report: dict[str, Any]) -> str | None:
    """Time per epoch against data size, log-log, one line per implementation, plus the floor."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib is not installed: no plot ({exc})"
    results = report["results"]
    dtypes = [d for d in DTYPES if any(r["dtype"] == d for r in results)]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(7 * len(dtypes), 6), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, dt in zip(axes[0], dtypes):
        recs = sorted((r for r in results if r["dtype"] == dt), key=lambda r: r["bytes"])
        names = list(dict.fromkeys(n for r in recs for n in r["impls"]))
        for name in names:
            pts = [(r["bytes"], r["impls"][name]["epoch_s"]) for r in recs if name in r["impls"]]
            xs, ys = zip(*pts)
            label = IMPL_LABELS.get(name) or f"{IMPL_LABELS['cpp']} {name[3:]}"
            style: dict[str, Any] = {"lw": 2.2 if name in ("cpp", "numba", "cuda") else 1.2}
            if name.startswith("cpp[") or name == "epoch default call":
                style["ls"] = ":"
            (h,) = ax.plot(xs, ys, marker="o", ms=4, label=label, **style)
            handles.setdefault(label, h)
        xs = [r["bytes"] for r in recs]
        label = f"bandwidth floor ({report['bandwidth']['GBps']:.1f} GB/s read)"
        (h,) = ax.plot(xs, [r["floor_s"] for r in recs], "k--", lw=2, label=label)
        handles.setdefault("floor", h)
        for i, r in enumerate(recs):
            ax.annotate(
                f"{r['M']}x{r['N']}x{r['U']}, B={r['B']}",
                (r["bytes"], r["floor_s"]),
                textcoords="offset points",
                xytext=(0, -14 - 10 * (i % 3)),
                ha="right" if i and i == len(recs) - 1 else "center",
                fontsize=7,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(x=0.12, y=0.15)
        ax.set_xlabel("bytes of X and Y (an epoch reads them once)")
        ax.set_ylabel("time per epoch [s] (median)")
        ax.set_title(f"{dt}, 1 thread")
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(
        list(handles.values()),
        [h.get_label() for h in handles.values()],
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------- main


def parse_point(text: str) -> tuple[int, int, int, int]:
    try:
        vals = tuple(int(v.replace("_", "")) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point wants M,N,U,B integers, got {text!r}") from None
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError(
            f"--point wants four positive integers M,N,U,B, got {text!r}"
        )
    return vals  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="linsgd benchmarks: correctness check, then epoch times vs torch, numpy, "
        "scikit-learn and the memory-bandwidth floor (1 thread)."
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small grid, few repeats, no slow runs at big sizes (CI smoke test)",
    )
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "out"),
        help="folder for results.md, results.json and results.png (default bench/out)",
    )
    ap.add_argument("--json", metavar="F", help="write the JSON here instead of OUT/results.json")
    ap.add_argument(
        "--point",
        action="append",
        type=parse_point,
        metavar="M,N,U,B",
        help="benchmark this grid point instead of the default grid (repeatable)",
    )
    ap.add_argument(
        "--dtype",
        action="append",
        choices=list(DTYPES),
        help="only this dtype (repeatable; default both)",
    )
    ap.add_argument("--backend", action="append", help="only this linsgd backend (repeatable)")
    ap.add_argument(
        "--cpu-variants",
        action="store_true",
        help="also time the cpp backend under every other supported instruction-set "
        "variant (linsgd._core.set_cpu_variant)",
    )
    ap.add_argument("--no-torch", action="store_true", help="leave torch out (also in the check)")
    ap.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn out")
    ap.add_argument("--no-micro", action="store_true", help="skip the microbenchmarks")
    ap.add_argument("--no-plot", action="store_true", help="do not write results.png")
    ap.add_argument(
        "--bandwidth-gb",
        type=float,
        default=None,
        help="size of the bandwidth-test array in GB (default 1, 0.25 with --quick)",
    )
    ap.add_argument("--note", help="a paragraph to put at the top of results.md")
    ap.add_argument(
        "--render",
        metavar="F",
        help="only rewrite results.md and results.png in --out from a JSON file "
        "written by an earlier run (no correctness check, no timing)",
    )
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads(Path(args.render).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        image = None
        if not args.no_plot:
            problem = write_plot(out / "results.png", report)
            if problem:
                log(problem)
            else:
                image = "results.png"
        write_markdown(out / "results.md", report, args.note, image)
        log(f"rendered {args.render} into {out}")
        return 0

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else out / "results.json"
    grid = tuple(args.point) if args.point else (QUICK_GRID if args.quick else FULL_GRID)
    dtypes = args.dtype or list(DTYPES)
    if args.quick:
        timing = {"repeats": 3, "min_batch_s": 0.002, "max_total_s": 0.25, "min_repeats": 2}
        slow_limit = 2_000_000  # M*N above which torch/numpy/sklearn are skipped
    else:
        timing = {"repeats": 7, "min_batch_s": 0.01, "max_total_s": 4.0, "min_repeats": 3}
        slow_limit = None

    import check
    import linsgd

    torch = None if args.no_torch else _torch_setup()
    use_sklearn = not args.no_sklearn
    if use_sklearn:
        try:
            import sklearn.linear_model  # noqa: F401
        except ImportError:
            use_sklearn = False
    available = linsgd.available_backends()
    backends = args.backend or available
    missing = [b for b in backends if b not in available]
    if missing:
        log(f"error: backend(s) {missing} not available (this install has {available})")
        return 2
    if "cpp" not in backends and args.cpu_variants:
        log("note: --cpu-variants needs the cpp backend; ignored")

    report: dict[str, Any] = {
        "schema": "linsgd-bench/1",
        "command": "python "
        + " ".join(
            shlex.quote(a) for a in ["bench/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "grid": [list(p) for p in grid],
        "dtypes": dtypes,
        "timing": timing,
    }
    meta = {"machine": machine_info(), "linsgd": linsgd_info()}
    if torch is not None:
        meta["torch_threads"] = torch.get_num_threads()
    report["meta"] = meta
    m = meta["machine"]
    log(
        f"machine: {m['cpu_model']}, {m['cpus']} CPUs, avx2={m['avx2']}, "
        f"avx512={','.join(m['avx512']) or 'no'}, load average {_load(m['load_average'])}"
    )
    log(
        f"linsgd {meta['linsgd']['version']}: backends {available}, "
        f"cpu variant {meta['linsgd'].get('cpu_variant')}"
    )
    tuned = {k: v for k, v in m["env"].items() if not k.endswith("THREADS") and v}
    log(f"BLAS/OpenMP tuning variables (left as they are): {tuned or 'none set'}")

    # 1. correctness, before any timing
    log("== correctness")
    corr = check.run_check(
        backends=[b for b in backends if b in ("cpp", "numba")], use_torch=torch is not None
    )
    report["correctness"] = corr
    report["correctness_lines"] = check.summary_lines(corr)
    for line in report["correctness_lines"]:
        log("  " + line)
    if not corr["passed"]:
        log("correctness: FAIL -- no timing done")
        report["elapsed_s"] = time.perf_counter() - t_start
        json_path.write_text(json.dumps(report, indent=1, default=str))
        return 1
    log("correctness: PASS")

    # 2. bandwidth
    gb = args.bandwidth_gb if args.bandwidth_gb is not None else (0.25 if args.quick else 1.0)
    log(f"== read bandwidth ({gb:g} GB array)")
    bw_repeats = 3 if args.quick else 7
    bw = read_bandwidth(int(gb * 1e9), repeats=bw_repeats)
    report["bandwidth"] = bw
    for k, v in bw["methods"].items():
        log(f"  {k:22s} {v['GBps_median']:6.2f} GB/s (best {v['GBps_best']:.2f})")
    log("== roofline: read bandwidth on 1 and 2 threads, multiply + add throughput")
    roof = _roofline.measure(int(gb * 1e9), bw_repeats, log)
    report["roofline"] = roof

    # 3. the grid
    cpu_variants = []
    if args.cpu_variants and "cpp" in backends:
        cpu_variants = list(meta["linsgd"].get("supported_cpu_variants", []))
    errors: list[dict[str, Any]] = []
    results = []
    for point in grid:
        for dt in dtypes:
            M, N, U, B = point
            run_slow = slow_limit is None or M * N <= slow_limit
            log(f"== M={M} N={N} U={U} B={B} {dt}")
            rec = bench_point(
                point,
                dt,
                backends=backends,
                torch=torch,
                use_sklearn=use_sklearn,
                run_slow=run_slow,
                cpu_variants=cpu_variants,
                bandwidth=bw["GBps"],
                timing=timing,
                errors=errors,
                roof=roof,
                cache_repeats=3 if args.quick else 7,
            )
            results.append(rec)
    # the bandwidth again after the grid (the load may have changed): the floor uses the
    # higher of the two measurements, the stricter floor
    log(f"== read bandwidth again ({gb:g} GB array)")
    bw_end = read_bandwidth(int(gb * 1e9), repeats=bw_repeats)
    for k, v in bw_end["methods"].items():
        log(f"  {k:22s} {v['GBps_median']:6.2f} GB/s (best {v['GBps_best']:.2f})")
    best = max((bw, bw_end), key=lambda b: b["GBps"])
    report["bandwidth"] = {
        **best,
        "start": bw,
        "end": bw_end,
        "used": "start" if best is bw else "end",
    }
    log(f"  floor uses {best['GBps']:.2f} GB/s ({best['method']}, {report['bandwidth']['used']})")
    for rec in results:
        rec["floor_s"] = rec["bytes"] / (best["GBps"] * 1e9)
        _ratios(rec)
        _roofline.floors(rec, best["GBps"], roof)
    report["results"] = results
    report["targets"] = evaluate_targets(results)
    meta["threadpools"] = threadpools()  # after numpy, torch and sklearn have loaded their BLAS
    meta["versions"] = versions()

    # 4. microbenchmarks
    report["micro"] = []
    if not args.no_micro:
        import micro

        log("== microbenchmarks")
        shapes = tuple(
            sorted({(B, N, U) for (_, N, U, B) in grid}, key=lambda s: s[0] * s[1] * s[2])
        )
        try:
            report["micro"] = micro.run_micro(
                shapes=shapes,
                dtypes=tuple(DTYPES[d] for d in dtypes),
                backends=[b for b in backends if b in ("cpp", "numba")],
                epoch_mb=2.0 if args.quick else 8.0,
                timing=timing,
                log=log,
            )
        except Exception as exc:
            errors.append(
                {
                    "point": "micro",
                    "impl": "micro",
                    "fatal": True,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            )
            log(f"  micro ERROR {type(exc).__name__}: {exc}")

    report["errors"] = errors
    report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    # 5. reports
    log("")
    log(results_table(results))
    log("")
    log(_roofline.table(results))
    log("")
    log(targets_table(report["targets"]) if report["targets"] else "(no target applies)")
    written = []
    if not args.no_plot:
        problem = write_plot(out / "results.png", report)
        if problem:
            log(problem)
        else:
            written.append(str(out / "results.png"))
    report["elapsed_s"] = time.perf_counter() - t_start
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1, default=str))
    md_path = out / "results.md"
    write_markdown(md_path, report, args.note, "results.png" if len(written) else None)
    written[:0] = [str(md_path), str(json_path)]
    log("")
    log(f"wrote {', '.join(written)} in {report['elapsed_s']:.1f} s")
    fatal = [e for e in errors if e["fatal"]]
    if fatal:
        log(
            f"error: {len(fatal)} linsgd benchmark(s) raised: "
            + "; ".join(f"{e['point']} {e['impl']}: {e['error']}" for e in fatal)
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
