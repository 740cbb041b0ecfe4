"""What the pages read from ``oban_jobs``: counts, pages of jobs, one job (charts read none).

Statements live in ``sql/`` beside this module and are bound to the prefix through
``oban_py.sql.compose`` (a quoted identifier, never string formatting). Every read runs
in its own short transaction with a ``statement_timeout``, so a slow filter can never hold a
connection (or a lock) for longer than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from oban_py.sql import compose
from oban_py_ext.web.filters import STATES, JobFilter


@cache
def _text(name: str) -> str:
    return files("oban_py_ext.web.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


@cache
def _filter_clauses() -> dict[str, str]:
    """``job_filters.sql``: each ``name: condition`` line, comments left out."""
    clauses: dict[str, str] = {}
    for line in _text("job_filters").splitlines():
        if line.strip() and not line.startswith("--"):
            name, _, condition = line.partition(":")
            clauses[name.strip()] = condition.strip()
    return clauses


@dataclass
class QueueCounts:
    queue: str
    by_state: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass
class Counts:
    queues: dict[str, QueueCounts] = field(default_factory=dict)

    def by_state(self) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        for counts in self.queues.values():
            for state, n in counts.by_state.items():
                totals[state] = totals.get(state, 0) + n
        return totals


@dataclass
class Page:
    rows: list[dict[str, Any]]
    #: Cursor of the next (older) page, or None on the last page.
    older: int | None
    #: Cursor of the previous (newer) page, or None on the first page.
    newer: int | None


class Reads:
    def __init__(
        self, pool: AsyncConnectionPool[Any], prefix: str, statement_timeout: float
    ) -> None:
        self.pool = pool
        self.prefix = prefix
        self.timeout_ms = max(1, int(statement_timeout * 1000))
        self._pages: dict[tuple[tuple[str, ...], str], bytes] = {}
        self._counts = compose(_text("counts"), prefix)
        self._job = compose(_text("job_row"), prefix)

    async def _all(
        self, query: bytes, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        # No longer than a statement may take for a connection either: with the database away,
        # a page answers within the timeout instead of the pool's 30 s.
        async with (
            self.pool.connection(timeout=self.timeout_ms / 1000) as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(self.timeout_ms),)
            )
            await cur.execute(query, params, prepare=False)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def counts(self) -> Counts:
        counts = Counts()
        for row in await self._all(self._counts):
            queue = counts.queues.setdefault(row["queue"], QueueCounts(row["queue"]))
            queue.by_state[row["state"]] = int(row["count"])
        counts.queues = dict(sorted(counts.queues.items()))
        return counts

    def _filtered(self, names: tuple[str, ...], order: str) -> bytes:
        """``jobs_page.sql`` with the conditions ``names`` (from ``job_filters.sql``)."""
        key = (names, order)
        query = self._pages.get(key)
        if query is None:
            clauses = _filter_clauses()
            where = sql.SQL(" AND ").join(sql.SQL(clauses[n]) for n in names) if names else None
            query = (
                sql.SQL(_text("jobs_page"))
                .format(
                    prefix=sql.Identifier(self.prefix),
                    where=where if where is not None else sql.SQL("true"),
                    order=sql.SQL(order),
                )
                .as_bytes(None)
            )
            self._pages[key] = query
        return query

    async def _matching(
        self, job_filter: JobFilter, bound: str | None, cursor: int | None, limit: int
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in job_filter.params().items() if v is not None}
        names = tuple(sorted(params))
        if bound is not None:
            names += (bound,)
            params["cursor"] = cursor
        order = "DESC" if bound in (None, "before") else "ASC"
        params["limit"] = limit
        return await self._all(self._filtered(names, order), params)

    async def page(
        self, job_filter: JobFilter, *, before: int | None, after: int | None, size: int
    ) -> Page:
        """``size`` jobs older than ``before`` (or newer than ``after``), newest first.

        One extra row is read to know whether a further page exists, so no count is needed.
        """
        if after is not None:
            rows = await self._matching(job_filter, "after", after, size + 1)
            more_newer = len(rows) > size
            rows = list(reversed(rows[:size]))
            older = rows[-1]["id"] if rows else None
            return Page(rows, older, rows[0]["id"] if rows and more_newer else None)
        bound = "before" if before is not None else None
        rows = await self._matching(job_filter, bound, before, size + 1)
        more_older = len(rows) > size
        rows = rows[:size]
        older = rows[-1]["id"] if rows and more_older else None
        newer = rows[0]["id"] if rows and before is not None else None
        return Page(rows, older, newer)

    async def matching_ids(self, job_filter: JobFilter, *, after: int, limit: int) -> list[int]:
        """Ids matching the filter above ``after``, ascending: one batch of a bulk action."""
        rows = await self._matching(job_filter, "after", after, limit)
        return [int(row["id"]) for row in rows]

    async def job(self, job_id: int) -> dict[str, Any] | None:
        rows = await self._all(self._job, {"id": job_id})
        return rows[0] if rows else None


def is_timeout(error: BaseException) -> bool:
    """A read stopped by the statement timeout (shown as such, not as a crash)."""
    return isinstance(error, psycopg.errors.QueryCanceled)
