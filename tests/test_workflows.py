"""Workflows: jobs that depend on jobs, held in ``suspended`` until their dependencies settle."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nodekit import row, wait_for, wait_state
from psycopg_pool import AsyncConnectionPool

from oban_py import Oban, telemetry, workflows
from oban_py.client.core import Client
from oban_py.cluster.pruner import Pruner
from oban_py.job import terms
from oban_py.job.model import Job
from oban_py.job.returns import Cancel, Record
from oban_py.sql import Queries
from oban_py.worker import Worker
from oban_py.workflows import Workflow, WorkflowError

#: (step name, states of its dependencies when it started), appended by every worker below
STARTED: list[tuple[str, dict[str, str]]] = []
GATES: dict[str, asyncio.Event] = {}


async def _dep_states(job: Job) -> dict[str, str]:
    wid = job.meta.get("workflow_id")
    if wid is None:
        return {}
    found = await workflows.status(wid)
    states = {j["name"]: j["state"] for j in found.jobs}
    return {dep: states.get(dep, "deleted") for dep in job.meta.get("deps", [])}


class Rec(Worker):
    """Records ``args.value`` (or its outcome per ``args.outcome``)."""

    name = "Py.Wf.Rec"

    async def process(self, job: Job) -> Any:
        STARTED.append((str(job.meta.get("name")), await _dep_states(job)))
        gate = GATES.get(str(job.args.get("gate")))
        if gate is not None:
            await gate.wait()
        outcome = job.args.get("outcome", "ok")
        if outcome == "cancel":
            return Cancel("told to")
        if outcome == "discard":
            raise RuntimeError("failed for good")
        return Record(job.args.get("value"))


class Sum(Worker):
    """The fan-in: sums its dependencies' recorded results."""

    name = "Py.Wf.Sum"

    async def process(self, job: Job) -> Any:
        STARTED.append((str(job.meta.get("name")), await _dep_states(job)))
        got = await workflows.results(job)
        return Record({"sum": sum(got.values()), "count": len(got)})


def rec(value: Any = None, **args: Any) -> Job:
    return Rec.new({"value": value, **args}, queue="wf", max_attempts=1)


@pytest.fixture(autouse=True)
def _reset() -> None:
    STARTED.clear()
    GATES.clear()


@pytest.fixture
async def oban(dsn: str) -> AsyncIterator[Oban]:
    async with Oban(dsn=dsn, queues={"wf": 20}, peer=False, node="wf-a") as node:
        yield node


async def finished(oban: Client, wid: str, timeout: float = 30.0) -> workflows.Status:  # noqa: ASYNC109
    async def done() -> bool:
        return (await workflows.status(wid, oban=oban)).finished

    await wait_for(done, timeout)
    return await workflows.status(wid, oban=oban)


def states(status: workflows.Status) -> dict[str, str]:
    return {job["name"]: job["state"] for job in status.jobs}


async def job_row(conn: Any, oban: Client, wid: str, name: str) -> dict[str, Any]:
    found = await workflows.status(wid, oban=oban)
    (job_id,) = [j["id"] for j in found.jobs if j["name"] == name]
    return await row(conn, job_id)


# -- building and checking ------------------------------------------------------------------------


async def test_a_cycle_is_rejected_before_anything_is_inserted(oban: Oban, conn: Any) -> None:
    wf = (
        Workflow().add("a", rec(), deps=["c"]).add("b", rec(), deps=["a"]).add("c", rec(), deps="b")
    )
    with pytest.raises(WorkflowError, match="cycle"):
        await wf.enqueue(oban)
    cur = await conn.execute("SELECT count(*) FROM oban_jobs")
    assert (await cur.fetchone())[0] == 0


def test_bad_graphs_are_refused_with_clear_errors() -> None:
    with pytest.raises(WorkflowError, match="duplicate step name 'a'"):
        Workflow().add("a", rec()).add("a", rec())
    with pytest.raises(WorkflowError, match=r"depends on \['nope'\]"):
        Workflow().add("a", rec(), deps=["nope"]).validate()
    with pytest.raises(WorkflowError, match="depends on itself"):
        Workflow().add("a", rec(), deps=["a"])
    with pytest.raises(WorkflowError, match="on_failure"):
        Workflow().add("a", rec(), on_failure="explode")  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="non-empty string"):
        Workflow().add("", rec())
    with pytest.raises(WorkflowError, match="cannot be unique"):
        Workflow().add("u", Rec.new({}, unique={"period": 60}))


@pytest.mark.parametrize("bad", [42, "", "a\x00b", "a\ud800", b"wf"])
def test_a_workflow_id_that_is_not_a_non_empty_string_is_refused(bad: Any) -> None:
    # Releasing finds a workflow's jobs by the id as JSON text: a number or "" would leave
    # its held jobs waiting forever or fail them.
    with pytest.raises(WorkflowError, match=r"workflow_id must be a non-empty string.*uuid\.UUID"):
        Workflow(workflow_id=bad)
    with pytest.raises(WorkflowError, match="workflow_id must be"):
        Workflow.append(bad)


def test_a_workflow_id_of_none_is_a_new_uuid_but_appends_need_one() -> None:
    assert uuid.UUID(Workflow(workflow_id=None).workflow_id).version == 4  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="workflow_id must be"):
        Workflow.append(None)  # type: ignore[arg-type]


