"""Conversions between linsgd models and torch ``nn.Linear`` / ``torch.optim.SGD``.

torch is an optional dependency: it is imported inside the functions only, so that importing
linsgd never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["import_torch", "is_torch_tensor", "linear_to_arrays", "make_linear", "sgd_settings"]

_SGD_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")


def import_torch(what: str) -> Any:
    """Import torch, or raise an ImportError that says what needed it.

    Parameters
    ----------
    what : str
        The feature that needs torch, for the message.

    Returns
    -------
    module
        The ``torch`` module.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            f"{what} needs torch, which is not installed (pip install 'linsgd[torch]')"
        ) from exc
    return torch


def is_torch_tensor(obj: object) -> bool:
    """Tell whether ``obj`` is a torch tensor, without importing torch."""
    return (
        type(obj).__module__.startswith("torch") and hasattr(obj, "detach") and hasattr(obj, "cpu")
    )


def _to_numpy(t: Any) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), copy=True, order="C")


def linear_to_arrays(linear: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Copy the parameters of an ``nn.Linear`` into numpy arrays.

    Parameters
    ----------
    linear : torch.nn.Linear
        The layer (any device); its weight must be float32 or float64.

    Returns
    -------
    W : numpy.ndarray
        Copy of ``linear.weight``, shape ``(out_features, in_features)``.
    b : numpy.ndarray or None
        Copy of ``linear.bias``, shape ``(out_features,)``, or None for ``bias=False``.

    Raises
    ------
    TypeError
        If ``linear`` is not an ``nn.Linear`` or its parameters are not float32/float64.
    """
    torch = import_torch("from_torch")
    if not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    if linear.weight.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"linear.weight must be float32 or float64, got {linear.weight.dtype}; "
            "convert the layer with .float() or .double()"
        )
    if linear.bias is not None and linear.bias.dtype != linear.weight.dtype:
        raise TypeError(
            f"linear.bias has dtype {linear.bias.dtype} but linear.weight has {linear.weight.dtype}"
        )
    W = _to_numpy(linear.weight)
    b = None if linear.bias is None else _to_numpy(linear.bias)
    return W, b


def _find_group(optimizer: Any, param: Any, name: str) -> dict:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise ValueError(f"optimizer does not hold {name}; build it from linear.parameters()")


def sgd_settings(linear: Any, optimizer: Any) -> tuple[dict, dict]:
    """Read the SGD hyper-parameters and momentum buffers of ``optimizer`` for ``linear``.

    Parameters
    ----------
    linear : torch.nn.Linear
        The layer whose parameters the optimizer updates.
    optimizer : torch.optim.SGD
        The optimizer. The weight and the bias may sit in different parameter groups only if
        they differ in ``weight_decay`` alone and the bias group has ``weight_decay=0``
        (torch's way of not decaying the bias), which maps to ``decay_bias=False``.

    Returns
    -------
    params : dict
        Estimator keywords: ``lr``, ``momentum``, ``dampening``, ``weight_decay``,
        ``nesterov``, ``maximize`` and, when the bias is not decayed, ``decay_bias=False``.
    state : dict
        Kernel optimizer state: ``momentum_buffer_W`` (and ``momentum_buffer_b``) as numpy
        copies when the optimizer has taken a momentum step; empty otherwise.

    Raises
    ------
    TypeError
        If ``optimizer`` is not a ``torch.optim.SGD``.
    ValueError
        If it does not hold the layer's parameters, or its groups differ in a way that one
        linsgd model cannot express.
    """
    torch = import_torch("from_torch")
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"optimizer must be a torch.optim.SGD, got {type(optimizer).__name__}")
    gw = _find_group(optimizer, linear.weight, "linear.weight")
    params = {k: gw[k] for k in _SGD_KEYS}
    if isinstance(params["lr"], torch.Tensor):
        params["lr"] = float(params["lr"].item())
    for k in ("lr", "momentum", "dampening", "weight_decay"):
        params[k] = float(params[k])
    for k in ("nesterov", "maximize"):
        params[k] = bool(params[k])
    if linear.bias is not None:
        gb = _find_group(optimizer, linear.bias, "linear.bias")
        if gb is not gw:
            for k in _SGD_KEYS:
                if k == "weight_decay":
                    continue
                vb = float(gb[k].item()) if isinstance(gb[k], torch.Tensor) else gb[k]
                if vb != params[k]:
                    raise ValueError(
                        f"optimizer: the weight and bias groups differ in {k!r} "
                        f"({params[k]!r} vs {vb!r}); linsgd uses one setting for both"
                    )
            wd_b = float(gb["weight_decay"])
            if wd_b == 0.0 and params["weight_decay"] != 0.0:
                params["decay_bias"] = False
            elif wd_b != params["weight_decay"]:
                raise ValueError(
                    "optimizer: the bias group's weight_decay must equal the weight's or be 0, "
                    f"got {wd_b!r} vs {params['weight_decay']!r}"
                )
    state: dict = {}
    buf_w = optimizer.state.get(linear.weight, {}).get("momentum_buffer")
    if buf_w is not None:
        state["momentum_buffer_W"] = _to_numpy(buf_w)
        if linear.bias is not None:
            buf_b = optimizer.state.get(linear.bias, {}).get("momentum_buffer")
            if buf_b is None:
                raise ValueError(
                    "optimizer has a momentum buffer for the weight but not for the bias"
                )
            state["momentum_buffer_b"] = _to_numpy(buf_b)
    return params, state


def make_linear(W: np.ndarray, b: np.ndarray | None) -> Any:
    """Build an ``nn.Linear`` holding copies of ``W`` and ``b`` (dtype kept).

    Parameters
    ----------
    W : numpy.ndarray
        Weight ``(out_features, in_features)``, float32 or float64.
    b : numpy.ndarray or None
        Bias ``(out_features,)``, or None for ``bias=False``.

    Returns
    -------
    torch.nn.Linear
        A CPU layer whose ``weight``/``bias`` equal ``W``/``b`` bit for bit.
    """
    torch = import_torch("to_torch")
    W = np.ascontiguousarray(W)
    U, N = W.shape
    tdtype = torch.float32 if W.dtype == np.float32 else torch.float64
    # built on the meta device: no random initialisation runs, torch's global RNG is left alone
    layer = torch.nn.Linear(N, U, bias=b is not None, dtype=tdtype, device="meta").to_empty(
        device="cpu"
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W.copy()))
        if b is not None:
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b, dtype=W.dtype).copy()))
    return layer
