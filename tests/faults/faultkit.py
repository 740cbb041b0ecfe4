"""Helpers and fixtures of the fault tests (imported by each test module; not a conftest, so
the suite-wide ``conftest`` module name stays the top-level one)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OBAN_PY = Path(sys.executable).with_name("oban-py")

#: Short duty intervals so a dead node is noticed and rescued in seconds, not minutes.
FAST = {
    "OBAN_POLL_INTERVAL": "0.2",
    "OBAN_STAGE_INTERVAL": "0.2",
    "OBAN_PEER_INTERVAL": "2",
    "OBAN_LIFELINE__INTERVAL": "0.5",
    "OBAN_LIFELINE__HEARTBEAT_INTERVAL": "0.5",
    "OBAN_LIFELINE__HEARTBEAT_TTL": "2",
    "OBAN_LIFELINE__RESCUE_AFTER": "600",
    "OBAN_SHUTDOWN_GRACE": "3",
}


class Node:
    """One ``oban-py start`` process; its JSON log goes to a file the test can read."""

    def __init__(
        self,
        dsn: str,
        queues: str,
        name: str,
        log_dir: Path,
        *,
        wrapper: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        """``wrapper``: a command the node runs under (``faketime -f -300s``); ``args``: more
        options of ``oban-py start``."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        environment = {
            **os.environ,
            **FAST,
            **env,
            "OBAN_DSN": dsn,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        environment.pop("DATABASE_URL", None)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *wrapper,
                str(OBAN_PY),
                "start",
                "--queues",
                queues,
                "--node",
                name,
                "--import",
                "fault_workers",
                "--log-format",
                "json",
                *args,
            ],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # A group of its own, so kill() reaches the node under a wrapper too: faketime
            # does not pass its SIGKILL on, and the node, orphaned, would run on after the test.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def nodes(dsn: str, tmp_path: Path) -> Iterator[Any]:
    """Start nodes with ``nodes(queues, name, wrapper=(), args=(), **env)``; every one is killed
    after the test."""
    started: list[Node] = []

    def start(
        queues: str,
        name: str,
        wrapper: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        **env: str,
    ) -> Node:
        node = Node(dsn, queues, name, tmp_path, wrapper=wrapper, args=args, **env)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


@pytest.fixture
def fault_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE fault_effects (job_id bigint NOT NULL, attempt int NOT NULL,"
            " node text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(
            "CREATE TABLE fault_once (job_id bigint PRIMARY KEY, queue text NOT NULL,"
            " node text NOT NULL, inflight int NOT NULL DEFAULT 0)"
        )
    return dsn


def insert_jobs(
    conn: psycopg.Connection[Any],
    worker: str,
    count: int,
    *,
    queue: str = "default",
    args: str = "{}",
    max_attempts: int = 20,
) -> list[int]:
    cur = conn.execute(
        "INSERT INTO oban_jobs (queue, worker, args, max_attempts)"
        " SELECT %s, %s, %s::jsonb, %s FROM generate_series(1, %s) RETURNING id",
        (queue, worker, args, max_attempts, count),
    )
    return [r[0] for r in cur.fetchall()]


def states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    cur = conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1")
    return {s: n for s, n in cur.fetchall()}


def reruns_or_errors(conn: psycopg.Connection[Any]) -> int:
    """Jobs that did not succeed at their first attempt: 0 when every one ran once, cleanly."""
    cur = conn.execute("SELECT count(*) FROM oban_jobs WHERE attempt <> 1 OR errors <> '{}'")
    count: int = cur.fetchone()[0]
    return count


def wait_until(check: Any, timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(interval)


def wait_started(node: Node, timeout: float = 15.0) -> None:
    def up() -> bool:
        assert node.proc.poll() is None, f"{node.name} exited early:\n{node.log()}"
        return "node started" in node.log()

    wait_until(up, timeout, 0.05)


class Server:
    """An embedded PostgreSQL server of the test's own (pgserver), stopped and started again
    with pgserver's own options: an outage every node sees, without touching the shared one."""

    def __init__(self, data: Path) -> None:
        from oban_py import embedded

        self.data = data
        self.dsn = embedded.start(data, keep_running=True)
        self.socket_dir = parse_qs(urlparse(self.dsn).query)["host"][0]
        # As root pgserver runs postgres as its own system user; pg_ctl must run as that user.
        self.user = "pgserver" if os.geteuid() == 0 else None

    def stop(self) -> None:
        _pg_ctl()(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user, timeout=20)

    def start(self) -> None:
        options = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        _pg_ctl()(
            [*options, "-l", str(self.data / "log"), "start"],
            pgdata=self.data,
            user=self.user,
            timeout=20,
        )


def _pg_ctl() -> Any:
    commands = pytest.importorskip("pgserver._commands")
    return commands.pg_ctl


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    pytest.importorskip("pgserver._commands")
    owned = Server(tmp_path / "pgdata")
    try:
        yield owned
    finally:
        with contextlib.suppress(Exception):  # already stopped by a failed test
            owned.stop()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL (on TCP or a Unix socket) that can be
    frozen: a network gone silent.

    Frozen, it forwards nothing either way and keeps every socket open, and it accepts new
    connections but never forwards them: no RST, no FIN, no error, as behind a partition. The
    kernel still acknowledges what the client sends (until its buffers fill), so TCP keepalives
    and ``tcp_user_timeout`` do not fire here: only the application's own bounds can."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def dsn(self, dsn: str) -> str:
        """``dsn`` through this proxy."""
        return psycopg.conninfo.make_conninfo(dsn, host="127.0.0.1", port=str(self.port))

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        """Forward again on the connections made before the freeze (those held stay held)."""
        self._frozen.clear()

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            for sock in self._sockets:
                sock.close()
        self._server.close()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            self._keep(client)
            if self._frozen.is_set():
                continue  # held open, never forwarded
            upstream = self._connect()
            self._keep(upstream)
            pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            self._threads.append(pump)
            pump.start()

    def _connect(self) -> socket.socket:
        host, port = self.target
        if not host.startswith("/"):
            return socket.create_connection(self.target)
        # A server on a Unix socket only (the embedded one): the proxy is still the node's TCP
        # path to it.
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(f"{host}/.s.PGSQL.{port}")
        return upstream

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        while not self._closed.is_set():
            if self._frozen.is_set():
                time.sleep(0.05)
                continue
            readable, _, _ = select.select(list(peer), [], [], 0.05)
            for sock in readable:
                if self._frozen.is_set():
                    break
                try:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peer[sock].sendall(data)
                except OSError:
                    client.close()
                    upstream.close()
                    return


@pytest.fixture
def proxy(dsn: str) -> Iterator[Proxy]:
    """A freezable proxy to the test's database server; closed (every socket) after the test."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    owned = Proxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    try:
        yield owned
    finally:
        owned.close()