async def test_a_uuid_workflow_id_is_stored_as_its_string_and_the_workflow_runs(
    oban: Oban, conn: Any
) -> None:
    wid = uuid.uuid4()
    wf = Workflow(workflow_id=wid).add("a", rec()).add("b", rec(), deps="a")  # type: ignore[arg-type]
    assert wf.workflow_id == str(wid)
    _, b = await wf.enqueue(oban)
    assert (await wait_state(conn, b.id, "completed"))["meta"]["workflow_id"] == str(wid)
    assert (await Workflow.append(wid).add("c", rec(), deps="b").enqueue(oban))[0].meta[
        "workflow_id"
    ] == str(wid)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Workflow().add("a\x00b", rec()), "a step name must be a non-empty string"),
        (lambda: Workflow().add("a\ud800", rec()), "without NUL or lone surrogates"),
        (lambda: Workflow().add("a", rec(), wait_for="m\x00"), "the message 'a' waits for"),
        (lambda: Workflow(name=5), "a workflow name must be a non-empty string"),  # type: ignore[arg-type]
        (lambda: Workflow(name="n\x00"), "a workflow name must be"),
        (lambda: Workflow().add("a", rec(), deps=None), "deps of 'a' must be a step name"),  # type: ignore[arg-type]
        (lambda: Workflow().add("a", rec(), delay=float("inf")), "delay must be a finite"),
        (lambda: Workflow().add("a", rec(), delay=float("nan")), "delay must be a finite"),
        (lambda: Workflow().add("a", rec(), delay="5"), "delay must be a finite"),  # type: ignore[arg-type]
        (lambda: Workflow().add("a", rec(), delay=True), "delay must be a finite"),
        (lambda: Workflow().add("a", rec(), delay=-1), "delay must be a finite"),
        (
            lambda: Workflow().add("a", rec(), wait_for="m", timeout=-1),
            "timeout must be a finite, non-negative",
        ),
        (
            lambda: Workflow().add("a", rec(), ignore_deleted="no"),  # type: ignore[arg-type]
            "ignore_deleted must be True or False, got 'no'",
        ),
    ],
)
def test_bad_input_is_refused_by_the_builder_with_what_is_accepted(
    build: Callable[[], Workflow], error: str
) -> None:
    with pytest.raises(WorkflowError, match=re.escape(error)):
        build()


async def test_an_empty_workflow_is_refused_before_any_statement(oban: Oban, conn: Any) -> None:
    wf = Workflow()
    with pytest.raises(WorkflowError, match=f"workflow {wf.workflow_id} has no steps"):
        await wf.enqueue(oban)
    with pytest.raises(WorkflowError, match="has no steps"):
        wf.enqueue_sync(oban)
    with pytest.raises(WorkflowError, match="has no steps"):
        await Workflow.append("missing").enqueue(oban)


async def test_jobs_go_in_held_with_their_workflow_meta_in_one_batch(oban: Oban, conn: Any) -> None:
    wf = Workflow(name="export")
    wf.add("a", rec(1)).add("b", rec(2), deps="a", on_failure="run", ignore_deleted=True)
    wf.add("c", rec(3), deps=["b"], on_failure="discard", delay=5)
    await oban.pause_queue("wf", local_only=True)
    jobs = await wf.enqueue(oban)
    assert [j.state for j in jobs] == ["available", "suspended", "suspended"]
    b = await row(conn, jobs[1].id)
    assert b["state"] == "suspended"
    assert b["meta"] == {
        "workflow_id": wf.workflow_id,
        "workflow_name": "export",
        "name": "b",
        "deps": ["a"],
        "ignore_cancelled": True,
        "ignore_discarded": True,
        "ignore_deleted": True,
    }
    c = await row(conn, jobs[2].id)
    assert c["meta"]["on_failure"] == "discard"
    assert c["meta"]["delay"] == 5.0
    assert set(c["meta"]) <= set(workflows.META_KEYS)


def test_enqueue_sync_joins_the_callers_transaction(dsn: str) -> None:
    client = Client(dsn=dsn)
    with psycopg.connect(dsn) as conn:
        Workflow().add("a", rec()).add("b", rec(), deps="a").enqueue_sync(client, conn)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (0,)
        wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
        wf.enqueue_sync(client, conn)
        conn.commit()
    assert workflows.status_sync(wf.workflow_id, oban=client).counts == {
        "available": 1,
        "suspended": 1,
    }
    client.close_sync()


# -- running ------------------------------------------------------------------------------------


async def test_fan_out_fan_in_1_50_1_reads_results_at_the_fan_in(oban: Oban) -> None:
    wf = Workflow().add("start", rec(0))
    shops = wf.fan_out("shop", [rec(i) for i in range(50)], deps="start")
    wf.add("report", Sum.new({}, queue="wf"), deps=shops)
    await wf.enqueue(oban)
    status = await finished(oban, wf.workflow_id)
    assert status.counts == {"completed": 52}
    report = next(j for j in status.jobs if j["name"] == "report")
    got = await oban.get_job(report["id"])
    assert got is not None
    assert workflows.work.decode_result(got.meta["return"]) == {"sum": sum(range(50)), "count": 50}
    order = [name for name, _ in STARTED]
    assert order[0] == "start"
    assert order[-1] == "report"
    assert all(set(deps.values()) <= {"completed"} for _, deps in STARTED)


async def test_a_chain_runs_step_by_step(oban: Oban) -> None:
    wf = Workflow().chain([("extract", rec(1)), ("transform", rec(2)), ("load", rec(3))])
    await wf.enqueue(oban)
    status = await finished(oban, wf.workflow_id)
    assert states(status) == dict.fromkeys(("extract", "transform", "load"), "completed")
    assert [name for name, _ in STARTED] == ["extract", "transform", "load"]
    assert STARTED[2] == ("load", {"transform": "completed"})


