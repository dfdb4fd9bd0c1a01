"""``fit``/``partial_fit`` on a chunk source (:mod:`linsgd.io`): the epochs as a stream.

Each epoch is a stream of row pieces in training order (chunks in storage order; windows of
the DataLoader order gathered by :meth:`take` for ``shuffle=True``; permuted chunks for
``shuffle='chunks'``), read ahead by a background thread. The pieces are cut into whole
batches, and the rows of a piece that do not fill a batch are carried into the next, so the
kernel sees the batches of the in-memory fit, one :func:`linsgd.kernels.train` call per piece
continuing the optimizer state. The epoch's loss, validation loss, stopping rules and the
order generator's position are kept as :mod:`linsgd._trainer` keeps them, for the same bits.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _checks as ck
from . import kernels
from ._fit import _lr_of, commit
from ._params import auto_lr, seed_of, validated_params
from ._shuffle import TorchDataLoaderOrder
from ._trainer import Run, _diverged, copy_state, restore_best, warn_not_converged
from ._validation import check_eval_set, initial_params
from .io._open import as_source, is_dask_array
from .io._order import chunk_order
from .io._readahead import read_ahead
from .io._source import is_source

__all__ = ["ChunkShuffle", "fit_source", "is_stream_input"]

_WINDOW_ROWS = 65536  # rows gathered per take() with shuffle=True, unless the source says
_PROGRESS_EVERY = 0.5  # seconds between progress lines (verbose=2)


def is_stream_input(X: Any) -> bool:
    """Whether ``fit`` trains on ``X`` as a stream: a chunk source or a dask array."""
    return is_source(X) or is_dask_array(X)


class ChunkShuffle:
    """The order state of ``shuffle='chunks'``: a seed; epoch ``e`` draws from ``[seed, e]``."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def get_state(self) -> dict:
        return {"chunks_seed": self.seed}


def _check_piece(X: Any, Y: Any, dt: np.dtype, N: int, label: str, rows: Any = 0):
    """A piece as C-contiguous ``(X, Y)`` of ``dt``, checked; errors name ``label`` and the row
    (``rows``: the source row of the piece's first row, or of each of its rows)."""

    def where(r: int) -> str:
        if isinstance(rows, np.ndarray):
            return f"{label}: row {int(rows[r])} of the source"
        return f"{label}, row {r} (row {rows + r} overall)"

    X = np.ascontiguousarray(X, dtype=dt)
    Y = np.ascontiguousarray(Y, dtype=dt)
    Y = Y.reshape(len(Y), -1)
    if X.ndim != 2 or X.shape[1] != N or len(Y) != len(X):
        raise ValueError(
            f"{where(0)}: X has shape {X.shape} and y {Y.shape}; expected {N} features"
        )
    for name, a in (("X", X), ("y", Y)):
        if not ck.all_finite(a):  # one compiled pass; the row is looked for only then
            r = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
            raise ValueError(f"{where(r)}: {name} holds NaN or infinity")
    return X, Y


