"""Drain rate of one ``oban-py start`` command with one node process against the same command
with several (``--processes``), as interleaved pairs: how a node scales with the cores.

    python -m bench.processes [--processes 2] [--pairs 3] [--limit 50] [--jobs 20000]

Each node process runs the queue with the local limit ``--limit``, so N processes may run N
times as many jobs at once. The drain is ``bench.flow_nodes.drain``: timed from the database
(first attempt to last completion) and checked there (each job completed on attempt 1).
"""

from __future__ import annotations

import argparse
import os

from bench import db
from bench.flow_nodes import drain
from bench.scenarios import summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.processes", description=__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    sides = (1, args.processes)
    rates: dict[int, list[float]] = {side: [] for side in sides}
    ratios: list[float] = []
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        for pair in range(args.pairs):
            order = sides if pair % 2 == 0 else tuple(reversed(sides))
            found = {n: drain(bench, 1, f"bench:{args.limit}", args.jobs, n) for n in order}
            for side, rate in found.items():
                rates[side].append(rate)
            ratios.append(found[args.processes] / found[1])
            print(
                f"pair {pair + 1}: 1 process {found[1]:,.0f} jobs/s, {args.processes} processes"
                f" {found[args.processes]:,.0f} jobs/s, ratio {ratios[-1]:.3f}",
                flush=True,
            )
    finally:
        bench.drop()
    for side, values in rates.items():
        low, mid, high = summary(values)
        print(f"{side} process(es): {low:,.0f} / {mid:,.0f} / {high:,.0f} jobs/s (min/median/max)")
    low, mid, high = summary(ratios)
    print(f"ratio: {low:.3f} / {mid:.3f} / {high:.3f}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
