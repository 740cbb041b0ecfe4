"""One owner of a queue's life (``oban_py.node.queues``): however a queue is started, scaled or
stopped, the node's stop waits for it, its threads follow its limit, and no job it ran is left
``executing`` or run again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from nodekit import insert, row, wait_for, wait_state

from oban_py import Oban
from oban_py.config import LifelineConfig
from oban_py.job.model import Job
from oban_py.worker import Worker

STARTS: dict[int, int] = {}


class Naps(Worker):
    """Sleeps ``s`` seconds, counting its starts."""

    name = "Py.Queues.Naps"

    async def process(self, job: Job) -> None:
        STARTS[job.id] = STARTS.get(job.id, 0) + 1  # type: ignore[index]
        await asyncio.sleep(job.args.get("s", 0.5))


class Stubborn(Worker):
    """Swallows every cancellation: what Elixir would kill, and Python cannot."""

    name = "Py.Queues.Stubborn"
    running = False

    async def process(self, job: Job) -> None:
        Stubborn.running = True
        try:
            for _ in range(200):
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    continue
        finally:
            Stubborn.running = False


def node(dsn: str, **settings: Any) -> Oban:
    settings.setdefault("queues", {"q": 5})
    settings.setdefault("shutdown_grace", 2.0)
    settings.setdefault("poll_interval", 0.05)
    return Oban(dsn=dsn, peer=False, node="py-queues", **settings)


async def test_a_node_stopped_right_after_stop_queue_writes_the_queues_outcomes(
    dsn: str, conn: Any
) -> None:
    # A deploy right after `stop_queue`: the queue's job must end with its outcome written,
    # not be left executing for the lifeline to run again.
    oban = node(dsn)
    await oban.start()
    job = await insert(conn, Naps.name, {"s": 0.8}, queue="q")
    await wait_state(conn, job, "executing")
    await oban.stop_queue("q", local_only=True)
    await wait_for(lambda: "q" not in oban.producers, 5)
    await oban.stop()
    stored = await row(conn, job)
    assert (stored["state"], stored["attempt"]) == ("completed", 1)
    assert STARTS[job] == 1


async def test_a_queues_threads_follow_its_limit_however_it_changes(dsn: str) -> None:
    async with node(dsn, queues={"q": 2}) as oban:
        assert oban.threads.size == 2
        oban.producers["q"].scale(7)  # the producer itself, not through the node
        assert oban.threads.size == 7
        oban._apply_signal({"action": "start", "queue": "other", "limit": 3})
        assert oban.threads.size == 10
        await oban.queues.stop("other")  # type: ignore[union-attr]
        assert oban.threads.size == 7


@pytest.mark.parametrize("limit", [0, -1, "3", True, None])
async def test_a_start_signal_with_a_bad_limit_starts_nothing(dsn: str, limit: Any) -> None:
    async with node(dsn) as oban:
        with structlog.testing.capture_logs() as logs:
            oban._on_signal({"action": "start", "queue": "bad", "limit": limit})
        assert "bad" not in oban.producers
        assert [e for e in logs if e["event"] == "bad signal ignored"]


async def test_stop_gives_up_an_async_job_that_swallows_its_cancellation(
    dsn: str, conn: Any
) -> None:
    oban = node(dsn, shutdown_grace=0.2, lifeline=LifelineConfig(interval=0.1))
    await oban.start()
    job = await insert(conn, Stubborn.name, queue="q")
    await wait_state(conn, job, "executing")
    producer = oban.producers["q"].uuid
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(oban.stop(), 10)
    assert [e for e in logs if "ignored its cancellation" in e["event"]]
    # Its row is left for the lifeline, and the producer's heartbeat row marked dead so the
    # leader rescues it at its next pass instead of after the ttl.
    assert (await row(conn, job))["state"] == "executing"
    cur = await conn.execute(
        "SELECT updated_at = '-infinity' FROM oban_py_heartbeats WHERE uuid = %s", (producer,)
    )
    assert await cur.fetchone() == (True,)
