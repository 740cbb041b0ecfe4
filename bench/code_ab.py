"""Drain rate of this checkout against another one, as interleaved pairs on one machine.

    python -m bench.code_ab /path/to/other/checkout [--pairs 4] [--concurrency 50] [--jobs 20000]
                                                    [--asyncio]

The other checkout (``git worktree add /tmp/before <commit>``) runs with this venv, its own
``oban_py`` first on the path. Each pair drains the same number of no-op jobs once with each
tree, the order alternating between pairs so drift on a shared machine falls on both sides;
every drain is checked in the database (``scenarios.drain``). Prints each pair and the
min / median / max of the rates and of the this/other ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import db, scenarios
from bench.pairs import interleaved, rates_line, ratios_line
from bench.scenarios import summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.code_ab", description=__doc__)
    parser.add_argument("other", type=Path, help="another checkout of this repository")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"this": [], "other": []}
    #: CPU µs per job of the node and of the bench database's backends, by side
    cpu: dict[str, list[tuple[float, float]]] = {"this": [], "other": []}
    ratios: list[float] = []
    with db.BenchDatabase.fresh() as bench:
        for pair, order in interleaved(args.pairs, ("this", "other")):
            found = {}
            for side in order:
                tree = None if side == "this" else args.other.resolve()
                figures = scenarios.drain(
                    bench, args.concurrency, args.jobs, uvloop=not args.asyncio, tree=tree
                )
                found[side] = figures["db_rate"]
                rates[side].append(found[side])
                cpu[side].append(
                    (figures["node_us_per_job"], figures.get("server_us_per_job", float("nan")))
                )
            ratios.append(found["this"] / found["other"])
            print(
                f"pair {pair} ({order[0]} first): this {found['this']:,.0f} jobs/s,"
                f" other {found['other']:,.0f} jobs/s, this/other {ratios[-1]:.3f};"
                f" CPU µs/job node+server this {cpu['this'][-1][0]:.1f}+{cpu['this'][-1][1]:.1f},"
                f" other {cpu['other'][-1][0]:.1f}+{cpu['other'][-1][1]:.1f}",
                flush=True,
            )
    for side, values in rates.items():
        print(rates_line(f"{side:>5}", values))
        node = summary([c[0] for c in cpu[side]])[1]
        server = summary([c[1] for c in cpu[side]])[1]
        print(f"{side:>5}: CPU µs/job, medians: node {node:.1f}, server backends {server:.1f}")
    print(ratios_line("this/other", ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
