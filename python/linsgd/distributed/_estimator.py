"""``LinearRegressor(comm=...)``: ``fit`` and ``partial_fit`` on a group of processes.

The estimator's own path (:func:`linsgd._fit.fit_model`) checks the data and the parameters,
picks the starting point and commits the fitted attributes; here only the run itself changes:
the epochs go through :func:`linsgd.distributed.train` (the closed form through
:func:`linsgd.distributed.closed_form`), and every decision between epochs (early stopping,
``target_loss``, divergence) is taken on globally reduced losses, so every rank takes it at
the same epoch. A rank that fails on its own (bad input, a callable that raises) tells the
others in the next collective they all take part in, so every rank raises, and every rank's
model is put back as it was.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import kernels
from .._closed_form import closed_form as _local_closed_form
from .._shuffle import TorchDataLoaderOrder
from .._trainer import Run, RunSettings, _diverged, copy_state, restore_best
from ._args import agree
from ._comm import Communicator, as_communicator
from ._shards import shard_rows
from ._train import _keywords, train_on
from ._tsqr import closed_form as _tsqr_closed_form

__all__ = ["on_group"]

_SHARDINGS = ("batch", "data")
_REDUCES = ("gather", "allreduce")


def _order_crc(gen: TorchDataLoaderOrder) -> int:
    """A fingerprint of a shuffle stream's position, compared across ranks."""
    st = gen.get_state()["state"]
    return zlib.crc32(np.ascontiguousarray(st["key"]).view(np.uint8), int(st["pos"]))


