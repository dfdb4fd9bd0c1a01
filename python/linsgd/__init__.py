"""linsgd: mini-batch SGD for linear regression, in compiled code, in agreement with torch."""

from __future__ import annotations

from . import conventions, kernels, metrics, schedules
from ._backends import available_backends
from ._closed_form import RankDeficientWarning, closed_form
from .estimator import LinearRegressor
from .exceptions import DivergenceError
from .plotting import plot_history

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "LinearRegressor",
    "RankDeficientWarning",
    "__version__",
    "available_backends",
    "closed_form",
    "conventions",
    "kernels",
    "metrics",
    "plot_history",
    "schedules",
]
