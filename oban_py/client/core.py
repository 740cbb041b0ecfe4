"""``Client``: inserting and managing jobs without running any queue (insert-only use).

Every operation exists twice with one meaning: ``enqueue``/``enqueue_many``/``get_job``/...
for async code and ``enqueue_sync``/``enqueue_many_sync``/``get_job_sync``/... for sync code
(Django views, Flask, scripts). Both run the same planner work (``oban_py.insert``,
``oban_py.client.manage``) through a thin async or sync driver. Each takes an optional caller's
connection, so the work commits or rolls back with the caller's transaction: a psycopg
``AsyncConnection`` (or a sync ``Connection``, run in a thread) for the async methods, a sync
``Connection`` for the sync ones. Without one, the client's async or sync pool is used.

The async methods must be awaited inside a running event loop: called from sync code they
raise at once (``RuntimeError`` naming the ``*_sync`` method to use) instead of returning a
coroutine that would silently never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from oban_py.client import manage, persisted, registry, signals
from oban_py.client.pool import AsyncPool, SyncPool
from oban_py.client.registry import forget, register
from oban_py.config import Config
from oban_py.insert.drivers import insert_async, insert_sync, run_async, run_sync
from oban_py.insert.planner import CHUNK_SIZE, insert_plan
from oban_py.insert.statements import Work
from oban_py.job.model import Job
from oban_py.middleware import Middleware, checked, insert_through, insert_through_sync, stack
from oban_py.notifier import channel
from oban_py.sql import Queries

__all__ = [
    "CHUNK_SIZE",
    "AnyConnection",
    "Client",
    "channel",
    "get_instance",
    "insert_async",
    "insert_sync",
]

T = TypeVar("T")

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


#: What the error of ``require_loop`` tells sync code to call instead, by method; an integration
#: whose sync path is its own replaces it (Django: ``oban_py_ext.django.enqueue``).
_SYNC_HINTS: dict[str, str] = {}


def use_sync_hint(method: str, hint: str) -> None:
    """Name ``hint`` (e.g. ``"oban_py_ext.django.enqueue(Worker.new(args))"``) as the sync
    replacement of ``method`` in ``require_loop``'s error."""
    _SYNC_HINTS[method] = hint


