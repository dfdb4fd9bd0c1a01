"""The kernel-level API: one batch gradient, one SGD step, whole epochs, in compiled code.

``partial_gradient`` and ``update`` are the two halves of a step, for a step split around a
collective (:mod:`linsgd.distributed`).

Arrays follow torch's layout: ``X`` is ``(M, N)``, ``Y`` is ``(M, U)`` (or ``(M,)`` when
``U == 1``), ``W`` is ``(U, N)`` and ``b`` is ``(U,)`` or ``None`` for a model without a bias.
Every function takes ``backend=None`` (``"cpp"``, ``"numba"``; ``"cuda"`` where built);
``LINSGD_BACKEND`` overrides the default. GPU arrays (torch CUDA tensors, CuPy arrays, anything
with ``__cuda_array_interface__``) go to the CUDA backend and are updated in place there.

Inputs, and what is done with them
----------------------------------
* ``X``, ``Y`` (and ``eval_set``): numpy arrays, ``np.memmap`` files, CPU torch tensors or
  anything ``np.asarray`` takes, of dtype float32 or float64 (``X``'s dtype is the model's;
  ``Y`` must have the same). They are read only, so read-only arrays are fine. A C-contiguous,
  aligned array in native byte order is used as it is, without a copy (a memmap is read straight
  from its file); any other layout (Fortran order, slices with steps, negative strides,
  unaligned or byte-swapped data) is copied once per call into a C-contiguous array.
  Integer, bool, complex and object arrays are refused (``TypeError``): cast them first.
* A ``scipy.sparse`` ``X`` (and ``eval_set``'s, when ``X`` is sparse) is never densified: a CSR
  matrix or array with sorted, unique indices is read in place, another format is converted to
  CSR once per call, and unsorted or duplicate indices are canonicalised once on a copy. The
  results are the dense data's bits (see the README's *Sparse input*); sparse steps run on one
  thread; the CUDA backend refuses sparse input (``TypeError``).
* ``W``, ``b``: updated in place by ``step``/``epoch``/``train``, so they must be writable,
  C-contiguous, aligned arrays of ``X``'s dtype in native byte order (numpy arrays or CPU torch
  tensors, used without a copy); anything else is refused (``ValueError``/``TypeError`` naming
  the argument) rather than silently trained on a copy. ``loss`` and ``gradient`` only read
  them (any layout; copied when needed). Parameters must not share memory with ``X``, ``Y``,
  ``sample_weight``, ``order`` or each other (``ValueError``).
* ``state``: a dict; the momentum buffers it holds must be writable C-contiguous arrays of
  ``W``'s and ``b``'s shape and dtype (they are updated in place).
* ``order``/``orders``: integer row indices in ``[0, M)``. Indices may repeat and an epoch may
  have fewer or more rows than ``X`` (sampling with replacement, bootstrap epochs).
* Empty data (``M == 0``), a ``batch_size`` below 1, non-finite hyper-parameters, NaN or infinity
  in ``W``/``b`` (always) or in the data (with ``check_finite=True``, the default) raise a
  ``ValueError`` naming the argument. ``N == 0`` features is allowed (a bias-only model). A
  ``batch_size`` larger than the epoch means one batch per epoch.

Divergence, interruption, threads
---------------------------------
* ``step`` and ``epoch`` raise :class:`~linsgd.DivergenceError` (a ``FloatingPointError``)
  naming the epoch and step whose loss was NaN/infinite (that step is not applied) or whose
  update made ``W``/``b`` non-finite (they then hold those values); ``train`` reports
  ``status="diverged"``.
* Ctrl-C (``KeyboardInterrupt``) stops a running call within a fraction of a second on every
  CPU backend (the numba backend runs long calls in chunks of about 50 ms for this; the chunks
  give the same bits as one call). ``W``, ``b`` and the momentum buffers in ``state`` then hold
  the values of some step part-way through the call, and ``state["step"]`` is not advanced: copy
  them first if they must survive an interruption (:class:`~linsgd.LinearRegressor` does; its
  model is left unchanged).
* The kernels release the GIL (all but calls of a few microseconds, which keep it: handing
  it over would cost more than they take), so calls on different models run in parallel
  threads and give exactly the results they give one after the other. Updating the same
  ``W``/``b``/``state`` from two threads at once is a data race: serialising such calls is
  the caller's job.
* ``n_threads`` (``train``, ``epoch``, ``step``; default 1) splits each step of the C++
  backend over that many host threads (-1: ``os.cpu_count()``), with the same bits for every
  count. Only steps with ``batch_size * N * U >= 2**14`` are split (the validation loss then
  too); smaller ones would spend more on the hand-offs than they save. The numba backend
  runs on one thread and the CUDA backend on the GPU: both check ``n_threads`` and ignore it.

Speed of a call
---------------
Every call takes one path to the backend's one ``train`` entry point. When nothing needs
converting (numpy arrays of the model dtype, C-contiguous; Python numbers and bools) the
arguments go to it as they are and its compiled check is the only one: a call costs a few
microseconds of Python on top of the compiled loop. Anything else is converted once first
(``linsgd._call.prepare``), with the same bits.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _cuda_dispatch as _cd
from ._backends import backend_name
from ._call import evaluation_arrays, raise_if_diverged, run_call
from ._history import epoch_means
from ._sparse import is_sparse
from ._split_step import partial_gradient, update

__all__ = [
    "TrainResult",
    "backend_name",
    "epoch",
    "epoch_means",
    "gradient",
    "loss",
    "partial_gradient",
    "step",
    "train",
    "update",
]

_STATUS = ("completed", "target_loss", "diverged", "interrupted")


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    losses : ndarray of shape (epochs, steps_per_epoch)
        The batch loss of every step, before its update; NaN where a step did not run.
    valid_losses : ndarray of shape (epochs,) or None
        The full validation-set MSE after each epoch (NaN where the epoch did not finish),
        when ``eval_set`` was given.
    steps : int
        Steps whose update was applied.
    epochs : int
        Epochs run to their end.
    status : str
        ``"completed"``, ``"target_loss"`` (stopped after the first step whose batch loss fell
        below ``target_loss``), ``"diverged"`` (a non-finite loss or parameter) or
        ``"interrupted"``.
    """

    losses: np.ndarray
    valid_losses: np.ndarray | None
    steps: int
    epochs: int
    status: str


