"""The threads plain ``def process`` workers run in: sized by the queues' limits, resized live.

A queue's limit already bounds how many of its jobs run at once; the pool only has to be as
large as the limits of the running queues add up to, or a scale or start signal would raise a
queue's limit while its sync jobs still ran a few at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

#: Sync workers never get more threads than this, whatever the queue limits add up to.
MAX_THREADS = 256

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_busy = 0


def busy() -> int:
    """Worker threads of this process running a job right now (idle pool threads are not)."""
    return _busy


def _count(delta: int) -> None:
    global _busy
    with _lock:
        _busy += delta


class WorkerThreads(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose size follows the queues' limits."""

    def __init__(self, size: int, prefix: str = "oban-worker") -> None:
        super().__init__(max_workers=self._bounded(size), thread_name_prefix=prefix)

    @staticmethod
    def _bounded(size: int) -> int:
        return max(1, min(MAX_THREADS, size))

    @property
    def size(self) -> int:
        return self._max_workers

    def resize(self, size: int) -> None:
        """Allow ``size`` threads from now on. Growing starts threads as work arrives;
        shrinking lets the extra threads idle (the limits keep them unused)."""
        # ThreadPoolExecutor reads _max_workers on every submit to decide whether to start a
        # thread, so raising it is all growing takes; the standard library offers no setter.
        self._max_workers = self._bounded(size)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(_counted, fn, *args, **kwargs)


def _counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _count(1)
    try:
        return fn(*args, **kwargs)
    finally:
        _count(-1)
