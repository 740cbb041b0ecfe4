"""The workflow builder: named jobs and their dependencies, checked before anything is inserted.

Nothing here touches a connection. ``Workflow.jobs()`` turns the graph into the rows to insert:
a job without dependencies goes in as built (``available``, or ``scheduled``), a job with some
goes in held (``suspended``) with the workflow's data in its meta (the keys are listed in
``META_KEYS`` and docs/workflows.md).
"""

from __future__ import annotations

import graphlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import psycopg

from oban_py import telemetry
from oban_py.client.core import AnyConnection, Client, get_instance
from oban_py.insert.planner import insert_plan
from oban_py.insert.statements import Program, Statement, Work
from oban_py.job.model import Job
from oban_py.notifier import channel, encode
from oban_py.sql import Queries

T = TypeVar("T")

#: The channel on which releasers are woken: ``<prefix>.oban_workflow``. Elixir nodes listen
#: to no such channel, so its messages never reach them.
CHANNEL = "workflow"

#: What a job does when one of its dependencies ends cancelled, discarded or deleted:
#: ``cancel`` it (and so the rest downstream, the default), ``discard`` it, or ``run`` it anyway.
Policy = Literal["cancel", "discard", "run"]
POLICIES: tuple[str, ...] = ("cancel", "discard", "run")

#: The meta keys of a workflow job. Oban Pro's public docs name workflow_id, name, deps and the
#: three ignore_* options; on_failure, delay and workflow_name are oban_py's.
META_KEYS = (
    "workflow_id",
    "workflow_name",
    "name",
    "deps",
    "ignore_cancelled",
    "ignore_discarded",
    "ignore_deleted",
    "on_failure",
    "delay",
    "wait_message",
    "message",
    "wait_until",
    "wait_timeout",
    "on_timeout",
)


class WorkflowError(ValueError):
    """A workflow that cannot be inserted: a duplicate or bad name, an unknown dependency, a
    cycle, a bad policy. Raised before any statement is sent."""


@dataclass(slots=True)
class Step:
    """One named job of a workflow and what it waits for."""

    name: str
    job: Job
    deps: tuple[str, ...]
    policy: Policy = "cancel"
    ignore_deleted: bool = False
    delay: float | None = None
    message: str | None = None
    timeout: float | None = None
    on_timeout: Policy = "cancel"


def _seconds(value: object, what: str) -> float | None:
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    # Infinity would be stored as JSON null, and read as no wait at all.
    if not 0 <= seconds < math.inf:
        raise WorkflowError(
            f"{what} must be a finite, non-negative number of seconds or a timedelta, got {value!r}"
        )
    return seconds


def _check_name(name: object, what: str) -> str:
    # PostgreSQL's text and jsonb hold neither NUL nor a lone surrogate: refused here rather
    # than by the database halfway through an insert.
    if isinstance(name, str) and name and "\x00" not in name:
        try:
            name.encode()
        except UnicodeEncodeError:
            pass
        else:
            return name
    raise WorkflowError(
        f"{what} must be a non-empty string without NUL or lone surrogates, got {name!r}"
    )


def _check_id(workflow_id: object) -> str:
    if isinstance(workflow_id, uuid.UUID):
        return str(workflow_id)
    try:
        return _check_name(workflow_id, "workflow_id")
    except WorkflowError:
        raise WorkflowError(
            "workflow_id must be a non-empty string without NUL or lone surrogates, or a"
            f" uuid.UUID, got {workflow_id!r}"
        ) from None


