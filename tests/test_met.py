"""Oban Web sees Python nodes: metrics and crontab published as oban_met 1.3.0 publishes them.

Payloads are read by an independent LISTEN client and decoded here the way oban_met does
(``Z:`` + Base64 gzip; gauges summed; sketch bins turned back into durations with oban_met's
formula), then compared with what oban_met published from a real Elixir node
(``compat_fixtures/oban_met/notifications.json``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from conftest import FIXTURES
from nodekit import wait_for
from psycopg import sql

from oban_py import Cancel, Oban, Snooze, telemetry
from oban_py.cluster.cron import Cron
from oban_py.cluster.cronitor import Cronitor
from oban_py.cluster.duties import build
from oban_py.cluster.met import Metrics, aggregate, fit
from oban_py.config import Config
from oban_py.crontab import CronEntry
from oban_py.job.model import Job
from oban_py.notifier import MAX_PAYLOAD, encode
from oban_py.worker import Worker
from tests.cluster_helpers import node as holder_node

# -- oban_met's own decoding (lib/oban/met/values/sketch.ex, gauge.ex at v1.3.0) ---------------

ERROR = 0.02
GAMMA = (1 + ERROR) / (1 - ERROR)


def bin_value(index: int) -> float:
    """What oban_met reads back from a bin: ``2 * gamma^index / (gamma + 1)``."""
    return 2 * GAMMA**index / (GAMMA + 1)


def sketch_values(value: dict[str, Any]) -> list[float]:
    """Every sample of a sketch as oban_met would give it back, in increasing order."""
    bins = sorted((int(k), n) for k, n in value["data"].items())
    return [bin_value(b) for b, n in bins for _ in range(n)]


def quantile(value: dict[str, Any], q: float) -> float:
    """``Sketch.quantile/2``."""
    target = value["size"] * q
    seen = 0
    for key, count in sorted((int(k), n) for k, n in value["data"].items()):
        if seen + count >= target:
            return bin_value(key)
        seen += count
    raise AssertionError("empty sketch")


def within_error(decoded: float, actual: float) -> bool:
    return abs(decoded - actual) <= ERROR * actual * (1 + 1e-9)


# -- a LISTEN client, like the one that captured the fixtures -----------------------------------


def decode(raw: str) -> dict[str, Any]:
    if raw.startswith("Z:"):
        return dict(json.loads(gzip.decompress(base64.b64decode(raw[2:]))))
    return dict(json.loads(raw))


class Listener:
    def __init__(self) -> None:
        self.notes: list[tuple[str, str, dict[str, Any]]] = []

    def on(self, channel: str, node: str | None = None) -> list[dict[str, Any]]:
        return [
            p for c, _, p in self.notes if c == channel and (node is None or p.get("node") == node)
        ]

    def raw(self, channel: str) -> list[str]:
        return [r for c, r, _ in self.notes if c == channel]


@contextlib.asynccontextmanager
async def listening(dsn: str) -> AsyncIterator[Listener]:
    listener = Listener()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for name in ("metrics", "cronitor", "gossip"):
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"public.oban_{name}")))

    async def run() -> None:
        async for note in conn.notifies():
            name = note.channel.split(".oban_", 1)[1]
            listener.notes.append((name, note.payload, decode(note.payload)))

    task = asyncio.create_task(run())
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


def exec_counts(payloads: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """``Gauge.sum`` of every exec_count, per queue, state and worker."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for payload in payloads:
        for m in payload["metrics"]:
            if m["series"] == "exec_count":
                counts[(m["queue"], m["state"], m["worker"])] += sum(m["value"]["data"])
    return counts


