"""Waiting for results, watching progress, and why a job is stopped: on the real database."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import nodekit
import psycopg
import pytest
from conftest import FIXTURES, ROOT
from hypothesis import given
from hypothesis import strategies as st
from nodekit import insert, row, wait_state

from oban_py import (
    Atom,
    Cancel,
    Job,
    JobCancelled,
    JobDiscarded,
    JobNotFound,
    Oban,
    Progress,
    Record,
    Results,
    WaitStopped,
    WaitTimeout,
    Worker,
    notifier,
    telemetry,
    wait_for_sync,
)
from oban_py.client.core import Client
from oban_py.job.progress import MAX_NOTE, check
from oban_py.results import channel


def _load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


export_worker = _load_example("export_worker")


class Adds(Worker):
    name = "Py.Results.Adds"
    queue = "results"

    async def process(self, job: Job) -> Record:
        await asyncio.sleep(float(job.args.get("sleep", 0)))
        return Record({"sum": job.args["a"] + job.args["b"]})


class Plain(Worker):
    name = "Py.Results.Plain"
    queue = "results"

    async def process(self, job: Job) -> str:
        return "not recorded"


class Fails(Worker):
    name = "Py.Results.Fails"
    queue = "results"

    async def process(self, job: Job) -> None:
        raise RuntimeError("the export bucket is gone")


class Gives(Worker):
    name = "Py.Results.Gives"
    queue = "results"

    async def process(self, job: Job) -> Cancel:
        return Cancel("no such account")


class Steps(Worker):
    name = "Py.Results.Steps"
    queue = "results"

    async def process(self, job: Job) -> Record:
        await asyncio.sleep(0.3)
        for step in range(1, 5):
            await job.progress(step / 4, note=f"step {step} of 4")
            await asyncio.sleep(0.15)
        return Record("done")


class Floods(Worker):
    name = "Py.Results.Floods"
    queue = "results"

    took = 0.0

    def process(self, job: Job) -> None:
        started = time.monotonic()
        for n in range(1, 1001):
            job.progress_sync(n / 1000, note=f"{n} of 1000")
        Floods.took = time.monotonic() - started


POISON_NOTES = [
    "nul\x00inside",
    "a lone \ud800 surrogate and \udcff an escaped byte",
    "".join(chr(0x10000 + (n * 7919) % 0xFFFFF) for n in range(1000)),  # 4 kB of astral planes
    "\x00" * 5_000_000,
    "last",
]


class Poisoned(Worker):
    """Reports each of ``POISON_NOTES``, the next once the node wrote one more (or 1 s later)."""

    name = "Py.Results.Poisoned"
    queue = "results"

    writer: Any = None

    async def process(self, job: Job) -> None:
        for n, note in enumerate(POISON_NOTES, 1):
            await job.progress(n / len(POISON_NOTES), note=note)
            for _ in range(100):  # 1 s at most
                if Poisoned.writer.writes >= n:
                    break
                await asyncio.sleep(0.01)


class Bursts(Worker):
    """Reports 1..50 in one loop turn, lets the first write start, then 51..100 in one turn."""

    name = "Py.Results.Bursts"
    queue = "results"

    go: asyncio.Event
    finish: asyncio.Event

    async def process(self, job: Job) -> None:
        await Bursts.go.wait()
        for n in range(1, 101):
            await job.progress(n / 100, note=f"{n}")  # never suspends: one loop turn
            if n == 50:
                for _ in range(5):
                    await asyncio.sleep(0)
        await Bursts.finish.wait()


def runner(dsn: str, **opts: Any) -> Oban:
    return Oban(dsn=dsn, queues={"results": 5}, peer=False, name="Oban", node="py-run", **opts)


def waiter(dsn: str) -> Oban:
    # No queues: an application process that only inserts and waits.
    return Oban(dsn=dsn, peer=False, name="Waiter", node="py-wait")


def insert_sync(dsn: str, **columns: Any) -> int:
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in columns.values()]
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            f"INSERT INTO oban_jobs ({names}) VALUES ({marks}) RETURNING id",  # type: ignore[arg-type]
            values,
        ).fetchone()
    assert found is not None
    return int(found[0])


def fixture_term(description: str) -> str:
    terms = json.loads((FIXTURES / "terms" / "terms.json").read_text())["terms"]
    found: str = next(t for t in terms if t["value_description"] == description)[
        "base64_compressed"
    ]
    return found


# -- results ---------------------------------------------------------------------------------


async def test_a_result_is_awaited_from_a_job_another_node_runs(dsn: str) -> None:
    async with runner(dsn), waiter(dsn) as app:
        job = await app.enqueue(Adds.new({"a": 2, "b": 3, "sleep": 1.0}))
        assert await app.wait_for(job, timeout=10) == {"sum": 5}
        # What the wait cost (with the slow re-check at its 5 s default, beyond this 1 s job):
        # one read of the row at start and one when the runner announced the outcome; the
        # LISTEN is the instance's, opened once for all its waits.
        assert app.results.reads == 2


async def test_a_completed_job_that_recorded_nothing_gives_none(dsn: str) -> None:
    async with runner(dsn), waiter(dsn) as app:
        job = await app.enqueue(Plain.new())
        assert await app.wait_for(job.id, timeout=10) is None


async def test_a_job_finished_before_the_wait_gives_its_result_at_once(dsn: str) -> None:
    async with runner(dsn):
        job = await Adds.enqueue({"a": 1, "b": 1}, oban="Oban")
        async with waiter(dsn) as app:
            await asyncio.sleep(0.5)
            assert await app.wait_for(job, timeout=5, recheck=None) == {"sum": 2}


async def test_a_result_recorded_by_an_elixir_worker_is_decoded(dsn: str) -> None:
    recorded = fixture_term("typical recorded job result: {:ok, map}")
    job_id = insert_sync(
        dsn,
        worker="Interop.RecordWorker",
        queue="elixir",
        state="completed",
        meta={"recorded": True, "return": recorded},
    )
    async with waiter(dsn) as app:
        value = await app.wait_for(job_id, timeout=5)
        found = await app.get_job(job_id)
    assert value == (Atom("ok"), {"result": 42, "items": ["a", "b"]})
    assert isinstance(value[0], Atom)
    assert found is not None
    assert found.recorded == value


async def test_an_elixir_run_job_is_learnt_of_by_the_slow_recheck(dsn: str, conn: Any) -> None:
    # An Elixir node announces nothing on our channel: the wait learns of the outcome from its
    # bounded re-check, not from a notification.
    job_id = insert_sync(dsn, worker="Interop.RecordWorker", queue="elixir", state="executing")
    recorded = fixture_term("typical recorded job result: string")
    async with waiter(dsn) as app:
        wait = asyncio.create_task(app.wait_for(job_id, timeout=10, recheck=0.3))
        await nodekit.wait_for(lambda: app.results.reads == 1)
        await asyncio.sleep(0.2)
        await conn.execute(
            "UPDATE oban_jobs SET state = 'completed', completed_at = now(),"
            " meta = jsonb_build_object('recorded', true, 'return', %s::text) WHERE id = %s",
            (recorded, job_id),
        )
        assert await wait == "done"
        assert app.results.reads <= 5


async def test_a_wait_times_out_cleanly_with_the_row_as_last_read(dsn: str) -> None:
    async with waiter(dsn) as app:  # no node runs the queue
        job = await app.enqueue(Adds.new({"a": 1, "b": 2}))
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as raised:
            await app.wait_for(job, timeout=0.3)
        assert time.monotonic() - started < 3
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.job is not None
        assert raised.value.job.state == "available"
        assert app.results._waiters == {}  # nothing left behind


async def test_a_discarded_job_raises_with_its_last_error(dsn: str) -> None:
    async with runner(dsn), waiter(dsn) as app:
        job = await app.enqueue(Fails.new(max_attempts=1))
        with pytest.raises(JobDiscarded) as raised:
            await app.wait_for(job, timeout=10)
    error = raised.value
    assert error.job.state == "discarded"
    assert error.error is not None
    assert error.error.startswith("** (RuntimeError) the export bucket is gone")
    assert "the export bucket is gone" in str(error)


async def test_a_cancelled_job_raises_with_its_cancel_reason(dsn: str) -> None:
    async with runner(dsn), waiter(dsn) as app:
        job = await app.enqueue(Gives.new())
        with pytest.raises(JobCancelled) as raised:
            await app.wait_for(job, timeout=10)
    assert raised.value.error is not None
    assert "no such account" in raised.value.error


async def test_a_job_cancelled_before_it_ran_is_learnt_of_by_the_recheck(dsn: str) -> None:
    async with waiter(dsn) as app:
        job = await app.enqueue(Adds.new({"a": 1, "b": 2}))
        wait = asyncio.create_task(app.wait_for(job, timeout=10, recheck=0.2))
        await asyncio.sleep(0.1)
        assert await app.cancel_job(job.id)  # type: ignore[arg-type]
        with pytest.raises(JobCancelled):
            await wait


async def test_waiting_for_a_job_that_does_not_exist_raises(dsn: str) -> None:
    async with waiter(dsn) as app:
        with pytest.raises(JobNotFound):
            await app.wait_for(123456, timeout=1)
        with pytest.raises(ValueError, match="inserted"):
            await app.wait_for(Adds.new({"a": 1, "b": 2}), timeout=1)


async def test_many_waits_share_one_listen_and_each_gets_its_own_result(dsn: str) -> None:
    async with runner(dsn), waiter(dsn) as app:
        jobs = await app.enqueue_many([Adds.new({"a": n, "b": n}) for n in range(20)])
        values = await asyncio.gather(*(app.wait_for(job, timeout=10) for job in jobs))
        assert values == [{"sum": 2 * n} for n in range(20)]
        notifier = app.results._notifier
        assert notifier is app.notifier  # the node's own LISTEN connection
        assert len(notifier._callbacks["py_results"]) == 1
        assert channel.full_name("public") == "public.oban_py_results"


async def test_a_plain_client_waits_through_its_own_results_hub(dsn: str) -> None:
    async with runner(dsn):
        client = Client(dsn=dsn, name="PlainClient")
        async with client, Results(client) as results:
            job = await client.enqueue(Adds.new({"a": 4, "b": 4}))
            assert await results.wait_for(job, timeout=10) == {"sum": 8}


async def _stopped_each(waits: list[asyncio.Future[Any]], job_id: int) -> None:
    """Each of ``waits`` ended, within a second, with ``WaitStopped`` for ``job_id``."""
    done, pending = await asyncio.wait(waits, timeout=1.0)
    for wait in pending:
        wait.cancel()
    assert not pending, "a wait went on after its instance stopped"
    for wait in done:
        stopped = wait.exception()
        assert isinstance(stopped, WaitStopped), repr(stopped)
        assert stopped.job_id == job_id
        assert stopped.job is not None
        assert stopped.job.state == "available"


async def _watched(watch: AsyncIterator[Progress]) -> list[Progress]:
    return [report async for report in watch]


def _in_thread(call: Callable[[], Any]) -> asyncio.Future[Any]:
    """``call()`` in a daemon thread: a sync wait that never ends fails the test, not its exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def run() -> None:
        try:
            value = call()
        except BaseException as error:
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, daemon=True).start()
    return future


