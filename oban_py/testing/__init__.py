"""Helpers for testing applications that use oban_py, in the manner of Elixir's ``Oban.Testing``.

- ``TestingClient(mode=...)``: a ``Client`` whose ``enqueue`` follows a testing mode:
  ``"manual"`` inserts jobs and runs nothing (then assert on them, or drain a queue),
  ``"inline"`` runs each job at once in the calling task without touching the database and
  returns it in its final state, ``"disabled"`` does nothing and returns the job unsaved.
- ``assert_enqueued`` / ``refute_enqueued`` / ``all_enqueued``: what a manual-mode test checks.
- ``drain_queue``: run a queue's jobs now, in this task, through the node's attempt and acker.
- ``perform_job``: run one worker on some args exactly as a node would, without a database.
- ``mode``: ``with mode("inline"):`` switches every testing client for the block;
  ``reset``: delete the jobs a test left (all of them, or only its own).

In inline mode a job enqueued with ``conn=`` inside a transaction on a connection of the testing
client's own pool (as ``oban_py_ext.fastapi.transaction()`` lends) runs after that transaction
commits, and not at all when it rolls back: the code under test sees what production would.
A testing client follows the event loop it is used in (Starlette's ``TestClient`` runs each
request in a loop of its own), opening a fresh pool when the loop it opened one in has gone.

Every job here runs through ``oban_py.node.attempt``, the code producers run, so args validation,
timeouts, work middleware, ``Snooze``/``Cancel``/``Record``, raised ``BaseException``s and error
entries behave as in production; a drain claims and decodes rows as a producer does.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import orjson
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from oban_py.client.core import AnyConnection, Client, get_instance, require_loop
from oban_py.client.pool import configure_async
from oban_py.insert.drivers import run_async, run_sync
from oban_py.insert.statements import Program, Statement, Work
from oban_py.job import jsonb
from oban_py.job.errors import ObanError
from oban_py.job.model import ROWLESS_IDS_FROM, Job, to_naive_utc, to_utc
from oban_py.middleware import AttemptOutcome, Middleware
from oban_py.node import attempt as attempts
from oban_py.node.acker import Acker
from oban_py.node.attempt import Attempt
from oban_py.node.outcomes import Ack
from oban_py.node.threads import WorkerThreads
from oban_py.worker import Worker, resolve
from oban_py.workflows.releaser import release as workflow_release

__all__ = [
    "Mode",
    "Outcome",
    "TestingClient",
    "all_enqueued",
    "all_enqueued_sync",
    "assert_enqueued",
    "assert_enqueued_sync",
    "drain_queue",
    "drain_queue_sync",
    "mode",
    "perform_job",
    "perform_job_sync",
    "refute_enqueued",
    "refute_enqueued_sync",
    "reset",
    "reset_sync",
]

Mode = Literal["inline", "manual", "disabled"]
MODES: tuple[str, ...] = get_args(Mode)
#: The states Elixir's assert_enqueued looks at: jobs that are waiting to run.
ENQUEUED_STATES = ("available", "scheduled")
#: Jobs fetched per pass by ``drain_queue`` without ``with_limit`` (Elixir's "unlimited").
UNLIMITED = 100_000
TESTING_NODE = "oban-testing"
#: A DSN that is never connected to: inline and disabled clients need no database.
_NO_DATABASE = "postgresql://oban-testing.invalid/inline"

# A stack, not a context variable: Starlette's TestClient runs the app in another thread, which
# a context variable set in the test would not reach.
_mode_stack: list[Mode] = []


@contextmanager
def mode(testing_mode: Mode) -> Iterator[None]:
    """Within the block, every ``TestingClient`` enqueues in ``testing_mode`` whatever mode it
    was created with (process-wide, nestable): ``with mode("inline"): ...`` in a manual test."""
    if testing_mode not in MODES:
        raise ValueError(f"testing mode must be one of {', '.join(MODES)}, got {testing_mode!r}")
    _mode_stack.append(testing_mode)
    try:
        yield
    finally:
        _mode_stack.pop()


# -- outcomes of one attempt -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a job came to, as the node would record it."""

    #: completed, retryable, discarded, cancelled, or scheduled (snoozed)
    state: str
    #: what ``process`` returned, or the exception it raised
    result: Any
    #: the job after the attempt: state, timestamps, errors and meta as they would be written
    job: Job
    #: the exception that failed the attempt (raised by ``process``, or a ``Record`` that
    #: could not be stored); None when it did not fail, even if ``process`` returned one
    exception: BaseException | None = None

    @property
    def error(self) -> str | None:
        """The text of the errors entry this attempt added, if it added one."""
        entries = [e for e in self.job.errors if e.get("attempt") == self.job.attempt]
        return str(entries[-1]["error"]) if entries else None

    @property
    def snoozed(self) -> bool:
        return self.state == "scheduled"


_threads: WorkerThreads | None = None


