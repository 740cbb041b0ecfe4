"""The management API as planner work: get, cancel, retry, delete and update jobs.

Each function returns the ``Work`` of one operation (statements and how to read their rows),
run by the same async and sync drivers as inserts, so ``Client.cancel_jobs`` and
``Client.cancel_jobs_sync`` cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oban_py.insert.statements import Program, Statement, Work
from oban_py.job import jsonb
from oban_py.job.model import Job, to_naive_utc
from oban_py.notifier import channel
from oban_py.sql import Queries

#: The fields ``update_job`` may change (Elixir's ``Job.update`` ``@updatable_params``).
UPDATABLE = ("args", "max_attempts", "meta", "priority", "queue", "scheduled_at", "tags", "worker")


def _count(queries: Queries, name: str, params: dict[str, Any]) -> Work[int]:
    def program(own: bool) -> Program[int]:
        rows = yield Statement(queries[name], params)
        return len(rows)

    return Work(program)


def get_job(queries: Queries, job_id: int) -> Work[Job | None]:
    """The job with ``job_id``, or None."""

    def program(own: bool) -> Program[Job | None]:
        rows = yield Statement(queries["job_get"], {"id": job_id}, dicts=True)
        return Job.from_row(rows[0]) if rows else None

    return Work(program)


def cancel_jobs(queries: Queries, job_ids: Sequence[int]) -> Work[int]:
    """Cancel jobs not already cancelled, completed or discarded; pkill the executing ones."""
    params = {"ids": list(job_ids), "channel": channel(queries.prefix, "signal")}
    return _count(queries, "job_cancel", params)


def retry_jobs(queries: Queries, job_ids: Sequence[int]) -> Work[int]:
    """Make jobs available now, unless available or executing."""
    return _count(queries, "job_retry", {"ids": list(job_ids)})


def delete_jobs(queries: Queries, job_ids: Sequence[int]) -> Work[int]:
    """Delete jobs that are not executing."""
    return _count(queries, "job_delete", {"ids": list(job_ids)})


def update_params(job_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Statement parameters of ``job_update.sql``: each given field validated as a new job's.

    Raises ``ValueError`` for a field ``update_job`` may not change, and pydantic's
    ``ValidationError`` for a value a new job could not hold.
    """
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(
            f"cannot update {', '.join(sorted(unknown))}; updatable: {', '.join(UPDATABLE)}"
        )
    # Validate only what is given: the stored row may hold values (written by Elixir or older
    # versions) that this side would not accept, and those are not being changed.
    if "scheduled_at" in changes and changes["scheduled_at"] is None:
        raise ValueError("scheduled_at cannot be None: every job has a time it may run")
    valid = Job.model_validate({"worker": "-", **changes})
    params: dict[str, Any] = {"id": job_id}
    for name in UPDATABLE:
        given = name in changes
        params[f"set_{name}"] = given
        value: Any = getattr(valid, name) if given else None
        if given and name in ("args", "meta"):
            value = jsonb.dumps_str(value)
        elif given and name == "scheduled_at":
            value = to_naive_utc(value)
        params[name] = value
    return params


def update_job(queries: Queries, job_id: int, changes: Mapping[str, Any]) -> Work[Job | None]:
    """Change only the given fields of one job (see ``job_update.sql`` for the rules)."""
    params = update_params(job_id, changes)

    def program(own: bool) -> Program[Job | None]:
        rows = yield Statement(queries["job_update"], params, dicts=True)
        return Job.from_row(rows[0]) if rows else None

    return Work(program)
