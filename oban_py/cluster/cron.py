"""The ``Cron`` duty: while leading, insert the crontab's due jobs at each minute boundary.

Each entry's insert takes a transaction-scoped advisory lock on its name and skips when a job of
that name holds that very slot, so several nodes, a leader change, a slot inserted late or a
retried job never make one slot run twice, and never suppress another slot. Jobs go through the
insert engine, so the worker's ``unique`` and ``replace`` apply as well. The entries themselves
(expressions, options, ``cron_name``) are ``oban_py.crontab``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from oban_py.cluster.contract import NodeLike
from oban_py.cluster.periodic import Periodic
from oban_py.crontab import CronEntry, crontab, slot_key
from oban_py.insert import insert_async
from oban_py.job import jsonb
from oban_py.worker import resolve


def worker_defaults(worker: str) -> dict[str, Any]:
    """The options a registered Python worker declares; none for a foreign (Elixir) worker."""
    try:
        return dict(resolve(worker).__oban_options__)
    except Exception:
        return {}


class Cron(Periodic):
    """Evaluates the crontab at every minute boundary while this node leads."""

    kind = "oban.cron"

    def __init__(self, oban: NodeLike, entries: Iterable[Any] | None = None) -> None:
        super().__init__(60.0)
        self.oban = oban
        self.timezone = oban.config.timezone
        self.entries = crontab(oban.config.crontab if entries is None else entries)
        self._armed = False

    def next_delay(self) -> float:
        now = datetime.now(UTC)
        # A hair past the boundary, so the slot computed on waking is the new minute.
        return 60.0 - now.second - now.microsecond / 1e6 + 0.01

    def metadata(self) -> dict[str, Any]:
        return {"entries": len(self.entries)}

    async def tick(self) -> list[int]:
        if not self._armed:
            # Like Elixir, the first evaluation is at the next minute boundary, not at start.
            self._armed = True
            return []
        if not self.entries or not self.oban.is_leader:
            return []
        slot = (datetime.now(UTC) + timedelta(seconds=1)).replace(second=0, microsecond=0)
        return await self.evaluate(slot)

    def due(self, slot: datetime) -> list[CronEntry]:
        """The entries matching ``slot`` (an aware time), each in its own timezone."""
        due = []
        for entry in self.entries:
            zone = ZoneInfo(entry.timezone or self.timezone)
            if entry.expression.matches(slot.astimezone(zone)):
                due.append(entry)
        return due

    async def evaluate(self, slot: datetime) -> list[int]:
        """Insert the entries due at ``slot`` that no node inserted yet; the new job ids."""
        due = self.due(slot)
        inserted: list[int] = []
        queries = self.oban.queries
        prefix = queries.prefix
        async with self.oban.pool.connection() as conn, conn.transaction():
            for entry in due:
                name = entry.name
                await conn.execute(queries["cron_lock"], {"key": f"oban_py.cron:{prefix}:{name}"})
                taken = {"cron": True, "cron_name": name, "cron_at": slot_key(slot)}
                probe = {"meta": jsonb.dumps_str(taken), "worker": entry.worker}
                cursor = await conn.execute(queries["cron_slot_taken"], probe)
                if await cursor.fetchone() is not None:
                    continue
                job = entry.job(
                    slot, entry.timezone or self.timezone, worker_defaults(entry.worker)
                )
                # The engine notifies the job's queue on commit, as any insert does.
                (stored,) = await insert_async(conn, queries, [job])
                if stored.id is not None and not stored.conflict:
                    inserted.append(stored.id)
        # @reboot fires once per leader start: drop it once it has been evaluated as leader.
        self.entries = [e for e in self.entries if not e.expression.reboot]
        return inserted
