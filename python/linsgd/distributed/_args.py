"""The arguments of :func:`linsgd.distributed.train`, checked on each rank and compared across
the ranks: :class:`_Local` (one rank's checked arguments), :func:`agree` (one allgather that
carries either values or a rank's error) and :class:`DistributedError`."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _call
from .. import _checks as ck
from .._backends import resolve_backend
from .._shuffle import TorchDataLoaderOrder
from ..schedules import LRSchedule
from ._comm import Communicator
from ._shards import _rows_per_epoch, _Shard

_SHARDINGS = ("batch", "data")
_REDUCES = ("gather", "allreduce")
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
        self.rows_per_epoch = _rows_per_epoch(self.x.shape[0], self.batch_size, self.drop_last)

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
        rpe = _rows_per_epoch(m, self.batch_size, self.drop_last)
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
