"""Inserting: column values as Elixir writes them, insert notifications, transactions, batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nodekit
import psycopg
import pytest
from psycopg.rows import dict_row

from oban_py.client.core import CHUNK_SIZE, Client, get_instance
from oban_py.insert import planner
from oban_py.job.errors import DatabaseUnavailable, InstanceNotFound
from oban_py.job.model import Job
from oban_py.worker import Worker
from tests.conftest import FIXTURES

# Values that differ per capture (ids, clock) are compared by type, not value.
VOLATILE = ("id", "inserted_at", "scheduled_at")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "jobs" / f"{name}.json").read_text())


async def row_json(conn: psycopg.AsyncConnection[Any], job_id: int | None) -> dict[str, Any]:
    cur = await conn.execute("SELECT row_to_json(j) FROM oban_jobs j WHERE id = %s", [job_id])
    found = await cur.fetchone()
    assert found is not None
    return dict(found[0])


def stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="Oban") as c:
        yield c


async def listen(dsn: str, channel: str) -> psycopg.AsyncConnection[Any]:
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute(f'LISTEN "{channel}"')
    return listener


async def received(listener: psycopg.AsyncConnection[Any], wait: float = 0.3) -> list[str]:
    payloads = [n.payload async for n in listener.notifies(timeout=wait)]
    await listener.close()
    return payloads


class EchoWorker(Worker):
    name = "Interop.EchoWorker"

    def process(self, job: Job) -> None:
        return None


async def test_plain_insert_has_the_same_row_as_elixirs(client: Client, conn: Any) -> None:
    # Written by sql/insert_job_defaults.sql: every column but queue, worker and args is left
    # to the table's defaults, so these must be Elixir's Job defaults.
    job = await client.enqueue(EchoWorker.new({"name": "plain", "n": 1}, queue="default"))
    row = await row_json(conn, job.id)
    expected = fixture("insert_plain")
    assert list(row) == list(expected)
    assert stable(row) == stable(expected)
    assert row["scheduled_at"] == row["inserted_at"]
    assert "Z" not in row["inserted_at"]
    assert "+" not in row["inserted_at"]


async def test_scheduled_insert_matches_elixir(client: Client, conn: Any) -> None:
    before = datetime.now(UTC)
    job = await client.enqueue(EchoWorker.new({"name": "scheduled"}, schedule_in=3600))
    row = await row_json(conn, job.id)
    assert stable(row) == stable(fixture("insert_scheduled"))
    scheduled = datetime.fromisoformat(row["scheduled_at"]).replace(tzinfo=UTC)
    assert before + timedelta(seconds=3599) < scheduled < before + timedelta(seconds=3602)
    assert job.state == "scheduled"
    assert job.scheduled_at == scheduled


async def test_tags_meta_priority_and_max_attempts_match_elixir(client: Client, conn: Any) -> None:
    job = await client.enqueue(
        EchoWorker.new(
            {"name": "tagged", "nested": {"a": [1, 2, 3]}},
            queue="alpha",
            priority=3,
            tags=["urgent", "billing"],
            meta={"source": "elixir", "trace_id": "abc123"},
            max_attempts=7,
        )
    )
    assert stable(await row_json(conn, job.id)) == stable(fixture("insert_tags_meta_priority"))


async def test_insert_only_job_for_a_worker_python_does_not_have(client: Client, conn: Any) -> None:
    job = await client.enqueue(Job(worker="Python.Worker", queue="py", args={"from": "elixir"}))
    assert stable(await row_json(conn, job.id)) == stable(fixture("insert_foreign_worker"))


async def test_enqueue_returns_the_stored_job(client: Client) -> None:
    job = await client.enqueue(Job(worker="W", args={"a": 1}, tags=["x"]))
    assert job.id is not None
    assert job.inserted_at is not None
    assert job.inserted_at.tzinfo is UTC
    assert job == await client.get_job(job.id)


async def test_insert_notifies_its_queue_with_elixirs_exact_payload(
    client: Client, dsn: str
) -> None:
    listener = await listen(dsn, "public.oban_insert")
    await client.enqueue(Job(worker="W", queue="default"))
    payloads = await received(listener)
    elixir = json.loads((FIXTURES / "notifications" / "insert.json").read_text())
    default = [
        n["payload"]
        for n in elixir["notifications"]
        if n["channel"] == "public.oban_insert" and n["decoded"] == {"queue": "default"}
    ]
    assert payloads == default[:1] == ['{"queue":"default"}']


async def test_scheduled_insert_sends_no_notification(client: Client, dsn: str) -> None:
    listener = await listen(dsn, "public.oban_insert")
    await client.enqueue(Job(worker="W", queue="later", schedule_in=60))
    assert await received(listener) == []


async def test_batch_notifies_each_available_queue_once(client: Client, dsn: str) -> None:
    listener = await listen(dsn, "public.oban_insert")
    jobs = [Job(worker="W", queue=q) for q in ("a", "b", "a", "a")]
    jobs.append(Job(worker="W", queue="c", schedule_in=60))
    await client.enqueue_many(jobs)
    assert sorted(await received(listener)) == ['{"queue":"a"}', '{"queue":"b"}']


async def test_insert_all_shape_matches_elixir(client: Client, conn: Any) -> None:
    jobs = await client.enqueue_many([EchoWorker.new({"bulk": True}, queue="bulk")] * 3)
    rows = [await row_json(conn, job.id) for job in jobs]
    assert [stable(r) for r in rows] == [stable(r) for r in fixture("insert_all_3")]


async def test_enqueue_many_returns_jobs_in_input_order(client: Client) -> None:
    jobs = [Job(worker="W", args={"i": i}, priority=i % 10) for i in range(25)]
    inserted = await client.enqueue_many(jobs)
    assert [j.args["i"] for j in inserted] == list(range(25))
    assert [j.id for j in inserted] == sorted(j.id for j in inserted if j.id)
    assert await client.enqueue_many([]) == []


async def test_rolled_back_insert_leaves_no_row_and_sends_nothing(client: Client, dsn: str) -> None:
    listener = await listen(dsn, "public.oban_insert")
    async with await psycopg.AsyncConnection.connect(dsn) as tx:
        job = await client.enqueue(Job(worker="W", queue="tx"), conn=tx)
        assert job.id is not None
        await tx.rollback()
    assert await received(listener) == []
    assert await client.get_job(job.id) is None


async def test_committed_insert_on_callers_async_connection_notifies_on_commit(
    client: Client, dsn: str
) -> None:
    listener = await listen(dsn, "public.oban_insert")
    async with await psycopg.AsyncConnection.connect(dsn) as tx:
        job = await client.enqueue(Job(worker="W", queue="tx"), conn=tx)
        assert [n async for n in listener.notifies(timeout=0.1)] == []
        await tx.commit()
    assert await received(listener) == ['{"queue":"tx"}']
    assert await client.get_job(job.id or 0) is not None


async def test_insert_on_callers_sync_connection_joins_its_transaction(
    client: Client, dsn: str
) -> None:
    with psycopg.connect(dsn) as sync:
        kept = await client.enqueue(Job(worker="W", args={"keep": True}), conn=sync)
        sync.commit()
        dropped = await client.enqueue_many([Job(worker="W")] * 2, conn=sync)
        sync.rollback()
    assert await client.get_job(kept.id or 0) is not None
    assert [await client.get_job(j.id or 0) for j in dropped] == [None, None]


class CountingCursor(psycopg.AsyncCursor[Any]):
    executed = 0
    copied = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        type(self).executed += 1
        return await super().execute(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        type(self).copied += 1
        return super().copy(*args, **kwargs)


@pytest.mark.parametrize("by_copy", [True, False])
async def test_ten_thousand_jobs_take_a_bounded_number_of_statements(
    client: Client, dsn: str, by_copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not by_copy:
        # The INSERT, as a batch takes when the table's defaults rule the COPY out.
        monkeypatch.setattr(planner, "COPY_AT", 10**9)
    jobs = [Job(worker="W", queue=f"q{i % 3}", args={"i": i}) for i in range(10_000)]
    async with await psycopg.AsyncConnection.connect(dsn, cursor_factory=CountingCursor) as c:
        CountingCursor.executed = CountingCursor.copied = 0
        inserted = await client.enqueue_many(jobs, conn=c)
        await c.commit()
        if by_copy:
            # The ids reserved, every row in one COPY, the notifications.
            assert (CountingCursor.executed, CountingCursor.copied) == (2, 1)
        else:
            assert CountingCursor.executed == -(-len(jobs) // CHUNK_SIZE) == 2
    assert len(inserted) == 10_000
    assert inserted[-1].args == {"i": 9999}
    async with await psycopg.AsyncConnection.connect(dsn) as c:
        cur = await c.execute("SELECT count(*) FROM oban_jobs")
        assert await cur.fetchone() == (10_000,)


async def test_single_enqueue_is_one_statement(client: Client, dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, cursor_factory=CountingCursor
    ) as c:
        CountingCursor.executed = 0
        await client.enqueue(Job(worker="W"), conn=c)
        assert CountingCursor.executed == 1


@pytest.mark.parametrize(
    "name",
    [
        "insert_plain",
        "insert_tags_meta_priority",
        "retryable_raise",
        "discarded_after_max_attempts",
        "cancelled_executing_pkill",
        "executing",
        "snoozed",
    ],
)
async def test_elixir_rows_load_and_read_back_without_loss(
    client: Client, conn: Any, name: str
) -> None:
    row = fixture(name)
    await conn.execute(
        "INSERT INTO oban_jobs SELECT * FROM json_populate_record(NULL::oban_jobs, %s::json)",
        [json.dumps(row)],
    )
    job = await client.get_job(row["id"])
    assert job is not None
    ours = job.to_row()
    for key in ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "cancelled_at"):
        if row[key] is not None:
            assert datetime.fromisoformat(ours[key]) == datetime.fromisoformat(row[key])
            ours[key] = row[key]
    if row["discarded_at"] is not None:
        assert datetime.fromisoformat(ours["discarded_at"]) == datetime.fromisoformat(
            row["discarded_at"]
        )
        ours["discarded_at"] = row["discarded_at"]
    assert ours == row


async def test_registered_instance_is_found_by_name(client: Client) -> None:
    assert get_instance("Oban") is client
    with pytest.raises(InstanceNotFound, match="no Oban client named 'Other'"):
        get_instance("Other")


async def test_worker_enqueue_uses_the_registered_instance(client: Client, conn: Any) -> None:
    job = await EchoWorker.enqueue({"via": "worker"}, queue="wq")
    assert job.worker == "Interop.EchoWorker"
    assert (await row_json(conn, job.id))["queue"] == "wq"


async def test_unreachable_host_fails_with_a_clear_error() -> None:
    client = Client(dsn="postgresql://postgres@127.0.0.1:1/postgres", name="Bad")
    with pytest.raises(DatabaseUnavailable, match=r"cannot connect to PostgreSQL .*127.0.0.1:1"):
        await client.enqueue(Job(worker="W"))
    await client.close()


async def test_unknown_database_fails_with_a_clear_error(server_dsn: str) -> None:
    from psycopg.conninfo import make_conninfo

    client = Client(dsn=make_conninfo(server_dsn, dbname="no_such_db_xyz"), name="Bad")
    with pytest.raises(DatabaseUnavailable, match="no_such_db_xyz"):
        await client.open()
    await client.close()


async def test_prefixed_client_writes_and_notifies_in_its_schema(dsn: str) -> None:
    from oban_py import schema

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(schema.install_sql(prefix="private").encode())
        listener = await listen(dsn, "private.oban_insert")
        async with Client(dsn=dsn, prefix="private", name="Private") as private:
            job = await private.enqueue(Job(worker="W", queue="p"))
        cur = admin.cursor(row_factory=dict_row)
        await cur.execute("SELECT queue FROM private.oban_jobs WHERE id = %s", [job.id])
        assert await cur.fetchone() == {"queue": "p"}
    assert await received(listener) == ['{"queue":"p"}']


def test_a_client_kept_across_two_asyncio_runs_opens_its_pool_again_in_the_second(
    dsn: str,
) -> None:
    # A script's module-level client used by one ``asyncio.run`` and then another: the pool
    # opened in the first loop lost its workers with it, and would hand the second loop one
    # connection, then make every concurrent call wait for ever (30 s, then PoolTimeout).
    client = Client(dsn=dsn, name="TwoRuns")

    async def first() -> None:
        await client.enqueue(Job(worker="Py.TwoRuns", args={"run": 1}))

    async def second() -> list[Job]:
        calls = [
            client.enqueue(Job(worker="Py.TwoRuns", args={"run": 2, "n": n})) for n in range(6)
        ]
        async with asyncio.timeout(10):
            return list(await asyncio.gather(*calls))

    try:
        asyncio.run(first())
        inserted = asyncio.run(second())
    finally:
        client.close_sync()
    assert len({job.id for job in inserted}) == 6
    with psycopg.connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM oban_jobs WHERE worker = 'Py.TwoRuns'")
        assert count.fetchone() == (7,)


class EnqueuesFromItsThread(Worker):
    """A plain ``def`` job that enqueues with the async API on a loop of its own."""

    name = "Py.Insert.EnqueuesFromItsThread"
    queue = "threads"

    def process(self, job: Job) -> None:
        async def enqueue() -> None:
            await Client.enqueue(get_instance("Oban"), Job(worker="Py.Insert.Child"))

        asyncio.run(enqueue())


async def test_a_job_thread_enqueuing_on_a_loop_of_its_own_uses_the_nodes_pool(
    dsn: str, conn: Any
) -> None:
    # The node's pool belongs to the node's loop: used from the job's own loop, a call waited
    # for ever on a connection only the node's loop could hand over (one job in five stuck).
    from oban_py import Oban

    async with Oban(dsn=dsn, queues={"threads": 3}, peer=False):
        parents = [await EnqueuesFromItsThread.enqueue({"n": n}) for n in range(6)]

        async def settled() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE worker = 'Py.Insert.Child'),"
                " count(*) FILTER (WHERE state = 'completed') FROM oban_jobs"
            )
            return await cur.fetchone() == (6, 6)

        await nodekit.wait_for(settled, timeout=15)
    assert len(parents) == 6


def test_forgetting_an_instance_names_again_the_one_before_it_while_something_keeps_it() -> None:
    import gc

    from oban_py.client.registry import forget, lookup, register

    class Instance:
        pass

    app, stand_in = Instance(), Instance()
    register("Registry.Spec", app)
    register("Registry.Spec", stand_in)  # a test's TestingClient over the app's client
    assert lookup("Registry.Spec") is stand_in
    forget("Registry.Spec", stand_in)
    assert lookup("Registry.Spec") is app
    # One nobody keeps (a client made per call and never closed) is not held for ever.
    register("Registry.Spec", Instance())
    register("Registry.Spec", stand_in)
    gc.collect()
    forget("Registry.Spec", stand_in)
    assert lookup("Registry.Spec") is app
    forget("Registry.Spec", app)
    with pytest.raises(InstanceNotFound):
        lookup("Registry.Spec")
