"""Rescue of jobs left ``executing`` by a node that died, without ever taking back a live job.

Two duties:

* ``Heartbeat`` (every node): upserts one row per local producer into ``oban_py_heartbeats``,
  keyed by the producer uuid that ends up second in each job's ``attempted_by``. On a clean stop
  (after the producers stopped and acks were flushed) a producer with nothing left executing
  loses its row; one that left jobs executing is marked dead so they are rescued at once.
* ``Lifeline`` (leader): the fast rescue takes back jobs of Python producers whose heartbeat is
  older than ``heartbeat_ttl``; the time-based rescue is Elixir's (``attempted_at`` older than
  ``rescue_after``) restricted to queues Python producers run and to producers that are not
  beating. A job's uuid with no heartbeat row at all may be an Elixir producer's, so only uuids
  known from a row are ever treated as dead; rows of dead producers are kept for
  ``heartbeat_retention`` and never purged while a job still names them.

The rescued row is what Elixir's Lifeline writes (fixtures ``jobs/rescued.json`` and
``jobs/rescue_discarded.json``): ``available`` with the attempt unchanged and no errors entry, or
``discarded`` with ``discarded_at`` when out of attempts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oban_py.periodic import Periodic
from oban_py.plugins import NodeLike


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class Heartbeat(Periodic):
    """Records that this node's producers are alive, every ``lifeline.heartbeat_interval``."""

    kind = "oban.heartbeat"

    def __init__(self, oban: NodeLike) -> None:
        super().__init__(oban.config.lifeline.heartbeat_interval)
        self.oban = oban
        self._beating: dict[str, Any] = {}

    async def tick(self) -> int:
        producers = list(self.oban.producers.values())
        for producer in producers:
            self._beating[str(producer.uuid)] = producer
        if not producers:
            return 0
        params = {
            "node": self.oban.config.node,
            "name": self.oban.config.name,
            "uuids": [str(p.uuid) for p in producers],
            "queues": [p.queue for p in producers],
            "started": [_naive_utc(p.started_at) for p in producers],
        }
        async with self.oban.pool.connection() as conn:
            await conn.execute(self.oban.queries["heartbeat_upsert"], params)
        return len(producers)

    async def on_stop(self) -> None:
        uuids, self._beating = list(self._beating), {}
        if not uuids:
            return
        try:
            async with self.oban.pool.connection() as conn:
                await conn.execute(self.oban.queries["heartbeat_release"], {"uuids": uuids})
        except Exception:
            # Rows left behind age out: their jobs are rescued after the ttl instead of at once.
            self.log.warning("heartbeat release failed", exc_info=True)


class Lifeline(Periodic):
    """Rescues orphaned jobs every ``lifeline.interval`` while this node leads."""

    kind = "oban.lifeline"

    def __init__(self, oban: NodeLike) -> None:
        settings = oban.config.lifeline
        super().__init__(settings.interval)
        self.oban = oban
        self.settings = settings

    async def tick(self) -> dict[str, int]:
        if not self.oban.is_leader:
            return {}
        return await self.rescue()

    async def rescue(self) -> dict[str, int]:
        """One pass regardless of leadership: counts of rescued jobs and purged heartbeats."""
        settings = self.settings
        queries = self.oban.queries
        async with self.oban.pool.connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(
                    queries["rescue_dead_producers"], {"ttl": settings.heartbeat_ttl}
                )
                dead = await cursor.fetchall()
                cursor = await conn.execute(
                    queries["rescue_stuck_jobs"],
                    {"rescue_after": settings.rescue_after, "ttl": settings.heartbeat_ttl},
                )
                stuck = await cursor.fetchall()
            cursor = await conn.execute(
                queries["heartbeat_purge"], {"retention": settings.heartbeat_retention}
            )
            purged = cursor.rowcount
        if dead or stuck:
            self.log.warning(
                "rescued orphaned jobs",
                dead_producer=[r[0] for r in dead],
                stuck=[r[0] for r in stuck],
            )
        return {"dead_producer": len(dead), "stuck": len(stuck), "purged": max(purged, 0)}
