"""The outcome of an attempt as the columns it writes (``Ack``), and one function per Elixir rule.

- returned anything else: ``completed``, ``completed_at``;
- returned ``Snooze(s)``: ``scheduled`` at now + s, attempt kept, ``max_attempts + 1``;
- returned ``Cancel(r)``: ``cancelled``, ``cancelled_at``, errors entry
  "<W> failed with {:cancel, r}";
- returned ``Record(v)``: ``completed``, meta ``recorded: true`` and ``return`` (Base64 term);
- raised (any ``BaseException``), timed out, unknown worker, bad args: ``retryable`` at now +
  backoff, or ``discarded`` at the last attempt (or at once, when the worker's retry policy
  says so), with an errors entry;
- killed by a cancel (pkill): stays ``cancelled``, errors entry "{:cancel, :shutdown}";
- interrupted by this node (shutdown, fencing) once the worker really stopped, or found running
  nowhere: released as Elixir's Lifeline releases a job (``available``, attempt kept, or
  ``discarded`` when out of attempts; no errors entry);
- a claimed row that cannot be decoded: ``discarded`` with an errors entry saying why.

Every text written goes through ``errors.storable`` first, so an outcome can always be stored.
This module sits below the attempt (which decides) and the acker (which writes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from oban_py.job import errors, jsonb, terms

if TYPE_CHECKING:
    from oban_py.job.model import Job
    from oban_py.job.returns import Record

#: Released Oban 2.23.1 snoozes with attempt kept and max_attempts + 1 (compat_fixtures
#: jobs/snoozed.json). Oban's main branch rolls the attempt back and counts snoozes in
#: meta.snoozed instead: set this to True to follow it.
SNOOZE_ROLLS_BACK_ATTEMPT = False


class Ack(NamedTuple):
    """The outcome of one attempt, as the columns ``ack_jobs.sql`` writes."""

    id: int
    #: the attempt's attempted_at (aware UTC): the guard that the row is still this attempt
    attempted_at: datetime
    state: str
    #: when the job finished: completed_at / cancelled_at / discarded_at of the new state
    at: datetime
    scheduled_at: datetime | None = None
    extra_attempts: int = 0
    attempt_delta: int = 0
    #: a JSON errors entry to append
    error: str | None = None
    #: a JSON object merged into meta
    meta: str | None = None
    #: written over a row already cancelled by the cancel that killed this attempt
    pkill: bool = False


def _entry(attempt: int, now: datetime, text: str) -> str:
    return jsonb.dumps_str(errors.error_entry(attempt, now, errors.storable(text)))


def _ack(job: Job, state: str, now: datetime, **fields: Any) -> Ack:
    # Jobs reaching an outcome came from a fetch: id and attempted_at are always set.
    return Ack(job.id, job.attempted_at, state, now, **fields)  # type: ignore[arg-type]


def complete(job: Job, now: datetime) -> Ack:
    return _ack(job, "completed", now)


def snooze(job: Job, seconds: int, now: datetime) -> Ack:
    """The one place the snooze rule lives (see ``SNOOZE_ROLLS_BACK_ATTEMPT``)."""
    at = now + timedelta(seconds=seconds)
    if SNOOZE_ROLLS_BACK_ATTEMPT:
        meta = job.meta if isinstance(job.meta, dict) else {}
        snoozed = int(meta.get("snoozed", 0)) + 1
        return _ack(
            job,
            "scheduled",
            now,
            scheduled_at=at,
            attempt_delta=-1,
            meta=jsonb.dumps_str({"snoozed": snoozed}),
        )
    return _ack(job, "scheduled", now, scheduled_at=at, extra_attempts=1)


def cancel(job: Job, text: str, now: datetime, *, pkill: bool = False) -> Ack:
    return _ack(job, "cancelled", now, error=_entry(job.attempt, now, text), pkill=pkill)


def killed(job: Job, now: datetime) -> Ack:
    """A job killed by a cancel (pkill), recorded as Elixir records ``{:cancel, :shutdown}``."""
    return cancel(job, errors.format_cancel_shutdown(job.worker), now, pkill=True)


def failure(job: Job, text: str, now: datetime, backoff_seconds: float) -> Ack:
    """Retry after ``backoff_seconds``, or discard when this was the last attempt."""
    entry = _entry(job.attempt, now, text)
    if job.attempt >= job.max_attempts:
        return _ack(job, "discarded", now, error=entry)
    at = now + timedelta(seconds=backoff_seconds)
    return _ack(job, "retryable", now, scheduled_at=at, error=entry)


def discard(job: Job, text: str, now: datetime) -> Ack:
    """Discard at once, whatever attempts are left: the worker's retry policy said so."""
    return _ack(job, "discarded", now, error=_entry(job.attempt, now, text))


def record(job: Job, value: Record, now: datetime) -> Ack:
    """Raises ``terms.RecordTooLarge`` (or ``TermError``): the job then fails like any error."""
    encoded = terms.encode_recorded(value.value, limit=value.limit)
    return _ack(job, "completed", now, meta=jsonb.dumps_str({"recorded": True, "return": encoded}))


def release(job_id: int, attempted_at: datetime, exhausted: bool, now: datetime) -> Ack:
    """Give the job back as Elixir's Lifeline does: available, or discarded when out of attempts."""
    return Ack(job_id, attempted_at, "discarded" if exhausted else "available", now)


def undecodable(job_id: int, attempted_at: datetime, attempt: int, text: str, now: datetime) -> Ack:
    """A claimed row this node cannot read: discarded, since running it again cannot help."""
    return Ack(job_id, attempted_at, "discarded", now, error=_entry(attempt, now, text))


def degraded(ack: Ack, reason: str) -> Ack:
    """``ack`` without what the database refused (its errors text, its meta), saying why."""
    if ack.error is None:
        return ack._replace(meta=None)
    attempt = jsonb.loads(ack.error).get("attempt")
    text = f"** (Oban.AckError) this attempt's outcome could not be stored as written: {reason}"
    return ack._replace(error=_entry(attempt, ack.at, text), meta=None)
