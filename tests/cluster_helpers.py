"""Test-only holders for the cluster duties: a node, its producers, a LISTEN recorder.

The duties take any object with ``config, pool, queries, notifier, producers, is_leader``; these
holders provide that against the real database. The notifier is the library's; ``PgNotifier`` is a
minimal one on real LISTEN/NOTIFY that can be made deaf, to play a broken LISTEN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from nodekit import wait_for
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from oban_py.config import Config
from oban_py.sql import Queries

Callback = Callable[[dict[str, Any]], None]


def channel(prefix: str, name: str) -> str:
    return f"{prefix}.oban_{name}"


class PgNotifier:
    """LISTEN/NOTIFY with Oban's channel names; ``deaf`` drops every incoming message."""

    def __init__(self, config: Config, dsn: str) -> None:
        self.config = config
        self.dsn = dsn
        self.deaf = False
        self._callbacks: dict[str, list[Callback]] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def listen(self, name: str, callback: Callback) -> None:
        self._callbacks.setdefault(name, []).append(callback)

    async def _listen(self, name: str) -> None:
        assert self._conn is not None
        ident = sql.Identifier(channel(self.config.prefix, name))
        await self._conn.execute(sql.SQL("LISTEN {}").format(ident))

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        # Every channel up front: a LISTEN issued while notifies() runs would wait on its lock.
        for name in ("insert", "leader", "sonar", "gossip", "signal"):
            await self._listen(name)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._conn is not None
        prefix = f"{self.config.prefix}.oban_"
        async for note in self._conn.notifies():
            if self.deaf or not note.channel.startswith(prefix):
                continue
            payload = json.loads(note.payload)
            ident = payload.get("ident")
            if ident not in (None, "any", self.config.ident):
                continue
            for callback in self._callbacks.get(note.channel[len(prefix) :], []):
                callback(payload)

    async def notify(self, name: str, payloads: list[dict[str, Any]]) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            for payload in payloads:
                await conn.execute(
                    "SELECT pg_notify(%s, %s)",
                    (channel(self.config.prefix, name), json.dumps(payload)),
                )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            await self._conn.close()


@dataclass
class Producer:
    """A stand-in local producer: records wakes and reports a check-in."""

    queue: str
    node: str = "py-node"
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    running: list[int] = field(default_factory=list)
    limit: int = 10
    paused: bool = False
    poll_interval: float = 1.0
    wakes: int = 0

    def wake(self) -> None:
        self.wakes += 1

    def check(self) -> dict[str, Any]:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z"
        return {
            "limit": self.limit,
            "paused": self.paused,
            "queue": self.queue,
            "node": self.node,
            "name": "Oban",
            "uuid": self.uuid,
            "running": list(self.running),
            "refresh_interval": 30_000,
            "started_at": self.started_at.replace(tzinfo=None).isoformat() + "Z",
            "updated_at": now,
        }


@dataclass
class Node:
    config: Config
    pool: AsyncConnectionPool[Any]
    queries: Queries
    notifier: Any = None
    producers: dict[str, Any] = field(default_factory=dict)
    peer: Any = None
    leader: bool | None = None
    #: no liveness threads: the lifeline rescues by heartbeat without waiting for its own beats
    liveness: Any = None

    @property
    def is_leader(self) -> bool:
        if self.leader is not None:
            return self.leader
        return bool(getattr(self.peer, "is_leader", False))


@contextlib.asynccontextmanager
async def node(dsn: str, *, notifier: bool | str = True, **settings: Any) -> Any:
    """A holder node; ``notifier`` True uses the library's Notifier, ``"pg"`` the stand-in."""
    config = Config(dsn=dsn, **settings)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False)
    await pool.open()
    holder = Node(config, pool, Queries(config.prefix))
    if notifier == "pg":
        holder.notifier = PgNotifier(config, dsn)
        await holder.notifier.start()
    elif notifier:
        from oban_py.notifier import Notifier

        holder.notifier = Notifier(config, dsn)
        await holder.notifier.start()
    try:
        yield holder
    finally:
        if holder.notifier is not None:
            await holder.notifier.stop()
        await pool.close()


class Recorder:
    """An independent LISTEN client, like the one that captured the fixtures."""

    def __init__(self, dsn: str, prefix: str = "public") -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        for name in ("insert", "leader", "sonar", "gossip"):
            ident = sql.Identifier(channel(self.prefix, name))
            await self._conn.execute(sql.SQL("LISTEN {}").format(ident))
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._conn is not None
        async for note in self._conn.notifies():
            name = note.channel.split(".oban_", 1)[1]
            self.messages.append((name, json.loads(note.payload)))

    def on(self, name: str) -> list[dict[str, Any]]:
        return [payload for channel_name, payload in self.messages if channel_name == name]

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        assert self._conn is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._conn.close()


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], within: float = 5.0, step: float = 0.02
) -> None:
    """Wait until ``predicate`` holds, failing after ``within`` seconds."""
    await wait_for(predicate, timeout=within, step=step)


async def insert_job(
    conn: psycopg.AsyncConnection[Any],
    *,
    queue: str = "default",
    state: str = "available",
    worker: str = "Interop.EchoWorker",
    scheduled_in: float = 0.0,
    **columns: Any,
) -> int:
    """A job row written directly, with ``scheduled_at`` relative to now (seconds)."""
    names = ["queue", "state", "worker", *columns]
    values = {"queue": queue, "state": state, "worker": worker, **columns}
    stmt = sql.SQL(
        "INSERT INTO oban_jobs ({cols}, scheduled_at) VALUES ({vals},"
        " timezone('UTC', now()) + make_interval(secs => %(scheduled_in)s)) RETURNING id"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(sql.Placeholder(n) for n in names),
    )
    cur = await conn.execute(stmt, {**values, "scheduled_in": scheduled_in})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def states(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    cur = await conn.execute("SELECT id, state::text FROM oban_jobs ORDER BY id")
    return {int(r[0]): str(r[1]) for r in await cur.fetchall()}
