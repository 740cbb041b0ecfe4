# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""Every connection of a node terminated by the server, repeatedly, mid-run."""

from __future__ import annotations

import signal
import time

import psycopg
from faultkit import (  # noqa: F401  (fixtures)
    fault_dsn,
    insert_jobs,
    nodes,
    reruns_or_errors,
    states,
    wait_started,
    wait_until,
)
from psycopg import sql

TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND application_name <> 'fault_effects'"
)


def test_node_survives_terminated_connections_and_loses_no_job_or_ack(
    fault_dsn: str, nodes: object
) -> None:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        ids = insert_jobs(conn, "Faults.Once", 600, args='{"ms": 20}')
        node = nodes("default:10", "py-conn")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("completed", 0) >= 50, 20, 0.01)
        killed = 0
        for _ in range(4):
            killed += conn.execute(TERMINATE).fetchone()[0]
            time.sleep(0.25)
        assert killed > 0
        wait_until(lambda: states(conn) == {"completed": len(ids)}, 60, 0.2)
        assert node.proc.poll() is None, "the node must keep running through the outage"
        # Exactly once: fault_once has a primary key, a second run would have failed the job.
        assert conn.execute("SELECT count(*) FROM fault_once").fetchone()[0] == len(ids)
        assert reruns_or_errors(conn) == 0
        log = node.log()
        assert "notifier connection lost" in log
        assert "notifier reconnected" in log

        # Still working after the outage, with notifications flowing again.
        late = insert_jobs(conn, "Faults.Once", 5)
        wait_until(lambda: states(conn) == {"completed": len(ids) + len(late)}, 10, 0.05)
        node.signal(signal.SIGTERM)
        assert node.wait(15) == 0, node.log()


def test_acks_made_while_the_database_is_unreachable_are_written_later(
    fault_dsn: str, server_dsn: str, nodes: object
) -> None:
    with (
        psycopg.connect(fault_dsn, autocommit=True) as conn,
        psycopg.connect(server_dsn, autocommit=True) as admin,
    ):
        node = nodes("default:20", "py-ack", OBAN_LIFELINE__HEARTBEAT_TTL="30")  # type: ignore[operator]
        wait_started(node)
        ids = insert_jobs(conn, "Faults.Effect", 20, args='{"ms": 600}')
        wait_until(lambda: states(conn).get("executing", 0) == 20, 10, 0.02)
        # Refuse new connections to this database while the jobs finish, so every ack fails.
        database = sql.Identifier(conn.info.dbname)
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(database))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> %s AND application_name <> 'fault_effects'",
                (conn.info.dbname, conn.info.backend_pid),
            )
            time.sleep(1.5)
            assert states(conn).get("executing", 0) == 20, "no ack can have landed"
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(database))
        wait_until(lambda: states(conn) == {"completed": len(ids)}, 30, 0.1)
        # The acks waited for the pool to reconnect (or failed and were retried): none dropped,
        # none turned into a second run.
        wait_until(lambda: "notifier reconnected" in node.log(), 10, 0.1)
        assert reruns_or_errors(conn) == 0
        assert conn.execute("SELECT count(*) FROM fault_effects").fetchone()[0] == len(ids)
