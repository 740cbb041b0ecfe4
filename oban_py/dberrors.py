"""What a database error means for the statement that raised it: one table, used everywhere.

Every part of a node that writes (the acker, the producers' fetches, the periodic duties) asks
``classify`` what to do with a failure, so they all agree:

- ``REFUSED``: the database refused this data or this statement (a check, a trigger, a value
  out of range, an index row too large). Sending the same thing again fails the same way.
- ``TRANSIENT``: the server could not do it now (connection lost, admin shutdown, too many
  connections, a deadlock or serialization failure, a lock timeout). The same statement is
  retried as it is, with backoff.
- ``READ_ONLY``: transient too, but the connection is on a server that no longer takes writes.
  Managed PostgreSQL fails over by demoting the old primary and leaving its connections open,
  so retrying on the same connections never heals: ``recover`` drains the pool (every pooled
  connection is replaced by a new one, which reaches the new primary).
- ``CANCELLED``: transient, the statement ran out of time (``statement_timeout``, a lock or
  transaction timeout). The same amount of work would run out of time again, so the caller
  retries with a smaller ``Batch``.

Errors with a SQLSTATE are classified by it (exact code, then its two-character class); errors
without one by their Python type: a lost connection, a pool timeout or a socket error is
transient, anything else (a parameter that cannot be adapted, a bug) is refused.
"""

from __future__ import annotations

import enum
import time
import weakref
from typing import Any

import psycopg
import structlog

from oban_py import telemetry

log = structlog.get_logger("oban.database")


class Verdict(enum.Enum):
    REFUSED = "refused"
    TRANSIENT = "transient"
    READ_ONLY = "read_only"
    CANCELLED = "cancelled"

    @property
    def retry(self) -> bool:
        """True when the same data may be sent again unchanged."""
        return self is not Verdict.REFUSED


REFUSED, TRANSIENT, READ_ONLY, CANCELLED = (
    Verdict.REFUSED,
    Verdict.TRANSIENT,
    Verdict.READ_ONLY,
    Verdict.CANCELLED,
)

#: SQLSTATE code -> verdict; looked up before the class table below.
BY_CODE: dict[str, Verdict] = {
    "25006": READ_ONLY,  # read_only_sql_transaction (a demoted primary, a hot standby)
    "57014": CANCELLED,  # query_canceled: statement_timeout (or a pg_cancel_backend)
    "25P04": CANCELLED,  # transaction_timeout (PostgreSQL 17)
    "25P03": TRANSIENT,  # idle_in_transaction_session_timeout: the session is gone
    "55P03": TRANSIENT,  # lock_not_available: lock_timeout
    "55006": TRANSIENT,  # object_in_use
}

#: SQLSTATE class -> verdict; a class not listed is REFUSED (22 data, 23 integrity, 42 syntax
#: or undefined object, 54 program limit such as an index row too large, P0 a raise...).
BY_CLASS: dict[str, Verdict] = {
    "08": TRANSIENT,  # connection exception
    "40": TRANSIENT,  # transaction rollback: serialization failure, deadlock
    "53": TRANSIENT,  # insufficient resources: too many connections, disk full, out of memory
    "57": TRANSIENT,  # operator intervention: admin/crash shutdown, cannot connect now
    "58": TRANSIENT,  # system error: I/O error outside PostgreSQL
}


def sqlstate(error: BaseException) -> str | None:
    if isinstance(error, psycopg.Error):
        return error.sqlstate or getattr(error.diag, "sqlstate", None)
    return None


def classify(error: BaseException) -> Verdict:
    """What ``error`` (raised while running a statement) says about retrying it."""
    code = sqlstate(error)
    if code:
        return BY_CODE.get(code) or BY_CLASS.get(code[:2], REFUSED)
    # No SQLSTATE: psycopg's own connection errors (lost, closed, a pool timeout) and sockets.
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return TRANSIENT
    return REFUSED


#: What a failed connection says when the database itself is down for every node, not only
#: unreachable from this one: nothing listens (refused, the Unix socket gone), or the server
#: answers that it is starting up, shutting down or recovering (SQLSTATE 57P03).
_DOWN_MESSAGES = (
    "connection refused",
    "no such file or directory",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)


def database_down(error: BaseException) -> bool:
    """True when ``error`` (from a fresh connection) says the database is down for every node,
    not only out of reach from this one: ``oban_py.liveness``, rule 2."""
    if sqlstate(error) == "57P03":  # cannot_connect_now
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    text = str(error).lower()
    return any(message in text for message in _DOWN_MESSAGES)


