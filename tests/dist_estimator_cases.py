"""Cases of ``LinearRegressor(comm=...)`` shared by tests/test_distributed_estimator.py and its
worker processes.

``fit_case(name, comm, rank, world)`` builds the estimator of case ``name`` on one rank, runs
its calls (``fit``, ``partial_fit``) and returns the outcome as plain values; ``comm=None`` is
the one-process run over all rows. Run as a script, this module is every rank of one group of
local processes: a gloo group of 3 whose subgroups of 1, 2 and 3 ranks each run every case
(``gloo``), an mpi4py world under ``mpiexec`` (``mpi``), or an NCCL group (``nccl``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import time

import numpy as np

from linsgd import LinearRegressor
from linsgd import distributed as dist
from linsgd.schedules import StepLR


def data(M, N, U, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N)).astype(dtype)
    Y = X @ rng.standard_normal((N, U)) + 0.5 + 0.1 * rng.standard_normal((M, U))
    Y = Y.astype(dtype)
    return X, (Y[:, 0] if U == 1 else Y)


def weights(M, dtype, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 2.0, M).astype(dtype)


FULL = dict(
    lr=StepLR(0.05, 1, 0.5), batch_size=16, epochs=4, momentum=0.9, nesterov=True,
    weight_decay=0.01, l2=0.005, shuffle=True, random_state=3,
)  # fmt: skip

#: name -> (data shape and dtype, estimator parameters, options)
CASES = {
    "plain-float64": ((97, 5, 1, np.float64), dict(lr=0.05, batch_size=16, epochs=3), {}),
    "full-float64": ((97, 5, 3, np.float64), FULL, {"weighted": True}),
    "full-float32": ((97, 5, 3, np.float32), FULL, {"weighted": True}),
    "small-batches-float64": (
        (10, 3, 2, np.float64),
        dict(lr=0.1, batch_size=2, epochs=2, momentum=0.9, weight_decay=0.01),
        {},
    ),
    "early-stopping-float64": (
        (300, 4, 1, np.float64),
        dict(
            lr=0.02,
            batch_size=16,
            epochs=80,
            early_stopping=True,
            n_iter_no_change=3,
            tol=1e-5,
            random_state=0,
            shuffle=True,
            momentum=0.5,
        ),
        {},
    ),
    "tol-verbose-float64": (
        (120, 4, 2, np.float64),
        dict(lr=0.05, batch_size=16, epochs=60, tol=1e-4, n_iter_no_change=2, verbose=1),
        {"eval_set": True},
    ),
    "target-loss-float64": (
        (97, 5, 1, np.float64),
        dict(lr=0.05, batch_size=8, epochs=40, target_loss=0.05, shuffle=True, random_state=4),
        {},
    ),
    "partial-fit-float64": (
        (97, 5, 2, np.float64),
        dict(FULL, epochs=2),
        {"weighted": True, "partial": 2},
    ),
    "data-sharding-float64": (
        (101, 4, 2, np.float64),
        dict(
            lr=0.05,
            batch_size=8,
            epochs=3,
            momentum=0.9,
            shuffle=True,
            random_state=1,
            sharding="data",
        ),
        {"weighted": True},
    ),
    "closed-form-float64": (
        (97, 5, 2, np.float64),
        dict(solver="closed_form", weight_decay=0.1),
        {"weighted": True},
    ),
}


def inputs(name, rank, world, one_process=False):
    """The (X, y, sample_weight, eval_set) that rank ``rank`` of ``world`` passes."""
    (M, N, U, dt), params, opts = CASES[name]
    X, y = data(M, N, U, dt)
    sw = weights(M, dt) if opts.get("weighted") else None
    ev = data(23, N, U, dt, seed=7) if opts.get("eval_set") else None
    if params.get("sharding") == "data" and not one_process:
        sl = dist.shard_rows(M, rank, world)
        X, y = X[sl], y[sl]
        sw = None if sw is None else sw[sl]
    return X, y, sw, ev


def fit_case(name, comm, rank=0, world=1, capture=True):
    """Case ``name`` on this rank (``comm=None``: in one process); its outcome, with what it
    printed when ``capture`` (not with ranks as threads: they share ``sys.stdout``)."""
    _, params, opts = CASES[name]
    X, y, sw, ev = inputs(name, rank, world, comm is None)
    kw = dict(params)
    if comm is not None:
        kw["comm"] = comm
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if capture else contextlib.nullcontext():
        est = LinearRegressor(**kw)
        est.fit(X, y, sample_weight=sw, eval_set=ev)
        for _ in range(opts.get("partial", 0)):
            est.partial_fit(X, y, sample_weight=sw)
    return outcome(est, out.getvalue())


def outcome(est, printed=""):
    state = getattr(est, "_optimizer_state", {}) or {}
    return {
        "coef": np.asarray(est.coef_).copy(),
        "intercept": np.asarray(est.intercept_).copy(),
        "history": {k: list(v) for k, v in est.history_.items()},
        "n_iter": est.n_iter_,
        "t": est.t_,
        "best_epoch": getattr(est, "best_epoch_", None),
        "lr_history": list(est.lr_history_),
        "buf": None if "momentum_buffer_W" not in state else state["momentum_buffer_W"].copy(),
        "printed": printed,
    }


def same_bits(a, b, skip=("printed",)):
    """The first field where two outcomes differ in their bits, or None."""
    for key in a:
        if key in skip:
            continue
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.dtype != y.dtype or x.tobytes() != y.tobytes():
                return key
        elif x != y:  # lists of floats: == is bitwise for non-NaN values
            return key
    return None


# ----------------------------------------------------------------------------- failures


def failures(comm, rank, world):
    """The failure cases on this rank: what each raised (type name), and whether the fitted
    model was left as it was."""
    X, y = data(97, 5, 1, np.float64)
    res = {}

    def attempt(key, make_fit):
        est = LinearRegressor(lr=0.05, batch_size=16, epochs=2, comm=comm).fit(X, y)
        before = outcome(est)
        t0 = time.monotonic()
        try:
            make_fit(est)
            res[key] = None
        except Exception as exc:  # reported to the test
            res[key] = f"{type(exc).__name__}: {exc}"
        res[key + "/seconds"] = time.monotonic() - t0
        res[key + "/unchanged"] = same_bits(outcome(est), before) is None

    def bad_input(est):
        Xb = X.copy()
        if rank == world - 1:
            Xb[3, 1] = np.nan
        est.fit(Xb, y)

    def diverge(est):
        est.set_params(lr=1e6, epochs=30).fit(X, y)

    def bad_schedule(est):  # raises on the last rank only, after the data were checked
        def lr(e):
            if rank == world - 1 and e == 2:
                raise RuntimeError("injected")
            return 0.05

        est.set_params(lr=lr, epochs=5, tol=1e-9).fit(X, y)

    def mismatch(est):
        est.set_params(lr=0.05 if rank == 0 else 0.06).fit(X, y)

    attempt("bad-input", bad_input)
    attempt("diverge", diverge)
    attempt("bad-schedule", bad_schedule)
    attempt("mismatch", mismatch)
    return res


# ----------------------------------------------------------------------------- the workers


def _run_all(comm, rank, world):
    results = {name: fit_case(name, comm, rank, world) for name in CASES}
    results["/failures"] = failures(comm, rank, world)
    return results


def _gloo_main(out_dir):
    from datetime import timedelta

    import torch.distributed as tdist

    rank = int(os.environ["RANK"])
    tdist.init_process_group("gloo", timeout=timedelta(seconds=120))
    groups = {1: tdist.new_group([0]), 2: tdist.new_group([0, 1]), 3: "torch"}
    results = {}
    for world, group in groups.items():
        if rank < world:  # a raw process group, or the default one by name: both are wrapped
            results[world] = _run_all(group, rank, world)
    _dump(out_dir, rank, results)
    tdist.destroy_process_group()


def _mpi_main(out_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    results = {world: {name: fit_case(name, comm, rank, world) for name in CASES}}
    _dump(out_dir, rank, results)


def _nccl_main(out_dir):
    from datetime import timedelta

    import torch
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(rank % torch.cuda.device_count())
    tdist.init_process_group("nccl", timeout=timedelta(seconds=60))
    results = {world: {name: fit_case(name, "torch", rank, world) for name in CASES}}
    _dump(out_dir, rank, results)
    tdist.destroy_process_group()


def _dump(out_dir, rank, results):
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    {"gloo": _gloo_main, "mpi": _mpi_main, "nccl": _nccl_main}[sys.argv[2]](sys.argv[1])