async def test_waits_still_running_when_the_node_stops_end_at_once_with_wait_stopped(
    dsn: str,
) -> None:
    app = waiter(dsn)
    await app.start()
    job = await app.enqueue(Adds.new({"a": 1, "b": 1}, queue="nobody"))
    assert job.id is not None
    waits: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(app.wait_for(job, recheck=None)),
        asyncio.ensure_future(app.wait_for(job)),
        asyncio.ensure_future(_watched(app.watch(job, recheck=None))),
        _in_thread(lambda: app.wait_for_sync(job, recheck=None)),
    ]
    await nodekit.wait_for(lambda: app.results.reads == 3)
    await asyncio.sleep(0.3)  # the sync wait, on a connection of its own, reads its row too
    await app.stop()
    await _stopped_each(waits, job.id)


async def test_a_plain_clients_waits_end_when_it_or_its_results_hub_closes(dsn: str) -> None:
    client = Client(dsn=dsn, name="PlainClient")
    job = await client.enqueue(Adds.new({"a": 1, "b": 1}, queue="nobody"))
    assert job.id is not None
    results = Results(client)
    waits: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(results.wait_for(job, recheck=None)),
        asyncio.ensure_future(_watched(results.watch(job, recheck=None))),
    ]
    await nodekit.wait_for(lambda: results.reads == 2)
    await results.close()
    await _stopped_each(waits, job.id)

    results = Results(client)
    waits = [
        asyncio.ensure_future(results.wait_for(job, recheck=None)),
        _in_thread(lambda: wait_for_sync(client, job, recheck=None)),
    ]
    await nodekit.wait_for(lambda: results.reads == 1)
    await asyncio.sleep(0.3)
    await client.close()
    await _stopped_each(waits, job.id)
    await results.close()


