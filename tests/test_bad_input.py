"""Bad input never damages the table and always ends in an error that says what to do.

Every case checks both halves: the error (type and message a user can act on) and the absence
of damage (the table is intact, other jobs still run, nothing half-inserted).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import psycopg
import pytest
from nodekit import insert, row, wait_state
from pydantic import BaseModel, ValidationError

from oban_py import (
    DatabaseUnavailable,
    InvalidArgs,
    Job,
    Oban,
    SchemaError,
    Worker,
    notifier,
    schema,
)
from oban_py.config import LifelineConfig
from oban_py.job.errors import error_entry

INJECTION = 'x"; DROP TABLE oban_jobs; --'


class Fine(Worker):
    name = "Py.Bad.Fine"

    async def process(self, job: Job) -> None:
        return None


class Amount(BaseModel):
    cents: int


class Typed(Worker):
    name = "Py.Bad.Typed"
    args_model = Amount

    async def process(self, job: Job) -> None:
        return None


class Weird:
    """Neither JSON nor a result type the library knows."""


class ReturnsOddThings(Worker):
    name = "Py.Bad.ReturnsOddThings"

    async def process(self, job: Job) -> Any:
        kind = job.args["kind"]
        if kind == "object":
            return Weird()
        if kind == "tuple":
            return ("error", "looks like Elixir but is a plain value")
        return 42


class RecordsTooMuch(Worker):
    name = "Py.Bad.RecordsTooMuch"

    async def process(self, job: Job) -> Any:
        from oban_py import Record

        # Random bytes: the term is compressed before the limit applies.
        return Record(os.urandom(100_000))


def node(dsn: str, prefix: str = "public", **queues: int) -> Oban:
    return Oban(
        dsn=dsn,
        prefix=prefix,
        queues=queues or {"bad": 5},
        peer=False,
        node="py-bad",
        poll_interval=0.05,
    )


async def table_intact(conn: psycopg.AsyncConnection[Any], prefix: str = "public") -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_tables"
        " WHERE schemaname = %s AND tablename = 'oban_jobs'",
        (prefix,),
    )
    found = await cur.fetchone()
    return found is not None and found[0] == 1


# -- connecting ------------------------------------------------------------------------------


async def test_invalid_dsn_is_a_clear_database_unavailable() -> None:
    oban = Oban(dsn="postgresql://nobody@127.0.0.1:5432/x?sslmode=bogus&&&=", peer=False)
    with pytest.raises(DatabaseUnavailable, match=r"DSN|connect"):
        await oban.start()
    await oban.stop()

    garbage = Oban(dsn="this is = not a dsn '", peer=False)
    with pytest.raises(DatabaseUnavailable, match="invalid database DSN"):
        await garbage.start()
    await garbage.stop()


async def test_unknown_role_names_the_role_and_the_server(server_dsn: str) -> None:
    # The local server trusts 127.0.0.1, so a wrong password cannot be refused; a role that does
    # not exist is refused by every auth method and gives the same kind of error.
    target = psycopg.conninfo.make_conninfo(server_dsn, user="oban_no_such_role", password="bad")
    oban = Oban(dsn=target, peer=False)
    with pytest.raises(DatabaseUnavailable) as caught:
        await oban.start()
    await oban.stop()
    message = str(caught.value)
    assert "oban_no_such_role" in message
    assert "cannot connect to PostgreSQL" in message


async def test_unreachable_server_fails_fast() -> None:
    oban = Oban(dsn="postgresql://postgres@127.0.0.1:1/postgres", peer=False)
    started = asyncio.get_running_loop().time()
    with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1"):
        await oban.start()
    await oban.stop()
    assert asyncio.get_running_loop().time() - started < 5


# -- schema ----------------------------------------------------------------------------------


async def test_missing_schema_says_how_to_install_and_creates_nothing(empty_dsn: str) -> None:
    oban = node(empty_dsn)
    with pytest.raises(SchemaError) as caught:
        await oban.start()
    await oban.stop()
    assert "is not installed" in str(caught.value)
    assert "oban-py migrate" in str(caught.value)
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        assert not await table_intact(conn)


async def test_schema_too_old_names_both_versions_and_is_left_alone(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await schema.migrate(conn, "public", 11)
    oban = node(empty_dsn)
    with pytest.raises(SchemaError, match=r"is at version 11; oban_py needs version 14"):
        await oban.start()
    await oban.stop()
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        assert await schema.migrated_version(conn, "public") == 11


# -- jobs and args ---------------------------------------------------------------------------


async def test_unknown_worker_fails_the_job_with_elixir_error_and_others_still_run(
    dsn: str, conn: Any
) -> None:
    lost = await insert(conn, "Nowhere.To.Be.Found", queue="bad", max_attempts=1)
    ok = await insert(conn, Fine.__oban_name__, queue="bad")
    async with node(dsn):
        got = await wait_state(conn, lost, "discarded")
        await wait_state(conn, ok, "completed")
    entry = got["errors"][0]
    assert entry["error"] == "** (RuntimeError) unknown worker: Nowhere.To.Be.Found"
    assert set(entry) == set(error_entry(1, "x"))


async def test_args_that_are_not_json_fail_at_build_time_and_insert_nothing(
    dsn: str, conn: Any
) -> None:
    with pytest.raises(ValidationError, match="args must serialise to JSON"):
        Fine.new({"when": object()})
    with pytest.raises(ValidationError, match="args must be a JSON object"):
        Job(worker="Py.Bad.Fine", args=[1, 2])  # type: ignore[arg-type]
    cur = await conn.execute("SELECT count(*) FROM oban_jobs")
    assert (await cur.fetchone())[0] == 0


async def test_args_failing_the_typed_model_are_refused_at_insert(dsn: str) -> None:
    with pytest.raises(InvalidArgs, match=r"Py.Bad.Typed args do not match Amount"):
        Typed.new({"cents": "many"})


async def test_stored_args_failing_the_typed_model_fail_the_job_not_the_node(
    dsn: str, conn: Any
) -> None:
    # Inserted by someone who skipped validation (an Elixir node, a manual INSERT).
    bad = await insert(conn, Typed.__oban_name__, {"cents": "many"}, queue="bad", max_attempts=1)
    good = await insert(conn, Typed.__oban_name__, {"cents": 5}, queue="bad")
    async with node(dsn):
        failed = await wait_state(conn, bad, "discarded")
        await wait_state(conn, good, "completed")
    assert "args do not match Amount" in failed["errors"][0]["error"]
    assert failed["errors"][0]["error"].startswith("** (")


async def test_oversize_record_fails_the_job_with_a_clear_error(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, RecordsTooMuch.__oban_name__, queue="bad", max_attempts=1)
    async with node(dsn):
        got = await wait_state(conn, job_id, "discarded")
    assert "RecordTooLarge" in got["errors"][0]["error"]
    assert "recorded" not in got["meta"]


@pytest.mark.parametrize("kind", ["object", "tuple", "int"])
async def test_worker_returning_an_unexpected_type_completes_like_elixir(
    dsn: str, conn: Any, kind: str
) -> None:
    # Elixir logs a warning and treats any unexpected return as success.
    job_id = await insert(conn, ReturnsOddThings.__oban_name__, {"kind": kind}, queue="bad")
    async with node(dsn):
        got = await wait_state(conn, job_id, "completed", "retryable", "discarded")
    assert got["state"] == "completed"
    assert got["errors"] == []


# -- notifications ---------------------------------------------------------------------------


async def test_malformed_notifications_are_ignored_and_the_node_keeps_working(
    dsn: str, conn: Any
) -> None:
    async with node(dsn, bad=2) as oban:
        assert oban.notifier is not None
        await oban.notifier.wait_listening()
        for text in (
            "not json",
            "Z:!!!not base64",
            "H4sIgarbage",
            "[]",
            '{"action": 42, "queue": null}',
            '{"action":"scale","queue":"bad","limit":"many"}',
            '{"action":"pkill","job_id":"x"}',
            '{"queue": {"nested": true}}',
        ):
            for chan in ("insert", "signal"):
                await conn.execute(
                    "SELECT pg_notify(%s, %s)", (notifier.channel("public", chan), text)
                )
        job_id = await insert(conn, Fine.__oban_name__, queue="bad")
        await wait_state(conn, job_id, "completed")
        assert oban.notifier.connected
        assert oban.producers["bad"].limit == 2


async def test_too_large_notification_never_fails_the_insert_or_the_transaction(
    dsn: str, conn: Any
) -> None:
    huge = {"queue": "bad", "blob": "".join(chr(0x4E00 + i % 2000) for i in range(20_000))}
    async with conn.transaction():
        await notifier.publish(conn, "public", "insert", [huge, {"queue": "bad"}])
        job = Fine.new({"n": 1}, queue="bad")
        from oban_py.client.core import insert_async
        from oban_py.sql import Queries

        [inserted] = await insert_async(conn, Queries("public"), [job])
    assert (await row(conn, inserted.id))["state"] == "available"  # type: ignore[arg-type]


async def test_compressible_large_payload_is_sent_compressed_below_the_limit() -> None:
    payload = {"queue": "bad", "blob": "a" * 50_000}
    text = notifier.encode(payload)
    assert text.startswith("Z:")
    assert len(text.encode()) < notifier.MAX_PAYLOAD
    assert notifier.decode(text) == payload


# -- names that need quoting, and injection --------------------------------------------------


@pytest.mark.parametrize(
    "queue",
    [
        # Config refuses whitespace in queue names (a node could not be configured for them).
        "q';DROP/**/TABLE/**/oban_jobs;--",
        'q"quoted"',
        "émoji-🚀-队列",
        "a.b:c/d%s%%{prefix}",
        "x" * 127,
    ],
)
async def test_queue_names_with_odd_characters_run_and_inject_nothing(
    dsn: str, conn: Any, queue: str
) -> None:
    job_id = await insert(conn, Fine.__oban_name__, queue=queue)
    async with Oban(dsn=dsn, queues={queue: 1}, peer=False, node="py-odd", poll_interval=0.05):
        got = await wait_state(conn, job_id, "completed")
    assert got["queue"] == queue
    assert await table_intact(conn)


async def test_worker_name_injection_is_stored_verbatim_and_fails_as_unknown(
    dsn: str, conn: Any
) -> None:
    name = "'); DROP TABLE oban_jobs; --"
    job_id = await insert(conn, name, queue="bad", max_attempts=1)
    async with node(dsn):
        got = await wait_state(conn, job_id, "discarded")
    assert got["worker"] == name
    assert await table_intact(conn)


async def test_prefix_injection_is_just_an_odd_schema_name(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await conn.execute(schema.install_sql("public").encode())
        decoy = await insert(conn, Fine.__oban_name__, queue="decoy")
        assert await schema.migrate(conn, INJECTION) == (0, 14)
        async with Oban(
            dsn=empty_dsn, prefix=INJECTION, queues={"bad": 2}, peer=False, poll_interval=0.05
        ) as oban:
            job = await oban.enqueue(Fine.new({"n": 1}, queue="bad"))
            cur = await conn.execute(
                psycopg.sql.SQL("SELECT state FROM {}.oban_jobs WHERE id = %s").format(
                    psycopg.sql.Identifier(INJECTION)
                ),
                (job.id,),
            )
            deadline = asyncio.get_running_loop().time() + 10
            while (await cur.fetchone()) != ("completed",):
                assert asyncio.get_running_loop().time() < deadline, "prefixed job never ran"
                await asyncio.sleep(0.02)
                cur = await conn.execute(
                    psycopg.sql.SQL("SELECT state FROM {}.oban_jobs WHERE id = %s").format(
                        psycopg.sql.Identifier(INJECTION)
                    ),
                    (job.id,),
                )
        assert await table_intact(conn, "public")
        assert await table_intact(conn, INJECTION)
        assert (await row(conn, decoy))["state"] == "available"


async def test_overlong_or_blank_names_are_refused_before_the_database() -> None:
    with pytest.raises(ValidationError):
        Fine.new({}, queue="x" * 128)
    with pytest.raises(ValidationError):
        Fine.new({}, queue="   ")
    with pytest.raises(ValidationError, match="queue name"):
        Oban(dsn="postgresql://x@127.0.0.1/x", queues={"   ": 1})
    with pytest.raises(ValidationError, match="queue name"):
        Oban(dsn="postgresql://x@127.0.0.1/x", queues={"q" * 128: 1})
    with pytest.raises(ValidationError):
        Oban(dsn="postgresql://x@127.0.0.1/x", prefix="p" * 64)


def test_fixture_error_entry_shape_matches_ours() -> None:
    from conftest import FIXTURES

    entry = json.loads((FIXTURES / "jobs" / "retryable_raise.json").read_text())["errors"][0]
    assert set(entry) == set(error_entry(1, "x"))


def test_a_heartbeat_interval_that_would_fence_a_healthy_node_is_refused_at_start() -> None:
    # Interval 4 s, ttl 6 s: a node fences itself after 3 s without a beat, between two beats.
    with pytest.raises(
        ValidationError, match=r"heartbeat_interval \(4 s\) must be at most a third"
    ):
        Oban(dsn="postgresql://localhost/x", lifeline={"heartbeat_interval": 4, "heartbeat_ttl": 6})
    LifelineConfig(heartbeat_interval=2, heartbeat_ttl=6)  # a third is enough