def require_loop(method: str, effect: str = "nothing would be inserted") -> None:
    """Raise unless called inside a running event loop: an un-awaited coroutine fails silently.

    ``effect`` says what the caller would silently miss (for the message).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # An integration's own sync path is named besides the client's twin.
        also = f"; {_SYNC_HINTS[method]}" if method in _SYNC_HINTS else ""
        raise RuntimeError(
            f"{method}() is async and was called outside an event loop, so {effect}: "
            f"await it in async code, or call {method}_sync() from sync code{also}"
        ) from None


_NOTHING = "nothing would happen"


def get_instance(name: str = "Oban") -> Client:
    """The ``Client`` (or ``Oban`` node) created with ``name``; the last one created wins."""
    instance: Client = registry.lookup(name)
    return instance


class Client:
    """Inserts and manages jobs in one prefix of one database.

    ``Client(dsn=...)`` or ``Client(pool=...)`` (a psycopg_pool ``AsyncConnectionPool``, and
    optionally ``sync_pool=`` a ``ConnectionPool``), or ``Client(config=Config(...))``. Pools
    open on first use; ``await client.close()`` / ``async with client`` close the async pool
    a client created, ``client.close_sync()`` / ``with client`` the sync one.
    """

    #: Whether the async pool this client creates refuses connections to a read-only session
    #: (``dberrors.check_writable``). A node only writes; a plain client may read a replica.
    writable_pool: ClassVar[bool] = False

    def __init__(
        self,
        *,
        dsn: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        sync_pool: ConnectionPool[Any] | None = None,
        prefix: str = "public",
        name: str = "Oban",
        config: Config | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if config is None:
            config = Config(dsn=dsn, prefix=prefix, name=name)
        elif dsn is not None:
            config = config.model_copy(update={"dsn": dsn})
        if config.dsn is None and pool is None and sync_pool is None:
            raise ValueError("Client needs a dsn=, a pool= or a sync_pool=")
        self.config = config
        #: this instance's middleware, inside the process-wide ones (``oban_py.middleware``)
        self.middleware = checked(middleware)
        self.queries = Queries(config.prefix)
        label = f"oban.{config.name}"
        self._pools = AsyncPool(
            config.dsn, config.pool_size, label, pool, writable=self.writable_pool
        )
        self._sync = SyncPool(config.dsn, config.pool_size, label, sync_pool)
        #: called when the client closes, from whichever thread closes it: each ends the waits
        #: for results still running through this client (``oban_py.results``)
        self._on_close: set[Callable[[], None]] = set()
        register(config.name, self)

    @property
    def dsn(self) -> str | None:
        return self.config.dsn

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The async pool (the runtime's and the async methods')."""
        return self._pools.pool

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the async pool, failing fast with ``DatabaseUnavailable`` when the DSN fails."""
        await self._pools.open()

    async def close(self) -> None:
        """Close the pools this client created, and forget the instance name. Waits for
        results still running through it end with ``WaitStopped``."""
        self._closing()
        await self._pools.close()
        if self._sync.opened:
            await asyncio.to_thread(self._sync.close)
        forget(self.config.name, self)

    def close_sync(self) -> None:
        """Close the sync pool this client created, and forget the instance name (sync code).
        Waits for results still running through it end with ``WaitStopped``."""
        self._closing()
        self._sync.close()
        forget(self.config.name, self)

    def _closing(self) -> None:
        for stop in list(self._on_close):
            stop()

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    @contextmanager
    def connection_sync(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the sync pool (opened on first use), in autocommit: open a
        ``conn.transaction()`` on it for work that must commit with a job (Flask views)."""
        with self._sync.get().connection() as conn:
            yield conn

    # -- running work -----------------------------------------------------------------------

    async def _run(self, work: Work[T], conn: AnyConnection | None) -> T:
        if conn is None:
            pools = self._pools
            if not pools.ready():
                await pools.open()
            return await pools.run(run_async, work)
        if isinstance(conn, psycopg.AsyncConnection):
            return await run_async(conn, work)
        return await asyncio.to_thread(run_sync, conn, work)

    def _run_sync(self, work: Work[T], conn: psycopg.Connection[Any] | None) -> T:
        if isinstance(conn, psycopg.AsyncConnection):
            raise TypeError("the *_sync methods take a sync psycopg Connection, not an async one")
        if conn is not None:
            return run_sync(conn, work)
        with self._sync.get().connection() as pooled:
            return run_sync(pooled, work)

    async def run_work(self, work: Work[T], conn: AnyConnection | None = None) -> T:
        """Run planner ``work`` (the insert engine's, ``client.manage``'s, ``workflows``') on
        ``conn`` (joining its transaction) or the pool."""
        return await self._run(work, conn)

    def run_work_sync(self, work: Work[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """``run_work`` from sync code, on ``conn`` (its transaction) or the sync pool."""
        return self._run_sync(work, conn)

    # -- inserting --------------------------------------------------------------------------

    def enqueue(self, job: Job, conn: AnyConnection | None = None) -> Coroutine[Any, Any, Job]:
        """Insert ``job``; a unique duplicate returns the existing job with ``conflict=True``."""
        require_loop("enqueue")
        return self._enqueue_one(job, conn)

    async def _enqueue_one(self, job: Job, conn: AnyConnection | None) -> Job:
        return (await self._insert([job], conn))[0]

    async def _insert(self, batch: list[Job], conn: AnyConnection | None) -> list[Job]:
        """Insert ``batch`` through the insert middleware."""
        links = stack("insert", self.middleware)
        if not links:
            return await self._run(insert_plan(self.queries, batch), conn)

        async def inner(jobs: list[Job]) -> list[Job]:
            return await self._run(insert_plan(self.queries, jobs), conn)

        return await insert_through(links, batch, inner)

    def enqueue_many(
        self, jobs: Iterable[Job], conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, list[Job]]:
        """Insert many jobs, returned in input order (see docs/enqueueing.md for statements).

        Unlike Elixir's ``insert_all``, which ignores uniqueness, unique jobs are checked.
        """
        require_loop("enqueue_many")
        return self._enqueue_many(list(jobs), conn)

    async def _enqueue_many(self, batch: list[Job], conn: AnyConnection | None) -> list[Job]:
        if not batch:
            return []
        return await self._insert(batch, conn)

    def enqueue_sync(self, job: Job, conn: psycopg.Connection[Any] | None = None) -> Job:
        """``enqueue`` from sync code, on ``conn`` (its transaction) or the sync pool."""
        return self.enqueue_many_sync([job], conn=conn)[0]

    def enqueue_many_sync(
        self, jobs: Iterable[Job], conn: psycopg.Connection[Any] | None = None
    ) -> list[Job]:
        """``enqueue_many`` from sync code, on ``conn`` (its transaction) or the sync pool."""
        batch = list(jobs)
        if not batch:
            return []
        return insert_through_sync(
            stack("insert_sync", self.middleware),
            batch,
            lambda jobs: self._run_sync(insert_plan(self.queries, jobs), conn),
        )

    # -- management -------------------------------------------------------------------------
    #
    # The async methods are plain functions returning the coroutine, after ``require_loop``:
    # called from sync code they raise instead of silently doing nothing.

    def get_job(
        self, job_id: int, conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, Job | None]:
        """The job with ``job_id``, or None."""
        require_loop("get_job", _NOTHING)
        return self._run(manage.get_job(self.queries, job_id), conn)

    def get_job_sync(self, job_id: int, conn: psycopg.Connection[Any] | None = None) -> Job | None:
        """``get_job`` from sync code."""
        return self._run_sync(manage.get_job(self.queries, job_id), conn)

    def cancel_job(
        self, job_id: int, conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, bool]:
        """Cancel one job (see ``cancel_jobs``); True when it was cancelled by this call."""
        require_loop("cancel_job", _NOTHING)
        return self._one(manage.cancel_jobs(self.queries, [job_id]), conn)

    def cancel_job_sync(self, job_id: int, conn: psycopg.Connection[Any] | None = None) -> bool:
        """``cancel_job`` from sync code."""
        return self.cancel_jobs_sync([job_id], conn) == 1

    def cancel_jobs(
        self, job_ids: Sequence[int], conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, int]:
        """Cancel jobs that are not already cancelled, completed or discarded.

        Executing jobs are cancelled too, and every node is told to kill them (``pkill``).
        Returns how many jobs were cancelled.
        """
        require_loop("cancel_jobs", _NOTHING)
        return self._run(manage.cancel_jobs(self.queries, job_ids), conn)

    def cancel_jobs_sync(
        self, job_ids: Sequence[int], conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """``cancel_jobs`` from sync code."""
        return self._run_sync(manage.cancel_jobs(self.queries, job_ids), conn)

    def retry_job(
        self, job_id: int, conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, bool]:
        """Make one job available again (see ``retry_jobs``)."""
        require_loop("retry_job", _NOTHING)
        return self._one(manage.retry_jobs(self.queries, [job_id]), conn)

    def retry_job_sync(self, job_id: int, conn: psycopg.Connection[Any] | None = None) -> bool:
        """``retry_job`` from sync code."""
        return self.retry_jobs_sync([job_id], conn) == 1

    def retry_jobs(
        self, job_ids: Sequence[int], conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, int]:
        """Make jobs available now, unless available or executing; each gets at least one more
        attempt. Returns how many were retried."""
        require_loop("retry_jobs", _NOTHING)
        return self._run(manage.retry_jobs(self.queries, job_ids), conn)

    def retry_jobs_sync(
        self, job_ids: Sequence[int], conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """``retry_jobs`` from sync code."""
        return self._run_sync(manage.retry_jobs(self.queries, job_ids), conn)

    def delete_job(
        self, job_id: int, conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, bool]:
        """Delete one job unless it is executing."""
        require_loop("delete_job", _NOTHING)
        return self._one(manage.delete_jobs(self.queries, [job_id]), conn)

    def delete_job_sync(self, job_id: int, conn: psycopg.Connection[Any] | None = None) -> bool:
        """``delete_job`` from sync code."""
        return self.delete_jobs_sync([job_id], conn) == 1

    def delete_jobs(
        self, job_ids: Sequence[int], conn: AnyConnection | None = None
    ) -> Coroutine[Any, Any, int]:
        """Delete jobs that are not executing. Returns how many were deleted."""
        require_loop("delete_jobs", _NOTHING)
        return self._run(manage.delete_jobs(self.queries, job_ids), conn)

    def delete_jobs_sync(
        self, job_ids: Sequence[int], conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """``delete_jobs`` from sync code."""
        return self._run_sync(manage.delete_jobs(self.queries, job_ids), conn)

    def update_job(
        self, job_id: int, conn: AnyConnection | None = None, **changes: Any
    ) -> Coroutine[Any, Any, Job | None]:
        """Change only the given fields among ``args, max_attempts, meta, priority, queue,
        scheduled_at, tags, worker``, validated as a new job's, as Elixir's ``Job.update``.

        A changed ``scheduled_at`` makes a waiting job ``scheduled`` (future) or ``available``
        (past). Returns the updated job, or None when it is missing or locked by another
        transaction (Elixir's ``SKIP LOCKED``).
        """
        require_loop("update_job", _NOTHING)
        return self._run(manage.update_job(self.queries, job_id, changes), conn)

    def update_job_sync(
        self, job_id: int, conn: psycopg.Connection[Any] | None = None, **changes: Any
    ) -> Job | None:
        """``update_job`` from sync code."""
        return self._run_sync(manage.update_job(self.queries, job_id, changes), conn)

    async def _one(self, work: Work[int], conn: AnyConnection | None) -> bool:
        return await self._run(work, conn) == 1

    # -- queue signals ----------------------------------------------------------------------
    #
    # Obeyed by every node listening on this prefix, Elixir or Python: a web process or a
    # script that only holds a Client can pause, resume or scale the queues of the cluster.
    # ``node=`` addresses one node by name; ``local_only=True`` only this instance's own node.

    def _signal(self, method: str, payload: signals.Payload) -> Coroutine[Any, Any, None]:
        require_loop(method, "no signal would be sent")
        return self._run(signals.sending(self.queries, payload), None)

    def _signal_sync(self, payload: signals.Payload) -> None:
        self._run_sync(signals.sending(self.queries, payload), None)

    def pause_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Pause ``queue`` (``"*"``: every queue) on every node, on ``node``, or only here."""
        return self._signal("pause_queue", signals.pause(self.config, queue, node, local_only))

    def pause_queue_sync(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """``pause_queue`` from sync code."""
        self._signal_sync(signals.pause(self.config, queue, node, local_only))

    def persist_queue(self, queue: str, **settings: Any) -> Coroutine[Any, Any, None]:
        """Store ``queue``'s ``limit``, ``paused``, ``global_limit`` or ``rate_limit`` for the
        cluster (``oban_py_queues``): every node starting later runs the queue so. Changes
        nothing that runs now; send the matching signal for that (the CLI's ``--persist``
        does both)."""
        require_loop("persist_queue", "nothing would be stored")
        return self._run(persisted.storing(self.queries, queue, **settings), None)

    def persist_queue_sync(self, queue: str, **settings: Any) -> None:
        """``persist_queue`` from sync code."""
        self._run_sync(persisted.storing(self.queries, queue, **settings), None)

    def resume_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Resume ``queue`` (``"*"``: every queue) on every node, on ``node``, or only here."""
        return self._signal("resume_queue", signals.resume(self.config, queue, node, local_only))

    def resume_queue_sync(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """``resume_queue`` from sync code."""
        self._signal_sync(signals.resume(self.config, queue, node, local_only))

    def pause_all_queues(
        self, *, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Pause every queue (``pause_queue("*")``)."""
        return self._signal("pause_all_queues", signals.pause(self.config, "*", node, local_only))

    def pause_all_queues_sync(self, *, node: str | None = None, local_only: bool = False) -> None:
        self.pause_queue_sync("*", node=node, local_only=local_only)

    def resume_all_queues(
        self, *, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Resume every queue (``resume_queue("*")``)."""
        return self._signal("resume_all_queues", signals.resume(self.config, "*", node, local_only))

    def resume_all_queues_sync(self, *, node: str | None = None, local_only: bool = False) -> None:
        self.resume_queue_sync("*", node=node, local_only=local_only)

    def scale_queue(
        self, queue: str, *, limit: int, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Change the concurrency limit of ``queue`` (Elixir's payload: options + action, ident)."""
        return self._signal(
            "scale_queue", signals.scale(self.config, queue, limit, node, local_only)
        )

    def scale_queue_sync(
        self, queue: str, *, limit: int, node: str | None = None, local_only: bool = False
    ) -> None:
        """``scale_queue`` from sync code."""
        self._signal_sync(signals.scale(self.config, queue, limit, node, local_only))

    def start_queue(
        self,
        queue: str,
        *,
        limit: int,
        paused: bool | None = None,
        node: str | None = None,
        local_only: bool = False,
    ) -> Coroutine[Any, Any, None]:
        """Start ``queue`` on every node, on ``node`` or here (``node`` is not sent, as Elixir)."""
        return self._signal(
            "start_queue", signals.start(self.config, queue, limit, paused, node, local_only)
        )

    def start_queue_sync(
        self,
        queue: str,
        *,
        limit: int,
        paused: bool | None = None,
        node: str | None = None,
        local_only: bool = False,
    ) -> None:
        """``start_queue`` from sync code."""
        self._signal_sync(signals.start(self.config, queue, limit, paused, node, local_only))

    def stop_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Stop ``queue`` (its running jobs get the shutdown grace)."""
        return self._signal("stop_queue", signals.stop(self.config, queue, node, local_only))

    def stop_queue_sync(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """``stop_queue`` from sync code."""
        self._signal_sync(signals.stop(self.config, queue, node, local_only))
