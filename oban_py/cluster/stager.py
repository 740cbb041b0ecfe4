"""Moves due ``scheduled``/``retryable`` jobs to ``available`` and tells producers to fetch.

Global mode (notifications flow): the leader stages every queue in bounded batches and, in the
same pass, announces ``insert {"queue": q}`` for each queue with available jobs, exactly as
Elixir's leader does, so Elixir and Python producers alike learn about due jobs; other nodes only
poke their local producers. Local mode (Sonar finds this node isolated, or there is no notifier):
every node stages only its own queues and pokes its own producers, since announcements would not
arrive anyway.

A pass stages at most ``stage_limit`` jobs, newest due first as Elixir does. Under a low
``statement_timeout`` with a backlog, that pass is cancelled every time (the order alone sorts
every due row), so on a cancelled pass the batch halves (``dberrors.Batch``) and, while it is
shrunk, staging takes due rows in no order (a statement that stops after its batch) and the
next pass comes sooner, keeping a full batch's rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from oban_py import dberrors, telemetry
from oban_py.cluster.contract import NodeLike, notify
from oban_py.cluster.periodic import Periodic

if TYPE_CHECKING:
    from oban_py.cluster.sonar import Sonar

Mode = Literal["global", "local"]


class Stager(Periodic):
    """Stages due jobs every ``config.stage_interval``."""

    kind = "oban.stager"
    batch: dberrors.Batch

    def __init__(self, oban: NodeLike, *, sonar: Sonar | None = None) -> None:
        super().__init__(oban.config.stage_interval)
        self.oban = oban
        self.sonar = sonar
        self.limit = oban.config.stage_limit
        self.batch = dberrors.Batch(self.limit, name="stage")
        self.mode: Mode = "global"
        self._staged = 0

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
        self._staged = staged
        return staged

    def next_delay(self) -> float:
        return self.batch.pace(self.interval, self._staged)

    def _statement(self, name: str) -> bytes:
        return self.oban.queries[f"{name}_unsorted" if self.batch.shrunk else name]

    async def stage_global(self) -> int:
        """Stage every queue, then announce each queue with available jobs."""
        queries = self.oban.queries
        params = {"limit": self.batch.limit()}
        async with self.oban.pool.connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(self._statement("stage_jobs"), params)
                rows = await cursor.fetchall()
            try:
                cursor = await conn.execute(queries["stage_available_queues"])
                queues = [row[0] for row in await cursor.fetchall()]
            except Exception as error:
                if dberrors.classify(error) is not dberrors.CANCELLED:
                    raise
                # Staging is committed; cancelled here (planner statistics lagging behind a
                # backlog), the pass still announces the queues it just staged.
                queues = sorted({queue for _, queue in rows})
        staged = len(rows)
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
        params = {"limit": self.batch.limit(), "queues": queues}
        async with self.oban.pool.connection() as conn:
            cursor = await conn.execute(self._statement("stage_jobs_local"), params)
            return len(await cursor.fetchall())

    def poke(self, queues: set[str] | None = None) -> None:
        for queue, producer in list(self.oban.producers.items()):
            if queues is None or queue in queues:
                producer.wake()
