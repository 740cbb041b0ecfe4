"""One attempt, from the claimed row to its one outcome: the only place that decides it.

``claimed`` turns the rows a fetch claimed into jobs, and a row it cannot read into a
``discarded`` outcome on the spot, so one bad row never strands the others. ``perform`` runs a
job and always returns its ``Ack``: whatever the worker returns or raises (any
``BaseException``: ``SystemExit``, ``KeyboardInterrupt``, a ``CancelledError`` of its own), and
whatever interrupts it (a pkill, the node's shutdown, fencing). It reads as the attempt's story:

    telemetry start -> work middleware (process-wide, instance) -> resolve the worker ->
    validate args -> the worker's own middleware -> call ``process`` (on the loop, in a pool
    thread inside ``work_in_thread``, or in a worker process) under its timeout -> the outcome
    rule -> back out through the middleware -> telemetry stop

A plain ``def process`` runs in a thread that nothing can stop, so its attempt is never given up
while the thread runs: an interrupt or a timeout raises ``job.cancelled()`` for the worker to see
and the outcome waits for the thread. The producer (``producer.py``) owns the attempts of its
queue and writes each ack through the node's acker; ``testing.py`` runs jobs through this same
code.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from oban_py import middleware as mw
from oban_py import telemetry
from oban_py.job import backoff, errors
from oban_py.job.errors import UnknownWorker
from oban_py.job.model import Job
from oban_py.job.progress import StopReason
from oban_py.job.returns import Cancel, Record, Snooze
from oban_py.middleware import AttemptOutcome as Outcome
from oban_py.middleware import Middleware
from oban_py.node import outcomes
from oban_py.node.outcomes import Ack
from oban_py.node.processes import Executor as Processes
from oban_py.worker import lookup, resolve

if TYPE_CHECKING:
    from psycopg import AsyncCursor

#: Why this node interrupted an attempt: a cancel signal (pkill), the node stopping, or the
#: node losing its heartbeat (fenced: another node may soon rescue the job).
Interrupt = Literal["pkill", "shutdown", "fenced"]
#: The public name of each interrupt (``job.stop_reason``): a pkill is an operator's cancel.
_STOP_REASON: dict[Interrupt, StopReason] = {
    "pkill": "cancel",
    "shutdown": "shutdown",
    "fenced": "fenced",
}


class Attempt:
    """A claimed job being worked: its task, and why this node interrupted it, if it did."""

    __slots__ = ("discard_unknown", "id", "in_thread", "job", "reason", "started", "task")

    def __init__(self, job: Job, *, discard_unknown: bool = False) -> None:
        self.job = job
        #: discard at once, rather than retry, a job whose worker this node does not know
        self.discard_unknown = discard_unknown
        self.id: int = job.id  # type: ignore[assignment]
        self.task: asyncio.Task[None] | None = None
        self.reason: Interrupt | None = None
        #: True while ``process`` runs in a pool thread, which no cancel can stop
        self.in_thread = False
        #: False until the attempt's task has begun: a task cancelled before its first step
        #: never runs a line of it, so it could record no outcome
        self.started = False

    def interrupt(self, reason: Interrupt) -> None:
        """Raise ``job.cancelled()``; the first reason stays, but a pkill outranks the others."""
        if self.reason is None or reason == "pkill":
            self.reason = reason
        self.job._cancel(_STOP_REASON[self.reason])


# -- claimed rows ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _unreadable(row: Mapping[str, Any]) -> str | None:
    """Why a decoded row cannot be worked, or None: what Elixir's schema would refuse to load."""
    for column, kind in (("args", dict), ("meta", dict), ("errors", list), ("tags", list)):
        value = row.get(column)
        if value is not None and value.__class__ is not kind:
            return f"{column} must be a JSON {'object' if kind is dict else 'array'}"
    return None


def _decode(row: Mapping[str, Any], now: datetime) -> Job | Ack:
    problem = _unreadable(row)
    if problem is None:
        try:
            return Job.from_row(row)
        except Exception as error:
            problem = errors.safe_str(error)
    text = f"** (Oban.DecodeError) job {row['id']} cannot be read: {problem}"
    return outcomes.undecodable(row["id"], row["attempted_at"], row["attempt"], text, now)


async def claimed(cur: AsyncCursor[Any]) -> tuple[list[Job], list[Ack]]:
    """The jobs a fetch claimed, and the outcomes of claimed rows that cannot be read.

    Rows are decoded all at once; when that fails (a timestamp at ``infinity``, a value no
    loader reads), row by row, and a row that fails alone is read from its raw columns.
    """
    now = _now()
    try:
        rows = await cur.fetchall()
    except Exception:
        return await _claimed_one_by_one(cur, now)
    jobs: list[Job] = []
    bad: list[Ack] = []
    for row in rows:
        _sort(_decode(row, now), jobs, bad)
    return jobs, bad


