"""linsgd: mini-batch SGD for linear regression, in compiled code, in agreement with torch."""

from __future__ import annotations

from . import kernels
from ._backends import available_backends
from .estimator import LinearRegressor
from .exceptions import DivergenceError

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "LinearRegressor",
    "__version__",
    "available_backends",
    "kernels",
]
