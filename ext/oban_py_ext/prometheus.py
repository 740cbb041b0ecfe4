"""Prometheus metrics of every job attempt (a work middleware), optionally served over HTTP.

    from oban_py_ext import prometheus
    metrics = prometheus.instrument(port=9568)   # or port=None and expose REGISTRY yourself

Metrics (``namespace`` defaults to ``oban``):

- ``oban_jobs_total{queue,worker,state}``: executions by the state they left the job in
  (``completed``, ``retryable``, ``discarded``, ``cancelled``, ``scheduled`` for a snooze);
- ``oban_job_duration_seconds{queue,worker,state}``: execution time (histogram);
- ``oban_job_queue_time_seconds{queue,worker}``: from ``scheduled_at`` to ``attempted_at``
  (histogram), the wait Elixir reports as ``queue_time``;
- ``oban_producer_running{node,queue}`` and ``oban_producer_limit{node,queue}``: read from each
  started node's producers at scrape time;
- for queues with cluster-wide limits (docs/flow-control.md), from the node's latest
  ``oban.flow.usage`` event (every ``flow_usage_interval``): ``oban_flow_global_executing``
  and ``oban_flow_global_limit``, ``oban_flow_rate_started`` (within the window) and
  ``oban_flow_rate_allowed``, each ``{queue,partition}`` (``partition`` empty for a limit of the
  whole queue). The figures are the cluster's: every node running the queue exports the same,
  so aggregate across nodes with ``max``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from oban_py import Job, Oban, telemetry
from oban_py.flow.usage import Usage
from oban_py.middleware import (
    AttemptOutcome,
    Middleware,
    WorkNext,
    add_middleware,
    remove_middleware,
)

HANDLER_ID = "oban_py_ext.prometheus"
#: Job work spans milliseconds to minutes; Prometheus' default buckets stop at 10 s.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class _Producers(Collector):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.nodes: weakref.WeakSet[Oban] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            f"{self.namespace}_producer_running",
            "Jobs executing in a queue of this node",
            labels=["node", "queue"],
        )
        limit = GaugeMetricFamily(
            f"{self.namespace}_producer_limit",
            "Concurrency limit of a queue of this node",
            labels=["node", "queue"],
        )
        for node in list(self.nodes):
            for queue, producer in list(node.producers.items()):
                labels = [node.config.node, queue]
                running.add_metric(labels, len(producer.running))
                limit.add_metric(labels, producer.limit)
        yield running
        yield limit


#: The flow gauges: (limit, what it counts or allows) -> name suffix and help.
_FLOW_GAUGES = {
    ("global", "used"): ("flow_global_executing", "Jobs of the queue executing across the cluster"),
    ("global", "allowed"): ("flow_global_limit", "Global limit of the queue (of each partition)"),
    ("rate", "used"): ("flow_rate_started", "Jobs of the queue started within the rate window"),
    ("rate", "allowed"): ("flow_rate_allowed", "Starts the rate limit allows per window"),
}


class _Flow(Collector):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        #: (id of the node, queue) -> when that node last read the queue's usage (monotonic),
        #: until when the reading stands, and the reading
        self.latest: dict[tuple[int, str], tuple[float, list[Usage]]] = {}

    def record(self, meta: Mapping[str, Any]) -> None:
        node = meta["oban"]
        # A queue stopped, or whose limits were lifted, reads no more: after three missed
        # readings its gauges go, rather than report a past moment as now.
        until = time.monotonic() + 3 * node.config.flow_usage_interval
        self.latest[(id(node), meta["queue"])] = (until, meta["usage"])

    def forget(self, node: object) -> None:
        for key in [key for key in self.latest if key[0] == id(node)]:
            del self.latest[key]

    def collect(self) -> Iterator[Metric]:
        families = {
            key: GaugeMetricFamily(f"{self.namespace}_{name}", text, labels=["queue", "partition"])
            for key, (name, text) in _FLOW_GAUGES.items()
        }
        # Two nodes of one process running the same queue read the same figures: one series.
        seen: set[tuple[str, str, str]] = set()
        now = time.monotonic()
        for (_, queue), (until, found) in list(self.latest.items()):
            if until < now:
                continue
            for each in found:
                for partition, used in each.partitions.items():
                    if (each.limit, queue, partition) in seen:
                        continue
                    seen.add((each.limit, queue, partition))
                    families[(each.limit, "used")].add_metric([queue, partition], used)
                    if each.allowed is not None:
                        families[(each.limit, "allowed")].add_metric(
                            [queue, partition], each.allowed
                        )
        yield from families.values()


class Metrics(Middleware):
    """The collectors, registered in ``registry``; once ``attach()``-ed, fed by a process-wide
    work middleware (jobs) and by telemetry (nodes starting and stopping)."""

    def __init__(self, registry: CollectorRegistry, namespace: str = "oban") -> None:
        self.registry = registry
        self.jobs = Counter(
            "jobs",
            "Job executions by resulting state",
            ["queue", "worker", "state"],
            namespace=namespace,
            registry=registry,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Job execution time",
            ["queue", "worker", "state"],
            namespace=namespace,
            registry=registry,
            buckets=BUCKETS,
        )
        self.queue_time = Histogram(
            "job_queue_time_seconds",
            "Time from scheduled_at to attempted_at",
            ["queue", "worker"],
            namespace=namespace,
            registry=registry,
            buckets=BUCKETS,
        )
        self.producers = _Producers(namespace)
        registry.register(self.producers)
        self.flow = _Flow(namespace)
        registry.register(self.flow)
        self.server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def attach(self) -> None:
        add_middleware(HANDLER_ID, self)
        telemetry.attach(
            HANDLER_ID, ["oban.node.start", "oban.node.stop", "oban.flow.usage"], self.handle
        )

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        if job.attempted_at is not None and job.scheduled_at is not None:
            wait = (job.attempted_at - job.scheduled_at).total_seconds()
            self.queue_time.labels(job.queue, job.worker).observe(max(wait, 0.0))
        started = time.monotonic()
        outcome = await call_next()
        seconds = time.monotonic() - started
        self.jobs.labels(job.queue, job.worker, outcome.state).inc()
        self.duration.labels(job.queue, job.worker, outcome.state).observe(seconds)
        return outcome

    def handle(self, event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        if event == "oban.flow.usage":
            self.flow.record(meta)
        elif event == "oban.node.start":
            self.producers.nodes.add(meta["oban"])
        elif event == "oban.node.stop":
            self.producers.nodes.discard(meta["oban"])
            self.flow.forget(meta["oban"])

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` (any path) on a daemon thread; returns the bound port."""
        self.server, self._thread = start_http_server(port, addr, registry=self.registry)
        return int(self.server.server_port)

    def close(self) -> None:
        """Detach from telemetry and the middleware, stop the HTTP server and unregister the
        collectors."""
        remove_middleware(HANDLER_ID)
        telemetry.detach(HANDLER_ID)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for collector in (self.jobs, self.duration, self.queue_time, self.producers, self.flow):
            self.registry.unregister(collector)


def instrument(
    registry: CollectorRegistry | None = None,
    *,
    port: int | None = None,
    addr: str = "127.0.0.1",
    namespace: str = "oban",
) -> Metrics:
    """Collect job and producer metrics into ``registry`` (the default one when None), and serve
    them over HTTP when ``port`` is given (0 picks a free port: read ``metrics.server``)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    metrics = Metrics(registry, namespace)
    metrics.attach()
    if port is not None:
        metrics.serve(port, addr)
    return metrics
