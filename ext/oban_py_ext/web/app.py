"""The dashboard as an ASGI application (Starlette): pages, live fragments and actions.

``create_app`` returns a Starlette app to mount anywhere (``app.mount("/oban", dashboard)``
in FastAPI or Starlette) or to serve alone (``oban-py web``). Links are built from the
request's ``root_path``, so the pages work under any mount path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import psycopg
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from oban_py.client import Client
from oban_py.config import Config
from oban_py_ext.web import charts
from oban_py_ext.web.actions import JOB_ACTIONS, QUEUE_ACTIONS, Actions, Outcome, unregistered
from oban_py_ext.web.cache import Shared
from oban_py_ext.web.filters import STATES, FilterError, JobFilter
from oban_py_ext.web.nodes import NodeWatch
from oban_py_ext.web.reads import Activity, Counts, Reads, is_timeout
from oban_py_ext.web.render import environment
from oban_py_ext.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Access,
    Authorize,
    csrf_ok,
    new_csrf_token,
)

FLASH_COOKIE = "oban_web_flash"
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

Handler = Callable[[Request], Awaitable[Response]]


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
    ) -> None:
        self.client = client
        self.owns_client = owns_client
        self.access = access
        self.settings = settings
        self.reads = Reads(client.pool, client.config.prefix, statement_timeout)
        self.actions = Actions(client, self.reads, bulk_limit)
        dsn = client.config.dsn or str(getattr(client.pool, "conninfo", ""))
        self.nodes = NodeWatch(dsn, client.config.prefix)
        self.counts: Shared[Counts] = Shared(self.reads.counts, settings.refresh_interval)
        self.activity: Shared[Activity] = Shared(self.reads.activity, settings.chart_interval)
        self.env = environment()

    async def ready(self) -> None:
        await self.client.open()
        await self.nodes.ensure_started()

    async def close(self) -> None:
        """Stop listening and close the pool the dashboard opened (not a caller's)."""
        await self.nodes.stop()
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
            flash=_read_flash(flash),
            settings=self.settings,
            states=STATES,
            login=self.access.needs_login,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=root or "/"
            )
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=root or "/")
        return response


