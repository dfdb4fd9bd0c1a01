"""Shared pytest fixtures for the linsgd test suite (plain helpers are in ``helpers.py``)."""

from __future__ import annotations

import os

# torch's two GEMMs run in MKL, whose default kernels depend on the CPU (on AVX-512 Intel CPUs
# they sum in another order, with FMA) and, in the forward pass, on the 16-byte alignment of each
# input row (reference/torch-sgd-semantics.md, section 2.3). MKL_CBWR pins MKL to one portable
# code path, so torch's own results, and the bit-for-bit agreement tests, mean the same on every
# CPU. Set before torch is first imported (and inherited by the processes the tests start); a
# value the user set wins.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import pytest

from helpers import CPU_BACKENDS, DT_IDS, DTYPES, backend_skip_reason, torch_one_thread


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each CPU backend by name, skipped with a reason when this install lacks it or when
    ``LINSGD_BACKEND`` selects another one (CI runs the suite once per backend that way).

    Only the name is handed to the test (which passes ``backend=``); nothing global is set.
    """
    pytest.importorskip("linsgd", reason="linsgd is not importable")
    reason = backend_skip_reason(request.param)
    if reason is not None:
        pytest.skip(reason)
    return request.param


@pytest.fixture(params=DTYPES, ids=DT_IDS)
def dtype(request):
    """Each float dtype (``np.float64``, ``np.float32``)."""
    return request.param


@pytest.fixture(scope="module")
def torch_one_thread_module():
    """torch single-threaded for a whole module (``pytestmark = usefixtures(...)``)."""
    with torch_one_thread():
        yield