class _Stream:
    """The epochs of one run over a source (its reading, its batching, its bookkeeping)."""

    def __init__(self, src, p, dt, W, b, state, order, ev, lr_of, verbose) -> None:
        self.src, self.p, self.dt, self.W, self.b, self.state = src, p, dt, W, b, state
        self.order, self.ev, self.lr_of, self.verbose = order, ev, lr_of, verbose
        self.bs = p["batch_size"]
        self.depth = getattr(src, "prefetch", 2)

    # -- the pieces of an epoch, in training order -------------------------------------
    def _in_order(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        row = 0
        for k, (X, y) in enumerate(self.src.iter_chunks(0)):
            yield _check_piece(X, y, self.dt, self.W.shape[1], f"chunk {k} of the source", row)
            row += len(X)

    def _dataloader(self, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        win = max(self.bs, int(getattr(self.src, "window_rows", _WINDOW_ROWS)))
        for a in range(0, len(order), win):
            idx = order[a : a + win]
            rows = np.sort(idx)
            Xs, ys = self.src.take(rows)
            pos = np.searchsorted(rows, idx)
            label = f"shuffle window {a // win}"
            yield _check_piece(
                np.asarray(Xs)[pos], np.asarray(ys)[pos], self.dt, self.W.shape[1], label, idx
            )

    def _chunks(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng, perm = chunk_order(self.src.n_chunks, self.order.seed, epoch)
        for k in perm.tolist():
            X, y = next(iter(self.src.iter_chunks(k)))
            X, Y = _check_piece(X, y, self.dt, self.W.shape[1], f"chunk {k} of the source")
            rows = rng.permutation(len(X))
            yield X[rows], Y[rows]

    # -- one epoch ---------------------------------------------------------------------
    def epoch(self, epoch: int, lr: float) -> tuple[list, str]:
        """Train one epoch; returns its step losses and the status of its last call."""
        p, bs = self.p, self.bs
        saved = None
        if isinstance(self.order, TorchDataLoaderOrder):
            M = self.src.n_rows
            saved = self.order.get_state()
            order = self.order.orders(M, 1)[0]
            R = M - M % bs if p["drop_last"] else M
            pieces = self._dataloader(order[:R] if R < M else order)
        elif isinstance(self.order, ChunkShuffle):
            pieces = self._chunks(epoch)
        else:
            pieces = self._in_order()
        losses: list = []
        carry: list = []  # rows waiting for a batch: (X, Y) pieces
        t0 = last = time.perf_counter()
        rows = nbytes = 0
        status = "completed"

        def train(X: np.ndarray, Y: np.ndarray) -> str:
            res = kernels.train(
                X, Y, self.W, self.b, batch_size=bs, epochs=1, lr=lr, state=self.state,
                target_loss=p["target_loss"] if self.full_fit else None, check_finite=False,
                backend=p["backend"], n_threads=p["n_threads"], **p["hyper"],
            )  # fmt: skip
            losses.extend(res.losses[0, : res.steps].tolist())
            if res.status == "diverged":
                n = len(losses)
                raise _diverged(self.W, self.b, n, 0, n + 1, epoch, [lr]) from None
            if res.status == "interrupted":
                raise KeyboardInterrupt("linsgd training interrupted; the model was left unchanged")
            return res.status

        stream = read_ahead(pieces, self.depth)
        try:
            for X, Y in stream:
                rows += len(X)
                nbytes += X.nbytes + Y.nbytes
                i = 0
                if carry:
                    held = sum(len(c[0]) for c in carry)
                    i = min(bs - held, len(X))
                    carry.append((X[:i].copy(), Y[:i].copy()))  # not a view holding X
                    if held + i < bs:
                        continue
                    status = train(
                        np.concatenate([c[0] for c in carry]), np.concatenate([c[1] for c in carry])
                    )
                    carry = []
                    if status != "completed":
                        break
                full = (len(X) - i) // bs * bs
                if full:
                    status = train(X[i : i + full], Y[i : i + full])
                    if status != "completed":
                        break
                if i + full < len(X):
                    carry = [(X[i + full :].copy(), Y[i + full :].copy())]
                now = time.perf_counter()
                if self.verbose >= 2 and now - last >= _PROGRESS_EVERY:
                    last = now
                    self._progress(epoch, rows, nbytes, now - t0, end="\r")
            else:
                if carry and not p["drop_last"]:
                    status = train(
                        np.concatenate([c[0] for c in carry]), np.concatenate([c[1] for c in carry])
                    )
        finally:
            stream.close()
        if not losses:
            raise ValueError(
                f"the source gave {rows} rows, which is no batch: drop_last=True with "
                f"batch_size={bs} > the rows leaves none"
                if rows
                else "the source gave no rows"
            )
        if self.verbose >= 2:
            self._progress(epoch, rows, nbytes, time.perf_counter() - t0, end="\n")
        if status == "target_loss" and saved is not None:
            # as _trainer: the DataLoader's sampler is exhausted only after its last batch
            M = self.src.n_rows
            S = -(-(M - M % bs if p["drop_last"] else M) // bs)
            exhausted = len(losses) == S and not p["drop_last"] and M % bs != 0
            self.order.set_state(saved)
            self.order.next_epoch(M, complete=exhausted)
        return losses, status

    @staticmethod
    def _progress(epoch: int, rows: int, nbytes: int, dt: float, end: str) -> None:
        dt = max(dt, 1e-9)
        print(
            f"linsgd: epoch {epoch}: {rows:,} rows in {dt:.2f} s, {rows / dt:,.0f} rows/s, "
            f"{nbytes / dt / 1e6:,.1f} MB/s",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    # -- the run -----------------------------------------------------------------------
    def run(self, n_epochs: int, first_epoch: int, tol: float | None, full_fit: bool) -> Run:
        self.full_fit = full_fit
        p, ev = self.p, self.ev
        run = Run(valid_loss=None if ev is None else [])
        best, snapshot, no_improvement, stop = math.inf, None, 0, False
        while run.epochs < n_epochs and not stop:
            epoch = first_epoch + run.epochs
            lr = self.lr_of if type(self.lr_of) is float else self.lr_of(epoch, 1)[0]
            losses, status = self.epoch(epoch, lr)
            run.train_loss.append(kernels.epoch_means([losses])[0])
            run.lrs.append(lr)
            if ev is not None:
                run.valid_loss.append(
                    kernels.loss(ev[0], ev[1], self.W, self.b, backend=p["backend"])
                )
            if self.verbose >= 1:
                line = f"epoch: {epoch} - MSE: {round(run.train_loss[-1], 4)}"
                if ev is not None:
                    line += f" - MSE_v: {round(run.valid_loss[-1], 4)}"
                print(line, flush=True)
            run.steps += len(losses)
            run.epochs += 1
            stop = status == "target_loss"
            if tol is not None:
                crit = run.valid_loss[-1] if ev is not None else run.train_loss[-1]
                if status == "completed":
                    no_improvement = no_improvement + 1 if crit > best - tol else 0
                if crit < best:
                    best = crit
                    run.best_epoch = epoch
                    if ev is not None:
                        snapshot = (
                            self.W.copy(),
                            None if self.b is None else self.b.copy(),
                            copy_state(self.state),
                        )
                if no_improvement >= p["n_iter_no_change"]:
                    stop = True
        run.stopped = stop
        restore_best(run, snapshot, first_epoch, self.W, self.b, self.state)
        return run


def _eval_arrays(eval_set: Any, N: int, U: int, dt: np.dtype):
    """``eval_set`` as arrays: a source (or a dask array pair) is read whole, once."""
    if eval_set is None:
        return None
    dask_pair = isinstance(eval_set, (tuple, list)) and len(eval_set) == 2
    if is_source(eval_set) or (dask_pair and is_dask_array(eval_set[0])):
        src = eval_set if is_source(eval_set) else as_source(*eval_set)
        parts = [
            _check_piece(X, y, dt, N, f"eval_set chunk {k}")
            for k, (X, y) in enumerate(src.iter_chunks(0))
        ]
        eval_set = (np.concatenate([a for a, _ in parts]), np.concatenate([c for _, c in parts]))
    return check_eval_set(eval_set, N, U, dt)


def _stream_auto_lr(src: Any, dt: np.dtype, U: int, fit_intercept: bool, p: dict) -> float:
    """``lr='auto'`` from one pass: the smallest chunk rate is that of the largest row norm."""
    lrs = [
        auto_lr(
            np.asarray(X, dtype=dt),
            U,
            fit_intercept=fit_intercept,
            weight_decay=p["weight_decay"],
            l2=p["l2"],
        )
        for X, _ in read_ahead(src.iter_chunks(0), getattr(src, "prefetch", 2))
        if len(X)
    ]
    if not lrs:
        raise ValueError("the source gave no rows")
    return min(lrs)


def fit_source(
    est: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    eval_set: Any,
    coef_init: Any,
    intercept_init: Any,
    *,
    resume: bool,
    n_epochs: int | None,
) -> Any:
    """:func:`linsgd._fit.fit_model` for a chunk source (or a dask array pair)."""
    if is_source(X):
        if y is not None:
            raise ValueError("y must be None when X is a chunk source (it holds the targets)")
        src = X
    else:
        src = as_source(X, y)
    if sample_weight is not None:
        raise ValueError("sample_weight is not supported when training on a chunk source")
    p = validated_params(est)
    full_fit = n_epochs is None
    if full_fit and p["solver"] != "sgd":
        raise ValueError(f"solver={p['solver']!r} needs the data in memory; use solver='sgd'")
    if full_fit and p["early_stopping"]:
        raise ValueError(
            "early_stopping=True sets aside part of the data in memory; on a chunk source "
            "pass eval_set (arrays or a source) with tol instead"
        )
    warm = full_fit and p["warm_start"] and "coef_" in est.__dict__
    warm = warm and coef_init is None and intercept_init is None
    N, U = int(src.n_features), int(src.n_targets)
    if U < 1 or N < 1:
        raise ValueError(
            f"the source has {N} feature and {U} target columns; at least 1 of each is needed"
        )
    if resume or warm:
        W, b = est._params_from_attrs()
        if warm and (b is not None) != p["fit_intercept"]:
            raise ValueError(
                f"warm_start=True: fit_intercept={p['fit_intercept']} differs from the fitted "
                "model's; refit with warm_start=False"
            )
        dt = W.dtype
        if W.shape != (U, N):
            raise ValueError(
                f"the source has {N} features and {U} targets, but the model has "
                f"{W.shape[1]} features and {W.shape[0]} outputs"
            )
        single = np.ndim(est.coef_) == 1 if resume else bool(src.target_1d)
    else:
        dt = p["dtype"] if p["dtype"] is not None else np.dtype(src.dtype)
        single = bool(src.target_1d)
    ev = _eval_arrays(eval_set, N, U, dt)
    shuffle = p["shuffle"]
    if shuffle not in (False, "chunks") and not (
        getattr(src, "random_access", False) and src.n_rows is not None
    ):
        raise ValueError(
            f"shuffle=True needs a source with random access by row ({type(src).__name__} has "
            "none): use shuffle='chunks' (chunk order and rows within chunks) or shuffle=False"
        )
    if shuffle == "chunks" and getattr(src, "n_chunks", None) is None:
        raise ValueError(
            f"shuffle='chunks' needs a source that knows its number of chunks "
            f"({type(src).__name__} does not): pass a list of chunks, or shuffle=False"
        )
    order: Any = None
    if resume or warm:
        state = copy_state(getattr(est, "_optimizer_state", {}) or {})
        saved = getattr(est, "_order_state", None)
        if shuffle == "chunks":
            if isinstance(saved, dict) and "chunks_seed" in saved:
                order = ChunkShuffle(saved["chunks_seed"])
            else:
                order = ChunkShuffle(seed_of(est.random_state))
        elif shuffle:
            keep = saved is not None and "chunks_seed" not in saved
            order = TorchDataLoaderOrder(0 if keep else seed_of(est.random_state))
            if keep:
                order.set_state(copy.deepcopy(saved))
        p["auto_lr"] = getattr(est, "_auto_lr", None) if resume else None
        first_epoch = int(est.n_iter_) if resume else 0
    else:
        state = {}
        use_seed = bool(shuffle) or p["init"] == "torch"
        seed = seed_of(est.random_state) if use_seed else None
        torch_init = p["init"] == "torch" and coef_init is None and intercept_init is None
        W, b = initial_params(
            coef_init, intercept_init, N, U, dt, p["fit_intercept"], seed if torch_init else None
        )
        if shuffle == "chunks":
            order = ChunkShuffle(seed)
        elif shuffle:
            order = TorchDataLoaderOrder(seed)
        p["auto_lr"] = None
        first_epoch = 0
    if p["lr"] == "auto" and p["auto_lr"] is None:
        p["auto_lr"] = _stream_auto_lr(src, dt, U, b is not None, p)
    tol = p["tol"] if full_fit else None
    stream = _Stream(src, p, dt, W, b, state, order, ev, _lr_of(p), p["verbose"])
    run = stream.run(p["epochs"] if full_fit else n_epochs, first_epoch, tol, full_fit)
    commit(est, p, None, W, b, single, run, state, order, resume)
    if tol is not None and not run.stopped:
        warn_not_converged(est, p, tol)
    return est
