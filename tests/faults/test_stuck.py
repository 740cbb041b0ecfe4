# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""Slow and stuck workers: timeouts hold, and a worker ignoring cancellation is still ended."""

from __future__ import annotations

import signal

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)

from oban_py import Client


def test_timeout_fails_a_slow_job_with_elixir_timeout_error(fault_dsn: str, nodes: object) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        [job_id] = insert_jobs(conn, "Faults.Slow", 1, max_attempts=1)
        node = nodes("default:2", "py-slow")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn) == {"discarded": 1}, 10, 0.05)
        [errors] = conn.execute("SELECT errors FROM oban_jobs WHERE id = %s", (job_id,)).fetchone()
        assert "Oban.TimeoutError" in errors[0]["error"]
        assert "200ms" in errors[0]["error"] or "200" in errors[0]["error"]


async def test_workers_ignoring_cancellation_are_ended_by_cancel_job(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        sync_ids = insert_jobs(conn, "Faults.StuckSync", 2)
        async_ids = insert_jobs(conn, "Faults.StuckAsync", 2)
        node = nodes("default:10", "py-stuck", OBAN_SHUTDOWN_GRACE="0.5")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("executing", 0) == 4, 10, 0.02)

        async with Client(dsn=fault_dsn, name="faults-stuck") as client:
            assert await client.cancel_jobs([sync_ids[0], async_ids[0]]) == 2

        def killed() -> bool:
            rows = conn.execute(
                "SELECT errors FROM oban_jobs WHERE id = ANY(%s)", ([sync_ids[0], async_ids[0]],)
            ).fetchall()
            return all(r[0] and "shutdown" in r[0][-1]["error"] for r in rows)

        # The pkill ack (Elixir's {:cancel, :shutdown} entry) proves the runtime gave up on them.
        wait_until(killed, 10, 0.05)
        assert states(conn) == {"cancelled": 2, "executing": 2}


def test_sigterm_waits_for_workers_that_ignore_cancellation_and_writes_their_outcome(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.StuckSync", 1, args='{"s": 3}')
        insert_jobs(conn, "Faults.StuckAsync", 1, args='{"s": 3}')
        node = nodes("default:10", "py-stuck", OBAN_SHUTDOWN_GRACE="0.5")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("executing", 0) == 2, 10, 0.02)
        node.signal(signal.SIGTERM)
        # Neither a thread nor a coroutine swallowing its cancellation can be stopped, so the
        # node keeps their rows (and its heartbeat) until they end, then writes what they did.
        assert node.wait(1.5) is None, "the node must not leave while its workers still run"
        assert states(conn) == {"executing": 2}
        assert node.wait(15) == 0, node.log()
        assert states(conn) == {"completed": 2}


def test_a_second_signal_leaves_at_once_and_the_jobs_stay_for_the_lifeline(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.StuckSync", 1, args='{"s": 30}')
        node = nodes("default:10", "py-stuck", OBAN_SHUTDOWN_GRACE="0.5")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("executing", 0) == 1, 10, 0.02)
        node.signal(signal.SIGTERM)
        wait_until(lambda: "stopping gracefully" in node.log(), 5, 0.05)
        node.signal(signal.SIGTERM)
        assert node.wait(8) is not None, "a second signal must end the node"
        assert states(conn) == {"executing": 1}
