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


def test_sigterm_waits_for_a_thread_and_gives_up_a_coroutine_that_ignores_cancellation(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        (sync,) = insert_jobs(conn, "Faults.StuckSync", 1, args='{"s": 3}')
        # Longer than the thread's job, and than any delay before the signal on a loaded
        # machine: it must still be running when given up (3 s, ending on its own first, was
        # released as an interrupted job instead).
        (stuck,) = insert_jobs(conn, "Faults.StuckAsync", 1, args='{"s": 8}')
        node = nodes("default:10", "py-stuck", OBAN_SHUTDOWN_GRACE="0.5")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("executing", 0) == 2, 10, 0.02)
        node.signal(signal.SIGTERM)
        # A thread cannot be stopped: the node keeps its row (and its heartbeat) until it ends,
        # then writes what it did. A coroutine swallowing its cancellation is what Elixir would
        # kill: it is given up a second after the grace, its row left for the lifeline.
        assert node.wait(1.5) is None, "the node must not leave while its thread still runs"
        assert node.wait(15) == 0, node.log()
        rows = dict(conn.execute("SELECT id, state::text FROM oban_jobs").fetchall())
        assert rows == {sync: "completed", stuck: "executing"}
        assert "ignored its cancellation past the shutdown grace" in node.log()
        dead = conn.execute(
            "SELECT h.updated_at = '-infinity' FROM oban_py_heartbeats AS h"
            " JOIN oban_jobs AS j ON j.attempted_by[2] = h.uuid::text WHERE j.id = %s",
            (stuck,),
        ).fetchone()
        assert dead == (True,), "its producer is marked dead: the leader rescues it at once"


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
