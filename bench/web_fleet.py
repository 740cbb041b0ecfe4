"""The dashboard's cron and nodes pages on a table of a million jobs: ``python -m bench.web_fleet``.

    .venv/bin/python -m bench.web_fleet              # 1,000,000 jobs, 20 fresh reads per page
    .venv/bin/python -m bench.web_fleet --rows 200000 --runs 5

Seeds ``--rows`` jobs as ``bench.web_pages`` does, plus the cron jobs of a crontab that is hard
on the history read: a named minutely entry with a week of jobs (10,080, where the default
pruner keeps a day), an unnamed Elixir entry every 5 minutes (2,016 jobs, found by worker and
``cron_expr``), a named entry with no job at all, and 50,000 jobs of other cron entries (so the
``cron_name`` key is common in the GIN index). The crontab and the check-ins of 5 nodes are
handed to the dashboard as if heard. Each request is a *fresh* read (the shared value is
dropped first: what one refresh costs, whatever the number of tabs), timed through the ASGI app;
rows read are the heap rows the statement visited, from ``EXPLAIN (ANALYZE, BUFFERS)``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import psycopg
from oban_py_ext.web import create_app
from oban_py_ext.web.fleet import HISTORY
from oban_py_ext.web.reads import _text
from psycopg.types.json import Jsonb

from bench import db
from bench.web_pages import seed
from oban_py.sql import compose

CRON_JOBS = """
INSERT INTO oban_jobs (state, queue, worker, args, meta, attempt, attempted_at, completed_at)
SELECT 'completed', 'default', %(worker)s, '{}',
       jsonb_build_object(
         'cron', true, 'cron_expr', %(expr)s::text, 'cron_tz', 'Etc/UTC', 'cron_name',
         %(name)s::text || CASE WHEN %(spread)s THEN (i %% 500)::text ELSE '' END),
       1, now(), now()
FROM generate_series(1, %(count)s) AS i
"""

#: (name or None, expression, worker, jobs in the table)
CRONTAB: list[tuple[str | None, str, str, int]] = [
    ("11111111", "* * * * *", "MyApp.Minutely", 10_080),
    (None, "*/5 * * * *", "Interop.Report", 2_016),
    ("22222222", "0 3 * * *", "MyApp.Nightly", 0),
]


def seed_crons(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, expr, worker, count in CRONTAB:
            params = {"name": name or "7531", "expr": expr, "worker": worker, "count": count}
            conn.execute(CRON_JOBS, {**params, "spread": False})
        others = {"name": "9", "expr": "*/2 * * * *", "worker": "MyApp.Other", "count": 50_000}
        conn.execute(CRON_JOBS, {**others, "spread": True})
        conn.execute("VACUUM ANALYZE oban_jobs")


def heard(dashboard: Any) -> None:
    crontab = [[expr, worker, {"name": name} if name else {}] for name, expr, worker, _ in CRONTAB]
    dashboard.crontabs.heard({"crontab": crontab, "name": "Oban", "node": "node-1"})
    for n in range(5):
        checks = [
            {
                "node": f"node-{n}",
                "name": "Oban",
                "queue": f"queue_{q}",
                "limit": 10,
                "running": [],
                "started_at": "2026-12-04T00:00:00Z",
            }
            for q in range(10)
        ]
        dashboard.nodes.heard_gossip({"checks": checks})


def _nodes(plan: dict[str, Any]) -> set[str]:
    found = (
        {f"{plan['Node Type']} on {plan['Relation Name']}"} if "Relation Name" in plan else set()
    )
    for child in plan.get("Plans", []):
        found |= _nodes(child)
    return found


def _rows_read(plan: dict[str, Any]) -> int:
    """Heap rows the plan's scans of oban_jobs visited (kept, filtered out or rechecked)."""
    rows = 0
    if plan.get("Relation Name") == "oban_jobs":
        visited = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        visited += plan.get("Rows Removed by Index Recheck", 0)
        rows += int(visited * plan.get("Actual Loops", 1))
    for child in plan.get("Plans", []):
        rows += _rows_read(child)
    return rows


def explain(dsn: str, dashboard: Any) -> tuple[int, int, str]:
    entries = dashboard.crontabs.entries()
    filters, workers = zip(*(e.jobs_filter() for e in entries), strict=True)
    query = compose(_text("cron_history"), "public")
    params = {"filters": [Jsonb(f) for f in filters], "workers": list(workers), "limit": HISTORY}
    with psycopg.connect(dsn) as conn:
        row = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return _rows_read(plan), buffers, ", ".join(sorted(_nodes(plan)))


async def measure(dsn: str, runs: int) -> dict[str, list[float]]:
    app = create_app(dsn=dsn, refresh_interval=60.0)
    dashboard = app.state.dashboard
    heard(dashboard)
    timings: dict[str, list[float]] = {"/live/crons": [], "/live/nodes": []}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        await http.get("/live/nodes")  # opens the pool
        heard(dashboard)
        for _ in range(runs):
            for path, shared in (
                ("/live/crons", dashboard.cron_history),
                ("/live/nodes", dashboard.leases),
            ):
                shared.invalidate()
                t0 = time.perf_counter()
                response = await http.get(path)
                timings[path].append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
        assert "MyApp.Minutely" in (await http.get("/live/crons")).text
    rows, buffers, scans = explain(dsn, dashboard)
    print(f"cron history statement: {rows:,} heap rows visited, {buffers:,} buffers ({scans})")
    await dashboard.close()
    return timings


def _ms(values: list[float]) -> str:
    """Median, p95 and max of request times, as the header's columns."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with db.BenchDatabase.fresh() as bench_db:
        took = seed(bench_db.dsn, args.rows)
        seed_crons(bench_db.dsn)
        total = bench_db.one("SELECT count(*) FROM oban_jobs")
        print(f"seeded {total:,} jobs in {took:.1f} s")
        print(f"{'fresh read of':<16} {'median':>8} {'p95':>8} {'max':>8} (ms, whole request)")
        for path, ms in asyncio.run(measure(bench_db.dsn, args.runs)).items():
            print(f"{path:<16} {_ms(ms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