@pytest.mark.parametrize(
    ("outcome", "policy", "expected"),
    [
        ("cancel", "cancel", {"root": "cancelled", "mid": "cancelled", "leaf": "cancelled"}),
        ("discard", "cancel", {"root": "discarded", "mid": "cancelled", "leaf": "cancelled"}),
        ("discard", "discard", {"root": "discarded", "mid": "discarded", "leaf": "cancelled"}),
        ("cancel", "discard", {"root": "cancelled", "mid": "discarded", "leaf": "cancelled"}),
        ("cancel", "run", {"root": "cancelled", "mid": "completed", "leaf": "completed"}),
        ("discard", "run", {"root": "discarded", "mid": "completed", "leaf": "completed"}),
    ],
)
async def test_a_dependency_failing_for_good_applies_the_dependents_policy(
    oban: Oban, conn: Any, outcome: str, policy: str, expected: dict[str, str]
) -> None:
    wf = Workflow().add("root", rec(outcome=outcome))
    wf.add("mid", rec(), deps="root", on_failure=policy)  # type: ignore[arg-type]
    wf.add("leaf", rec(), deps="mid")
    wf.add("side", rec(), deps="leaf")
    await wf.enqueue(oban)
    status = await finished(oban, wf.workflow_id)
    expected = {**expected, "side": "cancelled" if expected["leaf"] != "completed" else "completed"}
    assert states(status) == expected
    ran = {name for name, _ in STARTED}
    assert ran == {"root"} | ({"mid", "leaf", "side"} if policy == "run" else set())
    for name, state in expected.items():
        stamp = {"cancelled": "cancelled_at", "discarded": "discarded_at"}.get(state)
        if stamp:
            assert (await job_row(conn, oban, wf.workflow_id, name))[stamp] is not None


async def test_a_timer_step_waits_after_its_dependencies(oban: Oban, conn: Any) -> None:
    wf = Workflow().add("a", rec()).add("later", rec(), deps="a", delay=3600)
    a, later = await wf.enqueue(oban)
    await wait_state(conn, later.id, "scheduled")
    done, held = await row(conn, a.id), await row(conn, later.id)
    waited = datetime.fromisoformat(held["scheduled_at"]) - datetime.fromisoformat(
        done["completed_at"]
    )
    assert 3590 < waited.total_seconds() < 3610


# -- concurrency --------------------------------------------------------------------------------


async def test_two_deps_completing_at_once_release_their_dependent_exactly_once(
    dsn: str, conn: Any
) -> None:
    """Two "nodes" (own pools) each complete one dependency and run a release pass at the same
    instant: the dependent is released, and by exactly one of them, every time."""
    client = Client(dsn=dsn)
    queries = Queries()
    pools = [
        AsyncConnectionPool(dsn, min_size=2, open=False, kwargs={"autocommit": True}) for _ in "ab"
    ]
    for pool in pools:
        await pool.open()
    try:
        for _ in range(60):
            wf = Workflow().add("a", rec()).add("b", rec()).add("c", rec(), deps=["a", "b"])
            jobs = await wf.enqueue(client)
            a, b, c = (j.id for j in jobs)
            await conn.execute(
                "UPDATE oban_jobs SET state = 'executing' WHERE id IN (%s, %s)", (a, b)
            )
            barrier = asyncio.Barrier(2)

            async def node(
                pool: AsyncConnectionPool[Any],
                job_id: int,
                barrier: asyncio.Barrier = barrier,
                wid: str = wf.workflow_id,
            ) -> list[int]:
                await barrier.wait()
                async with pool.connection() as own:
                    await own.execute(
                        "UPDATE oban_jobs SET state = 'completed',"
                        " completed_at = timezone('UTC', now()) WHERE id = %s",
                        (job_id,),
                    )
                done = await workflows.release(pool, queries, [wid])
                return done.available

            got = await asyncio.gather(node(pools[0], a), node(pools[1], b))
            assert sorted(got[0] + got[1]) == [c]
            assert (await row(conn, c))["state"] == "available"
    finally:
        for pool in pools:
            await pool.close()
        await client.close()


class Gate(Worker):
    """Completes when the test opens the gate named in its args."""

    name = "Py.Wf.Gate"

    async def process(self, job: Job) -> Any:
        await GATES[job.args["gate"]].wait()
        return Record(job.args["gate"])


async def test_two_deps_finishing_together_on_two_nodes_run_the_fan_in_once(dsn: str) -> None:
    releases: list[int] = []

    def seen(_e: str, _m: Any, meta: Any) -> None:
        releases.extend(meta["available"])

    telemetry.attach("wf-two-nodes", "oban.workflow.release", seen)
    try:
        async with (
            Oban(dsn=dsn, queues={"wf": 5}, peer=False, node="wf-1") as one,
            Oban(dsn=dsn, queues={"wf": 5}, peer=False, node="wf-2"),
        ):
            for round_ in range(5):
                GATES["g"] = asyncio.Event()
                wf = Workflow()
                wf.add("a", Gate.new({"gate": "g"}, queue="wf"))
                wf.add("b", Gate.new({"gate": "g"}, queue="wf"))
                wf.add("c", rec(), deps=["a", "b"])
                jobs = await wf.enqueue(one)
                # Both gates are the same event: a and b end at the same instant.
                await asyncio.sleep(0.2)
                GATES["g"].set()
                await finished(one, wf.workflow_id)
                assert [n for n, _ in STARTED].count("c") == round_ + 1
                assert releases.count(jobs[2].id) == 1
    finally:
        telemetry.detach("wf-two-nodes")