def _threads_for(oban: Any = None) -> WorkerThreads:
    """The node's worker threads when draining through a node, else a small shared pool."""
    global _threads
    threads = getattr(oban, "threads", None)
    if isinstance(threads, WorkerThreads):
        return threads
    if _threads is None:
        _threads = WorkerThreads(4, prefix="oban-testing")
    return _threads


async def _execute(
    threads: Executor,
    job: Job,
    middleware: Sequence[Middleware] = (),
    prefix: str | None = None,
) -> AttemptOutcome:
    """Run ``job`` as a producer runs it (process-wide and ``middleware`` around it)."""
    return await attempts.perform(Attempt(job), threads, prefix, middleware)


def apply_ack(job: Job, ack: Ack) -> Job:
    """The job as it reads after ``ack`` is written (what ``ack_jobs.sql`` does, in memory)."""
    updates: dict[str, Any] = {"state": ack.state}
    stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "discarded": "discarded_at"}
    if ack.state in stamp:
        updates[stamp[ack.state]] = ack.at
    if ack.scheduled_in is not None:
        updates["scheduled_at"] = ack.at + timedelta(seconds=ack.scheduled_in)
    updates["max_attempts"] = job.max_attempts + ack.extra_attempts
    updates["attempt"] = job.attempt + ack.attempt_delta
    if ack.error is not None:
        updates["errors"] = [*job.errors, jsonb.loads(ack.error)]
    if ack.meta is not None:
        updates["meta"] = {**job.meta, **jsonb.loads(ack.meta)}
    return job.model_copy(update=updates)


#: Ids of jobs run without a row (``perform_job``, inline mode): far above any table's, so
#: worker code using ``job.id`` (logs, its own tables) runs as in production and never
#: touches a real row by mistake.
_rowless_ids = itertools.count(ROWLESS_IDS_FROM)


def _attempting(job: Job, attempt: int, node: str) -> Job:
    # What a fetch does to a row, and what Elixir's inline engine sets before running a job.
    now = datetime.now(UTC)
    return job.model_copy(
        update={
            "id": next(_rowless_ids) if job.id is None else job.id,
            "state": "executing",
            "attempt": attempt,
            "attempted_at": now,
            "attempted_by": [node],
            "inserted_at": job.inserted_at or now,
            "scheduled_at": now,
        }
    )


async def _attempt(threads: Executor, job: Job) -> Outcome:
    done = await _execute(threads, job)
    return Outcome(done.ack.state, done.result, apply_ack(job, done.ack), done.error)


def _refuse_unstorable(batch: list[Job]) -> None:
    """Refuse what PostgreSQL would refuse at the insert (a NUL character: no ``text`` or
    ``jsonb`` value holds one): inline and disabled modes insert nothing, and a test must not
    pass on a job production could never enqueue."""
    for job in batch:
        for field, value in (
            ("worker", job.worker),
            ("queue", job.queue),
            ("tags", job.tags),
            ("args", job.args),
            ("meta", job.meta),
        ):
            if _holds_nul(value):
                raise ValueError(
                    f"{field} of a {job.worker!r} job holds a NUL character (U+0000), which"
                    " PostgreSQL cannot store: a real insert of this job would fail"
                )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


# -- perform_job -----------------------------------------------------------------------------


def perform_job(
    worker: type[Worker] | str,
    args: Mapping[str, Any] | Any = None,
    *,
    safe: bool = False,
    node: str = TESTING_NODE,
    **opts: Any,
) -> Coroutine[Any, Any, Outcome]:
    """Run ``worker`` on ``args`` as a node would and return the outcome; no database needed.

    The job is built with ``worker.new(args, **opts)`` (so args are validated, typed args
    included) and runs as attempt 1 unless ``attempt=`` is given, with an ``id`` as every job
    a node runs has (``id=``, else a fresh one above any table's). An exception raised by
    ``process`` propagates, as with Elixir's ``perform_job``, unless ``safe=True``: then it is
    recorded like a node records it (retryable or discarded with an errors entry).
    ``perform_job_sync`` from sync code.
    """
    require_loop("perform_job", "the job would not run")
    return _perform_job(_performed(worker, args, node, opts), safe)


def perform_job_sync(
    worker: type[Worker] | str,
    args: Mapping[str, Any] | Any = None,
    *,
    safe: bool = False,
    node: str = TESTING_NODE,
    **opts: Any,
) -> Outcome:
    """``perform_job`` from sync code (async workers run on an event loop of their own)."""
    return asyncio.run(_perform_job(_performed(worker, args, node, opts), safe))


def _performed(
    worker: type[Worker] | str, args: Mapping[str, Any] | Any, node: str, opts: dict[str, Any]
) -> Job:
    """The job ``perform_job`` runs: built as the worker's ``new`` builds it, then claimed."""
    cls = resolve(worker) if isinstance(worker, str) else worker
    attempt = int(opts.pop("attempt", 1))
    job_id = opts.pop("id", None)
    job = cls.new(args, **opts)
    if job_id is not None:
        job = job.model_copy(update={"id": int(job_id)})
    return _attempting(job, attempt, node)


