"""``wait_for_sync``: wait for a job's result from sync code (a script, a Django view).

One connection of its own for the wait: LISTEN on ``<prefix>.oban_py_results``, then read the row
on that same connection at start, on each ``done`` message naming the job and at each slow
re-check, exactly as the async ``Results.wait_for`` does. The client closing (from any thread:
a node's stop, ``close``/``close_sync``) ends the wait at once with ``WaitStopped``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from oban_py import notifier
from oban_py.client.core import Client
from oban_py.job.model import Job
from oban_py.results import channel
from oban_py.results.errors import WaitStopped, WaitTimeout, outcome
from oban_py.results.waiter import RECHECK, _deadline, _next_wait, job_id_of


class _Stop:
    """Ends one sync wait from the thread that closes the client: a byte on a socket pair
    wakes the wait's select, which would otherwise sleep until its next message or re-check."""

    def __init__(self) -> None:
        self.set = False
        self.read, self.write = socket.socketpair()
        self.read.setblocking(False)

    def __call__(self) -> None:
        self.set = True
        with contextlib.suppress(OSError):  # the wait ended meanwhile and closed it
            self.write.send(b"\0")

    def close(self) -> None:
        self.read.close()
        self.write.close()


def wait_for_sync(
    client: Client,
    job: Job | int,
    *,
    timeout: float | None = None,
    recheck: float | None = RECHECK,
) -> Any:
    """``Results.wait_for`` from sync code: the recorded value, or the same exceptions
    (``WaitStopped`` once ``client`` closes, from any thread)."""
    job_id = job_id_of(job)
    deadline = _deadline(timeout)
    stop = _Stop()
    client._on_close.add(stop)
    try:
        conninfo = client.dsn or client._sync.get().conninfo
        full = channel.full_name(client.config.prefix)
        with psycopg.connect(str(conninfo), autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(full)))
            last: Job | None = None
            while True:
                if stop.set:
                    raise WaitStopped(job_id, last)
                last = _read(conn, client, job_id)
                done, value = outcome(last, job_id)
                if done:
                    return value
                wait = _next_wait(deadline, recheck)
                if wait <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, last)
                _until_named(conn, job_id, wait, stop)
    finally:
        client._on_close.discard(stop)
        stop.close()


def _read(conn: psycopg.Connection[Any], client: Client, job_id: int) -> Job | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(client.queries["job_get"], {"id": job_id})
        row = cur.fetchone()
    return None if row is None else Job.from_row(row)


def _until_named(conn: psycopg.Connection[Any], job_id: int, wait: float, stop: _Stop) -> None:
    """Return once a ``done`` message names ``job_id``, after ``wait`` seconds, or at once
    when ``stop`` is set."""
    end = time.monotonic() + wait
    with selectors.DefaultSelector() as selector:
        selector.register(conn.fileno(), selectors.EVENT_READ)
        selector.register(stop.read, selectors.EVENT_READ)
        while not stop.set:
            # Drains what arrived, those read along with the last statement's answer too (kept
            # by psycopg, so never seen by the select).
            for message in conn.notifies(timeout=0):
                payload = notifier.decode(message.payload)
                done = payload.get("done") if isinstance(payload, dict) else None
                if isinstance(done, list) and job_id in done:
                    return
            left = end - time.monotonic()
            if left <= 0:
                return
            selector.select(min(left, 3600.0))
