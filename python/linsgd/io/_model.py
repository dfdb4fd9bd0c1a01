"""The model file: a versioned ``.npz`` (no pickle) that loads back with the same bits."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model"]

FORMAT = "linsgd-model"
FORMAT_VERSION = 1
_HEADER = "__linsgd_model__"


def _json_params(est: Any) -> dict:
    params = est.get_params()
    for k, v in params.items():
        if isinstance(v, np.generic):
            params[k] = v.item()
        elif v is not None and not isinstance(v, (bool, int, float, str)):
            raise ValueError(
                f"save_model stores plain parameters (numbers, strings, None); {k}={v!r} is "
                "not one: set it to a number before saving"
            )
    return params


def save_model(est: Any, path: Any, *, metadata: dict | None = None) -> None:
    """Write a fitted :class:`~linsgd.LinearRegressor` to ``path`` (an ``.npz`` file).

    The file holds a JSON header (``format="linsgd-model"``, ``version``, the parameters,
    the counters, the history, ``metadata``) and the arrays ``coef_``, ``intercept_`` and the
    momentum buffers, exactly, without pickle. :func:`load_model` reads it back bit for bit
    and continues training from it (``partial_fit``) with the same optimizer state.

    Parameters
    ----------
    est : LinearRegressor
        A fitted estimator whose parameters are numbers, strings, booleans or None.
    path : str or os.PathLike
        The file (``.npz`` is not appended).
    metadata : dict, optional
        JSON-serialisable extras kept in the header (the command line keeps the data columns).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "coef_")
    state = getattr(est, "_optimizer_state", {}) or {}
    arrays = {f"state/{k}": v for k, v in state.items() if isinstance(v, np.ndarray)}
    order = getattr(est, "_order_state", None)
    if order is not None and "state" in order:  # the shuffle stream (an MT19937 state)
        arrays["order/key"] = np.asarray(order["state"]["key"])
        order = {"bit_generator": order["bit_generator"], "pos": int(order["state"]["pos"])}
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "params": _json_params(est),
        "n_features_in_": int(est.n_features_in_),
        "n_iter_": int(est.n_iter_),
        "t_": int(est.t_),
        "has_intercept": bool(getattr(est, "_has_intercept", est.fit_intercept)),
        "history_": {k: [float(x) for x in v] for k, v in est.history_.items()},
        "lr_history_": [float(x) for x in est.lr_history_],
        "auto_lr": getattr(est, "_auto_lr", None),
        "state": {k: v for k, v in state.items() if not isinstance(v, np.ndarray)},
        "order": order,
        "metadata": metadata or {},
    }
    with open(os.fspath(path), "wb") as f:
        np.savez(
            f, **{_HEADER: np.array(json.dumps(header))}, coef_=np.asarray(est.coef_),
            intercept_=np.asarray(est.intercept_), **arrays,
        )  # fmt: skip


def load_model(path: Any) -> tuple[Any, dict]:
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    tuple
        ``(estimator, header)``: the fitted :class:`~linsgd.LinearRegressor` and the file's
        JSON header (``header["metadata"]`` holds what ``save_model`` was given).

    Raises
    ------
    ValueError
        When the file is not a linsgd model, or was written by a newer format version.
    """
    from ..estimator import LinearRegressor

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"model file not found: {p!r}")
    try:
        data = np.load(p, allow_pickle=False)
        header = json.loads(str(data[_HEADER])) if _HEADER in data.files else None
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{p!r} is not a linsgd model file: {' '.join(str(exc).split())}"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{p!r} is not a linsgd model file (written by linsgd.io.save_model)")
    if header.get("version") not in range(1, FORMAT_VERSION + 1):
        raise ValueError(
            f"{p!r} is a linsgd model of format version {header.get('version')}; this linsgd "
            f"reads versions up to {FORMAT_VERSION}: upgrade linsgd"
        )
    est = LinearRegressor(**header["params"])
    coef = data["coef_"]
    est.coef_ = coef.copy()
    est.intercept_ = (
        coef.dtype.type(data["intercept_"]) if coef.ndim == 1 else data["intercept_"].copy()
    )
    est._has_intercept = header["has_intercept"]
    est.n_features_in_ = header["n_features_in_"]
    est.n_iter_, est.t_ = header["n_iter_"], header["t_"]
    est.history_ = header["history_"]
    est.lr_history_ = header["lr_history_"]
    est._auto_lr = header["auto_lr"]
    state = dict(header["state"])
    for k in data.files:
        if k.startswith("state/"):
            state[k[len("state/") :]] = data[k].copy()
    est._optimizer_state = state
    order = header.get("order")
    if order is not None and "order/key" in data.files:
        order = {
            "bit_generator": order["bit_generator"],
            "state": {"key": data["order/key"].copy(), "pos": order["pos"]},
        }
    est._order_state = order
    return est, header
