"""oban_py.testing: modes, enqueue assertions, drain_queue and perform_job, on a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import FIXTURES
from pydantic import BaseModel

from oban_py import Cancel, Record, Snooze
from oban_py.job.model import Job
from oban_py.testing import (
    TestingClient,
    all_enqueued,
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
)
from oban_py.worker import Worker

performed: list[dict[str, Any]] = []


class Ok(Worker):
    name = "Testing.Ok"
    queue = "mailers"

    async def process(self, job: Job) -> None:
        performed.append(job.args)


class SyncOk(Worker):
    name = "Testing.SyncOk"

    def process(self, job: Job) -> str:
        return "done in a thread"


class Boom(Worker):
    name = "Testing.Boom"

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class Sleepy(Worker):
    name = "Testing.Sleepy"

    async def process(self, job: Job) -> Snooze:
        return Snooze(5)


class Quits(Worker):
    name = "Testing.Quits"

    async def process(self, job: Job) -> Cancel:
        return Cancel("nope")


class Adds(Worker):
    name = "Testing.Adds"

    async def process(self, job: Job) -> Record:
        return Record(sum(job.args["numbers"]))


class Fans(Worker):
    """Enqueues a child job for each level left: recursion makes drain_queue run them."""

    name = "Testing.Fans"
    queue = "fan"

    async def process(self, job: Job) -> None:
        if job.args["left"] > 0:
            await Fans.enqueue({"left": job.args["left"] - 1})


class Point(BaseModel):
    x: int


class Typed(Worker):
    name = "Testing.Typed"
    args_model = Point

    async def process(self, job: Job) -> int:
        return int(job.typed_args.x) * 2


@pytest.fixture
def oban_dsn(dsn: str) -> str:
    # The plugin's fixture, pointed at this test's fresh database.
    return dsn


@pytest.fixture
async def manual(dsn: str) -> AsyncIterator[TestingClient]:
    client = TestingClient("manual", dsn=dsn)
    try:
        yield client
    finally:
        await client.close()


# -- modes -------------------------------------------------------------------------------------


async def test_inline_mode_runs_the_job_at_once_without_a_database() -> None:
    performed.clear()
    client = TestingClient("inline")
    try:
        job = await Ok.enqueue({"to": "a@example.com"})
    finally:
        await client.close()
    assert performed == [{"to": "a@example.com"}]
    assert job.state == "completed"
    assert job.attempt == 1
    assert job.completed_at is not None
    assert job.id is not None  # as every job a node runs: worker code may use it
    assert client.performed == [job]


async def test_inline_mode_returns_a_snoozed_job_scheduled_with_one_more_max_attempt() -> None:
    async with TestingClient("inline") as client:
        job = await client.enqueue(Sleepy.new({}))
    assert job.state == "scheduled"
    assert job.attempt == 1
    assert job.max_attempts == 21
    assert job.scheduled_at is not None
    assert job.scheduled_at > datetime.now(UTC) + timedelta(seconds=4)


async def test_inline_mode_raises_the_job_exception_unless_told_not_to() -> None:
    async with TestingClient("inline") as client:
        with pytest.raises(RuntimeError, match="boom"):
            await client.enqueue(Boom.new({}))
    async with TestingClient("inline", raise_errors=False) as client:
        job = await client.enqueue(Boom.new({}))
    assert job.state == "retryable"
    assert job.errors[0]["error"].startswith("** (RuntimeError) boom")


async def test_disabled_mode_returns_the_job_unsaved_and_runs_nothing() -> None:
    performed.clear()
    async with TestingClient("disabled"):
        job = await Ok.enqueue({"to": "b"})
    assert performed == []
    assert job.id is None
    assert job.state == "available"


async def test_manual_mode_inserts_and_runs_nothing(manual: TestingClient) -> None:
    performed.clear()
    job = await Ok.enqueue({"to": "c"})
    assert job.id is not None
    assert performed == []
    assert (await manual.get_job(job.id)).state == "available"  # type: ignore[union-attr]


def test_manual_mode_needs_a_database() -> None:
    with pytest.raises(ValueError, match="dsn"):
        TestingClient("manual")
    with pytest.raises(ValueError, match="inline, manual, disabled"):
        TestingClient("eager")  # type: ignore[arg-type]


# -- assert / refute ---------------------------------------------------------------------------


async def test_assert_enqueued_matches_args_and_meta_as_subsets(manual: TestingClient) -> None:
    await Ok.enqueue({"to": "d", "locale": "fr"}, meta={"trace": "x", "n": 1}, tags=["Billing"])
    found = await assert_enqueued(worker=Ok, args={"to": "d"}, meta={"trace": "x"})
    assert found.args == {"to": "d", "locale": "fr"}
    await assert_enqueued(worker="Testing.Ok", queue="mailers", tags=["billing"], priority=0)
    await refute_enqueued(worker=Ok, args={"to": "e"})
    await refute_enqueued(worker=Ok, queue="default")


async def test_assert_enqueued_failure_names_the_filters_and_what_is_there(
    manual: TestingClient,
) -> None:
    await Ok.enqueue({"to": "f"})
    with pytest.raises(AssertionError) as raised:
        await assert_enqueued(worker=Ok, args={"to": "g"})
    message = str(raised.value)
    assert "worker='Testing.Ok'" in message
    assert "args={'to': 'g'}" in message
    assert 'args={"to":"f"}' in message
    with pytest.raises(AssertionError, match="found 1"):
        await refute_enqueued(worker=Ok)


async def test_enqueued_means_available_or_scheduled_unless_a_state_is_given(
    manual: TestingClient,
) -> None:
    job = await Ok.enqueue({"to": "h"}, schedule_in=60)
    await assert_enqueued(worker=Ok, scheduled_at=job.scheduled_at, delta=0.5)
    await refute_enqueued(worker=Ok, scheduled_at=datetime.now(UTC), delta=5)
    await manual.cancel_job(job.id)  # type: ignore[arg-type]
    await refute_enqueued(worker=Ok)
    await assert_enqueued(worker=Ok, state="cancelled")
    assert [j.id for j in await all_enqueued(state=["cancelled", "completed"])] == [job.id]


# -- drain_queue -------------------------------------------------------------------------------


async def test_drain_queue_runs_jobs_through_the_executor_and_counts_outcomes(
    manual: TestingClient,
) -> None:
    for worker in (Ok, SyncOk, Boom, Sleepy, Quits, Adds):
        await manual.enqueue(worker.new({"numbers": [1, 2]}, queue="drain", max_attempts=2))
    await manual.enqueue(Boom.new({}, queue="drain", max_attempts=1))
    counts = await drain_queue(manual, "drain")
    assert counts == {"completed": 3, "discarded": 1, "cancelled": 1, "retryable": 1, "snoozed": 1}
    rows = {j.worker: j for j in await all_enqueued(queue="drain", state=STATES)}
    assert rows["Testing.Adds"].meta["recorded"] is True
    assert rows["Testing.Sleepy"].max_attempts == 3


STATES = ["completed", "discarded", "cancelled", "retryable", "scheduled", "available"]


async def test_drain_queue_writes_the_same_errors_entry_shape_as_elixir(
    manual: TestingClient,
) -> None:
    elixir = json.loads((FIXTURES / "jobs" / "retryable_raise.json").read_text())
    job = await manual.enqueue(Boom.new({}, queue="drain"))
    await drain_queue(manual, "drain")
    row = await manual.get_job(job.id)  # type: ignore[arg-type]
    assert row is not None
    assert row.state == elixir["state"] == "retryable"
    assert set(row.errors[0]) == set(elixir["errors"][0])
    assert row.errors[0]["error"].startswith("** (RuntimeError) boom")
    assert row.errors[0]["at"].endswith("Z")


async def test_drain_queue_leaves_scheduled_jobs_unless_with_scheduled(
    manual: TestingClient,
) -> None:
    await manual.enqueue(Ok.new({"n": 1}, queue="later", schedule_in=3600))
    assert (await drain_queue(manual, "later"))["completed"] == 0
    counts = await drain_queue(manual, "later", with_scheduled=datetime.now(UTC))
    assert counts["completed"] == 0
    assert (await drain_queue(manual, "later", with_scheduled=True))["completed"] == 1


async def test_drain_queue_with_recursion_runs_jobs_enqueued_by_jobs(
    manual: TestingClient,
) -> None:
    await Fans.enqueue({"left": 3})
    assert (await drain_queue(manual, "fan"))["completed"] == 1
    assert (await drain_queue(manual, "fan", with_recursion=True))["completed"] == 3


async def test_drain_queue_with_limit_takes_that_many_per_pass(manual: TestingClient) -> None:
    await manual.enqueue_many([Ok.new({"n": n}, queue="lim") for n in range(5)])
    assert (await drain_queue(manual, "lim", with_limit=2))["completed"] == 2
    counts = await drain_queue(manual, "lim", with_limit=2, with_recursion=True)
    assert counts["completed"] == 3


async def test_drain_queue_with_scheduled_and_recursion_retries_until_discarded(
    manual: TestingClient,
) -> None:
    await manual.enqueue(Boom.new({}, queue="retry", max_attempts=3))
    await manual.enqueue(Sleepy.new({}, queue="retry"))
    counts = await drain_queue(manual, "retry", with_scheduled=True, with_recursion=True)
    # A snoozed job is not staged again by the same drain, so the drain ends.
    assert counts == {"completed": 0, "discarded": 1, "cancelled": 0, "retryable": 2, "snoozed": 1}


async def test_drain_queue_without_safety_raises_after_recording(manual: TestingClient) -> None:
    job = await manual.enqueue(Boom.new({}, queue="unsafe"))
    with pytest.raises(RuntimeError, match="boom"):
        await drain_queue(manual, "unsafe", with_safety=False)
    assert (await manual.get_job(job.id)).state == "retryable"  # type: ignore[union-attr,arg-type]


# -- perform_job -------------------------------------------------------------------------------


async def test_perform_job_returns_the_outcome_a_node_would_record() -> None:
    ok = await perform_job(SyncOk, {})
    assert (ok.state, ok.result, ok.job.attempt) == ("completed", "done in a thread", 1)
    snoozed = await perform_job(Sleepy, {})
    assert snoozed.snoozed
    assert snoozed.job.max_attempts == 21
    cancelled = await perform_job(Quits, {})
    assert cancelled.state == "cancelled"
    assert cancelled.error == '** (Oban.PerformError) Testing.Quits failed with {:cancel, "nope"}'
    recorded = await perform_job(Adds, {"numbers": [1, 2, 3]})
    assert recorded.job.meta["recorded"] is True


async def test_perform_job_raises_like_elixir_unless_safe() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await perform_job(Boom, {})
    last = await perform_job("Testing.Boom", {}, safe=True, attempt=20)
    assert last.state == "discarded"
    assert last.error is not None
    assert last.error.startswith("** (RuntimeError) boom")


async def test_perform_job_validates_typed_args_before_running() -> None:
    assert (await perform_job(Typed, {"x": 4})).result == 8
    with pytest.raises(ValueError, match="args do not match Point"):
        await perform_job(Typed, {"x": "not a number"})


# -- the pytest plugin -------------------------------------------------------------------------


async def test_plugin_fixture_is_a_manual_client_on_the_given_dsn(
    oban_testing: TestingClient,
) -> None:
    assert oban_testing.mode == "manual"
    await Ok.enqueue({"to": "plugin"})
    await assert_enqueued(oban_testing, worker=Ok, args={"to": "plugin"})


@pytest.mark.oban_testing("inline")
async def test_plugin_marker_selects_inline_mode(oban_testing: TestingClient) -> None:
    job = await Ok.enqueue({"to": "inline"})
    assert oban_testing.mode == "inline"
    assert job.state == "completed"