async def _perform_job(job: Job, safe: bool) -> Outcome:
    outcome = await _attempt(_threads_for(), job)
    if not safe and outcome.exception is not None:
        raise outcome.exception
    return outcome


# -- the testing client ----------------------------------------------------------------------


class TestingClient(Client):
    """A ``Client`` whose ``enqueue``/``enqueue_many`` follow a testing ``mode``.

    It registers under ``name`` (default ``"Oban"``) like any client, so ``Worker.enqueue`` in
    the code under test goes through it. ``manual`` needs ``dsn`` or ``pool``; ``inline`` and
    ``disabled`` need neither, but inline mode needs ``dsn`` for code that asks for a connection
    (a ``transaction()`` dependency): its jobs then run once that transaction commits. In inline
    mode an exception raised by a job propagates to the caller of ``enqueue`` (as Elixir's
    inline engine does) unless ``raise_errors=False``.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        mode: Mode = "manual",
        *,
        dsn: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        prefix: str = "public",
        name: str = "Oban",
        node: str = TESTING_NODE,
        raise_errors: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"testing mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "manual" and dsn is None and pool is None:
            raise ValueError("manual testing mode inserts jobs: give a dsn= or a pool=")
        self.has_database = dsn is not None or pool is not None
        super().__init__(dsn=dsn or _NO_DATABASE, pool=pool, prefix=prefix, name=name)
        self.mode: Mode = mode
        self.node = node
        self.raise_errors = raise_errors
        #: In inline mode, every job run so far, in its final state.
        self.performed: list[Job] = []
        #: In manual mode, the ids of the jobs inserted through this client, oldest first
        #: (what ``drain_queue(scoped=True)`` and ``reset(scoped=True)`` are limited to).
        self.enqueued: list[int] = []
        # Inline jobs waiting for the transaction of a connection this client lent:
        # id(conn) -> [(txid, jobs)], run when the connection comes back.
        self._held: dict[int, list[tuple[int, list[Job]]]] = {}
        # Inline jobs waiting for the transaction of any other connection, by txid.
        self._watches: dict[int, _Watch] = {}
        self._watched: list[_Watch] = []
        self._watch_lock = threading.Lock()
        if pool is None:
            # Replaces the pool Client made (never opened) with one that knows when a
            # connection it lent comes back, or that explains why there is none.
            self._pools.factory = self._new_pool
            self._pools.reopen_in_any_loop = True
            self._pools.replace(self._new_pool())
        if self.has_database:
            self._sync.factory = functools.partial(_TestingSyncPool, self)

    @property
    def active_mode(self) -> Mode:
        """The mode ``enqueue`` follows now: the innermost ``with mode(...)``, else ``mode``."""
        return _mode_stack[-1] if _mode_stack else self.mode

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        if not self.has_database:
            return _NoDatabasePool(self.mode)
        return _TestingPool(
            self,
            self.config.dsn or "",
            min_size=1,
            max_size=self.config.pool_size,
            open=False,
            configure=configure_async,
            name=f"oban.{self.config.name}.testing",
        )

    async def open(self) -> None:
        """Open the pool (again, in this loop, if it was opened in a loop that has gone);
        nothing when this client was given no database (inline or disabled)."""
        if not self.has_database:
            return
        await super().open()

    async def _leave_loop(self) -> None:
        """The loop this client's pool was opened in is ending (a sync helper's own loop):
        close that pool now and open a fresh one next time, keeping the registration."""
        pools = self._pools
        if pools.in_running_loop():
            await pools.close()
            pools.replace(self._new_pool())

    @contextmanager
    def connection_sync(self) -> Iterator[psycopg.Connection[Any]]:
        if not self.has_database:
            raise ObanError(_NO_DATABASE_HELP.format(mode=self.mode, need="code asking for one"))
        with super().connection_sync() as conn:
            yield conn

    # The mode is applied in the coroutines behind ``enqueue``/``enqueue_many``, so those keep
    # refusing to be called outside an event loop.

    async def _enqueue_one(self, job: Job, conn: AnyConnection | None) -> Job:
        return (await self._enqueue_many([job], conn))[0]

    async def _enqueue_many(self, batch: list[Job], conn: AnyConnection | None) -> list[Job]:
        current = self.active_mode
        if current == "manual":
            self._require_database()
            return self._record(await super()._enqueue_many(batch, conn))
        _refuse_unstorable(batch)
        if current == "disabled":
            return batch
        if conn is not None and await self._hold(conn, batch):
            return batch
        return await self._perform_inline(batch)

    def enqueue_many_sync(
        self, jobs: Iterable[Job], conn: psycopg.Connection[Any] | None = None
    ) -> list[Job]:
        batch = list(jobs)
        current = self.active_mode
        if current == "manual":
            self._require_database()
            return self._record(super().enqueue_many_sync(batch, conn=conn))
        _refuse_unstorable(batch)
        if current == "disabled":
            return batch
        if conn is not None and self._hold_sync(conn, batch):
            return batch
        return self._perform_inline_sync(batch)

    def _require_database(self) -> None:
        if not self.has_database:
            raise ObanError(_NO_DATABASE_HELP.format(mode=self.mode, need="manual mode"))

    def _record(self, inserted: list[Job]) -> list[Job]:
        # What scoped drains and resets are limited to: the rows this client really inserted.
        self.enqueued.extend(j.id for j in inserted if j.id is not None and not j.conflict)
        return inserted

    async def _perform_inline(self, batch: list[Job]) -> list[Job]:
        done = []
        for job in batch:
            outcome = await _attempt(_threads_for(), _attempting(job, 1, self.node))
            self.performed.append(outcome.job)
            if self.raise_errors and outcome.exception is not None:
                raise outcome.exception
            done.append(outcome.job)
        return done

    def _perform_inline_sync(self, batch: list[Job]) -> list[Job]:
        # Each job's attempt is async: on a loop of its own, in a thread of its own when sync
        # code calls this from inside a running loop (a sync view under an async test).
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # run below, outside the handler: a job's exception must not chain to it
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="oban-testing-inline") as aside:
                return aside.submit(asyncio.run, self._perform_inline(batch)).result()
        return asyncio.run(self._perform_inline(batch))

    # Inline jobs enqueued inside an open transaction run once it commits, never when it rolls
    # back: on a connection this client lent (its async pool's, or its sync pool's for
    # ``connection_sync()``) when that connection comes back, in the code that returns it; on
    # any other connection (the caller's own, an ORM's) in a watcher thread that sees the
    # transaction end, which ``settle()`` waits for.

    def _hold_here(self, conn: AnyConnection, txid: int, batch: list[Job]) -> None:
        if self._lent(conn):
            self._held.setdefault(id(conn), []).append((txid, batch))
        else:
            self._watch(conn, txid, batch)

    async def _hold(self, conn: AnyConnection, batch: list[Job]) -> bool:
        """Keep inline jobs for after the commit of ``conn``'s open transaction; False (run them
        now) when ``conn`` is in none."""
        if not isinstance(conn, psycopg.AsyncConnection):
            return await asyncio.to_thread(self._hold_sync, conn, batch)
        if not _joins_a_transaction(conn):
            return False
        await conn.execute(self.queries["testing_xact_marks"])
        cur = await conn.execute(self.queries["testing_xact_id"])
        row = await cur.fetchone()
        assert row is not None
        self._hold_here(conn, int(row[0]), batch)
        return True

    def _hold_sync(self, conn: psycopg.Connection[Any], batch: list[Job]) -> bool:
        """``_hold`` for a sync connection."""
        if isinstance(conn, psycopg.AsyncConnection):
            raise TypeError("the *_sync methods take a sync psycopg Connection, not an async one")
        if not _joins_a_transaction(conn):
            return False
        conn.execute(self.queries["testing_xact_marks"])
        row = conn.execute(self.queries["testing_xact_id"]).fetchone()
        assert row is not None
        self._hold_here(conn, int(row[0]), batch)
        return True

    def _lent(self, conn: AnyConnection) -> bool:
        # The testing pools (async and sync) keep the ids of the connections they lent.
        pools: list[object] = [self.pool, self._sync._given]
        return any(id(conn) in getattr(p, "lent", ()) for p in pools)

    def _committed(self, conn: AnyConnection, failed: bool) -> list[tuple[int, list[Job]]]:
        """What ``conn``'s transactions held, now that it is back (none when it failed)."""
        held = self._held.pop(id(conn), [])
        if failed or conn.info.transaction_status != TransactionStatus.IDLE:
            return []
        return held

    async def _returned(self, conn: psycopg.AsyncConnection[Any], failed: bool) -> None:
        """``conn`` is back: run what its committed transactions held, drop the rest."""
        committed: list[Job] = []
        for txid, batch in self._committed(conn, failed):
            cur = await conn.execute(self.queries["testing_xact_status"], {"txid": txid})
            row = await cur.fetchone()
            if row is not None and row[0] == "committed":
                committed.extend(batch)
        if committed:
            await self._perform_inline(committed)

    def _returned_sync(self, conn: psycopg.Connection[Any], failed: bool) -> None:
        """``_returned`` for a connection of the sync pool."""
        committed: list[Job] = []
        for txid, batch in self._committed(conn, failed):
            row = conn.execute(self.queries["testing_xact_status"], {"txid": txid}).fetchone()
            if row is not None and row[0] == "committed":
                committed.extend(batch)
        if committed:
            self._perform_inline_sync(committed)

    def _watch(self, conn: AnyConnection, txid: int, batch: list[Job]) -> None:
        with self._watch_lock:
            watch = self._watches.get(txid)
            if watch is not None:
                watch.jobs.extend(batch)
                return
            # The watcher connects where the caller is: a txid means nothing elsewhere.
            info = conn.info
            dsn = make_conninfo(info.dsn, password=info.password) if info.password else info.dsn
            watch = self._watches[txid] = _Watch(txid, list(batch))
            watch.thread = threading.Thread(
                target=self._await_commit,
                args=(dsn, watch),
                name=f"oban-testing-tx{txid}",
                daemon=True,
            )
            watch.thread.start()
            self._watched.append(watch)

    def _await_commit(self, dsn: str, watch: _Watch) -> None:
        query = self.queries["testing_xact_status"]
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while True:
                    row = conn.execute(query, {"txid": watch.txid}).fetchone()
                    if row is None or row[0] != "in progress":
                        break
                    time.sleep(WATCH_INTERVAL)
            with self._watch_lock:
                del self._watches[watch.txid]
            if row is not None and row[0] == "committed":
                self._perform_inline_sync(watch.jobs)
        except BaseException as error:
            # A job's exception (``raise_errors``) or the watcher's own failure: settle raises it.
            watch.error = error

    @property
    def pending(self) -> bool:
        """Whether inline jobs wait for (or ran after) a watched transaction, unsettled."""
        return bool(self._watched)

    def settle_sync(self, timeout: float = 5.0) -> list[Job]:
        """Wait until the inline jobs held for transactions of connections this client did not
        lend have run (their transactions ended), at most ``timeout`` seconds; returns every
        job run so far (``performed``). Re-raises what such a job raised (``raise_errors``),
        and raises ``ObanError`` when a transaction is still open after ``timeout``.
        ``await settle()`` from async code."""
        deadline = time.monotonic() + timeout
        while self._watched:
            watch = self._watched[0]
            if watch.thread is not None:
                watch.thread.join(max(0.0, deadline - time.monotonic()))
                if watch.thread.is_alive():
                    raise ObanError(
                        f"inline jobs still wait for transaction {watch.txid} to commit after"
                        f" {timeout}s: commit it (or roll it back) before settle()"
                    )
            self._watched.pop(0)
            if watch.error is not None:
                raise watch.error
        return list(self.performed)

    async def settle(self, timeout: float = 5.0) -> list[Job]:  # noqa: ASYNC109
        """``settle_sync`` without blocking the event loop."""
        return await asyncio.to_thread(self.settle_sync, timeout)