async def test_a_reconnect_of_the_listen_connection_rereads_once(dsn: str, conn: Any) -> None:
    # An outcome announced while the LISTEN connection is down is lost; the reconnect's single
    # re-check finds it. Stood for here by an outcome no one announces, with no slow re-check.
    job_id = insert_sync(dsn, worker=Plain.name, queue="elixir", state="executing")
    async with waiter(dsn) as app:
        wait = asyncio.create_task(app.wait_for(job_id, timeout=15, recheck=None))
        await nodekit.wait_for(lambda: app.results.reads == 1)
        await conn.execute(
            "UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
            (job_id,),
        )
        await asyncio.sleep(0.5)
        assert not wait.done()
        assert app.results.reads == 1
        notifier = app.results._notifier
        assert notifier is not None
        assert notifier.backend_pid is not None
        await conn.execute("SELECT pg_terminate_backend(%s)", (notifier.backend_pid,))
        assert await wait is None
        assert app.results.reads == 2


def test_wait_for_sync_from_a_script(dsn: str) -> None:
    async def serve(stop: asyncio.Event) -> None:
        async with runner(dsn):
            await stop.wait()

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(stop),))
    thread.start()
    try:
        client = Client(dsn=dsn, name="Script")
        with client:
            job = client.enqueue_sync(Adds.new({"a": 20, "b": 22, "sleep": 0.3}))
            assert wait_for_sync(client, job, timeout=10) == {"sum": 42}
            failing = client.enqueue_sync(Fails.new(max_attempts=1))
            with pytest.raises(JobDiscarded):
                wait_for_sync(client, failing, timeout=10)
            waiting = client.enqueue_sync(Adds.new({"a": 1, "b": 1}, queue="nobody"))
            with pytest.raises(WaitTimeout):
                wait_for_sync(client, waiting, timeout=0.3)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()


