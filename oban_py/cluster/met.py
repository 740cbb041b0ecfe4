"""Execution metrics for Oban Web, published as oban_met's listener publishes them from Elixir.

Every job this node finishes (telemetry ``oban.job.stop`` and ``oban.job.exception``) adds one
sample, keyed by the state written to its row, its queue and its worker, to three series:

- ``exec_count``: a gauge ``{"data": [1, 1, ...]}``, one ``1`` per job, as oban_met's
  ``Gauge.new(values)`` builds it;
- ``exec_time`` and ``wait_time``: oban_met's DDSketch ``{"data": {"<bin>": count}, "size": n}``
  of the job's ``duration`` and ``queue_time`` in native units (nanoseconds, as on the BEAM),
  with bin ``ceil(ln(v) / ln(gamma))``, ``gamma = 1.02 / 0.98`` (2 % relative error); values
  are clamped to ``max(1, abs(v))`` first, as oban_met clamps them.

Every ``REPORT_INTERVAL`` the node publishes ``{"metrics": [...], "name", "node", "time"}`` on
``metrics`` (also when empty, as oban_met does). oban_met's recorder stores each metric under the
labels ``queue``, ``state``, ``worker`` and ``node``, which is how ``Oban.Met.labels("node")``
(Web's node suggestions) comes to list this node: for 120 s after it last reported a job, like an
Elixir node. A report that would not fit one NOTIFY is split into several with the same
``time``; the recorder merges them (gauges add, sketches merge).

The telemetry handler only appends a tuple to a bounded deque (thread-safe, no allocation beyond
the tuple, never raises); all checking and encoding happens in the once-a-second pass.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from oban_py import notifier, telemetry
from oban_py.cluster.contract import NodeLike, notify
from oban_py.cluster.periodic import Periodic

#: oban_met's listener reports once a second.
REPORT_INTERVAL = 1.0
#: Samples kept between two reports; beyond it the oldest are dropped, so a stalled report
#: cannot grow memory without bound (about 40 s of a 5,000 jobs/s node).
MAX_SAMPLES = 200_000
#: Seconds the last report at stop may take: a database that is gone must not hold up shutdown.
FINAL_REPORT_TIMEOUT = 2.0

JOB_EVENTS = ("oban.job.stop", "oban.job.exception")

#: oban_met's sketch: a hard-coded 2 % relative error.
SKETCH_ERROR = 0.02
GAMMA = (1 + SKETCH_ERROR) / (1 - SKETCH_ERROR)
INV_LOG_GAMMA = 1.0 / math.log(GAMMA)

#: The row state a finished job's event reports, to the label oban_met stores. Elixir's event
#: states (``success``, ``failure``...) are translated as oban_met's ``trans_state`` does; a
#: job released by this node (``available``: interrupted by a shutdown) is not counted.
STATES: dict[str, str] = {
    "completed": "completed",
    "retryable": "retryable",
    "discarded": "discarded",
    "cancelled": "cancelled",
    "scheduled": "scheduled",
    "success": "completed",
    "failure": "retryable",
    "discard": "discarded",
    "exhausted": "discarded",
    "snoozed": "scheduled",
}

#: (state, queue, worker, duration ns, queue_time ns), unchecked: checked when reported.
Sample = tuple[Any, Any, Any, Any, Any]
Key = tuple[str, str, str]


def sketch_bin(value: int) -> int:
    """The oban_met sketch bin of a positive integer (bin 0 holds 1)."""
    return math.ceil(math.log(value) * INV_LOG_GAMMA)


def native(value: Any) -> int:
    """A measurement as oban_met samples it: an integer, ``max(1, abs(value))``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a duration: {value!r}")
    return max(1, abs(int(value)))


