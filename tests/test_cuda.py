"""The CUDA backend (linsgd._cuda).

Tests marked ``gpu`` need a CUDA device and the ``_cuda`` module; they are skipped, with the
reason, on installs without them. There the device kernels must give the CPU backend's bits
(the same summation orders, see csrc/cuda/sgd.cu), repeat bit for bit, agree with torch's own
CUDA SGD to 2 eps (normwise, over a short run), and update torch CUDA tensors and CuPy arrays
in place. The other tests always run: without a device or without the module, asking for the
CUDA backend raises a ValueError that says which of the two is missing.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest

from helpers import DT_IDS, DTYPES
from reference import dataloader_orders, effective_weight_decay, eps_distance, make_problem

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
from linsgd import _cuda_dispatch, kernels  # noqa: E402
from linsgd._backends import get_backend  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _import_cuda_module():
    try:
        return importlib.import_module("linsgd._cuda")
    except ImportError:
        return None


def _cuda_missing() -> str | None:
    """Why the CUDA backend cannot run here (linsgd's own message), or None when it can."""
    try:
        get_backend("cuda")
    except ValueError as exc:
        return str(exc)
    return None


CUDA_MODULE = _import_cuda_module()
CUDA_MISSING = _cuda_missing()


def gpu(test):
    """Mark a test as needing the CUDA backend; skip it with linsgd's reason when absent."""
    return pytest.mark.gpu(
        pytest.mark.skipif(CUDA_MISSING is not None, reason=str(CUDA_MISSING))(test)
    )


def _torch_cuda():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("this torch build cannot use the CUDA device")
    return torch


HYPER = {
    "plain": dict(),
    "wd": dict(weight_decay=0.05),
    "l2_nodecaybias": dict(l2=0.02, weight_decay=0.01, decay_bias=False),
    "momentum": dict(momentum=0.9, dampening=0.1),
    "nesterov": dict(momentum=0.8, nesterov=True, weight_decay=0.01),
    "maximize": dict(maximize=True, momentum=0.5),
}

# (M, N, U, batch_size): tiny, ragged, wide rows (the blocked dot product, N >= 32), many
# outputs, and a full batch long enough for several levels of the cascade sums.
SHAPES = [(7, 1, 1, 3), (61, 5, 3, 15), (130, 70, 2, 32), (200, 9, 7, 64), (3000, 4, 1, 3000)]
SHAPE_IDS = [f"M{m}-N{n}-U{u}-bs{bs}" for m, n, u, bs in SHAPES]


def _lr(N, hp):
    return 1e-3 / (N + 1) if hp.get("maximize") else 0.05 / (N + 1)


def _run(backend, X, Y, W0, b0, *, copy=True, **kw):
    W = W0.copy() if copy else W0
    b = None if b0 is None else (b0.copy() if copy else b0)
    res = kernels.train(X, Y, W, b, backend=backend, **kw)
    return W, b, res


def _assert_same_run(a, b):
    Wa, ba, ra = a
    Wb, bb, rb = b
    assert np.array_equal(Wa, Wb, equal_nan=True)
    assert (ba is None and bb is None) or np.array_equal(ba, bb, equal_nan=True)
    assert np.array_equal(ra.losses, rb.losses, equal_nan=True)
    if ra.valid_losses is not None or rb.valid_losses is not None:
        assert np.array_equal(ra.valid_losses, rb.valid_losses, equal_nan=True)
    assert (ra.steps, ra.epochs, ra.status) == (rb.steps, rb.epochs, rb.status)


# --------------------------------------------------------------------------------------
# always run: what an install without the CUDA backend says


def test_available_backends_lists_cuda_only_with_module_and_device():
    has_device = CUDA_MODULE is not None and CUDA_MODULE.device_available()
    assert ("cuda" in linsgd.available_backends()) == has_device
    assert (CUDA_MISSING is None) == has_device


def _expected_reason():
    if CUDA_MODULE is None:
        return "built without its _cuda module"
    return "no CUDA device is visible"


@pytest.mark.skipif(CUDA_MISSING is None, reason="the CUDA backend is available here")
@pytest.mark.parametrize("func", ["loss", "gradient", "train", "epoch", "step"])
def test_asking_for_cuda_without_it_names_what_is_missing(func):
    X, Y, W, b = make_problem(8, 3, 1, np.float64, seed=0)
    call = {
        "loss": lambda: kernels.loss(X, Y, W, b, backend="cuda"),
        "gradient": lambda: kernels.gradient(X, Y, W, b, backend="cuda"),
        "train": lambda: kernels.train(X, Y, W, b, batch_size=4, epochs=1, lr=0.1, backend="cuda"),
        "epoch": lambda: kernels.epoch(X, Y, W, b, batch_size=4, lr=0.1, backend="cuda"),
        "step": lambda: kernels.step(X, Y, W, b, lr=0.1, backend="cuda"),
    }[func]
    W_before = W.copy()
    with pytest.raises(ValueError, match="CUDA backend is unavailable") as info:
        call()
    assert _expected_reason() in str(info.value)
    assert np.array_equal(W, W_before)


@pytest.mark.skipif(CUDA_MISSING is None, reason="the CUDA backend is available here")
def test_cuda_from_the_environment_without_it_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("LINSGD_BACKEND", "cuda")
    X, Y, W, b = make_problem(8, 3, 1, np.float64, seed=0)
    with pytest.raises(ValueError, match=_expected_reason()):
        kernels.loss(X, Y, W, b)


@pytest.mark.skipif(CUDA_MODULE is None, reason="linsgd was built without its _cuda module")
def test_cuda_module_reports_device_without_raising():
    assert isinstance(CUDA_MODULE.device_available(), bool)


class _FakeCAI:
    @property
    def __cuda_array_interface__(self):
        return {"shape": (2,), "typestr": "<f8", "data": (0, False), "version": 3}


class _FakeDLPack:
    def __init__(self, kind):
        self.kind = kind

    def __dlpack_device__(self):
        return (self.kind, 0)


def test_is_device_array_recognises_gpu_objects_only():
    is_dev = _cuda_dispatch.is_device_array
    assert not is_dev(np.zeros(3))
    assert not is_dev(None)
    assert not is_dev([1.0, 2.0])
    assert is_dev(_FakeCAI())
    assert is_dev(_FakeDLPack(2))  # kDLCUDA
    assert is_dev(_FakeDLPack(13))  # kDLCUDAManaged
    assert not is_dev(_FakeDLPack(1))  # kDLCPU
    assert _cuda_dispatch.any_device_array(np.zeros(1), None, _FakeCAI())
    assert not _cuda_dispatch.any_device_array(np.zeros(1), None)


def test_as_cuda_arg_keeps_host_arrays_and_device_objects():
    a = np.arange(6.0).reshape(2, 3)
    assert _cuda_dispatch.as_cuda_arg(a, "X") is a
    fake = _FakeCAI()
    assert _cuda_dispatch.as_cuda_arg(fake, "X") is fake
    assert _cuda_dispatch.as_cuda_arg(None, "b") is None
    assert np.array_equal(_cuda_dispatch.as_cuda_arg([[1.0, 2.0]], "X"), np.array([[1.0, 2.0]]))
    y = _cuda_dispatch.as_2d_targets(np.arange(4.0))
    assert y.shape == (4, 1)
    assert _cuda_dispatch.zeros_like(a).shape == (2, 3)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_cpu_tensors_are_not_device_arrays():
    import torch

    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert not _cuda_dispatch.is_device_array(t)
    view = _cuda_dispatch.as_cuda_arg(t, "W")
    assert isinstance(view, np.ndarray)
    view[0] = 1.0
    assert float(t.detach()[0]) == 1.0  # a view of the tensor, not a copy


# --------------------------------------------------------------------------------------
# on the device: the CPU backend's bits


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_gradient_and_loss_equal_cpu_bitwise(dt, shape, with_bias):
    M, N, U, _ = shape
    X, Y, W, b = make_problem(M, N, U, dt, seed=M + N + U)
    b = b if with_bias else None
    gc = kernels.gradient(X, Y, W, b, backend="cuda")
    gh = kernels.gradient(X, Y, W, b, backend="cpp")
    assert gc[0].dtype == np.dtype(dt)
    assert np.array_equal(gc[0], gh[0])
    assert (gc[1] is None and gh[1] is None) or np.array_equal(gc[1], gh[1])
    assert gc[2] == gh[2]
    assert kernels.loss(X, Y, W, b, backend="cuda") == kernels.loss(X, Y, W, b, backend="cpp")


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("hp_name", list(HYPER))
def test_train_equals_cpu_bitwise(dt, shape, hp_name):
    M, N, U, bs = shape
    hp = HYPER[hp_name]
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=7 * M + N)
    Xv, Yv, _, _ = make_problem(23, N, U, dt, seed=5)
    epochs = 3
    kw = dict(
        batch_size=bs,
        epochs=epochs,
        lr=[_lr(N, hp) * f for f in (1.0, 0.5, 0.25)],
        orders=dataloader_orders(11, M, bs, epochs),
        eval_set=(Xv, Yv),
        **hp,
    )
    for bias in (b0, None):
        _assert_same_run(_run("cuda", X, Y, W0, bias, **kw), _run("cpp", X, Y, W0, bias, **kw))


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_sample_weights_equal_cpu_bitwise(dt, shape):
    M, N, U, bs = shape
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=M + 3)
    sw = np.random.default_rng(M).uniform(0.0, 2.0, M).astype(dt)
    sw[: min(bs, M - 1)] = 0.0  # the first batch weighs nothing (unless it is the only one)
    for func in (kernels.gradient, kernels.loss):
        outs = [func(X, Y, W0, b0, sample_weight=sw, backend=be) for be in ("cuda", "cpp")]
        for a, c in zip(*outs) if func is kernels.gradient else [outs]:
            assert np.array_equal(a, c)
    kw = dict(batch_size=bs, epochs=2, lr=_lr(N, {}), momentum=0.5, eval_set=(X, Y))
    runs = [_run(be, X, Y, W0, b0, sample_weight=sw, **kw) for be in ("cuda", "cpp")]
    _assert_same_run(*runs)
    ones = np.ones(M, dt)
    _assert_same_run(
        _run("cuda", X, Y, W0, b0, sample_weight=ones, **kw), _run("cuda", X, Y, W0, b0, **kw)
    )


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_state_carries_momentum_between_calls_as_on_cpu(dt):
    X, Y, W0, b0 = make_problem(40, 6, 2, dt, seed=3)
    runs = {}
    for backend in ("cuda", "cpp"):
        W, b, state = W0.copy(), b0.copy(), {}
        losses = [
            kernels.epoch(
                X, Y, W, b, batch_size=7, lr=0.01, momentum=0.9, state=state, backend=backend
            )
            for _ in range(3)
        ]
        runs[backend] = (W, b, np.concatenate(losses), state["momentum_buffer_W"])
    for a, c in zip(runs["cuda"], runs["cpp"]):
        assert np.array_equal(a, c)


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_target_loss_and_divergence_stop_as_on_cpu(dt):
    X, Y, W0, b0 = make_problem(60, 4, 1, dt, seed=4)
    kw = dict(batch_size=8, epochs=20, lr=0.05)
    first = _run("cpp", X, Y, W0, b0, **kw)[2].losses.ravel()
    target = float(np.sort(first)[len(first) // 2])
    runs = [
        _run(be, X, Y, W0, b0, target_loss=target, eval_set=(X, Y), **kw) for be in ("cuda", "cpp")
    ]
    assert runs[0][2].status == "target_loss"
    _assert_same_run(*runs)
    runs = [_run(be, X, Y, W0, b0, batch_size=8, epochs=50, lr=1e3) for be in ("cuda", "cpp")]
    assert runs[0][2].status == "diverged"
    _assert_same_run(*runs)


# --------------------------------------------------------------------------------------
# on the device: repeatability and torch


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_two_runs_are_bitwise_equal(dt):
    X, Y, W0, b0 = make_problem(5000, 50, 4, dt, seed=9)
    kw = dict(
        batch_size=500, epochs=4, lr=0.01, momentum=0.9, orders=dataloader_orders(1, 5000, 500, 4)
    )
    _assert_same_run(_run("cuda", X, Y, W0, b0, **kw), _run("cuda", X, Y, W0, b0, **kw))


def _torch_cuda_sgd(
    torch,
    X,
    Y,
    W0,
    b0,
    *,
    batch_size,
    epochs,
    lr,
    weight_decay=0.0,
    decay_bias=True,
    l2=0.0,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    maximize=False,
):
    dev = torch.device("cuda")
    tdt = torch.float64 if X.dtype == np.float64 else torch.float32
    U, N = W0.shape
    layer = torch.nn.Linear(N, U, bias=b0 is not None, dtype=tdt, device=dev)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        if b0 is not None:
            layer.bias.copy_(torch.from_numpy(b0))
    groups = [
        {"params": [layer.weight], "weight_decay": effective_weight_decay(weight_decay, l2=l2)}
    ]
    if b0 is not None:
        groups.append(
            {
                "params": [layer.bias],
                "weight_decay": effective_weight_decay(
                    weight_decay, decay_bias=decay_bias, is_bias=True
                ),
            }
        )
    opt = torch.optim.SGD(
        groups, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, maximize=maximize
    )
    mse = torch.nn.MSELoss()
    Xt, Yt = torch.from_numpy(X).to(dev), torch.from_numpy(Y.reshape(len(Y), -1)).to(dev)
    losses = []
    for _ in range(epochs):
        for s in range(0, len(X), batch_size):
            loss = mse(layer(Xt[s : s + batch_size]), Yt[s : s + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    b = None if b0 is None else layer.bias.detach().cpu().numpy()
    return layer.weight.detach().cpu().numpy(), b, np.array(losses)


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("hp_name", ["plain", "wd", "momentum", "nesterov"])
def test_agrees_with_torch_cuda_sgd(dt, hp_name, monkeypatch):
    torch = _torch_cuda()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    hp = HYPER[hp_name]
    X, Y, W0, b0 = make_problem(128, 8, 2, dt, seed=21)
    kw = dict(batch_size=32, epochs=2, lr=_lr(8, hp), **hp)
    W, b, res = _run("cuda", X, Y, W0, b0, **kw)
    tW, tb, tl = _torch_cuda_sgd(torch, X, Y, W0, b0, **kw)
    assert eps_distance(W, tW) <= 2
    assert eps_distance(b, tb) <= 2
    assert eps_distance(res.losses.ravel(), tl.astype(dt)) <= 16


# --------------------------------------------------------------------------------------
# on the device: arrays used in place


def _backend_train(mod, X, Y, W, b, *, lr, bw=None, bb=None, momentum=0.0, order=None):
    """``mod.train`` for one epoch in batches of 5; returns ``(steps, status, losses)``."""
    steps, status, losses, _ = mod.train(
        X, Y, W, b, order, 5, lr, 1, 0.0, True, 0.0, momentum, 0.0, False, False, bw, bb,
        False, None, None, None,
    )  # fmt: skip
    return steps, status, losses


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_torch_cuda_tensors_updated_in_place_without_copies(dt):
    torch = _torch_cuda()
    mod = get_backend("cuda")
    X, Y, W0, b0 = make_problem(23, 4, 2, dt, seed=6)
    steps = -(-23 // 5)
    # host reference through the same module
    W, b, bw, bb = W0.copy(), b0.copy(), np.zeros_like(W0), np.zeros_like(b0)
    *_, losses = _backend_train(mod, X, Y, W, b, lr=0.02, bw=bw, bb=bb, momentum=0.9)

    dev = torch.device("cuda")
    Xt, Yt = torch.from_numpy(X).to(dev), torch.from_numpy(Y).to(dev)
    Wt, bt = torch.from_numpy(W0).to(dev), torch.from_numpy(b0).to(dev)
    bwt, bbt = torch.zeros_like(Wt), torch.zeros_like(bt)
    ptrs = [t.data_ptr() for t in (Xt, Yt, Wt, bt, bwt, bbt)]
    out = _backend_train(mod, Xt, Yt, Wt, bt, lr=0.02, bw=bwt, bb=bbt, momentum=0.9)
    assert out[:2] == (steps, 0) and np.array_equal(out[2], losses)
    assert [t.data_ptr() for t in (Xt, Yt, Wt, bt, bwt, bbt)] == ptrs
    for t, a in ((Wt, W), (bt, b), (bwt, bw), (bbt, bb)):
        assert np.array_equal(t.cpu().numpy(), a)
    # gradient into device outputs, and a layer's parameters through the dispatch helper
    gW, gb = torch.empty_like(Wt), torch.empty_like(bt)
    value = mod.gradient(Xt, Yt, Wt, bt, gW, gb)
    hW, hb, hv = kernels.gradient(X, Y, W, b, backend="cpp")
    assert (
        value == hv
        and np.array_equal(gW.cpu().numpy(), hW)
        and np.array_equal(gb.cpu().numpy(), hb)
    )
    layer = torch.nn.Linear(4, 2, dtype=Wt.dtype, device=dev)
    with pytest.raises(RuntimeError):
        mod.loss(Xt, Yt, layer.weight, layer.bias)  # torch hides the interface behind requires_grad
    Wp = _cuda_dispatch.as_cuda_arg(layer.weight, "W")
    assert Wp.data_ptr() == layer.weight.data_ptr()
    assert mod.loss(Xt, Yt, Wp, _cuda_dispatch.as_cuda_arg(layer.bias, "b")) > 0


@gpu
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_cupy_arrays_updated_in_place_without_copies(dt):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    mod = get_backend("cuda")
    X, Y, W0, b0 = make_problem(23, 4, 2, dt, seed=6)
    steps = -(-23 // 5)
    W, b = W0.copy(), b0.copy()
    *_, losses = _backend_train(mod, X, Y, W, b, lr=0.02)
    Xc, Yc, Wc, bc = (cupy.asarray(a) for a in (X, Y, W0, b0))
    ptrs = [a.data.ptr for a in (Wc, bc)]
    out = _backend_train(mod, Xc, Yc, Wc, bc, lr=0.02)
    assert out[:2] == (steps, 0) and np.array_equal(out[2], losses)
    assert [a.data.ptr for a in (Wc, bc)] == ptrs
    for c, a in ((Wc, W), (bc, b)):
        assert np.array_equal(cupy.asnumpy(c), a)


@gpu
def test_device_arrays_are_checked_like_host_arrays():
    torch = _torch_cuda()
    mod = get_backend("cuda")
    dev = torch.device("cuda")
    X = torch.zeros((6, 3), dtype=torch.float64, device=dev)
    Y = torch.zeros((6, 1), dtype=torch.float64, device=dev)
    W = torch.zeros((1, 3), dtype=torch.float64, device=dev)
    with pytest.raises(TypeError, match="Y must have the same dtype as X"):
        mod.loss(X, Y.float(), W, None)
    with pytest.raises(ValueError, match="W must have shape"):
        mod.loss(X, Y, torch.zeros((2, 3), dtype=torch.float64, device=dev), None)
    with pytest.raises(ValueError, match="X must be C-contiguous"):
        mod.loss(torch.zeros((3, 6), dtype=torch.float64, device=dev).T, Y, W, None)
    with pytest.raises(ValueError, match="shares memory with"):
        _backend_train(mod, X, Y, X[:1], None, lr=0.1)


@gpu
def test_kernels_accept_torch_cuda_tensors():
    """kernels.* route CUDA tensors to the CUDA backend and update them in place."""
    torch = _torch_cuda()
    X, Y, W0, b0 = make_problem(30, 3, 1, np.float64, seed=8, y_1d=True)
    dev = torch.device("cuda")
    Wt, bt = torch.from_numpy(W0).to(dev), torch.from_numpy(b0).to(dev)
    ptr = Wt.data_ptr()
    kernels.epoch(
        torch.from_numpy(X).to(dev),
        torch.from_numpy(Y).to(dev),
        Wt,
        bt,
        batch_size=4,
        lr=0.05,
        momentum=0.9,
        state={},
    )
    Wn, bn = W0.copy(), b0.copy()
    kernels.epoch(X, Y, Wn, bn, batch_size=4, lr=0.05, momentum=0.9, state={}, backend="cpp")
    assert Wt.data_ptr() == ptr
    assert np.array_equal(Wt.cpu().numpy(), Wn) and np.array_equal(bt.cpu().numpy(), bn)


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_split_step_on_the_device(dtype):
    """partial_gradient + update on the CUDA backend: kernels.step's bits (momentum state and
    sample weights included), on device arrays, and the CPU backend's partial bits."""
    torch = _torch_cuda()
    X, Y, W0, b0 = make_problem(37, 5, 3, dtype, 4)
    sw = np.random.default_rng(2).uniform(0.0, 2.0, 37).astype(dtype)
    dev = [torch.from_numpy(a.copy()).cuda() for a in (X, Y, W0, b0, sw)]
    Xd, Yd, W1, b1, swd = dev
    W2, b2 = W1.clone(), b1.clone()
    kw = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, l2=0.005)
    s1: dict = {}
    s2: dict = {}
    for _ in range(3):
        kernels.step(Xd, Yd, W1, b1, state=s1, sample_weight=swd, **kw)
        gW, gb, _ = kernels.partial_gradient(Xd, Yd, W2, b2, n_total=37, sample_weight=swd)
        kernels.update(W2, b2, gW, gb, state=s2, **kw)
    assert torch.equal(W1, W2) and torch.equal(b1, b2)
    gW, gb, sse = kernels.partial_gradient(X[:9], Y[:9], W0, b0, n_total=37, backend="cuda")
    cW, cb, csse = kernels.partial_gradient(X[:9], Y[:9], W0, b0, n_total=37, backend="cpp")
    assert gW.tobytes() == cW.tobytes() and gb.tobytes() == cb.tobytes() and sse == csse
