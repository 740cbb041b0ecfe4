"""Inserts return only the columns the server chose; the returned ``Job`` is the stored row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from oban_py.client.core import Client
from oban_py.job.model import Job


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="Oban") as opened:
        yield opened


async def stored(conn: psycopg.AsyncConnection[Any], job_id: int | None) -> Job:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM oban_jobs WHERE id = %s", [job_id])
    row = await cur.fetchone()
    assert row is not None
    return Job.from_row(row)


def varied_jobs() -> list[Job]:
    later = datetime.now(UTC) + timedelta(hours=1)
    return [
        Job(worker="W.Plain", args={"n": 1, "s": "x", "f": 1.5, "b": True, "z": None}),
        Job(worker="W.Nested", queue="q2", args={"a": [1, {"b": [2]}]}, meta={"m": {"k": 1}}),
        Job(worker="W.Later", scheduled_at=later, tags=["B", "a"], priority=3, max_attempts=4),
        Job(worker="W.Plain", args={}, meta={"tag": "v"}),
    ]


async def test_single_enqueue_returns_exactly_the_stored_row(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    for job in varied_jobs():
        inserted = await client.enqueue(job)
        assert inserted.model_dump() == (await stored(conn, inserted.id)).model_dump()


async def test_enqueue_many_returns_exactly_the_stored_rows_in_input_order(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    jobs = varied_jobs()
    inserted = await client.enqueue_many(jobs)
    assert [j.worker for j in inserted] == [j.worker for j in jobs]
    for job in inserted:
        assert job.model_dump() == (await stored(conn, job.id)).model_dump()


async def test_a_batch_whose_rows_got_their_own_insert_times_returns_each_one(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    # A batch comes back as ids and the one insert time its rows share; a changed column
    # default that gives every row its own time must not hand all jobs the first one.
    await conn.execute(
        "ALTER TABLE oban_jobs ALTER COLUMN inserted_at"
        " SET DEFAULT timezone('UTC', clock_timestamp())"
    )
    jobs = varied_jobs() * 3
    inserted = await client.enqueue_many(jobs)
    assert len({job.inserted_at for job in inserted}) == len(jobs)
    for job in inserted:
        assert job.model_dump() == (await stored(conn, job.id)).model_dump()


async def test_returned_job_shares_no_mutable_value_with_the_callers_job(client: Client) -> None:
    job = Job(worker="W.Nested", args={"a": [1]}, meta={"m": 1}, tags=["t"])
    inserted = await client.enqueue(job)
    inserted.args["a"].append(2)
    inserted.meta["m"] = 2
    inserted.tags.append("u")
    assert job.args == {"a": [1]}
    assert job.meta == {"m": 1}
    assert job.tags == ["t"]


async def test_reinserting_a_run_job_stores_and_returns_column_defaults(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    ran = Job(
        worker="W.Again",
        attempt=3,
        errors=[{"at": "x", "attempt": 1, "error": "boom"}],
        attempted_at=datetime.now(UTC),
        attempted_by=["node", "uuid"],
    )
    inserted = await client.enqueue(ran)
    again = await stored(conn, inserted.id)
    assert inserted.model_dump() == again.model_dump()
    assert (inserted.attempt, inserted.errors, inserted.attempted_by) == (0, [], None)
