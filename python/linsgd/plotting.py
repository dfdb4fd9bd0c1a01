"""Loss curves of a fitted :class:`~linsgd.LinearRegressor` (matplotlib, imported lazily)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["plot_history"]


def plot_history(model: Any, ax: Any = None, *, log_scale: bool = False) -> Any:
    """Draw the training (and validation) loss of each epoch of a fitted model.

    Parameters
    ----------
    model : LinearRegressor
        A fitted model (SGD solver), or anything with a ``history_`` dict holding
        ``"train_loss"`` and optionally ``"valid_loss"`` lists.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure and axes when None.
    log_scale : bool, default=False
        Use a logarithmic loss axis.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on: one line ``"train MSE"`` (the mean batch loss of each epoch, as a
        torch loop that averages its ``loss.item()`` values prints it), one
        ``"validation MSE"`` when the model was fitted with a validation set, and a marker at
        ``best_epoch_`` when early stopping kept an epoch.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the model has no history (not fitted, or fitted in closed form).
    """
    hist = getattr(model, "history_", None)
    if not isinstance(hist, dict) or not hist.get("train_loss"):
        raise ValueError("model has no training history to plot: fit it first with solver='sgd'")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "plot_history needs matplotlib, which is not installed (pip install matplotlib)"
        ) from exc
    if ax is None:
        _, ax = plt.subplots()
    train = list(hist["train_loss"])
    epochs = list(range(len(train)))
    ax.plot(epochs, train, marker="o", markersize=3, label="train MSE")
    valid = hist.get("valid_loss")
    if valid:
        ax.plot(epochs, list(valid), marker="o", markersize=3, label="validation MSE")
    best = getattr(model, "best_epoch_", None)
    if best is not None and 0 <= best < len(epochs):
        curve = valid if valid else train
        y = curve[best]
        if not (isinstance(y, float) and math.isnan(y)):
            ax.axvline(best, color="grey", linestyle=":", linewidth=1)
            ax.plot([best], [y], marker="*", markersize=10, color="black", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    if log_scale:
        ax.set_yscale("log")
    ax.set_title(type(model).__name__ + " training history")
    ax.legend()
    return ax
