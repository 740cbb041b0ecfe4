"""The forms (POST): job and queue actions, signing in and out.

Access, write mode and the CSRF token are checked before these run (``guard.guarded``), except
for the login form, which checks its own CSRF token.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from oban_py_ext.web.actions import JOB_ACTIONS, QUEUE_ACTIONS, Outcome
from oban_py_ext.web.dashboard import SECURITY_HEADERS, back, dashboard_of
from oban_py_ext.web.filters import FilterError, JobFilter
from oban_py_ext.web.security import CSRF_FIELD, SESSION_COOKIE, csrf_ok, secure_request

#: Most ids one selection acts on (a page holds far fewer).
MAX_SELECTED = 1_000


async def job_action(request: Request) -> Response:
    dashboard = dashboard_of(request)
    action = request.path_params["action"]
    job_id = request.path_params["job_id"]
    if action not in JOB_ACTIONS or job_id >= 2**63:
        return PlainTextResponse("unknown action", 404, headers=SECURITY_HEADERS)
    outcome = await dashboard.actions.on_job(action, job_id)
    dashboard.changed()
    location = "/jobs" if action == "delete" and outcome.ok else f"/jobs/{job_id}"
    return back(request, location, outcome)


async def bulk_action(request: Request) -> Response:
    """Starts a bulk run in the background; the job list shows its progress."""
    dashboard = dashboard_of(request)
    form = await request.form()
    action = _field(form, "action")
    try:
        job_filter = JobFilter.parse(form)
    except FilterError as error:
        return back(request, "/jobs", Outcome(str(error), ok=False))
    location = "/jobs?" + job_filter.query()
    if action not in JOB_ACTIONS:
        return back(request, location, Outcome(f"unknown action {action!r}", ok=False))
    if not job_filter.active:
        return back(request, location, Outcome("Bulk actions need a filter.", ok=False))
    busy = dashboard.bulk.running
    if busy is not None:
        message = f"{busy.action.capitalize()} #{busy.number} is still running: wait for it."
        return back(request, location, Outcome(message, ok=False))
    run = dashboard.bulk.start(action, job_filter)
    message = f"Started {action} #{run.number} on the matching jobs: its progress is below."
    return back(request, location, Outcome(message))


async def selection_action(request: Request) -> Response:
    """The rows ticked on a page of the job list."""
    dashboard = dashboard_of(request)
    form = await request.form()
    action = _field(form, "action")
    try:
        location = "/jobs?" + JobFilter.parse(form).query()
    except FilterError:
        location = "/jobs"
    if action not in JOB_ACTIONS:
        return back(request, "/jobs", Outcome(f"unknown action {action!r}", ok=False))
    raw = [v for v in form.getlist("id") if isinstance(v, str)]
    if not raw or len(raw) > MAX_SELECTED:
        return back(request, location, Outcome("Select 1 to 1,000 jobs.", ok=False))
    if not all(v.isascii() and v.isdecimal() and int(v) < 2**63 for v in raw):
        return back(request, location, Outcome("Job ids are whole numbers.", ok=False))
    outcome = await dashboard.actions.on_selection(action, sorted({int(v) for v in raw}))
    dashboard.changed()
    return back(request, location, outcome)


async def queue_action(request: Request) -> Response:
    dashboard = dashboard_of(request)
    form = await request.form()
    action, name = _field(form, "action"), _field(form, "queue")
    node = _field(form, "node") or None
    location = f"/queues/{quote(name, safe='')}" if name else "/"
    if action not in QUEUE_ACTIONS or not name:
        return back(request, location, Outcome("unknown queue action", ok=False))
    limit: int | None = None
    if action == "scale":
        try:
            limit = int(_field(form, "limit"))
        except ValueError:
            return back(request, location, Outcome("Scaling needs a whole number.", ok=False))
        if not 1 <= limit <= 10_000:
            return back(request, location, Outcome("The limit must be 1..10000.", ok=False))
    outcome = await dashboard.actions.on_queue(action, name, node=node, limit=limit)
    return back(request, location, outcome)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def login(request: Request) -> Response:
    dashboard = dashboard_of(request)
    root = request.scope.get("root_path", "").rstrip("/")
    if not dashboard.access.needs_login:
        return RedirectResponse(f"{root}/", status_code=303)
    if request.method == "GET":
        return dashboard.render(request, "login.html", error=None)
    form = await request.form()
    token = form.get("token")
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return dashboard.render(request, "login.html", status=403, error="Reload and try again.")
    access = dashboard.access
    client = request.client.host if request.client is not None else "?"
    if not access.logins.allowed(client):
        return dashboard.render(
            request, "login.html", status=429, error="Too many wrong tokens: wait a minute."
        )
    if not isinstance(token, str) or not access.token_matches(token):
        access.logins.failed(client)
        return dashboard.render(request, "login.html", status=401, error="Wrong token.")
    response = RedirectResponse(f"{root}/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        access.sessions.create(),
        max_age=max(1, int(access.sessions.ttl)),
        httponly=True,
        samesite="strict",
        secure=secure_request(request, access.trust_forwarded),
        path=root or "/",
    )
    return response


async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return PlainTextResponse("missing or wrong CSRF token", 403, headers=SECURITY_HEADERS)
    session = request.cookies.get(SESSION_COOKIE)
    if session is not None:
        dashboard_of(request).access.sessions.revoke(session)
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=root or "/")
    return response
