"""What one claim costs the server, by claim statement: the plain fetch, this tree's flow
claims (whole queue and partitioned), and optionally another checkout's flow claim, taking turns
claim by claim on one draining queue, so a busy machine slows every statement alike. The figures
are PostgreSQL's own (EXPLAIN ANALYZE runs each claim for real): planning and execution time.
Every statement is planned each time here; a node prepares the plain fetch (PostgreSQL then
mostly skips its planning) and never the flow claims. The drain rate (bench/flow_ab.py) is what
users see; this is the part of it a claim statement
decides, measured where the noise of a shared machine matters least.

    python -m bench.flow_claims [--jobs 20000] [--concurrency 50] [--against DIR]
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import psycopg

from bench import db
from oban_py.config import QueueConfig
from oban_py.flow import Flow
from oban_py.sql import Queries, compose


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_claims", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--against", type=Path, help="another checkout's root, e.g. ../main")
    args = parser.parse_args()
    c = args.concurrency
    queries = Queries()
    partition = {"fields": ["worker"]}
    whole = Flow.of(QueueConfig.model_validate({"limit": c, "global_limit": c}))
    by_worker = Flow.of(
        QueueConfig.model_validate(
            {"limit": c, "global_limit": {"allowed": c, "partition": partition}}
        )
    )
    assert whole is not None
    assert by_worker is not None
    # name -> (statement, the flow whose parameters it takes; None: the plain fetch)
    claims: dict[str, tuple[bytes, Flow | None]] = {
        "plain fetch_jobs": (queries["fetch_jobs"], None),
        "flow, whole queue": (queries[whole.claim], whole),
        "flow, by worker": (queries[by_worker.claim], by_worker),
    }
    if args.against is not None:
        text = (args.against / "oban_py" / "sql" / "flow_claim.sql").read_text()
        claims["flow @ --against"] = (compose(text, "public"), whole)
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    try:
        bench.fill("bench", args.jobs)
        times = _drain(bench.dsn, claims, args.jobs, c)
    finally:
        bench.drop()
    print(f"{args.jobs} jobs, {c} running at most, claims taking turns; server ms, median:")
    for name, (plans, runs) in times.items():
        plan, run = statistics.median(plans), statistics.median(runs)
        print(f"{name:<20} plan {plan:.3f}  execute {run:.3f}  total {plan + run:.3f}")
    return 0


def _drain(
    dsn: str, claims: dict[str, tuple[bytes, Flow | None]], jobs: int, concurrency: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Claim in turns, keeping at most ``concurrency`` jobs executing and completing half of
    them after each claim, as a node's acks would; every statement sees the same churn."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in claims}
    producer = str(uuid.uuid4())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_py_heartbeats (uuid, node, queue, name, started_at, updated_at)"
            " VALUES (%s, 'bench', 'bench', 'Oban', now(), timezone('UTC', now()))",
            (producer,),
        )
        running: deque[int] = deque()
        done, turn, names = 0, 0, list(claims)
        while done < jobs:
            name = names[turn % len(names)]
            turn += 1
            statement, flow = claims[name]
            demand = concurrency - len(running)
            params: dict[str, Any] = {"queue": "bench", "node": "bench", "uuid": producer}
            params.update({"demand": demand, "finished": []})
            if flow is not None:
                params.update(flow.params(demand, 30.0))
            with conn.transaction():
                if flow is not None:
                    conn.execute(Queries()["flow_lock"], {"key": "bench"})
                explain = b"EXPLAIN (ANALYZE, FORMAT JSON) " + statement
                cur = conn.execute(explain, params, prepare=False)
                row = cur.fetchone()
            assert row is not None
            found = row[0][0]
            times[name][0].append(found["Planning Time"])
            times[name][1].append(found["Execution Time"])
            claimed = conn.execute(
                "SELECT id FROM oban_jobs WHERE state = 'executing' AND NOT id = ANY(%s)",
                (list(running),),
            ).fetchall()
            running.extend(job_id for (job_id,) in claimed)
            acked = [running.popleft() for _ in range(max(1, len(running) // 2)) if running]
            conn.execute(
                "UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = ANY(%s)",
                (acked,),
            )
            done += len(acked)
            if not claimed and not acked:
                break
    return times


if __name__ == "__main__":
    raise SystemExit(main())
