"""The floor under a drained job's server CPU: Elixir's claim and ack alone, with no node.

    python -m bench.drain_floor [--jobs 20000] [--batch 50] [--rounds 3] [--claimers 1]

Fills the table with ``--jobs`` available jobs, then claims ``--batch`` of them with the node's
own fetch statement (``sql/fetch_jobs.sql``) on one connection (``--claimers``: on several at
once, as overlapping claims would) until the queue is empty, while another connection acks
what was claimed as completed with the node's own ack statement and parameters
(``sql/ack_jobs.sql``, ``acker.batch_params``), all that is pending in one statement as the
node's acker does: no node loop, no notifications, no heartbeats, nothing else on the server.
The same loop then runs on the anchor harness's minimal queue table (five columns, two
indexes: the table its pgbench ceiling drains) with statements of the same shape. Rounds
alternate the two, each on a freshly filled table after a ``CHECKPOINT``, as the harness does
before a drain.

Prints, per round and as medians, the backends' CPU per job (utime + stime from /proc, split
claims / acks) and the jobs per second of the loop. With Elixir's table a job is two
non-HOT updates, each writing six index entries (two of them GIN); the minimal table's two
updates write two. What the first costs is what any library sharing Elixir's schema pays per
job, before any code of its own runs.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.db import BenchDatabase, proc_cpu
from oban_py.job.model import Job
from oban_py.node import outcomes
from oban_py.node.acker import batch_params
from oban_py.sql import Queries

MINIMAL_TABLE = """
CREATE TABLE q (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'available',
    args jsonb NOT NULL DEFAULT '{}',
    attempted_at timestamptz,
    completed_at timestamptz
);
CREATE INDEX q_available ON q (id) WHERE state = 'available'
"""
MINIMAL_CLAIM = (
    "WITH c AS (SELECT id FROM q WHERE state = 'available' ORDER BY id LIMIT %(demand)s"
    " FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE q SET state = 'executing', attempted_at = now() FROM c WHERE q.id = c.id"
    " RETURNING q.id)"
    " SELECT array_agg(id) FROM u"
)
MINIMAL_ACK = "UPDATE q SET state = 'completed', completed_at = now() WHERE id = ANY(%(ids)s)"

#: server CPU µs per job of the claims and of the acks, and jobs per second
Figures = tuple[float, float, float]


Claim = Callable[[psycopg.Connection[Any]], list[Any]]
Ack = Callable[[psycopg.Connection[Any], list[Any]], None]


def drain(dsn: str, claimers: int, claim: Claim, ack: Ack) -> tuple[float, float, float, int]:
    """Claim on ``claimers`` connections at once until the queue is empty, while one more acks
    what was claimed, all that is pending in one statement as the node's acker does. The
    claiming and the acking backends' CPU seconds, the wall time and the jobs claimed."""
    claiming = [psycopg.connect(dsn, autocommit=True) for _ in range(claimers)]
    acking = psycopg.connect(dsn, autocommit=True)
    connections = [*claiming, acking]
    try:
        before = [proc_cpu(c.info.backend_pid) or 0.0 for c in connections]
        claimed: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        counts = [0] * claimers

        def claim_all(index: int) -> None:
            while rows := claim(claiming[index]):
                counts[index] += len(rows)
                claimed.put(rows)
            claimed.put(None)

        threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(claimers)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        ended = 0
        while ended < claimers:
            batch = [claimed.get()]
            while not claimed.empty():
                batch.append(claimed.get())
            ended += batch.count(None)
            rows = [row for items in batch if items for row in items]
            if rows:
                ack(acking, rows)
        wall = time.perf_counter() - start
        for thread in threads:
            thread.join()
        used = [
            (proc_cpu(c.info.backend_pid) or 0.0) - b
            for c, b in zip(connections, before, strict=True)
        ]
        return sum(used[:-1]), used[-1], wall, sum(counts)
    finally:
        for conn in connections:
            conn.close()


