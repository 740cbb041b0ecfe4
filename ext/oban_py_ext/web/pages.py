"""The pages (GET): overview, job list, job, queue, and the live fragments they refresh."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from oban_py import workflows
from oban_py_ext.web import charts
from oban_py_ext.web.actions import JOB_ACTIONS
from oban_py_ext.web.dashboard import SECURITY_HEADERS, Dashboard, dashboard_of
from oban_py_ext.web.filters import SORTS, STATES, FilterError, JobFilter
from oban_py_ext.web.graph import layout
from oban_py_ext.web.reads import NONE, Amount, Counts, Page
from oban_py_ext.web.series import LABELS, WINDOWS, parse_query


async def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "overview.html", **await _overview_context(dashboard))


async def overview_live(request: Request) -> Response:
    dashboard = dashboard_of(request)
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
        "metrics_heard": dashboard.metrics.heard_count,
    }


#: The percentiles a chart page may show (Oban Web offers 100th down to 50th).
PERCENTILES = {"max": 1.0, "p99": 0.99, "p95": 0.95, "p75": 0.75, "p50": 0.5}


async def metrics(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "charts.html", **await _charts_context(request, dashboard))


async def metrics_live(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(
        request, "_charts_live.html", **await _charts_context(request, dashboard)
    )


async def _charts_context(request: Request, dashboard: Dashboard) -> dict[str, Any]:
    """Executions by the chosen label, and run and wait time at a percentile, from memory."""
    query = parse_query(request.query_params)
    pct = request.query_params.get("pct", "p95")
    if pct not in PERCENTILES:
        pct = "p95"
    found = await dashboard.slices.get(query)
    step = found.step
    groups = list(found.counts)
    styles = {
        g: charts.css_for(g, i)
        if query.group == "state"
        else charts.PALETTE[i % len(charts.PALETTE)]
        for i, g in enumerate(groups)
    }
    q = PERCENTILES[pct]
    window = query.window
    by = query.group

    def timing(series: str, what: str) -> Any:
        values = found.percentiles(series, q)
        return charts.lines(
            f"{what}, {pct}, by {by}, last {window}",
            [(g, styles.get(g, "c7"), values[g]) for g in values],
            step=step,
        )

    return {
        "query": query,
        "pct": pct,
        "percentiles": list(PERCENTILES),
        "windows": list(WINDOWS),
        "labels": LABELS,
        "choices": {name: dashboard.metrics.labels(name) for name in LABELS},
        "filters": dict(query.filters),
        "found": found,
        "groups": groups,
        "styles": styles,
        "nice_ms": charts.nice_ms,
        "ago": charts.ago,
        "metrics_heard": dashboard.metrics.heard_count,
        "qs": urlencode({"window": window, "group": by, "pct": pct, **dict(query.filters)}),
        "exec_chart": charts.stacked_bars(
            f"Executions by {by}, last {window}",
            [(g, styles[g], found.counts[g]) for g in groups],
            unit=f"per {charts.ago(step)}",
            step=step,
        ),
        "exec_time_chart": timing("exec_time", "Run time"),
        "wait_time_chart": timing("wait_time", "Wait time"),
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
    dashboard = dashboard_of(request)
    try:
        job_filter = JobFilter.parse(request.query_params)
    except FilterError as error:
        return dashboard.render(
            request, "jobs.html", status=400, error=str(error), filter=JobFilter(), page=None
        )
    before, after = _int_param(request, "before"), _int_param(request, "after")
    key, floor = request.query_params.get("key"), _int_param(request, "floor")
    first = before is None and after is None and not key
    if first:
        page = await dashboard.first_pages.get(job_filter)
    else:
        page = await dashboard.reads.page(
            job_filter,
            before=before,
            after=after,
            size=dashboard.settings.page_size,
            key=key,
            floor=floor,
        )
    return dashboard.render(
        request, "jobs.html", **await _jobs_context(dashboard, job_filter, page, live=first)
    )


async def jobs_live(request: Request) -> Response:
    """The first page's rows, refreshed: one read per interval and filter for every tab."""
    dashboard = dashboard_of(request)
    try:
        job_filter = JobFilter.parse(request.query_params)
    except FilterError as error:
        return PlainTextResponse(str(error), 400, headers=SECURITY_HEADERS)
    page = await dashboard.first_pages.get(job_filter)
    return dashboard.render(
        request, "_jobs_rows.html", **await _jobs_context(dashboard, job_filter, page, live=True)
    )