def merged(payloads: list[dict[str, Any]], series: str) -> dict[tuple[str, str, str], Any]:
    """Sketches of one series merged across reports (``Sketch.merge``), per label set."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for payload in payloads:
        for m in payload["metrics"]:
            if m["series"] != series:
                continue
            key = (m["queue"], m["state"], m["worker"])
            acc = out.setdefault(key, {"data": {}, "size": 0})
            for b, n in m["value"]["data"].items():
                acc["data"][b] = acc["data"].get(b, 0) + n
            acc["size"] += m["value"]["size"]
    return out


def labels(payloads: list[dict[str, Any]], label: str, lookback: int = 120) -> list[str]:
    """``Recorder.labels/3``: each metric is stored with its labels plus the payload's node, and
    a label's values are those of metrics stored in the last ``lookback`` seconds."""
    since = int(time.time()) - lookback
    found = set()
    for payload in payloads:
        for m in payload["metrics"]:
            stored = {k: v for k, v in m.items() if k not in ("series", "value")}
            stored["node"] = payload["node"]
            if label in stored and payload["time"] >= since:
                found.add(stored[label])
    return sorted(found)


def fixture() -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = json.loads(
        (FIXTURES / "oban_met" / "notifications.json").read_text()
    )
    return notes


def fixture_payloads(channel: str) -> list[dict[str, Any]]:
    return [n["payload"] for n in fixture() if n["channel"] == f"public.oban_{channel}"]


