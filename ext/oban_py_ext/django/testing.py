"""Testing helpers for Django's ``TestCase``/``TransactionTestCase`` and pytest-django.

They are synchronous and run on the test's own Django connection, so they see what the test
sees, inside its transaction:

- ``assert_enqueued`` / ``refute_enqueued`` / ``all_enqueued``: read ``oban_jobs`` through
  Django's connection, so a job a view enqueued inside ``TestCase``'s transaction is found;
- ``perform_job``: run a worker as a node would (``oban_py.testing.perform_job``), with its
  ORM calls, sync or async, on the test's thread and connection (as Django's test client runs
  async views), so rows the test created are visible to it;
- ``drain_queue``: run a queue's enqueued jobs the same way, and write their outcomes, on the
  test's connection;
- ``with oban_mode("inline")`` (or ``"disabled"``), or any ``TestingClient`` in that mode
  registered as ``"Oban"``, also governs ``oban_py_ext.django.enqueue``: inline runs the job
  (as ``perform_job`` does) once the caller's ``atomic()`` block commits (at once outside
  one; ``TestCase``'s own blocks do not count, so there run the commit callbacks with
  ``captureOnCommitCallbacks(execute=True)``), never when it rolls back; disabled skips it.

No thread here keeps a connection open, so ``manage.py test`` can drop the test database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from psycopg.rows import dict_row

from oban_py import InstanceNotFound, Job, get_instance, testing
from oban_py.node.acker import batch_params
from oban_py.sql import Queries
from oban_py.testing import Mode, Outcome, TestingClient
from oban_py.worker import Worker, resolve
from oban_py_ext.django import conf, holding_database, raw_connection
from oban_py_ext.django.inserts import decoded_row

T = TypeVar("T")

__all__ = [
    "all_enqueued",
    "assert_enqueued",
    "drain_queue",
    "oban_mode",
    "perform_job",
    "refute_enqueued",
]


class _TestThread(concurrent.futures.Executor):
    """Where an attempt runs a sync ``process``: the thread that called the helper (through
    asgiref, as a thread-sensitive call), which holds the test's connection and transaction."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        task = asyncio.get_running_loop().create_task(
            sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
        )

        def settle(done: asyncio.Task[Any]) -> None:
            if done.cancelled():
                future.cancel()
            elif (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result())

        task.add_done_callback(settle)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()