def _sort(decoded: Job | Ack, jobs: list[Job], bad: list[Ack]) -> None:
    if isinstance(decoded, Job):
        jobs.append(decoded)
    else:
        bad.append(decoded)


async def _claimed_one_by_one(cur: AsyncCursor[Any], now: datetime) -> tuple[list[Job], list[Ack]]:
    jobs: list[Job] = []
    bad: list[Ack] = []
    result = cur.pgresult
    if result is None or cur.description is None:
        return jobs, bad
    columns = {column.name: index for index, column in enumerate(cur.description)}
    for index in range(result.ntuples):
        try:
            await cur.scroll(index, mode="absolute")
            row = await cur.fetchone()
        except Exception as error:
            bad.append(_raw_undecodable(result, columns, index, error, now))
            continue
        if row is not None:
            _sort(_decode(row, now), jobs, bad)
    return jobs, bad


def _raw_undecodable(
    result: Any, columns: dict[str, int], index: int, error: Exception, now: datetime
) -> Ack:
    # The columns the claim itself wrote (id, attempt, attempted_at) always read as text.
    def raw(name: str) -> str:
        return bytes(result.get_value(index, columns[name])).decode()

    job_id = int(raw("id"))
    attempted_at = datetime.fromisoformat(raw("attempted_at")).replace(tzinfo=UTC)
    text = f"** (Oban.DecodeError) job {job_id} cannot be read: {errors.safe_str(error)}"
    return outcomes.undecodable(job_id, attempted_at, int(raw("attempt")), text, now)


# -- running one attempt -------------------------------------------------------------------------


class UnknownWorkerError(Exception):
    """A job whose worker name resolves to nothing on this node."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown worker: {name}")
        self.text = f"** (RuntimeError) unknown worker: {name}"


async def perform(
    attempt: Attempt,
    threads: Executor,
    prefix: str | None = None,
    middleware: Sequence[Middleware] = (),
    processes: Processes | None = None,
) -> Outcome:
    """Run the attempt's job inside the work middleware (process-wide, then ``middleware``,
    then the worker's own); what it came to (the ack to write, what ``process`` returned or
    raised, the exception that failed it). Never raises."""
    job = attempt.job
    if prefix is not None:
        job._set_private(_prefix=prefix)
    span = _Span(job, prefix)
    links = mw.stack("work", middleware)
    if links:
        outcome = await mw.work_through(
            links,
            job,
            lambda: _resolved(attempt, threads, middleware, processes),
            lambda error: _failed(attempt, None, error),
            lambda outcome: _belongs(attempt, outcome),
        )
    else:
        outcome = await _resolved(attempt, threads, middleware, processes)
    span.end(outcome.ack, outcome.result, outcome.error, interrupted=attempt.reason)
    return outcome


def _outcome(attempt: Attempt, ack: Ack, result: Any, failed: BaseException | None) -> Outcome:
    return Outcome(ack.state, result, failed, attempt.reason, ack)


def _belongs(attempt: Attempt, outcome: Outcome) -> bool:
    """Whether ``outcome`` carries an ack of this attempt's row: a middleware may return an
    ``AttemptOutcome`` it built (no ack) or kept from another job, which the acker cannot write
    or would write over another row, leaving this one executing."""
    ack = outcome.ack
    return (
        isinstance(ack, Ack)
        and ack.id == attempt.id
        and ack.attempted_at == attempt.job.attempted_at
    )


def _failed(attempt: Attempt, worker: Any, error: BaseException) -> Outcome:
    ack, failed = _raised(attempt, worker, error)
    return _outcome(attempt, ack, error, failed)


async def _resolved(
    attempt: Attempt,
    threads: Executor,
    middleware: Sequence[Middleware],
    processes: Processes | None = None,
) -> Outcome:
    job = attempt.job
    worker: Any = None
    try:
        try:
            # An import runs module code of the job's naming: off the loop, as any blocking call.
            cls = lookup(job.worker)
            if cls is None:
                cls = await asyncio.to_thread(resolve, job.worker)
        except UnknownWorker:
            raise UnknownWorkerError(job.worker) from None
        worker = cls()
        if cls.args_model is not None:
            cls.build_args(job)
    except BaseException as raised:
        return _failed(attempt, worker, raised)
    own = cls.middleware
    layers = (middleware, own)
    if not own:
        return await _worked(attempt, worker, threads, layers, processes)
    # The process-wide and instance middleware already run outside: the worker's own is left.
    return await mw.work_through(
        [m for m in own if mw.overrides(m, "work")],
        job,
        lambda: _worked(attempt, worker, threads, layers, processes),
        lambda error: _failed(attempt, worker, error),
        lambda outcome: _belongs(attempt, outcome),
    )


async def _worked(
    attempt: Attempt,
    worker: Any,
    threads: Executor,
    layers: tuple[Sequence[Middleware], ...],
    processes: Processes | None = None,
) -> Outcome:
    try:
        result = await _call(attempt, worker, threads, layers, processes)
        # Inside the try: the outcome rule runs code of the worker's too (a Cancel reason's
        # __repr__), and what it raises fails this attempt, not the producer's safety net.
        ack, failed = _returned(attempt, result)
    except BaseException as raised:
        return _failed(attempt, worker, raised)
    return _outcome(attempt, ack, result if failed is None else failed, failed)


def _ours(attempt: Attempt, error: BaseException) -> bool:
    # A CancelledError is this node's interrupt only if this node asked for one; a worker may
    # raise one of its own (a leaked inner cancellation), which is an ordinary failure.
    if not isinstance(error, asyncio.CancelledError) or attempt.reason is None:
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _raised(
    attempt: Attempt, worker: Any, error: BaseException
) -> tuple[Ack, BaseException | None]:
    job = attempt.job
    now = _now()
    if attempt.reason == "pkill":
        return outcomes.killed(job, now), None
    if _ours(attempt, error):
        # The worker really stopped (its task ended), so the job can go back at once.
        exhausted = job.attempt >= job.max_attempts
        return outcomes.release(attempt.id, job.attempted_at, exhausted, now), error  # type: ignore[arg-type]
    timeout = getattr(error, "oban_timeout", None)
    if isinstance(error, TimeoutError) and timeout is not None:
        text = errors.format_timeout(job.worker, timeout * 1000)
    elif isinstance(error, UnknownWorkerError):
        text = error.text
    elif isinstance(remote := getattr(error, "oban_text", None), str):
        # Formatted where it was raised: in a worker process, with the frames of that process.
        text = remote
    else:
        text = errors.format_exception(error)
    if not _retries(attempt, worker, error):
        return outcomes.discard(job, text, now), error
    return outcomes.failure(job, text, now, _backoff(worker, job)), error


def _retries(attempt: Attempt, worker: Any, error: BaseException) -> bool:
    """The worker's retry policy (``Worker.should_retry``); an unknown worker's is the node's."""
    if worker is None:
        return not (attempt.discard_unknown and isinstance(error, UnknownWorkerError))
    decide = getattr(worker, "should_retry", None)
    if decide is None:
        return True
    try:
        return bool(decide(attempt.job, error))
    except BaseException:  # a broken policy falls back to Elixir's: retry
        return True


