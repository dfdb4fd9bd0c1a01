"""The step loop of :func:`linsgd.distributed.train` and :func:`~linsgd.distributed.simulate`:
:func:`_run` forms each rank's share of a global batch's gradient, combines the shares through
a reduce (a collective in :func:`_gather_reduce`, the rank-order sum in one process) and
applies the same update on every rank."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import _call
from ..kernels import TrainResult
from ._args import DistributedError, _Local
from ._comm import Communicator
from ._shards import _rows_per_epoch, _Shard, shard_rows

_STATUS = ("completed", "target_loss", "diverged")


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
        rows = [_rows_per_epoch(int(c), bs, loc.drop_last) for c in counts]
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
