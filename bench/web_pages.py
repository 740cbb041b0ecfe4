"""The dashboard's job list on a table of a million jobs: ``python -m bench.web_pages``.

    .venv/bin/python -m bench.web_pages             # 1,000,000 rows, 20 requests per page
    .venv/bin/python -m bench.web_pages --rows 200000 --runs 5 --keep

Seeds a fresh database (DATABASE_URL server, else the embedded one) with ``--rows`` jobs in
Elixir's schema (states, queues, workers, tags and args spread as a busy system would have
them), runs ``VACUUM ANALYZE``, then times each page as a browser would get it: the whole
request through the dashboard's ASGI app (query, rendering, response), plus the query alone.
Prints median / p95 / max in milliseconds. Not a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import psycopg
from oban_py_ext.web import create_app
from oban_py_ext.web.filters import JobFilter

from bench import db

SEED = """
INSERT INTO oban_jobs (state, queue, worker, args, tags, attempt, max_attempts,
                       inserted_at, scheduled_at, attempted_at, completed_at, discarded_at,
                       cancelled_at)
SELECT s.state, 'queue_' || (i %% 10), 'MyApp.Workers.W' || (i %% 20),
       jsonb_build_object('account_id', i %% 5000, 'n', i, 'email', 'user' || i || '@example.com'),
       CASE WHEN i %% 7 = 0 THEN ARRAY['vip'] ELSE ARRAY['std'] END,
       CASE WHEN s.state IN ('available', 'scheduled') THEN 0 ELSE 1 END, 20,
       t.at, t.at,
       CASE WHEN s.state IN ('available', 'scheduled') THEN NULL ELSE t.at END,
       CASE WHEN s.state = 'completed' THEN t.at END,
       CASE WHEN s.state = 'discarded' THEN t.at END,
       CASE WHEN s.state = 'cancelled' THEN t.at END
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i,
     LATERAL (SELECT (CASE
         WHEN i %% 100 < 80 THEN 'completed'
         WHEN i %% 100 < 85 THEN 'available'
         WHEN i %% 100 < 90 THEN 'scheduled'
         WHEN i %% 100 < 93 THEN 'retryable'
         WHEN i %% 100 < 96 THEN 'discarded'
         WHEN i %% 100 < 98 THEN 'cancelled'
         ELSE 'executing' END)::oban_job_state AS state) AS s,
     LATERAL (SELECT timezone('UTC', now()) - ((%(stop)s - i) * interval '5 ms') AS at) AS t
"""

STATS = (
    "CREATE STATISTICS oban_jobs_state_queue_stats (mcv, dependencies) ON state, queue "
    "FROM oban_jobs"
)

PAGES: list[tuple[str, str]] = [
    ("first page", "/jobs"),
    ("state=available", "/jobs?state=available"),
    ("state=discarded", "/jobs?state=discarded"),
    ("queue=queue_3", "/jobs?queue=queue_3"),
    ("state=retryable&queue=queue_3", "/jobs?state=retryable&queue=queue_3"),
    ("worker=MyApp.Workers.W7", "/jobs?worker=MyApp.Workers.W7"),
    ("tags=vip", "/jobs?tags=vip"),
    ('args={"account_id": 42}', "/jobs?args=%7B%22account_id%22%3A42%7D"),
    ("args text 'user4242'", "/jobs?args=user4242%40"),
    ("deep page (before=id 1000)", "/jobs?before=1000"),
    ("overview (shared cache; max: fresh)", "/"),
]


def seed(dsn: str, rows: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        step = 250_000
        for start in range(1, rows + 1, step):
            stop = min(rows, start + step - 1)
            conn.execute(SEED, {"start": start, "stop": stop})
        conn.execute("VACUUM ANALYZE oban_jobs")
    return time.perf_counter() - started


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f}"


async def measure(dsn: str, runs: int) -> list[tuple[str, list[float], list[float] | None]]:
    # Refresh intervals of ~0: the overview reads as often as the shared cache's backoff
    # (DUTY x the query's own duration) allows; its max is a fresh read of counts and chart.
    app = create_app(dsn=dsn, refresh_interval=1e-9, chart_interval=1e-9)
    dashboard = app.state.dashboard
    results: list[tuple[str, list[float], list[float] | None]] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        await http.get("/")  # opens the pool and the gossip listener
        for label, path in PAGES:
            request_ms: list[float] = []
            query_ms: list[float] = []
            url = httpx.URL(path)
            job_filter = JobFilter.parse(dict(url.params))
            before = url.params.get("before")
            for _ in range(runs):
                t0 = time.perf_counter()
                response = await http.get(path)
                request_ms.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
                if path.startswith("/jobs"):
                    t0 = time.perf_counter()
                    await dashboard.reads.page(
                        job_filter,
                        before=int(before) if before else None,
                        after=None,
                        size=dashboard.settings.page_size,
                    )
                    query_ms.append((time.perf_counter() - t0) * 1000)
            results.append((label, request_ms, query_ms or None))
    await dashboard.close()
    return results


def report(dsn: str, runs: int) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), EXISTS (SELECT FROM pg_statistic_ext "
            "WHERE stxname = 'oban_jobs_state_queue_stats') FROM oban_jobs"
        ).fetchone()
    assert row is not None
    print(f"{row[0]:,} jobs; extended statistics on (state, queue): {'yes' if row[1] else 'no'}")
    print(f"{'page':<34} {'request: median':>16} {'p95':>8} {'max':>8}   query alone (ms)")
    for label, request_ms, query_ms in asyncio.run(measure(dsn, runs)):
        query = _ms(query_ms) if query_ms else "       —"
        print(f"{label:<34} {_ms(request_ms):>34}   {query}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--extended-stats",
        action="store_true",
        help="CREATE STATISTICS (mcv, dependencies) ON state, queue first (docs/dashboard.md)",
    )
    parser.add_argument(
        "--dsn", help="measure a database seeded earlier (--keep) instead of seeding one"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its DSN)")
    args = parser.parse_args(argv)
    if args.dsn:
        report(args.dsn, args.runs)
        return 0
    bench_db = db.BenchDatabase(db.server_dsn())
    bench_db.create()
    try:
        took = seed(bench_db.dsn, args.rows)
        size = bench_db.one("SELECT pg_size_pretty(pg_total_relation_size('oban_jobs'))")
        print(f"seeded {args.rows:,} jobs in {took:.1f} s (oban_jobs with indexes: {size})")
        if args.extended_stats:
            with psycopg.connect(bench_db.dsn, autocommit=True) as conn:
                conn.execute(STATS)
                conn.execute("ANALYZE oban_jobs")
            print("with extended statistics on (state, queue)")
        report(bench_db.dsn, args.runs)
    finally:
        if args.keep:
            print(f"kept: {bench_db.dsn}")
        else:
            bench_db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