async def _jobs_context(
    dashboard: Dashboard, job_filter: JobFilter, page: Page, *, live: bool
) -> dict[str, Any]:
    counts = await dashboard.counts.get()
    return {
        "error": None,
        "filter": job_filter,
        "page": page,
        "live": live,
        # Queue names for the filter's suggestions come from check-ins: free, unlike a count.
        "queues": sorted({check.queue for check in dashboard.nodes.checks()}),
        "nodes": sorted({check.node for check in dashboard.nodes.checks()}),
        "sorts": SORTS,
        "by_state": counts.by_state(),
        "total": _known_total(counts, job_filter),
        "bulk_limit": dashboard.bulk.limit,
        "runs": dashboard.bulk.runs(),
    }


def _known_total(counts: Counts, job_filter: JobFilter) -> Amount | None:
    """How many jobs match, when the shared counts say (no condition beyond state and queue):
    estimated when any part of it is."""
    if job_filter.fields().keys() - {"state", "queue", "sort"}:
        return None
    queues = [counts.queues[job_filter.queue]] if job_filter.queue in counts.queues else []
    if job_filter.queue is None:
        queues = list(counts.queues.values())
    if job_filter.state is None:
        return sum((q.total for q in queues), NONE)
    return sum((q.by_state.get(job_filter.state, NONE) for q in queues), NONE)


async def jobs_count(request: Request) -> Response:
    """How many jobs a bulk action on this filter would change, for its confirm."""
    dashboard = dashboard_of(request)
    try:
        job_filter = JobFilter.parse(request.query_params)
    except FilterError as error:
        return JSONResponse({"error": str(error)}, 400, headers=SECURITY_HEADERS)
    answer: dict[str, Any]
    try:
        action = request.query_params.get("action")
        found = await dashboard.reads.count(
            job_filter, dashboard.bulk.limit, action if action in JOB_ACTIONS else None
        )
    except psycopg.errors.QueryCanceled:
        answer = {"count": None, "how": "unknown", "text": "an unknown number of", "note": ""}
        return JSONResponse(answer, headers=SECURITY_HEADERS)
    answer = {"count": found.value, "how": found.how, "text": found.text, "note": found.note}
    return JSONResponse(answer, headers=SECURITY_HEADERS)


async def bulk_live(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "_bulk_runs.html", runs=dashboard.bulk.runs())


async def job(request: Request) -> Response:
    dashboard = dashboard_of(request)
    job_id = request.path_params["job_id"]
    row = await dashboard.reads.job(job_id) if job_id < 2**63 else None
    if row is None:
        return dashboard.render(
            request, "error.html", status=404, message=f"No job with id {job_id}."
        )
    errors = row["errors"] if isinstance(row["errors"], list) else []
    return dashboard.render(request, "job.html", job=row, errors=list(reversed(errors)))


async def queue(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "queue.html", **await _queue_context(request, dashboard))


async def queue_live(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "_queue_live.html", **await _queue_context(request, dashboard))


async def _queue_context(request: Request, dashboard: Dashboard) -> dict[str, Any]:
    name = request.path_params["queue"]
    counts = await dashboard.counts.get()
    by_state = dict.fromkeys(STATES, NONE)
    if name in counts.queues:
        by_state.update(counts.queues[name].by_state)
    checks = [c for c in dashboard.nodes.checks() if c.queue == name]
    recent = await dashboard.recent.get(name)
    return {"queue": name, "by_state": by_state, "checks": checks, "recent": recent}


#: Box fills by state on the workflow page.
STEP_COLORS = {
    "completed": "#e7f6ee",
    "discarded": "#fdecea",
    "cancelled": "#f6ebe4",
    "retryable": "#fdf4e3",
    "executing": "#efeafd",
    "available": "#e8effc",
    "scheduled": "#eeeeee",
    "suspended": "#ffffff",
}


async def workflow(request: Request) -> Response:
    dashboard = dashboard_of(request)
    workflow_id = request.path_params["workflow_id"]
    status = await workflows.status(workflow_id, oban=dashboard.client)
    if not status.jobs:
        return dashboard.render(
            request, "error.html", status=404, message=f"No workflow {workflow_id}."
        )
    return dashboard.render(
        request,
        "workflow.html",
        flow=status,
        graph=layout(status.jobs),
        colors=STEP_COLORS,
    )
