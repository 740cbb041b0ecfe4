"""The connection pools of a client: an async one for the runtime, a sync one for sync callers.

Both configure their connections the same way: exact JSON decoding (``oban_py.job.jsonb``) and
autocommit, so a single enqueue is one round trip rather than statement + COMMIT on return to
the pool; work of several statements opens its own transaction. Each opens on first use, so a
script that only calls ``enqueue_sync`` never starts the async pool and vice versa; a pool the
caller gives is opened on first use too (when not open yet), and stays the caller's to close.

The async pool a node creates never hands out a connection whose session is read-only
(``dberrors.check_writable``: what the server reported, no round trip), so connections left on
a demoted primary after a failover are replaced rather than used; a plain client's pools may
read a replica. Either way a read-only error drains the async pool (``dberrors.recover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from oban_py import dberrors
from oban_py.aio import sever_all
from oban_py.client import pooler
from oban_py.job import jsonb
from oban_py.job.errors import DatabaseUnavailable

CONNECT_TIMEOUT = 10
#: The pool's connections notice a peer gone silent (a partition: no reset, packets dropped)
#: in seconds rather than after TCP's retransmissions (15 minutes on Linux), as the heartbeat
#: connection does (``liveness._CONNECT``): probes after 10 s idle, dead after 3 unanswered 5 s
#: apart, or after 30 s of data unacknowledged. A statement waiting for a result sends nothing,
#: so a long one is never cut by them. Only what the DSN does not set itself.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
#: What an aborted pool waits for its workers (connections being made) before closing anyway.
ABORT_CLOSE_TIMEOUT = 0.2
#: What a connection that goes through a pooler is given: no server-side prepared statements.
_UNPREPARED: dict[str, Any] = {"prepare_threshold": None}

_log = structlog.get_logger("oban.pool")
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS

A = TypeVar("A")
T = TypeVar("T")
#: What ``AsyncPool.run`` calls: a connection, the caller's argument and, for the held
#: connection, its kept tuple cursor.
Use = Callable[[psycopg.AsyncConnection[Any], A, "psycopg.AsyncCursor[Any] | None"], Awaitable[T]]


async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(jsonb.loads, conn)
    await conn.set_autocommit(True)


def _configure_sync(conn: psycopg.Connection[Any]) -> None:
    set_json_loads(jsonb.loads, conn)
    conn.autocommit = True


def keepalives(dsn: str) -> dict[str, Any]:
    """``KEEPALIVES`` without what ``dsn`` sets itself: the user's parameters win."""
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dict(KEEPALIVES)  # reported by the probe, with the DSN's own error
    return {k: v for k, v in KEEPALIVES.items() if k not in given}


def _where(dsn: str) -> str:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise DatabaseUnavailable(f"invalid database DSN: {error}") from None
    return "{user}@{host}:{port}/{dbname}".format(
        user=params.get("user", "<default user>"),
        host=params.get("host", "<default host>"),
        port=params.get("port", 5432),
        dbname=params.get("dbname", "<default database>"),
    )


def _unavailable(where: str, error: psycopg.OperationalError) -> DatabaseUnavailable:
    reason = " ".join(str(error).split())
    return DatabaseUnavailable(f"cannot connect to PostgreSQL {where}: {reason}")


