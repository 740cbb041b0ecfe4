"""Liveness: who may hold an ``executing`` row, and until when. The one place that decides it.

A row ``executing`` under producer ``uuid`` (the second element of ``attempted_by``) belongs to
that producer's node, and the rules below are all there is to it:

1. **While its node beats.** Each node writes one row per local producer into
   ``oban_py_heartbeats`` every ``heartbeat_interval``, from a thread with a connection of its own
   (a blocked event loop stalls everything on the loop, but not this). When that connection
   fails, the beat is written through the node's pool instead, so a node that loses only its
   heartbeat connection keeps its rows, and a plain ``def`` job's thread, which nothing can
   stop, keeps its row as long as the node can reach the database by either path.
2. **A node that could not beat for ``heartbeat_ttl / 2`` stops fetching**, and what happens to
   its running jobs depends only on what the database answered its failed beats since the last
   one written (``Heard``; ``decide``), never on which of its threads happened to run first:
   - when the latest answer said the database itself is down (connection refused, its socket
     gone, "the database system is starting up / shutting down"), no node can rescue anything
     either: the node keeps its running jobs and writes their outcomes once it is back, so an
     outage shared by every node costs no job an attempt and runs none twice;
   - when it was any other error (time-outs, resets, a refused login, sessions killed while
     the server answers), the node may be cut off alone while others still reach the database:
     it interrupts its running jobs (each released when it can write again) before any node
     may rescue them at the ttl;
   - while no failed beat has answered yet, the node does not know, and keeps its jobs. If no
     beat is under way (a busy or frozen machine did not run the heartbeat thread), it wakes
     the thread and waits for its answer, however late. If one is, and has gone unanswered
     for an eighth of the ttl by ``heartbeat_ttl * 3 / 4``, the network is silent (a down
     database answers at once): it interrupts them, as a node cut off alone must before the
     ttl. A heartbeat thread that died will never answer: that node counts as cut off.
   The first beat written again lifts the fence.
3. **The leader rescues** a producer's rows once its beat is older than ``heartbeat_ttl`` and
   only after its own beats have gone unbroken for a whole ttl, so a leader back from an outage
   first gives every node the time to beat again. The leader's own producers are never rescued.
   Elixir's time-based rescue (``rescue_after``) still applies to producers that do not beat, in
   queues Python producers run; without the heartbeats table (a schema only Elixir migrated),
   only to the queues this node runs.
4. **While it runs**, each producer reconciles the rows under its uuid with its attempts: a row
   it neither runs nor has an outcome queued for is released (``unowned``).
5. **On a clean stop**, once its jobs ended and their outcomes were written, a producer's row is
   deleted; a producer that still left rows executing (an async job that ignored its
   cancellation past the grace, an outcome that could not be written) is marked dead, so the
   leader rescues those rows at its next pass (``release``).
6. Rows of dead producers are kept for ``heartbeat_retention`` so their uuids stay known as
   Python's, and never purged while a job still names them.

What a node cannot do is stop a thread: a plain ``def`` job on a node cut off from the database
by every path for longer than the ttl may run on after its row was rescued (its late outcome
then writes nothing). ``@worker(executor="process")`` jobs can be killed; threads cannot.

The watchdog thread also reports event loop stalls (``oban.loop.stall``) with the running
workers and where the loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from oban_py import dberrors, telemetry
from oban_py.aio import InUse, sever_all, within

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from oban_py.config import Config, LifelineConfig
    from oban_py.sql import Queries

log = structlog.get_logger("oban.liveness")

#: How often the loop writes its tick for the watchdog.
STALL_TICK = 0.1
#: How often the watchdog looks.
WATCH_EVERY = 0.1
#: A heartbeat that failed is tried again this soon (the fence is only ttl / 2 away).
RETRY_EVERY = 1.0
#: How long a beat through the node's pool may take before it counts as failed.
POOL_BEAT_TIMEOUT = 5.0
#: The share of the ttl after which a node whose beat under way goes unanswered gives up its
#: running jobs (rule 2): a quarter of the ttl after the fence, a quarter before any rescue.
INTERRUPT_UNANSWERED = 3 / 4
#: The share of the ttl a beat under way must have gone unanswered for, to count as silence: a
#: down database answers in milliseconds, a silent network not before the connect timeout.
SILENCE = 1 / 8
#: How long a stopping heartbeat thread may take to end before its connection is severed, and
#: again after, before it is left behind.
STOP_SEVER_AFTER = 1.0
#: How long giving up the heartbeat rows at stop may take before they are left to age out.
RELEASE_TIMEOUT = 5.0
#: How often a node without the heartbeats table looks for it again.
MISSING_TABLE_RETRY = 60.0
#: The heartbeat connection gives up on a silent network in seconds, not in TCP's minutes, and
#: prepares nothing: one statement every few seconds gains nothing from it, and behind a
#: transaction pooler a prepared statement may be missing or another one (client/pooler.py).
_CONNECT: dict[str, Any] = {
    "prepare_threshold": None,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class Heard(enum.Enum):
    """What the database answered the beats that failed since the last one written (rule 2)."""

    #: no failed beat has answered: none failed, or the one under way has not returned yet
    NOTHING = "nothing"
    #: it is down for every node (``dberrors.database_down``)
    DOWN = "down"
    #: an error that may be this node's alone: it may be cut off while others beat
    CUT_OFF = "cut off"


def decide(silent: float, heard: Heard, ttl: float, unanswered: float | None) -> bool | None:
    """Rule 2 for a node whose last beat written began ``silent`` seconds ago and whose beat
    under way has gone ``unanswered`` for so long (``None``: none is): ``None`` (fetch on),
    ``False`` (stop fetching, keep the running jobs) or ``True`` (give them up too)."""
    if silent <= ttl / 2:
        return None
    if heard is Heard.CUT_OFF:
        return True
    if heard is Heard.DOWN:
        return False
    # Unknown is not cut off. Only a beat that the database leaves unanswered is evidence,
    # and only the ttl, when another node may rescue the jobs, forces a verdict on it.
    return (
        silent > ttl * INTERRUPT_UNANSWERED
        and unanswered is not None
        and unanswered > ttl * SILENCE
    )


class Liveness:
    """The heartbeat and watchdog threads of one node.

    ``on_fence(interrupt)``/``on_unfence()`` are called on the loop (``interrupt``: give up the
    running jobs too; before ``start``, with no loop yet, on the caller's thread);
    ``running_workers()`` is called from the watchdog thread while the loop is stalled, so it
    must only read. ``clock`` is ``time.monotonic`` unless a test drives the time itself.
    """

    def __init__(
        self,
        config: Config,
        conninfo: str,
        queries: Queries,
        *,
        on_fence: Callable[[bool], None],
        on_unfence: Callable[[], None],
        running_workers: Callable[[], list[str]],
        pool: AsyncConnectionPool[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self.conninfo = conninfo
        self.queries = queries
        #: the node's pool: beats go through it while the heartbeat connection fails (rule 1)
        self.pool = pool
        self.on_fence = on_fence
        self.on_unfence = on_unfence
        self.running_workers = running_workers
        self.interval = config.lifeline.heartbeat_interval
        self.ttl = config.lifeline.heartbeat_ttl
        self.fence_after = self.ttl / 2
        self.stall_threshold = config.stall_threshold
        #: uuid -> (queue, started_at) of the producers whose rows are written
        self.producers: dict[str, tuple[str, datetime]] = {}
        #: False while the heartbeats table is missing: no beats, no fencing
        self.table = True
        self.fenced = False
        #: fenced and the running jobs given up too (rule 2)
        self.interrupted = False
        self.beats = 0
        #: Guards the evidence (``_last_ok``, ``_heard``) and what the watchdog asked of the
        #: loop on it, so a fence is always decided on one consistent reading, and ordered on
        #: the loop before the unfence of a beat written after it.
        self._lock = threading.Lock()
        #: when the last beat written began: its rows are at least this fresh
        self._last_ok = clock()
        self._heard = Heard.NOTHING
        #: when the beat under way began (None between beats)
        self._under_way: float | None = None
        #: when the current run of beats without a gap of ttl / 2 began (rule 3)
        self._unbroken_since = self._last_ok
        self._via_pool = False
        #: what the watchdog asked of the loop since the last beat: nothing (None), or to keep
        #: (False) or interrupt (True) the running jobs, and on which evidence
        self._requested: tuple[bool, Heard] | None = None
        self._tick = self._last_ok
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
        self._last_ok = self._tick = self._clock()
        # Nothing is known of the time before the start: a leader rescues nothing by heartbeat
        # until it has beaten for a whole ttl itself (rule 3).
        self._unbroken_since = self._last_ok
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

    def unbroken_for(self) -> float:
        """Seconds this node has beaten without a gap of ``ttl / 2`` (0 while it cannot)."""
        now = self._clock()
        if not self.table or now - self._last_ok > self.fence_after:
            return 0.0
        return now - self._unbroken_since

    async def release(self, uuids: list[str]) -> bool:
        """Rule 5, once the stopped producers' jobs ended and their outcomes were flushed:
        delete their rows, or mark those that left rows executing dead, so the leader rescues
        those rows at its next pass instead of after the ttl. False when the database did not
        answer within ``RELEASE_TIMEOUT`` (a silent network): the rows age out instead."""
        if self.pool is None or not uuids:
            return True
        pool, used = self.pool, InUse()

        async def release() -> None:
            async with used.connection(pool, timeout=RELEASE_TIMEOUT) as conn:
                await conn.execute(self.queries["heartbeat_release"], {"uuids": uuids})

        try:
            # Bounded on a silent network too: the statement's connection is severed, not
            # awaited (``aio.within``).
            await within(RELEASE_TIMEOUT, release(), used.sever)
        except TimeoutError:
            log.warning("heartbeat release failed: no answer", within=RELEASE_TIMEOUT)
            return False
        except Exception as error:
            # Rows left behind age out: their jobs are rescued after the ttl instead of at once.
            log.warning("heartbeat release failed", error=repr(error))
        return True

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
            await asyncio.to_thread(thread.join, STOP_SEVER_AFTER)
            if thread.is_alive():
                # A beat waiting on a silent network ends when its socket is shut down, not
                # before (a connection being made ends at its connect_timeout).
                self._sever()
                await asyncio.to_thread(thread.join, STOP_SEVER_AFTER)
            if thread.is_alive():
                # Making a new connection through a silent network, which nothing can sever:
                # it ends at its connect_timeout, a daemon thread with nothing left to beat for.
                log.warning("heartbeat thread left to end on its own", thread=thread.name)

    def _sever(self) -> None:
        conn = self._conn  # the heartbeat thread's; read once, it may be replaced meanwhile
        if conn is not None:
            sever_all([conn])

    def _on_tick(self) -> None:
        self._tick = self._clock()
        if not self._stopping.is_set() and self._loop is not None:
            self._ticker = self._loop.call_later(STALL_TICK, self._on_tick)

    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        if self._loop is None:
            # Not started: no thread of ours runs, so the caller drives beats and watch passes.
            callback()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            self._loop.call_soon_threadsafe(callback)

    def _fence(self, interrupt: bool) -> None:
        if self.interrupted or (self.fenced and not interrupt):
            return
        self.fenced = True
        self.interrupted = interrupt
        self.on_fence(interrupt)

    def _unfence(self) -> None:
        if self.fenced:
            self.fenced = False
            self.interrupted = False
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
        """Write every tracked producer's row now; the seconds until the next beat.

        A node without producers still runs the statement: a beat is what proves the database
        reachable from here, which the leader's rescue relies on (rule 3)."""
        producers = list(self.producers.items())
        try:
            started = self._clock()
            self._write(producers, started)
            # A write that waited (a lock, a slow server) stamped its rows with the time it
            # began: write again, so a lifted fence rests on a fresh row, not an old one.
            while self._clock() - started > self.interval and not self._stopping.is_set():
                started = self._clock()
                self._write(producers, started)
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
            # ``_write`` recorded what the database answered before it raised this error.
            self._close()
            retry = min(RETRY_EVERY, self.interval)
            self._outage.failed(error, retry_in=retry, down=self._heard is Heard.DOWN)
            log.debug("heartbeat failure detail", exc_info=True)
            return retry
        if not self.table:
            self.table = True
            log.info("the oban_py_heartbeats table is there: heartbeat rescue is on")
        with self._lock:
            if started - self._last_ok > self.fence_after:
                self._unbroken_since = started
            self._last_ok = started
            self._heard = Heard.NOTHING
            # Asked under the lock: a fence the watchdog asked for before this beat reaches the
            # loop first, and is lifted by this unfence.
            requested, self._requested = self._requested, None
            if requested is not None or self.fenced:
                self._call_on_loop(self._unfence)
        self.beats += 1
        self._outage.succeeded()
        return self.interval

    def _write(self, producers: list[tuple[str, tuple[str, datetime]]], started: float) -> None:
        with self._lock:
            self._under_way = started
        try:
            self._write_rows(producers)
        finally:
            with self._lock:
                self._under_way = None

    def _write_rows(self, producers: list[tuple[str, tuple[str, datetime]]]) -> None:
        params = {
            "node": self.config.node,
            "name": self.config.name,
            "uuids": [uuid for uuid, _ in producers],
            "queues": [queue for _, (queue, _) in producers],
            "started": [started for _, (_, started) in producers],
        }
        try:
            self._upsert(params)
            if self._via_pool:
                self._via_pool = False
                log.info("heartbeat connection works again")
        except psycopg.errors.UndefinedTable:
            raise
        except Exception as error:
            # Heard before the pool is tried: a down database answers no pool either, and any
            # other answer may be this node's alone until the pool proves otherwise.
            down = dberrors.database_down(error)
            with self._lock:
                self._heard = Heard.DOWN if down else Heard.CUT_OFF
            if down or not self._upsert_through_pool(params):
                raise
            if not self._via_pool:
                self._via_pool = True
                log.warning(
                    "heartbeat connection failing; beating through the node's pool",
                    error=repr(error),
                )

    def _upsert_through_pool(self, params: dict[str, Any]) -> bool:
        # The loop runs the write; a stalled loop cannot, and then the beat has failed.
        loop, pool = self._loop, self.pool
        if loop is None or pool is None or loop.is_closed():
            return False
        query = self.queries["heartbeat_upsert"]

        async def upsert() -> None:
            async with pool.connection(timeout=POOL_BEAT_TIMEOUT) as conn:
                await conn.execute(query, params)

        try:
            future = asyncio.run_coroutine_threadsafe(upsert(), loop)
        except RuntimeError:  # the loop closed under us
            return False
        try:
            future.result(timeout=POOL_BEAT_TIMEOUT)
        except Exception:
            future.cancel()
            return False
        return True

    def _upsert(self, params: dict[str, Any]) -> None:
        query = self.queries["heartbeat_upsert"]
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute(query, params)
                return
            except psycopg.OperationalError:
                # A connection that broke says nothing of the database; a new one does (is it
                # down for everyone, or only out of reach from here? rule 2).
                self._close()
                if self._stopping.is_set():
                    raise  # severed by ``stop``: no new connection to wait on
        self._conn = psycopg.Connection.connect(
            self.conninfo, autocommit=True, application_name=self._name(), **_CONNECT
        )
        self._conn.execute(query, params)

    def _name(self) -> str:
        # Named after the node's own connections, so an operator (or a test) can tell the
        # heartbeat connection apart in pg_stat_activity.
        try:
            base = conninfo_to_dict(self.conninfo).get("application_name")
        except Exception:
            base = None
        return f"{base or 'oban_py'}:heartbeat"

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
            self.watch_once()

    def watch_once(self) -> None:
        """One pass of the watchdog: fence on the evidence (rule 2), then look for a stall."""
        now = self._clock()
        if self.table and self.producers:
            with self._lock:
                under_way = self._under_way
                unanswered = None if under_way is None else now - under_way
                heard = self._heard
                if heard is Heard.NOTHING and self._beater_died():
                    # Nothing will ever be heard: no beat is written again, so the rows expire
                    # and another node may rescue the jobs at the ttl, as if cut off alone.
                    heard = Heard.CUT_OFF
                self._fence_on(now - self._last_ok, heard, unanswered)
        self._check_stall(now)

    def _beater_died(self) -> bool:
        beater = self._threads[0] if self._threads else None
        return beater is not None and not beater.is_alive() and not self._stopping.is_set()

    def _fence_on(self, silent: float, heard: Heard, unanswered: float | None) -> None:
        # Rule 2, under ``_lock``: a beat written meanwhile cannot slip between the reading and
        # the request, and its unfence reaches the loop after this fence.
        if silent > self.fence_after and heard is Heard.NOTHING and unanswered is None:
            # No beat failed, none is under way: the heartbeat thread is late. Beat now.
            self._wake.set()
        interrupt = decide(silent, heard, self.ttl, unanswered)
        before = self._requested
        if interrupt is None or (before is not None and before[0]) or before == (interrupt, heard):
            return
        self._requested = (interrupt, heard)
        if interrupt:
            log.error(
                "no heartbeat written for too long: this node stops its jobs before another"
                " node may rescue them",
                silent_for=round(silent, 1),
                heard=heard.value,
            )
        elif heard is Heard.DOWN:
            log.error(
                "the database is down: this node stops fetching and keeps its running jobs,"
                " whose outcomes it writes once the database is back",
                silent_for=round(silent, 1),
            )
        else:
            log.warning(
                "no heartbeat written, and no answer from the database yet: this node stops"
                " fetching and keeps its running jobs until it hears why",
                silent_for=round(silent, 1),
            )
        if before is None or interrupt:
            self._call_on_loop(lambda: self._fence(interrupt))

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


# -- the rows: release, reconcile, rescue -------------------------------------------------------


async def unowned(
    pool: AsyncConnectionPool[Any],
    using: InUse,
    queries: Queries,
    queue: str,
    uuid: str,
    owned: Callable[[], set[int]],
) -> list[tuple[int, datetime, bool]]:
    """Rule 4: rows executing under producer ``uuid`` that it neither runs nor has an outcome
    queued for (``owned()``), as ``(id, attempted_at, exhausted)``; the producer releases them.
    The read's connection is one of the producer's ``using``, which its stop severs."""
    async with using.connection(pool) as conn:
        cur = await conn.execute(queries["own_executing"], {"queue": queue, "uuid": uuid})
        rows = await cur.fetchall()
    # Read after the rows: an attempt that ended meanwhile has its outcome queued by now (or
    # written, and then the guarded release touches nothing).
    mine = owned()
    return [
        (job_id, attempted_at.replace(tzinfo=UTC), bool(exhausted))
        for job_id, attempted_at, exhausted in rows
        if job_id not in mine
    ]


async def rescue(
    pool: AsyncConnectionPool[Any],
    queries: Queries,
    settings: LifelineConfig,
    *,
    live: list[str],
    queues: list[str],
    unbroken_for: float | None,
    limit: int,
) -> dict[str, int]:
    """Rule 3 and 6, one pass on the leader: rescue the rows of producers whose beat is older
    than the ttl (only once this node's own beats have gone unbroken for a ttl; ``None``: no
    liveness to tell, as in tests), Elixir's time-based rescue, and the purge of old rows.
    ``live`` are this node's producers, never rescued; ``queues`` the queues it runs, the only
    ones rescued by time when the heartbeats table is missing; ``limit`` the rows each rescue
    statement takes at most (the lifeline's batch, halved while statements time out)."""
    try:
        return await _rescue(pool, queries, settings, live, unbroken_for, limit)
    except psycopg.errors.UndefinedTable:
        # The node's liveness already said once that `oban-py migrate` adds the table.
        params = {"rescue_after": settings.rescue_after, "queues": queues, "limit": limit}
        async with pool.connection() as conn:
            cursor = await conn.execute(queries["rescue_stuck_jobs_by_time"], params)
            stuck = await cursor.fetchall()
        return {"dead_producer": 0, "stuck": len(stuck), "purged": 0}


async def _rescue(
    pool: AsyncConnectionPool[Any],
    queries: Queries,
    settings: LifelineConfig,
    live: list[str],
    unbroken_for: float | None,
    limit: int,
) -> dict[str, int]:
    by_beat = unbroken_for is None or unbroken_for >= settings.heartbeat_ttl
    dead: list[Any] = []
    async with pool.connection() as conn:
        async with conn.transaction():
            if by_beat:
                cursor = await conn.execute(
                    queries["rescue_dead_producers"],
                    {"ttl": settings.heartbeat_ttl, "live": live, "limit": limit},
                )
                dead = await cursor.fetchall()
            cursor = await conn.execute(
                queries["rescue_stuck_jobs"],
                {
                    "rescue_after": settings.rescue_after,
                    "ttl": settings.heartbeat_ttl,
                    "live": live,
                    "limit": limit,
                },
            )
            stuck = await cursor.fetchall()
        cursor = await conn.execute(
            queries["heartbeat_purge"], {"retention": settings.heartbeat_retention}
        )
        purged = cursor.rowcount
    return {"dead_producer": len(dead), "stuck": len(stuck), "purged": max(purged, 0)}
