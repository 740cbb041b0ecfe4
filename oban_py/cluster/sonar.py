"""Notifier health, as Elixir's Sonar: ping ``sonar`` and watch whose pings come back.

Every ``config.sonar_interval`` the node publishes ``{"node": node, "ping": true}`` (never a
``time`` key: Elixir would read it as a monotonic timestamp of its own VM) and records the pings
it hears, forgetting a node after ``STALE_INTERVALS`` intervals (120 s at the default 15 s).
Status: ``isolated`` when not even our own pings arrive (LISTEN broken, e.g. behind a transaction
pooler), ``solitary`` when only ours do, ``clustered`` otherwise, updated on every ping heard
(so known once our first ping returns). While isolated, producers poll fast and the stager
stages locally; both are restored when pings return.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from oban_py import telemetry
from oban_py.cluster.contract import NodeLike, listen, notify
from oban_py.cluster.periodic import Periodic

Status = Literal["unknown", "isolated", "solitary", "clustered"]

STALE_INTERVALS = 8
#: producer poll interval while notifications are lost
FAST_POLL_INTERVAL = 0.5


class Sonar(Periodic):
    kind = "oban.sonar"

    def __init__(self, oban: NodeLike) -> None:
        super().__init__(oban.config.sonar_interval)
        self.oban = oban
        self.node = oban.config.node
        self.status: Status = "unknown"
        self.nodes: dict[str, float] = {}
        self._listening = False
        self._pinged = False
        self._slowed: dict[str, float] = {}

    @property
    def stale_after(self) -> float:
        return self.interval * STALE_INTERVALS

    def metadata(self) -> dict[str, Any]:
        return {"status": self.status}

    async def tick(self) -> str:
        if not self._listening:
            self._listening = await listen(self.oban, "sonar", self._on_ping)
        if self._pinged or self.oban.notifier is None:
            self.prune()
            self.update_status()
        self._pinged = await notify(self.oban, "sonar", [{"node": self.node, "ping": True}])
        return self.status

    def prune(self) -> None:
        threshold = time.monotonic() - self.stale_after
        self.nodes = {node: at for node, at in self.nodes.items() if at >= threshold}

    def update_status(self) -> Status:
        if not self.nodes:
            status: Status = "isolated"
        elif list(self.nodes) == [self.node]:
            status = "solitary"
        else:
            status = "clustered"
        if status != self.status:
            previous, self.status = self.status, status
            log = self.log.warning if status == "isolated" else self.log.info
            log("notifier status switch", status=status, previous=previous)
            telemetry.execute("oban.notifier.switch", {}, {"status": status})
            self._apply(status)
        return status

    def _apply(self, status: Status) -> None:
        if status == "isolated":
            for queue, producer in self.oban.producers.items():
                if queue not in self._slowed:
                    self._slowed[queue] = producer.poll_interval
                producer.poll_interval = min(producer.poll_interval, FAST_POLL_INTERVAL)
                producer.wake()
        else:
            slowed, self._slowed = self._slowed, {}
            for queue, interval in slowed.items():
                producer = self.oban.producers.get(queue)
                if producer is not None:
                    producer.poll_interval = interval

    def _on_ping(self, payload: dict[str, Any]) -> None:
        node = payload.get("node")
        if isinstance(node, str):
            self.nodes[node] = time.monotonic()
            # Every ping heard updates the status, as Elixir's Sonar does: the node's own first
            # ping ends "unknown" at once, not an interval later (the stager of a node that
            # does not lead stages nothing while the status is unknown).
            self.update_status()
