"""The dashboard's counts by queue and state: exact up to ``count_cap`` rows per state, marked
estimates (≈) above it, and never more than the cap's rows read per state, whatever the table.

Rows read come from the reads' ``EXPLAIN ANALYZE`` plans (``Reads.count_plans``).
"""

from __future__ import annotations

import re

import psycopg
from oban_py_ext.web import create_app
from oban_py_ext.web.reads import Amount, rows_read
from oban_py_ext.web.render import number
from starlette.testclient import TestClient


def seed(dsn: str, **per_queue: int) -> None:
    """``per_queue[name]`` available jobs in each queue, and one discarded job in ``alpha``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for queue, rows in per_queue.items():
            conn.execute(
                "INSERT INTO oban_jobs (queue, worker, args) "
                "SELECT %s, 'Web.Test', '{}' FROM generate_series(1, %s)",
                (queue, rows),
            )
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, state) "
            "VALUES ('alpha', 'Web.Test', '{}', 'discarded')"
        )
        conn.execute("VACUUM ANALYZE oban_jobs")


def shown(html: str, state: str) -> str:
    found = re.search(rf'data-state="{state}">\s*<span class="n">([^<]+)<', html)
    assert found is not None, state
    return found.group(1)


def cell(html: str, queue: str, state: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S)
    assert row is not None, queue
    found = re.search(rf'data-state="{state}">([^<]*)</td>', row.group(1))
    assert found is not None, (queue, state)
    return found.group(1)


def test_a_state_beyond_the_cap_is_estimated_and_reads_only_the_cap(dsn: str) -> None:
    # In queue order: alpha fits under the cap, beta crosses it, gamma is never reached.
    seed(dsn, alpha=400, beta=3_000, gamma=700)
    app = create_app(dsn=dsn, count_cap=1_000)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        reads.count_plans = []
        overview = web.get("/").text
        # The cap's rows and one more of the big state, the one discarded job; then at most one
        # index row per queue from the last one reached (beta, gamma; the plan of this walk
        # reports rows averaged over its steps, so only its bound is checked).
        capped, queues = reads.count_plans
        assert rows_read(capped) == 1_001 + 1
        assert 1 <= rows_read(queues) <= 2
        assert shown(overview, "available").startswith("≈")
        assert shown(overview, "discarded") == "1"
        assert "≈ estimated from PostgreSQL" in overview
        # Queues the capped walk counted entirely stay exact; the others are marked.
        assert cell(overview, "alpha", "available") == "400"
        assert cell(overview, "beta", "available").startswith("≈")
        assert cell(overview, "gamma", "available").startswith("≈")
        assert shown(web.get("/queues/alpha").text, "available") == "400"
        assert shown(web.get("/queues/gamma").text, "available").startswith("≈")
        # The job list's totals say so too, and only where an estimate is part of them.
        exact = web.get("/jobs?queue=alpha&state=available").text
        assert "<strong>400</strong> jobs match." in exact
        for query in ("", "?state=available", "?queue=beta"):
            html = web.get("/jobs" + query).text
            assert re.search(r"<strong>≈[\d.]+k</strong> jobs", html), query
            assert "(estimated from PostgreSQL" in html, query
        assert "available (≈" in web.get("/jobs").text


def test_the_rows_read_do_not_grow_with_the_table(dsn: str) -> None:
    app = create_app(dsn=dsn, count_cap=500)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        dashboard = app.state.dashboard
        reads = dashboard.reads
        read: list[int] = []
        for rows in (2_000, 20_000):
            seed(dsn, alpha=rows)
            dashboard.counts.invalidate()  # the refresh interval has passed
            reads.count_plans = []
            assert web.get("/live/overview").status_code == 200
            read.append(sum(rows_read(plan) for plan in reads.count_plans))
        # The capped walk of `available` and the discarded jobs (one more per seed), then the
        # one queue from alpha on.
        assert read == [501 + 1 + 1, 501 + 2 + 1]


def test_below_the_cap_every_count_is_exact(dsn: str) -> None:
    seed(dsn, alpha=1_234, beta=5)
    app = create_app(dsn=dsn, count_cap=2_000)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        reads.count_plans = []
        overview = web.get("/").text
        assert [rows_read(plan) for plan in reads.count_plans] == [1_234 + 5 + 1]
        assert shown(overview, "available") == "1,239"
        assert cell(overview, "alpha", "available") == "1,234"
        assert "≈" not in overview
        html = web.get("/jobs").text
        assert "<strong>1,240</strong> jobs in all." in html
        assert "≈" not in html
        assert "<strong>1</strong> job match." in web.get("/jobs?state=discarded").text


def test_estimates_show_two_significant_digits_after_the_marker() -> None:
    assert number(Amount(1_234_567, estimated=True)) == "≈1.2M"
    assert number(Amount(12_345, estimated=True)) == "≈12k"
    assert number(Amount(999_999, estimated=True)) == "≈1M"
    assert number(Amount(57, estimated=True)) == "≈57"
    assert number(Amount(1_234_567)) == "1,234,567"
    assert number(Amount(2, estimated=True) + 3 + Amount(4)) == "≈9"
