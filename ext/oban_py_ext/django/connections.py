"""Django's connections around every job, as Celery's Django fixup keeps them around every task.

Django releases a request's connections when the request ends (``request_finished`` runs
``close_old_connections``); a job is a request that never sends that signal. Without this hook a
pool thread keeps its connection for good, and once the server drops it (a restart, a failover,
``pg_terminate_backend``) every later job on that thread fails with "the connection is closed".

The hook runs ``close_old_connections`` before and after each job, in the context where the
job's ORM calls run: the pool thread of a sync ``process``, and asgiref's thread-sensitive
executor (where ``aget``/``asave`` run) for an async one. Each connection is then kept or closed
per the database's settings: with ``CONN_MAX_AGE = 0`` (Django's default) it is closed after
every job, a connection that saw an error is closed unless it still answers, and
``CONN_HEALTH_CHECKS`` is honoured on the next use.

A connection inside ``atomic()`` is left alone: closing it would break a transaction that the
job did not open (a test's, when a job runs inline inside ``TestCase``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from asgiref.sync import sync_to_async

from oban_py.job import Job

HOOK_ID = "oban_py_ext.django.connections"


def release_connections() -> None:
    """``close_old_connections`` for this thread's connections that are not in a transaction."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


_release_in_orm_thread = sync_to_async(release_connections, thread_sensitive=True)


class DjangoConnections:
    """The work hook: Django's connections released before and after every job."""

    @contextmanager
    def around_thread(self, job: Job) -> Iterator[None]:
        release_connections()
        try:
            yield
        finally:
            release_connections()

    @asynccontextmanager
    async def around_task(self, job: Job) -> AsyncIterator[None]:
        await _release_in_orm_thread()
        try:
            yield
        finally:
            await _release_in_orm_thread()


def install() -> None:
    """Register the hook (idempotent: the app's ``ready`` calls it)."""
    from oban_py.hooks import add_work_hook

    add_work_hook(HOOK_ID, DjangoConnections())
