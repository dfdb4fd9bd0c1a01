"""Cases and communicators shared by tests/test_distributed.py and its worker processes.

``CASES`` maps a name to a function ``(rank, world_size) -> (args, kwargs)`` of
``linsgd.distributed.train`` (without ``comm``) that every rank calls; ``simulate_case``
runs the same case through ``simulate``. ``ThreadWorld`` is an in-process communicator
(one thread per rank), ``FakeMPIComm`` an mpi4py-shaped one on top of it. Run as a script,
this module is one rank of a gloo group that runs the cases and pickles the outcomes.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time

import numpy as np

import linsgd
from linsgd import distributed as dist
from linsgd.schedules import StepLR
from reference import make_problem

# ----------------------------------------------------------------------------- the cases


def _problem(M, N, U, dtype, seed=0):
    X, Y, W, b = make_problem(M, N, U, dtype, seed)
    return X, Y, W, b


def _weights(M, dtype, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 2.0, M).astype(dtype)


def _case(M, N, U, dtype, *, bias=True, weighted=False, data=False, **kw):
    def make(rank, world):
        X, Y, W, b = _problem(M, N, U, dtype)
        sw = _weights(M, dtype) if weighted else None
        if data:
            sl = dist.shard_rows(M, rank, world)
            X, Y = X[sl], Y[sl]
            sw = None if sw is None else sw[sl]
            kw["sharding"] = "data"
        kwargs = dict(kw, sample_weight=sw, backend="cpp")
        return (X, Y, W, b if bias else None), kwargs

    return make


FULL = dict(momentum=0.9, nesterov=True, weight_decay=0.01, l2=0.005)


def _cases(dtype):
    tag = np.dtype(dtype).name
    return {
        f"plain-{tag}": _case(97, 5, 1, dtype, batch_size=16, epochs=3, lr=0.05),
        f"full-schedule-{tag}": _case(
            97, 5, 3, dtype, batch_size=16, epochs=3, lr=StepLR(0.05, 1, 0.5), **FULL
        ),
        f"small-batches-{tag}": _case(10, 3, 2, dtype, batch_size=2, epochs=2, lr=0.1, **FULL),
        f"weighted-shuffled-{tag}": _case(
            61,
            4,
            2,
            dtype,
            weighted=True,
            batch_size=8,
            epochs=3,
            lr=0.05,
            shuffle=True,
            random_state=5,
            momentum=0.5,
        ),
        f"drop-last-eval-{tag}": _case(
            50,
            4,
            1,
            dtype,
            batch_size=7,
            epochs=2,
            lr=0.05,
            shuffle=True,
            random_state=2,
            drop_last=True,
            eval_set=tuple(_problem(13, 4, 1, dtype, seed=9)[:2]),
        ),
        f"no-bias-{tag}": _case(33, 4, 2, dtype, bias=False, batch_size=5, epochs=2, lr=0.05),
        f"data-weighted-shuffled-{tag}": _case(
            47,
            4,
            2,
            dtype,
            weighted=True,
            data=True,
            batch_size=4,
            epochs=2,
            lr=0.05,
            shuffle=True,
            random_state=1,
            **FULL,
        ),
    }


CASES = {**_cases(np.float64), **_cases(np.float32)}
# cases run only on the thread communicator (cheap) and in the one gloo launch
GLOO_CASES = [
    "plain-float64",
    "full-schedule-float32",
    "small-batches-float64",
    "weighted-shuffled-float32",
    "data-weighted-shuffled-float64",
]


def run_case(name, rank, world, comm, **extra):
    """``train`` of case ``name`` on this rank; the outcome as a dict of plain values."""
    args, kwargs = CASES[name](rank, world)
    kwargs.update(extra)
    X, Y, W, b = args
    state: dict = {}
    res = dist.train(X, Y, W, b, comm=comm, state=state, **kwargs)
    return outcome(W, b, res, state)


def simulate_case(name, world):
    """``simulate`` of case ``name`` at ``world`` ranks (with every rank's rows)."""
    args, kwargs = CASES[name](0, 1)  # rank 0 of one: all the rows
    X, Y, W, b = args
    state: dict = {}
    res = dist.simulate(X, Y, W, b, world_size=world, state=state, **kwargs)
    return outcome(W, b, res, state)


def outcome(W, b, res, state):
    return {
        "W": W.copy(),
        "b": None if b is None else b.copy(),
        "losses": res.losses.copy(),
        "valid": None if res.valid_losses is None else res.valid_losses.copy(),
        "steps": res.steps,
        "epochs": res.epochs,
        "status": res.status,
        "buf": None if "momentum_buffer_W" not in state else state["momentum_buffer_W"].copy(),
    }


def same_bits(a, b):
    """Whether two outcomes are the same bits, field by field (the first difference or None)."""
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.dtype != y.dtype or x.tobytes() != y.tobytes():
                return key
        elif x != y:
            return key
    return None


# ----------------------------------------------------------------------------- communicators


class ThreadWorld:
    """``world_size`` ranks in one process, one thread each; ``comm(r)`` is rank r's end.

    ``reverse_sum=True`` makes ``allreduce_sum`` add the ranks last to first, as an allreduce
    whose order is not rank order would.
    """

    def __init__(self, world_size, *, timeout=10.0, reverse_sum=False):
        self.world_size = world_size
        self._slots = [None] * world_size
        self._barrier = threading.Barrier(world_size, timeout=timeout)
        self.reverse_sum = reverse_sum
        self.calls = [0] * world_size

    def comm(self, rank):
        return _ThreadComm(self, rank)

    def exchange(self, rank, buf):
        self.calls[rank] += 1
        self._slots[rank] = np.array(buf, copy=True)
        self._barrier.wait()
        out = np.stack(self._slots)
        self._barrier.wait()
        return out

    def run(self, fn):
        """``fn(rank, comm)`` on every rank at once; the results, or the exceptions raised."""
        out = [None] * self.world_size

        def body(r):
            try:
                out[r] = fn(r, self.comm(r))
            except BaseException as exc:  # handed to the test (a rank left waiting times out)
                out[r] = exc

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.world_size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return out


class _ThreadComm:
    def __init__(self, world, rank):
        self._world = world
        self.rank = rank
        self.world_size = world.world_size

    def allgather(self, buf):
        return self._world.exchange(self.rank, buf)

    def allreduce_sum(self, buf):
        parts = self._world.exchange(self.rank, buf)
        order = (
            range(self.world_size - 1, -1, -1)
            if self._world.reverse_sum
            else range(self.world_size)
        )
        order = list(order)
        total = parts[order[0]].copy()
        for r in order[1:]:
            total += parts[r]
        buf[...] = total

    def broadcast(self, buf, root=0):
        buf[...] = self._world.exchange(self.rank, buf)[root]


class FakeMPI:
    """What :class:`linsgd.distributed.MPICommunicator` takes from ``mpi4py.MPI``."""

    IN_PLACE = object()
    SUM = object()


class FakeMPIComm:
    """An mpi4py-shaped communicator (buffer collectives) over a :class:`ThreadWorld` rank."""

    def __init__(self, world, rank):
        self._c = world.comm(rank)
        self.log = []

    def Get_rank(self):  # mpi4py's names
        return self._c.rank

    def Get_size(self):
        return self._c.world_size

    def Allreduce(self, sendbuf, recvbuf, op):
        assert sendbuf is FakeMPI.IN_PLACE and op is FakeMPI.SUM
        self.log.append("Allreduce")
        self._c.allreduce_sum(recvbuf)

    def Allgather(self, sendbuf, recvbuf):
        self.log.append("Allgather")
        recvbuf[...] = self._c.allgather(sendbuf)

    def Bcast(self, buf, root=0):
        self.log.append("Bcast")
        self._c.broadcast(buf, root)


# ----------------------------------------------------------------------------- a gloo rank


def _gloo_main(out_dir, crash_rank):
    """One rank of a gloo group (env:// rendezvous from the parent): every case in
    GLOO_CASES with both reduces, the failure cases, then (on ``crash_rank``) an exit in the
    middle of a collective."""
    from datetime import timedelta

    import torch.distributed as tdist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    tdist.init_process_group("gloo", timeout=timedelta(seconds=15))
    comm = dist.TorchCommunicator()
    results = {}
    for name in GLOO_CASES:
        results[name] = run_case(name, rank, world, comm)
        results[name + "/allreduce"] = run_case(name, rank, world, comm, reduce="allreduce")
    results["/calls"] = _count_collectives(comm, rank, world)
    results["/bad-input"] = _error_of(lambda: _bad_input(rank, world, comm))
    results["/mismatch"] = _error_of(lambda: _mismatch(rank, world, comm))
    if crash_rank >= 0:
        if rank == crash_rank:
            _dump(out_dir, rank, results)
            os._exit(3)  # gone without a word, as a killed process is
        t0 = time.monotonic()
        results["/crash"] = _error_of(lambda: run_case("plain-float64", rank, world, comm))
        results["/crash-seconds"] = time.monotonic() - t0
    _dump(out_dir, rank, results)
    if crash_rank < 0:
        tdist.destroy_process_group()


def _count_collectives(comm, rank, world):
    """Collectives of a 2-epoch, 7-step-per-epoch run (through a counting wrapper)."""
    count = {"n": 0}

    class Counting:
        def __init__(self, inner):
            self.rank, self.world_size, self._c = inner.rank, inner.world_size, inner

        def allgather(self, buf):
            count["n"] += 1
            return self._c.allgather(buf)

        def allreduce_sum(self, buf):
            count["n"] += 1
            self._c.allreduce_sum(buf)

        def broadcast(self, buf, root=0):
            count["n"] += 1
            self._c.broadcast(buf, root)

    run_case("plain-float64", rank, world, Counting(comm), epochs=2)
    return count["n"]


def _bad_input(rank, world, comm):
    args, kwargs = CASES["plain-float64"](rank, world)
    X = args[0].copy()
    if rank == world - 1:
        X[3, 1] = np.nan
    return dist.train(X, *args[1:], comm=comm, **kwargs)


def _mismatch(rank, world, comm):
    args, kwargs = CASES["plain-float64"](rank, world)
    kwargs["lr"] = 0.05 if rank == 0 else 0.06
    return dist.train(*args, comm=comm, **kwargs)


def _error_of(fn):
    try:
        fn()
    except Exception as exc:  # reported to the test
        return f"{type(exc).__name__}: {exc}"
    return None


def _dump(out_dir, rank, results):
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    assert linsgd.kernels is not None
    _gloo_main(sys.argv[1], int(sys.argv[2]))
