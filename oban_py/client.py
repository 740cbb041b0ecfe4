"""``Client``: inserting and managing jobs without running any queue (insert-only use).

Every method takes an optional caller's connection so the work commits or rolls back with the
caller's transaction: ``psycopg.AsyncConnection`` or, for ``enqueue``/``enqueue_many``, a sync
``psycopg.Connection``. Without one, a connection of the client's pool is used.

Inserts are one statement: plain jobs of a batch go in a single ``INSERT ... SELECT FROM
unnest(...)`` (chunked for very large batches) that also notifies the queues that gained an
available job. A unique job costs two statements (advisory lock, then lookup-or-insert).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from oban_py import jsonb
from oban_py.config import Config
from oban_py.errors import DatabaseUnavailable, InstanceNotFound
from oban_py.hooks import apply_insert_hooks
from oban_py.job import Job, to_naive_utc
from oban_py.queries import Queries
from oban_py.unique import lock_key, lookup_params

#: Jobs per INSERT statement; larger batches are split (one round trip per chunk).
CHUNK_SIZE = 5_000
#: The fields ``update_job`` may change (Elixir's ``Oban.update_job`` subset).
UPDATABLE = ("args", "max_attempts", "meta", "priority", "queue", "scheduled_at", "tags", "worker")
CONNECT_TIMEOUT = 10

_instances: dict[str, Client] = {}

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


def get_instance(name: str = "Oban") -> Client:
    """The ``Client`` (or ``Oban`` node) created with ``name``; the last one created wins."""
    try:
        return _instances[name]
    except KeyError:
        known = ", ".join(sorted(_instances)) or "none"
        raise InstanceNotFound(
            f"no Oban client named {name!r} exists (known: {known}); create "
            f"Client(dsn=..., name={name!r}) or Oban(...) first"
        ) from None


def channel(prefix: str, name: str) -> str:
    """Elixir's channel name: ``<prefix>.oban_<name>``."""
    return f"{prefix}.oban_{name}"