async def test_jobs_show_prints_the_recorded_value_decoded(dsn: str) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app as cli_app

    recorded = fixture_term("typical recorded job result: {:ok, map}")
    job_id = insert_sync(
        dsn,
        worker="Interop.RecordWorker",
        state="completed",
        meta={
            "recorded": True,
            "return": recorded,
            "progress": {"value": 1.0, "note": "all rows", "at": "x", "attempt": 1, "seq": 9},
        },
    )
    result = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["jobs", "show", str(job_id), "--dsn", dsn]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["meta"]["return"] == recorded
    assert shown["meta"]["progress"]["note"] == "all rows"
    assert shown["recorded"] == "(Atom('ok'), {'items': ['a', 'b'], 'result': 42})"


# -- progress --------------------------------------------------------------------------------


async def test_progress_updates_are_seen_by_a_watcher_in_order(dsn: str) -> None:
    async with runner(dsn) as node, waiter(dsn) as app:
        assert node.progress is not None
        node.progress.interval = 0.05
        job = await app.enqueue(Steps.new())
        seen: list[Progress] = [update async for update in app.watch(job, timeout=10)]
        assert [(p.value, p.note) for p in seen] == [
            (0.25, "step 1 of 4"),
            (0.5, "step 2 of 4"),
            (0.75, "step 3 of 4"),
            (1.0, "step 4 of 4"),
        ]
        assert [p.seq for p in seen] == [1, 2, 3, 4]
        assert await app.wait_for(job, timeout=1) == "done"
        stored = await app.get_job(job.id)  # type: ignore[arg-type]
        assert stored is not None
        assert stored.last_progress == seen[-1]


