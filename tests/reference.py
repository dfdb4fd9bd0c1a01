"""Independent references for the test suite (numpy only; torch imported lazily).

Nothing here imports linsgd: these are the yardsticks the package is measured against.

* ``naive_gradient`` / ``train_reference(exact=False)``: the plain numpy loop
  (``x @ W.T + b``, ``g.T @ x``, ``g.sum(0)``, ``W - lr * (...)``).
* ``exact_gradient`` / ``train_reference(exact=True)``: a bit-exact model of what torch
  computes on CPU (``shared/reference/torch-sgd-semantics.md`` §0 and Appendix A1, A2, A4):
  sequential unfused dot over the features then ``+ b``; ``G = fl(P - Y) * fl(2/(B*U))``;
  ``gW`` summed sequentially over the batch; ``gb`` and the loss by ATen's cascade sum; the
  SGD update with true (emulated) fused multiply-adds.
* ``dataloader_orders``: the row order of ``DataLoader(..., shuffle=True,
  generator=torch.Generator().manual_seed(seed))`` without torch (Appendix A3).
* ``torch_train``: the real torch loop (``nn.Linear`` + ``nn.MSELoss`` + ``torch.optim.SGD``).

Every operation of the exact model is done in the parameter dtype ``T`` and rounds once;
Python-float hyper-parameters are rounded to ``T`` the way torch does (formed in double,
then converted once).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_2d_targets",
    "cascade_sum",
    "dataloader_epoch_batches",
    "dataloader_orders",
    "effective_weight_decay",
    "eps_distance",
    "exact_gradient",
    "fma",
    "forward_seq",
    "grad_w_seq",
    "make_problem",
    "naive_gradient",
    "sgd_update",
    "sum_dim0",
    "torch_train",
    "train_reference",
]


# --------------------------------------------------------------------------------------
# small helpers


def as_2d_targets(Y: np.ndarray) -> np.ndarray:
    """``Y`` as ``(M, U)``: a 1-D target vector becomes one column."""
    Y = np.asarray(Y)
    return Y.reshape(-1, 1) if Y.ndim == 1 else Y


def eps_distance(a, ref) -> float:
    """``max|a - ref| / (eps * max|ref|)``: the normwise distance in units of ``eps(ref.dtype)``."""
    a = np.asarray(a, dtype=np.float64)
    ref_arr = np.asarray(ref)
    eps = float(np.finfo(ref_arr.dtype).eps)
    ref64 = ref_arr.astype(np.float64)
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    diff = float(np.max(np.abs(a - ref64))) if ref64.size else 0.0
    if diff == 0.0:
        return 0.0
    return diff / (eps * scale) if scale > 0 else float("inf")


def make_problem(M: int, N: int, U: int, dtype, seed: int, *, y_1d: bool = False, noise=0.1):
    """A seeded regression problem: ``X ~ N(0,1)``, ``Y = X W* + 0.5 + noise`` with
    ``W* ~ N(0, 1/N)`` (signal and intercept of one scale), and a torch-like initialisation
    ``W0, b0 ~ U(+-1/sqrt(N))``. All arrays in ``dtype``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    W_true = rng.standard_normal((U, N)) / np.sqrt(N)  # signal and intercept of one scale
    Y = X @ W_true.T + 0.5 + noise * rng.standard_normal((M, U))
    bound = 1.0 / np.sqrt(N)
    W0 = rng.uniform(-bound, bound, (U, N))
    b0 = rng.uniform(-bound, bound, U)
    dt = np.dtype(dtype)
    X, Y, W0, b0 = (np.ascontiguousarray(a, dtype=dt) for a in (X, Y, W0, b0))
    if y_1d:
        assert U == 1
        Y = np.ascontiguousarray(Y[:, 0])
    return X, Y, W0, b0


# --------------------------------------------------------------------------------------
# A1: ATen's cascade sum (bias gradient, loss value)


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else int(x - 1).bit_length()


