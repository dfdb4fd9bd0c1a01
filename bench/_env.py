"""Pin every thread pool to one thread. Import this module before numpy, torch or numba.

The benchmarks compare single-core implementations, so the BLAS libraries behind numpy and
torch, OpenMP and numba must not spread over several cores. The thread-count variables are
forced to 1 (whatever the caller's shell says); the OpenBLAS tuning variables
(``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``, ...) are only reported, never changed: unset them
in the shell for a run without them.
"""

from __future__ import annotations

import os
import sys

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)

# Variables that change BLAS (and so numpy/torch) speed; reported as found, never modified.
REPORTED_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_VERBOSE",
    "MKL_DEBUG_CPU_TYPE",
    "MKL_ENABLE_INSTRUCTIONS",
    "LINSGD_BACKEND",
)

_already = [m for m in ("numpy", "torch", "numba") if m in sys.modules]
for _name in THREAD_VARS:
    os.environ[_name] = "1"


def late_imports() -> list[str]:
    """Modules that were imported before the thread variables were set (should be empty)."""
    return list(_already)


def reported_env() -> dict[str, str | None]:
    """The speed-relevant environment variables as this process sees them."""
    return {k: os.environ.get(k) for k in THREAD_VARS + REPORTED_VARS}
