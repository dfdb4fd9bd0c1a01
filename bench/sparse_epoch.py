"""Sparse X: one epoch of mini-batch SGD on CSR data, linsgd against its peers and the floor.

    python bench/sparse_epoch.py [--quick] [--rows M] [--features N] [--density D] [--batch-size B]
                           [--json F]

Per U (1 and 4), all in one process on one core, timed in interleaved rounds:

* linsgd ``kernels.epoch`` on the CSR matrix (``check_finite=False``), C++ and numba backends;
* scikit-learn's ``SGDRegressor.partial_fit`` (one epoch, per-sample updates; U = 1 only: it
  fits one output);
* the torch loop (``torch.sparse.mm`` forward, autograd, ``optim.SGD``), its batches sliced
  from a CSR tensor beforehand (not timed);
* the floor: bytes of the stored values, column indices, row pointers and Y, over the measured
  single-core read bandwidth (``bench/_common.read_bandwidth``). The dense update of W (U x N)
  every step is not in it: that is ``steps * U * N`` parameters, also printed.

Default: 1e6 x 1e5 at 0.01 % density (10 stored entries a row), B = 1024. ``--quick``: 1e5 x
1e4 at 0.1 %, for CI (``bench/run.py --quick`` does not run it; run it yourself).
"""

from __future__ import annotations

import _env  # noqa: F401  (must come first: pins the thread pools before numpy is imported)

# isort: split

import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp

from _common import fmt_time, measure_interleaved, read_bandwidth


def make_csr(M: int, N: int, density: float, seed: int = 0) -> sp.csr_matrix:
    """A CSR matrix with ``round(N * density)`` stored entries a row, one in each of that many
    equal stripes of columns (sorted, distinct), standard-normal values, float64, int32 indices."""
    k = max(1, round(N * density))
    stripe = N // k
    rng = np.random.default_rng(seed)
    cols = (rng.integers(0, stripe, (M, k)) + np.arange(k) * stripe).astype(np.int32)
    indptr = np.arange(0, M * k + 1, k, dtype=np.int64 if M * k >= 2**31 else np.int32)
    return sp.csr_matrix(
        (rng.standard_normal(M * k), cols.ravel(), indptr.astype(cols.dtype)), shape=(M, N)
    )


def torch_entry(X: sp.csr_matrix, Y: np.ndarray, B: int, lr: float):
    """One epoch of the torch loop over pre-sliced sparse batches, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    M, N = X.shape
    U = Y.shape[1]
    batches = []
    for s in range(0, M, B):
        xb = X[s : s + B]
        batches.append(
            (
                torch.sparse_csr_tensor(
                    torch.from_numpy(xb.indptr.astype(np.int64)),
                    torch.from_numpy(xb.indices.astype(np.int64)),
                    torch.from_numpy(xb.data),
                    size=xb.shape,
                ),
                torch.from_numpy(Y[s : s + B]),
            )
        )
    model = torch.nn.Linear(N, U, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()

    def epoch():
        for xb, yb in batches:
            opt.zero_grad()
            pred = torch.sparse.mm(xb, model.weight.t()) + model.bias
            loss_fn(pred, yb).backward()
            opt.step()

    return epoch


def sklearn_entry(X: sp.csr_matrix, y: np.ndarray):
    from sklearn.linear_model import SGDRegressor

    est = SGDRegressor(penalty=None, learning_rate="constant", eta0=1e-3, shuffle=False)

    def epoch():
        est.partial_fit(X, y)

    return epoch


def linsgd_entry(X, Y, B: int, lr: float, backend: str):
    from linsgd import kernels

    U, N = Y.shape[1], X.shape[1]
    W = np.zeros((U, N))
    b = np.zeros(U)

    def epoch():
        kernels.epoch(X, Y, W, b, batch_size=B, lr=lr, check_finite=False, backend=backend)

    return epoch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1e5 x 1e4 at 0.1 %% (CI size)")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--features", type=int, default=None)
    ap.add_argument("--density", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--outputs", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--max-total-s", type=float, default=None, help="timing budget per U")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    M = args.rows or (100_000 if args.quick else 1_000_000)
    N = args.features or (10_000 if args.quick else 100_000)
    density = args.density or (1e-3 if args.quick else 1e-4)
    B = args.batch_size
    budget = args.max_total_s or (2.0 if args.quick else 20.0)
    X = make_csr(M, N, density)
    bw = read_bandwidth(256 * 2**20 if args.quick else 2**30, repeats=3)["GBps"]
    lr = 1e-3
    print(f"X: {M} x {N}, {X.nnz} stored ({100 * X.nnz / (M * N):.3g} %), batch {B}; "
          f"read bandwidth {bw:.1f} GB/s")  # fmt: skip
    rows = []
    for U in args.outputs:
        Y = np.random.default_rng(U).standard_normal((M, U))
        stored = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + Y.nbytes
        floor = stored / (bw * 1e9)
        entries = {
            "linsgd cpp": linsgd_entry(X, Y, B, lr, "cpp"),
            "linsgd numba": linsgd_entry(X, Y, B, lr, "numba"),
        }
        t = torch_entry(X, Y, B, lr)
        if t is not None:
            entries["torch loop (sparse.mm)"] = t
        if U == 1:
            entries["sklearn SGDRegressor.partial_fit"] = sklearn_entry(X, Y[:, 0])
        res = measure_interleaved(
            entries, repeats=5, min_repeats=2, max_total_s=budget,
            on_error=lambda n, e: print(f"{n}: {e!r}", file=sys.stderr),
        )  # fmt: skip
        base = res["linsgd cpp"]["median_s"]
        for name, r in res.items():
            t = r["median_s"]
            ratios = {"vs_linsgd_cpp": t / base, "vs_floor": t / floor}
            rows.append({"U": U, "what": name, "epoch_s": t, **ratios})
        rows.append({"U": U, "what": "floor (stored bytes / bandwidth)", "epoch_s": floor,
                     "vs_linsgd_cpp": floor / base, "vs_floor": 1.0})  # fmt: skip
        steps = -(-M // B)
        print(f"U={U}: {steps} steps, dense update of {steps * U * N:.3g} parameters an epoch")
    print()
    print("| U | one epoch of | time | / linsgd cpp | / floor |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['U']} | {r['what']} | {fmt_time(r['epoch_s'])} | "
              f"{r['vs_linsgd_cpp']:.2f} | {r['vs_floor']:.2f} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"M": M, "N": N, "nnz": int(X.nnz), "batch_size": B, "GBps": bw,
                       "time": time.time(), "rows": rows}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
