"""The job list filtered on a state and a queue whose jobs are few among many: read through the
state/queue index, never by walking the primary key past every job of the other pairs.

The planner takes state and queue for independent: for a pair that holds few jobs (or none) it
expects a page of them within the newest ids, and walks the primary key newest first, reading
the whole table. Rows read come from the reads' ``EXPLAIN ANALYZE`` plans (``Reads.plans``).
"""

from __future__ import annotations

import re

import psycopg
from oban_py_ext.web import create_app
from oban_py_ext.web.reads import rows_read
from starlette.testclient import TestClient

ROWS = 200_000
#: Retryable jobs of queue_3, the oldest of the table: no other retryable job is in queue_3.
FEW = 60

SEED = """
INSERT INTO oban_jobs (state, queue, worker, args)
SELECT (CASE WHEN i %% 100 < 80 THEN 'completed'
             WHEN i %% 100 < 90 THEN 'available'
             WHEN i %% 100 < 93 THEN 'retryable'
             ELSE 'executing' END)::oban_job_state,
       'queue_' || (i %% 10), 'W', '{}'
FROM generate_series(1, %s) AS i
"""


def seed(dsn: str) -> None:
    """``ROWS`` jobs in ten queues, whose retryable ones are all in queue_0, queue_1, queue_2
    (as a busy system's states and queues go together), after ``FEW`` retryable in queue_3."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args) "
            "SELECT 'retryable', 'queue_3', 'W', '{}' FROM generate_series(1, %s)",
            (FEW,),
        )
        conn.execute(SEED, (ROWS,))
        conn.execute("VACUUM ANALYZE oban_jobs")


def ids_on(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)">', html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return None if found is None else found.group(1).replace("&amp;", "&")


def test_a_pair_without_jobs_reads_no_row_of_the_other_pairs(dsn: str) -> None:
    seed(dsn)
    app = create_app(dsn=dsn)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        for path in ("/jobs", "/live/jobs"):
            path += "?state=retryable&queue=queue_4"
            reads.plans = []
            assert ids_on(web.get(path).text) == [], path
            assert sum(rows_read(plan) for plan in reads.plans) == 0, path


def test_a_pair_with_few_jobs_pages_through_them_all_reading_only_them(dsn: str) -> None:
    seed(dsn)
    app = create_app(dsn=dsn, page_size=25)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        path: str | None = "/jobs?state=retryable&queue=queue_3"
        pages: list[list[int]] = []
        htmls: list[str] = []
        while path is not None:
            reads.plans = []
            html = web.get(path).text
            pages.append(ids_on(html))
            htmls.append(html)
            # The pair's ids (all FEW of them, by the index), then the page among those rows.
            assert sum(rows_read(plan) for plan in reads.plans) <= 2 * FEW, path
            path = link(html, "next")
        assert [len(page) for page in pages] == [25, 25, 10]
        assert [job for page in pages for job in page] == list(range(FEW, 0, -1))
        # And back, newer pages by the keyset the other way.
        newer = link(htmls[-1], "prev")
        assert newer is not None
        reads.plans = []
        assert ids_on(web.get(newer).text) == pages[1]
        assert sum(rows_read(plan) for plan in reads.plans) <= 2 * FEW


def test_a_pair_with_many_jobs_keeps_the_planners_plan(dsn: str) -> None:
    seed(dsn)
    app = create_app(dsn=dsn, count_cap=1_000)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        web.get("/")  # the shared counts: queue_0 holds far more than 1,000 completed jobs
        reads.plans = []
        html = web.get("/jobs?state=completed&queue=queue_0").text
        with psycopg.connect(dsn) as conn:
            newest = conn.execute(
                "SELECT id FROM oban_jobs WHERE state = 'completed' AND queue = 'queue_0' "
                "ORDER BY id DESC LIMIT 25"
            ).fetchall()
        assert ids_on(html) == [row[0] for row in newest]
        # One read, the page's: the pair's ids are not read when the counts say they are many.
        assert len(reads.plans) == 1
        assert rows_read(reads.plans[0]) < 1_000
