"""The scenarios. Each returns its figures as a dict; every count is checked in the database."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import psycopg

from bench.db import BenchDatabase
from oban_py import Client, Job

ROOT = Path(__file__).resolve().parent.parent


class Probe(Protocol):
    """Reads counters around a drain: ``before`` the node starts, ``after`` it exited."""

    def before(self) -> None: ...

    def after(self) -> None: ...


class BenchFailure(Exception):
    """The database contradicts what the benchmark expected: a correctness bug."""


def _node(mode: str, opts: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.node", mode, json.dumps(opts)]


def drain(
    bench: BenchDatabase,
    concurrency: int,
    count: int,
    *,
    uvloop: bool,
    web: bool = True,
    tree: Path | None = None,
    queue_options: dict[str, Any] | None = None,
    probe: Probe | None = None,
    wrap: list[str] | None = None,
    after_id: int = 0,
) -> dict[str, Any]:
    """Fill a queue, start a node in a subprocess, and measure it draining the queue.

    ``web`` is the node's ``Config.web``: whether it publishes metrics, crontab and gossip.
    ``tree`` runs the node from another checkout of this repository (its ``oban_py`` and
    ``bench/node.py``, first on the path), for A/B pairs of two versions on the same venv.
    ``probe`` is told right before the node starts and right after it exited (counters read
    around the drain alone); ``wrap`` goes in front of the node's command (a profiler).
    ``after_id`` keeps the rows up to that id (a retained history the caller made and reset):
    the drain is the rows above it, and only they are checked.
    """
    if not after_id:
        bench.reset()
    bench.fill("bench", count)
    opts = {"dsn": bench.dsn, "queue": "bench", "concurrency": concurrency, "count": count}
    opts["after_id"] = after_id
    opts["uvloop"] = uvloop
    opts["web"] = web
    if queue_options:
        opts["queue_options"] = queue_options
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    if probe is not None:
        probe.before()
    out = subprocess.run(
        [*(wrap or []), *_node("drain", opts)],
        cwd=tree or ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if probe is not None:
        probe.after()
    if out.returncode != 0:
        raise BenchFailure(f"node failed:\n{out.stderr[-3000:]}")
    # The node's figures are its last JSON line (a ``wrap`` may print after it).
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    figures: dict[str, Any] = json.loads(lines[-1])
    completed = bench.one(
        "SELECT count(*) FROM oban_jobs WHERE state = 'completed' AND id > %s", (after_id,)
    )
    seen = bench.one("SELECT count(*) FROM bench_seen")
    unknown = bench.one(
        "SELECT count(*) FROM bench_seen s LEFT JOIN oban_jobs j USING (id) WHERE j.id IS NULL"
    )
    once = bench.one("SELECT count(*) FROM oban_jobs WHERE attempt <> 1 AND id > %s", (after_id,))
    if completed != count or seen != count or unknown or once:
        raise BenchFailure(
            f"drain c={concurrency}: inserted {count}, completed {completed}, ran {seen}, "
            f"unknown ids {unknown}, attempt <> 1: {once}"
        )
    span = bench.one(
        "SELECT extract(epoch FROM max(completed_at) - min(attempted_at))::float8"
        " FROM oban_jobs WHERE id > %s",
        (after_id,),
    )
    figures["db_rate"] = count / span
    figures["wall_rate"] = count / figures["wall"]
    figures["node_us_per_job"] = figures["node_cpu"] / count * 1e6
    if figures["server_cpu"] is not None:
        figures["server_us_per_job"] = figures["server_cpu"] / count * 1e6
    return figures


def _job(queue: str, **args: Any) -> Job:
    return Job(worker="Bench.Noop", queue=queue, args=args)


async def bulk_insert(bench: BenchDatabase, batches: int, size: int = 5_000) -> dict[str, Any]:
    """``enqueue_many`` of ``size`` jobs, ``batches`` times: the call alone, and with building
    the ``Job`` objects."""
    bench.reset()
    async with Client(dsn=bench.dsn, name="bench.bulk") as client:
        await client.enqueue_many([_job("idle")])  # opens the pool, warms the statement
        call = total = 0.0
        for _ in range(batches):
            t0 = time.perf_counter()
            jobs = [_job("idle", n=i) for i in range(size)]
            t1 = time.perf_counter()
            inserted = await client.enqueue_many(jobs)
            t2 = time.perf_counter()
            call += t2 - t1
            total += t2 - t0
            assert len(inserted) == size
    stored = bench.one("SELECT count(*) FROM oban_jobs") - 1
    if stored != batches * size:
        raise BenchFailure(f"bulk insert stored {stored} of {batches * size}")
    return {"rate": stored / call, "rate_with_build": stored / total}


async def single_insert(bench: BenchDatabase, count: int) -> dict[str, Any]:
    """Sequential ``enqueue`` calls, next to the server's own rate of single-row INSERTs sent
    one at a time over one connection (the round-trip bound)."""
    bench.reset()
    async with Client(dsn=bench.dsn, name="bench.single") as client:
        for _ in range(20):
            await client.enqueue(_job("idle"))
        t0 = time.perf_counter()
        for _ in range(count):
            await client.enqueue(_job("idle"))
        ours = time.perf_counter() - t0
    async with await psycopg.AsyncConnection.connect(bench.dsn, autocommit=True) as conn:
        query = "INSERT INTO oban_jobs (queue, worker, args) VALUES ($1, $2, $3::jsonb)"
        query = query.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")
        for _ in range(20):
            await conn.execute(query, ("idle", "Bench.Noop", "{}"), prepare=True)
        t0 = time.perf_counter()
        for _ in range(count):
            await conn.execute(query, ("idle", "Bench.Noop", "{}"), prepare=True)
        raw = time.perf_counter() - t0
    stored = bench.one("SELECT count(*) FROM oban_jobs")
    if stored != 2 * (count + 20):
        raise BenchFailure(f"single insert stored {stored} of {2 * (count + 20)}")
    return {"rate": count / ours, "server_rate": count / raw, "ratio": raw / ours}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p99": at(0.99), "max": ordered[-1] * 1000}


async def latency(
    bench: BenchDatabase, probes: int, load_rate: int, *, uvloop: bool
) -> dict[str, Any]:
    """Insert → start latency of ``probes`` jobs (the clock starts before the enqueue call),
    on an idle node or while ``load_rate`` jobs/s are inserted into another queue of it."""
    bench.reset()
    opts = {"dsn": bench.dsn, "uvloop": uvloop}
    proc = await asyncio.create_subprocess_exec(
        *_node("serve", opts),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    ready = await asyncio.wait_for(proc.stdout.readline(), 30)
    if ready.strip() != b"ready":
        raise BenchFailure(f"latency node did not start: {ready!r}")
    loaded = 0
    async with Client(dsn=bench.dsn, name="bench.latency") as client:
        await client.enqueue(Job(worker="Bench.Probe", queue="warm", args={"t0": 0}))
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal loaded
            # 200 batches a second, paced on an absolute schedule so slow calls catch up.
            per_batch, period = max(1, load_rate // 200), 0.005
            start = time.monotonic()
            while not stop.is_set():
                await client.enqueue_many([_job("load") for _ in range(per_batch)])
                loaded += per_batch
                delay = start + loaded / per_batch * period - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

        loader = asyncio.create_task(load()) if load_rate else None
        t_load = time.monotonic()
        await asyncio.sleep(0.3 if load_rate else 0.05)
        for _ in range(probes):
            job = Job(worker="Bench.Probe", queue="lat", args={"t0": time.monotonic()})
            await client.enqueue(job)
            await asyncio.sleep(0.004 if load_rate else 0.003)
        await asyncio.sleep(0.3)
        stop.set()
        if loader is not None:
            await loader
        load_time = time.monotonic() - t_load
    # Give the node time to start the last probes, then stop it and read what it measured.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = bench.one(
            "SELECT count(*) FROM oban_jobs WHERE queue = 'lat' AND state = 'completed'"
        )
        if started >= probes:
            break
        await asyncio.sleep(0.02)
    proc.stdin.write(b"stop\n")
    await proc.stdin.drain()
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    figures = json.loads(out.decode().strip().splitlines()[-1])
    lat = figures["latencies"]
    if len(lat) != probes:
        raise BenchFailure(f"latency: {len(lat)} of {probes} probes ran")
    result: dict[str, Any] = _percentiles(lat)
    if load_rate:
        result["load_rate"] = loaded / load_time
    return result


def summary(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)
