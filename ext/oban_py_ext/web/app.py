"""The dashboard as an ASGI application (Starlette): ``create_app``.

``create_app`` returns a Starlette app to mount anywhere (``app.mount("/oban", dashboard)``
in FastAPI or Starlette) or to serve alone (``oban-py web``). Links are built from the
request's ``root_path``, so the pages work under any mount path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from oban_py import Client
from oban_py.client.registry import unregistered
from oban_py.config import Config
from oban_py_ext.web import pages, posts
from oban_py_ext.web.dashboard import Dashboard, Settings
from oban_py_ext.web.guard import guarded
from oban_py_ext.web.security import Access, Authorize


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
        Route("/", guarded(pages.overview), name="overview"),
        Route("/live/overview", guarded(pages.overview_live)),
        Route("/jobs", guarded(pages.jobs), name="jobs"),
        Route("/jobs/bulk", guarded(posts.bulk_action), methods=["POST"]),
        Route("/jobs/{job_id:int}", guarded(pages.job), name="job"),
        Route("/jobs/{job_id:int}/{action}", guarded(posts.job_action), methods=["POST"]),
        Route("/queues/{queue:path}", guarded(pages.queue), name="queue"),
        Route("/workflows/{workflow_id:path}", guarded(pages.workflow), name="workflow"),
        Route("/live/queues/{queue:path}", guarded(pages.queue_live)),
        Route("/queue-actions", guarded(posts.queue_action), methods=["POST"]),
        Route("/login", posts.login, methods=["GET", "POST"]),
        Route("/logout", posts.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("oban_py_ext.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app
