# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A failover to a read-only server, then writable again, under a running node.

Managed PostgreSQL fails over by demoting the old primary: connections to it stay open but every
write fails with ``cannot execute UPDATE in a read-only transaction``, while new connections
reach the new primary. Here the database is made read-only for new sessions and the node's
sessions are cut (so it reconnects to a read-only server), then made writable again without
cutting anything: the node's connections are still read-only ones, as after a real failover,
and only replacing them heals the node. No manual step is allowed.
"""

from __future__ import annotations

import json
import signal
import time

import psycopg
from faultkit import fault_dsn, insert_jobs, nodes, states, wait_started, wait_until  # noqa: F401  (fixtures)
from psycopg import sql

READ_ONLY_LINE = "the database is read-only here"


def cut_node_sessions(admin: psycopg.Connection, database: str) -> int:
    cur = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid() AND application_name <> 'fault_effects'"
        " AND backend_type = 'client backend'",
        (database,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def test_a_node_heals_after_a_failover_to_a_read_only_server_and_back(
    fault_dsn: str, server_dsn: str, nodes: object
) -> None:
    database = str(psycopg.conninfo.conninfo_to_dict(fault_dsn)["dbname"])
    ident = sql.Identifier(database)
    with (
        psycopg.connect(fault_dsn, autocommit=True, application_name="fault_effects") as conn,
        psycopg.connect(server_dsn, autocommit=True) as admin,
    ):
        ids = insert_jobs(conn, "Faults.Once", 1200, args='{"ms": 20}')
        # The fence (no heartbeat for ttl / 2) stays out of a 5 s failover.
        node = nodes("default:10", "py-failover", OBAN_LIFELINE__HEARTBEAT_TTL="30")  # type: ignore[operator]
        wait_started(node)
        wait_until(lambda: states(conn).get("completed", 0) >= 50, 20, 0.01)

        admin.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(ident)
        )
        try:
            assert cut_node_sessions(admin, database) > 0
            time.sleep(5)
        finally:
            # Writable again for new sessions; the node's sessions are left as they are.
            admin.execute(
                sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(ident)
            )
        during = states(conn)
        assert during != {"completed": len(ids)}, "the failover must have held the node up"

        try:
            wait_until(lambda: states(conn) == {"completed": len(ids)}, 60, 0.2)
        except AssertionError:
            raise AssertionError(f"not healed: {states(conn)}\n{node.log()[-6000:]}") from None
        assert node.proc.poll() is None, "the node must keep running through the failover"
        # Exactly once: fault_once has a primary key, a second run would have failed the job.
        assert conn.execute("SELECT count(*) FROM fault_once").fetchone()[0] == len(ids)
        assert (
            conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE errors <> '{}' OR attempt <> 1"
            ).fetchone()[0]
            == 0
        )

        # Still working after it, with no manual step.
        late = insert_jobs(conn, "Faults.Once", 5)
        wait_until(lambda: states(conn) == {"completed": len(ids) + len(late)}, 15, 0.05)
        node.signal(signal.SIGTERM)
        assert node.wait(15) == 0, node.log()

    entries = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    read_only = [e for e in entries if e.get("event", "").startswith(READ_ONLY_LINE)]
    assert len(read_only) == 1, "one clear line, not a stream"
    assert read_only[0]["level"] == "warning"
    # No stream of warnings either: each part of the node says once that it is failing.
    warnings = [e["event"] for e in entries if e.get("level") in ("warning", "error")]
    assert len(warnings) < 40, warnings
