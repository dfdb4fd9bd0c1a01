"""Command-line interface: ``linsgd demo`` (also ``python -m linsgd demo``); ``fit``,
``predict``, ``info`` and ``bench`` are in :mod:`linsgd._cli_data`.

The demo replays the package's reference experiment: ``make_regression`` data, the first
``--n-train`` rows for training and the next ``--n-valid`` for validation, a one-output linear
model, ``lr=0.01``, ``batch_size = n_train // 3``, 16 epochs; it trains linsgd and the torch
loop from the same initial parameters and prints both side by side.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["main", "run_demo", "torch_fit"]


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    value = _int_at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``linsgd`` parser and its ``demo`` subparser (whose ``error`` reports mistakes)."""
    parser = argparse.ArgumentParser(
        prog="linsgd",
        description="Mini-batch SGD for linear regression in compiled code, agreeing with torch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser(
        "demo",
        help="train linsgd and the torch loop side by side on a make_regression problem",
        description="Train linsgd.LinearRegressor and the torch nn.Linear + MSELoss + SGD loop "
        "from the same initial parameters and compare losses, parameters and wall times.",
    )
    demo.add_argument("--epochs", type=_int_at_least(1), default=16, help="epochs (default: 16)")
    demo.add_argument(
        "--lr", type=_learning_rate, default=0.01, help="learning rate (default: 0.01)"
    )
    demo.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="dtype (default: float64)",
    )
    demo.add_argument(
        "--seed", type=_seed, default=0, help="seed of the data and the init (default: 0)"
    )
    demo.add_argument(
        "--n-train", type=_int_at_least(1), default=100, help="training rows (default: 100)"
    )
    demo.add_argument(
        "--n-valid", type=_int_at_least(1), default=10_000, help="validation rows (default: 10000)"
    )
    demo.add_argument(
        "--features", type=_int_at_least(1), default=4, help="features N (default: 4)"
    )
    demo.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        default=None,
        help="rows per step (default: n_train // 3)",
    )
    demo.add_argument(
        "--backend", choices=("cpp", "numba", "cuda"), default=None, help="linsgd backend"
    )
    demo.add_argument(
        "--threads",
        type=_int_at_least(0),
        default=1,
        help="torch CPU threads (default: 1; 0 keeps torch's default)",
    )
    from ._cli_data import add_commands

    add_commands(sub, {"int0": _int_at_least(0), "int1": _int_at_least(1), "lr": _learning_rate,
                       "seed": _seed})  # fmt: skip
    return parser, demo


def _make_data(args: argparse.Namespace, dtype: np.dtype):
    from sklearn.datasets import make_regression

    n = args.features
    X, Y = make_regression(
        n_samples=args.n_train + args.n_valid,
        n_features=n,
        n_targets=1,
        n_informative=max(n - 1, 1),
        bias=random.Random(args.seed).random(),  # a random true bias, seeded
        noise=1,
        random_state=args.seed,
    )
    X = X.astype(dtype)
    Y = Y.astype(dtype)
    t = args.n_train
    return X[:t], Y[:t], X[t:], Y[t:]


def torch_fit(
    layer: Any,
    x: Any,
    y: Any,
    epochs: int,
    lr: float,
    batch_size: int,
    x_valid: Any,
    y_valid: Any,
) -> tuple[list[float], list[float]]:
    """The plain torch training loop the demo compares with, without printing.

    Parameters
    ----------
    layer : torch.nn.Linear
        The model; trained in place.
    x, y : torch.Tensor
        Training data ``(M, N)`` and targets ``(M, U)``.
    epochs : int
        Epochs.
    lr : float
        Learning rate of ``torch.optim.SGD``.
    batch_size : int
        Rows per step; batches are slices ``x[s:s + batch_size]``.
    x_valid, y_valid : torch.Tensor
        Validation data and targets.

    Returns
    -------
    train_loss : list of float
        The mean of each epoch's step losses.
    valid_loss : list of float
        The validation MSE after each epoch.
    """
    import torch
    from torch import nn

    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    train_hist: list[float] = []
    valid_hist: list[float] = []
    for _ in range(epochs):
        loss_t = []
        for start in range(0, len(y), batch_size):
            end = start + batch_size
            loss = loss_fn(layer(x[start:end]), y[start:end])
            loss_t.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_hist.append(sum(loss_t) / len(loss_t))
        with torch.no_grad():
            valid_hist.append(loss_fn(layer(x_valid), y_valid).item())
    optimizer.zero_grad()
    return train_hist, valid_hist


def _eps_units(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """max|a - ref| and that in units of eps * max|ref| (eps of the dtype)."""
    diff = float(np.max(np.abs(a.astype(np.float64) - ref.astype(np.float64)))) if a.size else 0.0
    scale = float(np.finfo(ref.dtype).eps) * float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff, (diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))