class _Driver:
    """One distributed fit: the communicator, and whether a failure is known to every rank."""

    def __init__(self, est: Any) -> None:
        self.comm: Communicator = as_communicator(est.comm)
        if est.sharding not in _SHARDINGS:
            raise ValueError(f"sharding must be one of {_SHARDINGS}, got {est.sharding!r}")
        if est.reduce not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {est.reduce!r}")
        self.est = est
        self.data = est.sharding == "data"
        self.shared = False  # the exception under way was raised on every rank

    def collective(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        """``fn`` (which every rank calls together): its exceptions are every rank's."""
        try:
            return fn(*args, **kw)
        except BaseException:
            self.shared = True
            raise

    def agree(self, values: list[float]) -> np.ndarray:
        if self.comm.world_size == 1:
            return np.asarray([values], dtype=np.float64)
        return self.collective(agree, self.comm, values)

    # ------------------------------------------------------------------ the solvers

    def closed_form(self, X: np.ndarray, Y: np.ndarray, **kw: Any) -> tuple:
        c = self.comm
        if c.world_size == 1:
            return _local_closed_form(X, Y, **kw)
        if not self.data:  # every rank holds every row: each factors its share
            sl = shard_rows(X.shape[0], c.rank, c.world_size)
            X, Y = X[sl], Y[sl]
            if kw.get("sample_weight") is not None:
                kw["sample_weight"] = kw["sample_weight"][sl]
        return self.collective(_tsqr_closed_form, X, Y, comm=c, **kw)

    def _valid_loss(self, ev: tuple, W: np.ndarray, b: np.ndarray | None, backend: Any) -> float:
        """The validation MSE over every rank's validation rows (``sharding="data"``)."""
        n = float(ev[0].shape[0])
        local = float(kernels.loss(ev[0], ev[1], W, b, backend=backend))
        parts = self.agree([local * n, n])
        return float(sum(parts[:, 0].tolist()) / sum(parts[:, 1].tolist()))

    def run_epochs(
        self,
        s: RunSettings,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray,
        b: np.ndarray | None,
        state: dict,
        order_gen: TorchDataLoaderOrder | None,
        ev: tuple | None,
        sw: np.ndarray | None,
        n_epochs: int,
        first_epoch: int,
        lr_of: float | Callable[[int, int], list],
    ) -> Run:
        """:func:`linsgd._trainer.run_epochs` on the group (the same arguments and result)."""
        c, est = self.comm, self.est
        lrs = [lr_of] * n_epochs if type(lr_of) is float else list(lr_of(first_epoch, n_epochs))
        if self.data and isinstance(est.lr, str):
            # lr="auto" from each rank's rows: the smallest is the one of the global maximum
            lrs = [float(self.agree([lrs[0]])[:, 0].min())] * n_epochs
        random_state = None
        if order_gen is not None:
            seed = int(est.random_state)
            if (
                self.data
                and c.rank
                and _order_crc(order_gen) == _order_crc(TorchDataLoaderOrder(seed))
            ):  # a fresh stream: rank r shuffles its rows with seed + r, as simulate does
                order_gen.set_state(TorchDataLoaderOrder(seed + c.rank).get_state())
            random_state = seed if self.data else _order_crc(order_gen)
        valid_here = ev is not None and not self.data  # the same set on every rank
        per_epoch = s.tol is not None or s.verbose > 0 or (ev is not None and self.data)
        chunk = 1 if per_epoch else max(n_epochs, 1)
        talk = s.verbose > 0 and c.rank == 0
        run = Run(valid_loss=None if ev is None else [])
        best, snapshot, no_improvement, stop = math.inf, None, 0, False
        while run.epochs < n_epochs and not stop:
            E = min(chunk, n_epochs - run.epochs)
            epoch0 = first_epoch + run.epochs
            chunk_lrs = lrs[run.epochs : run.epochs + E]
            saved = None if order_gen is None else order_gen.get_state()
            kw = _keywords(
                batch_size=s.batch_size, epochs=E, lr=np.array(chunk_lrs, dtype=np.float64),
                state=state, shuffle=order_gen is not None, random_state=random_state,
                drop_last=s.drop_last, sample_weight=sw, sharding=est.sharding,
                reduce=est.reduce, eval_set=ev if valid_here else None,
                target_loss=s.target_loss, backend=s.backend, **s.hyper,
            )  # fmt: skip
            res = self.collective(train_on, c, X, Y, W, b, kw, order_gen)
            S = res.losses.shape[1]
            if res.status == "diverged":  # on every rank, at the same step
                self.shared = True
                raise _diverged(W, b, res.steps, run.steps, S, epoch0, chunk_lrs)
            ran = E
            if res.status == "target_loss":
                e_stop, s_stop = divmod(res.steps - 1, S)
                ran, stop = e_stop + 1, True
                if order_gen is not None:  # as run_epochs replays torch's loop that breaks
                    M = X.shape[0]
                    own = -(-s.rows_per_epoch // s.batch_size)
                    order_gen.set_state(saved)
                    order_gen.orders(M, e_stop)
                    exhausted = s_stop >= own - 1 and not s.drop_last and M % s.batch_size != 0
                    order_gen.next_epoch(M, complete=exhausted)
            means = kernels.epoch_means(res.losses)
            valid = None if res.valid_losses is None else res.valid_losses.tolist()
            for e in range(ran):
                run.train_loss.append(means[e])
                run.lrs.append(chunk_lrs[e])
                if ev is not None:
                    v = valid[e] if valid_here else math.nan
                    if math.isnan(v):  # data sharding, or an epoch cut short
                        v = (
                            self._valid_loss(ev, W, b, s.backend)
                            if self.data
                            else float(kernels.loss(ev[0], ev[1], W, b, backend=s.backend))
                        )
                    run.valid_loss.append(v)
                if talk:
                    k = len(run.train_loss) - 1
                    line = f"epoch: {first_epoch + k} - MSE: {round(run.train_loss[k], 4)}"
                    if ev is not None:
                        line += f" - MSE_v: {round(run.valid_loss[k], 4)}"
                    print(line, flush=True)
            run.steps += res.steps
            run.epochs += ran
            if s.tol is not None:  # the same global losses on every rank: the same decision
                crit = run.valid_loss[-1] if ev is not None else run.train_loss[-1]
                if res.status == "completed":
                    no_improvement = no_improvement + 1 if crit > best - s.tol else 0
                if crit < best:
                    best = crit
                    run.best_epoch = first_epoch + run.epochs - 1
                    if ev is not None:
                        snapshot = (W.copy(), None if b is None else b.copy(), copy_state(state))
                if no_improvement >= s.n_iter_no_change:
                    stop = True
        run.stopped = stop
        restore_best(run, snapshot, first_epoch, W, b, state)
        return run


def _needs_seed(est: Any) -> bool:
    return bool(est.shuffle) or est.init == "torch" or bool(est.early_stopping)


@contextlib.contextmanager
def on_group(est: Any) -> Iterator[tuple[Callable[..., Any], Callable[..., Any]]]:
    """The ``with`` block of a ``fit``/``partial_fit`` on ``est.comm``: yields the functions
    that run the epochs and the closed form on the group (``runner``, ``solve`` of
    :func:`linsgd._fit.fit_model`). Every rank ends the block with
    the same fitted attributes, or raises with its model as it was before."""
    before = dict(est.__dict__)
    drv = None
    try:
        drv = _Driver(est)
        rs = est.random_state
        if _needs_seed(est) and (isinstance(rs, bool) or not isinstance(rs, numbers.Integral)):
            raise ValueError(
                "random_state must be an int with comm= and shuffle=True, init='torch' or "
                f"early_stopping=True, so that every rank draws the same rows, got {rs!r}"
            )
        yield drv.run_epochs, drv.closed_form
        drv.agree([1.0])  # every rank committed: none puts its model back
    except BaseException as exc:
        if drv is not None and not drv.shared and drv.comm.world_size > 1:
            try:  # this rank failed alone: the others wait in a collective, tell them
                agree(drv.comm, [], exc)
            except BaseException:  # agree raises exc itself (or the group is gone)
                pass
        est.__dict__.clear()
        est.__dict__.update(before)
        raise
