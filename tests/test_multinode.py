"""Several nodes on one queue: every job runs exactly once; lost notifications are survived."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from nodekit import insert, wait_for, wait_state
from psycopg_pool import AsyncConnectionPool

from oban_py import Oban
from oban_py.job.model import Job
from oban_py.worker import Worker

JOBS = 20_000


class LogsOnce(Worker):
    """Writes its job id into a side table whose primary key rejects a second run."""

    name = "Py.Multi.LogsOnce"
    pool: ClassVar[AsyncConnectionPool[Any] | None] = None

    async def process(self, job: Job) -> None:
        assert LogsOnce.pool is not None
        async with LogsOnce.pool.connection() as conn:
            await conn.execute("INSERT INTO ran_once (job_id) VALUES (%s)", (job.id,))


class Noop(Worker):
    name = "Py.Multi.Noop"

    async def process(self, job: Job) -> None:
        return None


async def count(conn: Any, query: str) -> int:
    cur = await conn.execute(query)
    found = await cur.fetchone()
    return int(found[0])


async def test_three_nodes_drain_20000_jobs_exactly_once(dsn: str, conn: Any) -> None:
    await conn.execute("CREATE TABLE ran_once (job_id bigint PRIMARY KEY)")
    await conn.execute(
        "INSERT INTO oban_jobs (queue, worker) SELECT 'multi', %s FROM generate_series(1, %s)",
        (LogsOnce.__oban_name__, JOBS),
    )

    async def no_fsync(c: Any) -> None:
        # The side table only proves uniqueness; waiting for fsync per row would dominate.
        await c.execute("SET synchronous_commit = off")

    pool = AsyncConnectionPool(
        dsn, min_size=4, max_size=12, kwargs={"autocommit": True}, configure=no_fsync, open=False
    )
    async with pool:
        LogsOnce.pool = pool
        nodes = [
            Oban(dsn=dsn, queues={"multi": 20}, peer=False, node=f"py-multi-{i}", name=f"M{i}")
            for i in range(3)
        ]
        try:
            await asyncio.gather(*(n.start() for n in nodes))

            async def drained() -> bool:
                done = "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"
                return await count(conn, done) == JOBS

            await wait_for(drained, timeout=100)
        finally:
            await asyncio.gather(*(n.stop() for n in nodes))
            LogsOnce.pool = None
    assert await count(conn, "SELECT count(*) FROM ran_once") == JOBS
    assert await count(conn, "SELECT count(DISTINCT attempted_by[1]) FROM oban_jobs") == 3
    assert await count(conn, "SELECT max(attempt) FROM oban_jobs") == 1


async def test_jobs_inserted_after_the_notifier_is_killed_still_run(dsn: str, conn: Any) -> None:
    async with Oban(dsn=dsn, queues={"late": 2}, peer=False, node="py-late") as oban:
        # Polling would hide a broken notifier: make it too slow to matter.
        oban.producers["late"].poll_interval = 60
        assert oban.notifier is not None
        first = await insert(conn, Noop.__oban_name__, queue="late")
        await conn.execute("SELECT pg_notify('public.oban_insert', '{\"queue\":\"late\"}')")
        await wait_state(conn, first, "completed")
        pid = oban.notifier.backend_pid
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await wait_for(
            lambda: (
                oban.notifier is not None
                and oban.notifier.connected
                and oban.notifier.backend_pid not in (None, pid)
            )
        )
        await oban.notifier.wait_listening()
        later = await insert(conn, Noop.__oban_name__, queue="late")
        await conn.execute("SELECT pg_notify('public.oban_insert', '{\"queue\":\"late\"}')")
        await wait_state(conn, later, "completed", timeout=10)