class Client:
    """Inserts and manages jobs in one prefix of one database.

    ``Client(dsn=...)`` or ``Client(pool=...)`` (a psycopg_pool ``AsyncConnectionPool``), or
    ``Client(config=Config(...))``. The pool opens on first use or ``await client.open()``;
    ``await client.close()`` or ``async with client`` closes a pool the client created.
    """

    def __init__(
        self,
        *,
        dsn: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        prefix: str = "public",
        name: str = "Oban",
        config: Config | None = None,
    ) -> None:
        if config is None:
            config = Config(dsn=dsn, prefix=prefix, name=name)
        elif dsn is not None:
            config = config.model_copy(update={"dsn": dsn})
        if config.dsn is None and pool is None:
            raise ValueError("Client needs a dsn= or a pool=")
        self.config = config
        self.queries = Queries(config.prefix)
        self._owns_pool = pool is None
        self._opened = pool is not None
        self._open_lock: asyncio.Lock | None = None
        if pool is None:
            pool = AsyncConnectionPool(
                config.dsn or "",
                min_size=1,
                max_size=config.pool_size,
                open=False,
                configure=self._configure,
                name=f"oban.{config.name}",
            )
        self.pool: AsyncConnectionPool[Any] = pool
        self._insert_channel = channel(config.prefix, "insert")
        self._signal_channel = channel(config.prefix, "signal")
        _instances[config.name] = self

    @property
    def dsn(self) -> str | None:
        return self.config.dsn

    # -- lifecycle --------------------------------------------------------------------------

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(jsonb.loads, conn)
        # Autocommit: a single enqueue is one round trip, not statement + COMMIT on return to
        # the pool; work of several statements opens its own transaction.
        await conn.set_autocommit(True)

    async def open(self) -> None:
        """Open the pool, failing fast with ``DatabaseUnavailable`` when the DSN does not work."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._opened:
                return
            await self._probe()
            await self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            self._opened = True

    async def _probe(self) -> None:
        dsn = self.config.dsn or ""
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as error:
            raise DatabaseUnavailable(f"invalid database DSN: {error}") from None
        where = "{user}@{host}:{port}/{dbname}".format(
            user=params.get("user", "<default user>"),
            host=params.get("host", "<default host>"),
            port=params.get("port", 5432),
            dbname=params.get("dbname", "<default database>"),
        )
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as error:
            reason = " ".join(str(error).split())
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL {where}: {reason}") from None
        await conn.close()

    async def close(self) -> None:
        """Close the pool if this client created it, and forget the instance name."""
        if self._owns_pool and self._opened:
            await self.pool.close()
            self._opened = False
        if _instances.get(self.config.name) is self:
            del _instances[self.config.name]

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

    # -- inserting --------------------------------------------------------------------------

    async def enqueue(self, job: Job, conn: AnyConnection | None = None) -> Job:
        """Insert ``job``; a unique duplicate returns the existing job with ``conflict=True``."""
        return (await self.enqueue_many([job], conn=conn))[0]

    async def enqueue_many(
        self, jobs: Iterable[Job], conn: AnyConnection | None = None
    ) -> list[Job]:
        """Insert many jobs, returned in input order.

        Plain jobs go in one statement per ``CHUNK_SIZE``. Unlike Elixir's ``insert_all``, which
        ignores uniqueness, unique jobs are checked one by one.
        """
        batch = list(jobs)
        if not batch:
            return []
        if conn is None:
            await self.open()
            async with self.pool.connection() as pooled:
                return await insert_async(pooled, self.queries, batch)
        if isinstance(conn, psycopg.AsyncConnection):
            return await insert_async(conn, self.queries, batch)
        return await asyncio.to_thread(insert_sync, conn, self.queries, batch)

    # -- management -------------------------------------------------------------------------

    async def get_job(
        self, job_id: int, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Job | None:
        """The job with ``job_id``, or None."""
        rows = await self._fetch("job_get", {"id": job_id}, conn)
        return Job.from_row(rows[0]) if rows else None

    async def cancel_job(
        self, job_id: int, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> bool:
        """Cancel one job (see ``cancel_jobs``); True when it was cancelled by this call."""
        return await self.cancel_jobs([job_id], conn) == 1

    async def cancel_jobs(
        self, job_ids: Sequence[int], conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        """Cancel jobs that are not already cancelled, completed or discarded.

        Executing jobs are cancelled too, and every node is told to kill them (``pkill``).
        Returns how many jobs were cancelled.
        """
        params = {"ids": list(job_ids), "channel": self._signal_channel}
        return len(await self._fetch("job_cancel", params, conn))

    async def retry_job(
        self, job_id: int, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> bool:
        """Make one job available again (see ``retry_jobs``)."""
        return await self.retry_jobs([job_id], conn) == 1

    async def retry_jobs(
        self, job_ids: Sequence[int], conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        """Make jobs available now, unless available or executing; each gets at least one more
        attempt. Returns how many were retried."""
        return len(await self._fetch("job_retry", {"ids": list(job_ids)}, conn))

    async def delete_job(
        self, job_id: int, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> bool:
        """Delete one job unless it is executing."""
        return await self.delete_jobs([job_id], conn) == 1

    async def delete_jobs(
        self, job_ids: Sequence[int], conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        """Delete jobs that are not executing. Returns how many were deleted."""
        return len(await self._fetch("job_delete", {"ids": list(job_ids)}, conn))

    async def update_job(
        self, job_id: int, conn: psycopg.AsyncConnection[Any] | None = None, **changes: Any
    ) -> Job | None:
        """Change some of ``args, max_attempts, meta, priority, queue, scheduled_at, tags,
        worker`` with the same validation as a new job. The row is locked while it is updated.
        Returns the updated job, or None when it does not exist."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ValueError(
                f"cannot update {', '.join(sorted(unknown))}; updatable: {', '.join(UPDATABLE)}"
            )
        if conn is None:
            await self.open()
            async with self.pool.connection() as pooled, pooled.transaction():
                return await self._update(pooled, job_id, changes)
        if conn.autocommit:
            async with conn.transaction():
                return await self._update(conn, job_id, changes)
        return await self._update(conn, job_id, changes)

    async def _update(
        self, conn: psycopg.AsyncConnection[Any], job_id: int, changes: dict[str, Any]
    ) -> Job | None:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.queries["job_lock"], {"id": job_id})
            row = await cur.fetchone()
            if row is None:
                return None
            current = Job.from_row(row)
            merged = {k: getattr(current, k) for k in UPDATABLE} | changes
            valid = Job.model_validate({"id": job_id, "state": current.state, **merged})
            params = _row_params(valid)
            params["id"] = job_id
            params["scheduled_at"] = to_naive_utc(valid.scheduled_at)
            await cur.execute(self.queries["job_update"], params)
            updated = await cur.fetchone()
        return Job.from_row(updated) if updated else None

    async def _fetch(
        self, name: str, params: dict[str, Any], conn: psycopg.AsyncConnection[Any] | None
    ) -> list[dict[str, Any]]:
        if conn is None:
            await self.open()
            async with self.pool.connection() as pooled:
                return await _fetch_all(pooled, self.queries[name], params)
        return await _fetch_all(conn, self.queries[name], params)


