"""Graceful shutdown: running jobs get the grace period, stragglers are left for the lifeline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import structlog
from nodekit import insert, row, wait_for

from oban_py import Oban
from oban_py.job.model import Job
from oban_py.node import instance
from oban_py.worker import Worker


class FinishesSoon(Worker):
    name = "Py.Shutdown.FinishesSoon"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(0.3)


class Stuck(Worker):
    name = "Py.Shutdown.Stuck"
    saw_cancel_flag: bool = False

    async def process(self, job: Job) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            Stuck.saw_cancel_flag = job.cancelled()


def node(dsn: str, grace: float) -> Oban:
    return Oban(dsn=dsn, queues={"stop": 5}, peer=False, node="py-stop", shutdown_grace=grace)


async def executing(conn: Any, job_id: int) -> bool:
    return (await row(conn, job_id))["state"] == "executing"


async def test_a_slow_job_finishes_within_the_grace_and_is_acked(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, FinishesSoon.__oban_name__, queue="stop")
    oban = node(dsn, grace=5)
    await oban.start()
    await wait_for(lambda: executing(conn, job_id))
    await oban.stop()
    assert (await row(conn, job_id))["state"] == "completed"


async def test_a_job_still_running_after_the_grace_is_cancelled_and_released(
    dsn: str, conn: Any
) -> None:
    job_id = await insert(conn, Stuck.__oban_name__, queue="stop")
    oban = node(dsn, grace=0.2)
    await oban.start()
    await wait_for(lambda: executing(conn, job_id))
    started = time.monotonic()
    await oban.stop()
    assert time.monotonic() - started < 3
    assert Stuck.saw_cancel_flag
    # Its task ended at the cancellation: the job goes back at once (Elixir's rescue outcome,
    # attempt kept, no errors entry) instead of waiting for a lifeline pass.
    got = await row(conn, job_id)
    assert got["state"] == "available"
    assert got["attempt"] == 1
    assert got["errors"] == []


async def test_stop_stops_fetching_new_jobs(dsn: str, conn: Any) -> None:
    oban = node(dsn, grace=1)
    await oban.start()
    await oban.stop()
    job_id = await insert(conn, FinishesSoon.__oban_name__, queue="stop")
    await asyncio.sleep(0.1)
    assert (await row(conn, job_id))["state"] == "available"


async def test_a_stop_held_up_says_where_it_waits_until_it_ends(
    dsn: str, conn: Any, monkeypatch: Any
) -> None:
    # Another session holds the node's heartbeat rows, so giving them up waits on its lock.
    monkeypatch.setattr(instance, "STOP_REPORT_EVERY", 0.2)
    oban = node(dsn, grace=0)
    await oban.start()
    async with await psycopg.AsyncConnection.connect(dsn) as locker:
        await wait_for(lambda: beats(locker))
        await locker.execute("SELECT 1 FROM oban_py_heartbeats FOR UPDATE")
        with structlog.testing.capture_logs() as logs:
            stopping = asyncio.create_task(oban.stop())
            await wait_for(lambda: len(reports(logs)) >= 2)
            assert not stopping.done()
            await locker.rollback()
            await asyncio.wait_for(stopping, 10)
    first, second = reports(logs)[:2]
    assert first["node"] == "py-stop"
    assert second["stopping_for"] > first["stopping_for"] > 0
    # From the stop down to the statement that waits on the lock.
    where = "\n".join(first["waiting_in"])
    assert "in _stop" in where
    assert "liveness.py" in where
    assert "in release" in where
    count = len(reports(logs))
    await asyncio.sleep(0.5)
    assert len(reports(logs)) == count  # a stop that ended says nothing more


def reports(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "node still stopping"]


async def beats(conn: Any) -> bool:
    cur = await conn.execute("SELECT count(*) FROM oban_py_heartbeats")
    (count,) = await cur.fetchone()
    await conn.rollback()
    return bool(count)
