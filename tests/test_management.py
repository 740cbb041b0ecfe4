"""Job management with Elixir's rules: cancel (with pkill), retry, delete, update, get."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from oban_py.client.core import Client
from oban_py.job.model import Job
from tests.conftest import FIXTURES

STATES = ("available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled")


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="Oban") as c:
        yield c


async def one_per_state(client: Client, conn: Any) -> dict[str, int]:
    ids: dict[str, int] = {}
    for state in STATES:
        job = await client.enqueue(Job(worker="W", queue="m", args={"s": state}))
        assert job.id is not None
        attempt = 0 if state in ("available", "scheduled") else 1
        await conn.execute(
            "UPDATE oban_jobs SET state = %s, attempt = %s WHERE id = %s",
            [state, attempt, job.id],
        )
        ids[state] = job.id
    return ids


async def state_of(client: Client, job_id: int) -> str | None:
    job = await client.get_job(job_id)
    return None if job is None else job.state


async def test_cancel_applies_to_every_state_but_final_ones_including_executing(
    client: Client, conn: Any
) -> None:
    ids = await one_per_state(client, conn)
    assert await client.cancel_jobs(list(ids.values())) == 4
    for state, job_id in ids.items():
        job = await client.get_job(job_id)
        assert job is not None
        if state in ("completed", "discarded", "cancelled"):
            assert job.state == state
            assert job.cancelled_at is None
        else:
            assert job.state == "cancelled"
            assert job.cancelled_at is not None
            assert job.errors == []


async def test_cancelling_an_executing_job_publishes_elixirs_pkill(
    client: Client, conn: Any, dsn: str
) -> None:
    ids = await one_per_state(client, conn)
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute('LISTEN "public.oban_signal"')
    assert await client.cancel_job(ids["executing"])
    assert await client.cancel_job(ids["scheduled"])
    payloads = [n.payload async for n in listener.notifies(timeout=0.3)]
    await listener.close()
    elixir = json.loads((FIXTURES / "notifications" / "signals.json").read_text())
    pkill = next(n["payload"] for n in elixir["notifications"] if "pkill" in n["payload"])
    assert payloads == [pkill.replace("18", str(ids["executing"]))]
    assert payloads == [f'{{"action":"pkill","job_id":{ids["executing"]}}}']


async def test_cancelled_scheduled_job_looks_like_elixirs(client: Client, conn: Any) -> None:
    job = await client.enqueue(Job(worker="W", schedule_in=3600))
    assert await client.cancel_job(job.id or 0)
    cur = await conn.execute("SELECT row_to_json(j) FROM oban_jobs j WHERE id = %s", [job.id])
    row = (await cur.fetchone())[0]
    expected = json.loads((FIXTURES / "jobs" / "cancelled_scheduled.json").read_text())
    assert {k for k, v in row.items() if v is None} == {k for k, v in expected.items() if v is None}
    assert (row["state"], row["errors"], row["attempt"]) == ("cancelled", [], 0)


async def test_cancel_joins_the_callers_transaction(client: Client, dsn: str) -> None:
    job = await client.enqueue(Job(worker="W"))
    async with await psycopg.AsyncConnection.connect(dsn) as tx:
        assert await client.cancel_job(job.id or 0, conn=tx)
        await tx.rollback()
    assert await state_of(client, job.id or 0) == "available"


async def test_retry_makes_jobs_available_with_one_more_attempt(client: Client, conn: Any) -> None:
    ids = await one_per_state(client, conn)
    await conn.execute(
        "UPDATE oban_jobs SET max_attempts = 1, completed_at = now(), discarded_at = now(), "
        "cancelled_at = now() WHERE id = ANY(%s)",
        [[ids["completed"], ids["discarded"], ids["cancelled"]]],
    )
    assert await client.retry_jobs(list(ids.values())) == 5
    assert await state_of(client, ids["executing"]) == "executing"
    for state in ("scheduled", "retryable", "completed", "discarded", "cancelled"):
        job = await client.get_job(ids[state])
        assert job is not None
        assert job.state == "available"
        assert (job.completed_at, job.discarded_at, job.cancelled_at) == (None, None, None)
        assert job.max_attempts >= job.attempt + 1
    discarded = await client.get_job(ids["discarded"])
    assert discarded is not None
    assert discarded.max_attempts == 2


async def test_retry_of_an_available_job_changes_nothing(client: Client) -> None:
    job = await client.enqueue(Job(worker="W"))
    assert not await client.retry_job(job.id or 0)


async def test_delete_skips_executing_jobs(client: Client, conn: Any) -> None:
    ids = await one_per_state(client, conn)
    assert await client.delete_jobs(list(ids.values())) == len(STATES) - 1
    assert await state_of(client, ids["executing"]) == "executing"
    assert await client.get_job(ids["available"]) is None
    assert not await client.delete_job(ids["executing"])


async def test_update_job_changes_fields_with_new_job_validation(client: Client) -> None:
    job = await client.enqueue(Job(worker="W", args={"a": 1}))
    updated = await client.update_job(
        job.id or 0, priority=2, tags=["Hot ", "hot"], meta={"by": "py"}, args={"a": 2}
    )
    assert updated is not None
    assert (updated.priority, updated.tags, updated.meta, updated.args) == (
        2,
        ["hot"],
        {"by": "py"},
        {"a": 2},
    )
    assert updated.state == "available"
    assert updated.inserted_at == job.inserted_at
    with pytest.raises(ValidationError, match="priority"):
        await client.update_job(job.id or 0, priority=42)
    with pytest.raises(ValueError, match="cannot update state"):
        await client.update_job(job.id or 0, state="completed")
    assert await client.update_job(999_999, priority=1) is None


async def test_get_job_of_a_missing_id_is_none(client: Client) -> None:
    assert await client.get_job(123456) is None


ASYNC_METHODS = [
    ("enqueue", lambda c: c.enqueue(Job(worker="X"))),
    ("enqueue_many", lambda c: c.enqueue_many([Job(worker="X")])),
    ("get_job", lambda c: c.get_job(1)),
    ("cancel_job", lambda c: c.cancel_job(1)),
    ("cancel_jobs", lambda c: c.cancel_jobs([1])),
    ("retry_job", lambda c: c.retry_job(1)),
    ("retry_jobs", lambda c: c.retry_jobs([1])),
    ("delete_job", lambda c: c.delete_job(1)),
    ("delete_jobs", lambda c: c.delete_jobs([1])),
    ("update_job", lambda c: c.update_job(1, priority=2)),
    ("pause_queue", lambda c: c.pause_queue("q")),
    ("resume_queue", lambda c: c.resume_queue("q")),
    ("pause_all_queues", lambda c: c.pause_all_queues()),
    ("resume_all_queues", lambda c: c.resume_all_queues()),
    ("scale_queue", lambda c: c.scale_queue("q", limit=2)),
    ("start_queue", lambda c: c.start_queue("q", limit=2)),
    ("stop_queue", lambda c: c.stop_queue("q")),
]


@pytest.mark.parametrize(("method", "call"), ASYNC_METHODS, ids=[m for m, _ in ASYNC_METHODS])
@pytest.mark.parametrize("kind", ["client", "testing client"])
def test_an_async_method_called_from_sync_code_raises_naming_its_sync_twin(
    method: str, call: Any, kind: str
) -> None:
    # A coroutine nobody awaits would do nothing, with at most a warning.
    from oban_py.testing import TestingClient

    dsn = "postgresql://nobody@127.0.0.1:1/never-connected"
    client = (
        Client(dsn=dsn, name="Loud") if kind == "client" else TestingClient(name="Loud", dsn=dsn)
    )
    with pytest.raises(RuntimeError, match=rf"{method}\(\) is async.*call {method}_sync\(\)"):
        call(client)
    assert callable(getattr(client, f"{method}_sync"))