@pytest.fixture
def progress_events() -> Iterator[list[tuple[dict[str, Any], dict[str, Any]]]]:
    events: list[tuple[dict[str, Any], dict[str, Any]]] = []
    telemetry.attach(
        "test.results.progress",
        "oban.job.progress",
        lambda _, measurements, meta: events.append((dict(measurements), dict(meta))),
    )
    yield events
    telemetry.detach("test.results.progress")


async def test_a_tight_loop_of_reports_is_throttled_and_the_last_lands(
    dsn: str, conn: Any, progress_events: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    async with runner(dsn) as node:
        assert node.progress is not None
        node.progress.interval = 0.1
        job_id = await insert(conn, Floods.name, queue="results")
        got = await wait_state(conn, job_id, "completed")
        writes = node.progress.writes
    # 1000 reports from a worker thread: one write per interval they span, plus the first and
    # the one the attempt's end settles, however many reports.
    assert 1 <= writes <= Floods.took / 0.1 + 3
    assert writes < 50
    assert got["meta"]["progress"]["value"] == 1.0
    assert got["meta"]["progress"]["note"] == "1000 of 1000"
    assert len(progress_events) == 1000
    assert progress_events[-1][0] == {"value": 1.0}
    assert progress_events[-1][1]["id"] == job_id


async def test_one_jobs_progress_writes_never_overlap_so_none_lands_out_of_order(
    dsn: str, conn: Any
) -> None:
    # Two writes of one job in flight at once could commit in either order and leave an older
    # report stored. Hold the job's row so the first write waits on it, end the attempt with a
    # newer report held, and count the progress statements waiting: only ever one.
    Bursts.go, Bursts.finish = asyncio.Event(), asyncio.Event()
    async with runner(dsn) as node, await psycopg.AsyncConnection.connect(dsn) as locker:
        assert node.progress is not None
        node.progress.interval = 0.05
        job_id = await insert(conn, Bursts.name, queue="results")
        await wait_state(conn, job_id, "executing")
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM oban_jobs WHERE id = %s FOR UPDATE", (job_id,))
            Bursts.go.set()
            await asyncio.sleep(0.3)  # the first write waits on the row; 51..100 are held
            Bursts.finish.set()
            await asyncio.sleep(0.5)  # the attempt ends: its last report must wait its turn
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE %s AND wait_event_type = 'Lock'",
                ("%progress%",),
            )
            waiting = (await cur.fetchone())[0]
        got = await wait_state(conn, job_id, "completed")
    assert waiting == 1
    assert got["meta"]["progress"]["value"] == 1.0
    assert got["meta"]["progress"]["seq"] == 100


