"""Where a drained job's cost goes, per job, on both sides, from the server's own counters.

    python -m bench.drain_profile [--concurrency 50] [--jobs 20000] [--runs 1]
                                  [--tree /other/checkout] [--py-spy out.svg] [--asyncio]

Drains ``--jobs`` no-op jobs (``scenarios.drain``, checked exactly once in the database) and
reads, right before the node starts and right after it exited:

- ``pg_stat_database`` of the bench database: transactions (each autocommit statement is one),
  rows returned/fetched/inserted/updated, buffer hits;
- ``pg_stat_user_tables`` of ``oban_jobs``: updates, and how many of them were HOT (a HOT update
  writes no index entry; a change of an indexed column such as ``state`` never is);
- the WAL written between the two points, from ``pg_walinspect``, keeping only the records of
  this database, summed by relation (the table, each index) and by resource manager;
- CPU of the node process and of the bench database's backends (``/proc``), and of the server's
  auxiliary processes (WAL writer, checkpointer, autovacuum: shared with anything else running
  on the server).

From the rows themselves: how many fetches claimed the jobs (distinct ``attempted_at``, the
fetch transaction's ``now()``) and how many ack statements wrote them (distinct ``xmin``, the
ack transaction's id). The node itself polls the table every 5 ms until it sees every ack, so a
few transactions per drain are the benchmark's own. ``--py-spy`` records the node with
``py-spy record --native`` (py-spy on the venv's path) into an SVG flame graph.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from bench import db, scenarios

_DATABASE = (
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_hit",
    "blks_read",
)
_TABLE = ("n_tup_upd", "n_tup_hot_upd", "n_tup_ins", "n_tup_del", "seq_scan", "idx_scan")


class Counters:
    """The counters of one bench database, read around each drain (``scenarios.Probe``)."""

    def __init__(self, bench: db.BenchDatabase) -> None:
        self.bench = bench
        self.start: dict[str, Any] = {}
        self.delta: dict[str, Any] = {}
        self._slot: psycopg.Connection[Any]

    def _read(self) -> dict[str, Any]:
        with psycopg.connect(self.bench.dsn, autocommit=True) as conn:
            # Stats reach shared memory when a backend is idle or exits: wait until the node's
            # backends are gone, then flush our own.
            for _ in range(200):
                others = set(db.backend_pids(conn, self.bench.name)) - {self._slot.info.backend_pid}
                if not others:
                    break
                time.sleep(0.05)
            time.sleep(0.6)
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute("SELECT pg_stat_clear_snapshot()")
            found: dict[str, Any] = {}
            row = conn.execute(
                f"SELECT {', '.join(_DATABASE)} FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
            found.update(zip(_DATABASE, row or (), strict=True))
            row = conn.execute(
                f"SELECT {', '.join(_TABLE)} FROM pg_stat_user_tables WHERE relname = 'oban_jobs'"
            ).fetchone()
            found.update(zip(_TABLE, row or (), strict=True))
            row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
            found["lsn"] = row[0] if row else None
        found["cpu"] = db.postgres_cpu()
        return found

    def before(self) -> None:
        # A temporary slot keeps the drain's WAL until it is read, whatever checkpoints run.
        self._slot = psycopg.connect(self.bench.dsn, autocommit=True)
        self._slot.execute(
            "SELECT pg_create_physical_replication_slot(%s, true, true)", (self.bench.name,)
        )
        self.start = self._read()

    def after(self) -> None:
        end = self._read()
        self.delta = {k: end[k] - self.start[k] for k in (*_DATABASE, *_TABLE)}
        self.delta["aux_cpu"] = _aux_cpu(self.start["cpu"], end["cpu"])
        try:
            self.delta["wal"] = self._wal(self.start["lsn"], end["lsn"])
        finally:
            self._slot.close()

    def _wal(self, start: str, end: str) -> dict[str, Any]:
        with psycopg.connect(self.bench.dsn, autocommit=True) as conn:
            oid = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            records = conn.execute(
                "SELECT resource_manager || ' ' || record_type, record_length, fpi_length,"
                " block_ref"
                " FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)",
                (start, end),
            ).fetchall()
            names: dict[str, str] = dict(
                conn.execute(
                    "SELECT pg_relation_filenode(oid)::text, relname FROM pg_class"
                    " WHERE relname LIKE 'oban_jobs%%' OR relname LIKE 'bench_seen%%'"
                ).fetchall()
            )
        marker = f"/{oid[0] if oid else 0}/"
        by_rel: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_rmgr: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        total = [0, 0, 0]
        for rmgr, length, fpi, refs in records:
            if refs is None or marker not in refs:
                if rmgr.startswith("Transaction"):
                    total[2] += 1
                continue
            node = refs.split(marker, 1)[1].split()[0]
            rel = names.get(node, f"filenode {node}")
            if rel.startswith("bench_seen"):
                continue  # the benchmark's own check, written after the drain
            for bucket in (by_rel[rel], by_rmgr[rmgr]):
                bucket[0] += 1
                bucket[1] += length + fpi
            total[0] += 1
            total[1] += length + fpi
        return {
            "records": total[0],
            "bytes": total[1],
            "commits_all": total[2],
            "by_rel": dict(by_rel),
            "by_rmgr": dict(by_rmgr),
        }


def commit_cost(bench: db.BenchDatabase, count: int = 1000) -> tuple[float, float]:
    """Backend CPU µs of one durable commit beyond a non-durable one, and its wall µs: one-row
    INSERTs on a scratch table, alternating ``synchronous_commit`` on and off in this session
    only. On a VM the fsync a durable commit waits for is mostly kernel CPU of the backend."""
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        pid = conn.info.backend_pid
        conn.execute("CREATE TABLE IF NOT EXISTS commit_probe (id bigserial PRIMARY KEY)")
        found: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        for _ in range(3):
            for mode in found:
                conn.execute(f"SET synchronous_commit = {mode}")
                cpu0, t0 = db.proc_cpu(pid) or 0.0, time.perf_counter()
                for _ in range(count):
                    conn.execute("INSERT INTO commit_probe DEFAULT VALUES", prepare=True)
                cpu1, t1 = db.proc_cpu(pid) or 0.0, time.perf_counter()
                found[mode].append(((cpu1 - cpu0) / count * 1e6, (t1 - t0) / count * 1e6))
        conn.execute("DROP TABLE commit_probe")
    on, off = (sorted(found[m])[1] for m in ("on", "off"))
    return on[0] - off[0], on[1]


def _aux_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU of the server's own processes (not client backends) between the two reads."""
    total = 0.0
    for pid, now in after.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(kind in cmdline for kind in ("walwriter", "checkpointer", "writer", "autovacuum")):
            total += now - before.get(pid, 0.0)
    return total


