# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""The PostgreSQL server restarted under a running node (an embedded server the test owns)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from faultkit import Node, Server, insert_jobs, server, states, wait_started, wait_until  # noqa: F401  (fixtures)

from oban_py import schema


def test_node_rides_out_a_server_restart_and_runs_every_job_exactly_once(
    server: Server, tmp_path: Path
) -> None:
    began = time.monotonic()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        conn.execute(schema.install_sql().encode())
        conn.execute(
            "CREATE TABLE fault_once (job_id bigint PRIMARY KEY, queue text NOT NULL,"
            " node text NOT NULL, inflight int NOT NULL DEFAULT 0)"
        )
        ids = insert_jobs(conn, "Faults.OnceQuick", 300, args='{"ms": 20}')
    node = Node(server.dsn, "default:10", "py-restart", tmp_path)
    try:
        wait_started(node)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            wait_until(lambda: states(conn).get("completed", 0) >= 30, 10, 0.01)
        server.stop()
        time.sleep(1.0)
        assert node.proc.poll() is None, f"the node must outlive the outage:\n{node.log()}"
        server.start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            wait_until(lambda: states(conn) == {"completed": len(ids)}, 20, 0.2)
            # fault_once's primary key: a second run of a job would have failed it for good.
            ran = conn.execute("SELECT count(*) FROM fault_once").fetchone()
            assert ran is not None
            assert ran[0] == len(ids)
            late = insert_jobs(conn, "Faults.OnceQuick", 5)
            wait_until(lambda: states(conn) == {"completed": len(ids) + len(late)}, 10, 0.05)
        assert node.proc.poll() is None
        log = node.log()
        assert "notifier connection lost" in log
        assert "notifier reconnected" in log
    finally:
        node.kill()
    assert time.monotonic() - began < 30
