"""Rescue of orphaned jobs: Elixir's outcome, only for jobs Python nodes own, never a live one."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from oban_py.cluster.lifeline import Lifeline
from oban_py.config import LifelineConfig
from oban_py.node.instance import Oban
from tests.cluster_helpers import eventually, insert_job, node, states
from tests.conftest import FIXTURES

RESCUE = LifelineConfig(rescue_after=60, heartbeat_ttl=30)


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "jobs" / name).read_text()))


async def executing(
    conn: psycopg.AsyncConnection[Any],
    *,
    queue: str,
    by: tuple[str, str],
    started_ago: float,
    attempt: int = 1,
    max_attempts: int = 20,
) -> int:
    job = await insert_job(conn, queue=queue, state="executing", attempt=attempt)
    await conn.execute(
        "UPDATE oban_jobs SET max_attempts = %s, attempted_by = %s,"
        " attempted_at = timezone('UTC', now()) - make_interval(secs => %s) WHERE id = %s",
        (max_attempts, list(by), started_ago, job),
    )
    return job


async def beat(
    conn: psycopg.AsyncConnection[Any], producer: str, node: str, queue: str, ago: float
) -> None:
    await conn.execute(
        "INSERT INTO oban_py_heartbeats (uuid, node, queue, name, started_at, updated_at)"
        " VALUES (%s, %s, %s, 'Oban', timezone('UTC', now()) - interval '1 hour',"
        " timezone('UTC', now()) - make_interval(secs => %s))",
        (producer, node, queue, ago),
    )


async def row(conn: psycopg.AsyncConnection[Any], job: int) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM oban_jobs WHERE id = %s", (job,))
        found = await cur.fetchone()
    assert found is not None
    return found


async def test_time_based_rescue_writes_what_elixirs_lifeline_writes(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    orphan = fixture("orphaned_executing.json")
    rescued, discarded = fixture("rescued.json"), fixture("rescue_discarded.json")
    node_name, dead = orphan["attempted_by"]
    await beat(conn, dead, node_name, "orphan", ago=0)  # a Python producer runs "orphan" ...
    live = str(uuid.uuid4())
    await conn.execute("UPDATE oban_py_heartbeats SET uuid = %s", (live,))  # ... another one
    retry = await executing(conn, queue="orphan", by=(node_name, dead), started_ago=120)
    out = await executing(
        conn, queue="orphan", by=(node_name, dead), started_ago=120, max_attempts=1
    )
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = True
        assert (await Lifeline(py).run_once())["stuck"] == 2
    got = await row(conn, retry)
    assert (got["state"], got["attempt"], got["errors"], got["meta"]) == (
        rescued["state"],
        rescued["attempt"],
        rescued["errors"],
        rescued["meta"],
    )
    assert got["attempted_by"] == [node_name, dead]
    assert got["discarded_at"] is None
    got = await row(conn, out)
    assert (got["state"], got["errors"]) == (discarded["state"], discarded["errors"])
    assert got["discarded_at"] is not None


async def test_time_based_rescue_never_touches_a_queue_no_python_producer_runs(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await beat(conn, str(uuid.uuid4()), "py-1", "python", ago=0)
    elixir_job = await executing(
        conn, queue="elixir", by=("elixir-node-1", str(uuid.uuid4())), started_ago=7200
    )
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = True
        await Lifeline(py).run_once()
    assert await states(conn) == {elixir_job: "executing"}


async def test_a_long_job_on_a_live_producer_is_never_rescued(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    producer = str(uuid.uuid4())
    await beat(conn, producer, "py-1", "python", ago=1)
    long_job = await executing(conn, queue="python", by=("py-1", producer), started_ago=86_400)
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = True
        assert await Lifeline(py).run_once() == {"dead_producer": 0, "stuck": 0, "purged": 0}
    assert await states(conn) == {long_job: "executing"}


async def test_fast_rescue_takes_back_the_jobs_of_a_dead_producer_at_once(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    dead, live = str(uuid.uuid4()), str(uuid.uuid4())
    await beat(conn, dead, "py-dead", "python", ago=31)
    await beat(conn, live, "py-live", "python", ago=1)
    orphan = await executing(conn, queue="python", by=("py-dead", dead), started_ago=2)
    last_try = await executing(
        conn, queue="python", by=("py-dead", dead), started_ago=2, attempt=3, max_attempts=3
    )
    running = await executing(conn, queue="python", by=("py-live", live), started_ago=2)
    unknown = await executing(
        conn, queue="python", by=("elixir-1", str(uuid.uuid4())), started_ago=2
    )
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = True
        assert (await Lifeline(py).run_once())["dead_producer"] == 2
    assert await states(conn) == {
        orphan: "available",
        last_try: "discarded",
        running: "executing",
        unknown: "executing",
    }
    assert (await row(conn, orphan))["attempt"] == 1


async def test_only_the_leader_rescues(dsn: str, conn: psycopg.AsyncConnection[Any]) -> None:
    dead = str(uuid.uuid4())
    await beat(conn, dead, "py-dead", "python", ago=300)
    job = await executing(conn, queue="python", by=("py-dead", dead), started_ago=7200)
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = False
        assert await Lifeline(py).run_once() == {}
    assert await states(conn) == {job: "executing"}


async def test_heartbeat_records_every_local_producer_and_releases_them_on_stop(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    py = Oban(dsn=dsn, node="py-1", queues={"idle": 1, "busy": 1}, peer=False, lifeline=RESCUE)
    await py.start()
    idle, busy = py.producers["idle"], py.producers["busy"]
    # A row executing under the busy producer's uuid whose outcome never arrives.
    left_behind = await executing(conn, queue="busy", by=("py-1", busy.uuid), started_ago=1)

    async def rows() -> list[tuple[str, str, str, str]]:
        cur = await conn.execute("SELECT uuid::text, node, queue, name FROM oban_py_heartbeats")
        return sorted(await cur.fetchall())

    async def both_beating() -> bool:
        return len(await rows()) == 2

    await eventually(both_beating)
    assert await rows() == sorted(
        [(idle.uuid, "py-1", "idle", "Oban"), (busy.uuid, "py-1", "busy", "Oban")]
    )
    await py.stop()
    cur = await conn.execute("SELECT uuid::text FROM oban_py_heartbeats")
    assert await cur.fetchall() == [(busy.uuid,)]
    # The job the stopped producer left executing is rescued on the next pass.
    async with node(dsn, notifier=False, lifeline=RESCUE) as leader:
        leader.leader = True
        assert (await Lifeline(leader).run_once())["dead_producer"] == 1
    assert await states(conn) == {left_behind: "available"}


async def test_dead_rows_are_kept_while_a_job_names_them_and_purged_after_retention(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    referenced, forgotten = str(uuid.uuid4()), str(uuid.uuid4())
    await beat(conn, referenced, "py-1", "python", ago=100)
    await beat(conn, forgotten, "py-2", "python", ago=100)
    await executing(conn, queue="python", by=("py-1", referenced), started_ago=1)
    settings = LifelineConfig(heartbeat_ttl=1000, rescue_after=1000, heartbeat_retention=50)
    async with node(dsn, notifier=False, lifeline=settings) as py:
        py.leader = True
        assert (await Lifeline(py).run_once())["purged"] == 1
    cur = await conn.execute("SELECT uuid::text FROM oban_py_heartbeats")
    assert await cur.fetchall() == [(referenced,)]


class Beating:
    """A node's liveness as the lifeline sees it: how long its own beats have gone unbroken."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def unbroken_for(self) -> float:
        return self.seconds


async def test_a_leader_back_from_an_outage_waits_a_ttl_of_its_own_beats_before_rescuing(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Every node's beat is stale after an outage they all shared; the leader, back first,
    # must give the others a ttl to beat again before it calls any of them dead.
    dead = str(uuid.uuid4())
    await beat(conn, dead, "py-2", "python", ago=100)
    job = await executing(conn, queue="python", by=("py-2", dead), started_ago=1)
    async with node(dsn, notifier=False, lifeline=RESCUE) as py:
        py.leader = True
        py.liveness = Beating(RESCUE.heartbeat_ttl - 1)
        assert (await Lifeline(py).run_once())["dead_producer"] == 0
        assert await states(conn) == {job: "executing"}
        py.liveness = Beating(RESCUE.heartbeat_ttl)
        assert (await Lifeline(py).run_once())["dead_producer"] == 1
    assert await states(conn) == {job: "available"}
