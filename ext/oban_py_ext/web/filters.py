"""The job list's filter: parsed from a query string or a form, never trusted further.

Every field is optional. ``args`` holding a JSON object filters by containment
(``args @> {...}``, the GIN index); any other text is searched in the args' JSON text.
``worker`` matches the full name or its last dotted segments (``Mailer`` finds
``MyApp.Mailer``). ``since`` and ``until`` bound the timestamp the list is sorted by.

Elixir's schema indexes only state, queue, args and meta: a condition on anything else
(``UNINDEXED``) is read row by row, so the job list searches it within a bounded window of ids
(``Reads.scan``) instead of the whole table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from oban_py.job import jsonb

#: The states of ``oban_job_state``, in the order the pages list them.
STATES = (
    "available",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
    "suspended",
)
#: Longest filter value accepted: queue and worker names are under 128 characters, and a
#: search longer than a page of text is not a search.
MAX_VALUE = 2_000
#: The timestamps the list may be sorted by (newest first), each with its column.
SORTS = {
    "inserted": "inserted_at",
    "scheduled": "scheduled_at",
    "attempted": "attempted_at",
    "completed": "completed_at",
}
#: Conditions no index of Elixir's schema serves (see ``job_filters.sql``).
UNINDEXED = frozenset({"worker", "tags", "text", "node", "priority", "attempt", "since", "until"})
#: Largest value an ``integer`` column holds.
MAX_INT = 2**31 - 1


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    queue: str | None = None
    worker: str | None = None
    tags: tuple[str, ...] = ()
    args: str | None = None
    node: str | None = None
    priority: int | None = None
    attempt: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: A key of ``SORTS``; the list's order, not a condition.
    sort: str = "inserted"

    @classmethod
    def parse(cls, source: Mapping[str, Any]) -> JobFilter:
        """From query parameters or form fields; blank fields are absent."""
        values: dict[str, str | None] = {}
        for field in fields(cls):
            raw = source.get(field.name)
            text = raw.strip() if isinstance(raw, str) else None
            if text and len(text) > MAX_VALUE:
                raise FilterError(f"{field.name} is longer than {MAX_VALUE} characters")
            if text and "\x00" in text:
                raise FilterError(f"{field.name} holds a NUL character")
            values[field.name] = text or None
        state = values["state"]
        if state is not None and state not in STATES:
            raise FilterError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        tags = tuple(t.strip() for t in (values["tags"] or "").split(",") if t.strip())
        if values["args"] is not None and "\\u0000" in (_contained(values["args"]) or ""):
            # Escaped in JSON it passes the check above, and jsonb refuses it at query time.
            raise FilterError("args holds a NUL character (\\u0000), which jsonb cannot hold")
        sort = values["sort"] or "inserted"
        if sort not in SORTS:
            raise FilterError(f"unknown sort {sort!r}; sorts: {', '.join(SORTS)}")
        return cls(
            state=state,
            queue=values["queue"],
            worker=values["worker"],
            tags=tags,
            args=values["args"],
            node=values["node"],
            priority=_whole("priority", values["priority"]),
            attempt=_whole("attempt", values["attempt"]),
            since=_moment("since", values["since"]),
            until=_moment("until", values["until"]),
            sort=sort,
        )

    @property
    def active(self) -> bool:
        conditions = (self.state, self.queue, self.worker, self.tags, self.args, self.node)
        bounds = (self.priority, self.attempt, self.since, self.until)
        return any(conditions) or any(b is not None for b in bounds)

    @property
    def column(self) -> str:
        """The timestamp column the list is sorted by (and ``since``/``until`` bound)."""
        return SORTS[self.sort]

    def params(self) -> dict[str, Any]:
        """The parameters of ``jobs_where.sql``."""
        contained: str | None = None
        text: str | None = None
        if self.args is not None:
            contained = _contained(self.args)
            if contained is None:
                text = self.args
        return {
            "state": self.state,
            "queue": self.queue,
            "worker": self.worker,
            "tags": list(self.tags) or None,
            "args": contained,
            "text": text,
            "node": self.node,
            "priority": self.priority,
            "attempt": self.attempt,
            "since": _naive(self.since),
            "until": _naive(self.until),
        }

    def fields(self) -> dict[str, str]:
        """The filter as form fields (for links and the bulk action forms)."""
        out = {
            "state": self.state or "",
            "queue": self.queue or "",
            "worker": self.worker or "",
            "tags": ",".join(self.tags),
            "args": self.args or "",
            "node": self.node or "",
            "priority": "" if self.priority is None else str(self.priority),
            "attempt": "" if self.attempt is None else str(self.attempt),
            "since": _shown(self.since),
            "until": _shown(self.until),
            "sort": "" if self.sort == "inserted" else self.sort,
        }
        return {k: v for k, v in out.items() if v}

    def query(self, **extra: Any) -> str:
        """A query string for this filter plus ``extra`` (None values left out)."""
        items = self.fields() | {k: str(v) for k, v in extra.items() if v is not None}
        return urlencode(items)


def _contained(args: str) -> str | None:
    """The args filter as the JSON object its containment test takes, or None: searched as text."""
    try:
        parsed = jsonb.loads(args)
    except (ValueError, RecursionError):
        # Not JSON (or nested past the parser's depth): searched as text instead.
        return None
    return jsonb.dumps_str(parsed) if isinstance(parsed, dict) else None


def _whole(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdecimal() or not text.isascii() or len(text) > 10 or int(text) > MAX_INT:
        raise FilterError(f"{name} must be a whole number from 0 to {MAX_INT}")
    return int(text)


def _moment(name: str, text: str | None) -> datetime | None:
    """A time as ``datetime-local`` inputs send it (``2026-05-01T12:30``), read as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name} must be a time like 2026-05-01T12:30 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive(moment: datetime | None) -> datetime | None:
    """As the columns hold it: UTC without a zone."""
    return None if moment is None else moment.replace(tzinfo=None)


def _shown(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S")
