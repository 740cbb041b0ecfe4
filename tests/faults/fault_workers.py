"""Workers the fault tests' subprocess nodes import (``oban-py start --import fault_workers``).

Side effects go to tables the tests create: ``fault_effects`` (one row per run, duplicates
allowed, so a test can see what ran twice) and ``fault_once`` (primary key on job_id, so a second
run of the same job fails loudly).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from oban_py import Job, Snooze, Worker, complete_in

_pool: AsyncConnectionPool[Any] | None = None
_inflight: dict[str, int] = {}


def _slow_atexit(path: str) -> None:
    # An exporter flushing at exit (OpenTelemetry's batch processors do): it takes its time.
    time.sleep(1.5)
    Path(path).write_text("flushed")


if "FAULT_ATEXIT_FILE" in os.environ:
    atexit.register(_slow_atexit, os.environ["FAULT_ATEXIT_FILE"])


async def pool() -> AsyncConnectionPool[Any]:
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(
            # FAULT_EFFECTS_DSN: side effects on connections the fault does not touch (apart
            # from the node's DSN when that goes through a pooler under test).
            os.environ.get("FAULT_EFFECTS_DSN") or os.environ["OBAN_DSN"],
            min_size=1,
            max_size=8,
            open=False,
            # Named so connection-loss tests terminate the node's connections, not these.
            kwargs={"autocommit": True, "application_name": "fault_effects"},
        )
        await _pool.open()
    return _pool


class Effect(Worker):
    """Commits a side effect, then sleeps ``ms``; slow on attempt 1 when ``slow_first`` is set."""

    name = "Faults.Effect"

    async def process(self, job: Job) -> None:
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
        ms = job.args.get("ms", 0)
        if job.attempt == 1 and "slow_first" in job.args:
            ms = job.args["slow_first"]
        await asyncio.sleep(ms / 1000)


class Once(Worker):
    """Records its run under a unique job id: a second run fails the job with a unique violation."""

    name = "Faults.Once"

    async def process(self, job: Job) -> None:
        # Jobs of this queue running in this process now, this one included: the real
        # concurrency (executing rows in the table also count runs whose ack is in flight).
        _inflight[job.queue] = _inflight.get(job.queue, 0) + 1
        try:
            async with (await pool()).connection() as conn:
                await conn.execute(
                    "INSERT INTO fault_once (job_id, queue, node, inflight)"
                    " VALUES (%s, %s, %s, %s)",
                    (job.id, job.queue, (job.attempted_by or ["?"])[0], _inflight[job.queue]),
                )
            await asyncio.sleep(job.args.get("ms", 0) / 1000)
        finally:
            _inflight[job.queue] -= 1


class Slow(Worker):
    """Sleeps far past its timeout."""

    name = "Faults.Slow"

    def timeout(self, job: Job) -> float:
        return 0.2

    async def process(self, job: Job) -> None:
        await asyncio.sleep(30)


class StuckSync(Worker):
    """A thread that ignores ``job.cancelled()``; bounded so a failed test leaves no zombie."""

    name = "Faults.StuckSync"

    def process(self, job: Job) -> None:
        deadline = time.monotonic() + job.args.get("s", 40)
        while time.monotonic() < deadline:
            time.sleep(0.05)


class StuckAsync(Worker):
    """Swallows cancellation until its deadline."""

    name = "Faults.StuckAsync"

    async def process(self, job: Job) -> None:
        deadline = time.monotonic() + job.args.get("s", 40)
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue


class Mixed(Worker):
    """The soak's worker: records each run, then completes, fails once or snoozes once.

    ``mode`` "fail" raises on attempt 1 (retried after 1 s); "snooze" snoozes 1 s while
    ``max_attempts`` is still the inserted one (a snooze adds one).
    """

    name = "Faults.Mixed"

    def backoff(self, job: Job) -> float:
        return 1.0

    async def process(self, job: Job) -> Snooze | None:
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
        await asyncio.sleep(job.args.get("ms", 0) / 1000)
        mode = job.args.get("mode")
        if mode == "fail" and job.attempt == 1:
            raise RuntimeError("fails once")
        if mode == "snooze" and job.max_attempts == job.args["max"]:
            return Snooze(1)
        return None


class OnceQuick(Once):
    """``Once`` retried after 0.2 s: a run that failed on a dead connection comes back soon."""

    name = "Faults.OnceQuick"

    def backoff(self, job: Job) -> float:
        return 0.2


class SyncEffect(Worker):
    """A plain ``def`` worker: records its run with start and end, sleeping ``s`` in between."""

    name = "Faults.SyncEffect"

    def process(self, job: Job) -> None:
        import psycopg

        with psycopg.connect(os.environ["OBAN_DSN"], autocommit=True) as conn:
            conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
            time.sleep(job.args.get("s", 1))
            conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, 'done')",
                (job.id, job.attempt),
            )


class Blocker(Worker):
    """Blocks the event loop with ``time.sleep`` in ``async def process`` (the classic mistake),
    recording when each run starts and ends."""

    name = "Faults.Blocker"

    async def process(self, job: Job) -> None:
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
        time.sleep(job.args.get("s", 1))  # noqa: ASYNC251 - the point of this worker
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, 'done')",
                (job.id, job.attempt),
            )


class LeaksThread(Worker):
    """Starts a thread that is no daemon and never ends, and completes: what a careless library
    (a client with a background flusher) leaves behind."""

    name = "Faults.LeaksThread"

    async def process(self, job: Job) -> None:
        threading.Thread(target=time.sleep, args=(3600,), name="leaked", daemon=False).start()


class Later(Worker):
    """Records each run, then on attempt 1 snoozes (``mode`` "snooze") or fails (``mode``
    "fail", retried after ``s`` seconds) for ``s`` seconds; completes on the next run."""

    name = "Faults.Later"

    def backoff(self, job: Job) -> float:
        return float(job.args["s"])

    async def process(self, job: Job) -> Snooze | None:
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
        first = job.attempt == 1 and not job.errors and job.max_attempts == job.args["max"]
        if first and job.args["mode"] == "snooze":
            return Snooze(job.args["s"])
        if first and job.args["mode"] == "fail":
            raise RuntimeError("fails once")
        return None


class UsesExecutor(Worker):
    """Runs a call in the loop's default executor, whose idle thread stays until the exit."""

    name = "Faults.UsesExecutor"

    async def process(self, job: Job) -> None:
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)