def _joins_a_transaction(conn: AnyConnection) -> bool:
    """Whether an insert on ``conn`` would commit with a transaction of the caller's: one is
    open, or the connection is not in autocommit and the insert would begin it (a SQLAlchemy
    session whose first statement this is, ``psycopg.connect()`` without ``autocommit``)."""
    status = conn.info.transaction_status
    return status == TransactionStatus.INTRANS or (
        status == TransactionStatus.IDLE and not conn.autocommit
    )


#: How often a watcher asks whether a transaction holding inline jobs has ended.
WATCH_INTERVAL = 0.005


@dataclass
class _Watch:
    """Inline jobs held for one transaction of a connection the testing client did not lend."""

    txid: int
    jobs: list[Job]
    thread: threading.Thread | None = None
    error: BaseException | None = None


_NO_DATABASE_HELP = (
    "TestingClient({mode!r}) was given no database, so {need} cannot have a connection:"
    " create it with TestingClient({mode!r}, dsn=...) (the oban_testing fixture does when"
    " oban_dsn is available); inline jobs enqueued in a transaction then run after it commits"
)


class _NoDatabasePool(AsyncConnectionPool[Any]):
    """The pool of a testing client without a database: asking it for a connection explains."""

    def __init__(self, mode: str) -> None:
        super().__init__(_NO_DATABASE, open=False, name="oban.testing.no-database")
        self._mode = mode

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Any]:  # noqa: ASYNC109
        raise ObanError(_NO_DATABASE_HELP.format(mode=self._mode, need="code asking for one"))
        yield  # pragma: no cover - makes this a generator

    async def getconn(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        raise ObanError(_NO_DATABASE_HELP.format(mode=self._mode, need="code asking for one"))


class _TestingPool(AsyncConnectionPool[Any]):
    """A pool that tells its testing client when a connection it lent comes back."""

    def __init__(self, owner: TestingClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self.lent: set[int] = set()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Any]:  # noqa: ASYNC109
        # Opens on first use, and in this loop if the one it was opened in has gone (then the
        # client has a new pool, which lends the connection instead).
        await self._owner.open()
        if self._owner.pool is not self:
            async with self._owner.pool.connection(timeout) as conn:
                yield conn
            return
        async with super().connection(timeout) as conn:
            self.lent.add(id(conn))
            failed = True
            try:
                yield conn
                failed = False
            finally:
                self.lent.discard(id(conn))
                # The body's transaction block has ended; the pool has not taken conn back yet.
                await self._owner._returned(conn, failed)


class _TestingSyncPool(ConnectionPool[Any]):
    """The sync pool of a testing client: tells it when a connection it lent comes back."""

    def __init__(self, owner: TestingClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self.lent: set[int] = set()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        with super().connection(timeout) as conn:
            self.lent.add(id(conn))
            failed = True
            try:
                yield conn
                failed = False
            finally:
                self.lent.discard(id(conn))
                self._owner._returned_sync(conn, failed)


# -- assertions on enqueued jobs ---------------------------------------------------------------
#
# Each helper exists twice, as the client's methods do: ``assert_enqueued`` for async tests and
# ``assert_enqueued_sync`` for plain ``def`` tests (Flask, Django, scripts). The async ones
# refuse to be called outside an event loop: a coroutine that is never awaited would let a
# test pass without checking anything.

_NOT_CHECKED = "nothing would be checked and the test would pass"


def _client(oban: Client | None) -> Client:
    return oban if oban is not None else get_instance()


def _worker_name(worker: type[Worker] | str | None) -> str | None:
    if worker is None or isinstance(worker, str):
        return worker
    return worker.__oban_name__


def _listing(client: Client, params: Mapping[str, Any]) -> Work[list[Job]]:
    """The work of ``sql/jobs_list.sql``, for the async and the sync driver alike."""

    def program(own: bool) -> Program[list[Job]]:
        rows = yield Statement(client.queries["jobs_list"], params, dicts=True)
        return [Job.from_row(row) for row in rows]

    return Work(program)


def all_enqueued(
    oban: Client | None = None,
    *,
    worker: type[Worker] | str | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    state: str | Sequence[str] | None = None,
    scheduled_at: datetime | None = None,
    delta: float = 1.0,
    limit: int = 1_000,
) -> Coroutine[Any, Any, list[Job]]:
    """Jobs matching every given filter, newest first; ``args``, ``meta`` and ``tags`` match
    as subsets. Only available and scheduled jobs unless ``state`` says otherwise;
    ``scheduled_at`` matches within ``delta`` seconds. ``oban`` defaults to the instance
    registered as ``"Oban"``. ``all_enqueued_sync`` from sync code."""
    require_loop("all_enqueued", _NOT_CHECKED)
    params = _enqueued_params(worker, queue, args, meta, tags, priority, state, limit)
    return _all_enqueued(_client(oban), params, scheduled_at, delta)


async def _all_enqueued(
    client: Client, params: dict[str, Any], scheduled_at: datetime | None, delta: float
) -> list[Job]:
    await client.open()
    async with client.pool.connection() as conn:
        found = await run_async(conn, _listing(client, params))
    return _scheduled_near(found, scheduled_at, delta)


def all_enqueued_sync(
    oban: Client | None = None,
    *,
    worker: type[Worker] | str | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    state: str | Sequence[str] | None = None,
    scheduled_at: datetime | None = None,
    delta: float = 1.0,
    limit: int = 1_000,
) -> list[Job]:
    """``all_enqueued`` from sync code, on the client's sync pool."""
    client = _client(oban)
    params = _enqueued_params(worker, queue, args, meta, tags, priority, state, limit)
    with client.connection_sync() as conn:
        found = run_sync(conn, _listing(client, params))
    return _scheduled_near(found, scheduled_at, delta)


def _enqueued_params(
    worker: type[Worker] | str | None,
    queue: str | None,
    args: Mapping[str, Any] | None,
    meta: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    priority: int | None,
    state: str | Sequence[str] | None,
    limit: int,
) -> dict[str, Any]:
    """The parameters of ``sql/jobs_list.sql`` for ``all_enqueued``'s filters."""
    return {
        "states": [state] if isinstance(state, str) else list(state or ENQUEUED_STATES),
        "queue": queue,
        "worker": _worker_name(worker),
        "args": None if args is None else orjson.dumps(dict(args)).decode(),
        "meta": None if meta is None else orjson.dumps(dict(meta)).decode(),
        "tags": None if tags is None else [t.strip().lower() for t in tags],
        "priority": priority,
        "limit": limit,
    }


def _scheduled_near(found: list[Job], scheduled_at: datetime | None, delta: float) -> list[Job]:
    """The jobs of ``found`` scheduled within ``delta`` seconds of ``scheduled_at`` (all of
    them when it is None)."""
    if scheduled_at is None:
        return found
    window, near = timedelta(seconds=delta), to_utc(scheduled_at)  # naive is UTC, as in Job
    return [j for j in found if j.scheduled_at and abs(j.scheduled_at - near) <= window]


def _describe(filters: Mapping[str, Any]) -> str:
    shown = {k: _worker_name(v) if k == "worker" else v for k, v in filters.items()}
    return ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None) or "anything"


def _not_enqueued(filters: Mapping[str, Any], nearby: list[Job]) -> AssertionError:
    seen = "; ".join(_summary(j) for j in nearby) or "none"
    return AssertionError(
        f"Expected a job matching {_describe(filters)} to be enqueued. Enqueued jobs in that"
        f" queue (newest 5): {seen}"
    )


def _enqueued_anyway(filters: Mapping[str, Any], found: list[Job]) -> AssertionError:
    jobs = "; ".join(_summary(j) for j in found[:5])
    return AssertionError(
        f"Expected no job matching {_describe(filters)} to be enqueued, found {len(found)}: {jobs}"
    )


def _nearby(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filters of the jobs an ``assert_enqueued`` failure shows: the same queue and state."""
    return {"queue": filters.get("queue"), "state": filters.get("state"), "limit": 5}


def assert_enqueued(
    oban: Client | None = None, *, within: float = 0.0, **filters: Any
) -> Coroutine[Any, Any, Job]:
    """Assert a job matching ``filters`` (see ``all_enqueued``) is enqueued; return the newest.

    ``within`` keeps looking for that many seconds, for jobs enqueued by another task.
    ``assert_enqueued_sync`` from sync code.
    """
    require_loop("assert_enqueued", _NOT_CHECKED)
    return _assert_enqueued(oban, within, filters)


async def _assert_enqueued(oban: Client | None, within: float, filters: dict[str, Any]) -> Job:
    deadline = time.monotonic() + within
    while True:
        found = await all_enqueued(oban, **filters)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    raise _not_enqueued(filters, await all_enqueued(oban, **_nearby(filters)))


def assert_enqueued_sync(oban: Client | None = None, *, within: float = 0.0, **filters: Any) -> Job:
    """``assert_enqueued`` from sync code (``within`` keeps looking, in this thread)."""
    deadline = time.monotonic() + within
    while True:
        found = all_enqueued_sync(oban, **filters)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    raise _not_enqueued(filters, all_enqueued_sync(oban, **_nearby(filters)))


def refute_enqueued(
    oban: Client | None = None, *, within: float = 0.0, **filters: Any
) -> Coroutine[Any, Any, None]:
    """Assert no job matching ``filters`` is enqueued (still none after ``within`` seconds).
    ``refute_enqueued_sync`` from sync code."""
    require_loop("refute_enqueued", _NOT_CHECKED)
    return _refute_enqueued(oban, within, filters)


async def _refute_enqueued(oban: Client | None, within: float, filters: dict[str, Any]) -> None:
    if within:
        await asyncio.sleep(within)
    found = await all_enqueued(oban, **filters)
    if found:
        raise _enqueued_anyway(filters, found)


def refute_enqueued_sync(
    oban: Client | None = None, *, within: float = 0.0, **filters: Any
) -> None:
    """``refute_enqueued`` from sync code."""
    if within:
        time.sleep(within)
    found = all_enqueued_sync(oban, **filters)
    if found:
        raise _enqueued_anyway(filters, found)


def _summary(job: Job) -> str:
    args = orjson.dumps(job.args).decode()
    return f"#{job.id} {job.worker} queue={job.queue} state={job.state} args={args}"


# -- reset -----------------------------------------------------------------------------------


def _reset_plan(client: Client, scoped: bool) -> list[int] | Literal[False] | None:
    """What ``reset`` deletes: every job (None), only these ids, or nothing (False); forgets
    what a testing client ran or inserted."""
    only: list[int] | None = None
    if isinstance(client, TestingClient):
        only = list(client.enqueued) if scoped else None
        client.performed.clear()
        client.enqueued.clear()
        if not client.has_database:
            return False
    elif scoped:
        raise ValueError("reset(scoped=True) needs a TestingClient: it knows what it inserted")
    return False if only == [] else only


def _deleting(client: Client, only: list[int] | None) -> Work[int]:
    def program(own: bool) -> Program[int]:
        rows = yield Statement(client.queries["testing_reset"], {"only": only})
        return len(rows)

    return Work(program)


def reset(oban: Client | None = None, *, scoped: bool = False) -> Coroutine[Any, Any, int]:
    """Delete the jobs of ``oban``'s prefix and forget what a testing client ran or inserted;
    returns how many rows were deleted. ``reset_sync`` from sync code.

    ``scoped=True`` deletes only the jobs this ``TestingClient`` inserted (and those its jobs
    inserted through it), for a database other tests use at the same time. A client without a
    database only forgets.
    """
    require_loop("reset", "nothing would be deleted")
    return _reset(_client(oban), scoped)


async def _reset(client: Client, scoped: bool) -> int:
    only = _reset_plan(client, scoped)
    if only is False:
        return 0
    await client.open()
    async with client.pool.connection() as conn:
        return await run_async(conn, _deleting(client, only))


def reset_sync(oban: Client | None = None, *, scoped: bool = False) -> int:
    """``reset`` from sync code, on the client's sync pool."""
    client = _client(oban)
    only = _reset_plan(client, scoped)
    if only is False:
        return 0
    with client.connection_sync() as conn:
        return run_sync(conn, _deleting(client, only))


# -- drain_queue -----------------------------------------------------------------------------


def _only(client: Client) -> list[int] | None:
    return list(client.enqueued) if isinstance(client, TestingClient) else None


def _bucket(state: str) -> str:
    return "snoozed" if state == "scheduled" else state


def drain_queue(
    oban: Client | None,
    queue: str,
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_limit: int | None = None,
    with_safety: bool = True,
    scoped: bool = False,
) -> Coroutine[Any, Any, dict[str, int]]:
    """Run the available jobs of ``queue`` now, one after the other, in this task.

    Jobs are claimed with the producers' fetch, run by the node's attempt code and written by its
    acker, so rows end exactly as a node leaves them. Returns counts by outcome:
    ``{"completed", "discarded", "cancelled", "retryable", "snoozed"}``.

    - ``with_scheduled``: first make scheduled and retryable jobs available (all of them, or
      those due by the given datetime), before every pass;
    - ``with_recursion``: keep draining until the queue is empty, so jobs enqueued by jobs
      (and, with ``with_scheduled``, retries) run too, and so do workflow steps released by
      the jobs they waited for (a drained workflow job releases its dependents at once); a job
      snoozed during the drain is not staged again, so a snoozing worker cannot loop forever;
    - ``with_limit``: at most this many jobs per pass;
    - ``with_safety=False``: re-raise the first exception a job raises (after recording it);
    - ``scoped=True``: only jobs this ``TestingClient`` inserted (jobs inserted by those jobs
      through it included), so tests sharing a database never run each other's jobs.
    """
    require_loop("drain_queue", "no job would run")
    client = _drained(oban, scoped)
    options = Drain(with_scheduled, with_recursion, with_limit, with_safety, scoped)
    return _drain_here(client, queue, options)


def drain_queue_sync(
    oban: Client | None,
    queue: str,
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_limit: int | None = None,
    with_safety: bool = True,
    scoped: bool = False,
) -> dict[str, int]:
    """``drain_queue`` from sync code: the same drain, on an event loop and a short-lived pool
    of its own (so it needs a client with a ``dsn``)."""
    client = _drained(oban, scoped)
    options = Drain(with_scheduled, with_recursion, with_limit, with_safety, scoped)
    return asyncio.run(_drain_on_own_pool(client, queue, options))


@dataclass(frozen=True)
class Drain:
    """The options of one ``drain_queue`` (see there)."""

    with_scheduled: bool | datetime
    with_recursion: bool
    with_limit: int | None
    with_safety: bool
    scoped: bool


def _drained(oban: Client | None, scoped: bool) -> Client:
    client = _client(oban)
    if scoped and not isinstance(client, TestingClient):
        raise ValueError(
            "drain_queue(scoped=True) needs a TestingClient: it knows what it inserted"
        )
    return client


async def _drain_here(client: Client, queue: str, options: Drain) -> dict[str, int]:
    await client.open()
    return await _drain(client, client.pool, queue, options)


async def _drain_on_own_pool(client: Client, queue: str, options: Drain) -> dict[str, int]:
    if isinstance(client, TestingClient):
        client._require_database()
    dsn = client.config.dsn
    if dsn is None:
        raise ValueError("drain_queue_sync needs a client built with dsn=, not only pool=")
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=1, max_size=2, open=False, configure=configure_async, name="oban.drain"
    )
    async with pool:
        try:
            return await _drain(client, pool, queue, options)
        finally:
            if isinstance(client, TestingClient):
                # Jobs that enqueued through it opened its pool on this loop, which ends here.
                await client._leave_loop()


async def _drain(
    client: Client, pool: AsyncConnectionPool[Any], queue: str, options: Drain
) -> dict[str, int]:
    with_scheduled, with_limit, scoped = options.with_scheduled, options.with_limit, options.scoped
    threads = _threads_for(client)
    acker = Acker(pool, client.queries)
    # Workflow jobs drained here release their dependents, as a node's releaser would.
    woken: list[str] = []
    acker.on_followed = woken.extend
    counts = dict.fromkeys(("completed", "discarded", "cancelled", "retryable", "snoozed"), 0)
    snoozed: list[int] = []
    fetch = {
        "queue": queue,
        "node": client.config.node,
        "uuid": str(uuid.uuid4()),
        "demand": with_limit or UNLIMITED,
    }
    while True:
        if with_scheduled is not False:
            until = datetime.max if with_scheduled is True else to_naive_utc(with_scheduled)
            async with pool.connection() as conn:
                await conn.execute(
                    client.queries["drain_stage"],
                    {
                        "queue": queue,
                        "until": until,
                        "exclude": snoozed,
                        "only": _only(client) if scoped else None,
                    },
                )
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if scoped:
                await cur.execute(
                    client.queries["drain_fetch_scoped"], {**fetch, "only": _only(client)}
                )
            else:
                await cur.execute(client.queries["fetch_jobs"], fetch)
            jobs, unreadable = await attempts.claimed(cur)
        if not jobs and not unreadable:
            return counts
        for ack in unreadable:
            acker.push(ack)
            counts[_bucket(ack.state)] += 1
        await acker.flush()
        for job in jobs:
            done = await _execute(threads, job, client.middleware, client.config.prefix)
            ack = done.ack
            acker.push(ack, job.meta.get("workflow_id"))
            await acker.flush()
            if woken:
                await workflow_release(pool, client.queries, woken)
                woken.clear()
            counts[_bucket(ack.state)] += 1
            if ack.state == "scheduled" and job.id is not None:
                snoozed.append(job.id)
            if not options.with_safety and done.error is not None:
                raise done.error
        if not options.with_recursion:
            return counts