def _in_test_thread(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await function(*args)`` from this sync thread, its thread-sensitive calls (sync
    workers, and the async ORM's) run back on this thread, with its connection."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # run below, outside the handler: a job's exception must not chain to it
    else:
        raise RuntimeError(
            "oban_py_ext.django.testing helpers are synchronous: call them from a sync test, or"
            " use the async helpers of oban_py.testing (jobs then run on other connections)"
        )
    return async_to_sync(function)(*args)


def _run_here(job: Job) -> Outcome:
    """One attempt of ``job`` with its ORM calls on this thread's connection."""
    return _in_test_thread(testing._attempt, _TestThread(), job)


def perform_job(
    worker: type[Worker] | str,
    args: Mapping[str, Any] | Any = None,
    *,
    safe: bool = False,
    node: str = testing.TESTING_NODE,
    **opts: Any,
) -> Outcome:
    """``oban_py.testing.perform_job`` on the test's Django connection (see the module)."""
    cls = resolve(worker) if isinstance(worker, str) else worker
    attempt = int(opts.pop("attempt", 1))
    outcome = _run_here(testing._attempting(cls.new(args, **opts), attempt, node))
    if not safe and outcome.exception is not None:
        raise outcome.exception
    return outcome


# -- enqueue under a testing client --------------------------------------------------------


def enqueue_in_mode(jobs: list[Job], using: str | None = None) -> list[Job] | None:
    """What ``enqueue`` returns under an inline or disabled testing client (None: insert).

    Inline jobs enqueued inside the caller's ``atomic()`` block (of the jobs' database or
    another) run when it commits, as a node would only see them then: the job sees the rows
    the block wrote, and a job that raises does not roll the caller back. They are returned
    as given, unsaved."""
    try:
        client = get_instance()
    except InstanceNotFound:
        return None
    if not isinstance(client, TestingClient):
        return None
    mode = client.active_mode  # a ``testing.mode(...)`` block wins over the client's own
    if mode == "manual":
        return None
    testing._refuse_unstorable(jobs)
    if mode == "disabled":
        return jobs
    holder = holding_database(using or conf.database())
    if holder is not None:
        from django.db import transaction

        transaction.on_commit(lambda: _run_inline(client, jobs), using=holder)
        return jobs
    return _run_inline(client, jobs)


def _run_inline(client: TestingClient, jobs: list[Job]) -> list[Job]:
    done = []
    for job in jobs:
        outcome = _run_here(testing._attempting(job, 1, client.node))
        client.performed.append(outcome.job)
        if client.raise_errors and outcome.exception is not None:
            raise outcome.exception
        done.append(outcome.job)
    return done


@contextmanager
def oban_mode(mode: Mode) -> Iterator[TestingClient]:
    """A ``TestingClient(mode)`` registered as ``"Oban"`` for the block, closed after it, so a
    test cannot leave its mode to the next one. Inline and disabled modes govern
    ``enqueue`` and ``Worker.enqueue``; manual mode (``enqueue`` inserts on the test's
    connection) needs no client at all."""
    if mode == "manual":
        raise ValueError("manual mode is the default under Django: no testing client needed")
    client = TestingClient(mode)
    try:
        yield client
    finally:
        async_to_sync(client.close)()


# -- reading oban_jobs on Django's connection ------------------------------------------------


def _queries() -> Queries:
    return Queries(conf.prefix())


def all_enqueued(
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
    using: str | None = None,
) -> list[Job]:
    """``oban_py.testing.all_enqueued`` on Django's connection ``using`` (``OBAN["database"]``)."""
    params = testing._enqueued_params(worker, queue, args, meta, tags, priority, state, limit)
    with raw_connection(using).cursor(row_factory=dict_row) as cur:
        cur.execute(_queries()["jobs_list"], params)
        found = [Job.from_row(decoded_row(row)) for row in cur.fetchall()]
    return testing._scheduled_near(found, scheduled_at, delta)


def assert_enqueued(*, using: str | None = None, **filters: Any) -> Job:
    """Assert a job matching ``filters`` (see ``all_enqueued``) is enqueued; return the newest."""
    found = all_enqueued(using=using, **filters)
    if found:
        return found[0]
    nearby = all_enqueued(
        using=using, queue=filters.get("queue"), state=filters.get("state"), limit=5
    )
    seen = "; ".join(testing._summary(j) for j in nearby) or "none"
    raise AssertionError(
        f"Expected a job matching {testing._describe(filters)} to be enqueued. Enqueued jobs in"
        f" that queue (newest 5): {seen}"
    )


def refute_enqueued(*, using: str | None = None, **filters: Any) -> None:
    """Assert no job matching ``filters`` is enqueued."""
    found = all_enqueued(using=using, **filters)
    if found:
        jobs = "; ".join(testing._summary(j) for j in found[:5])
        raise AssertionError(
            f"Expected no job matching {testing._describe(filters)} to be enqueued, found"
            f" {len(found)}: {jobs}"
        )


def drain_queue(
    queue: str, *, with_recursion: bool = False, with_safety: bool = True, using: str | None = None
) -> dict[str, int]:
    """Run ``queue``'s available jobs now, one after the other, on the test's connection, and
    write their outcomes with the node's SQL; counts by outcome, as ``oban_py.testing``'s
    ``drain_queue``. ``with_recursion`` keeps going until no job is available (jobs enqueued
    by jobs run too)."""
    queries = _queries()
    counts = dict.fromkeys(("completed", "discarded", "cancelled", "retryable", "snoozed"), 0)
    fetch = {
        "queue": queue,
        "node": testing.TESTING_NODE,
        "uuid": str(uuid.uuid4()),
        "demand": testing.UNLIMITED,
    }
    while True:
        with raw_connection(using).cursor(row_factory=dict_row) as cur:
            cur.execute(queries["fetch_jobs"], fetch)
            rows = cur.fetchall()
        if not rows:
            return counts
        for row in rows:
            job = Job.from_row(decoded_row(row))
            done = _in_test_thread(testing._execute, _TestThread(), job)
            ack = done.ack
            raw_connection(using).execute(queries["ack_jobs"], batch_params([ack]))
            counts["snoozed" if ack.state == "scheduled" else ack.state] += 1
            if not with_safety and done.error is not None:
                raise done.error
        if not with_recursion:
            return counts
