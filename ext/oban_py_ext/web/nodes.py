"""Nodes and their queues, from the check-ins every node publishes on ``gossip``.

The same source as ``oban-py queues`` and Oban Web (through oban_met): each check is one queue
of one node (``node, name, queue, limit, paused, running, started_at, updated_at``), from
Python nodes with gossip on and Elixir nodes running oban_met. As oban_met does, a check not
heard for ``CHECK_TTL`` seconds is forgotten. ``sonar`` pings add nodes that run no queue.
Listening costs the database one idle connection, and no query.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oban_py.config import Config
from oban_py.notifier import Notifier

#: Seconds a check-in stays shown after it was last heard (oban_met purges after 30 s).
CHECK_TTL = 30.0


@dataclass(frozen=True)
class Check:
    node: str
    name: str
    queue: str
    limit: int | None
    paused: bool
    running: int
    started_at: str | None
    heard_at: float

    @property
    def age(self) -> float:
        """Seconds since the last check-in."""
        return max(0.0, time.monotonic() - self.heard_at)


def _limit(check: dict[str, Any]) -> int | None:
    for key in ("limit", "local_limit"):
        value = check.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def parse_check(check: Any, heard_at: float) -> Check | None:
    """One check of a gossip payload, or None when it is not a queue check-in."""
    if not isinstance(check, dict):
        return None
    node, queue = check.get("node"), check.get("queue")
    if not isinstance(node, str) or not isinstance(queue, str):
        return None
    running = check.get("running")
    started = check.get("started_at")
    name = check.get("name")
    return Check(
        node=node,
        name=name if isinstance(name, str) else "Oban",
        queue=queue,
        limit=_limit(check),
        paused=bool(check.get("paused")),
        running=len(running) if isinstance(running, list) else 0,
        started_at=started if isinstance(started, str) else None,
        heard_at=heard_at,
    )


class NodeWatch:
    """Listens to ``gossip`` and ``sonar`` from the first page view until ``stop``."""

    def __init__(
        self, dsn: str, prefix: str, metrics: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.dsn = dsn
        self.prefix = prefix
        #: called with each ``metrics`` payload (the charts' series), on the same connection
        self.metrics = metrics
        self._checks: dict[tuple[str, str, str], Check] = {}
        self._pings: dict[str, float] = {}
        self._notifier: Notifier | None = None
        self._starting: asyncio.Lock | None = None

    def heard_gossip(self, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        checks = payload.get("checks")
        for item in checks if isinstance(checks, list) else []:
            check = parse_check(item, now)
            if check is not None:
                self._checks[(check.node, check.name, check.queue)] = check

    def heard_sonar(self, payload: dict[str, Any]) -> None:
        node = payload.get("node")
        if isinstance(node, str):
            self._pings[node] = time.monotonic()

    async def ensure_started(self) -> None:
        if self._notifier is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._notifier is not None:
                return
            config = Config(dsn=self.dsn, prefix=self.prefix, node="oban-py-web")
            notifier = Notifier(config, self.dsn)
            notifier.listen("gossip", self.heard_gossip)
            notifier.listen("sonar", self.heard_sonar)
            if self.metrics is not None:
                notifier.listen("metrics", self.metrics)
            await notifier.start()
            self._notifier = notifier
            with contextlib.suppress(TimeoutError):
                await notifier.wait_listening(2.0)

    async def stop(self) -> None:
        if self._notifier is not None:
            await self._notifier.stop()
            self._notifier = None

    @property
    def listening(self) -> bool:
        return self._notifier is not None and self._notifier.connected

    def checks(self) -> list[Check]:
        """Live check-ins, by node then queue; stale ones are dropped."""
        now = time.monotonic()
        for key, check in list(self._checks.items()):
            if now - check.heard_at > CHECK_TTL:
                del self._checks[key]
        return sorted(self._checks.values(), key=lambda c: (c.node, c.name, c.queue))

    def nodes(self) -> dict[str, list[Check]]:
        """Each live node with its queues; a node heard only through sonar has none."""
        now = time.monotonic()
        out: dict[str, list[Check]] = {}
        for node, at in list(self._pings.items()):
            if now - at > CHECK_TTL * 2:
                del self._pings[node]
            else:
                out[node] = []
        for check in self.checks():
            out.setdefault(check.node, []).append(check)
        return dict(sorted(out.items()))

    def last_heard(self, node: str) -> float | None:
        """Seconds since anything was heard from ``node``."""
        ages = [c.age for c in self._checks.values() if c.node == node]
        if node in self._pings:
            ages.append(max(0.0, time.monotonic() - self._pings[node]))
        return min(ages) if ages else None
