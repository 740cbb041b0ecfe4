"""SQLAlchemy 2: enqueue in the transaction of a ``Session``, ``AsyncSession`` or ``Connection``.

The engine must use the psycopg 3 dialect (``postgresql+psycopg://``): the job is inserted on
the very psycopg connection SQLAlchemy holds, so it commits or rolls back with the caller's work.
Every function goes through the ``Client`` registered under ``name`` (default ``"Oban"``), for
its prefix and insert rules; a client used only this way never opens a pool of its own.

    async with AsyncSession(engine) as session, session.begin():
        session.add(User(email=email))
        await enqueue(Mailer.new({"email": email}), session)

    with Session(engine) as session, session.begin():
        session.add(User(email=email))
        enqueue_sync(Mailer.new({"email": email}), session)

A worker writing through SQLAlchemy completes its job in the same transaction with
``complete_in(job, session)`` (``complete_in_sync`` in a plain ``def process``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

import oban_py
from oban_py import Client, Job, get_instance

SyncConn = Session | Connection
AnyConn = Session | Connection | AsyncSession | AsyncConnection


def _driver(raw: Any) -> Any:
    driver = getattr(raw, "driver_connection", None)
    if not isinstance(driver, psycopg.Connection | psycopg.AsyncConnection):
        raise TypeError(
            "oban_py_ext.sqlalchemy needs the psycopg 3 dialect (postgresql+psycopg://), "
            f"got a {type(driver).__name__} driver connection"
        )
    return driver


def psycopg_connection(conn: SyncConn) -> psycopg.Connection[Any]:
    """The psycopg connection under a ``Session`` (which begins its transaction) or
    ``Connection``."""
    if isinstance(conn, Session):
        conn = conn.connection()
    elif not conn.in_transaction():
        # SQLAlchemy's autobegin, as an execute() would: its commit() is a no-op otherwise.
        conn.begin()
    driver: psycopg.Connection[Any] = _driver(conn.connection)
    return driver


async def psycopg_async_connection(
    conn: AsyncSession | AsyncConnection,
) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under an ``AsyncSession`` (which begins its transaction) or
    ``AsyncConnection``."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    elif not conn.in_transaction():
        await conn.begin()
    driver: psycopg.AsyncConnection[Any] = _driver(await conn.get_raw_connection())
    return driver


async def enqueue_many(jobs: Iterable[Job], conn: AnyConn, *, name: str = "Oban") -> list[Job]:
    """Insert ``jobs`` in ``conn``'s transaction with the client named ``name`` (its prefix)."""
    client: Client = get_instance(name)
    if isinstance(conn, AsyncSession | AsyncConnection):
        return await client.enqueue_many(jobs, conn=await psycopg_async_connection(conn))
    return await client.enqueue_many(jobs, conn=psycopg_connection(conn))


async def enqueue(job: Job, conn: AnyConn, *, name: str = "Oban") -> Job:
    """Insert ``job`` in ``conn``'s transaction (sync or async session or connection)."""
    return (await enqueue_many([job], conn, name=name))[0]


def enqueue_many_sync(jobs: Iterable[Job], conn: SyncConn, *, name: str = "Oban") -> list[Job]:
    """Insert ``jobs`` from synchronous code in ``conn``'s transaction, with the client named
    ``name`` (``Client.enqueue_many_sync``; the client's pools stay closed)."""
    driver = psycopg_connection(conn)
    return get_instance(name).enqueue_many_sync(jobs, conn=driver)


def enqueue_sync(job: Job, conn: SyncConn, *, name: str = "Oban") -> Job:
    """Insert ``job`` from synchronous code in ``conn``'s transaction (``enqueue_many_sync``)."""
    return enqueue_many_sync([job], conn, name=name)[0]


async def complete_in(job: Job, conn: AnyConn) -> None:
    """Complete ``job``'s running attempt in ``conn``'s transaction (``oban_py.complete_in``):
    the job commits as completed with the session's work, or not at all."""
    if isinstance(conn, AsyncSession | AsyncConnection):
        await oban_py.complete_in(job, await psycopg_async_connection(conn))
    else:
        oban_py.complete_in_sync(job, psycopg_connection(conn))


def complete_in_sync(job: Job, conn: SyncConn) -> None:
    """``complete_in`` from a plain ``def process``, on a sync ``Session`` or ``Connection``."""
    oban_py.complete_in_sync(job, psycopg_connection(conn))
