"""Drain rate with a large retained history of finished jobs in ``oban_jobs`` against an empty
table, as interleaved pairs, at PostgreSQL's defaults and at the storage parameters
docs/production.md recommends.

    python -m bench.retained [--pairs 3] [--retained 1000000] [--jobs 20000] [--concurrency 50]
                             [--settings default,recommended,eager-vacuum]

Two databases on the same server: one whose table is emptied before each drain, one holding
``--retained`` completed jobs of the same queue (made with ``generate_series``, then ``VACUUM
ANALYZE`` as autovacuum would have left them). Before each drain on the retained side the rows of
the previous drain are deleted and the table vacuumed again (the pruner and autovacuum of a
production table). Each settings variant builds its history afresh at PostgreSQL's defaults,
then sets its storage parameters, as an operator would on a live table (``ALTER TABLE ... SET``
rewrites nothing: it rules how pages are filled from then on). Each pair drains once on each
side, the order alternating; every drain is checked in the database (``scenarios.drain``).

Printed per drain: jobs/s, and the server's counters for ``oban_jobs`` read around it from
``pg_stat_user_tables`` and ``pg_statio_user_tables``: heap and index buffers hit and read
(read = not in shared_buffers), inserts, updates and HOT updates (a non-HOT update writes a
tuple into each of the table's indexes), distinct heap pages the drained rows ended on, and WAL
bytes (server-wide: other sessions' writes count too).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg

from bench import db, scenarios
from bench.pairs import interleaved
from bench.scenarios import summary

#: Storage parameters of each variant (``ALTER TABLE oban_jobs SET``); the default resets them.
#: ``eager-vacuum`` (not run unless asked) is the tempting extra that docs/production.md advises
#: against: a vacuum every 20,000 dead versions scans every index of the history each time.
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "recommended": {"fillfactor": "80"},
    "eager-vacuum": {
        "fillfactor": "80",
        "autovacuum_vacuum_scale_factor": "0",
        "autovacuum_vacuum_threshold": "20000",
    },
}
RESETTABLE = sorted({name for params in SETTINGS.values() for name in params})

COUNTERS = """
SELECT t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd,
       io.heap_blks_hit, io.heap_blks_read, io.idx_blks_hit, io.idx_blks_read,
       pg_current_wal_lsn() - '0/0'::pg_lsn
FROM pg_stat_user_tables t JOIN pg_statio_user_tables io USING (relid)
WHERE t.relname = 'oban_jobs'
"""
NAMES = ("ins", "upd", "hot", "heap_hit", "heap_read", "idx_hit", "idx_read", "wal")

RETAIN = """
INSERT INTO oban_jobs (queue, worker, args, state, attempt, scheduled_at, attempted_at,
                       completed_at, inserted_at, attempted_by)
SELECT 'bench', 'Bench.Noop', '{}'::jsonb, 'completed', 1, t, t + interval '1 ms',
       t + interval '2 ms', t, ARRAY['bench', 'b7c1a0a6-1f1e-4a3c-9a55-3d2f0e9c8b71']
FROM (SELECT timezone('UTC', now()) - interval '12 hours' + i * (interval '11 hours' / %(n)s) AS t
      FROM generate_series(1, %(n)s) AS i) AS s
"""


class Counters:
    """The server's counters for ``oban_jobs`` of one database, read around a drain."""

    def __init__(self, bench: db.BenchDatabase, after_id: int) -> None:
        self.bench = bench
        self.after_id = after_id
        self.start: tuple[int, ...] = ()
        self.delta: dict[str, int] = {}
        self.filled_pages = 0

    def _read(self) -> tuple[int, ...]:
        with psycopg.connect(self.bench.dsn, autocommit=True) as conn:
            row = conn.execute(COUNTERS).fetchone()
        assert row is not None
        return tuple(int(v) for v in row)

    def before(self) -> None:
        self.filled_pages = pages(self.bench, self.after_id)
        self.start = self._read()

    def after(self) -> None:
        # The node's backends send their statistics as they exit, just before this.
        time.sleep(0.7)
        end = self._read()
        self.delta = {name: end[i] - self.start[i] for i, name in enumerate(NAMES)}