def _multi_row_sum(load, nrows, size, zero):
    # load(i, k): element of row i, column k (a scalar or a lane vector)
    lp = max(4, _ceil_log2(size) // 4)
    step = 1 << lp
    mask = step - 1
    acc = [[zero.copy() for _ in range(nrows)] for _ in range(4)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            for k in range(nrows):
                acc[0][k] = acc[0][k] + load(i, k)
            i += 1
        for j in range(1, 4):
            for k in range(nrows):
                acc[j][k] = acc[j][k] + acc[j - 1][k]
                acc[j - 1][k] = zero.copy()
            if i & (mask << (j * lp)):
                break
    while i < size:
        for k in range(nrows):
            acc[0][k] = acc[0][k] + load(i, k)
        i += 1
    for j in range(1, 4):
        for k in range(nrows):
            acc[0][k] = acc[0][k] + acc[j][k]
    return [acc[0][k] for k in range(nrows)]


def _row_sum(load, size, zero):  # ilp factor 4
    n4 = size // 4
    ps = _multi_row_sum(lambda i, k: load(4 * i + k), 4, n4, zero)
    for i in range(4 * n4, size):
        ps[0] = ps[0] + load(i)
    for k in range(1, 4):
        ps[0] = ps[0] + ps[k]
    return ps[0]


def sum_dim0(g: np.ndarray, vec: int | None = None) -> np.ndarray:
    """``torch.sum(g, 0)`` for a float ``[B, U]`` array, bit for bit (AVX2 lane count)."""
    g = np.ascontiguousarray(g)
    if g.ndim != 2:
        raise ValueError(f"sum_dim0 expects a 2-D array, got shape {g.shape}")
    dt = g.dtype.type
    B, U = g.shape
    vec = vec or 32 // g.dtype.itemsize  # AVX2 lanes, even on AVX-512 hosts
    z = np.zeros((), g.dtype)
    if U == 1:
        x = g[:, 0]
        if B >= vec:
            nv = B // vec
            va = _row_sum(lambda i: x[i * vec : (i + 1) * vec], nv, np.zeros(vec, g.dtype))
            fin = dt(0)
            for k in range(nv * vec, B):
                fin = dt(fin + x[k])
            for k in range(vec):
                fin = dt(fin + va[k])
            return np.array([fin], g.dtype)
        return np.array([_row_sum(lambda i: x[i], B, z)], g.dtype)
    nplain = (4 * vec) * (U // (4 * vec)) if U >= vec else 4 * (U // 4)
    out = []
    for j in range(U):
        if j < nplain:
            out.append(_multi_row_sum(lambda i, k, j=j: g[i, j], 1, B, z)[0])
        else:
            out.append(_row_sum(lambda i, j=j: g[i, j], B, z))
    return np.array(out, g.dtype)


def cascade_sum(x: np.ndarray):
    """``torch.sum(x)`` of a contiguous array (all elements, flattened), as a ``T`` scalar."""
    x = np.ascontiguousarray(x)
    return x.dtype.type(sum_dim0(x.reshape(-1, 1))[0])


# --------------------------------------------------------------------------------------
# A2: exact fused multiply-add in numpy, and the SGD update


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = a * 134217729.0
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _add_round_odd(a, b):  # a + b rounded to odd (float64)
    s, e = _two_sum(a, b)
    fix = (e != 0) & ((s.view(np.int64) & 1) == 0)
    return np.where(fix, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)


def fma(a, b, c) -> np.ndarray:
    """Correctly rounded ``a*b + c`` (one rounding) for float64 or float32 arrays.

    float32: the product is exact in float64, the sum is rounded to odd in float64, then
    rounded once to float32 (exact because 53 >= 24 + 2). float64: Boldo & Melquiond (2008).
    The result has the broadcast shape and the dtype of ``a``.
    """
    a, b, c = np.broadcast_arrays(*map(np.asarray, (a, b, c)))
    shape = a.shape
    if a.dtype == np.float32:
        prod = np.atleast_1d(a.astype(np.float64) * b.astype(np.float64))
        out = _add_round_odd(prod, np.atleast_1d(c.astype(np.float64))).astype(np.float32)
        return out.reshape(shape)
    if a.dtype != np.float64:
        raise TypeError(f"fma: float32 or float64 expected, got {a.dtype}")
    a, b, c = (np.atleast_1d(v.astype(np.float64)) for v in (a, b, c))
    with np.errstate(over="ignore", invalid="ignore"):
        uh, ul = _two_prod(a, b)
        th, tl = _two_sum(c, uh)
        out = th + _add_round_odd(tl, ul)
    return out.reshape(shape)


def effective_weight_decay(weight_decay=0.0, *, l2=0.0, decay_bias=True, is_bias=False) -> float:
    """The coupled decay factor torch's SGD gets for one parameter (a Python float).

    Weights: ``weight_decay + 2*l2`` (Keras's ``L2(l2)`` adds ``2*l2*W`` to the gradient),
    formed in double. Bias: ``weight_decay`` when ``decay_bias`` else 0; ``l2`` never applies.
    """
    if is_bias:
        return float(weight_decay) if decay_bias else 0.0
    return float(weight_decay) + 2.0 * float(l2)


def sgd_update(
    p,
    g,
    buf,
    *,
    lr,
    weight_decay=0.0,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    maximize=False,
    l2=0.0,
    decay_bias=True,
    is_bias=False,
):
    """One ``torch.optim.SGD`` single-tensor step for one parameter (semantics §0).

    ``buf`` is the momentum buffer (``None`` before the first momentum step). Returns
    ``(p_new, buf_new)``; the inputs are not modified.
    """
    p = np.asarray(p)
    dt = p.dtype.type
    wd = effective_weight_decay(weight_decay, l2=l2, decay_bias=decay_bias, is_bias=is_bias)
    d = -np.asarray(g) if maximize else np.asarray(g)
    if wd != 0:
        d = fma(p, dt(wd), d)
    if momentum != 0:
        if buf is None:
            buf = d.copy()
        else:
            buf = fma(d, dt(1.0 - dampening), buf * dt(momentum))
        d = fma(buf, dt(momentum), d) if nesterov else buf
    return fma(d, dt(-lr), p), buf


# --------------------------------------------------------------------------------------
# gradients


def forward_seq(x, W, b):
    """``x W^T (+ b)``: each output a sequential unfused dot over the features, then ``+ b``."""
    acc = np.zeros((x.shape[0], W.shape[0]), x.dtype)
    for j in range(x.shape[1]):
        acc = acc + x[:, j : j + 1] * W[None, :, j]
    return acc if b is None else acc + b


def grad_w_seq(g, x):
    """``g^T x`` with each element a sequential unfused sum over the batch."""
    acc = np.zeros((g.shape[1], x.shape[1]), x.dtype)
    for i in range(x.shape[0]):
        acc = acc + g[i][:, None] * x[i][None, :]
    return acc


def _check_dtypes(X, W):
    if X.dtype not in (np.float32, np.float64) or W.dtype != X.dtype:
        raise TypeError(f"reference: X and W must share float32/float64, got {X.dtype}, {W.dtype}")


def naive_gradient(X, Y, W, b):
    """Plain numpy: ``P = x@W.T + b``, ``g = (P-Y)*fl(2/n)``, ``gW = g.T@x``, ``gb = g.sum(0)``.

    Returns ``(gW, gb, loss)`` (``gb`` None when ``b`` is None; ``loss`` a ``T`` scalar).
    """
    X = np.asarray(X)
    W = np.asarray(W)
    _check_dtypes(X, W)
    dt = X.dtype.type
    Y2 = as_2d_targets(Y)
    P = X @ W.T
    if b is not None:
        P = P + b
    e = P - Y2
    g = e * dt(2.0 / e.size)
    gW = g.T @ X
    gb = None if b is None else g.sum(0)
    return gW, gb, dt(np.mean(e * e))


def exact_gradient(X, Y, W, b):
    """The bit-exact model of torch's CPU gradient (and batch MSE) for one batch.

    ``P`` = sequential unfused dot over features, then ``+ b``; ``e = P - Y``;
    ``G = e * fl(2/(B*U))``; ``gW`` sequential over the batch; ``gb = sum_dim0(G)``;
    ``loss = cascade_sum(e*e) / fl(B*U)``. Returns ``(gW, gb, loss)``.
    """
    X = np.ascontiguousarray(X)
    W = np.asarray(W)
    _check_dtypes(X, W)
    dt = X.dtype.type
    Y2 = as_2d_targets(Y)
    P = forward_seq(X, W, b)
    e = P - Y2
    n = e.size
    G = e * dt(2.0 / n)
    gW = grad_w_seq(G, X)
    gb = None if b is None else sum_dim0(G)
    loss = dt(cascade_sum(e * e) / dt(n))
    return gW, gb, loss


# --------------------------------------------------------------------------------------
# whole training runs


def _epoch_rows(order, epochs, M):
    if order is None:
        return [np.arange(M)] * epochs
    arr = np.asarray(order, dtype=np.int64)
    if arr.ndim == 1:
        return [arr] * epochs
    if arr.ndim == 2 and arr.shape[0] == epochs:
        return list(arr)
    raise ValueError(f"order must be None, (R,) or (epochs, R); got shape {arr.shape}")


def _epoch_lrs(lr, epochs):
    if np.ndim(lr) == 0:
        return [float(lr)] * epochs
    lrs = [float(v) for v in lr]
    if len(lrs) != epochs:
        raise ValueError(f"lr sequence needs {epochs} values, got {len(lrs)}")
    return lrs


def train_reference(
    X,
    Y,
    W,
    b,
    *,
    batch_size,
    epochs,
    lr,
    order=None,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    decay_bias=True,
    l2=0.0,
    nesterov=False,
    maximize=False,
    exact=True,
):
    """Whole epochs of mini-batch SGD; returns ``(W, b, losses)``.

    Batches are consecutive chunks of ``batch_size`` rows of each epoch's order (the last one
    ragged); ``batch_size > R`` is one batch of all rows. ``order`` is None (rows 0..M-1), one
    permutation for every epoch, or an ``(epochs, R)`` array. ``lr`` is a float or one value per
    epoch. ``losses`` is float64 ``(epochs, steps_per_epoch)``: each step's batch loss before its
    update. ``exact=True`` is the bit-exact torch model; ``exact=False`` the plain numpy loop.
    The inputs are not modified.
    """
    X = np.ascontiguousarray(X)
    Y2 = as_2d_targets(np.asarray(Y))
    W = np.array(W, copy=True)
    b = None if b is None else np.array(b, copy=True)
    _check_dtypes(X, W)
    dt = X.dtype.type
    M = X.shape[0]
    rows_per_epoch = _epoch_rows(order, epochs, M)
    lrs = _epoch_lrs(lr, epochs)
    R = len(rows_per_epoch[0]) if epochs else M
    S = -(-R // batch_size)
    losses = np.full((epochs, S), np.nan)
    hyper = dict(
        weight_decay=weight_decay,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
        l2=l2,
        decay_bias=decay_bias,
    )
    wd_W = effective_weight_decay(weight_decay, l2=l2)
    wd_b = effective_weight_decay(weight_decay, decay_bias=decay_bias, is_bias=True)
    bufW = bufb = None
    for ep in range(epochs):
        rows = rows_per_epoch[ep]
        lr_e = lrs[ep]
        for s in range(S):
            idx = rows[s * batch_size : (s + 1) * batch_size]
            xb = np.ascontiguousarray(X[idx])
            yb = np.ascontiguousarray(Y2[idx])
            if exact:
                gW, gb, loss = exact_gradient(xb, yb, W, b)
                W, bufW = sgd_update(W, gW, bufW, lr=lr_e, **hyper)
                if b is not None:
                    b, bufb = sgd_update(b, gb, bufb, lr=lr_e, is_bias=True, **hyper)
            else:
                gW, gb, loss = naive_gradient(xb, yb, W, b)
                W, bufW = _naive_update(
                    W, gW, bufW, dt, lr_e, wd_W, momentum, dampening, nesterov, maximize
                )
                if b is not None:
                    b, bufb = _naive_update(
                        b, gb, bufb, dt, lr_e, wd_b, momentum, dampening, nesterov, maximize
                    )
            losses[ep, s] = float(loss)
    return W, b, losses


def _naive_update(p, g, buf, dt, lr, wd, mu, damp, nesterov, maximize):
    d = -g if maximize else g
    if wd != 0:
        d = d + dt(wd) * p
    if mu != 0:
        buf = d.copy() if buf is None else dt(mu) * buf + dt(1.0 - damp) * d
        d = d + dt(mu) * buf if nesterov else buf
    return p - dt(lr) * d, buf


# --------------------------------------------------------------------------------------
# A3: DataLoader order without the DataLoader


class _TorchCPUGen:
    """``torch.Generator()`` (CPU mt19937) replica."""

    def __init__(self, seed: int):
        self.bg = np.random.MT19937(0)
        self.bg._legacy_seeding(seed & 0xFFFFFFFF)

    def random(self) -> int:  # one raw 32-bit output
        return int(self.bg.random_raw())

    def random64(self) -> int:
        a = self.random()
        b = self.random()
        return (a << 32) | b

    def randperm(self, n: int) -> list[int]:  # ATen randperm_cpu, n < 2**32 / 20
        r = list(range(n))
        for i in range(n - 1):
            z = self.random() % (n - i)
            r[i], r[i + z] = r[i + z], r[i]
        return r


def dataloader_epoch_batches(seed, M, batch_size, epochs, drop_last=False):
    """Appendix A3 as written: per epoch, the list of batches (lists of row indices) of
    ``DataLoader(TensorDataset(...), batch_size, shuffle=True,
    generator=torch.Generator().manual_seed(seed), drop_last=drop_last)``."""
    g = _TorchCPUGen(seed)
    out = []
    for _ in range(epochs):
        g.random64()  # _BaseDataLoaderIter._base_seed
        perm = g.randperm(M)  # RandomSampler
        g.randperm(M)  # trailing randperm(n)[:0] when the epoch is exhausted
        nb = M // batch_size if drop_last else -(-M // batch_size)
        out.append([perm[i * batch_size : (i + 1) * batch_size] for i in range(nb)])
    return out


def dataloader_orders(seed, M, batch_size, epochs, drop_last=False) -> np.ndarray:
    """The same orders as an int64 ``(epochs, R)`` array (``R = M``, or ``M - M % batch_size``
    with ``drop_last``): the form ``kernels.train(orders=...)`` and ``train_reference`` take."""
    batches = dataloader_epoch_batches(seed, M, batch_size, epochs, drop_last)
    R = (M - M % batch_size) if drop_last else M
    out = np.empty((epochs, R), np.int64)
    for e, bl in enumerate(batches):
        out[e] = [i for batch in bl for i in batch]
    return out


# --------------------------------------------------------------------------------------
# the real torch loop


def torch_train(
    X,
    Y,
    W0,
    b0,
    *,
    batch_size,
    epochs,
    lr,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    decay_bias=True,
    nesterov=False,
    maximize=False,
    l2=0.0,
    fit_intercept=None,
    order=None,
):
    """Run ``nn.Linear`` + ``nn.MSELoss`` + ``torch.optim.SGD`` (default single-tensor path).

    ``W0`` ``(U, N)`` and ``b0`` ``(U,)`` (or None) are copied into the layer. Penalties go
    through parameter groups: weights ``weight_decay + 2*l2``, bias ``weight_decay`` (0 with
    ``decay_bias=False``). Batches are fresh contiguous tensors (as a DataLoader's collate
    makes them): ``X[idx]`` from ``order`` (as in ``train_reference``), else consecutive row
    chunks. Returns ``(W, b, losses)`` as numpy (``b`` None without a bias; ``losses`` float64
    ``(epochs, steps_per_epoch)``).
    """
    import torch  # lazy: torch is optional

    X = np.ascontiguousarray(X)
    Y2 = np.ascontiguousarray(as_2d_targets(np.asarray(Y)))
    if fit_intercept is None:
        fit_intercept = b0 is not None
    if fit_intercept and b0 is None:
        raise ValueError("fit_intercept=True needs b0")
    tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[X.dtype]
    U, N = np.shape(W0)
    layer = torch.nn.Linear(N, U, bias=bool(fit_intercept), dtype=tdtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W0, dtype=X.dtype)))
        if fit_intercept:
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b0, dtype=X.dtype)))
    lrs = _epoch_lrs(lr, epochs)
    groups = [
        {"params": [layer.weight], "weight_decay": effective_weight_decay(weight_decay, l2=l2)}
    ]
    if fit_intercept:
        groups.append(
            {
                "params": [layer.bias],
                "weight_decay": effective_weight_decay(
                    weight_decay, decay_bias=decay_bias, is_bias=True
                ),
            }
        )
    opt = torch.optim.SGD(
        groups,
        lr=lrs[0] if lrs else 0.0,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
    )
    mse = torch.nn.MSELoss()
    Xt = torch.from_numpy(X)
    Yt = torch.from_numpy(Y2)
    M = X.shape[0]
    rows_per_epoch = _epoch_rows(order, epochs, M)
    R = len(rows_per_epoch[0]) if epochs else M
    S = -(-R // batch_size)
    losses = np.full((epochs, S), np.nan)
    for ep in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lrs[ep]
        if order is None:
            batches = [
                (Xt[s : s + batch_size].clone(), Yt[s : s + batch_size].clone())
                for s in range(0, M, batch_size)
            ]
        else:
            rows = torch.from_numpy(np.ascontiguousarray(rows_per_epoch[ep]))
            batches = [
                (Xt[rows[s : s + batch_size]], Yt[rows[s : s + batch_size]])
                for s in range(0, R, batch_size)
            ]
        for s, (xb, yb) in enumerate(batches):
            loss = mse(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[ep, s] = loss.item()
    W = layer.weight.detach().numpy().copy()
    b = layer.bias.detach().numpy().copy() if fit_intercept else None
    return W, b, losses
