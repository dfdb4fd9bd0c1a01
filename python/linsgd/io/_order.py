"""The row order of ``shuffle='chunks'``: chunks in a seeded random order, rows permuted
within each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["chunk_order", "chunk_shuffle_order"]


def chunk_order(n_chunks: int, seed: int, epoch: int) -> tuple[np.random.Generator, np.ndarray]:
    """The generator of epoch ``epoch`` and the chunk permutation it draws first."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    return rng, rng.permutation(int(n_chunks))


def chunk_shuffle_order(chunk_rows: Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """The rows of one ``shuffle='chunks'`` epoch, as indices into the concatenated chunks.

    The chunks are visited in the order ``rng.permutation(n_chunks)`` and the rows of each
    visited chunk in the order ``rng.permutation(len(chunk))``, drawn in visiting order from
    ``rng = numpy.random.default_rng([seed, epoch])`` (``seed``: its low 32 bits; ``epoch``:
    the absolute epoch number, ``n_iter_`` before it). A stream fit with
    ``shuffle='chunks'`` equals, bit for bit, ``linsgd.kernels.train(X, y, W, b,
    orders=np.stack([chunk_shuffle_order(rows, seed, e) for e in epochs]), ...)`` on the
    concatenated chunks.

    Parameters
    ----------
    chunk_rows : sequence of int
        The rows of each chunk, in storage order.
    seed : int
        The seed (``random_state`` of the estimator).
    epoch : int
        The epoch number.

    Returns
    -------
    numpy.ndarray
        The ``sum(chunk_rows)`` row indices (int64).
    """
    sizes = np.asarray(chunk_rows, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rng, perm = chunk_order(len(sizes), seed, epoch)
    parts = [starts[k] + rng.permutation(int(sizes[k])) for k in perm]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
