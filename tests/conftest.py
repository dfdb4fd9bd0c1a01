"""Shared fixtures: every backend-aware test runs once per backend.

With LINSGD_BACKEND set (CI runs the suite once per backend that way), only that backend is
parametrised; otherwise every CPU backend is, and one that this install lacks is skipped with
the reason linsgd gives.
"""

from __future__ import annotations

import os

import pytest

CPU_BACKENDS = ("cpp", "numba")


def _backend_params() -> list[str]:
    forced = os.environ.get("LINSGD_BACKEND", "").strip().lower()
    return [forced] if forced in CPU_BACKENDS else list(CPU_BACKENDS)


@pytest.fixture(params=_backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    import linsgd
    from linsgd import _backends

    name = request.param
    if name not in linsgd.available_backends():
        _backends.get_backend  # noqa: B018
        pytest.skip(f"backend {name!r} is not available: {_backends._errors.get(name, 'unknown')}")
    return name
