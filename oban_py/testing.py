"""Helpers for testing applications that use oban_py, in the manner of Elixir's ``Oban.Testing``.

- ``TestingClient(mode=...)``: a ``Client`` whose ``enqueue`` follows a testing mode:
  ``"manual"`` inserts jobs and runs nothing (then assert on them, or drain a queue),
  ``"inline"`` runs each job at once in the calling task without touching the database and
  returns it in its final state, ``"disabled"`` does nothing and returns the job unsaved.
- ``assert_enqueued`` / ``refute_enqueued`` / ``all_enqueued``: what a manual-mode test checks.
- ``drain_queue``: run a queue's jobs now, in this task, through the node's executor and acker.
- ``perform_job``: run one worker on some args exactly as a node would, without a database.

Every job here runs through ``oban_py.executor.execute``, the function producers use, so args
validation, timeouts, ``Snooze``/``Cancel``/``Record`` and error entries behave as in production.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from oban_py import executor, telemetry
from oban_py.acker import Ack, Acker
from oban_py.client import AnyConnection, Client, get_instance
from oban_py.job import Job, to_naive_utc
from oban_py.worker import Worker, resolve

if TYPE_CHECKING:
    from oban_py.oban import Oban

__all__ = [
    "Mode",
    "Outcome",
    "TestingClient",
    "all_enqueued",
    "assert_enqueued",
    "drain_queue",
    "perform_job",
    "refute_enqueued",
]

Mode = Literal["inline", "manual", "disabled"]
MODES: tuple[str, ...] = get_args(Mode)
#: The states Elixir's assert_enqueued looks at: jobs that are waiting to run.
ENQUEUED_STATES = ("available", "scheduled")
#: Jobs fetched per pass by ``drain_queue`` without ``with_limit`` (Elixir's "unlimited").
UNLIMITED = 100_000
TESTING_NODE = "oban-testing"
#: A DSN that is never connected to: inline and disabled clients need no database.
_NO_DATABASE = "postgresql://oban-testing.invalid/inline"


# -- outcomes of one attempt -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a job came to, as the node would record it."""

    #: completed, retryable, discarded, cancelled, or scheduled (snoozed)
    state: str
    #: what ``process`` returned, or the exception it raised
    result: Any
    #: the job after the attempt: state, timestamps, errors and meta as they would be written
    job: Job

    @property
    def error(self) -> str | None:
        """The text of the errors entry this attempt added, if it added one."""
        entries = [e for e in self.job.errors if e.get("attempt") == self.job.attempt]
        return str(entries[-1]["error"]) if entries else None

    @property
    def snoozed(self) -> bool:
        return self.state == "scheduled"


class _Runner:
    """The one part of a node the executor uses: the thread pool sync workers run in."""

    def __init__(self) -> None:
        self.threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="oban-testing")


_shared_runner: _Runner | None = None


def _runner_for(oban: Any = None) -> Any:
    global _shared_runner
    if oban is not None and hasattr(oban, "threads"):
        return oban
    if _shared_runner is None:
        _shared_runner = _Runner()
    return _shared_runner


async def _execute(runner: Any, job: Job) -> tuple[Ack | None, Any]:
    """Run ``job`` through the node's executor; its ack and what ``process`` returned/raised."""
    seen: dict[str, Any] = {}

    def capture(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        if metadata.get("job") is job:
            seen["result"] = metadata.get("result")

    handler_id = f"oban_py.testing.{uuid.uuid4().hex}"
    telemetry.attach(handler_id, ["oban.job.stop", "oban.job.exception"], capture)
    try:
        ack = await executor.execute(cast("Oban", runner), job, lambda: None)
    finally:
        telemetry.detach(handler_id)
    return ack, seen.get("result")


def apply_ack(job: Job, ack: Ack) -> Job:
    """The job as it reads after ``ack`` is written (what ``ack_jobs.sql`` does, in memory)."""
    updates: dict[str, Any] = {"state": ack.state}
    stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "discarded": "discarded_at"}
    if ack.state in stamp:
        updates[stamp[ack.state]] = ack.at
    if ack.scheduled_at is not None:
        updates["scheduled_at"] = ack.scheduled_at
    updates["max_attempts"] = job.max_attempts + ack.extra_attempts
    updates["attempt"] = job.attempt + ack.attempt_delta
    if ack.error is not None:
        updates["errors"] = [*job.errors, orjson.loads(ack.error)]
    if ack.meta is not None:
        updates["meta"] = {**job.meta, **orjson.loads(ack.meta)}
    return job.model_copy(update=updates)


def _attempting(job: Job, attempt: int, node: str) -> Job:
    # What a fetch does to a row, and what Elixir's inline engine sets before running a job.
    now = datetime.now(UTC)
    return job.model_copy(
        update={
            "state": "executing",
            "attempt": attempt,
            "attempted_at": now,
            "attempted_by": [node],
            "inserted_at": job.inserted_at or now,
            "scheduled_at": now,
        }
    )


