"""Execution metrics the nodes publish on ``metrics``, kept in memory as compacted time series.

Oban Web charts come from oban_met, whose recorder listens on ``metrics`` and stores each metric
under its labels plus the publishing node; the dashboard does the same, so its charts show every
node that publishes (Python nodes with ``web`` on, Elixir nodes with oban_met) and cost the
database nothing: no row of ``oban_jobs`` is read, whatever its size.

Three series are kept, per ``(series, queue, worker, node, state)``: ``exec_count`` (a gauge,
summed) and the DDSketches ``exec_time`` and ``wait_time`` (bins merged). Like oban_met's
compaction, recent points are fine and older ones coarse (``TIERS``: 5 s over the last 5 min,
15 s to 15 min, 1 min to 1 h, 3 min up to ``RETENTION``), so a key holds at most 185 points,
each window reads 60 to 145 of them, and keys are capped at ``MAX_KEYS``: memory and the cost
of a chart are bounded whatever the traffic. History starts when the dashboard starts listening
(oban_met hands history over between its own recorders; nothing here does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: oban_met's sketch: 2 % relative error (``oban_py.cluster.met``).
GAMMA = 1.02 / 0.98

#: Seconds of history kept (oban_met keeps about 3 h 25 min at its coarsest step).
RETENTION = 3 * 3600
#: (age up to, seconds per point): each window's step is a multiple of the steps it covers.
TIERS = ((300, 5), (900, 15), (3600, 60), (RETENTION, 180))
#: How often points are moved to their coarser tier.
COMPACT_EVERY = 60
#: Label combinations kept at most; a metric for a further one is dropped (and counted).
MAX_KEYS = 2_000
#: A sketch's bins are integers of a natural magnitude: ln(1e18 ns) / ln(GAMMA) is about 1,036.
MAX_BIN = 4_000

SERIES = ("exec_count", "exec_time", "wait_time")
LABELS = ("queue", "worker", "node", "state")
#: States of a failed attempt, as oban_met labels them.
FAILED = ("retryable", "discarded")

#: window name -> (seconds shown, seconds per point): every window draws 60 points.
WINDOWS: dict[str, tuple[int, int]] = {
    "5m": (300, 5),
    "15m": (900, 15),
    "1h": (3600, 60),
    "3h": (10_800, 180),
}

Key = tuple[str, str, str, str, str]
Sketch = dict[int, int]
Value = int | Sketch


def step_for(age: int) -> int:
    """Seconds per point for a point ``age`` seconds old."""
    return next((step for upto, step in TIERS if age <= upto), TIERS[-1][1])


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """oban_met's sketch quantile: the value of the first bin reaching ``q`` of the samples."""
    size = sum(sketch.values())
    if size == 0:
        return None
    target, seen = size * q, 0
    for index in sorted(sketch):
        seen += sketch[index]
        if seen >= target:
            return 2 * GAMMA**index / (GAMMA + 1)
    return None


def _label(metric: Mapping[str, Any], name: str) -> str | None:
    value = metric.get(name, "")
    return value if isinstance(value, str) and len(value) <= 255 else None


def _count(value: Any) -> int | None:
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, list):
        return None
    total = 0
    for n in data:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return None
        total += n
    return total


def _sketch(value: Any) -> Sketch | None:
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, dict):
        return None
    bins: Sketch = {}
    for raw, n in data.items():
        try:
            index = int(raw)
        except (TypeError, ValueError):
            return None
        if abs(index) > MAX_BIN or isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return None
        bins[index] = n
    return bins


def _merge(into: dict[int, Value], at: int, value: Value) -> None:
    have = into.get(at)
    if have is None:
        into[at] = dict(value) if isinstance(value, dict) else value
    elif isinstance(have, dict) and isinstance(value, dict):
        _merge_sketch(have, value)
    elif isinstance(have, int) and isinstance(value, int):
        into[at] = have + value


@dataclass
class Activity:
    """Executions per point (oldest first) for the overview: completed, and failed attempts."""

    completed: list[int]
    failed: list[int]

    @property
    def failure_rate(self) -> float | None:
        total = sum(self.completed) + sum(self.failed)
        return None if total == 0 else sum(self.failed) / total


@dataclass(frozen=True)
class Query:
    """What a chart shows: ``group`` is a label; ``filters`` (label, value) pairs."""

    window: str = "1h"
    group: str = "state"
    filters: tuple[tuple[str, str], ...] = ()


@dataclass
class Slice:
    """A query's answer: per group value, executions per point and run/wait-time sketches."""

    window: str
    step: int
    points: int
    counts: dict[str, list[int]] = field(default_factory=dict)
    exec_time: dict[str, list[Sketch]] = field(default_factory=dict)
    wait_time: dict[str, list[Sketch]] = field(default_factory=dict)

    def total(self, group: str) -> int:
        return sum(self.counts.get(group, ()))

    def overall(self, series: str, group: str, q: float) -> float | None:
        """The ``q`` quantile of ``series`` over the whole window, in milliseconds."""
        merged: Sketch = {}
        for sketch in getattr(self, series).get(group, ()):
            for index, n in sketch.items():
                merged[index] = merged.get(index, 0) + n
        value = quantile(merged, q)
        return None if value is None else value / 1e6

    def percentiles(self, series: str, q: float) -> dict[str, list[float | None]]:
        """Per group, the ``q`` quantile of ``series`` at each point, in milliseconds."""
        out: dict[str, list[float | None]] = {}
        for group, sketches in getattr(self, series).items():
            values = [quantile(s, q) for s in sketches]
            out[group] = [None if v is None else v / 1e6 for v in values]
        return out


