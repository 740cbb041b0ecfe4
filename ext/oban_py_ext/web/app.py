"""The dashboard as an ASGI application (Starlette): ``create_app``.

``create_app`` returns a Starlette app to mount anywhere (``app.mount("/oban", dashboard)``
in FastAPI or Starlette) or to serve alone (``oban-py web``). Links are built from the
request's ``root_path``, so the pages work under any mount path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oban_py import Client
from oban_py.client.registry import unregistered
from oban_py.config import Config
from oban_py_ext.web import fleet_pages, pages, posts
from oban_py_ext.web.dashboard import SECURITY_HEADERS, Dashboard, Settings
from oban_py_ext.web.guard import guarded
from oban_py_ext.web.reads import COUNT_CAP, SCAN
from oban_py_ext.web.security import SESSION_TTL, Access, Authorize, Sessions


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
    chart_interval: float = 5.0,
    statement_timeout: float = 5.0,
    page_size: int = 25,
    bulk_limit: int = 100_000,
    scan: int = SCAN,
    count_cap: int = COUNT_CAP,
    title: str = "oban_py",
    allowed_hosts: Sequence[str] | None = None,
    trust_forwarded: bool = False,
    session_ttl: float = SESSION_TTL,
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
    :param chart_interval: seconds between two computations of a chart from the metrics the
        nodes publish (kept in memory; no chart reads the database).
    :param statement_timeout: seconds any dashboard query may run before it is cancelled.
    :param page_size: jobs per page of the job list.
    :param bulk_limit: most jobs one bulk action changes.
    :param scan: most ids a page of the job list searches for conditions no index serves
        (worker, tags, args text, node, priority, attempt, time range) or sorted by a
        timestamp; the page then links to the next ids.
    :param count_cap: most rows of one state the counts by queue and state read per refresh;
        a state holding more is shown as an estimate ("≈1.2M") from the table's statistics.
    :param allowed_hosts: ``Host`` names answered (``*.example.com`` patterns allowed). By
        default any host when a login or ``authorize`` protects the dashboard, else only the
        loopback names, so a foreign name re-pointed at 127.0.0.1 (DNS rebinding) gets nothing.
    :param trust_forwarded: a proxy in front sets ``X-Forwarded-Proto``;
        cookies are then ``Secure`` when it says https.
    :param session_ttl: seconds a login lasts.
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
        access=Access(
            authorize=authorize,
            token=token,
            basic=basic,
            sessions=Sessions(session_ttl),
            trust_forwarded=trust_forwarded,
        ),
        settings=Settings(
            read_only=read_only,
            refresh_interval=refresh_interval,
            chart_interval=chart_interval,
            page_size=page_size,
            title=title,
        ),
        statement_timeout=statement_timeout,
        bulk_limit=bulk_limit,
        scan=scan,
        count_cap=count_cap,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Only run when served alone: a mounted app gets no lifespan and starts on first use.
        # Listening from the start, the charts' history begins now, not at the first page view.
        with contextlib.suppress(Exception):
            await dashboard.nodes.ensure_started()
        try:
            yield
        finally:
            await dashboard.close()

    routes = [
        Route("/", guarded(pages.overview), name="overview"),
        Route("/live/overview", guarded(pages.overview_live)),
        Route("/metrics", guarded(pages.metrics), name="metrics"),
        Route("/live/metrics", guarded(pages.metrics_live)),
        Route("/jobs", guarded(pages.jobs), name="jobs"),
        Route("/jobs/bulk", guarded(posts.bulk_action), methods=["POST"]),
        Route("/jobs/selected", guarded(posts.selection_action), methods=["POST"]),
        Route("/jobs/count", guarded(pages.jobs_count)),
        Route("/live/jobs", guarded(pages.jobs_live)),
        Route("/live/bulk", guarded(pages.bulk_live)),
        Route("/jobs/{job_id:int}", guarded(pages.job), name="job"),
        Route("/jobs/{job_id:int}/{action}", guarded(posts.job_action), methods=["POST"]),
        Route("/queues/{queue:path}", guarded(pages.queue), name="queue"),
        Route("/workflows/{workflow_id:path}", guarded(pages.workflow), name="workflow"),
        Route("/live/queues/{queue:path}", guarded(pages.queue_live)),
        Route("/crons", guarded(fleet_pages.crons), name="crons"),
        Route("/live/crons", guarded(fleet_pages.crons_live)),
        Route("/nodes", guarded(fleet_pages.nodes), name="nodes"),
        Route("/live/nodes", guarded(fleet_pages.nodes_live)),
        Route("/queue-actions", guarded(posts.queue_action), methods=["POST"]),
        Route("/login", posts.login, methods=["GET", "POST"]),
        Route("/logout", posts.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("oban_py_ext.web", "static")]), name="static"),
    ]
    if allowed_hosts is None:
        allowed_hosts = ["*"] if dashboard.access.protected else list(LOOPBACK_HOSTS)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.dashboard = dashboard
    return app


#: The names a dashboard without a login answers by default.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class SecurityHeaders:
    """The pages' security headers on every response: static files, 404s and errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
