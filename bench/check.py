"""Correctness check run before any timing: linsgd's epoch against a naive numpy loop and torch.

A small problem (M=100 rows, N=4 features, U=2 outputs, batch 33, so the last batch is
ragged), three epochs in a row with the optimizer state carried between ``kernels.epoch``
calls, for float64 and float32, plain SGD and SGD with momentum + weight decay, on every
available CPU backend. The parameters and the per-step losses must agree within ``TOL_EPS``
machine epsilons (relative to the largest reference value) with

* a naive numpy loop that follows torch's formulas, batch by batch, in the data's dtype; and
* torch (``nn.Linear`` + ``nn.MSELoss`` + ``torch.optim.SGD``) when torch is installed.

Standalone: ``python bench/check.py`` (exit status 1 when a comparison fails).
"""

from __future__ import annotations

import _env  # noqa: F401  (pins the thread pools before numpy is imported)

# isort: split

import sys
from typing import Any

import numpy as np

TOL_EPS = 8.0
CONFIGS = (
    {"name": "plain", "momentum": 0.0, "weight_decay": 0.0},
    {"name": "momentum=0.9,weight_decay=0.01", "momentum": 0.9, "weight_decay": 0.01},
)
M, N, U, B, EPOCHS, LR = 100, 4, 2, 33, 3, 0.05


def naive_numpy(X, Y, W0, b0, *, batch_size, lr, epochs, momentum=0.0, weight_decay=0.0):
    """torch's SGD on nn.Linear + MSELoss, batch by batch in numpy, in the data's dtype."""
    T = X.dtype.type
    W, b = W0.copy(), b0.copy()
    buf_w = buf_b = None
    losses = []
    u = Y.shape[1]
    for _ in range(epochs):
        for s in range(0, X.shape[0], batch_size):
            xb, yb = X[s : s + batch_size], Y[s : s + batch_size]
            e = (xb @ W.T + b) - yb
            losses.append(float(np.mean(e * e)))
            g = e * T(2.0 / (xb.shape[0] * u))
            d_w, d_b = g.T @ xb, g.sum(axis=0)
            if weight_decay:
                d_w = d_w + T(weight_decay) * W
                d_b = d_b + T(weight_decay) * b
            if momentum:
                if buf_w is None:
                    buf_w, buf_b = d_w.copy(), d_b.copy()
                else:
                    buf_w = buf_w * T(momentum) + d_w
                    buf_b = buf_b * T(momentum) + d_b
                d_w, d_b = buf_w, buf_b
            W = W - T(lr) * d_w
            b = b - T(lr) * d_b
    return W, b, np.array(losses)


def torch_loop(X, Y, W0, b0, *, batch_size, lr, epochs, momentum=0.0, weight_decay=0.0):
    """The reference torch training loop (nn.Linear + MSELoss + SGD), CPU, one thread."""
    import torch

    dt = torch.float64 if X.dtype == np.float64 else torch.float32
    layer = torch.nn.Linear(X.shape[1], Y.shape[1], dtype=dt)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    mse = torch.nn.MSELoss()
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    losses = []
    for _ in range(epochs):
        for s in range(0, X.shape[0], batch_size):
            loss = mse(layer(Xt[s : s + batch_size]), Yt[s : s + batch_size])
            losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (
        layer.weight.detach().numpy().copy(),
        layer.bias.detach().numpy().copy(),
        np.array(losses),
    )


def _err_eps(a: np.ndarray, ref: np.ndarray, eps: float) -> float:
    scale = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(ref, np.float64)))) / (
        scale * eps
    )


def run_check(backends: list[str] | None = None, use_torch: bool = True) -> dict[str, Any]:
    """Run every comparison; returns ``{"passed", "tolerance_eps", "problem", "cases"}``."""
    import linsgd
    from linsgd import kernels

    have_torch = False
    if use_torch:
        try:
            import torch  # noqa: F401

            have_torch = True
        except ImportError:
            pass
    if backends is None:
        backends = [b for b in linsgd.available_backends() if b in ("cpp", "numba")]
    rng = np.random.default_rng(20240604)
    cases = []
    for dtype in (np.float64, np.float32):
        eps = float(np.finfo(dtype).eps)
        X = rng.standard_normal((M, N)).astype(dtype)
        Wt = rng.standard_normal((U, N))
        Y = (X @ Wt.T + 0.5 + 0.1 * rng.standard_normal((M, U))).astype(dtype)
        W0 = (0.1 * rng.standard_normal((U, N))).astype(dtype)
        b0 = (0.1 * rng.standard_normal(U)).astype(dtype)
        for cfg in CONFIGS:
            hyper = {"momentum": cfg["momentum"], "weight_decay": cfg["weight_decay"]}
            refs = {"numpy": naive_numpy(X, Y, W0, b0, batch_size=B, lr=LR, epochs=EPOCHS, **hyper)}
            if have_torch:
                refs["torch"] = torch_loop(
                    X, Y, W0, b0, batch_size=B, lr=LR, epochs=EPOCHS, **hyper
                )
            for backend in backends:
                W, b = W0.copy(), b0.copy()
                state: dict = {}
                try:
                    losses = np.concatenate(
                        [
                            kernels.epoch(
                                X,
                                Y,
                                W,
                                b,
                                batch_size=B,
                                lr=LR,
                                state=state,
                                backend=backend,
                                **hyper,
                            )
                            for _ in range(EPOCHS)
                        ]
                    )
                except Exception as exc:  # a crash is a failed check, reported as such
                    cases.append(
                        {
                            "dtype": np.dtype(dtype).name,
                            "config": cfg["name"],
                            "backend": backend,
                            "reference": "-",
                            "passed": False,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
                    continue
                for ref_name, (Wr, br, Lr) in refs.items():
                    errs = {
                        "W": _err_eps(W, Wr, eps),
                        "b": _err_eps(b, br, eps),
                        "losses": _err_eps(losses, Lr, eps),
                    }
                    ok = all(np.isfinite(v) and v <= TOL_EPS for v in errs.values())
                    ok = ok and losses.shape == Lr.shape
                    cases.append(
                        {
                            "dtype": np.dtype(dtype).name,
                            "config": cfg["name"],
                            "backend": backend,
                            "reference": ref_name,
                            "max_err_eps": errs,
                            "passed": bool(ok),
                        }
                    )
    return {
        "passed": bool(cases) and all(c["passed"] for c in cases),
        "tolerance_eps": TOL_EPS,
        "problem": {"M": M, "N": N, "U": U, "B": B, "epochs": EPOCHS, "lr": LR},
        "torch_compared": have_torch,
        "cases": cases,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per comparison, for the console and the markdown report."""
    lines = []
    for c in result["cases"]:
        if "error" in c:
            lines.append(f"FAIL {c['backend']:5s} {c['dtype']:7s} {c['config']}: {c['error']}")
            continue
        e = c["max_err_eps"]
        lines.append(
            f"{'ok  ' if c['passed'] else 'FAIL'} {c['backend']:5s} vs {c['reference']:5s} "
            f"{c['dtype']:7s} {c['config']:31s} max error in eps: W {e['W']:.2g}, "
            f"b {e['b']:.2g}, losses {e['losses']:.2g}"
        )
    if not result["torch_compared"]:
        lines.append("torch is not installed: compared with the numpy loop only")
    return lines


def main() -> int:
    res = run_check()
    print("\n".join(summary_lines(res)))
    print("correctness:", "PASS" if res["passed"] else "FAIL")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