async def _fetch_all(
    conn: psycopg.AsyncConnection[Any], query: bytes, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


# -- insert statements, shared by async and sync connections ---------------------------------


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row_params(job: Job) -> dict[str, Any]:
    return {
        "state": job.state,
        "queue": job.queue,
        "worker": job.worker,
        "args": _dumps(job.args),
        "meta": _dumps(job.meta),
        "tags": _dumps(job.tags),
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "scheduled_at": to_naive_utc(job.scheduled_at),
    }


def _batch_params(jobs: Sequence[Job], insert_channel: str) -> dict[str, Any]:
    """The whole batch as one JSON document, unpacked by the server with jsonb_to_recordset.

    orjson writes it in one C call; building per-column array literals in Python cost four
    times as much, and psycopg dumping 5,000-element lists element by element far more.
    """
    rows = [
        {
            "state": job.state,
            "queue": job.queue,
            "worker": job.worker,
            "args": job.args,
            "meta": job.meta,
            "tags": job.tags,
            "max_attempts": job.max_attempts,
            "priority": job.priority,
            "scheduled_at": to_naive_utc(job.scheduled_at),
        }
        for job in jobs
    ]
    return {"rows": _dumps(rows), "channel": insert_channel}


def _insert_statement(
    queries: Queries, jobs: Sequence[Job], insert_channel: str
) -> tuple[bytes, dict[str, Any]]:
    # A lone job skips the unnest machinery: a single enqueue is the common call.
    if len(jobs) == 1:
        params = _row_params(jobs[0])
        params["tags"] = list(jobs[0].tags)
        params["channel"] = insert_channel
        return queries["insert_job"], params
    return queries["insert_jobs"], _batch_params(jobs, insert_channel)


def _unique_params(prefix: str, job: Job, insert_channel: str) -> tuple[int, dict[str, Any]]:
    assert job.unique is not None
    values = {"args": job.args, "meta": job.meta, "queue": job.queue, "worker": job.worker}
    params = _row_params(job) | lookup_params(job.unique, values)
    params["replace"] = _dumps(job.replace or {})
    params["channel"] = insert_channel
    return lock_key(prefix, job.unique, values), params


def _plan(jobs: Sequence[Job]) -> tuple[list[list[int]], list[int]]:
    """Chunks of indexes of plain jobs, and the indexes of unique jobs."""
    plain = [i for i, job in enumerate(jobs) if job.unique is None]
    unique = [i for i, job in enumerate(jobs) if job.unique is not None]
    chunks = [plain[i : i + CHUNK_SIZE] for i in range(0, len(plain), CHUNK_SIZE)]
    return chunks, unique


def _unique_result(row: dict[str, Any]) -> Job:
    job = Job.from_row(row)
    job.conflict = bool(row["conflict"])
    return job


async def insert_async(
    conn: psycopg.AsyncConnection[Any], queries: Queries, jobs: Sequence[Job]
) -> list[Job]:
    """Insert ``jobs`` on an async connection (joining its transaction), in input order."""
    jobs = apply_insert_hooks(jobs)
    if conn.autocommit and (len(jobs) > 1 or jobs[0].unique is not None):
        async with conn.transaction():
            return await _insert_async(conn, queries, jobs)
    return await _insert_async(conn, queries, jobs)


async def _insert_async(
    conn: psycopg.AsyncConnection[Any], queries: Queries, jobs: Sequence[Job]
) -> list[Job]:
    insert_channel = channel(queries.prefix, "insert")
    chunks, unique = _plan(jobs)
    results: list[Job | None] = [None] * len(jobs)
    # A client-side cursor holds nothing on the server: left to the garbage collector, it
    # spares the awaited close that made up a tenth of a single enqueue.
    plain = conn.cursor(row_factory=tuple_row)
    for chunk in chunks:
        sent = [jobs[i] for i in chunk]
        await plain.execute(*_insert_statement(queries, sent, insert_channel))
        # Each row starts with id, inserted_at, scheduled_at (the single-job form adds more).
        for i, job, row in zip(chunk, sent, await plain.fetchall(), strict=True):
            results[i] = job.stored(row[0], row[1], row[2])
    if unique:
        await _insert_unique(conn, queries, jobs, unique, results)
    return [job for job in results if job is not None]


async def _insert_unique(
    conn: psycopg.AsyncConnection[Any],
    queries: Queries,
    jobs: Sequence[Job],
    unique: list[int],
    results: list[Job | None],
) -> None:
    insert_channel = channel(queries.prefix, "insert")
    async with conn.cursor(row_factory=dict_row) as cur:
        for i in unique:
            key, params = _unique_params(queries.prefix, jobs[i], insert_channel)
            await cur.execute(queries["unique_lock"], {"key": key})
            await cur.execute(queries["unique_insert"], params, prepare=False)
            found = await cur.fetchone()
            assert found is not None
            results[i] = _unique_result(found)


def insert_sync(conn: psycopg.Connection[Any], queries: Queries, jobs: Sequence[Job]) -> list[Job]:
    """Insert ``jobs`` on a sync connection (joining its transaction), in input order.

    Usable directly from synchronous code: ``insert_sync(conn, Queries("public"), [job])``.
    """
    jobs = apply_insert_hooks(jobs)
    if conn.autocommit and (len(jobs) > 1 or jobs[0].unique is not None):
        with conn.transaction():
            return _insert_sync(conn, queries, jobs)
    return _insert_sync(conn, queries, jobs)


def _insert_sync(conn: psycopg.Connection[Any], queries: Queries, jobs: Sequence[Job]) -> list[Job]:
    insert_channel = channel(queries.prefix, "insert")
    chunks, unique = _plan(jobs)
    results: list[Job | None] = [None] * len(jobs)
    with conn.cursor(row_factory=dict_row) as cur:
        for chunk in chunks:
            sent = [jobs[i] for i in chunk]
            cur.execute(*_insert_statement(queries, sent, insert_channel))
            for i, job, row in zip(chunk, sent, cur.fetchall(), strict=True):
                results[i] = job.stored(row["id"], row["inserted_at"], row["scheduled_at"])
        for i in unique:
            key, params = _unique_params(queries.prefix, jobs[i], insert_channel)
            cur.execute(queries["unique_lock"], {"key": key})
            cur.execute(queries["unique_insert"], params, prepare=False)
            found = cur.fetchone()
            assert found is not None
            results[i] = _unique_result(found)
    return [job for job in results if job is not None]
