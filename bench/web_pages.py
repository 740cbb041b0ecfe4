"""The dashboard on a table of a million jobs: every page and live refresh, with its server time
and the rows it reads. ``python -m bench.web_pages``.

    .venv/bin/python -m bench.web_pages                  # 1,000,000 rows
    .venv/bin/python -m bench.web_pages --rows 10000 --runs 3
    .venv/bin/python -m bench.web_pages --keep --save after.json          # keep the database
    cd /tmp && PYTHONPATH=/other/checkout:/other/checkout/ext \\
        /repo/.venv/bin/python /repo/bench/web_pages.py --dsn DSN --save before.json
    .venv/bin/python -m bench.web_pages --dsn DSN --against before.json   # side by side

Seeds a fresh database (DATABASE_URL server, else the embedded one) with ``--rows`` jobs in
Elixir's schema by one ``generate_series`` INSERT per 250,000 rows (states, queues, workers,
tags and args spread as a busy system would have them), runs ``VACUUM ANALYZE``, then requests
each page through the dashboard's ASGI app (query, rendering, response) and reports:

- **server ms**: median time of a request, in process (no network);
- **rows read**: rows of ``oban_jobs`` read per request (per refresh round for live fragments),
  from PostgreSQL's cumulative statistics: ``seq_tup_read`` of ``pg_stat_user_tables`` plus
  ``idx_tup_read`` of every index in ``pg_stat_user_indexes``, as deltas around a dashboard
  whose pool is closed before reading them (a backend flushes its statistics when it exits);
- **own rows**: the same with the shared counts already read (every other shared value read
  again): what the page reads beyond the counts every page shares;
- for each live fragment, a refresh round with **1 tab** and with **5 tabs** (five concurrent
  requests after the refresh interval passed): 5 tabs read what 1 does when the dashboard
  shares its reads.

The dashboard is fed an hour of ``metrics`` payloads from two nodes (as oban_met's reporter
publishes them) when it keeps them (``dashboard.metrics``); a checkout without it charts from
the table. Pages a checkout does not have print as "—". Not a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import oban_py_ext.web
import psycopg
from oban_py_ext.web import create_app

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

ROWS_READ = """
SELECT (SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'oban_jobs')
     + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes
        WHERE relname = 'oban_jobs')
