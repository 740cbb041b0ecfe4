"""Middleware: one chain around every insert (async, sync, bulk, every driver) and around every
attempt (seeing its outcome, whatever it is), process-wide, per instance and per worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from nodekit import wait_state

from oban_py import Cancel, Client, Job, Oban, Snooze, Worker, telemetry, worker
from oban_py.client.core import insert_async, insert_sync
from oban_py.middleware import (
    AttemptOutcome,
    InsertNext,
    InsertNextSync,
    Middleware,
    ThreadNext,
    WorkNext,
    add_insert_hook,
    add_middleware,
    remove_insert_hook,
    remove_middleware,
)
from oban_py.sql import Queries
from oban_py.testing import perform_job

log: list[Any] = []


class Stamp(Middleware):
    """Stamps its name into meta and logs what it saw on the way in and out."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _amend(self, jobs: list[Job]) -> list[Job]:
        log.append((self.name, "insert-in", len(jobs)))
        return [j.model_copy(update={"meta": {**j.meta, self.name: True}}) for j in jobs]

    async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
        stored = await call_next(self._amend(jobs))
        log.append((self.name, "insert-out", [j.id is not None for j in stored]))
        return stored

    def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
        stored = call_next(self._amend(jobs))
        log.append((self.name, "insert-out", [j.id is not None for j in stored]))
        return stored

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        log.append((self.name, "work-in"))
        outcome = await call_next()
        log.append((self.name, "work-out", outcome.state))
        return outcome


class Outcomes(Middleware):
    """Keeps the outcome of every attempt it wraps, in order."""

    def __init__(self) -> None:
        self.outcomes: list[AttemptOutcome] = []

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        outcome = await call_next()
        self.outcomes.append(outcome)
        return outcome


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    log.clear()
    yield
    for name in ("test.outer", "test.seen", "test.raise", "test.telemetry", "test.thread"):
        remove_middleware(name)
    telemetry.detach("test.telemetry")


# -- inserts ------------------------------------------------------------------------------------


async def test_async_single_and_bulk_inserts_run_through_every_insert_middleware(
    dsn: str,
) -> None:
    add_middleware("test.outer", Stamp("outer"))
    async with Client(dsn=dsn, name="MwClient", middleware=[Stamp("inner")]) as client:
        one = await client.enqueue(Job(worker="Py.Mw", meta={"own": 1}))
        many = await client.enqueue_many([Job(worker="Py.Mw"), Job(worker="Py.Mw")])
    assert one.meta == {"own": 1, "outer": True, "inner": True}
    assert [j.meta for j in many] == [{"outer": True, "inner": True}] * 2
    # Outermost first in, last out; each sees the stored jobs (with ids) on the way out.
    assert log == [
        ("outer", "insert-in", 1),
        ("inner", "insert-in", 1),
        ("inner", "insert-out", [True]),
        ("outer", "insert-out", [True]),
        ("outer", "insert-in", 2),
        ("inner", "insert-in", 2),
        ("inner", "insert-out", [True, True]),
        ("outer", "insert-out", [True, True]),
    ]


def test_sync_inserts_run_through_insert_sync(dsn: str) -> None:
    add_middleware("test.outer", Stamp("outer"))
    with Client(dsn=dsn, name="MwClient", middleware=[Stamp("inner")]) as client:
        one = client.enqueue_sync(Job(worker="Py.Mw"))
        many = client.enqueue_many_sync([Job(worker="Py.Mw"), Job(worker="Py.Mw")])
    with psycopg.connect(dsn) as conn:
        [driven] = insert_sync(conn, Queries("public"), [Job(worker="Py.Mw")])
    assert one.meta == {"outer": True, "inner": True}
    assert [j.meta for j in many] == [{"outer": True, "inner": True}] * 2
    # The bare driver belongs to no instance: only the process-wide middleware wraps it.
    assert driven.meta == {"outer": True}