def read_only(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> bool:
    """True when the server reported this session read-only: a hot standby, or
    ``default_transaction_read_only`` on (PostgreSQL 14+ reports both on every change, so this
    costs no round trip; an older server reports neither and the error path alone applies)."""
    status = conn.pgconn.parameter_status
    return status(b"in_hot_standby") == b"on" or status(b"default_transaction_read_only") == b"on"


class ReadOnlyConnection(psycopg.OperationalError):
    """A pooled connection reports a read-only session; the pool discards it."""


async def check_writable(conn: psycopg.AsyncConnection[Any]) -> None:
    """A psycopg_pool ``check`` callback: refuse a connection to a read-only session, so the pool
    replaces it instead of handing it out. Give it to a pool of your own
    (``AsyncConnectionPool(..., check=check_writable)``); the node's own pool has it."""
    if read_only(conn):
        _read_only_seen("a pooled connection's session is read-only")
        # Closed, so the pool discards it and opens another (a check failing on an open
        # connection would only put it back in the pool).
        await conn.close()
        raise ReadOnlyConnection("the connection's session is read-only")


#: A pool is drained at most this often while read-only errors keep coming: the new connections
#: may reach the same read-only server until the failover completes.
DRAIN_EVERY = 1.0
#: A read-only error after this long without one starts a new episode, logged again.
EPISODE_GAP = 60.0


#: monotonic time of the last read-only error or connection seen by this process
_last_read_only = float("-inf")
#: pool -> monotonic time of its last drain
_drained: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _read_only_seen(what: str, **fields: Any) -> None:
    # One line per episode, however many connections and statements run into it.
    global _last_read_only
    now = time.monotonic()
    if now - _last_read_only > EPISODE_GAP:
        log.warning(
            "the database is read-only here (a failover leaves connections on the demoted"
            " server): replacing the pooled connections until writes work again",
            seen=what,
            **fields,
        )
        telemetry.execute("oban.database.read_only", {"count": 1}, {"seen": what, **fields})
    _last_read_only = now


async def recover(pool: Any, error: BaseException) -> Verdict:
    """Classify ``error`` and act on what only the pool can fix: on a read-only error, drain
    ``pool`` (a psycopg_pool pool) so every connection is replaced. Logged once per episode."""
    verdict = classify(error)
    if verdict is not READ_ONLY or pool is None:
        return verdict
    _read_only_seen("a write refused", error=" ".join(str(error).split()))
    now = time.monotonic()
    if now - _drained.get(pool, float("-inf")) >= DRAIN_EVERY:
        _drained[pool] = now
        drain = getattr(pool, "drain", None)
        if drain is not None:  # psycopg_pool >= 3.3
            await drain()
    return verdict


class Outage:
    """One log line per run of failures, not one per failure: the first failure of a run is a
    warning, the next transient ones (a database away for a minute fails every poll) are debug
    lines, and the first success after them says the run is over. A refusal is a warning every
    time: waiting does not heal it, so it must stay seen."""

    def __init__(self, logger: Any, event: str, **fields: Any) -> None:
        self.log = logger
        self.event = event
        self.fields = fields
        self.failures = 0

    def failed(self, error: BaseException, **fields: Any) -> None:
        self.failures += 1
        quiet = self.failures > 1 and classify(error).retry
        emit = self.log.debug if quiet else self.log.warning
        emit(self.event, error=repr(error), failures=self.failures, **self.fields, **fields)

    def succeeded(self) -> None:
        if self.failures:
            self.log.info(f"{self.event}: working again", failures=self.failures, **self.fields)
            self.failures = 0


#: Successful statements before a shrunk batch grows again, and by how much it grows.
GROW_AFTER = 5
GROW_BY = 0.25


class Batch:
    """How many rows one statement may handle: halved when a statement is cancelled, grown back
    slowly after successes. A statement that runs out of ``statement_timeout`` with 5,000 rows
    would do so every pass and never make progress; with half, then a quarter, it does.

    ``full`` is the configured size (settable: a queue's limit changes with a scale); ``floor``
    the smallest size it shrinks to. The first shrink is logged as a warning, every later change
    at debug (and counted by ``oban.database.batch_shrunk``): a timeout that keeps biting does
    not fill the log.
    """

    def __init__(self, full: int, *, floor: int = 10, name: str) -> None:
        self.full = full
        self.floor = floor
        self.name = name
        self.size = full
        self._successes = 0
        self._shrunk_logged = False

    @property
    def shrunk(self) -> bool:
        return self.size < self.full

    def limit(self, wanted: int | None = None) -> int:
        """The size to use now: ``wanted`` (default ``full``) capped by the current size."""
        return min(self.full if wanted is None else wanted, self.size)

    def cancelled(self, used: int | None = None) -> None:
        """A statement over ``used`` rows (default the current size) was cancelled."""
        before = self.size
        self.size = max(min(self.floor, self.full), min(self.size, used or self.size) // 2)
        self._successes = 0
        emit = log.debug if self._shrunk_logged else log.warning
        self._shrunk_logged = True
        emit(
            "statement cancelled (statement_timeout?): doing less per statement",
            what=self.name,
            batch=self.size,
            was=before,
            full=self.full,
        )
        telemetry.execute(
            "oban.database.batch_shrunk", {"size": self.size}, {"name": self.name, "was": before}
        )

    def succeeded(self) -> None:
        if self.size >= self.full:
            return
        self._successes += 1
        if self._successes < GROW_AFTER:
            return
        self._successes = 0
        self.size = min(self.full, self.size + max(1, int(self.size * GROW_BY)))
        if self.size >= self.full:
            log.debug("statements back to their full batch", what=self.name, batch=self.size)

    def pace(self, interval: float, handled: int) -> float:
        """Seconds until the next pass of a duty that handled ``handled`` rows: sooner while the
        batch is shrunk and came back full, so the duty keeps a full batch's rate."""
        if self.shrunk and handled >= self.size:
            return interval * self.size / self.full
        return interval
