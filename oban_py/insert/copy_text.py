"""Plain jobs as the rows of a ``COPY oban_jobs FROM STDIN`` in text format, and the literals
of column values the inserts send.

The rows hold what ``sql/insert_jobs.sql`` inserts, value for value: the id reserved for each
job (``sql/insert_copy_ids.sql``), queue, worker and args always, and each other column only
when some job of the batch is not at its default, which the table fills in otherwise (checked
by the reservation: Elixir's own defaults). A job built with ``schedule_in`` runs that many
microseconds after the server's time, as the INSERT computes it.

Text format: a row per line, values between tabs, and in a value a backslash, tab, newline or
carriage return escaped by a backslash. JSON from orjson holds no raw control character, so
only its backslashes are doubled; names and tags may hold anything and are escaped whole.

The args of all jobs are written by one orjson call, a list with a raw newline between them
(which no JSON orjson writes holds), split there: one call per job cost twenty times as much.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from operator import itemgetter
from typing import Any

import orjson
from psycopg import sql

from oban_py.job import jsonb
from oban_py.job.model import JOB_DEFAULTS, Job, schedule_delay, to_naive_utc
from oban_py.sql import statement_text

#: Columns a row holds when a job of the batch is not at the column's default, in row order
#: after ``_ALWAYS``.
OPTIONAL = ("state", "meta", "tags", "max_attempts", "priority", "scheduled_at")
_ALWAYS = ("id", "queue", "worker", "args")
#: The fields a shape is made of, scheduled_at last.
_SHAPED = itemgetter(
    "state", "queue", "worker", "meta", "tags", "max_attempts", "priority", "scheduled_at"
)
#: Between the args of two jobs in the one document they are written as: ``,\n,``.
_BETWEEN = orjson.Fragment(b"\n")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text_array(values: Sequence[str]) -> str:
    """A PostgreSQL ``text[]`` literal: dumping a list costs psycopg more than the insert's
    whole parameter set otherwise."""
    if not values:
        return "{}"
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _text(value: str) -> bytes:
    return value.translate(_ESCAPES).encode()


def _escaped(dumped: bytes) -> bytes:
    return dumped.replace(b"\\", b"\\\\") if b"\\" in dumped else dumped


def args_texts(args: Sequence[dict[str, Any]]) -> list[bytes]:
    """Each of ``args`` as JSON, escaped for COPY text."""
    if not args:
        return []
    items: list[Any] = [_BETWEEN] * (2 * len(args) - 1)
    items[::2] = args
    return _escaped(jsonb.dumps(items))[1:-1].split(b",\n,")


@cache
def copy_query(prefix: str, columns: tuple[str, ...]) -> bytes:
    """The ``COPY`` of rows of ``columns`` into ``prefix``'s jobs table."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    text = sql.SQL(statement_text("insert_copy")).format(
        prefix=sql.Identifier(prefix), columns=names
    )
    return text.as_bytes(None)


def shape_key(job: Job, values: dict[str, Any]) -> tuple[Any, ...]:
    """What jobs of one shape share: every inserted column but args (``values``: the job's
    ``__dict__``), for the COPY's rows and the INSERT's shapes alike."""
    meta, scheduled_at = values["meta"], values["scheduled_at"]
    return (
        values["state"],
        values["queue"],
        values["worker"],
        jsonb.dumps(meta) if meta else None,
        tuple(values["tags"]),
        values["max_attempts"],
        values["priority"],
        scheduled_at,
        None if scheduled_at is None else schedule_delay(job),
    )


def _at_default(column: str, key: tuple[Any, ...]) -> bool:
    state, _, _, meta, tags, max_attempts, priority, scheduled_at, _ = key
    if column == "state":
        return bool(state == "available")
    if column == "meta":
        return meta is None
    if column == "tags":
        return not tags
    if column == "max_attempts":
        return bool(max_attempts == JOB_DEFAULTS["max_attempts"])
    if column == "priority":
        return bool(priority == JOB_DEFAULTS["priority"])
    return scheduled_at is None


def _shape_text(key: tuple[Any, ...], columns: Sequence[str], now: datetime) -> tuple[bytes, bytes]:
    """A shape's values before args (queue, worker) and after them (its optional columns)."""
    state, queue, worker, meta, tags, max_attempts, priority, scheduled_at, delay = key
    head = b"\t" + _text(queue) + b"\t" + _text(worker) + b"\t"
    tail = b""
    for column in columns:
        if column == "state":
            value = _text(state)
        elif column == "meta":
            value = b"{}" if meta is None else _escaped(meta)
        elif column == "tags":
            value = _text(text_array(tags))
        elif column == "max_attempts":
            value = b"%d" % max_attempts
        elif column == "priority":
            value = b"%d" % priority
        else:
            if scheduled_at is None:
                at = now
            elif delay is not None:
                # What the INSERT writes: the server's now plus the delay, exactly.
                at = now + timedelta(microseconds=delay)
            else:
                at = to_naive_utc(scheduled_at)  # type: ignore[assignment]
            value = at.isoformat(" ").encode()
        tail += b"\t" + value
    return head, tail + b"\n"


class CopyBatch:
    """The rows of plain ``jobs``: their args written and their shapes found once, the rows
    made when the ids and the server's time are known."""

    __slots__ = ("_args", "_kinds", "_shapes")

    def __init__(self, jobs: Sequence[Job]) -> None:
        shapes: dict[tuple[Any, ...], int] = {}
        kinds: list[int] = []
        args: list[dict[str, Any]] = []
        last: tuple[Any, ...] = ()
        kind = 0
        for job in jobs:
            values = job.__dict__
            args.append(values["args"])
            columns = _SHAPED(values)
            # A job like the one before (most are) is of its shape, found without a key. Not
            # when scheduled (a time given, or from ``schedule_in``, is another shape), nor with
            # another meta object: equal in Python is not the same JSON (1, 1.0 and True).
            if (
                columns != last
                or columns[-1] is not None
                or (columns[3] and columns[3] is not last[3])
            ):
                last = columns
                key = shape_key(job, values)
                found = shapes.get(key)
                kind = shapes[key] = len(shapes) if found is None else found
            kinds.append(kind)
        self._args, self._kinds, self._shapes = args_texts(args), kinds, shapes

    def delayed(self) -> bool:
        """Whether a job of the batch was built with ``schedule_in``."""
        return any(key[-1] is not None for key in self._shapes)

    def queues(self) -> list[str]:
        """The queues that gain an available job, in order of first appearance."""
        found = (key[1] for key in self._shapes if key[0] == "available")
        return list(dict.fromkeys(found))

    def rows(self, ids: Sequence[int], now: datetime) -> tuple[tuple[str, ...], bytes]:
        """The columns, and the rows with ``ids``; ``now``: the server's naive UTC time of the
        transaction, which the table's defaults write too."""
        shapes = self._shapes
        optional = tuple(c for c in OPTIONAL if not all(_at_default(c, key) for key in shapes))
        texts = [_shape_text(key, optional, now) for key in shapes]
        rows = [
            b"%d%b%b%b" % (job_id, texts[kind][0], arg, texts[kind][1])
            for job_id, kind, arg in zip(ids, self._kinds, self._args, strict=True)
        ]
        return _ALWAYS + optional, b"".join(rows)
