# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""Liveness through database outages (``oban_py.liveness``): an outage every node shares costs no
running job an attempt and runs none twice; a node cut off alone gives up its jobs before they
are rescued, so two attempts of one job never overlap; a node that loses only its heartbeat
connection keeps its jobs, even one whose thread nothing can stop. Which of the first two a node
is in, it decides on what the database answered it, whatever order its threads ran in."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from faultkit import (  # noqa: F401  (fixtures)
    Node,
    Server,
    fault_dsn,
    insert_jobs,
    nodes,
    server,
    states,
    wait_started,
    wait_until,
)

from oban_py import schema
from oban_py.config import Config, LifelineConfig
from oban_py.liveness import Liveness
from oban_py.sql import Queries

#: The ttl of every node here (FAST in faultkit): a node fences after 1 s without a beat.
TTL = 2.0


def attempts(trace: Path) -> dict[int, list[tuple[int, str, float, float]]]:
    """Each job's attempts from the workers' trace: (attempt, node, start, end)."""
    starts: dict[tuple[int, int, str], float] = {}
    runs: dict[int, list[tuple[int, str, float, float]]] = {}
    for line in trace.read_text().splitlines():
        job, attempt, node, event, at = line.split()
        key = (int(job), int(attempt), node)
        if event == "start":
            starts[key] = float(at)
        else:
            runs.setdefault(int(job), []).append((int(attempt), node, starts.pop(key), float(at)))
    assert not starts, f"attempts that never ended: {starts}"
    return runs


def rows(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, int]]:
    cur = conn.execute("SELECT id, state::text, attempt FROM oban_jobs")
    return {job: (state, attempt) for job, state, attempt in cur.fetchall()}


