"""One producer per queue: claims available jobs up to its free capacity and runs them.

A fetch is one statement (``sql/fetch_jobs.sql``) claiming at most ``limit - running`` jobs with
``FOR UPDATE SKIP LOCKED``, exactly as Elixir's Basic engine, with this producer's ``uuid`` as the
second element of ``attempted_by``. Fetches are triggered by an insert notification for the
queue, a job finishing, a notifier reconnect, a signal, and a poll every ``poll_interval``; a
short cooldown between fetches turns a burst of triggers into one fetch.

Each job runs in its own task (see ``executor``); its slot is released as soon as it finishes and
its outcome goes to the node's shared acker, so the next fetch never waits for an ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from psycopg.rows import dict_row

from oban_py import executor
from oban_py.errors import format_cancel_shutdown

if TYPE_CHECKING:
    from oban_py.job import Job
    from oban_py.oban import Oban

log = structlog.get_logger("oban.producer")

#: Elixir's dispatch cooldown (5 ms, jittered 0-2x in 2.23); ours is shorter because a fetch
#: here is a single cheap statement and throughput at high concurrency depends on it.
COOLDOWN = 0.002
#: how often running jobs are checked for a cancel whose pkill notification was lost
CANCEL_CHECK_INTERVAL = 5.0
#: how long a pkilled task may ignore its cancellation before it is abandoned (slot freed)
ABANDON_AFTER = 1.0
#: Elixir's producer meta refresh_interval (ms), reported in check-ins
REFRESH_INTERVAL_MS = 30_000


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class Running:
    """A job in flight: its task and why it was cancelled, if it was."""

    __slots__ = ("abandoned", "id", "job", "reason", "task")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.id: int = job.id  # type: ignore[assignment]
        self.task: asyncio.Task[None] | None = None
        self.reason: str | None = None
        self.abandoned = False


class Producer:
    """Fetches and runs the jobs of one queue on this node."""

    def __init__(self, oban: Oban, queue: str, limit: int, *, paused: bool = False) -> None:
        self.oban = oban
        self.queue = queue
        self.limit = limit
        self.paused = paused
        self.uuid = str(uuid.uuid4())
        self.started_at = datetime.now(UTC)
        self.updated_at = self.started_at
        self.shutdown_started_at: datetime | None = None
        self.poll_interval: float = oban.config.poll_interval
        self.cooldown = COOLDOWN
        assert oban.acker is not None, "the node starts its acker before its producers"
        self._acker = oban.acker
        self._jobs: dict[int, Running] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_fetch = 0.0
        self._last_cancel_check = time.monotonic()
        self._params: dict[str, Any] = {
            "queue": queue,
            "node": oban.config.node,
            "uuid": self.uuid,
            "demand": 0,
        }

    # -- what the duties and signals see ----------------------------------------------------

    @property
    def running(self) -> list[int]:
        """Ids of the jobs running now."""
        return list(self._jobs)

    def check(self) -> dict[str, Any]:
        """The check-in Elixir producers gossip (producer meta plus running job ids)."""
        self.updated_at = datetime.now(UTC)
        check: dict[str, Any] = {
            "limit": self.limit,
            "paused": self.paused,
            "queue": self.queue,
            "node": self.oban.config.node,
            "name": self.oban.config.name,
            "uuid": self.uuid,
            "running": self.running,
            "refresh_interval": REFRESH_INTERVAL_MS,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.shutdown_started_at is not None:
            check["shutdown_started_at"] = _iso(self.shutdown_started_at)
        return check

    def wake(self) -> None:
        """Fetch soon (after the cooldown) instead of waiting for the next poll."""
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake()

    def scale(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"a queue limit must be a positive integer, got {limit!r}")
        self.limit = limit
        self.wake()

    def pkill(self, job_id: int, grace: float = 1.0) -> bool:
        """Cancel a running job: raise its flag now, cancel its task if still running after
        ``grace`` seconds."""
        running = self._jobs.get(job_id)
        if running is None:
            return False
        self._cancel(running, "pkill", grace)
        return True

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"oban.producer.{self.queue}")

    async def stop(self, grace: float) -> None:
        """Stop fetching, give running jobs ``grace`` seconds, then cancel what is left.

        Cancelled jobs get no ack: their rows stay ``executing`` for the lifeline to rescue.
        """
        await self.halt()
        await self.drain(grace)

    async def halt(self) -> None:
        """Stop fetching; running jobs go on."""
        self._stopping = True
        self.shutdown_started_at = datetime.now(UTC)
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        # Let an in-flight fetch finish: its claimed rows must be run, not left executing.
        done, _ = await asyncio.wait([task], timeout=5.0)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` for running jobs, then cancel the stragglers and wait for them."""
        tasks = [r.task for r in self._jobs.values() if r.task is not None]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        left = list(self._jobs.values())
        for running in left:
            self._cancel(running, "shutdown", None)
        stuck = [r.task for r in left if r.task is not None]
        if stuck:
            await asyncio.wait(stuck, timeout=5.0)

    def _cancel(self, running: Running, reason: str, grace: float | None) -> None:
        if running.reason is None:
            running.reason = reason
        executor.flag_cancelled(running.job)
        task = running.task
        if task is None or task.done():
            return
        if grace is None:
            task.cancel(reason)
        else:
            asyncio.get_running_loop().call_later(grace, self._cancel_late, running)

    def _cancel_late(self, running: Running) -> None:
        if running.task is not None and not running.task.done():
            running.task.cancel(running.reason)
            if running.reason == "pkill":
                asyncio.get_running_loop().call_later(ABANDON_AFTER, self._abandon, running)

    def _abandon(self, running: Running) -> None:
        # A coroutine that swallows CancelledError cannot be killed as Elixir kills a process:
        # record the kill and free its slot, and let the task run out on its own.
        if running.task is None or running.task.done() or running.abandoned:
            return
        running.abandoned = True
        job = running.job
        now = datetime.now(UTC)
        text = format_cancel_shutdown(job.worker)
        self._acker.push(executor.cancel_ack(job, text, now, pkill=True))
        log.warning("worker ignored cancellation; abandoned", job_id=running.id, queue=self.queue)
        if self._jobs.get(running.id) is running:
            del self._jobs[running.id]
            self._wake.set()

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            since = time.monotonic() - self._last_fetch
            # The cooldown gathers a trickle of freed slots into one fetch. Once half the queue
            # is free there is little left to gather, and waiting would only idle the slots
            # while the server could be claiming their next jobs.
            if since < self.cooldown and not self._half_free():
                # Jittered like Elixir's, so producers on many nodes do not fetch in lockstep.
                await asyncio.sleep((self.cooldown - since) * (0.5 + random.random()))
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self._fetch()
                if (
                    self._jobs
                    and time.monotonic() - self._last_cancel_check > CANCEL_CHECK_INTERVAL
                ):
                    await self._check_cancelled()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("fetch failed", queue=self.queue, error=repr(error))
                await asyncio.sleep(min(self.poll_interval, 1.0) * (0.5 + random.random()))

    def _half_free(self) -> bool:
        return 2 * (self.limit - len(self._jobs)) >= self.limit

    async def _fetch(self) -> None:
        self._last_fetch = time.monotonic()
        demand = self.limit - len(self._jobs)
        if self.paused or demand <= 0:
            return
        params = self._params
        params["demand"] = demand
        async with self.oban.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.oban.queries["fetch_jobs"], params)
            rows = await cur.fetchall()
        for row in rows:
            self._dispatch(row)

    def _dispatch(self, row: dict[str, Any]) -> None:
        job = executor.job_from_row(row)
        running = Running(job)
        self._jobs[running.id] = running
        running.task = asyncio.create_task(self._run(running))

    async def _run(self, running: Running) -> None:
        try:
            ack = await executor.execute(self.oban, running.job, lambda: running.reason)
            if ack is not None and not running.abandoned:
                self._acker.push(ack)
        finally:
            if self._jobs.get(running.id) is running:
                del self._jobs[running.id]
            if not self._stopping:
                self._wake.set()

    async def _check_cancelled(self) -> None:
        self._last_cancel_check = time.monotonic()
        async with self.oban.pool.connection() as conn:
            cur = await conn.execute(self.oban.queries["check_cancelled"], {"ids": self.running})
            rows = await cur.fetchall()
        for (job_id,) in rows:
            self.pkill(job_id)
