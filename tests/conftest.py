"""Shared pytest fixtures for the linsgd test suite."""

from __future__ import annotations

import pytest

CPU_BACKENDS = ["cpp", "numba"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each CPU backend by name, skipped with a reason when this install lacks it.

    Only the name is handed to the test (which passes ``backend=``); nothing global is set.
    """
    name = request.param
    linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
    if name not in linsgd.available_backends():
        pytest.skip(
            f"backend {name!r} is not available in this install "
            f"(available: {linsgd.available_backends()})"
        )
    return name
