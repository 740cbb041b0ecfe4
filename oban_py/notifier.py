"""PostgreSQL LISTEN/NOTIFY exactly as Elixir Oban's Postgres notifier uses it (INTEROP §2.2).

- Channels are ``"<prefix>.oban_<name>"``; LISTEN needs the name double-quoted (the dot, and
  any prefix that is not a plain lower-case identifier), done with ``sql.Identifier``.
- A payload is JSON with keys in sorted order and no spaces (what Jason writes for the small
  maps Oban sends). Above 512 bytes it is ``"Z:" + Base64(gzip(json))``, gzip as Erlang's
  ``:zlib.gzip`` writes it (level 6, mtime 0, OS byte 3): CPython's zlib is the same library
  with the same defaults, so the bytes are identical (compat_fixtures ``notify_encoder_output``).
- Decoding accepts plain JSON, ``Z:`` + Base64 gzip and the legacy bare Base64 gzip (``H4sI``).
  Anything else is logged and dropped; it never breaks the LISTEN connection.
- A payload carrying ``ident`` is delivered only when it is ``"any"`` or this node's ident, on
  every channel.

Oversized payloads: Postgres rejects a NOTIFY of 8000 bytes or more with an error, which would
abort the caller's transaction (a job insert). ``publish`` therefore drops any payload still that
large after compression and logs an error naming the channel; the rest of the batch is sent.
Splitting is not an option: a payload is one message to Elixir, which has no reassembly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import orjson
import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from oban_py import telemetry
from oban_py.config import Config
from oban_py.sql import Queries

Callback = Callable[[dict[str, Any]], Any]
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
#: What ``Notifier`` accepts to open connections: a DSN, or a function (sync or async) giving a
#: DSN or an ``AsyncConnection``.
ConnectSource = str | Callable[[], Any]
Status = Literal["stopped", "connecting", "connected", "reconnecting"]

#: Payloads whose JSON is longer than this many bytes are compressed (Elixir's threshold).
COMPRESS_ABOVE = 512
#: Postgres refuses NOTIFY payloads of this many bytes or more.
MAX_PAYLOAD = 8000
#: Decompressed size cap: a NOTIFY is under 8 kB, so nothing legitimate comes near it, and it
#: keeps a hostile gzip bomb from exhausting memory.
MAX_DECOMPRESSED = 1 << 20
#: Seconds before a (re)connect attempt gives up, so a black-holed server cannot stall the loop.
CONNECT_TIMEOUT = 5

_log = structlog.get_logger("oban_py.notifier")


def channel(prefix: str, name: str) -> str:
    """The full channel name Elixir uses: ``"<prefix>.oban_<name>"``."""
    return f"{prefix}.oban_{name}"


def _gzip(data: bytes) -> bytes:
    # wbits 31 = gzip container; zlib writes mtime 0 and OS 3, as Erlang's :zlib.gzip does.
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _gunzip(data: bytes) -> bytes | None:
    decompressor = zlib.decompressobj(31)
    out = decompressor.decompress(data, MAX_DECOMPRESSED)
    if decompressor.unconsumed_tail or not decompressor.eof:
        return None
    return out


def encode(payload: dict[str, Any]) -> str:
    """The NOTIFY text for ``payload``: sorted compact JSON, or ``Z:`` gzip above 512 bytes."""
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    if len(data) > COMPRESS_ABOVE:
        return "Z:" + base64.b64encode(_gzip(data)).decode("ascii")
    return data.decode("utf-8")


def decode(text: str) -> dict[str, Any] | list[Any] | None:
    """The payload of a NOTIFY text, or None when it is not one Oban could have sent."""
    try:
        if text.startswith("Z:") or text.startswith("H4sI"):
            raw = base64.b64decode(text[2:] if text.startswith("Z:") else text, validate=True)
            data = _gunzip(raw)
            if data is None:
                return None
        else:
            data = text.encode("utf-8")
        value = orjson.loads(data)
    except (ValueError, binascii.Error, zlib.error, UnicodeError):
        return None
    return value if isinstance(value, dict | list) else None


def encode_batch(channel_name: str, payloads: Iterable[dict[str, Any]]) -> list[str]:
    """The NOTIFY texts of ``payloads`` (``notify.sql``'s parameter), dropping, with an error
    logged, any too large for PostgreSQL even compressed."""
    texts = []
    for payload in payloads:
        text = encode(payload)
        if len(text.encode("utf-8")) >= MAX_PAYLOAD:
            _log.error(
                "notification dropped: too large even compressed",
                channel=channel_name,
                size=len(text),
                limit=MAX_PAYLOAD,
            )
            continue
        texts.append(text)
    return texts


async def publish(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    channel_name: str,
    payloads: list[dict[str, Any]],
) -> None:
    """NOTIFY each payload on ``channel_name`` with one statement.

    Runs in ``conn``'s current transaction if there is one, so the messages go out on commit
    and vanish on rollback, as Elixir's do.
    """
    texts = encode_batch(channel_name, payloads)
    if texts:
        params = {"channel": channel(prefix, channel_name), "payloads": texts}
        await conn.execute(Queries(prefix)["notify"], params)


def publish_sync(
    conn: psycopg.Connection[Any],
    prefix: str,
    channel_name: str,
    payloads: list[dict[str, Any]],
) -> None:
    """``publish`` for a synchronous connection."""
    texts = encode_batch(channel_name, payloads)
    if texts:
        params = {"channel": channel(prefix, channel_name), "payloads": texts}
        conn.execute(Queries(prefix)["notify"], params)


class Notifier:
    """One LISTEN connection per node, dispatching decoded payloads to callbacks by channel.

    ``connect`` is a DSN, or a function (sync or async) returning a DSN or a new connection; by
    default the config's DSN. ``notify`` sends through ``pool`` when given, else a short-lived
    connection. The LISTEN connection is re-opened with backoff when it drops; on_reconnect
    callbacks then run, because anything published while it was down is lost.
    """

    #: seconds between checks for newly added channels while waiting for notifications
    poll = 0.25
    reconnect_min = 0.1
    reconnect_max = 5.0

    def __init__(
        self,
        config: Config,
        connect: ConnectSource | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        if connect is None:
            connect = config.dsn
        if connect is None:
            raise ValueError("Notifier needs a DSN or a connect function")
        source = connect

        async def open_connection() -> psycopg.AsyncConnection[Any]:
            # A DSN, or a function giving a DSN or a connection (sync or async): what a pool's
            # ``conninfo`` or an application's credential provider may be.
            value: Any = source() if callable(source) else source
            if inspect.isawaitable(value):
                value = await value
            if isinstance(value, psycopg.AsyncConnection):
                return value
            return await psycopg.AsyncConnection.connect(
                str(value), autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )

        self._connect: Connect = open_connection
        self._callbacks: dict[str, list[Callback]] = {}
        self._names: dict[str, str] = {}  # full channel -> short name
        self._listening: set[str] = set()  # full channels LISTENed on the current connection
        self._reconnect_callbacks: list[Callable[[], Any]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status: Status = "stopped"
        self._ever_connected = False
        self._changed = asyncio.Condition()

    # -- public API ----------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def connected(self) -> bool:
        return self._status == "connected"

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection (None while disconnected)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def listen(self, name: str, callback: Callback) -> None:
        """Call ``callback(payload)`` for each in-scope payload on channel ``name``.

        Allowed before and after ``start``; a new channel is LISTENed within ``poll`` seconds
        (``await wait_listening()`` to be sure).
        """
        full = channel(self.config.prefix, name)
        self._names[full] = name
        self._callbacks.setdefault(name, []).append(callback)

    def on_reconnect(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` after the LISTEN connection is re-established."""
        self._reconnect_callbacks.append(callback)

    async def notify(self, name: str, payloads: list[dict[str, Any]]) -> None:
        """Publish ``payloads`` on channel ``name`` (committed at once)."""
        if not payloads:
            return
        if self.pool is not None:
            async with self.pool.connection() as conn:
                await publish(conn, self.config.prefix, name, payloads)
            return
        conn = await self._connect()
        async with conn:
            await publish(conn, self.config.prefix, name, payloads)

    async def start(self) -> None:
        """Open the LISTEN connection (retrying in the background if the first try fails)."""
        if self._task is not None:
            return
        self._status = "connecting"
        try:
            await self._open()
        except Exception as error:
            self._status = "reconnecting"
            _log.error("notifier could not connect; retrying", error=str(error))
        self._task = asyncio.create_task(self._run(), name="oban-notifier")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in list(self._tasks):
            pending.cancel()
        await self._close()
        self._status = "stopped"
        self._ever_connected = False

    async def wait_listening(self, within: float = 5.0) -> None:
        """Wait until connected and every registered channel is LISTENed."""

        def ready() -> bool:
            return self.connected and set(self._names) <= self._listening

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(ready)

    # -- connection ----------------------------------------------------------------------------

    async def _open(self) -> None:
        conn = await self._connect()
        if not conn.autocommit:
            await conn.set_autocommit(True)
        self._conn = conn
        self._listening = set()
        await self._listen_new()
        self._status = "connected"
        self._ever_connected = True
        await self._signal()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = set()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _listen_new(self) -> None:
        assert self._conn is not None
        new = [full for full in list(self._names) if full not in self._listening]
        if new:
            statements = [sql.SQL("LISTEN {}").format(sql.Identifier(full)) for full in new]
            await self._conn.execute(sql.SQL("; ").join(statements))
            self._listening.update(new)
            await self._signal()

    async def _signal(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        attempts = 0
        down_since: float | None = None if self._conn is not None else time.monotonic()
        while True:
            if self._conn is None:
                try:
                    await self._open()
                except Exception as error:
                    attempts += 1
                    delay = min(self.reconnect_max, self.reconnect_min * 2 ** (attempts - 1))
                    delay *= 0.8 + 0.4 * random.random()
                    _log.warning(
                        "notifier reconnect failed",
                        error=str(error),
                        attempt=attempts,
                        retry_in=delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                downtime = time.monotonic() - down_since if down_since is not None else 0.0
                _log.info("notifier reconnected", attempts=attempts, downtime=round(downtime, 3))
                telemetry.execute(
                    "oban.notifier.reconnect",
                    {"attempts": attempts, "downtime": downtime},
                    {"prefix": self.config.prefix, "node": self.config.node},
                )
                attempts, down_since = 0, None
                self._on_reconnected()
            try:
                await self._listen_new()
                assert self._conn is not None
                async for notify in self._conn.notifies(timeout=self.poll):
                    self._dispatch(notify.channel, notify.payload)
            except Exception as error:
                # Connection errors are expected; anything else is a bug, but the LISTEN loop
                # must survive it all the same.
                if isinstance(error, psycopg.Error | OSError):
                    _log.warning("notifier connection lost", error=str(error))
                else:
                    _log.exception("notifier loop failed; reconnecting")
                self._status = "reconnecting"
                down_since = time.monotonic()
                telemetry.execute(
                    "oban.notifier.disconnect",
                    {},
                    {"prefix": self.config.prefix, "node": self.config.node, "error": error},
                )
                await self._close()
                await self._signal()

    def _on_reconnected(self) -> None:
        for callback in list(self._reconnect_callbacks):
            self._call(callback, "on_reconnect")

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, full: str, text: str) -> None:
        name = self._names.get(full)
        if name is None:
            return
        payload = decode(text)
        if not isinstance(payload, dict):
            _log.warning("undecodable notification dropped", channel=full, payload=text[:200])
            return
        ident = payload.get("ident")
        if ident is not None and ident != "any" and ident != self.config.ident:
            return
        for callback in list(self._callbacks.get(name, ())):
            self._call(callback, name, payload)

    def _call(self, callback: Callable[..., Any], channel_name: str, *args: Any) -> None:
        try:
            result = callback(*args)
        except Exception:
            _log.exception("notifier callback failed", channel=channel_name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("notifier callback failed", exc_info=task.exception())
