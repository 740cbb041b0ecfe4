"""Every claimed job ends in exactly one outcome, whatever the worker raises or the row holds.

Each test below is one of the ways a claimed row used to stay ``executing`` (or take the node
down) and reproduces it on a real node: a poisoned error text, a ``BaseException`` from a
worker, a row no decoder reads, an ack the database refuses, a row whose ack never arrives, a
missing heartbeats table, a heartbeat that cannot be written, sync workers after a scale.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
import structlog
from nodekit import insert, row, wait_for, wait_state

from oban_py import Oban, Record
from oban_py.config import LifelineConfig
from oban_py.job.model import Job
from oban_py.worker import Worker

RUNS: dict[int, int] = {}


class Raises(Worker):
    """Raises what ``args["raise"]`` names, with ``args["text"]`` as its message."""

    name = "Py.Life.Raises"

    def backoff(self, job: Job) -> float:
        return 600.0

    async def process(self, job: Job) -> None:
        kind = {
            "ValueError": ValueError,
            "SystemExit": SystemExit,
            "KeyboardInterrupt": KeyboardInterrupt,
            "GeneratorExit": GeneratorExit,
            "Custom": CustomBase,
            "CancelledError": asyncio.CancelledError,
        }[job.args["raise"]]
        text = job.args.get("text", "boom")
        if job.args.get("nul"):
            text += "\x00bytes"
        if job.args.get("surrogate"):
            text += b"\xff".decode("utf-8", "surrogateescape")
        raise kind(text)


class RaisesSync(Raises):
    name = "Py.Life.RaisesSync"

    def process(self, job: Job) -> None:  # type: ignore[override]
        asyncio.run(Raises.process(self, job))


class CustomBase(BaseException):
    """A library's own BaseException subclass (as some test frameworks and CLIs define)."""


class Echo(Worker):
    """Records the args it was given, so a test can see how they were decoded."""

    name = "Py.Life.Echo"

    async def process(self, job: Job) -> Record:
        RUNS[job.id] = RUNS.get(job.id, 0) + 1  # type: ignore[index]
        return Record({"args": repr(job.args)})


class Quick(Worker):
    name = "Py.Life.Quick"

    async def process(self, job: Job) -> None:
        RUNS[job.id] = RUNS.get(job.id, 0) + 1  # type: ignore[index]


class Sleeps(Worker):
    name = "Py.Life.Sleeps"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(job.args.get("s", 30))


class Concurrent(Worker):
    """A plain def worker that reports how many of its kind run at once."""

    name = "Py.Life.Concurrent"
    lock = threading.Lock()
    now = 0
    most = 0

    def process(self, job: Job) -> None:
        with Concurrent.lock:
            Concurrent.now += 1
            Concurrent.most = max(Concurrent.most, Concurrent.now)
        time.sleep(0.5)
        with Concurrent.lock:
            Concurrent.now -= 1


def node(dsn: str, **settings: Any) -> Oban:
    settings.setdefault("queues", {"life": 10})
    settings.setdefault("shutdown_grace", 0.2)
    settings.setdefault("poll_interval", 0.05)
    return Oban(dsn=dsn, peer=False, node="py-life", **settings)


async def states(conn: Any, ids: list[int]) -> dict[int, str]:
    cur = await conn.execute("SELECT id, state::text FROM oban_jobs WHERE id = ANY(%s)", (ids,))
    return dict(await cur.fetchall())


async def settled(conn: Any, ids: list[int], timeout: float = 10.0) -> dict[int, str]:  # noqa: ASYNC109
    """Wait until none of ``ids`` is available or executing; their states."""

    async def done() -> bool:
        return not {"available", "executing"} & set((await states(conn, ids)).values())

    await wait_for(done, timeout)
    return await states(conn, ids)


# -- what a worker raises ------------------------------------------------------------------------


async def test_an_error_text_with_nul_or_a_lone_surrogate_is_stored_and_holds_back_no_other_job(
    dsn: str, conn: Any
) -> None:
    poisoned = [
        await insert(
            conn, Raises.name, {"raise": "ValueError", "text": "bad", "nul": True}, queue="life"
        ),
        await insert(
            conn,
            Raises.name,
            {"raise": "ValueError", "text": "file", "surrogate": True},
            queue="life",
        ),
    ]
    fine = [await insert(conn, Quick.name, queue="life") for _ in range(20)]
    async with node(dsn) as oban:
        result = await settled(conn, poisoned + fine)
        assert oban.acker is not None
        assert oban.acker.pending == 0
    assert [result[i] for i in poisoned] == ["retryable", "retryable"]
    assert {result[i] for i in fine} == {"completed"}
    nul, surrogate = [(await row(conn, i))["errors"][0]["error"] for i in poisoned]
    assert nul.startswith("** (ValueError) bad\\0bytes")
    assert surrogate.startswith("** (ValueError) file\\udcff")


