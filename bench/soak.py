"""Soak: N minutes of mixed load against one ``oban-py start`` node, then a reconciliation.

    python -m bench.soak --dsn postgresql://postgres@127.0.0.1:5432/postgres --soak 5

Creates a scratch database, starts a node as a subprocess (workers are the fault tests'
``Faults.Mixed``), inserts batches of jobs that complete, fail once,
snooze once or get cancelled, and prints each interval's throughput, latency percentiles
(attempted_at - scheduled_at of completed first attempts, both from the server clock), the
staging lag of retries and snoozes, and the node's RSS. The final line reconciles: every job
completed or was cancelled, ran once per attempt, retried jobs carry one error and snoozed ones
one extra max_attempt.
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
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from oban_py import notifier, schema

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "tests" / "faults"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


#: Percentiles of attempted_at - scheduled_at (both from the server clock) of jobs of ``modes``
#: completed in the last ``secs``: the enqueue → start latency for first attempts, the staging
#: lag for retries and snoozes.
LATENCY = (
    "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY"
    " extract(epoch FROM attempted_at - scheduled_at) * 1000)"
    " FROM oban_jobs WHERE state = 'completed' AND args->>'mode' = ANY(%(modes)s)"
    " AND completed_at > timezone('UTC', now()) - make_interval(secs => %(secs)s)"
)

#: Per job: how many times it ran and on how many distinct attempts.
RUNS = """
WITH runs AS (
  SELECT j.id, j.state::text AS state, j.args->>'mode' AS mode, j.max_attempts,
         cardinality(j.errors) AS errs, count(e.job_id) AS n,
         count(DISTINCT e.attempt) AS attempts
  FROM oban_jobs j LEFT JOIN fault_effects e ON e.job_id = j.id GROUP BY j.id
)
SELECT
  count(*) FILTER (WHERE state = 'completed' AND mode = 'fail'),
  count(*) FILTER (WHERE state = 'completed' AND mode = 'snooze'),
  count(*) FILTER (WHERE n <> attempts),
  count(*) FILTER (WHERE state = 'completed' AND n <> CASE mode WHEN 'ok' THEN 1 ELSE 2 END),
  count(*) FILTER (WHERE state = 'completed' AND mode = 'fail' AND errs <> 1),
  count(*) FILTER (WHERE state = 'completed' AND mode = 'snooze' AND max_attempts <> 4),
  count(*) FILTER (WHERE state = 'cancelled' AND n > 0)
FROM runs
"""


def scalar(conn: psycopg.Connection[Any], query: str) -> int:
    found = conn.execute(query).fetchone()
    return int(found[0]) if found else 0


def reconcile(conn: psycopg.Connection[Any], inserted: int) -> int:
    """Wait for the backlog (retries and snoozes included) to finish, then check every job."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        left = scalar(
            conn,
            "SELECT count(*) FROM oban_jobs"
            " WHERE state IN ('available', 'executing', 'scheduled', 'retryable')",
        )
        if left == 0:
            break
        time.sleep(0.5)
    counts = dict(conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1").fetchall())
    completed, cancelled = counts.get("completed", 0), counts.get("cancelled", 0)
    pending = sum(counts.values()) - completed - cancelled - counts.get("discarded", 0)
    found = conn.execute(RUNS).fetchone()
    assert found is not None
    retried, snoozed, ran_twice, wrong_runs, bad_errors, bad_snoozes, ran_cancelled = found
    ok = (
        inserted == completed + cancelled
        and counts.get("discarded", 0) == 0
        and pending == 0
        and not (ran_twice or wrong_runs or bad_errors or bad_snoozes or ran_cancelled)
    )
    print(
        f"reconciliation: inserted={inserted} completed={completed} (retried once={retried},"
        f" snoozed once={snoozed}) cancelled={cancelled} discarded={counts.get('discarded', 0)}"
        f" pending={pending} ran_twice={ran_twice} wrong_run_count={wrong_runs}"
        f" bad_errors={bad_errors} bad_snoozes={bad_snoozes} cancelled_but_ran={ran_cancelled}"
        f" -> {'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--soak", type=float, default=5.0, help="minutes")
    parser.add_argument("--rate", type=int, default=400, help="jobs inserted per second")
    parser.add_argument("--interval", type=float, default=30.0, help="report every N seconds")
    parser.add_argument(
        "--no-notify",
        dest="notify",
        action="store_false",
        help="insert without the insert notification (the node finds jobs by polling)",
    )
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
                    # Each planned failure logs a warning: keep the figures readable.
                    "error",
                ],
                env=env,
                cwd=ROOT,
            )
            time.sleep(2)
            inserted = 0
            modes = ("ok",) * 18 + ("fail", "snooze")  # 90% complete, 5% fail, 5% snooze
            started = last = time.monotonic()
            end = started + opts.soak * 60
            done_before = 0
            print(
                "t_s  inserted  completed  jobs/s  p50_ms  p95_ms  p99_ms  retry_p50_ms  rss_mb",
                flush=True,
            )
            while time.monotonic() < end:
                batch = [random.choice(modes) for _ in range(max(1, opts.rate // 10))]
                rows = conn.execute(
                    "INSERT INTO oban_jobs (queue, worker, args, max_attempts)"
                    " SELECT 'soak', 'Faults.Mixed',"
                    " jsonb_build_object('ms', 5, 'mode', m, 'max', 3), 3"
                    " FROM unnest(%s::text[]) m RETURNING id",
                    (batch,),
                ).fetchall()
                if opts.notify:
                    # What every client's insert does (Elixir's and ours): without it the node
                    # only finds these rows at its next poll.
                    notifier.publish_sync(conn, "public", "insert", [{"queue": "soak"}])
                inserted += len(rows)
                # 5% are cancelled right away: those not fetched yet never run.
                doomed = [r[0] for r in rows if random.random() < 0.05]
                if doomed:
                    conn.execute(
                        "UPDATE oban_jobs SET state = 'cancelled', cancelled_at ="
                        " timezone('UTC', now()) WHERE id = ANY(%s) AND state IN"
                        " ('available', 'scheduled')",
                        (doomed,),
                    )
                time.sleep(0.1)
                now = time.monotonic()
                if now - last >= opts.interval:
                    done = scalar(conn, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'")
                    recent = {"secs": opts.interval}
                    pct = conn.execute(LATENCY, {**recent, "modes": ["ok"]}).fetchone()
                    retry = conn.execute(LATENCY, {**recent, "modes": ["fail", "snooze"]})
                    lat = (pct[0] if pct else None) or [0.0, 0.0, 0.0]
                    retry_row = retry.fetchone()
                    retry_p50 = ((retry_row[0] if retry_row else None) or [0.0])[0]
                    rate = (done - done_before) / (now - last)
                    print(
                        f"{now - started:4.0f}  {inserted:8d}  {done:9d}  {rate:6.0f}"
                        f"  {lat[0]:6.1f}  {lat[1]:6.1f}  {lat[2]:6.1f}  {retry_p50:12.1f}"
                        f"  {rss_mb(node.pid):6.1f}",
                        flush=True,
                    )
                    done_before, last = done, now
            return reconcile(conn, inserted)
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
