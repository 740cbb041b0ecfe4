"""The cron page and the nodes page (GET), and the live fragments they refresh.

Both are built from what the nodes publish (``cronitor``, ``gossip``, ``sonar``) plus one
shared read each (``Dashboard.cron_history``, ``Dashboard.leases``), so a refresh costs the
same for one tab or fifty, and the same at ten thousand jobs or ten million.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from oban_py_ext.web.crons import Entry, next_run, zone
from oban_py_ext.web.dashboard import Dashboard, dashboard_of
from oban_py_ext.web.fleet import History, Leases
from oban_py_ext.web.nodes import Check

Context = Callable[[Dashboard], Awaitable[dict[str, Any]]]


def rendering(template: str, context: Context) -> Callable[[Request], Awaitable[Response]]:
    """The handler of a page (or of its live fragment) rendering ``template`` with ``context``."""

    async def handler(request: Request) -> Response:
        dashboard = dashboard_of(request)
        return dashboard.render(request, template, **await context(dashboard))

    return handler


@dataclass(frozen=True)
class CronRow:
    entry: Entry
    history: History
    timezone: str
    next_at: datetime | None

    @property
    def options(self) -> dict[str, Any]:
        """The entry's options but its name (shown apart)."""
        return {k: v for k, v in self.entry.opts.items() if k != "name"}


async def _crons_context(dashboard: Dashboard) -> dict[str, Any]:
    table = await dashboard.cron_history.get()
    rows = []
    for entry, history in zip(table.entries, table.histories, strict=True):
        tz = zone(entry.timezone or history.cron_tz)
        rows.append(CronRow(entry, history, tz.key, next_run(entry.expr, tz)))
    return {"rows": rows, "listening": dashboard.nodes.listening}


@dataclass(frozen=True)
class NodeRow:
    node: str
    checks: list[Check]
    language: str
    leads: list[str]
    started_at: datetime | None
    last_heard: float | None

    @property
    def instances(self) -> list[str]:
        return sorted({c.name for c in self.checks})

    @property
    def limit(self) -> int:
        return sum(c.limit or 0 for c in self.checks)

    @property
    def running(self) -> int:
        return sum(c.running for c in self.checks)


def _started(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def language(node: str, checks: list[Check], leases: Leases) -> str:
    """python when it beats in ``oban_py_heartbeats`` or its check-ins have Python's shape,
    elixir when they have Elixir's, unknown for a node heard only through sonar."""
    if node in leases.python:
        return "python"
    if not checks:
        return "unknown"
    return "elixir" if any(c.elixir_shaped for c in checks) else "python"


def node_rows(dashboard: Dashboard, leases: Leases) -> list[NodeRow]:
    rows = []
    for node, checks in dashboard.nodes.nodes().items():
        starts = [s for s in (_started(c.started_at) for c in checks) if s is not None]
        rows.append(
            NodeRow(
                node=node,
                checks=checks,
                language=language(node, checks, leases),
                leads=sorted(name for name, leader in leases.leaders.items() if leader == node),
                started_at=min(starts) if starts else None,
                last_heard=dashboard.nodes.last_heard(node),
            )
        )
    return rows


async def _nodes_context(dashboard: Dashboard) -> dict[str, Any]:
    leases = await dashboard.leases.get()
    rows = node_rows(dashboard, leases)
    shown = {row.node for row in rows}
    return {
        "rows": rows,
        # a lease held by a node that publishes no check-in (gossip off, or no oban_met)
        "elsewhere": sorted((n, node) for n, node in leases.leaders.items() if node not in shown),
        "listening": dashboard.nodes.listening,
    }


crons = rendering("crons.html", _crons_context)
crons_live = rendering("_crons_live.html", _crons_context)
nodes = rendering("nodes.html", _nodes_context)
nodes_live = rendering("_nodes_live.html", _nodes_context)