class Traced(Worker):
    """Appends its start and end (wall clock, same host) to the file named by FAULT_TRACE, so a
    test can tell whether two attempts of a job ever overlapped, even while the database is
    unreachable; sleeps ``ms`` (``slow_first`` on attempt 1), in a thread when ``sync``."""

    name = "Faults.Traced"

    async def process(self, job: Job) -> None:
        _trace(job, "start")
        try:
            ms = job.args["slow_first"] if job.attempt == 1 else job.args.get("ms", 0)
            await asyncio.sleep(ms / 1000)
        finally:
            _trace(job, "end")


class TracedSync(Worker):
    name = "Faults.TracedSync"

    def process(self, job: Job) -> None:
        _trace(job, "start")
        try:
            ms = job.args["slow_first"] if job.attempt == 1 else job.args.get("ms", 0)
            time.sleep(ms / 1000)
        finally:
            _trace(job, "end")


def _trace(job: Job, event: str) -> None:
    node = (job.attempted_by or ["?"])[0]
    with open(os.environ["FAULT_TRACE"], "a") as trace:
        trace.write(f"{job.id} {job.attempt} {node} {event} {time.time()}\n")


class Span(Worker):
    """Records when it starts and ends in fault_spans (the database's clock), sleeping ``ms``
    between: what a test of cluster-wide limits measures overlaps and rates on."""

    name = "Faults.Span"

    async def process(self, job: Job) -> None:
        async with (await pool()).connection() as conn:
            await conn.execute(
                "INSERT INTO fault_spans (job_id, node, account, started_at)"
                " VALUES (%s, %s, %s, clock_timestamp())",
                (job.id, (job.attempted_by or ["?"])[0], job.args.get("account_id")),
            )
        try:
            await asyncio.sleep(job.args.get("ms", 0) / 1000)
        finally:
            async with (await pool()).connection() as conn:
                await conn.execute(
                    "UPDATE fault_spans SET ended_at = clock_timestamp() WHERE job_id = %s",
                    (job.id,),
                )


async def _until_released(path: str) -> None:
    # A file the test controls, polled: no database connection is held while waiting.
    while not await asyncio.to_thread(os.path.exists, path):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


class CompleteInTx(Worker):
    """Writes its effect and completes its job in one transaction (``complete_in``).

    On attempt 1, ``pause`` says where it waits for the file ``release`` (which the test never
    creates: it kills the node there): ``"before_commit"`` with the transaction open, after
    recording on another connection that it got there; ``"after_commit"`` once it committed,
    before the node's ack.
    """

    name = "Faults.CompleteInTx"

    async def process(self, job: Job) -> None:
        pause = job.args.get("pause") if job.attempt == 1 else None
        import psycopg

        dsn = os.environ["OBAN_DSN"]
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO fault_effects (job_id, attempt, node) VALUES (%s, %s, %s)",
                (job.id, job.attempt, (job.attempted_by or ["?"])[0]),
            )
            await complete_in(job, conn)
            if pause == "before_commit":
                async with (await pool()).connection() as other:
                    await other.execute(
                        "INSERT INTO fault_once (job_id, queue, node) VALUES (%s, %s, %s)",
                        (job.id, job.queue, "before_commit"),
                    )
                await _until_released(job.args["release"])
        if pause == "after_commit":
            await _until_released(job.args["release"])
