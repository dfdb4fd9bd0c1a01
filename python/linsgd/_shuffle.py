"""torch ``DataLoader(shuffle=True)`` row orders, reproduced without torch.

With ``shuffle=True`` and an integer ``random_state`` the estimator visits the rows in exactly
the order that

    DataLoader(TensorDataset(X, Y), batch_size, shuffle=True, drop_last=drop_last,
               generator=torch.Generator().manual_seed(random_state))

yields, epoch after epoch (see ``reference/torch-sgd-semantics.md`` §4 and Appendix A3):

* torch's CPU generator is ``std::mt19937`` seeded with the low 32 bits of the seed, which is
  numpy's ``MT19937._legacy_seeding``; one ``random()`` is one raw 32-bit output;
* each epoch first draws the iterator's ``_base_seed`` (one ``random64()``: two raw outputs);
* then ``RandomSampler`` draws ``randperm(M)``: ``r = [0..M-1]``, and for ``i`` in ``0..M-2``
  ``z = random() % (M - i)``, swap ``r[i]`` and ``r[i + z]``;
* an epoch whose sampler is iterated to its end draws one more, discarded, ``randperm(M)``
  (``M - 1`` raw outputs); ``drop_last`` does not change the permutations, it only leaves out
  the last ``M % batch_size`` rows of each.

The raw draws of many epochs are taken in one vectorised call (32-bit outputs, as
``Generator.integers`` over the full uint32 range returns them: one raw output each); the
``%`` and the sequential swap loop of the Fisher-Yates shuffle run compiled in
``linsgd._core.randperm_from_draws`` (the partners of the next swaps prefetched), or, without
``_core``, a vectorised ``%`` and the swap loop in numba (cached on disk) from 4,096 rows on and
a plain Python loop below that or when numba is missing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_SHUFFLE_ROWS", "TorchDataLoaderOrder", "dataloader_orders", "torch_mt19937"]

#: torch's ``randperm`` on CPU uses the algorithm reproduced here only below this size.
MAX_SHUFFLE_ROWS = (2**32) // 20

_NUMBA_MIN_ROWS = 4096  # below this the pure-Python loop is as fast as calling numba
_RAW_CHUNK = 1 << 22  # raw draws per vectorised call without _core (16 MiB of uint32)
_numba_swaps = None  # compiled lazily: False when numba is not usable

try:
    from ._core import randperm_from_draws as _core_randperm
except ImportError:  # a numba-only install
    _core_randperm = None


def torch_mt19937(seed: int) -> np.random.MT19937:
    """Return numpy's MT19937 in the state of ``torch.Generator().manual_seed(seed)``.

    Parameters
    ----------
    seed : int
        The seed; only its low 32 bits matter, as in torch.

    Returns
    -------
    numpy.random.MT19937
        A bit generator whose ``random_raw()`` outputs are torch's ``random()`` outputs.
    """
    bitgen = np.random.MT19937(0)
    bitgen._legacy_seeding(int(seed) & 0xFFFFFFFF)
    return bitgen


def _get_numba_swaps():
    global _numba_swaps
    if _numba_swaps is None:
        try:
            import numba

            @numba.njit(nogil=True, cache=True)
            def swaps(js, out):  # pragma: no cover - compiled
                # js: (E, n-1) swap partners; out: (E, n) filled with 0..n-1 per row
                for e in range(js.shape[0]):
                    r = out[e]
                    for i in range(js.shape[1]):
                        j = js[e, i]
                        t = r[i]
                        r[i] = r[j]
                        r[j] = t
                return out

            _numba_swaps = swaps
        except Exception:  # numba missing or broken: the Python loop does the work
            _numba_swaps = False
    return _numba_swaps


def _permutations(draws: np.ndarray, n: int) -> np.ndarray:
    """torch's ``randperm_cpu(n)`` from each row of ``draws`` (uint32, ``(E, n - 1)``), the
    generator's raw outputs: ``(E, n)`` int64."""
    if _core_randperm is None:
        return _fisher_yates(draws % np.arange(n, 1, -1, dtype=np.uint32), n)
    out = np.empty((draws.shape[0], n), dtype=np.int64)
    for e in range(draws.shape[0]):
        _core_randperm(np.ascontiguousarray(draws[e]), out[e])
    return out


def _fisher_yates(z: np.ndarray, n: int) -> np.ndarray:
    """Apply torch's ``randperm_cpu`` swaps ``swap(r[i], r[i + z[e, i]])`` to ``0..n-1``.

    ``z`` is ``(E, n - 1)``; returns the ``(E, n)`` int64 permutations.
    """
    E = z.shape[0]
    js = np.arange(n - 1, dtype=np.int64) + z.astype(np.int64)
    out = np.empty((E, n), dtype=np.int64)
    out[:] = np.arange(n, dtype=np.int64)
    if n >= _NUMBA_MIN_ROWS:
        swaps = _get_numba_swaps()
        if swaps:
            return swaps(js, out)
    for e in range(E):
        r = out[e].tolist()
        for i, j in enumerate(js[e].tolist()):
            r[i], r[j] = r[j], r[i]
        out[e] = r
    return out


