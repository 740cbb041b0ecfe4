"""SQLAlchemy: jobs commit and roll back with the caller's session or connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from nodekit import wait_state
from oban_py_ext.sqlalchemy import (
    complete_in,
    complete_in_sync,
    enqueue,
    enqueue_many,
    enqueue_sync,
)
from sqlalchemy import URL, create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from oban_py import Client, Job, Oban, Worker


class Noted(Worker):
    name = "Py.Ext.Sqla.Noted"


class Boom(Exception):
    pass


def url(dsn: str) -> URL:
    # Every libpq parameter goes in the query string, so a socket directory as host (the
    # embedded server) works as well as a TCP host.
    params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()}
    return URL.create("postgresql+psycopg", database=params.pop("dbname"), query=params)


def workers(dsn: str) -> list[tuple[str, dict[str, object]]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(b"SELECT worker, args FROM oban_jobs ORDER BY id").fetchall()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Client]:
    async with Client(dsn=dsn, name="SqlaClient") as found:
        yield found


@pytest.fixture
def sync_client(dsn: str) -> Iterator[Client]:
    with Client(dsn=dsn) as found:  # registered as "Oban", the sync functions' default
        yield found


def test_sync_session_commit_keeps_the_job_and_rollback_drops_it(
    dsn: str, sync_client: Client
) -> None:
    engine = create_engine(url(dsn))
    with Session(engine) as session, session.begin():
        job = enqueue_sync(Noted.new({"n": 1}), session)
        assert job.id is not None
        assert job.state == "available"

    def failing() -> None:
        with Session(engine) as session, session.begin():
            enqueue_sync(Noted.new({"n": 2}), session)
            raise Boom

    with pytest.raises(Boom):
        failing()
    engine.dispose()
    assert workers(dsn) == [("Py.Ext.Sqla.Noted", {"n": 1})]


def test_sync_connection_joins_its_transaction(dsn: str, sync_client: Client) -> None:
    engine = create_engine(url(dsn))
    with engine.connect() as conn:
        enqueue_sync(Noted.new({"n": 3}), conn)
        conn.rollback()
        enqueue_sync(Noted.new({"n": 4}), conn)
        conn.execute(text("SELECT 1"))
        conn.commit()
    engine.dispose()
    assert workers(dsn) == [("Py.Ext.Sqla.Noted", {"n": 4})]


async def test_async_session_commit_keeps_the_job_and_rollback_drops_it(
    dsn: str, client: Client
) -> None:
    engine = create_async_engine(url(dsn))
    async with AsyncSession(engine) as session, session.begin():
        job = await enqueue(Noted.new({"n": 5}), session, name="SqlaClient")
        assert isinstance(job, Job)
        assert job.id is not None

    async def failing() -> None:
        async with AsyncSession(engine) as session, session.begin():
            await enqueue_many(
                [Noted.new({"n": 6}), Noted.new({"n": 7})], session, name="SqlaClient"
            )
            raise Boom

    with pytest.raises(Boom):
        await failing()
    async with engine.connect() as conn:
        await enqueue(Noted.new({"n": 8}), conn, name="SqlaClient")
        await conn.commit()
    await engine.dispose()
    assert workers(dsn) == [("Py.Ext.Sqla.Noted", {"n": 5}), ("Py.Ext.Sqla.Noted", {"n": 8})]


async def test_async_enqueue_accepts_a_sync_session(dsn: str, client: Client) -> None:
    engine = create_engine(url(dsn))
    with Session(engine) as session:
        await enqueue(Noted.new({"n": 9}), session, name="SqlaClient")
        session.commit()
    engine.dispose()
    assert workers(dsn) == [("Py.Ext.Sqla.Noted", {"n": 9})]


def test_other_drivers_are_refused_with_a_clear_error(dsn: str) -> None:
    engine = create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(TypeError, match="postgresql\\+psycopg"):
        enqueue_sync(Noted.new({}), session)


class CompletesAsync(Worker):
    name = "Py.Ext.Sqla.CompletesAsync"

    async def process(self, job: Job) -> None:
        engine = create_async_engine(url(job.args["dsn"]))
        try:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text("INSERT INTO sqla_effects VALUES (:id)"), {"id": job.id})
                await complete_in(job, session)
        finally:
            await engine.dispose()


class CompletesSync(Worker):
    name = "Py.Ext.Sqla.CompletesSync"

    def process(self, job: Job) -> None:
        engine = create_engine(url(job.args["dsn"]))
        try:
            with Session(engine) as session, session.begin():
                session.execute(text("INSERT INTO sqla_effects VALUES (:id)"), {"id": job.id})
                complete_in_sync(job, session)
                if job.args.get("fail"):
                    raise Boom
        finally:
            engine.dispose()


async def test_workers_complete_in_their_session_transaction(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE sqla_effects (job_id bigint NOT NULL)")
        async with Oban(dsn=dsn, queues={"default": 3}, peer=False, name="SqlaNode") as node:
            jobs = await node.enqueue_many(
                [
                    CompletesAsync.new({"dsn": dsn}),
                    CompletesSync.new({"dsn": dsn}),
                    CompletesSync.new({"dsn": dsn, "fail": True}, max_attempts=1),
                ]
            )
            states = [
                (await wait_state(conn, j.id or 0, "completed", "discarded"))["state"] for j in jobs
            ]
        cur = await conn.execute("SELECT job_id FROM sqla_effects ORDER BY job_id")
        effects = [r[0] for r in await cur.fetchall()]
    assert states == ["completed", "completed", "discarded"]
    assert effects == [jobs[0].id, jobs[1].id]


ran: list[int] = []


class Counts(Worker):
    name = "Py.Ext.Sqla.Counts"

    def process(self, job: Job) -> None:
        ran.append(job.args["n"])


def test_inline_mode_runs_a_session_job_once_the_session_commits(dsn: str) -> None:
    from oban_py.testing import TestingClient

    ran.clear()
    testing = TestingClient("inline", dsn=dsn)
    engine = create_engine(url(dsn))
    try:
        with Session(engine) as session, session.begin():
            enqueue_sync(Counts.new({"n": 1}), session)
            assert ran == []  # not before the commit
        testing.settle_sync()
        assert ran == [1]

        with Session(engine) as session, session.begin():
            enqueue_sync(Counts.new({"n": 2}), session)
            session.rollback()
        testing.settle_sync()
        assert ran == [1]
    finally:
        engine.dispose()
        testing.close_sync()
