"""Moves due ``scheduled``/``retryable`` jobs to ``available`` and tells producers to fetch.

Global mode (notifications flow): the leader stages every queue in bounded batches and, in the
same pass, announces ``insert {"queue": q}`` for each queue with available jobs, exactly as
Elixir's leader does, so Elixir and Python producers alike learn about due jobs; other nodes only
poke their local producers. Local mode (Sonar finds this node isolated, or there is no notifier):
every node stages only its own queues and pokes its own producers, since announcements would not
arrive anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from oban_py import telemetry
from oban_py.cluster.contract import NodeLike, notify
from oban_py.cluster.periodic import Periodic

if TYPE_CHECKING:
    from oban_py.cluster.sonar import Sonar

Mode = Literal["global", "local"]


class Stager(Periodic):
    """Stages due jobs every ``config.stage_interval``."""

    kind = "oban.stager"

    def __init__(self, oban: NodeLike, *, sonar: Sonar | None = None) -> None:
        super().__init__(oban.config.stage_interval)
        self.oban = oban
        self.sonar = sonar
        self.limit = oban.config.stage_limit
        self.mode: Mode = "global"

    def metadata(self) -> dict[str, Any]:
        return {"mode": self.mode, "leader": self.oban.is_leader}

    def check_mode(self) -> Mode:
        """Elixir's rule: isolated, or solitary and not leading, stages locally."""
        status = "unknown" if self.sonar is None else self.sonar.status
        if self.oban.notifier is None or status == "isolated":
            mode: Mode = "local"
        elif status == "solitary" and not self.oban.is_leader:
            mode = "local"
        elif status == "unknown":
            mode = self.mode
        else:
            mode = "global"
        if mode != self.mode:
            self.log.info("stager mode switch", mode=mode, status=status)
            telemetry.execute("oban.stager.switch", {}, {"mode": mode})
            self.mode = mode
        return mode

    async def tick(self) -> int:
        mode = self.check_mode()
        if mode == "local":
            staged = await self.stage_local()
            self.poke()
        elif self.oban.is_leader:
            staged = await self.stage_global()
        else:
            staged = 0
            self.poke()
        return staged

    async def stage_global(self) -> int:
        """Stage every queue, then announce each queue with available jobs."""
        queries = self.oban.queries
        async with self.oban.pool.connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(queries["stage_jobs"], {"limit": self.limit})
                staged = len(await cursor.fetchall())
            cursor = await conn.execute(queries["stage_available_queues"])
            queues = [row[0] for row in await cursor.fetchall()]
        await notify(self.oban, "insert", [{"queue": q} for q in queues])
        # Local producers would hear the announcement too; poking them spares the round trip
        # and covers a notifier that is down.
        self.poke(set(queues))
        return staged

    async def stage_local(self) -> int:
        """Stage only the queues this node runs."""
        queues = sorted(self.oban.producers)
        if not queues:
            return 0
        params = {"limit": self.limit, "queues": queues}
        async with self.oban.pool.connection() as conn:
            cursor = await conn.execute(self.oban.queries["stage_jobs_local"], params)
            return len(await cursor.fetchall())

    def poke(self, queues: set[str] | None = None) -> None:
        for queue, producer in list(self.oban.producers.items()):
            if queues is None or queue in queues:
                producer.wake()
