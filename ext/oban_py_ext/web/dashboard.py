"""The state behind one dashboard app, and how its pages are rendered and answered.

``Dashboard`` holds the reads, the actions, the node watch and the shared (cached) values; it
renders templates with the CSRF token and the flash message of the previous action, and sends
every response with the security headers below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from oban_py import Client
from oban_py_ext.web.actions import Actions, Outcome
from oban_py_ext.web.bulk import BulkRuns
from oban_py_ext.web.cache import Shared, SharedByKey
from oban_py_ext.web.crons import CronWatch
from oban_py_ext.web.filters import STATES, JobFilter
from oban_py_ext.web.fleet import CronTable, FleetReads, Leases
from oban_py_ext.web.nodes import NodeWatch
from oban_py_ext.web.reads import COUNT_CAP, SCAN, Counts, Page, Reads
from oban_py_ext.web.render import environment
from oban_py_ext.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    Access,
    new_csrf_token,
    secure_request,
)
from oban_py_ext.web.series import Activity, MetricSeries, Query, Slice

FLASH_COOKIE = "oban_web_flash"
#: seconds between two reads of the crontab's jobs: an entry runs at most once a minute
CRON_READ_INTERVAL = 15.0
#: No script or style from anywhere but the dashboard itself, no framing, forms only to itself.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Settings:
    read_only: bool
    refresh_interval: float
    chart_interval: float
    page_size: int
    title: str


class Dashboard:
    """The state behind one dashboard app (``app.state.dashboard``)."""

    def __init__(
        self,
        client: Client,
        *,
        owns_client: bool,
        access: Access,
        settings: Settings,
        statement_timeout: float,
        bulk_limit: int,
        scan: int = SCAN,
        count_cap: int = COUNT_CAP,
    ) -> None:
        self.client = client
        self.owns_client = owns_client
        self.access = access
        self.settings = settings
        self.reads = Reads(client.pool, client.config.prefix, statement_timeout, scan, count_cap)
        self.actions = Actions(client)
        self.bulk = BulkRuns(self.reads, self.actions.perform, bulk_limit)
        self.bulk.changed = self.changed
        dsn = client.config.dsn or str(getattr(client.pool, "conninfo", ""))
        self.crontabs = CronWatch()
        #: what the nodes publish on ``metrics``: the charts' only source, no table read
        self.metrics = MetricSeries()
        self.nodes = NodeWatch(
            dsn,
            client.config.prefix,
            {"cronitor": self._heard_crontab, "metrics": self.metrics.heard},
        )
        self.fleet = FleetReads(self.reads)
        #: the cron page's and the nodes page's reads, once per interval for all their tabs; an
        #: entry runs at most once a minute and nodes publish their crontab every 15 s, so the
        #: jobs of the crontab are read no more often than that
        self.cron_history: Shared[CronTable] = Shared(self._cron_table, CRON_READ_INTERVAL)
        self.leases: Shared[Leases] = Shared(self.fleet.leases, settings.refresh_interval)
        self.counts: Shared[Counts] = Shared(self.reads.counts, settings.refresh_interval)
        self.activity: Shared[Activity] = Shared(self._activity, settings.chart_interval)
        #: each chart query's answer, computed once per interval for every tab showing it
        self.slices: SharedByKey[Query, Slice] = SharedByKey(
            self._slice, settings.chart_interval, most=64
        )
        #: the latest jobs of each queue page, read once per refresh for all its tabs
        self.recent: SharedByKey[str, list[dict[str, Any]]] = SharedByKey(
            self._recent, settings.refresh_interval
        )
        #: the first page of the job list by filter, read once per refresh for all its tabs
        self.first_pages: SharedByKey[JobFilter, Page] = SharedByKey(
            self._first_page, settings.refresh_interval
        )
        self.env = environment()

    async def _activity(self) -> Activity:
        return self.metrics.activity()

    async def _slice(self, query: Query) -> Slice:
        return self.metrics.timeslice(query)

    def changed(self) -> None:
        """Jobs were changed: what the next page shows is read again."""
        self.counts.invalidate()
        self.recent.invalidate()
        self.first_pages.invalidate()

    async def _first_page(self, job_filter: JobFilter) -> Page:
        return await self.reads.page(
            job_filter, before=None, after=None, size=self.settings.page_size
        )

    async def _recent(self, queue: str) -> list[dict[str, Any]]:
        page = await self.reads.page(JobFilter(queue=queue), before=None, after=None, size=10)
        return page.rows

    def _heard_crontab(self, payload: dict[str, Any]) -> None:
        # A new or changed crontab is shown with its jobs at the next refresh, not a chart
        # interval later; nodes resend the same crontab every 15 s, which reads nothing.
        if self.crontabs.heard(payload):
            self.cron_history.invalidate()

    async def _cron_table(self) -> CronTable:
        entries = self.crontabs.entries()
        return CronTable(entries, await self.fleet.cron_history(entries))

    async def ready(self) -> None:
        await self.client.open()
        await self.nodes.ensure_started()

    async def close(self) -> None:
        """Stop listening and close the pool the dashboard opened (not a caller's)."""
        await self.nodes.stop()
        await self.bulk.close()
        await self.actions.close()
        if self.owns_client:
            await self.client.close()

    # -- rendering --------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        flash = request.cookies.get(FLASH_COOKIE)
        root = request.scope.get("root_path", "").rstrip("/")
        body = self.env.get_template(template).render(
            root=root,
            csrf=csrf,
            csrf_field=CSRF_FIELD,
            flash=read_flash(flash),
            settings=self.settings,
            states=STATES,
            login=self.access.needs_login,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                CSRF_COOKIE,
                csrf,
                httponly=True,
                samesite="strict",
                secure=secure_request(request, self.access.trust_forwarded),
                path=root or "/",
            )
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=root or "/")
        return response


def read_flash(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    kind, _, text = unquote(value).partition(":")
    return {"ok": kind == "ok", "text": text[:500]}


def back(request: Request, location: str, outcome: Outcome) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    response = RedirectResponse(root + location, status_code=303, headers=SECURITY_HEADERS)
    value = ("ok:" if outcome.ok else "error:") + outcome.message
    response.set_cookie(
        FLASH_COOKIE, quote(value), httponly=True, samesite="strict", path=root or "/"
    )
    return response


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard
