"""The epoch driver: runs epochs through the public kernel API, in chunks, and keeps the history.

:class:`~linsgd.LinearRegressor` hands a run to :func:`run_epochs` with its arrays already
checked (C-contiguous, of the model dtype). The epochs run as few :func:`linsgd.kernels.train`
calls as the run allows: one for a plain run; one per epoch when something has to happen
between epochs (early stopping, printing); pieces of an epoch for a progress bar; chunks
bounded in memory (row orders, per-step losses) for long runs, growing from one epoch when a
``target_loss`` may stop the run early, so that time and memory follow the steps run, not the
``epochs`` bound. Every cut gives the same bits: each call continues the optimizer state.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import kernels
from ._shuffle import TorchDataLoaderOrder
from .exceptions import DivergenceError

__all__ = ["Run", "RunSettings", "restore_best", "run_epochs", "warn_not_converged"]

_PROGRESS_PIECES = 20  # progress-bar updates per epoch (verbose=2)
_MAX_ORDER_ENTRIES = 1 << 24  # row indices built per kernel call when shuffling
_MAX_LOSS_ENTRIES = 1 << 22  # per-step losses per kernel call (32 MiB)


class RunSettings:
    """What a run does, fixed for its length: the kernel's hyper-parameters and the driver's."""

    # a plain class with slots, cheaper to make than a dataclass (once per fit)
    __slots__ = (
        "backend",
        "batch_size",
        "drop_last",
        "hyper",
        "n_iter_no_change",
        "n_threads",
        "rows_per_epoch",
        "target_loss",
        "tol",
        "verbose",
    )  # fmt: skip

    def __init__(
        self,
        batch_size: int,
        rows_per_epoch: int,
        hyper: dict,  # weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize
        backend: str | None,
        n_threads: int,
        tol: float | None = None,
        n_iter_no_change: int = 5,
        target_loss: float | None = None,
        verbose: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.rows_per_epoch = rows_per_epoch
        self.hyper = hyper
        self.backend = backend
        self.n_threads = n_threads
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.target_loss = target_loss
        self.verbose = verbose
        self.drop_last = drop_last


class Run:
    """What a run did."""

    __slots__ = ("best_epoch", "epochs", "lrs", "steps", "stopped", "train_loss", "valid_loss")

    def __init__(self, valid_loss: list | None = None) -> None:
        self.train_loss: list = []
        self.valid_loss = valid_loss
        self.lrs: list = []
        self.steps = 0
        self.epochs = 0
        self.best_epoch: int | None = None
        self.stopped = False  # by a stopping rule (tol or target_loss), before the epochs ran out


def copy_state(state: dict) -> dict:
    """A deep copy of an optimizer state (its momentum buffers copied)."""
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in state.items()
    }


def _progress_bar(total: int) -> Any:
    """A tqdm bar over ``total`` steps, or None (with a note on stderr) without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(
            "linsgd: verbose=2 needs tqdm (pip install tqdm), which is not installed; "
            "printing one line per epoch instead (verbose=1)",
            file=sys.stderr,
            flush=True,
        )
        return None
    return tqdm(total=total, unit="step", desc="linsgd", file=sys.stderr, dynamic_ncols=True)


