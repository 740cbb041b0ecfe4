"""Workflows: jobs that depend on jobs (docs/workflows.md).

- ``Workflow`` builds one (``add``, ``fan_out``, ``chain``), checks it and inserts it
  (``enqueue`` / ``enqueue_sync``); ``Workflow.append(id)`` adds jobs to a running one.
- ``results(job)``: the recorded results of a job's dependencies, inside its ``process``.
- ``status``, ``cancel``: a workflow at a glance, and cancelling all of it.
- ``Releaser``: the node's duty that releases held jobs (started by every ``Oban`` node).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from oban_py.client.core import AnyConnection, Client, get_instance
from oban_py.job.model import Job
from oban_py.workflows.graph import (
    CHANNEL,
    META_KEYS,
    POLICIES,
    Policy,
    Workflow,
    WorkflowError,
)
from oban_py.workflows.releaser import Released, Releaser, release, sweep
from oban_py.workflows.work import (
    Held,
    Status,
    cancel_workflow,
    job_deps,
    message_of,
    retry_workflow,
    send_message,
    workflow_results,
    workflow_status,
)

__all__ = [
    "CHANNEL",
    "META_KEYS",
    "POLICIES",
    "Held",
    "Policy",
    "Released",
    "Releaser",
    "Status",
    "Workflow",
    "WorkflowError",
    "cancel",
    "cancel_sync",
    "message",
    "release",
    "results",
    "results_sync",
    "retry",
    "retry_sync",
    "send",
    "send_sync",
    "status",
    "status_sync",
    "sweep",
]


def _client(oban: Client | None) -> Client:
    return oban if oban is not None else get_instance()


def _names(job: Job, names: Sequence[str] | None) -> tuple[str, list[str]]:
    workflow_id, deps = job_deps(job)
    if workflow_id is None:
        raise WorkflowError(f"job {job.id} is not part of a workflow (no meta.workflow_id)")
    return workflow_id, list(names) if names is not None else deps


async def results(
    job: Job,
    names: Sequence[str] | None = None,
    *,
    oban: Client | None = None,
    conn: AnyConnection | None = None,
) -> dict[str, Any]:
    """``{dependency name: recorded result}`` of ``job``'s dependencies (or of the steps
    ``names`` of its workflow) that completed; a step that recorded nothing maps to None, a
    deleted or unfinished one is absent."""
    client = _client(oban)
    workflow_id, wanted = _names(job, names)
    return await client.run_work(workflow_results(client.queries, workflow_id, wanted), conn)


def results_sync(
    job: Job,
    names: Sequence[str] | None = None,
    *,
    oban: Client | None = None,
    conn: psycopg.Connection[Any] | None = None,
) -> dict[str, Any]:
    """``results`` from sync code (a ``def process``)."""
    client = _client(oban)
    workflow_id, wanted = _names(job, names)
    return client.run_work_sync(workflow_results(client.queries, workflow_id, wanted), conn)


async def status(
    workflow_id: str, *, oban: Client | None = None, conn: AnyConnection | None = None
) -> Status:
    """Every job of the workflow, counts by state, and which held jobs wait for what."""
    client = _client(oban)
    return await client.run_work(workflow_status(client.queries, workflow_id), conn)


def status_sync(
    workflow_id: str, *, oban: Client | None = None, conn: psycopg.Connection[Any] | None = None
) -> Status:
    """``status`` from sync code."""
    client = _client(oban)
    return client.run_work_sync(workflow_status(client.queries, workflow_id), conn)


async def cancel(
    workflow_id: str, *, oban: Client | None = None, conn: AnyConnection | None = None
) -> int:
    """Cancel every unfinished job of the workflow: held, waiting and retrying ones become
    ``cancelled``, executing ones are cancelled and killed on their node. How many."""
    client = _client(oban)
    return await client.run_work(cancel_workflow(client.queries, workflow_id), conn)


def cancel_sync(
    workflow_id: str, *, oban: Client | None = None, conn: psycopg.Connection[Any] | None = None
) -> int:
    """``cancel`` from sync code."""
    client = _client(oban)
    return client.run_work_sync(cancel_workflow(client.queries, workflow_id), conn)


def message(job: Job) -> Any:
    """Inside a step added with ``wait_for=``: the payload of the message that released it."""
    return message_of(job)


async def send(
    workflow_id: str,
    name: str,
    payload: Any = None,
    *,
    oban: Client | None = None,
    conn: AnyConnection | None = None,
) -> int:
    """Send message ``name`` (JSON ``payload``) to the workflow: its held steps added with
    ``wait_for=name`` keep it and run once their dependencies completed too. How many steps
    got it (0: none waits for it, or they already left the held state)."""
    client = _client(oban)
    return await client.run_work(send_message(client.queries, workflow_id, name, payload), conn)


def send_sync(
    workflow_id: str,
    name: str,
    payload: Any = None,
    *,
    oban: Client | None = None,
    conn: psycopg.Connection[Any] | None = None,
) -> int:
    """``send`` from sync code."""
    client = _client(oban)
    return client.run_work_sync(send_message(client.queries, workflow_id, name, payload), conn)


async def retry(
    workflow_id: str, *, oban: Client | None = None, conn: AnyConnection | None = None
) -> int:
    """Retry the workflow's failed jobs: cancelled or discarded ones that ran become available
    (one more attempt), those failed, timed out or cancelled while held are held again and
    released once their dependencies complete and their message comes (the timeout starts
    over). How many."""
    client = _client(oban)
    return await client.run_work(retry_workflow(client.queries, workflow_id), conn)


def retry_sync(
    workflow_id: str, *, oban: Client | None = None, conn: psycopg.Connection[Any] | None = None
) -> int:
    """``retry`` from sync code."""
    client = _client(oban)
    return client.run_work_sync(retry_workflow(client.queries, workflow_id), conn)
