"""The runtime's fast paths write exactly what the plain paths would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from oban_py import Client, Job
from oban_py.node.acker import Acker
from oban_py.node.outcomes import Ack
from oban_py.sql import Queries

ODD = {"quote": 'a"b', "slash": "c\\d", "braces": "{},NULL", "text": "é☃\n\t", "none": None}


async def test_bulk_insert_keeps_quotes_backslashes_and_null_like_text(dsn: str) -> None:
    async with Client(dsn=dsn, name="fast.bulk") as client:
        jobs = [
            Job(worker='W"x', queue="q,1", args=ODD, meta=ODD, tags=['t"1', "a,b"]),
            Job(worker="W", args={}, scheduled_at=datetime(2030, 1, 1, tzinfo=UTC)),
        ]
        inserted = await client.enqueue_many(jobs)
        back = [await client.get_job(job.id) for job in inserted]  # type: ignore[arg-type]
    assert [b.args for b in back if b] == [ODD, {}]
    assert back[0] is not None
    assert back[0].meta == ODD
    assert back[0].tags == ["a,b", 't"1']
    assert back[0].worker == 'W"x'
    assert back[0].queue == "q,1"
    assert back[1] is not None
    assert back[1].state == "scheduled"
    assert back[1].scheduled_at == datetime(2030, 1, 1, tzinfo=UTC)


async def test_single_enqueue_matches_bulk_columns(dsn: str) -> None:
    async with Client(dsn=dsn, name="fast.single") as client:
        one = await client.enqueue(Job(worker="W", args=ODD, tags=["b", "a"], priority=3))
        two = (
            await client.enqueue_many([Job(worker="W", args=ODD, tags=["b", "a"], priority=3)] * 2)
        )[0]
    keep = ("state", "queue", "worker", "args", "meta", "tags", "priority", "max_attempts")
    assert {k: getattr(one, k) for k in keep} == {k: getattr(two, k) for k in keep}


def test_from_row_builds_the_same_job_as_model_construct() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, 123456)
    row: dict[str, Any] = {
        "id": 7,
        "state": "executing",
        "queue": "q",
        "worker": "W",
        "args": {"a": 1},
        "errors": None,
        "attempt": 1,
        "max_attempts": 20,
        "inserted_at": now,
        "scheduled_at": now,
        "attempted_at": now,
        "completed_at": None,
        "attempted_by": ["n", "u"],
        "discarded_at": None,
        "priority": 0,
        "tags": None,
        "meta": None,
        "cancelled_at": None,
    }
    job = Job.from_row(row)
    assert job.attempted_at == now.replace(tzinfo=UTC)
    assert job.errors == []
    assert job.tags == []
    assert job.meta == {}
    assert job.model_fields_set == set(row)
    assert not job.cancelled()
    assert job.unique is None
    assert job.conflict is False
    assert Job.from_row({"id": 1, "worker": "W"}).state == "available"


def test_from_row_reads_each_rows_own_times_when_consecutive_rows_share_some() -> None:
    first = datetime(2024, 5, 1, 12, 0, 0, 1)
    later = first + timedelta(seconds=1)
    times = [
        (first, first),
        (first, later),
        (later, later),
        (first, first),
        (later, first),
    ]
    jobs = [
        Job.from_row({"id": n, "worker": "W", "inserted_at": ins, "attempted_at": att})
        for n, (ins, att) in enumerate(times)
    ]
    assert [(j.inserted_at, j.attempted_at) for j in jobs] == [
        (ins.replace(tzinfo=UTC), att.replace(tzinfo=UTC)) for ins, att in times
    ]
    assert all(j.inserted_at.tzinfo is UTC and j.attempted_at.tzinfo is UTC for j in jobs)  # type: ignore[union-attr]


async def test_one_ack_batch_mixes_plain_and_rare_columns(dsn: str, conn: Any) -> None:
    async with Client(dsn=dsn, name="fast.ack") as client:
        jobs = await client.enqueue_many([Job(worker="W") for _ in range(3)])
    ids = [j.id for j in jobs]
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "UPDATE oban_jobs SET state = 'executing', attempt = 1, "
        "attempted_at = timezone('UTC', now()) WHERE id = ANY(%s) RETURNING id, attempted_at",
        (ids,),
    )
    attempted = {r["id"]: r["attempted_at"].replace(tzinfo=UTC) for r in await cur.fetchall()}
    now = datetime.now(UTC)
    server_now = "SELECT timezone('UTC', clock_timestamp())"
    before = (await (await cur.execute(server_now)).fetchone())["timezone"]
    async with Client(dsn=dsn, name="fast.ackpool") as owner:
        await owner.open()
        acker = Acker(owner.pool, Queries("public"))
        acker.push(Ack(ids[0], attempted[ids[0]], "completed", now))
        acker.push(
            Ack(ids[1], attempted[ids[1]], "scheduled", now, scheduled_in=30, extra_attempts=1)
        )
        # A stale attempt: the guard must leave this row alone.
        acker.push(Ack(ids[2], attempted[ids[2]] - timedelta(seconds=1), "completed", now))
        await acker.flush()
    after = (await (await cur.execute(server_now)).fetchone())["timezone"]
    await cur.execute("SELECT * FROM oban_jobs WHERE id = ANY(%s) ORDER BY id", (ids,))
    rows = await cur.fetchall()
    assert [r["state"] for r in rows] == ["completed", "scheduled", "executing"]
    assert rows[0]["completed_at"] == now.replace(tzinfo=None)
    assert rows[1]["max_attempts"] == 21
    assert rows[1]["attempt"] == 1
    # 30 s from the server's now, whatever this process's clock says.
    assert before + timedelta(seconds=30) <= rows[1]["scheduled_at"]
    assert rows[1]["scheduled_at"] <= after + timedelta(seconds=30)
    assert rows[0]["max_attempts"] == 20
    assert rows[0]["errors"] == []