def storage(dsn: str, params: dict[str, str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE oban_jobs RESET ({', '.join(RESETTABLE)})")
        if params:
            listed = ", ".join(f"{k} = {v}" for k, v in params.items())
            conn.execute(f"ALTER TABLE oban_jobs SET ({listed})")


def retain(bench: db.BenchDatabase, count: int) -> int:
    """A fresh history of ``count`` completed jobs, vacuumed; returns its last id."""
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE oban_jobs, bench_seen RESTART IDENTITY")
        conn.execute(RETAIN, {"n": count})
        conn.execute("VACUUM ANALYZE oban_jobs")
    return count


def prune(bench: db.BenchDatabase, after_id: int) -> None:
    """Delete the last drain's rows and vacuum, as the pruner and autovacuum would."""
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM oban_jobs WHERE id > %s", (after_id,))
        conn.execute("TRUNCATE bench_seen")
        conn.execute("VACUUM ANALYZE oban_jobs")


def pages(bench: db.BenchDatabase, after_id: int) -> int:
    return int(
        bench.one(
            "SELECT count(DISTINCT (ctid::text::point)[0]) FROM oban_jobs WHERE id > %s",
            (after_id,),
        )
    )


def run(
    bench: db.BenchDatabase, after_id: int, args: argparse.Namespace
) -> tuple[float, dict[str, Any]]:
    counters = Counters(bench, after_id)
    if after_id:
        prune(bench, after_id)
    figures = scenarios.drain(
        bench, args.concurrency, args.jobs, uvloop=True, after_id=after_id, probe=counters
    )
    found: dict[str, Any] = dict(counters.delta)
    found["pages"] = pages(bench, after_id)
    found["filled_pages"] = counters.filled_pages
    return float(figures["db_rate"]), found


def show(side: str, rate: float, found: dict[str, Any], jobs: int) -> str:
    per = {k: found[k] / jobs for k in ("heap_hit", "heap_read", "idx_hit", "idx_read")}
    nonhot = found["upd"] - found["hot"]
    return (
        f"  {side:>8}: {rate:>7,.0f} jobs/s | per job: heap hit {per['heap_hit']:.1f}"
        f" read {per['heap_read']:.2f}, index hit {per['idx_hit']:.1f} read {per['idx_read']:.2f},"
        f" updates {found['upd'] / jobs:.2f} (HOT {found['hot'] / jobs:.2f}),"
        f" index tuples written {(found['ins'] + nonhot) * 6 / jobs:.1f},"
        f" WAL {found['wal'] / jobs / 1024:.1f} kB | heap pages holding the jobs:"
        f" {found['filled_pages']:,} inserted, {found['pages']:,} completed"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retained", description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--retained", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--settings", default="default,recommended")
    args = parser.parse_args()
    variants = args.settings.split(",")
    server = db.server_dsn()
    empty, kept = db.BenchDatabase(server), db.BenchDatabase(server)
    empty.create()
    kept.create()
    ratios: dict[str, list[float]] = {}
    try:
        for variant in variants:
            params = SETTINGS[variant]
            print(f"{variant}: {params or 'PostgreSQL defaults'}", flush=True)
            storage(empty.dsn, params)
            storage(kept.dsn, {})
            started = time.monotonic()
            after_id = retain(kept, args.retained)
            storage(kept.dsn, params)
            print(f"  {args.retained:,} retained rows made in {time.monotonic() - started:.0f} s")
            ratios[variant] = []
            for pair, order in interleaved(args.pairs, ("empty", "retained")):
                rates: dict[str, float] = {}
                lines = []
                for side in order:
                    bench, last = (empty, 0) if side == "empty" else (kept, after_id)
                    rates[side], found = run(bench, last, args)
                    lines.append(show(side, rates[side], found, args.jobs))
                ratios[variant].append(rates["retained"] / rates["empty"])
                print(f" pair {pair}: retained/empty {ratios[variant][-1]:.3f}", flush=True)
                print("\n".join(lines), flush=True)
    finally:
        empty.drop()
        kept.drop()
    for variant, values in ratios.items():
        low, mid, high = summary(values)
        print(f"{variant}: retained/empty {low:.3f} / {mid:.3f} / {high:.3f} (min / median / max)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