def _read_flash(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    kind, _, text = unquote(value).partition(":")
    return {"ok": kind == "ok", "text": text[:500]}


def _back(request: Request, location: str, outcome: Outcome) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    response = RedirectResponse(root + location, status_code=303, headers=SECURITY_HEADERS)
    value = ("ok:" if outcome.ok else "error:") + outcome.message
    response.set_cookie(
        FLASH_COOKIE, quote(value), httponly=True, samesite="strict", path=root or "/"
    )
    return response


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def guarded(handler: Handler) -> Handler:
    """Access checks before the handler runs; POSTs also need the CSRF token and write mode."""

    async def endpoint(request: Request) -> Response:
        dashboard = _dashboard(request)
        verdict = await dashboard.access.allowed(request)
        if verdict == "login":
            if dashboard.access.needs_login and request.method == "GET":
                root = request.scope.get("root_path", "").rstrip("/")
                return RedirectResponse(f"{root}/login", status_code=303)
            headers = dict(SECURITY_HEADERS)
            if dashboard.access.basic is not None:
                headers["www-authenticate"] = 'Basic realm="oban_py", charset="UTF-8"'
            return PlainTextResponse("authentication required", 401, headers=headers)
        if verdict == "forbidden":
            return PlainTextResponse("forbidden", 403, headers=SECURITY_HEADERS)
        if request.method == "POST":
            if dashboard.settings.read_only:
                return PlainTextResponse("the dashboard is read-only", 403, SECURITY_HEADERS)
            form = await request.form()
            if not csrf_ok(request, form.get(CSRF_FIELD)):
                return PlainTextResponse(
                    "missing or wrong CSRF token: reload the page", 403, SECURITY_HEADERS
                )
        try:
            await dashboard.ready()
            return await handler(request)
        except psycopg.Error as error:
            if is_timeout(error):
                message = "the query took longer than the dashboard's statement timeout"
            else:
                message = "database error: " + " ".join(str(error).split())
            return dashboard.render(request, "error.html", status=503, message=message)

    return endpoint


# -- pages -----------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    dashboard = _dashboard(request)
    return dashboard.render(request, "overview.html", **await _overview_context(dashboard))


async def overview_live(request: Request) -> Response:
    dashboard = _dashboard(request)
    return dashboard.render(request, "_overview_live.html", **await _overview_context(dashboard))


async def _overview_context(dashboard: Dashboard) -> dict[str, Any]:
    counts = await dashboard.counts.get()
    activity = await dashboard.activity.get()
    checks = dashboard.nodes.checks()
    per_queue: dict[str, dict[str, Any]] = {}
    for check in checks:
        entry = per_queue.setdefault(
            check.queue, {"limit": 0, "running": 0, "nodes": 0, "paused": 0}
        )
        entry["limit"] += check.limit or 0
        entry["running"] += check.running
        entry["nodes"] += 1
        entry["paused"] += int(check.paused)
    queues = sorted(set(counts.queues) | set(per_queue))
    return {
        "counts": counts,
        "totals": counts.by_state(),
        "queues": queues,
        "live": per_queue,
        "nodes": dashboard.nodes.nodes(),
        "last_heard": dashboard.nodes.last_heard,
        "listening": dashboard.nodes.listening,
        "activity": activity,
        "throughput_chart": charts.stacked_bars(
            "Completed jobs per minute, last hour",
            [("completed", "bar-ok", activity.completed)],
        ),
        "failure_chart": charts.stacked_bars(
            "Failed attempts per minute, last hour",
            [("failed", "bar-fail", activity.failed)],
        ),
    }


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    # Ids are bigint: anything outside is no cursor at all.
    return value if 0 <= value < 2**63 else None


async def jobs(request: Request) -> Response:
    dashboard = _dashboard(request)
    try:
        job_filter = JobFilter.parse(request.query_params)
    except FilterError as error:
        return dashboard.render(
            request, "jobs.html", status=400, error=str(error), filter=JobFilter(), page=None
        )
    page = await dashboard.reads.page(
        job_filter,
        before=_int_param(request, "before"),
        after=_int_param(request, "after"),
        size=dashboard.settings.page_size,
    )
    # Queue names for the filter's suggestions come from check-ins: free, unlike a count.
    queues = sorted({check.queue for check in dashboard.nodes.checks()})
    return dashboard.render(
        request, "jobs.html", error=None, filter=job_filter, page=page, queues=queues
    )


async def job(request: Request) -> Response:
    dashboard = _dashboard(request)
    job_id = request.path_params["job_id"]
    row = await dashboard.reads.job(job_id) if job_id < 2**63 else None
    if row is None:
        return dashboard.render(
            request, "error.html", status=404, message=f"No job with id {job_id}."
        )
    errors = row["errors"] if isinstance(row["errors"], list) else []
    return dashboard.render(request, "job.html", job=row, errors=list(reversed(errors)))


async def queue(request: Request) -> Response:
    dashboard = _dashboard(request)
    return dashboard.render(request, "queue.html", **await _queue_context(request, dashboard))


async def queue_live(request: Request) -> Response:
    dashboard = _dashboard(request)
    return dashboard.render(request, "_queue_live.html", **await _queue_context(request, dashboard))


async def _queue_context(request: Request, dashboard: Dashboard) -> dict[str, Any]:
    name = request.path_params["queue"]
    counts = await dashboard.counts.get()
    by_state = dict.fromkeys(STATES, 0)
    if name in counts.queues:
        by_state.update(counts.queues[name].by_state)
    checks = [c for c in dashboard.nodes.checks() if c.queue == name]
    recent = await dashboard.reads.page(JobFilter(queue=name), before=None, after=None, size=10)
    return {"queue": name, "by_state": by_state, "checks": checks, "recent": recent.rows}


# -- actions ---------------------------------------------------------------------------------


async def job_action(request: Request) -> Response:
    dashboard = _dashboard(request)
    action = request.path_params["action"]
    job_id = request.path_params["job_id"]
    if action not in JOB_ACTIONS or job_id >= 2**63:
        return PlainTextResponse("unknown action", 404, headers=SECURITY_HEADERS)
    outcome = await dashboard.actions.on_job(action, job_id)
    dashboard.counts.invalidate()
    location = "/jobs" if action == "delete" and outcome.ok else f"/jobs/{job_id}"
    return _back(request, location, outcome)


async def bulk_action(request: Request) -> Response:
    dashboard = _dashboard(request)
    form = await request.form()
    action = _field(form, "action")
    try:
        job_filter = JobFilter.parse(form)
    except FilterError as error:
        return _back(request, "/jobs", Outcome(str(error), ok=False))
    back = "/jobs?" + job_filter.query()
    if action not in JOB_ACTIONS:
        return _back(request, back, Outcome(f"unknown action {action!r}", ok=False))
    if not job_filter.active:
        return _back(request, back, Outcome("Bulk actions need a filter.", ok=False))
    outcome = await dashboard.actions.on_filter(action, job_filter)
    dashboard.counts.invalidate()
    return _back(request, back, outcome)


async def queue_action(request: Request) -> Response:
    dashboard = _dashboard(request)
    form = await request.form()
    action, name = _field(form, "action"), _field(form, "queue")
    node = _field(form, "node") or None
    back = f"/queues/{quote(name, safe='')}" if name else "/"
    if action not in QUEUE_ACTIONS or not name:
        return _back(request, back, Outcome("unknown queue action", ok=False))
    limit: int | None = None
    if action == "scale":
        try:
            limit = int(_field(form, "limit"))
        except ValueError:
            return _back(request, back, Outcome("Scaling needs a whole number.", ok=False))
        if not 1 <= limit <= 10_000:
            return _back(request, back, Outcome("The limit must be 1..10000.", ok=False))
    outcome = await dashboard.actions.on_queue(action, name, node=node, limit=limit)
    return _back(request, back, outcome)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- login -----------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    dashboard = _dashboard(request)
    root = request.scope.get("root_path", "").rstrip("/")
    if not dashboard.access.needs_login:
        return RedirectResponse(f"{root}/", status_code=303)
    if request.method == "GET":
        return dashboard.render(request, "login.html", error=None)
    form = await request.form()
    token = form.get("token")
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return dashboard.render(request, "login.html", status=403, error="Reload and try again.")
    if not isinstance(token, str) or not dashboard.access.token_matches(token):
        return dashboard.render(request, "login.html", status=401, error="Wrong token.")
    response = RedirectResponse(f"{root}/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        dashboard.access.session_cookie(),
        httponly=True,
        samesite="strict",
        path=root or "/",
    )
    return response


async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return PlainTextResponse("missing or wrong CSRF token", 403, headers=SECURITY_HEADERS)
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=root or "/")
    return response


