"""The crontab: expressions, entries and the entries workers declare (``@worker(cron=...)``).

The leader's ``Cron`` duty (``cluster/cron.py``) inserts their jobs at minute boundaries, once
per slot across the cluster.

Expressions follow Elixir Oban's grammar and semantics (``lib/oban/cron/expression.ex``): five
fields with ``*``, literals, ranges ``a-b``, steps ``*/n``, ``a/n`` and ``a-b/n``, comma lists,
month and weekday names (``JAN``..``DEC``, ``SUN``..``SAT``, weekdays 0..6), the nicknames
``@hourly @daily @midnight @weekly @monthly @yearly @annually`` and ``@reboot`` (once per leader
start). A time matches when **all five** fields match, day-of-month AND weekday, unlike Vixie
cron (and croniter's default), which ORs them when both are restricted; that is why this module
parses expressions itself instead of using croniter.

Inserted jobs carry Elixir's cron meta ``{"cron": true, "cron_expr", "cron_name", "cron_tz"}``
plus ``cron_at``, the slot's minute in UTC (``"2026-11-23T09:19:00Z"``; Elixir ignores the key).
``cron_name`` cannot be Elixir's ``phash2``; it is a stable hash of expression, worker and options
(``entry_name``). Each entry's insert takes a transaction-scoped advisory lock on its name and
skips when a job of that name holds that very slot, so several nodes, a leader change, a slot
inserted late or a retried job never make one slot run twice, and never suppress another slot.
Jobs go through the insert engine, so the worker's ``unique`` and ``replace`` apply as well.

Expressions that can never run are rejected as Elixir rejects them: when both day of month and
month are restricted, some listed day must exist in some listed month (``0 0 30 2 *`` fails).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from oban_py.job import jsonb
from oban_py.job.model import JOB_DEFAULTS, Job

NICKNAMES = {
    "@annually": "0 0 1 1 *",
    "@yearly": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@midnight": "0 0 * * *",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
#: Elixir's ``@max_days_per_month`` (February may have 29).
MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

_LITERAL = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/([1-9]\d?)$")
_RANGE_STEP = re.compile(r"^(\d+)(?:-(\d+))?/([1-9]\d?)$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _translate(text: str, names: list[str], first: int) -> str:
    for offset, name in enumerate(names):
        text = text.replace(name, str(first + offset))
    return text


def _range(low: str, high: str | None, bounds: tuple[int, int]) -> range:
    start = int(low)
    stop = bounds[1] if high is None else int(high)
    if start > stop:
        raise ValueError(f"left side ({start}) of a range must be <= the right side ({stop})")
    return range(start, stop + 1)


def _part(part: str, bounds: tuple[int, int]) -> Iterable[int]:
    if part == "*":
        return range(bounds[0], bounds[1] + 1)
    if _LITERAL.match(part):
        return [int(part)]
    if m := _STEP.match(part):
        return range(bounds[0], bounds[1] + 1, int(m[1]))
    if m := _RANGE_STEP.match(part):
        return _range(m[1], m[2], bounds)[:: int(m[3])]
    if m := _RANGE.match(part):
        return _range(m[1], m[2], bounds)
    raise ValueError(f"unrecognized cron expression: {part}")


def _field(text: str, bounds: tuple[int, int]) -> frozenset[int]:
    values = frozenset(v for part in re.split(r"\s*,\s*", text) for v in _part(part, bounds))
    if any(v < bounds[0] or v > bounds[1] for v in values):
        raise ValueError(f"expression field {text} is out of range: {bounds[0]}..{bounds[1]}")
    return values


@dataclass(frozen=True)
class Expression:
    """A parsed cron expression; ``Expression.parse("*/5 * * * MON-FRI")``."""

    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    reboot: bool = False

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse ``text``; raises ``ValueError`` for anything Elixir Oban would reject."""
        if text == "@reboot":
            return cls(reboot=True)
        fields = NICKNAMES.get(text, text).split()
        if len(fields) != 5:
            raise ValueError(f"incorrect number of fields in expression: {text}")
        fields[3] = _translate(fields[3], MONTHS, 1)
        fields[4] = _translate(fields[4], WEEKDAYS, 0)
        minutes, hours, days, months, weekdays = (
            _field(f, bounds) for f, bounds in zip(fields, RANGES, strict=True)
        )
        restricted = fields[2] != "*" and fields[3] != "*"
        if restricted and not any(day <= MAX_DAYS[m] for m in months for day in days):
            raise ValueError(f"no day in {fields[2]!r} can occur in months {fields[3]!r}")
        return cls(minutes, hours, days, months, weekdays)

    def matches(self, moment: datetime) -> bool:
        """True if ``moment`` (in the entry's timezone) falls in this expression's minute."""
        if self.reboot:
            return True
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.day in self.days
            and moment.month in self.months
            and moment.isoweekday() % 7 in self.weekdays
        )


