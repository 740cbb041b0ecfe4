"""The ``oban.flow.usage`` telemetry event: every ``flow_usage_interval``, what each
flow-limited queue this node runs uses of its cluster-wide limits (``oban_py.flow.usage``).

Who reads: each node, for the limited queues it runs, one statement per queue per interval,
and only while a handler listens for the event (the Prometheus integration, an application's
own), so a node nobody listens to pays nothing. Never per job, never in a claim. The figures
are the cluster's, the same on every node that runs the queue (a dashboard takes their max
across nodes): each node reads them for itself, not the leader for all, because only the nodes
running a queue know its limits, and a leader that does not run it would report nothing.
"""

from __future__ import annotations

from typing import Any

from oban_py import telemetry
from oban_py.cluster.contract import NodeLike
from oban_py.cluster.periodic import Periodic
from oban_py.flow import usage

#: The event: measurements ``executing`` (global limit) and ``started`` (rate limit), for the
#: limits the queue has; metadata ``queue``, ``node``, ``oban`` and ``usage`` (a list of
#: ``oban_py.flow.usage.Usage``, per partition).
EVENT = "oban.flow.usage"


class FlowMeter(Periodic):
    kind = "oban.flow"

    def __init__(self, oban: NodeLike) -> None:
        super().__init__(oban.config.flow_usage_interval)
        self.oban = oban

    async def tick(self) -> int:
        """Read and report each limited queue; the number reported."""
        if not telemetry.listening(EVENT):
            return 0
        limited = [
            (queue, flow)
            for queue, producer in list(self.oban.producers.items())
            if (flow := getattr(producer, "flow", None)) is not None
        ]
        if not limited:
            return 0
        config = self.oban.config
        ttl = config.lifeline.heartbeat_ttl
        readings: list[tuple[str, list[usage.Usage]]] = []
        async with self.oban.pool.connection() as conn:
            for queue, flow in limited:
                found = await usage.read(conn, self.oban.queries, queue, flow, ttl=ttl)
                readings.append((queue, found))
        for queue, found in readings:
            measurements: dict[str, Any] = {
                "executing" if each.limit == "global" else "started": each.used for each in found
            }
            metadata = {"queue": queue, "node": config.node, "oban": self.oban, "usage": found}
            telemetry.execute(EVENT, measurements, metadata)
        return len(readings)