async def _attempt(runner: Any, job: Job) -> Outcome:
    ack, result = await _execute(runner, job)
    if ack is None:  # cancelled by a shutdown: cannot happen outside a node, but stay honest
        return Outcome(job.state, result, job)
    return Outcome(ack.state, result, apply_ack(job, ack))


# -- perform_job -----------------------------------------------------------------------------


async def perform_job(
    worker: type[Worker] | str,
    args: Mapping[str, Any] | Any = None,
    *,
    safe: bool = False,
    node: str = TESTING_NODE,
    **opts: Any,
) -> Outcome:
    """Run ``worker`` on ``args`` as a node would and return the outcome; no database needed.

    The job is built with ``worker.new(args, **opts)`` (so args are validated, typed args
    included) and runs as attempt 1 unless ``attempt=`` is given. An exception raised by
    ``process`` propagates, as with Elixir's ``perform_job``, unless ``safe=True``: then it is
    recorded like a node records it (retryable or discarded with an errors entry).
    """
    cls = resolve(worker) if isinstance(worker, str) else worker
    attempt = int(opts.pop("attempt", 1))
    job = _attempting(cls.new(args, **opts), attempt, node)
    outcome = await _attempt(_runner_for(), job)
    if not safe and isinstance(outcome.result, BaseException):
        raise outcome.result
    return outcome


# -- the testing client ----------------------------------------------------------------------


