# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A live node's jobs are never rescued while they run, even when its event loop is blocked or
its shutdown outlasts the grace; each job runs once, with no second run beside it."""

from __future__ import annotations

import json
import signal
from typing import Any

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)


def runs(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[int, str]]:
    """(attempt, node) of each run's start, and (attempt, "done") of each run's end."""
    cur = conn.execute(
        "SELECT attempt, node FROM fault_effects WHERE job_id = %s ORDER BY at", (job_id,)
    )
    return [(a, n) for a, n in cur.fetchall()]


def leader(conn: psycopg.Connection[Any]) -> str | None:
    found = conn.execute("SELECT node FROM oban_peers WHERE name = 'Oban.py'").fetchone()
    return None if found is None else str(found[0])


def test_a_worker_blocking_the_loop_past_the_heartbeat_ttl_is_not_rescued_and_is_reported(
    fault_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        watcher = nodes("other:1", "py-leader")
        wait_started(watcher)
        wait_until(lambda: leader(conn) == "py-leader", 10)
        blocked = nodes("block:5", "py-blocked", OBAN_PEER="false")
        wait_started(blocked)
        # Each blocks the loop for 3 s, past the 2 s heartbeat ttl the leader rescues after.
        ids = insert_jobs(conn, "Faults.Blocker", 2, queue="block", args='{"s": 3}')
        wait_until(lambda: states(conn) == {"completed": 2}, 30, 0.2)
        for job_id in ids:
            assert runs(conn, job_id) == [(1, "py-blocked"), (1, "done")]
        warnings = [
            line
            for line in blocked.log().splitlines()
            if line.startswith("{") and "event loop blocked" in line
        ]
        assert warnings, blocked.log()
        event = json.loads(warnings[0])
        assert event["running_workers"] == ["Faults.Blocker"]
        assert "time.sleep" in event["where"]


def test_a_sync_job_outliving_the_shutdown_grace_finishes_on_its_node_with_no_second_run(
    fault_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        stopping = nodes("sync:2", "py-stopping", OBAN_PEER="false", OBAN_SHUTDOWN_GRACE="0.5")
        wait_started(stopping)
        [job_id] = insert_jobs(conn, "Faults.SyncEffect", 1, queue="sync", args='{"s": 4}')
        wait_until(lambda: runs(conn, job_id) == [(1, "py-stopping")], 10, 0.05)
        # A second node that leads (and so rescues) and runs the same queue.
        other = nodes("sync:2", "py-other")
        wait_started(other)
        wait_until(lambda: leader(conn) == "py-other", 10)
        stopping.signal(signal.SIGTERM)
        assert stopping.wait(15) == 0, stopping.log()
        assert states(conn) == {"completed": 1}
        assert runs(conn, job_id) == [(1, "py-stopping"), (1, "done")]
        assert conn.execute(
            "SELECT attempt FROM oban_jobs WHERE id = %s", (job_id,)
        ).fetchone() == (1,)
