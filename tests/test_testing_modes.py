"""oban_py.testing on a database other tests share (issue 14, items 9-11): ``with mode(...)``,
``reset``, drains scoped to what a test enqueued, inline jobs held until their commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from oban_py import ObanError
from oban_py.job.model import Job
from oban_py.testing import TestingClient, all_enqueued, drain_queue, mode, reset
from oban_py.worker import Worker

pytest_plugins = ("pytester",)

ran: list[Any] = []


class Note(Worker):
    name = "Modes.Note"
    queue = "notes"

    async def process(self, job: Job) -> None:
        ran.append(job.args["n"])


class Chain(Worker):
    """Enqueues its successor: a scoped recursive drain must run it too."""

    name = "Modes.Chain"
    queue = "notes"

    async def process(self, job: Job) -> None:
        ran.append(job.args["n"])
        if job.args["n"] > 0:
            await Chain.enqueue({"n": job.args["n"] - 1})


class SeesUser(Worker):
    """Looks for the user row on a connection of its own: proof it runs after the commit."""

    name = "Modes.SeesUser"
    dsn = ""

    async def process(self, job: Job) -> None:
        async with await psycopg.AsyncConnection.connect(SeesUser.dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM users WHERE email = %s", (job.args["email"],)
            )
            row = await cur.fetchone()
        ran.append(("seen", job.args["email"], row[0] if row else None))


@pytest.fixture(autouse=True)
def forget() -> None:
    ran.clear()


@pytest.fixture
async def manual(dsn: str) -> AsyncIterator[TestingClient]:
    client = TestingClient("manual", dsn=dsn)
    try:
        yield client
    finally:
        await client.close()


async def test_mode_switches_a_manual_client_to_inline_for_the_block(
    manual: TestingClient,
) -> None:
    with mode("inline"):
        assert manual.active_mode == "inline"
        done = await Note.enqueue({"n": 1})
        with mode("disabled"):
            assert (await Note.enqueue({"n": 2})).id is None
        assert manual.active_mode == "inline"
    assert done.state == "completed"
    assert ran == [1]
    assert manual.active_mode == "manual"
    stored = await Note.enqueue({"n": 3})
    assert stored.id is not None
    assert ran == [1]
    assert [j.id for j in await all_enqueued(manual)] == [stored.id]


def test_mode_refuses_an_unknown_mode_and_restores_after_an_exception() -> None:
    with pytest.raises(ValueError, match="testing mode must be one of"), mode("eager"):  # type: ignore[arg-type]
        pass
    client = TestingClient("inline")
    with pytest.raises(RuntimeError), mode("disabled"):
        raise RuntimeError("test body failed")
    assert client.active_mode == "inline"


async def test_scoped_drain_runs_only_this_clients_jobs(dsn: str) -> None:
    other = TestingClient("manual", dsn=dsn, name="Other")
    mine = TestingClient("manual", dsn=dsn)  # registered as "Oban", last: Worker.enqueue uses it
    try:
        theirs = await other.enqueue(Note.new({"n": "theirs"}))
        await other.enqueue(Note.new({"n": "theirs later"}, schedule_in=60))
        await Note.enqueue({"n": "mine"})
        await Chain.enqueue({"n": 2})
        counts = await drain_queue(
            mine, "notes", scoped=True, with_recursion=True, with_scheduled=True
        )
        assert counts["completed"] == 4
        assert sorted(map(str, ran)) == ["0", "1", "2", "mine"]
        # The other test's jobs were neither run nor staged.
        left = await all_enqueued(other, queue="notes")
        assert {(j.id == theirs.id, j.state) for j in left} == {
            (True, "available"),
            (False, "scheduled"),
        }
        assert len(mine.enqueued) == 4  # the chain's children were recorded as they were enqueued
        with pytest.raises(ValueError, match="needs a TestingClient"):
            await drain_queue(
                other.__class__.__mro__[1](dsn=dsn, name="Plain"), "notes", scoped=True
            )
    finally:
        await mine.close()
        await other.close()


async def test_reset_deletes_all_jobs_or_only_this_clients(dsn: str) -> None:
    other = TestingClient("manual", dsn=dsn, name="Other")
    mine = TestingClient("manual", dsn=dsn, name="Mine")
    try:
        await other.enqueue(Note.new({"n": 1}))
        await mine.enqueue(Note.new({"n": 2}))
        await mine.enqueue(Note.new({"n": 3}))
        assert await reset(mine, scoped=True) == 2
        assert mine.enqueued == []
        assert await reset(mine, scoped=True) == 0
        assert len(await all_enqueued(other)) == 1
        assert await reset(other) == 1
        assert await all_enqueued(other) == []
    finally:
        await mine.close()
        await other.close()


async def test_reset_of_an_inline_client_forgets_what_it_ran() -> None:
    client = TestingClient("inline")
    try:
        await Note.enqueue({"n": 1})
        assert len(client.performed) == 1
        assert await reset(client) == 0
        assert client.performed == []
    finally:
        await client.close()


async def test_inline_without_a_database_explains_what_a_connection_needs() -> None:
    client = TestingClient("inline")
    try:
        with pytest.raises(
            ObanError, match=r"was given no database.*TestingClient\('inline', dsn=\.\.\.\)"
        ):
            async with client.pool.connection():
                pass
        with pytest.raises(ObanError, match="manual mode cannot have a connection"), mode("manual"):
            await Note.enqueue({"n": 1})
    finally:
        await client.close()


async def test_inline_job_in_a_transaction_runs_after_the_commit(dsn: str) -> None:
    SeesUser.dsn = dsn
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute("CREATE TABLE users (email text)")
    client = TestingClient("inline", dsn=dsn)
    try:
        async with client.pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("INSERT INTO users VALUES ('ada@example.com')")
                held = await client.enqueue(SeesUser.new({"email": "ada@example.com"}), conn=conn)
                assert held.state == "available"
                assert ran == []
            # Committed, but the connection is not back yet: still held.
            assert ran == []
        assert ran == [("seen", "ada@example.com", 1)]
        assert [j.state for j in client.performed] == ["completed"]

        # Rolled back: never runs.
        async def failing_request() -> None:
            async with client.pool.connection() as conn, conn.transaction():
                await client.enqueue(SeesUser.new({"email": "bob@example.com"}), conn=conn)
                raise RuntimeError("request failed")

        with pytest.raises(RuntimeError):
            await failing_request()
        async with client.pool.connection() as conn, conn.transaction(force_rollback=True):
            await client.enqueue(SeesUser.new({"email": "eve@example.com"}), conn=conn)
        assert [r[1] for r in ran] == ["ada@example.com"]

        # No transaction open on the connection: at once, as without one.
        async with client.pool.connection() as conn:
            await client.enqueue(SeesUser.new({"email": "ada@example.com"}), conn=conn)
            assert len(ran) == 2
    finally:
        await client.close()


def test_a_client_follows_the_event_loop_it_is_used_in(dsn: str) -> None:
    client = TestingClient("manual", dsn=dsn)

    # Each request of Starlette's TestClient runs in a fresh loop, in another thread.
    async def request(n: int) -> None:
        await client.enqueue(Note.new({"n": n}))

    for n in range(3):
        worker = threading.Thread(target=asyncio.run, args=(request(n),))
        worker.start()
        worker.join()
    assert len(client.enqueued) == 3

    async def finish() -> int:
        found = len(await all_enqueued(client))
        await client.close()
        return found

    assert asyncio.run(finish()) == 3


# -- the pytest plugin, run as a user's suite would run it ---------------------------------------

USER_SUITE = """
import pytest
from oban_py import Job, Worker
from oban_py.testing import assert_enqueued


