"""Per-epoch learning-rate schedules that reproduce ``torch.optim.lr_scheduler`` bit for bit.

Pass a schedule as ``LinearRegressor(lr=...)``. Epoch ``e`` (0-based, counted from the start
of :meth:`~linsgd.LinearRegressor.fit` and continued by ``partial_fit``) is trained with the
learning rate that the torch loop

.. code-block:: python

    opt = torch.optim.SGD(layer.parameters(), lr=base_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)   # or another one
    for epoch in range(epochs):
        for xb, yb in loader:
            ...; opt.step()
        sched.step()

uses in its epoch ``e``: the value of ``opt.param_groups[0]["lr"]`` after ``e`` calls of
``sched.step()``. torch computes these values in Python double precision, most of them
*recursively* from the previous epoch's value (``lr * gamma``), not in closed form
(``base_lr * gamma ** e``); the two differ in the last bits. The classes here evaluate the
same expressions in the same order, so the floats are identical to torch's, and the kernel
then rounds each to the model dtype exactly as torch's SGD does.

A plain callable ``lr(epoch) -> float`` is also accepted by ``LinearRegressor``; it gives the
learning rate of each epoch directly (not a factor, unlike :class:`LambdaLR`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRSchedule", "LambdaLR", "StepLR"]


def _real(value: Any, name: str, *, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


class LRSchedule:
    """Base class: a learning rate per epoch, computed as a torch scheduler computes it.

    Subclasses implement :meth:`_next`, which returns the learning rate of epoch ``epoch``
    given the previous epoch's value (``prev``; the base learning rate for epoch 0), the way
    the torch scheduler's ``get_lr()`` does at ``last_epoch == epoch``.

    Parameters
    ----------
    lr : float
        The base learning rate (``torch.optim.SGD(lr=...)``), >= 0.
    """

    def __init__(self, lr: float) -> None:
        self.lr = _real(lr, "lr", minimum=0.0)

    def _next(self, epoch: int, prev: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def lrs(self, n_epochs: int) -> list[float]:
        """Return the learning rates of epochs ``0 .. n_epochs - 1``.

        Parameters
        ----------
        n_epochs : int
            Number of epochs.

        Returns
        -------
        list of float
            Python floats, bit-equal to ``opt.param_groups[0]["lr"]`` during each epoch of
            the torch loop that calls ``scheduler.step()`` once per epoch.
        """
        n = _int(n_epochs, "n_epochs", minimum=0)
        out: list[float] = []
        cur = self.lr
        for e in range(n):
            cur = self._next(e, cur)
            out.append(cur)
        return out

    def __call__(self, epoch: int) -> float:
        """Return the learning rate of one epoch.

        Parameters
        ----------
        epoch : int
            The 0-based epoch.

        Returns
        -------
        float
            ``self.lrs(epoch + 1)[epoch]``.
        """
        e = _int(epoch, "epoch", minimum=0)
        return self.lrs(e + 1)[e]

    def _params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params() == other._params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))


class StepLR(LRSchedule):
    """The ``StepLR`` of torch: multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Recursive, as torch: ``lr_e = lr_{e-1} * gamma`` when ``e > 0`` and ``e % step_size == 0``,
    else ``lr_{e-1}``.

    Parameters
    ----------
    lr : float
        Base learning rate.
    step_size : int
        Period of the decay, in epochs (>= 1).
    gamma : float, default=0.1
        Multiplicative factor.
    """

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(lr)
        self.step_size = _int(step_size, "step_size", minimum=1)
        self.gamma = _real(gamma, "gamma", minimum=0.0)

    def _next(self, epoch: int, prev: float) -> float:
        if epoch == 0 or epoch % self.step_size != 0:
            return prev
        return prev * self.gamma


class ExponentialLR(LRSchedule):
    """The ``ExponentialLR`` of torch: ``lr_e = lr_{e-1} * gamma`` (recursive, as torch).

    Parameters
    ----------
    lr : float
        Base learning rate.
    gamma : float
        Multiplicative factor per epoch.
    """

    def __init__(self, lr: float, gamma: float) -> None:
        super().__init__(lr)
        self.gamma = _real(gamma, "gamma", minimum=0.0)

    def _next(self, epoch: int, prev: float) -> float:
        return prev if epoch == 0 else prev * self.gamma


class CosineAnnealingLR(LRSchedule):
    """The ``CosineAnnealingLR`` of torch, with torch's recursive formula (and its restart branch).

    For ``e > 0``: when ``(e - 1 - T_max) % (2 * T_max) == 0``,
    ``lr_e = lr_{e-1} + (lr - eta_min) * (1 - cos(pi / T_max)) / 2``; otherwise
    ``lr_e = (1 + cos(pi * e / T_max)) / (1 + cos(pi * (e - 1) / T_max)) * (lr_{e-1} - eta_min)
    + eta_min``. This is what ``scheduler.step()`` computes; it is not bit-equal to the closed
    form ``eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2``.

    Parameters
    ----------
    lr : float
        Base learning rate.
    T_max : int
        Half period, in epochs (>= 1).
    eta_min : float, default=0.0
        Minimum learning rate.
    """

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(lr)
        self.T_max = _int(T_max, "T_max", minimum=1)
        self.eta_min = _real(eta_min, "eta_min", minimum=0.0)

    def _next(self, epoch: int, prev: float) -> float:
        if epoch == 0:
            return prev
        T, eta_min, base = self.T_max, self.eta_min, self.lr
        if (epoch - 1 - T) % (2 * T) == 0:
            return prev + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * epoch / T)) / (1 + math.cos(math.pi * (epoch - 1) / T)) * (
            prev - eta_min
        ) + eta_min


class LambdaLR(LRSchedule):
    """The ``LambdaLR`` of torch: ``lr_e = lr * lr_lambda(e)`` (a factor, in closed form, as torch).

    Parameters
    ----------
    lr : float
        Base learning rate.
    lr_lambda : callable
        ``epoch -> factor``. A lambda makes the estimator unpicklable; use a ``def`` at
        module level (or ``functools.partial``) when the model is to be pickled.
    """

    def __init__(self, lr: float, lr_lambda: Callable[[int], float]) -> None:
        super().__init__(lr)
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda

    def _next(self, epoch: int, prev: float) -> float:
        return self.lr * self.lr_lambda(epoch)
