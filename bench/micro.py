"""Microbenchmarks of linsgd's kernel pieces: gradient only, one step, one epoch.

For each batch shape (B, N, U) of the benchmark grid, on every CPU backend and dtype:

* ``gradient (API)``  ``kernels.gradient(X_b, Y_b, W, b)``: argument checks, a finiteness pass
  over the batch and the output allocation included;
* ``gradient (raw)``  the backend module's ``gradient`` entry point on prepared arrays (no
  Python-side checks): the compiled kernel alone plus the pybind11 / numba call;
* ``step``            ``kernels.step(..., check_finite=False)``: gradient + SGD update, in place;
* ``epoch``           ``kernels.epoch(..., check_finite=False)`` over ``M_epoch`` rows chosen so
  that X is about ``--epoch-mb`` MB (in the last-level cache by default: this is the compute
  rate, the memory-bound rate is in run.py's table).

GB/s counts the bytes of X and Y read once (B*(N+U)*itemsize per step); GFLOP/s counts
``4*B*N*U + 4*B*U`` flops per gradient (forward dot, residual, scaling, X^T e, bias sum) plus
``2*U*(N+1)`` for the update.

Standalone: ``python bench/micro.py [--quick] [--json F]``.
"""

from __future__ import annotations

import _env  # noqa: F401  (pins the thread pools before numpy is imported)

# isort: split

import argparse
import json
import sys
from typing import Any

import numpy as np

from _common import fmt_time, make_problem, measure, stable_lr

SHAPES = ((33, 4, 1), (256, 16, 1), (1024, 64, 1), (512, 256, 4), (64, 1024, 1))


def _flops(B: int, N: int, U: int, update: bool) -> float:
    return 4.0 * B * N * U + 4.0 * B * U + (2.0 * U * (N + 1) if update else 0.0)


def _pieces(kernels, mod, be, X, Y, W, b, gw, gb, B, m_epoch, lr):
    """name -> (function, rows read, steps, with update) for one backend and shape."""
    xb, yb = X[:B], Y[:B]
    xe, ye = X[:m_epoch], Y[:m_epoch]
    steps = -(-m_epoch // B)
    return {
        "gradient (API)": (lambda: kernels.gradient(xb, yb, W, b, backend=be), B, 1, False),
        "gradient (raw)": (lambda: mod.gradient(xb, yb, W, b, gw, gb), B, 1, False),
        "step": (
            lambda: kernels.step(xb, yb, W, b, lr=lr, check_finite=False, backend=be),
            B,
            1,
            True,
        ),
        "epoch": (
            lambda: kernels.epoch(
                xe, ye, W, b, batch_size=B, lr=lr, check_finite=False, backend=be
            ),
            m_epoch,
            steps,
            True,
        ),
    }


def run_micro(
    *,
    shapes: tuple[tuple[int, int, int], ...] = SHAPES,
    dtypes: tuple[Any, ...] = (np.float64, np.float32),
    backends: list[str] | None = None,
    epoch_mb: float = 8.0,
    timing: dict[str, Any] | None = None,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Time every piece; returns one record per (piece, backend, dtype, shape)."""
    import linsgd
    from linsgd import kernels
    from linsgd._backends import get_backend

    timing = timing or {}
    if backends is None:
        backends = [b for b in linsgd.available_backends() if b in ("cpp", "numba")]
    rows: list[dict[str, Any]] = []
    for dtype in dtypes:
        item = np.dtype(dtype).itemsize
        for B, N, U in shapes:
            m_epoch = max(B, int(epoch_mb * 1e6 / ((N + U) * item)) // B * B)
            X, Y, W0, b0 = make_problem(max(m_epoch, B), N, U, dtype, seed=1)
            lr = stable_lr(N, B)
            for be in backends:
                mod = get_backend(be)
                W, b = W0.copy(), b0.copy()
                gw, gb = np.empty_like(W), np.empty_like(b)
                pieces = _pieces(kernels, mod, be, X, Y, W, b, gw, gb, B, m_epoch, lr)
                for piece, (fn, rows_read, n_steps, update) in pieces.items():
                    t = measure(fn, **timing)["median_s"]
                    nbytes = rows_read * (N + U) * item
                    flops = (
                        _flops(B, N, U, update) * n_steps
                        if piece != "epoch"
                        else _flops(B, N, U, True) * (m_epoch / B)
                    )
                    rec = {
                        "piece": piece,
                        "backend": be,
                        "dtype": np.dtype(dtype).name,
                        "B": B,
                        "N": N,
                        "U": U,
                        "rows": rows_read,
                        "steps": n_steps,
                        "time_s": t,
                        "per_step_s": t / n_steps,
                        "GBps": nbytes / t / 1e9,
                        "GFLOPps": flops / t / 1e9,
                    }
                    rows.append(rec)
                    if log:
                        log(
                            f"  micro {piece:15s} {be:5s} {rec['dtype']:7s} B={B:<5d} N={N:<5d} "
                            f"U={U}  {fmt_time(t):>9s}  {rec['GBps']:7.2f} GB/s "
                            f"{rec['GFLOPps']:7.2f} GFLOP/s"
                        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The microbenchmark records as a markdown table."""
    out = [
        "| piece | backend | dtype | B | N | U | rows | time | per step | GB/s | GFLOP/s |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        out.append(
            f"| {r['piece']} | {r['backend']} | {r['dtype']} | {r['B']} | {r['N']} | "
            f"{r['U']} | {r['rows']} | {fmt_time(r['time_s'])} | "
            f"{fmt_time(r['per_step_s'])} | {r['GBps']:.2f} | {r['GFLOPps']:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, float64 only")
    ap.add_argument("--json", metavar="F", help="write the records to this JSON file")
    ap.add_argument("--epoch-mb", type=float, default=8.0, help="size of X for the epoch piece")
    args = ap.parse_args(argv)
    timing = (
        {"repeats": 3, "min_batch_s": 0.002, "max_total_s": 0.3}
        if args.quick
        else {"repeats": 9, "min_batch_s": 0.01, "max_total_s": 3.0}
    )
    dtypes = (np.float64,) if args.quick else (np.float64, np.float32)
    rows = run_micro(dtypes=dtypes, epoch_mb=args.epoch_mb, timing=timing, log=print)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
