"""A background thread that reads chunks ahead of training, through a bounded queue."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["read_ahead"]

_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Iterate ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer.

    The reader's exception is re-raised in the consumer, at the item where it happened.
    Leaving the loop early (``break``, an exception, garbage collection of the generator)
    stops the thread after the item it is reading. ``depth=0`` iterates in the caller's thread.

    Parameters
    ----------
    items : iterable
        What to read.
    depth : int
        Items held ahead (the queue's bound).

    Yields
    ------
    object
        The items of ``items``, in order.
    """
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            put(_Failure(exc))
            return
        put(_END)

    thread = threading.Thread(target=work, name="linsgd-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
