"""How ``LinearRegressor(comm=...)`` pickles and clones: a communicator is this process's
connection to its group, so it neither travels in a pickle nor is copied by ``clone``."""

from __future__ import annotations

from typing import Any

__all__ = ["CommParamMixin"]


class CommParamMixin:
    """Pickling drops a communicator object (``"torch"`` and None are kept: they name no
    connection); :func:`sklearn.base.clone` gives the clone the same communicator."""

    comm: Any

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # type: ignore[misc]
        if not (state.get("comm") is None or isinstance(state["comm"], str)):
            state = dict(state, comm=None)
        return state

    def __sklearn_clone__(self) -> Any:
        comm = self.comm
        self.comm = None
        try:
            new = super().__sklearn_clone__()  # type: ignore[misc]
        finally:
            self.comm = comm
        new.comm = comm
        return new
