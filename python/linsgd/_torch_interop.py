"""Conversions between linsgd models and torch ``nn.Linear`` / ``torch.optim.SGD``.

torch is an optional dependency: it is imported inside the functions only, so that importing
linsgd never imports torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from ._shuffle import torch_mt19937

__all__ = [
    "TorchInteropMixin",
    "import_torch",
    "linear_to_arrays",
    "make_linear",
    "make_sgd",
    "sgd_settings",
    "torch_linear_init",
]

if TYPE_CHECKING:  # torch is optional: only type checkers import it here
    import torch

_Est = TypeVar("_Est", bound="TorchInteropMixin")

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


def make_sgd(layer: Any, params: dict, state: dict) -> Any:
    """Build a ``torch.optim.SGD`` for ``layer`` holding linsgd's settings and momentum buffers.

    Parameters
    ----------
    layer : torch.nn.Linear
        The layer the optimizer updates (as built by :func:`make_linear`).
    params : dict
        ``lr`` (a float: the learning rate of the next epoch), ``momentum``, ``dampening``,
        ``nesterov``, ``maximize``, ``weight_decay``, ``decay_bias`` and ``l2``.
    state : dict
        linsgd's optimizer state; its ``momentum_buffer_W`` / ``momentum_buffer_b`` become
        the optimizer's ``momentum_buffer`` of the weight / bias.

    Returns
    -------
    torch.optim.SGD
        One parameter group when the weight and the bias get the same decay; otherwise two,
        the weight's with ``weight_decay + 2 * l2`` (Keras's ``L2(l2)`` as coupled decay) and
        the bias's with ``weight_decay`` or 0, which is how torch expresses linsgd's
        ``l2`` and ``decay_bias=False``.
    """
    torch = import_torch("to_torch(optimizer=True)")
    wd_w = float(params["weight_decay"]) + 2.0 * float(params["l2"])
    wd_b = float(params["weight_decay"]) if params["decay_bias"] else 0.0
    common = {
        "lr": float(params["lr"]),
        "momentum": float(params["momentum"]),
        "dampening": float(params["dampening"]),
        "nesterov": bool(params["nesterov"]),
        "maximize": bool(params["maximize"]),
    }
    if layer.bias is None or wd_w == wd_b:
        opt = torch.optim.SGD(layer.parameters(), weight_decay=wd_w, **common)
    else:
        groups = [
            {"params": [layer.weight], "weight_decay": wd_w},
            {"params": [layer.bias], "weight_decay": wd_b},
        ]
        opt = torch.optim.SGD(groups, **common)
    buf_w = state.get("momentum_buffer_W")
    if buf_w is not None and common["momentum"] != 0.0:
        opt.state[layer.weight]["momentum_buffer"] = torch.from_numpy(np.array(buf_w, copy=True))
        buf_b = state.get("momentum_buffer_b")
        if layer.bias is not None and buf_b is not None:
            opt.state[layer.bias]["momentum_buffer"] = torch.from_numpy(np.array(buf_b, copy=True))
    return opt


# ----------------------------------------------------------------------------- nn.Linear's init


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = a * b

    def split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = v * 134217729.0  # 2**27 + 1 (Veltkamp)
        hi = c - (c - v)
        return hi, v - hi

    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _add_round_to_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s, e = _two_sum(a, b)
    inexact_even = (e != 0) & ((s.view(np.int64) & 1) == 0)
    return np.where(inexact_even, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)


def _fma(x: np.ndarray, y: float, z: float) -> np.ndarray:
    """Correctly rounded ``x * y + z`` (one rounding), elementwise, in ``x``'s dtype.

    float32: the product is exact in float64, the sum is rounded to odd in float64 and then
    rounded once to float32 (exact: 53 >= 2 * 24 + 2). float64: Boldo & Melquiond's
    emulation (error-free product and sum, the low parts added with rounding to odd).
    """
    if x.dtype == np.float32:
        prod = x.astype(np.float64) * np.float64(y)
        return _add_round_to_odd(prod, np.full_like(prod, np.float64(z))).astype(np.float32)
    yy = np.full_like(x, y)
    zz = np.full_like(x, z)
    uh, ul = _two_prod(x, yy)
    th, tl = _two_sum(zz, uh)
    return th + _add_round_to_odd(tl, ul)


def _uniform_(bitgen: np.random.MT19937, count: int, low: float, high: float, dt: np.dtype):
    """``tensor.uniform_(low, high)`` on CPU for ``count`` elements, in element order.

    ATen's ``uniform_real_distribution<T>``: float64 takes one ``random64()`` (two raw
    32-bit outputs, the first one high) and keeps 53 bits, float32 takes one ``random()`` and
    keeps 24 bits; ``x = bits * 2**-digits``, then ``x * (to - from) + from`` in ``T``, which
    torch's AVX2 / AVX-512 kernels compute as one fused multiply-add.
    """
    frm = dt.type(low)
    to = dt.type(high)
    if dt == np.float64:
        raw = np.asarray(bitgen.random_raw(2 * count), dtype=np.uint64).reshape(count, 2)
        bits = ((raw[:, 0] << np.uint64(32)) | raw[:, 1]) & np.uint64((1 << 53) - 1)
        x = bits.astype(np.float64) * (2.0**-53)
    else:
        raw = np.asarray(bitgen.random_raw(count), dtype=np.uint64)
        x = (raw & np.uint64((1 << 24) - 1)).astype(np.float32) * np.float32(2.0**-24)
    return _fma(x, float(dt.type(to - frm)), float(frm))


def torch_linear_init(
    n_features: int, n_outputs: int, seed: int, dtype: Any = np.float64, *, bias: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``nn.Linear``'s default initial parameters after ``torch.manual_seed(seed)``, without torch.

    ``nn.Linear.reset_parameters`` draws the weight from ``kaiming_uniform_(a=sqrt(5))``,
    which is ``U(-1/sqrt(N), 1/sqrt(N))`` with the bound computed as torch computes it
    (``sqrt(3) * sqrt(2 / (1 + a**2)) / sqrt(N)`` in Python floats), and then the bias from
    ``U(-1/sqrt(N), 1/sqrt(N))``, both from torch's default CPU generator (``mt19937``
    seeded with ``seed``), element by element in memory order.

    Parameters
    ----------
    n_features : int
        ``in_features`` (N).
    n_outputs : int
        ``out_features`` (U).
    seed : int
        The ``torch.manual_seed`` seed (its low 32 bits).
    dtype : float32 or float64
        The parameter dtype (``nn.Linear(..., dtype=...)``).
    bias : bool, default=True
        Whether to draw a bias.

    Returns
    -------
    W : ndarray of shape (n_outputs, n_features)
    b : ndarray of shape (n_outputs,) or None

    Notes
    -----
    The values are bit for bit those of torch's CPU generator on machines where torch runs
    its AVX2 or AVX-512 kernels (every x86-64 CPU of the last decade), which fuse
    ``x * (to - from) + from`` into one FMA; under ``ATEN_CPU_CAPABILITY=default`` torch
    rounds twice and the last bit can differ.
    """
    dt = np.dtype(dtype)
    bitgen = torch_mt19937(seed)
    a = math.sqrt(5)
    gain = math.sqrt(2.0 / (1 + a**2))
    bound_w = math.sqrt(3.0) * (gain / math.sqrt(n_features))
    W = _uniform_(bitgen, n_outputs * n_features, -bound_w, bound_w, dt).reshape(
        n_outputs, n_features
    )
    if not bias:
        return np.ascontiguousarray(W), None
    bound_b = 1 / math.sqrt(n_features) if n_features > 0 else 0.0
    b = _uniform_(bitgen, n_outputs, -bound_b, bound_b, dt)
    return np.ascontiguousarray(W), np.ascontiguousarray(b)


