"""Shared pytest fixtures for the linsgd test suite (plain helpers are in ``helpers.py``)."""

from __future__ import annotations

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
