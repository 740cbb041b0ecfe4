"""Signals on the ``signal`` channel, with Elixir's payloads byte for byte, both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from conftest import FIXTURES
from nodekit import assert_like_fixture, insert, row, wait_for, wait_state

from oban_py import Oban
from oban_py.job.model import Job
from oban_py.worker import Worker


class Sleeps(Worker):
    name = "Py.Signals.Sleeps"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(30)


class Ignores(Worker):
    """A sync worker polling its cancellation flag (a thread cannot be cancelled)."""

    name = "Py.Signals.Ignores"

    def process(self, job: Job) -> None:
        import time

        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not job.cancelled():
            time.sleep(0.01)


class Noop(Worker):
    name = "Py.Signals.Noop"

    async def process(self, job: Job) -> None:
        return None


def elixir_signals() -> list[str]:
    data = json.loads((FIXTURES / "notifications" / "signals.json").read_text())
    return [n["payload"] for n in data["notifications"] if n["channel"] == "public.oban_signal"]


@pytest.fixture
async def listener(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        await c.execute('LISTEN "public.oban_signal"')
        yield c


async def received(listener: psycopg.AsyncConnection[Any], count: int) -> list[str]:
    payloads: list[str] = []
    async for note in listener.notifies(timeout=5, stop_after=count):
        payloads.append(note.payload)
    return payloads


async def test_signals_sent_match_elixir_payloads_byte_for_byte(
    dsn: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    sender = Oban(dsn=dsn, queues={}, peer=False, node="signal-client")
    try:
        await sender.pause_queue("sig")
        await sender.resume_queue("sig")
        await sender.scale_queue("sig", limit=5)
        await sender.pause_queue("sig", node="elixir-node-1")
        await sender.resume_queue("sig", node="elixir-node-1")
        await sender.pause_queue("sig", node="other-node")
        await sender.pause_all_queues()
        await sender.resume_all_queues()
        await sender.start_queue("extra", limit=3)
        await sender.stop_queue("extra")
        sent = await received(listener, 10)
    finally:
        await sender.close()
    elixir = [p for p in elixir_signals() if '"pkill"' not in p]
    assert sent == elixir


async def test_local_only_signals_address_this_node(
    dsn: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    sender = Oban(dsn=dsn, queues={}, peer=False, node="web-1")
    try:
        await sender.pause_queue("q", local_only=True)
        await sender.scale_queue("q", limit=2, local_only=True)
        sent = await received(listener, 2)
    finally:
        await sender.close()
    assert sent == [
        '{"action":"pause","ident":"Oban.web-1","queue":"q"}',
        '{"action":"scale","ident":"Oban.web-1","limit":2,"local_only":true,"queue":"q"}',
    ]


async def notify_raw(conn: Any, payload: str) -> None:
    await conn.execute("SELECT pg_notify('public.oban_signal', %s)", (payload,))


async def test_elixir_pause_resume_and_scale_payloads_drive_the_producer(
    dsn: str, conn: Any
) -> None:
    async with Oban(dsn=dsn, queues={"sig": 2}, peer=False, node="elixir-node-1") as oban:
        producer = oban.producers["sig"]
        pause, resume, scale, pause_here, resume_here, pause_other, pause_all, resume_all = (
            elixir_signals()[:8]
        )
        await notify_raw(conn, pause)
        await wait_for(lambda: producer.paused)
        job_id = await insert(conn, Noop.__oban_name__, queue="sig")
        await asyncio.sleep(0.2)
        assert (await row(conn, job_id))["state"] == "available"
        await notify_raw(conn, resume)
        await wait_state(conn, job_id, "completed")
        await notify_raw(conn, scale)
        await wait_for(lambda: producer.limit == 5)
        await notify_raw(conn, pause_here)
        await wait_for(lambda: producer.paused)
        await notify_raw(conn, resume_here)
        await wait_for(lambda: not producer.paused)
        await notify_raw(conn, pause_other)
        await asyncio.sleep(0.2)
        assert not producer.paused
        await notify_raw(conn, pause_all)
        await wait_for(lambda: producer.paused)
        await notify_raw(conn, resume_all)
        await wait_for(lambda: not producer.paused)


async def test_pause_resume_scale_from_a_second_instance(dsn: str, conn: Any) -> None:
    async with Oban(dsn=dsn, queues={"sig": 2}, peer=False, node="py-a") as oban:
        producer = oban.producers["sig"]
        other = Oban(dsn=dsn, queues={}, peer=False, node="py-b", name="Oban")
        try:
            await other.pause_queue("sig")
            await wait_for(lambda: producer.paused)
            await other.resume_queue("sig", node="py-a")
            await wait_for(lambda: not producer.paused)
            await other.scale_queue("sig", limit=7)
            await wait_for(lambda: producer.limit == 7)
            await other.pause_queue("sig", node="py-elsewhere")
            await asyncio.sleep(0.2)
            assert not producer.paused
            await other.start_queue("extra", limit=3)
            await wait_for(lambda: "extra" in oban.producers)
            assert oban.producers["extra"].limit == 3
            job_id = await insert(conn, Noop.__oban_name__, queue="extra")
            await wait_state(conn, job_id, "completed")
            await other.stop_queue("extra")
            await wait_for(lambda: "extra" not in oban.producers)
        finally:
            await other.close()


async def test_pkill_cancels_a_job_ignoring_its_flag_and_keeps_the_row_cancelled(
    dsn: str, conn: Any
) -> None:
    job_id = await insert(conn, Sleeps.__oban_name__, {"ms": 30000}, queue="sig")
    async with Oban(dsn=dsn, queues={"sig": 2}, peer=False, node="py-pk") as oban:
        await wait_state(conn, job_id, "executing")
        await wait_for(lambda: oban.producers["sig"].running == [job_id])
        other = Oban(dsn=dsn, queues={}, peer=False, node="py-ctl")
        try:
            assert await other.cancel_job(job_id)
        finally:
            await other.close()
        await wait_for(lambda: oban.producers["sig"].running == [])
        await wait_for(lambda: oban.acker is not None and oban.acker.pending == 0)
        await asyncio.sleep(0.05)
    got = await row(conn, job_id)
    assert_like_fixture(got, "cancelled_executing_pkill.json")
    assert got["errors"][0]["error"] == (
        "** (Oban.PerformError) Py.Signals.Sleeps failed with {:cancel, :shutdown}"
    )


async def test_pkill_of_a_sync_job_stops_it_through_its_flag(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, Ignores.__oban_name__, queue="sig")
    async with Oban(dsn=dsn, queues={"sig": 2}, peer=False, node="py-pk2") as oban:
        await wait_for(lambda: oban.producers["sig"].running == [job_id])
        await notify_raw(conn, json.dumps({"action": "pkill", "job_id": job_id}))
        await wait_for(lambda: oban.producers["sig"].running == [], timeout=3)
        await asyncio.sleep(0.05)
    got = await row(conn, job_id)
    # no cancel_job set the row cancelled: the guarded pkill ack still cancels it
    assert got["state"] == "cancelled"
    assert got["errors"][0]["error"].endswith("failed with {:cancel, :shutdown}")


def test_sync_code_sends_the_same_signals_through_a_plain_client(dsn: str) -> None:
    from oban_py import Client

    sender = Client(dsn=dsn)
    with psycopg.connect(dsn, autocommit=True) as listening:
        listening.execute('LISTEN "public.oban_signal"')
        try:
            sender.pause_queue_sync("sig")
            sender.resume_queue_sync("sig")
            sender.scale_queue_sync("sig", limit=5)
            sender.pause_queue_sync("sig", node="elixir-node-1")
            sender.resume_queue_sync("sig", node="elixir-node-1")
            sender.pause_queue_sync("sig", node="other-node")
            sender.pause_all_queues_sync()
            sender.resume_all_queues_sync()
            sender.start_queue_sync("extra", limit=3)
            sender.stop_queue_sync("extra")
            with pytest.raises(ValueError, match="positive integer"):
                sender.scale_queue_sync("sig", limit=0)
        finally:
            sender.close_sync()
        sent = [n.payload for n in listening.notifies(timeout=5, stop_after=10)]
    assert sent == [p for p in elixir_signals() if '"pkill"' not in p]
