"""Staging of due jobs and the insert announcements of Elixir's leader."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from oban_py import Oban
from oban_py.cluster.sonar import Sonar
from oban_py.cluster.stager import Stager
from tests.cluster_helpers import Producer, Recorder, eventually, insert_job, node, states
from tests.conftest import FIXTURES


async def test_leader_stages_only_due_jobs_of_every_queue(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    due_scheduled = await insert_job(conn, queue="alpha", state="scheduled", scheduled_in=-1)
    due_retryable = await insert_job(conn, queue="beta", state="retryable", scheduled_in=-1)
    later = await insert_job(conn, queue="alpha", state="scheduled", scheduled_in=3600)
    later_retry = await insert_job(conn, queue="beta", state="retryable", scheduled_in=3600)
    done = await insert_job(conn, queue="gamma", state="completed", scheduled_in=-1)
    async with node(dsn, node="py-1") as py:
        py.leader = True
        assert await Stager(py).run_once() == 2
    assert await states(conn) == {
        due_scheduled: "available",
        due_retryable: "available",
        later: "scheduled",
        later_retry: "retryable",
        done: "completed",
    }


async def test_leader_announces_each_queue_with_available_jobs_as_elixir_does(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await insert_job(conn, queue="exec", state="scheduled", scheduled_in=-1)
    await insert_job(conn, queue="alpha")
    await insert_job(conn, queue="alpha")
    await insert_job(conn, queue="later", state="scheduled", scheduled_in=3600)
    async with Recorder(dsn) as recorder, node(dsn, node="py-1") as py:
        py.leader = True
        await Stager(py).run_once()
        await eventually(lambda: len(recorder.on("insert")) == 2)
    # One message per queue, sorted like Elixir's SELECT DISTINCT, in the fixture's shape.
    assert recorder.on("insert") == [{"queue": "alpha"}, {"queue": "exec"}]
    fixture = json.loads((FIXTURES / "notifications" / "execution.json").read_text())
    elixir = [n["decoded"] for n in fixture["notifications"] if n["channel"].endswith("_insert")]
    assert all(set(m) == {"queue"} for m in elixir)
    assert {"queue": "alpha"} in elixir


async def test_staging_is_bounded_newest_due_first(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    oldest = await insert_job(conn, state="scheduled", scheduled_in=-30)
    middle = await insert_job(conn, state="scheduled", scheduled_in=-20)
    newest = await insert_job(conn, state="scheduled", scheduled_in=-10)
    async with node(dsn, node="py-1", stage_limit=2, notifier=False) as py:
        py.leader = True
        stager = Stager(py)
        stager.mode = "global"
        assert await stager.stage_global() == 2
        assert await states(conn) == {oldest: "scheduled", middle: "available", newest: "available"}
        assert await stager.stage_global() == 1


async def test_follower_stages_nothing_and_only_pokes_local_producers(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    job = await insert_job(conn, queue="alpha", state="scheduled", scheduled_in=-1)
    async with Recorder(dsn) as recorder, node(dsn, node="py-2") as py:
        py.leader = False
        producer = Producer("alpha")
        py.producers = {"alpha": producer}
        assert await Stager(py).run_once() == 0
        assert producer.wakes == 1
    assert await states(conn) == {job: "scheduled"}
    assert recorder.on("insert") == []


async def test_isolated_node_stages_its_own_queues_and_pokes_its_producers(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    mine = await insert_job(conn, queue="mine", state="scheduled", scheduled_in=-1)
    theirs = await insert_job(conn, queue="elixir", state="scheduled", scheduled_in=-1)
    async with node(dsn, node="py-3") as py:
        producer = Producer("mine")
        py.producers = {"mine": producer}
        sonar = Sonar(py)
        sonar.update_status()  # no ping ever heard: isolated
        assert sonar.status == "isolated"
        stager = Stager(py, sonar=sonar)
        assert await stager.run_once() == 1
        assert stager.mode == "local"
        assert producer.wakes >= 1
    assert await states(conn) == {mine: "available", theirs: "scheduled"}


async def test_without_a_notifier_every_node_stages_locally(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    mine = await insert_job(conn, queue="mine", state="retryable", scheduled_in=-1)
    async with node(dsn, node="py-4", notifier=False) as py:
        py.producers = {"mine": Producer("mine")}
        stager = Stager(py)
        await stager.run_once()
        assert stager.mode == "local"
    assert await states(conn) == {mine: "available"}


async def test_a_node_that_never_leads_stages_its_own_queues_from_its_first_seconds(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # peer=False, alone: solitary and not leading, so it stages locally every stage_interval,
    # not only once the sonar's status is known after its first interval (15 s).
    job = await insert_job(conn, queue="q", state="scheduled", scheduled_in=-1)
    async with Oban(dsn=dsn, peer=False, node="py-alone", queues={"q": 1}, web=False):

        async def staged() -> bool:
            return (await states(conn))[job] != "scheduled"

        await eventually(staged, within=4)