async def test_append_to_a_running_workflow(oban: Oban, conn: Any) -> None:
    GATES["a"] = asyncio.Event()
    wf = Workflow().add("a", rec(1, gate="a"))
    await wf.enqueue(oban)
    await wait_for(lambda: [n for n, _ in STARTED] == ["a"])
    more = Workflow.append(wf.workflow_id).add("b", rec(2), deps="a").add("c", rec(3), deps="b")
    appended = await more.enqueue(oban)
    assert [j.state for j in appended] == ["suspended", "suspended"]
    with pytest.raises(WorkflowError, match="already has steps named"):
        await Workflow.append(wf.workflow_id).add("a", rec()).enqueue(oban)
    with pytest.raises(WorkflowError, match="not in the workflow"):
        await Workflow.append(wf.workflow_id).add("z", rec(), deps="nope").enqueue(oban)
    with pytest.raises(WorkflowError, match="no workflow"):
        await Workflow.append("missing").add("z", rec()).enqueue(oban)
    GATES["a"].set()
    status = await finished(oban, wf.workflow_id)
    assert states(status) == {"a": "completed", "b": "completed", "c": "completed"}
    # Appended after every dependency completed: released by the wake the append sends.
    late = await Workflow.append(wf.workflow_id).add("d", rec(4), deps=["a", "c"]).enqueue(oban)
    assert (await wait_state(conn, late[0].id, "completed"))["meta"]["deps"] == ["a", "c"]
    assert [n for n, _ in STARTED] == ["a", "b", "c", "d"]


async def test_appends_of_one_name_in_concurrent_transactions_add_it_once(
    oban: Oban, dsn: str
) -> None:
    wf = Workflow().add("a", Rec.new({}, queue="idle"))
    await wf.enqueue(oban)
    first = await psycopg.AsyncConnection.connect(dsn)
    second = await psycopg.AsyncConnection.connect(dsn)
    try:
        added = Workflow.append(wf.workflow_id).add("x", rec(), deps="a")
        await added.enqueue(oban, conn=first)
        again = Workflow.append(wf.workflow_id).add("x", rec(), deps="a")
        # It waits for the first append's transaction, then reads its step.
        waiting = asyncio.ensure_future(again.enqueue(oban, conn=second))
        await asyncio.sleep(0.2)
        await first.commit()
        with pytest.raises(WorkflowError, match=r"already has steps named \['x'\]"):
            await waiting
    finally:
        await first.close()
        await second.close()
    status = await workflows.status(wf.workflow_id, oban=oban)
    assert sorted(j["name"] for j in status.jobs) == ["a", "x"]


async def test_cancel_a_whole_workflow_while_jobs_run(oban: Oban, conn: Any) -> None:
    GATES["run"] = asyncio.Event()
    wf = Workflow().add("a", rec(gate="run")).add("b", rec(), deps="a").add("c", rec(), deps="b")
    wf.add("done", rec())
    jobs = await wf.enqueue(oban)
    await wait_state(conn, jobs[0].id, "executing")
    await wait_state(conn, jobs[3].id, "completed")
    assert await workflows.cancel(wf.workflow_id, oban=oban) == 3
    status = await finished(oban, wf.workflow_id)
    assert states(status) == {
        "a": "cancelled",
        "b": "cancelled",
        "c": "cancelled",
        "done": "completed",
    }

    # The running job was killed (pkill), not left to finish: its attempt records the kill.
    async def killed() -> bool:
        return bool((await row(conn, jobs[0].id))["errors"])

    await wait_for(killed)
    assert "cancel" in (await row(conn, jobs[0].id))["errors"][-1]["error"]
    assert not GATES["run"].is_set()
    assert {n for n, _ in STARTED} == {"a", "done"}


async def test_status_says_what_holds_each_held_job(oban: Oban) -> None:
    await oban.pause_queue("wf", local_only=True)
    wf = Workflow().add("a", rec()).add("b", rec()).add("c", rec(), deps=["a", "b"])
    await wf.enqueue(oban)
    status = await workflows.status(wf.workflow_id, oban=oban)
    assert status.counts == {"available": 2, "suspended": 1}
    assert [(h.name, h.waiting_for) for h in status.held] == [
        ("c", {"a": "available", "b": "available"})
    ]
    assert not status.finished


async def test_telemetry_tells_start_release_and_finish(oban: Oban) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    telemetry.attach(
        "wf-events", ["oban.workflow.*"], lambda e, _m, meta: events.append((e, dict(meta)))
    )
    try:
        wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
        await wf.enqueue(oban)
        await finished(oban, wf.workflow_id)
        await wait_for(lambda: any(e == "oban.workflow.stop" for e, _ in events))
    finally:
        telemetry.detach("wf-events")
    names = [e for e, _ in events]
    assert names[0] == "oban.workflow.start"
    assert "oban.workflow.release" in names
    assert events[0][1]["workflow_id"] == wf.workflow_id
    stops = [meta for e, meta in events if e == "oban.workflow.stop"]
    assert {m["workflow_id"] for m in stops} == {wf.workflow_id}


# -- pruning, deleted dependencies and Elixir's plugins ----------------------------------------


def leading_pruner(client: Client) -> Pruner:
    """The pruner of a node that leads, on ``client``'s pool, keeping a minute of history."""

    class Holder:
        config = client.config
        pool = client.pool
        queries = client.queries
        notifier = None
        producers: dict[str, Any] = {}
        is_leader = True
        liveness = None

    pruner = Pruner(Holder())  # type: ignore[arg-type]
    pruner.max_age = 60
    return pruner


