"""The per-epoch mean losses of a run, as a training loop's history records them."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from . import _checks as ck

try:
    from ._core import epoch_means as _compiled_epoch_means
except ImportError:  # a numba-only install
    _compiled_epoch_means = None

# The compiled means add in step order, one rounding per term: Python's sum() of floats before
# 3.12. From 3.12 on sum() is compensated (Neumaier) and only sum() itself gives its bits.
if sys.version_info >= (3, 12):
    _compiled_epoch_means = None

__all__ = ["epoch_means"]


def _row_mean(row: list) -> float:
    if not row:
        return math.nan
    total = sum(row)
    if total == total:  # no NaN: the losses are >= 0, so only a NaN makes their sum NaN
        return total / len(row)
    vals = [v for v in row if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def epoch_means(losses: Any) -> list[float]:
    """Average each epoch's step losses, as a training loop's history does.

    The mean of an epoch is ``sum(l) / len(l)`` over the losses of its steps that ran (the
    ``epoch_loss`` of a torch training loop), bit for bit what Python computes; it is
    what :class:`~linsgd.LinearRegressor` records in ``history_["train_loss"]``.

    Parameters
    ----------
    losses : array_like of shape (epochs, steps_per_epoch)
        Batch losses, NaN where a step did not run (``TrainResult.losses``).

    Returns
    -------
    list of float
        One mean per epoch; NaN for an epoch none of whose steps ran.

    Examples
    --------
    >>> import numpy as np
    >>> from linsgd import kernels
    >>> kernels.epoch_means(np.array([[1.0, 2.0, 3.0], [4.0, np.nan, np.nan]]))
    [2.0, 4.0]
    """
    ready = type(losses) is np.ndarray and losses.dtype is ck.F64
    if not (ready and losses.flags.c_contiguous):
        losses = np.ascontiguousarray(losses, dtype=np.float64)
    if losses.ndim != 2:
        raise ValueError(
            f"losses must be a 2-D array (epochs, steps_per_epoch), got shape {losses.shape}"
        )
    if _compiled_epoch_means is not None:
        return _compiled_epoch_means(losses)
    return [_row_mean(row) for row in losses.tolist()]
