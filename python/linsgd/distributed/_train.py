"""Synchronous data-parallel mini-batch SGD: :func:`train` on a communicator, :func:`simulate`
in one process.

Both run the same loop. Every step, each rank forms its rows' share of the global batch's
gradient (:func:`linsgd.kernels.partial_gradient`, normalised by the global batch), packs
``[gW | gb | sse | failed]`` into one buffer and takes part in one collective; the shares are
added in rank order and every rank applies the same update (:func:`linsgd.kernels.update`), so
the parameters are the same bits on every rank.

This module holds the entry points; the arguments are checked and compared across the ranks in
:mod:`._args`, the rows shared out in :mod:`._shards`, and the step loop runs in :mod:`._loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _checks as ck
from .._shuffle import TorchDataLoaderOrder
from ..kernels import TrainResult
from ..schedules import LRSchedule
from ._args import _exchange_checks, _Local
from ._comm import Communicator, as_communicator
from ._loop import _gather_reduce, _run, _simulated_reduce
from ._shards import shard_rows

__all__ = ["simulate", "train"]


def _keywords(**kw: Any) -> dict:
    return kw


def train(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    comm: Any,
    batch_size: int,
    epochs: int,
    lr: float | Sequence[float] | LRSchedule | Callable[[int], float],
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    shuffle: bool = False,
    random_state: int | None = None,
    drop_last: bool = False,
    sample_weight: Any = None,
    sharding: str = "batch",
    reduce: str = "gather",
    eval_set: tuple[Any, Any] | None = None,
    target_loss: float | None = None,
    backend: str | None = None,
) -> TrainResult:
    """Run synchronous data-parallel mini-batch SGD on a group of processes.

    Every rank calls this; ``W`` and ``b`` are updated in place to the same bits on every rank.

    Parameters
    ----------
    X : array_like of shape (M, N)
        ``sharding="batch"``: all rows, the same on every rank (a shared file or a memmap: only
        the rows of this rank's shares are read). ``sharding="data"``: this rank's own rows.
    Y : array_like of shape (M, U) or (M,)
        The targets of ``X``'s rows.
    W : array of shape (U, N)
        The initial weights, the same on every rank (checked); updated in place (writable,
        C-contiguous, of ``X``'s dtype).
    b : array of shape (U,) or None
        The initial bias, the same on every rank (checked); updated in place. None for a
        model without a bias.
    comm : Communicator, "torch", torch.distributed.ProcessGroup or mpi4py.MPI.Comm
        The group (see :func:`linsgd.distributed.as_communicator`).
    batch_size : int
        ``sharding="batch"``: the global batch, the one-process batch, which rank ``r`` cuts
        into a contiguous share (:func:`shard_rows`; sizes differ by at most one, some may be
        empty). ``sharding="data"``: each rank's batch, as a per-process DataLoader's (the
        global batch is the ranks' batches together).
    epochs : int
        Epochs to run.
    lr : float, sequence of float, LRSchedule or callable
        The learning rate, one per epoch, a :mod:`linsgd.schedules` schedule or ``epoch -> lr``.
    weight_decay : float, default=0.0
        Coupled weight decay, as in :func:`linsgd.kernels.train`.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias too, as in :func:`linsgd.kernels.train`.
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, as in :func:`linsgd.kernels.train`.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum, as in ``torch.optim.SGD``.
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count), updated in
        place, as in :func:`linsgd.kernels.train`; the same on every rank (checked).
    shuffle : bool, default=False
        Visit the rows in a shuffling DataLoader's order seeded with ``random_state``
        (``sharding="data"``: each rank's rows with ``random_state + rank``).
    random_state : int, optional
        Needed with ``shuffle``.
    drop_last : bool, default=False
        Leave out the last ``rows % batch_size`` rows of each epoch (each rank's, with
        ``sharding="data"``), as the DataLoader does.
    sample_weight : array_like of shape (M,), optional
        Row weights. Each global batch's loss is its weighted mean: the shares are normalised
        by the global batch's weight sum.
    sharding : {"batch", "data"}, default="batch"
        With ``"batch"``, global batch ``k`` is the one-process batch ``k``. With ``"data"``,
        step ``k`` takes batch ``k`` of every rank's own order, and the epoch has as many
        steps as the rank with the most batches (a rank that has run out contributes nothing,
        no row is repeated); it is the one-process run over the concatenated batches
        ``[rank 0's batch k, rank 1's batch k, ...]`` for each ``k``.
    reduce : {"gather", "allreduce"}, default="gather"
        ``"gather"``: every rank gathers every rank's packed share and adds them in rank
        order, bit for bit what :func:`simulate` gives. ``"allreduce"``: one allreduce, half
        the traffic, but its sum order is the library's (gloo's ring sums each chunk in a
        different order from 3 ranks on): the same bits on every rank, not :func:`simulate`'s.
    eval_set : tuple (X_valid, Y_valid), optional
        A validation set, the same on every rank, evaluated after each epoch.
    target_loss : float, optional
        Stop on every rank after the first step whose global batch loss is below it.
    backend : str, optional
        ``"cpp"`` or ``"numba"``.

    Returns
    -------
    TrainResult
        The global batch losses (the global weighted mean), the validation losses, the steps
        and epochs run and the status, the same on every rank.

    Raises
    ------
    ValueError, TypeError
        On the rank whose arguments are bad; the ranks also compare shapes, dtype,
        hyper-parameters and the initial parameters (and, with ``sharding="batch"``, the
        data's ends) and raise on every rank, naming what differs.
    DistributedError
        On every other rank, when one rank refused its arguments or failed during a step.
    """
    kw = _keywords(
        batch_size=batch_size, epochs=epochs, lr=lr, weight_decay=weight_decay,
        decay_bias=decay_bias, l2=l2, momentum=momentum, dampening=dampening,
        nesterov=nesterov, maximize=maximize, state=state, shuffle=shuffle,
        random_state=random_state, drop_last=drop_last, sample_weight=sample_weight,
        sharding=sharding, reduce=reduce, eval_set=eval_set, target_loss=target_loss,
        backend=backend,
    )  # fmt: skip
    return train_on(as_communicator(comm), X, Y, W, b, kw)


def train_on(
    c: Communicator, X, Y, W, b, kw: dict, order_gen: TorchDataLoaderOrder | None = None
) -> TrainResult:
    """:func:`train` on a communicator, with :func:`train`'s keywords as ``kw``; with
    ``shuffle``, ``order_gen`` (when given) draws this rank's orders, continuing its stream."""
    loc, counts = _exchange_checks(c, lambda: _Local(X, Y, W, b, kw))
    shard = loc.shard(slice(None), c.rank if loc.sharding == "data" else 0, order_gen)
    return _run(loc, {c.rank: shard}, c.world_size, counts, _gather_reduce(c, loc.reduce))


def simulate(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    world_size: int,
    batch_size: int,
    epochs: int,
    lr: float | Sequence[float] | LRSchedule | Callable[[int], float],
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    shuffle: bool = False,
    random_state: int | None = None,
    drop_last: bool = False,
    sample_weight: Any = None,
    sharding: str = "batch",
    eval_set: tuple[Any, Any] | None = None,
    target_loss: float | None = None,
    backend: str | None = None,
) -> TrainResult:
    """Run :func:`train` on ``world_size`` simulated ranks, in one process.

    Each simulated rank forms the same share as in :func:`train`, and the shares are added in
    rank order: bit for bit what ``train(reduce="gather")`` gives on every rank.

    Parameters
    ----------
    X : array_like of shape (M, N)
        All rows. With ``sharding="data"``, rank ``r``'s own rows are ``X[shard_rows(M, r,
        world_size)]`` (contiguous blocks, sizes differing by at most one).
    Y : array_like of shape (M, U) or (M,)
        The targets of all rows, split as ``X`` is.
    W : array of shape (U, N)
        The initial weights, updated in place (writable, C-contiguous, of ``X``'s dtype).
    b : array of shape (U,) or None
        The initial bias, updated in place; None for a model without a bias.
    world_size : int
        The number of ranks to simulate.
    batch_size : int
        The global batch (``sharding="batch"``) or each rank's batch (``sharding="data"``),
        as in :func:`train`.
    epochs : int
        Epochs to run.
    lr : float, sequence of float, LRSchedule or callable
        The learning rate, one per epoch, a :mod:`linsgd.schedules` schedule or ``epoch -> lr``.
    weight_decay : float, default=0.0
        Coupled weight decay, as in :func:`linsgd.kernels.train`.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias too, as in :func:`linsgd.kernels.train`.
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, as in :func:`linsgd.kernels.train`.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum, as in ``torch.optim.SGD``.
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count), updated in
        place, as in :func:`linsgd.kernels.train`.
    shuffle : bool, default=False
        Visit the rows in a shuffling DataLoader's order, as in :func:`train`.
    random_state : int, optional
        Needed with ``shuffle``; rank ``r`` uses ``random_state + r`` with ``sharding="data"``.
    drop_last : bool, default=False
        Leave out the last ``rows % batch_size`` rows of each epoch, as in :func:`train`.
    sample_weight : array_like of shape (M,), optional
        Row weights of all rows, split as ``X`` is; as in :func:`train`.
    sharding : {"batch", "data"}, default="batch"
        How the rows are split over the ranks, as in :func:`train`.
    eval_set : tuple (X_valid, Y_valid), optional
        A validation set, evaluated after each epoch.
    target_loss : float, optional
        Stop after the first step whose global batch loss is below it.
    backend : str, optional
        ``"cpp"`` or ``"numba"``.

    Returns
    -------
    TrainResult
        The global batch losses, the validation losses, the steps and epochs run and the
        status, as :func:`train` reports them.

    Raises
    ------
    ValueError
        When an argument is bad, or with ``sharding="data"`` when ``world_size`` leaves a rank
        no rows.
    TypeError
        When an argument has the wrong type.
    """
    world = ck.integer(world_size, "world_size", minimum=1)
    kw = _keywords(
        batch_size=batch_size, epochs=epochs, lr=lr, weight_decay=weight_decay,
        decay_bias=decay_bias, l2=l2, momentum=momentum, dampening=dampening,
        nesterov=nesterov, maximize=maximize, state=state, shuffle=shuffle,
        random_state=random_state, drop_last=drop_last, sample_weight=sample_weight,
        sharding=sharding, reduce="gather", eval_set=eval_set, target_loss=target_loss,
        backend=backend,
    )  # fmt: skip
    loc = _Local(X, Y, W, b, kw)
    m = loc.x.shape[0]
    if loc.sharding == "batch":
        shard = loc.shard(slice(None), 0)
        counts = np.full(world, m)
        return _run(loc, dict.fromkeys(range(world), shard), world, counts, _simulated_reduce)
    shards = {}
    counts = np.zeros(world)
    for r in range(world):
        sl = shard_rows(m, r, world)
        if sl.stop <= sl.start:
            raise ValueError(f"world_size={world} leaves rank {r} no rows of X's {m}")
        counts[r] = sl.stop - sl.start
        shards[r] = loc.shard(sl, r)
    return _run(loc, shards, world, counts, _simulated_reduce)
