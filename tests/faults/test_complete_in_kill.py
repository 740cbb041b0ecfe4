# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""``complete_in`` under a SIGKILL of a real ``oban-py start`` node: the effect and the
completion commit together, so a kill right after the commit leaves the job completed and never
rerun, and a kill right before it leaves no effect and the job rerun by another node."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, wait_started, wait_until  # noqa: F401  (fixtures)


def job_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    found = conn.execute(
        "SELECT state::text, attempt, attempted_by, completed_at FROM oban_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert found is not None
    return dict(zip(("state", "attempt", "attempted_by", "completed_at"), found, strict=True))


def effects(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT attempt, node FROM fault_effects WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def start_paused(
    conn: psycopg.Connection[Any], nodes: Any, tmp_path: Path, pause: str
) -> tuple[Any, int, int]:
    """A node running a ``complete_in`` job paused at ``pause``, beside a control job that is
    still executing when the node dies (its rescue proves the dead node's jobs were looked at)."""
    args = json.dumps({"pause": pause, "release": str(tmp_path / "never")})
    [job_id] = insert_jobs(conn, "Faults.CompleteInTx", 1, args=args)
    [control] = insert_jobs(conn, "Faults.Effect", 1, args='{"slow_first": 60000}')
    first = nodes("default:5", "py-ctx-a")
    wait_started(first)
    return first, job_id, control


def test_killed_right_after_the_commit_the_job_is_completed_once_and_never_rerun(
    fault_dsn: str, nodes: Any, tmp_path: Path
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        first, job_id, control = start_paused(conn, nodes, tmp_path, "after_commit")
        # Committed: the effect is visible and the job completed, the node has not acked yet.
        wait_until(lambda: job_row(conn, job_id)["state"] == "completed", 20, 0.02)
        wait_until(lambda: job_row(conn, control)["state"] == "executing", 20, 0.02)
        assert effects(conn, job_id) == [(1, "py-ctx-a")]
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

        second = nodes("default:5", "py-ctx-b")
        wait_started(second)
        # The dead node's executing job was rescued and rerun: the complete_in job was not.
        wait_until(lambda: job_row(conn, control)["state"] == "completed", 60, 0.2)
        done = job_row(conn, job_id)
        assert done["state"] == "completed"
        assert done["attempt"] == 1
        assert done["attempted_by"][0] == "py-ctx-a"
        assert effects(conn, job_id) == [(1, "py-ctx-a")]


def test_killed_right_before_the_commit_there_is_no_effect_and_the_job_is_rerun(
    fault_dsn: str, nodes: Any, tmp_path: Path
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        first, job_id, control = start_paused(conn, nodes, tmp_path, "before_commit")

        def paused() -> bool:
            found = conn.execute(
                "SELECT count(*) FROM fault_once WHERE job_id = %s", (job_id,)
            ).fetchone()
            return found is not None and found[0] == 1

        wait_until(paused, 20, 0.02)
        # Written and completed inside the open transaction, so invisible from here.
        assert job_row(conn, job_id)["state"] == "executing"
        assert effects(conn, job_id) == []
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

        second = nodes("default:5", "py-ctx-b")
        wait_started(second)
        wait_until(lambda: job_row(conn, job_id)["state"] == "completed", 60, 0.2)
        done = job_row(conn, job_id)
        assert done["attempt"] == 2
        assert done["attempted_by"][0] == "py-ctx-b"
        # The killed attempt's effect rolled back with its completion: one effect, the rerun's.
        assert effects(conn, job_id) == [(2, "py-ctx-b")]
        wait_until(lambda: job_row(conn, control)["state"] == "completed", 60, 0.2)
