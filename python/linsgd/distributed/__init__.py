"""Data-parallel training on many processes: one model, the one-process batches.

:func:`train` runs synchronous mini-batch SGD on a group of processes (a ``torch.distributed``
gloo group, an mpi4py communicator, or any :class:`Communicator`). Every step, each rank forms
its rows' share of the global batch's gradient, normalised by the whole global batch
(:func:`linsgd.kernels.partial_gradient`), the ranks exchange ``[gW | gb | sse | failed]`` in
one collective and add the shares in rank order, and every rank applies the same update
(:func:`linsgd.kernels.update`): the parameters are the same bits on every rank, and with
``reduce="gather"`` the same bits as :func:`simulate`, the one-process oracle. On one rank it
is :func:`linsgd.kernels.train` bit for bit.

:func:`closed_form` solves for the exact optimum of the rows of all ranks by TSQR, in one
collective (after a small one that compares the settings).

Unlike DDP, which averages each rank's local mean gradient, a ragged or uneven global batch
weighs every row as the one-process batch does, and nothing is padded or repeated.
"""

from __future__ import annotations

from ._args import DistributedError
from ._comm import Communicator, MPICommunicator, TorchCommunicator, as_communicator
from ._shards import shard_rows
from ._train import simulate, train
from ._tsqr import closed_form

__all__ = [
    "Communicator",
    "DistributedError",
    "MPICommunicator",
    "TorchCommunicator",
    "as_communicator",
    "closed_form",
    "shard_rows",
    "simulate",
    "train",
]
