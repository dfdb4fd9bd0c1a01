"""Tests of the command-line interface: ``python -m linsgd demo`` and the ``linsgd`` script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import HAS_TORCH
from linsgd.cli import main

EPS_LINE = re.compile(r"^weight: max\|Δ\| = \S+ = (\S+) eps\*max\|weight\|$", re.M)
BIAS_LINE = re.compile(r"^bias:   max\|Δ\| = \S+ = (\S+) eps\*max\|bias\|$", re.M)
TIMES = re.compile(r"linsgd fit: ([\d.]+) s\s+torch fit \(\d+ threads?\): ([\d.]+) s")


def _run(args, tmp_path, **kw):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=env, encoding="utf-8", **kw,
    )  # fmt: skip


def _check_columns(out: str, epochs: int, n_cols: int) -> None:
    rows = [ln.split() for ln in out.splitlines() if re.match(r"^\s*\d+\s+[-\d.]", ln)]
    assert [int(r[0]) for r in rows] == list(range(epochs))
    assert all(len(r) == n_cols for r in rows)
    for r in rows:
        [float(v) for v in r[1:]]


def test_python_m_linsgd_demo(tmp_path):
    proc = _run(["-m", "linsgd", "demo", "--n-valid", "1000"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    skipped = "torch is not installed, so the comparison with torch is skipped" in out
    if HAS_TORCH:
        assert not skipped, out
    if not skipped:
        _check_columns(out, 16, 5)
        w = EPS_LINE.search(out)
        b = BIAS_LINE.search(out)
        assert w and b, out
        # the seed-001 configuration (N=4, one output) agrees with torch to the last bit or two
        assert float(w.group(1)) <= 2.0 and float(b.group(1)) <= 2.0, out
        assert TIMES.search(out), out
        assert re.search(r"ratio torch/linsgd: [\d.]+x", out), out
    else:
        _check_columns(out, 16, 3)


def test_demo_without_torch(tmp_path):
    """With torch hidden from the interpreter, the demo prints linsgd's columns and says so."""
    script = tmp_path / "no_torch.py"
    script.write_text(
        textwrap.dedent("""
        import sys

        class _HideTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch hidden by the test")
                return None

        sys.meta_path.insert(0, _HideTorch())
        from linsgd.cli import main
        sys.exit(main(["demo", "--n-valid", "200", "--epochs", "3"]))
    """)
    )
    proc = _run([str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "torch is not installed, so the comparison with torch is skipped" in proc.stdout
    assert "linsgd fit:" in proc.stdout
    _check_columns(proc.stdout, 3, 3)
    if HAS_TORCH:
        # without torch the initial parameters are drawn as torch.manual_seed(seed) +
        # nn.Linear draws them: linsgd's columns are the same as in the run with torch
        proc_t = _run(["-m", "linsgd", "demo", "--n-valid", "200", "--epochs", "3"], tmp_path)
        assert proc_t.returncode == 0, proc_t.stderr

        def linsgd_columns(out, idx):
            rows = [ln.split() for ln in out.splitlines() if re.match(r"^\s*\d+\s+[-\d.]", ln)]
            return [[r[0]] + [r[i] for i in idx] for r in rows]

        assert linsgd_columns(proc.stdout, (1, 2)) == linsgd_columns(proc_t.stdout, (1, 3))


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_demo_in_process_float32(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        rc = main(["demo", "--dtype", "float32", "--n-valid", "300", "--epochs", "4",
                   "--features", "3", "--seed", "5"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0
    assert "dtype=float32" in out
    _check_columns(out, 4, 5)
    assert EPS_LINE.search(out) and BIAS_LINE.search(out)


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--dtype", "float16"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_console_script(tmp_path):
    exe = shutil.which("linsgd")
    if exe is None:
        pytest.skip("the linsgd console script is not on PATH (install the package with pip)")
    proc = subprocess.run(
        [exe, "demo", "--n-valid", "100", "--epochs", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, encoding="utf-8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "linsgd fit:" in proc.stdout
