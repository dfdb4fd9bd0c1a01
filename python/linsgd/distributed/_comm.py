"""The communicator protocol of :mod:`linsgd.distributed` and its adapters.

A communicator is anything with ``rank``, ``world_size`` and three collectives on numpy
buffers; :func:`as_communicator` wraps a ``torch.distributed`` process group or an mpi4py
communicator in one. Neither torch nor mpi4py is imported until an adapter is made.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Communicator",
    "MPICommunicator",
    "TorchCommunicator",
    "as_communicator",
]


@runtime_checkable
class Communicator(Protocol):
    """What :func:`linsgd.distributed.train` needs of a group of processes.

    Every process of the group calls every collective, in the same order, with buffers of
    the same shape and dtype (C-contiguous numpy arrays).

    Attributes
    ----------
    rank : int
        This process's index in the group, ``0 <= rank < world_size``.
    world_size : int
        The number of processes.
    """

    rank: int
    world_size: int

    def allreduce_sum(self, buf: np.ndarray) -> None:
        """Replace ``buf`` on every rank by the element-wise sum of every rank's ``buf``.

        Parameters
        ----------
        buf : ndarray
            This rank's values, overwritten with the sum.
        """

    def allgather(self, buf: np.ndarray) -> np.ndarray:
        """Gather every rank's ``buf``, the same result on every rank.

        Parameters
        ----------
        buf : ndarray
            This rank's values.

        Returns
        -------
        ndarray of shape ``(world_size,) + buf.shape``
            Row ``r`` holds rank ``r``'s ``buf``.
        """

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        """Replace ``buf`` on every rank by rank ``root``'s.

        Parameters
        ----------
        buf : ndarray
            Rank ``root``'s values to send, or this rank's buffer to overwrite.
        root : int, default=0
            The rank whose values every rank receives.
        """


def _contiguous(buf: Any, what: str) -> np.ndarray:
    if not isinstance(buf, np.ndarray) or not buf.flags.c_contiguous or not buf.flags.writeable:
        raise TypeError(f"{what} needs a writable C-contiguous numpy array")
    return buf


class TorchCommunicator:
    """A ``torch.distributed`` process group as a :class:`Communicator`.

    On a gloo group the numpy buffers go to the collectives through ``torch.from_numpy``,
    which shares their memory: nothing is copied on the way in or out. An NCCL group moves
    CUDA tensors only: a numpy buffer is copied to a tensor on this rank's GPU
    (``torch.cuda.current_device()``, which the launcher sets, e.g. with
    ``torch.cuda.set_device(local_rank)``), the collective runs there, and the result is
    copied back. Every collective also takes a torch tensor (CPU for gloo, CUDA for NCCL),
    which it uses as it is, in place.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup or None, default=None
        The group; None: the default group of ``torch.distributed.init_process_group``.
        Its timeout (``init_process_group(timeout=...)``) bounds every collective, so a rank
        that fails or dies makes the others raise after at most that long.
    """

    def __init__(self, group: Any = None) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(
                "torch.distributed is not initialised: call "
                "torch.distributed.init_process_group('gloo') first (torchrun sets the "
                "environment it reads)"
            )
        backend = str(dist.get_backend(group)).lower()  # e.g. "gloo", "cpu:gloo,cuda:nccl"
        if "gloo" not in backend and "nccl" not in backend:
            raise ValueError(
                f"TorchCommunicator needs a gloo (CPU) or nccl (CUDA) process group, got "
                f"backend {backend!r}"
            )
        self._torch = torch
        self._dist = dist
        self.group = group
        self.backend = backend
        # a group with gloo moves CPU tensors (numpy memory as it is); NCCL alone, CUDA ones
        gpu = "gloo" not in backend
        self.device = torch.device("cuda", torch.cuda.current_device()) if gpu else None
        self.rank = int(dist.get_rank(group))
        self.world_size = int(dist.get_world_size(group))

    def __deepcopy__(self, memo: dict) -> TorchCommunicator:
        return self  # a connection to the group: copies share it

    def __reduce__(self) -> Any:
        raise TypeError("a TorchCommunicator is a connection of this process and cannot be pickled")

    def _tensor(self, buf: Any, what: str) -> tuple[Any, np.ndarray | None]:
        """The tensor the collective moves, and the numpy buffer to copy it back into (None
        when the collective works on ``buf``'s own memory)."""
        if isinstance(buf, self._torch.Tensor):
            return buf, None
        arr = _contiguous(buf, what)
        t = self._torch.from_numpy(arr)
        if self.device is None:
            return t, None
        return t.to(self.device), arr

    def allreduce_sum(self, buf: Any) -> None:
        """Sum ``buf`` over the ranks in place, through ``torch.distributed.all_reduce(op=SUM)``.

        Parameters
        ----------
        buf : ndarray or torch.Tensor
            This rank's values (writable, C-contiguous), overwritten with the sum.
        """
        t, back = self._tensor(buf, "allreduce_sum")
        self._dist.all_reduce(t, op=self._dist.ReduceOp.SUM, group=self.group)
        if back is not None:
            back[...] = t.cpu().numpy()

    def allgather(self, buf: Any) -> Any:
        """Gather every rank's ``buf``, through ``torch.distributed.all_gather``.

        The gather writes into views of one result array (or tensor).

        Parameters
        ----------
        buf : ndarray or torch.Tensor
            This rank's values.

        Returns
        -------
        ndarray or torch.Tensor of shape ``(world_size,) + buf.shape``
            Row ``r`` holds rank ``r``'s ``buf``; a tensor (on ``buf``'s device) when
            ``buf`` is one.
        """
        torch = self._torch
        if isinstance(buf, torch.Tensor):
            src = buf.contiguous()
            out = torch.empty((self.world_size, *src.shape), dtype=src.dtype, device=src.device)
            self._dist.all_gather(list(out.unbind(0)), src, group=self.group)
            return out
        src = np.ascontiguousarray(buf)
        if self.device is not None:
            return self.allgather(torch.from_numpy(src).to(self.device)).cpu().numpy()
        out = np.empty((self.world_size, *src.shape), dtype=src.dtype)
        views = [torch.from_numpy(out[r]) for r in range(self.world_size)]
        self._dist.all_gather(views, torch.from_numpy(src), group=self.group)
        return out

    def broadcast(self, buf: Any, root: int = 0) -> None:
        """Replace ``buf`` by rank ``root``'s in place, through ``torch.distributed.broadcast``.

        Parameters
        ----------
        buf : ndarray or torch.Tensor
            Rank ``root``'s values to send, or this rank's buffer (writable, C-contiguous) to
            overwrite.
        root : int, default=0
            The rank whose values every rank receives.
        """
        t, back = self._tensor(buf, "broadcast")
        src = root if self.group is None else self._dist.get_global_rank(self.group, root)
        self._dist.broadcast(t, src=src, group=self.group)
        if back is not None:
            back[...] = t.cpu().numpy()


class MPICommunicator:
    """An mpi4py communicator (``mpi4py.MPI.Comm``) as a :class:`Communicator`.

    The buffer-based collectives (``Allreduce``, ``Allgather``, ``Bcast``) read and write the
    numpy buffers in place. MPI has no timeout of its own: a rank that dies usually makes
    ``mpirun`` end the job.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator, e.g. ``MPI.COMM_WORLD``.
    mpi : module, optional
        The module that holds ``IN_PLACE`` and ``SUM``: ``mpi4py.MPI`` (imported when None).
    """

    def __init__(self, comm: Any, mpi: Any = None) -> None:
        for name in ("Get_rank", "Get_size", "Allreduce", "Allgather", "Bcast"):
            if not callable(getattr(comm, name, None)):
                raise TypeError(f"comm must be an mpi4py communicator: it has no {name}()")
        if mpi is None:
            from mpi4py import MPI as mpi
        self.comm = comm
        self._mpi = mpi
        self.rank = int(comm.Get_rank())
        self.world_size = int(comm.Get_size())

    def __deepcopy__(self, memo: dict) -> MPICommunicator:
        return self  # a connection to the group: copies share it

    def __reduce__(self) -> Any:
        raise TypeError("an MPICommunicator is a connection of this process and cannot be pickled")

    def allreduce_sum(self, buf: np.ndarray) -> None:
        """Sum ``buf`` over the ranks in place, through ``Allreduce(IN_PLACE, buf, op=SUM)``.

        Parameters
        ----------
        buf : ndarray
            This rank's values (writable, C-contiguous), overwritten with the sum.
        """
        mpi = self._mpi
        self.comm.Allreduce(mpi.IN_PLACE, _contiguous(buf, "allreduce_sum"), op=mpi.SUM)

    def allgather(self, buf: np.ndarray) -> np.ndarray:
        """Gather every rank's ``buf``, through ``Allgather(buf, out)``.

        Parameters
        ----------
        buf : ndarray
            This rank's values.

        Returns
        -------
        ndarray of shape ``(world_size,) + buf.shape``
            Row ``r`` holds rank ``r``'s ``buf``.
        """
        src = np.ascontiguousarray(buf)
        out = np.empty((self.world_size, *src.shape), dtype=src.dtype)
        self.comm.Allgather(src, out)
        return out

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        """Replace ``buf`` by rank ``root``'s in place, through ``Bcast(buf, root)``.

        Parameters
        ----------
        buf : ndarray
            Rank ``root``'s values to send, or this rank's buffer (writable, C-contiguous) to
            overwrite.
        root : int, default=0
            The rank whose values every rank receives.
        """
        self.comm.Bcast(_contiguous(buf, "broadcast"), root=root)


def _is_mpi_comm(obj: Any) -> bool:
    return type(obj).__module__.startswith("mpi4py")


def _is_torch_group(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch")


def as_communicator(comm: Any) -> Communicator:
    """Return ``comm`` as a :class:`Communicator`.

    Parameters
    ----------
    comm : Communicator, "torch", torch.distributed.ProcessGroup or mpi4py.MPI.Comm
        A communicator is returned as it is; ``"torch"`` is the default ``torch.distributed``
        group; a process group or an mpi4py communicator is wrapped.

    Returns
    -------
    Communicator
        ``comm`` itself, or an adapter (:class:`TorchCommunicator`, :class:`MPICommunicator`)
        around it.

    Raises
    ------
    TypeError
        If ``comm`` is none of these.
    ValueError
        If ``comm`` is a string other than ``"torch"``, if torch.distributed is not
        initialised (or its group is not gloo), or if a communicator's ``rank`` and
        ``world_size`` are not integers with ``0 <= rank < world_size``.
    """
    if isinstance(comm, (TorchCommunicator, MPICommunicator)):
        return comm
    if isinstance(comm, str):
        if comm != "torch":
            raise ValueError(f"comm must be 'torch' or a communicator, got {comm!r}")
        return TorchCommunicator()
    if _is_mpi_comm(comm):
        return MPICommunicator(comm)
    if _is_torch_group(comm):
        return TorchCommunicator(comm)
    if isinstance(comm, Communicator):
        rank, size = comm.rank, comm.world_size
        if not (isinstance(size, int) and isinstance(rank, int) and 0 <= rank < size):
            raise ValueError(
                f"comm must have integer 0 <= rank < world_size, got rank={rank!r}, "
                f"world_size={size!r}"
            )
        return comm
    raise TypeError(
        "comm must be a linsgd.distributed.Communicator (rank, world_size, allreduce_sum, "
        "allgather, broadcast), 'torch', a torch.distributed process group or an mpi4py "
        f"communicator, got {type(comm).__name__}"
    )
