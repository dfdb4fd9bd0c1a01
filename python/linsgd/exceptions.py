"""Exceptions raised by linsgd."""

from __future__ import annotations

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters.

    Raised by :func:`linsgd.kernels.step`, :func:`linsgd.kernels.epoch` and
    :meth:`linsgd.LinearRegressor.fit`. A subclass of :class:`FloatingPointError`, so code
    that already catches floating-point errors catches it too.

    Parameters
    ----------
    message : str
        What happened, and where.
    epoch : int or None, optional
        The 0-based epoch in which training diverged, when known.
    step : int or None, optional
        The 0-based step within that epoch, when known.

    Attributes
    ----------
    epoch : int or None
        The 0-based epoch in which training diverged, when known.
    step : int or None
        The 0-based step within ``epoch``, when known.
    """

    def __init__(
        self, message: str = "", *, epoch: int | None = None, step: int | None = None
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
