"""The job list's filters, sorts and bulk actions on a million jobs: ``python -m bench.web_list``.

    .venv/bin/python -m bench.web_list                     # 1,000,000 rows (bench.web_pages' seed)
    .venv/bin/python -m bench.web_list --dsn <kept database from bench.web_pages --keep>

For each page: the whole request's median time through the dashboard's ASGI app, and the rows
its reads took (``EXPLAIN ANALYZE`` of the same statements, run once more, apart from the
timing). Then a bulk cancel of 50,000 jobs: how long the request took, how long the background
run took, and the most rows one of its statements read. Not a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from oban_py_ext.web import create_app
from oban_py_ext.web.reads import rows_read

from bench import db
from bench.web_pages import seed

PAGES: list[tuple[str, str]] = [
    ("first page", "/jobs"),
    ("worker=Nobody (no match)", "/jobs?worker=Nobody"),
    ("tags=nobody (no match)", "/jobs?tags=nobody"),
    ("worker=W7 (last segment)", "/jobs?worker=W7"),
    ("tags=vip", "/jobs?tags=vip"),
    ("args text 'no-such' (no match)", "/jobs?args=no-such"),
    ("node=nobody", "/jobs?node=nobody"),
    ("priority=5 (no match)", "/jobs?priority=5"),
    ("state=completed&attempt=1", "/jobs?state=completed&attempt=1"),
    ("sort=completed", "/jobs?sort=completed"),
    ("sort=scheduled&state=scheduled", "/jobs?sort=scheduled&state=scheduled"),
    ("since/until (an hour ago, no match)", "/jobs?since=2000-01-01T00:00&until=2000-01-02T00:00"),
    ("live rows (shared, per interval)", "/live/jobs?worker=Nobody"),
    ("bulk confirm count: worker=Nobody", "/jobs/count?worker=Nobody"),
    ("bulk confirm count: state=available", "/jobs/count?state=available"),
]


async def measure(dsn: str, runs: int) -> None:
    app = create_app(dsn=dsn, refresh_interval=1e-9, statement_timeout=30)
    dashboard = app.state.dashboard
    reads = dashboard.reads
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        await http.get("/jobs")
        print(f"{'page':<38} {'median ms':>10} {'max ms':>8} {'rows read':>10}")
        for label, path in PAGES:
            took: list[float] = []
            for _ in range(runs):
                # Every tab shares a first page per interval: measured here unshared.
                dashboard.first_pages.invalidate()
                t0 = time.perf_counter()
                response = await http.get(path)
                took.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            reads.plans = []
            dashboard.first_pages.invalidate()
            await http.get(path)
            read = sum(rows_read(plan) for plan in reads.plans)
            reads.plans = None
            print(f"{label:<38} {statistics.median(took):10.1f} {max(took):8.1f} {read:10,}")

        csrf = http.cookies["oban_web_csrf"]
        for action, query in (
            ("cancel", "state=available"),
            ("retry", "state=cancelled&worker=W3"),
        ):
            reads.plans = [] if action == "retry" else None
            form = dict(item.split("=") for item in query.split("&"))
            t0 = time.perf_counter()
            response = await http.post("/jobs/bulk", data={"_csrf": csrf, "action": action, **form})
            answered = (time.perf_counter() - t0) * 1000
            assert response.status_code == 303, response.text
            run = dashboard.bulk.runs()[0]
            await dashboard.bulk.wait()
            ran = (run.finished or 0) - run.started
            most = max((rows_read(p) for p in reads.plans or []), default=None)
            print(
                f"bulk {action} {query}: request {answered:.1f} ms; run {ran:.2f} s in the "
                f"background; {run.changed:,} changed of {run.seen:,} looked at"
                + (
                    f"; most rows one read took: {most:,} ({len(reads.plans or [])} reads)"
                    if most is not None
                    else ""
                )
            )
            reads.plans = None
    await dashboard.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dsn", help="measure a database seeded earlier (bench.web_pages --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its DSN)")
    args = parser.parse_args(argv)
    if args.dsn:
        asyncio.run(measure(args.dsn, args.runs))
        return 0
    with db.BenchDatabase.fresh(keep=args.keep) as bench_db:
        took = seed(bench_db.dsn, args.rows)
        print(f"seeded {args.rows:,} jobs in {took:.1f} s")
        asyncio.run(measure(bench_db.dsn, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