class TorchInteropMixin:
    """``from_torch``/``to_torch`` for :class:`~linsgd.LinearRegressor`: a torch layer (and its
    SGD optimizer) in, a fitted estimator out, and back."""

    @classmethod
    def from_torch(
        cls: type[_Est],
        linear: torch.nn.Linear,
        optimizer: torch.optim.SGD | None = None,
        **params: Any,
    ) -> _Est:
        """Build a fitted-state estimator holding a torch layer's parameters.

        Parameters
        ----------
        linear : torch.nn.Linear
            The layer; its weight and bias are copied (dtype kept: float32 or float64).
        optimizer : torch.optim.SGD, optional
            Its ``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` and
            ``maximize`` become the estimator's (a bias group with ``weight_decay=0`` becomes
            ``decay_bias=False``), and its momentum buffers (when it has taken steps) become
            the optimizer state that :meth:`partial_fit` continues from.
        **params
            Further estimator parameters; they override the values read from the optimizer.
            ``dtype`` defaults to the layer's dtype, ``fit_intercept`` to whether it has a bias.

        Returns
        -------
        LinearRegressor
            An estimator that predicts like the layer; ``coef_`` is 1-D when the layer has
            one output. Continuing with :meth:`partial_fit` continues the torch run.
        """
        W, b = linear_to_arrays(linear)
        kw: dict[str, Any] = {"dtype": str(W.dtype), "fit_intercept": b is not None}
        state: dict = {}
        if optimizer is not None:
            hp, state = sgd_settings(linear, optimizer)
            kw.update(hp)
        kw.update(params)
        est: Any = cls(**kw)  # a LinearRegressor (the mixin's one user), typed as cls
        est._set_params_attrs(W, b, single=W.shape[0] == 1)
        est.n_features_in_ = W.shape[1]
        est.n_iter_ = 0
        est.t_ = 0
        est.history_ = {"train_loss": []}
        est.lr_history_ = []
        est.best_epoch_ = None
        est._optimizer_state = state
        est._order_state = None
        return est

    @overload
    def to_torch(self, optimizer: Literal[False] = ...) -> torch.nn.Linear: ...

    @overload
    def to_torch(self, optimizer: Literal[True]) -> tuple[torch.nn.Linear, torch.optim.SGD]: ...

    @overload
    def to_torch(
        self, optimizer: bool
    ) -> torch.nn.Linear | tuple[torch.nn.Linear, torch.optim.SGD]: ...

    def to_torch(
        self, optimizer: bool = False
    ) -> torch.nn.Linear | tuple[torch.nn.Linear, torch.optim.SGD]:
        """Return a ``torch.nn.Linear`` holding the fitted parameters (dtype kept).

        Parameters
        ----------
        optimizer : bool, default=False
            Also return a ``torch.optim.SGD`` over the layer with this estimator's settings
            and its momentum buffers, so that training can continue in torch exactly where
            linsgd stopped (``lr`` is the learning rate of the next epoch, ``n_iter_``).

        Returns
        -------
        torch.nn.Linear or tuple (torch.nn.Linear, torch.optim.SGD)
            ``nn.Linear(n_features, n_outputs, bias=fit_intercept)`` on the CPU whose weight is
            ``coef_`` (as a ``(n_outputs, n_features)`` matrix) and whose bias is
            ``intercept_``; with ``optimizer=True`` also the optimizer. Building them does
            not touch torch's global random state.
        """
        from sklearn.utils.validation import check_is_fitted

        from ._params import learning_rates, validated_params

        check_is_fitted(self, "coef_")
        if not isinstance(optimizer, (bool, np.bool_)):
            raise TypeError(f"optimizer must be a bool, got {type(optimizer).__name__}")
        W, b = self._params_from_attrs()
        layer = make_linear(W, b)
        if not optimizer:
            return layer
        p = validated_params(self)
        p["auto_lr"] = getattr(self, "_auto_lr", None)
        if p["lr"] == "auto" and p["auto_lr"] is None:
            raise ValueError(
                "lr='auto' is computed from the training data: fit the model first, or set a "
                "numeric lr, before to_torch(optimizer=True)"
            )
        p["lr"] = learning_rates(p, int(getattr(self, "n_iter_", 0)), 1)[0]
        opt = make_sgd(layer, p, getattr(self, "_optimizer_state", {}) or {})
        return layer, opt