"""

#: Pages requested once per run, as a browser opens them.
PAGES: list[tuple[str, str]] = [
    ("overview", "/"),
    ("queue page", "/queues/queue_3"),
    ("metrics page (1h by queue)", "/metrics?window=1h&group=queue"),
    ("job", "/jobs/4242"),
    ("jobs: first page", "/jobs"),
    ("jobs: state=available", "/jobs?state=available"),
    ("jobs: state=discarded", "/jobs?state=discarded"),
    ("jobs: queue=queue_3", "/jobs?queue=queue_3"),
    ("jobs: state=retryable&queue=queue_3", "/jobs?state=retryable&queue=queue_3"),
    ("jobs: worker=MyApp.Workers.W7", "/jobs?worker=MyApp.Workers.W7"),
    ("jobs: tags=vip", "/jobs?tags=vip"),
    ('jobs: args={"account_id": 42}', "/jobs?args=%7B%22account_id%22%3A42%7D"),
    ("jobs: args text 'user4242'", "/jobs?args=user4242%40"),
    ("jobs: deep page (before=1000)", "/jobs?before=1000"),
    ("jobs: worker=W7 (last segment)", "/jobs?worker=W7"),
    ("jobs: worker matching none", "/jobs?worker=Nope"),
    ("jobs: tags matching none", "/jobs?tags=nope"),
    ("jobs: node=bench-node-1", "/jobs?node=bench-node-1"),
    ("jobs: priority=3", "/jobs?priority=3"),
    ("jobs: attempt=1", "/jobs?attempt=1"),
    ("jobs: completed, sort=completed", "/jobs?state=completed&sort=completed"),
    ("jobs: since 2000-01-01", "/jobs?since=2000-01-01T00%3A00"),
    ("jobs: count for cancel, queue_3", "/jobs/count?queue=queue_3&action=cancel"),
    ("crons page", "/crons"),
    ("nodes page", "/nodes"),
]

#: Live fragments, refreshed by every open tab.
LIVE: list[tuple[str, str]] = [
    ("live overview", "/live/overview"),
    ("live queue page", "/live/queues/queue_3"),
    ("live job list", "/live/jobs"),
    ("live job list, state=completed", "/live/jobs?state=completed"),
    ("live job list, state=retryable&queue=queue_3", "/live/jobs?state=retryable&queue=queue_3"),
    ("live metrics 1h by state", "/live/metrics?window=1h&group=state"),
    ("live metrics 5m by worker, 1 queue", "/live/metrics?window=5m&group=worker&queue=queue_3"),
    ("live job list (first page)", "/live/jobs"),
    ("live job list state=available", "/live/jobs?state=available"),
    ("live bulk runs", "/live/bulk"),
    ("live crons", "/live/crons"),
    ("live nodes", "/live/nodes"),
]

NODES = ("bench-node-1", "bench-node-2")
HISTORY = 3600
ROUNDS = 3


def seed(dsn: str, rows: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        step = 250_000
        for start in range(1, rows + 1, step):
            stop = min(rows, start + step - 1)
            conn.execute(SEED, {"start": start, "stop": stop})
        conn.execute("VACUUM ANALYZE oban_jobs")
    return time.perf_counter() - started


def metric_history(now: int) -> list[dict[str, Any]]:
    """An hour of ``metrics`` payloads from two nodes: 10 queues, 20 workers, 50 jobs/s."""
    from oban_py.cluster.met import aggregate

    payloads = []
    for at in range(now - HISTORY, now + 1):
        for n, node in enumerate(NODES):
            samples = [
                (
                    "success" if (at + i) % 25 else "failure",
                    f"queue_{i % 10}",
                    f"MyApp.Workers.W{i % 20}",
                    1_000_000 * (1 + (at * 7 + i) % 50),
                    100_000 * (1 + (at + i * 13) % 400),
                )
                for i in range(n, 50, len(NODES))
            ]
            metrics, _ = aggregate(samples)
            payloads.append({"metrics": metrics, "name": "Oban", "node": node, "time": at})
    return payloads


def rows_read(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(ROWS_READ).fetchone()
    return int(row[0]) if row else 0


def _shared_values(dashboard: Any, kept: frozenset[str] = frozenset()) -> list[Any]:
    """The dashboard's shared (cached) values but ``kept``, whatever the checkout calls them."""
    return [
        v
        for name, v in vars(dashboard).items()
        if hasattr(v, "invalidate") and hasattr(v, "ttl") and name not in kept
    ]


class Run:
    """One dashboard app: requests, then closed, so its backends flush their statistics."""

    def __init__(self, dsn: str, history: list[dict[str, Any]]) -> None:
        self.dsn = dsn
        self.history = history

    async def measure(
        self, path: str, tabs: int, rounds: int, kept: frozenset[str] = frozenset()
    ) -> tuple[list[float], int, int]:
        """Request ms, rows read in all, and the status of the last response; every shared
        value but ``kept`` is read again each round."""
        app = create_app(dsn=self.dsn, refresh_interval=3600.0, chart_interval=3600.0)
        dashboard = app.state.dashboard
        metrics = getattr(dashboard, "metrics", None)
        if metrics is not None:
            for payload in self.history:
                metrics.heard(payload)
        before = rows_read(self.dsn)
        await dashboard.ready()
        times: list[float] = []
        status = 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

            async def one() -> None:
                nonlocal status
                t0 = time.perf_counter()
                response = await http.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                status = response.status_code

            for _ in range(rounds):
                # The refresh interval has passed: every shared value is read again once.
                for shared in _shared_values(dashboard, kept):
                    shared.invalidate()
                await asyncio.gather(*(one() for _ in range(tabs)))
        await dashboard.close()
        return times, await self._settled(before), status

    async def _settled(self, before: int) -> int:
        # Backends flush their statistics as they exit, a moment after the pool closed.
        last, stable = -1, 0
        for _ in range(50):
            await asyncio.sleep(0.1)
            now = rows_read(self.dsn)
            stable = stable + 1 if now == last else 0
            if stable >= 3:
                break
            last = now
        return last - before


