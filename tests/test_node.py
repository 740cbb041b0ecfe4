"""The node: schema check, producer check-ins, batched and retried acks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from nodekit import insert, row, wait_for, wait_state
from psycopg_pool import AsyncConnectionPool

from oban_py import Oban, telemetry
from oban_py.config import LifelineConfig
from oban_py.job.errors import SchemaError
from oban_py.job.model import Job
from oban_py.node.acker import Acker
from oban_py.node.outcomes import Ack
from oban_py.sql import Queries
from oban_py.worker import Worker


class Noop(Worker):
    name = "Py.Node.Noop"

    async def process(self, job: Job) -> None:
        return None


class Blocks(Worker):
    name = "Py.Node.Blocks"
    release: asyncio.Event | None = None

    async def process(self, job: Job) -> None:
        assert Blocks.release is not None
        await Blocks.release.wait()


async def test_start_refuses_a_database_without_the_schema(empty_dsn: str) -> None:
    oban = Oban(dsn=empty_dsn, queues={"q": 1}, peer=False)
    with pytest.raises(SchemaError):
        await oban.start()
    await oban.stop()


async def test_check_in_carries_elixir_producer_meta_and_running_ids(dsn: str, conn: Any) -> None:
    Blocks.release = asyncio.Event()
    job_id = await insert(conn, Blocks.__oban_name__, queue="chk")
    async with Oban(dsn=dsn, queues={"chk": 3}, peer=False, node="py-chk") as oban:
        await wait_state(conn, job_id, "executing")
        producer = oban.producers["chk"]
        await wait_for(lambda: producer.running == [job_id])
        check = oban.check_queue("chk")
        assert check is not None
        assert {
            "limit",
            "paused",
            "queue",
            "node",
            "name",
            "uuid",
            "running",
            "started_at",
            "updated_at",
        } <= set(check)
        assert (check["limit"], check["paused"], check["queue"]) == (3, False, "chk")
        assert (check["node"], check["name"], check["running"]) == ("py-chk", "Oban", [job_id])
        assert check["started_at"].endswith("Z")
        # Oban Web matches running jobs to producers through attempted_by[1]
        assert (await row(conn, job_id))["attempted_by"] == ["py-chk", check["uuid"]]
        assert [c["uuid"] for c in oban.check_all_queues()] == [check["uuid"]]
        Blocks.release.set()
        await wait_state(conn, job_id, "completed")


async def executing_row(conn: Any, queue: str, count: int) -> list[tuple[int, datetime]]:
    cur = await conn.execute(
        "INSERT INTO oban_jobs (queue, worker, state, attempt, attempted_at)"
        " SELECT %s, 'W', 'executing', 1, timezone('UTC', now()) FROM generate_series(1, %s)"
        " RETURNING id, attempted_at",
        (queue, count),
    )
    return [(i, at.replace(tzinfo=UTC)) for i, at in await cur.fetchall()]


async def test_acks_survive_a_killed_connection_and_are_retried(dsn: str, conn: Any) -> None:
    jobs = await executing_row(conn, "ack", 50)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        await pool.open(wait=True)
        acker = Acker(pool, Queries(), delay=0.001)
        async with pool.connection() as pooled:
            pid = pooled.info.backend_pid
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        failures: list[str] = []
        telemetry.attach("test-ack", "oban.ack.exception", lambda e, m, meta: failures.append(e))
        now = datetime.now(UTC)
        try:
            for job_id, at in jobs:
                acker.push(Ack(job_id, at, "completed", now))
            await acker.flush()
        finally:
            telemetry.detach("test-ack")
        assert failures == ["oban.ack.exception"]
        assert acker.pending == 0
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")
    assert (await cur.fetchone())[0] == 50


async def test_ack_never_overwrites_a_row_cancelled_or_rescued_meanwhile(
    dsn: str, conn: Any
) -> None:
    (cancelled, at1), (rescued, at2), (fine, at3) = await executing_row(conn, "ack", 3)
    await conn.execute("UPDATE oban_jobs SET state = 'cancelled' WHERE id = %s", (cancelled,))
    # a rescue followed by a new attempt: same row, another attempted_at
    await conn.execute(
        "UPDATE oban_jobs SET attempted_at = attempted_at + interval '1 second' WHERE id = %s",
        (rescued,),
    )
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1) as pool:
        acker = Acker(pool, Queries())
        now = datetime.now(UTC)
        for job_id, at in ((cancelled, at1), (rescued, at2), (fine, at3)):
            acker.push(Ack(job_id, at, "completed", now))
        await acker.flush()
    assert (await row(conn, cancelled))["state"] == "cancelled"
    assert (await row(conn, rescued))["state"] == "executing"
    assert (await row(conn, fine))["state"] == "completed"


async def test_a_flush_waits_for_the_batch_another_flush_is_writing(dsn: str, conn: Any) -> None:
    # A stopping queue flushes, then gives up its heartbeat rows: its acks may be in the batch
    # the acker's own loop is writing just then, which must land first.
    ((first, at1), (second, at2)) = await executing_row(conn, "ack", 2)
    async with (
        AsyncConnectionPool(dsn, min_size=2, max_size=2) as pool,
        await psycopg.AsyncConnection.connect(dsn) as locker,
    ):
        acker = Acker(pool, Queries())
        now = datetime.now(UTC)
        await locker.execute("SELECT 1 FROM oban_jobs WHERE id = %s FOR UPDATE", (first,))
        acker.push(Ack(first, at1, "completed", now))
        writing = asyncio.create_task(acker.flush())  # held by the lock on its row

        async def held() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return (await cur.fetchone())[0] == 1

        await wait_for(held)
        acker.push(Ack(second, at2, "completed", now))
        flushing = asyncio.create_task(acker.flush())
        await wait_for(lambda: second not in acker.owned())
        await asyncio.sleep(0.2)
        assert not flushing.done()  # its own ack written, the other batch still in flight
        assert first in acker.owned()
        await locker.rollback()
        await asyncio.wait_for(asyncio.gather(writing, flushing), 10)
    assert (await row(conn, first))["state"] == "completed"
    assert (await row(conn, second))["state"] == "completed"


async def test_node_acks_keep_coming_after_its_connections_are_killed(dsn: str, conn: Any) -> None:
    async with Oban(dsn=dsn, queues={"kill": 5}, peer=False, node="py-kill") as oban:
        first = [await insert(conn, Noop.__oban_name__, queue="kill") for _ in range(5)]
        for job_id in first:
            await wait_state(conn, job_id, "completed")
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        later = [await insert(conn, Noop.__oban_name__, queue="kill") for _ in range(5)]
        for job_id in later:
            await wait_state(conn, job_id, "completed", timeout=15)
        assert oban.acker is not None
        assert oban.acker.pending == 0


async def test_json_columns_are_loaded_with_orjson(dsn: str) -> None:
    oban = Oban(dsn=dsn, queues={}, peer=False)
    await oban.start()
    try:
        async with oban.pool.connection() as pooled:
            assert pooled.autocommit
            cur = await pooled.execute("SELECT '{\"a\": [1, 2]}'::jsonb")
            assert (await cur.fetchone()) == ({"a": [1, 2]},)
            loader = pooled.adapters.get_loader(psycopg.adapters.types["jsonb"].oid, 0)
            assert loader is not None
    finally:
        await oban.stop()


async def heartbeat_queues(conn: Any) -> set[str]:
    cur = await conn.execute("SELECT queue FROM oban_py_heartbeats")
    return {r[0] for r in await cur.fetchall()}


async def test_producers_are_in_the_heartbeat_table_right_after_start(dsn: str, conn: Any) -> None:
    # An interval far beyond the wait: only the wake at start can have written the rows.
    lifeline = LifelineConfig(heartbeat_interval=600, heartbeat_ttl=1800)
    async with Oban(dsn=dsn, queues={"a": 1, "b": 2}, peer=False, lifeline=lifeline) as oban:
        await wait_for(lambda: _has(conn, {"a", "b"}), timeout=2.0)
        await oban.start_queue("c", limit=1, local_only=True)
        await wait_for(lambda: _has(conn, {"a", "b", "c"}), timeout=2.0)


async def _has(conn: Any, queues: set[str]) -> bool:
    return await heartbeat_queues(conn) == queues


@pytest.mark.parametrize("size", [2, 8])  # below 4 every call takes a pool connection
async def test_a_pool_given_unopened_is_opened_on_first_use_as_documented(
    dsn: str, conn: Any, size: int
) -> None:
    job_id = await insert(conn, Noop.name, queue="given")
    # Not autocommit, as a caller's pool usually is: an enqueue must still be committed.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, max_size=size, open=False)
    try:
        async with Oban(pool=pool, queues={"given": 2}, peer=False, poll_interval=0.05) as oban:
            await wait_state(conn, job_id, "completed")
            inserted = await oban.enqueue(Noop.new({}, queue="given"))
            await wait_state(conn, inserted.id, "completed")
        # The caller's pool stays the caller's: open until the caller closes it.
        assert not pool.closed
    finally:
        await pool.close()


def test_a_sync_pool_given_unopened_is_opened_on_first_use(dsn: str) -> None:
    from psycopg_pool import ConnectionPool

    from oban_py import Client

    sync_pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=2, open=False)
    try:
        with Client(sync_pool=sync_pool, name="given-sync") as client:
            job = client.enqueue_sync(Noop.new({}, queue="given"))
            assert job.id is not None
    finally:
        sync_pool.close()


async def test_enqueues_through_a_callers_pool_without_autocommit_are_committed(
    dsn: str, conn: Any
) -> None:
    from oban_py import Client

    # Large enough that sequential calls share the client's held connection.
    async with AsyncConnectionPool(dsn, min_size=1, max_size=8) as pool:
        client = Client(pool=pool, name="given-commit")
        ids = [(await client.enqueue(Noop.new({}, queue="given"))).id for _ in range(3)]
        await client.close()
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE id = ANY(%s)", (ids,))
    assert (await cur.fetchone())[0] == 3
