"""``LinearRegressor``: a scikit-learn estimator that trains a linear model by mini-batch SGD.

The estimator owns the hyper-parameters (:mod:`linsgd._params`), the data semantics
(:mod:`linsgd._validation`), the fitted attributes (written in one place) and torch interop;
``fit`` and ``partial_fit`` share one path (:mod:`linsgd._fit`); the epochs run in
:mod:`linsgd._trainer`, through the public kernel API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from . import _checks as ck
from ._comm_param import CommParamMixin
from ._fit import fit_model
from ._params import auto_lr
from ._torch_interop import TorchInteropMixin
from ._validation import check_feature_names, check_X
from .schedules import LRSchedule

__all__ = ["EXPECTED_FAILED_CHECKS", "LinearRegressor", "auto_lr"]

#: scikit-learn estimator checks that mini-batch SGD cannot pass, with the reason; the test
#: suite passes it to ``check_estimator(..., expected_failed_checks=...)``. Empty: with the
#: default ``lr="auto"`` (a step size that cannot diverge) every check passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _kernel_layout(coef: Any, intercept: Any, has_intercept: bool) -> tuple:
    """Copies of fitted ``coef_``/``intercept_`` in kernel layout: W (U, N), b (U,) or None."""
    coef = np.asarray(coef)
    dt = coef.dtype
    if not (dt is ck.F64 or dt is ck.F32):
        dt = dt if dt in (np.float32, np.float64) else ck.F64
    W = np.array(coef if coef.ndim == 2 else coef.reshape(1, -1), dtype=dt, order="C", copy=True)
    if not has_intercept:
        return W, None
    b = np.array(intercept, dtype=dt, order="C", copy=True).reshape(-1)
    if b.shape != (W.shape[0],):
        b = np.broadcast_to(b, (W.shape[0],)).copy()
    return W, b


class LinearRegressor(CommParamMixin, TorchInteropMixin, RegressorMixin, BaseEstimator):
    """Linear regression trained by mini-batch SGD in compiled code, in agreement with torch.

    The training loop is the one of ``nn.Linear`` + ``nn.MSELoss()`` + ``torch.optim.SGD``
    with batches cut from the rows in order (or in a torch ``DataLoader``'s shuffled order),
    computed with torch's rounding so that the parameters agree with torch's to the last bit
    or two.

    Parameters
    ----------
    lr : float, "auto", schedule or callable, default="auto"
        Learning rate. A float is used for every epoch (set it to compare with a torch run).
        ``"auto"`` computes, from the training data, a step size that no batch can make
        diverge: ``1 / (2 * max_i ||[x_i, 1]||^2 / U + weight_decay + 2 * l2)`` (see
        :func:`auto_lr`); it is computed at the first ``fit``/``partial_fit`` and kept by
        later ``partial_fit`` calls. A :mod:`linsgd.schedules` object (``StepLR``,
        ``ExponentialLR``, ``CosineAnnealingLR``, ``LambdaLR``) gives torch's scheduler
        values epoch by epoch, bit for bit; a callable ``epoch -> lr`` gives the learning
        rate of each (0-based) epoch directly.
    batch_size : int, default=32
        Rows per step; the last batch of an epoch may be smaller unless ``drop_last``.
    epochs : int, default=16
        Epochs (passes over the data) that :meth:`fit` runs, at most.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    weight_decay : float, default=0.0
        Coupled weight decay, as torch's: the update direction gains ``weight_decay * p``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias (torch decays every parameter of its group).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel regularizer: the loss gains ``l2 * sum(W**2)``; never the bias.
    fit_intercept : bool, default=True
        Whether the model has a bias (torch's ``bias=True``).
    shuffle : bool or "chunks", default=False
        Shuffle the rows every epoch, in the order of a torch ``DataLoader(shuffle=True,
        generator=torch.Generator().manual_seed(random_state))``. ``"chunks"`` (chunk
        sources only, :mod:`linsgd.io`): visit the chunks in a seeded random order and the
        rows of each in a random order (:func:`linsgd.io.chunk_shuffle_order`).
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the shuffle and of ``init="torch"``. An int ``s`` reproduces a torch script
        that calls ``torch.manual_seed(s)`` before building ``nn.Linear`` and gives its
        DataLoader ``generator=torch.Generator().manual_seed(s)``. None draws a fresh seed at
        each :meth:`fit`; a Generator/RandomState draws one from that generator.
    solver : {"sgd", "closed_form"}, default="sgd"
        ``"closed_form"`` solves for the optimum of the same penalised objective directly
        (see :func:`linsgd.closed_form`) instead of running SGD.
    tol : float or None, default=None
        Stopping rule, as scikit-learn's ``SGDRegressor``: :meth:`fit` stops when the
        monitored loss (the validation MSE with ``early_stopping`` or ``eval_set``, else the
        epoch's mean training loss) has not improved on the best one so far by at least
        ``tol`` for ``n_iter_no_change`` consecutive epochs. With a validation set the
        parameters (and the momentum buffers) of the epoch with the lowest validation loss are
        restored, see ``best_epoch_``. None disables the rule (unless ``early_stopping``). When
        the rule is active and ``epochs`` run out before it is met, :meth:`fit` warns with
        :class:`sklearn.exceptions.ConvergenceWarning`.
    n_iter_no_change : int, default=5
        See ``tol``.
    target_loss : float or None, default=None
        Stop right after the first step whose batch loss is below this value (that step is
        applied, as in the loop ``loss.backward(); opt.step(); if loss < target: break``).
    drop_last : bool, default=False
        Leave out the last ``n_samples % batch_size`` rows of every epoch, as
        ``DataLoader(drop_last=True)`` does.
    init : {"zeros", "torch"}, default="zeros"
        Initial parameters of :meth:`fit` when ``coef_init``/``intercept_init`` are not given:
        zeros, or ``nn.Linear``'s default initialisation (``U(-1/sqrt(N), 1/sqrt(N))`` for the
        weight and the bias) drawn as torch's CPU generator draws it after
        ``torch.manual_seed(random_state)``, bit for bit (see
        :func:`linsgd._torch_interop.torch_linear_init`).
    dtype : {None, "float32", "float64"}, default=None
        Parameter and arithmetic dtype. None keeps float32 data in float32 and uses float64
        for anything else; float32 input is never silently up-cast.
    backend : {None, "cpp", "numba", "cuda"}, default=None
        Kernel backend; None uses the default (``LINSGD_BACKEND`` overrides it).
    verbose : int, default=0
        1: print ``epoch: k - MSE: train - MSE_v: valid`` after every epoch, as a typical
        torch training loop does. 2: a tqdm progress bar over the steps with the running loss
        (falls back to 1, with a note, when tqdm is not installed).
    n_threads : int, default=1
        Host threads for each SGD step of the C++ backend (1 to 1024), or -1 for
        ``os.cpu_count()``. The fitted model is the same, bit for bit, for every count.
        Threads only start for steps with ``batch_size * n_features * n_outputs >= 2**14``
        (the validation loss then uses them too); smaller steps run on one thread, where a
        hand-off would cost more than it saves. So they are for large batches of wide data, and
        on a machine with few cores they may not be faster. The numba and CUDA backends ignore
        it.
    early_stopping : bool, default=False
        Set aside ``validation_fraction`` of the training rows as a validation set (the rows
        ``SGDRegressor`` sets aside: ``ShuffleSplit(test_size=validation_fraction,
        random_state=random_state)``; both parts keep their row order), train on the rest and
        stop by ``tol`` on the validation MSE (``tol=None`` counts as ``tol=0``: stop after
        ``n_iter_no_change`` epochs without a lower validation loss); the parameters of the
        best epoch are restored. Unlike ``eval_set`` (which cannot be combined with it), the
        validation rows pass through the earlier steps of a :class:`~sklearn.pipeline.Pipeline`
        with the training rows. The validation MSE is unweighted (``sample_weight`` weighs
        the training rows only). Only for ``solver="sgd"`` and :meth:`fit`.
    validation_fraction : float, default=0.1
        Fraction of the rows set aside by ``early_stopping``, in (0, 1).
    warm_start : bool, default=False
        When True and the model is fitted, :meth:`fit` starts from the fitted ``coef_`` and
        ``intercept_``, the momentum buffers and the shuffle stream instead of from ``init``
        (``coef_init``/``intercept_init``, when given, start a fresh run as usual). It is a new
        fit otherwise, as in scikit-learn: up to ``epochs`` epochs with the stopping rules,
        ``n_iter_``, ``t_``, ``history_`` and ``lr_history_`` describe this fit only, a
        learning-rate schedule starts again at epoch 0 and ``lr="auto"`` is computed from this
        fit's data. So a warm fit with ``epochs=k`` gives the same parameters, bit for bit, as
        ``k`` calls of :meth:`partial_fit` (with a constant learning rate; :meth:`partial_fit`
        continues a schedule at epoch ``n_iter_`` instead).
    comm : None, "torch", Communicator, torch.distributed.ProcessGroup or mpi4py.MPI.Comm, \
default=None
        Train on a group of processes, every rank calling :meth:`fit`/:meth:`partial_fit`
        with the same parameters (see :ref:`distributed-estimator`). ``"torch"`` is the
        default ``torch.distributed`` group; a process group or an mpi4py communicator is
        wrapped by :func:`linsgd.distributed.as_communicator`. The steps run through
        :func:`linsgd.distributed.train`; every decision (early stopping, ``target_loss``,
        divergence) is taken on the global losses, so every rank ends with the same fitted
        attributes, and a failure on one rank raises on every rank, each model left as it
        was. ``random_state`` must be an int with ``shuffle``, ``init="torch"`` or
        ``early_stopping``. ``solver="closed_form"`` runs
        :func:`linsgd.distributed.closed_form`. A pickled model keeps ``"torch"`` but not a
        communicator object (``comm`` is None once unpickled); :func:`sklearn.base.clone`
        shares it. None: one process.
    sharding : {"batch", "data"}, default="batch"
        With ``comm``: ``"batch"``, every rank passes all rows and global batch ``k`` is the
        one-process batch ``k``; ``"data"``, each rank passes its own rows (and its own
        ``eval_set``; ``early_stopping`` sets aside a part of each rank's rows), the
        validation loss being the mean over every rank's validation rows. See
        :func:`linsgd.distributed.train`.
    reduce : {"gather", "allreduce"}, default="gather"
        With ``comm``: how the ranks add their gradients (see
        :func:`linsgd.distributed.train`); ``"gather"`` adds them in rank order, the same bits
        as :func:`linsgd.distributed.simulate`.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_outputs, n_features)
        The weights (1-D when ``y`` was 1-D), in the model dtype.
    intercept_ : scalar or ndarray of shape (n_outputs,)
        The bias (0 when ``fit_intercept=False``), in the model dtype.
    n_iter_ : int
        Epochs run by the last :meth:`fit` and the :meth:`partial_fit` calls since (an epoch
        cut short by ``target_loss`` counts; 0 for the closed form).
    t_ : int
        SGD steps (parameter updates) run. With ``target_loss`` the stopping step is step
        number ``t_`` (1-based), i.e. the loop index ``t_ - 1`` that a torch loop
        ``for i in ...: ...; if loss < target: print(i); break`` prints.
    history_ : dict
        ``"train_loss"``: the mean batch loss of each epoch (``sum(losses) / len(losses)``, as
        a torch loop averages its ``loss.item()`` values); ``"valid_loss"`` (with ``eval_set``
        or ``early_stopping``): the validation MSE after each epoch.
    lr_history_ : list of float
        The learning rate of each epoch run.
    best_epoch_ : int or None
        With ``tol`` or ``early_stopping``: the (0-based) epoch with the lowest monitored loss;
        with a validation set, the parameters are that epoch's. None otherwise.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names. Later calls check
        them as scikit-learn does: other names or another order raise a ``ValueError``, data
        without names after a fit with names (or the reverse) gives a ``UserWarning``.

    See Also
    --------
    linsgd.kernels.train : The kernel call that runs the epochs.
    linsgd.closed_form : The optimum that long runs converge to.

    Examples
    --------
    >>> import numpy as np
    >>> from linsgd import LinearRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    >>> model = LinearRegressor(lr=0.05, batch_size=20, epochs=60).fit(X, y)
    >>> model.coef_.round(3)
    array([ 1. , -2. ,  0.5])
    >>> round(float(model.intercept_), 3)
    3.0
    >>> model.n_iter_, model.t_
    (60, 600)
    """

    def __init__(
        self,
        lr: float | str | LRSchedule | Callable[[int], float] = "auto",
        batch_size: int = 32,
        epochs: int = 16,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        weight_decay: float = 0.0,
        decay_bias: bool = True,
        l2: float = 0.0,
        fit_intercept: bool = True,
        shuffle: bool = False,
        random_state: Any = None,
        solver: str = "sgd",
        tol: float | None = None,
        n_iter_no_change: int = 5,
        target_loss: float | None = None,
        drop_last: bool = False,
        init: str = "zeros",
        dtype: Any = None,
        backend: str | None = None,
        verbose: int = 0,
        n_threads: int = 1,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        warm_start: bool = False,
        comm: Any = None,
        sharding: str = "batch",
        reduce: str = "gather",
    ) -> None:
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.maximize = maximize
        self.weight_decay = weight_decay
        self.decay_bias = decay_bias
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.shuffle = shuffle
        self.random_state = random_state
        self.solver = solver
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.target_loss = target_loss
        self.drop_last = drop_last
        self.init = init
        self.dtype = dtype
        self.backend = backend
        self.verbose = verbose
        self.n_threads = n_threads
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.comm = comm
        self.sharding = sharding
        self.reduce = reduce

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ fitted parameters

    def _params_from_attrs(self) -> tuple[np.ndarray, np.ndarray | None]:
        has_b = getattr(self, "_has_intercept", bool(self.fit_intercept))
        return _kernel_layout(self.coef_, self.intercept_, has_b)

    def _set_params_attrs(self, W: np.ndarray, b: np.ndarray | None, single: bool) -> None:
        dt = W.dtype
        if single:
            self.coef_ = W[0].copy()
            self.intercept_ = dt.type(0.0) if b is None else dt.type(b[0])
        else:
            self.coef_ = W.copy()
            self.intercept_ = np.zeros(W.shape[0], dtype=dt) if b is None else b.copy()
        self._has_intercept = b is not None

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
        coef_init: Any = None,
        intercept_init: Any = None,
    ) -> LinearRegressor:
        """Train the model from ``init``, given initial parameters, or the fitted state.

        Parameters
        ----------
        X : array_like or sparse matrix of shape (n_samples, n_features), or a chunk source
            Training data (numpy, DataFrame, CPU torch tensor, ..., or scipy.sparse: CSR used
            as it is, other formats converted once, never densified), or a :mod:`linsgd.io`
            source (files, streams) or a dask array, trained on chunk by chunk with the bits
            of the in-memory fit on the same rows.
        y : array_like of shape (n_samples,) or (n_samples, n_outputs), optional
            Targets. 1-D gives a single-output model with 1-D ``coef_``. None when ``X`` is
            a chunk source (it holds the targets).
        sample_weight : array_like of shape (n_samples,), optional
            Non-negative row weights. Each batch's loss becomes the weighted mean
            ``sum(w_i * e_i**2) / (U * sum(w_i))`` over its rows (and outputs), so unit
            weights give exactly the unweighted (torch) bits, scaling all weights changes
            nothing, and in full-batch training an integer weight ``k`` equals repeating the
            row ``k`` times. A batch whose weights are all zero contributes no gradient (the
            decay and momentum terms still act).
        eval_set : tuple (X_valid, y_valid), optional
            Validation data whose MSE is recorded after every epoch (``history_["valid_loss"]``)
            and monitored by ``tol``. Not with ``early_stopping=True``, which splits its own.
            In a Pipeline the earlier steps do not transform it: use ``early_stopping`` there.
        coef_init : array_like of shape (n_features,) or (n_outputs, n_features), optional
            Initial weights; from ``init`` when None.
        intercept_init : scalar or array_like of shape (n_outputs,), optional
            Initial bias; from ``init`` when None.

        Returns
        -------
        LinearRegressor
            The fitted estimator.

        Raises
        ------
        ValueError, TypeError
            On invalid data or hyper-parameters; the message names the argument.
        DivergenceError
            When the loss or the parameters become non-finite. The previously fitted
            parameters (if any) are left unchanged.

        Warns
        -----
        ConvergenceWarning
            When the stopping rule (``tol``, ``early_stopping``) was active and ``epochs``
            ran out before it was met. Silence it with ``warnings.simplefilter("ignore",
            sklearn.exceptions.ConvergenceWarning)`` (in a ``warnings.catch_warnings()``
            block to keep it local).
        RankDeficientWarning
            ``solver="closed_form"`` on a singular system (the minimum-norm optimum is used).
        """
        return fit_model(
            self, X, y, sample_weight, eval_set, coef_init, intercept_init, resume=False,
            n_epochs=None,
        )  # fmt: skip

    def partial_fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
    ) -> LinearRegressor:
        """Run one more epoch, continuing the optimizer state (momentum buffers, shuffle stream).

        On an unfitted estimator the first call starts from ``init``. ``partial_fit`` called
        ``k`` times gives bit for bit the same model, ``n_iter_``, ``t_`` and ``history_`` as
        ``fit(X, y)`` with ``epochs=k``; a learning-rate schedule continues at epoch
        ``n_iter_``. ``tol`` and ``target_loss`` are not used here.

        Parameters
        ----------
        X : array_like or sparse matrix of shape (n_samples, n_features), or a chunk source
            Training data (dense or scipy.sparse, as in :meth:`fit`), or a :mod:`linsgd.io`
            source (one pass over it) or a dask array.
        y : array_like of shape (n_samples,) or (n_samples, n_outputs), optional
            Targets, with as many outputs as the model has; None for a chunk source.
        sample_weight : array_like of shape (n_samples,), optional
            Row weights, as in :meth:`fit`.
        eval_set : tuple (X_valid, y_valid), optional
            Validation data; its MSE after the epoch is appended to ``history_["valid_loss"]``
            (NaN is appended there for an epoch run without ``eval_set`` once the history has
            validation losses, so the lists keep the length ``n_iter_``).

        Returns
        -------
        LinearRegressor
            The estimator.

        Raises
        ------
        ValueError, TypeError
            On invalid data; the message names the argument.
        DivergenceError
            When the epoch diverges; the model is left as it was.
        """
        resume = hasattr(self, "coef_")
        return fit_model(self, X, y, sample_weight, eval_set, None, None, resume=resume, n_epochs=1)

    # ------------------------------------------------------------------ prediction

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the linear model: ``X @ coef_.T + intercept_`` in the model dtype.

        Parameters
        ----------
        X : array_like or sparse matrix of shape (n_samples, n_features)
            Samples (a scipy.sparse ``X`` gives scipy's product ``X @ coef_.T``).

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (1-D for a single-output model fitted on 1-D ``y``).
        """
        check_is_fitted(self, "coef_")
        check_feature_names(self, X)
        W, b = self._params_from_attrs()
        X_arr = check_X(X, "X", W.dtype, W.shape[1])
        P = X_arr @ W.T
        if b is not None:
            P += b
        return P[:, 0] if np.ndim(self.coef_) == 1 else P