class Mail(Worker):
    name = "Suite.Mail"

    async def process(self, job: Job) -> None:
        return None


@pytest.fixture
def oban_dsn():
    return {dsn!r}


async def test_enqueues(oban_testing):
    await Mail.enqueue({{"to": "ada"}})
    await assert_enqueued(worker=Mail)


@pytest.mark.oban_testing("inline")
async def test_inline(oban_testing):
    assert (await Mail.enqueue({{}})).state == "completed"
"""

INLINE_WITHOUT_DATABASE = """
import pytest
from oban_py import Job, Worker


class Mail(Worker):
    name = "Suite.Mail"

    async def process(self, job: Job) -> None:
        return None


@pytest.mark.oban_testing("inline")
async def test_inline(oban_testing):
    assert not oban_testing.has_database
    assert (await Mail.enqueue({})).state == "completed"
"""


def run_suite(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    return pytester.runpytest_subprocess("-q", "-p", "no:randomly", "-p", "no:cacheprovider")


def test_the_fixture_deletes_only_the_jobs_its_test_inserted(
    pytester: pytest.Pytester, dsn: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO oban_jobs (worker, args) VALUES ('Other.Test', '{}')")
    result = run_suite(pytester, USER_SUITE.format(dsn=dsn))
    result.assert_outcomes(passed=2)
    with psycopg.connect(dsn) as conn:
        left = conn.execute("SELECT worker FROM oban_jobs").fetchall()
    assert left == [("Other.Test",)]


def test_inline_mode_needs_no_database(pytester: pytest.Pytester, monkeypatch: Any) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("OBAN_TEST_DSN", raising=False)
    run_suite(pytester, INLINE_WITHOUT_DATABASE).assert_outcomes(passed=1)


SYNC_SUITE = """
import psycopg
import pytest
from oban_py import Job, Worker
from oban_py.testing import assert_enqueued_sync, drain_queue_sync, refute_enqueued_sync


class Mail(Worker):
    name = "Suite.SyncMail"

    def process(self, job: Job) -> None:
        if job.args.get("boom"):
            raise RuntimeError("held job failed")


@pytest.fixture
def oban_dsn():
    return {dsn!r}


def test_sync_helpers(oban_testing):
    Mail.enqueue_sync({{"to": "ada"}})
    assert_enqueued_sync(worker=Mail, args={{"to": "ada"}})
    refute_enqueued_sync(worker=Mail, args={{"to": "bob"}})
    assert drain_queue_sync(oban_testing, "default", scoped=True)["completed"] == 1


@pytest.mark.oban_testing("inline")
def test_a_held_job_that_fails_fails_the_test(oban_testing):
    with psycopg.connect({dsn!r}) as conn, conn.transaction():
        Mail.enqueue_sync({{"boom": True}}, conn)


def test_a_forgotten_await(oban_testing):
    from oban_py.testing import assert_enqueued
    assert_enqueued(worker="No.Such.Worker")
"""


def test_the_fixture_in_plain_def_tests(pytester: pytest.Pytester, dsn: str) -> None:
    result = run_suite(pytester, SYNC_SUITE.format(dsn=dsn))
    # The held job's failure is raised by the fixture's teardown: its test passes, then errors.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["ERROR test_user.py::test_a_held_job_that_fails_fails_the_test*"])
    result.stdout.fnmatch_lines(["*RuntimeError: held job failed*"])
    result.stdout.fnmatch_lines(["*call assert_enqueued_sync() from sync code*"])
