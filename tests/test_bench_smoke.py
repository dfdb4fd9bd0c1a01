"""Smoke test of the benchmark entry point: ``python bench/run.py --quick`` runs and reports.

Only the exit status, the files and the structure of the JSON are checked, never a timing:
the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"

TOP_KEYS = {
    "schema", "command", "date", "quick", "grid", "dtypes", "timing", "meta", "correctness",
    "bandwidth", "results", "targets", "micro", "errors", "elapsed_s",
}  # fmt: skip
POINT_KEYS = {"M", "N", "U", "B", "dtype", "steps", "bytes", "floor_s", "impls", "skipped"}
IMPL_KEYS = {"epoch_s", "step_s", "total_s", "repeats", "floor_ratio", "vs_torch"}
TARGET_KEYS = {"M", "N", "U", "B", "dtype", "impl", "target", "value", "threshold", "status"}
MICRO_KEYS = {"piece", "backend", "dtype", "B", "N", "U", "time_s", "GBps", "GFLOPps"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run ``bench/run.py --quick`` once in a subprocess; the environment is passed unchanged."""
    pytest.importorskip("linsgd", reason="linsgd is not importable")
    if not RUN.exists():
        pytest.skip("bench/run.py is not in this checkout")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out)],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out


def test_quick_run_exits_zero(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, (
        f"bench/run.py --quick exited with {proc.returncode}\n"
        f"--- stdout (tail)\n{proc.stdout[-4000:]}\n--- stderr (tail)\n{proc.stderr[-4000:]}"
    )
    assert "correctness: PASS" in proc.stdout


def test_quick_run_writes_reports(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0
    md = out / "results.md"
    js = out / "results.json"
    assert md.is_file() and md.stat().st_size > 0
    assert js.is_file() and js.stat().st_size > 0
    text = md.read_text()
    for heading in ("## Correctness", "## Epoch times", "## Targets"):
        assert heading in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "results.png").is_file()


def test_quick_run_json_structure(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0
    report = json.loads((out / "results.json").read_text())
    assert TOP_KEYS <= set(report), sorted(TOP_KEYS - set(report))
    assert report["quick"] is True
    assert report["errors"] == []
    assert report["correctness"]["passed"] is True
    assert report["correctness"]["cases"]
    assert report["bandwidth"]["GBps"] > 0 and report["bandwidth"]["method"]
    meta = report["meta"]
    assert {"machine", "linsgd", "threadpools", "versions"} <= set(meta)
    assert "OPENBLAS_CORETYPE" in meta["machine"]["env"]
    assert meta["machine"]["env"]["OMP_NUM_THREADS"] == "1"

    results = report["results"]
    assert {(r["M"], r["N"], r["U"], r["B"], r["dtype"]) for r in results} == {
        (*p, d) for p in report["grid"] for d in report["dtypes"]
    }
    backends = [b for b in meta["linsgd"]["backends"] if b in ("cpp", "numba")]
    for rec in results:
        assert POINT_KEYS <= set(rec), sorted(POINT_KEYS - set(rec))
        impls = rec["impls"]
        for name in [*backends, "epoch default call", "fit"]:
            assert name in impls, f"{name} missing at {rec['M'], rec['N'], rec['U'], rec['B']}"
        for name, r in impls.items():
            assert IMPL_KEYS <= set(r), (name, sorted(IMPL_KEYS - set(r)))
    seed = next(r for r in results if (r["M"], r["N"], r["U"], r["B"]) == (100, 4, 1, 33))
    assert seed["impls"]["fit"]["eval_rows"] == 10_000

    assert report["targets"]
    for t in report["targets"]:
        assert TARGET_KEYS <= set(t)
        assert t["status"] in {"PASS", "MISS", "n/a"}
    assert report["micro"]
    for m in report["micro"]:
        assert MICRO_KEYS <= set(m)
