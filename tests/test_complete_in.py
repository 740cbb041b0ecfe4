"""``complete_in``: a worker completes its job in the transaction that holds its effect, so
both commit together or neither does, and the node's later ack of that attempt is a no-op."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from nodekit import assert_like_fixture, insert, row, wait_for, wait_state

from oban_py import Job, JobNotExecuting, Oban, Worker, complete_in, complete_in_sync
from oban_py.testing import perform_job


async def effects(conn: psycopg.AsyncConnection[Any], job_id: int) -> int:
    cur = await conn.execute("SELECT count(*) FROM effects WHERE job_id = %s", (job_id,))
    found = await cur.fetchone()
    assert found is not None
    return int(found[0])


class CompleteAsync(Worker):
    name = "Py.CompleteIn.Async"

    async def process(self, job: Job) -> None:
        mode = job.args["mode"]
        if mode == "cancelled_first":
            async with await psycopg.AsyncConnection.connect(job.args["dsn"]) as other:
                await other.execute(
                    "UPDATE oban_jobs SET state = 'cancelled' WHERE id = %s", (job.id,)
                )
        async with await psycopg.AsyncConnection.connect(job.args["dsn"]) as conn:
            if mode == "autocommit":
                await conn.set_autocommit(True)
                await complete_in(job, conn)
            async with conn.transaction():
                await conn.execute("INSERT INTO effects (job_id) VALUES (%s)", (job.id,))
                await complete_in(job, conn)
                if mode == "rollback":
                    raise RuntimeError("the effect failed after complete_in")
        if mode == "raise_after_commit":
            raise RuntimeError("raised after the commit")


class CompleteSync(Worker):
    name = "Py.CompleteIn.Sync"

    def process(self, job: Job) -> None:
        with psycopg.connect(job.args["dsn"]) as conn:
            conn.execute("INSERT INTO effects (job_id) VALUES (%s)", (job.id,))
            complete_in_sync(job, conn)
            # psycopg commits on leaving the block


async def settled(node: Oban) -> None:
    """Until the node's attempts ended and their acks were written."""
    await wait_for(lambda: not any(p.running for p in node.producers.values()))
    assert node.acker is not None
    await node.acker.flush()


@pytest.fixture
async def node(dsn: str, conn: psycopg.AsyncConnection[Any]) -> Any:
    await conn.execute("CREATE TABLE effects (job_id bigint NOT NULL)")
    async with Oban(dsn=dsn, queues={"default": 2}, peer=False, name="CompleteIn") as oban:
        yield oban


@pytest.mark.parametrize("worker", [CompleteAsync, CompleteSync])
async def test_the_effect_and_the_completion_commit_together_as_elixirs_completed_row(
    dsn: str, conn: psycopg.AsyncConnection[Any], node: Oban, worker: type[Worker]
) -> None:
    job_id = await insert(conn, worker.__oban_name__, {"mode": "commit", "dsn": dsn})
    found = await wait_state(conn, job_id, "completed", "retryable", "discarded")
    assert_like_fixture(found, "completed.json")
    assert found["attempt"] == 1
    assert found["completed_at"] >= found["attempted_at"]
    assert await effects(conn, job_id) == 1


async def test_the_later_ack_is_a_no_op_even_when_the_worker_raises_after_the_commit(
    dsn: str, conn: psycopg.AsyncConnection[Any], node: Oban
) -> None:
    job_id = await insert(conn, "Py.CompleteIn.Async", {"mode": "raise_after_commit", "dsn": dsn})
    await wait_state(conn, job_id, "completed", "retryable")
    # The node's ack of this attempt (a failure) is written; its guard must not match.
    await settled(node)
    found = await row(conn, job_id)
    assert found["state"] == "completed"
    assert found["errors"] == []
    assert await effects(conn, job_id) == 1


async def test_a_rolled_back_transaction_takes_the_completion_with_it(
    dsn: str, conn: psycopg.AsyncConnection[Any], node: Oban
) -> None:
    job_id = await insert(conn, "Py.CompleteIn.Async", {"mode": "rollback", "dsn": dsn})
    found = await wait_state(conn, job_id, "retryable", "completed")
    assert found["state"] == "retryable"
    assert "the effect failed after complete_in" in found["errors"][0]["error"]
    assert await effects(conn, job_id) == 0


async def test_a_job_cancelled_meanwhile_is_not_completed_and_the_effect_rolls_back(
    dsn: str, conn: psycopg.AsyncConnection[Any], node: Oban
) -> None:
    job_id = await insert(conn, "Py.CompleteIn.Async", {"mode": "cancelled_first", "dsn": dsn})
    await wait_state(conn, job_id, "cancelled")
    await settled(node)
    found = await row(conn, job_id)
    assert found["state"] == "cancelled"
    assert found["completed_at"] is None
    assert await effects(conn, job_id) == 0


async def test_complete_in_outside_a_transaction_is_refused(
    dsn: str, conn: psycopg.AsyncConnection[Any], node: Oban
) -> None:
    job_id = await insert(conn, "Py.CompleteIn.Async", {"mode": "autocommit", "dsn": dsn})
    found = await wait_state(conn, job_id, "retryable", "completed")
    assert "inside the transaction" in found["errors"][0]["error"]
    assert await effects(conn, job_id) == 0


async def test_a_stored_job_never_attempted_cannot_be_completed(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    job_id = await insert(conn, "Py.Never")
    stored = Job.from_row(await row(conn, job_id))
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        with pytest.raises(JobNotExecuting):
            await complete_in(stored, other, prefix="public")
    with psycopg.connect(dsn) as sync_conn, pytest.raises(TypeError):
        await complete_in(stored, sync_conn)  # type: ignore[arg-type]


async def test_perform_job_runs_a_complete_in_worker_without_a_row_to_complete(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await conn.execute("CREATE TABLE effects (job_id bigint)")
    outcome = await perform_job(CompleteAsync, {"mode": "commit", "dsn": dsn})
    assert outcome.state == "completed"
    cur = await conn.execute("SELECT count(*) FROM effects")
    assert await cur.fetchone() == (1,)