def run_demo(args: argparse.Namespace, out: Any = None) -> int:
    """Run the demo described by the parsed ``args``; print to ``out`` (stdout by default).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``demo`` options.
    out : file-like, optional
        Where to print.

    Returns
    -------
    int
        The exit code (0).
    """
    from .estimator import LinearRegressor

    out = sys.stdout if out is None else out

    def say(*parts: Any) -> None:
        print(*parts, file=out, flush=True)

    for name in ("epochs", "n_train", "n_valid", "features"):
        if getattr(args, name) < 1:
            raise SystemExit(f"linsgd demo: --{name.replace('_', '-')} must be >= 1")
    dtype = np.dtype(args.dtype)
    batch_size = args.batch_size if args.batch_size is not None else max(args.n_train // 3, 1)
    X_train, y_train, X_valid, y_valid = _make_data(args, dtype)
    N = args.features

    try:
        import torch
    except ImportError:
        torch = None

    if torch is not None:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        layer = torch.nn.Linear(N, 1, dtype=tdtype)  # torch's default init, seeded by --seed
        W0 = layer.weight.detach().numpy().copy()
        b0 = layer.bias.detach().numpy().copy()
    else:  # the same values, drawn without torch: torch.manual_seed(seed); nn.Linear(N, 1)
        from ._torch_interop import torch_linear_init

        W0, b0 = torch_linear_init(N, 1, args.seed, dtype)

    say(
        f"linsgd demo: make_regression M={args.n_train + args.n_valid} (train {args.n_train}, "
        f"valid {args.n_valid}), N={N}, 1 output, lr={args.lr}, batch_size={batch_size}, "
        f"epochs={args.epochs}, dtype={args.dtype}, seed={args.seed}"
    )
    model = LinearRegressor(
        lr=args.lr,
        batch_size=batch_size,
        epochs=args.epochs,
        dtype=args.dtype,
        backend=args.backend,
    )
    # one untimed warm-up fit each, so that one-time costs (torch's lazy initialisation, which
    # takes seconds, page faults, ...) stay out of the timings
    fit_kw = {"eval_set": (X_valid, y_valid), "coef_init": W0[0], "intercept_init": b0}
    model.set_params(epochs=1).fit(X_train, y_train, **fit_kw)
    model.set_params(epochs=args.epochs)
    t0 = time.perf_counter()
    model.fit(X_train, y_train, **fit_kw)
    t_linsgd = time.perf_counter() - t0
    hist = model.history_

    if torch is None:
        say(f"{'epoch':>5}  {'linsgd MSE':>20}  {'linsgd MSE_v':>20}")
        for e, (tl, vl) in enumerate(zip(hist["train_loss"], hist["valid_loss"])):
            say(f"{e:>5}  {tl:>20.12g}  {vl:>20.12g}")
        say(f"linsgd fit: {t_linsgd:.6f} s (after an untimed warm-up fit)")
        say("torch is not installed, so the comparison with torch is skipped")
        return 0

    x = torch.from_numpy(X_train)
    y = torch.from_numpy(y_train).unsqueeze(-1)
    xv = torch.from_numpy(X_valid)
    yv = torch.from_numpy(y_valid).unsqueeze(-1)
    warm = copy.deepcopy(layer)
    torch_fit(warm, x, y, 1, args.lr, batch_size, xv, yv)
    t0 = time.perf_counter()
    t_hist, v_hist = torch_fit(layer, x, y, args.epochs, args.lr, batch_size, xv, yv)
    t_torch = time.perf_counter() - t0

    say(
        f"{'epoch':>5}  {'linsgd MSE':>20}  {'torch MSE':>20}  "
        f"{'linsgd MSE_v':>20}  {'torch MSE_v':>20}"
    )
    for e in range(args.epochs):
        say(
            f"{e:>5}  {hist['train_loss'][e]:>20.12g}  {t_hist[e]:>20.12g}  "
            f"{hist['valid_loss'][e]:>20.12g}  {v_hist[e]:>20.12g}"
        )
    W_t = layer.weight.detach().numpy()
    b_t = layer.bias.detach().numpy()
    W_l = np.atleast_2d(model.coef_)
    b_l = np.atleast_1d(model.intercept_)
    dw, dw_eps = _eps_units(W_l, W_t)
    db, db_eps = _eps_units(b_l, b_t)
    say(f"weight: max|Δ| = {dw:.3g} = {dw_eps:.3g} eps*max|weight|")
    say(f"bias:   max|Δ| = {db:.3g} = {db_eps:.3g} eps*max|bias|")
    threads = torch.get_num_threads()
    say(
        f"linsgd fit: {t_linsgd:.6f} s   torch fit ({threads} thread{'s' * (threads != 1)}): "
        f"{t_torch:.6f} s   (wall times of one fit each, after an untimed warm-up fit)"
    )
    ratio = t_torch / t_linsgd if t_linsgd > 0 else float("inf")
    say(f"ratio torch/linsgd: {ratio:.1f}x")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``linsgd`` console script and of ``python -m linsgd``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit code.
    """
    parser, demo = _build_parsers()
    args, rest = parser.parse_known_args(argv)
    if args.command != "demo":
        from ._cli_data import run_command

        return run_command(args, rest)
    if rest:
        demo.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.backend is not None:
        from .kernels import backend_name

        try:
            backend_name(args.backend)
        except ValueError as exc:  # says what is missing: the _cuda module, a device, numba
            demo.error(f"argument --backend: {exc}")
    try:
        return run_demo(args)
    except (ValueError, TypeError, FloatingPointError, RuntimeError, MemoryError) as exc:
        # a mistake in the options that only the run finds (a diverging --lr, ...): one line
        demo.error(" ".join(str(exc).split()) or type(exc).__name__)
    return 2  # pragma: no cover - error() exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
