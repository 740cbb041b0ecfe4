"""Large batches of plain jobs go in by COPY: the same rows, returned jobs and notifications as
the INSERT that smaller batches take, in the same transaction, and nothing at all on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from oban_py import schema
from oban_py.client.core import Client
from oban_py.insert import planner
from oban_py.insert.drivers import insert_sync
from oban_py.job.model import Job
from oban_py.job.unique import Unique
from oban_py.sql import Queries
from oban_py.worker import Worker

COPY_AT = planner.COPY_AT
#: Text COPY must escape: its delimiter, line ends, backslash; and what array and JSON quote.
AWKWARD = 'tab\there, line\nend\r, back\\slash, "quoted", {brace}, comma,, ünïcødé ✓ 𝄞'


class Copied(Worker):
    name = "Copy.Worker"
    queue = "copied"


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="Oban") as opened:
        yield opened


def varied(n: int, later: datetime) -> list[Job]:
    """``n`` plain jobs that set every inserted column, each way, with awkward text."""
    jobs = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            jobs.append(Copied.new({"i": i}))
        elif kind == 1:
            jobs.append(Copied.new({"i": i, "text": AWKWARD}, queue=f"q {i % 3}", priority=i % 10))
        elif kind == 2:
            jobs.append(Copied.new({"nested": [{"a": [i, None, True, 1.5]}]}, tags=[AWKWARD, "x"]))
        elif kind == 3:
            jobs.append(Copied.new({}, meta={"m": AWKWARD, "n": i}, max_attempts=i % 7 + 1))
        elif kind == 4:
            jobs.append(Copied.new({"big": 2**70 + i, "neg": -(2**65)}, scheduled_at=later))
        else:
            jobs.append(Copied.new({"i": i}, schedule_in=timedelta(minutes=5, microseconds=i)))
    return jobs


async def rows(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[int | None]
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM oban_jobs WHERE id = ANY(%s) ORDER BY id", [list(ids)])
    return await cur.fetchall()


def comparable(row: dict[str, Any], given_at: bool) -> dict[str, Any]:
    """A row but for what no two inserts share: the id and the insert time; a schedule not
    given as a time, relative to the insert time (exact to the microsecond)."""
    found = {k: v for k, v in row.items() if k not in ("id", "inserted_at")}
    if not given_at:
        found["scheduled_at"] = row["scheduled_at"] - row["inserted_at"]
    return found


async def both_paths(
    client: Client, conn: psycopg.AsyncConnection[Any], jobs: list[Job]
) -> tuple[list[Job], list[Job]]:
    copied = await client.enqueue_many(jobs)
    planner.COPY_AT = 10**9
    try:
        inserted = await client.enqueue_many(jobs)
    finally:
        planner.COPY_AT = COPY_AT
    return copied, inserted


async def test_a_large_batch_stores_the_rows_the_insert_stores(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    jobs = varied(COPY_AT + 7, later)
    copied, inserted = await both_paths(client, conn, jobs)
    by_copy, by_insert = (
        await rows(conn, [j.id for j in copied]),
        await rows(conn, [j.id for j in inserted]),
    )
    given = [job.scheduled_at == later for job in jobs]
    assert [comparable(r, g) for r, g in zip(by_copy, given, strict=True)] == [
        comparable(r, g) for r, g in zip(by_insert, given, strict=True)
    ]
    # Row for row the columns Elixir reads: scheduled jobs are 'scheduled', args exact.
    assert by_copy[4]["state"] == "scheduled"
    assert by_copy[4]["args"]["big"] == 2**70 + 4
    assert by_copy[1]["args"]["text"] == AWKWARD
    assert by_copy[2]["tags"] == [AWKWARD, "x"]


async def test_a_large_batch_returns_exactly_the_stored_rows_in_input_order(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    jobs = varied(COPY_AT, datetime.now(UTC) + timedelta(hours=1))
    copied = await client.enqueue_many(jobs)
    assert [j.args for j in copied] == [j.args for j in jobs]
    ids = [j.id for j in copied]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    stored = await rows(conn, ids)
    assert [j.model_dump() for j in copied] == [Job.from_row(r).model_dump() for r in stored]


async def test_a_large_batch_is_a_reservation_a_copy_and_the_notifications(
    client: Client, dsn: str
) -> None:
    counted: dict[str, int] = {"execute": 0, "copy": 0}

    class Counting(psycopg.AsyncCursor[Any]):
        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            counted["execute"] += 1
            return await super().execute(*args, **kwargs)

        def copy(self, *args: Any, **kwargs: Any) -> Any:
            counted["copy"] += 1
            return super().copy(*args, **kwargs)

    jobs = [Copied.new({"i": i}) for i in range(3 * planner.CHUNK_SIZE)]
    async with await psycopg.AsyncConnection.connect(dsn, cursor_factory=Counting) as c:
        inserted = await client.enqueue_many(jobs, conn=c)
        await c.commit()
    assert counted == {"execute": 2, "copy": 1}
    assert len(inserted) == len(jobs)


async def test_small_batches_keep_the_insert(client: Client, dsn: str) -> None:
    copies = 0

    class Counting(psycopg.AsyncCursor[Any]):
        def copy(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal copies
            copies += 1
            return super().copy(*args, **kwargs)

    async with await psycopg.AsyncConnection.connect(dsn, cursor_factory=Counting) as c:
        await client.enqueue_many([Copied.new({"i": i}) for i in range(COPY_AT - 1)], conn=c)
        await c.commit()
    assert copies == 0


async def test_notifies_each_queue_that_gained_an_available_job_once(
    client: Client, dsn: str
) -> None:
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute('LISTEN "public.oban_insert"')
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [Copied.new({"i": i}, queue=("a", "b", "c\td")[i % 3]) for i in range(COPY_AT)]
    jobs += [Copied.new({}, queue="only_scheduled", scheduled_at=later)]
    await client.enqueue_many(jobs)
    payloads = [n.payload async for n in listener.notifies(timeout=0.3)]
    await listener.close()
    # Elixir's payload, byte for byte; a queue of scheduled jobs only is the stager's to announce.
    assert sorted(payloads) == ['{"queue":"a"}', '{"queue":"b"}', '{"queue":"c\\td"}']


async def test_a_custom_prefix_copies_into_its_own_schema(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(schema.install_sql(prefix="my prefix").encode())
        await admin.execute("SELECT nextval('\"my prefix\".oban_jobs_id_seq')")  # ids of its own
        async with Client(dsn=dsn, prefix="my prefix", name="Prefixed") as prefixed:
            jobs = await prefixed.enqueue_many([Copied.new({"i": i}) for i in range(COPY_AT)])
        cur = await admin.execute('SELECT count(*), min(id) FROM "my prefix".oban_jobs')
        assert await cur.fetchone() == (COPY_AT, 2)
        assert [j.id for j in jobs] == list(range(2, COPY_AT + 2))
        cur = await admin.execute("SELECT count(*) FROM public.oban_jobs")
        assert await cur.fetchone() == (0,)


async def test_unique_jobs_beside_a_large_batch_still_resolve_as_unique(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    unique = Unique(period=60)
    once = Copied.new({"u": 1}, unique=unique)
    jobs = [once, *[Copied.new({"i": i}) for i in range(COPY_AT)], once]
    inserted = await client.enqueue_many(jobs)
    assert inserted[0].id is not None
    assert not inserted[0].conflict
    assert inserted[-1].conflict
    assert inserted[-1].id == inserted[0].id
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE args = '{\"u\": 1}'")
    assert await cur.fetchone() == (1,)
    again = await client.enqueue_many([Copied.new({"u": 1}, unique=unique)] * COPY_AT)
    assert all(j.conflict and j.id == inserted[0].id for j in again)


async def test_a_failure_in_the_copy_stores_and_sends_nothing(client: Client, dsn: str) -> None:
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute('LISTEN "public.oban_insert"')
    jobs = [Copied.new({"i": i}) for i in range(COPY_AT)]
    # PostgreSQL's jsonb has no NUL character: the server refuses this row, the last one.
    jobs.append(Copied.new({"s": "nul \x00 here"}))
    with pytest.raises(psycopg.errors.UntranslatableCharacter) as raised:
        await client.enqueue_many(jobs)
    # The error names the COPY, the row and the column.
    assert raised.value.diag.context is not None
    assert f"line {COPY_AT + 1}, column args" in raised.value.diag.context
    assert [n async for n in listener.notifies(timeout=0.3)] == []
    await listener.close()
    async with await psycopg.AsyncConnection.connect(dsn) as c:
        cur = await c.execute("SELECT count(*) FROM oban_jobs")
        assert await cur.fetchone() == (0,)
        # The connection went back to the pool usable.
        assert len(await client.enqueue_many(jobs[:COPY_AT])) == COPY_AT


async def test_a_failure_in_the_copy_aborts_the_callers_transaction(
    client: Client, dsn: str
) -> None:
    jobs = [*[Copied.new({"i": i}) for i in range(COPY_AT)], Copied.new({"s": "\x00"})]
    async with await psycopg.AsyncConnection.connect(dsn) as c:
        kept = await client.enqueue(Copied.new({"before": True}), conn=c)
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            await client.enqueue_many(jobs, conn=c)
        await c.rollback()
    assert await client.get_job(kept.id or 0) is None


async def test_changed_column_defaults_take_the_insert(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    # The COPY leaves inserted_at to the table: a default it does not know gives each row a
    # time of its own, which only the INSERT returns.
    await conn.execute(
        "ALTER TABLE oban_jobs ALTER COLUMN inserted_at"
        " SET DEFAULT timezone('UTC', clock_timestamp())"
    )
    await conn.commit()
    inserted = await client.enqueue_many([Copied.new({"i": i}) for i in range(COPY_AT)])
    assert len({job.inserted_at for job in inserted}) > 1
    stored = await rows(conn, [j.id for j in inserted])
    assert [j.model_dump() for j in inserted] == [Job.from_row(r).model_dump() for r in stored]
    # No id was taken for a COPY that did not happen.
    assert [j.id for j in inserted] == list(range(1, COPY_AT + 1))


async def test_a_table_with_row_security_takes_the_insert(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    # COPY refuses a table whose row security applies.
    await conn.execute(
        "ALTER TABLE oban_jobs ENABLE ROW LEVEL SECURITY; ALTER TABLE oban_jobs FORCE ROW LEVEL"
        " SECURITY; CREATE POLICY anyone ON oban_jobs USING (true) WITH CHECK (true)"
    )
    await conn.commit()
    inserted = await client.enqueue_many([Copied.new({"i": i}) for i in range(COPY_AT)])
    assert [j.id for j in inserted] == list(range(1, COPY_AT + 1))


async def test_a_rule_on_insert_is_refused_for_a_large_batch_too(
    client: Client, conn: psycopg.AsyncConnection[Any]
) -> None:
    # COPY would ignore the rule; the INSERT says it cannot follow it, whatever the batch.
    await conn.execute(
        "CREATE TABLE seen (id bigint); CREATE RULE seen AS ON INSERT TO oban_jobs"
        " DO ALSO INSERT INTO seen VALUES (NEW.id)"
    )
    await conn.commit()
    for size in (2, COPY_AT):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="rules"):
            await client.enqueue_many([Copied.new({"i": i}) for i in range(size)])


# -- property: whatever the args, the COPY stores what the INSERT stores ------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_ARGS = st.dictionaries(_TEXT, _JSON, max_size=5)
_JOBS = st.lists(
    st.builds(
        Job,
        worker=st.just("Copy.Property"),
        queue=_TEXT.filter(lambda q: bool(q.strip()) and len(q) < 20),
        args=_ARGS,
        meta=_ARGS,
        tags=st.lists(_TEXT, max_size=3),
        priority=st.integers(0, 9),
        max_attempts=st.integers(1, 25),
    ),
    min_size=2,
    max_size=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_JOBS)
def test_copy_stores_what_the_insert_stores_whatever_the_values(dsn: str, jobs: list[Job]) -> None:
    queries = Queries("public")
    # One transaction for both: the same insert time, and nothing left behind.
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        planner.COPY_AT = 2
        try:
            copied = insert_sync(conn, queries, jobs)
        finally:
            planner.COPY_AT = COPY_AT
        inserted = insert_sync(conn, queries, jobs)
        query = "SELECT * FROM oban_jobs WHERE id = ANY(%s) ORDER BY id"
        by_copy = conn.execute(query, [[j.id for j in copied]]).fetchall()
        by_insert = conn.execute(query, [[j.id for j in inserted]]).fetchall()
        conn.rollback()
    assert [{**r, "id": None} for r in by_copy] == [{**r, "id": None} for r in by_insert]
    assert [j.model_dump() | {"id": None} for j in copied] == [
        j.model_dump() | {"id": None} for j in inserted
    ]