def shape(value: Any) -> Any:
    """The JSON type skeleton of a value: what must match between Elixir and Python."""
    if isinstance(value, dict):
        # A set: the bins of a sketch differ in number and name, not in kind.
        return frozenset(("<bin>" if k.isdigit() else k, shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("list", frozenset(shape(v) for v in value))
    return type(value).__name__


# -- workers ---------------------------------------------------------------------------------


class Ok(Worker):
    name = "Py.Met.Ok"

    async def process(self, job: Job) -> None:
        return None


class Fails(Worker):
    name = "Py.Met.Fails"

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class Snoozes(Worker):
    name = "Py.Met.Snoozes"

    async def process(self, job: Job) -> Snooze:
        return Snooze(60)


class Cancels(Worker):
    name = "Py.Met.Cancels"

    async def process(self, job: Job) -> Cancel:
        return Cancel("nope")


class Sleeps(Worker):
    name = "Py.Met.Sleeps"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(job.args["ms"] / 1000)


async def insert(
    conn: psycopg.AsyncConnection[Any],
    worker: type[Worker],
    queue: str,
    *,
    max_attempts: int = 20,
    args: dict[str, Any] | None = None,
    due_ago: float = 0.0,
) -> int:
    cur = await conn.execute(
        "INSERT INTO oban_jobs (queue, worker, args, max_attempts, scheduled_at)"
        " VALUES (%s, %s, %s, %s, timezone('UTC', now()) - make_interval(secs => %s))"
        " RETURNING id",
        (queue, worker.__oban_name__, json.dumps(args or {}), max_attempts, due_ago),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def finished(conn: psycopg.AsyncConnection[Any], count: int) -> bool:
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE state <> 'available'")
    row = await cur.fetchone()
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'executing'")
    running = await cur.fetchone()
    return row is not None and running is not None and row[0] == count and running[0] == 0


def py_node(dsn: str, name: str, queues: dict[str, int], **settings: Any) -> Oban:
    return Oban(dsn=dsn, node=name, queues=queues, peer=False, shutdown_grace=1.0, **settings)


# -- metrics ---------------------------------------------------------------------------------


async def test_exec_counts_per_queue_state_and_worker_equal_the_jobs_each_node_finished(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    plan = [
        (Ok, "alpha", 20, 7),
        (Fails, "alpha", 1, 4),  # last attempt: discarded
        (Fails, "alpha", 5, 3),  # retryable
        (Snoozes, "alpha", 20, 2),  # scheduled
        (Cancels, "alpha", 20, 2),  # cancelled
        (Ok, "beta", 20, 5),
    ]
    total = 0
    for worker, queue, max_attempts, n in plan:
        for _ in range(n):
            await insert(conn, worker, queue, max_attempts=max_attempts)
            total += 1
    async with listening(dsn) as listener:
        first = py_node(dsn, "py-met-a", {"alpha": 5})
        second = py_node(dsn, "py-met-b", {"beta": 2})
        await first.start()
        await second.start()
        try:
            await wait_for(lambda: finished(conn, total), timeout=20)
        finally:
            # Stopped at once: what finished since the last report goes out on stop.
            await first.stop()
            await second.stop()
        cur = await conn.execute(
            "SELECT queue, state::text, worker, attempted_by[1], count(*) FROM oban_jobs"
            " GROUP BY 1, 2, 3, 4"
        )
        expected = {n: Counter[tuple[str, str, str]]() for n in ("py-met-a", "py-met-b")}
        for queue, state, worker, by, count in await cur.fetchall():
            expected[by][(queue, state, worker)] = count
        for name in expected:
            await wait_for(
                lambda name=name: exec_counts(listener.on("metrics", name)) == expected[name]
            )
        await asyncio.sleep(0.3)  # nothing counted twice arrives late
        for name in expected:
            assert exec_counts(listener.on("metrics", name)) == expected[name]
    # What Web's node suggestions read: both Python nodes, beside any Elixir node.
    elixir = [p for p in fixture_payloads("metrics") if p["metrics"]]
    heard = listener.on("metrics") + [{**p, "time": int(time.time())} for p in elixir]
    assert labels(heard, "node") == ["elixir-node-1", "py-met-a", "py-met-b"]
    assert labels(listener.on("metrics"), "queue") == ["alpha", "beta"]
    a = expected["py-met-a"]
    assert a[("alpha", "completed", "Py.Met.Ok")] == 7
    assert a[("alpha", "discarded", "Py.Met.Fails")] == 4
    assert a[("alpha", "retryable", "Py.Met.Fails")] == 3
    assert a[("alpha", "scheduled", "Py.Met.Snoozes")] == 2
    assert a[("alpha", "cancelled", "Py.Met.Cancels")] == 2
    assert expected["py-met-b"] == {("beta", "completed", "Py.Met.Ok"): 5}
    now = time.time()
    for payload in listener.on("metrics", "py-met-a"):
        assert payload.keys() == {"metrics", "name", "node", "time"}
        assert payload["name"] == "Oban"
        assert isinstance(payload["time"], int)
        assert abs(payload["time"] - now) < 60


async def test_sketches_decode_to_the_measured_durations_within_the_sketch_error(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Due 4 s and 40 s ago: the wait is known from the rows; the exec time from the job span.
    ids = [
        await insert(conn, Sleeps, "slow", args={"ms": ms}, due_ago=ago)
        for ms, ago in ((5, 4.0), (40, 4.0), (120, 40.0), (40, 40.0))
    ]
    measured: list[int] = []

    def capture(event: str, measurements: Any, meta: Any) -> None:
        measured.append(measurements["duration"])

    telemetry.attach("test_met.capture", "oban.job.stop", capture)
    try:
        async with listening(dsn) as listener:
            async with py_node(dsn, "py-met", {"slow": 4}):
                await wait_for(lambda: finished(conn, len(ids)), timeout=20)
            await wait_for(lambda: sum(exec_counts(listener.on("metrics", "py-met")).values()) == 4)
    finally:
        telemetry.detach("test_met.capture")
    key = ("slow", "completed", "Py.Met.Sleeps")
    exec_time = merged(listener.on("metrics", "py-met"), "exec_time")[key]
    wait_time = merged(listener.on("metrics", "py-met"), "wait_time")[key]
    assert exec_time["size"] == wait_time["size"] == 4

    decoded = sketch_values(exec_time)
    for got, actual in zip(decoded, sorted(measured), strict=True):
        assert within_error(got, actual), (got, actual)
    # Native units are nanoseconds, as on the BEAM: a 120 ms job reads back as about 1.2e8.
    assert 0.98 * 120e6 <= quantile(exec_time, 1.0) < 1.02 * 1.2e9

    cur = await conn.execute(
        "SELECT (extract(epoch FROM attempted_at - scheduled_at) * 1e9)::int8 FROM oban_jobs"
    )
    waits = sorted(r[0] for r in await cur.fetchall())
    for got, actual in zip(sketch_values(wait_time), waits, strict=True):
        assert within_error(got, actual), (got, actual)
    assert quantile(wait_time, 0.5) >= 4e9 * (1 - ERROR)
    assert 40e9 * 0.98 <= quantile(wait_time, 1.0) < 60e9


async def test_metrics_payloads_have_the_shapes_oban_met_publishes(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    for worker, max_attempts in ((Ok, 20), (Fails, 1), (Ok, 20), (Fails, 1)):
        await insert(conn, worker, "ex", max_attempts=max_attempts)
    async with listening(dsn) as listener:
        async with py_node(dsn, "py-met", {"ex": 3}):
            await wait_for(lambda: finished(conn, 4), timeout=20)
            await wait_for(lambda: any(p["metrics"] == [] for p in listener.on("metrics")))
        await wait_for(lambda: sum(exec_counts(listener.on("metrics", "py-met")).values()) == 4)
    ours = listener.on("metrics", "py-met")
    theirs = fixture_payloads("metrics")

    def payload_shapes(payloads: list[dict[str, Any]]) -> set[Any]:
        return {shape({**p, "metrics": []}) for p in payloads}

    def metric_shapes(payloads: list[dict[str, Any]]) -> dict[str, set[Any]]:
        out: dict[str, set[Any]] = {}
        for p in payloads:
            for m in p["metrics"]:
                out.setdefault(m["series"], set()).add(shape(m))
        return out

    assert payload_shapes(ours) == payload_shapes(theirs)
    mine, elixir = metric_shapes(ours), metric_shapes(theirs)
    # full_count comes only from Elixir's leader; every other series is published by each node.
    assert set(mine) == set(elixir) - {"full_count"} == {"exec_count", "exec_time", "wait_time"}
    for series, shapes in mine.items():
        assert shapes == elixir[series], series
    # Elixir's series order within a report: by series, then state, queue and worker.
    for p in ours:
        keys = [(m["series"], m["state"], m["queue"], m["worker"]) for m in p["metrics"]]
        assert keys == sorted(keys)
    # An exec_count gauge holds one 1 per job, as oban_met's Gauge.new(values) does.
    for p in ours + theirs:
        for m in p["metrics"]:
            if m["series"] == "exec_count":
                assert set(m["value"]["data"]) == {1}
            elif m["series"] != "full_count":
                assert sum(m["value"]["data"].values()) == m["value"]["size"]
    # Compressed above 512 bytes, as every payload.
    for raw in listener.raw("metrics"):
        assert raw.startswith("Z:") == (len(json.dumps(decode(raw), separators=(",", ":"))) > 512)


async def test_a_report_too_large_for_one_notify_is_split_and_each_part_fits() -> None:
    # Random worker names so gzip cannot shrink them away.
    rng = random.Random(16)
    samples = [
        ("completed", "q", f"W.{rng.getrandbits(64):016x}", 1_000 + i, 2_000 + i)
        for i in range(3_000)
    ]
    metrics, jobs = aggregate(samples)
    assert jobs == 3_000
    assert len(metrics) == 9_000
    parts = fit({"name": "Oban", "node": "n", "time": 1}, metrics)
    assert len(parts) > 1
    assert all(len(encode(p)) < MAX_PAYLOAD for p in parts)
    assert [m for p in parts for m in p["metrics"]] == metrics
    assert {p["time"] for p in parts} == {1}


# -- the handler, adversarially --------------------------------------------------------------


class Poison:
    @property
    def attempted_by(self) -> list[str]:
        raise RuntimeError("poisoned attribute")


async def test_the_handler_never_raises_and_bad_samples_never_spoil_a_report(dsn: str) -> None:
    async with holder_node(dsn, node="py-met", notifier=False) as holder:
        met = Metrics(holder)
        mine = Job(worker="W", queue="q", attempted_by=["py-met", "uuid"])
        other = Job(worker="W", queue="q", attempted_by=["elsewhere", "uuid"])

        def meta(job: Any = mine, **extra: Any) -> dict[str, Any]:
            return {
                "job": job,
                "queue": "q",
                "worker": "W",
                "state": "completed",
                "prefix": "public",
                **extra,
            }

        good = {"duration": 1_000, "queue_time": 2_000}
        poison: list[tuple[Any, Any]] = [
            ({}, meta()),
            (good, {}),
            (None, None),
            (good, meta(job=None)),
            (good, meta(job=Poison())),
            (good, meta(job=Job(worker="W", queue="q"))),  # never attempted
            (good, meta(job=other)),
            (good, meta(prefix="private")),
            (good, meta(state="executing")),  # interrupted by shutdown: not finished
            (good, meta(state=None)),
            (good, meta(state=["completed"])),
            ({"duration": float("nan"), "queue_time": 1}, meta()),
            ({"duration": float("inf"), "queue_time": 1}, meta()),
            ({"duration": "100", "queue_time": 1}, meta()),
            ({"duration": True, "queue_time": 1}, meta()),
            (good, meta(worker="lone \ud800 surrogate")),
            (good, meta(queue=7)),
        ]
        for measurements, metadata in poison:
            met.record("oban.job.stop", measurements, metadata)  # never raises
        without_prefix = {k: v for k, v in meta().items() if k != "prefix"}
        kept: list[tuple[dict[str, Any], dict[str, Any]]] = [
            (good, without_prefix),
            ({"duration": -5_000, "queue_time": 0}, meta(worker="nul\x00worker")),
            ({"duration": 10**30, "queue_time": 1.5e9}, meta(state="success")),
        ]
        for measurements, metadata in kept:
            met.record("oban.job.exception", measurements, metadata)
        payloads, jobs = met.payloads()
    assert jobs == 3
    (payload,) = payloads
    encode(payload)  # the report encodes: nothing unencodable got in
    counts = exec_counts(payloads)
    assert counts == {("q", "completed", "W"): 2, ("q", "completed", "nul\x00worker"): 1}
    by_worker = {m["worker"]: m["value"] for m in payload["metrics"] if m["series"] == "exec_time"}
    # Negative and zero times are clamped to max(1, abs(v)), as oban_met clamps them.
    assert sketch_values(by_worker["nul\x00worker"]) == [pytest.approx(5_000, rel=ERROR)]
    assert max(sketch_values(by_worker["W"])) == pytest.approx(10**30, rel=ERROR)
    assert met.samples == type(met.samples)()


async def test_a_node_reports_a_job_interrupted_by_shutdown_as_nothing(dsn: str, conn: Any) -> None:
    await insert(conn, Sleeps, "slow", args={"ms": 10_000})
    async with listening(dsn) as listener:
        oban = Oban(dsn=dsn, node="py-met", queues={"slow": 1}, peer=False, shutdown_grace=0.05)
        async with oban:
            await wait_for(lambda: _executing(conn))
        await wait_for(lambda: len(listener.on("metrics", "py-met")) >= 1)
        await asyncio.sleep(0.2)
    assert exec_counts(listener.on("metrics", "py-met")) == {}


async def _executing(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'executing'")
    row = await cur.fetchone()
    return row is not None and row[0] == 1


# -- cronitor --------------------------------------------------------------------------------

CRONTAB = [
    ("* * * * *", "Py.Met.Ok"),
    ("*/5 * * * *", "Py.Met.Ok", {"args": {"n": 1}, "queue": "beta", "max_attempts": 3}),
]


async def test_the_crontab_is_shared_at_start_in_the_shape_of_the_fixture(dsn: str) -> None:
    async with listening(dsn) as listener, py_node(dsn, "py-cron", {}, crontab=CRONTAB):
        await wait_for(lambda: bool(listener.on("cronitor", "py-cron")), timeout=5)
    (ours,) = listener.on("cronitor", "py-cron")
    theirs = fixture_payloads("cronitor")[0]
    assert ours.keys() == theirs.keys() == {"crontab", "name", "node"}
    assert ours["name"] == theirs["name"] == "Oban"
    for entry in ours["crontab"] + theirs["crontab"]:
        expr, worker, opts = entry
        assert isinstance(expr, str)
        assert isinstance(worker, str)
        assert isinstance(opts, dict)
    # Configured entries come first; entries declared by @worker(cron=...) follow.
    plain, with_opts = ours["crontab"][:2]
    assert plain[:2] == ["* * * * *", "Py.Met.Ok"]
    assert set(plain[2]) == {"name"}  # Elixir's entry without options has {}; plus the name
    assert with_opts[2] == {
        "args": {"n": 1},
        "queue": "beta",
        "max_attempts": 3,
        "name": CronEntry.coerce(CRONTAB[1]).name,
    }


async def test_the_shared_cron_name_is_the_one_on_the_jobs_the_entry_inserts(dsn: str) -> None:
    async with holder_node(dsn, node="py-cron", crontab=CRONTAB, notifier=False) as holder:
        shared = Cronitor(holder).payload()["crontab"]
        slot = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
        await Cron(holder).evaluate(slot)
        async with holder.pool.connection() as conn:
            cur = await conn.execute("SELECT meta->>'cron_name' FROM oban_jobs ORDER BY id")
            names = [r[0] for r in await cur.fetchall()]
    configured = [entry[2]["name"] for entry in shared[:2]]
    assert configured == [CronEntry.coerce(spec).name for spec in CRONTAB]
    # Both entries are due at 12:05; every job inserted carries a name the crontab shares.
    assert set(configured) <= set(names) <= {entry[2]["name"] for entry in shared}


async def test_every_node_shares_its_crontab_even_an_empty_one(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No entry declared by a worker decorator elsewhere in this process.
    monkeypatch.setattr("oban_py.crontab._registered", {})
    async with holder_node(dsn, node="py-empty", notifier=False) as holder:
        assert Cronitor(holder).payload() == {"crontab": [], "name": "Oban", "node": "py-empty"}


# -- opting out ------------------------------------------------------------------------------


def test_web_off_builds_no_publishing_duty() -> None:
    class Holder:
        config = Config(web=False)
        pool = queries = notifier = None
        producers: dict[str, object] = {}
        is_leader = False

    kinds = {duty.kind for duty in build(Holder())}  # type: ignore[arg-type]
    assert not kinds & {"oban.metrics", "oban.cronitor", "oban.gossip"}
    assert {"oban.sonar", "oban.stager", "oban.cron"} <= kinds
    Holder.config = Config()
    assert {"oban.metrics", "oban.cronitor", "oban.gossip"} <= {d.kind for d in build(Holder())}  # type: ignore[arg-type]


async def test_web_off_publishes_nothing_for_oban_web(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    for _ in range(5):
        await insert(conn, Ok, "alpha")
    async with listening(dsn) as listener:
        async with py_node(dsn, "py-quiet", {"alpha": 2}, crontab=CRONTAB, web=False):
            assert not any(h.startswith("oban_py.cluster.met.") for h in telemetry._handlers)
            await wait_for(lambda: finished(conn, 5), timeout=20)
            await asyncio.sleep(2.5)  # more than two report intervals
        # A node with Web publishing on, as a witness that the listener hears this database.
        async with py_node(dsn, "py-loud", {}):
            await wait_for(lambda: bool(listener.on("metrics", "py-loud")))
    assert listener.on("metrics", "py-quiet") == []
    assert listener.on("cronitor", "py-quiet") == []
    assert [p for p in listener.on("gossip") if "py-quiet" in json.dumps(p)] == []


async def test_a_stopped_node_detaches_its_handler(dsn: str) -> None:
    async with py_node(dsn, "py-met", {"alpha": 1}):
        assert any(h.startswith("oban_py.cluster.met.") for h in telemetry._handlers)
    assert not any(h.startswith("oban_py.cluster.met.") for h in telemetry._handlers)


class Unanswered:
    """A notifier whose NOTIFY never returns, as when the database went away mid-shutdown."""

    def listen(self, channel: str, callback: Any) -> None:
        return None

    async def notify(self, channel: str, payloads: list[dict[str, Any]]) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        return None


async def test_the_last_report_at_stop_never_holds_up_shutdown(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("oban_py.cluster.met.FINAL_REPORT_TIMEOUT", 0.2)
    async with holder_node(dsn, node="py-met", notifier=False) as holder:
        holder.notifier = Unanswered()
        met = Metrics(holder)
        met.start()
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await met.stop()
        assert time.monotonic() - began < 2.0
        assert met.handler_id not in telemetry._handlers
