"""The node's progress writer: a job's reports, throttled, stored and announced.

``job.progress(...)`` hands each report here (``ProgressSink``). At most one write per job per
``INTERVAL``: a report arriving sooner is held, and a newer one replaces it, so a tight loop of
reports costs one statement per interval and the latest report always lands (a trailing write).
A job has at most one write in flight, and the statement keeps a newer report of the attempt over
an older one, so reports land in order.
Each write is one statement (``sql/progress_update.sql``) that updates ``meta.progress`` of the
attempt still executing and NOTIFYs the report on ``oban_py_results`` for watchers.

When the attempt ends, ``settle`` writes the report still held (if any) before the outcome, so
the last report always lands. A database error is logged and the report dropped: progress is
advisory and never fails a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import structlog

from oban_py import notifier
from oban_py.job import jsonb
from oban_py.job.model import Job
from oban_py.job.progress import Progress
from oban_py.results import channel

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from oban_py.sql import Queries

log = structlog.get_logger("oban.progress")

#: Seconds between two progress writes of one job.
INTERVAL = 0.5


class _Held:
    __slots__ = ("job", "last", "report", "task", "timer", "writing")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.last = float("-inf")
        self.report: Progress | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.writing = False


class ProgressWriter:
    """Writes the progress reports of the jobs one node runs (a ``ProgressSink``)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        prefix: str,
        *,
        interval: float = INTERVAL,
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.channel = channel.full_name(prefix)
        self.interval = interval
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._held: dict[int, _Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: progress statements written (for tests and the docs' cost figures)
        self.writes = 0

    # -- ProgressSink --------------------------------------------------------------------------

    def report(self, job: Job, progress: Progress) -> None:
        if threading.get_ident() != self._thread:
            self.report_threadsafe(job, progress)
            return
        if job.id is None:
            return
        held = self._held.get(job.id)
        if held is None or held.job is not job:
            held = self._held[job.id] = _Held(job)
        held.report = progress
        if held.writing or held.timer is not None:
            return
        wait = held.last + self.interval - time.monotonic()
        if wait <= 0:
            self._spawn(held)
        else:
            held.timer = self.loop.call_later(wait, self._spawn, held)

    def report_threadsafe(self, job: Job, progress: Progress) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the node is gone
            self.loop.call_soon_threadsafe(self.report, job, progress)

    # -- writing -------------------------------------------------------------------------------

    def _spawn(self, held: _Held) -> None:
        held.timer = None
        # Marked now, not when the task first runs: reports queued in the same loop turn would
        # each spawn a write, and two writes of one job in flight at once can land out of order.
        held.writing = True
        task = self.loop.create_task(self._write(held), name="oban.progress")
        held.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, held: _Held) -> None:
        report, held.report = held.report, None
        if report is None:
            held.writing = False
            return
        held.writing = True
        held.last = time.monotonic()
        job = held.job
        try:
            stored = report.to_meta()
            params = {
                "id": job.id,
                "attempt": job.attempt,
                "seq": report.seq,
                "progress": jsonb.dumps_str(stored),
                "channel": self.channel,
                "payload": notifier.encode({"id": job.id, "progress": stored}),
            }
            async with self.pool.connection() as conn:
                await conn.execute(self.queries["progress_update"], params)
            self.writes += 1
        except Exception as error:
            log.warning("progress not stored", job_id=job.id, error=repr(error))
        finally:
            held.writing = False
        if self._held.get(job.id) is not held:  # type: ignore[arg-type]
            return  # settled: the attempt's end writes what is left
        if held.report is not None:
            held.timer = self.loop.call_later(self.interval, self._spawn, held)
        else:
            # Once the interval has passed the throttle no longer applies: forget the job.
            self.loop.call_later(self.interval, self._forget, held)

    def _forget(self, held: _Held) -> None:
        job_id = held.job.id
        if (
            job_id is not None
            and self._held.get(job_id) is held
            and held.report is None
            and held.timer is None
            and not held.writing
        ):
            del self._held[job_id]

    async def settle(self, job: Job) -> None:
        """Write the report ``job`` still holds, now: its attempt has ended and its outcome is
        about to be written, after which the report could no longer be stored. Costs nothing
        (no statement) when every report was written already."""
        held = self._held.get(job.id) if job.id is not None else None
        if held is None or held.job is not job:
            return
        del self._held[job.id]  # type: ignore[arg-type]
        try:
            await self._settle(held)
        except BaseException as error:
            # Even a cancel of the attempt's task must not keep its outcome from being
            # written: the report is what gives way.
            log.warning("progress not stored", job_id=job.id, error=repr(error))

    async def _settle(self, held: _Held) -> None:
        if held.timer is not None:
            held.timer.cancel()
            held.timer = None
        if held.task is not None and not held.task.done():
            await asyncio.wait([held.task])
            if held.timer is not None:
                held.timer.cancel()
                held.timer = None
        if held.report is not None:
            await self._write(held)

    async def stop(self) -> None:
        """Drop held reports and wait for writes in flight."""
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
        self._held.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
