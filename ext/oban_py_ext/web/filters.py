"""The job list's filter: parsed from a query string or a form, never trusted further.

Every field is optional. ``args`` holding a JSON object filters by containment
(``args @> {...}``, the GIN index); any other text is searched in the args' JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
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


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    queue: str | None = None
    worker: str | None = None
    tags: tuple[str, ...] = ()
    args: str | None = None

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
        return cls(
            state=state,
            queue=values["queue"],
            worker=values["worker"],
            tags=tags,
            args=values["args"],
        )

    @property
    def active(self) -> bool:
        return any((self.state, self.queue, self.worker, self.tags, self.args))

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
        }

    def fields(self) -> dict[str, str]:
        """The filter as form fields (for links and the bulk action forms)."""
        out = {
            "state": self.state or "",
            "queue": self.queue or "",
            "worker": self.worker or "",
            "tags": ",".join(self.tags),
            "args": self.args or "",
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