class TestingClient(Client):
    """A ``Client`` whose ``enqueue``/``enqueue_many`` follow a testing ``mode``.

    It registers under ``name`` (default ``"Oban"``) like any client, so ``Worker.enqueue`` in
    the code under test goes through it. ``manual`` needs ``dsn`` or ``pool``; ``inline`` and
    ``disabled`` need neither. In inline mode an exception raised by a job propagates to the
    caller of ``enqueue`` (as Elixir's inline engine does) unless ``raise_errors=False``.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        mode: Mode = "manual",
        *,
        dsn: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        prefix: str = "public",
        name: str = "Oban",
        node: str = TESTING_NODE,
        raise_errors: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"testing mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "manual" and dsn is None and pool is None:
            raise ValueError("manual testing mode inserts jobs: give a dsn= or a pool=")
        self.has_database = dsn is not None or pool is not None
        if not self.has_database:
            dsn = _NO_DATABASE
        super().__init__(dsn=dsn, pool=pool, prefix=prefix, name=name)
        self.mode: Mode = mode
        self.node = node
        self.raise_errors = raise_errors
        #: In inline mode, every job run so far, in its final state.
        self.performed: list[Job] = []

    async def open(self) -> None:
        """Open the pool, unless this client was given no database (inline or disabled)."""
        if self.has_database:
            await super().open()

    async def enqueue_many(
        self, jobs: Iterable[Job], conn: AnyConnection | None = None
    ) -> list[Job]:
        batch = list(jobs)
        if self.mode == "manual":
            return await super().enqueue_many(batch, conn=conn)
        if self.mode == "disabled":
            return batch
        done = []
        for job in batch:
            outcome = await _attempt(_runner_for(), _attempting(job, 1, self.node))
            self.performed.append(outcome.job)
            if self.raise_errors and isinstance(outcome.result, BaseException):
                raise outcome.result
            done.append(outcome.job)
        return done

    def enqueue_many_sync(
        self, jobs: Iterable[Job], conn: psycopg.Connection[Any] | None = None
    ) -> list[Job]:
        batch = list(jobs)
        if self.mode == "manual":
            return super().enqueue_many_sync(batch, conn=conn)
        if self.mode == "disabled":
            return batch
        # Inline mode runs each job's attempt, which is async: on a loop of its own.
        return asyncio.run(self.enqueue_many(batch))


# -- assertions on enqueued jobs ---------------------------------------------------------------


def _client(oban: Client | None) -> Client:
    return oban if oban is not None else get_instance()


def _worker_name(worker: type[Worker] | str | None) -> str | None:
    if worker is None or isinstance(worker, str):
        return worker
    return worker.__oban_name__


async def all_enqueued(
    oban: Client | None = None,
    *,
    worker: type[Worker] | str | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    state: str | Sequence[str] | None = None,
    scheduled_at: datetime | None = None,
    delta: float = 1.0,
    limit: int = 1_000,
) -> list[Job]:
    """Jobs matching every given filter, newest first; ``args``, ``meta`` and ``tags`` match
    as subsets. Only available and scheduled jobs unless ``state`` says otherwise;
    ``scheduled_at`` matches within ``delta`` seconds. ``oban`` defaults to the instance
    registered as ``"Oban"``."""
    client = _client(oban)
    states = [state] if isinstance(state, str) else list(state or ENQUEUED_STATES)
    params = {
        "states": states,
        "queue": queue,
        "worker": _worker_name(worker),
        "args": None if args is None else orjson.dumps(dict(args)).decode(),
        "meta": None if meta is None else orjson.dumps(dict(meta)).decode(),
        "tags": None if tags is None else [t.strip().lower() for t in tags],
        "priority": priority,
        "limit": limit,
    }
    await client.open()
    async with client.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(client.queries["jobs_list"], params)
        found = [Job.from_row(row) for row in await cur.fetchall()]
    if scheduled_at is not None:
        window = timedelta(seconds=delta)
        found = [
            j for j in found if j.scheduled_at and abs(j.scheduled_at - scheduled_at) <= window
        ]
    return found


def _describe(filters: Mapping[str, Any]) -> str:
    shown = {k: _worker_name(v) if k == "worker" else v for k, v in filters.items()}
    return ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None) or "anything"


async def assert_enqueued(
    oban: Client | None = None, *, within: float = 0.0, **filters: Any
) -> Job:
    """Assert a job matching ``filters`` (see ``all_enqueued``) is enqueued; return the newest.

    ``within`` keeps looking for that many seconds, for jobs enqueued by another task.
    """
    deadline = time.monotonic() + within
    while True:
        found = await all_enqueued(oban, **filters)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    nearby = await all_enqueued(
        oban, queue=filters.get("queue"), state=filters.get("state"), limit=5
    )
    seen = "; ".join(_summary(j) for j in nearby) or "none"
    raise AssertionError(
        f"Expected a job matching {_describe(filters)} to be enqueued. Enqueued jobs in that"
        f" queue (newest 5): {seen}"
    )


async def refute_enqueued(
    oban: Client | None = None, *, within: float = 0.0, **filters: Any
) -> None:
    """Assert no job matching ``filters`` is enqueued (still none after ``within`` seconds)."""
    if within:
        await asyncio.sleep(within)
    found = await all_enqueued(oban, **filters)
    if found:
        jobs = "; ".join(_summary(j) for j in found[:5])
        raise AssertionError(
            f"Expected no job matching {_describe(filters)} to be enqueued, found"
            f" {len(found)}: {jobs}"
        )


def _summary(job: Job) -> str:
    args = orjson.dumps(job.args).decode()
    return f"#{job.id} {job.worker} queue={job.queue} state={job.state} args={args}"


# -- drain_queue -----------------------------------------------------------------------------


def _bucket(state: str) -> str:
    return "snoozed" if state == "scheduled" else state


async def drain_queue(
    oban: Client | None,
    queue: str,
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_limit: int | None = None,
    with_safety: bool = True,
) -> dict[str, int]:
    """Run the available jobs of ``queue`` now, one after the other, in this task.

    Jobs are claimed with the producers' fetch, run by the node's executor and written by its
    acker, so rows end exactly as a node leaves them. Returns counts by outcome:
    ``{"completed", "discarded", "cancelled", "retryable", "snoozed"}``.

    - ``with_scheduled``: first make scheduled and retryable jobs available (all of them, or
      those due by the given datetime), before every pass;
    - ``with_recursion``: keep draining until the queue is empty, so jobs enqueued by jobs
      (and, with ``with_scheduled``, retries) run too; a job snoozed during the drain is not
      staged again, so a snoozing worker cannot loop forever;
    - ``with_limit``: at most this many jobs per pass;
    - ``with_safety=False``: re-raise the first exception a job raises (after recording it).
    """
    client = _client(oban)
    await client.open()
    runner = _runner_for(client)
    acker = Acker(client.pool, client.queries)
    counts = dict.fromkeys(("completed", "discarded", "cancelled", "retryable", "snoozed"), 0)
    snoozed: list[int] = []
    fetch = {
        "queue": queue,
        "node": client.config.node,
        "uuid": str(uuid.uuid4()),
        "demand": with_limit or UNLIMITED,
    }
    while True:
        if with_scheduled is not False:
            until = datetime.max if with_scheduled is True else to_naive_utc(with_scheduled)
            async with client.pool.connection() as conn:
                await conn.execute(
                    client.queries["drain_stage"],
                    {"queue": queue, "until": until, "exclude": snoozed},
                )
        async with client.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(client.queries["fetch_jobs"], fetch)
            rows = await cur.fetchall()
        if not rows:
            return counts
        for row in rows:
            job = executor.job_from_row(row)
            ack, result = await _execute(runner, job)
            if ack is None:
                continue
            acker.push(ack)
            await acker.flush()
            counts[_bucket(ack.state)] += 1
            if ack.state == "scheduled" and job.id is not None:
                snoozed.append(job.id)
            if not with_safety and isinstance(result, BaseException):
                raise result
        if not with_recursion:
            return counts