def _rows(bench: db.BenchDatabase) -> tuple[int, int]:
    fetches = bench.one("SELECT count(DISTINCT attempted_at) FROM oban_jobs")
    acks = bench.one("SELECT count(DISTINCT xmin::text) FROM oban_jobs")
    return fetches, acks


def _cycle(bench: db.BenchDatabase) -> tuple[float, float, float] | None:
    """Medians over the fetches, in ms: from a fetch's start (its ``now()``) to its first job
    done (the claim's execution, commit and round trip, decoding, the first task), from first
    to last job done (running the batch), and from the last one done to the next fetch's
    start (waking the producer, sending the statement). Both clocks are this machine's."""
    found: tuple[float, float, float] | None = bench.one(
        "WITH b AS (SELECT attempted_at AS a, min(completed_at) AS f, max(completed_at) AS l"
        " FROM oban_jobs GROUP BY attempted_at),"
        " c AS (SELECT a, f, l, lead(a) OVER (ORDER BY a) AS n FROM b)"
        " SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f - a)) * 1e3,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM l - f)) * 1e3,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM n - l)) * 1e3"
        " FROM c WHERE n IS NOT NULL"
    )
    return found


def report(
    figures: dict[str, Any], counters: dict[str, Any], jobs: int, rows: tuple[int, int]
) -> None:
    per = 1.0 / jobs
    fetches, acks = rows
    print(
        f"  {figures['db_rate']:,.0f} jobs/s (db),"
        f" node CPU {figures['node_us_per_job']:.1f} µs/job,"
        f" server backends {figures.get('server_us_per_job', float('nan')):.1f} µs/job,"
        f" server aux {counters['aux_cpu'] * 1e6 * per:.1f} µs/job"
    )
    print(
        f"  fetches {fetches} ({jobs / fetches:.1f} jobs each), ack statements {acks}"
        f" ({jobs / acks:.1f} jobs each); transactions {counters['xact_commit'] * per:.3f}/job"
        f" (+{counters['xact_rollback']} rolled back)"
    )
    print(
        "  rows per job: updated {:.2f} (HOT {:.2f}), inserted {:.2f} (the benchmark's own"
        " check of ids seen), returned {:.1f}, fetched {:.1f} (with the benchmark's polling);"
        " buffer hits {:.1f}/job, reads {:.2f}/job".format(
            counters["n_tup_upd"] * per,
            counters["n_tup_hot_upd"] * per,
            counters["tup_inserted"] * per,
            counters["tup_returned"] * per,
            counters["tup_fetched"] * per,
            counters["blks_hit"] * per,
            counters["blks_read"] * per,
        )
    )
    wal = counters["wal"]
    print(
        f"  WAL of this database: {wal['bytes'] * per:,.0f} bytes/job in"
        f" {wal['records'] * per:.2f} records/job (commit records server-wide:"
        f" {wal['commits_all'] * per:.3f}/job)"
    )
    for title, key in (("by relation", "by_rel"), ("by record type", "by_rmgr")):
        print(f"    {title}:")
        for name, (count, size) in sorted(wal[key].items(), key=lambda kv: -kv[1][1]):
            print(f"      {name:<52} {size * per:8.1f} B/job {count * per:6.2f} rec/job")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_profile", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=None, help="run another checkout's node")
    parser.add_argument("--py-spy", type=Path, default=None, help="flame graph of the node (svg)")
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    args = parser.parse_args()
    wrap = None
    if args.py_spy is not None:
        spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
        fmt = "raw" if args.py_spy.suffix != ".svg" else "flamegraph"
        wrap = [spy, "record", "--native", "--rate", "250", "-f", fmt, "-o", str(args.py_spy), "--"]
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    try:
        with psycopg.connect(bench.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        for run in range(args.runs):
            counters = Counters(bench)
            figures = scenarios.drain(
                bench,
                args.concurrency,
                args.jobs,
                uvloop=not args.asyncio,
                tree=args.tree.resolve() if args.tree else None,
                probe=counters,
                wrap=wrap,
            )
            print(f"run {run + 1}, c={args.concurrency}, {args.jobs} jobs:", flush=True)
            fetches, acks = rows = _rows(bench)
            report(figures, counters.delta, args.jobs, rows)
            extra_cpu, wall = commit_cost(bench)
            print(
                f"  a durable commit here: +{extra_cpu:.0f} µs backend CPU over a non-durable"
                f" one, {wall:.0f} µs wall; the drain's {fetches + acks} commits of claims and"
                f" acks so cost about {extra_cpu * (fetches + acks) / args.jobs:.1f} µs/job"
            )
            cycle = _cycle(bench)
            if cycle:
                print(
                    "  a fetch's cycle, medians: start to first job done {:.2f} ms, first to"
                    " last done {:.2f} ms, last done to the next fetch's start {:.2f} ms".format(
                        *cycle
                    )
                )
    finally:
        bench.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