# ----------------------------------------------------------------------------- public API


def loss(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> float:
    """Mean squared error of the model on a data set, rounded as ``nn.MSELoss`` rounds it.

    Parameters
    ----------
    X : array_like of shape (M, N)
        The data (float32 or float64: the model dtype).
    Y : array_like of shape (M, U) or (M,)
        The targets, of ``X``'s dtype.
    W : array_like of shape (U, N)
        The weights, torch's ``nn.Linear.weight`` layout; only read.
    b : array_like of shape (U,) or None
        The bias; None for a model without one. Only read.
    sample_weight : array_like of shape (M,), optional
        Row weights: the loss becomes ``sum(w * e**2) / (U * sum(w))``.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    float
        The mean of the squared errors over all ``M * U`` entries.
    """
    mod, x, y, w, bias, sw, _ = evaluation_arrays(X, Y, W, b, sample_weight, backend)
    return float(mod.loss(x, y, w, bias, sw))


def gradient(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Gradient of the batch MSE with respect to ``W`` and ``b``, without an update.

    Parameters
    ----------
    X : array_like of shape (B, N)
        The batch (float32 or float64: the model dtype).
    Y : array_like of shape (B, U) or (B,)
        Its targets, of ``X``'s dtype.
    W : array_like of shape (U, N)
        The weights; only read.
    b : array_like of shape (U,) or None
        The bias; None for a model without one. Only read.
    sample_weight : array_like of shape (B,), optional
        Row weights, as in :func:`train`.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    gW : ndarray of shape (U, N)
        The gradient of the batch MSE with respect to ``W``.
    gb : ndarray of shape (U,) or None
        The gradient with respect to ``b``; None when ``b`` is None.
    loss : float
        The batch MSE.
    """
    mod, x, y, w, bias, sw, device = evaluation_arrays(X, Y, W, b, sample_weight, backend)
    if device:
        gw, gb = _cd.zeros_like(w), _cd.zeros_like(bias)
    else:
        gw = np.empty_like(w)
        gb = None if bias is None else np.empty_like(bias)
    value = mod.gradient(x, y, w, bias, gw, gb, sw)
    return gw, gb, float(value)


def train(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    epochs: int,
    lr: float | Sequence[float],
    orders: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    eval_set: tuple[Any, Any] | None = None,
    target_loss: float | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> TrainResult:
    """Run several epochs of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Each step computes the batch MSE gradient and applies ``torch.optim.SGD``'s update with the
    given hyper-parameters, in torch's order of operations.

    Parameters
    ----------
    X : array_like or sparse matrix of shape (M, N)
        Read only; used without a copy when C-contiguous (a memmap included), or a
        scipy.sparse matrix (CSR read in place, never densified).
    Y : array_like of shape (M, U) or (M,)
        The targets, of ``X``'s dtype.
    W : array of shape (U, N)
        Updated in place: writable and C-contiguous, of ``X``'s dtype.
    b : array of shape (U,) or None
        Updated in place; None for a model without a bias.
    batch_size : int
        Rows per step; the last batch of an epoch may be smaller.
    epochs : int
        Epochs to run.
    lr : float or sequence of float
        The learning rate, or one per epoch (a schedule).
    orders : array_like of int, shape (epochs, R), optional
        The rows of each epoch, in order, each in ``[0, M)``. Rows may repeat and ``R`` may
        differ from ``M`` (a shorter ``R`` drops rows, a longer one samples with replacement).
        Rows ``0..M-1`` in order when None.
    weight_decay : float
        Coupled weight decay, as torch's: ``d += weight_decay * p``.
    decay_bias : bool
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum, dampening : float
        As in ``torch.optim.SGD``.
    nesterov, maximize : bool
        As in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count); a fresh
        optimizer when None or empty.
    eval_set : tuple (X_valid, Y_valid), optional
        A validation set whose MSE is computed after every epoch.
    target_loss : float, optional
        Stop after the first step whose batch loss is below this value.
    sample_weight : array_like of shape (M,), optional
        Non-negative row weights (cast to ``X``'s dtype). Each batch's loss becomes the weighted
        mean ``sum(w * e**2) / (U * sum(w))`` over its rows, so unit weights give exactly the
        unweighted (torch) result and scaling all weights changes nothing; a batch whose weights
        are all zero contributes no gradient.
    check_finite : bool
        Refuse NaN and infinity in the data. The C++ and numba backends check inside the
        training pass (a non-finite datum makes its batch's loss non-finite: only that batch is
        scanned, and at the end what training did not read); the error and the model left as it
        was are those of a check before training.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.
    n_threads : int
        Host threads for the steps of the C++ backend, from 1 (the default) to 1024, or -1 for
        ``os.cpu_count()``. The results are the same bits for every count. Threads only start
        for steps with ``batch_size * N * U >= 2**14`` (smaller steps run on one thread: a
        hand-off would cost more than it saves), so they are for large batches and wide
        models, and on a machine with few cores they may not be faster. The numba backend
        runs on one thread and ignores ``n_threads`` (after checking it); so does the CUDA
        backend, which has its own parallelism.

    Returns
    -------
    TrainResult
        The per-step losses, the validation losses, the steps and epochs run and the status.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, within a fraction of a second; ``W``, ``b`` and ``state`` are then part-way
        through the run (see the module documentation).
    """
    losses, valid, steps, status = run_call(
        X, Y, W, b, batch_size, epochs, lr, orders, "orders",
        weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, state,
        eval_set, target_loss, sample_weight, check_finite, backend, n_threads,
    )  # fmt: skip
    n_epochs = operator.index(epochs)  # (the call accepted it)
    if n_epochs:
        spe = losses.shape[0] // n_epochs
    else:  # no epoch ran: the steps an epoch would have had
        rows = (X.shape[0] if is_sparse(X) else len(X)) if orders is None else np.shape(orders)[-1]
        spe = -(-rows // (rows if batch_size is None else min(operator.index(batch_size), rows)))
    return TrainResult(
        losses.reshape(n_epochs, spe), valid, steps, n_epochs if status == 0 else steps // spe,
        _STATUS[status],
    )  # fmt: skip


def epoch(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    lr: float,
    order: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> np.ndarray:
    """Run one epoch of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X : array_like of shape (M, N)
        The data, float32 or float64 (the model dtype); only read.
    Y : array_like of shape (M, U) or (M,)
        The targets, of ``X``'s dtype; only read.
    W : array of shape (U, N)
        The weights, updated in place: writable and C-contiguous, of ``X``'s dtype.
    b : array of shape (U,) or None
        The bias, updated in place; None for a model without one.
    batch_size : int
        Rows per step; the last batch of the epoch may be smaller.
    lr : float
        The learning rate.
    order : array_like of int, shape (R,), optional
        The rows of the epoch, in order, each in ``[0, M)`` (repeats allowed); rows
        ``0..M-1`` when None.
    weight_decay : float, default=0.0
        Coupled weight decay, as torch's: ``d += weight_decay * p``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum, as in ``torch.optim.SGD`` (needs ``momentum > 0``, ``dampening == 0``).
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count), updated in
        place; a fresh optimizer when None or empty.
    sample_weight : array_like of shape (M,), optional
        Non-negative row weights, as in :func:`train`.
    check_finite : bool, default=True
        Refuse NaN and infinity in the data, checked inside the training pass (see
        :func:`train`).
    backend : str, optional
        ``"cpp"`` or ``"numba"`` (``"cuda"`` where built); the default backend when None.
    n_threads : int, default=1
        Host threads for each step of the C++ backend (1 to 1024, or -1 for
        ``os.cpu_count()``), with the same bits for every count; see :func:`train`.

    Returns
    -------
    ndarray of float64, shape (steps,)
        The batch loss of every step, before its update.

    Raises
    ------
    DivergenceError
        When a loss or a parameter becomes NaN or infinite (its ``epoch`` is 0, its ``step``
        the step that diverged).
    """
    losses, _, steps, status = run_call(
        X, Y, W, b, batch_size, 1, lr, order, "order",
        weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, state,
        None, None, sample_weight, check_finite, backend, n_threads,
    )  # fmt: skip
    if status == 2:
        raise_if_diverged(status, steps, losses.shape[0], W, b)
    return losses


def step(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
    n_threads: int = 1,
) -> float:
    """Take one SGD step on one batch (all of ``X``), updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X : array_like of shape (B, N)
        The batch, float32 or float64 (the model dtype); only read.
    Y : array_like of shape (B, U) or (B,)
        Its targets, of ``X``'s dtype; only read.
    W : array of shape (U, N)
        The weights, updated in place: writable and C-contiguous, of ``X``'s dtype.
    b : array of shape (U,) or None
        The bias, updated in place; None for a model without one.
    lr : float
        The learning rate.
    weight_decay : float, default=0.0
        Coupled weight decay, as torch's: ``d += weight_decay * p``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum, as in ``torch.optim.SGD`` (needs ``momentum > 0``, ``dampening == 0``).
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count), updated in
        place: pass the same dict to successive steps; a fresh optimizer when None or empty.
    sample_weight : array_like of shape (B,), optional
        Non-negative row weights, as in :func:`train`.
    check_finite : bool, default=True
        Refuse NaN and infinity in the data, checked inside the training pass (see
        :func:`train`).
    backend : str, optional
        ``"cpp"`` or ``"numba"`` (``"cuda"`` where built); the default backend when None.
    n_threads : int, default=1
        Host threads for each step of the C++ backend (1 to 1024, or -1 for
        ``os.cpu_count()``), with the same bits for every count; see :func:`train`.

    Returns
    -------
    float
        The batch loss before the update.

    Raises
    ------
    DivergenceError
        When the loss or a parameter becomes NaN or infinite.
    """
    losses, _, steps, status = run_call(
        X, Y, W, b, None, 1, lr, None, "order",
        weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, state,
        None, None, sample_weight, check_finite, backend, n_threads,
    )  # fmt: skip
    if status == 2:
        raise_if_diverged(status, steps, 1, W, b)
    return float(losses[0])
