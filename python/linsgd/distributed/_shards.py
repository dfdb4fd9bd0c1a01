"""How the rows are shared out: :func:`shard_rows` (a rank's contiguous block) and
:class:`_Shard`, the rows one rank reads, epoch by epoch, in its order."""

from __future__ import annotations

import numpy as np


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


def _rows_per_epoch(rows: int, batch_size: int, drop_last: bool) -> int:
    """The rows an epoch visits: all of them, or (``drop_last``) whole batches only."""
    return rows - rows % batch_size if drop_last else rows


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
