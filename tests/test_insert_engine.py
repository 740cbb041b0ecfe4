"""The insert engine, through both drivers: every test runs on the async and the sync API.

Issue 13, reproduced first: unique batches deadlocked (blocking locks in input order), update
rewrote every column (wide integers lost digits), a future scheduled_at left the job available,
replace wrote the new job's defaults, and there was no sync enqueue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from oban_py import Client, Job, Worker
from oban_py.insert.planner import insert_plan, unique_plan
from oban_py.job.errors import InvalidArgs
from oban_py.sql import Queries

WIDE = 123456789012345678901234567890


class Api:
    """One client, driven through its async methods or its ``*_sync`` ones (in a thread, as a
    Django view or a script would call them)."""

    def __init__(self, client: Client, kind: str) -> None:
        self.client = client
        self.kind = kind

    async def enqueue_many(self, jobs: Iterable[Job], conn: Any = None) -> list[Job]:
        batch = list(jobs)
        if self.kind == "async":
            return await self.client.enqueue_many(batch, conn=conn)
        return await asyncio.to_thread(self.client.enqueue_many_sync, batch, conn)

    async def enqueue(self, job: Job, conn: Any = None) -> Job:
        return (await self.enqueue_many([job], conn))[0]

    async def update_job(self, job_id: int, **changes: Any) -> Job | None:
        if self.kind == "async":
            return await self.client.update_job(job_id, **changes)
        return await asyncio.to_thread(lambda: self.client.update_job_sync(job_id, **changes))

    async def get_job(self, job_id: int) -> Job | None:
        if self.kind == "async":
            return await self.client.get_job(job_id)
        return await asyncio.to_thread(self.client.get_job_sync, job_id)

    async def connect(self, dsn: str, **kwargs: Any) -> Any:
        if self.kind == "async":
            return await psycopg.AsyncConnection.connect(dsn, **kwargs)
        return await asyncio.to_thread(lambda: psycopg.connect(dsn, **kwargs))

    async def call(self, conn: Any, method: str, *args: Any) -> Any:
        if self.kind == "async":
            return await getattr(conn, method)(*args)
        return await asyncio.to_thread(getattr(conn, method), *args)


@pytest.fixture(params=["async", "sync"])
async def api(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[Api]:
    client = Client(dsn=dsn, name="Oban")
    try:
        yield Api(client, request.param)
    finally:
        await client.close()


def uniq(n: int, **opts: Any) -> Job:
    return Job(worker="Py.Uniq", queue="u", args={"n": n}, unique={"period": 300}, **opts)


async def scalar(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


# -- unique: no deadlock, no duplicate, bounded statements -------------------------------------


async def test_opposite_orders_of_the_same_unique_jobs_never_deadlock(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Before: each unique job took a blocking lock in input order: DeadlockDetected.
    for _ in range(10):
        await asyncio.gather(
            api.enqueue_many([uniq(1), uniq(2), Job(worker="Py.Plain")]),
            api.enqueue_many([uniq(2), uniq(1)]),
        )
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs WHERE worker = 'Py.Uniq'") == 2


async def test_eight_tasks_twenty_rounds_of_overlapping_unique_batches(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    rng = random.Random(13)

    async def task() -> None:
        for _ in range(20):
            picked = rng.sample(range(30), 12)
            batch = [uniq(n) for n in picked] + [Job(worker="Py.Plain") for _ in range(3)]
            rng.shuffle(batch)
            inserted = await api.enqueue_many(batch)
            assert [j.args for j in inserted] == [j.args for j in batch]
            assert all(j.id is not None for j in inserted)

    await asyncio.gather(*(task() for _ in range(8)))
    per_job = await conn.execute(
        b"SELECT args->>'n', count(*) FROM oban_jobs WHERE worker = 'Py.Uniq' GROUP BY 1"
    )
    counts = dict(await per_job.fetchall())
    assert len(counts) <= 30
    assert set(counts.values()) == {1}
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs WHERE worker = 'Py.Plain'") == 480


async def test_duplicates_inside_one_batch_share_the_first_ones_row(api: Api) -> None:
    inserted = await api.enqueue_many([uniq(7), Job(worker="Py.Plain"), uniq(7), uniq(7)])
    first, _, second, third = inserted
    assert not first.conflict
    assert (second.conflict, third.conflict) == (True, True)
    assert first.id == second.id == third.id


async def test_unique_conflicts_are_reported_per_job_in_input_order(api: Api) -> None:
    await api.enqueue(uniq(1))
    inserted = await api.enqueue_many([uniq(0), uniq(1), uniq(2)])
    assert [j.conflict for j in inserted] == [False, True, False]
    assert [j.args["n"] for j in inserted] == [0, 1, 2]


async def test_a_plain_job_listed_after_a_unique_one_is_no_duplicate_of_it(api: Api) -> None:
    # As if inserted one by one: the unique job goes in first, the plain one after it.
    unique = Job(worker="Py.Same", args={"k": 1}, unique={"fields": ["worker", "args"]})
    inserted = await api.enqueue_many([unique, Job(worker="Py.Same", args={"k": 1})])
    assert [j.conflict for j in inserted] == [False, False]
    assert inserted[0].id != inserted[1].id
    # Listed before it, the plain job is a duplicate the unique one finds.
    again = await api.enqueue_many([Job(worker="Py.Again", args={"k": 1}), unique_again()])
    assert [j.conflict for j in again] == [False, True]
    assert again[1].id == again[0].id


def unique_again() -> Job:
    return Job(worker="Py.Again", args={"k": 1}, unique={"fields": ["worker", "args"]})


class Counting(psycopg.AsyncCursor[Any]):
    executed: list[bytes] = []

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        type(self).executed.append(bytes(query))
        return await super().execute(query, *args, **kwargs)


class CountingSync(psycopg.Cursor[Any]):
    executed: list[bytes] = []

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        type(self).executed.append(bytes(query))
        return super().execute(query, *args, **kwargs)


@pytest.mark.parametrize("unique_count", [1, 100, 1000])
async def test_a_batch_takes_the_same_statements_whatever_its_number_of_unique_jobs(
    api: Api, dsn: str, conn: psycopg.AsyncConnection[Any], unique_count: int
) -> None:
    jobs = [uniq(n) for n in range(unique_count)]
    jobs += [Job(worker="Py.Plain", args={"i": i}) for i in range(5_000 - unique_count)]
    random.Random(unique_count).shuffle(jobs)
    own = await api.connect(dsn, autocommit=True)
    factory = Counting if api.kind == "async" else CountingSync
    factory.executed = []
    own.cursor_factory = factory
    try:
        inserted = await api.enqueue_many(jobs, own)
    finally:
        await api.call(own, "close")
    # The plain jobs: their ids reserved, a COPY (no execute) and the notifications; then one
    # lock statement, one lookup-or-insert for the one unique shape.
    assert len(factory.executed) == 4
    assert len(inserted) == 5_000
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs") == 5_000


def test_the_plan_counts_shapes_and_rounds_not_jobs() -> None:
    jobs = [uniq(n) for n in range(100)] + [Job(worker="Py.Plain") for _ in range(4_900)]
    assert unique_plan("public", jobs).statements() == 2
    other = Job(worker="Py.Uniq", args={"n": 1}, unique={"period": 60, "fields": ["worker"]})
    replacing = uniq(1, replace={"available": ["priority"]}, priority=3)
    plan = unique_plan("public", [*jobs, other, replacing])
    # A second shape, and a second round for the job that must see the first uniq(1).
    assert plan.statements() == 4
    assert len(plan.rounds) == 2


async def test_in_a_callers_transaction_a_lock_held_elsewhere_is_a_conflict_not_a_wait(
    api: Api, dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    holder = await psycopg.AsyncConnection.connect(dsn)
    await api.enqueue(Job(worker="Py.Warm"))  # opens the pool outside the lock
    async with holder.transaction():
        # The other transaction is inserting uniq(5) right now.
        await api.client.enqueue(uniq(5), conn=holder)
        caller = await api.connect(dsn)
        try:
            first, other = await asyncio.wait_for(
                api.enqueue_many([uniq(5), uniq(6)], caller), timeout=5
            )
            await api.call(caller, "commit")
        finally:
            await api.call(caller, "close")
    await holder.close()
    # As Elixir's pg_try_advisory_xact_lock: reported as a conflict, not inserted, no wait.
    assert (first.conflict, first.id) == (True, None)
    assert not other.conflict
    assert other.id is not None
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs WHERE args = '{\"n\": 5}'") == 1


async def test_rolled_back_unique_batch_leaves_nothing(
    api: Api, dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    caller = await api.connect(dsn)
    await api.enqueue_many([uniq(1), uniq(2)], caller)
    await api.call(caller, "rollback")
    await api.call(caller, "close")
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs") == 0
    assert not (await api.enqueue(uniq(1))).conflict


# -- replace: only the fields the new job sets --------------------------------------------------


async def test_replace_writes_only_the_fields_the_new_job_sets(api: Api) -> None:
    first = await api.enqueue(uniq(1, priority=5, max_attempts=3, tags=["keep"]))
    fields = ["priority", "max_attempts", "tags", "meta"]
    again = await api.enqueue(uniq(1, meta={"v": 2}, replace={"available": fields}))
    assert again.conflict
    assert again.id == first.id
    # Before: priority 5 and max_attempts 3 became 0 and 20 (the new job's defaults).
    assert (again.priority, again.max_attempts, again.tags) == (5, 3, ["keep"])
    assert again.meta == {"v": 2}
    stored = await api.get_job(first.id or 0)
    assert stored is not None
    assert (stored.priority, stored.max_attempts, stored.meta) == (5, 3, {"v": 2})


async def test_replace_by_state_leaves_other_states_alone(api: Api) -> None:
    first = await api.enqueue(uniq(1, schedule_in=600))
    later = datetime.now(UTC) + timedelta(hours=2)
    again = await api.enqueue(uniq(1, scheduled_at=later, replace={"available": ["scheduled_at"]}))
    assert again.conflict
    assert again.scheduled_at == first.scheduled_at
    moved = await api.enqueue(uniq(1, scheduled_at=later, replace={"scheduled": ["scheduled_at"]}))
    assert moved.scheduled_at == later


# -- update_job: only the given columns, Elixir's state rule ------------------------------------


async def elixir_row(conn: psycopg.AsyncConnection[Any], state: str = "available") -> int:
    # Written as Elixir writes it: an integer wider than 64 bits in args.
    query = (
        "INSERT INTO oban_jobs (state, worker, args, meta, priority) "
        "VALUES (%s, 'Elixir.Worker', %s::jsonb, '{\"big\": 1e400}', 1) RETURNING id"
    )
    args = f'{{"id": {WIDE}, "f": 0.1}}'
    return int(await scalar(conn, query, state, args))


async def test_update_changes_only_the_given_columns_and_keeps_wide_integers(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    job_id = await elixir_row(conn)
    before = await scalar(
        conn, "SELECT row_to_json(j)::text FROM oban_jobs j WHERE id = %s", job_id
    )
    updated = await api.update_job(job_id, priority=3)
    assert updated is not None
    assert updated.priority == 3
    # Before: args came back as 1.2345678901234568e+29 and were written back rounded.
    assert updated.args["id"] == WIDE
    after = await scalar(conn, "SELECT row_to_json(j)::text FROM oban_jobs j WHERE id = %s", job_id)
    assert after == before.replace('"priority":1', '"priority":3')


async def test_update_args_writes_wide_integers_exactly(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    job_id = await elixir_row(conn)
    updated = await api.update_job(job_id, args={"id": WIDE + 1})
    assert updated is not None
    assert updated.args == {"id": WIDE + 1}
    stored = await scalar(conn, "SELECT args::text FROM oban_jobs WHERE id = %s", job_id)
    assert stored == f'{{"id": {WIDE + 1}}}'


async def test_a_future_scheduled_at_schedules_the_job_and_a_past_one_makes_it_available(
    api: Api,
) -> None:
    job = await api.enqueue(Job(worker="Py.W"))
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduled = await api.update_job(job.id or 0, scheduled_at=later)
    assert scheduled is not None
    assert (scheduled.state, scheduled.scheduled_at) == ("scheduled", later)
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    available = await api.update_job(job.id or 0, scheduled_at=earlier)
    assert available is not None
    assert available.state == "available"


@pytest.mark.parametrize("state", ["executing", "completed", "suspended", "cancelled"])
async def test_a_new_scheduled_at_never_revives_or_moves_a_job_that_is_not_waiting(
    api: Api, conn: psycopg.AsyncConnection[Any], state: str
) -> None:
    job_id = await elixir_row(conn, state)
    later = datetime.now(UTC) + timedelta(hours=1)
    updated = await api.update_job(job_id, scheduled_at=later, tags=["Moved"])
    assert updated is not None
    assert (updated.state, updated.tags) == (state, ["moved"])


async def test_update_validates_as_a_new_job_and_misses_locked_or_absent_jobs(
    api: Api, dsn: str
) -> None:
    job = await api.enqueue(Job(worker="Py.W"))
    with pytest.raises(ValueError, match="priority"):
        await api.update_job(job.id or 0, priority=42)
    with pytest.raises(ValueError, match="cannot update state"):
        await api.update_job(job.id or 0, state="completed")
    with pytest.raises(ValueError, match="args must be a JSON object"):
        await api.update_job(job.id or 0, args=["x"])
    assert await api.update_job(999_999, priority=1) is None
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        await other.execute(b"SELECT 1 FROM oban_jobs WHERE id = %s FOR UPDATE", (job.id,))
        # Elixir's FOR UPDATE SKIP LOCKED: a row another transaction holds is not waited for.
        assert await asyncio.wait_for(api.update_job(job.id or 0, priority=1), 5) is None


# -- exact JSON everywhere ------------------------------------------------------------------------


async def test_wide_integers_and_huge_numbers_round_trip_through_insert_and_get(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    args = {"id": WIDE, "neg": -WIDE, "nested": [{"n": 2**70}], "s": "nul\u0000less"[:3]}
    plain, unique = await api.enqueue_many(
        [Job(worker="Py.W", args=args), Job(worker="Py.U", args=args, unique=True)]
    )
    for job in (plain, unique):
        stored = await scalar(conn, "SELECT args::text FROM oban_jobs WHERE id = %s", job.id)
        assert str(WIDE) in stored
        assert str(2**70) in stored
        assert (await api.get_job(job.id or 0)) == job
        assert job.args == args
    again = await api.enqueue(Job(worker="Py.U", args=args, unique=True))
    assert again.conflict
    assert again.id == unique.id


# -- sync API semantics -------------------------------------------------------------------------


class Email(Worker):
    name = "Py.Email"
    queue = "mail"

    def process(self, job: Job) -> None:
        return None


def test_non_object_args_fail_with_a_clear_error() -> None:
    # Before: "dictionary update sequence element #0 has length 1".
    with pytest.raises(InvalidArgs, match=r"Py\.Email args must be a JSON object"):
        Email.new(["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="args must be a JSON object"):
        Job(worker="W", args=["x"])


def test_async_enqueue_called_from_sync_code_fails_loudly(dsn: str) -> None:
    client = Client(dsn=dsn, name="Oban")
    try:
        with pytest.raises(RuntimeError, match="enqueue_sync"):
            Email.enqueue({})
        with pytest.raises(RuntimeError, match="enqueue_many_sync"):
            client.enqueue_many([Email.new({})])
        job = Email.enqueue_sync({"to": "a@example.com"})
        assert job.id is not None
        assert job.queue == "mail"
        assert client.get_job_sync(job.id) == job
    finally:
        client.close_sync()


def test_sync_enqueue_joins_the_callers_transaction(dsn: str) -> None:
    with Client(dsn=dsn, name="Oban") as client, psycopg.connect(dsn) as conn:
        kept = Email.enqueue_sync({"n": 1}, conn)
        conn.commit()
        dropped = client.enqueue_many_sync([Email.new({"n": 2}), uniq(1)], conn)
        conn.rollback()
        assert client.get_job_sync(kept.id or 0) is not None
        assert [client.get_job_sync(j.id or 0) for j in dropped] == [None, None]
        assert client.cancel_jobs_sync([kept.id or 0]) == 1
        assert client.retry_jobs_sync([kept.id or 0]) == 1
        assert client.delete_jobs_sync([kept.id or 0]) == 1


def test_the_planner_is_pure_and_shared() -> None:
    # The program yields statements and reads rows it is sent: no connection involved.
    work = insert_plan(Queries("public"), [Job(worker="W")])
    program = work.program(True)
    statement = next(program)
    assert b"INSERT INTO" in statement.query
    now = datetime(2026, 1, 1)
    with pytest.raises(StopIteration) as done:
        program.send([(1, now, now)])
    (job,) = done.value.value
    assert (job.id, job.inserted_at) == (1, now.replace(tzinfo=UTC))


# -- poison inputs ------------------------------------------------------------------------------


async def test_a_nul_the_database_refuses_fails_that_call_only(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    # jsonb cannot hold U+0000: the server refuses it, and the next call works as before.
    for batch in (
        [Job(worker="W", args={"s": "a\x00b"})],
        [Job(worker="W"), uniq(1, meta={"x": "\x00"})],
    ):
        with pytest.raises(psycopg.DataError):
            await api.enqueue_many(batch)
        assert (await api.enqueue(Job(worker="W", args={"ok": 1}))).id is not None
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs") == 2


def test_lone_surrogates_and_non_json_values_fail_when_the_job_is_built() -> None:
    with pytest.raises(ValueError, match="must serialise to JSON"):
        Job(worker="W", args={"s": "\ud800"})
    with pytest.raises(ValueError, match="must serialise to JSON"):
        Job(worker="W", meta={"when": object()})


async def test_a_cancelled_bulk_insert_leaves_nothing_and_the_client_keeps_working(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with Client(dsn=dsn, name="Oban") as client:
        await client.enqueue(Job(worker="W"))  # the held connection exists
        jobs = [Job(worker="Big", args={"i": i}) for i in range(20_000)]
        task = asyncio.ensure_future(client.enqueue_many(jobs))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await client.enqueue_many([Job(worker="After"), uniq(1)])
        assert [j.id is not None for j in again] == [True, True]
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs WHERE worker = 'Big'") in (0, 20_000)
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs WHERE worker <> 'Big'") == 3


async def test_an_insert_inside_the_callers_pipeline_is_refused_and_the_connection_kept(
    dsn: str,
) -> None:
    # In pipeline mode a statement's rows come at the next sync: the engine read none and
    # every enqueue failed with an IndexError (as on a connection a cancel left pipelined,
    # which the driver now closes so that no pool lends it again).
    client = Client(dsn=dsn, name="Pipelines")
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.ProgrammingError, match="pipeline mode"):
                async with conn.pipeline():
                    await client.enqueue_many([Job(worker="W"), uniq(3)], conn=conn)
            assert not conn.closed
            assert len(await client.enqueue_many([Job(worker="W"), uniq(3)], conn=conn)) == 2
        with psycopg.connect(dsn, autocommit=True) as sync_conn:
            with (
                pytest.raises(psycopg.ProgrammingError, match="pipeline mode"),
                sync_conn.pipeline(),
            ):
                client.enqueue_sync(Job(worker="W"), conn=sync_conn)
            assert client.enqueue_sync(Job(worker="W"), conn=sync_conn).id is not None
    finally:
        await client.close()


async def test_an_insert_hook_raising_a_base_exception_inserts_nothing(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    from oban_py.middleware import add_insert_hook, remove_insert_hook

    class Stop(BaseException):
        pass

    def hook(job: Job) -> Job:
        raise Stop

    add_insert_hook("stop", hook)
    try:
        with pytest.raises(Stop):
            await api.enqueue_many([Job(worker="W"), Job(worker="W")])
    finally:
        remove_insert_hook("stop")
    assert (await api.enqueue(Job(worker="W"))).id is not None
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs") == 1


SEEN: list[Any] = []


class Exact(Worker):
    name = "Elixir.Worker"

    def process(self, job: Job) -> None:
        SEEN.append(job.args["id"])


async def test_a_fetched_elixir_row_reaches_the_worker_exactly(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    from oban_py.testing import TestingClient, drain_queue

    await elixir_row(conn)
    SEEN.clear()
    async with TestingClient("manual", dsn=dsn) as client:
        await drain_queue(client, "default")
    # Not 1.2345678901234568e+29, as a float-reading JSON decoder would give.
    assert SEEN == [WIDE]


def test_testing_client_modes_apply_to_sync_enqueues_too() -> None:
    from oban_py.testing import TestingClient

    inline = TestingClient("inline", name="Oban")
    try:
        job = Email.enqueue_sync({"to": "a@example.com"})
        assert job.state == "completed"
        assert inline.performed == [job]
    finally:
        inline.close_sync()
    disabled = TestingClient("disabled", name="Oban")
    try:
        assert Email.enqueue_sync({}).id is None
    finally:
        disabled.close_sync()


async def test_tags_with_quotes_commas_braces_and_backslashes_are_stored_as_given(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    tags = ['a"b', "c,d", "{e}", "f\\g", "null", "ünï"]
    one = await api.enqueue(Job(worker="W", tags=tags))
    many = await api.enqueue_many([Job(worker="W", tags=tags)] * 2)
    for job in (one, *many):
        stored = await scalar(conn, "SELECT tags FROM oban_jobs WHERE id = %s", job.id)
        assert stored == job.tags == sorted(tags)


async def test_a_refused_row_in_a_later_pipelined_chunk_rolls_back_the_whole_batch(
    api: Api, conn: psycopg.AsyncConnection[Any]
) -> None:
    jobs = [Job(worker="W", args={"i": i}) for i in range(6_000)]
    jobs[5_500] = Job(worker="W", args={"s": "\x00"})
    with pytest.raises(psycopg.DataError):
        await api.enqueue_many(jobs)
    assert await scalar(conn, "SELECT count(*) FROM oban_jobs") == 0
    assert len(await api.enqueue_many(jobs[:10])) == 10
