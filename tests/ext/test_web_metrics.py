"""The dashboard's charts come from the metrics nodes publish (oban_met's shape), not from rows.

Payloads are real: published by a Python node running jobs against a real database, and
captured from an Elixir node running oban_met (``compat_fixtures/oban_met``). The charts keep
them in memory, bounded, and read no row of ``oban_jobs``.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from nodekit import wait_for
from oban_py_ext.web import create_app
from oban_py_ext.web.series import (
    MAX_KEYS,
    RETENTION,
    MetricSeries,
    Query,
)
from starlette.testclient import TestClient

from oban_py import Oban
from oban_py.cluster.met import aggregate
from oban_py.job.model import Job
from oban_py.worker import Worker

GAMMA = 1.02 / 0.98


class Ok(Worker):
    name = "Py.WebMet.Ok"

    async def process(self, job: Job) -> None:
        return None


class Fails(Worker):
    name = "Py.WebMet.Fails"

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class FailsTwice(Worker):
    name = "Py.WebMet.FailsTwice"

    def backoff(self, job: Job) -> float:
        return 0.0

    async def process(self, job: Job) -> None:
        if job.attempt < 3:
            raise RuntimeError(f"attempt {job.attempt}")


def elixir_payloads(now: int) -> list[dict[str, Any]]:
    """oban_met's ``metrics`` notifications, moved in time so the last one is ``now``."""
    notes = json.loads((FIXTURES / "oban_met" / "notifications.json").read_text())
    payloads = [n["payload"] for n in notes if n["channel"] == "public.oban_metrics"]
    shift = now - max(p["time"] for p in payloads)
    return [{**p, "time": p["time"] + shift} for p in payloads]


