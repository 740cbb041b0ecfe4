"""Bulk actions on a filter, run in the background in bounded batches.

The request that starts one returns at once; the job list shows each run's progress (a live
fragment). A run walks the ids upwards, taking only the jobs its action can change: with
indexed conditions only, a batch is the next ``BATCH`` such ids; with unindexed ones, the
matches among the next ``SPAN`` ids, so no statement reads more than that many rows whatever
the table's size. Each batch of ids goes to the client's own ``cancel_jobs``/``retry_jobs``/
``delete_jobs``: one statement, one transaction, the SQL every other caller uses (which checks
the states again), so Elixir reads the same states it would write.
If the dashboard's process dies (or the run is stopped) mid-way, every job is either changed
by a committed batch or untouched: running the action again does the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from oban_py_ext.web.filters import JobFilter
from oban_py_ext.web.reads import Reads, unindexed

#: Ids per management call (one statement, one transaction).
BATCH = 1_000
#: Ids a batch of a run with unindexed conditions searches.
SPAN = 10_000
#: Finished runs the job list keeps showing.
KEPT = 10

Perform = Callable[[Sequence[int]], Awaitable[int]]

log = structlog.get_logger("oban.web")


@dataclass
class Run:
    number: int
    action: str
    query: str
    limit: int
    #: The ids the run walks, lowest and highest when it started.
    low: int = 0
    high: int = 0
    cursor: int = 0
    seen: int = 0
    changed: int = 0
    state: str = "running"
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def progress(self) -> float:
        """Share of the ids walked (1 once done)."""
        if self.state != "running":
            return 1.0
        span = self.high - self.low + 1
        return 0.0 if span <= 0 else min(1.0, max(0.0, (self.cursor - self.low) / span))

    @property
    def capped(self) -> bool:
        return self.seen >= self.limit


class BulkRuns:
    def __init__(self, reads: Reads, perform: Callable[[str], Perform], limit: int) -> None:
        self.reads = reads
        self.perform = perform
        self.limit = limit
        self._runs: dict[int, Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)
        #: Called when a run ends (the dashboard forgets its cached counts and pages).
        self.changed: Callable[[], None] = lambda: None

    @property
    def running(self) -> Run | None:
        """The run under way: one at a time, so runs never take the pages' connections."""
        return next((r for r in self._runs.values() if r.state == "running"), None)

    def start(self, action: str, job_filter: JobFilter) -> Run:
        run = Run(next(self._numbers), action, job_filter.query(), self.limit)
        self._runs[run.number] = run
        task = asyncio.get_running_loop().create_task(self._walk(run, job_filter))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        finished = [r for r in self._runs.values() if r.state != "running"]
        for old in finished[: max(0, len(finished) - KEPT)]:
            del self._runs[old.number]
        return run

    def runs(self) -> list[Run]:
        """Newest first."""
        return sorted(self._runs.values(), key=lambda r: -r.number)

    async def _walk(self, run: Run, job_filter: JobFilter) -> None:
        perform = self.perform(run.action)
        try:
            bounds = await self.reads.bounds()
            if bounds is not None:
                run.low, run.high = bounds
                run.cursor = run.low
                await self._batches(run, job_filter, perform)
            run.state = "done"
        except asyncio.CancelledError:
            run.state = "stopped"
            raise
        except Exception as error:  # shown on the page; the dashboard goes on
            log.warning("bulk action failed", action=run.action, error=repr(error))
            run.state, run.error = "failed", type(error).__name__
        finally:
            run.finished = time.monotonic()
            self.changed()

    async def _batches(self, run: Run, job_filter: JobFilter, perform: Perform) -> None:
        windowed = unindexed(job_filter)
        while run.cursor <= run.high and run.seen < run.limit:
            if windowed:
                high = min(run.cursor + SPAN, run.high + 1)
                ids = await self.reads.ids_between(
                    job_filter, low=run.cursor, high=high, action=run.action
                )
                next_cursor = high
            else:
                ids = await self.reads.ids_between(
                    job_filter, low=run.cursor, high=run.high + 1, limit=BATCH, action=run.action
                )
                next_cursor = ids[-1] + 1 if len(ids) == BATCH else run.high + 1
            ids = ids[: run.limit - run.seen]
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                run.changed += await perform(chunk)
                run.seen += len(chunk)
            run.cursor = next_cursor

    async def wait(self) -> None:
        """Until every run under way has ended."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
