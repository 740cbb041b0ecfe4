# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""Threads a job leaves behind: ``oban-py start`` exits once the node stopped, whatever they do."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)

from oban_py.cli.node import EXIT_FORCED


def test_the_cli_exits_after_node_stopped_despite_a_thread_a_job_leaked(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.LeaksThread", 1)
        node = nodes("default:2", "py-leak")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn) == {"completed": 1}, 10, 0.05)
        node.signal(signal.SIGTERM)
        wait_until(lambda: "node stopped" in node.log(), 10, 0.05)
        # The leaked thread is no daemon and sleeps for an hour: the interpreter would wait
        # for it at exit.
        assert node.wait(5) == 0, node.log()
        assert "leaked" in node.log(), "the exit names the threads it leaves behind"


def test_atexit_functions_get_their_time_when_only_idle_pool_threads_are_left(
    fault_dsn: str, nodes: object, tmp_path: Path
) -> None:
    flushed = tmp_path / "flushed"
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.UsesExecutor", 1)
        node = nodes("default:2", "py-idle", FAULT_ATEXIT_FILE=str(flushed))  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn) == {"completed": 1}, 10, 0.05)
        node.signal(signal.SIGTERM)
        assert node.wait(10) == 0, node.log()
    assert flushed.read_text() == "flushed"
    assert "exiting without waiting" not in node.log()


def test_a_second_signal_ends_the_cli_even_while_a_job_blocks_the_event_loop(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.Blocker", 1, args='{"s": 60}')
        node = nodes("default:2", "py-blocked")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: conn.execute("SELECT count(*) FROM fault_effects").fetchone()[0], 10)
        node.signal(signal.SIGTERM)
        time.sleep(0.5)
        node.signal(signal.SIGTERM)
        # The loop runs nothing for a minute: neither signal can be handled on it.
        assert node.wait(8) == EXIT_FORCED, node.log()
        assert "did not leave after a second signal" in node.log()
        assert states(conn) == {"executing": 1}
