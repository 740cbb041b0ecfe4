"""The cost of enforcing a global limit: drain rate of one node on a queue with
``global_limit`` equal to its local limit (so the limit never binds and only the enforcement is
measured) against the same queue without it, as interleaved pairs.

    python -m bench.flow_ab [--pairs 4] [--concurrency 50] [--jobs 20000]
"""

from __future__ import annotations

import argparse

from bench import db, scenarios
from bench.scenarios import summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_ab", description=__doc__)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    sides = {"plain": None, "global": {"global_limit": {"allowed": args.concurrency}}}
    rates: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for pair in range(args.pairs):
            order = list(sides) if pair % 2 == 0 else list(reversed(sides))
            found = {}
            for side in order:
                found[side] = scenarios.drain(
                    bench, args.concurrency, args.jobs, uvloop=True, queue_options=sides[side]
                )["db_rate"]
                rates[side].append(found[side])
            ratio = found["global"] / found["plain"]
            print(
                f"pair {pair + 1}: plain {found['plain']:,.0f} jobs/s, global_limit"
                f" {found['global']:,.0f} jobs/s, global/plain {ratio:.3f}",
                flush=True,
            )
    finally:
        bench.drop()
    for side, values in rates.items():
        low, mid, high = summary(values)
        print(f"{side}: {low:,.0f} / {mid:,.0f} / {high:,.0f} jobs/s (min / median / max)")
    ratios = [g / p for g, p in zip(rates["global"], rates["plain"], strict=True)]
    low, mid, high = summary(ratios)
    print(f"global/plain: {low:.3f} / {mid:.3f} / {high:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
