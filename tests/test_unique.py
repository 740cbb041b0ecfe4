"""Unique jobs with Oban 2.23 OSS semantics, and exactly one row under concurrent inserts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from oban_py.client.core import Client
from oban_py.job.model import Job
from oban_py.job.unique import STATE_GROUPS, Unique, lock_key
from tests.conftest import FIXTURES


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="Oban") as c:
        yield c


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "jobs" / f"{name}.json").read_text())


async def count(conn: Any) -> int:
    cur = await conn.execute("SELECT count(*) FROM oban_jobs")
    row = await cur.fetchone()
    return int(row[0])


def echo(args: dict[str, Any], **opts: Any) -> Job:
    return Job(**{"worker": "Interop.EchoWorker", "queue": "uniq", "args": args, **opts})


async def test_duplicate_returns_the_existing_job_with_conflict(client: Client, conn: Any) -> None:
    first = await client.enqueue(echo({"account_id": 42}, unique={"period": 300}))
    again = await client.enqueue(echo({"account_id": 42}, unique={"period": 300}))
    assert (first.conflict, again.conflict) == (
        fixture("unique_first")["conflict"],
        fixture("unique_duplicate")["conflict"],
    )
    assert again.id == first.id
    assert again.args == first.args
    assert await count(conn) == 1
    # Nothing about uniqueness is stored in the row.
    assert again.meta == {} == fixture("unique_duplicate")["row"]["meta"]


async def test_keys_compare_only_those_args(client: Client, conn: Any) -> None:
    unique = {"keys": ["account_id"], "period": "infinity"}
    first = await client.enqueue(echo({"account_id": 7, "other": 1}, unique=unique))
    again = await client.enqueue(echo({"account_id": 7, "other": 2}, unique=unique))
    assert again.conflict
    assert again.id == first.id
    assert again.args == fixture("unique_keys_duplicate")["row"]["args"]
    other = await client.enqueue(echo({"account_id": 8, "other": 1}, unique=unique))
    assert not other.conflict
    assert await count(conn) == 2


async def test_without_keys_args_must_be_equal_not_contained(client: Client) -> None:
    await client.enqueue(echo({"a": 1, "b": 2}, unique=True))
    assert not (await client.enqueue(echo({"a": 1}, unique=True))).conflict
    assert (await client.enqueue(echo({"a": 1}, unique=True))).conflict


async def test_queue_and_worker_are_compared_by_equality(client: Client) -> None:
    await client.enqueue(echo({}, unique=True))
    assert not (await client.enqueue(echo({}, unique=True, queue="other"))).conflict
    by_worker = {"fields": ["worker"], "period": None}
    await client.enqueue(echo({"x": 1}, unique=by_worker))
    assert (await client.enqueue(echo({"x": 2}, unique=by_worker, queue="zzz"))).conflict


async def test_meta_field_with_keys(client: Client) -> None:
    unique = {"fields": ["meta", "worker"], "keys": ["slug"]}
    await client.enqueue(echo({"n": 1}, meta={"slug": "s", "x": 1}, unique=unique))
    assert (await client.enqueue(echo({"n": 2}, meta={"slug": "s"}, unique=unique))).conflict
    assert not (await client.enqueue(echo({"n": 2}, meta={"slug": "t"}, unique=unique))).conflict


async def test_period_ends_uniqueness(client: Client, conn: Any) -> None:
    first = await client.enqueue(echo({"p": 1}, unique={"period": 60}))
    await conn.execute(
        "UPDATE oban_jobs SET inserted_at = inserted_at - interval '61 seconds' WHERE id = %s",
        [first.id],
    )
    assert not (await client.enqueue(echo({"p": 1}, unique={"period": 60}))).conflict


async def test_scheduled_at_timestamp_option(client: Client, conn: Any) -> None:
    unique = {"period": 60, "timestamp": "scheduled_at"}
    await client.enqueue(echo({"t": 1}, unique=unique, schedule_in=3600))
    await conn.execute("UPDATE oban_jobs SET inserted_at = inserted_at - interval '1 day'")
    assert (await client.enqueue(echo({"t": 1}, unique=unique))).conflict


async def test_states_limit_which_jobs_count(client: Client, conn: Any) -> None:
    first = await client.enqueue(echo({"s": 1}, unique={"states": "incomplete"}))
    await conn.execute("UPDATE oban_jobs SET state = 'completed' WHERE id = %s", [first.id])
    assert not (await client.enqueue(echo({"s": 1}, unique={"states": "incomplete"}))).conflict
    await conn.execute("UPDATE oban_jobs SET state = 'cancelled'")
    assert not (await client.enqueue(echo({"s": 1}))).conflict
    assert (await client.enqueue(echo({"s": 1}, unique={"states": "all"}))).conflict


def test_state_groups_are_obans() -> None:
    assert set(STATE_GROUPS["successful"]) == set(STATE_GROUPS["all"]) - {"cancelled", "discarded"}
    assert set(STATE_GROUPS["incomplete"]) == set(STATE_GROUPS["successful"]) - {"completed"}
    assert STATE_GROUPS["scheduled"] == ("scheduled",)
    assert Unique().states == STATE_GROUPS["successful"]
    assert Unique(states=["available", "scheduled"]).states == ("available", "scheduled")
    with pytest.raises(ValueError, match="unique states must be job states"):
        Unique(states=["done"])


async def test_replace_updates_the_duplicate_by_its_state(client: Client) -> None:
    replace = {"scheduled": ["scheduled_at", "args"]}
    first = await client.enqueue(echo({"r": 1}, unique={"keys": ["r"]}, schedule_in=60))
    again = await client.enqueue(
        echo({"r": 1, "new": True}, unique={"keys": ["r"]}, schedule_in=600, replace=replace)
    )
    assert again.conflict
    assert again.id == first.id
    assert again.args == {"r": 1, "new": True}
    assert again.scheduled_at
    assert first.scheduled_at
    assert again.scheduled_at > first.scheduled_at
    untouched = await client.enqueue(
        echo({"r": 1, "x": 0}, unique={"keys": ["r"]}, replace={"available": ["args"]})
    )
    assert untouched.args == {"r": 1, "new": True}


async def test_available_duplicate_still_notifies_like_elixir(client: Client, dsn: str) -> None:
    await client.enqueue(echo({"n": 1}, unique=True))
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute('LISTEN "public.oban_insert"')
    assert (await client.enqueue(echo({"n": 1}, unique=True))).conflict
    payloads = [n.payload async for n in listener.notifies(timeout=0.3)]
    await listener.close()
    assert payloads == ['{"queue":"uniq"}']


async def test_rolled_back_unique_insert_leaves_nothing(client: Client, dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as tx:
        await client.enqueue(echo({"rb": 1}, unique=True), conn=tx)
        await tx.rollback()
    assert not (await client.enqueue(echo({"rb": 1}, unique=True))).conflict


async def test_enqueue_many_checks_unique_jobs_one_by_one(client: Client, conn: Any) -> None:
    jobs = [echo({"m": 1}, unique=True), echo({"plain": 1}), echo({"m": 1}, unique=True)]
    inserted = await client.enqueue_many(jobs)
    assert [j.conflict for j in inserted] == [False, False, True]
    assert inserted[0].id == inserted[2].id
    assert await count(conn) == 2


async def test_fifty_racing_inserts_make_exactly_one_row(dsn: str, conn: Any) -> None:
    clients = [Client(dsn=dsn, name=f"race{i}") for i in range(50)]
    connections = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in clients]
    try:
        results = await asyncio.gather(
            *(
                c.enqueue(echo({"race": 1}, unique={"period": 300}), conn=cn)
                for c, cn in zip(clients, connections, strict=True)
            )
        )
    finally:
        for cn in connections:
            await cn.close()
        for c in clients:
            await c.close()
    assert await count(conn) == 1
    assert sum(not r.conflict for r in results) == 1
    assert len({r.id for r in results}) == 1


def test_lock_key_is_stable_signed_64_bit_and_depends_on_prefix() -> None:
    unique = Unique(keys=["a"])
    values = {"args": {"a": 1, "b": 2}, "queue": "q", "worker": "w", "meta": {}}
    key = lock_key("public", unique, values)
    assert key == lock_key("public", unique, {**values, "args": {"b": 3, "a": 1}})
    assert key != lock_key("private", unique, values)
    assert -(2**63) <= key < 2**63
