"""``oban-py demo``: a real node working real jobs of every kind, in a few seconds.

With no DSN (and no ``DATABASE_URL``) it starts the embedded PostgreSQL under ``.pgdata/demo``.
It installs or migrates the schema, enqueues one job per outcome into queue ``demo``, runs a node
printing every attempt and its outcome as it finishes (a failure and its retry, a snooze, a
cancel, a recorded value), and once every job reached a final state prints what became of each
job, read back from ``oban_jobs``, and the commands to look at them again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from oban_py import Cancel, Oban, Record, Snooze, schema, telemetry
from oban_py.job.model import Job
from oban_py.job.terms import decode_recorded
from oban_py.schema._dsn import mask_password, shell_dsn
from oban_py.worker import Worker

QUEUE = "demo"
FINAL = ("completed", "cancelled", "discarded")
DEADLINE = 45.0
DEFAULT_MAX_ATTEMPTS = 20


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
        return Snooze(1) if job.max_attempts == DEFAULT_MAX_ATTEMPTS else None


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


def _outcome(event: str, meta: Mapping[str, Any]) -> str:
    state, result = meta.get("state"), meta.get("result")
    if event == "oban.job.exception":
        nxt = "retried after its backoff" if state == "retryable" else "no attempts left"
        return f"failed ({type(result).__name__}: {result}); {state}: {nxt}"
    if isinstance(result, Snooze):
        return f"snoozed for {result.seconds} s; scheduled, to run again"
    if isinstance(result, Cancel):
        return f"cancelled ({result.reason})"
    if isinstance(result, Record):
        return f"completed, recorded {orjson.dumps(result.value).decode()}"
    return "completed" if result is None else f"completed, returned {result!r}"


def _print_attempt(event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    job = meta["job"]
    ms = measurements["duration"] / 1e6
    print(
        f"  {job.worker:<13} job {job.id:<4} attempt {job.attempt}: {_outcome(event, meta)}"
        f" [{ms:.1f} ms]",
        flush=True,
    )


def _story(row: Mapping[str, Any]) -> str:
    """What became of one job, from its row alone."""
    attempts = row["attempt"]
    told = f"{row['state']} after {attempts} attempt{'s' if attempts != 1 else ''}"
    notes = []
    for entry in row["errors"] or []:
        first_line = (str(entry.get("error", "")).splitlines() or [""])[0]
        if row["state"] == "cancelled" and entry is row["errors"][-1]:
            notes.append(f"its reason is the last errors entry: {first_line}")
        else:
            notes.append(f"attempt {entry.get('attempt')} failed: {first_line}")
    snoozes = row["max_attempts"] - DEFAULT_MAX_ATTEMPTS
    if snoozes > 0:
        notes.append(f"snoozed {snoozes}x (each snooze adds one to max_attempts)")
    meta = row["meta"] or {}
    if meta.get("recorded"):
        notes.append(f"recorded value {decode_recorded(meta['return'])!r} in meta.return")
    return told + (f"; {'; '.join(notes)}" if notes else "")


async def _summary(oban: Oban, ids: list[int | None]) -> list[dict[str, Any]]:
    async with oban.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(oban.queries["demo_jobs"], {"ids": ids})
        rows: list[dict[str, Any]] = await cur.fetchall()
        return rows


def _look_again(dsn: str, first_id: int, embedded: bool) -> str:
    if embedded:
        # The embedded server stops with this process: its DSN would be useless afterwards.
        return (
            "\nthe embedded PostgreSQL stops with the demo; to keep the rows and look at them"
            " with oban-py jobs / oban-py stats / the dashboard, run it on your own server:"
            " DATABASE_URL=postgresql://... python3 dev.py demo"
        )
    where = shell_dsn(dsn)
    return (
        "\nthe rows stay until the pruner deletes them (a day); look again with:\n"
        f"  oban-py jobs --dsn {where} --queue {QUEUE}\n"
        f"  oban-py jobs show {first_id} --dsn {where}\n"
        f"  oban-py stats --dsn {where}\n"
        f"  oban-py web --dsn {where}   # the dashboard on http://127.0.0.1:8765"
        ' (needs the web extra: pip install -e ".[web]")'
    )


async def run(dsn: str, embedded: bool = False) -> int:
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
    telemetry.attach("oban-demo", ["oban.job.stop", "oban.job.exception"], _print_attempt)
    try:
        async with Oban(
            dsn=dsn, queues={QUEUE: 5}, stage_interval=0.5, default_logger="off"
        ) as oban:
            inserted = await oban.enqueue_many(jobs)
            ids = [job.id for job in inserted]
            print(f"node {oban.config.node}: enqueued {len(ids)} jobs into queue {QUEUE!r}")
            print("every attempt, as it finishes:")
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                rows = await _summary(oban, ids)
                if all(row["state"] in FINAL for row in rows):
                    print(f"\nwhat became of the {len(rows)} jobs (read back from oban_jobs):")
                    for row in rows:
                        print(f"  {row['worker']:<13} job {row['id']:<4} {_story(row)}")
                    print(_look_again(dsn, rows[0]["id"], embedded))
                    return 0
                await asyncio.sleep(0.2)
            print("demo timed out before every job finished")
            return 1
    finally:
        telemetry.detach("oban-demo")


def main(dsn: str | None) -> int:
    """Run the demo; the DSN defaults to ``DATABASE_URL``, else the embedded server."""
    dsn = dsn or os.environ.get("DATABASE_URL")
    embedded = not dsn
    if not dsn:
        from oban_py import embedded as server

        print("no DSN given: starting the embedded PostgreSQL in .pgdata/demo")
        dsn = server.start(".pgdata/demo")
    try:
        return asyncio.run(run(dsn, embedded))
    except KeyboardInterrupt:
        return 0
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        print(f"error: cannot use the database at {mask_password(dsn)}: {reason}", file=sys.stderr)
        return 3
