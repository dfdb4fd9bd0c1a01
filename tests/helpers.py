"""Plain helpers shared by the test modules (fixtures live in ``conftest.py``).

``tests/`` is on ``sys.path`` (pyproject's ``pythonpath``), so a test module imports these
with ``from helpers import ...``; nothing here is a pytest fixture.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from reference import make_problem

# Both float dtypes every backend supports, and their test ids.
DTYPES = [np.float64, np.float32]
DT_IDS = ["float64", "float32"]

# The CPU backends, in the order the suite runs them.
CPU_BACKENDS = ["cpp", "numba"]

# LINSGD_BACKEND (the library's own override) selects one backend for the whole run (CI runs
# the suite once per backend with LINSGD_BACKEND=numba). LINSGD_TEST_BACKENDS (comma-separated)
# narrows the CPU backends the tests run when LINSGD_BACKEND is unset, e.g. to "cpp" under the
# sanitizers (.ci/sanitize.sh), where numba's JIT would only be slow.
BACKEND_ENV = "LINSGD_BACKEND"
TEST_BACKENDS_ENV = "LINSGD_TEST_BACKENDS"


def backend_skip_reason(name: str) -> str | None:
    """Why the tests do not run backend ``name`` here, or None when they do."""
    selected = os.environ.get(BACKEND_ENV, "").strip()
    if selected and name != selected:
        return f"{BACKEND_ENV}={selected!r} selects another backend than {name!r}"
    wanted = os.environ.get(TEST_BACKENDS_ENV, "").strip()
    if not selected and wanted and name not in wanted.split(","):
        return f"{TEST_BACKENDS_ENV}={wanted!r} leaves out backend {name!r}"
    import linsgd

    available = linsgd.available_backends()
    if name not in available:
        return f"backend {name!r} is not available in this install (available: {available})"
    return None


def cpu_backends() -> list[str]:
    """The CPU backends the tests run here: available and selected by the environment."""
    return [name for name in CPU_BACKENDS if backend_skip_reason(name) is None]


def skip_unless_backend(name: str) -> None:
    """Skip the calling test (with the reason) unless the tests run backend ``name`` here."""
    reason = backend_skip_reason(name)
    if reason is not None:
        import pytest

        pytest.skip(reason)


HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)"
)


@contextlib.contextmanager
def torch_one_thread():
    """Run torch single-threaded inside (much faster for tiny problems; the thread count does
    not change torch's results for U <= 3), and restore the setting afterwards."""
    if not HAS_TORCH:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def problem(M=100, N=4, U=1, dtype=np.float64, seed=0, *, y_1d=True):
    """``make_problem`` with the estimator tests' defaults: 100x4, one output, 1-D ``y`` when
    ``U == 1`` (and ``y_1d``)."""
    return make_problem(M, N, U, dtype, seed, y_1d=y_1d and U == 1)


def grad_bounds(X, Y, W, b, eps):
    """A priori bounds on the rounding error of gW, gb and the loss (any summation order)."""
    B, N = X.shape
    Y2 = Y.reshape(B, -1)
    U = Y2.shape[1]
    ax, aw, ay = (np.abs(a.astype(np.float64)) for a in (X, W, Y2))
    mag_e = ax @ aw.T + ay + (0.0 if b is None else np.abs(b.astype(np.float64)))
    gamma = 2 * (N + B + 4) * eps
    c = 2 / (B * U)
    return (
        gamma * c * (mag_e.T @ ax),
        gamma * c * mag_e.sum(0),
        2 * gamma * float(np.mean(mag_e**2)),
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for a process group the test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collect_rank_results(procs, out_dir, world: int, timeout: float):
    """Wait for the rank processes (killing any still running after ``timeout`` seconds) and
    load each rank's ``rank{r}.pkl`` from ``out_dir``; returns ``({rank: result}, logs)``."""
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = {}
    for rank in range(world):
        path = Path(out_dir) / f"rank{rank}.pkl"
        assert path.exists(), f"rank {rank} left no results:\n" + "\n".join(logs)
        results[rank] = pickle.loads(path.read_bytes())
    return results, logs
