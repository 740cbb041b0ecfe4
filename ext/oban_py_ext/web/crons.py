"""The crontab the nodes publish on ``cronitor``, and when each entry runs next.

Python nodes (``oban_py.cluster.cronitor``) and Elixir nodes running oban_met send
``{"crontab": [[expr, worker, opts], ...], "name": <instance>, "node": <node>}`` every 15 s; as
oban_met does, a node's crontab not heard for ``CRONTAB_TTL`` seconds is forgotten, and the
page shows the union. An entry is known by ``opts["name"]`` (its jobs' ``meta.cron_name``)
when the node gives one, as Python nodes always do; Elixir names an unnamed entry by
``phash2``, which Python cannot compute, so its jobs are found by worker and ``cron_expr``.
Listening costs nothing per page: the payloads arrive on the dashboard's one notifier.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from oban_py.crontab import Expression

#: Seconds a node's crontab stays shown after it was last heard (oban_met keeps it 60 s).
CRONTAB_TTL = 60.0
#: Most entries shown (and read) however many a payload holds.
MOST_ENTRIES = 200
#: Days searched ahead for the next run (``0 0 29 2 *`` may be four years away).
HORIZON_DAYS = 366 * 5
#: Longest expression evaluated (the longest sensible one is far shorter).
MAX_EXPR = 200
_LONG_NUMBER = re.compile(r"\d{3}")


@dataclass
class Entry:
    """One crontab line, as published by one or more nodes."""

    expr: str
    worker: str
    opts: dict[str, Any]
    nodes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        name = self.opts.get("name")
        return name if isinstance(name, str) else None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name or "", self.expr, self.worker)

    @property
    def timezone(self) -> str | None:
        tz = self.opts.get("timezone")
        return tz if isinstance(tz, str) else None

    def jobs_filter(self) -> tuple[dict[str, Any], str | None]:
        """What this entry's jobs carry: ``meta`` it contains, and their worker when unnamed."""
        if self.name is not None:
            return {"cron_name": self.name}, None
        return {"cron": True, "cron_expr": self.expr}, self.worker


def parse_entry(item: Any) -> Entry | None:
    """One ``[expr, worker, opts]`` of a payload, or None when it is not one."""
    if not isinstance(item, list) or len(item) != 3:
        return None
    expr, worker, opts = item
    if not isinstance(expr, str) or not isinstance(worker, str) or not isinstance(opts, dict):
        return None
    return Entry(expr, worker, opts)


class CronWatch:
    """Each node's latest crontab, fed by the dashboard's notifier (``heard``)."""

    def __init__(self) -> None:
        self._tabs: dict[tuple[str, str], tuple[list[Entry], float]] = {}

    def heard(self, payload: dict[str, Any]) -> bool:
        """Keep a node's crontab; True when it differs from what that node sent before."""
        node, name, tab = payload.get("node"), payload.get("name"), payload.get("crontab")
        if not isinstance(node, str) or not isinstance(tab, list):
            return False
        entries = [e for e in (parse_entry(i) for i in tab[:MOST_ENTRIES]) if e is not None]
        key = (node, name if isinstance(name, str) else "Oban")
        before = self._tabs.get(key)
        self._tabs[key] = (entries, time.monotonic())
        return before is None or [e.key for e in before[0]] != [e.key for e in entries]

    def entries(self) -> list[Entry]:
        """The union of the live crontabs, by worker then expression, each with its nodes."""
        now = time.monotonic()
        union: dict[tuple[str, str, str], Entry] = {}
        for (node, _), (entries, at) in sorted(self._tabs.items()):
            if now - at > CRONTAB_TTL:
                continue
            for entry in entries:
                kept = union.setdefault(entry.key, Entry(entry.expr, entry.worker, entry.opts))
                if node not in kept.nodes:
                    kept.nodes.append(node)
        for key, (_, at) in list(self._tabs.items()):
            if now - at > CRONTAB_TTL:
                del self._tabs[key]
        ordered = sorted(union.values(), key=lambda e: (e.worker, e.expr, e.name or ""))
        return ordered[:MOST_ENTRIES]


def zone(name: str | None) -> ZoneInfo:
    """The named timezone, UTC when absent or not one (a payload may hold anything)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, OSError, KeyError):
            pass
    return ZoneInfo("Etc/UTC")


def next_run(expr: str, tz: ZoneInfo, now: datetime | None = None) -> datetime | None:
    """The next minute ``expr`` matches in ``tz``, in UTC; None for ``@reboot``, an invalid
    expression, or none within ``HORIZON_DAYS``.

    Days are searched first, then hours and minutes inside a matching day, so a yearly
    expression costs a few thousand steps rather than a million minutes.
    """
    # Every valid field is at most two digits: a longer number is refused before the parser
    # would spell out its range (``0-999999999`` in a payload must not cost a gigabyte).
    if len(expr) > MAX_EXPR or _LONG_NUMBER.search(expr):
        return None
    try:
        parsed = Expression.parse(expr)
    except ValueError:
        return None
    if parsed.reboot:
        return None
    now = (now or datetime.now(UTC)).astimezone(tz)
    start = now.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    hours, minutes = sorted(parsed.hours), sorted(parsed.minutes)
    for _ in range(HORIZON_DAYS):
        if (
            day.day in parsed.days
            and day.month in parsed.months
            and day.isoweekday() % 7 in parsed.weekdays
        ):
            for hour in hours:
                for minute in minutes:
                    moment = day.replace(hour=hour, minute=minute)
                    if moment < start:
                        continue
                    at = moment.replace(tzinfo=tz).astimezone(UTC)
                    # A wall-clock minute skipped by a DST change never comes: nodes match the
                    # local time, so the entry does not run then.
                    if at.astimezone(tz).replace(tzinfo=None) == moment:
                        return at
        day += timedelta(days=1)
    return None
