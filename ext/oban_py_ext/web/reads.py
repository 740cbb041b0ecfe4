"""What the pages read from ``oban_jobs``: counts, pages of jobs, one job (charts read none).

Statements live in ``sql/`` beside this module and are bound to the prefix through
``oban_py.sql.compose`` (a quoted identifier, never string formatting). Every read runs
in its own short transaction with a ``statement_timeout``, so a slow filter can never hold a
connection (or a lock) for longer than that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from oban_py.sql import compose
from oban_py_ext.web.filters import STATES, UNINDEXED, JobFilter

#: Most ids a page with unindexed conditions reads (``create_app(scan=...)``).
SCAN = 100_000
#: Most rows of one state the shared counts read (``create_app(count_cap=...)``); a state
#: holding more is estimated from the table's statistics.
COUNT_CAP = 10_000
#: Most queues of one state beyond the cap that get an estimate each (one index row apiece).
ESTIMATED_QUEUES = 100
#: The orders of ``jobs_page.sql``: the primary key's both ways, or a timestamp's (nulls last).
ORDERS = {
    "asc": "id ASC",
    "desc": "id DESC",
    "timestamp": "coalesce({column}, '-infinity') DESC, id DESC",
}


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


@dataclass(frozen=True)
class Amount:
    """A number of jobs: counted, or ``estimated`` from the table's statistics (shown "≈")."""

    value: int
    estimated: bool = False

    def __add__(self, other: Amount | int) -> Amount:
        if isinstance(other, Amount):
            return Amount(self.value + other.value, self.estimated or other.estimated)
        return Amount(self.value + other, self.estimated)

    __radd__ = __add__


NONE = Amount(0)


@dataclass
class QueueCounts:
    queue: str
    by_state: dict[str, Amount] = field(default_factory=dict)

    @property
    def total(self) -> Amount:
        return sum(self.by_state.values(), NONE)


@dataclass
class Counts:
    queues: dict[str, QueueCounts] = field(default_factory=dict)

    def by_state(self) -> dict[str, Amount]:
        totals = dict.fromkeys(STATES, NONE)
        for counts in self.queues.values():
            for state, n in counts.by_state.items():
                totals[state] = totals.get(state, NONE) + n
        return totals

    def add(self, queue: str, state: str, amount: Amount) -> None:
        self.queues.setdefault(queue, QueueCounts(queue)).by_state[state] = amount


@dataclass
class Page:
    rows: list[dict[str, Any]]
    #: Query parameters of the next (older) page, or None on the last page.
    older: dict[str, Any] | None
    #: Query parameters of the previous (newer) page, or None on the first page.
    newer: dict[str, Any] | None
    #: The ids searched (lowest, highest) when unindexed conditions bounded the read.
    searched: tuple[int, int] | None = None


@dataclass(frozen=True)
class Count:
    """How many jobs a bulk action would look at, as the confirm says it."""

    value: int
    #: "exact", "capped" (at least ``value``) or "estimated" (from the newest ``scan`` ids)
    how: str
    scan: int

    @property
    def text(self) -> str:
        if self.how == "capped":
            return f"at least {self.value:,}"
        return f"about {self.value:,}" if self.how == "estimated" else f"{self.value:,}"

    @property
    def note(self) -> str:
        if self.how != "estimated":
            return ""
        return f" (estimated from the newest {self.scan:,} jobs)"