def _train_pieces(s: RunSettings, X, Y, W, b, state, orders, lrs, ev, sw, bar, epoch0):
    """``len(lrs)`` epochs as pieces of whole batches, the bar advancing after each piece."""
    bs, M = s.batch_size, X.shape[0]
    E = len(lrs)
    R = M if orders is None else orders.shape[1]
    S = -(-R // bs)
    losses = np.full((E, S), np.nan)
    valid = None if ev is None else np.full(E, np.nan)
    cuts = sorted({round(k * S / _PROGRESS_PIECES) for k in range(_PROGRESS_PIECES + 1)})
    steps = 0
    for e in range(E):
        rows = np.arange(R, dtype=np.int64) if orders is None else orders[e]
        for s0, s1 in zip(cuts[:-1], cuts[1:]):
            last = s1 == S
            piece = np.ascontiguousarray(rows[s0 * bs : min(s1 * bs, R)])[None, :]
            res = kernels.train(
                X, Y, W, b, batch_size=bs, epochs=1, lr=[lrs[e]], orders=piece,
                eval_set=ev if last else None, state=state, target_loss=s.target_loss,
                sample_weight=sw, check_finite=False, backend=s.backend, n_threads=s.n_threads,
                **s.hyper,
            )  # fmt: skip
            losses[e, s0:s1] = res.losses[0, : s1 - s0]
            steps += res.steps
            done = losses[e, :s1][~np.isnan(losses[e, :s1])]
            bar.update(res.steps)
            post = {
                "epoch": epoch0 + e,
                "loss": f"{float(done.mean()) if done.size else math.nan:.6g}",
            }
            if last and valid is not None and res.valid_losses is not None:
                valid[e] = res.valid_losses[0]
                post["val_loss"] = f"{valid[e]:.6g}"
            bar.set_postfix(post, refresh=False)
            if res.status != "completed":
                return losses, valid, steps, res.status
    return losses, valid, steps, "completed"


def _diverged(W, b, steps: int, steps_done: int, S: int, epoch0: int, lrs: list) -> Exception:
    # a non-finite loss stops before its step is applied (W, b stay finite); a non-finite
    # parameter is found right after the step that produced it
    k = steps
    if not (np.isfinite(W).all() and (b is None or np.isfinite(b).all())):
        k = max(k - 1, 0)
    e, s = divmod(k, S)
    return DivergenceError(
        f"training diverged at epoch {epoch0 + e}, step {s} (0-based; step {steps_done + k} of "
        f"this call): the loss or the parameters became NaN or infinite. Lower lr (epoch "
        f"{epoch0 + e} used {lrs[e]}). The model was left unchanged.",
        epoch=epoch0 + e,
        step=s,
    )


def run_epochs(
    s: RunSettings,
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    state: dict,
    order_gen: TorchDataLoaderOrder | None,
    ev: tuple[np.ndarray, np.ndarray] | None,
    sw: np.ndarray | None,
    n_epochs: int,
    first_epoch: int,
    lr_of: float | Callable[[int, int], list],
) -> Run:
    """Train ``W``/``b``/``state``/``order_gen`` in place for up to ``n_epochs`` epochs.

    ``lr_of`` is the learning rate of every epoch, or a function ``(first, count) -> list`` of
    the rates of epochs ``first .. first + count - 1``. Raises DivergenceError or
    KeyboardInterrupt (the caller's copies are then discarded, so its model is untouched).
    """
    M = X.shape[0]
    bs = s.batch_size
    R = s.rows_per_epoch
    S = -(-R // bs)
    verbose = s.verbose
    bar = None
    if verbose >= 2:
        bar = _progress_bar(n_epochs * S)
        if bar is None:
            verbose = 1
    early_stopping = s.tol is not None
    per_epoch = early_stopping or verbose > 0
    chunk = limit = 1
    if not per_epoch:
        limit = max(1, _MAX_LOSS_ENTRIES // S)
        if order_gen is not None or R < M:  # explicit row orders
            limit = min(limit, max(1, _MAX_ORDER_ENTRIES // R))
        if s.target_loss is None:
            chunk = min(n_epochs, limit)
    constant_lr = type(lr_of) is float
    h = s.hyper
    run = Run(None if ev is None else [])
    best = math.inf
    snapshot = None
    no_improvement = 0
    stop = False
    try:
        while run.epochs < n_epochs and not stop:
            E = n_epochs - run.epochs
            if chunk < E:
                E = chunk
            epoch0 = first_epoch + run.epochs
            lrs = [lr_of] * E if constant_lr else lr_of(epoch0, E)
            orders = None
            if order_gen is not None:
                saved = order_gen.get_state()
                orders = order_gen.orders(M, E)
                if R < M:
                    orders = np.ascontiguousarray(orders[:, :R])
            elif R < M:
                orders = np.ascontiguousarray(np.broadcast_to(np.arange(R), (E, R)))
            if bar is None:
                # the hyper-parameters as keywords, not **: a call with a ** dict costs
                # a dict made and taken apart again, a measurable part of a small fit
                res = kernels.train(
                    X, Y, W, b, batch_size=bs, epochs=E,
                    lr=lr_of if constant_lr else np.array(lrs, dtype=np.float64),
                    orders=orders, eval_set=ev,
                    state=state, target_loss=s.target_loss, sample_weight=sw,
                    check_finite=False, backend=s.backend, n_threads=s.n_threads,
                    weight_decay=h["weight_decay"], decay_bias=h["decay_bias"], l2=h["l2"],
                    momentum=h["momentum"], dampening=h["dampening"], nesterov=h["nesterov"],
                    maximize=h["maximize"],
                )  # fmt: skip
                losses, valid, steps, status = res.losses, res.valid_losses, res.steps, res.status
            else:
                losses, valid, steps, status = _train_pieces(
                    s, X, Y, W, b, state, orders, lrs, ev, sw, bar, epoch0
                )
            ran = E
            if status != "completed":
                if status == "diverged":
                    raise _diverged(W, b, steps, run.steps, S, epoch0, lrs)
                if status == "interrupted":
                    raise KeyboardInterrupt(
                        "linsgd training interrupted; the model was left unchanged"
                    )
                # target_loss: stopped right after step number `steps` of this chunk
                e_stop, s_stop = divmod(steps - 1, S)
                ran = e_stop + 1
                stop = True
                if order_gen is not None:
                    # replay the generator as torch's loop that breaks out of its epoch:
                    # complete epochs, then one whose sampler was exhausted only if the
                    # break came after the last, partial batch had been fetched
                    order_gen.set_state(saved)
                    order_gen.orders(M, e_stop)
                    exhausted = s_stop == S - 1 and not s.drop_last and M % bs != 0
                    order_gen.next_epoch(M, complete=exhausted)
            means = kernels.epoch_means(losses)
            if not stop and verbose == 0:  # every epoch ran and nothing is printed: one go
                run.train_loss += means
                run.lrs += lrs
                if ev is not None:
                    run.valid_loss += valid.tolist()
            else:
                valid_list = None if ev is None else valid.tolist()
                for e in range(ran):
                    run.train_loss.append(means[e])
                    run.lrs.append(lrs[e])
                    if ev is not None:
                        v = valid_list[e]
                        if math.isnan(v):  # the epoch was cut short: evaluate where it stopped
                            v = kernels.loss(ev[0], ev[1], W, b, backend=s.backend)
                        run.valid_loss.append(v)
                    if verbose == 1:
                        k = len(run.train_loss) - 1
                        line = f"epoch: {first_epoch + k} - MSE: {round(run.train_loss[k], 4)}"
                        if ev is not None:
                            line += f" - MSE_v: {round(run.valid_loss[k], 4)}"
                        print(line, flush=True)
            run.steps += steps
            run.epochs += ran
            chunk = 2 * chunk if 2 * chunk < limit else limit
            if early_stopping:
                crit = run.valid_loss[-1] if ev is not None else run.train_loss[-1]
                if not stop:
                    if crit > best - s.tol:
                        no_improvement += 1
                    else:
                        no_improvement = 0
                if crit < best:
                    best = crit
                    run.best_epoch = first_epoch + run.epochs - 1
                    if ev is not None:
                        snapshot = (W.copy(), None if b is None else b.copy(), copy_state(state))
                if no_improvement >= s.n_iter_no_change:
                    stop = True
    finally:
        if bar is not None:
            bar.close()
    run.stopped = stop
    restore_best(run, snapshot, first_epoch, W, b, state)
    return run


def restore_best(run: Run, snapshot: tuple | None, first_epoch: int, W, b, state: dict) -> None:
    """Put back the parameters and optimizer state of the best epoch (``snapshot``, taken
    when it ended) unless it was the last one run: early stopping's ``best_epoch_``."""
    if snapshot is not None and run.best_epoch != first_epoch + run.epochs - 1:
        W[...] = snapshot[0]
        if b is not None:
            b[...] = snapshot[1]
        state.clear()
        state.update(snapshot[2])


def warn_not_converged(est: Any, p: dict, tol: float) -> None:
    """The ``ConvergenceWarning`` of a fit whose stopping rule was not met within ``epochs``
    (worded as scikit-learn's ``SGDRegressor`` words it; raised at the user's call)."""
    warnings.warn(
        f"Maximum number of epochs ({p['epochs']}) reached before convergence: the monitored "
        f"loss still improved by at least tol={tol} within the last n_iter_no_change="
        f"{p['n_iter_no_change']} epochs. Consider increasing epochs to improve the fit, or "
        "silence this warning with warnings.simplefilter('ignore', "
        "sklearn.exceptions.ConvergenceWarning).",
        ConvergenceWarning,
        stacklevel=5,
    )
