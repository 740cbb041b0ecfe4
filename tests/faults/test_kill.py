# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A node killed outright, or asked to stop, never loses a job and never strands one."""

from __future__ import annotations

import signal

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)


def test_sigkill_mid_run_loses_nothing_and_only_committed_effects_repeat(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        ids = insert_jobs(conn, "Faults.Effect", 1000, args='{"ms": 20}', max_attempts=3)
        first = nodes("default:20", "py-kill-a")  # type: ignore[operator]
        wait_started(first)

        def some_ran() -> bool:
            return conn.execute("SELECT count(*) FROM fault_effects").fetchone()[0] >= 200

        wait_until(some_ran, 20, 0.01)
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        before_kill = {
            r[0] for r in conn.execute("SELECT DISTINCT job_id FROM fault_effects").fetchall()
        }
        stranded = states(conn).get("executing", 0)
        assert stranded > 0, "the kill should have caught jobs mid-run"
        assert len(before_kill) < len(ids), "the kill came too late to prove anything"

        second = nodes("default:20", "py-kill-b")  # type: ignore[operator]
        wait_started(second)
        wait_until(lambda: states(conn) == {"completed": len(ids)}, 60, 0.2)

        twice = {
            r[0]
            for r in conn.execute(
                "SELECT job_id FROM fault_effects GROUP BY job_id HAVING count(*) > 1"
            ).fetchall()
        }
        assert twice <= before_kill
        ran = {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM fault_effects").fetchall()}
        assert ran == set(ids)
        over = conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE attempt > max_attempts OR max_attempts <> 3"
        ).fetchone()[0]
        assert over == 0
        # A rescued job is run again as its next attempt, by the surviving node.
        rerun = conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE attempt = 2 AND attempted_by[1] = 'py-kill-b'"
        ).fetchone()[0]
        assert rerun >= stranded


def test_sigterm_finishes_short_jobs_and_releases_long_ones_for_another_node(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        quick = insert_jobs(conn, "Faults.Effect", 10, args='{"ms": 300}')
        first = nodes("default:20", "py-term-a", OBAN_SHUTDOWN_GRACE="1")  # type: ignore[operator]
        wait_started(first)
        wait_until(lambda: states(conn).get("executing", 0) == 10, 10, 0.02)
        slow = insert_jobs(conn, "Faults.Effect", 5, args='{"slow_first": 30000}')
        wait_until(lambda: states(conn).get("executing", 0) >= 15, 10, 0.02)
        first.signal(signal.SIGTERM)
        # Grace (1 s) plus the bounded teardown: never hangs on a running job.
        assert first.wait(10) == 0, first.log()
        assert "stopping gracefully" in first.log()
        got = dict(conn.execute("SELECT id, state::text FROM oban_jobs").fetchall())
        assert all(got[i] == "completed" for i in quick)
        # Cancelled after the grace, their tasks ended: released at once, attempt kept.
        assert all(got[i] == "available" for i in slow)

        second = nodes("default:20", "py-term-b")  # type: ignore[operator]
        wait_started(second)
        wait_until(lambda: states(conn) == {"completed": 15}, 30, 0.1)
        owners = conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND attempted_by[1] = 'py-term-b'"
            " AND attempt = 2",
            (slow,),
        ).fetchone()[0]
        assert owners == len(slow)
