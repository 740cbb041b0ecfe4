# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""``oban-py start --processes N``: one command, N node processes, one supervisor.

Real processes on a real database: the nodes split the jobs and none runs twice, a SIGTERM to
the supervisor stops every node gracefully, a node that dies is reported and stops the group with
a non-zero exit, and nodes whose supervisor was killed stop by themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from faultkit import Node, fault_dsn, insert_jobs, nodes, states, wait_until  # noqa: F401  (fixtures)

TWO = ("--processes", "2")


def events(node: Node) -> list[dict[str, Any]]:
    found = []
    for line in node.log().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def named(node: Node, event: str) -> list[dict[str, Any]]:
    return [e for e in events(node) if e.get("event") == event]


def children(node: Node) -> list[int]:
    [started] = named(node, "node processes started")
    pids: list[int] = started["pids"]
    return pids


def alive(pid: int) -> bool:
    # An orphan is reaped by whoever adopted it, maybe late: a zombie is as good as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_two(nodes: Any, name: str) -> Node:
    group: Node = nodes("default:10", name, args=TWO)
    wait_until(lambda: len(named(group, "node started")) == 2, 20, 0.05)
    return group


@contextlib.contextmanager
def two_then_jobs(
    fault_dsn: str, nodes: Any, name: str, worker: str, count: int, args: str
) -> Iterator[tuple[psycopg.Connection[Any], Node]]:
    """Two node processes started, then ``count`` jobs for them, and a connection to watch them.

    The jobs come after both nodes are up: on a loaded machine one node may start seconds
    after the other, and would find every job already done."""
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        group = start_two(nodes, name)
        insert_jobs(conn, worker, count, args=args)
        yield conn, group


def test_two_processes_split_the_jobs_run_each_once_and_stop_gracefully_on_sigterm(
    fault_dsn: str, nodes: Any
) -> None:
    # 10 at a time, one node alone would need 1.5 s: the other fetches its share well before.
    started = two_then_jobs(fault_dsn, nodes, "py-procs", "Faults.Once", 300, '{"ms": 50}')
    with started as (conn, group):
        assert sorted(e["node"] for e in named(group, "node started")) == [
            "py-procs.1",
            "py-procs.2",
        ]
        wait_until(lambda: states(conn) == {"completed": 300}, 30)
        # fault_once has the job id as its primary key: a second run would have failed the job.
        ran = dict(conn.execute("SELECT node, count(*) FROM fault_once GROUP BY node").fetchall())
        assert set(ran) == {"py-procs.1", "py-procs.2"}
        assert sum(ran.values()) == 300
        assert conn.execute("SELECT count(*) FROM oban_jobs WHERE attempt <> 1").fetchone() == (0,)

        # Jobs running when the stop comes are finished, on both nodes, within the grace.
        slow = insert_jobs(conn, "Faults.Effect", 6, args='{"ms": 1500}')
        wait_until(lambda: states(conn).get("executing", 0) == 6, 10, 0.02)
        pids = children(group)
        group.signal(signal.SIGTERM)
        assert group.wait(15) == 0, group.log()
        done = conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'"
            " AND attempt = 1",
            (slow,),
        ).fetchone()
        assert done == (len(slow),)
    assert len(named(group, "stopping gracefully")) == 2
    assert len(named(group, "node stopped")) == 2
    assert not any(alive(pid) for pid in pids)


def test_a_node_process_that_dies_is_reported_and_the_others_stop_with_a_failure(
    fault_dsn: str, nodes: Any
) -> None:
    group = start_two(nodes, "py-procs-kill")
    victim, survivor = children(group)
    os.kill(victim, signal.SIGKILL)
    # 128 + SIGKILL: the supervisor says how its node ended, and restarts nothing.
    assert group.wait(15) == 128 + signal.SIGKILL, group.log()
    [report] = named(
        group,
        "node process exited unexpectedly: stopping the others gracefully"
        " and exiting (nothing is restarted)",
    )
    assert report["pid"] == victim
    assert report["signal"] == "SIGKILL"
    assert report["level"] == "error"
    assert len(named(group, "node stopped")) == 1  # the survivor, gracefully
    assert not alive(survivor)


def test_node_processes_stop_gracefully_when_their_supervisor_is_killed(
    fault_dsn: str, nodes: Any
) -> None:
    group = start_two(nodes, "py-procs-orphan")
    pids = children(group)
    group.proc.kill()
    group.proc.wait(5)
    wait_until(lambda: not any(alive(pid) for pid in pids), 15)
    assert len(named(group, "the supervisor process is gone: stopping gracefully")) == 2
    assert len(named(group, "node stopped")) == 2


def test_a_second_signal_stops_busy_nodes_at_once_and_lets_stopped_ones_exit_cleanly(
    fault_dsn: str, nodes: Any
) -> None:
    # A thread that ignores job.cancelled(): a graceful stop would wait for it for 40 s.
    started = two_then_jobs(fault_dsn, nodes, "py-procs-force", "Faults.StuckSync", 1, '{"s": 40}')
    with started as (conn, group):
        wait_until(lambda: states(conn).get("executing", 0) == 1, 10, 0.02)
    pids = children(group)
    group.signal(signal.SIGTERM)
    # The idle node stops at once and is on its way out when the second signal comes.
    wait_until(lambda: len(named(group, "node stopped")) == 1, 10, 0.02)
    group.signal(signal.SIGTERM)
    assert group.wait(10) == 1, group.log()
    assert len(named(group, "second signal: stopping the node processes now")) == 1
    assert len(named(group, "second signal: stopping now")) == 1
    # The busy node is forced (1); the stopped one ignores the signal and leaves with its own
    # 0 instead of dying of it.
    codes = sorted(e.get("code", e.get("signal")) for e in named(group, "node process exited"))
    assert codes == [0, 1], group.log()
    assert not any(alive(pid) for pid in pids)


def test_a_group_stopped_while_it_starts_exits_cleanly_and_leaves_no_node(
    fault_dsn: str, nodes: Any
) -> None:
    group: Node = nodes("default:10", "py-procs-early", args=TWO)
    wait_until(lambda: "node processes started" in group.log(), 10, 0.01)
    group.signal(signal.SIGTERM)
    # Whether a node had started or was still starting, it stopped as asked.
    assert group.wait(15) == 0, group.log()
    assert not any(alive(pid) for pid in children(group))
