"""The compiled DataLoader order (``linsgd._core.randperm_from_draws``) against torch and the
vectorised numpy + swap-loop path it replaces, on sizes around its internal boundaries (the
ring of 16 prefetched swap partners, the 4,096 rows where the fallback switches to numba)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import needs_torch
from linsgd import _shuffle
from linsgd._shuffle import TorchDataLoaderOrder, torch_mt19937

core = pytest.importorskip("linsgd._core", reason="the compiled order is linsgd._core's")

SIZES = [0, 1, 2, 3, 15, 16, 17, 18, 33, 4095, 4096, 4097, 100_003]


def _fallback_randperm(seed: int, n: int) -> np.ndarray:
    """The pre-compiled path: 64-bit raw outputs, vectorised %, the Fisher-Yates swap loop."""
    raw = np.asarray(torch_mt19937(seed).random_raw(max(n - 1, 0)), dtype=np.uint64)
    z = raw % np.arange(n, 1, -1, dtype=np.uint64)
    return _shuffle._fisher_yates(z.reshape(1, -1), n)[0]


@pytest.mark.parametrize("n", SIZES)
def test_compiled_randperm_equals_the_fallback(n):
    for seed in (0, 5, 2**32 + 9):
        got = TorchDataLoaderOrder(seed).randperm(n)
        assert got.dtype == np.int64 and got.shape == (n,)
        np.testing.assert_array_equal(got, _fallback_randperm(seed, n))


@needs_torch
@pytest.mark.parametrize("n", [1, 2, 17, 4097, 100_003, 1_000_000])
def test_compiled_randperm_equals_torch(n):
    import torch

    for seed in (0, 123):
        expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        np.testing.assert_array_equal(TorchDataLoaderOrder(seed).randperm(n), expected)


@pytest.mark.parametrize("count", [1, 2, 623, 624, 625, 5000])
def test_raw_uint32_draws_are_the_raw_outputs(count):
    a, b = TorchDataLoaderOrder(11), torch_mt19937(11)
    np.testing.assert_array_equal(a._raw(count), np.asarray(b.random_raw(count), np.uint32))
    sa, sb = a.get_state()["state"], b.state["state"]  # the same position afterwards
    assert sa["pos"] == sb["pos"]
    np.testing.assert_array_equal(sa["key"], sb["key"])


def test_orders_equal_epoch_by_epoch_across_sizes():
    for n in (17, 4097):
        a, b = TorchDataLoaderOrder(4), TorchDataLoaderOrder(4)
        np.testing.assert_array_equal(a.orders(n, 3), np.vstack([b.next_epoch(n) for _ in "abc"]))


def test_randperm_from_draws_refuses_bad_arguments():
    out = np.empty(5, np.int64)
    with pytest.raises(TypeError, match="draws must be a 1-D C-contiguous uint32"):
        core.randperm_from_draws(np.zeros(4, np.uint64), out)
    with pytest.raises(TypeError, match="draws must be a 1-D C-contiguous uint32"):
        core.randperm_from_draws(np.zeros(8, np.uint32)[::2], out)
    with pytest.raises(TypeError, match="out must be a 1-D C-contiguous writable int64"):
        core.randperm_from_draws(np.zeros(4, np.uint32), np.empty(5, np.int32))
    ro = np.empty(5, np.int64)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="out must be a 1-D C-contiguous writable int64"):
        core.randperm_from_draws(np.zeros(4, np.uint32), ro)
    with pytest.raises(ValueError, match="draws must hold len\\(out\\) - 1 values, got 5"):
        core.randperm_from_draws(np.zeros(5, np.uint32), out)
    core.randperm_from_draws(np.full(4, 7, np.uint32), out)
    np.testing.assert_array_equal(np.sort(out), np.arange(5))
