"""Synchronous data-parallel mini-batch SGD: :func:`train` on a communicator, :func:`simulate`
in one process.

Both run the same loop. Every step, each rank forms its rows' share of the global batch's
gradient (:func:`linsgd.kernels.partial_gradient`, normalised by the global batch), packs
``[gW | gb | sse | failed]`` into one buffer and takes part in one collective; the shares are
added in rank order and every rank applies the same update (:func:`linsgd.kernels.update`), so
the parameters are the same bits on every rank.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _call
from .. import _checks as ck
from .._backends import resolve_backend
from .._shuffle import TorchDataLoaderOrder
from ..kernels import TrainResult
from ..schedules import LRSchedule
from ._comm import Communicator, as_communicator

__all__ = ["DistributedError", "shard_rows", "simulate", "train"]

_SHARDINGS = ("batch", "data")
_REDUCES = ("gather", "allreduce")
_STATUS = ("completed", "target_loss", "diverged")
_MESSAGE_BYTES = 240
_FIELDS = 28  # at least len(_Local.signature())
_ROWS_FIELD = 2  # the signature's row count


class DistributedError(RuntimeError):
    """Another rank failed: its arguments were refused or its step raised.

    Parameters
    ----------
    message : str
        What failed, and where.
    ranks : sequence of int
        The ranks that failed.

    Attributes
    ----------
    ranks : list of int
        The ranks that failed.
    """

    def __init__(self, message: str, ranks: Sequence[int]) -> None:
        super().__init__(message)
        self.ranks = list(ranks)


def shard_rows(n: int, rank: int, world_size: int) -> slice:
    """The contiguous rows of ``n`` that rank ``rank`` of ``world_size`` takes.

    The shards' sizes differ by at most one, the first ``n % world_size`` ranks taking one
    more (``numpy.array_split``'s layout); a shard may be empty when ``n < world_size``.

    Parameters
    ----------
    n : int
        Rows to share.
    rank : int
        This rank, ``0 <= rank < world_size``.
    world_size : int
        The number of ranks.

    Returns
    -------
    slice
        The rows ``start:stop`` of rank ``rank``'s shard.
    """
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


# ----------------------------------------------------------------------------- checks


def _rates(lr: Any, epochs: int) -> np.ndarray:
    if isinstance(lr, LRSchedule):
        lr = lr.lrs(epochs)
    elif callable(lr):
        lr = [lr(e) for e in range(epochs)]
    r = _call._learning_rates(lr, epochs)
    return np.full(epochs, r) if isinstance(r, float) else r


def _crc(*arrays: Any) -> float:
    c = 0
    for a in arrays:
        if a is not None:
            c = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), c)
    return float(c)


class _Local:
    """One rank's checked arguments (or, for :func:`simulate`, the whole data set's)."""

    def __init__(self, X, Y, W, b, kw: dict) -> None:
        self.x, self.y = _call._data(X, Y, True)
        self.w, self.bias = _call._params(W, b, self.x, self.y, True)
        self.sw = _call._sample_weight(kw["sample_weight"], self.x)
        self.epochs = ck.integer(kw["epochs"], "epochs", minimum=0)
        self.batch_size = ck.integer(kw["batch_size"], "batch_size", minimum=1)
        self.rates = _rates(kw["lr"], self.epochs)
        self.hyper = _call._hyper(
            kw["weight_decay"], kw["decay_bias"], kw["l2"], kw["momentum"], kw["dampening"],
            kw["nesterov"], kw["maximize"],
        )  # fmt: skip
        self.shuffle = ck.flag(kw["shuffle"], "shuffle")
        self.drop_last = ck.flag(kw["drop_last"], "drop_last")
        self.seed = kw["random_state"]
        if self.shuffle:
            self.seed = ck.integer(self.seed, "random_state", minimum=0)
        if kw["sharding"] not in _SHARDINGS:
            raise ValueError(f"sharding must be one of {_SHARDINGS}, got {kw['sharding']!r}")
        if kw["reduce"] not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {kw['reduce']!r}")
        self.sharding, self.reduce = kw["sharding"], kw["reduce"]
        self.target = ck.real(kw["target_loss"], "target_loss", allow_none=True)
        ev = kw["eval_set"]
        if ev is not None and not (isinstance(ev, (tuple, list)) and len(ev) == 2):
            raise TypeError("eval_set must be a pair (X_valid, Y_valid)")
        self.xv, self.yv = (
            (None, None) if ev is None else _call._eval_arrays(ev, self.x, self.y, True)
        )
        state = kw["state"]
        if state is not None and not isinstance(state, dict):
            raise TypeError(f"state must be a dict or None, got {type(state).__name__}")
        self.state = state
        self.bw = self.bb = None
        self.initialized = False
        if self.hyper[3] != 0.0:
            self.bw, self.bb, self.initialized = _call._momentum_buffers(
                state, self.w, self.bias, False
            )
        _, self.mod = resolve_backend(kw["backend"])
        if not hasattr(self.mod, "partial_gradient"):
            raise ValueError("linsgd.distributed runs on the cpp and numba backends only")
        rows = self.x.shape[0]
        self.rows_per_epoch = rows - rows % self.batch_size if self.drop_last else rows

    def signature(self) -> list[tuple[str, float, bool]]:
        """(name, value, whether every rank must give the same value)."""
        batch = self.sharding == "batch"
        h = self.hyper
        return [
            ("sharding", float(_SHARDINGS.index(self.sharding)), True),
            ("reduce", float(_REDUCES.index(self.reduce)), True),
            ("the number of rows of X", float(self.x.shape[0]), batch),
            ("the number of features", float(self.x.shape[1]), True),
            ("the number of outputs", float(self.y.shape[1]), True),
            ("the dtype", float(self.x.dtype.itemsize), True),
            ("whether b is given", float(self.bias is not None), True),
            ("batch_size", float(self.batch_size), True),
            ("epochs", float(self.epochs), True),
            ("weight_decay", h[0], True),
            ("decay_bias", float(h[1]), True),
            ("l2", h[2], True),
            ("momentum", h[3], True),
            ("dampening", h[4], True),
            ("nesterov", float(h[5]), True),
            ("maximize", float(h[6]), True),
            ("the momentum state", float(self.initialized), True),
            ("shuffle", float(self.shuffle), True),
            ("random_state", -1.0 if self.seed is None else _crc(np.int64(self.seed)), True),
            ("drop_last", float(self.drop_last), True),
            ("whether sample_weight is given", float(self.sw is not None), True),
            ("target_loss", np.inf if self.target is None else self.target, True),
            ("lr", _crc(self.rates), True),
            ("the initial W and b", _crc(self.w, self.bias), True),
            ("the momentum buffers", _crc(self.bw, self.bb), True),
            ("X, Y and sample_weight", _crc(self.x[:1], self.x[-1:], self.y, self.sw), batch),
            ("eval_set", _crc(self.xv, self.yv), True),
        ]

    def shard(
        self, sl: slice, seed_offset: int, order_gen: TorchDataLoaderOrder | None = None
    ) -> _Shard:
        """The rows ``sl`` as a shard, shuffled (when asked) by ``order_gen``, which continues
        its stream, or else a generator seeded with ``random_state + seed_offset``."""
        x, y = self.x[sl], self.y[sl]
        m = x.shape[0]
        orders = None
        if self.shuffle and self.epochs:
            gen = TorchDataLoaderOrder(self.seed + seed_offset) if order_gen is None else order_gen
            orders = gen.orders(m, self.epochs)
        rpe = m - m % self.batch_size if self.drop_last else m
        return _Shard(x, y, None if self.sw is None else self.sw[sl], rpe, orders)


def _status_buffer(values: Sequence[float], error: BaseException | None) -> np.ndarray:
    """The buffer of the argument exchange: ``[ok | values | message]``."""
    n = _FIELDS
    buf = np.zeros(n + 1 + _MESSAGE_BYTES)
    buf[0] = 1.0 if error is None else 0.0
    buf[1 : 1 + len(values)] = values
    if error is not None:
        text = f"{type(error).__name__}: {error}".encode()[:_MESSAGE_BYTES]
        buf[n + 1 : n + 1 + len(text)] = np.frombuffer(text, np.uint8)
    return buf


def agree(
    comm: Communicator,
    values: Sequence[float],
    error: BaseException | None = None,
    what: str = "failed",
) -> np.ndarray:
    """Exchange up to ``_FIELDS`` floats (or this rank's ``error``) in one allgather shaped as
    :func:`train`'s argument exchange, so that a rank that failed on its own meets the others
    in any of them; raise :class:`DistributedError` on the ranks that did not fail, ``error``
    on the one that did (the others' message: ``rank r {what} (its error)``). Returns the
    ``(world_size, len(values))`` values."""
    everyone = comm.allgather(_status_buffer(values, error))
    failed = [r for r in range(comm.world_size) if everyone[r, 0] != 1.0]
    if error is not None:
        raise error
    if failed:
        r = failed[0]
        raw = everyone[r, _FIELDS + 1 :].astype(np.uint8)
        text = bytes(raw).rstrip(b"\0").decode(errors="replace")
        raise DistributedError(f"rank {r} {what} ({text})", failed)
    return everyone[:, 1 : 1 + len(values)]


def _exchange_checks(comm: Communicator, make: Callable[[], _Local]) -> tuple[_Local, np.ndarray]:
    """Check this rank's arguments and compare them with every other rank's, in one allgather;
    raise on every rank when one refused its arguments or the ranks disagree."""
    if comm.world_size == 1:
        local = make()
        return local, np.array([float(local.x.shape[0])])
    try:
        local = make()
        sig = local.signature()
        error = None
    except Exception as exc:  # every rank must hear of it before it is raised
        local, sig, error = None, [], exc
    everyone = agree(comm, [v for _, v, _ in sig], error, "refused its arguments")
    for k, (name, _, same) in enumerate(sig):
        col = everyone[:, k]
        if same and not np.all(col == col[0]):
            raise ValueError(
                f"the ranks were given different {name}: every rank must pass the same "
                f"(rank 0 differs from rank {int(np.argmax(col != col[0]))})"
            )
    return local, everyone[:, _ROWS_FIELD]  # the ranks' row counts


# ----------------------------------------------------------------------------- the loop


class _Shard:
    """The rows one rank reads: all of them (sharding="batch") or its own ("data")."""

    def __init__(self, x, y, sw, rows_per_epoch: int, orders: np.ndarray | None) -> None:
        self.x, self.y, self.sw = x, y, sw
        self.rows_per_epoch = rows_per_epoch
        self.orders = orders

    def rows(self, e: int, lo: int, hi: int) -> tuple | None:
        """Rows ``lo:hi`` of epoch ``e``'s order, or None when there are none."""
        hi = min(hi, self.rows_per_epoch)
        if hi <= lo:
            return None
        if self.orders is None:
            sl = slice(lo, hi)
            return self.x[sl], self.y[sl], None if self.sw is None else self.sw[sl]
        idx = self.orders[e, lo:hi]
        return self.x[idx], self.y[idx], None if self.sw is None else self.sw[idx]

    def weight_sum(self, e: int, lo: int, hi: int) -> float:
        """The weights of rows ``lo:hi`` of epoch ``e``, summed in order in double, as the
        kernels sum a batch's weights."""
        part = self.rows(e, lo, hi)
        return 0.0 if part is None else float(np.cumsum(part[2], dtype=np.float64)[-1])


def _rank_order_sum(parts: np.ndarray) -> np.ndarray:
    """Rows of ``parts`` added in rank order, in their dtype: the same bits on every rank."""
    total = parts[0].copy()
    for r in range(1, parts.shape[0]):
        total += parts[r]
    return total


def _run(
    loc: _Local, shards: dict[int, _Shard], world: int, counts: np.ndarray, reduce: Callable
) -> TrainResult:
    """The training loop over the ranks in ``shards`` (one in :func:`train`, all of them in
    :func:`simulate`); ``reduce(parts)`` combines their packed buffers into the global one."""
    x, w, bias, mod = loc.x, loc.w, loc.bias, loc.mod
    dt = x.dtype.type
    u, n = w.shape
    length = u * n + (0 if bias is None else u) + 2
    bs = loc.batch_size
    batch = loc.sharding == "batch"
    if batch:
        rows = [loc.rows_per_epoch]
    else:
        rows = [int(c) - int(c) % bs if loc.drop_last else int(c) for c in counts]
    if min(rows) < 1:
        raise ValueError("drop_last leaves no rows to train on: batch_size exceeds the rows")
    steps_per_epoch = -(-rows[0] // min(bs, rows[0])) if batch else max(-(-r // bs) for r in rows)
    bs_eff = min(bs, rows[0]) if batch else bs
    losses = np.full((loc.epochs, steps_per_epoch), np.nan)
    valid = None if loc.xv is None else np.full(loc.epochs, np.nan)
    h = loc.hyper
    use_mom = h[3] != 0.0
    initialized = loc.initialized
    steps, status = 0, 0
    for e in range(loc.epochs):
        lr = float(loc.rates[e])
        wtot = None
        if loc.sw is not None and not batch:
            local = np.zeros((world, steps_per_epoch))
            for r, sh in shards.items():
                local[r] = [sh.weight_sum(e, k * bs, (k + 1) * bs) for k in range(steps_per_epoch)]
            gathered = reduce(local, weights=True)
            wtot = [
                sum(float(gathered[r, k]) for r in range(world)) for k in range(steps_per_epoch)
            ]
        for k in range(steps_per_epoch):
            if batch:
                lo, hi = k * bs_eff, min((k + 1) * bs_eff, rows[0])
                n_total = hi - lo
                wt = None if loc.sw is None else next(iter(shards.values())).weight_sum(e, lo, hi)
            else:
                n_total = sum(min(max(r - k * bs, 0), bs) for r in rows)
                wt = None if wtot is None else wtot[k]
            parts = np.zeros((world, length), dtype=dt)
            for r, sh in shards.items():
                if batch:
                    share = shard_rows(n_total, r, world)
                    part = sh.rows(e, lo + share.start, lo + share.stop)
                else:
                    part = sh.rows(e, k * bs, (k + 1) * bs)
                if part is None:
                    continue
                buf = parts[r]
                gw = buf[: u * n].reshape(u, n)
                gb = None if bias is None else buf[u * n : u * n + u]
                try:
                    buf[-2] = mod.partial_gradient(*part[:2], w, bias, gw, gb, n_total, part[2], wt)
                except BaseException:
                    buf[-1] = 1.0  # tell the other ranks, in the collective they wait in
                    reduce(parts, failed=True)
                    raise
            total = reduce(parts)
            weight = float(n_total) if wt is None else wt
            loss = dt(0.0) if weight == 0.0 else dt(total[-2]) / dt(float(u) * weight)
            losses[e, k] = float(loss)
            if not np.isfinite(loss):
                status = 2
                break
            gwt = total[: u * n].reshape(u, n)
            gbt = None if bias is None else total[u * n : u * n + u]
            finite = mod.update(w, bias, gwt, gbt, lr, *h, loc.bw, loc.bb, initialized)
            initialized = initialized or use_mom
            steps += 1
            if not finite:
                status = 2
                break
            if loc.target is not None and float(loss) < loc.target:
                status = 1
                break
        if status:
            break
        if valid is not None:
            valid[e] = float(mod.loss(loc.xv, loc.yv, w, bias, None))
    if loc.state is not None:
        _call._keep_state(loc.state, loc.bw, loc.bb, loc.initialized, steps)
    return TrainResult(
        losses, valid, steps, loc.epochs if status == 0 else steps // steps_per_epoch,
        _STATUS[status],
    )  # fmt: skip


def _gather_reduce(comm: Communicator, kind: str) -> Callable:
    """The collective of :func:`train`: this rank's row of ``parts`` to every rank. A rank
    whose step failed takes part too, with its flag raised, then raises its own error."""
    me = comm.rank
    if comm.world_size == 1:  # nothing to exchange: skip the collective's latency
        return _simulated_reduce

    def reduce(parts: np.ndarray, *, weights: bool = False, failed: bool = False):
        if weights:  # once per epoch: every rank's weight sums
            return comm.allgather(parts[me])
        buf = parts[me]
        if kind == "allreduce":
            comm.allreduce_sum(buf)
            everyone = None
            bad = [] if buf[-1] == 0 else [-1]
        else:
            everyone = comm.allgather(buf)
            bad = [r for r in range(comm.world_size) if everyone[r, -1] != 0]
        if failed:
            return None
        if bad:
            who = "a rank" if bad == [-1] else f"rank {bad[0]}"
            raise DistributedError(f"{who} failed during a step; every rank stops", bad)
        return buf if everyone is None else _rank_order_sum(everyone)

    return reduce


def _simulated_reduce(parts: np.ndarray, *, weights: bool = False, failed: bool = False):
    return parts if weights or failed else _rank_order_sum(parts)


# ----------------------------------------------------------------------------- public API


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
