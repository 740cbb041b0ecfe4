"""Inserting through Django's own cursor: the insert engine's program, driven by Django.

The insert engine plans without a connection (``oban_py.insert.planner``): its program yields
statements and is sent their rows. This driver runs them on ``connections[using].cursor()``, so
Django sees every statement as any query of the app: ``CaptureQueriesContext`` and
``assertNumQueries`` count them, ``connection.execute_wrapper`` (Sentry, debug-toolbar) wraps
them, and they join the ``atomic()`` block the view is in. Statements the engine would pipeline
run one after the other here (Django's cursor has no pipeline). A COPY (a large batch of plain
jobs) runs on the database driver's own cursor, which Django's wrapper lends: Django does not
count or wrap it.
"""

from __future__ import annotations

import io
from collections import deque
from typing import Any, TypeVar

from oban_py.insert.statements import Copy, Program, Receive, Work
from oban_py.job import jsonb

T = TypeVar("T")

_JSON_COLUMNS = ("args", "meta")


def decoded_row(row: dict[str, Any]) -> dict[str, Any]:
    """A job row as the engine reads it: Django's psycopg backend loads jsonb as text (its
    JSONField decodes it), so args, meta and errors are decoded here, exactly."""
    for key in _JSON_COLUMNS:
        if isinstance(row.get(key), str | bytes):
            row[key] = jsonb.loads(row[key])
    if row.get("errors"):
        row["errors"] = [jsonb.loads(e) if isinstance(e, str | bytes) else e for e in row["errors"]]
    return row


def run(alias: str, work: Work[T]) -> T:
    """Run ``work`` on Django's connection ``alias``: in a transaction of its own when it needs
    one and the connection is in autocommit, else in the caller's ``atomic()`` block."""
    from django.db import connections, transaction

    connection = connections[alias]
    own = connection.get_autocommit() and not connection.in_atomic_block
    if work.transaction and own:
        with transaction.atomic(using=alias):
            return _drive(connection, work.program(True))
    return _drive(connection, work.program(False))


def _drive(connection: Any, program: Program[T]) -> T:
    received: deque[list[Any]] = deque()
    rows: list[Any] | None = None
    with connection.cursor() as cursor:
        while True:
            try:
                step = program.send(rows) if rows is not None else next(program)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Receive):
                rows = received.popleft()
                continue
            if isinstance(step, Copy):
                _copy(cursor.cursor, step)
                received.append([])
                rows = []
                continue
            cursor.execute(step.query.decode(), step.params)
            found = list(cursor.fetchall()) if cursor.description else []
            if step.dicts:
                names = [column.name for column in cursor.description]
                found = [decoded_row(dict(zip(names, row, strict=True))) for row in found]
            if step.pipelined:
                received.append(found)
                rows = []
            else:
                rows = found


def _copy(raw: Any, step: Copy) -> None:
    """Run a COPY on the database driver's own cursor (Django's wrapper has no COPY of its
    own): psycopg 3's ``copy``, or psycopg2's ``copy_expert``."""
    if hasattr(raw, "copy"):
        with raw.copy(step.query.decode()) as copy:
            copy.write(step.data)
    else:
        raw.copy_expert(step.query.decode(), io.BytesIO(step.data))
