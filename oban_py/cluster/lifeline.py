"""The leader's duty of rescuing jobs left ``executing`` by a node that died, by the rules that
``oban_py.liveness`` states and owns.

Only uuids known from a heartbeat row are ever treated as dead: a uuid with no row may be an
Elixir producer's.

The rescued row is what Elixir's Lifeline writes (fixtures ``jobs/rescued.json`` and
``jobs/rescue_discarded.json``): ``available`` with the attempt unchanged and no errors entry, or
``discarded`` with ``discarded_at`` when out of attempts.
"""

from __future__ import annotations

from oban_py import dberrors, liveness
from oban_py.cluster.contract import NodeLike
from oban_py.cluster.periodic import Periodic

#: Rows each rescue statement takes back in one pass (the rest in the next passes).
RESCUE_LIMIT = 10_000


class Lifeline(Periodic):
    """Rescues orphaned jobs every ``lifeline.interval`` while this node leads, by the rules of
    ``oban_py.liveness``."""

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
        watch = self.oban.liveness
        counts = await liveness.rescue(
            self.oban.pool,
            self.oban.queries,
            self.settings,
            live=[str(p.uuid) for p in self.oban.producers.values()],
            queues=list(self.oban.config.queues),
            unbroken_for=None if watch is None else watch.unbroken_for(),
            limit=self.batch.limit(),
        )
        if counts["dead_producer"] or counts["stuck"]:
            self.log.warning("rescued orphaned jobs", **counts)
        return counts
