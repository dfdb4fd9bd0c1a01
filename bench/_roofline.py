"""The roofline of this CPU, measured in the benchmark's own run: read bandwidth on 1 and 2
threads and the floating-point throughput of the forms the kernels use (a multiply, then an
add: no fused multiply-add, since the kernels fix every rounding), per dtype.

An epoch of mini-batch SGD on (M, N) data with U outputs reads ``M (N + U)`` elements (the
memory floor: those bytes / the single-thread read bandwidth) and needs ``2 N U`` multiplies and
``2 N U`` adds per row, the forward dot products and ``X^T e`` (the compute floor: those
operations / the measured throughput). A kernel at the roofline takes ``max(memory floor,
compute floor)``; the ratio to it is printed for every grid point, and in cache (rows that fit
in L2, read again and again) the time against the compute floor alone.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np

# the in-cache epoch of each shape: rows that fit in this (any x86 core's L2 holds it)
CACHE_BYTES = 256 * 1024


def _vector_bytes() -> int:
    """The vector width of the kernels' instruction-set variant (64: avx512, 32: avx2)."""
    try:
        from linsgd import _core
    except ImportError:
        return 32
    return {"avx512": 64, "avx2": 32}.get(_core.cpu_variant(), 16)


def _fp_child(dtype_name: str, vector_bytes: int, seconds: float) -> dict[str, Any]:
    """(In a child process: the LLVM option is global.) ``a[i] = a[i] * m + c`` over an
    L1-resident array, vectorised at the kernels' width: a multiply, then an add, as the
    kernels round (no fastmath, so no fused multiply-add)."""
    import llvmlite.binding as llvm

    dtype = np.dtype(dtype_name).type
    llvm.set_option("", f"--force-vector-width={vector_bytes // np.dtype(dtype).itemsize}")
    import numba

    @numba.njit(nogil=True, cache=False)
    def fp(reps, a, m, c):  # pragma: no cover - compiled
        for _ in range(reps):
            for i in range(a.shape[0]):
                a[i] = a[i] * m + c
        return a[0]

    # m < 1, c small: the values stay normal and finite however many repetitions
    a = np.ones(4096 // np.dtype(dtype).itemsize, dtype)
    m, c = dtype(0.999), dtype(1e-3)
    fp(10, a, m, c)

    def run(reps: int) -> float:
        # CPU time of this thread: the machine may be shared, and the loop touches no memory
        t0 = time.thread_time()
        fp(reps, a, m, c)
        return time.thread_time() - t0

    reps = 1000
    while run(reps) < seconds / 20:
        reps *= 4
    best = min(run(reps) for _ in range(20))
    asm = next(iter(fp.inspect_asm().values()), "")
    regs = "zmm" if "zmm" in asm else "ymm" if "ymm" in asm else "xmm"
    return {"ops_per_s": 2.0 * a.size * reps / best, "registers": regs, "fma": "vfmadd" in asm}


def fp_throughput(dtype_name: str, seconds: float = 0.2) -> dict[str, Any] | None:
    """Multiplies + adds per second on one thread (each counted as one operation), measured
    in a child process; None without numba."""
    import json
    import subprocess
    import sys

    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    cmd = [sys.executable, __file__, "fp", dtype_name, str(_vector_bytes()), str(seconds)]
    runs = []
    for _ in range(3):  # the best of three processes: another may share the core
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return max(runs, key=lambda r: r["ops_per_s"])


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def read_bandwidth_threads(nbytes: int, threads: int, repeats: int = 5) -> dict[str, Any] | None:
    """Read bandwidth of ``threads`` threads each summing its own part of one array."""
    from _common import _numba_reader

    reader = _numba_reader()
    if reader is None:
        return None
    a = np.ones(nbytes // 8, dtype=np.float64)
    parts = np.array_split(a, threads)
    reader(parts[0][:1024])

    def once() -> float:
        barrier = threading.Barrier(threads + 1)

        def work(p: np.ndarray) -> None:
            barrier.wait()
            reader(p)

        pool = [threading.Thread(target=work, args=(p,)) for p in parts]
        for th in pool:
            th.start()
        barrier.wait()
        t0 = time.perf_counter()
        for th in pool:
            th.join()
        return time.perf_counter() - t0

    once()
    ts = [once() for _ in range(repeats)]
    return {"threads": threads, "GBps": a.nbytes / float(np.median(ts)) / 1e9}


def measure(nbytes: int, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Read bandwidth (1 and 2 threads) and FP throughput (float64, float32)."""
    out: dict[str, Any] = {"read": {}, "fp": {}}
    for th in (1, 2):
        r = read_bandwidth_threads(nbytes, th, repeats)
        if r is not None:
            out["read"][str(th)] = r
            log(f"  read, {th} thread{'s' if th > 1 else ''}: {r['GBps']:6.2f} GB/s")
    for name in ("float64", "float32"):
        f = fp_throughput(name)
        if f is not None:
            out["fp"][name] = f
            log(f"  multiply+add {name}: {f['ops_per_s'] / 1e9:6.1f} G op/s ({f['registers']})")
    return out


def floors(rec: dict[str, Any], bandwidth: float, roof: dict[str, Any]) -> None:
    """Memory floor, compute floor and the ratio of each linsgd implementation to their max."""
    fp = roof.get("fp", {}).get(rec["dtype"])
    ops = 4.0 * rec["M"] * rec["N"] * rec["U"]
    rec["memory_floor_s"] = rec["bytes"] / (bandwidth * 1e9)
    rec["compute_floor_s"] = ops / fp["ops_per_s"] if fp else None
    roofline = max(rec["memory_floor_s"], rec["compute_floor_s"] or 0.0)
    rec["roofline_s"] = roofline
    for r in rec["impls"].values():
        r["roofline_ratio"] = r["epoch_s"] / roofline


def in_cache(
    point: tuple[int, int, int, int], dtype: Any, roof: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """The cpp epoch on as many rows of the point's shape as fit in ``CACHE_BYTES``, read again
    and again: the compute side alone, against the compute floor."""
    from _common import make_problem, stable_lr
    from linsgd import kernels

    _, N, U, B = point
    item = np.dtype(dtype).itemsize
    rows = max(B, CACHE_BYTES // ((N + U) * item) // B * B)
    X, Y, W, b = make_problem(rows, N, U, dtype, seed=0)
    lr = stable_lr(N, B)

    def epoch() -> None:
        kernels.epoch(X, Y, W, b, batch_size=B, lr=lr, check_finite=False, backend="cpp")

    epoch()
    inner = max(1, int(0.02 / max(_timed(epoch), 1e-7)))
    best = min(_timed(lambda: [epoch() for _ in range(inner)]) / inner for _ in range(repeats))
    fp = roof.get("fp", {}).get(np.dtype(dtype).name)
    compute_s = 4.0 * rows * N * U / fp["ops_per_s"] if fp else None
    return {
        "rows": rows,
        "bytes": rows * (N + U) * item,
        "epoch_s": best,
        "compute_floor_s": compute_s,
        "ratio": best / compute_s if compute_s else None,
        "fp_fraction": compute_s / best if compute_s else None,
    }


def describe(roof: dict[str, Any] | None, bandwidth: float) -> str:
    """One paragraph: what the floors are made of, with this run's figures."""
    if not roof:
        return "(no roofline measured)"
    reads = ", ".join(f"{k} thread(s) {v['GBps']:.2f} GB/s" for k, v in roof["read"].items())
    fps = ", ".join(
        f"{k} {v['ops_per_s'] / 1e9:.1f} G op/s ({v['registers']})" for k, v in roof["fp"].items()
    )
    return (
        f"Read bandwidth (numba read loop, threads each reading their part): {reads}; the "
        f"memory floor uses the single-core {bandwidth:.2f} GB/s above. Multiply + add "
        f"throughput, one thread, best of several runs (`a[i] = a[i] * m + c` on an L1-resident "
        f"array, vectorised at the kernels' width, no fused multiply-add, as the kernels round): "
        f"{fps}. Memory floor = bytes of X and Y / bandwidth; compute floor = 4 M N U operations "
        f"(the forward dot products and X^T e, a multiply and an add each) / throughput; the "
        f"ratios are to max(memory floor, compute floor). In cache: the cpp epoch on as many "
        f"rows of the shape as fit in {CACHE_BYTES // 1024} KiB, read again and again, against "
        "its compute floor."
    )


def table(results: list[dict[str, Any]], torch_name: str = "torch") -> str:
    """Markdown: per grid point and dtype, the roofline figures of the cpp epoch and the
    default call."""
    from _common import fmt_time

    lines = [
        "| M | N | U | B | dtype | cpp epoch | default call | speed-up vs torch | memory floor "
        "| compute floor | cpp / max(floors) | default / max(floors) | in cache: rows, time "
        "| in cache / compute floor | in cache, % of FP peak |",
        "|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    for rec in results:
        imp = rec["impls"]
        cpp, dflt = imp.get("cpp", {}), imp.get("epoch default call", {})
        ic = rec.get("in_cache") or {}
        pct = "-" if not ic.get("fp_fraction") else f"{100 * ic['fp_fraction']:.0f} %"
        lines.append(
            f"| {rec['M']:,} | {rec['N']} | {rec['U']} | {rec['B']} | {rec['dtype']} "
            f"| {fmt_time(cpp.get('epoch_s'))} | {fmt_time(dflt.get('epoch_s'))} "
            f"| {x(cpp.get('vs_torch'))} | {fmt_time(rec.get('memory_floor_s'))} "
            f"| {fmt_time(rec.get('compute_floor_s'))} | {x(cpp.get('roofline_ratio'))} "
            f"| {x(dflt.get('roofline_ratio'))} "
            f"| {ic.get('rows', '-')}, {fmt_time(ic.get('epoch_s'))} | {x(ic.get('ratio'))} "
            f"| {pct} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "fp":
        print(json.dumps(_fp_child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
