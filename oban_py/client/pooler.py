"""Telling whether connections reach PostgreSQL through a connection pooler, and in which mode.

Behind a pooler in transaction mode (pgbouncer ``pool_mode = transaction``, and the like)
consecutive transactions of one client connection may run on different server sessions. A
server-side prepared statement (psycopg prepares a statement after its fifth execution) is then
missing in the next session, or already there under the same name for another client, and with
equal parameter counts another statement would run in its place. So the pools turn prepared
statements off on any connection that goes through a pooler, and LISTEN, which belongs to a
session, is known not to work through a transaction pooler.

A pooler answers cancel requests itself, so it gives its clients a backend key of its own: a
connection whose key does not name the server process it talks to goes through a pooler. Two
connections then tell the mode: behind a session pooler each keeps its server session, behind a
transaction pooler a server session passes from one to the other between transactions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import psycopg

Mode = Literal["transaction", "session"]

_PID = "SELECT pg_backend_pid()"


def _server_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_PID).fetchone()
    return int(row[0]) if row else -1


async def _server_pid_async(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute(_PID)).fetchone()
    return int(row[0]) if row else -1


def _mode(first: int, other: int, again: int) -> Mode:
    # ``other``: the second connection's session inside a transaction it holds open; ``again``:
    # the first connection's session meanwhile. A session pooler keeps both apart and stable.
    return "transaction" if other == first or again != first else "session"


async def detect(
    conn: psycopg.AsyncConnection[Any],
    connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
) -> Mode | None:
    """The pooling mode between ``conn`` (autocommit) and its server, ``None`` for a direct
    connection; ``connect`` opens a second connection, only when a pooler was found."""
    first = await _server_pid_async(conn)
    if conn.info.backend_pid == first:
        return None
    try:
        async with await connect() as other_conn:
            await other_conn.set_autocommit(False)
            other = await _server_pid_async(other_conn)
            again = await _server_pid_async(conn)
            await other_conn.rollback()
    except psycopg.Error:
        # A statement pooler refuses the transaction: stricter still than a transaction one.
        return "transaction"
    return _mode(first, other, again)


def detect_sync(
    conn: psycopg.Connection[Any], connect: Callable[[], psycopg.Connection[Any]]
) -> Mode | None:
    """``detect`` for sync connections."""
    first = _server_pid(conn)
    if conn.info.backend_pid == first:
        return None
    try:
        with connect() as other_conn:
            other_conn.autocommit = False
            other = _server_pid(other_conn)
            again = _server_pid(conn)
            other_conn.rollback()
    except psycopg.Error:
        return "transaction"
    return _mode(first, other, again)


def advice(mode: Mode, where: str) -> str:
    """The one log line that says what was found and what the pools do about it."""
    if mode == "session":
        return (
            f"PostgreSQL {where} is reached through a connection pooler in session mode:"
            " server-side prepared statements are off for these connections"
        )
    return (
        f"PostgreSQL {where} is reached through a connection pooler in transaction mode (such"
        " as pgbouncer pool_mode=transaction or statement): server-side prepared statements"
        " are off for these connections, and LISTEN does not work through it, so queues poll"
        " unless notifier_dsn reaches PostgreSQL directly or through a session pool"
    )
