"""Structured logging of telemetry events: one JSON line per job start/stop/failure and per pass."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import structlog

from oban_py import log, telemetry
from oban_py.job.model import Job
from oban_py.testing import TestingClient, drain_queue, perform_job
from oban_py.worker import Worker


class Fine(Worker):
    name = "Logging.Fine"

    async def process(self, job: Job) -> None:
        return None


class Broken(Worker):
    name = "Logging.Broken"

    async def process(self, job: Job) -> None:
        raise ValueError("bad input")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log.configure("debug", "json", stream=stream)
    log.attach_default_logger()
    try:
        yield stream
    finally:
        log.detach_default_logger()
        root.handlers[:], root.level = saved
        structlog.reset_defaults()


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_a_job_logs_one_start_and_one_stop_event_with_its_facts(
    lines: io.StringIO,
) -> None:
    await perform_job(Fine, {"n": 1})
    start, stop = [e for e in events(lines) if e["logger"] == "oban.job"]
    assert start["event"] == "job started"
    assert start["event_name"] == "oban.job.start"
    assert stop["event"] == "job stopped"
    for key in ("worker", "queue", "attempt", "max_attempts", "queue_time_ms", "id"):
        assert key in stop, key
    assert stop["worker"] == "Logging.Fine"
    assert stop["state"] == "completed"
    assert stop["attempt"] == 1
    assert stop["duration_ms"] >= 0
    assert stop["level"] == "info"
    assert stop["timestamp"].endswith("Z")


async def test_a_failed_job_logs_a_warning_with_the_error_and_next_state(
    lines: io.StringIO,
) -> None:
    await perform_job(Broken, {}, safe=True)
    failed = [e for e in events(lines) if e["event"] == "job failed"]
    assert len(failed) == 1
    assert failed[0]["level"] == "warning"
    assert failed[0]["state"] == "retryable"
    assert failed[0]["error"] == "ValueError('bad input')"


async def test_jobs_drained_from_the_database_log_their_id_and_queue_time(
    lines: io.StringIO, dsn: str
) -> None:
    async with TestingClient("manual", dsn=dsn) as client:
        job = await client.enqueue(Fine.new({}, queue="logged"))
        await drain_queue(client, "logged")
    stop = next(e for e in events(lines) if e.get("event_name") == "oban.job.stop")
    assert stop["id"] == job.id
    assert stop["queue"] == "logged"
    assert stop["queue_time_ms"] >= 0


def test_plugin_passes_log_their_result_and_failures_warn(lines: io.StringIO) -> None:
    telemetry.execute("oban.pruner.start", {"system_time": 1}, {"limit": 10})
    telemetry.execute("oban.pruner.stop", {"duration": 2_000_000}, {"limit": 10, "result": 4})
    telemetry.execute("oban.pruner.stop", {"duration": 1_000}, {"limit": 10, "result": 0})
    telemetry.execute(
        "oban.lifeline.exception", {"duration": 5}, {"error": RuntimeError("db down")}
    )
    logged = events(lines)
    assert [e["event"] for e in logged] == ["plugin ran", "plugin ran", "plugin failed"]
    busy, idle, failed = logged
    assert (busy["plugin"], busy["result"], busy["duration_ms"], busy["level"]) == (
        "oban.pruner",
        4,
        2.0,
        "info",
    )
    assert idle["level"] == "debug"
    assert failed["level"] == "warning"
    assert failed["error"] == "RuntimeError('db down')"


def test_a_plugin_pass_cut_short_by_the_stop_is_no_warning(lines: io.StringIO) -> None:
    telemetry.execute("oban.sonar.exception", {"duration": 5}, {"error": asyncio.CancelledError()})
    (cut,) = events(lines)
    assert cut["level"] == "debug"


def test_live_objects_in_metadata_are_left_out(lines: io.StringIO) -> None:
    telemetry.execute("oban.node.start", {}, {"node": "n1", "oban": object()})
    (started,) = events(lines)
    assert started["node"] == "n1"
    assert "oban" not in started


def test_stdlib_logging_goes_through_the_same_renderer(lines: io.StringIO) -> None:
    logging.getLogger("myapp").warning("plain %s", "record")
    (record,) = events(lines)
    assert record["event"] == "plain record"
    assert record["logger"] == "myapp"
    assert record["level"] == "warning"


def test_console_format_renders_readable_lines() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log.configure("info", "console", stream=stream)
    try:
        structlog.get_logger("oban.test").info("hello", queue="mailers")
    finally:
        root.handlers[:], root.level = saved
        structlog.reset_defaults()
    assert "hello" in stream.getvalue()
    assert "queue=mailers" in stream.getvalue()


async def test_a_raising_telemetry_handler_never_breaks_a_job(lines: io.StringIO) -> None:
    def broken(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        raise RuntimeError("handler bug")

    telemetry.attach("test.broken", "oban.job.*", broken)
    try:
        outcome = await perform_job(Fine, {})
    finally:
        telemetry.detach("test.broken")
    assert outcome.state == "completed"
    failures = [e for e in events(lines) if e["event"] == "telemetry handler failed"]
    assert {f["event_name"] for f in failures} == {"oban.job.start", "oban.job.stop"}
    assert len(failures) == 2  # start and stop
