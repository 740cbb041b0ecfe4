# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A node whose clock is off by five minutes (Debian's ``faketime``) snoozes and retries by the
database's clock: every time compared here is read from the server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)

FAKETIME = shutil.which("faketime")
DELAY = 3
SHM = Path("/dev/shm")


@pytest.fixture(autouse=True)
def no_stale_faketime_semaphores() -> None:
    """The faketime wrapper names a semaphore and a shared-memory segment after its own pid and
    removes them when it exits; a wrapper killed with its node (SIGKILL) leaves them behind, and
    a later wrapper given the same pid fails at once ("sem_open: File exists"). Those of pids no
    longer running are removed first."""
    for stale in (*SHM.glob("sem.faketime_sem_*"), *SHM.glob("faketime_shm_*")):
        pid = stale.name.rsplit("_", 1)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def _runs(conn: psycopg.Connection[object], job_id: int) -> list[float]:
    """Seconds from the job's first run to each of its runs, and from the first run to its
    scheduled_at (last), all by the server's clock."""
    rows = conn.execute(
        "SELECT extract(epoch FROM e.at - min(e.at) OVER ()),"
        " extract(epoch FROM j.scheduled_at - timezone('UTC', min(e.at) OVER ()))"
        " FROM fault_effects AS e JOIN oban_jobs AS j ON j.id = e.job_id"
        " WHERE e.job_id = %s ORDER BY e.at",
        (job_id,),
    ).fetchall()
    return [float(r[0]) for r in rows] + [float(rows[0][1])]


@pytest.mark.parametrize("skew", ["-300s", "+300s"])
def test_snooze_and_retry_backoff_follow_the_database_clock(
    fault_dsn: str, nodes: object, skew: str
) -> None:
    if FAKETIME is None:
        pytest.skip("faketime is not installed (Debian: apt-get install faketime)")
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        [snoozed] = insert_jobs(
            conn, "Faults.Later", 1, args=f'{{"mode": "snooze", "s": {DELAY}, "max": 20}}'
        )
        [failed] = insert_jobs(
            conn, "Faults.Later", 1, args=f'{{"mode": "fail", "s": {DELAY}, "max": 20}}'
        )
        node = nodes(  # type: ignore[operator]
            "default:5",
            "py-skewed",
            wrapper=(FAKETIME, "-f", skew),
            # Only the wall clock is off, as on a host whose clock drifted; uvloop's timers
            # and time.monotonic() keep the real monotonic clock.
            FAKETIME_DONT_FAKE_MONOTONIC="1",
        )
        wait_started(node)
        # Five minutes ahead, a node's own clock would put the rerun past this wait.
        wait_until(lambda: states(conn) == {"completed": 2}, 20, 0.1)
        for job_id in (snoozed, failed):
            first, second, scheduled = _runs(conn, job_id)
            assert first == 0
            # Scheduled DELAY seconds after the first run's ack, by the server's clock (five
            # minutes off either way with the node's clock), and rerun once due, not before.
            assert DELAY <= scheduled < DELAY + 1.5, (job_id, scheduled, node.log())
            assert second >= DELAY, (job_id, second)


ENQUEUE = """
import sys
from oban_py import Client, Job

with Client(dsn=sys.argv[1], name="skewed") as client:
    client.enqueue_sync(Job(worker="W", queue="one", schedule_in=60))
    client.enqueue_many_sync([Job(worker="W", queue="many", schedule_in=60) for _ in range(3)])
    client.enqueue_sync(Job(worker="W", queue="unique", schedule_in=60, unique={"period": 300}))
"""


@pytest.mark.parametrize("skew", ["-300s", "+300s"])
def test_schedule_in_at_insert_follows_the_database_clock(fault_dsn: str, skew: str) -> None:
    if FAKETIME is None:
        pytest.skip("faketime is not installed (Debian: apt-get install faketime)")
    subprocess.run(
        [FAKETIME, "-f", skew, sys.executable, "-c", ENQUEUE, fault_dsn],
        env={**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        check=True,
        timeout=60,
    )
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT queue, extract(epoch FROM scheduled_at - inserted_at) FROM oban_jobs"
        ).fetchall()
    assert sorted(q for q, _ in rows) == ["many", "many", "many", "one", "unique"]
    for queue, delay in rows:
        assert float(delay) == 60, (queue, delay)