async def test_the_pruner_keeps_a_workflows_completed_jobs_until_it_is_done(
    dsn: str, conn: Any
) -> None:
    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    a, b = await wf.enqueue(client)
    old = "timezone('UTC', now()) - interval '2 days'"
    await conn.execute(
        f"UPDATE oban_jobs SET state = 'completed', completed_at = {old}, scheduled_at = {old}"
        " WHERE id = %s",
        (a.id,),
    )
    plain = await client.enqueue(Rec.new({}))
    await conn.execute(
        f"UPDATE oban_jobs SET state = 'completed', completed_at = {old}, scheduled_at = {old}"
        " WHERE id = %s",
        (plain.id,),
    )

    pruner = leading_pruner(client)
    assert await pruner.prune() == 1  # the plain job only: b still needs a
    await conn.execute(
        "UPDATE oban_jobs SET state = 'cancelled', cancelled_at = " + old + " WHERE id = %s",
        (b.id,),
    )
    assert await pruner.prune() == 2
    await client.close()


@pytest.mark.parametrize("failed", ["cancelled", "discarded"])
async def test_the_pruner_keeps_a_failed_dependency_while_its_workflow_holds_jobs(
    dsn: str, conn: Any, failed: str
) -> None:
    # Deleted, the dependency would read as deleted and cancel the step whose policy says to
    # run after a failed one.
    client = Client(dsn=dsn)
    wf = (
        Workflow()
        .add("a", rec())
        .add("b", rec())
        .add("c", rec(), deps=["a", "b"], on_failure="run")
    )
    a, b, c = await wf.enqueue(client)
    old = "timezone('UTC', now()) - interval '2 days'"
    await conn.execute(
        f"UPDATE oban_jobs SET state = %s, {failed}_at = {old} WHERE id = %s", (failed, a.id)
    )

    pruner = leading_pruner(client)
    assert await pruner.prune() == 0
    await conn.execute("UPDATE oban_jobs SET state = 'completed' WHERE id = %s", (b.id,))
    await workflows.release(client.pool, client.queries, [wf.workflow_id])
    assert (await row(conn, c.id))["state"] == "available"
    await conn.execute("UPDATE oban_jobs SET state = 'completed' WHERE id = %s", (c.id,))
    assert await pruner.prune() == 1  # the workflow is done: its failed job goes as any
    await client.close()


@pytest.mark.parametrize(
    ("ignore_deleted", "expected"), [(False, "cancelled"), (True, "available")]
)
async def test_a_deleted_dependency_counts_as_failed_unless_ignored(
    dsn: str, conn: Any, ignore_deleted: bool, expected: str
) -> None:
    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a", ignore_deleted=ignore_deleted)
    a, b = await wf.enqueue(client)
    await conn.execute("DELETE FROM oban_jobs WHERE id = %s", (a.id,))
    await workflows.release(client.pool, client.queries, [wf.workflow_id])
    assert (await row(conn, b.id))["state"] == expected
    await client.close()


async def test_elixirs_stager_pruner_and_lifeline_leave_held_jobs_alone(
    dsn: str, conn: Any
) -> None:
    """Elixir 2.23's statements (engines/basic.ex, INTEROP.md 2.3 and 2.16) select by state:
    scheduled/retryable to stage, executing to rescue, completed/cancelled/discarded to prune.
    Run as written there against a held job whose timestamps are all long past."""
    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    _, b = await wf.enqueue(client)
    past = "timezone('UTC', now()) - interval '30 days'"
    await conn.execute(
        f"UPDATE oban_jobs SET scheduled_at = {past}, attempted_at = {past}, inserted_at = {past}"
        " WHERE id = %s",
        (b.id,),
    )
    elixir = [
        # Stager (basic.ex stage_jobs)
        "UPDATE oban_jobs SET state = 'available' WHERE id IN (SELECT id FROM oban_jobs"
        " WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= timezone('UTC', now())"
        " ORDER BY scheduled_at DESC, id DESC LIMIT 5000)",
        # Lifeline (basic.ex rescue_jobs)
        "UPDATE oban_jobs SET state = CASE WHEN attempt >= max_attempts"
        " THEN 'discarded'::oban_job_state ELSE 'available'::oban_job_state END"
        " WHERE state = 'executing'"
        " AND attempted_at < timezone('UTC', now()) - interval '60 minutes'",
        # Pruner (basic.ex prune_jobs, max_age 60 s)
        "DELETE FROM oban_jobs WHERE id IN (SELECT id FROM oban_jobs WHERE queue IS NOT NULL AND ("
        " (state = 'completed' AND scheduled_at < timezone('UTC', now()) - interval '60 s') OR"
        " (state = 'cancelled' AND cancelled_at < timezone('UTC', now()) - interval '60 s') OR"
        " (state = 'discarded' AND discarded_at < timezone('UTC', now()) - interval '60 s'))"
        " LIMIT 10000)",
    ]
    for statement in elixir:
        await conn.execute(statement)
    assert (await row(conn, b.id))["state"] == "suspended"
    # Python's own stager and lifeline statements too.
    queries = client.queries
    await conn.execute(queries["stage_jobs"], {"limit": 100})
    assert (await row(conn, b.id))["state"] == "suspended"
    await client.close()


# -- random graphs --------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[list[int], str, str]]:
    """Nodes as (deps among earlier nodes, own outcome, policy)."""
    size = draw(st.integers(1, 40))
    nodes = []
    for i in range(size):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        outcome = draw(st.sampled_from(["ok"] * 6 + ["cancel", "discard"]))
        policy = draw(st.sampled_from(["cancel", "discard", "run"]))
        nodes.append((sorted(deps), outcome, policy))
    return nodes


