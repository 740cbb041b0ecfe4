# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""A graceful stop ends in bounded time when the network to PostgreSQL goes silent: packets
dropped, no reset, as behind a partition (a frozen ``Proxy``). A database that is down answers
at once; a silent one never does, and a statement cancelled on it waits for the server's answer
to its cancellation. The stop gives the running jobs ``shutdown_grace``, the outcomes
``FLUSH_TIMEOUT``, and abandons what still waits on the network: the node exits, saying what it
gave up, and the lifeline of another node runs what is left, never two attempts of a job at once."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
from faultkit import (  # noqa: F401  (fixtures)
    Node,
    Proxy,
    fault_dsn,
    insert_jobs,
    nodes,
    proxy,
    states,
    wait_started,
    wait_until,
)
from psycopg.conninfo import make_conninfo
from test_outages import attempts

from oban_py import Job, Oban, Worker
from oban_py.client.pool import KEEPALIVES, AsyncPool
from oban_py.config import LifelineConfig
from oban_py.liveness import RELEASE_TIMEOUT
from oban_py.node.producer import FETCH_FINISH
from oban_py.node.queues import FLUSH_TIMEOUT

GRACE = 2.0
#: What a stop may take on a silent network: the grace, the flush's timeout, and a few seconds
#: for the steps after it, which go without the database once it is found out of reach (about
#: 3 s on an idle machine; 8 s leave room for a loaded one, a hang never ends).
BOUND = GRACE + FLUSH_TIMEOUT + 8.0


def lost_at_shutdown(log: str) -> set[int]:
    """The jobs a node's log says it left for the lifeline: acks it could not write."""
    lost: set[int] = set()
    for line in log.splitlines():
        if line.startswith("{") and "acks lost at shutdown" in line:
            lost.update(json.loads(line)["job_ids"])
    return lost


def test_a_node_stopped_on_a_silent_network_exits_in_bounded_time_and_nothing_runs_twice_at_once(
    fault_dsn: str, proxy: Proxy, nodes: Any, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    env = {"FAULT_TRACE": str(trace), "OBAN_SHUTDOWN_GRACE": str(GRACE)}
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        ids = insert_jobs(conn, "Faults.Traced", 60, args='{"slow_first": 300, "ms": 10}')
        silent = Node(
            proxy.dsn(fault_dsn), "default:5", "py-silent", tmp_path, OBAN_PEER="false", **env
        )
        try:
            wait_started(silent)
            wait_until(lambda: states(conn).get("completed", 0) >= 10, 20, 0.02)
            proxy.freeze()
            silent.signal(signal.SIGTERM)
            began = time.monotonic()
            code = silent.wait(BOUND)
            took = time.monotonic() - began
            log = silent.log()
            assert code is not None, f"still stopping {BOUND} s after SIGTERM:\n{log}"
            assert "acks lost at shutdown" in log, log
        finally:
            silent.kill()
        lost = lost_at_shutdown(log)
        assert lost, "the log names the jobs left for the lifeline"
        proxy.thaw()
        rescuer = nodes("default:5", "py-rescuer", **env)
        wait_started(rescuer)
        wait_until(lambda: states(conn) == {"completed": len(ids)}, 60, 0.2)
    runs = attempts(trace)
    assert set(runs) == set(ids)
    for job, job_runs in runs.items():
        ordered = sorted(job_runs)
        for (_, _, _, end), (_, _, start, _) in itertools.pairwise(ordered):
            assert end < start, f"job {job}: two attempts overlapped"
        if len(ordered) > 1:
            # Ran again only when its outcome never reached the database: a job whose ack was
            # written (it counted as done) never runs again.
            assert job in lost, f"job {job} ran again though its outcome was written: {ordered}"
    print(f"stop took {took:.1f} s (bound {BOUND:.0f} s); {len(lost)} acks left to the lifeline")


class Sleeps(Worker):
    name = "SilentStop.Sleeps"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(0.2)


def silent_node(dsn: str, proxy: Proxy, poll_interval: float) -> Oban:
    """A node on ``proxy``, whose freeze makes its network silent."""
    return Oban(
        dsn=proxy.dsn(dsn),
        queues={"default": 5},
        shutdown_grace=GRACE,
        poll_interval=poll_interval,
        peer=False,
        lifeline=LifelineConfig(heartbeat_interval=0.5, heartbeat_ttl=30),
    )


async def stop_within(oban: Oban, bound: float) -> None:
    """``oban.stop()``, failing the test when it still waits ``bound`` seconds later."""
    began = time.monotonic()
    try:
        async with asyncio.timeout(bound):
            await oban.stop()
    except TimeoutError:
        raise AssertionError(f"oban.stop() still waiting {bound} s later") from None
    print(f"stop took {time.monotonic() - began:.1f} s (bound {bound:.0f} s)")


async def test_an_embedded_stop_on_a_silent_network_returns_in_bounded_time(
    dsn: str, proxy: Proxy
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert_jobs(conn, "SilentStop.Sleeps", 200)
        oban = silent_node(dsn, proxy, poll_interval=0.2)
        await oban.start()
        stopped = False
        try:
            await asyncio.to_thread(
                wait_until, lambda: states(conn).get("completed", 0) >= 10, 20, 0.02
            )
            proxy.freeze()
            await stop_within(oban, BOUND)
            stopped = True
        finally:
            if not stopped:
                proxy.close()  # every socket reset: what still waits ends at once


async def test_a_stop_with_a_fetch_waiting_on_a_silent_network_severs_it(
    dsn: str, proxy: Proxy
) -> None:
    # An empty queue polled every 50 ms: once the network is silent, a fetch is soon waiting on
    # it. The stop gives it FETCH_FINISH to answer, then severs its connection: cancelled, its
    # statement would wait for the cancel request's answer (5 s) and the query's end (5 s more).
    oban = silent_node(dsn, proxy, poll_interval=0.05)
    await oban.start()
    stopped = False
    try:
        await asyncio.sleep(0.3)
        proxy.freeze()
        await asyncio.sleep(0.5)
        # The fetch's wait, then the heartbeat release's timeout, and a few seconds for the
        # heartbeat thread's stop and a loaded machine. Cancelled instead of severed, the fetch
        # alone would hold the stop 10 s longer.
        await stop_within(oban, FETCH_FINISH + RELEASE_TIMEOUT + 6.0)
        stopped = True
    finally:
        if not stopped:
            proxy.close()  # every socket reset: what still waits ends at once
            await oban.stop()


async def test_the_pools_connections_notice_a_silent_peer_and_the_dsns_own_settings_win(
    dsn: str,
) -> None:
    pools = AsyncPool(make_conninfo(dsn, keepalives_idle="77"), 2, "keepalives", None)
    await pools.open()
    try:
        async with pools.pool.connection() as conn:
            given = {o.keyword: o.val for o in conn.pgconn.info}
    finally:
        await pools.close()
    assert given[b"keepalives"] == b"1"
    assert given[b"tcp_user_timeout"] == str(KEEPALIVES["tcp_user_timeout"]).encode()
    assert given[b"keepalives_idle"] == b"77", "the DSN's value, not the pool's"