async def test_a_report_older_than_the_stored_one_changes_nothing(dsn: str, conn: Any) -> None:
    Bursts.go, Bursts.finish = asyncio.Event(), asyncio.Event()
    async with runner(dsn) as node:
        assert node.progress is not None
        job_id = await insert(conn, Bursts.name, queue="results")
        await wait_state(conn, job_id, "executing")
        job = Job.from_row(await _raw(conn, job_id))
        at = datetime.now(UTC)
        node.progress.report(job, Progress(0.7, "newer", at, job.attempt, 7))
        await node.progress.settle(job)  # written by the time settle returns
        node.progress.report(job, Progress(0.3, "older", at, job.attempt, 3))
        await node.progress.settle(job)
        stored = (await row(conn, job_id))["meta"]["progress"]
        Bursts.go.set()
        Bursts.finish.set()
        await wait_state(conn, job_id, "completed")
    assert (stored["note"], stored["seq"]) == ("newer", 7)


async def test_every_note_is_stored_whatever_text_the_worker_gives(dsn: str, conn: Any) -> None:
    # NUL, lone surrogates, astral text and megabytes: each report is written (jsonb takes no
    # NUL or lone surrogate, a NOTIFY no more than 8000 bytes), none stalls the ones after it.
    async with runner(dsn) as node:
        assert node.progress is not None
        node.progress.interval = 0.0
        Poisoned.writer = node.progress
        job_id = await insert(conn, Poisoned.name, queue="results")
        got = await wait_state(conn, job_id, "completed")
        writes = node.progress.writes
    reports = len(POISON_NOTES)
    assert writes == reports
    assert got["meta"]["progress"]["note"] == "last"


note_text = st.text(alphabet=st.sampled_from("ab\x00\udcff\ud800é🎉\U0010ffff"), max_size=3000)


@given(note=note_text | st.text(max_size=1200))
def test_a_reports_note_is_storable_and_announceable_and_clean_text_is_kept(note: str) -> None:
    _, kept = check(0.5, note)
    assert kept is not None
    kept.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in kept
    assert len(kept) <= MAX_NOTE
    report = Progress(0.5, kept, datetime.now(UTC), 1, 1)
    assert len(notifier.encode({"id": 2**63 - 1, "progress": report.to_meta()}).encode()) < 8000
    if len(note) <= MAX_NOTE and "\x00" not in note and not re.search("[\ud800-\udfff]", note):
        assert kept == note


