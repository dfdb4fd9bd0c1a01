"""Reliability at run time: divergence, Ctrl-C, threads, memory, memory-mapped data.

* Divergence: ``kernels.step``/``epoch`` raise ``DivergenceError`` (a ``FloatingPointError``)
  naming the epoch and step that diverged; ``LinearRegressor`` keeps the model it had.
* Interruption: a SIGINT sent to a running fit (from a timer thread) raises
  ``KeyboardInterrupt`` within a bound, on every CPU backend; the estimator is unchanged.
* Threads: the kernels release the GIL; two threads training two models get the bits they get
  one after the other.
* Resources: no memory growth over 10,000 calls; a ``np.memmap`` is trained on in place of
  being copied.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

from helpers import DT_IDS, DTYPES, skip_unless_backend
from reference import make_problem

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels
from linsgd import DivergenceError, LinearRegressor  # noqa: E402


def _fitted_attrs(est):
    out = {}
    for k in ("coef_", "intercept_", "n_iter_", "t_", "history_", "_optimizer_state"):
        if hasattr(est, k):
            v = getattr(est, k)
            if isinstance(v, dict):
                v = {
                    kk: (
                        vv.copy()
                        if isinstance(vv, np.ndarray)
                        else (list(vv) if isinstance(vv, list) else vv)
                    )
                    for kk, vv in v.items()
                }
            elif isinstance(v, np.ndarray):
                v = v.copy()
            out[k] = v
    return out


def _assert_same_attrs(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, dict):
            assert va.keys() == vb.keys(), k
            for kk in va:
                x, y = va[kk], vb[kk]
                if isinstance(x, np.ndarray):
                    assert np.array_equal(x, y, equal_nan=True), (k, kk)
                else:
                    assert x == y or (x != x and y != y), (k, kk)
        elif isinstance(va, np.ndarray):
            assert np.array_equal(va, vb), k
        else:
            assert va == vb, k


# --------------------------------------------------------------------------------------
# divergence


def _first_divergence(X, Y, W0, b0, lr, batch_size, epochs, backend):
    """(epoch, step, loss_was_finite) of the first step that diverges, found step by step."""
    W, b = W0.copy(), b0.copy()
    M = X.shape[0]
    Y2 = Y.reshape(M, -1)
    S = -(-M // batch_size)
    for e in range(epochs):
        for s in range(S):
            xb, yb = (
                X[s * batch_size : (s + 1) * batch_size],
                Y2[s * batch_size : (s + 1) * batch_size],
            )
            res = kernels.train(
                xb, yb, W, b, batch_size=xb.shape[0], epochs=1, lr=lr, backend=backend
            )
            if res.status == "diverged":
                return e, s, W, b
    return None


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("lr", [1e3, 1e30], ids=["lr1e3", "lr1e30"])
def test_epoch_raises_divergence_error_naming_epoch_and_step(backend, dt, lr):
    X, Y, W0, b0 = make_problem(64, 5, 2, dt, seed=3)
    where = _first_divergence(X, Y, W0, b0, lr, 8, 40, backend)
    assert where is not None, "the learning rate must make this run diverge"
    _, s_exp, W_exp, b_exp = where
    W, b = W0.copy(), b0.copy()
    state: dict = {}
    with pytest.raises(DivergenceError) as info:
        for _ in range(40):
            kernels.epoch(X, Y, W, b, batch_size=8, lr=lr, state=state, backend=backend)
    err = info.value
    assert isinstance(err, FloatingPointError)
    # kernels.epoch counts from 0 in every call: the epoch of the failing call is state-free,
    # so compare the step, and the epoch index within that call (always 0)
    assert err.epoch == 0 and err.step == s_exp
    assert f"step {s_exp}" in str(err)
    assert np.array_equal(W, W_exp, equal_nan=True) and np.array_equal(b, b_exp, equal_nan=True)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_train_reports_divergence_and_epoch_of_train_matches(backend, dt):
    X, Y, W0, b0 = make_problem(40, 3, 1, dt, seed=5)
    e_exp, s_exp, _, _ = _first_divergence(X, Y, W0, b0, 1e12, 8, 30, backend)
    W, b = W0.copy(), b0.copy()
    res = kernels.train(X, Y, W, b, batch_size=8, epochs=30, lr=1e12, backend=backend)
    assert res.status == "diverged"
    k = res.steps if np.isfinite(W).all() and np.isfinite(b).all() else res.steps - 1
    assert divmod(k, res.losses.shape[1]) == (e_exp, s_exp)
    assert res.epochs == k // res.losses.shape[1]


def test_overflowing_data_diverges_at_step_zero_without_update(backend):
    X = np.full((4, 2), 1e300)
    Y = np.zeros(4)
    W = np.ones((1, 2))
    b = np.zeros(1)
    with pytest.raises(DivergenceError) as info:
        kernels.step(X, Y, W, b, lr=0.1, backend=backend)
    assert (info.value.epoch, info.value.step) == (0, 0)
    assert np.array_equal(W, np.ones((1, 2))) and np.array_equal(b, np.zeros(1))
    assert "not applied" in str(info.value)


def test_step_divergence_with_momentum_state_is_left_consistent(backend):
    X, Y, W0, b0 = make_problem(16, 3, 1, np.float64, seed=9)
    W, b = W0.copy(), b0.copy()
    state: dict = {}
    with pytest.raises(DivergenceError):
        for _ in range(200):
            kernels.step(X, Y, W, b, lr=5.0, momentum=0.9, state=state, backend=backend)
    assert state["step"] >= 1


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["plain", "momentum"])
def test_estimator_keeps_its_model_when_fit_or_partial_fit_diverges(backend, momentum):
    X, Y, _, _ = make_problem(60, 4, 1, np.float64, seed=11, y_1d=True)
    kw = dict(batch_size=8, momentum=momentum, backend=backend)
    est = LinearRegressor(lr=0.01, epochs=2, **kw).fit(X, Y)
    before = _fitted_attrs(est)
    est.set_params(lr=1e200)
    with pytest.raises(DivergenceError) as info:
        est.fit(X, Y)
    assert info.value.epoch is not None and info.value.step is not None
    _assert_same_attrs(before, _fitted_attrs(est))
    with pytest.raises(DivergenceError):
        est.partial_fit(X, Y)
    _assert_same_attrs(before, _fitted_attrs(est))
    # the optimizer state survived: one more good epoch equals a run that never diverged
    est.set_params(lr=0.01)
    est.partial_fit(X, Y)
    ref = LinearRegressor(lr=0.01, epochs=2, **kw).fit(X, Y).partial_fit(X, Y)
    assert np.array_equal(est.coef_, ref.coef_) and est.intercept_ == ref.intercept_
    assert (est.n_iter_, est.t_) == (ref.n_iter_, ref.t_)


# --------------------------------------------------------------------------------------
# interruption (SIGINT from a timer thread while a fit runs)

INTERRUPT_BOUND_S = 2.0  # generous: the kernels look every ~50 ms or ~4M multiply-adds


def _run_with_sigint(fn, delay=0.3):
    """Run fn() and SIGINT the main thread after ``delay`` s; return (sent, raised, done)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    times: dict[str, float] = {}
    main = threading.main_thread().ident

    def fire():
        times["sent"] = time.perf_counter()
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(delay, fire)
    try:
        timer.start()
        try:
            fn()
            times["done"] = time.perf_counter()
        except KeyboardInterrupt:
            times["raised"] = time.perf_counter()
        # make sure no SIGINT is still on its way once we restore the old handler
        try:
            timer.join()
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    return times


