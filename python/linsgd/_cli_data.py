"""``linsgd fit``, ``predict``, ``info`` and ``bench``: the command line on data files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import numpy as np

__all__ = ["add_commands", "run_command"]

_SHUFFLE = {"none": False, "rows": True, "chunks": "chunks"}


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def add_commands(sub: Any, types: dict) -> None:
    """Add the data commands to the ``linsgd`` subparsers (``types``: the demo's checks)."""
    pos, lr, seed = types["int1"], types["lr"], types["seed"]
    fit = sub.add_parser(
        "fit", help="train a model on a data file and save it",
        description="Train LinearRegressor on DATA chunk by chunk (the bits of the in-memory "
        "fit) and save the model (a versioned .npz, see linsgd.io.save_model).",
    )  # fmt: skip
    _data_args(fit, target_required=True)
    fit.add_argument("--lr", type=lr, default=0.01, help="learning rate (default: 0.01)")
    fit.add_argument("--epochs", type=pos, default=10, help="epochs (default: 10)")
    fit.add_argument("--batch-size", type=pos, default=32, help="rows per step (default: 32)")
    for name in ("momentum", "weight-decay", "l2"):
        fit.add_argument(f"--{name}", type=lr, default=0.0, help=f"{name} (default: 0)")
    fit.add_argument(
        "--shuffle", choices=tuple(_SHUFFLE), nargs="?", const="rows", default="none",
        help="none (default), rows (torch DataLoader order; the bare flag) or chunks",
    )  # fmt: skip
    fit.add_argument("--seed", type=seed, default=0, help="random_state (default: 0)")
    fit.add_argument("--eval", metavar="DATA", help="validation data (same columns)")
    fit.add_argument("--dtype", choices=("float32", "float64"), default=None, help="model dtype")
    fit.add_argument("--backend", choices=("cpp", "numba", "cuda"), default=None)
    fit.add_argument("--verbose", type=types["int0"], default=0, help="0, 1 or 2 (rows/s)")
    fit.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write")
    fit.set_defaults(_parser=fit)
    pred = sub.add_parser(
        "predict", help="predict with a saved model",
        description="Write MODEL's predictions on DATA to OUT (.npy or .csv).",
    )  # fmt: skip
    pred.add_argument("model", metavar="MODEL")
    pred.add_argument("data", metavar="DATA")
    pred.add_argument(
        "--features", default=None, help="feature columns (default: those the model was fitted on)"
    )
    pred.add_argument("--chunk-rows", type=pos, default=None, help="rows per chunk")
    pred.add_argument("-o", "--output", required=True, metavar="OUT", help=".npy or .csv")
    pred.set_defaults(_parser=pred)
    info = sub.add_parser("info", help="describe a saved model")
    info.add_argument("model", metavar="MODEL")
    info.set_defaults(_parser=info)
    bench = sub.add_parser(
        "bench",
        help="run the benchmark (bench/run.py, bench/streaming.py)",
        description="Run bench/run.py (or bench/streaming.py with --streaming) "
        "of a source checkout; other arguments are passed on.",
    )
    bench.add_argument("--streaming", action="store_true", help="the streaming benchmark")
    bench.set_defaults(_parser=bench)


def _data_args(p: argparse.ArgumentParser, *, target_required: bool) -> None:
    p.add_argument("data", metavar="DATA", help=".npy, .npz, .csv, .parquet, .h5 or .zarr")
    p.add_argument(
        "--target",
        required=target_required,
        metavar="COL",
        help="target column name (CSV, Parquet), array name (.npz, .h5, zarr group) "
        "or column index (.npy)",
    )
    p.add_argument(
        "--features",
        default=None,
        metavar="COLS",
        help="comma-separated feature columns (default: all others)",
    )
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk (default 65536)")


def _features_arg(cols: list[str] | None) -> Any:
    """One name for ``.npz``/HDF5/zarr arrays and a fixed-size-list column; a list otherwise."""
    return cols[0] if cols is not None and len(cols) == 1 else cols


def _fit(args: argparse.Namespace) -> int:
    from .estimator import LinearRegressor
    from .io import open_path, save_model

    feats = _features_arg(_columns(args.features))
    kw = {"chunk_rows": args.chunk_rows, "dtype": args.dtype}
    src = open_path(args.data, target=args.target, features=feats, **kw)
    ev = (
        None
        if args.eval is None
        else open_path(args.eval, target=args.target, features=feats, **kw)
    )
    est = LinearRegressor(
        lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, momentum=args.momentum,
        weight_decay=args.weight_decay, l2=args.l2, shuffle=_SHUFFLE[args.shuffle],
        random_state=args.seed, dtype=args.dtype, backend=args.backend, verbose=args.verbose,
    )  # fmt: skip
    est.fit(src, eval_set=ev)
    meta = {"data": os.path.abspath(args.data), "target": args.target, "features": feats}
    save_model(est, args.output, metadata=meta)
    loss = est.history_["train_loss"][-1]
    line = f"linsgd fit: {est.n_iter_} epochs, {est.t_} steps, train MSE {loss:.6g}"
    if "valid_loss" in est.history_:
        line += f", valid MSE {est.history_['valid_loss'][-1]:.6g}"
    print(f"{line} -> {args.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .io import load_model, open_path

    est, header = load_model(args.model)
    meta = header.get("metadata", {})
    feats = _features_arg(_columns(args.features)) if args.features else meta.get("features")
    if feats is None and meta.get("target") is not None:  # every column but the fitted target
        src = open_path(args.data, target=meta["target"], chunk_rows=args.chunk_rows)
    else:
        src = open_path(args.data, features=feats, chunk_rows=args.chunk_rows)
    if src.n_features != est.n_features_in_:
        raise ValueError(
            f"{args.data!r} has {src.n_features} feature columns, but the model "
            f"expects {est.n_features_in_}"
        )
    parts = [est.predict(X) for X, _ in src.iter_chunks(0)]
    P = np.concatenate(parts)
    out = args.output
    if out.endswith(".npy"):
        np.save(out, P)
    elif out.endswith(".csv"):
        cols = P.reshape(len(P), -1)
        names = ["prediction"] if P.ndim == 1 else [f"prediction_{j}" for j in range(cols.shape[1])]
        np.savetxt(out, cols, delimiter=",", fmt="%.17g", header=",".join(names), comments="")
    else:
        raise ValueError(f"argument -o/--output: expected a .npy or .csv path, got {out!r}")
    print(f"linsgd predict: {len(P)} rows -> {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .io import load_model

    est, h = load_model(args.model)
    print(
        f"{h['format']} version {h['version']}: LinearRegressor with {est.n_features_in_} "
        f"features, {np.size(est.intercept_)} output(s), dtype {est.coef_.dtype}"
    )
    print(
        f"trained {est.n_iter_} epochs, {est.t_} steps; last train MSE "
        f"{est.history_['train_loss'][-1]:.6g}"
    )
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(h["params"].items()))
    print(f"params: {params}")
    print(f"coef_: {np.array2string(np.asarray(est.coef_), precision=6)}")
    print(f"intercept_: {np.array2string(np.asarray(est.intercept_), precision=6)}")
    for k, v in sorted(h.get("metadata", {}).items()):
        print(f"{k}: {v}")
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    name = "streaming.py" if args.streaming else "run.py"
    here = os.path.dirname(os.path.abspath(__file__))
    # the checkout this package runs from (an editable install), else the current directory
    # (a checkout whose package was installed into site-packages)
    candidates = [os.path.join(os.path.dirname(os.path.dirname(here)), "bench", name)]
    candidates.append(os.path.join(os.getcwd(), "bench", name))
    script = next((c for c in candidates if os.path.isfile(c)), None)
    if script is None:
        args._parser.error(
            f"bench/{name} not found: the benchmarks live in linsgd's source "
            "repository (run this from a source checkout)"
        )
    return subprocess.call([sys.executable, script, *rest])


def run_command(args: argparse.Namespace, rest: list[str]) -> int:
    """Run a data command; mistakes the run finds become one-line argparse errors."""
    if rest and args.command != "bench":
        args._parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "bench":
            return _bench(args, rest)
        return {"fit": _fit, "predict": _predict, "info": _info}[args.command](args)
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError, KeyError) as exc:
        args._parser.error(" ".join(str(exc).split()) or type(exc).__name__)
    return 2  # pragma: no cover - error() exits
