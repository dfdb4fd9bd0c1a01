"""linsgd.distributed: train on a group equals simulate bit for bit, on every rank.

Three communicators: ``ThreadWorld`` (ranks as threads in this process: every case at world
sizes 1-4, and the failure paths), an mpi4py-shaped fake over it (the MPI adapter), and real
gloo groups of local processes on 127.0.0.1 (the torch adapter; one launch per world size,
bounded by a timeout). The cases are in tests/dist_cases.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dist_cases import (
    CASES,
    GLOO_CASES,
    FakeMPI,
    FakeMPIComm,
    ThreadWorld,
    run_case,
    same_bits,
    simulate_case,
)
from helpers import HAS_TORCH, collect_rank_results, free_port, needs_torch
from reference import make_problem

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
dist = linsgd.distributed
kernels = linsgd.kernels
from linsgd._shuffle import dataloader_orders  # noqa: E402
from linsgd.schedules import StepLR  # noqa: E402

WORLDS = [1, 2, 3, 4]


def _on_threads(name, world, **extra):
    return ThreadWorld(world).run(lambda r, c: run_case(name, r, world, c, **extra))


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("name", list(CASES))
def test_gather_equals_simulate_on_every_rank(name, world):
    expected = simulate_case(name, world)
    for rank, got in enumerate(_on_threads(name, world)):
        assert not isinstance(got, BaseException), got
        assert same_bits(got, expected) is None, (rank, same_bits(got, expected))
    assert expected["status"] == "completed" and expected["steps"] > 0


@pytest.mark.parametrize("world", [2, 3])
def test_allreduce_is_the_same_on_every_rank(world):
    """Summed in another order than rank order, the ranks still hold the same bits."""
    tw = ThreadWorld(world, reverse_sum=True)
    outs = tw.run(lambda r, c: run_case("full-schedule-float32", r, world, c, reduce="allreduce"))
    for got in outs[1:]:
        assert same_bits(got, outs[0]) is None
    if world == 2:  # two terms: a + b == b + a
        assert same_bits(outs[0], simulate_case("full-schedule-float32", 2)) is None


def test_one_collective_per_step():
    tw = ThreadWorld(3)
    outs = tw.run(lambda r, c: run_case("weighted-shuffled-float64", r, 3, c))
    steps = outs[0]["steps"]
    assert tw.calls == [1 + steps] * 3  # the argument exchange, then one per step


def test_data_sharding_collectives():
    """sharding="data" with weights: one more collective per epoch (the weight sums)."""
    tw = ThreadWorld(2)
    outs = tw.run(lambda r, c: run_case("data-weighted-shuffled-float64", r, 2, c))
    assert tw.calls == [1 + outs[0]["epochs"] + outs[0]["steps"]] * 2


# ----------------------------------------------------------------------------- one process


def _one_process(X, Y, W, b, **kw):
    state: dict = {}
    res = kernels.train(X, Y, W, b, state=state, **kw)
    return res, state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_rank_is_kernels_train(dtype):
    """World size 1 is kernels.train bit for bit: shuffled (the DataLoader replica), weighted,
    momentum + nesterov + decay + l2, a schedule, drop_last, eval_set."""
    X, Y, W0, b0 = make_problem(61, 4, 2, dtype, 0)
    sw = np.random.default_rng(1).uniform(0, 2, 61).astype(dtype)
    ev = make_problem(9, 4, 2, dtype, 5)[:2]
    hyper = dict(momentum=0.9, nesterov=True, weight_decay=0.01, l2=0.005)
    sched = StepLR(0.05, 1, 0.5)
    rows = 61 - 61 % 8
    W1, b1 = W0.copy(), b0.copy()
    ref, s1 = _one_process(
        X, Y, W1, b1, batch_size=8, epochs=3, lr=sched.lrs(3), sample_weight=sw,
        orders=dataloader_orders(4, 61, 3)[:, :rows], eval_set=ev, **hyper,
    )  # fmt: skip
    W2, b2 = W0.copy(), b0.copy()
    s2: dict = {}
    got = dist.simulate(
        X, Y, W2, b2, world_size=1, batch_size=8, epochs=3, lr=sched, sample_weight=sw,
        shuffle=True, random_state=4, drop_last=True, eval_set=ev, state=s2, **hyper,
    )  # fmt: skip
    assert W1.tobytes() == W2.tobytes() and b1.tobytes() == b2.tobytes()
    assert ref.losses.tobytes() == got.losses.tobytes()
    assert ref.valid_losses.tobytes() == got.valid_losses.tobytes()
    assert (ref.steps, ref.epochs, ref.status) == (got.steps, got.epochs, got.status)
    assert s1["momentum_buffer_W"].tobytes() == s2["momentum_buffer_W"].tobytes()
    assert s1["step"] == s2["step"]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_against_one_process(world, dtype):
    """The same batches and steps as one process: parameters within 4 eps normwise (the sum
    over ranks is the only change of order), losses within 1e-12 relative in float64."""
    X, Y, W0, b0 = make_problem(997, 13, 3, dtype, 2)
    kw = dict(batch_size=64, epochs=3, lr=0.02, momentum=0.9, weight_decay=1e-3)
    W1, b1 = W0.copy(), b0.copy()
    ref, _ = _one_process(X, Y, W1, b1, orders=dataloader_orders(7, 997, 3), **kw)
    W2, b2 = W0.copy(), b0.copy()
    got = dist.simulate(X, Y, W2, b2, world_size=world, shuffle=True, random_state=7, **kw)
    assert (got.steps, got.epochs, got.status) == (ref.steps, ref.epochs, ref.status)
    eps = float(np.finfo(dtype).eps)
    p1 = np.concatenate([W1.ravel(), b1]).astype(np.float64)
    p2 = np.concatenate([W2.ravel(), b2]).astype(np.float64)
    assert np.abs(p2 - p1).max() <= 4 * eps * np.abs(p1).max()
    rel = np.abs(got.losses - ref.losses).max() / np.abs(ref.losses).max()
    assert rel <= (1e-12 if dtype == np.float64 else 64 * eps)


def test_data_sharding_one_rank_is_one_process():
    X, Y, W0, b0 = make_problem(47, 4, 2, np.float64, 0)
    W1, b1, W2, b2 = W0.copy(), b0.copy(), W0.copy(), b0.copy()
    ref, _ = _one_process(X, Y, W1, b1, batch_size=4, epochs=2, lr=0.05)
    got = dist.simulate(
        X, Y, W2, b2, world_size=1, sharding="data", batch_size=4, epochs=2, lr=0.05
    )
    assert W1.tobytes() == W2.tobytes() and ref.losses.tobytes() == got.losses.tobytes()


def test_data_sharding_is_the_concatenated_batches():
    """Step k of sharding="data" is the one-process step on [rank 0's batch k, rank 1's ...]:
    at two ranks with uneven shards (24 and 23 rows, batch 4), the one-process run over that
    order reaches the same parameters to a few eps, and the step counts agree."""
    X, Y, W0, b0 = make_problem(47, 4, 1, np.float64, 3)
    W1, b1, W2, b2 = W0.copy(), b0.copy(), W0.copy(), b0.copy()
    got = dist.simulate(
        X, Y, W2, b2, world_size=2, sharding="data", batch_size=4, epochs=1, lr=0.05
    )
    shards = [np.arange(24), np.arange(24, 47)]
    order = np.concatenate(
        [np.concatenate([s[k * 4 : (k + 1) * 4] for s in shards]) for k in range(6)]
    )
    steps_rows = [sum(len(s[k * 4 : (k + 1) * 4]) for s in shards) for k in range(6)]
    W, b = W1, b1
    for k in range(6):
        lo = sum(steps_rows[:k])
        kernels.step(
            X[order[lo : lo + steps_rows[k]]], Y[order[lo : lo + steps_rows[k]]], W, b, lr=0.05
        )
    assert got.steps == 6
    assert np.abs(W2 - W1).max() <= 8 * np.finfo(np.float64).eps * np.abs(W1).max()


# ----------------------------------------------------------------------------- failures


def _plain(rank, world):
    return CASES["plain-float64"](rank, world)


def test_bad_input_on_one_rank_raises_everywhere():
    def fn(r, c):
        (X, Y, W, b), kw = _plain(r, 3)
        if r == 1:
            X = X.copy()
            X[0, 0] = np.inf
        return dist.train(X, Y, W, b, comm=c, **kw)

    outs = ThreadWorld(3).run(fn)
    assert isinstance(outs[1], ValueError) and "X contains NaN or infinity" in str(outs[1])
    for r in (0, 2):
        assert isinstance(outs[r], dist.DistributedError) and outs[r].ranks == [1]
        assert "rank 1 refused its arguments (ValueError: X contains NaN" in str(outs[r])


@pytest.mark.parametrize(
    "change, what",
    [
        (dict(lr=0.06), "lr"),
        (dict(momentum=0.5), "momentum"),
        (dict(batch_size=8), "batch_size"),
        (dict(shuffle=True, random_state=1), "shuffle"),
        (dict(W="perturbed"), "the initial W and b"),
        (dict(X="other"), "X, Y and sample_weight"),
        (dict(dtype=np.float32), "the dtype"),
    ],
)
def test_arguments_that_differ_raise_everywhere(change, what):
    def fn(r, c):
        (X, Y, W, b), kw = _plain(r, 2)
        if r == 1:
            kw.update({k: v for k, v in change.items() if k not in ("W", "X", "dtype")})
            if "W" in change:
                W[0, 0] += 1e-9
            if "X" in change:
                X = X.copy()
                X[-1, 0] += 1.0
            if "dtype" in change:
                X, Y, W, b = (a.astype(np.float32) for a in (X, Y, W, b))
        return dist.train(X, Y, W, b, comm=c, **kw)

    for out in ThreadWorld(2).run(fn):
        assert isinstance(out, ValueError), out
        assert f"different {what}" in str(out)


def test_divergence_stops_every_rank_at_the_same_step():
    def fn(r, c):
        (X, Y, W, b), kw = _plain(r, 3)
        kw.update(lr=1e6, epochs=50)
        return dist.train(X, Y, W, b, comm=c, **kw)

    outs = ThreadWorld(3).run(fn)
    assert {o.status for o in outs} == {"diverged"}
    assert len({o.steps for o in outs}) == 1
    assert all(np.array_equal(o.losses, outs[0].losses, equal_nan=True) for o in outs)


def test_target_loss_stops_every_rank_at_the_same_step():
    def fn(r, c):
        (X, Y, W, b), kw = _plain(r, 2)
        kw.update(epochs=40, target_loss=0.2)
        res = dist.train(X, Y, W, b, comm=c, **kw)
        return res, W.copy()

    outs = ThreadWorld(2).run(fn)
    (r0, w0), (r1, w1) = outs
    assert r0.status == r1.status == "target_loss" and r0.steps == r1.steps
    assert r0.losses.ravel()[r0.steps - 1] < 0.2 <= np.nanmin(r0.losses.ravel()[: r0.steps - 1])
    assert w0.tobytes() == w1.tobytes()


def test_failure_during_a_step_raises_everywhere(monkeypatch):
    core = linsgd._core
    real = core.partial_gradient
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky(*args):
        if threading.current_thread().name.endswith("rank2"):
            with lock:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise MemoryError("injected")
        return real(*args)

    monkeypatch.setattr(core, "partial_gradient", flaky)
    tw = ThreadWorld(3)

    def fn(r, c):
        threading.current_thread().name = f"rank{r}"
        (X, Y, W, b), kw = _plain(r, 3)
        return dist.train(X, Y, W, b, comm=c, **kw)

    outs = tw.run(fn)
    assert isinstance(outs[2], MemoryError)
    for r in (0, 1):
        assert isinstance(outs[r], dist.DistributedError) and outs[r].ranks == [2]
    assert tw.calls == [1 + 3] * 3  # the exchange, two steps, the failed one: nobody waits


@pytest.mark.parametrize(
    "kw, exc, name",
    [
        (dict(sharding="rows"), ValueError, "sharding"),
        (dict(reduce="ring"), ValueError, "reduce"),
        (dict(shuffle=True), TypeError, "random_state"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(eval_set=[1]), TypeError, "eval_set"),
        (dict(drop_last=True, batch_size=500), ValueError, "drop_last"),
    ],
)
def test_bad_arguments(kw, exc, name):
    (X, Y, W, b), base = _plain(0, 1)
    base.update(kw)
    world = ThreadWorld(1)
    with pytest.raises(exc, match=name):
        dist.train(X, Y, W, b, comm=world.comm(0), **base)


def test_as_communicator_refuses_other_objects():
    with pytest.raises(TypeError, match="Communicator"):
        dist.as_communicator(object())
    with pytest.raises(ValueError, match="torch"):
        dist.as_communicator("mpi")


def test_shard_rows():
    for n in range(0, 12):
        for world in range(1, 6):
            sizes = [len(range(n)[dist.shard_rows(n, r, world)]) for r in range(world)]
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
            starts = [dist.shard_rows(n, r, world).start for r in range(world)]
            assert starts == sorted(starts)


# ----------------------------------------------------------------------------- MPI


@pytest.mark.parametrize("reduce", ["gather", "allreduce"])
def test_mpi_adapter_over_a_fake_communicator(reduce):
    world = 3
    tw = ThreadWorld(world)
    comms = [FakeMPIComm(tw, r) for r in range(world)]

    def fn(r, _):
        c = dist.MPICommunicator(comms[r], mpi=FakeMPI)
        return run_case("small-batches-float32", r, world, c, reduce=reduce)

    outs = tw.run(fn)
    for got in outs[1:]:
        assert same_bits(got, outs[0]) is None
    if reduce == "gather":
        assert same_bits(outs[0], simulate_case("small-batches-float32", world)) is None
        assert set(comms[0].log) == {"Allgather"}
    else:
        assert set(comms[0].log) == {"Allgather", "Allreduce"}
    buf = np.arange(4.0) + comms[0].Get_rank()
    outs = tw.run(lambda r, _: _bcast(dist.MPICommunicator(comms[r], mpi=FakeMPI), r))
    assert all(np.array_equal(o, np.full(4, 2.0)) for o in outs) and buf is not None


def _bcast(c, r):
    buf = np.full(4, float(r))
    c.broadcast(buf, root=2)
    return buf


def test_real_mpi4py():
    pytest.importorskip(
        "mpi4py",
        reason="mpi4py is not installed (pip install mpi4py mpich, in the test extra); the "
        "adapter is tested over a fake communicator above",
    )
    from mpi4py import MPI

    c = dist.as_communicator(MPI.COMM_SELF)
    buf = np.arange(3.0)
    c.allreduce_sum(buf)
    assert np.array_equal(buf, np.arange(3.0)) and c.world_size == 1


# ----------------------------------------------------------------------------- gloo


def _launch(world, out_dir, crash_rank, timeout=240):
    port = free_port()
    script = Path(__file__).with_name("dist_cases.py")
    procs = []
    for rank in range(world):
        env = dict(
            os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
            WORLD_SIZE=str(world), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(out_dir), str(crash_rank)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    results, _ = collect_rank_results(procs, out_dir, world, timeout)
    return results, [p.returncode for p in procs]


@pytest.fixture(scope="module", params=WORLDS, ids=[f"W{w}" for w in WORLDS])
def gloo_run(request, tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch is not installed (pip install torch==2.13.0)")
    world = request.param
    crash = world - 1 if world >= 2 else -1
    results, codes = _launch(world, tmp_path_factory.mktemp(f"gloo{world}"), crash)
    return world, results, codes


@needs_torch
def test_gloo_gather_equals_simulate(gloo_run):
    world, results, _ = gloo_run
    for name in GLOO_CASES:
        expected = simulate_case(name, world)
        for rank in range(world):
            assert same_bits(results[rank][name], expected) is None, (name, rank)
            allreduced = results[rank][name + "/allreduce"]
            assert same_bits(allreduced, results[0][name + "/allreduce"]) is None
            if world <= 2:
                assert same_bits(allreduced, expected) is None


@needs_torch
def test_gloo_one_collective_per_step(gloo_run):
    world, results, _ = gloo_run
    # the argument exchange, then one per step (none at all on one rank)
    assert all(results[r]["/calls"] == (1 + 2 * 7 if world > 1 else 0) for r in range(world))


@needs_torch
def test_gloo_failures_raise_on_every_rank(gloo_run):
    world, results, codes = gloo_run
    bad = world - 1
    for r in range(world):
        msg = results[r]["/bad-input"]
        if r == bad:
            assert msg.startswith("ValueError: X contains NaN")
        else:
            assert msg.startswith(f"DistributedError: rank {bad} refused its arguments")
        if world > 1:
            assert results[r]["/mismatch"].startswith(
                "ValueError: the ranks were given different lr"
            )
    if world >= 2:  # the last rank exits mid-run: the others raise, well within the timeout
        assert codes[-1] == 3
        for r in range(world - 1):
            assert results[r]["/crash"] is not None
            assert results[r]["/crash-seconds"] < 30


def test_simulate_on_every_backend(backend):
    """The loop runs each backend's partial_gradient and update: the same bits on each."""
    args, kw = CASES["data-weighted-shuffled-float32"](0, 1)
    kw = dict(kw, backend=backend)
    X, Y, W, b = args
    got = dist.simulate(X, Y, W, b, world_size=3, **kw)
    args2, kw2 = CASES["data-weighted-shuffled-float32"](0, 1)
    X2, Y2, W2, b2 = args2
    ref = dist.simulate(X2, Y2, W2, b2, world_size=3, **dict(kw2, backend="cpp"))
    assert W.tobytes() == W2.tobytes() and got.losses.tobytes() == ref.losses.tobytes()
    assert got.steps == ref.steps > 0


@needs_torch
def test_example_under_torchrun():
    """examples/distributed_fit.py as the README launches it (torchrun, 2 local processes)."""
    script = Path(__file__).parents[1] / "examples" / "distributed_fit.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [*cmd, str(script)], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 ranks, 200 steps; the same bits as simulate: True" in done.stdout
