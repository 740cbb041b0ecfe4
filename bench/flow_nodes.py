"""Drain rate of several ``oban-py start`` processes on one queue, with a ``global_limit`` and
without, as interleaved pairs: what cluster-wide enforcement costs when nodes contend for it.
With ``--processes N``: one ``oban-py start`` command with one node process against the same
command with N (``start --processes N``), no global limit: how a node scales with the cores.

    python -m bench.flow_nodes [--nodes 4] [--pairs 3] [--limit 50] [--jobs 20000]
    python -m bench.flow_nodes --processes 2 [--pairs 3] [--limit 50] [--jobs 20000]

Each node process runs the queue with a local limit of ``--limit``; the limited side adds a
global limit of the same value (so the cluster may run ``--limit`` jobs at once, not ``nodes *
limit``). Every drain is checked in the database: each job completed on its first attempt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import db
from bench.pairs import interleaved, rates_line, ratios_line

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
    parser.add_argument("--processes", type=int, default=0)
    args = parser.parse_args()
    plain = f"bench:{args.limit}"
    # Each side: (label, commands, --queues, --processes of each command).
    if args.processes:
        sides = [
            ("1 process", 1, plain, 1),
            (f"{args.processes} processes", 1, plain, args.processes),
        ]
    else:
        limited = f"{plain}:global={args.limit}"
        sides = [("plain", args.nodes, plain, 1), ("global_limit", args.nodes, limited, 1)]
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}", flush=True)
    rates: dict[str, list[float]] = {side[0]: [] for side in sides}
    ratios: list[float] = []
    with db.BenchDatabase.fresh() as bench:
        for pair, order in interleaved(args.pairs, sides):
            found = {label: drain(bench, n, queues, args.jobs, p) for label, n, queues, p in order}
            for label, rate in found.items():
                rates[label].append(rate)
            (first, second) = (found[sides[0][0]], found[sides[1][0]])
            ratios.append(second / first)
            shown = ", ".join(f"{label} {found[label]:,.0f} jobs/s" for label, *_ in sides)
            print(f"pair {pair}: {shown}, ratio {ratios[-1]:.3f}", flush=True)
    for label, values in rates.items():
        print(rates_line(label, values))
    print(f"{ratios_line('ratio', ratios)}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