def _encodable(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sketch(values: list[int]) -> dict[str, Any]:
    # Counter counts in C: this runs once a second over every job of that second.
    bins = Counter(map(sketch_bin, values))
    return {"data": {str(b): n for b, n in sorted(bins.items())}, "size": len(values)}


def aggregate(samples: list[Sample]) -> tuple[list[dict[str, Any]], int]:
    """oban_met's metrics for ``samples`` and how many samples they count (bad ones are skipped).

    Ordered as oban_met emits them: by series, then state, queue and worker.
    """
    groups: dict[Key, tuple[list[int], list[int]]] = {}
    for state, queue, worker, duration, queue_time in samples:
        try:
            label = STATES.get(state) if type(state) is str else None
            if label is None:
                continue
            # The common case (positive ints) skips the checks of native().
            if type(duration) is not int or duration <= 0:
                duration = native(duration)
            if type(queue_time) is not int or queue_time <= 0:
                queue_time = native(queue_time)
            key = (label, queue, worker)
            group = groups.get(key)
            if group is None:
                if not (_encodable(queue) and _encodable(worker)):
                    continue
                group = groups[key] = ([], [])
        except (TypeError, ValueError, OverflowError):
            continue
        group[0].append(duration)
        group[1].append(queue_time)
    keys = sorted(groups)
    metrics: list[dict[str, Any]] = []
    for name in ("exec_count", "exec_time", "wait_time"):
        for key in keys:
            execs, waits = groups[key]
            if name == "exec_count":
                value: dict[str, Any] = {"data": [1] * len(execs)}
            else:
                value = _sketch(execs if name == "exec_time" else waits)
            state, queue, worker = key
            metrics.append(
                {"queue": queue, "series": name, "state": state, "value": value, "worker": worker}
            )
    return metrics, sum(len(execs) for execs, _ in groups.values())


def fit(base: dict[str, Any], metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Payloads ``{**base, "metrics": part}`` each small enough for one NOTIFY once encoded."""
    payload = {**base, "metrics": metrics}
    if len(metrics) <= 1 or len(notifier.encode(payload)) < notifier.MAX_PAYLOAD:
        return [payload]
    half = len(metrics) // 2
    return fit(base, metrics[:half]) + fit(base, metrics[half:])


class Metrics(Periodic):
    """Collects this node's finished jobs and publishes them on ``metrics`` every second."""

    kind = "oban.metrics"

    def __init__(self, oban: NodeLike, interval: float = REPORT_INTERVAL) -> None:
        super().__init__(interval)
        self.oban = oban
        self.node = oban.config.node
        self.prefix = oban.config.prefix
        self.handler_id = f"oban_py.cluster.met.{id(self)}"
        self.samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)

    def start(self) -> None:
        telemetry.attach(self.handler_id, JOB_EVENTS, self.record)
        super().start()

    async def on_stop(self) -> None:
        telemetry.detach(self.handler_id)
        # Jobs finished in the last second before a graceful stop still reach Web; the notifier
        # is stopped after the duties.
        try:
            async with asyncio.timeout(FINAL_REPORT_TIMEOUT):
                await self.run_once()
        except Exception as error:
            self.log.debug("last metrics report lost", error=repr(error))

    def record(self, event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """The telemetry handler: runs in the job's own task, so it only queues a sample."""
        try:
            # Handlers are process-wide: count only the jobs this node ran, as oban_met
            # matches the event's conf. The prefix is an optional key of the events.
            by = meta["job"].attempted_by
            if by[0] != self.node or meta.get("prefix", self.prefix) != self.prefix:
                return
            self.samples.append(
                (
                    meta["state"],
                    meta["queue"],
                    meta["worker"],
                    measurements["duration"],
                    measurements["queue_time"],
                )
            )
        except Exception:
            # A malformed event is not a job of this node; a handler must never raise.
            return

    def take(self) -> list[Sample]:
        """The samples queued so far, removed from the queue (safe against concurrent appends)."""
        samples = self.samples
        return [samples.popleft() for _ in range(len(samples))]

    def payloads(self) -> tuple[list[dict[str, Any]], int]:
        metrics, jobs = aggregate(self.take())
        config = self.oban.config
        base = {"name": config.name, "node": config.node, "time": int(time.time())}
        return fit(base, metrics), jobs

    async def tick(self) -> int:
        payloads, jobs = self.payloads()
        await notify(self.oban, "metrics", payloads)
        return jobs