@dataclass
class Workflow:
    """Jobs that depend on jobs.

    ``Workflow().add("a", A.new()).add("b", B.new(), deps=["a"])``, then
    ``await wf.enqueue()`` (or ``wf.enqueue_sync()``), optionally on the caller's connection.
    ``Workflow.append(workflow_id)`` adds jobs to a workflow that already runs; their
    dependencies may name its existing jobs.
    """

    #: A string (a ``uuid.UUID`` is taken as its string); a new UUID4 when None.
    workflow_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str | None = None
    steps: dict[str, Step] = field(default_factory=dict)
    #: True for ``Workflow.append``: names may refer to jobs already inserted.
    appending: bool = False

    def __post_init__(self) -> None:
        # Releasing finds a workflow's jobs by its id as JSON text: an id stored as a number,
        # null or "" would leave its held jobs unreleased, or fail them.
        if self.workflow_id is None:  # documented as the default: a new id
            self.workflow_id = str(uuid.uuid4())
        self.workflow_id = _check_id(self.workflow_id)
        if self.name is not None:
            _check_name(self.name, "a workflow name")

    @classmethod
    def append(cls, workflow_id: str | uuid.UUID) -> Workflow:
        """A builder of jobs to add to the running workflow ``workflow_id``."""
        return cls(workflow_id=_check_id(workflow_id), appending=True)

    # -- building ------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        job: Job,
        deps: str | Iterable[str] = (),
        *,
        on_failure: Policy = "cancel",
        ignore_deleted: bool = False,
        delay: float | timedelta | None = None,
        wait_for: str | None = None,
        timeout: float | timedelta | None = None,
        on_timeout: Policy = "cancel",
    ) -> Workflow:
        """Add ``job`` as step ``name``, run once every step named in ``deps`` completed.

        ``on_failure``: what this job does when a dependency is cancelled or discarded (or
        deleted, unless ``ignore_deleted``): ``cancel`` (default), ``discard`` or ``run``.
        ``delay``: seconds (or a timedelta) to wait after the dependencies completed: a timer.
        ``wait_for``: the name of a message (``send_message``) the job also waits for; one sent
        before its dependencies completed is kept. ``timeout``: seconds from the enqueue after
        which, its dependencies completed and still no message, ``on_timeout`` applies:
        ``cancel`` (default), ``discard``, or ``run`` without the message.
        """
        _check_name(name, "a step name")
        if name in self.steps:
            raise WorkflowError(f"duplicate step name {name!r} in workflow {self.workflow_id}")
        if not isinstance(job, Job):
            raise WorkflowError(f"step {name!r} needs a Job (Worker.new(...)), got {job!r}")
        if job.unique is not None:
            # A unique conflict would return another job in this step's place, and its
            # dependents would wait on a name no row carries.
            raise WorkflowError(f"step {name!r} is a unique job; workflow steps cannot be unique")
        if not isinstance(deps, str | Iterable):
            raise WorkflowError(f"deps of {name!r} must be a step name or names, got {deps!r}")
        names = (deps,) if isinstance(deps, str) else tuple(deps)
        for dep in names:
            _check_name(dep, f"a dependency of {name!r}")
        if len(set(names)) != len(names):
            raise WorkflowError(f"step {name!r} lists a dependency twice: {list(names)}")
        if name in names:
            raise WorkflowError(f"step {name!r} depends on itself")
        if on_failure not in POLICIES:
            raise WorkflowError(f"on_failure must be one of {POLICIES}, got {on_failure!r}")
        if wait_for is not None:
            _check_name(wait_for, f"the message {name!r} waits for")
        elif timeout is not None:
            raise WorkflowError(f"step {name!r} has a timeout but waits for no message")
        if on_timeout not in POLICIES:
            raise WorkflowError(f"on_timeout must be one of {POLICIES}, got {on_timeout!r}")
        if not isinstance(ignore_deleted, bool):
            raise WorkflowError(f"ignore_deleted must be True or False, got {ignore_deleted!r}")
        self.steps[name] = Step(
            name,
            job,
            names,
            on_failure,
            ignore_deleted,
            _seconds(delay, "delay"),
            wait_for,
            _seconds(timeout, "timeout"),
            on_timeout,
        )
        return self

    def fan_out(
        self,
        prefix: str,
        jobs: Iterable[Job],
        deps: str | Iterable[str] = (),
        **options: object,
    ) -> list[str]:
        """Add each of ``jobs`` as ``"<prefix>_<i>"`` after ``deps``; the names, for a fan-in."""
        after = (deps,) if isinstance(deps, str) else tuple(deps)
        names = []
        for i, job in enumerate(jobs):
            name = f"{prefix}_{i}"
            self.add(name, job, after, **options)  # type: ignore[arg-type]
            names.append(name)
        return names

    def chain(self, steps: Iterable[tuple[str, Job]], deps: str | Iterable[str] = ()) -> Workflow:
        """Add ``(name, job)`` pairs each depending on the one before (the first on ``deps``)."""
        after: str | Iterable[str] = deps
        for name, job in steps:
            self.add(name, job, after)
            after = (name,)
        return self

    # -- inserting -----------------------------------------------------------------------------

    async def enqueue(
        self, oban: Client | None = None, conn: AnyConnection | None = None
    ) -> list[Job]:
        """Insert the workflow's jobs (returned in the order added) through ``oban`` (default: the
        instance named "Oban"), on ``conn`` (joining its transaction) or the pool."""
        client = oban if oban is not None else get_instance()
        jobs = await client.run_work(insert_workflow(client.queries, self), conn)
        self._started(jobs)
        return jobs

    def enqueue_sync(
        self, oban: Client | None = None, conn: psycopg.Connection[Any] | None = None
    ) -> list[Job]:
        """``enqueue`` from sync code, on ``conn`` (its transaction) or the sync pool."""
        client = oban if oban is not None else get_instance()
        jobs = client.run_work_sync(insert_workflow(client.queries, self), conn)
        self._started(jobs)
        return jobs

    def _started(self, jobs: list[Job]) -> None:
        telemetry.execute(
            "oban.workflow.start",
            {"count": len(jobs)},
            {
                "workflow_id": self.workflow_id,
                "workflow_name": self.name,
                "append": self.appending,
                "jobs": jobs,
            },
        )

    # -- checking ------------------------------------------------------------------------------

    def validate(self, existing: Iterable[str] = ()) -> list[str]:
        """Check every dependency names a step (or, appending, an ``existing`` job) and the
        graph has no cycle; the step names in an order where dependencies come first."""
        known = set(existing)
        clash = sorted(known & set(self.steps))
        if clash:
            raise WorkflowError(f"workflow {self.workflow_id} already has steps named {clash}")
        for step in self.steps.values():
            unknown = [d for d in step.deps if d not in self.steps and d not in known]
            if unknown:
                where = "the workflow or among its inserted jobs" if self.appending else "it"
                raise WorkflowError(
                    f"step {step.name!r} depends on {unknown}, which are not in {where}"
                )
        sorter = graphlib.TopologicalSorter(
            {s.name: [d for d in s.deps if d in self.steps] for s in self.steps.values()}
        )
        try:
            return list(sorter.static_order())
        except graphlib.CycleError as error:
            cycle = " -> ".join(error.args[1])
            raise WorkflowError(f"workflow {self.workflow_id} has a cycle: {cycle}") from None

    def jobs(self, existing: Iterable[str] = ()) -> list[Job]:
        """The rows to insert, in the order the steps were added, each with its workflow meta;
        validated first. (All go in at once, so their order says nothing about running.)"""
        self.validate(existing)
        return [self._row(step) for step in self.steps.values()]

    def _row(self, step: Step) -> Job:
        meta: dict[str, object] = {
            **step.job.meta,
            "workflow_id": self.workflow_id,
            "name": step.name,
            "deps": list(step.deps),
        }
        if self.name is not None:
            meta["workflow_name"] = self.name
        if step.policy == "run":
            meta["ignore_cancelled"] = meta["ignore_discarded"] = True
        elif step.policy == "discard":
            meta["on_failure"] = "discard"
        if step.ignore_deleted:
            meta["ignore_deleted"] = True
        update: dict[str, object] = {"meta": meta}
        if step.message is not None:
            meta["wait_message"] = step.message
            if step.timeout is not None:
                # Epoch seconds: a number the release statement can read without a cast that
                # could fail.
                meta["wait_until"] = datetime.now(UTC).timestamp() + step.timeout
                # Kept so a retry can start the same wait over.
                meta["wait_timeout"] = step.timeout
                if step.on_timeout != "cancel":
                    meta["on_timeout"] = step.on_timeout
        if step.deps or step.message is not None:
            if step.delay:
                meta["delay"] = step.delay
            update["state"] = "suspended"
        elif step.delay:
            # Nothing to wait for but the timer: scheduled now, as a plain job would be.
            update["scheduled_at"] = _after(step.delay, step.job.scheduled_at)
            update["state"] = "scheduled"
        return step.job.model_copy(update=update)