def per_job(found: tuple[float, float, float, int]) -> tuple[float, float, float]:
    claim_cpu, ack_cpu, wall, jobs = found
    return claim_cpu * 1e6 / jobs, ack_cpu * 1e6 / jobs, jobs / wall


def elixir_round(bench: BenchDatabase, jobs: int, batch: int, claimers: int) -> Figures:
    bench.reset()
    bench.fill("floor", jobs)
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE oban_jobs")
        conn.execute("CHECKPOINT")
    queries = Queries()
    fetch, ack = queries["fetch_jobs"], queries["ack_jobs"]
    params = {"queue": "floor", "demand": batch, "node": "floor", "uuid": "floor"}

    def claim(conn: psycopg.Connection[Any]) -> list[Job]:
        rows = conn.cursor(row_factory=dict_row).execute(fetch, params).fetchall()
        return [Job.from_row(row) for row in rows]

    def complete(conn: psycopg.Connection[Any], claimed: list[Job]) -> None:
        now = datetime.now(UTC)
        conn.execute(ack, batch_params([outcomes.complete(job, now) for job in claimed]))

    found = drain(bench.dsn, claimers, claim, complete)
    left = bench.one("SELECT count(*) FROM oban_jobs WHERE state <> 'completed'")
    if found[3] != jobs or left != 0:
        raise SystemExit(f"claimed {found[3]} of {jobs}, {left} not completed")
    return per_job(found)


def minimal_round(bench: BenchDatabase, jobs: int, batch: int, claimers: int) -> Figures:
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS q")
        conn.execute(MINIMAL_TABLE)
        conn.execute("INSERT INTO q (args) SELECT '{}'::jsonb FROM generate_series(1, %s)", (jobs,))
        conn.execute("VACUUM ANALYZE q")
        conn.execute("CHECKPOINT")

    def claim(conn: psycopg.Connection[Any]) -> list[int]:
        row = conn.execute(MINIMAL_CLAIM, {"demand": batch}).fetchone()
        return (row[0] if row else None) or []

    def complete(conn: psycopg.Connection[Any], ids: list[int]) -> None:
        conn.execute(MINIMAL_ACK, {"ids": ids})

    found = drain(bench.dsn, claimers, claim, complete)
    if found[3] != jobs:
        raise SystemExit(f"claimed {found[3]} of {jobs}")
    return per_job(found)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_floor", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--claimers", type=int, default=1, help="connections claiming at once")
    args = parser.parse_args()
    runs: dict[str, list[Figures]] = {"elixir": [], "minimal": []}
    with BenchDatabase.fresh() as bench:
        if not bench.is_local():
            raise SystemExit("the server must be local: its backends' CPU is read from /proc")
        for number in range(args.rounds):
            order = ("elixir", "minimal") if number % 2 == 0 else ("minimal", "elixir")
            for table in order:
                measure = elixir_round if table == "elixir" else minimal_round
                claim, ack, rate = measure(bench, args.jobs, args.batch, args.claimers)
                runs[table].append((claim, ack, rate))
                print(
                    f"round {number + 1} {table:8} server CPU µs/job: claim {claim:5.1f}"
                    f" + ack {ack:5.1f} = {claim + ack:5.1f}; {rate:,.0f} jobs/s"
                )
    print(
        f"medians of {args.rounds}, {args.jobs:,} jobs, {args.batch} a claim,"
        f" {args.claimers} claiming at once:"
    )
    for table, label in (("elixir", "Elixir's oban_jobs"), ("minimal", "minimal table")):
        claim = statistics.median(r[0] for r in runs[table])
        ack = statistics.median(r[1] for r in runs[table])
        rate = statistics.median(r[2] for r in runs[table])
        print(
            f"  {label:19} claim {claim:5.1f} + ack {ack:5.1f} = {claim + ack:5.1f} µs/job,"
            f" {rate:,.0f} jobs/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
