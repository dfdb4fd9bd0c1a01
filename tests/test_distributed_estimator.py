"""LinearRegressor(comm=...): the same fitted model on every rank, equal to the oracles.

The oracles: the one-process fit (bit for bit at world size 1; within 4 eps normwise, the loss
history within 1e-12 relative in float64, the same steps and stopping epoch from 2 ranks on),
:func:`linsgd.distributed.simulate` (bit for bit with ``reduce="gather"``) and the same fit
with the ranks as threads of this process (``ThreadWorld``, which adds in rank order as the
gather does). Real groups: one gloo launch of 3 local processes on 127.0.0.1 whose subgroups
of 1, 2 and 3 ranks run every case of tests/dist_estimator_cases.py, an mpiexec launch where
mpi4py and mpiexec exist, and NCCL where a GPU exists.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dist_cases import ThreadWorld
from dist_estimator_cases import CASES, data, failures, fit_case, inputs, same_bits
from helpers import HAS_TORCH, collect_rank_results, free_port

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
dist = linsgd.distributed
LinearRegressor = linsgd.LinearRegressor
from sklearn.base import clone  # noqa: E402

WORLDS = [1, 2, 3]
SCRIPT = Path(__file__).with_name("dist_estimator_cases.py")


def _threads(name, world):
    outs = ThreadWorld(world).run(lambda r, c: fit_case(name, c, r, world, capture=False))
    for out in outs:
        assert not isinstance(out, BaseException), out
    return outs


_ONE: dict = {}


def _one_process(name):
    if name not in _ONE:
        _ONE[name] = fit_case(name, None)
    return _ONE[name]


def _simulate(name, world):
    """``simulate`` of a case that runs one fit without stopping rules: its W and losses."""
    (_, N, U, dt), params, _ = CASES[name]
    X, y, sw, _ = inputs(name, 0, 1, one_process=True)
    W, b = np.zeros((U, N), dt), np.zeros(U, dt)
    keys = ("lr", "batch_size", "epochs", "momentum", "nesterov", "weight_decay", "l2")
    kw = {k: params[k] for k in keys if k in params}
    if params.get("shuffle"):
        kw.update(shuffle=True, random_state=params["random_state"])
    res = dist.simulate(
        X, y, W, b, world_size=world, sample_weight=sw,
        sharding=params.get("sharding", "batch"), **kw,
    )  # fmt: skip
    return W, res


def _close_to_one_process(got, one):
    eps = float(np.finfo(got["coef"].dtype).eps)
    p1 = np.concatenate([one["coef"].ravel(), one["intercept"].ravel()]).astype(np.float64)
    p2 = np.concatenate([got["coef"].ravel(), got["intercept"].ravel()]).astype(np.float64)
    assert np.abs(p2 - p1).max() <= 4 * eps * np.abs(p1).max()
    assert (got["n_iter"], got["t"], got["best_epoch"]) == (
        one["n_iter"],
        one["t"],
        one["best_epoch"],
    )
    for key, h1 in one["history"].items():
        h1, h2 = np.array(h1), np.array(got["history"][key])
        assert h1.shape == h2.shape
        tol = 1e-12 if got["coef"].dtype == np.float64 else 64 * eps
        assert np.abs(h2 - h1).max() <= tol * np.abs(h1).max()


def _check_case(name, world, outs):
    """Every rank the same bits; the oracles of the case."""
    for out in outs[1:]:
        assert same_bits(out, outs[0]) is None, name
    got, one = outs[0], _one_process(name)
    sgd = CASES[name][1].get("solver") != "closed_form"
    data_sharding = CASES[name][1].get("sharding") == "data"
    if world == 1:
        assert same_bits(got, one) is None, name
    elif not sgd:  # TSQR: the same optimum, another order of operations
        assert np.allclose(got["coef"], one["coef"], rtol=1e-12, atol=0)
        assert np.allclose(got["intercept"], one["intercept"], rtol=1e-12, atol=0)
    elif not data_sharding:  # data sharding runs other batches than one process
        _close_to_one_process(got, one)
    no_rules = all(k not in CASES[name][1] for k in ("tol", "early_stopping", "target_loss"))
    if sgd and no_rules and "partial" not in CASES[name][2]:
        W, res = _simulate(name, world)
        assert got["coef"].tobytes() == W.reshape(got["coef"].shape).tobytes(), name
        assert got["history"]["train_loss"] == [sum(r) / len(r) for r in res.losses.tolist()]


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("name", list(CASES))
def test_threads(name, world):
    outs = _threads(name, world)
    _check_case(name, world, outs)
    if name == "early-stopping-float64":
        assert outs[0]["n_iter"] < CASES[name][1]["epochs"]  # it did stop early


def test_data_sharding_equals_simulate_with_eval_sets_per_rank():
    """sharding="data": each rank's own eval_set; the validation loss is the global mean."""
    world = 2
    X, y = data(80, 3, 1, np.float64)
    Xv, yv = data(30, 3, 1, np.float64, seed=5)

    def fn(r, c):
        sl, vl = dist.shard_rows(80, r, world), dist.shard_rows(30, r, world)
        est = LinearRegressor(lr=0.05, batch_size=8, epochs=2, comm=c, sharding="data")
        return est.fit(X[sl], y[sl], eval_set=(Xv[vl], yv[vl]))

    outs = ThreadWorld(world).run(fn)
    W, b = np.zeros((1, 3)), np.zeros(1)
    dist.simulate(X, y, W, b, world_size=world, sharding="data", batch_size=8, epochs=2, lr=0.05)
    assert outs[0].coef_.tobytes() == outs[1].coef_.tobytes() == W[0].tobytes()
    want = np.mean((Xv @ W[0] + b[0] - yv) ** 2)
    assert abs(outs[0].history_["valid_loss"][-1] - want) <= 1e-14 * want
    assert outs[0].history_ == outs[1].history_