def _long_problem(dt=np.float64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 48)).astype(dt)
    Y = (X @ rng.standard_normal(48) * 0.1).astype(dt)
    return X, Y


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@pytest.mark.parametrize("how", ["train", "epoch_orders", "estimator"])
def test_sigint_stops_a_long_fit_promptly(backend, how):
    X, Y = _long_problem()
    W = np.zeros((1, 48))
    b = np.zeros(1)
    # each call would run for tens of seconds uninterrupted
    if how == "train":

        def fn():
            kernels.train(X, Y, W, b, batch_size=32, epochs=20000, lr=1e-4, backend=backend)

        times = _run_with_sigint(fn)
        assert np.isfinite(W).all() and np.isfinite(b).all()
    elif how == "epoch_orders":
        # one epoch of 4M shuffled rows (with repeats) of 1024 features: ~8 G multiply-adds
        rng = np.random.default_rng(1)
        Xw = rng.standard_normal((2000, 1024))
        Yw = Xw[:, 0] * 0.5
        Ww = np.zeros((1, 1024))
        order = rng.integers(0, Xw.shape[0], 4_000_000)

        def fn():
            kernels.epoch(
                Xw,
                Yw,
                Ww,
                b,
                batch_size=64,
                lr=1e-4,
                order=order,
                momentum=0.5,
                state={},
                backend=backend,
            )

        times = _run_with_sigint(fn)
    else:
        est = LinearRegressor(lr=1e-4, epochs=2, batch_size=32, backend=backend).fit(
            X[:200], Y[:200]
        )
        before = _fitted_attrs(est)
        est.set_params(epochs=20000)
        times = _run_with_sigint(lambda: est.fit(X, Y))
        _assert_same_attrs(before, _fitted_attrs(est))
    assert "done" not in times, "the fit ended before the signal: make it longer"
    assert "raised" in times, "KeyboardInterrupt never arrived"
    latency = times["raised"] - times["sent"]
    assert latency < INTERRUPT_BOUND_S, f"KeyboardInterrupt took {latency:.2f} s"