def gauge_sums(payloads: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for payload in payloads:
        for m in payload["metrics"]:
            if m["series"] == "exec_count":
                counts[(m["worker"], m["state"], payload["node"])] += sum(m["value"]["data"])
    return counts


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_elixir_oban_met_payloads_chart_by_worker_state_queue_and_node() -> None:
    clock = Clock(2_000_000_000.0)
    series = MetricSeries(clock)
    payloads = elixir_payloads(int(clock.now))
    for payload in payloads:
        series.heard(payload)
    expected = gauge_sums(payloads)
    assert sum(expected.values()) > 0
    by_worker = series.timeslice(Query(window="5m", group="worker")).counts
    assert {w: sum(v) for w, v in by_worker.items()} == {
        w: sum(n for (worker, _, _), n in expected.items() if worker == w)
        for w in {w for w, _, _ in expected}
    }
    by_state = series.timeslice(Query(window="5m", group="state")).counts
    assert set(by_state) == {"completed", "discarded"}
    by_node = series.timeslice(Query(window="5m", group="node")).counts
    assert list(by_node) == ["elixir-node-1"]
    assert series.labels("queue") == sorted(
        {m["queue"] for p in payloads for m in p["metrics"] if m["series"] == "exec_count"}
    )
    # full_count (the leader's table counts) is heard but is not an execution.
    assert series.dropped == 0
    # Run time: the slowest NoopWorker run decodes from the highest sketch bin it reported.
    bins = [
        int(b)
        for p in payloads
        for m in p["metrics"]
        if m["series"] == "exec_time" and m["worker"] == "Interop.NoopWorker"
        for b in m["value"]["data"]
    ]
    slowest_ms = 2 * GAMMA ** max(bins) / (GAMMA + 1) / 1e6
    found = series.timeslice(Query(window="5m", group="worker"))
    assert math.isclose(found.overall("exec_time", "Interop.NoopWorker", 1.0) or 0, slowest_ms)
    filtered = series.timeslice(
        Query(window="5m", group="state", filters=(("worker", "Interop.FailWorker"),))
    )
    assert list(filtered.counts) == ["discarded"]


@contextlib.asynccontextmanager
async def listening(dsn: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A dashboard computing its charts at every read, already listening (a page was viewed),
    and a client for it; closed on the way out."""
    app = create_app(dsn=dsn, chart_interval=1e-9)
    dashboard = app.state.dashboard
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            assert (await http.get("/")).status_code == 200  # the dashboard starts listening
            yield http, dashboard
    finally:
        await dashboard.close()


async def test_a_python_node_s_executions_reach_the_charts_without_reading_the_table(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with listening(dsn) as (http, dashboard):
        for worker, queue, n in ((Ok, "alpha", 4), (Fails, "beta", 2)):
            for _ in range(n):
                await conn.execute(
                    "INSERT INTO oban_jobs (queue, worker, max_attempts) VALUES (%s, %s, 1)",
                    (queue, worker.__oban_name__),
                )
        node = Oban(
            dsn=dsn, node="py-web-met", queues={"alpha": 2, "beta": 1}, peer=False,
            shutdown_grace=1.0,
        )  # fmt: skip
        await node.start()
        try:
            await wait_for(
                lambda: (
                    sum(dashboard.metrics.activity().completed) == 4
                    and sum(dashboard.metrics.activity().failed) == 2
                ),
                timeout=20,
            )
        finally:
            await node.stop()
        # Rows pruned, and rows that were never run: the charts show executions, not rows.
        await conn.execute("DELETE FROM oban_jobs")
        await conn.execute(
            "INSERT INTO oban_jobs (queue, worker, state, attempted_at, completed_at) VALUES "
            "('alpha', 'Py.WebMet.Ok', 'completed', timezone('UTC', now()), "
            "timezone('UTC', now()))"
        )
        overview = (await http.get("/")).text
        assert "4 in all" in overview
        assert "failure rate 33.3 %" in overview
        page = (await http.get("/metrics?window=5m&group=worker")).text
        assert re.search(r'<tr data-group="Py.WebMet.Ok">.*?<td class="num">4</td>', page, re.S)
        assert re.search(r'<tr data-group="Py.WebMet.Fails">.*?<td class="num">2</td>', page, re.S)
        by_node = (await http.get("/live/metrics?window=15m&group=node&queue=beta")).text
        assert re.search(r'<tr data-group="py-web-met">.*?<td class="num">2</td>', by_node, re.S)


def test_the_failed_attempts_chart_counts_attempts_not_jobs() -> None:
    # One job failing three times then completing, as a Python node's reporter publishes it.
    samples = [("failure", "q", "W", 2_000_000, 1_000_000)] * 3
    samples += [("success", "q", "W", 2_000_000, 1_000_000)]
    metrics, _ = aggregate(samples)
    series = MetricSeries(Clock(2_000_000_000.0))
    series.heard({"metrics": metrics, "name": "Oban", "node": "n", "time": 2_000_000_000})
    activity = series.activity()
    assert (sum(activity.failed), sum(activity.completed)) == (3, 1)
    assert activity.failure_rate == 0.75


async def test_a_job_retried_to_success_charts_each_failed_attempt(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # One row in the table (completed in the end), three executions on the node.
    async with listening(dsn) as (http, dashboard):
        await conn.execute(
            "INSERT INTO oban_jobs (queue, worker, max_attempts) VALUES ('again', %s, 5)",
            (FailsTwice.__oban_name__,),
        )
        node = Oban(
            dsn=dsn, node="py-web-retry", queues={"again": 1}, stage_interval=0.1,
            shutdown_grace=1.0,
        )  # fmt: skip
        await node.start()
        try:
            await wait_for(lambda: sum(dashboard.metrics.activity().completed) == 1, timeout=20)
        finally:
            await node.stop()
        rows = await (await conn.execute("SELECT state::text, attempt FROM oban_jobs")).fetchall()
        assert rows == [("completed", 3)]
        assert sum(dashboard.metrics.activity().failed) == 2
        overview = (await http.get("/")).text
        assert "2 in all" in overview
        assert "failure rate 66.7 %" in overview


def test_five_tabs_on_the_same_chart_compute_it_once() -> None:
    app = create_app(dsn="postgresql://unused@127.0.0.1:1/none", chart_interval=60.0)
    dashboard = app.state.dashboard
    dashboard.metrics.heard(elixir_payloads(int(dashboard.metrics.clock()))[3])

    async def tabs() -> list[Any]:
        return [await dashboard.slices.get(Query(window="1h", group="worker")) for _ in range(5)]

    import asyncio

    found = asyncio.run(tabs())
    assert dashboard.slices.loads == 1
    assert all(f is found[0] for f in found)


def test_points_compact_to_minutes_and_history_is_bounded() -> None:
    clock = Clock(33_333_333 * 60.0)  # on a minute
    series = MetricSeries(clock)
    metric = {"series": "exec_count", "queue": "q", "worker": "W", "state": "completed"}
    start = int(clock.now)
    for second in range(0, 120, 2):
        clock.now = start + second
        series.heard(
            {"metrics": [{**metric, "value": {"data": [1]}}], "node": "n", "time": start + second}
        )
    assert series.stored == 120 // 5  # 5-second points
    # Twenty minutes on, those seconds are minutes: the 60 executions all still counted.
    clock.now = start + 20 * 60
    series.compact(int(clock.now))
    assert series.stored == 120 // 60  # minutes
    assert sum(sum(v) for v in series.timeslice(Query(window="1h")).counts.values()) == 60
    # Not in the last five minutes, though.
    assert series.timeslice(Query(window="5m")).counts == {}
    # Beyond the retention nothing is kept, and a payload that old is not stored at all.
    clock.now = start + RETENTION + 3600
    series.compact(int(clock.now))
    assert series.keys == 0
    series.heard({"metrics": [{**metric, "value": {"data": [1]}}], "node": "n", "time": start})
    assert series.keys == 0


def test_label_combinations_are_capped() -> None:
    series = MetricSeries(Clock(2_000_000_000.0))
    metrics = [
        {"series": "exec_count", "queue": "q", "worker": f"W{i}", "state": "completed",
         "value": {"data": [1]}}
        for i in range(MAX_KEYS + 10)
    ]  # fmt: skip
    series.heard({"metrics": metrics, "node": "n", "time": 2_000_000_000})
    assert series.keys == MAX_KEYS
    assert series.dropped == 10


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
METRIC = st.fixed_dictionaries(
    {
        "series": st.sampled_from(["exec_count", "exec_time", "wait_time", "full_count", "x"]),
        "queue": st.text(max_size=4) | st.integers(),
        "worker": st.text(max_size=4) | st.none(),
        "state": st.sampled_from(["completed", "retryable", "discarded"]) | JSON,
        "value": st.fixed_dictionaries(
            {"data": st.lists(st.integers(-5, 10**20), max_size=3)
             | st.dictionaries(st.text(max_size=6), JSON, max_size=3), "size": JSON}
        ) | JSON,
    }
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    metrics=st.lists(METRIC | JSON, max_size=6) | JSON,
    node=st.text(max_size=6) | JSON,
    at=st.integers(1_999_990_000, 2_000_010_000) | JSON,
)
def test_hostile_metric_payloads_are_dropped_never_crash_or_go_negative(
    metrics: Any, node: Any, at: Any
) -> None:
    series = MetricSeries(Clock(2_000_000_000.0))
    series.heard({"metrics": metrics, "node": node, "time": at})
    for group in ("state", "queue", "worker", "node"):
        found = series.timeslice(Query(window="3h", group=group))
        assert all(n >= 0 for values in found.counts.values() for n in values)
        for name in found.exec_time:
            found.overall("exec_time", name, 0.99)


XSS = "<script>window.__xss = 1</script><img src=x onerror=alert(1)>"


def test_hostile_labels_are_escaped_in_every_chart_and_choice(dsn: str) -> None:
    app = create_app(dsn=dsn)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        labels = {"queue": XSS, "worker": XSS, "state": "completed"}
        app.state.dashboard.metrics.heard(
            {
                "metrics": [
                    {**labels, "series": "exec_count", "value": {"data": [1]}},
                    {**labels, "series": "exec_time", "value": {"data": {"300": 1}, "size": 1}},
                    {**labels, "series": "wait_time", "value": {"data": {"400": 1}, "size": 1}},
                ],
                "node": XSS,
                "time": int(app.state.dashboard.metrics.clock()),
            }
        )
        pages = [f"/metrics?group={g}&window=5m" for g in ("queue", "worker", "node", "state")]
        pages += [f"/metrics?{httpx.QueryParams({'queue': XSS, 'group': 'node'})}"]
        for path in pages:
            html = web.get(path).text
            assert "&lt;script&gt;" in html, path
            assert "<script>window" not in html, path
            assert "<img src=x" not in html, path


def test_served_alone_the_dashboard_hears_metrics_before_any_page_is_viewed(dsn: str) -> None:
    from oban_py import notifier

    app = create_app(dsn=dsn)
    with TestClient(app, base_url="http://127.0.0.1") as web:  # runs the app's lifespan
        series = app.state.dashboard.metrics
        payload = elixir_payloads(int(series.clock()))[3]
        with psycopg.connect(dsn, autocommit=True) as conn:
            notifier.publish_sync(conn, "public", "metrics", [payload])
        deadline = time.monotonic() + 10
        while series.heard_count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert series.heard_count == 1
        html = web.get("/metrics?window=5m&group=node").text
        assert '<tr data-group="elixir-node-1">' in html