class AsyncPool:
    """The async pool: created from a DSN (owned, closed by ``close``) or given by the caller."""

    def __init__(
        self,
        dsn: str | None,
        size: int,
        name: str,
        pool: AsyncConnectionPool[Any] | None,
        *,
        writable: bool = False,
    ) -> None:
        self.dsn = dsn
        self.owned = pool is None
        self.opened = False
        #: the pooler found between the DSN and PostgreSQL when the pool opened (``pooler.py``)
        self.pooler: pooler.Mode | None = None
        self._lock: asyncio.Lock | None = None
        #: the event loop the pool was opened in: its workers and connections belong to it
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the connections of the pool made here, which ``abort`` severs
        self._made: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

        def fresh() -> AsyncConnectionPool[Any]:
            return AsyncConnectionPool(
                dsn or "",
                min_size=1,
                max_size=size,
                open=False,
                configure=self._configure,
                check=dberrors.check_writable if writable else None,
                name=name,
                kwargs=keepalives(dsn or ""),
            )

        #: makes the pool anew (not yet open) when the loop it was opened in has gone
        self.factory: Callable[[], AsyncConnectionPool[Any]] = fresh
        #: also make it anew for a loop that is merely another one (the testing client's sync
        #: helpers run loops of their own); a node's pool stays with its running loop
        self.reopen_in_any_loop = False
        self.pool: AsyncConnectionPool[Any] = fresh() if pool is None else pool
        # One connection kept out of the pool for the client's own calls while it is free:
        # sequential enqueues skip the pool's checkout and return (most of a single enqueue's
        # client time); concurrent calls take pool connections as before.
        self._held: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        self._held_busy = False

    async def run(self, use: Use[A, T], arg: A) -> T:
        """``use(conn, arg, cursor)`` on a connection for one call: the held one when it is
        free, with a tuple cursor kept for it (else ``None``), otherwise one of the pool."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop() and not loop.is_closed():
            # Another thread's loop (a plain ``def`` job's ``asyncio.run``) using a node's
            # pool: its connections and workers belong to the loop that opened it, which
            # would never wake this one, so the call runs there (as any cross-loop call, it
            # cannot be made from a thread that loop is blocked waiting for).
            call = asyncio.run_coroutine_threadsafe(self._run_here(use, arg), loop)
            return await asyncio.wrap_future(call)
        return await self._run_here(use, arg)

    async def _run_here(self, use: Use[A, T], arg: A) -> T:
        try:
            return await self._run(use, arg)
        except Exception as error:
            # A read-only server (a failover) drains the pool, so the caller's retry works.
            await dberrors.recover(self.pool, error)
            raise

    async def _run(self, use: Use[A, T], arg: A) -> T:
        if self._held_busy or self.pool.max_size < 4:
            async with self.pool.connection() as conn:
                return await use(conn, arg, None)
        self._held_busy = True
        try:
            conn = self._held
            if conn is None:
                conn = self._held = await self.pool.getconn()
                # Made once: a cursor costs a single enqueue as much as its own Python work.
                self._cursor = conn.cursor(row_factory=tuple_row)
            try:
                result = await use(conn, arg, self._cursor)
                # Read off libpq directly: ``conn.info`` builds an object per call.
                status = conn.pgconn.transaction_status
                if status == _INTRANS:
                    # A caller's pool without autocommit: commit, as ``pool.connection()``
                    # does on a clean exit (returned to the pool, the work would roll back).
                    await conn.commit()
                elif status != _IDLE:
                    await self._release()
            except BaseException:
                await self._release()
                raise
            return result
        finally:
            self._held_busy = False

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._made.add(conn)
        await configure_async(conn)

    async def abort(self) -> None:
        """Sever every connection of the pool made here, in use or idle, and close it: for a
        stop that found the database out of reach (a silent network), so that what still
        waits on a statement fails now, and what comes later fails at once (``PoolClosed``)
        instead of waiting for a connection or an answer. A pool given by the caller is left
        as it is, apart from the held connection."""
        held = self._held
        sever_all([*self._made, *([held] if held is not None else [])])
        if self.owned and self.opened:
            # Workers making a connection through the silent network are not waited for.
            await self.pool.close(timeout=ABORT_CLOSE_TIMEOUT)
            self.opened = False

    def replace(self, pool: AsyncConnectionPool[Any]) -> None:
        """Use ``pool`` (not yet open) from now on, forgetting the old one unclosed: for a pool
        whose event loop has gone, which can be neither used nor closed from here."""
        self.pool = pool
        self.owned = True
        self.opened = False
        self._lock = None
        self._held = None
        self._cursor = None
        self._held_busy = False

    async def _release(self) -> None:
        # The pool checks what it gets back: a broken or mid-transaction one is reset or
        # replaced, so a failed call never leaves the held connection in a bad state.
        conn, self._held, self._cursor = self._held, None, None
        if conn is not None:
            await self.pool.putconn(conn)

    def ready(self) -> bool:
        """Open, and usable from the running loop (a pool a caller gave is theirs to keep so)."""
        return self.opened and (not self.owned or self._loop is asyncio.get_running_loop())

    def in_running_loop(self) -> bool:
        """Opened by this class in the running loop."""
        return self.owned and self.opened and self._loop is asyncio.get_running_loop()

    def _abandon_if_stale(self) -> None:
        loop = self._loop
        if not (self.owned and self.opened) or loop is asyncio.get_running_loop():
            return
        if loop is not None and not loop.is_closed() and not self.reopen_in_any_loop:
            return  # another thread's live loop (a node's): never pulled from under it
        # Opened in a loop that has gone (a second ``asyncio.run`` of a script): its workers
        # died with it, so it would hand out one connection and then wait for ever for the
        # next; it can be neither used nor closed from here. Its connections are closed at the
        # socket, and a fresh pool opens in this loop.
        idle = getattr(self.pool, "_pool", ())  # psycopg_pool's idle connections
        for conn in {*self._made, *idle, *([self._held] if self._held is not None else [])}:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()
        self._held, self._cursor, self._held_busy = None, None, False
        self.pool, self.opened, self._lock = self.factory(), False, None

    async def open(self) -> None:
        """Open the pool (again, in this loop, if it was opened in a loop that has gone),
        failing fast with ``DatabaseUnavailable`` when the DSN does not work."""
        self._abandon_if_stale()
        if self.opened:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.opened:
                return
            if self.owned:
                await self._probe()
            if self.pool.closed:
                # A caller's pool created with open=False is opened here, as documented.
                await self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            self.opened = True
            self._loop = asyncio.get_running_loop()

    async def _probe(self) -> None:
        dsn = self.dsn or ""
        where = _where(dsn)

        async def connect() -> psycopg.AsyncConnection[Any]:
            return await psycopg.AsyncConnection.connect(
                dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True
            )

        try:
            async with await connect() as conn:
                self.pooler = await pooler.detect(conn, connect)
        except psycopg.OperationalError as error:
            raise _unavailable(where, error) from None
        if self.pooler is not None:
            kwargs = self.pool.kwargs
            # Only a pool made by the caller (``replace``) may compute its arguments.
            if not callable(kwargs):
                self.pool.kwargs = {**(kwargs or {}), **_UNPREPARED}
            _log.warning(pooler.advice(self.pooler, where), pooler=self.pooler)

    async def close(self) -> None:
        self._abandon_if_stale()
        if self._held is not None and not self._held_busy:
            await self._release()
        if self.owned and self.opened:
            await self.pool.close()
            self.opened = False


class SyncPool:
    """The sync pool, for ``*_sync`` calls made without a connection; opened on first use."""

    def __init__(self, dsn: str | None, size: int, name: str, pool: ConnectionPool[Any] | None):
        self.dsn = dsn
        self.owned = pool is None
        self.opened = False
        self._given = pool
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self.pooler: pooler.Mode | None = None
        #: What makes the pool (a ``ConnectionPool`` subclass may be put here before first use).
        self.factory: Callable[..., ConnectionPool[Any]] = ConnectionPool

    def get(self) -> ConnectionPool[Any]:
        """The open pool, created and probed on the first call."""
        if self._given is not None and self.opened:
            return self._given
        with self._lock:
            if self._given is None:
                if self.dsn is None:
                    raise ValueError(
                        "sync calls without conn= need a client built with dsn= or sync_pool="
                    )
                self._probe()
                self._given = self.factory(
                    self.dsn,
                    min_size=1,
                    max_size=self._size,
                    open=False,
                    configure=_configure_sync,
                    name=f"{self._name}.sync",
                    kwargs=dict(_UNPREPARED) if self.pooler else None,
                )
            if not self.opened:
                if self._given.closed:
                    self._given.open(wait=True, timeout=CONNECT_TIMEOUT)
                self.opened = True
            return self._given

    def _probe(self) -> None:
        dsn = self.dsn or ""
        where = _where(dsn)

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True)

        try:
            with connect() as conn:
                self.pooler = pooler.detect_sync(conn, connect)
        except psycopg.OperationalError as error:
            raise _unavailable(where, error) from None
        if self.pooler is not None:
            _log.warning(pooler.advice(self.pooler, where), pooler=self.pooler)

    def close(self) -> None:
        with self._lock:
            if self.owned and self.opened and self._given is not None:
                self._given.close()
                self._given = None
                self.opened = False
