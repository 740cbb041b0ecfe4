"""Runs one job and turns what happened into an ``Ack``, field by field as Elixir Oban does.

- returned anything else: ``completed``, ``completed_at``;
- returned ``Snooze(s)``: ``scheduled`` at now + s, attempt kept, ``max_attempts + 1``
  (``snooze_ack``);
- returned ``Cancel(r)``: ``cancelled``, ``cancelled_at``, errors entry
  "<W> failed with {:cancel, r}";
- returned ``Record(v)``: ``completed``, meta ``recorded: true`` and ``return`` (Base64 term);
- raised, timed out, unknown worker, bad args: ``retryable`` at now + backoff, or ``discarded``
  at the last attempt, with an errors entry;
- killed by a cancel (pkill): stays ``cancelled``, errors entry "{:cancel, :shutdown}";
- still running at shutdown: no ack, the row stays ``executing`` for the lifeline.

Sync ``process`` functions run in the node's bounded thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from oban_py import backoff, errors, telemetry, terms
from oban_py.acker import Ack
from oban_py.errors import UnknownWorker
from oban_py.hooks import WorkHook, work_hooks
from oban_py.job import Job
from oban_py.results import Cancel, Record, Snooze
from oban_py.worker import resolve

if TYPE_CHECKING:
    from oban_py.oban import Oban

#: Released Oban 2.23.1 snoozes with attempt kept and max_attempts + 1 (compat_fixtures
#: jobs/snoozed.json). Oban's main branch rolls the attempt back and counts snoozes in
#: meta.snoozed instead: set this to True to follow it.
SNOOZE_ROLLS_BACK_ATTEMPT = False


def job_from_row(row: dict[str, Any]) -> Job:
    return Job.from_row(row)


def flag_cancelled(job: Job) -> None:
    """Raise the flag ``job.cancelled()`` reports, so a cooperative worker can stop."""
    job._cancel()


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- outcome rules: one function each -------------------------------------------------------


def _ack(job: Job, state: str, now: datetime, **fields: Any) -> Ack:
    # Jobs reaching the executor came from a fetch: id and attempted_at are always set.
    return Ack(job.id, job.attempted_at, state, now, **fields)  # type: ignore[arg-type]


def complete_ack(job: Job, now: datetime) -> Ack:
    return _ack(job, "completed", now)


def snooze_ack(job: Job, seconds: int, now: datetime) -> Ack:
    """The one place the snooze rule lives (see ``SNOOZE_ROLLS_BACK_ATTEMPT``)."""
    at = now + timedelta(seconds=seconds)
    if SNOOZE_ROLLS_BACK_ATTEMPT:
        snoozed = int((job.meta or {}).get("snoozed", 0)) + 1
        return _ack(
            job,
            "scheduled",
            now,
            scheduled_at=at,
            attempt_delta=-1,
            meta=_dumps({"snoozed": snoozed}),
        )
    return _ack(job, "scheduled", now, scheduled_at=at, extra_attempts=1)


def cancel_ack(job: Job, text: str, now: datetime, *, pkill: bool = False) -> Ack:
    entry = errors.error_entry(job.attempt, now, text)
    return _ack(job, "cancelled", now, error=_dumps(entry), pkill=pkill)


def failure_ack(job: Job, text: str, now: datetime, backoff_seconds: float) -> Ack:
    """Retry after ``backoff_seconds``, or discard when this was the last attempt."""
    entry = _dumps(errors.error_entry(job.attempt, now, text))
    if job.attempt >= job.max_attempts:
        return _ack(job, "discarded", now, error=entry)
    at = now + timedelta(seconds=backoff_seconds)
    return _ack(job, "retryable", now, scheduled_at=at, error=entry)


def record_ack(job: Job, record: Record, now: datetime) -> Ack:
    """Raises ``terms.RecordTooLarge`` (or ``TermError``): the job then fails like any error."""
    encoded = terms.encode_recorded(record.value, limit=record.limit)
    meta = _dumps({"recorded": True, "return": encoded})
    return _ack(job, "completed", now, meta=meta)


def _backoff(worker: Any, job: Job) -> float:
    custom = getattr(worker, "backoff", None) if worker is not None else None
    if custom is not None:
        try:
            return float(custom(job))
        except Exception:
            pass
    return float(backoff.default_backoff(job.attempt, job.max_attempts))


# -- running a job ---------------------------------------------------------------------------


async def execute(oban: Oban, job: Job, reason: Callable[[], str | None]) -> Ack | None:
    """Run ``job`` and return its ack; ``reason()`` tells why it was cancelled, if it was.

    Emits ``oban.job.start``, then ``oban.job.stop`` (completed, snoozed, cancelled) or
    ``oban.job.exception`` (retryable or discarded after an error, and a shutdown interrupting
    the job), as Elixir's executor does. Returns None when the job was cancelled by a
    shutdown: its row is left executing.
    """
    observed = bool(telemetry._handlers)
    if observed:
        start = time.monotonic_ns()
        meta = _event_metadata(oban, job)
        telemetry.execute("oban.job.start", {"system_time": time.time_ns()}, meta)
    worker: Any = None
    failure: BaseException | None = None
    try:
        try:
            cls = resolve(job.worker)
        except UnknownWorker:
            raise UnknownWorkerError(job.worker) from None
        worker = cls()
        if cls.args_model is not None:
            cls.build_args(job)
        result = await _perform(oban, worker, job)
    except asyncio.CancelledError as error:
        if reason() != "pkill":
            if observed:
                # The row stays executing for the lifeline; the span still has to end here.
                _emit_exception(start, meta, job, "executing", "exit", error)
            raise
        ack = cancel_ack(job, errors.format_cancel_shutdown(job.worker), _now(), pkill=True)
        result = None
    except TimeoutError as error:
        now = _now()
        timeout = getattr(error, "oban_timeout", None)
        if timeout is None:
            text = errors.format_exception(error)
        else:
            text = errors.format_timeout(job.worker, timeout * 1000)
        ack = failure_ack(job, text, now, _backoff(worker, job))
        result = failure = error
    except Exception as error:
        if reason() == "pkill":
            ack = cancel_ack(job, errors.format_cancel_shutdown(job.worker), _now(), pkill=True)
        else:
            text = (
                error.text
                if isinstance(error, UnknownWorkerError)
                else errors.format_exception(error)
            )
            ack = failure_ack(job, text, _now(), _backoff(worker, job))
            failure = error
        result = error
    else:
        ack, failure = _result_ack(job, result, reason)
        result = failure if failure is not None else result
    if observed:
        if failure is not None:
            _emit_exception(start, meta, job, ack.state, "error", failure)
        else:
            telemetry.execute(
                "oban.job.stop",
                _measurements(start, job),
                {**meta, "state": ack.state, "result": result},
            )
    return ack


def _event_metadata(oban: Oban, job: Job) -> dict[str, Any]:
    config = getattr(oban, "config", None)
    return {
        "job": job,
        "id": job.id,
        "args": job.args,
        "queue": job.queue,
        "worker": job.worker,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "tags": job.tags,
        "prefix": getattr(config, "prefix", None),
    }


def _measurements(start: int, job: Job) -> dict[str, int]:
    queue_time = 0
    if job.attempted_at is not None and job.scheduled_at is not None:
        # Both come from the database clock, so the difference is free of Python clock skew.
        waited = job.attempted_at - job.scheduled_at
        queue_time = max(0, waited // _MICROSECOND * 1_000)
    return {"duration": time.monotonic_ns() - start, "queue_time": queue_time}


def _emit_exception(
    start: int, meta: dict[str, Any], job: Job, state: str, kind: str, error: BaseException
) -> None:
    telemetry.execute(
        "oban.job.exception",
        _measurements(start, job),
        {
            **meta,
            "state": state,
            "kind": kind,
            "error": error,
            "reason": error,
            "result": error,
            "stacktrace": traceback.extract_tb(error.__traceback__),
        },
    )


class UnknownWorkerError(Exception):
    """A job whose worker name resolves to nothing on this node."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown worker: {name}")
        self.text = f"** (RuntimeError) unknown worker: {name}"


