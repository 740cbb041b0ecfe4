"""Pruning of finished jobs older than max_age, with Elixir's rule."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from oban_py.cluster.pruner import Pruner
from oban_py.config import PrunerConfig
from tests.cluster_helpers import insert_job, node, states


async def age(conn: psycopg.AsyncConnection[Any], job_id: int, column: str, secs: float) -> None:
    stmt = sql.SQL(
        "UPDATE oban_jobs SET {} = timezone('UTC', now()) - make_interval(secs => %s) WHERE id = %s"
    ).format(sql.Identifier(column))
    await conn.execute(stmt, (secs, job_id))


async def test_deletes_only_finished_jobs_older_than_max_age(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await insert_job(conn, state="completed", scheduled_in=-120)
    new_done = await insert_job(conn, state="completed", scheduled_in=-10)
    old_cancel = await insert_job(conn, state="cancelled")
    await age(conn, old_cancel, "cancelled_at", 120)
    new_cancel = await insert_job(conn, state="cancelled")
    await age(conn, new_cancel, "cancelled_at", 10)
    old_discard = await insert_job(conn, state="discarded")
    await age(conn, old_discard, "discarded_at", 120)
    old_available = await insert_job(conn, state="available", scheduled_in=-120)
    old_retryable = await insert_job(conn, state="retryable", scheduled_in=-120)
    async with node(dsn, notifier=False, pruner=PrunerConfig(max_age=60)) as py:
        py.leader = True
        assert await Pruner(py).run_once() == 3
    assert await states(conn) == {
        new_done: "completed",
        new_cancel: "cancelled",
        old_available: "available",
        old_retryable: "retryable",
    }


async def test_completed_jobs_age_by_scheduled_at_as_in_elixir(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Scheduled long ago, completed just now: Elixir prunes it, and so do we.
    job = await insert_job(conn, state="completed", scheduled_in=-120)
    await age(conn, job, "completed_at", 0)
    async with node(dsn, notifier=False, pruner=PrunerConfig(max_age=60)) as py:
        py.leader = True
        assert await Pruner(py).run_once() == 1


async def test_deletes_at_most_limit_rows_a_pass(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    for _ in range(5):
        await insert_job(conn, state="completed", scheduled_in=-120)
    async with node(dsn, notifier=False, pruner=PrunerConfig(max_age=60, limit=2)) as py:
        py.leader = True
        pruner = Pruner(py)
        assert [await pruner.run_once() for _ in range(4)] == [2, 2, 1, 0]


async def test_only_the_leader_prunes(dsn: str, conn: psycopg.AsyncConnection[Any]) -> None:
    job = await insert_job(conn, state="completed", scheduled_in=-120)
    async with node(dsn, notifier=False, pruner=PrunerConfig(max_age=60)) as py:
        py.leader = False
        assert await Pruner(py).run_once() == 0
    assert await states(conn) == {job: "completed"}
