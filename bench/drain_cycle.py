"""What a drain's fetch cycle waits on: the claim round trip, the jobs, the acks.

    python -m bench.drain_cycle [--concurrency 10] [--jobs 20000] [--uvloop]

Drains ``jobs`` no-op jobs as ``bench.scenarios.drain`` does (checked in the database), with
the node instrumented from outside the package: each fetch and each ack statement is
timestamped when sent and when its rows are back, and each job when it ends. Prints, in
milliseconds and counts: the fetch round trip, the gap from a fetch's rows to the next fetch
being sent, the demand each fetch asked for, the share of the drain with a fetch in flight, and
how often a fetch went out while an ack statement was in flight (they share the WAL flush).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import db, scenarios


def _traced_node() -> None:
    """``bench.node`` with timestamps recorded around the fetch and ack statements."""
    import psycopg

    from bench import node
    from oban_py.node import producer as producer_mod

    trace: dict[str, list[Any]] = {"fetch": [], "ack": [], "ends": []}
    execute = psycopg.AsyncCursor.execute

    async def traced_execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        kind = None
        if isinstance(query, bytes):
            if b"FOR UPDATE SKIP LOCKED" in query:
                kind = "fetch"
            elif b"SET state = u.state" in query:
                kind = "ack"
        if kind is None:
            return await execute(self, query, params, **kwargs)
        sent = time.perf_counter()
        out = await execute(self, query, params, **kwargs)
        demand = params.get("demand") if isinstance(params, dict) else None
        trace[kind].append((sent, time.perf_counter(), self.rowcount, demand))
        return out

    psycopg.AsyncCursor.execute = traced_execute  # type: ignore[method-assign]
    run = producer_mod.Producer._run

    async def traced_run(self: Any, running: Any) -> None:
        await run(self, running)
        trace["ends"].append(time.perf_counter())

    producer_mod.Producer._run = traced_run  # type: ignore[method-assign]
    try:
        node.main()
    finally:
        Path(os.environ["DRAIN_CYCLE_TRACE"]).write_text(json.dumps(trace))


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "-"
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"p50 {statistics.median(ordered) * 1000:.3f}  p90 {p90 * 1000:.3f}"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        # Wrapped around ``python -m bench.node drain <opts>``: keep its two arguments.
        sys.argv[1:] = sys.argv[-2:]
        _traced_node()
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.drain_cycle", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".json") as out, db.BenchDatabase.fresh() as bench:
        os.environ["DRAIN_CYCLE_TRACE"] = out.name
        wrap = [sys.executable, "-m", "bench.drain_cycle", "--node"]
        figures = scenarios.drain(bench, args.concurrency, args.jobs, uvloop=args.uvloop, wrap=wrap)
        trace = json.loads(Path(out.name).read_text())
    fetches = [f for f in trace["fetch"] if f[2]]
    acks = trace["ack"]
    ends = sorted(trace["ends"])
    span = ends[-1] - fetches[0][0]
    print(
        f"drain c={args.concurrency}, {args.jobs} jobs: {figures['db_rate']:,.0f} jobs/s (db),"
        f" {len(fetches)} fetches that claimed, {len(acks)} ack statements"
    )
    print(f"  claimed per fetch          mean {args.jobs / len(fetches):.2f}")
    demands = [f[3] for f in fetches if f[3] is not None]
    full = sum(1 for d in demands if d == args.concurrency)
    print(f"  fetches asking for every slot {full} of {len(demands)}")
    print(f"  fetch round trip           {_ms([f[1] - f[0] for f in fetches])}")
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(fetches)]
    print(f"  rows back → next fetch sent {_ms(gaps)}")
    in_flight = sum(f[1] - f[0] for f in fetches)
    print(f"  share of the drain with a fetch in flight {in_flight / span:.1%}")
    print(f"  ack round trip             {_ms([a[1] - a[0] for a in acks])}")
    print(f"  acks per statement         mean {sum(a[2] for a in acks) / max(1, len(acks)):.1f}")
    overlap = sum(1 for f in fetches if any(a[0] < f[0] < a[1] for a in acks))
    print(f"  fetches sent while an ack was in flight {overlap} of {len(fetches)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
