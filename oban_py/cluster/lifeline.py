"""Rescue of jobs left ``executing`` by a node that died, without ever taking back a live job.

Every node writes one row per local producer into ``oban_py_heartbeats`` (``liveness.py``, from
a thread of its own), keyed by the producer uuid that ends up second in each job's
``attempted_by``. On a clean stop, once its jobs ended and their outcomes were written, a producer
loses its row; one that still left jobs executing is marked dead so they are rescued at once.

The ``Lifeline`` (leader): the fast rescue takes back jobs of Python producers whose heartbeat is
older than ``heartbeat_ttl``; the time-based rescue is Elixir's (``attempted_at`` older than
``rescue_after``) restricted to queues Python producers run and to producers that are not
beating. A job's uuid with no heartbeat row at all may be an Elixir producer's, so only uuids
known from a row are ever treated as dead; rows of dead producers are kept for
``heartbeat_retention`` and never purged while a job still names them. Without the heartbeats
table (a schema only Elixir migrated) only the time-based rescue runs, limited to the queues
this node runs.

The rescued row is what Elixir's Lifeline writes (fixtures ``jobs/rescued.json`` and
``jobs/rescue_discarded.json``): ``available`` with the attempt unchanged and no errors entry, or
``discarded`` with ``discarded_at`` when out of attempts.
"""

from __future__ import annotations

import psycopg

from oban_py import dberrors
from oban_py.cluster.contract import NodeLike
from oban_py.cluster.periodic import Periodic

#: Rows each rescue statement takes back in one pass (the rest in the next passes).
RESCUE_LIMIT = 10_000


class Lifeline(Periodic):
    """Rescues orphaned jobs every ``lifeline.interval`` while this node leads."""

    kind = "oban.lifeline"
    batch: dberrors.Batch

    def __init__(self, oban: NodeLike) -> None:
        settings = oban.config.lifeline
        super().__init__(settings.interval)
        self.oban = oban
        self.settings = settings
        #: rows a rescue statement takes a pass, halved while statements time out
        self.batch = dberrors.Batch(RESCUE_LIMIT, name="rescue")

    async def tick(self) -> dict[str, int]:
        if not self.oban.is_leader:
            return {}
        return await self.rescue()

    async def rescue(self) -> dict[str, int]:
        """One pass regardless of leadership: counts of rescued jobs and purged heartbeats."""
        try:
            counts = await self._rescue()
        except psycopg.errors.UndefinedTable:
            # The node's liveness already said once that `oban-py migrate` adds the table.
            counts = await self._rescue_by_time()
        if counts["dead_producer"] or counts["stuck"]:
            self.log.warning("rescued orphaned jobs", **counts)
        return counts

    async def _rescue(self) -> dict[str, int]:
        settings = self.settings
        queries = self.oban.queries
        live = [str(p.uuid) for p in self.oban.producers.values()]
        async with self.oban.pool.connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(
                    queries["rescue_dead_producers"],
                    {"ttl": settings.heartbeat_ttl, "live": live, "limit": self.batch.limit()},
                )
                dead = await cursor.fetchall()
                cursor = await conn.execute(
                    queries["rescue_stuck_jobs"],
                    {
                        "rescue_after": settings.rescue_after,
                        "ttl": settings.heartbeat_ttl,
                        "live": live,
                        "limit": self.batch.limit(),
                    },
                )
                stuck = await cursor.fetchall()
            cursor = await conn.execute(
                queries["heartbeat_purge"], {"retention": settings.heartbeat_retention}
            )
            purged = cursor.rowcount
        return {"dead_producer": len(dead), "stuck": len(stuck), "purged": max(purged, 0)}

    async def _rescue_by_time(self) -> dict[str, int]:
        params = {
            "rescue_after": self.settings.rescue_after,
            "queues": list(self.oban.config.queues),
            "limit": self.batch.limit(),
        }
        async with self.oban.pool.connection() as conn:
            cursor = await conn.execute(self.oban.queries["rescue_stuck_jobs_by_time"], params)
            stuck = await cursor.fetchall()
        return {"dead_producer": 0, "stuck": len(stuck), "purged": 0}
