"""``oban-py start --processes N``: one command running N node processes, so a node uses N cores.

The supervisor runs no job itself. It starts each node as ``python -m oban_py.cli start`` with
the same settings, each in a process group of its own, and is the only one to hand them the
signals it gets: a Ctrl-C in a terminal reaches the supervisor alone, so no node counts the same
keypress twice (two signals would stop it at once instead of gracefully). A node whose supervisor
disappears (SIGKILL, an OOM kill) stops gracefully by itself.

It restarts nothing: a node that exits while no stop was asked for is reported, the others are
stopped gracefully, and the supervisor exits non-zero, so the orchestrator that restarts
processes (systemd, Kubernetes, supervisord) sees the failure and restarts the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

#: Seconds between two looks at the node processes (and at the supervisor, from a node).
WATCH_EVERY = 0.1
ORPHAN_CHECK_EVERY = 0.5


def _log() -> Any:
    import structlog

    return structlog.get_logger("oban.cli")


@dataclass
class Child:
    """One node process and what it was started as."""

    node: str | None
    proc: subprocess.Popen[bytes]
    reported: bool = False
    #: Stop signals sent to it.
    told: int = 0

    def describe(self) -> dict[str, Any]:
        code = self.proc.returncode
        # Without a name given, a node takes its default: host and pid (config.default_node).
        node = self.node or f"{socket.gethostname()}.{self.proc.pid}"
        found: dict[str, Any] = {"pid": self.proc.pid, "node": node}
        if code is not None and code < 0:
            found["signal"] = signal.Signals(-code).name
        elif code is not None:
            found["code"] = code
        return found


def exit_code(returncode: int) -> int:
    """A node's exit as the supervisor's: its own code, or 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


def node_names(node: str | None, count: int) -> list[str | None]:
    """A name given to the group becomes ``name.1`` .. ``name.N``: two processes must never
    share a node name (they would share leadership and each other's signals). Without one,
    each process takes its own default (host and pid)."""
    if node is None:
        return [None] * count
    return [f"{node}.{n}" for n in range(1, count + 1)]


class Supervisor:
    """Starts the node processes, forwards SIGTERM and SIGINT to them, and reports their end."""

    def __init__(self, arguments: list[str], nodes: list[str | None], dsn: str | None) -> None:
        self.arguments = arguments
        self.nodes = nodes
        # The DSN goes through the environment: on a command line every user on the host
        # could read its password in ps.
        self.env = {**os.environ, **({"OBAN_DSN": dsn} if dsn else {})}
        self.children: list[Child] = []
        self.signals = 0
        self.failed: Child | None = None

    def _spawn(self, node: str | None) -> Child:
        command = [sys.executable, "-m", "oban_py.cli", "start", *self.arguments]
        command += ["--supervisor-pid", str(os.getpid())]
        if node is not None:
            command += ["--node", node]
        proc = subprocess.Popen(command, env=self.env, process_group=0)
        return Child(node, proc)

    def _forward(self, signum: int) -> None:
        for child in self.children:
            self._tell(child, signum)

    @staticmethod
    def _tell(child: Child, signum: int) -> None:
        child.told += 1
        if child.proc.poll() is None:
            # The node may have ended just now: nothing left to tell it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.proc.pid, signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            _log().info("stopping the node processes gracefully", signal=name)
        elif self.signals == 2:
            _log().warning("second signal: stopping the node processes now", signal=name)
        # Always as SIGTERM: a node treats both alike once started, and before that SIGTERM
        # ends it quietly where SIGINT would print a KeyboardInterrupt.
        self._forward(signal.SIGTERM)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for node in self.nodes:
                if self.signals:
                    break  # stopped while starting: start no more
                self.children.append(self._spawn(node))
                # A signal that came while this one was being started did not reach it.
                while self.children[-1].told < self.signals:
                    self._tell(self.children[-1], signal.SIGTERM)
            _log().info(
                "node processes started",
                processes=len(self.children),
                pids=[c.proc.pid for c in self.children],
            )
            self._watch()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._code()

    def _watch(self) -> None:
        while any(child.proc.poll() is None for child in self.children):
            for child in self.children:
                if child.proc.returncode is not None and not child.reported:
                    self._ended(child)
            time.sleep(WATCH_EVERY)
        for child in self.children:
            if not child.reported:
                self._ended(child)
        _log().info("node processes stopped", processes=len(self.children))

    def _ended(self, child: Child) -> None:
        child.reported = True
        if self.signals or self.failed is not None:
            _log().info("node process exited", **child.describe())
            return
        # Nobody asked it to stop: a crash, an OOM kill, a kill -9 by hand.
        self.failed = child
        _log().error(
            "node process exited unexpectedly: stopping the others gracefully and exiting"
            " (nothing is restarted)",
            **child.describe(),
        )
        self._forward(signal.SIGTERM)

    def _code(self) -> int:
        if self.failed is not None:
            # A node that left with 0 of its own accord still failed the group.
            return exit_code(self.failed.proc.returncode) or 1
        # Asked to stop, a node still starting dies of the SIGTERM forwarded to it: it stopped
        # as asked, having run nothing.
        codes = [
            0 if c.proc.returncode == -signal.SIGTERM else exit_code(c.proc.returncode)
            for c in self.children
        ]
        return max(codes, default=0)


def watch_supervisor(pid: int) -> None:
    """In a node started by a supervisor: stop gracefully once the supervisor is gone, so that
    no node outlives it unsupervised (its process group gets no terminal signals)."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(ORPHAN_CHECK_EVERY)
        _log().warning("the supervisor process is gone: stopping gracefully", supervisor=pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="oban-supervisor-watch", daemon=True).start()
