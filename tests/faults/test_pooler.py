# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A transaction pooler between the node and PostgreSQL: pgbouncer in ``pool_mode=transaction``,
started by the test on 127.0.0.1 in front of the test's database, and a plain DSN through it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from faultkit import Node, fault_dsn, insert_jobs, states, wait_started, wait_until  # noqa: F401  (fixtures)
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from oban_py import Client, Job, Oban
from oban_py.client import pooler

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bouncer(fault_dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A DSN reaching the test's database through pgbouncer, in transaction mode unless the
    test is parametrized with another ``pool_mode``."""
    mode = getattr(request, "param", "transaction")
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    target = conninfo_to_dict(fault_dsn)
    if str(target.get("host", "")).startswith("/"):
        # The embedded server (no DATABASE_URL) listens only on a Unix socket in a folder of
        # the test run's user, which pgbouncer, run as postgres, cannot enter.
        pytest.skip("pgbouncer needs a TCP server to pool: set DATABASE_URL to run this test")
    port = _free_port()
    # pgbouncer refuses to run as root: it then runs as postgres, which must read its files.
    home = Path(tempfile.mkdtemp(prefix="oban-pgbouncer-"))
    home.chmod(0o755)
    (home / "users.txt").write_text(f'"{target.get("user", "postgres")}" ""\n')
    (home / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.get('host', '127.0.0.1')} port={target.get('port', 5432)}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'users.txt'}\n"
        f"pool_mode = {mode}\nmax_client_conn = 200\ndefault_pool_size = 20\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    for path in home.iterdir():
        path.chmod(0o644)
    command = [PGBOUNCER, str(home / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    log = (tmp_path / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    through = make_conninfo(fault_dsn, host="127.0.0.1", port=str(port))
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "pgbouncer.log").read_text()
            try:
                psycopg.connect(through, connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_until(up, 10, 0.1)
        yield through
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def test_a_node_through_a_transaction_pooler_runs_every_job_once(
    fault_dsn: str, bouncer: str, tmp_path: Path
) -> None:
    node = Node(
        bouncer,
        "default:10,other:10",
        "py-bounced",
        tmp_path,
        # The workers' own side effects go straight to PostgreSQL.
        FAULT_EFFECTS_DSN=fault_dsn,
    )
    try:
        with psycopg.connect(fault_dsn, autocommit=True) as conn:
            wait_started(node)
            insert_jobs(conn, "Faults.Once", 300, args='{"ms": 5}')
            insert_jobs(conn, "Faults.Mixed", 50, queue="other", args='{"mode": "fail"}')
            insert_jobs(
                conn, "Faults.Mixed", 50, queue="other", args='{"mode": "snooze", "max": 20}'
            )
            wait_until(lambda: states(conn) == {"completed": 400}, 60, 0.2)
            [once] = conn.execute("SELECT count(*) FROM fault_once").fetchone()
            assert once == 300
        log = node.log()
        symptoms = (
            "DuplicatePreparedStatement",
            "InvalidSqlStatementName",
            "bind message",
            "_pg3_",
        )
        for symptom in (*symptoms, "ack batch failed", "plugin failed"):
            assert symptom not in log, log
        assert "pooler in transaction mode" in log
    finally:
        node.kill()


def test_sync_calls_through_a_transaction_pooler_prepare_nothing(
    fault_dsn: str, bouncer: str
) -> None:
    def enqueue(client: Client, thread: int) -> None:
        for i in range(30):
            client.enqueue_sync(Job(worker="Faults.Once", args={"thread": thread, "i": i}))

    # Eight threads sharing the client's pool: its connections meet the pooler's server
    # sessions in every order, past psycopg's five executions before preparing.
    with Client(dsn=bouncer, name="faults-bounced") as client:
        with ThreadPoolExecutor(8) as threads:
            list(threads.map(enqueue, [client] * 8, range(8)))
        assert client._sync.pooler == "transaction"
        with client._sync.get().connection() as conn:
            assert conn.prepare_threshold is None
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        assert states(conn) == {"available": 240}


def _mode(dsn: str) -> str | None:
    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, autocommit=True)

    with connect() as conn:
        return pooler.detect_sync(conn, connect)


@pytest.mark.parametrize(
    ("bouncer", "mode"),
    [("session", "session"), ("transaction", "transaction"), ("statement", "transaction")],
    indirect=["bouncer"],
)
def test_the_pooling_mode_is_told_apart_from_a_direct_connection(
    fault_dsn: str, bouncer: str, mode: str
) -> None:
    assert _mode(fault_dsn) is None
    # Statement pooling refuses the probe's transaction, and is no safer than transaction mode.
    assert _mode(bouncer) == mode


async def test_notifier_dsn_keeps_signals_working_behind_a_transaction_pooler(
    fault_dsn: str, bouncer: str, tmp_path: Path
) -> None:
    node = Node(
        bouncer,
        "default:5",
        "py-bounced",
        tmp_path,
        FAULT_EFFECTS_DSN=fault_dsn,
        OBAN_NOTIFIER_DSN=fault_dsn,
    )
    try:
        with psycopg.connect(fault_dsn, autocommit=True) as conn:
            wait_started(node)
            sender = Oban(dsn=fault_dsn, queues={}, peer=False, node="signal-sender")
            try:
                await sender.pause_queue("default")
                await asyncio.sleep(0.5)
                insert_jobs(conn, "Faults.Once", 3)
                await asyncio.sleep(1.0)
                # The pause came over LISTEN, which the pooler would have lost.
                assert states(conn) == {"available": 3}
                await sender.resume_queue("default")
                wait_until(lambda: states(conn) == {"completed": 3}, 10, 0.1)
            finally:
                await sender.close()
    finally:
        node.kill()
