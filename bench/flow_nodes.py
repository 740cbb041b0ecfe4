"""Drain rate of several ``oban-py start`` processes on one queue, with a ``global_limit`` and
without, as interleaved pairs: what cluster-wide enforcement costs when nodes contend for it.

    python -m bench.flow_nodes [--nodes 4] [--pairs 3] [--limit 50] [--jobs 20000]

Each node runs the queue with a local limit of ``--limit``; the limited side adds a global limit
of the same value (so the cluster may run ``--limit`` jobs at once, not ``nodes * limit``). Every
drain is checked in the database: each job completed on its first attempt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import db
from bench.scenarios import summary

ROOT = Path(__file__).resolve().parent.parent
OBAN_PY = Path(sys.executable).with_name("oban-py")
START = [str(OBAN_PY), "start", "--import", "bench.node", "--log-level", "warning"]


def drain(
    bench: db.BenchDatabase, nodes: int, queues: str, count: int, processes: int = 1
) -> float:
    """Jobs/s of ``nodes`` commands, each ``oban-py start --processes <processes>``."""
    bench.reset()
    bench.fill("bench", count)
    env = {**os.environ, "OBAN_DSN": bench.dsn, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    procs = [
        subprocess.Popen(
            [*START, "--queues", queues, "--node", f"bench-{n}", "--processes", str(processes)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(nodes)
    ]
    try:
        deadline = time.monotonic() + 300
        while bench.one("SELECT count(*) FROM oban_jobs WHERE state = 'completed'") < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the drain did not finish in 300 s")
            time.sleep(0.05)
    finally:
        # SIGTERM, not SIGKILL: a supervisor stops its node processes before it exits.
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    again = bench.one("SELECT count(*) FROM oban_jobs WHERE attempt <> 1")
    if again:
        raise RuntimeError(f"{again} jobs ran more than once")
    span = bench.one(
        "SELECT extract(epoch FROM max(completed_at) - min(attempted_at))::float8 FROM oban_jobs"
    )
    return float(count / span)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_nodes", description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    sides = {
        "plain": f"bench:{args.limit}",
        "global": f"bench:{args.limit}:global={args.limit}",
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for pair in range(args.pairs):
            order = list(sides) if pair % 2 == 0 else list(reversed(sides))
            found = {side: drain(bench, args.nodes, sides[side], args.jobs) for side in order}
            for side, rate in found.items():
                rates[side].append(rate)
            print(
                f"pair {pair + 1}: {args.nodes} nodes plain {found['plain']:,.0f} jobs/s,"
                f" global_limit {found['global']:,.0f} jobs/s",
                flush=True,
            )
    finally:
        bench.drop()
    for side, values in rates.items():
        low, mid, high = summary(values)
        print(f"{side}: {low:,.0f} / {mid:,.0f} / {high:,.0f} jobs/s (min / median / max)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
