"""A value recomputed at most once per interval, however many pages ask for it.

This is what bounds the dashboard's cost to the database: ten open tabs refreshing every few
seconds still run each overview query at most once per ``ttl``. Concurrent callers while a
refresh is running wait for that one query instead of starting their own. And a query that
takes ``d`` seconds is not run again for ``DUTY * d`` seconds, so on a table so big that the
counts take a second, the dashboard keeps one backend busy at most 1/``DUTY`` of the time
(the refresh slows down instead).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")

#: A query is not rerun before ``DUTY`` times its own duration has passed.
DUTY = 20.0


class Shared(Generic[T]):
    def __init__(self, load: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._load = load
        self.ttl = ttl
        self._value: T | None = None
        self._at = float("-inf")
        self._took = 0.0
        self._lock: asyncio.Lock | None = None
        #: How many times the loader ran (read by tests and the docs' cost statement).
        self.loads = 0

    async def get(self) -> T:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.interval:
                started = time.monotonic()
                self._value = await self._load()
                self._at = time.monotonic()
                self._took = self._at - started
                self.loads += 1
            return self._value

    @property
    def interval(self) -> float:
        """Seconds a value is kept: the ttl, or longer after a slow query."""
        return max(self.ttl, DUTY * self._took)

    def invalidate(self) -> None:
        """Forget the value, so the page shown after an action reflects it."""
        self._at = float("-inf")


class SharedByKey(Generic[K, T]):
    """One ``Shared`` per key (a queue's page), so every tab showing the same key shares its
    reads; the least recently asked keys are dropped beyond ``most``."""

    def __init__(self, load: Callable[[K], Awaitable[T]], ttl: float, most: int = 256) -> None:
        self._load = load
        self.ttl = ttl
        self.most = most
        self._shared: OrderedDict[K, Shared[T]] = OrderedDict()

    async def get(self, key: K) -> T:
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = Shared(lambda: self._load(key), self.ttl)
            while len(self._shared) > self.most:
                self._shared.popitem(last=False)
        self._shared.move_to_end(key)
        return await shared.get()

    @property
    def loads(self) -> int:
        """How many times the loader ran for the keys still kept."""
        return sum(shared.loads for shared in self._shared.values())

    def invalidate(self) -> None:
        for shared in self._shared.values():
            shared.invalidate()
