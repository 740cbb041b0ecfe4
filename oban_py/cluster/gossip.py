"""Check-ins for Oban Web: each node publishes its producers on ``gossip``.

The payload is ``{"checks": [check, ...]}``, one check per local producer in the shape Elixir
producers expose and oban_met stores by ``{node, name, queue}`` (``limit, paused, queue, node,
name, uuid, running, started_at, updated_at, refresh_interval``). ``uuid`` is the second element
of ``attempted_by`` of the producer's running jobs, so Web never flags them as orphans. The
notifier compresses payloads over 512 bytes.
"""

from __future__ import annotations

from typing import Any

from oban_py.cluster.contract import NodeLike, notify
from oban_py.cluster.periodic import Periodic


class Gossip(Periodic):
    kind = "oban.gossip"

    def __init__(self, oban: NodeLike) -> None:
        super().__init__(oban.config.gossip_interval)
        self.oban = oban

    def payload(self) -> dict[str, Any] | None:
        checks = [producer.check() for producer in list(self.oban.producers.values())]
        return {"checks": checks} if checks else None

    async def tick(self) -> int:
        payload = self.payload()
        if payload is None:
            return 0
        await notify(self.oban, "gossip", [payload])
        return len(payload["checks"])