def expected_states(nodes: list[tuple[list[int], str, str]]) -> list[str]:
    final: list[str] = []
    for deps, outcome, policy in nodes:
        failed = any(final[d] != "completed" for d in deps)
        if failed and policy != "run":
            final.append("discarded" if policy == "discard" else "cancelled")
        else:
            final.append(
                {"ok": "completed", "cancel": "cancelled", "discard": "discarded"}[outcome]
            )
    return final


async def _run_dag(dsn: str, nodes: list[tuple[list[int], str, str]]) -> None:
    STARTED.clear()
    async with Oban(dsn=dsn, queues={"wf": 10}, peer=False, node="wf-dag") as oban:
        wf = Workflow()
        for i, (deps, outcome, policy) in enumerate(nodes):
            wf.add(
                f"n{i}",
                rec(i, outcome=outcome),
                deps=[f"n{d}" for d in deps],
                on_failure=policy,  # type: ignore[arg-type]
            )
        await wf.enqueue(oban)
        status = await finished(oban, wf.workflow_id, timeout=60)
    final = states(status)
    assert [final[f"n{i}"] for i in range(len(nodes))] == expected_states(nodes)
    assert "suspended" not in status.counts
    for name, deps in STARTED:
        i = int(name[1:])
        policy = nodes[i][2]
        allowed = {"completed", "cancelled", "discarded"} if policy == "run" else {"completed"}
        assert set(deps.values()) <= allowed, (name, deps)


@settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=dags())
def test_random_dags_end_as_their_policies_say(
    dsn: str, nodes: list[tuple[list[int], str, str]]
) -> None:
    asyncio.run(asyncio.wait_for(_run_dag(dsn, nodes), 90))


def test_meta_keys_are_documented() -> None:
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "workflows.md").read_text()
    for key in workflows.META_KEYS:
        assert f"`{key}`" in page, key
    assert json.dumps(list(workflows.POLICIES))


def test_the_cli_shows_a_workflow_and_what_holds_its_jobs(dsn: str) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app

    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    wf.enqueue_sync(client)
    client.close_sync()
    runner = CliRunner()
    shown = runner.invoke(app, ["workflows", "show", wf.workflow_id, "--dsn", dsn])
    assert shown.exit_code == 0, shown.output
    assert f"workflow {wf.workflow_id}: 2 jobs (available 1, suspended 1)" in shown.output
    assert "held by a (available)" in shown.output
    as_json = runner.invoke(app, ["workflows", "show", wf.workflow_id, "--dsn", dsn, "--json"])
    data = json.loads(as_json.output)
    assert data["counts"] == {"available": 1, "suspended": 1}
    assert data["held"][0]["waiting_for"] == {"a": "available"}
    missing = runner.invoke(app, ["workflows", "show", "nope", "--dsn", dsn])
    assert missing.exit_code == 6
    cancelled = runner.invoke(app, ["workflows", "cancel", wf.workflow_id, "--dsn", dsn])
    assert "cancelled 2 jobs" in cancelled.output


async def test_plain_acks_wake_nothing_and_workflow_acks_wake_the_releaser(dsn: str) -> None:
    from datetime import UTC
    from datetime import datetime as dt

    from oban_py.node.acker import Acker
    from oban_py.node.outcomes import Ack

    client = Client(dsn=dsn)
    await client.open()
    plain = await client.enqueue(Rec.new({}))
    wf = Workflow().add("a", rec())
    (step,) = await wf.enqueue(client)
    woken: list[list[str]] = []
    acker = Acker(client.pool, client.queries)
    acker.on_followed = woken.append
    now = dt.now(UTC)
    acker.push(Ack(plain.id, now, "completed", now))
    await acker.flush()
    assert woken == []
    acker.push(Ack(step.id, now, "completed", now), wf.workflow_id)
    await acker.flush()
    assert woken == [[wf.workflow_id]]
    await client.close()


class Approve(Worker):
    """A step released by a message: records the payload it got."""

    name = "Py.Wf.Approve"

    async def process(self, job: Job) -> Any:
        STARTED.append((str(job.meta.get("name")), await _dep_states(job)))
        return Record(workflows.message(job))


async def test_a_message_sent_after_the_wait_is_reached_releases_the_step(
    oban: Oban, conn: Any
) -> None:
    wf = (
        Workflow()
        .add("a", rec())
        .add("approve", Approve.new({}, queue="wf"), deps="a", wait_for="ok")
    )
    a, approve = await wf.enqueue(oban)
    await wait_state(conn, a.id, "completed")
    status = await workflows.status(wf.workflow_id, oban=oban)
    assert [(h.name, h.waiting_for, h.message) for h in status.held] == [("approve", {}, "ok")]
    await asyncio.sleep(0.3)
    assert (await row(conn, approve.id))["state"] == "suspended"
    assert await workflows.send(wf.workflow_id, "other", 1, oban=oban) == 0
    assert await oban.send_message(wf.workflow_id, "ok", {"by": "ada"}) == 1
    done = await wait_state(conn, approve.id, "completed")
    assert workflows.work.decode_result(done["meta"]["return"]) == {"by": "ada"}


