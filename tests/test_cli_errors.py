"""Every mistake on the command line gives an argparse-style one-line error (issue 14, point 6)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import linsgd
from linsgd.cli import main

MISTAKES = {
    "negative lr": (["--lr", "-1"], "argument --lr: must be a finite number >= 0, got -1"),
    "nan lr": (["--lr", "nan"], "argument --lr: must be a finite number >= 0"),
    "text lr": (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    "zero epochs": (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    "float epochs": (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    "no training rows": (["--n-train", "0"], "argument --n-train: must be >= 1, got 0"),
    "no validation rows": (["--n-valid", "-5"], "argument --n-valid: must be >= 1, got -5"),
    "no features": (["--features", "0"], "argument --features: must be >= 1, got 0"),
    "zero batch": (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    "negative seed": (["--seed", "-3"], "argument --seed: must be >= 0, got -3"),
    "huge seed": (["--seed", str(2**32)], "argument --seed: must be below 2**32"),
    "negative threads": (["--threads", "-1"], "argument --threads: must be >= 0, got -1"),
    "bad dtype": (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    "bad backend": (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
    # --threads 0: leave the torch thread count of this test process alone
    "diverging lr": (["--lr", "1000", "--n-valid", "10", "--threads", "0"], "training diverged"),
}


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: linsgd demo"), err
    assert "Traceback" not in err
    (line,) = [ln for ln in lines if "error:" in ln]
    assert line.startswith("linsgd demo: error: ")
    assert line == lines[-1]  # the message is one line, the last
    return line


@pytest.mark.parametrize("case", list(MISTAKES))
def test_mistake_is_a_one_line_usage_error(case, capsys):
    argv, message = MISTAKES[case]
    with pytest.raises(SystemExit) as info:
        main(["demo", *argv])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert message in _error_line(captured.err)


@pytest.mark.skipif("cuda" in linsgd.available_backends(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_is_a_one_line_error_in_a_real_process(tmp_path):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "linsgd", "demo", "--backend", "cuda"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, env=env, encoding="utf-8",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = _error_line(proc.stderr)
    assert "argument --backend: the CUDA backend is unavailable" in line


def test_a_correct_command_still_runs(capsys):
    assert main(["demo", "--epochs", "2", "--n-valid", "20", "--threads", "0"]) == 0
    assert "linsgd fit:" in capsys.readouterr().out