def test_data_sharding_early_stopping_stops_every_rank_at_the_same_epoch():
    """Each rank sets aside a part of its own rows; the global validation loss decides."""
    world = 3
    X, y = data(301, 4, 1, np.float64)

    def fn(r, c):
        sl = dist.shard_rows(301, r, world)
        est = LinearRegressor(
            lr=0.02, batch_size=8, epochs=60, early_stopping=True, n_iter_no_change=2,
            tol=1e-4, random_state=0, comm=c, sharding="data",
        )  # fmt: skip
        return est.fit(X[sl], y[sl])

    outs = ThreadWorld(world).run(fn)
    assert all(not isinstance(o, BaseException) for o in outs), outs
    assert len({(o.n_iter_, o.t_, o.best_epoch_) for o in outs}) == 1
    assert outs[0].n_iter_ < 60
    assert all(o.coef_.tobytes() == outs[0].coef_.tobytes() for o in outs)
    assert all(o.history_ == outs[0].history_ for o in outs)


@pytest.mark.parametrize("world", WORLDS)
def test_failures_raise_on_every_rank_and_leave_every_model(world):
    outs = ThreadWorld(world).run(lambda r, c: failures(c, r, world))
    _check_failures(world, outs)


def _check_failures(world, outs):
    last = world - 1
    for r, res in enumerate(outs):
        assert not isinstance(res, BaseException), res
        for key in ("bad-input", "diverge", "bad-schedule", "mismatch"):
            assert res[key + "/unchanged"], (r, key)
            assert res[key + "/seconds"] < 30
        assert res["diverge"].startswith("DivergenceError: training diverged")
        if r == last:
            assert res["bad-input"].startswith("ValueError: X contains NaN")
            assert res["bad-schedule"] == "RuntimeError: injected"
        else:
            assert res["bad-input"].startswith(f"DistributedError: rank {last} refused")
            assert res["bad-schedule"].startswith(f"DistributedError: rank {last} ")
            assert "RuntimeError: injected" in res["bad-schedule"]
        if world == 1:
            assert res["mismatch"] is None
        else:
            assert res["mismatch"].startswith("ValueError: the ranks were given different lr")


# ----------------------------------------------------------------------------- sklearn


def _fitted_on_threads():
    X, y = data(40, 3, 1, np.float64)
    tw = ThreadWorld(2)
    outs = tw.run(lambda r, c: LinearRegressor(lr=0.05, epochs=2, comm=c).fit(X, y))
    return outs, X


def test_get_params_clone_and_pickling():
    outs, X = _fitted_on_threads()
    est = outs[0]
    comm = est.comm
    params = est.get_params()
    assert params["comm"] is comm and params["sharding"] == "batch"
    assert params["reduce"] == "gather"
    twin = clone(est)
    assert twin.comm is comm and "coef_" not in twin.__dict__  # shared, not copied
    back = pickle.loads(pickle.dumps(est))  # a connection does not travel: dropped
    assert back.comm is None and est.comm is comm
    assert back.predict(X).tobytes() == est.predict(X).tobytes()
    named = LinearRegressor(comm="torch")
    assert pickle.loads(pickle.dumps(named)).comm == "torch"  # a name is kept
    assert copy.deepcopy(named).comm == "torch"


