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
``atomic()`` the job joins that transaction, outside it commits at once (autocommit).

When the jobs' database is not the one whose ``atomic()`` block the caller is in (a router
sends ``oban_jobs`` elsewhere), an insert on the jobs' connection would commit at once, before
the caller's data, and stay if the caller's block rolls back. So the insert waits for that
block's commit (``transaction.on_commit(..., using=<its alias>)``; the jobs are returned
unsaved, ``id`` None) or, with ``OBAN["other_database"] = "raise"``, refuses with
``TransactionManagementError``.

From a sync view call ``enqueue``; ``Worker.enqueue`` is async and raises when called outside
an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def callers_atomic(alias: str) -> bool:
    """Whether the caller is inside an ``atomic()`` block of ``alias`` that will commit: the
    blocks ``TestCase`` wraps every test in do not count (they never commit)."""
    from django.db import connections

    if alias not in connections or not connections[alias].in_atomic_block:
        return False
    blocks = connections[alias].atomic_blocks
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def holding_database(alias: str) -> str | None:
    """The database whose ``atomic()`` block the jobs of ``alias`` must wait for: ``alias``
    itself when the caller is in one of its blocks (the jobs join it), else another database
    the caller is in a block of, else None (nothing to wait for)."""
    from django.db import connections

    if callers_atomic(alias):
        return alias
    for conn in connections.all(initialized_only=True):
        if conn.alias != alias and callers_atomic(conn.alias):
            return str(conn.alias)
    return None


def after_commit(alias: str, holder: str, action: Callable[[], Any]) -> None:
    """Run ``action`` when ``holder``'s block commits, or refuse when ``OBAN["other_database"]``
    is ``"raise"``; ``alias`` is the jobs' database."""
    from django.db import transaction

    if conf.options().get("other_database", "on_commit") == "raise":
        raise transaction.TransactionManagementError(
            f"enqueue inside an atomic() block of {holder!r}, but jobs go to {alias!r}: the job"
            f" would commit at once and outlive a rollback of {holder!r}. Enqueue inside"
            f" transaction.atomic(using={alias!r}) too, or after the commit with"
            f" transaction.on_commit(..., using={holder!r}), or let enqueue wait for the commit"
            ' (OBAN["other_database"] = "on_commit", the default).'
        )
    transaction.on_commit(action, using=holder)


def enqueue_many(jobs: Iterable[Job], using: str | None = None) -> list[Job]:
    """Insert ``jobs`` on Django's connection, in its current transaction if there is one
    (when that transaction is on another database, at its commit: see the module)."""
    batch = list(jobs)
    if not batch:
        return []
    from oban_py_ext.django.testing import enqueue_in_mode

    if (handled := enqueue_in_mode(batch, using)) is not None:
        return handled
    alias = _postgres(using)
    holder = holding_database(alias)
    if holder is not None and holder != alias:
        after_commit(alias, holder, lambda: enqueue_many(batch, alias))
        return batch
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
