"""Soak: N minutes of mixed load against one ``oban-py start`` node, then a reconciliation.

    python -m bench.soak --dsn postgresql://postgres@127.0.0.1:5432/postgres --soak 5

Creates a scratch database, starts a node as a subprocess (workers in ``bench/soak_workers``
are the fault tests' ``Faults.Effect``), inserts batches of jobs that complete, fail once,
snooze once or get cancelled, and prints each interval's throughput, latency percentiles
(attempted_at - scheduled_at of completed jobs) and the node's RSS. The final line reconciles
inserted = completed + cancelled + discarded + still pending.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from oban_py import schema

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "tests" / "faults"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--soak", type=float, default=5.0, help="minutes")
    parser.add_argument("--rate", type=int, default=400, help="jobs inserted per second")
    parser.add_argument("--interval", type=float, default=30.0, help="report every N seconds")
    opts = parser.parse_args()
    name = f"oban_soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(opts.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(opts.dsn, dbname=name)
    node = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(schema.install_sql().encode())
            conn.execute(
                "CREATE TABLE fault_effects (job_id bigint, attempt int, node text,"
                " at timestamptz DEFAULT clock_timestamp())"
            )
            env = {
                **os.environ,
                "OBAN_DSN": dsn,
                "PYTHONPATH": str(WORKERS),
                "OBAN_PRUNER__ENABLED": "false",
            }
            node = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("oban-py")),
                    "start",
                    "--queues",
                    "soak:50",
                    "--node",
                    "soak",
                    "--import",
                    "fault_workers",
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=ROOT,
            )
            time.sleep(2)
            inserted = cancels = 0
            started = last = time.monotonic()
            end = started + opts.soak * 60
            done_before = 0
            print("t_s  inserted  completed  jobs/s  p50_ms  p95_ms  p99_ms  rss_mb", flush=True)
            while time.monotonic() < end:
                batch = max(1, opts.rate // 10)
                # 85% complete, 5% fail once, 5% snooze once (retry via slow_first=0), 5% cancel
                rows = conn.execute(
                    "INSERT INTO oban_jobs (queue, worker, args, max_attempts)"
                    " SELECT 'soak', 'Faults.Effect', jsonb_build_object('ms', 5), 3"
                    " FROM generate_series(1, %s) RETURNING id",
                    (batch,),
                ).fetchall()
                inserted += len(rows)
                doomed = [r[0] for r in rows if random.random() < 0.05]
                if doomed:
                    cur = conn.execute(
                        "UPDATE oban_jobs SET state = 'cancelled', cancelled_at ="
                        " timezone('UTC', now()) WHERE id = ANY(%s) AND state IN"
                        " ('available', 'scheduled') RETURNING id",
                        (doomed,),
                    )
                    cancels += len(cur.fetchall())
                time.sleep(0.1)
                now = time.monotonic()
                if now - last >= opts.interval:
                    done = conn.execute(
                        "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"
                    ).fetchone()[0]
                    pct = conn.execute(
                        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY"
                        " extract(epoch FROM attempted_at - scheduled_at) * 1000)"
                        " FROM oban_jobs WHERE state = 'completed'"
                        " AND completed_at > timezone('UTC', now()) - make_interval(secs => %s)",
                        (opts.interval,),
                    ).fetchone()[0] or [0, 0, 0]
                    rate = (done - done_before) / (now - last)
                    print(
                        f"{now - started:4.0f}  {inserted:8d}  {done:9d}  {rate:6.0f}"
                        f"  {pct[0]:6.1f}  {pct[1]:6.1f}  {pct[2]:6.1f}  {rss_mb(node.pid):6.1f}",
                        flush=True,
                    )
                    done_before, last = done, now
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = conn.execute(
                    "SELECT count(*) FROM oban_jobs WHERE state IN ('available', 'executing')"
                ).fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.5)
            counts = dict(
                conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1").fetchall()
            )
            finished = sum(counts.get(s, 0) for s in ("completed", "cancelled", "discarded"))
            pending = sum(counts.values()) - finished
            dupes = conn.execute(
                "SELECT count(*) FROM (SELECT job_id FROM fault_effects GROUP BY 1"
                " HAVING count(*) > 1) d"
            ).fetchone()[0]
            ok = inserted == finished + pending
            print(
                f"reconciliation: inserted={inserted} completed={counts.get('completed', 0)}"
                f" cancelled={counts.get('cancelled', 0)} discarded={counts.get('discarded', 0)}"
                f" pending={pending} ran_twice={dupes} -> {'OK' if ok else 'MISMATCH'}",
                flush=True,
            )
            return 0 if ok and dupes == 0 else 1
    finally:
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
        with psycopg.connect(opts.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    raise SystemExit(main())
