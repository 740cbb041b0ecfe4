"""Writes job outcomes in batches: one guarded UPDATE for many finished jobs.

Every producer of a node pushes its acks here. A batch is flushed a few milliseconds after the
first ack arrives (or at once when it reaches ``max_batch``), so a burst of finishing jobs costs
one round trip instead of one each. The statement (``sql/ack_jobs.sql``) only touches a row still
``executing`` in the same attempt, so an ack can never undo a cancel or a rescue.

Failures are told apart by ``dberrors.classify``, the one table of what an error means:

- transient (connection lost, pool exhausted, admin shutdown, a deadlock or serialization
  failure, too many connections): the batch is kept whole, with every column, and retried
  promptly with backoff; nothing is lost and nothing is degraded. A read-only server (a
  failover) also drains the pool, so the retry runs on new connections; a cancelled statement
  (``statement_timeout``) also halves the batch size (``dberrors.Batch``), grown back slowly;
- the database refused the data (or the parameters could not be built): the batch is split in
  halves until the rows it refuses stand alone, so one bad row never holds back the others. A
  refused single ack is written again without what the database refused (its error text, its
  meta: ``outcomes.degraded``); if even that is refused it stays pending on its own, retried
  with a long backoff, logged once and counted (``oban.ack.refused``).

A run of failures is logged once (``dberrors.Outage``), and its end once.

``stop`` flushes what is left.

An ack pushed with ``follow=`` (the workflow id of a workflow job) is reported through
``on_followed`` once its batch is written, so the workflow's releaser looks at it right after
the commit; a batch with no such ack costs one empty-dict check.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from oban_py import dberrors, telemetry
from oban_py.aio import InUse, abandon, wait_event, within
from oban_py.job import errors
from oban_py.node import outcomes
from oban_py.node.outcomes import Ack

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from oban_py.results.channel import Announce
    from oban_py.sql import Queries

log = structlog.get_logger("oban.acker")


#: (parameter, Ack field index, default) of the columns most acks leave at their default
_OPTIONAL: tuple[tuple[str, int, Any], ...] = (
    ("scheduled_in", 4, None),
    ("extra_attempts", 5, 0),
    ("attempt_delta", 6, 0),
    ("errors", 7, None),
    ("metas", 8, None),
    ("pkill", 9, False),
)


#: the optional fields of an ack (all after ``at``) at their defaults
_PLAIN = tuple(default for _, _, default in _OPTIONAL)


def _literal(values: list[str]) -> str:
    # A PostgreSQL array literal for elements that need no quoting (ints, ISO timestamps, state
    # names): building one string is far cheaper than psycopg dumping a list element by element.
    return "{" + ",".join(values) + "}"


def batch_params(batch: list[Ack]) -> dict[str, Any]:
    """The ``ack_jobs.sql`` parameters of ``batch``.

    The columns every ack has go as array literals; a column where every ack has the default
    (no schedule, no error, ...) goes as an empty array, which ``unnest`` pads with NULLs and
    the statement reads as the default. A batch of plain completions so costs four strings.
    """
    # The jobs of one claim share one attempted_at object (``Job.from_row``): formatted once.
    texts: dict[datetime, str] = {}
    attempted = []
    for a in batch:
        text = texts.get(a.attempted_at)
        if text is None:
            text = texts[a.attempted_at] = a.attempted_at.isoformat()
        attempted.append(text)
    params: dict[str, Any] = {
        "ids": _literal([str(a.id) for a in batch]),
        "attempted_at": _literal(attempted),
        "states": _literal([a.state for a in batch]),
        "at": _literal([a.at.isoformat() for a in batch]),
    }
    if all(a[4:] == _PLAIN for a in batch):
        # The usual batch (plain completions): no optional column to look at one by one.
        for key, _, _ in _OPTIONAL:
            params[key] = []
        return params
    for key, index, default in _OPTIONAL:
        column = [a[index] for a in batch]
        params[key] = column if any(v != default for v in column) else []
    return params


#: A refused ack that even its degraded form cannot store is retried this often.
REFUSED_RETRY = 30.0


class Acker:
    """Batches acks from all producers of one node into single statements."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queries: Queries,
        *,
        delay: float = 0.002,
        max_batch: int = 2_000,
        max_backoff: float = 5.0,
        announce: Announce | None = None,
    ) -> None:
        self.pool = pool
        #: called after each batch is written with the (id, state) of its rows really written:
        #: the results channel's ``done`` message (``oban_py.results.channel``)
        self.announce = announce
        self.queries = queries
        self.delay = delay
        self.max_batch = max_batch
        self.max_backoff = max_backoff
        #: acks a statement may carry now: ``max_batch``, halved while statements time out
        self.batch = dberrors.Batch(max_batch, name="ack")
        self._outage = dberrors.Outage(log, "ack batch failed, retrying")
        self._pending: list[Ack] = []
        #: batches being written now: the loop's flush and a stopping queue's may overlap
        self._writing: list[list[Ack]] = []
        #: set while no batch is being written
        self._written = asyncio.Event()
        self._written.set()
        #: acks the database refused even degraded: id -> ack, retried every REFUSED_RETRY
        self._refused: dict[int, Ack] = {}
        self._event = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refused_task: asyncio.Task[None] | None = None
        #: connections a write waits on now, which a flush or stop that gives up severs
        self._using = InUse()
        #: a ``flush_within`` gave up: the database stayed out of reach for a whole timeout
        self.gave_up = False
        self.failures = 0
        #: ack id -> workflow id, for acks pushed with ``follow``
        self._followed: dict[int, str] = {}
        #: called with the workflow ids of followed acks once their batch is written
        self.on_followed: Callable[[list[str]], None] | None = None

    @property
    def pending(self) -> int:
        writing = sum(len(batch) for batch in self._writing)
        return len(self._pending) + writing + len(self._refused)

    def owned(self) -> set[int]:
        """Ids whose outcome is queued or being written: rows no one may release meanwhile."""
        owned = {a.id for a in self._pending} | set(self._refused)
        for batch in self._writing:
            owned.update(a.id for a in batch)
        return owned

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="oban.acker")

    def push(self, ack: Ack, follow: str | None = None) -> None:
        """Queue one ack; it is written with the next batch. ``follow``: a workflow id to
        report to ``on_followed`` once written."""
        if follow is not None:
            self._followed[ack.id] = follow
        self._pending.append(ack)
        self._event.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()

    async def flush(self) -> None:
        """Write everything queued now, retrying while the database is away, and wait for the
        batches another flush is writing (the acker's own loop, when a queue stops): a stopping
        queue gives up its heartbeat rows once this returns, and must not while its acks are in
        flight (the leader could rescue a row whose ack is about to land, and run it again)."""
        while True:
            await self._flush_pending()
            if not self._writing:
                return
            # Written, or put back in front of the pending acks for the next turn.
            await self._written.wait()

    async def _flush_pending(self) -> None:
        backoff = 0.05
        while self._pending:
            try:
                await self._write_batch()
                self.failures = 0
                backoff = 0.05
                self.batch.succeeded()
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.failures += 1
                delay = min(self.max_backoff, backoff) * (1 + random.random() * 0.2)
                backoff *= 2
                # A cancellation halved the batch, which says so once itself.
                if dberrors.classify(error) is not dberrors.CANCELLED:
                    self._outage.failed(error, pending=len(self._pending), retry_in=round(delay, 3))
                telemetry.execute(
                    "oban.ack.exception",
                    {"pending": len(self._pending)},
                    {"error": error, "failures": self.failures},
                )
                await asyncio.sleep(delay)

    async def flush_within(self, seconds: float) -> bool:
        """``flush``, giving up after ``seconds``: what it still waits on then is severed, not
        awaited (``aio.within``), and the unwritten acks stay pending. True when all were
        written. Once it gave up, ``stop`` waits no further for the same network."""
        try:
            await within(seconds, self.flush(), self._using.sever)
        except TimeoutError:
            self.gave_up = True
            return False
        return True

    async def stop(self, give_up_after: float = 15.0) -> None:
        """Stop the timer and flush what is left, giving up after ``give_up_after`` seconds
        (at once when a flush already gave up: the node's stop is bounded by one flush timeout,
        not two). What is not written is logged with its job ids, left for the lifeline."""
        for task in (self._task, self._refused_task):
            if task is not None:
                # A write it waits on is severed first: cancelled, a statement on a silent
                # network would wait for the server's answer. The batch goes back to pending.
                await abandon(task, self._using.sever)
        self._task = self._refused_task = None
        self._pending[:0] = list(self._refused.values())
        self._refused.clear()
        if self._pending and (self.gave_up or not await self.flush_within(give_up_after)):
            log.error(
                "acks lost at shutdown: the database stayed unreachable; their rows are left"
                " for the lifeline, which runs those jobs again",
                lost=self.pending,
                job_ids=sorted(a.id for a in self._pending),
            )
        if self._refused:
            # Stopped, so no retry task runs: their rows are left for the lifeline.
            log.error("acks refused by the database at shutdown", job_ids=sorted(self._refused))

    async def _loop(self) -> None:
        while True:
            await self._event.wait()
            if not self._full.is_set():
                await wait_event(self._full, self.delay)
            await self.flush()

    async def _write_batch(self) -> None:
        batch = self._pending[: self.batch.limit()]
        del self._pending[: len(batch)]
        if not self._pending:
            self._event.clear()
            self._full.clear()
        self._writing.append(batch)
        self._written.clear()
        try:
            await self._write(batch)
        except BaseException:
            # The database is away: put the batch back in front, so nothing is lost and order
            # is kept.
            self._pending[:0] = batch
            self._event.set()
            raise
        finally:
            self._writing.remove(batch)
            if not self._writing:
                self._written.set()
        if self._followed:
            self._report_followed(batch)

    def _report_followed(self, batch: list[Ack]) -> None:
        followed = self._followed
        woken = [followed.pop(a.id) for a in batch if a.id in followed]
        if woken and self.on_followed is not None:
            try:
                self.on_followed(woken)
            except Exception:
                log.exception("workflow wake failed; the releaser's sweep will catch up")

    async def _write(self, batch: list[Ack]) -> None:
        try:
            params = batch_params(batch)
            async with self._using.connection(self.pool) as conn:
                await self._execute(conn, params, batch)
        except Exception as error:
            verdict = await dberrors.recover(self.pool, error)
            if verdict is dberrors.CANCELLED:
                self.batch.cancelled(len(batch))
            if verdict.retry:
                raise
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._write(batch[:middle])
                await self._write(batch[middle:])
            else:
                await self._refuse(batch[0], error)

    async def _write_one(self, ack: Ack) -> None:
        async with self._using.connection(self.pool) as conn:
            await self._execute(conn, batch_params([ack]), [ack])

    async def _execute(self, conn: Any, params: dict[str, Any], batch: list[Ack]) -> None:
        cur = await conn.execute(self.queries["ack_jobs"], params)
        if self.announce is None:
            return
        # After the commit, naming only the rows really written; the announcer sends them off
        # this path. Best effort: a lost announcement only delays a waiter's re-check.
        try:
            written = {job_id for (job_id,) in await cur.fetchall()}
            self.announce([(a.id, a.state) for a in batch if a.id in written])
        except Exception as error:
            log.warning("outcomes written but not announced", error=repr(error))

    async def _refuse(self, ack: Ack, error: Exception) -> None:
        reason = errors.safe_str(error)
        degraded = outcomes.degraded(ack, reason)
        try:
            await self._write_one(degraded)
        except Exception as again:
            if (await dberrors.recover(self.pool, again)).retry:
                raise
            # Kept degraded: what the database refused first is never sent again.
            self._refused[ack.id] = degraded
            if self._task is not None and (self._refused_task is None or self._refused_task.done()):
                self._refused_task = asyncio.create_task(
                    self._retry_refused(), name="oban.acker.refused"
                )
            log.error(
                "ack refused by the database; retrying on its own", job_id=ack.id, error=reason
            )
            telemetry.execute("oban.ack.refused", {"count": 1}, {"ack": ack, "error": again})
        else:
            log.warning(
                "ack refused; written without its error text and meta", job_id=ack.id, error=reason
            )
            telemetry.execute("oban.ack.degraded", {"count": 1}, {"ack": ack, "error": error})

    async def _retry_refused(self) -> None:
        while self._refused:
            await asyncio.sleep(REFUSED_RETRY)
            for job_id, ack in list(self._refused.items()):
                try:
                    await self._write_one(ack)
                except Exception:
                    continue
                self._refused.pop(job_id, None)
