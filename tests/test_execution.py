"""Each outcome of a job, written by a real node, compared with the row Elixir Oban wrote."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from nodekit import assert_like_fixture, insert, row, wait_state
from pydantic import BaseModel

from oban_py import Cancel, Oban, Record, Snooze, telemetry
from oban_py.job.model import Job
from oban_py.job.terms import decode_recorded
from oban_py.testing import perform_job
from oban_py.worker import Worker


class Completes(Worker):
    name = "Py.Exec.Completes"

    async def process(self, job: Job) -> Any:
        return {"anything": "else"}


class CompletesSync(Worker):
    name = "Py.Exec.CompletesSync"
    threads: set[str] = set()

    def process(self, job: Job) -> None:
        CompletesSync.threads.add(threading.current_thread().name)


class Raises(Worker):
    name = "Py.Exec.Raises"

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class RaisesWithBackoff(Worker):
    name = "Py.Exec.RaisesWithBackoff"

    def backoff(self, job: Job) -> float:
        return 100.0

    def process(self, job: Job) -> None:
        raise ValueError("sync boom")


class Snoozes(Worker):
    name = "Py.Exec.Snoozes"

    async def process(self, job: Job) -> Snooze:
        return Snooze(5)


class Cancels(Worker):
    name = "Py.Exec.Cancels"

    async def process(self, job: Job) -> Cancel:
        return Cancel("nope")


class Records(Worker):
    name = "Py.Exec.Records"

    async def process(self, job: Job) -> Record:
        return Record({"total": 42, "items": ["a", "b"]})


class RecordsTooMuch(Worker):
    name = "Py.Exec.RecordsTooMuch"

    async def process(self, job: Job) -> Record:
        return Record(bytes(range(256)) * 1000, limit=1000)


class TimesOut(Worker):
    name = "Py.Exec.TimesOut"

    def timeout(self, job: Job) -> float:
        return 0.05

    async def process(self, job: Job) -> None:
        await asyncio.sleep(10)


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


class CancelsUnprintably(Worker):
    name = "Py.Exec.CancelsUnprintably"

    async def process(self, job: Job) -> Cancel:
        return Cancel(Unprintable())


#: what ``timeout(job)`` answers, by the job's ``case``
TIMEOUTS: dict[str, Any] = {
    "nan": math.nan,
    "negative": -1,
    "minus-infinity": -math.inf,
    "str": "10",
    "bool": True,
    "none": None,
    "infinity": math.inf,
    "huge": 10**400,
}


class BadTimeout(Worker):
    name = "Py.Exec.BadTimeout"

    def timeout(self, job: Job) -> Any:
        return TIMEOUTS[job.args["case"]]

    async def process(self, job: Job) -> None:
        await asyncio.sleep(0.01)


class BadTimeoutSync(BadTimeout):
    name = "Py.Exec.BadTimeoutSync"

    def process(self, job: Job) -> None:  # type: ignore[override]
        time.sleep(0.01)


class Account(BaseModel):
    account_id: int


class Typed(Worker):
    name = "Py.Exec.Typed"
    args_model = Account

    async def process(self, job: Job) -> None:
        assert isinstance(job.typed_args, Account)


def node(dsn: str, **queues: int) -> Oban:
    return Oban(dsn=dsn, queues=queues or {"exec": 5}, peer=False, name="Oban", node="py-exec")


async def run_one(
    dsn: str, conn: psycopg.AsyncConnection[Any], worker: str, **opts: Any
) -> dict[str, Any]:
    job_id = await insert(conn, worker, {"case": "x"}, queue="exec", **opts)
    async with node(dsn):
        return await wait_state(
            conn, job_id, "completed", "retryable", "discarded", "cancelled", "scheduled"
        )


async def test_returning_any_value_completes_the_job_like_elixir(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Completes.__oban_name__)
    assert_like_fixture(got, "completed.json")
    assert got["attempt"] == 1
    assert got["attempted_by"][0] == "py-exec"
    assert got["completed_at"] >= got["attempted_at"]


async def test_sync_worker_runs_in_a_worker_thread_not_on_the_loop(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, CompletesSync.__oban_name__)
    assert_like_fixture(got, "completed.json")
    assert CompletesSync.threads
    assert all(t.startswith("oban-worker") for t in CompletesSync.threads)


async def test_raise_makes_the_job_retryable_with_default_backoff(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Raises.__oban_name__)
    assert_like_fixture(got, "retryable_raise.json")
    entry = got["errors"][0]
    assert entry["attempt"] == 1
    assert entry["error"].startswith("** (RuntimeError) boom\n")
    delay = datetime.fromisoformat(got["scheduled_at"]) - datetime.fromisoformat(
        got["attempted_at"]
    )
    # Elixir's attempt 1: 15 + 2^1 = 17 s plus up to 10% jitter
    assert timedelta(seconds=16.5) < delay < timedelta(seconds=19.5)


async def test_worker_backoff_overrides_the_default(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, RaisesWithBackoff.__oban_name__)
    assert got["state"] == "retryable"
    assert got["errors"][0]["error"].startswith("** (ValueError) sync boom")
    delay = datetime.fromisoformat(got["scheduled_at"]) - datetime.fromisoformat(
        got["attempted_at"]
    )
    assert timedelta(seconds=99) < delay < timedelta(seconds=101)


async def test_raise_on_the_last_attempt_discards(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Raises.__oban_name__, max_attempts=1)
    assert_like_fixture(got, "discarded_max_attempts_1.json")


async def test_raise_after_earlier_failures_discards_at_max_attempts(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, Raises.__oban_name__, queue="exec", max_attempts=5, attempt=4)
    async with node(dsn):
        got = await wait_state(conn, job_id, "discarded")
    assert got["attempt"] == 5
    assert got["errors"][-1]["attempt"] == 5
    assert got["discarded_at"] is not None


async def test_snoozed_job_keeps_attempt_and_gains_one_max_attempt(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Snoozes.__oban_name__)
    assert_like_fixture(got, "snoozed.json")
    assert (got["attempt"], got["max_attempts"]) == (1, 21)
    delay = datetime.fromisoformat(got["scheduled_at"]) - datetime.fromisoformat(
        got["attempted_at"]
    )
    assert timedelta(seconds=5) <= delay < timedelta(seconds=6)


async def test_cancel_result_cancels_with_elixir_error_text(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Cancels.__oban_name__)
    assert_like_fixture(got, "cancelled_by_worker.json")
    assert got["errors"][0]["error"] == (
        '** (Oban.PerformError) Py.Exec.Cancels failed with {:cancel, "nope"}'
    )


async def test_record_completes_and_stores_the_erlang_term_in_meta(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, Records.__oban_name__)
    assert got["state"] == "completed"
    assert got["meta"]["recorded"] is True
    assert decode_recorded(got["meta"]["return"]) == {"total": 42, "items": ["a", "b"]}


async def test_record_over_the_limit_fails_with_a_clear_message(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, RecordsTooMuch.__oban_name__)
    assert got["state"] == "retryable"
    assert "byte limit" in got["errors"][0]["error"]
    assert "recorded" not in got["meta"]


async def test_timeout_fails_with_elixir_timeout_error(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, TimesOut.__oban_name__)
    assert got["state"] == "retryable"
    assert got["errors"][0]["error"] == (
        "** (Oban.TimeoutError) Py.Exec.TimesOut timed out after 50ms"
    )


async def test_a_cancel_reason_whose_repr_raises_still_cancels_the_job(dsn: str, conn: Any) -> None:
    # The reason's repr once raised outside the worker: the node's safety net retried the job.
    got = await run_one(dsn, conn, CancelsUnprintably.__oban_name__)
    assert got["state"] == "cancelled"
    assert got["errors"][0]["error"] == (
        "** (Oban.PerformError) Py.Exec.CancelsUnprintably failed with "
        "{:cancel, <Unprintable (its __repr__ raised RuntimeError)>}"
    )


@pytest.mark.parametrize("worker", [BadTimeout, BadTimeoutSync], ids=["async", "thread"])
@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("nan", ValueError),
        ("negative", ValueError),
        ("minus-infinity", ValueError),
        ("str", TypeError),
        ("bool", TypeError),
    ],
)
async def test_a_timeout_that_is_no_number_of_seconds_fails_the_attempt_naming_it(
    worker: type[Worker], case: str, error: type[Exception]
) -> None:
    outcome = await perform_job(worker, {"case": case}, safe=True)
    assert outcome.state == "retryable"
    assert type(outcome.exception) is error
    assert f"{worker.__oban_name__}.timeout(job) returned " in str(outcome.exception)


@pytest.mark.parametrize("worker", [BadTimeout, BadTimeoutSync], ids=["async", "thread"])
@pytest.mark.parametrize("case", ["none", "infinity", "huge"])
async def test_no_timeout_or_an_infinite_one_is_no_limit(worker: type[Worker], case: str) -> None:
    outcome = await perform_job(worker, {"case": case}, safe=True)
    assert outcome.state == "completed"


async def test_unknown_worker_fails_like_elixir(dsn: str, conn: Any) -> None:
    got = await run_one(dsn, conn, "Python.Worker")
    assert_like_fixture(got, "unknown_worker_failed.json")
    assert got["errors"][0]["error"] == "** (RuntimeError) unknown worker: Python.Worker"


async def test_args_failing_the_model_fail_the_job_not_the_node(dsn: str, conn: Any) -> None:
    bad = await insert(conn, Typed.__oban_name__, {"account_id": "nope"}, queue="exec")
    good = await insert(conn, Typed.__oban_name__, {"account_id": 7}, queue="exec")
    async with node(dsn):
        failed = await wait_state(conn, bad, "retryable")
        done = await wait_state(conn, good, "completed")
    assert "InvalidArgs" in failed["errors"][0]["error"]
    assert done["errors"] == []


async def test_fetch_respects_priority_and_never_exceeds_max_attempts(dsn: str, conn: Any) -> None:
    exhausted = await insert(conn, Completes.__oban_name__, queue="exec", max_attempts=1)
    await conn.execute("UPDATE oban_jobs SET attempt = 1 WHERE id = %s", (exhausted,))
    ok = await insert(conn, Completes.__oban_name__, queue="exec")
    async with node(dsn):
        await wait_state(conn, ok, "completed")
        await asyncio.sleep(0.1)
    assert (await row(conn, exhausted))["state"] == "available"


# -- telemetry: stop for outcomes Elixir counts as handled, exception for failures -------------


class Sleeps(Worker):
    name = "Py.Exec.Sleeps"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(30)


Event = tuple[str, dict[str, Any], dict[str, Any]]


@pytest.fixture
def job_events() -> Iterator[list[Event]]:
    seen: list[Event] = []

    def handler(event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        seen.append((event, dict(measurements), dict(meta)))

    telemetry.attach("test.exec.events", "oban.job.*", handler)
    yield seen
    telemetry.detach("test.exec.events")


def finished(events: list[Event]) -> list[Event]:
    return [e for e in events if e[0] != "oban.job.start"]


async def test_a_completed_job_emits_stop_with_duration_and_queue_time(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    await run_one(dsn, conn, "Py.Exec.Completes")
    ((event, measurements, meta),) = finished(job_events)
    assert event == "oban.job.stop"
    assert meta["state"] == "completed"
    assert measurements["duration"] > 0
    assert measurements["queue_time"] >= 0
    for key in ("job", "id", "args", "queue", "worker", "attempt", "max_attempts", "tags"):
        assert key in meta, key
    assert meta["prefix"] == "public"
    assert meta["attempt"] == 1


async def test_a_raising_job_emits_exception_with_kind_reason_and_stacktrace(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    await run_one(dsn, conn, "Py.Exec.Raises")
    ((event, measurements, meta),) = finished(job_events)
    assert event == "oban.job.exception"
    assert meta["state"] == "retryable"
    assert meta["kind"] == "error"
    assert isinstance(meta["reason"], RuntimeError)
    assert meta["error"] is meta["reason"]
    assert meta["stacktrace"][-1].name == "process"
    assert set(measurements) == {"duration", "queue_time"}


async def test_a_failure_on_the_last_attempt_emits_exception_with_state_discarded(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    await run_one(dsn, conn, "Py.Exec.Raises", max_attempts=1)
    ((event, _, meta),) = finished(job_events)
    assert (event, meta["state"]) == ("oban.job.exception", "discarded")


async def test_timeouts_and_unknown_workers_are_exceptions_too(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    await run_one(dsn, conn, "Py.Exec.TimesOut")
    await run_one(dsn, conn, "Py.Exec.NoSuchWorker")
    assert [(e, m["state"]) for e, _, m in finished(job_events)] == [
        ("oban.job.exception", "retryable"),
        ("oban.job.exception", "retryable"),
    ]
    assert isinstance(finished(job_events)[0][2]["reason"], TimeoutError)


async def test_snooze_and_cancel_results_are_stops_as_in_elixir(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    await run_one(dsn, conn, "Py.Exec.Snoozes")
    await run_one(dsn, conn, "Py.Exec.Cancels")
    assert [(e, m["state"]) for e, _, m in finished(job_events)] == [
        ("oban.job.stop", "scheduled"),
        ("oban.job.stop", "cancelled"),
    ]


async def test_a_job_interrupted_by_shutdown_is_released_and_ends_its_span(
    dsn: str, conn: Any, job_events: list[Event]
) -> None:
    job_id = await insert(conn, "Py.Exec.Sleeps", queue="exec")
    oban = Oban(dsn=dsn, queues={"exec": 1}, peer=False, node="py-exec", shutdown_grace=0.05)
    async with oban:
        await wait_state(conn, job_id, "executing")
    ((event, _, meta),) = finished(job_events)
    assert event == "oban.job.exception"
    assert (meta["state"], meta["kind"]) == ("available", "exit")
    # Its task ended at the cancellation, so the job went back at once for any node to run.
    assert (await row(conn, job_id))["state"] == "available"
    assert isinstance(meta["reason"], asyncio.CancelledError)
