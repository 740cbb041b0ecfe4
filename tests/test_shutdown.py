"""Graceful shutdown: running jobs get the grace period, stragglers are left for the lifeline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nodekit import insert, row, wait_for

from oban_py import Oban
from oban_py.job.model import Job
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
