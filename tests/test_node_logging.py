"""What an embedded node logs when the application configured nothing (issue 14, item 8):
failed attempts and jobs cut off by a shutdown, at warning level, and nothing per success."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog
from nodekit import insert, wait_for, wait_state

from oban_py import Config, Oban, log, telemetry
from oban_py.job.model import Job
from oban_py.worker import Worker


class Fails(Worker):
    name = "Py.NodeLog.Fails"

    async def process(self, job: Job) -> None:
        raise ValueError("no such user")


class Fine(Worker):
    name = "Py.NodeLog.Fine"

    async def process(self, job: Job) -> None:
        return None


class Hangs(Worker):
    name = "Py.NodeLog.Hangs"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(60)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON log lines, with no telemetry logger attached before the test (as in a fresh app)."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log.detach_default_logger()
    log.configure("debug", "json", stream=stream)
    try:
        yield stream
    finally:
        log.detach_default_logger()
        root.handlers[:], root.level = saved
        structlog.reset_defaults()


def job_events(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in lines if e.get("logger") == "oban.job"]


def node(dsn: str, **options: Any) -> Oban:
    return Oban(dsn=dsn, queues={"log": 5}, peer=False, shutdown_grace=0.2, **options)


async def test_by_default_a_node_logs_failures_and_shutdown_leftovers_only(
    dsn: str, conn: psycopg.AsyncConnection[Any], captured: io.StringIO
) -> None:
    assert Config().default_logger == "failures"
    oban = node(dsn)
    await oban.start()
    try:
        fine = await insert(conn, Fine.name, queue="log")
        failing = await insert(conn, Fails.name, queue="log")
        hanging = await insert(conn, Hangs.name, queue="log")
        await wait_state(conn, fine, "completed")
        await wait_state(conn, failing, "retryable")
        await wait_state(conn, hanging, "executing")
    finally:
        await oban.stop()
    events = job_events(captured)
    assert {e["event"] for e in events} == {"job failed", "job interrupted"}
    failed = next(e for e in events if e["event"] == "job failed")
    assert (failed["level"], failed["id"], failed["state"]) == ("warning", failing, "retryable")
    assert "no such user" in failed["error"]
    cut = next(e for e in events if e["event"] == "job interrupted")
    assert (cut["level"], cut["id"], cut["worker"]) == ("warning", hanging, Hangs.name)


async def test_default_logger_off_logs_nothing_and_all_logs_every_job(
    dsn: str, conn: psycopg.AsyncConnection[Any], captured: io.StringIO
) -> None:
    async with node(dsn, default_logger="off"):
        failing = await insert(conn, Fails.name, queue="log")
        await wait_state(conn, failing, "retryable")
    assert job_events(captured) == []
    assert not telemetry.attached(log.HANDLER_ID)

    async with node(dsn, default_logger="all"):
        fine = await insert(conn, Fine.name, queue="log")
        await wait_state(conn, fine, "completed")
        await wait_for(lambda: len(job_events(captured)) >= 2)
    assert [e["event"] for e in job_events(captured)] == ["job started", "job stopped"]


async def test_a_node_never_narrows_a_logger_the_application_attached(
    dsn: str, conn: psycopg.AsyncConnection[Any], captured: io.StringIO
) -> None:
    log.attach_default_logger()
    async with node(dsn):
        fine = await insert(conn, Fine.name, queue="log")
        await wait_state(conn, fine, "completed")
        await wait_for(lambda: len(job_events(captured)) >= 2)
    assert [e["event"] for e in job_events(captured)] == ["job started", "job stopped"]


def test_default_logger_rejects_an_unknown_choice() -> None:
    with pytest.raises(ValueError, match="default_logger"):
        Config(default_logger="verbose")  # type: ignore[arg-type]
