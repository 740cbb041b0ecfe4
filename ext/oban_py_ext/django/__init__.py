"""Django: an app (``"oban_py_ext.django"`` in ``INSTALLED_APPS``) with ``OBAN = {...}`` settings
(``conf``, validated by ``checks``), a migration installing the schema, ``manage.py oban ...``,
transactional enqueue, Django's connections released around every job (``connections``),
testing helpers on the test's connection (``testing``) and a read-only admin of jobs with retry
and cancel actions.

    from oban_py_ext.django import enqueue

    with transaction.atomic():
        user = User.objects.create(email=email)
        enqueue(Mailer.new({"user_id": user.id}))     # rolls back with the user

``enqueue`` runs on Django's own psycopg 3 connection for ``OBAN["database"]`` (``"default"``):
inside ``atomic()`` the job joins that transaction, outside it commits at once (autocommit).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from asgiref.sync import sync_to_async

from oban_py import Job
from oban_py.client import insert_sync
from oban_py.queries import Queries
from oban_py_ext.django import conf

_JSON_COLUMNS = ("args", "meta")


def _decoded(job: Job) -> Job:
    # Django's psycopg backend loads jsonb as text (its JSONField decodes it); decode here so the
    # returned Job looks like one returned by Client.enqueue.
    for key in _JSON_COLUMNS:
        value = getattr(job, key)
        if isinstance(value, str | bytes):
            job.__dict__[key] = orjson.loads(value)
    if any(isinstance(entry, str | bytes) for entry in job.errors):
        job.__dict__["errors"] = [
            orjson.loads(e) if isinstance(e, str | bytes) else e for e in job.errors
        ]
    return job


def raw_connection(using: str | None = None) -> Any:
    """Django's underlying psycopg connection for ``using`` (``OBAN["database"]`` by default)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    alias = using or conf.database()
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"oban_py needs PostgreSQL: DATABASES[{alias!r}] uses {connection.vendor}"
        )
    connection.ensure_connection()
    return connection.connection


def enqueue_many(jobs: Iterable[Job], using: str | None = None) -> list[Job]:
    """Insert ``jobs`` on Django's connection, in its current transaction if there is one."""
    batch = list(jobs)
    if not batch:
        return []
    # TODO(sync insert API): enqueue through Django's cursor so CaptureQueriesContext and
    # execute_wrapper see the insert (issue 17, friction 13).
    from oban_py_ext.django.testing import enqueue_in_mode

    if (handled := enqueue_in_mode(batch)) is not None:
        return handled
    inserted = insert_sync(raw_connection(using), Queries(conf.prefix()), batch)
    return [_decoded(job) for job in inserted]


def enqueue(job: Job, using: str | None = None) -> Job:
    """Insert ``job`` on Django's connection, in its current transaction if there is one."""
    return enqueue_many([job], using)[0]


#: ``await aenqueue(job)`` from async views: runs on the thread that owns Django's connection.
aenqueue = sync_to_async(enqueue)
aenqueue_many = sync_to_async(enqueue_many)
