"""The cost of enforcing a global limit: drain rate of one node on a queue with
``global_limit`` equal to its local limit (so the limit never binds and only the enforcement is
measured) against the same queue without it, as interleaved pairs.

    python -m bench.flow_ab [--pairs 4] [--concurrency 50] [--jobs 20000] [--against DIR]

``--against DIR`` also drains the limited queue with another checkout's ``oban_py`` (say
``main``) in each round, so a change to the enforcement is measured before and after, each
against the same plain drain.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import db, scenarios
from bench.pairs import interleaved, rates_line, ratios_line


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_ab", description=__doc__)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--against", type=Path, help="another checkout's root, e.g. ../main")
    args = parser.parse_args()
    limited = {"global_limit": {"allowed": args.concurrency}}
    # side -> (queue options, tree: None for this one)
    sides: dict[str, tuple[dict[str, Any] | None, Path | None]] = {
        "plain": (None, None),
        "global": (limited, None),
    }
    if args.against is not None:
        sides["global@against"] = (limited, args.against.resolve())
    rates: dict[str, list[float]] = {side: [] for side in sides}
    with db.BenchDatabase.fresh() as bench:
        for pair, order in interleaved(args.pairs, list(sides)):
            found = {}
            for side in order:
                options, tree = sides[side]
                found[side] = scenarios.drain(
                    bench,
                    args.concurrency,
                    args.jobs,
                    uvloop=True,
                    queue_options=options,
                    tree=tree,
                )["db_rate"]
                rates[side].append(found[side])
            figures = ", ".join(
                f"{side} {found[side]:,.0f} jobs/s ({found[side] / found['plain']:.3f})"
                for side in sides
            )
            print(f"round {pair}: {figures}", flush=True)
    for side, values in rates.items():
        print(rates_line(side, values))
    for side in sides:
        if side != "plain":
            ratios = [g / p for g, p in zip(rates[side], rates["plain"], strict=True)]
            print(ratios_line(f"{side}/plain", ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
