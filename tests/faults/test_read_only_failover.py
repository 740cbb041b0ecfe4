# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A failover to a read-only server, then writable again, under a running node.

Managed PostgreSQL fails over by demoting the old primary: connections to it stay open but every
write fails with ``cannot execute UPDATE in a read-only transaction``, while new connections
reach the new primary. Here the node connects as a role of its own; new sessions of that role
are made read-only and the node's sessions are cut (so it reconnects to a read-only server),
then new sessions are made writable again without cutting anything: the node's connections are
still read-only ones, as after a real failover, and only replacing them heals the node. The
jobs' own side effects go through the test's role, which the failover does not touch. No
manual step is allowed.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import psycopg
from faultkit import (  # noqa: F401  (fixtures)
    Node,
    fault_dsn,
    insert_jobs,
    reruns_or_errors,
    states,
    wait_started,
    wait_until,
)
from psycopg import sql

READ_ONLY_LINE = "the database is read-only here"


def test_a_node_heals_after_a_failover_to_a_read_only_server_and_back(
    fault_dsn: str, server_dsn: str, tmp_path: Path
) -> None:
    dbname = str(psycopg.conninfo.conninfo_to_dict(fault_dsn)["dbname"])
    role = f"oban_failover_{uuid.uuid4().hex[:8]}"
    names = {"role": sql.Identifier(role), "db": sql.Identifier(dbname)}
    read_only = sql.SQL(
        "ALTER ROLE {role} IN DATABASE {db} SET default_transaction_read_only = on"
    ).format(**names)
    writable = sql.SQL(
        "ALTER ROLE {role} IN DATABASE {db} RESET default_transaction_read_only"
    ).format(**names)
    with (
        psycopg.connect(fault_dsn, autocommit=True) as conn,
        psycopg.connect(server_dsn, autocommit=True) as admin,
    ):
        admin.execute(sql.SQL("CREATE ROLE {role} LOGIN SUPERUSER").format(**names))
        node = Node(
            psycopg.conninfo.make_conninfo(fault_dsn, user=role),
            "default:10",
            "py-failover",
            tmp_path,
            # The fence (no heartbeat for ttl / 2) stays out of a 5 s failover.
            OBAN_LIFELINE__HEARTBEAT_TTL="30",
            FAULT_EFFECTS_DSN=fault_dsn,
        )
        try:
            ids = insert_jobs(conn, "Faults.Once", 1200, args='{"ms": 20}')
            wait_started(node)
            wait_until(lambda: states(conn).get("completed", 0) >= 50, 20, 0.01)

            admin.execute(read_only)
            try:
                cut = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE usename = %s",
                    (role,),
                ).fetchone()
                assert cut is not None
                assert cut[0] > 0
                time.sleep(5)
            finally:
                # Writable again for new sessions; the node's sessions are left as they are.
                admin.execute(writable)
            assert states(conn) != {"completed": len(ids)}, "the failover held the node up"

            try:
                wait_until(lambda: states(conn) == {"completed": len(ids)}, 60, 0.2)
            except AssertionError:
                raise AssertionError(f"not healed: {states(conn)}\n{node.log()[-6000:]}") from None
            assert node.proc.poll() is None, "the node must keep running through the failover"
            # Exactly once: fault_once has a primary key, a second run would have failed the job.
            assert conn.execute("SELECT count(*) FROM fault_once").fetchone()[0] == len(ids)
            assert reruns_or_errors(conn) == 0

            # Still working after it, with no manual step.
            late = insert_jobs(conn, "Faults.Once", 5)
            wait_until(lambda: states(conn) == {"completed": len(ids) + len(late)}, 15, 0.05)
            node.signal(signal.SIGTERM)
            assert node.wait(15) == 0, node.log()
        finally:
            node.kill()
            admin.execute(sql.SQL("DROP ROLE {role}").format(**names))

    entries = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    lines = [e for e in entries if e.get("event", "").startswith(READ_ONLY_LINE)]
    assert len(lines) == 1, "one clear line, not a stream"
    assert lines[0]["level"] == "warning"
    # No stream of warnings either: each part of the node says once that it is failing.
    warnings = [e["event"] for e in entries if e.get("level") in ("warning", "error")]
    assert len(warnings) < 40, warnings