def _returned(attempt: Attempt, result: Any) -> tuple[Ack, BaseException | None]:
    job = attempt.job
    now = _now()
    if attempt.reason == "pkill":
        # Killed by a cancel but returned before it took effect: the row is cancelled already
        # and the guarded ack records the kill as Elixir does.
        return outcomes.killed(job, now), None
    if result is None or type(result) not in _SPECIAL:
        return outcomes.complete(job, now), None
    if isinstance(result, Snooze):
        return outcomes.snooze(job, result.seconds, now), None
    if isinstance(result, Cancel):
        return outcomes.cancel(job, errors.format_cancel(job.worker, result.reason), now), None
    try:
        return outcomes.record(job, result, now), None
    except BaseException as error:
        return outcomes.failure(
            job, errors.format_exception(error), now, _backoff(None, job)
        ), error


_SPECIAL = frozenset({Snooze, Cancel, Record})


def _backoff(worker: Any, job: Job) -> float:
    custom = getattr(worker, "backoff", None) if worker is not None else None
    if custom is not None:
        try:
            seconds = float(custom(job))
        except BaseException:  # a broken backoff falls back to Elixir's
            pass
        else:
            if not math.isnan(seconds):  # nor is NaN a delay
                return seconds
    return float(backoff.default_backoff(job.attempt, job.max_attempts))


async def _call(
    attempt: Attempt,
    worker: Any,
    threads: Executor,
    layers: tuple[Sequence[Middleware], ...],
    processes: Processes | None = None,
) -> Any:
    job = attempt.job
    seconds = _timeout(worker, job)
    process = worker.process
    if processes is not None and getattr(worker, "executor", None) == "process":
        # The worker process enforces the timeout and a pkill itself: it is killed. There is
        # no node thread for ``work_in_thread`` to wrap; ``work`` middleware wraps this call.
        def killed() -> bool:
            return attempt.reason == "pkill"

        return await processes.run(type(worker), job, seconds, killed)
    if not _is_async(process):
        attempt.in_thread = True
        in_thread = mw.stack("work_in_thread", *layers)
        future = asyncio.get_running_loop().run_in_executor(
            threads, mw.thread_through, in_thread, job, process
        )
        try:
            result = await _wait_thread(future, job, seconds)
        finally:
            attempt.in_thread = False
        # A plain def may still hand back an awaitable (a wrapped coroutine function).
        return await result if inspect.isawaitable(result) else result
    work = process(job)
    if seconds is None:
        return await work
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as error:
        job._cancel("timeout")
        error.oban_timeout = seconds  # type: ignore[attr-defined]
        raise