# -- the application ------------------------------------------------------------------------


def create_app(
    client: Client | None = None,
    *,
    dsn: str | None = None,
    prefix: str = "public",
    name: str = "Oban",
    read_only: bool = False,
    authorize: Authorize | None = None,
    token: str | None = None,
    basic: tuple[str, str] | None = None,
    refresh_interval: float = 5.0,
    chart_interval: float = 15.0,
    statement_timeout: float = 5.0,
    page_size: int = 25,
    bulk_limit: int = 100_000,
    title: str = "oban_py",
) -> Starlette:
    """The dashboard as an ASGI app.

    :param client: an ``Oban`` node or ``Client`` of the application (its pool is used, and an
        ``Oban`` sends the queue signals); else one is made from ``dsn``/``prefix``/``name``.
    :param read_only: show everything, allow no action (every POST is refused).
    :param authorize: ``authorize(request) -> bool`` (or awaitable): the mounting app's check.
    :param token: require this token (Bearer header, or the login page's cookie).
    :param basic: require HTTP Basic credentials ``(user, password)``.
    :param refresh_interval: seconds between live refreshes of counts and nodes; counts are
        read at most once per interval whatever the number of viewers.
    :param chart_interval: seconds between reads of the last hour's activity.
    :param statement_timeout: seconds any dashboard query may run before it is cancelled.
    :param page_size: jobs per page of the job list.
    :param bulk_limit: most jobs one bulk action changes.
    """
    owns = client is None
    if client is None:
        if dsn is None:
            raise ValueError("create_app needs a client= or a dsn=")
        config = Config(dsn=dsn, prefix=prefix, name=name, pool_size=4)
        client = unregistered(lambda: Client(config=config))
    dashboard = Dashboard(
        client,
        owns_client=owns,
        access=Access(authorize=authorize, token=token, basic=basic),
        settings=Settings(
            read_only=read_only,
            refresh_interval=refresh_interval,
            chart_interval=chart_interval,
            page_size=page_size,
            title=title,
        ),
        statement_timeout=statement_timeout,
        bulk_limit=bulk_limit,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Only run when served alone: a mounted app gets no lifespan and starts on first use.
        try:
            yield
        finally:
            await dashboard.close()

    routes = [
        Route("/", guarded(overview), name="overview"),
        Route("/live/overview", guarded(overview_live)),
        Route("/jobs", guarded(jobs), name="jobs"),
        Route("/jobs/bulk", guarded(bulk_action), methods=["POST"]),
        Route("/jobs/{job_id:int}", guarded(job), name="job"),
        Route("/jobs/{job_id:int}/{action}", guarded(job_action), methods=["POST"]),
        Route("/queues/{queue:path}", guarded(queue), name="queue"),
        Route("/live/queues/{queue:path}", guarded(queue_live)),
        Route("/queue-actions", guarded(queue_action), methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("oban_py_ext.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app