def slot_key(slot: datetime) -> str:
    """The slot's minute in UTC as stored in ``meta.cron_at``: ``2026-11-23T09:19:00Z``."""
    return slot.astimezone(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_name(expr: str, worker: str, opts: Mapping[str, Any]) -> str:
    """The stable ``cron_name`` of an entry: same expression, worker and options, same name.

    A decimal string like Elixir's (whose ``phash2`` is unavailable here), in the same 0..2^27
    range: the first four bytes of SHA-256 over the canonical JSON of ``[expr, worker, opts]``.
    """
    canonical = jsonb.dumps([expr, worker, dict(opts)], option=orjson.OPT_SORT_KEYS)
    return str(int.from_bytes(hashlib.sha256(canonical).digest()[:4], "big") % 2**27)


#: The job options an entry falls back to when neither it nor its worker sets them.
ENTRY_DEFAULTS = ("queue", "priority", "max_attempts", "tags", "meta")
OPTION_KEYS = ("args", "queue", "priority", "max_attempts", "tags", "meta", "timezone")


#: Insert options a worker lends its cron jobs besides the job defaults.
INSERT_OPTIONS = ("unique", "replace")


@dataclass(frozen=True)
class CronEntry:
    """One crontab line: when, which worker, and the job options of what it inserts.

    Options left ``None`` come from the worker's declared options when the worker is a registered
    Python worker (as Elixir merges ``worker.__opts__``), else from Elixir's job defaults.
    """

    expr: str
    worker: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    tags: list[str] | None = None
    meta: dict[str, Any] | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        Expression.parse(self.expr)
        if self.timezone is not None:
            ZoneInfo(self.timezone)

    @property
    def expression(self) -> Expression:
        return Expression.parse(self.expr)

    @property
    def opts(self) -> dict[str, Any]:
        """The options given explicitly (what ``cron_name`` hashes, like Elixir's opts)."""
        given = {key: getattr(self, key) for key in OPTION_KEYS}
        return {k: v for k, v in given.items() if v is not None and v != {}}

    @property
    def name(self) -> str:
        return entry_name(self.expr, self.worker, self.opts)

    def job_options(self, declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """queue, priority, max_attempts, tags and meta of the job to insert, and the worker's
        unique and replace options; ``declared`` are the options its worker declares."""
        merged = {key: JOB_DEFAULTS[key] for key in ENTRY_DEFAULTS}
        if declared:
            wanted = (*ENTRY_DEFAULTS, *INSERT_OPTIONS)
            merged.update({k: v for k, v in declared.items() if k in wanted and v is not None})
        for key in ENTRY_DEFAULTS:
            value = getattr(self, key)
            if value is not None:
                merged[key] = value
        return merged

    def job(self, slot: datetime, timezone: str, declared: Mapping[str, Any] | None = None) -> Job:
        """The job this entry inserts for ``slot`` (an aware minute), with its cron meta."""
        opts = self.job_options(declared)
        meta = {
            **opts.pop("meta"),
            "cron": True,
            "cron_expr": self.expr,
            "cron_name": self.name,
            "cron_tz": timezone,
            "cron_at": slot_key(slot),
        }
        return Job(worker=self.worker, args=self.args, meta=meta, **opts)

    @classmethod
    def coerce(cls, spec: Any) -> CronEntry:
        """An entry from ``(expr, worker)``, ``(expr, worker, opts)`` or a dict with ``expr``."""
        if isinstance(spec, CronEntry):
            return spec
        if isinstance(spec, Mapping):
            return cls(**spec)
        if isinstance(spec, tuple | list) and len(spec) in (2, 3):
            opts = dict(spec[2]) if len(spec) == 3 else {}
            return cls(spec[0], spec[1], **opts)
        raise ValueError(f"expected (expr, worker[, opts]) or a mapping, got {spec!r}")


#: entries declared with ``@worker(cron=...)``; the worker decorator calls ``register``.
_registered: dict[str, CronEntry] = {}


def register(worker: str, cron: str | Mapping[str, Any], **opts: Any) -> CronEntry:
    """Declare a cron entry for ``worker``: ``cron`` is an expression or ``{"expr", ...}``."""
    spec = {"expr": cron} if isinstance(cron, str) else dict(cron)
    entry = CronEntry(worker=worker, **{**opts, **spec})
    _registered[f"{worker}:{entry.name}"] = entry
    return entry


def crontab(config_entries: Iterable[Any]) -> list[CronEntry]:
    """The configured entries plus those registered by workers, without duplicates."""
    entries = {e.name: e for e in (CronEntry.coerce(s) for s in config_entries)}
    for entry in _registered.values():
        entries.setdefault(entry.name, entry)
    return list(entries.values())