class MetricSeries:
    """The ``metrics`` payloads heard, as bounded time series; ``heard`` is the listener."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._points: dict[Key, dict[int, Value]] = {}
        self._compacted_at = 0
        #: metrics dropped: malformed, too old, or beyond ``MAX_KEYS``
        self.dropped = 0
        #: payloads heard (read by tests and the page's "since" note)
        self.heard_count = 0

    def heard(self, payload: Mapping[str, Any]) -> None:
        """One notification on ``metrics``: ``{"metrics": [...], "node", "time"}``."""
        now = int(self.clock())
        metrics, node, at = payload.get("metrics"), payload.get("node"), payload.get("time")
        if not isinstance(metrics, list) or not isinstance(node, str) or len(node) > 255:
            return
        if isinstance(at, bool) or not isinstance(at, int):
            return
        self.heard_count += 1
        # A node's clock ahead of ours must not put points in the future.
        at = min(at, now)
        if at < now - RETENTION:
            self.dropped += len(metrics)
            return
        bucket = at - at % step_for(now - at)
        for metric in metrics:
            if not self._store(metric, node, bucket):
                self.dropped += 1
        if now - self._compacted_at >= COMPACT_EVERY:
            self.compact(now)

    def _store(self, metric: Any, node: str, bucket: int) -> bool:
        if not isinstance(metric, dict):
            return False
        series = metric.get("series")
        if series not in SERIES:
            # full_count (the leader's table counts) is not an execution: not charted here.
            return series == "full_count"
        queue, worker, state = (_label(metric, n) for n in ("queue", "worker", "state"))
        if queue is None or worker is None or state is None:
            return False
        value: Value | None = (
            _count(metric.get("value")) if series == "exec_count" else _sketch(metric.get("value"))
        )
        if value is None:
            return False
        key: Key = (series, queue, worker, node, state)
        points = self._points.get(key)
        if points is None:
            if len(self._points) >= MAX_KEYS:
                return False
            points = self._points[key] = {}
        _merge(points, bucket, value)
        return True

    def compact(self, now: int) -> None:
        """Points moved to the step of their age's tier; history beyond ``RETENTION`` and keys
        left empty dropped."""
        self._compacted_at = now
        keep_since = now - RETENTION
        for key, points in list(self._points.items()):
            for at in list(points):
                if at < keep_since:
                    del points[at]
                    continue
                to = at - at % step_for(now - at)
                if to != at:
                    _merge(points, to, points.pop(at))
            if not points:
                del self._points[key]

    @property
    def keys(self) -> int:
        """Label combinations kept."""
        return len(self._points)

    @property
    def stored(self) -> int:
        """Points kept, all keys together (what memory grows with)."""
        return sum(len(points) for points in self._points.values())

    def labels(self, name: str) -> list[str]:
        """Values of label ``name`` seen within the retention (the page's filter choices)."""
        index = 1 + LABELS.index(name)
        return sorted({key[index] for key in self._points})

    def timeslice(self, query: Query, series: tuple[str, ...] = SERIES) -> Slice:
        """The window's points of ``series`` grouped by ``query.group``, oldest first, the last
        being now."""
        span, step = WINDOWS[query.window]
        points = span // step
        now = int(self.clock())
        end = now - now % step
        since = end - (points - 1) * step
        group_at = 1 + LABELS.index(query.group)
        filters = [(1 + LABELS.index(name), value) for name, value in query.filters]
        result = Slice(query.window, step, points)
        for key, values in self._points.items():
            if key[0] not in series or any(key[i] != value for i, value in filters):
                continue
            inside = [(at, value) for at, value in values.items() if at >= since]
            if not inside:
                continue
            group = key[group_at] or "—"
            if key[0] == "exec_count":
                row = result.counts.get(group)
                if row is None:
                    row = result.counts[group] = [0] * points
                for at, value in inside:
                    if isinstance(value, int):
                        row[min(points - 1, (at - since) // step)] += value
                continue
            table = result.exec_time if key[0] == "exec_time" else result.wait_time
            sketches = table.get(group)
            if sketches is None:
                sketches = table[group] = [{} for _ in range(points)]
            for at, value in inside:
                if isinstance(value, dict):
                    _merge_sketch(sketches[min(points - 1, (at - since) // step)], value)
        result.counts = dict(sorted(result.counts.items()))
        result.exec_time = dict(sorted(result.exec_time.items()))
        result.wait_time = dict(sorted(result.wait_time.items()))
        return result

    def activity(self) -> Activity:
        """The overview's last hour: completed executions and failed attempts per minute."""
        by_state = self.timeslice(Query(window="1h", group="state"), ("exec_count",)).counts
        points = WINDOWS["1h"][0] // WINDOWS["1h"][1]
        zero = [0] * points
        failed = [sum(col) for col in zip(*(by_state.get(s, zero) for s in FAILED), strict=True)]
        return Activity(list(by_state.get("completed", zero)), failed)


def _merge_sketch(into: Sketch, value: Sketch) -> None:
    get = into.get
    for index, n in value.items():
        into[index] = get(index, 0) + n


def parse_query(params: Mapping[str, str], labels: Iterable[str] = LABELS) -> Query:
    """A chart query from the page's parameters; anything unknown falls back to the default."""
    window = params.get("window", "1h")
    group = params.get("group", "state")
    filters = tuple(
        (name, params[name][:255]) for name in labels if name != group and params.get(name)
    )
    return Query(
        window=window if window in WINDOWS else "1h",
        group=group if group in LABELS else "state",
        filters=filters,
    )