@pytest.mark.parametrize("worker", [Raises.name, RaisesSync.name])
@pytest.mark.parametrize(
    "raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "Custom", "CancelledError"]
)
async def test_a_base_exception_from_a_worker_fails_the_attempt_and_the_node_goes_on(
    dsn: str, conn: Any, worker: str, raised: str
) -> None:
    job = await insert(conn, worker, {"raise": raised, "text": "2"}, queue="life")
    async with node(dsn) as oban:
        failed = await wait_state(conn, job, "retryable")
        # The node still runs jobs afterwards.
        after = await insert(conn, Quick.name, queue="life")
        await wait_state(conn, after, "completed")
        assert oban.started
        assert oban.producers["life"].running == []
    # Wrapped as Elixir wraps exits and throws. A CancelledError the worker raised itself is
    # its own failure, not the node's cancel.
    name = {
        "Custom": f"{CustomBase.__module__}.CustomBase",
        "CancelledError": "asyncio.exceptions.CancelledError",
    }.get(raised, raised)
    assert failed["errors"][0]["error"].startswith(f"** (Oban.CrashError) ** ({name}) 2")


async def test_stored_traces_start_at_the_worker_not_in_the_library(dsn: str, conn: Any) -> None:
    job = await insert(conn, Raises.name, {"raise": "ValueError"}, queue="life")
    async with node(dsn):
        failed = await wait_state(conn, job, "retryable")
    error = failed["errors"][0]["error"]
    assert "test_attempt_lifecycle.py" in error
    assert "oban_py/" not in error
    assert "asyncio" not in error


# -- what the row holds --------------------------------------------------------------------------


async def test_rows_no_decoder_reads_are_discarded_and_strand_no_other_claimed_job(
    dsn: str, conn: Any
) -> None:
    wide = await insert(conn, Echo.name, queue="life")
    await conn.execute(
        'UPDATE oban_jobs SET args = \'{"n": 123456789012345678901234567890, "f": 1.5e400}\''
        " WHERE id = %s",
        (wide,),
    )
    not_object = await insert(conn, Echo.name, queue="life")
    await conn.execute("UPDATE oban_jobs SET args = '[1, 2]' WHERE id = %s", (not_object,))
    infinite = await insert(conn, Echo.name, queue="life")
    await conn.execute(
        "UPDATE oban_jobs SET inserted_at = 'infinity', priority = 9 WHERE id = %s", (infinite,)
    )
    fine = [await insert(conn, Quick.name, queue="life") for _ in range(5)]
    async with node(dsn):
        result = await settled(conn, [wide, not_object, infinite, *fine])
    assert result[wide] == "completed"
    assert {result[i] for i in fine} == {"completed"}
    assert (result[not_object], result[infinite]) == ("discarded", "discarded")
    assert "args must be a JSON object" in (await row(conn, not_object))["errors"][0]["error"]
    assert "cannot be read" in (await row(conn, infinite))["errors"][0]["error"]
    # Wide numbers reach the worker exactly, as Elixir wrote them.
    cur = await conn.execute("SELECT meta->>'return' FROM oban_jobs WHERE id = %s", (wide,))
    from oban_py.job.terms import decode_recorded

    recorded = decode_recorded((await cur.fetchone())[0])
    assert "'n': 123456789012345678901234567890" in recorded["args"]
    assert "'f': " + repr(15 * 10**399) in recorded["args"]  # jsonb writes numerics in full


# -- what the database does ---------------------------------------------------------------------


async def test_an_ack_the_database_refuses_is_split_out_and_written_without_what_it_refused(
    dsn: str, conn: Any
) -> None:
    # A trigger standing for any row-level refusal (a check, a policy, a full disk for one page).
    await conn.execute(
        """
        CREATE FUNCTION refuse_marked() RETURNS trigger AS $$
        BEGIN
          IF NEW.errors::text LIKE '%%poison%%' THEN RAISE EXCEPTION 'refused'; END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_marked BEFORE UPDATE ON oban_jobs
          FOR EACH ROW EXECUTE FUNCTION refuse_marked();
        """
    )
    poisoned = await insert(
        conn, Raises.name, {"raise": "ValueError", "text": "poison"}, queue="life"
    )
    fine = [await insert(conn, Quick.name, queue="life") for _ in range(30)]
    async with node(dsn):
        result = await settled(conn, [poisoned, *fine])
    assert {result[i] for i in fine} == {"completed"}
    assert result[poisoned] == "retryable"
    [entry] = (await row(conn, poisoned))["errors"]
    assert entry["error"].startswith("** (Oban.AckError)")
    assert entry["attempt"] == 1


async def test_a_row_whose_outcome_never_arrives_is_released_by_reconciliation(
    dsn: str, conn: Any
) -> None:
    async with node(dsn) as oban:
        producer = oban.producers["life"]
        running = await insert(conn, Sleeps.name, {"s": 30}, queue="life")
        await wait_state(conn, running, "executing")
        # A claim under this producer's uuid that no attempt of it runs (a lost ack).
        lost = await insert(conn, Quick.name, queue="elsewhere")
        await conn.execute(
            "UPDATE oban_jobs SET state = 'executing', queue = 'life', attempt = 1,"
            " attempted_at = timezone('UTC', now()), attempted_by = %s WHERE id = %s",
            (["py-life", producer.uuid], lost),
        )
        assert await producer.reconcile() == 1
        await wait_for(lambda: producer._acker.pending == 0)
        # Released, then fetched and run again; the running job was never touched.
        await wait_state(conn, lost, "completed")
        assert (await row(conn, running))["state"] == "executing"
        assert await producer.reconcile() == 0