def test_numba_chunks_give_the_same_bits_as_one_call(monkeypatch):
    """The numba backend runs long calls in chunks (whole epochs or parts of one); any cut
    gives the bits of one uncut call."""
    skip_unless_backend("numba")
    X, Y, W0, b0 = make_problem(37, 5, 2, np.float64, seed=4)
    Xv, Yv, _, _ = make_problem(11, 5, 2, np.float64, seed=5)
    orders = np.random.default_rng(2).integers(0, 37, (4, 45))
    kw = dict(
        batch_size=4,
        epochs=4,
        lr=[0.01, 0.02, 0.01, 0.005],
        momentum=0.9,
        weight_decay=0.01,
        eval_set=(Xv, Yv),
        backend="numba",
    )

    def run(first_work, seconds, **extra):
        monkeypatch.setattr(linsgd._numba, "_FIRST_CHUNK_WORK", first_work)
        monkeypatch.setattr(linsgd._numba, "_CHUNK_SECONDS", seconds)
        W, b, state = W0.copy(), b0.copy(), {}
        res = kernels.train(X, Y, W, b, state=state, **kw, **extra)
        return W, b, state, res

    calls = []
    real_entry = linsgd._numba._train_entry

    def counting(*a):
        calls.append(a[-1] - a[-2])  # the steps of the chunk
        return real_entry(*a)

    for extra in ({}, {"orders": orders}, {"target_loss": 0.5}):
        W1, b1, s1, r1 = run(1 << 40, 10.0, **extra)
        monkeypatch.setattr(linsgd._numba, "_train_entry", counting)
        calls.clear()
        W2, b2, s2, r2 = run(1, 1e-9, **extra)  # one step per call
        monkeypatch.setattr(linsgd._numba, "_train_entry", real_entry)
        assert len(calls) > 4
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
        assert np.array_equal(s1["momentum_buffer_W"], s2["momentum_buffer_W"])
        assert s1["step"] == s2["step"]
        assert np.array_equal(r1.losses, r2.losses, equal_nan=True)
        assert np.array_equal(r1.valid_losses, r2.valid_losses, equal_nan=True)
        assert (r1.steps, r1.epochs, r1.status) == (r2.steps, r2.epochs, r2.status)


# --------------------------------------------------------------------------------------
# threads


def _train_job(seed, backend, dt=np.float64):
    X, Y, W0, b0 = make_problem(3000, 24, 2, dt, seed=seed)
    W, b = W0.copy(), b0.copy()
    res = kernels.train(
        X, Y, W, b, batch_size=16, epochs=12, lr=1e-3, momentum=0.9, state={}, backend=backend
    )
    return W, b, res.losses


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_two_threads_two_models_give_sequential_bits(backend, dt):
    seq = [_train_job(s, backend, dt) for s in (1, 2)]
    out: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def worker(s):
        try:
            out[s] = _train_job(s, backend, dt)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s, ref in zip((1, 2), seq):
        for a, r in zip(out[s], ref):
            assert np.array_equal(a, r)


def test_kernels_release_the_gil(backend):
    """While a long kernel call runs in a thread, the main thread keeps running Python."""
    X, Y = _long_problem()
    W, b = np.zeros((1, 48)), np.zeros(1)
    kernels.train(X[:64], Y[:64], W, b, batch_size=32, epochs=1, lr=1e-4, backend=backend)  # warm
    # size the run to about a second on this machine
    t0 = time.perf_counter()
    kernels.train(X, Y, W, b, batch_size=32, epochs=20, lr=1e-4, backend=backend)
    epochs = max(20, int(20 * 1.0 / max(time.perf_counter() - t0, 1e-6)))
    done = threading.Event()

    def worker():
        try:
            kernels.train(X, Y, W, b, batch_size=32, epochs=epochs, lr=1e-4, backend=backend)
        finally:
            done.set()

    t = threading.Thread(target=worker)
    gaps = []
    last = time.perf_counter()
    start = last
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        time.sleep(0.001)
    t.join()
    total = time.perf_counter() - start
    if total < 0.3:
        pytest.skip(f"the run took only {total:.2f} s on this machine: too short to judge")
    # holding the GIL for the whole call would show up as one gap as long as the call
    assert max(gaps) < max(0.25, total / 3), (max(gaps), total)