async def test_a_message_sent_before_the_wait_is_reached_is_kept(oban: Oban, conn: Any) -> None:
    GATES["a"] = asyncio.Event()
    wf = Workflow().add("a", rec(gate="a"))
    wf.add("approve", Approve.new({}, queue="wf"), deps="a", wait_for="ok")
    _, approve = await wf.enqueue(oban)
    assert await oban.send_message(wf.workflow_id, "ok", [1, 2]) == 1
    await asyncio.sleep(0.3)
    assert (await row(conn, approve.id))["state"] == "suspended"
    GATES["a"].set()
    done = await wait_state(conn, approve.id, "completed")
    assert workflows.work.decode_result(done["meta"]["return"]) == [1, 2]
    assert STARTED[-1] == ("approve", {"a": "completed"})


# -- Elixir steps, rescued nodes, poison rows --------------------------------------------------


def _elixir_recorded(index: int) -> tuple[str, Any]:
    data = json.loads((FIXTURES / "terms" / "terms.json").read_text())
    (term,) = [t for t in data["terms"] if t["index"] == index]
    return term["base64"], term["elixir_literal"]


async def test_an_elixir_step_is_held_released_by_python_and_its_result_read_downstream(
    oban: Oban, conn: Any
) -> None:
    """The Elixir worker's job goes in held, in a queue only Elixir serves; once its dependency
    completed a Python node releases it, Elixir runs it (here: its completion as Elixir writes
    it, a recorded result from the fixtures) and the Python fan-in reads that result."""
    recorded, literal = _elixir_recorded(49)
    wf = Workflow().add("py", rec(7))
    wf.add("ex", Job(worker="MyApp.Workers.Enrich", queue="elixir", args={}), deps="py")
    wf.add("sum", Approve.new({}, queue="wf"), deps=["ex"])
    _, ex, total = await wf.enqueue(oban)
    assert (await row(conn, ex.id))["state"] == "suspended"
    await wait_state(conn, ex.id, "available")
    # Elixir's executor: executing, then completed with the Pro-style recorded meta.
    await conn.execute(
        "UPDATE oban_jobs SET state = 'completed', attempt = 1,"
        " attempted_at = timezone('UTC', now()), completed_at = timezone('UTC', now()),"
        " meta = meta || jsonb_build_object('recorded', true, 'return', %s::text)"
        " WHERE id = %s",
        (recorded, ex.id),
    )
    # No Python ack woke anyone: the sweep (every second) releases the fan-in.
    got = await workflows.results(
        Job(worker="x", meta={"workflow_id": wf.workflow_id, "deps": ["ex", "py"]}), oban=oban
    )
    assert got["py"] == 7
    assert got["ex"] == terms.decode_recorded(recorded)
    assert got["ex"]["name"] == "x", literal
    await wait_state(conn, total.id, "completed")


async def test_a_workflow_finishes_after_the_lifeline_rescues_a_step_of_a_dead_node(
    oban: Oban, conn: Any
) -> None:
    """A node died running step a: the row stays executing until a lifeline rescues it (here
    Elixir's time-based rule), then any node runs it and the workflow goes on."""
    await oban.pause_queue("wf", local_only=True)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    a, b = await wf.enqueue(oban)
    await conn.execute(
        "UPDATE oban_jobs SET state = 'executing', attempt = 1, max_attempts = 3,"
        " attempted_by = ARRAY['dead-node', 'gone'],"
        " attempted_at = timezone('UTC', now()) - interval '2 hours' WHERE id = %s",
        (a.id,),
    )
    await oban.resume_queue("wf", local_only=True)
    await asyncio.sleep(0.3)
    assert (await row(conn, b.id))["state"] == "suspended"
    await conn.execute(
        "UPDATE oban_jobs SET state = CASE WHEN attempt >= max_attempts"
        " THEN 'discarded'::oban_job_state ELSE 'available'::oban_job_state END"
        " WHERE state = 'executing'"
        " AND attempted_at < timezone('UTC', now()) - interval '60 minutes'"
    )
    oban.producers["wf"].wake()
    status = await finished(oban, wf.workflow_id)
    assert states(status) == {"a": "completed", "b": "completed"}


async def test_poison_workflow_meta_never_stalls_other_workflows(oban: Oban, conn: Any) -> None:
    await oban.pause_queue("wf", local_only=True)
    bad = await oban.enqueue(
        Rec.new(
            {},
            queue="wf",
            meta={
                "workflow_id": "poison",
                "deps": "not-a-list",
                "ignore_cancelled": 5,
                "ignore_deleted": "yes",
                "delay": "soon",
                "on_failure": ["?"],
            },
        )
    )
    await conn.execute("UPDATE oban_jobs SET state = 'suspended' WHERE id = %s", (bad.id,))
    await oban.resume_queue("wf", local_only=True)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    await wf.enqueue(oban)
    assert states(await finished(oban, wf.workflow_id)) == {"a": "completed", "b": "completed"}
    # The poison row reads as having no dependencies, no delay: released and run.
    await wait_state(conn, bad.id, "completed")


async def test_retry_a_workflow_runs_its_failed_jobs_and_what_they_held(
    oban: Oban, conn: Any
) -> None:
    wf = Workflow().add("a", rec(outcome="discard")).add("b", rec(), deps="a")
    wf.add("c", rec(), deps="b").add("ok", rec())
    a, _, c, _ = await wf.enqueue(oban)
    status = await finished(oban, wf.workflow_id)
    assert states(status) == {
        "a": "discarded",
        "b": "cancelled",
        "c": "cancelled",
        "ok": "completed",
    }
    await conn.execute("UPDATE oban_jobs SET args = args - 'outcome' WHERE id = %s", (a.id,))
    assert await workflows.retry(wf.workflow_id, oban=oban) == 3
    status = await finished(oban, wf.workflow_id)
    assert states(status) == dict.fromkeys(("a", "b", "c", "ok"), "completed")
    assert (await row(conn, a.id))["attempt"] == 2
    assert (await row(conn, c.id))["attempt"] == 1
    assert [n for n, _ in STARTED].count("ok") == 1


