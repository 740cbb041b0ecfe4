"""``oban-py demo``: a real node working real jobs of every kind, in a few seconds.

With no DSN (and no ``DATABASE_URL``) it starts the embedded PostgreSQL under ``.pgdata/demo``.
It installs or migrates the schema, enqueues one job per outcome into queue ``demo``, runs a node
printing each attempt as it finishes, and returns once every job reached a final state.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from oban_py import Cancel, Oban, Record, Snooze, schema, telemetry
from oban_py.job import Job
from oban_py.worker import Worker

QUEUE = "demo"
FINAL = ("completed", "cancelled", "discarded")
DEADLINE = 45.0


class Greet(Worker):
    name = "Demo.Greet"
    queue = QUEUE

    async def process(self, job: Job) -> str:
        return f"hello {job.args.get('who', 'world')}"


class Flaky(Worker):
    """Fails its first attempt; a 1 s backoff lets the retry happen during the demo."""

    name = "Demo.Flaky"
    queue = QUEUE

    def backoff(self, job: Job) -> float:
        return 1.0

    def process(self, job: Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("flaky on purpose")


class Sleepy(Worker):
    """Snoozes once: a snooze adds one to max_attempts, which tells the second run apart."""

    name = "Demo.Sleepy"
    queue = QUEUE

    async def process(self, job: Job) -> Snooze | None:
        return Snooze(1) if job.max_attempts == 20 else None


class Quitter(Worker):
    name = "Demo.Quitter"
    queue = QUEUE

    async def process(self, job: Job) -> Cancel:
        return Cancel("not needed any more")


class Adder(Worker):
    name = "Demo.Adder"
    queue = QUEUE

    async def process(self, job: Job) -> Record:
        return Record({"sum": sum(job.args["numbers"])})


def _print_job(event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    job = meta["job"]
    ms = measurements["duration"] / 1e6
    print(
        f"  {job.worker:<13} job {job.id:<4} attempt {job.attempt}: {meta['state']:<10}"
        f" ({ms:.1f} ms)",
        flush=True,
    )


async def run(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await schema.migrate(conn)
        await conn.execute("DELETE FROM oban_jobs WHERE queue = %s", (QUEUE,))
    jobs = [
        Greet.new({"who": "Elixir"}),
        Flaky.new({}),
        Sleepy.new({}),
        Quitter.new({}),
        Adder.new({"numbers": [1, 2, 3]}),
    ]
    telemetry.attach("oban-demo", "oban.job.stop", _print_job)
    try:
        async with Oban(dsn=dsn, queues={QUEUE: 5}, stage_interval=0.5) as oban:
            inserted = await oban.enqueue_many(jobs)
            ids = [job.id for job in inserted]
            print(f"node {oban.config.node}: enqueued {len(ids)} jobs into queue {QUEUE!r}")
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                async with oban.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT id, worker, state FROM oban_jobs WHERE id = ANY(%s) ORDER BY id",
                        (ids,),
                    )
                    rows = await cur.fetchall()
                if all(state in FINAL for _, _, state in rows):
                    print("all jobs reached a final state:")
                    for job_id, worker, state in rows:
                        print(f"  {worker:<13} job {job_id:<4} {state}")
                    return 0
                await asyncio.sleep(0.2)
            print("demo timed out before every job finished")
            return 1
    finally:
        telemetry.detach("oban-demo")


def main(dsn: str | None) -> int:
    """Run the demo; the DSN defaults to ``DATABASE_URL``, else the embedded server."""
    dsn = dsn or os.environ.get("DATABASE_URL")
    if not dsn:
        from oban_py import embedded

        print("no DSN given: starting the embedded PostgreSQL in .pgdata/demo")
        dsn = embedded.start(".pgdata/demo")
    try:
        return asyncio.run(run(dsn))
    except KeyboardInterrupt:
        return 0