class Reads:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        prefix: str,
        statement_timeout: float,
        scan: int = SCAN,
        count_cap: int = COUNT_CAP,
    ) -> None:
        self.pool = pool
        self.prefix = prefix
        self.timeout_ms = max(1, int(statement_timeout * 1000))
        #: Most ids one page with unindexed conditions (or a timestamp sort) reads.
        self.scan = scan
        #: Most rows of one state the shared counts read.
        self.count_cap = count_cap
        self._pages: dict[tuple[str, tuple[str, ...], str, str], bytes] = {}
        self._counts = _counts(prefix)
        self._count_queues = compose(_text("counts_queues"), prefix)
        self._job = compose(_text("job_row"), prefix)
        self._bounds = compose(_text("id_bounds"), prefix)
        self._pair_ids = compose(_text("pair_ids"), prefix)
        #: The latest counts read: which (state, queue) pairs hold few jobs (``_pair``).
        self._latest: Counts | None = None
        #: When a list, every job list read (pages, counts, bulk batches) also runs under
        #: ``EXPLAIN ANALYZE`` and its plan is appended: how benchmarks and tests see the rows
        #: each read takes (``rows_read``).
        self.plans: list[dict[str, Any]] | None = None
        #: The same for the shared counts by queue and state (``counts``).
        self.count_plans: list[dict[str, Any]] | None = None

    async def _all(
        self, query: bytes, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        async with self._session() as cur:
            await cur.execute(query, params, prepare=False)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """A cursor in a transaction whose every statement has the statement timeout."""
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
            yield cur

    async def counts(self) -> Counts:
        """Jobs per queue and state: counted up to ``count_cap`` rows per state, whatever the
        size of the table. A state holding more is counted exactly for the queues its first
        ``count_cap`` rows (in queue order) hold entirely; the queue reached last and those
        after it (at most ``ESTIMATED_QUEUES``) are the planner's estimates, as oban_met's
        reporter does above its estimate limit."""
        counts = Counts()
        params = {"cap": self.count_cap}
        await self._trace(self._counts, params, self.count_plans)
        over: dict[str, tuple[str, int]] = {}
        for row in await self._all(self._counts, params):
            if row["over"] and row["last"]:
                over[row["state"]] = (row["queue"], int(row["count"]))
            else:
                counts.add(row["queue"], row["state"], Amount(int(row["count"])))
        for (state, queue), estimate in (await self._estimates(over)).items():
            last, seen = over[state]
            floor = seen if queue == last else 1
            counts.add(queue, state, Amount(max(estimate, floor), estimated=True))
        counts.queues = dict(sorted(counts.queues.items()))
        self._latest = counts
        return counts

    async def _estimates(self, over: dict[str, tuple[str, int]]) -> dict[tuple[str, str], int]:
        """The planner's estimate for each queue of each state in ``over`` from its last queue
        reached on: the queues found by one skip scan a state, then one ``EXPLAIN`` for all."""
        if not over:
            return {}
        pairs: list[tuple[str, str]] = []
        async with self._session() as cur:
            for state, (last, _) in over.items():
                params = {"state": state, "after": last, "most": ESTIMATED_QUEUES}
                await self._trace(self._count_queues, params, self.count_plans)
                await cur.execute(self._count_queues, params, prepare=False)
                pairs += [(state, row["queue"]) for row in await cur.fetchall()]
            if not pairs:
                return {}
            await cur.execute(_estimates(self.prefix, pairs), prepare=False)
            plan = (await cur.fetchall())[0]["QUERY PLAN"][0]["Plan"]
        # One part: the scan itself; more: an Append of the parts, in order.
        parts = plan["Plans"] if len(pairs) > 1 else [plan]
        return {pair: int(part["Plan Rows"]) for pair, part in zip(pairs, parts, strict=True)}

    def _filtered(self, template: str, names: tuple[str, ...], column: str, order: str) -> bytes:
        """``template`` (``jobs_page`` or ``jobs_count``) with the conditions ``names`` (from
        ``job_filters.sql``), ``column`` the sort's timestamp and ``order`` a key of ORDERS."""
        key = (template, names, column, order)
        query = self._pages.get(key)
        if query is None:
            clauses = _filter_clauses()
            identifier = sql.Identifier(column)
            where = sql.SQL(" AND ").join(
                sql.SQL(clauses[n]).format(column=identifier) for n in names
            )
            query = (
                sql.SQL(_text(template))
                .format(
                    prefix=sql.Identifier(self.prefix),
                    where=where if names else sql.SQL("true"),
                    order=sql.SQL(ORDERS[order]).format(column=identifier),
                )
                .as_bytes(None)
            )
            self._pages[key] = query
        return query

    async def _matching(
        self,
        job_filter: JobFilter,
        order: str,
        limit: int,
        action: str | None = None,
        **bounds: Any,
    ) -> list[dict[str, Any]]:
        params = _conditions(job_filter) | {k: v for k, v in bounds.items() if v is not None}
        ids = await self._pair(job_filter)
        if ids is not None:
            if not ids:
                return []
            params["ids"] = ids
        names = _names(params, action)
        params["limit"] = limit
        query = self._filtered("jobs_page", names, job_filter.column, order)
        await self._trace(query, params, self.plans)
        return await self._all(query, params)

    async def _pair(self, job_filter: JobFilter) -> list[int] | None:
        """Every id of the filter's (state, queue) when the pair holds no more than
        ``count_cap`` jobs, else None (matches are plentiful: the planner's plan finds a page
        of them soon). Read (``count_cap`` + 1 index rows at most) when the latest counts say
        the pair may hold few, or do not know it; a job that left the pair since is left out
        by the page's own conditions."""
        state, queue = job_filter.state, job_filter.queue
        if state is None or queue is None:
            return None
        if self._latest is not None:
            known = self._latest.queues.get(queue)
            amount = known.by_state.get(state, NONE) if known is not None else NONE
            if amount.value > self.count_cap:
                return None
        params = {"state": state, "queue": queue, "most": self.count_cap + 1}
        await self._trace(self._pair_ids, params, self.plans)
        ids: list[int] = (await self._all(self._pair_ids, params))[0]["ids"]
        return ids if len(ids) <= self.count_cap else None

    async def _trace(
        self, query: bytes, params: dict[str, Any], plans: list[dict[str, Any]] | None
    ) -> None:
        if plans is not None:
            rows = await self._all(b"EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)
            plans.append(rows[0]["QUERY PLAN"][0])

    async def bounds(self) -> tuple[int, int] | None:
        """The lowest and highest id, or None for an empty table."""
        row = (await self._all(self._bounds))[0]
        return None if row["low"] is None else (int(row["low"]), int(row["high"]))

    async def page(
        self,
        job_filter: JobFilter,
        *,
        before: int | None,
        after: int | None,
        size: int,
        key: str | None = None,
        floor: int | None = None,
    ) -> Page:
        """``size`` jobs older than ``before`` (or newer than ``after``), newest first.

        One extra row is read to know whether a further page exists, so no count is needed.
        Unindexed conditions are searched among ``scan`` ids below ``before`` (or above
        ``after``, or below the newest): a page reads at most that many rows, and links to the
        next window when this one held fewer than a page.
        """
        if job_filter.sort != "inserted":
            return await self._sorted_page(job_filter, size=size, key=key, floor=floor)
        windowed = unindexed(job_filter)
        ids = await self.bounds() if windowed else None
        if windowed and ids is None:
            return Page([], None, None)
        low = high = None
        if after is not None:
            low = after + 1
            high = low + self.scan if ids is not None else None
        elif ids is not None:
            high = before if before is not None else ids[1] + 1
            low = high - self.scan
        elif before is not None:
            high = before
        searched = None
        if ids is not None and low is not None and high is not None:
            # Said only when the window left some ids out.
            shown = (max(low, ids[0]), min(high - 1, ids[1]))
            searched = None if shown == ids else shown
        if after is not None:
            rows = await self._matching(job_filter, "asc", size + 1, low=low, high=high)
            full = len(rows) > size
            rows = list(reversed(rows[:size]))
            newer: dict[str, Any] | None = None
            if full:
                newer = {"after": rows[0]["id"]}
            elif ids is not None and high is not None and high <= ids[1]:
                newer = {"after": high - 1}
            older = {"before": rows[-1]["id"] if rows else low}
            return Page(rows, older, newer, searched)
        rows = await self._matching(job_filter, "desc", size + 1, low=low, high=high)
        full = len(rows) > size
        rows = rows[:size]
        older_cursor = rows[-1]["id"] if full else None
        if not full and ids is not None and low is not None and low > ids[0]:
            older_cursor = low
        newer_cursor = None
        if before is not None:
            newer_cursor = rows[0]["id"] if rows else before - 1
        return Page(
            rows,
            None if older_cursor is None else {"before": older_cursor},
            None if newer_cursor is None else {"after": newer_cursor},
            searched,
        )

    async def _sorted_page(
        self, job_filter: JobFilter, *, size: int, key: str | None, floor: int | None
    ) -> Page:
        """Newest first by a timestamp no index orders, among the newest ``scan`` ids, or the
        ``scan`` ids from ``floor`` on (the window the first page chose, so jobs inserted since
        do not shift the later pages); keyset ``(timestamp, id)``."""
        ids = await self.bounds()
        if ids is None:
            return Page([], None, None)
        low = floor if floor is not None else ids[1] + 1 - self.scan
        bounds: dict[str, Any] = {"low": low, "high": low + self.scan}
        cursor = _parse_key(key)
        if cursor is not None:
            bounds["key_at"], bounds["key_id"] = cursor
        rows = await self._matching(job_filter, "timestamp", size + 1, **bounds)
        full = len(rows) > size
        rows = rows[:size]
        older = None
        if full:
            last = rows[-1]
            older = {"key": _key(last[job_filter.column], last["id"]), "floor": low}
        newer = {"floor": low} if cursor is not None else None
        shown = (max(low, ids[0]), min(low + self.scan - 1, ids[1]))
        return Page(rows, older, newer, None if shown == ids else shown)

    async def ids_between(
        self,
        job_filter: JobFilter,
        *,
        low: int,
        high: int,
        limit: int | None = None,
        action: str | None = None,
    ) -> list[int]:
        """Ids matching the filter in ``[low, high)``, ascending, at most ``limit``, and only
        those ``action`` can change: one batch of a bulk action."""
        rows = await self._matching(
            job_filter,
            "asc",
            limit if limit is not None else high - low,
            action,
            low=low,
            high=high,
        )
        return [int(row["id"]) for row in rows]

    async def count(self, job_filter: JobFilter, cap: int, action: str | None = None) -> Count:
        """Jobs matching the filter (that ``action`` can change): counted up to ``cap`` where
        indexes serve it (or the table holds no more than ``scan`` ids); else estimated from
        the newest ``scan`` ids, so no count reads more than ``max(cap, scan)`` rows."""
        if unindexed(job_filter):
            ids = await self.bounds()
            low = ids[1] + 1 - self.scan if ids is not None else 0
            if ids is not None and low > ids[0]:
                found = await self._count(job_filter, self.scan, action, low=low)
                span = ids[1] - ids[0] + 1
                return Count(round(found * span / self.scan), "estimated", self.scan)
        found = await self._count(job_filter, cap, action)
        return Count(found, "capped" if found >= cap else "exact", self.scan)

    async def _count(
        self, job_filter: JobFilter, cap: int, action: str | None, **bounds: Any
    ) -> int:
        params = _conditions(job_filter) | bounds
        names = _names(params, action)
        query = self._filtered("jobs_count", names, job_filter.column, "asc")
        await self._trace(query, params | {"cap": cap}, self.plans)
        rows = await self._all(query, params | {"cap": cap})
        return int(rows[0]["count"])

    async def job(self, job_id: int) -> dict[str, Any] | None:
        rows = await self._all(self._job, {"id": job_id})
        return rows[0] if rows else None


def _union(part: str, prefix: str, values: list[dict[str, str]]) -> sql.Composable:
    """The statement ``sql/<part>.sql`` once per mapping of ``values`` (bound as literals),
    joined by UNION ALL."""
    text = _text(part)
    return sql.SQL("\nUNION ALL\n").join(
        sql.SQL(text).format(
            prefix=sql.Identifier(prefix), **{k: sql.Literal(v) for k, v in each.items()}
        )
        for each in values
    )


def _counts(prefix: str) -> bytes:
    """``counts.sql`` with one part per state: each its own scan, so a plan says exactly what
    each read (a lateral join over the states would report rows averaged over its loops)."""
    parts = _union("counts_state", prefix, [{"state": state} for state in STATES])
    return sql.SQL(_text("counts")).format(parts=parts).as_bytes(None)


def _estimates(prefix: str, pairs: list[tuple[str, str]]) -> bytes:
    """``EXPLAIN`` of ``counts_estimate.sql`` once per (state, queue), joined by UNION ALL:
    planned once, read never (the values are literals, so the plan is the planner's best)."""
    values = [{"state": state, "queue": queue} for state, queue in pairs]
    parts = _union("counts_estimate", prefix, values)
    return sql.SQL("EXPLAIN (FORMAT JSON)\n{}").format(parts).as_bytes(None)


def rows_read(plan: dict[str, Any]) -> int:
    """Rows an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan read from its tables and indexes:
    those its scans returned and those their filters removed, over every loop (scans of a
    function's or a subquery's rows read no table)."""
    node = plan.get("Plan", plan)
    own = 0
    if "Relation Name" in node or "Index Name" in node:
        kept = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own = kept * node.get("Actual Loops", 1)
    return own + sum(rows_read(child) for child in node.get("Plans", []))


def unindexed(job_filter: JobFilter) -> bool:
    """Whether the filter holds a condition no index serves (searched by windows of ids)."""
    return bool(UNINDEXED & set(_conditions(job_filter)))


def _conditions(job_filter: JobFilter) -> dict[str, Any]:
    return {k: v for k, v in job_filter.params().items() if v is not None}


def _names(params: dict[str, Any], action: str | None = None) -> tuple[str, ...]:
    """The conditions of ``job_filters.sql`` these parameters fill (and the states ``action``
    can change), in one order (the cache's key); the keyset's two values are one condition."""
    names = {"key" if n == "key_at" else n for n in set(params) - {"key_id", "limit", "cap"}}
    if action is not None:
        names.add(f"{action}_can_change")
    return tuple(sorted(names))


def _key(at: datetime | None, job_id: int) -> str:
    return f"{'-infinity' if at is None else at.isoformat()}|{job_id}"


def _parse_key(key: str | None) -> tuple[str, int] | None:
    """A keyset cursor from the URL, or None (ignored) when it is not one."""
    if not key:
        return None
    at, _, job_id = key.partition("|")
    if not job_id.isdecimal() or not job_id.isascii() or int(job_id) >= 2**63:
        return None
    if at != "-infinity":
        try:
            at = datetime.fromisoformat(at).replace(tzinfo=None).isoformat()
        except ValueError:
            return None
    return at, int(job_id)


def is_timeout(error: BaseException) -> bool:
    """A read stopped by the statement timeout (shown as such, not as a crash)."""
    return isinstance(error, psycopg.errors.QueryCanceled)
