"""Django: an app (``"oban_py_ext.django"`` in ``INSTALLED_APPS``) with ``OBAN = {...}`` settings
(``conf``, validated by ``checks``), a migration installing the schema, ``manage.py oban ...``,
transactional enqueue, Django's connections released around every job (``connections``),
testing helpers on the test's connection (``testing``) and a read-only admin of jobs with retry
and cancel actions.

    from oban_py_ext.django import enqueue

    with transaction.atomic():
        user = User.objects.create(email=email)
        enqueue(Mailer.new({"user_id": user.id}))     # rolls back with the user

A worker writing through the ORM completes its job in its ``atomic()`` block with
``complete_in(job)``, so the job's effect and its completion commit together.

``enqueue`` runs through Django's own cursor for ``OBAN["database"]`` (``"default"``), so
``CaptureQueriesContext``, ``assertNumQueries`` and ``execute_wrapper`` see it: inside
``atomic()`` the job joins that transaction, outside it commits at once (autocommit). From a
sync view call ``enqueue`` (or ``Worker.enqueue_sync``); ``Worker.enqueue`` is async and raises
when called outside an event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async

from oban_py import Job
from oban_py.insert.planner import insert_plan
from oban_py.middleware import insert_through_sync, stack
from oban_py.node.complete import check, statement
from oban_py.sql import Queries
from oban_py_ext.django import conf, inserts


def _postgres(using: str | None) -> str:
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    alias = using or conf.database()
    vendor = connections[alias].vendor
    if vendor != "postgresql":
        raise ImproperlyConfigured(f"oban_py needs PostgreSQL: DATABASES[{alias!r}] uses {vendor}")
    return alias


def raw_connection(using: str | None = None) -> Any:
    """Django's underlying psycopg connection for ``using`` (``OBAN["database"]`` by default)."""
    from django.db import connections

    connection = connections[_postgres(using)]
    connection.ensure_connection()
    return connection.connection


def enqueue_many(jobs: Iterable[Job], using: str | None = None) -> list[Job]:
    """Insert ``jobs`` on Django's connection, in its current transaction if there is one."""
    batch = list(jobs)
    if not batch:
        return []
    from oban_py_ext.django.testing import enqueue_in_mode

    if (handled := enqueue_in_mode(batch)) is not None:
        return handled
    alias = _postgres(using)
    queries = Queries(conf.prefix())
    # Django's enqueue belongs to no instance: the process-wide insert middleware wraps it.
    return insert_through_sync(
        stack("insert_sync"), batch, lambda jobs: inserts.run(alias, insert_plan(queries, jobs))
    )


def enqueue(job: Job, using: str | None = None) -> Job:
    """Insert ``job`` on Django's connection, in its current transaction if there is one."""
    return enqueue_many([job], using)[0]


def complete_in(job: Job, using: str | None = None) -> None:
    """Complete ``job``'s running attempt inside the current ``atomic()`` block of Django's
    connection ``using`` (``oban_py.complete_in``): the job commits as completed with the
    block's writes, or not at all. Call it from a plain ``def process`` (or through
    ``sync_to_async``), where the ORM's connection is this thread's."""
    from django.db import connections

    alias = _postgres(using)
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise ValueError(
            "complete_in must run inside transaction.atomic(): outside it the completion "
            "would commit on its own, apart from the job's effect"
        )
    found = statement(job, fallback=conf.prefix())
    if found is None:
        return
    query, params = found
    with connection.cursor() as cursor:
        cursor.execute(query.decode(), params)
        check(job, list(cursor.fetchall()))


#: ``await aenqueue(job)`` from async views: runs on the thread that owns Django's connection.
aenqueue = sync_to_async(enqueue)
aenqueue_many = sync_to_async(enqueue_many)
