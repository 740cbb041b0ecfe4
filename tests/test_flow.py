"""Cluster-wide limits on one node (the multi-node proofs are in tests/faults/test_flow_cluster.py):
what counts against a global limit, how signals change it, how the CLI spells it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from nodekit import insert, wait_for

from oban_py import Oban
from oban_py.job.model import Job
from oban_py.settings import SettingsError, parse_queues
from oban_py.worker import Worker

RUNNING: set[int] = set()
MOST = [0]


class Holds(Worker):
    name = "Py.Flow.Holds"

    async def process(self, job: Job) -> None:
        RUNNING.add(job.id)  # type: ignore[arg-type]
        MOST[0] = max(MOST[0], len(RUNNING))
        try:
            await asyncio.sleep(job.args.get("s", 0.3))
        finally:
            RUNNING.discard(job.id)  # type: ignore[arg-type]


def node(dsn: str, queues: Any) -> Oban:
    return Oban(dsn=dsn, peer=False, node="py-flow", queues=queues, poll_interval=0.05)


async def test_an_elixir_job_of_the_queue_neither_counts_nor_is_blocked(
    dsn: str, conn: Any
) -> None:
    # An Elixir producer's running job (its uuid beats in no table of ours) takes no capacity.
    elixir = await insert(conn, "Elixir.Worker", queue="q")
    await conn.execute(
        "UPDATE oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),"
        " attempted_by = ARRAY['elixir@host', %s] WHERE id = %s",
        (str(uuid.uuid4()), elixir),
    )
    MOST[0] = 0
    ids = [await insert(conn, Holds.name, {"s": 0.3}, queue="q") for _ in range(6)]
    async with node(dsn, {"q": {"limit": 10, "global_limit": 2}}):

        async def done() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'",
                (ids,),
            )
            return (await cur.fetchone()) == (6,)

        await wait_for(done, 15)
    assert MOST[0] == 2


async def test_a_scale_signal_carrying_a_global_limit_changes_it(dsn: str, conn: Any) -> None:
    MOST[0] = 0
    async with node(dsn, {"q": 10}) as oban:
        oban._apply_signal({"action": "scale", "queue": "q", "global_limit": 1})
        assert oban.producers["q"].flow is not None
        ids = [await insert(conn, Holds.name, {"s": 0.2}, queue="q") for _ in range(3)]

        async def done() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'",
                (ids,),
            )
            return (await cur.fetchone()) == (3,)

        await wait_for(done, 15)
    assert MOST[0] == 1


def test_the_queues_option_spells_global_and_rate_limits_with_partitions() -> None:
    spec = parse_queues("mail:5:rate=100/60:rate_by=worker,exports:10:global=3:global_by=args.id")
    assert spec == {
        "mail": {
            "limit": 5,
            "rate_limit": {
                "allowed": 100,
                "period": 60.0,
                "partition": {"fields": ["worker"], "keys": []},
            },
        },
        "exports": {
            "limit": 10,
            "global_limit": {"allowed": 3, "partition": {"fields": ["args"], "keys": ["id"]}},
        },
    }
    for bad in ("q:5:global=x", "q:5:rate_by=worker", "q:5:burst=3", "q:5:global=2:global_by=id"):
        with pytest.raises(SettingsError):
            parse_queues(bad)


async def test_oban_py_flow_shows_what_a_queue_uses_of_its_limits(dsn: str, conn: Any) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app

    async with node(dsn, {"q": {"limit": 5, "rate_limit": {"allowed": 100, "period": 60}}}):
        ids = [await insert(conn, Holds.name, {"s": 2}, queue="q") for _ in range(3)]

        async def running() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'executing'",
                (ids,),
            )
            return (await cur.fetchone()) == (3,)

        await wait_for(running, 10)
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["flow", "q", "--period", "60", "--json", "--dsn", dsn],
        )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["executing"], figures["started"]) == (3, 3)
