"""Prometheus: telemetry of a real node becomes metrics, scraped over HTTP and parsed."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from nodekit import wait_state
from oban_py_ext import prometheus
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from oban_py import Job, Oban, Worker


class Counted(Worker):
    name = "Py.Ext.Prom.Counted"

    async def process(self, job: Job) -> None:
        if job.args.get("fail"):
            raise RuntimeError("counted boom")


class Holds(Worker):
    name = "Py.Ext.Prom.Holds"
    release: asyncio.Event

    async def process(self, job: Job) -> None:
        await Holds.release.wait()


@pytest.fixture
def metrics() -> Iterator[prometheus.Metrics]:
    found = prometheus.instrument(CollectorRegistry(), port=0)
    yield found
    found.close()


def scrape(metrics: prometheus.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert metrics.server is not None
    url = f"http://127.0.0.1:{metrics.server.server_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_executions_are_counted_by_queue_worker_and_state(
    dsn: str, metrics: prometheus.Metrics
) -> None:
    async with (
        Oban(dsn=dsn, queues={"counted": 5}, peer=False, name="PromNode") as oban,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        ok = [await oban.enqueue(Counted.new({}, queue="counted")) for _ in range(2)]
        bad = await oban.enqueue(Counted.new({"fail": True}, queue="counted"))
        for job in ok:
            await wait_state(conn, job.id or 0, "completed")
        await wait_state(conn, bad.id or 0, "retryable")

    samples = scrape(metrics)
    labels = (("queue", "counted"), ("state", "completed"), ("worker", "Py.Ext.Prom.Counted"))
    assert samples[("oban_jobs_total", labels)] == 2
    failed = (("queue", "counted"), ("state", "retryable"), ("worker", "Py.Ext.Prom.Counted"))
    assert samples[("oban_jobs_total", failed)] == 1
    assert samples[("oban_job_duration_seconds_count", labels)] == 2
    waited = (("queue", "counted"), ("worker", "Py.Ext.Prom.Counted"))
    assert samples[("oban_job_queue_time_seconds_count", waited)] == 3


async def test_producer_running_and_limit_are_read_at_scrape_time(
    dsn: str, metrics: prometheus.Metrics
) -> None:
    Holds.release = asyncio.Event()
    async with Oban(
        dsn=dsn, queues={"held": 3}, peer=False, name="PromNode", node="prom-node"
    ) as oban:
        await oban.enqueue(Holds.new({}, queue="held"))
        deadline = asyncio.get_running_loop().time() + 10
        while not oban.producers["held"].running:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        samples = await asyncio.to_thread(scrape, metrics)
        Holds.release.set()
    labels = (("node", "prom-node"), ("queue", "held"))
    assert samples[("oban_producer_running", labels)] == 1
    assert samples[("oban_producer_limit", labels)] == 3
    # A stopped node no longer reports.
    assert ("oban_producer_limit", labels) not in scrape(metrics)


async def test_cluster_wide_limits_are_gauges_by_queue_and_partition(
    dsn: str, metrics: prometheus.Metrics
) -> None:
    Holds.release = asyncio.Event()
    limits = {
        "limit": 10,
        "global_limit": {"allowed": 2, "partition": {"fields": ["args"], "keys": ["account"]}},
        "rate_limit": {"allowed": 50, "period": 30},
    }
    async with Oban(
        dsn=dsn, queues={"capped": limits}, peer=False, name="PromNode", flow_usage_interval=0.05
    ) as oban:
        for account in ("a", "a", "b"):
            await oban.enqueue(Holds.new({"account": account}, queue="capped"))
        deadline = asyncio.get_running_loop().time() + 10
        executing = (
            "oban_flow_global_executing",
            (("partition", 'account="a"'), ("queue", "capped")),
        )
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while samples.get(executing) != 2:
            assert asyncio.get_running_loop().time() < deadline, samples
            await asyncio.sleep(0.05)
            samples = await asyncio.to_thread(scrape, metrics)
        Holds.release.set()

    def gauge(name: str, partition: str) -> float:
        return samples[(name, (("partition", partition), ("queue", "capped")))]

    assert gauge("oban_flow_global_executing", 'account="b"') == 1
    assert gauge("oban_flow_global_limit", 'account="a"') == 2
    assert gauge("oban_flow_rate_started", "") == 3
    assert gauge("oban_flow_rate_allowed", "") == 50
    # A stopped node's queues no longer report.
    assert not [key for key in scrape(metrics) if key[0].startswith("oban_flow_")]