def test_an_outage_of_twice_the_ttl_shared_by_two_nodes_costs_no_attempt_and_reruns_nothing(
    server: Server, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        conn.execute(schema.install_sql().encode())
        ids = insert_jobs(conn, "Faults.Traced", 4, args='{"slow_first": 8000}')
    env = {"FAULT_TRACE": str(trace)}
    one = Node(server.dsn, "default:2", "py-one", tmp_path, **env)
    two = Node(server.dsn, "default:2", "py-two", tmp_path, **env)
    try:
        wait_started(one)
        wait_started(two)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            wait_until(lambda: states(conn) == {"executing": 4}, 15, 0.05)
        server.stop()
        time.sleep(2 * TTL)
        server.start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            wait_until(lambda: states(conn) == {"completed": 4}, 30, 0.2)
            assert {job: attempt for job, (_, attempt) in rows(conn).items()} == dict.fromkeys(
                ids, 1
            ), "no attempt was lost to the outage"
        runs = attempts(trace)
        assert {job: len(r) for job, r in runs.items()} == dict.fromkeys(ids, 1), (
            f"every job ran once, through the outage:\n{runs}\n{one.log()}\n{two.log()}"
        )
        assert "the database is down" in one.log() + two.log()
    finally:
        one.kill()
        two.kill()


@pytest.fixture
def cut_role(dsn: str) -> Iterator[tuple[str, str]]:
    """A login role of the test's own, and the DSN of the test database through it."""
    role = f"cut_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["user"] = role
    info["application_name"] = role
    try:
        yield role, psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" LOGIN')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            wait_until(lambda: not _sessions(conn, "usename", role), 10)
            conn.execute(f'DROP ROLE "{role}"')


def _sessions(conn: psycopg.Connection[Any], column: str, value: str) -> list[int]:
    cur = conn.execute(
        f"SELECT pid FROM pg_stat_activity WHERE {column} = %s AND pid <> pg_backend_pid()",
        (value,),
    )
    return [r[0] for r in cur.fetchall()]


class Killer:
    """Terminates the sessions matching ``column = value`` every few milliseconds until stopped."""

    def __init__(self, dsn: str, column: str, value: str) -> None:
        self.dsn, self.column, self.value = dsn, column, value
        self.killed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                for pid in _sessions(conn, self.column, self.value):
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    self.killed += 1


def test_a_node_cut_off_alone_gives_up_its_jobs_before_another_node_rescues_them(
    fault_dsn: str, cut_role: tuple[str, str], nodes: Any, tmp_path: Path
) -> None:
    role, cut_dsn = cut_role
    trace = tmp_path / "trace"
    env = {"FAULT_TRACE": str(trace)}
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        ids = insert_jobs(conn, "Faults.Traced", 3, args='{"slow_first": 20000, "ms": 50}')
        alone = Node(cut_dsn, "default:5", "py-alone", tmp_path, OBAN_PEER="false", **env)
        try:
            wait_started(alone)
            wait_until(lambda: states(conn) == {"executing": 3}, 15, 0.05)
            other = nodes("default:5", "py-other", **env)
            wait_started(other)
            time.sleep(TTL)  # the other node leads and has beaten for a whole ttl
            # Cut the first node off: its sessions die and it cannot log in again, while the
            # database stays up for the other node.
            conn.execute(f'ALTER ROLE "{role}" NOLOGIN')
            with Killer(fault_dsn, "usename", role):
                wait_until(lambda: states(conn) == {"completed": 3}, 30, 0.1)
            assert {job: a for job, (_, a) in rows(conn).items()} == dict.fromkeys(ids, 2)
            conn.execute(f'ALTER ROLE "{role}" LOGIN')
            time.sleep(2)  # the first node writes its late outcomes: each touches nothing
            assert states(conn) == {"completed": 3}
        finally:
            alone.kill()
    runs = attempts(trace)
    for job in ids:
        (first, by_alone, _, end1), (second, by_other, start2, _) = sorted(runs[job])
        assert (first, by_alone, second, by_other) == (1, "py-alone", 2, "py-other")
        assert end1 < start2, f"job {job}: its attempts overlapped ({end1} >= {start2})"


def test_a_node_that_loses_only_its_heartbeat_connection_keeps_even_a_thread_job(
    fault_dsn: str, nodes: Any, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    env = {"FAULT_TRACE": str(trace)}
    named = psycopg.conninfo.make_conninfo(fault_dsn, application_name="py_hb")
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        (job,) = insert_jobs(conn, "Faults.TracedSync", 1, args='{"slow_first": 6000}')
        lonely = Node(named, "default:2", "py-lonely", tmp_path, OBAN_PEER="false", **env)
        try:
            wait_started(lonely)
            wait_until(lambda: states(conn) == {"executing": 1}, 15, 0.05)
            other = nodes("default:2", "py-leader", **env)
            wait_started(other)
            with Killer(fault_dsn, "application_name", "py_hb:heartbeat") as killer:
                wait_until(lambda: states(conn) == {"completed": 1}, 30, 0.1)
            assert killer.killed > 0, "the heartbeat connection was found and cut"
            assert rows(conn)[job] == ("completed", 1)
        finally:
            lonely.kill()
    assert [(a, n) for a, n, _, _ in attempts(trace)[job]] == [(1, "py-lonely")]


# -- the decision itself, one step at a time -------------------------------------------------------
# The node's heartbeat thread writes beats and hears the database's answers; its watchdog thread
# fences on them. Here the test is both threads and the clock, so it chooses the order in which
# they run: the watchdog may look before the heartbeat thread has heard anything, as it does on
# a loaded machine.


class Clock:
    """The liveness owner's time, moved only by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def owner(dsn: str, clock: Clock, fences: list[bool | None]) -> Liveness:
    """A node's liveness owner, not started: ``fences`` records each fence (``True``: its running
    jobs given up too) and each unfence (``None``)."""
    config = Config(
        dsn=dsn,
        node="py-one",
        stall_threshold=0,
        lifeline=LifelineConfig(heartbeat_interval=0.5, heartbeat_ttl=TTL),
    )
    liveness = Liveness(
        config,
        dsn,
        Queries(),
        on_fence=fences.append,
        on_unfence=lambda: fences.append(None),
        running_workers=list,
        clock=clock,
    )
    liveness.track(str(uuid.uuid4()), "default", datetime.now(UTC))
    return liveness


def test_a_node_that_hears_the_database_is_down_only_after_its_fence_keeps_its_jobs(
    server: Server,
) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        conn.execute(schema.install_sql().encode())
    clock, fences = Clock(), list[bool | None]()
    liveness = owner(server.dsn, clock, fences)
    liveness.beat_once()
    server.stop()
    # The watchdog looks past the fence, and again near the ttl, before the heartbeat thread has
    # tried to beat since (a loaded or frozen machine): nothing is known yet.
    for now in (0.6 * TTL, 0.9 * TTL):
        clock.now = now
        liveness.watch_once()
    assert fences == [False], "a beat not yet failed is no sign of being cut off alone"
    liveness.beat_once()  # refused: the database is down for every node
    for now in (0.7 * TTL, 0.99 * TTL):
        clock.now = now
        liveness.watch_once()
    assert fences == [False], "no node can rescue a job from a database that is down"
    server.start()
    clock.now = TTL
    liveness.beat_once()
    assert fences == [False, None]


def test_a_node_that_hears_it_may_not_log_in_gives_up_its_jobs_at_once(
    dsn: str, cut_role: tuple[str, str]
) -> None:
    role, cut_dsn = cut_role
    clock, fences = Clock(), list[bool | None]()
    liveness = owner(cut_dsn, clock, fences)
    liveness.beat_once()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{role}" NOLOGIN')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
    clock.now = 0.6 * TTL
    liveness.watch_once()
    assert fences == [False]
    # The server answers, for this role only: others may beat on and rescue at the ttl.
    liveness.beat_once()
    liveness.watch_once()
    assert fences == [False, True]


def test_a_node_whose_beat_goes_unanswered_gives_up_its_jobs_before_the_ttl() -> None:
    # A silent network: the beat's connection is taken and never answered. A down database
    # answers at once; this one may be up for others, who may rescue the jobs at the ttl.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        host, port = silent.getsockname()
        clock, fences = Clock(), list[bool | None]()
        liveness = owner(f"postgresql://postgres@{host}:{port}/postgres", clock, fences)
        beat = threading.Thread(target=liveness.beat_once)
        beat.start()
        taken, _ = silent.accept()
        try:
            clock.now = 0.6 * TTL
            liveness.watch_once()
            clock.now = 0.7 * TTL
            liveness.watch_once()
            assert fences == [False]
            clock.now = 0.8 * TTL
            liveness.watch_once()
            assert fences == [False, True]
        finally:
            taken.close()
            beat.join(10)


def test_a_node_whose_heartbeat_thread_died_gives_up_its_jobs(dsn: str) -> None:
    # A bug that kills the thread (a BaseException) leaves nothing to hear from: the node's rows
    # expire at the ttl as surely as if it were cut off, and another node may rescue its jobs.
    clock, fences = Clock(), list[bool | None]()
    liveness = owner(dsn, clock, fences)
    liveness.beat_once()
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    liveness._threads.append(dead)
    clock.now = 0.4 * TTL
    liveness.watch_once()
    assert fences == []
    clock.now = 0.6 * TTL
    liveness.watch_once()
    assert fences == [True]
