"""A low ``statement_timeout`` on the database: every periodic statement still makes progress.

Managed PostgreSQL often sets ``statement_timeout`` per database. With 50 ms, staging 5,000 of
a large backlog of due jobs is cancelled every pass (sorting the due rows alone takes longer),
and so would a large prune, rescue, fetch or ack: nothing moves and the log fills. A cancelled
statement must make the next one smaller (and say so once), until it fits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog
from psycopg import sql

from oban_py import Oban
from oban_py.cluster.lifeline import Lifeline
from oban_py.cluster.pruner import Pruner
from oban_py.cluster.stager import Stager
from oban_py.config import Config
from oban_py.job.model import Job
from oban_py.sql import Queries
from oban_py.worker import Worker

SHRUNK = "statement cancelled (statement_timeout?): doing less per statement"


class Noop(Worker):
    name = "Py.Timeout.Noop"

    async def process(self, job: Job) -> None:
        return None


class QuietNotifier:
    """Notifications go nowhere: the stager stages globally, as a leader with a notifier."""

    def listen(self, channel: str, callback: Any) -> None:
        return None

    async def notify(self, channel: str, payloads: list[dict[str, Any]]) -> None:
        return None


class Holder:
    """The surface the duties need (``cluster.contract.NodeLike``), leading, without queues."""

    def __init__(self, dsn: str, **settings: Any) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.config = Config(dsn=dsn, **settings)
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        )
        self.queries = Queries()
        self.notifier = QuietNotifier()
        self.producers: dict[str, Any] = {}
        self.is_leader = True
        self.liveness = None


@pytest.fixture
def slow_db(dsn: str, server_dsn: str) -> Iterator[str]:
    """``dsn``, whose new sessions get ``statement_timeout = 50ms`` (set by the test, later)."""
    yield dsn
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        admin.execute(
            sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(
                sql.Identifier(str(database))
            )
        )


def set_timeout(dsn: str, server_dsn: str, value: str) -> None:
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(
                sql.Identifier(str(database)), sql.Literal(value)
            )
        )


def count(conn: psycopg.Connection[Any], where: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM oban_jobs WHERE {where}".encode()).fetchone()
    assert row is not None
    return int(row[0])


async def run_until(duty: Any, done: Any, timeout: float) -> None:  # noqa: ASYNC109
    duty.start()
    try:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, "no progress under the statement timeout"
            await asyncio.sleep(0.2)
    finally:
        await duty.stop()


@pytest.mark.timeout(300)
async def test_a_200000_row_backlog_is_staged_under_a_50ms_statement_timeout(
    slow_db: str, server_dsn: str
) -> None:
    with psycopg.connect(slow_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, state, scheduled_at)"
            " SELECT 'q' || (g % 4), 'W', '{}', 'scheduled',"
            " timezone('UTC', now()) - make_interval(secs => g % 3600)"
            " FROM generate_series(1, 200000) AS g"
        )
        conn.execute("ANALYZE oban_jobs")
        set_timeout(slow_db, server_dsn, "50ms")
        holder = Holder(slow_db, stage_interval=0.2)
        await holder.pool.open(wait=True)
        try:
            stager = Stager(holder)
            with structlog.testing.capture_logs() as logs:
                await run_until(stager, lambda: count(conn, "state = 'scheduled'") == 0, 240)
        finally:
            await holder.pool.close()
        assert count(conn, "state = 'available'") == 200_000
    shrunk = [e["log_level"] for e in logs if e["event"] == SHRUNK]
    assert shrunk[0] == "warning"
    assert shrunk.count("warning") == 1
    assert len([e for e in logs if e["log_level"] == "warning"]) <= 2


@pytest.mark.timeout(300)
async def test_pruning_and_rescue_make_progress_under_a_50ms_statement_timeout(
    slow_db: str, server_dsn: str
) -> None:
    with psycopg.connect(slow_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, state, scheduled_at, completed_at)"
            " SELECT 'q', 'W', '{}', 'completed', timezone('UTC', now()) - interval '2 days',"
            " timezone('UTC', now()) - interval '2 days' FROM generate_series(1, 100000)"
        )
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, state, attempt, attempted_at,"
            " attempted_by) SELECT 'q', 'W', '{}', 'executing', 1,"
            " timezone('UTC', now()) - interval '2 hours', ARRAY['gone', 'gone-uuid']"
            " FROM generate_series(1, 100000)"
        )
        conn.execute("ANALYZE oban_jobs")
        set_timeout(slow_db, server_dsn, "50ms")
        holder = Holder(
            slow_db,
            queues={"q": 1},
            pruner={"interval": 0.2, "max_age": 3600},
            lifeline={"interval": 0.2, "rescue_after": 60},
        )
        await holder.pool.open(wait=True)
        try:
            await run_until(Pruner(holder), lambda: count(conn, "state = 'completed'") == 0, 240)
            # Without the heartbeats table's rows the time-based rescue applies (queue q).
            conn.execute("DROP TABLE oban_py_heartbeats")
            await run_until(Lifeline(holder), lambda: count(conn, "state = 'executing'") == 0, 240)
        finally:
            await holder.pool.close()
        assert count(conn, "state = 'available'") == 100_000


@pytest.mark.timeout(300)
async def test_a_node_fetches_and_acks_everything_under_a_50ms_statement_timeout(
    slow_db: str, server_dsn: str
) -> None:
    with psycopg.connect(slow_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, state)"
            " SELECT 'wide', %s, '{}', 'available' FROM generate_series(1, 20000)",
            (Noop.name,),
        )
        conn.execute("ANALYZE oban_jobs")
        set_timeout(slow_db, server_dsn, "50ms")
        # A fetch of 10,000 rows and an ack of 2,000 both take longer than 50 ms.
        oban = Oban(dsn=slow_db, queues={"wide": 10_000}, poll_interval=0.1, node="py-timeout")
        async with oban:
            deadline = time.monotonic() + 240
            while await asyncio.to_thread(count, conn, "state = 'completed'") < 20_000:
                assert time.monotonic() < deadline, "no progress under the statement timeout"
                await asyncio.sleep(0.2)
        assert count(conn, "TRUE") == 20_000
