"""Waiting for a job's result, and watching its progress, without polling.

``Results`` is one instance's hub: it LISTENs on ``<prefix>.oban_py_results`` once (on the node's
notifier when it has one, else on a notifier of its own) and wakes the waits of the jobs each
message names. A wait costs one read of the row when it starts and one per wake-up:

- a ``done`` message naming the job (sent by whichever oban_py node wrote its outcome);
- a reconnect of the LISTEN connection (messages sent while it was down are lost), once;
- the slow re-check, every ``recheck`` seconds (``RECHECK`` by default): the only way to learn
  that a job ended without an announcement, because an Elixir node ran it, an operator
  cancelled or deleted it before it ran, or a Lifeline discarded it. ``recheck=None`` turns it
  off for jobs only oban_py nodes run.

LISTEN comes before the first read, so a job that ends between the two is never missed. A wait
or watch still running when the hub closes, or when its client closes, ends at once with
``WaitStopped``: nothing would wake it any more, and its reads would fail on a closed pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from oban_py.client.core import Client
from oban_py.job.model import Job
from oban_py.job.progress import Progress
from oban_py.notifier import Notifier
from oban_py.results import channel
from oban_py.results.errors import WaitStopped, WaitTimeout, outcome

log = structlog.get_logger("oban.results")

#: Seconds between the slow re-checks of a wait (see the module's docs).
RECHECK = 5.0


def job_id_of(job: Job | int) -> int:
    job_id = job if isinstance(job, int) and not isinstance(job, bool) else getattr(job, "id", None)
    if not isinstance(job_id, int):
        raise ValueError(f"wait for a job that was inserted (with an id), got {job!r}")
    return job_id


class _Waiter:
    __slots__ = ("event", "queue", "stopped")

    def __init__(self, watching: bool) -> None:
        self.event = asyncio.Event()
        #: set (then woken) when the hub or its client closes: the wait raises ``WaitStopped``
        self.stopped = False
        #: a watch's reports, in arrival order; None marks a wake-up to read the row
        self.queue: asyncio.Queue[Progress | None] | None = asyncio.Queue() if watching else None

    def wake(self) -> None:
        self.event.set()
        if self.queue is not None:
            self.queue.put_nowait(None)

    def progress(self, report: Progress) -> None:
        if self.queue is not None:
            self.queue.put_nowait(report)


class Results:
    """Waits for the results of one instance's jobs (``Oban.wait_for`` uses the node's).

    ``notifier`` is the node's running notifier; without one the hub opens its own LISTEN
    connection on first use, closed by ``close()`` (or ``async with``).
    """

    def __init__(self, client: Client, notifier: Notifier | None = None) -> None:
        self.client = client
        self._notifier = notifier
        self._owns_notifier = notifier is None
        self._waiters: dict[int, set[_Waiter]] = {}
        self._listening = False
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: rows read (and returned) by waits and watches, for tests and the docs' cost figures
        self.reads = 0

    async def __aenter__(self) -> Results:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """End the waits and watches still running (they raise ``WaitStopped``) and stop the
        hub's own LISTEN connection, if it opened one. Waits started later listen again."""
        self._stop_waits()
        self.client._on_close.discard(self._client_closed)
        notifier, self._notifier = self._notifier, None
        self._listening = False
        if self._owns_notifier and notifier is not None:
            await notifier.stop()

    # -- waiting -------------------------------------------------------------------------------

    async def wait_for(
        self,
        job: Job | int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        recheck: float | None = RECHECK,
    ) -> Any:
        """The value ``job`` recorded (``Record``; None when it recorded nothing) once it
        completes. Raises ``JobDiscarded`` / ``JobCancelled`` (with its last error),
        ``JobNotFound``, ``WaitTimeout`` after ``timeout`` seconds, or ``WaitStopped`` when
        the hub or its client closes first."""
        job_id = job_id_of(job)
        deadline = _deadline(timeout)
        # Added before the LISTEN, which may wait: a close meanwhile must stop this wait too.
        waiter = self._add(job_id, watching=False)
        last: Job | None = None
        try:
            await self._listen()
            while True:
                waiter.event.clear()
                last = await self._read(job_id, waiter, last)
                done, value = outcome(last, job_id)
                if done:
                    return value
                wait = _next_wait(deadline, recheck)
                if wait <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, last)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_delay(wait)):
                        await waiter.event.wait()
        finally:
            self._remove(job_id, waiter)

    async def watch(
        self,
        job: Job | int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        recheck: float | None = RECHECK,
    ) -> AsyncIterator[Progress]:
        """The job's progress reports, in order, as they are written; ends once the job is
        completed, discarded or cancelled (``wait_for`` then gives its result at once).

        Starts with the report already stored, if any. Reports written faster than they are
        announced may be skipped (``job.progress`` throttles), never reordered. Raises
        ``JobNotFound``, ``WaitTimeout`` once ``timeout`` seconds have passed, or
        ``WaitStopped`` when the hub or its client closes first.
        """
        job_id = job_id_of(job)
        deadline = _deadline(timeout)
        waiter = self._add(job_id, watching=True)
        assert waiter.queue is not None
        seen = (0, 0)
        row: Job | None = None
        try:
            await self._listen()
            read = True
            while True:
                if read:
                    row = await self._read(job_id, waiter, row)
                    stored = row.last_progress if row is not None else None
                    if stored is not None and stored.key > seen:
                        seen = stored.key
                        yield stored
                    try:
                        done, _ = outcome(row, job_id)
                    except LookupError:
                        raise
                    except Exception:
                        done = True
                    if done:
                        return
                wait = _next_wait(deadline, recheck)
                if wait <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, row)
                try:
                    async with asyncio.timeout(_delay(wait)):
                        item = await waiter.queue.get()
                except TimeoutError:
                    item = None
                if item is None:
                    read = True
                    continue
                if waiter.stopped:
                    raise WaitStopped(job_id, row)
                read = False
                if item.key > seen:
                    seen = item.key
                    yield item
        finally:
            self._remove(job_id, waiter)

    # -- the shared LISTEN -----------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._listening:
            return
        async with self._lock:
            if self._listening:
                return
            client = self.client
            if self._notifier is None:
                await client.open()
                self._notifier = Notifier(
                    client.config, client.dsn or client.pool.conninfo, pool=client.pool
                )
                self._owns_notifier = True
                await self._notifier.start()
            self._notifier.listen(channel.NAME, self._on_message)
            self._notifier.on_reconnect(self._wake_all)
            self._loop = asyncio.get_running_loop()
            client._on_close.add(self._client_closed)
            self._listening = True
            try:
                await self._notifier.wait_listening()
            except TimeoutError:
                # The database is away: the waits go on, woken by the reconnect (which LISTENs
                # and re-checks each of them once) or by their slow re-check.
                log.warning("results channel not listened to yet; waits re-check meanwhile")

    def _on_message(self, payload: dict[str, Any]) -> None:
        done = payload.get("done")
        if isinstance(done, list):
            for job_id in done:
                if job_id.__class__ is int:
                    for waiter in self._waiters.get(job_id, ()):
                        waiter.wake()
            return
        job_id = payload.get("id")
        if job_id.__class__ is not int:
            return
        report = Progress.from_meta(payload.get("progress"))
        if report is not None:
            for waiter in self._waiters.get(job_id, ()):
                waiter.progress(report)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def _stop_waits(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.stopped = True
                waiter.wake()

    def _client_closed(self) -> None:
        # The client may be closed from another thread (``close_sync``): the waits are the
        # loop's.
        loop = self._loop
        if loop is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._stop_waits()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: its waits are gone
                loop.call_soon_threadsafe(self._stop_waits)

    def _add(self, job_id: int, *, watching: bool) -> _Waiter:
        waiter = _Waiter(watching)
        self._waiters.setdefault(job_id, set()).add(waiter)
        return waiter

    def _remove(self, job_id: int, waiter: _Waiter) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[job_id]

    async def _read(self, job_id: int, waiter: _Waiter, last: Job | None) -> Job | None:
        """The job's row, or ``WaitStopped`` once ``waiter`` is stopped (a read the close
        overtook fails on the closed pool: that failure is the stop's, not the database's)."""
        if waiter.stopped:
            raise WaitStopped(job_id, last)
        try:
            job = await self.client.get_job(job_id)
        except Exception as error:
            if waiter.stopped:
                raise WaitStopped(job_id, last) from error
            raise
        # Counted once the row is in hand: a test that changes the row after the first read
        # must not race a read still in flight.
        self.reads += 1
        return job


def _deadline(timeout: float | None) -> float:
    if timeout is not None and (not math.isfinite(timeout) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    return math.inf if timeout is None else time.monotonic() + timeout


def _next_wait(deadline: float, recheck: float | None) -> float:
    """Seconds until the next read: the re-check, bounded by the deadline (inf: never)."""
    left = deadline - time.monotonic()
    return min(left, recheck if recheck is not None and recheck > 0 else math.inf)


def _delay(wait: float) -> float | None:
    return None if math.isinf(wait) else wait
