"""What the cron and nodes pages read from the database, each page in one shared read.

The cron page reads the newest jobs of every entry in one statement (``cron_history.sql``),
through the GIN index on ``meta``: an entry costs the jobs it has, whatever else the table
holds. The nodes page reads two tables of a few rows (``oban_peers``, ``oban_py_heartbeats``).
Everything else on both pages comes from notifications and costs no query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from oban_py.sql import compose
from oban_py_ext.web.crons import Entry
from oban_py_ext.web.reads import Reads, _text

#: Newest jobs read per crontab entry (Oban Web reads 60 for its history).
HISTORY = 10


@dataclass(frozen=True)
class Run:
    id: int
    state: str
    scheduled_at: datetime | None
    attempted_at: datetime | None
    finished_at: datetime | None

    @property
    def at(self) -> datetime | None:
        """When it ran, as Oban Web tells it: finished, else attempted, else scheduled."""
        return self.finished_at or self.attempted_at or self.scheduled_at


@dataclass
class History:
    runs: list[Run] = field(default_factory=list)
    #: The timezone its last job was inserted under (``meta.cron_tz``).
    cron_tz: str | None = None

    @property
    def last(self) -> Run | None:
        return self.runs[0] if self.runs else None


@dataclass(frozen=True)
class CronTable:
    """The crontab as heard when it was read, and each entry's history."""

    entries: list[Entry]
    histories: list[History]


@dataclass(frozen=True)
class Leases:
    #: peer name (``Oban``, ``Oban.py``) → the node holding it
    leaders: dict[str, str]
    #: nodes with a live heartbeat row: Python nodes
    python: frozenset[str]


class FleetReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self._history = compose(_text("cron_history"), reads.prefix)
        self._leases = compose(_text("node_leases"), reads.prefix)
        self._heartbeats = compose(_text("node_heartbeats"), reads.prefix)

    async def cron_history(self, entries: list[Entry]) -> list[History]:
        """The newest ``HISTORY`` jobs of each entry, newest first, in the entries' order."""
        histories = [History() for _ in entries]
        if not entries:
            return histories
        filters, workers = zip(*(entry.jobs_filter() for entry in entries), strict=True)
        params: dict[str, Any] = {
            "filters": [Jsonb(f) for f in filters],
            "workers": list(workers),
            "limit": HISTORY,
        }
        for row in await self.reads._all(self._history, params):
            history = histories[int(row["ord"]) - 1]
            if history.cron_tz is None and isinstance(row["cron_tz"], str):
                history.cron_tz = row["cron_tz"]
            history.runs.append(
                Run(
                    id=int(row["id"]),
                    state=str(row["state"]),
                    scheduled_at=row["scheduled_at"],
                    attempted_at=row["attempted_at"],
                    finished_at=row["finished_at"],
                )
            )
        return histories

    async def leases(self) -> Leases:
        leaders = {row["name"]: row["node"] for row in await self.reads._all(self._leases)}
        try:
            rows = await self.reads._all(self._heartbeats)
        except psycopg.errors.UndefinedTable:
            # Heartbeats are optional (an older oban_py schema): Python nodes then show by the
            # shape of their check-ins alone.
            rows = []
        return Leases(leaders, frozenset(row["node"] for row in rows))
