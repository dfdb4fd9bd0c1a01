"""torch ``DataLoader(shuffle=True)`` row orders, reproduced without torch.

With ``shuffle=True`` and an integer ``random_state`` the estimator visits the rows in exactly
the order that

    DataLoader(TensorDataset(X, Y), batch_size, shuffle=True,
               generator=torch.Generator().manual_seed(random_state))

yields, epoch after epoch (see ``reference/torch-sgd-semantics.md`` §4 and Appendix A3):

* torch's CPU generator is ``std::mt19937`` seeded with the low 32 bits of the seed, which is
  numpy's ``MT19937._legacy_seeding``; one ``random()`` is one raw 32-bit output;
* each epoch first draws the iterator's ``_base_seed`` (one ``random64()``: two raw outputs);
* then ``RandomSampler`` draws ``randperm(M)``: ``r = [0..M-1]``, and for ``i`` in ``0..M-2``
  ``z = random() % (M - i)``, swap ``r[i]`` and ``r[i + z]``;
* an epoch iterated to the end draws one more, discarded, ``randperm(M)`` (``M - 1`` raw outputs).

The raw draws are taken in one vectorised call per permutation; the sequential swap loop of the
Fisher-Yates shuffle runs in Python for small data sets and in numba (when importable) from
200,000 rows on (about 10 ms per million rows once compiled, against about 0.8 s in Python).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_SHUFFLE_ROWS", "TorchDataLoaderOrder", "dataloader_orders"]

#: torch's ``randperm`` on CPU uses the algorithm reproduced here only below this size.
MAX_SHUFFLE_ROWS = (2**32) // 20


_NUMBA_MIN_ROWS = 200_000  # below this the pure-Python loop beats numba's compile time
_numba_swaps = None  # compiled lazily: False when numba is not usable


def _get_numba_swaps():
    global _numba_swaps
    if _numba_swaps is None:
        try:
            import numba

            @numba.njit(nogil=True)
            def swaps(js, r):  # pragma: no cover - compiled
                for i in range(js.shape[0]):
                    j = js[i]
                    t = r[i]
                    r[i] = r[j]
                    r[j] = t
                return r

            _numba_swaps = swaps
        except Exception:  # numba missing or broken: the Python loop does the work
            _numba_swaps = False
    return _numba_swaps


def _fisher_yates(z: np.ndarray, n: int) -> np.ndarray:
    """Apply torch's ``randperm_cpu`` swaps ``swap(r[i], r[i + z[i]])`` to ``0..n-1``."""
    js = np.arange(n - 1, dtype=np.int64) + z.astype(np.int64)
    if n >= _NUMBA_MIN_ROWS:
        swaps = _get_numba_swaps()
        if swaps:
            return swaps(js, np.arange(n, dtype=np.int64))
    r = list(range(n))
    for i, j in enumerate(js.tolist()):
        r[i], r[j] = r[j], r[i]
    return np.asarray(r, dtype=np.int64)


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
        seed = int(seed)
        self._bitgen = np.random.MT19937(0)
        self._bitgen._legacy_seeding(seed & 0xFFFFFFFF)

    def _raw(self, count: int) -> np.ndarray:
        if count <= 0:
            return np.empty(0, dtype=np.uint64)
        return np.asarray(self._bitgen.random_raw(count), dtype=np.uint64)

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
        if n > MAX_SHUFFLE_ROWS:
            raise ValueError(
                f"shuffle=True supports at most {MAX_SHUFFLE_ROWS} rows (torch's randperm changes "
                f"algorithm above that), got {n}"
            )
        raw = self._raw(n - 1)
        z = raw % np.arange(n, 1, -1, dtype=np.uint64) if n > 1 else raw
        return _fisher_yates(z, n)

    def next_epoch(self, n: int, *, complete: bool = True) -> np.ndarray:
        """Return the next epoch's row order and advance the generator past that epoch.

        Parameters
        ----------
        n : int
            Number of rows in the data set.
        complete : bool, default=True
            Whether the epoch is iterated to its end (torch then draws a trailing, discarded
            ``randperm(n)``); ``False`` models breaking out of the epoch early.

        Returns
        -------
        numpy.ndarray
            int64 array of shape ``(n,)``: the rows in the order the DataLoader visits them.
        """
        self._raw(2)  # _BaseDataLoaderIter._base_seed: one random64()
        perm = self.randperm(n)
        if complete:
            if n > MAX_SHUFFLE_ROWS:  # pragma: no cover - randperm above already refused it
                raise ValueError("too many rows for shuffle=True")
            self._raw(n - 1)  # RandomSampler's trailing randperm(n)[:0]
        return perm

    def orders(self, n: int, epochs: int) -> np.ndarray:
        """Return the row orders of the next ``epochs`` complete epochs.

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
        out = np.empty((epochs, n), dtype=np.int64)
        for e in range(epochs):
            out[e] = self.next_epoch(n)
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
