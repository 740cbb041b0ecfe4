"""Django's connections around every job, as Celery's Django fixup keeps them around every task.

Django releases a request's connections when the request ends (``request_finished`` runs
``close_old_connections``); a job is a request that never sends that signal. Without this
middleware a pool thread keeps its connection for good, and once the server drops it (a restart,
a failover, ``pg_terminate_backend``) every later job on that thread fails with "the connection
is closed".

Around a sync ``process`` (``work_in_thread``) the middleware runs ``close_old_connections``
before and after the job, in the pool thread: each connection is then kept or closed per the
database's settings (with ``CONN_MAX_AGE = 0``, Django's default, closed after every job; one
that saw an error closed unless it still answers; ``CONN_HEALTH_CHECKS`` honoured on the next
use).

Around every attempt (``work``) it enters asgiref's ``ThreadSensitiveContext``, as Django's ASGI
handler does for each request: the job's async ORM calls (``aget``, ``asave``...) run in a
thread of their own instead of the one thread every such call in the process would share, so
async ORM jobs run concurrently up to the queue's limit. That thread ends with the job, so its
connections are closed when the job ends, whatever ``CONN_MAX_AGE`` says.

A connection inside ``atomic()`` is left alone: closing it would break a transaction that the
job did not open (a test's, when a job runs inline inside ``TestCase``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async

from oban_py import Job
from oban_py.middleware import AttemptOutcome, Middleware, ThreadNext, WorkNext, add_middleware

MIDDLEWARE_ID = "oban_py_ext.django.connections"


def release_connections() -> None:
    """``close_old_connections`` for this thread's connections that are not in a transaction."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def close_connections() -> None:
    """Close this thread's connections that are not in a transaction (the thread is ending)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


_close_in_orm_thread = sync_to_async(close_connections, thread_sensitive=True)


class DjangoConnections(Middleware):
    """The work middleware: Django's connections released before and after every job."""

    def work_in_thread(self, job: Job, call_next: ThreadNext) -> Any:
        release_connections()
        try:
            return call_next()
        finally:
            release_connections()

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        async with ThreadSensitiveContext() as context:
            try:
                return await call_next()
            finally:
                # Only when the job's ORM thread was started: most async jobs make no ORM call,
                # and starting a thread just to close nothing would cost every one of them.
                if context in SyncToAsync.context_to_thread_executor:
                    await _close_in_orm_thread()


def install() -> None:
    """Register the middleware process-wide (idempotent: the app's ``ready`` calls it)."""
    add_middleware(MIDDLEWARE_ID, DjangoConnections())