async def test_a_bad_progress_value_raises_in_the_worker() -> None:
    job = Job(worker="W", attempt=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        await job.progress(1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        job.progress_sync(float("nan"))
    await job.progress(0.5, note="half")  # no node: kept on the job
    assert job.last_progress is not None
    assert job.last_progress.value == 0.5


async def test_a_report_after_the_job_ended_changes_nothing(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, Plain.name, queue="results")
    async with runner(dsn) as node:
        await wait_state(conn, job_id, "completed")
        assert node.progress is not None
        late = Job.from_row(await _raw(conn, job_id))
        node.progress.report(late, Progress(0.9, None, late.completed_at, late.attempt, 1))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
    assert "progress" not in (await row(conn, job_id))["meta"]


async def _raw(conn: Any, job_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute("SELECT * FROM oban_jobs WHERE id = %s", (job_id,))
    found: dict[str, Any] = await cur.fetchone()
    return found


# -- why a job is stopped: the export worker of docs/workers.md -------------------------------


def exporter(dsn: str, **opts: Any) -> Oban:
    return Oban(dsn=dsn, queues={"exports": 2}, peer=False, name="Oban", node="py-exp", **opts)


async def test_the_export_worker_snoozes_on_shutdown_instead_of_cancelling(
    dsn: str, conn: Any
) -> None:
    job_id = await insert(conn, export_worker.Export.name, {"chunks": 200}, queue="exports")
    node = exporter(dsn, shutdown_grace=0.2)
    await node.start()
    await wait_state(conn, job_id, "executing")
    await asyncio.sleep(0.2)
    await node.stop()
    got = await row(conn, job_id)
    assert got["state"] == "scheduled"  # runs again later: not a permanent cancel
    assert got["errors"] == []
    assert got["max_attempts"] == 21


async def test_the_export_worker_stops_on_an_operators_cancel(dsn: str, conn: Any) -> None:
    job_id = await insert(conn, export_worker.Export.name, {"chunks": 200}, queue="exports")
    async with exporter(dsn) as node:
        await wait_state(conn, job_id, "executing")
        await node.cancel_job(job_id)

        async def killed() -> bool:
            return bool((await row(conn, job_id))["errors"])

        await nodekit.wait_for(killed)
    got = await row(conn, job_id)
    assert got["state"] == "cancelled"
    assert "{:cancel, :shutdown}" in got["errors"][-1]["error"]


async def test_the_export_worker_records_its_result_and_reports_progress(dsn: str) -> None:
    async with exporter(dsn) as node:
        job = await node.enqueue(export_worker.Export.new({"chunks": 4}))
        assert await node.wait_for(job, timeout=10) == {"chunks": 4}
        stored = await node.get_job(job.id)  # type: ignore[arg-type]
    assert stored is not None
    assert stored.last_progress is not None
    assert stored.last_progress.note == "chunk 4 of 4"


class SeesWhy(Worker):
    name = "Py.Results.SeesWhy"
    queue = "results"
    reasons: list[str | None] = []

    def timeout(self, job: Job) -> float:
        return 0.1 if job.args.get("timeout") else 30.0

    def process(self, job: Job) -> None:
        while not job.cancelled():
            time.sleep(0.01)
        SeesWhy.reasons.append(job.stop_reason)


async def test_stop_reason_names_a_timeout_a_cancel_and_a_shutdown(dsn: str, conn: Any) -> None:
    SeesWhy.reasons.clear()
    timed = await insert(conn, SeesWhy.name, {"timeout": True}, queue="results")
    node = runner(dsn, shutdown_grace=0.1)
    await node.start()
    got = await wait_state(conn, timed, "retryable")
    assert "Oban.TimeoutError" in got["errors"][-1]["error"]
    killed = await insert(conn, SeesWhy.name, queue="results")
    await wait_state(conn, killed, "executing")
    await node.cancel_job(killed)
    await wait_state(conn, killed, "cancelled")
    stopped = await insert(conn, SeesWhy.name, queue="results")
    await wait_state(conn, stopped, "executing")
    await node.stop()
    assert SeesWhy.reasons == ["timeout", "cancel", "shutdown"]


def test_stop_reason_is_none_while_the_job_may_go_on() -> None:
    job = Job(worker="W")
    assert job.stop_reason is None
    assert not job.cancelled()
    job._cancel("shutdown")
    assert job.stop_reason == "shutdown"
    assert job.cancelled()


class CountingCursor(psycopg.AsyncCursor[Any]):
    statements: list[str] = []

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else bytes(query).decode()
        CountingCursor.statements.append(text)
        return await super().execute(query, params, **kwargs)


async def test_a_wait_for_a_job_of_one_second_costs_two_statements(dsn: str) -> None:
    # Counted on the wire side of the client's own connections, not by the hub's counter.
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(
        dsn, kwargs={"cursor_factory": CountingCursor, "autocommit": True}, open=False
    )
    await pool.open()
    client = Client(pool=pool, name="Counted")
    async with runner(dsn), client, Results(client) as results:
        job = await client.enqueue(Adds.new({"a": 1, "b": 1, "sleep": 1.0}))
        await results._listen()  # the hub's LISTEN: once per instance, on its own connection
        CountingCursor.statements.clear()
        assert await results.wait_for(job, timeout=10) == {"sum": 2}
        assert len(CountingCursor.statements) == 2
        assert all('FROM "public".oban_jobs WHERE id' in s for s in CountingCursor.statements)


def test_a_job_with_a_progress_writer_still_pickles() -> None:
    import pickle

    job = Job(worker="W", args={"a": 1})
    job._progress_sink = threading.Lock()  # type: ignore[assignment]  # stands for the writer
    job._cancel("shutdown")
    copy = pickle.loads(pickle.dumps(job))
    assert copy.args == {"a": 1}
    assert copy._progress_sink is None
    assert copy.stop_reason == "shutdown"
    assert job._progress_sink is not None


def test_the_attempts_interrupt_names_the_public_stop_reason() -> None:
    from oban_py.node.attempt import Attempt

    fenced = Attempt(Job(worker="W", id=1))
    fenced.interrupt("fenced")
    assert fenced.job.stop_reason == "fenced"
    fenced.interrupt("shutdown")  # the first reason stays
    assert fenced.job.stop_reason == "fenced"
    fenced.interrupt("pkill")  # but an operator's cancel outranks it
    assert fenced.job.stop_reason == "cancel"


async def test_an_instance_never_started_waits_on_a_listen_of_its_own_closed_by_stop(
    dsn: str,
) -> None:
    async with runner(dsn):
        app = Oban(dsn=dsn, peer=False, name="Unstarted", node="py-app")
        job = await app.enqueue(Adds.new({"a": 5, "b": 5}))
        assert await app.wait_for(job, timeout=10) == {"sum": 10}
        notifier = app.results._notifier
        assert notifier is not None
        assert notifier.connected
        await app.stop()
        assert notifier.status == "stopped"


async def test_the_announcer_gathers_batches_into_one_statement(dsn: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    from oban_py import notifier

    async with (
        AsyncConnectionPool(dsn, kwargs={"autocommit": True}) as pool,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener,
    ):
        await listener.execute('LISTEN "public.oban_py_results"')
        announcer = channel.Announcer(pool, "public", delay=0.05)
        announcer.start()
        for start in range(0, 1000, 100):  # ten ack batches, retries and snoozes among them
            announcer([(n, "completed") for n in range(start, start + 100)])
            announcer([(5000 + start, "retryable"), (6000 + start, "scheduled")])
        announcer([(9999, "discarded"), (9998, "cancelled")])
        await asyncio.sleep(0.3)
        await announcer.stop()
        assert announcer.sent == 1
        named: list[int] = []
        async for message in listener.notifies(timeout=1.0):
            payload = notifier.decode(message.payload)
            assert isinstance(payload, dict)
            named.extend(payload["done"])
    assert sorted(named) == [*range(1000), 9998, 9999]


async def test_poison_messages_on_the_channel_wake_nothing_and_break_nothing(
    dsn: str, conn: Any
) -> None:
    job_id = insert_sync(dsn, worker=Steps.name, queue="results", state="executing", attempt=1)
    poison = [
        '{"done": [[1], {"a": 1}, null, "1", 1.5, true]}',
        '{"done": "everything"}',
        '{"id": [1], "progress": {"value": 0.5}}',
        f'{{"id": {job_id}, "progress": {{"value": "half", "at": 3}}}}',
        f'{{"id": {job_id}, "progress": null}}',
        "not json at all",
        "Z:not base64 gzip",
    ]
    async with waiter(dsn) as app:
        updates: list[Progress] = []

        async def watch() -> None:
            async for update in app.watch(job_id, timeout=10, recheck=None):
                updates.append(update)

        watching = asyncio.create_task(watch())
        waiting = asyncio.create_task(app.wait_for(job_id, timeout=10, recheck=None))
        await nodekit.wait_for(lambda: app.results.reads == 2)
        for text in poison:
            await conn.execute("SELECT pg_notify('public.oban_py_results', %s)", (text,))
        await asyncio.sleep(0.3)
        assert app.results.reads == 2  # nothing woke either of them
        assert updates == []
        await conn.execute(
            "UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
            (job_id,),
        )
        await conn.execute(
            "SELECT pg_notify('public.oban_py_results', %s)", (f'{{"done": [{job_id}]}}',)
        )
        assert await waiting is None
        await watching