def test_communicator_adapters_refuse_pickling_and_share_on_copy():
    from dist_cases import FakeMPI, FakeMPIComm

    c = dist.MPICommunicator(FakeMPIComm(ThreadWorld(1), 0), mpi=FakeMPI)
    assert copy.deepcopy(c) is c
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(c)


@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(sharding="rows"), ValueError, "sharding"),
        (dict(reduce="ring"), ValueError, "reduce"),
        (dict(shuffle=True), ValueError, "random_state must be an int"),
        (dict(comm=object()), TypeError, "Communicator"),
    ],
)
def test_bad_parameters(params, exc, match):
    X, y = data(20, 2, 1, np.float64)
    kw = dict(comm=ThreadWorld(1).comm(0), lr=0.05, epochs=1)
    kw.update(params)
    est = LinearRegressor(**kw)
    with pytest.raises(exc, match=match):
        est.fit(X, y)
    assert "coef_" not in est.__dict__


def test_verbose_prints_on_rank_zero_only(capsys):
    X, y = data(40, 3, 1, np.float64)
    tw = ThreadWorld(2)

    def fn(r, c):
        est = LinearRegressor(lr=0.05, epochs=2, verbose=1, comm=c)
        return est.fit(X, y)

    tw.run(fn)
    lines = capsys.readouterr().out.splitlines()
    one = LinearRegressor(lr=0.05, epochs=2, verbose=1).fit(X, y)
    assert lines == capsys.readouterr().out.splitlines()  # the one-process lines, once
    assert len(lines) == 2 and one.n_iter_ == 2


# ----------------------------------------------------------------------------- real groups


def _launch_torch(world, out_dir, kind, timeout=300):
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(
            os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
            WORLD_SIZE=str(world), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(out_dir), kind],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    return collect_rank_results(procs, out_dir, world, timeout)[0]


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch is not installed (pip install torch==2.13.0)")
    return _launch_torch(3, tmp_path_factory.mktemp("gloo_est"), "gloo")


@pytest.mark.parametrize("world", WORLDS)
def test_gloo(gloo_results, world):
    """Subgroups of 1, 2 and 3 processes: every case as the threads give it (bit for bit),
    hence the oracles; the failures raise on every rank; rank 0 alone prints."""
    for name in CASES:
        outs = [gloo_results[r][world][name] for r in range(world)]
        _check_case(name, world, outs)
        threads = _threads(name, world)
        assert same_bits(outs[0], threads[0]) is None, name
    _check_failures(world, [gloo_results[r][world]["/failures"] for r in range(world)])
    printed = [gloo_results[r][world]["tol-verbose-float64"]["printed"] for r in range(world)]
    one = fit_case("tol-verbose-float64", None)["printed"]
    assert printed[0] == one and one.count("\n") == _one_process("tol-verbose-float64")["n_iter"]
    assert all(p == "" for p in printed[1:])


def test_mpi4py():
    pytest.importorskip(
        "mpi4py", reason="mpi4py is not installed (pip install mpi4py mpich gives both)"
    )
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    if not Path(mpiexec).exists():
        pytest.skip("mpiexec is not on PATH (pip install mpich provides one)")
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"linsgd_mpi_{os.getpid()}"
    out_dir.mkdir(exist_ok=True)
    world = 2
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [mpiexec, "-n", str(world), sys.executable, str(SCRIPT), str(out_dir), "mpi"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=str(SCRIPT.parent),
    )
    results = collect_rank_results([proc], out_dir, world, 300)[0]
    for name in CASES:
        outs = [results[r][world][name] for r in range(world)]
        _check_case(name, world, outs)


@pytest.mark.skipif(
    not (HAS_TORCH and __import__("torch").cuda.is_available()),
    reason="no CUDA GPU on this machine: the NCCL path (CUDA staging buffers) is not run",
)
def test_nccl(tmp_path):
    import torch

    world = min(2, torch.cuda.device_count())
    results = _launch_torch(world, tmp_path, "nccl")
    for name in CASES:
        _check_case(name, world, [results[r][world][name] for r in range(world)])