class TorchDataLoaderOrder:
    """The per-epoch row orders of a shuffling torch ``DataLoader``, epoch by epoch.

    Parameters
    ----------
    seed : int
        The seed given to ``torch.Generator().manual_seed``; only its low 32 bits matter,
        as in torch.

    Notes
    -----
    The object is a stateful stream: each :meth:`next_epoch` call advances it the way one
    epoch of the DataLoader advances its generator. :meth:`get_state` / :meth:`set_state`
    save and restore the position, so a training run can be continued later
    (``partial_fit``) exactly where the DataLoader would continue.
    """

    def __init__(self, seed: int) -> None:
        self._bitgen = torch_mt19937(seed)
        self._gen = np.random.Generator(self._bitgen)

    def _raw(self, count: int) -> np.ndarray:
        # integers over the whole uint32 range is one raw 32-bit output per value (numpy's
        # bounded-integer code returns next_uint32 itself for that range), about twice as fast
        # as random_raw's uint64
        if count <= 0:
            return np.empty(0, dtype=np.uint32)
        return self._gen.integers(0, 1 << 32, size=count, dtype=np.uint32)

    def _skip(self, count: int) -> None:
        if count > 0:
            self._bitgen.random_raw(count, output=False)  # advances without an array

    @staticmethod
    def _check_rows(n: int) -> None:
        if n > MAX_SHUFFLE_ROWS:
            raise ValueError(
                f"shuffle=True supports at most {MAX_SHUFFLE_ROWS} rows (torch's randperm changes "
                f"algorithm above that), got {n}"
            )

    def randperm(self, n: int) -> np.ndarray:
        """Draw ``torch.randperm(n, generator=g)`` (CPU algorithm, ``n < 2**32 / 20``).

        Parameters
        ----------
        n : int
            Length of the permutation.

        Returns
        -------
        numpy.ndarray
            int64 array, a permutation of ``0..n-1``.
        """
        self._check_rows(n)
        return _permutations(self._raw(n - 1).reshape(1, -1), n)[0]

    def next_epoch(self, n: int, *, complete: bool = True) -> np.ndarray:
        """Return the next epoch's row order and advance the generator past that epoch.

        Parameters
        ----------
        n : int
            Number of rows in the data set.
        complete : bool, default=True
            Whether the sampler is iterated to its end (torch then draws a trailing, discarded
            ``randperm(n)``); ``False`` models breaking out of the epoch before that.

        Returns
        -------
        numpy.ndarray
            int64 array of shape ``(n,)``: the rows in the order the DataLoader visits them.
        """
        self._check_rows(n)
        self._skip(2)  # _BaseDataLoaderIter._base_seed: one random64()
        perm = self.randperm(n)
        if complete:
            self._skip(n - 1)  # RandomSampler's trailing randperm(n)[:0]
        return perm

    def orders(self, n: int, epochs: int) -> np.ndarray:
        """Return the row orders of the next ``epochs`` complete epochs.

        Each epoch's draws that no order uses (the base seed, the trailing permutation) only
        advance the generator; the swaps run compiled (without ``_core``: the raw draws of
        many epochs at once, a vectorised ``%`` and the numba swap loop).

        Parameters
        ----------
        n : int
            Number of rows.
        epochs : int
            Number of epochs.

        Returns
        -------
        numpy.ndarray
            int64 array of shape ``(epochs, n)``.
        """
        self._check_rows(n)
        if _core_randperm is None:  # the vectorised % and swap loop: many epochs per call
            return self._orders_vectorised(n, epochs)
        out = np.empty((epochs, n), dtype=np.int64)
        for e in range(epochs):
            out[e] = self.next_epoch(n)
        return out

    def _orders_vectorised(self, n: int, epochs: int) -> np.ndarray:
        out = np.empty((epochs, n), dtype=np.int64)
        per = 2 + 2 * max(n - 1, 0)  # base seed, randperm, trailing randperm
        step = max(1, _RAW_CHUNK // per)
        for e0 in range(0, epochs, step):
            E = min(step, epochs - e0)
            raw = self._raw(E * per).reshape(E, per)
            out[e0 : e0 + E] = _permutations(raw[:, 2 : 2 + max(n - 1, 0)], n)
        return out

    def get_state(self) -> dict:
        """Return the generator position (a picklable dict)."""
        return self._bitgen.state

    def set_state(self, state: dict) -> None:
        """Restore a position returned by :meth:`get_state`."""
        self._bitgen.state = state


def dataloader_orders(seed: int, n: int, epochs: int) -> np.ndarray:
    """Row orders of ``epochs`` epochs of a shuffling torch DataLoader seeded with ``seed``.

    Parameters
    ----------
    seed : int
        ``torch.Generator().manual_seed(seed)``.
    n : int
        Number of rows of the data set.
    epochs : int
        Number of epochs.

    Returns
    -------
    numpy.ndarray
        int64 array ``(epochs, n)``; cutting row ``e`` into chunks of ``batch_size`` gives
        the batches of epoch ``e`` (``drop_last=False``), or drop the last partial chunk
        (``drop_last=True``: the permutations are the same).
    """
    return TorchDataLoaderOrder(seed).orders(n, epochs)