def test_estimators_in_two_threads_and_one_estimator_shared(backend):
    X1, y1, _, _ = make_problem(500, 6, 1, np.float64, seed=1, y_1d=True)
    X2, y2, _, _ = make_problem(700, 3, 2, np.float64, seed=2)
    kw = dict(
        lr=0.01,
        epochs=30,
        batch_size=8,
        momentum=0.5,
        shuffle=True,
        random_state=0,
        backend=backend,
    )
    ref1 = LinearRegressor(**kw).fit(X1, y1)
    ref2 = LinearRegressor(**kw).fit(X2, y2)
    a, b2 = LinearRegressor(**kw), LinearRegressor(**kw)
    shared = LinearRegressor(**kw)
    jobs = [
        lambda: a.fit(X1, y1),
        lambda: b2.fit(X2, y2),
        lambda: shared.fit(X1, y1),
        lambda: shared.fit(X1, y1),
    ]
    errors: list[BaseException] = []

    def run(f):
        try:
            f()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert np.array_equal(a.coef_, ref1.coef_) and a.intercept_ == ref1.intercept_
    assert np.array_equal(b2.coef_, ref2.coef_) and np.array_equal(b2.intercept_, ref2.intercept_)
    # one estimator fitted by two threads at once on the same data: each fit works on its own
    # copies and commits at the end, so the result is that of one fit
    assert np.array_equal(shared.coef_, ref1.coef_) and shared.intercept_ == ref1.intercept_
    assert (shared.n_iter_, shared.t_) == (ref1.n_iter_, ref1.t_)


# --------------------------------------------------------------------------------------
# resources


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def test_no_memory_growth_over_10000_calls(backend):
    X, Y, W0, b0 = make_problem(256, 16, 4, np.float64, seed=1)
    Xs, Ys, _, _ = make_problem(100, 4, 1, np.float64, seed=2, y_1d=True)
    Ws, bs = np.zeros((1, 4)), np.zeros(1)
    Xbad = X.copy()
    Xbad[3, 3] = np.nan
    W, b = W0.copy(), b0.copy()
    order = np.arange(256)[::-1].copy()

    def calls(n):
        for i in range(n):
            kernels.epoch(Xs, Ys, Ws, bs, batch_size=33, lr=1e-3, backend=backend)
            if i % 4 == 0:
                W[...] = W0
                b[...] = b0
                kernels.epoch(
                    X,
                    Y,
                    W,
                    b,
                    batch_size=256,
                    lr=1e-3,
                    momentum=0.5,
                    state={},
                    order=order if i % 8 else None,
                    backend=backend,
                )
                kernels.gradient(X, Y, W, b, backend=backend)
                kernels.loss(X, Y, W, b, backend=backend)
                try:
                    kernels.epoch(Xbad, Y, W, b, batch_size=32, lr=1e-3, backend=backend)
                except ValueError:
                    pass

    calls(500)  # warm up caches, allocator pools, numba dispatch
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        t0 = time.perf_counter()
        calls(10_000)
        elapsed = time.perf_counter() - t0
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    assert grown < 256 * 1024, f"Python-visible memory grew by {grown} bytes"
    rss1 = _rss_bytes()
    if rss0 is not None:
        # C++ allocations are not traced: a leak of the scratch buffers (16 KiB in each of the
        # 2,500 large calls here) would add some 40 MB
        assert rss1 - rss0 < 16 * 1024 * 1024, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
    assert elapsed < 120


def test_no_memory_growth_over_10000_estimator_fits():
    # the default backend (the suite runs again with LINSGD_BACKEND=numba in CI)
    X, y, _, _ = make_problem(50, 3, 1, np.float64, seed=1, y_1d=True)
    est = LinearRegressor(lr=0.01, epochs=2, batch_size=16)
    for _ in range(200):
        est.fit(X, y)
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        for i in range(10_000):
            est.fit(X, y) if i % 2 else est.partial_fit(X, y)
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    assert grown < 256 * 1024, f"Python-visible memory grew by {grown} bytes"
    if rss0 is not None:
        assert _rss_bytes() - rss0 < 16 * 1024 * 1024


