"""Deletes finished jobs older than ``config.pruner.max_age``, at most ``limit`` a pass (leader).

The rule is Elixir's: ``completed`` jobs by ``scheduled_at``, ``cancelled`` by ``cancelled_at``
and ``discarded`` by ``discarded_at``. Beside an Elixir pruner both run over the same rows, so
the shorter ``max_age`` wins (docs/cluster.md).
"""

from __future__ import annotations

from typing import Any

from oban_py import dberrors
from oban_py.cluster.contract import NodeLike
from oban_py.cluster.periodic import Periodic


class Pruner(Periodic):
    kind = "oban.pruner"
    batch: dberrors.Batch

    def __init__(self, oban: NodeLike) -> None:
        settings = oban.config.pruner
        super().__init__(settings.interval)
        self.oban = oban
        self.max_age = settings.max_age
        self.limit = settings.limit
        # Halved by a cancelled pass (statement_timeout), so pruning still makes progress.
        self.batch = dberrors.Batch(self.limit, name="prune")

    def metadata(self) -> dict[str, Any]:
        return {"max_age": self.max_age, "limit": self.limit}

    async def tick(self) -> int:
        if not self.oban.is_leader:
            return 0
        return await self.prune()

    async def prune(self) -> int:
        """One bounded pass regardless of leadership; the number of rows deleted."""
        params = {"max_age": self.max_age, "limit": self.batch.limit()}
        async with self.oban.pool.connection() as conn:
            cursor = await conn.execute(self.oban.queries["prune_jobs"], params)
            return len(await cursor.fetchall())