def _timeout(worker: Any, job: Job) -> float | None:
    """The worker's ``timeout(job)`` in seconds, None for no limit (``None`` or ``math.inf``).

    Elixir's executor takes ``:infinity`` or a non-negative integer of ms and crashes on
    anything else; here anything else (NaN, a negative number, a str, a bool) fails the
    attempt with an error naming it, whether the worker runs on the loop, in a thread or in a
    process.
    """
    limit = getattr(worker, "timeout", None)
    value = limit(job) if limit is not None else None
    if value is None:
        return None
    name = f"{job.worker}.timeout(job)"
    # int and float, the usual answers, skip the slower ABC check.
    if type(value) not in (int, float) and (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
    ):
        raise TypeError(
            f"{name} returned {errors.safe_repr(value)}: a timeout is a number of seconds "
            "(>= 0), or None for no limit"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float is no limit either
        return None
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"{name} returned {seconds!r}: a timeout is a number of seconds (>= 0), "
            "or None for no limit"
        )
    return None if seconds == math.inf else seconds


#: whether a worker class's ``process`` is a coroutine function, by function: asked for every
#: job, answered once per class (``inspect`` costs about as much as a no-op job's own call)
_ASYNC: dict[Any, bool] = {}


def _is_async(process: Any) -> bool:
    function = getattr(process, "__func__", None)
    if function is None:  # not a method: a callable set on the instance, asked each time
        return inspect.iscoroutinefunction(process)
    found = _ASYNC.get(function)
    if found is None:
        found = _ASYNC[function] = inspect.iscoroutinefunction(process)
    return found


async def _wait_thread(future: asyncio.Future[Any], job: Job, seconds: float | None) -> Any:
    """The thread's result, once it ends: a cancel or the timeout only ask it to stop."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    timed_out = False
    while not future.done():
        wait = None if deadline is None or timed_out else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait([future], timeout=wait)
        except asyncio.CancelledError:
            # Releasing the row now would let another node run the job while this thread still
            # does: keep the attempt until the thread ends, and tell the worker to stop.
            job._cancel()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            continue
        if not future.done():
            timed_out = True
            job._cancel("timeout")
    result = future.result()
    if timed_out:
        error = TimeoutError(f"timed out after {seconds}s")
        error.oban_timeout = seconds  # type: ignore[attr-defined]
        raise error
    return result


# -- telemetry -----------------------------------------------------------------------------------


_MICROSECOND = timedelta(microseconds=1)


class _Span:
    """``oban.job.start``, then ``oban.job.stop`` or ``oban.job.exception``, as Elixir emits.

    Metadata is built only for events some handler receives: with no handler, or only a
    failure logger, a job that succeeds costs a clock read.
    """

    __slots__ = ("job", "prefix", "start")

    def __init__(self, job: Job, prefix: str | None) -> None:
        self.job = job
        self.prefix = prefix
        self.start = time.monotonic_ns() if telemetry._handlers else 0
        if self.start and telemetry.listening("oban.job.start"):
            telemetry.execute("oban.job.start", {"system_time": time.time_ns()}, self._meta())

    def _meta(self) -> dict[str, Any]:
        job = self.job
        return {
            "job": job,
            "id": job.id,
            "args": job.args,
            "queue": job.queue,
            "worker": job.worker,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "tags": job.tags,
            "prefix": self.prefix,
        }

    def _measurements(self) -> dict[str, int]:
        job = self.job
        queue_time = 0
        if job.attempted_at is not None and job.scheduled_at is not None:
            # Both come from the database clock, so the difference is free of Python clock skew.
            queue_time = max(0, (job.attempted_at - job.scheduled_at) // _MICROSECOND * 1_000)
        return {"duration": time.monotonic_ns() - self.start, "queue_time": queue_time}

    def end(
        self, ack: Ack, result: Any, failed: BaseException | None, *, interrupted: str | None
    ) -> None:
        if not self.start:
            return
        event = "oban.job.stop" if failed is None else "oban.job.exception"
        if not telemetry.listening(event):
            return
        meta = self._meta()
        meta.update(state=ack.state, result=result)
        if failed is not None:
            # Elixir reports a job its node stopped as an exit, anything the worker did as an
            # error.
            ours = interrupted is not None and isinstance(failed, asyncio.CancelledError)
            meta.update(
                kind="exit" if ours else "error",
                error=failed,
                reason=failed,
                stacktrace=traceback.extract_tb(failed.__traceback__),
            )
        telemetry.execute(event, self._measurements(), meta)