async def measure(dsn: str, runs: int) -> dict[str, dict[str, Any]]:
    history = metric_history(int(time.time()))
    run = Run(dsn, history)
    _, baseline, _ = await run.measure("/", 0, 0)
    results: dict[str, dict[str, Any]] = {}
    for label, path in PAGES:
        times, rows, status = await run.measure(path, 1, runs)
        # The counts kept: the first request reads them, the others do not.
        counts = frozenset({"counts"})
        _, first, _ = await run.measure(path, 1, 1, counts)
        kept, later, _ = await run.measure(path, 1, runs + 1, counts)
        results[label] = {
            "status": status,
            "ms": statistics.median(times),
            "rows": (rows - baseline) / runs,
            "own_ms": statistics.median(kept[1:]),
            "own_rows": (later - first) / runs,
        }
    for label, path in LIVE:
        entry: dict[str, Any] = {}
        for tabs in (1, 5):
            times, rows, status = await run.measure(path, tabs, ROUNDS)
            entry["status"] = status
            entry[f"ms_{tabs}"] = statistics.median(times)
            entry[f"rows_{tabs}"] = (rows - baseline) / ROUNDS
        results[label] = entry
    return results


def _fmt(entry: dict[str, Any] | None, key: str, rows: str) -> str:
    if entry is None or entry.get("status") != 200:
        return f"{'—':>9} {'—':>11}"
    return f"{entry[key]:9.1f} {entry[rows]:11,.0f}"


def report(dsn: str, runs: int, save: str | None, against: str | None) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM oban_jobs").fetchone()
    assert row is not None
    print(f"{row[0]:,} jobs; code: {Path(oban_py_ext.web.__file__).parent}")
    results = asyncio.run(measure(dsn, runs))
    if save:
        Path(save).write_text(json.dumps(results, indent=1))
    other: dict[str, Any] = json.loads(Path(against).read_text()) if against else {}
    side = f" | {'before ms':>9} {'rows/req':>11}" if other else ""
    side += f" | {'own ms':>9} {'own rows':>11}"
    side += f" | {'before own':>9} {'own rows':>11}" if other else ""
    print(f"{'page (one tab)':<40} {'server ms':>9} {'rows/req':>11}{side}")
    for label, _ in PAGES:
        extra = f" | {_fmt(other.get(label), 'ms', 'rows')}" if other else ""
        extra += f" | {_fmt(results[label], 'own_ms', 'own_rows')}"
        was = other.get(label)
        if other:
            extra += f" | {_fmt(was if was and 'own_rows' in was else None, 'own_ms', 'own_rows')}"
        print(f"{label:<40} {_fmt(results[label], 'ms', 'rows')}{extra}")
    print()
    head = f"{'live refresh, per round':<40} {'1 tab ms':>9} {'rows':>11}"
    head += f" {'5 tabs ms':>9} {'rows':>11}"
    print(head + (" | before: 1 tab rows, 5 tabs rows" if other else ""))
    for label, _ in LIVE:
        entry = results[label]
        line = f"{label:<40} {_fmt(entry, 'ms_1', 'rows_1')} {_fmt(entry, 'ms_5', 'rows_5')}"
        if other:
            was = other.get(label)
            if was is None or was.get("status") != 200:
                line += " |           —           —"
            else:
                line += f" | {was['rows_1']:11,.0f} {was['rows_5']:11,.0f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="requests per page")
    parser.add_argument(
        "--extended-stats",
        action="store_true",
        help="CREATE STATISTICS (mcv, dependencies) ON state, queue first (docs/dashboard.md)",
    )
    parser.add_argument(
        "--dsn", help="measure a database seeded earlier (--keep) instead of seeding one"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its DSN)")
    parser.add_argument("--save", help="write the figures to this JSON file")
    parser.add_argument("--against", help="print the figures of this JSON file beside (before)")
    args = parser.parse_args(argv)
    if args.dsn:
        report(args.dsn, args.runs, args.save, args.against)
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
        report(bench_db.dsn, args.runs, args.save, args.against)
    finally:
        if args.keep:
            print(f"kept: {bench_db.dsn}")
        else:
            bench_db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
