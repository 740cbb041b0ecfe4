"""Liveness: that this node is alive is written from outside its event loop, and only while true.

The lifeline rescues a Python producer's jobs once its row in ``oban_py_heartbeats`` is older
than ``heartbeat_ttl``, so that row must keep being written while the node's jobs run, and stop
being written only when they no longer run. Two threads see to it, each with one job:

- the **heartbeat** thread writes the rows of this node's producers every
  ``heartbeat_interval`` over a connection of its own. An async worker blocking the event loop
  (``time.sleep`` in ``async def process``) stalls everything on the loop, but not this, so the
  jobs of a live node are never rescued while they run;
- the **watchdog** thread looks at a tick the loop writes every ``STALL_TICK`` seconds. A loop
  that has not ticked for ``stall_threshold`` seconds is logged once (with the running jobs'
  workers and where the loop is stuck) and reported as ``oban.loop.stall``. It also **fences**
  the node: once no heartbeat has been written for ``heartbeat_ttl / 2`` (the database is
  unreachable from here, maybe not from the leader), the producers stop fetching and interrupt
  their running jobs, so the node has given them up before any other node may rescue them.
  The first heartbeat written again lifts the fence.

On a schema without the heartbeats table (a database only Elixir migrated) the node runs with
time-based rescue only, and says once that ``oban-py migrate`` adds the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from oban_py import dberrors, telemetry

if TYPE_CHECKING:
    from oban_py.config import Config
    from oban_py.sql import Queries

log = structlog.get_logger("oban.liveness")

#: How often the loop writes its tick for the watchdog.
STALL_TICK = 0.1
#: How often the watchdog looks.
WATCH_EVERY = 0.1
#: A heartbeat that failed is tried again this soon (the fence is only ttl / 2 away).
RETRY_EVERY = 1.0
#: How often a node without the heartbeats table looks for it again.
MISSING_TABLE_RETRY = 60.0
#: The heartbeat connection gives up on a silent network in seconds, not in TCP's minutes.
_CONNECT: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class Liveness:
    """The heartbeat and watchdog threads of one node.

    ``on_fence``/``on_unfence`` are called on the loop; ``running_workers()`` is called from the
    watchdog thread while the loop is stalled, so it must only read.
    """

    def __init__(
        self,
        config: Config,
        conninfo: str,
        queries: Queries,
        *,
        on_fence: Callable[[], None],
        on_unfence: Callable[[], None],
        running_workers: Callable[[], list[str]],
    ) -> None:
        self.config = config
        self.conninfo = conninfo
        self.queries = queries
        self.on_fence = on_fence
        self.on_unfence = on_unfence
        self.running_workers = running_workers
        self.interval = config.lifeline.heartbeat_interval
        self.fence_after = config.lifeline.heartbeat_ttl / 2
        self.stall_threshold = config.stall_threshold
        #: uuid -> (queue, started_at) of the producers whose rows are written
        self.producers: dict[str, tuple[str, datetime]] = {}
        #: False while the heartbeats table is missing: no beats, no fencing
        self.table = True
        self.fenced = False
        self.beats = 0
        self._last_ok = time.monotonic()
        self._tick = time.monotonic()
        self._stalled_since: float | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._conn: psycopg.Connection[Any] | None = None
        #: a failing heartbeat is one warning per outage (it retries every second)
        self._outage = dberrors.Outage(log, "heartbeat failed")

    # -- on the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_ok = self._tick = time.monotonic()
        self._ticker = self._loop.call_later(STALL_TICK, self._on_tick)
        for target, name in ((self._beat_loop, "oban-heartbeat"), (self._watch, "oban-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def track(self, uuid: str, queue: str, started_at: datetime) -> None:
        """Write this producer's row from now on (at once: until then only time protects it)."""
        self.producers[uuid] = (queue, _naive_utc(started_at))
        self._wake.set()

    def untrack(self, uuid: str) -> None:
        self.producers.pop(uuid, None)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop both threads (the caller releases the rows once its jobs have ended)."""
        self._stopping.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.cancel()
        threads, self._threads = self._threads, []
        for thread in threads:
            await asyncio.to_thread(thread.join, 10.0)

    def _on_tick(self) -> None:
        self._tick = time.monotonic()
        if not self._stopping.is_set() and self._loop is not None:
            self._ticker = self._loop.call_later(STALL_TICK, self._on_tick)

    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                self._loop.call_soon_threadsafe(callback)

    def _fence(self) -> None:
        if not self.fenced:
            self.fenced = True
            self.on_fence()

    def _unfence(self) -> None:
        if self.fenced:
            self.fenced = False
            self.on_unfence()

    # -- the heartbeat thread -----------------------------------------------------------------

    def _beat_loop(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                break
            delay = self.beat_once()
        self._close()

    def beat_once(self) -> float:
        """Write every tracked producer's row now; the seconds until the next beat."""
        producers = list(self.producers.items())
        if not producers:
            self._last_ok = time.monotonic()
            return self.interval
        try:
            started = time.monotonic()
            self._upsert(producers)
            # A write that waited (a lock, a slow server) stamped its rows with the time it
            # began: write again, so a lifted fence rests on a fresh row, not an old one.
            while time.monotonic() - started > self.interval and not self._stopping.is_set():
                started = time.monotonic()
                self._upsert(producers)
        except psycopg.errors.UndefinedTable:
            self._close()
            if self.table:
                self.table = False
                log.warning(
                    "the oban_py_heartbeats table is missing: jobs of a dead node are rescued "
                    "only after lifeline.rescue_after; run `oban-py migrate` to add it",
                    prefix=self.config.prefix,
                )
            return MISSING_TABLE_RETRY
        except Exception as error:
            self._close()
            retry = min(RETRY_EVERY, self.interval)
            self._outage.failed(error, retry_in=retry)
            log.debug("heartbeat failure detail", exc_info=True)
            return retry
        if not self.table:
            self.table = True
            log.info("the oban_py_heartbeats table is there: heartbeat rescue is on")
        self._last_ok = started
        self.beats += 1
        self._outage.succeeded()
        if self.fenced:
            self._call_on_loop(self._unfence)
        return self.interval

    def _upsert(self, producers: list[tuple[str, tuple[str, datetime]]]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.Connection.connect(self.conninfo, autocommit=True, **_CONNECT)
        params = {
            "node": self.config.node,
            "name": self.config.name,
            "uuids": [uuid for uuid, _ in producers],
            "queues": [queue for _, (queue, _) in producers],
            "started": [started for _, (_, started) in producers],
        }
        self._conn.execute(self.queries["heartbeat_upsert"], params)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- the watchdog thread ------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_EVERY):
            if self._loop is not None and self._loop.is_closed():
                # The node's loop ended without stopping it (a crashed app, a test): nothing
                # is left to beat for, and beating on would keep a dead node looking alive.
                self._stopping.set()
                self._wake.set()
                return
            now = time.monotonic()
            if (
                self.table
                and self.producers
                and not self.fenced
                and now - self._last_ok > self.fence_after
            ):
                log.error(
                    "no heartbeat written for too long: this node stops its jobs before another"
                    " node may rescue them",
                    silent_for=round(now - self._last_ok, 1),
                    fence_after=self.fence_after,
                )
                self._call_on_loop(self._fence)
            self._check_stall(now)

    def _check_stall(self, now: float) -> None:
        if self.stall_threshold <= 0:
            return
        stalled_for = now - self._tick
        if stalled_for <= self.stall_threshold:
            if self._stalled_since is not None:
                log.info(
                    "event loop running again", stalled_for=round(now - self._stalled_since, 3)
                )
                self._stalled_since = None
            return
        if self._stalled_since is not None:
            return
        self._stalled_since = self._tick
        try:
            workers = sorted(set(self.running_workers()))
        except Exception:
            workers = []
        where = self._loop_stack()
        log.warning(
            "event loop blocked: a worker is running blocking code in async def process",
            blocked_for=round(stalled_for, 3),
            running_workers=workers,
            where=where,
        )
        telemetry.execute(
            "oban.loop.stall",
            {"duration": int(stalled_for * 1e9)},
            {"node": self.config.node, "workers": workers, "where": where},
        )

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return ""
        return "".join(traceback.format_stack(frame, limit=8))
