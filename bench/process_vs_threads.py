"""CPU-bound jobs in worker processes against worker threads, as interleaved pairs.

    python -m bench.process_vs_threads [--pairs 2] [--jobs 400] [--ms 20] [--limit 2]

Each run inserts ``--jobs`` jobs of about ``--ms`` ms of pure-Python CPU (a loop calibrated
once at start) into a queue of limit ``--limit`` before the node starts, then starts a node in
this process and waits until every job is completed in the database. The two workers are the
same code, one with ``executor="process"``. Wall time runs from ``start()`` to the last
completion seen (polled every 20 ms), so the process side pays for starting its processes;
jobs/s is also read from the database as the drain scenario does (completed / (last
completed_at - first attempted_at)). Pairs alternate their order so drift on a shared machine
falls on both sides; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import psycopg

from bench import db
from bench.pairs import interleaved
from bench.scenarios import summary
from oban_py import Oban
from oban_py.job.model import Job
from oban_py.worker import Worker

QUEUE = "cpu"


def burn(rounds: int) -> int:
    total = 0
    for n in range(rounds):
        total = (total + n * n) % 1_000_003
    return total


def calibrate(ms: float) -> int:
    """Loop rounds that take about ``ms`` ms of CPU here (the best of a few tries)."""
    rounds = 100_000
    best = min(_timed(rounds) for _ in range(5))
    return max(1, int(rounds * ms / 1000 / best))


def _timed(rounds: int) -> float:
    started = time.process_time()
    burn(rounds)
    return time.process_time() - started


class CpuThread(Worker):
    name = "Bench.CpuThread"
    queue = QUEUE

    def process(self, job: Job) -> None:
        burn(job.args["rounds"])


class CpuProcess(Worker):
    name = "Bench.CpuProcess"
    queue = QUEUE
    executor = "process"

    def process(self, job: Job) -> None:
        burn(job.args["rounds"])


def fill(bench: db.BenchDatabase, name: str, jobs: int, rounds: int) -> None:
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args) "
            "SELECT %s, %s, jsonb_build_object('rounds', %s::int) FROM generate_series(1, %s)",
            (QUEUE, name, rounds, jobs),
        )


async def drain(bench: db.BenchDatabase, name: str, jobs: int, limit: int) -> dict[str, float]:
    oban = Oban(dsn=bench.dsn, queues={QUEUE: limit}, peer=False, web=False, poll_interval=0.05)
    async with await psycopg.AsyncConnection.connect(bench.dsn, autocommit=True) as conn:
        started = time.monotonic()
        await oban.start()
        try:
            while True:
                cur = await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")
                row = await cur.fetchone()
                if row is not None and row[0] >= jobs:
                    break
                await asyncio.sleep(0.02)
            wall = time.monotonic() - started
        finally:
            await oban.stop()
    rate = bench.one(
        "SELECT count(*) / extract(epoch FROM max(completed_at) - min(attempted_at))"
        " FROM oban_jobs WHERE state = 'completed'"
    )
    done = bench.one("SELECT count(*) FROM oban_jobs WHERE state = 'completed' AND attempt = 1")
    if done != jobs:
        raise SystemExit(f"{name}: {done} of {jobs} jobs completed at their first attempt")
    return {"wall": wall, "rate": float(rate)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.process_vs_threads", description=__doc__)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--limit", type=int, default=2)
    args = parser.parse_args()
    rounds = calibrate(args.ms)
    print(
        f"{args.jobs} jobs of ~{args.ms:g} ms CPU ({rounds:,} rounds), queue limit {args.limit},"
        f" {os.cpu_count()} cores, load average before: {_load()}",
        flush=True,
    )
    sides = {"threads": CpuThread.__oban_name__, "processes": CpuProcess.__oban_name__}
    found: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    ratios: list[float] = []
    with db.BenchDatabase.fresh() as bench:
        for pair, order in interleaved(args.pairs, list(sides)):
            got: dict[str, dict[str, float]] = {}
            for side in order:
                bench.reset()
                fill(bench, sides[side], args.jobs, rounds)
                got[side] = asyncio.run(drain(bench, sides[side], args.jobs, args.limit))
                found[side].append(got[side])
            ratios.append(got["threads"]["wall"] / got["processes"]["wall"])
            print(
                f"pair {pair} ({order[0]} first): "
                + ", ".join(
                    f"{side} {got[side]['wall']:.2f} s ({args.jobs / got[side]['wall']:,.1f}"
                    f" jobs/s wall, {got[side]['rate']:,.1f} in db)"
                    for side in sides
                )
                + f"; threads/processes wall {ratios[-1]:.2f}x",
                flush=True,
            )
    for side in sides:
        lo, mid, hi = summary([args.jobs / r["wall"] for r in found[side]])
        print(f"{side:>9}: {lo:,.1f} / {mid:,.1f} / {hi:,.1f} jobs/s wall (min / median / max)")
    lo, mid, hi = summary(ratios)
    print(f"speed-up of processes over threads: {lo:.2f} / {mid:.2f} / {hi:.2f}x")
    print(f"load average after: {_load()}")
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