def _result_ack(
    job: Job, result: Any, reason: Callable[[], str | None]
) -> tuple[Ack, Exception | None]:
    """The ack for what ``process`` returned, and the error when recording the result failed."""
    now = _now()
    if reason() == "pkill":
        # Killed by a cancel but returned before the task was torn down: record it as Elixir
        # records the kill, the guarded ack keeps the row cancelled.
        return cancel_ack(job, errors.format_cancel_shutdown(job.worker), now, pkill=True), None
    if result is None or type(result) not in _SPECIAL:
        return complete_ack(job, now), None
    if isinstance(result, Snooze):
        return snooze_ack(job, result.seconds, now), None
    if isinstance(result, Cancel):
        return cancel_ack(job, errors.format_cancel(job.worker, result.reason), now), None
    try:
        return record_ack(job, result, now), None
    except Exception as error:
        text = errors.format_exception(error)
        return failure_ack(job, text, now, _backoff(None, job)), error


_SPECIAL = frozenset({Snooze, Cancel, Record})
_MICROSECOND = timedelta(microseconds=1)


async def _perform(oban: Oban, worker: Any, job: Job) -> Any:
    timeout = getattr(worker, "timeout", None)
    seconds = timeout(job) if timeout is not None else None
    process = worker.process
    # Work hooks (oban_py.hooks): a minimal application so the Django integration (i17) can be
    # tested now; the executor/producer rewrite carries it over. Without hooks nothing changes.
    hooks = work_hooks()
    if inspect.iscoroutinefunction(process):
        work: Any = _in_task(hooks, process, job) if hooks else process(job)
    else:
        call = functools.partial(_in_thread, hooks, process) if hooks else process
        work = asyncio.get_running_loop().run_in_executor(oban.threads, call, job)
    if seconds is None:
        return await work
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as error:
        flag_cancelled(job)
        error.oban_timeout = seconds  # type: ignore[attr-defined]
        raise


def _in_thread(hooks: tuple[WorkHook, ...], process: Callable[[Job], Any], job: Job) -> Any:
    """``process(job)`` inside every hook's ``around_thread``, in the pool thread."""
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook.around_thread(job))
        return process(job)


async def _in_task(hooks: tuple[WorkHook, ...], process: Callable[[Job], Any], job: Job) -> Any:
    """``await process(job)`` inside every hook's ``around_task``, in the job's task."""
    async with contextlib.AsyncExitStack() as stack:
        for hook in hooks:
            await stack.enter_async_context(hook.around_task(job))
        return await process(job)