def _after(seconds: float, scheduled_at: datetime | None) -> datetime:
    due = datetime.now(UTC) + timedelta(seconds=seconds)
    return scheduled_at if scheduled_at is not None and scheduled_at > due else due


def step_names(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The step names among job rows' meta (rows of ``workflow_jobs.sql``)."""
    names = []
    for row in rows:
        meta = row.get("meta")
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
            names.append(str(meta["name"]))
    return names


def drive(work: Work[T], own: bool) -> Program[T]:
    """Run another ``Work`` inside a program (its statements join this one's)."""
    if work.one is not None:
        statement, finish = work.one
        rows = yield statement
        return finish(rows)
    return (yield from work.program(own))


def wake_statement(queries: Queries, workflow_ids: Iterable[str]) -> Statement:
    """NOTIFY the releasers of every node to look at ``workflow_ids`` (sent on commit)."""
    payloads = [encode({"workflow_id": wid}) for wid in sorted(set(workflow_ids))]
    params = {"channel": channel(queries.prefix, CHANNEL), "payloads": payloads}
    return Statement(queries["notify"], params)


def insert_workflow(queries: Queries, workflow: Workflow) -> Work[list[Job]]:
    """Insert a new workflow's jobs, or append jobs to a running one.

    A new workflow is checked here, before any statement, and inserted as one batch (one round
    trip up to ``CHUNK_SIZE`` jobs). An append first takes the workflow's advisory lock until
    its transaction ends (``sql/workflow_lock.sql``), reads the names of the workflow's jobs (its
    dependencies may name them), then inserts, then wakes the releasers: a held job whose
    dependencies all completed already is released by them.
    """
    if not workflow.steps:
        raise WorkflowError(f"workflow {workflow.workflow_id} has no steps to enqueue")
    if not workflow.appending:
        return insert_plan(queries, workflow.jobs())

    def program(own: bool) -> Program[list[Job]]:
        # Two appends of one step name, each reading the names before the other inserted, would
        # both insert it: the lock makes the second read after the first one's commit.
        key = f"oban_py.workflow:{queries.prefix}:{workflow.workflow_id}"
        yield Statement(queries["workflow_lock"], {"key": key})
        found = yield Statement(
            queries["workflow_jobs"], {"workflow_id": workflow.workflow_id}, dicts=True
        )
        if not found:
            raise WorkflowError(f"no workflow {workflow.workflow_id} to append to")
        rows = workflow.jobs(step_names(found))
        inserted = yield from drive(insert_plan(queries, rows), own)
        if any(job.state == "suspended" for job in inserted):
            yield wake_statement(queries, [workflow.workflow_id])
        return inserted

    return Work(program, transaction=True)