async def test_a_schema_without_the_heartbeats_table_warns_once_and_runs_jobs(
    dsn: str, conn: Any
) -> None:
    await conn.execute("DROP TABLE oban_py_heartbeats")
    lifeline = LifelineConfig(heartbeat_interval=0.05, interval=0.05)
    with structlog.testing.capture_logs() as logs:
        async with Oban(
            dsn=dsn, node="py-life", queues={"life": 2}, poll_interval=0.05, lifeline=lifeline
        ) as oban:
            await wait_for(lambda: oban.is_leader, 10)
            job = await insert(conn, Quick.name, queue="life")
            await wait_state(conn, job, "completed")
            await asyncio.sleep(0.5)  # many heartbeat and lifeline passes
    missing = [e for e in logs if "oban_py_heartbeats table is missing" in e["event"]]
    assert len(missing) == 1
    assert "oban-py migrate" in missing[0]["event"]
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    assert not [e for e in logs if e["event"] == "periodic pass failed"]


async def test_a_node_that_cannot_write_its_heartbeat_stops_its_jobs_before_a_rescue(
    dsn: str, conn: Any, server_dsn: str
) -> None:
    lifeline = LifelineConfig(heartbeat_interval=0.1, heartbeat_ttl=1.0)
    async with node(dsn, lifeline=lifeline) as oban:
        job = await insert(conn, Sleeps.name, {"s": 30}, queue="life")
        await wait_state(conn, job, "executing")
        # Hold the heartbeats table so no beat can be written, as when the database is away.
        async with await psycopg.AsyncConnection.connect(dsn) as holder:
            await holder.execute("LOCK TABLE oban_py_heartbeats IN ACCESS EXCLUSIVE MODE")
            await wait_state(conn, job, "available", timeout=5)
            assert oban.producers["life"].fenced
            await asyncio.sleep(0.3)
            assert (await row(conn, job))["state"] == "available", "no fetch while fenced"
        # The next heartbeat lifts the fence and the job runs again.
        await wait_state(conn, job, "executing", timeout=5)
        assert not oban.producers["life"].fenced


async def test_sync_workers_follow_the_queue_limit_after_a_scale(dsn: str, conn: Any) -> None:
    Concurrent.most = 0
    async with node(dsn, queues={"life": 2}) as oban:
        oban._apply_signal({"action": "scale", "queue": "life", "limit": 8})
        ids = [await insert(conn, Concurrent.name, queue="life") for _ in range(8)]
        await settled(conn, ids)
    assert Concurrent.most == 8


async def test_a_job_interrupted_in_the_iteration_that_claimed_it_still_gets_its_outcome(
    dsn: str, conn: Any
) -> None:
    async with node(dsn, queues={"life": 5}, poll_interval=30) as oban:
        producer = oban.producers["life"]
        producer.pause()
        ids = [await insert(conn, Sleeps.name, {"s": 30}, queue="life") for _ in range(3)]
        producer.paused = False
        await producer._fetch()
        # Their tasks exist but have not taken a step: a cancel now would run none of their
        # code, and the rows would stay executing with nobody to write an outcome.
        producer.fence()
        for job_id in ids:
            await wait_state(conn, job_id, "available", timeout=5)
        assert producer.attempts == {}


async def test_an_ack_refused_even_degraded_stays_pending_alone_and_never_holds_up_the_stop(
    dsn: str, conn: Any
) -> None:
    await conn.execute(
        """
        CREATE FUNCTION refuse_all_of_queue() RETURNS trigger AS $$
        BEGIN
          IF NEW.queue = 'refused' AND NEW.state <> 'executing' THEN RAISE EXCEPTION 'no'; END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_all_of_queue BEFORE UPDATE ON oban_jobs
          FOR EACH ROW EXECUTE FUNCTION refuse_all_of_queue();
        """
    )
    refused = await insert(conn, Quick.name, queue="refused")
    fine = [await insert(conn, Quick.name, queue="life") for _ in range(5)]
    oban = node(dsn, queues={"life": 5, "refused": 1})
    with structlog.testing.capture_logs() as logs:
        await oban.start()
        assert oban.acker is not None
        acker = oban.acker
        await wait_for(lambda: refused in acker._refused, 10)
        assert set((await settled(conn, fine)).values()) == {"completed"}
        started = time.monotonic()
        await oban.stop()
        assert time.monotonic() - started < 10
    assert (await row(conn, refused))["state"] == "executing"  # left for the lifeline
    assert [e for e in logs if e["event"] == "acks refused by the database at shutdown"]
