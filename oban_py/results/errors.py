"""What waiting for a job's result raises when there is no result to give."""

from __future__ import annotations

from typing import Any

from oban_py.job.model import Job


class JobFailed(Exception):
    """The job ended without a result: discarded or cancelled. ``job`` is its final row and
    ``error`` the text of its last errors entry (Elixir's ``** (RuntimeError) ...``), or None."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.error: str | None = _last_error(job)
        detail = f": {self.error.splitlines()[0]}" if self.error else ""
        super().__init__(f"job {job.id} ({job.worker}) was {job.state}{detail}")


class JobDiscarded(JobFailed):
    """The job was discarded: its last attempt failed, or its retry policy said not to retry."""


class JobCancelled(JobFailed):
    """The job was cancelled: by an operator, or by its worker returning ``Cancel``."""


class JobNotFound(LookupError):
    """No job has this id (never inserted, deleted, or pruned)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class WaitTimeout(TimeoutError):
    """The job did not finish within the wait's timeout; ``job`` is its row as last read."""

    def __init__(self, job_id: int, timeout: float, job: Job | None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.job = job
        state = f" (still {job.state})" if job is not None else ""
        super().__init__(f"job {job_id} did not finish within {timeout}s{state}")


class WaitStopped(RuntimeError):
    """The wait ended unfinished because the instance it waited through stopped: the node
    (``Oban.stop``, the end of ``async with``), the ``Client`` (``close``/``close_sync``) or
    the ``Results`` hub (``close``). The job itself is not touched and may still run; ``job``
    is its row as last read (None if the wait had not read it yet)."""

    def __init__(self, job_id: int, job: Job | None) -> None:
        self.job_id = job_id
        self.job = job
        state = f" (job still {job.state})" if job is not None else ""
        super().__init__(
            f"stopped waiting for job {job_id}: the client it waited through stopped{state}"
        )


def _last_error(job: Job) -> str | None:
    entries: Any = job.errors
    if not isinstance(entries, list) or not entries:
        return None
    last = entries[-1]
    text = last.get("error") if isinstance(last, dict) else None
    return text if isinstance(text, str) else None


def outcome(job: Job | None, job_id: int) -> tuple[bool, Any]:
    """``(True, recorded value)`` for a completed job, ``(False, None)`` while it may still
    run; raises for a job that ended without a result or does not exist."""
    if job is None:
        raise JobNotFound(job_id)
    if job.state == "completed":
        return True, job.recorded
    if job.state == "discarded":
        raise JobDiscarded(job)
    if job.state == "cancelled":
        raise JobCancelled(job)
    return False, None
