"""``python -m bench``: run every scenario ``--runs`` times and print min / median / max.

    python3 dev.py bench                  # 3 runs of each scenario
    python3 dev.py bench --quick          # 1 small run of each, for a smoke test
    python3 dev.py bench --only drain     # drain, bulk, single, latency, rss
    python3 dev.py bench --asyncio        # the node on asyncio's own loop (default: uvloop)
    python3 dev.py bench --peers          # the same scenarios through other libraries
    python3 dev.py bench --web-ab 4       # drain c=50 with Oban Web publishing on vs off, 4 pairs

The database is created on the DATABASE_URL server (else an embedded one) and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import db, scenarios
from bench.scenarios import summary

SCENARIOS = ("drain", "bulk", "single", "latency", "rss")


def _row(label: str, values: list[float], unit: str, fmt: str = "{:,.0f}") -> str:
    lo, mid, hi = summary(values)
    cells = " / ".join(fmt.format(v) for v in (lo, mid, hi))
    return f"  {label:<34} {cells:>30} {unit}"


def _collect(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def _print_drain(label: str, runs: list[dict[str, Any]]) -> None:
    print(f"{label}  (min / median / max of {len(runs)})")
    print(_row("jobs/s (db: completed_at span)", _collect(runs, "db_rate"), "jobs/s"))
    print(_row("jobs/s (wall, start to last ack)", _collect(runs, "wall_rate"), "jobs/s"))
    print(_row("node CPU per job", _collect(runs, "node_us_per_job"), "µs"))
    print(
        _row(
            "  per 1,000 jobs", [v / 1000 for v in _collect(runs, "node_us_per_job")], "s", "{:.3f}"
        )
    )
    server = _collect(runs, "server_us_per_job")
    if server:
        print(_row("server CPU per job", server, "µs"))
        print(_row("  per 1,000 jobs", [v / 1000 for v in server], "s", "{:.3f}"))
    else:
        print("  server CPU                         n/a (server not local)")
    print(_row("node peak RSS", _collect(runs, "rss_mb"), "MB", "{:.1f}"))


def _web_ab(
    bench: db.BenchDatabase, pairs: int, concurrency: int, jobs: int, *, uvloop: bool
) -> dict[str, Any]:
    """Drains with ``Config.web`` on and off, interleaved; the order alternates between pairs
    so drift on a shared machine (other load, cache warmth) falls on both sides alike."""
    on: list[dict[str, Any]] = []
    off: list[dict[str, Any]] = []
    ratios: list[float] = []
    print(f"drain {jobs:,} jobs at concurrency {concurrency}: Oban Web publishing on vs off")
    for pair in range(pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        found = {
            web: scenarios.drain(bench, concurrency, jobs, uvloop=uvloop, web=web) for web in order
        }
        on.append(found[True])
        off.append(found[False])
        ratio = found[True]["db_rate"] / found[False]["db_rate"]
        ratios.append(ratio)
        first = "on first" if order[0] else "off first"
        print(
            f"  pair {pair + 1} ({first}): on {found[True]['db_rate']:,.0f} jobs/s,"
            f" off {found[False]['db_rate']:,.0f} jobs/s, on/off {ratio:.3f};"
            f" node CPU/job on {found[True]['node_us_per_job']:.0f} µs,"
            f" off {found[False]['node_us_per_job']:.0f} µs"
        )
    print(_row("jobs/s, publishing on", _collect(on, "db_rate"), "jobs/s"))
    print(_row("jobs/s, publishing off", _collect(off, "db_rate"), "jobs/s"))
    print(_row("on/off ratio per pair", ratios, "", "{:.3f}"))
    print(_row("node CPU per job, on", _collect(on, "node_us_per_job"), "µs"))
    print(_row("node CPU per job, off", _collect(off, "node_us_per_job"), "µs"))
    return {"on": on, "off": off, "ratios": ratios}


def _repeat(runs: int, fn: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    return [fn() for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one small run of each scenario")
    parser.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument(
        "--asyncio",
        action="store_true",
        help="run the node on asyncio's own loop instead of uvloop (what oban-py start uses)",
    )
    parser.add_argument("--peers", action="store_true", help="also run oban (PyPI) and pgqueuer")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument(
        "--web-ab",
        type=int,
        metavar="PAIRS",
        help="only: drain at c=50 (or --concurrency) with Oban Web publishing on and off,"
        " PAIRS interleaved pairs",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="drain only at this concurrency (repeatable; default 10, 50 and 200)",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    jobs = 5_000 if args.quick else 20_000
    chosen = args.only or list(SCENARIOS)
    if args.quick and not args.only:
        chosen = [s for s in chosen if s != "rss"]

    admin = db.server_dsn()
    bench = db.BenchDatabase(admin)
    bench.create()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "postgres": bench.one("SHOW server_version"),
        "commit": _commit(),
        "uvloop": not args.asyncio,
        "runs": runs,
    }
    print(
        f"oban_py bench: {runs} run(s) per scenario, PostgreSQL {results['postgres']}, "
        f"{results['nproc']} CPUs, load {_load()}{', asyncio loop' if args.asyncio else ', uvloop'}"
    )
    try:
        if args.web_ab:
            for c in args.concurrency or (50,):
                results[f"web_ab_c{c}"] = _web_ab(
                    bench, args.web_ab, c, jobs, uvloop=not args.asyncio
                )
            chosen = []
        if "drain" in chosen:
            for c in args.concurrency or (10, 50, 200):
                found = _repeat(
                    runs,
                    functools.partial(scenarios.drain, bench, c, jobs, uvloop=not args.asyncio),
                )
                results[f"drain_c{c}"] = found
                _print_drain(f"drain {jobs:,} jobs at concurrency {c}", found)
        if "rss" in chosen:
            found = [scenarios.drain(bench, 50, 100_000, uvloop=not args.asyncio)]
            results["drain_100k"] = found
            _print_drain("drain 100,000 jobs at concurrency 50 (RSS)", found)
        if "bulk" in chosen:
            batches = 2 if args.quick else 10
            found = _repeat(runs, lambda: asyncio.run(scenarios.bulk_insert(bench, batches)))
            results["bulk"] = found
            print(f"enqueue_many, {batches} batches of 5,000  (min / median / max)")
            print(_row("jobs/s (the call)", _collect(found, "rate"), "jobs/s"))
            print(
                _row("jobs/s (building Jobs + call)", _collect(found, "rate_with_build"), "jobs/s")
            )
        if "single" in chosen:
            count = 200 if args.quick else 1_000
            found = _repeat(runs, lambda: asyncio.run(scenarios.single_insert(bench, count)))
            results["single"] = found
            print(f"enqueue, {count:,} sequential calls  (min / median / max)")
            print(_row("jobs/s", _collect(found, "rate"), "jobs/s"))
            print(_row("server: single INSERT round trips", _collect(found, "server_rate"), "/s"))
        if "latency" in chosen:
            probes = 100 if args.quick else 300
            for load in (0, 5_000):

                def probe(load: int = load) -> dict[str, Any]:
                    return asyncio.run(
                        scenarios.latency(bench, probes, load, uvloop=not args.asyncio)
                    )

                found = _repeat(runs, probe)
                results[f"latency_load{load}"] = found
                what = "idle node" if not load else f"under {load:,} jobs/s of inserts"
                print(f"insert → start latency, {probes} probes, {what}  (min / median / max)")
                for p in ("p50", "p99", "max"):
                    print(_row(p, _collect(found, p), "ms", "{:.2f}"))
                if load:
                    print(_row("load achieved", _collect(found, "load_rate"), "jobs/s"))
        if args.peers:
            from bench import peers

            results["peers"] = peers.run(bench, runs=runs, jobs=jobs, ours=results)
    except scenarios.BenchFailure as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        bench.drop()
    results["loadavg_after"] = os.getloadavg()
    print(f"load average after: {_load()}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1, default=str)
    return 0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=scenarios.ROOT,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
