"""Data-parallel linear regression with linsgd.distributed, one process per rank.

Run it with one of

    torchrun --nproc-per-node 2 examples/distributed_fit.py            # torch.distributed, gloo
    mpirun -n 2 python examples/distributed_fit.py --mpi               # mpi4py
    python examples/distributed_fit.py --bench                         # time per step, W = 1, 2

Every rank builds the same data set (in real use: ``np.load(path, mmap_mode="r")`` of a
shared file, of which each rank reads only the rows of its shares), trains the same model
and ends with the same bits; rank 0 prints the losses and checks them against
``linsgd.distributed.simulate``, the one-process oracle. ``--bench`` starts groups of 1 and
2 local processes itself (127.0.0.1, gloo) and prints their time per step next to one
process's ``kernels.train``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from datetime import timedelta

import numpy as np

import linsgd
from linsgd import distributed, kernels


def make_data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded regression problem, the same on every rank."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    y = X @ rng.standard_normal(features) + 0.5 + 0.1 * rng.standard_normal(rows)
    return X, y


def fit(comm: object, rank: int) -> None:
    X, y = make_data(10_000, 16)
    settings = dict(batch_size=256, epochs=5, lr=0.05, momentum=0.9, shuffle=True, random_state=0)
    W, b = np.zeros((1, 16)), np.zeros(1)
    result = distributed.train(X, y, W, b, comm=comm, **settings)
    if rank == 0:
        for e, losses in enumerate(result.losses):
            print(f"epoch {e}: mean batch MSE {np.mean(losses):.6f}")
        world = distributed.as_communicator(comm).world_size
        W1, b1 = np.zeros((1, 16)), np.zeros(1)
        oracle = distributed.simulate(X, y, W1, b1, world_size=world, **settings)
        same = W.tobytes() == W1.tobytes() and result.losses.tobytes() == oracle.losses.tobytes()
        print(f"{world} ranks, {result.steps} steps; the same bits as simulate: {same}")
    # the estimator on the same group: fit (here with early stopping on a validation split
    # of the rows) runs through distributed.train, every rank ends with the same model
    model = linsgd.LinearRegressor(
        comm=comm, early_stopping=True, tol=1e-4, n_iter_no_change=2, **dict(settings, epochs=40)
    )
    model.fit(X, y)
    if rank == 0:
        print(
            f"LinearRegressor(comm=...): {model.n_iter_} epochs, {model.t_} steps, "
            f"R^2 {model.score(X, y):.4f}"
        )


# ----------------------------------------------------------------------------- --bench

BENCH_SHAPES = [(64, 16), (4096, 16), (65536, 16)]  # (global batch, features)
BENCH_BATCHES = 8  # batches per epoch


def _time_per_step(train: object) -> float:
    """Seconds per step: ``train(epochs)`` for 4 epochs less for 1, over the steps between,
    so that the checks and the argument exchange of a call (the same for both) cancel; the
    best of 5 of each (the machine may be shared)."""
    train(1)  # warm up (and connect)
    one, four = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        train(1)
        t1 = time.perf_counter()
        train(4)
        t2 = time.perf_counter()
        one.append(t1 - t0)
        four.append(t2 - t1)
    return (min(four) - min(one)) / (3 * BENCH_BATCHES)


def _bench_rank(rank: int, world: int, port: int, out: object) -> None:
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    comm = distributed.TorchCommunicator()
    for batch, features in BENCH_SHAPES:
        X, y = make_data(batch * BENCH_BATCHES, features)
        W, b = np.zeros((1, features)), np.zeros(1)

        def run(epochs: int, X=X, y=y, W=W, b=b, batch=batch) -> None:
            distributed.train(X, y, W, b, comm=comm, batch_size=batch, epochs=epochs, lr=1e-3)

        def fit(epochs: int, X=X, y=y, batch=batch) -> None:
            est = linsgd.LinearRegressor(lr=1e-3, batch_size=batch, epochs=epochs, comm=comm)
            est.fit(X, y)

        seconds = _time_per_step(run)
        fit_seconds = _time_per_step(fit)
        if rank == 0:
            out.put((world, batch, features, seconds, fit_seconds))
    tdist.destroy_process_group()


def bench() -> None:
    """Print the time per step of one process and of groups of 1 and 2 processes."""
    import torch.multiprocessing as mp

    rows = []
    for batch, features in BENCH_SHAPES:
        X, y = make_data(batch * BENCH_BATCHES, features)
        W, b = np.zeros((1, features)), np.zeros(1)

        def run(epochs: int, X=X, y=y, W=W, b=b, batch=batch) -> None:
            kernels.train(X, y, W, b, batch_size=batch, epochs=epochs, lr=1e-3)

        def fit(epochs: int, X=X, y=y, batch=batch) -> None:
            linsgd.LinearRegressor(lr=1e-3, batch_size=batch, epochs=epochs).fit(X, y)

        rows.append(("one process (kernels.train)", batch, features, _time_per_step(run)))
        rows.append(("one process (LinearRegressor)", batch, features, _time_per_step(fit)))
    ctx = mp.get_context("spawn")
    for world in (1, 2):
        queue = ctx.Queue()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_bench_rank, args=(world, port, queue), nprocs=world, join=True)
        for _ in BENCH_SHAPES:
            w, batch, features, seconds, fit_seconds = queue.get(timeout=120)
            rows.append((f"distributed.train, W={w} (gloo)", batch, features, seconds))
            rows.append((f"LinearRegressor(comm=), W={w}", batch, features, fit_seconds))
    print(f"linsgd {linsgd.__version__}, {os.cpu_count()} CPUs; time per step")
    print(f"{'':34s} {'batch x features':>18s} {'per step':>12s}")
    for what, batch, features, seconds in sorted(rows, key=lambda r: (r[1], r[0])):
        print(f"{what:34s} {f'{batch} x {features}':>18s} {seconds * 1e6:9.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpi", action="store_true", help="use mpi4py's COMM_WORLD")
    parser.add_argument("--bench", action="store_true", help="time a step at W = 1 and 2")
    args = parser.parse_args()
    if args.bench:
        bench()
    elif args.mpi:
        from mpi4py import MPI

        fit(MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank())
    else:
        import torch.distributed as tdist

        tdist.init_process_group("gloo", timeout=timedelta(seconds=60))  # torchrun's env://
        try:
            fit("torch", tdist.get_rank())
        finally:
            tdist.destroy_process_group()


if __name__ == "__main__":
    main()