def _memmap_problem(tmp_path, dt, mode="r"):
    M, N = 20000, 64
    path = tmp_path / "X.dat"
    X = np.memmap(path, dtype=dt, mode="w+", shape=(M, N))
    rng = np.random.default_rng(0)
    for i in range(0, M, 5000):
        X[i : i + 5000] = rng.standard_normal((5000, N))
    X.flush()
    del X
    Xm = np.memmap(path, dtype=dt, mode=mode, shape=(M, N))
    Y = np.asarray(Xm[:, :1] * 0.5 + 0.1, dtype=dt)
    return Xm, Y


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_memmap_is_trained_on_without_a_copy(backend, tmp_path, dt):
    Xm, Y = _memmap_problem(tmp_path, dt)
    assert not Xm.flags.writeable
    Xc = np.array(Xm)  # the in-memory copy, for the reference result
    W0 = np.zeros((1, Xm.shape[1]), dt)
    Wr, br = W0.copy(), np.zeros(1, dt)
    kernels.train(Xc, Y, Wr, br, batch_size=64, epochs=1, lr=1e-3, backend=backend)
    # warm up (numba compiles its read-only-array variants on first use): not copies
    kernels.train(
        Xm[:64],
        Y[:64],
        W0.copy(),
        np.zeros(1, dt),
        batch_size=64,
        epochs=1,
        lr=1e-3,
        backend=backend,
    )
    kernels.gradient(Xm[:64], Y[:64], W0, None, backend=backend)
    kernels.loss(Xm[:64], Y[:64], W0, None, backend=backend)
    kernels.gradient(Xm[:64], Y[:64], W0, np.zeros(1, dt), backend=backend)
    kernels.loss(Xm[:64], Y[:64], W0, np.zeros(1, dt), backend=backend)
    W, b = W0.copy(), np.zeros(1, dt)
    tracemalloc.start()
    try:
        res = kernels.train(Xm, Y, W, b, batch_size=64, epochs=1, lr=1e-3, backend=backend)
        g = kernels.gradient(Xm, Y, W, b, backend=backend)
        loss = kernels.loss(Xm, Y, W, b, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.status == "completed" and math.isfinite(loss) and np.isfinite(g[0]).all()
    assert peak < Xm.nbytes / 16, f"peak {peak} bytes for X of {Xm.nbytes}: X was copied"
    assert np.array_equal(W, Wr) and np.array_equal(b, br)


def test_memmap_parameters_are_updated_in_place(backend, tmp_path):
    X, Y, W0, b0 = make_problem(40, 3, 1, np.float64, seed=1)
    Wm = np.memmap(tmp_path / "W.dat", dtype=np.float64, mode="w+", shape=W0.shape)
    Wm[...] = W0
    W, b = W0.copy(), b0.copy()
    kernels.train(X, Y, W, b, batch_size=8, epochs=2, lr=0.01, backend=backend)
    bm = b0.copy()
    kernels.train(X, Y, Wm, bm, batch_size=8, epochs=2, lr=0.01, backend=backend)
    Wm.flush()
    assert np.array_equal(np.asarray(Wm), W) and np.array_equal(bm, b)
    again = np.memmap(tmp_path / "W.dat", dtype=np.float64, mode="r", shape=W0.shape)
    assert np.array_equal(np.asarray(again), W)


def test_estimator_reads_memmap_without_copying_it(backend, tmp_path):
    Xm, Y = _memmap_problem(tmp_path, np.float64)
    est = LinearRegressor(lr=1e-3, epochs=1, batch_size=256, backend=backend)
    est.fit(Xm[:100], Y[:100, 0])
    tracemalloc.start()
    try:
        est.fit(Xm, Y[:, 0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # no copy of X (a float64 copy would be Xm.nbytes); the estimator's finiteness check may
    # still allocate one byte per element (1/8 of X)
    assert peak < Xm.nbytes / 2, f"peak {peak} bytes for X of {Xm.nbytes}: X was copied"
    ref = LinearRegressor(lr=1e-3, epochs=1, batch_size=256, backend=backend).fit(
        np.array(Xm), Y[:, 0]
    )
    assert np.array_equal(est.coef_, ref.coef_)
