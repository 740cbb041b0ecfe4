"""One producer per queue: claims available jobs up to its free capacity and owns their attempts.

A fetch is one statement (``sql/fetch_jobs.sql``) claiming at most ``limit - running`` jobs with
``FOR UPDATE SKIP LOCKED``, exactly as Elixir's Basic engine, with this producer's ``uuid`` as the
second element of ``attempted_by``. Fetches are triggered by an insert notification for the
queue, a job finishing, a notifier reconnect, a signal, and a poll every ``poll_interval``; a
short cooldown between fetches turns a burst of triggers into one fetch.

Each claimed job becomes an ``Attempt`` (``attempt.py``) run in its own task, started eagerly on
Python 3.12+ (``aio.start_task``: a job that never suspends ends before the next is started);
its slot is freed as soon as it ends and its outcome goes to the node's shared acker, so the next
fetch never waits for an ack. Every claimed row gets exactly one outcome: the attempt's, a
``discarded`` one for a row that cannot be read, or a release. Reconciliation, every
``RECONCILE_INTERVAL``, releases any row still ``executing`` under this producer's uuid that it
neither runs nor has an outcome queued for, so nothing stays stuck while the node lives.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from psycopg.rows import dict_row

from oban_py import dberrors, liveness
from oban_py.aio import InUse, abandon, start_task, wait_event
from oban_py.flow import CHECK_KEY
from oban_py.job import errors
from oban_py.node import attempt as attempts
from oban_py.node import outcomes
from oban_py.node.attempt import Attempt, Interrupt

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from oban_py.flow import Flow
    from oban_py.job.model import Job
    from oban_py.node.outcomes import Ack
    from oban_py.node.runtime import Runtime

log = structlog.get_logger("oban.producer")

#: Elixir's dispatch cooldown (5 ms, jittered 0-2x in 2.23); ours is shorter because a fetch
#: here is a single cheap statement and throughput at high concurrency depends on it.
COOLDOWN = 0.002
#: how often running jobs are checked for a cancel whose pkill notification was lost
CANCEL_CHECK_INTERVAL = 5.0
#: how often rows under this producer's uuid are reconciled with the attempts it runs
RECONCILE_INTERVAL = 15.0
#: how long a pkilled task may ignore its cancellation before it is abandoned (slot freed)
ABANDON_AFTER = 1.0
#: while stopping, how often the jobs that outlive the grace are named in the log
STRAGGLER_REPORT_EVERY = 10.0
#: how soon a queue under cluster-wide limits looks again after a claim that left slots free
FLOW_RECHECK = 0.1
#: how long a stopping producer lets a fetch in flight finish (its claimed rows must run)
FETCH_FINISH = 5.0
#: Elixir's producer meta refresh_interval (ms), reported in check-ins
REFRESH_INTERVAL_MS = 30_000


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"a queue limit must be a positive integer, got {limit!r}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class Producer:
    """Fetches the jobs of one queue on this node and owns their attempts until each ends."""

    def __init__(
        self,
        runtime: Runtime,
        queue: str,
        limit: int,
        *,
        paused: bool = False,
        on_scale: Callable[[], None] | None = None,
        flow: Flow | None = None,
    ) -> None:
        _check_limit(limit)
        self.runtime = runtime
        self.queue = queue
        self.limit = limit
        #: called after every change of ``limit`` (the queue owner resizes the thread pool)
        self._on_scale = on_scale
        #: the queue's cluster-wide limits; None fetches as Elixir's Basic engine does
        self.flow = flow
        self.paused = paused
        self.uuid = str(uuid.uuid4())
        self.started_at = datetime.now(UTC)
        self.updated_at = self.started_at
        self.shutdown_started_at: datetime | None = None
        self.poll_interval: float = runtime.config.poll_interval
        self.cooldown = COOLDOWN
        #: set while the node cannot write its heartbeat: no fetching (see ``liveness``)
        self.fenced = False
        self._acker = runtime.acker
        #: the demand one fetch may claim: halved while fetches time out (dberrors.Batch)
        self._fetch_batch = dberrors.Batch(limit, name=f"fetch {queue}")
        self._outage = dberrors.Outage(log, "fetch failed", queue=queue)
        self.attempts: dict[int, Attempt] = {}
        self._abandoned: set[int] = set()
        #: the connection a fetch or a cancel check waits on now, which a stop that gives up severs
        self._using = InUse()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_fetch = 0.0
        self._last_cancel_check = time.monotonic()
        self._next_reconcile = time.monotonic() + RECONCILE_INTERVAL * (0.5 + random.random())
        self._params: dict[str, Any] = {
            "queue": queue,
            "node": runtime.config.node,
            "uuid": self.uuid,
            "demand": 0,
        }

    # -- what the duties and signals see ----------------------------------------------------

    @property
    def running(self) -> list[int]:
        """Ids of the jobs running now."""
        return list(self.attempts)

    def check(self) -> dict[str, Any]:
        """The check-in Elixir producers gossip (producer meta plus running job ids)."""
        self.updated_at = datetime.now(UTC)
        check: dict[str, Any] = {
            "limit": self.limit,
            "paused": self.paused,
            "queue": self.queue,
            "node": self.runtime.config.node,
            "name": self.runtime.config.name,
            "uuid": self.uuid,
            "running": self.running,
            "refresh_interval": REFRESH_INTERVAL_MS,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.shutdown_started_at is not None:
            check["shutdown_started_at"] = _iso(self.shutdown_started_at)
        if self.flow is not None:
            check[CHECK_KEY] = self.flow.check(self.runtime.config.lifeline.heartbeat_ttl)
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
        _check_limit(limit)
        self.limit = limit
        if self._on_scale is not None:
            self._on_scale()
        self.wake()

    def pkill(self, job_id: int, grace: float = 1.0) -> bool:
        """Cancel a running job: raise its flag now, cancel its task if still running after
        ``grace`` seconds."""
        running = self.attempts.get(job_id)
        if running is None:
            return False
        running.interrupt("pkill")
        asyncio.get_running_loop().call_later(grace, self._cancel_late, running)
        return True

    def fence(self, interrupt: bool = True) -> None:
        """Stop fetching, and with ``interrupt`` give up every running job: the node lost its
        heartbeat (``oban_py.liveness``, rule 2)."""
        self.fenced = True
        if interrupt:
            for running in list(self.attempts.values()):
                self._interrupt(running, "fenced")

    def unfence(self) -> None:
        self.fenced = False
        self.wake()

    def _interrupt(self, running: Attempt, reason: Interrupt) -> None:
        running.interrupt(reason)
        task = running.task
        if task is None or task.done():
            return
        if not running.started:
            # Claimed in this very loop iteration: cancel once its task has begun, so the
            # attempt can still write the outcome of the interrupt.
            asyncio.get_running_loop().call_soon(self._interrupt, running, reason)
            return
        task.cancel(reason)

    def _cancel_late(self, running: Attempt) -> None:
        task = running.task
        if task is not None and not task.done():
            # An async job ends here; a thread's attempt goes on waiting for its thread.
            task.cancel("pkill")
            asyncio.get_running_loop().call_later(ABANDON_AFTER, self._abandon, running)

    def _abandon(self, running: Attempt) -> None:
        # Neither a coroutine that swallows CancelledError nor a thread can be killed as Elixir
        # kills a process. The row is already cancelled, so nothing can run the job again:
        # record the kill, free the slot, and let the worker run out on its own.
        task = running.task
        if task is None or task.done() or running.id in self._abandoned:
            return
        self._abandoned.add(running.id)
        self._acker.push(outcomes.killed(running.job, datetime.now(UTC)))
        log.warning("worker ignored cancellation; abandoned", job_id=running.id, queue=self.queue)
        if self.attempts.get(running.id) is running:
            del self.attempts[running.id]
            self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"oban.producer.{self.queue}")

    async def stop(self, grace: float) -> None:
        """Stop fetching, give running jobs ``grace`` seconds, then interrupt them and wait."""
        await self.halt()
        await self.finish(grace)

    async def halt(self) -> None:
        """Stop fetching; running jobs go on."""
        self._stopping = True
        self.shutdown_started_at = datetime.now(UTC)
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        # Let an in-flight fetch finish: its claimed rows must be run, not left executing.
        done, _ = await asyncio.wait([task], timeout=FETCH_FINISH)
        if not done:
            # Severed first: cancelled, a statement on a silent network would wait for the
            # answer to psycopg's cancel request (5 s), then for the query's end (5 s more).
            # Rows it claimed meanwhile stay executing under this producer, for the lifeline.
            await abandon(task, self._using.sever)

    async def finish(self, grace: float) -> None:
        """Wait up to ``grace`` for running jobs, then interrupt them and wait until each ends.

        An async job ends at its cancellation and is released for another node; a plain
        ``def`` job's thread cannot be stopped, so it keeps its row (and the node its
        heartbeat) until it ends and its real outcome is written.
        """
        tasks = self._tasks()
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for running in list(self.attempts.values()):
            self._interrupt(running, "shutdown")
        if tasks := self._tasks():
            await asyncio.wait(tasks, timeout=ABANDON_AFTER)
        # An async job that swallowed its cancellation cannot be killed as Elixir kills a
        # process: give it up. Its row stays executing, so the release at stop marks this
        # producer dead and the leader rescues the row at once (oban_py.liveness, rule 5).
        for running in list(self.attempts.values()):
            if running.task is not None and not running.task.done() and not running.in_thread:
                log.error(
                    "job ignored its cancellation past the shutdown grace; abandoned, its row is"
                    " left for the lifeline",
                    job_id=running.id,
                    worker=running.job.worker,
                    queue=self.queue,
                )
                del self.attempts[running.id]
                self._abandoned.add(running.id)
        while tasks := self._tasks():
            _, pending = await asyncio.wait(tasks, timeout=STRAGGLER_REPORT_EVERY)
            if pending:
                log.warning(
                    "jobs still running after the shutdown grace; waiting for them to end",
                    queue=self.queue,
                    jobs={a.id: a.job.worker for a in self.attempts.values()},
                )

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [a.task for a in self.attempts.values() if a.task is not None and not a.task.done()]

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            await wait_event(self._wake, self.poll_interval)
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
                now = time.monotonic()
                if self.attempts and now - self._last_cancel_check > CANCEL_CHECK_INTERVAL:
                    await self._check_cancelled()
                if now >= self._next_reconcile:
                    await self.reconcile()
                self._fetch_batch.succeeded()
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if await dberrors.recover(self.runtime.pool, error) is dberrors.CANCELLED:
                    self._fetch_batch.cancelled()  # says so once
                else:
                    self._outage.failed(error)
                await asyncio.sleep(min(self.poll_interval, 1.0) * (0.5 + random.random()))

    def _half_free(self) -> bool:
        return 2 * (self.limit - len(self.attempts)) >= self.limit

    async def _fetch(self) -> None:
        self._last_fetch = time.monotonic()
        self._fetch_batch.full = self.limit
        demand = self._fetch_batch.limit(self.limit - len(self.attempts))
        if self.paused or self.fenced or demand <= 0:
            return
        params = self._params
        params["demand"] = demand
        async with self._using.connection(self.runtime.pool) as conn:
            # A pause may land while the connection is awaited; a fetch begun before it must
            # not claim jobs inserted after it.
            if self.paused or self.fenced:
                return
            if self.flow is None:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(self.runtime.queries["fetch_jobs"], params)
                jobs, unreadable = await attempts.claimed(cur)
            else:
                jobs, unreadable = await self._claim_within_flow(conn, self.flow, demand)
                if len(jobs) < demand:
                    # Capacity may free up on other nodes, which wake nobody here: look again
                    # soon rather than at the next poll.
                    asyncio.get_running_loop().call_later(FLOW_RECHECK, self.wake)
        for ack in unreadable:
            log.error(
                "claimed a job that cannot be read; discarded", job_id=ack.id, queue=self.queue
            )
            self._acker.push(ack)
        discard_unknown = self.runtime.config.discard_unknown_workers
        sink = self.runtime.progress
        for job in jobs:
            running = Attempt(job, discard_unknown=discard_unknown)
            job._set_private(_progress_sink=sink)
            self.attempts[running.id] = running
            # Started eagerly (3.12+), after the fetch's connection went back to the pool: a
            # job that never waits ends inside this call, its slot freed and its ack queued.
            task = start_task(self._run(running))
            if not task.done():
                running.task = task

    async def _claim_within_flow(
        self, conn: AsyncConnection[Any], flow: Flow, demand: int
    ) -> tuple[list[Job], list[Ack]]:
        # Count and claim under the queue's lock, in one transaction (oban_py/flow).
        queries, config = self.runtime.queries, self.runtime.config
        params = {**self._params, **flow.params(demand, config.lifeline.heartbeat_ttl)}
        params["finished"] = list(self._acker.owned())
        key = flow.lock_key(queries.prefix, self.queue)
        # One round trip: BEGIN, the lock, the claim and COMMIT go out together (pipeline);
        # the claim's snapshot is taken once the lock is held, so it sees every claim before.
        async with conn.pipeline(), conn.transaction():
            await conn.execute(queries["flow_lock"], {"key": key})
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(queries[flow.claim], params, prepare=False)
        return await attempts.claimed(cur)

    async def _run(self, running: Attempt) -> None:
        running.started = True
        try:
            runtime = self.runtime
            outcome = await attempts.perform(
                running,
                runtime.threads,
                runtime.config.prefix,
                runtime.middleware,
                runtime.processes,
            )
            ack = outcome.ack
            if self.runtime.progress is not None:
                await self.runtime.progress.settle(running.job)
        except BaseException as error:
            # perform never raises; should it ever, the row must still get an outcome.
            log.error("attempt failed outside the worker", job_id=running.id, error=repr(error))
            text = errors.format_exception(error)
            ack = outcomes.failure(running.job, text, datetime.now(UTC), 1.0)
        finally:
            if self.attempts.get(running.id) is running:
                del self.attempts[running.id]
            if not self._stopping:
                self._wake.set()
        if running.id in self._abandoned:
            self._abandoned.discard(running.id)
        else:
            # A workflow job's ack is followed: its releaser looks once it is written.
            self._acker.push(ack, running.job.meta.get("workflow_id"))

    async def _check_cancelled(self) -> None:
        self._last_cancel_check = time.monotonic()
        async with self._using.connection(self.runtime.pool) as conn:
            cur = await conn.execute(self.runtime.queries["check_cancelled"], {"ids": self.running})
            rows = await cur.fetchall()
        for (job_id,) in rows:
            self.pkill(job_id)

    async def reconcile(self) -> int:
        """Release rows executing under this producer that it neither runs nor has an outcome
        queued for; the number released."""
        self._next_reconcile = time.monotonic() + RECONCILE_INTERVAL * (0.8 + 0.4 * random.random())
        runtime = self.runtime
        rows = await liveness.unowned(
            runtime.pool,
            self._using,
            runtime.queries,
            self.queue,
            self.uuid,
            lambda: set(self.attempts) | self._acker.owned(),
        )
        now = datetime.now(UTC)
        released = []
        for job_id, attempted_at, exhausted in rows:
            self._acker.push(outcomes.release(job_id, attempted_at, exhausted, now))
            released.append(job_id)
        if released:
            log.warning("released jobs this node no longer runs", queue=self.queue, ids=released)
        return len(released)
