"""Workflow operations as planner work: insert, append, status, results, cancel.

Each returns a ``Work`` run by the insert engine's async and sync drivers (``Client.run_work``
and ``Client.run_work_sync``), so every operation joins the caller's transaction when given
its connection, and the async and sync forms cannot drift apart.
"""

from __future__ import annotations

import binascii
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oban_py.insert.statements import Program, Statement, Work
from oban_py.job import jsonb, terms
from oban_py.job.model import Job
from oban_py.notifier import channel
from oban_py.sql import Queries

#: States a job never leaves by itself.
FINISHED = frozenset({"completed", "cancelled", "discarded"})


@dataclass
class Held:
    """A held job, the dependencies it still waits for (name -> their state, None when
    deleted) and the message it still waits for, if any."""

    id: int
    name: str
    waiting_for: dict[str, str | None]
    message: str | None = None


@dataclass
class Status:
    """A workflow at a glance: its jobs' counts by state, and what holds each held job."""

    workflow_id: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    held: list[Held] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True when every job is completed, cancelled or discarded (and there is one)."""
        return bool(self.jobs) and all(job["state"] in FINISHED for job in self.jobs)


def _names(value: Any) -> list[str]:
    # A row written by hand or by another library may hold anything here.
    return [d for d in value if isinstance(d, str)] if isinstance(value, list) else []


def _status(workflow_id: str, rows: Sequence[Mapping[str, Any]]) -> Status:
    status = Status(workflow_id)
    state_of: dict[str, str] = {}
    for row in rows:
        meta = row["meta"] if isinstance(row["meta"], Mapping) else {}
        status.jobs.append(
            {
                "id": row["id"],
                "name": meta.get("name") if isinstance(meta.get("name"), str) else None,
                "state": row["state"],
                "worker": row["worker"],
                "queue": row["queue"],
                "deps": _names(meta.get("deps")),
                "attempt": row["attempt"],
                "awaits": meta.get("wait_message") if "message" not in meta else None,
            }
        )
        if isinstance(meta.get("name"), str):
            state_of[meta["name"]] = row["state"]
    status.counts = dict(Counter(job["state"] for job in status.jobs))
    for job in status.jobs:
        if job["state"] == "suspended":
            waiting = {
                dep: state_of.get(dep) for dep in job["deps"] if state_of.get(dep) != "completed"
            }
            status.held.append(Held(job["id"], job["name"], waiting, job["awaits"]))
    return status


def workflow_status(queries: Queries, workflow_id: str) -> Work[Status]:
    """Every job of the workflow, counts by state, and what holds its held jobs."""

    def program(own: bool) -> Program[Status]:
        rows = yield Statement(queries["workflow_jobs"], {"workflow_id": workflow_id}, dicts=True)
        return _status(workflow_id, rows)

    return Work(program)


def decode_result(recorded: str | None) -> Any:
    """A recorded result (``meta.return``: Base64 of the Erlang term), or None."""
    if recorded is None:
        return None
    try:
        return terms.decode_recorded(recorded)
    except (terms.TermError, binascii.Error, ValueError):
        return None


def workflow_results(
    queries: Queries, workflow_id: str, names: Sequence[str]
) -> Work[dict[str, Any]]:
    """``{name: result}`` of the named jobs that completed, results decoded (None when a job
    recorded nothing). A dependency that was deleted or did not complete is left out."""

    def program(own: bool) -> Program[dict[str, Any]]:
        params = {"workflow_id": workflow_id, "names": list(names)}
        rows = yield Statement(queries["workflow_results"], params)
        return {
            name: decode_result(recorded) for name, state, recorded in rows if state == "completed"
        }

    return Work(program)


def cancel_workflow(queries: Queries, workflow_id: str) -> Work[int]:
    """Cancel every unfinished job of the workflow (executing ones are told to stop); how many."""

    def program(own: bool) -> Program[int]:
        params = {"workflow_id": workflow_id, "channel": channel(queries.prefix, "signal")}
        rows = yield Statement(queries["workflow_cancel"], params)
        return len(rows)

    return Work(program)


def job_deps(job: Job) -> tuple[str | None, list[str]]:
    """The workflow id and dependency names in a job's meta (None, [] outside a workflow)."""
    meta = job.meta
    workflow_id = meta.get("workflow_id")
    deps = meta.get("deps")
    if not isinstance(workflow_id, str):
        return None, []
    return workflow_id, [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []


def send_message(queries: Queries, workflow_id: str, name: str, payload: Any) -> Work[int]:
    """Deliver message ``name`` with ``payload`` (JSON) to the workflow's held jobs waiting for
    it, kept until they run; wakes the releasers on commit. How many jobs got it."""

    def program(own: bool) -> Program[int]:
        params = {
            "workflow_id": workflow_id,
            "name": name,
            "payload": jsonb.dumps_str(payload),
            "channel": channel(queries.prefix, "workflow"),
            "wake": jsonb.dumps_str({"workflow_id": workflow_id}),
        }
        rows = yield Statement(queries["workflow_message"], params)
        return len(rows)

    return Work(program)


def message_of(job: Job) -> Any:
    """The payload of the message ``job`` waited for (None when it waits for none)."""
    received = job.meta.get("message")
    return received.get("payload") if isinstance(received, Mapping) else None


def retry_workflow(queries: Queries, workflow_id: str) -> Work[int]:
    """Retry the workflow's cancelled and discarded jobs (``sql/workflow_retry.sql``): those
    that ran become available, those failed while held are held again. How many."""

    def program(own: bool) -> Program[int]:
        params = {
            "workflow_id": workflow_id,
            "insert_channel": channel(queries.prefix, "insert"),
            "workflow_channel": channel(queries.prefix, "workflow"),
            "wake": jsonb.dumps_str({"workflow_id": workflow_id}),
        }
        rows = yield Statement(queries["workflow_retry"], params)
        return len(rows)

    return Work(program)
