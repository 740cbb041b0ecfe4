"""Bulk insert of this checkout against another one, in CPU per job, as interleaved pairs.

    python -m bench.insert_ab /path/to/other/checkout [--pairs 3] [--size 20000] [--reps 3]

Each side runs in a process of its own (the other checkout with this venv, its own ``oban_py``
first on the path), the order alternating between pairs. A run builds ``size`` jobs with
``Worker.new`` and inserts them with one ``enqueue_many`` call, ``reps`` times, and reports
medians of: the build's CPU per job, the client's CPU per job during the call, the server's
(the backend serving the call, from ``/proc/<pid>/schedstat``, so a local server only) and the
wall rate of build + call. On a shared machine wall rates swing with the other sessions' load;
CPU per job moves far less, which makes it the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import db
from bench.pairs import interleaved
from bench.scenarios import BenchFailure, summary

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("build_us", "call_client_us", "call_server_us", "built_rate")


def _oncpu(pid: int) -> float:
    # Nanoseconds on the CPU, the first field of schedstat: finer than the ticks of /proc/stat.
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def _measure(dsn: str, size: int, reps: int) -> dict[str, float]:
    from oban_py import Client, Job, worker

    @worker(queue="idle", name="Bench.Noop")
    class Noop:
        async def process(self, job: Job) -> None:
            pass

    bench = db.BenchDatabase(dsn)
    bench.create()
    found: dict[str, list[float]] = {name: [] for name in FIGURES}
    try:
        async with Client(dsn=bench.dsn, name="bench.insert_ab") as client:
            conn = await psycopg.AsyncConnection.connect(bench.dsn, autocommit=True)
            pid = conn.info.backend_pid
            await client.enqueue_many([Noop.new({"i": 0}), Noop.new({"i": 1})], conn=conn)
            for _ in range(reps):
                bench.reset()
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                jobs = [Noop.new({"i": i}) for i in range(size)]
                c1, s1 = time.process_time(), _oncpu(pid)
                inserted = await client.enqueue_many(jobs, conn=conn)
                t2, c2, s2 = time.perf_counter(), time.process_time(), _oncpu(pid)
                if len(inserted) != size or bench.one("SELECT count(*) FROM oban_jobs") != size:
                    raise BenchFailure(f"the bulk call did not store {size} jobs")
                found["build_us"].append((c1 - c0) / size * 1e6)
                found["call_client_us"].append((c2 - c1) / size * 1e6)
                found["call_server_us"].append((s2 - s1) / size * 1e6)
                found["built_rate"].append(size / (t2 - t0))
                del jobs, inserted
            await conn.close()
    finally:
        bench.drop()
    return {name: statistics.median(values) for name, values in found.items()}


def _run(tree: Path | None, size: int, reps: int) -> dict[str, float]:
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.insert_ab", "--child", str(size), str(reps)],
        cwd=tree or ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchFailure(f"insert run failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        size, reps = int(sys.argv[2]), int(sys.argv[3])
        print(json.dumps(asyncio.run(_measure(db.server_dsn(), size, reps))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.insert_ab", description=__doc__)
    parser.add_argument("other", type=Path, help="another checkout of this repository")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3, help="bulk calls per run (median)")
    args = parser.parse_args()
    sides: dict[str, dict[str, list[float]]] = {
        side: {name: [] for name in FIGURES} for side in ("this", "other")
    }
    for pair, order in interleaved(args.pairs, ("this", "other")):
        found: dict[str, Any] = {}
        for side in order:
            found[side] = _run(
                None if side == "this" else args.other.resolve(), args.size, args.reps
            )
            for name in FIGURES:
                sides[side][name].append(found[side][name])
        print(
            f"pair {pair} ({order[0]} first): "
            + "; ".join(
                f"{side}: build {f['build_us']:.2f} µs, call client {f['call_client_us']:.2f}"
                f" + server {f['call_server_us']:.2f} µs/job, {f['built_rate']:,.0f} jobs/s"
                for side, f in found.items()
            ),
            flush=True,
        )
    for side, figures in sides.items():
        text = ", ".join(
            f"{name} {'/'.join(f'{v:,.2f}' for v in summary(values))}"
            for name, values in figures.items()
        )
        print(f"{side:>5} (min/median/max): {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