async def test_the_async_driver_runs_the_process_wide_middleware(dsn: str) -> None:
    add_middleware("test.outer", Stamp("outer"))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        [job] = await insert_async(conn, Queries("public"), [Job(worker="Py.Mw")])
    assert job.meta == {"outer": True}


async def test_worker_enqueue_goes_through_its_instance_middleware(dsn: str) -> None:
    async with Client(dsn=dsn, name="MwWorkerClient", middleware=[Stamp("inner")]):
        job = await Succeeds.enqueue({}, oban="MwWorkerClient")
    assert job.meta == {"inner": True}


async def test_an_insert_middleware_that_raises_inserts_nothing(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    class Refuse(Middleware):
        async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
            raise PermissionError("not today")

        def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
            raise PermissionError("not today")

    async with Client(dsn=dsn, name="MwClient", middleware=[Refuse()]) as client:
        with pytest.raises(PermissionError):
            await client.enqueue_many([Job(worker="Py.Mw"), Job(worker="Py.Mw")])
    cur = await conn.execute("SELECT count(*) FROM oban_jobs")
    assert await cur.fetchone() == (0,)


def test_overriding_only_one_of_insert_and_insert_sync_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="override both"):

        class OnlyAsync(Middleware):
            async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
                return await call_next(jobs)


def test_only_middleware_instances_are_accepted() -> None:
    with pytest.raises(TypeError):
        Client(dsn="postgresql://x", middleware=[lambda job: job])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        add_middleware("test.outer", object())  # type: ignore[arg-type]


async def test_insert_hooks_are_amend_middleware(dsn: str) -> None:
    add_insert_hook("test.outer", lambda job: job.model_copy(update={"meta": {"hooked": 1}}))
    async with Client(dsn=dsn, name="MwClient") as client:
        job = await client.enqueue(Job(worker="Py.Mw"))
    assert job.meta == {"hooked": 1}
    assert remove_insert_hook("test.outer") is True
    assert remove_insert_hook("test.outer") is False


# -- attempts -----------------------------------------------------------------------------------


class Stop(BaseException):
    pass


class Succeeds(Worker):
    name = "Py.Mw.Succeeds"

    async def process(self, job: Job) -> Any:
        log.append(("process", job.args.get("what")))
        what = job.args.get("what")
        if what == "snooze":
            return Snooze(60)
        if what == "cancel":
            return Cancel("no longer wanted")
        if what == "raise":
            raise ValueError("worker broke")
        if what == "base":
            raise Stop("out of here")
        return None


class SyncWorker(Worker):
    name = "Py.Mw.Sync"

    def process(self, job: Job) -> None:
        log.append(("process", threading.get_ident()))


@pytest.mark.parametrize(
    ("args", "opts", "state", "error"),
    [
        ({}, {}, "completed", None),
        ({"what": "raise"}, {}, "retryable", ValueError),
        ({"what": "raise"}, {"max_attempts": 1}, "discarded", ValueError),
        ({"what": "snooze"}, {}, "scheduled", None),
        ({"what": "cancel"}, {}, "cancelled", None),
        ({"what": "base"}, {}, "retryable", Stop),
    ],
    ids=["success", "failure", "discard", "snooze", "cancel", "base-exception"],
)
async def test_work_middleware_sees_every_outcome(
    args: dict[str, Any], opts: dict[str, Any], state: str, error: type[BaseException] | None
) -> None:
    add_middleware("test.seen", Stamp("seen"))
    outcome = await perform_job(Succeeds, args, safe=True, **opts)
    assert outcome.state == state
    assert log[0] == ("seen", "work-in")
    assert log[-1] == ("seen", "work-out", state)
    seen = log[1:-1]
    assert seen == [("process", args.get("what"))]


async def test_the_outcome_carries_what_process_returned_or_raised() -> None:
    keep = Outcomes()
    add_middleware("test.seen", keep)
    await perform_job(Succeeds, {"what": "snooze"}, safe=True)
    await perform_job(Succeeds, {"what": "raise"}, safe=True)
    await perform_job(Succeeds, {"what": "unknown"}, safe=True)
    snoozed, failed, completed = keep.outcomes
    assert snoozed.snoozed
    assert snoozed.result == Snooze(60)
    assert snoozed.error is None
    assert isinstance(failed.error, ValueError)
    assert failed.result is failed.error
    assert completed.state == "completed"
    assert completed.result is None
    assert completed.interrupted is None


