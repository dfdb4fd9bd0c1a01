"""The agreement matrix: linsgd.kernels.train against the torch loop and the exact numpy model.

Axes: backend (fixture) x dtype {float32, float64} x U {1, 3} x N {1, 4, 13, 64} x batch size
{1, ragged, M} x hyper-parameters {plain, weight_decay, momentum+dampening, nesterov, maximize,
l2 without bias decay, no bias}, 16 epochs, M = 50..61. Not the full Cartesian product: a
covering design (every N with every hyper-parameter set, U / batch size / shuffling rotating
through them, every case for every dtype and backend) plus the full product of a core subset.

Bounds, for W and b separately, ``eps`` of the dtype, ``D_p`` the distance of the plain numpy
loop (same dtype) from the target in the same units,
``max|naive_p - target_p| / (eps max|target_p|)``:

* runs of > 100 steps: ``max|ours_p - target_p| <= eps max|target_p| * (2 + 2 D_p)``, i.e. the
  issue's ``2 eps max|torch| + 2 max|naive - torch|``;
* runs of <= 100 steps: ``4 eps max|target_p|``, or the bound above where that is larger: where
  the plain numpy loop is itself more than 1 eps away, 4 eps is out of any implementation's reach
  (measured on an N = 64 > M full-batch problem with another seed: naive numpy 6.0 eps from torch
  on b after 16 steps, linsgd's C++ kernel 7.8 eps).
* cpp backend, float64, N <= 4, U = 1, unshuffled: bit-identical to torch.
* every backend, both dtypes, N <= 4, U = 1: bit-identical to the exact numpy model
  (``train_reference(exact=True)``), and within the bounds above of it otherwise (these checks
  need no torch and always run).
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np
import pytest

from helpers import DT_IDS, needs_torch
from helpers import DTYPES as DTYPE_LIST
from reference import dataloader_orders, eps_distance, make_problem, torch_train, train_reference

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")


EPOCHS = 16
DTYPES = dict(zip(DT_IDS, DTYPE_LIST))  # by name: the names are the cache keys below
NS = (1, 4, 13, 64)
US = (1, 3)
BATCH_KINDS = ("one", "ragged", "full")
HYPER = {
    "plain": dict(),
    "weight_decay": dict(weight_decay=0.02),
    "momentum": dict(momentum=0.9, dampening=0.1),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "maximize": dict(maximize=True),
    "l2": dict(l2=0.01, weight_decay=0.005, decay_bias=False),
    "nobias": dict(),
}


class Case(NamedTuple):
    U: int
    N: int
    batch: str  # "one" (batch_size 1), "ragged" (last batch of 1 row), "full" (batch_size M)
    hp: str
    shuffle: bool = False
    y_1d: bool = False

    @property
    def id(self) -> str:
        extra = ("-shuffled" if self.shuffle else "") + ("-y1d" if self.y_1d else "")
        return f"U{self.U}-N{self.N}-bs_{self.batch}-{self.hp}{extra}"

    @property
    def M(self) -> int:
        return 50 if self.batch == "one" else 61

    @property
    def batch_size(self) -> int:
        return {"one": 1, "ragged": 15, "full": self.M}[self.batch]

    @property
    def steps(self) -> int:
        return EPOCHS * -(-self.M // self.batch_size)

    @property
    def exact(self) -> bool:  # where the exact numpy model is bit-identical by contract
        return self.N <= 4 and self.U == 1

    def kwargs(self) -> dict:
        """Training keywords: a learning rate well inside the stable regime (a tenth to a fifth
        of 1 / the largest eigenvalue of a batch's Hessian, about 2 (1 + sqrt((N+1)/B))^2 / U),
        smaller with momentum (whose effective step is lr / (1 - momentum)) and for ascent."""
        hp = HYPER[self.hp]
        lam = 2.0 * (1.0 + np.sqrt((self.N + 1) / self.batch_size)) ** 2 / self.U
        lr = 0.2 / lam
        if hp.get("momentum"):
            lr *= 1.0 - hp["momentum"]
        if hp.get("maximize"):
            lr *= 0.1
        return dict(batch_size=self.batch_size, epochs=EPOCHS, lr=float(lr), **hp)


def _covering_cases() -> list[Case]:
    """Every N with every hyper-parameter set; U, batch size, shuffling and 1-D targets rotate
    so that each N and each hyper-parameter set meets both U and all three batch kinds."""
    cases = []
    for i, (N, hp) in enumerate(itertools.product(NS, HYPER)):
        U = US[i % 2]
        cases.append(
            Case(
                U=U,
                N=N,
                batch=BATCH_KINDS[i % 3],
                hp=hp,
                shuffle=(i % 5) in (1, 3),
                y_1d=(U == 1 and i % 3 == 0),
            )
        )
    return cases


def _core_cases() -> list[Case]:
    """The full product of a core subset (short runs, unshuffled)."""
    return [
        Case(U=U, N=N, batch=bk, hp=hp)
        for U, N, bk, hp in itertools.product(
            US, (4, 13), ("ragged", "full"), ("plain", "weight_decay", "momentum", "nesterov")
        )
    ]


def _all_cases() -> list[Case]:
    seen: dict[Case, None] = {}
    for c in _covering_cases() + _core_cases():
        seen.setdefault(c, None)
    return list(seen)


CASES = _all_cases()


def test_the_matrix_covers_every_axis_value():
    cov = _covering_cases()
    for axis, values in (("N", NS), ("U", US), ("batch", BATCH_KINDS), ("hp", tuple(HYPER))):
        assert {getattr(c, axis) for c in cov} == set(values), axis
    for N, hp in itertools.product(NS, HYPER):
        assert any(c.N == N and c.hp == hp for c in cov)
    for N in NS:  # each N meets both U and all batch kinds
        assert {c.U for c in cov if c.N == N} == set(US)
        assert {c.batch for c in cov if c.N == N} == set(BATCH_KINDS)
    for hp in HYPER:
        assert {c.batch for c in cov if c.hp == hp} == set(BATCH_KINDS)
    assert any(c.shuffle and c.exact for c in cov) and any(c.y_1d for c in cov)
    assert any(c.exact and not c.shuffle for c in CASES)
    assert {c.steps <= 100 for c in CASES} == {True, False}


@functools.cache
def _problem(case: Case, dtype_name: str):
    dt = DTYPES[dtype_name]
    seed = (
        1000 * case.N
        + 100 * case.U
        + 10 * BATCH_KINDS.index(case.batch)
        + list(HYPER).index(case.hp)
    )
    X, Y, W0, b0 = make_problem(case.M, case.N, case.U, dt, seed=seed, y_1d=case.y_1d)
    b0 = (b0 + np.where(b0 < 0, -0.25, 0.25)).astype(dt)  # keep the bias away from zero
    if case.hp == "nobias":
        b0 = None
    order = dataloader_orders(seed, case.M, case.batch_size, EPOCHS) if case.shuffle else None
    return X, Y, W0, b0, order


@functools.cache
def _reference(case: Case, dtype_name: str, exact: bool):
    X, Y, W0, b0, order = _problem(case, dtype_name)
    return train_reference(X, Y, W0, b0, order=order, exact=exact, **case.kwargs())


@functools.cache
def _torch(case: Case, dtype_name: str):
    X, Y, W0, b0, order = _problem(case, dtype_name)
    return torch_train(X, Y, W0, b0, order=order, **case.kwargs())


@functools.cache
def _ours(case: Case, dtype_name: str, backend: str):
    X, Y, W0, b0, order = _problem(case, dtype_name)
    W = W0.copy()
    b = None if b0 is None else b0.copy()
    res = linsgd.kernels.train(X, Y, W, b, orders=order, backend=backend, **case.kwargs())
    assert res.status == "completed" and res.steps == case.steps and res.epochs == EPOCHS
    return W, b, res.losses


def _check_bound(ours, target, naive, steps: int):
    """The matrix's bound for W and b separately (see the module docstring)."""
    for name, o, t, n in zip("Wb", ours, target, naive):
        if t is None:
            assert o is None, f"{name} should be None"
            continue
        limit = 2.0 + 2.0 * eps_distance(n, t)
        if steps <= 100:
            limit = max(4.0, limit)
        d = eps_distance(o, t)
        assert d <= limit, f"{name} is {d:.2f} eps from the target (limit {limit:.2f})"


def _check_losses_move(losses, hp: str):
    first, last = losses[0].mean(), losses[-1].mean()
    assert np.isfinite(losses).all()
    if HYPER[hp].get("maximize"):
        assert first < last < 100 * first  # ascends, and stays far from overflow
    else:
        assert last < first  # descends: the learning rate is in the stable regime


def _check_losses_close(losses, target, dtype_name):
    """Per-step losses within 64 eps of the run's largest loss (a single step's loss can be
    near 0 with batch size 1, so a relative bound per step would measure nothing)."""
    eps = float(np.finfo(DTYPES[dtype_name]).eps)
    assert losses.shape == target.shape
    worst = float(np.max(np.abs(losses - target)))
    assert worst <= 64 * eps * float(np.max(target)), f"{worst / (eps * np.max(target)):.1f} eps"


@pytest.mark.parametrize("dtype_name", DT_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_agrees_with_exact_numpy_model(backend, dtype_name, case):
    W, b, losses = _ours(case, dtype_name, backend)
    We, be, le = _reference(case, dtype_name, True)
    _check_losses_move(le, case.hp)
    assert W.dtype == np.dtype(DTYPES[dtype_name])
    if case.exact:
        assert np.array_equal(W, We)
        assert b is None if be is None else np.array_equal(b, be)
        assert np.array_equal(losses, le)
    else:
        Wn, bn, _ = _reference(case, dtype_name, False)
        _check_bound((W, b), (We, be), (Wn, bn), case.steps)
        _check_losses_close(losses, le, dtype_name)


@needs_torch
@pytest.mark.parametrize("dtype_name", DT_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_agrees_with_torch(backend, dtype_name, case):
    W, b, losses = _ours(case, dtype_name, backend)
    Wt, bt, lt = _torch(case, dtype_name)
    _check_losses_move(lt, case.hp)
    if backend == "cpp" and dtype_name == "float64" and case.exact and not case.shuffle:
        assert np.array_equal(W, Wt)
        assert b is None if bt is None else np.array_equal(b, bt)
        assert np.array_equal(losses, lt)
    Wn, bn, _ = _reference(case, dtype_name, False)
    _check_bound((W, b), (Wt, bt), (Wn, bn), case.steps)
    _check_losses_close(losses, lt, dtype_name)


_DEFAULT_MKL_SCRIPT = """
import json
import test_torch_agreement as t
from reference import eps_distance
out = []
for case in t.CASES:
    if case.exact and not case.shuffle:
        for dt in ("float64", "float32"):
            W, b, _ = t._ours(case, dt, "cpp")
            Wt, bt, _ = t._torch(case, dt)
            out.append([eps_distance(W, Wt), 0.0 if b is None else eps_distance(b, bt)])
print(json.dumps(out))
"""


@needs_torch
def test_agrees_with_torch_under_mkls_default_kernels():
    """The suite pins MKL to its portable path (conftest.py); a user's torch runs MKL's
    CPU-specific kernels, whose sums may round differently: the parameters still agree within
    a bit or two (measured on an AVX-512 Xeon: <= 1.25 eps over these 24 fits, 10 of them
    bit-identical)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    here = str(Path(__file__).parent)
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _DEFAULT_MKL_SCRIPT],
        env=env, cwd=here, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    distances = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(distances) == 24
    assert max(max(d) for d in distances) <= 2.0, distances