@pytest.mark.parametrize(
    ("on_timeout", "expected"),
    [("cancel", "cancelled"), ("discard", "discarded"), ("run", "completed")],
)
async def test_a_message_that_never_comes_times_out_under_its_policy(
    oban: Oban, conn: Any, on_timeout: str, expected: str
) -> None:
    wf = Workflow().add("a", rec())
    wf.add(
        "approve",
        Approve.new({}, queue="wf"),
        deps="a",
        wait_for="ok",
        timeout=0.5,
        on_timeout=on_timeout,  # type: ignore[arg-type]
    )
    wf.add("after", rec(), deps="approve")
    _, approve, after = await wf.enqueue(oban)
    done = await wait_state(conn, approve.id, expected)
    assert done["meta"]["wait_until"] > 0
    assert (await wait_state(conn, after.id, "completed", "cancelled"))["state"] == (
        "completed" if expected == "completed" else "cancelled"
    )


async def test_retry_holds_a_timed_out_message_step_again_with_a_new_deadline(
    oban: Oban, conn: Any
) -> None:
    wf = Workflow().add("start", rec())
    wf.add("alone", Approve.new({}, queue="wf"), wait_for="go", timeout=60)
    wf.add("after", Approve.new({}, queue="wf"), deps="start", wait_for="go", timeout=60)
    _, alone, after = await wf.enqueue(oban)
    # Their deadline passed (without waiting a minute for it).
    await conn.execute(
        "UPDATE oban_jobs SET meta = meta || '{\"wait_until\": 1}' WHERE id = ANY(%s)",
        ([alone.id, after.id],),
    )
    status = await finished(oban, wf.workflow_id)
    assert states(status) == {"start": "completed", "alone": "cancelled", "after": "cancelled"}
    retried_at = time.time()
    assert await workflows.retry(wf.workflow_id, oban=oban) == 2
    for job in (alone, after):
        held = await row(conn, job.id)
        assert held["state"] == "suspended"  # waiting for its message, not run without it
        assert held["meta"]["wait_until"] >= retried_at + 59  # the timeout starts over
    await workflows.release(oban.pool, oban.queries, [wf.workflow_id])
    assert {(await row(conn, j.id))["state"] for j in (alone, after)} == {"suspended"}
    assert await workflows.send(wf.workflow_id, "go", "now", oban=oban) == 2
    for job in (alone, after):
        done = await wait_state(conn, job.id, "completed")
        assert workflows.work.decode_result(done["meta"]["return"]) == "now"


async def test_poison_numbers_in_meta_read_as_defaults(dsn: str, conn: Any) -> None:
    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec()).add("b", rec(), deps="a")
    a, b = await wf.enqueue(client)
    await conn.execute(
        'UPDATE oban_jobs SET meta = meta || \'{"delay": 1e400, "wait_message": "m",'
        ' "wait_until": -1e400}\'::jsonb WHERE id = %s',
        (b.id,),
    )
    await conn.execute("UPDATE oban_jobs SET state = 'completed' WHERE id = %s", (a.id,))
    moved = await workflows.release(client.pool, client.queries, [wf.workflow_id])
    assert moved.cancelled == [b.id]  # timed out long ago, waiting for a message
    await client.close()


async def test_status_reads_poison_rows_without_failing(dsn: str, conn: Any) -> None:
    client = Client(dsn=dsn)
    for meta in (
        {"workflow_id": "p", "deps": 5, "name": 7},
        {"workflow_id": "p", "deps": ["x", 1]},
    ):
        await conn.execute(
            "INSERT INTO oban_jobs (worker, state, meta) VALUES ('W', 'suspended', %s)",
            (json.dumps(meta),),
        )
    status = await workflows.status("p", oban=client)
    assert [j["deps"] for j in status.jobs] == [[], ["x"]]
    assert [j["name"] for j in status.jobs] == [None, None]
    await client.close()


async def test_drain_queue_runs_a_whole_workflow_with_recursion(dsn: str) -> None:
    from oban_py.testing import drain_queue

    client = Client(dsn=dsn)
    wf = Workflow().add("a", rec(1)).add("b", rec(2), deps="a")
    wf.add("sum", Sum.new({}, queue="wf"), deps=["a", "b"])
    wf.add("never", rec(), deps="a", wait_for="nothing")
    await wf.enqueue(client)
    counts = await drain_queue(client, "wf", with_recursion=True)
    assert counts["completed"] == 3
    status = await workflows.status(wf.workflow_id, oban=client)
    assert states(status) == {
        "a": "completed",
        "b": "completed",
        "sum": "completed",
        "never": "suspended",
    }
    assert [n for n, _ in STARTED] == ["a", "b", "sum"]
    await client.close()


class SyncSum(Worker):
    """A plain ``def process`` fan-in: reads its dependencies' results from its thread."""

    name = "Py.Wf.SyncSum"

    def process(self, job: Job) -> Any:
        return Record(sorted(workflows.results_sync(job).items()))


async def test_a_sync_step_reads_results_from_its_thread(oban: Oban, conn: Any) -> None:
    wf = Workflow().add("a", rec("x")).add("b", rec(None))
    wf.add("c", SyncSum.new({}, queue="wf"), deps=["a", "b"])
    *_, c = await wf.enqueue(oban)
    done = await wait_state(conn, c.id, "completed")
    assert workflows.work.decode_result(done["meta"]["return"]) == [("a", "x"), ("b", None)]