@pytest.mark.parametrize("where", ["before", "after", "returns-nothing"])
async def test_a_work_middleware_that_raises_fails_the_attempt(where: str) -> None:
    class Broken(Middleware):
        async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
            if where == "before":
                raise RuntimeError("middleware broke before")
            await call_next()
            if where == "after":
                raise RuntimeError("middleware broke after")
            return None  # type: ignore[return-value]

    add_middleware("test.outer", Stamp("outer"))
    add_middleware("test.raise", Broken())
    outcome = await perform_job(Succeeds, {}, safe=True)
    assert outcome.state == "retryable"
    assert ("middleware broke" if where != "returns-nothing" else "not call_next") in (
        outcome.error or ""
    )
    ran = ("process", None) in log
    assert ran == (where != "before")
    # The outer middleware sees the failure as an outcome, never as an exception.
    assert log[-1] == ("outer", "work-out", "retryable")


class Kept(Middleware):
    """Returns an outcome ``call_next`` did not give it for this job."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.kept: AttemptOutcome | None = None

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        if job.args.get("pass"):
            return await call_next()
        if self.how == "hand-built":
            return AttemptOutcome("completed", None)  # "skip this job, mark it done"
        outcome = await call_next()
        if self.kept is None:
            self.kept = outcome
        return self.kept


@pytest.mark.parametrize("how", ["hand-built", "another job's"])
async def test_a_work_middleware_returning_an_outcome_call_next_did_not_give_fails_the_attempt(
    how: str,
) -> None:
    kept = Kept(how)
    add_middleware("test.outer", Stamp("outer"))
    add_middleware("test.raise", kept)
    if how == "another job's":
        assert (await perform_job(Succeeds, {})).state == "completed"
        assert kept.kept is not None
    outcome = await perform_job(Succeeds, {"what": "raise"}, safe=True)
    assert outcome.state == "retryable"
    assert isinstance(outcome.exception, TypeError)
    assert "Kept.work returned an AttemptOutcome that call_next did not give it" in (
        outcome.error or ""
    )
    assert log[-1] == ("outer", "work-out", "retryable")


async def test_a_hand_built_outcome_fails_its_own_job_and_the_node_goes_on(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # The acker once got the outcome's missing ack: that job and every later one of the node
    # stayed executing, and the node's stop raised.
    async with Oban(
        dsn=dsn, queues={"mw": 2}, peer=False, name="MwNode", middleware=[Kept("hand-built")]
    ) as oban:
        skipped = await oban.enqueue(Succeeds.new({}, queue="mw", max_attempts=1))
        got = await wait_state(conn, skipped.id or 0, "discarded")
        later = await oban.enqueue(Succeeds.new({"pass": True}, queue="mw"))
        await wait_state(conn, later.id or 0, "completed")
    assert got["errors"][0]["error"].startswith("** (TypeError) Kept.work returned")


async def test_a_work_middleware_returning_a_value_whose_repr_raises_fails_with_a_type_error() -> (
    None
):
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("repr boom")

    class Returns(Middleware):
        async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
            await call_next()
            return Unprintable()  # type: ignore[return-value]

    add_middleware("test.raise", Returns())
    outcome = await perform_job(Succeeds, {}, safe=True)
    assert outcome.state == "retryable"
    assert isinstance(outcome.exception, TypeError)
    assert str(outcome.exception).endswith(
        "Returns.work returned <Unprintable (its __repr__ raised RuntimeError)>, "
        "not call_next's outcome"
    )


async def test_work_in_thread_wraps_a_sync_process_in_its_pool_thread() -> None:
    class InThread(Middleware):
        def work_in_thread(self, job: Job, call_next: ThreadNext) -> Any:
            log.append(("thread-in", threading.get_ident()))
            result = call_next()
            log.append(("thread-out", threading.get_ident()))
            return result

    add_middleware("test.thread", InThread())
    assert (await perform_job(SyncWorker, {})).state == "completed"
    assert [kind for kind, _ in log] == ["thread-in", "process", "thread-out"]
    assert len({where for _, where in log}) == 1
    assert log[0][1] != threading.get_ident()


async def test_telemetry_start_and_stop_are_outside_every_middleware() -> None:
    telemetry.attach(
        "test.telemetry",
        ["oban.job.start", "oban.job.stop", "oban.job.exception"],
        lambda event, m, meta: log.append((event, meta.get("state"))),
    )
    add_middleware("test.seen", Stamp("seen"))
    await perform_job(Succeeds, {"what": "raise"}, safe=True)
    assert log == [
        ("oban.job.start", None),
        ("seen", "work-in"),
        ("process", "raise"),
        ("seen", "work-out", "retryable"),
        ("oban.job.exception", "retryable"),
    ]


class Ordered(Worker):
    name = "Py.Mw.Ordered"
    middleware = (Stamp("worker"),)

    async def process(self, job: Job) -> None:
        log.append(("process", None))


@worker(name="Py.Mw.Decorated", middleware=[Stamp("decorated")])
class Decorated:
    async def process(self, job: Job) -> None:
        log.append(("process", None))


async def test_the_worker_decorator_takes_middleware() -> None:
    assert (await perform_job(Decorated, {})).state == "completed"
    assert log == [
        ("decorated", "work-in"),
        ("process", None),
        ("decorated", "work-out", "completed"),
    ]


async def test_process_wide_then_instance_then_worker_middleware_on_a_node(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    add_middleware("test.outer", Stamp("global"))
    async with Oban(
        dsn=dsn, queues={"mw": 1}, peer=False, name="MwNode", middleware=[Stamp("instance")]
    ) as oban:
        job = await oban.enqueue(Ordered.new({}, queue="mw"))
        await wait_state(conn, job.id or 0, "completed")
        await asyncio.sleep(0.05)
    work = [e for e in log if e[0] == "process" or str(e[1]).startswith("work")]
    assert work == [
        ("global", "work-in"),
        ("instance", "work-in"),
        ("worker", "work-in"),
        ("process", None),
        ("worker", "work-out", "completed"),
        ("instance", "work-out", "completed"),
        ("global", "work-out", "completed"),
    ]


class Hangs(Worker):
    name = "Py.Mw.Hangs"

    async def process(self, job: Job) -> None:
        log.append(("process", "started"))
        await asyncio.sleep(60)


async def test_a_cancel_of_a_running_job_reaches_the_middleware_as_its_outcome(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    keep = Outcomes()
    async with Oban(
        dsn=dsn, queues={"mw": 1}, peer=False, name="MwNode", middleware=[keep]
    ) as oban:
        job = await oban.enqueue(Hangs.new({}, queue="mw"))
        await wait_state(conn, job.id or 0, "executing")
        assert await oban.cancel_job(job.id or 0)
        for _ in range(500):
            if keep.outcomes:
                break
            await asyncio.sleep(0.02)
    [outcome] = keep.outcomes
    assert outcome.state == "cancelled"
    assert outcome.interrupted == "pkill"


async def test_a_shutdown_past_the_grace_reaches_the_middleware_as_a_release(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    keep = Outcomes()
    oban = Oban(
        dsn=dsn,
        queues={"mw": 1},
        peer=False,
        name="MwNode",
        shutdown_grace=0.2,
        middleware=[keep],
    )
    async with oban:
        job = await oban.enqueue(Hangs.new({}, queue="mw"))
        await wait_state(conn, job.id or 0, "executing")
    [outcome] = keep.outcomes
    assert (outcome.state, outcome.interrupted) == ("available", "shutdown")
    assert isinstance(outcome.error, asyncio.CancelledError)
    assert (await wait_state(conn, job.id or 0, "available"))["attempt"] == 1
