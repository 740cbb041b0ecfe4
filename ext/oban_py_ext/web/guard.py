"""Every request passes here first: access, then for actions write mode and the CSRF token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from oban_py import DatabaseUnavailable
from oban_py_ext.web.dashboard import SECURITY_HEADERS, dashboard_of
from oban_py_ext.web.reads import is_timeout
from oban_py_ext.web.security import CSRF_FIELD, csrf_ok

Handler = Callable[[Request], Awaitable[Response]]

log = structlog.get_logger("oban.web")


def guarded(handler: Handler) -> Handler:
    """Access checks before the handler runs; POSTs also need the CSRF token and write mode."""

    async def endpoint(request: Request) -> Response:
        dashboard = dashboard_of(request)
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
        except (psycopg.Error, DatabaseUnavailable) as error:
            if is_timeout(error):
                message = "the query took longer than the dashboard's statement timeout"
            else:
                # The server's text may name tables, roles or values: logged, not shown.
                log.warning("dashboard read failed", path=request.url.path, error=repr(error))
                message = "the database did not answer (the details are in the server's log)"
            return dashboard.render(request, "error.html", status=503, message=message)

    return endpoint
