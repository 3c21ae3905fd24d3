"""Reading ahead: the next item produced on a worker thread while the caller works on this one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["read_ahead"]

_Item = TypeVar("_Item")


def read_ahead(items: Iterable[_Item], *, ahead: int = 1, name: str) -> Iterator[_Item]:
    """Yield `items` in order, producing up to `ahead` of them on a thread named `name`.

    Worth it where producing is Arrow or Parquet work that runs without the GIL (decoding a
    batch while the caller links or scatters the last). At most `ahead` items wait, which
    bounds memory. An error of the producer is raised in the caller; a caller that stops
    early stops the producer, and a generator is closed on the producer's thread.
    """
    # (done, item, error): the producer's end and its error travel through the same queue.
    handoff: queue.Queue[tuple[bool, _Item | None, BaseException | None]] = queue.Queue(ahead)
    stop = threading.Event()

    def put(entry: tuple[bool, _Item | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((False, item, None)):
                    return
            put((True, None, None))
        except BaseException as error:  # handed to the caller, which raises it
            put((True, None, error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            done, item, error = handoff.get()
            if error is not None:
                raise error
            if done:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
