"""A ``django.tasks`` backend (Django 6+): ``@task`` functions become ordinary ``oban_jobs`` rows,
run by ``manage.py oban start`` like any job, their results read back from the row.

    TASKS = {"default": {"BACKEND": "oban_py_ext.django.tasks.ObanTaskBackend"}}

The row of a task:

- ``worker`` is the task's path (``orders.tasks.send_receipt``): the backend registers a worker
  under that name for every task it validates, and a node that has not imported the module
  imports it when the first such job arrives;
- ``args`` is ``{"args": [...], "kwargs": {...}}`` (JSON, as Django's ``normalize_json`` makes
  them); ``queue`` the task's ``queue_name``; ``scheduled_at`` its ``run_after``;
- ``priority``: Django's -100..100 (higher runs first) in ten bands of about twenty onto
  Oban's 0..9 (0 runs first): 80..100 → 0, 60..79 → 1, ... 0..19 → 4, -20..-1 → 5, ...
  -100..-81 → 9 (``oban_priority``). Django's priority itself is kept in ``meta.django``;
- ``max_attempts`` is ``OPTIONS["max_attempts"]`` (Oban's 20 by default; 1 runs a task once, as
  Django's reference backends do): a task that raises is retried with Oban's backoff.

What comes back (``get_result``, ``TaskResult.refresh``) is read from the row:

- ``status``: available/scheduled/retryable → READY, executing → RUNNING, completed →
  SUCCESSFUL, discarded/cancelled → FAILED;
- ``return_value``: the function's result, JSON-normalized, recorded as Oban Pro records
  results (``Record``: ``meta.recorded`` and ``meta.return``, an Erlang term in Base64, at most
  32 KiB compressed, so Oban Web shows it too); ``None`` is not recorded, and a larger value
  cancels the job (FAILED, the reason in its errors) rather than retry it;
- ``errors``: one ``TaskError`` per ``errors`` entry, its ``traceback`` the entry's text and its
  ``exception_class_path`` read from the entry's ``** (module.Class)`` head;
- ``enqueued_at`` is ``inserted_at``; ``started_at`` and ``last_attempted_at`` are the latest
  attempt's ``attempted_at`` (the row keeps no earlier one); ``finished_at`` is when it
  completed, was discarded or cancelled;
- ``worker_ids`` has one entry per attempt (Django counts ``attempts`` as its length), each the
  node of the latest attempt (``attempted_by``), the only one the row keeps.

``takes_context`` tasks get an ``ObanTaskContext``: ``context.attempt`` (1 on the first run) and
``context.job``, the ``oban_py.Job`` being run.

Enqueueing goes through ``oban_py_ext.django.enqueue``: inside ``atomic()`` on the jobs'
database the row joins the transaction (a rollback leaves no job), and ``task_enqueued`` is sent
when it commits. Inside an ``atomic()`` block of *another* database the backend refuses
(``TransactionManagementError``): the row would commit before the caller's, and a deferred
insert has no id to return; enqueue after the commit with
``transaction.on_commit(partial(task.enqueue, ...), using=...)``, as Django's documentation
recommends.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TASK_MAX_PRIORITY, TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string
from psycopg.rows import dict_row

from oban_py import Cancel, Job, Record, Worker
from oban_py.job import terms
from oban_py.job.model import JOB_DEFAULTS
from oban_py.sql import Queries
from oban_py_ext.django import conf, enqueue, holding_database, raw_connection
from oban_py_ext.django.inserts import decoded_row

__all__ = ["ObanTaskBackend", "ObanTaskContext", "oban_priority"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
if TYPE_CHECKING:  # django-stubs makes these generic; Django's classes are not subscriptable
    AnyTask = Task[..., Any]
    AnyResult = TaskResult[..., Any]
    _Context = TaskContext[..., Any]
else:
    _Context = TaskContext

#: Where the Django side of a task row lives in its ``meta``.
META_KEY = "django"

_STATUS = {
    "available": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "retryable": TaskResultStatus.READY,
    "suspended": TaskResultStatus.READY,
    "executing": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "discarded": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}

#: ``** (module.Class) message``, and the wrapped exception of ``** (Oban.CrashError) ** (X)``.
_HEAD = re.compile(r"\*\* \(([^)\s]+)\)(?: \*\* \(([^)\s]+)\))?")


def oban_priority(priority: int) -> int:
    """Django's priority (-100..100, higher first) as Oban's (0..9, 0 first): ten bands."""
    return min(9, (TASK_MAX_PRIORITY - priority) * 10 // 201)


# Frozen at run time as Django's TaskContext is (its stub says otherwise).
@dataclass(frozen=True, slots=True, kw_only=True)
class ObanTaskContext(_Context):  # type: ignore[misc]
    """Django's ``TaskContext`` (``attempt``, ``task_result``) and the job being run."""

    job: Job


class ObanTaskBackend(BaseTaskBackend):
    """``TASKS[alias]["OPTIONS"]``: ``max_attempts`` (20) and ``database`` (the alias jobs are
    enqueued on and read from, ``OBAN["database"]`` by default)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.max_attempts = int(self.options.get("max_attempts", JOB_DEFAULTS["max_attempts"]))
        Job(worker="Django.Task", max_attempts=self.max_attempts)  # refuse a bad one at once
        self._database: str | None = self.options.get("database")

    @property
    def database(self) -> str:
        return self._database or conf.database()

    def validate_task(self, task: AnyTask) -> None:
        super().validate_task(task)
        # Every Task of this backend is validated when @task (or .using) builds it: the node
        # then has a worker for its rows as soon as the module is imported.
        register_worker(task)

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(
        self, task: Task[_P, _R], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[_P, _R]:
        self.validate_task(task)
        alias = self.database
        holder = holding_database(alias)
        if holder is not None and holder != alias:
            raise transaction.TransactionManagementError(
                f"{task.module_path}.enqueue() inside an atomic() block of {holder!r}, but tasks"
                f" go to {alias!r}: the job would commit before (and outlive a rollback of) the"
                f" block. Enqueue it after the commit: transaction.on_commit(partial("
                f"{task.name}.enqueue, ...), using={holder!r}), or inside"
                f" transaction.atomic(using={alias!r})."
            )
        job = enqueue(self._job(task, args, kwargs), using=alias)
        result: TaskResult[_P, _R] = task_result(task, job, self.alias)
        transaction.on_commit(
            functools.partial(task_enqueued.send, type(self), task_result=result), using=alias
        )
        return result

    def _job(self, task: AnyTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Job:
        meta: dict[str, Any] = {"backend": self.alias, "priority": task.priority}
        scheduled_at = None
        if task.run_after is not None:
            scheduled_at = task.run_after
            if timezone.is_naive(scheduled_at):
                scheduled_at = timezone.make_aware(scheduled_at)
            meta["run_after"] = scheduled_at.isoformat()
        return Job(
            worker=task.module_path,
            queue=task.queue_name,
            priority=oban_priority(task.priority),
            max_attempts=self.max_attempts,
            args={"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))},
            meta={META_KEY: meta},
            scheduled_at=scheduled_at,
        )

    # -- results ---------------------------------------------------------------------------

    def get_result(self, result_id: str) -> AnyResult:
        try:
            job_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        with raw_connection(self.database).cursor(row_factory=dict_row) as cur:
            cur.execute(Queries(conf.prefix())["job_get"], {"id": job_id})
            row = cur.fetchone()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        job = Job.from_row(decoded_row(row))
        found = _task_at(job.worker)
        if found is None:
            # A job of some other worker is no task result.
            raise TaskResultDoesNotExist(result_id)
        django = job.meta.get(META_KEY) or {}
        run_after = django.get("run_after")
        task = found.using(
            priority=django.get("priority"),
            queue_name=job.queue,
            run_after=datetime.fromisoformat(run_after) if run_after else None,
            backend=self.alias,
        )
        return task_result(task, job, self.alias)


def task_result(task: Task[_P, _R], job: Job, backend: str) -> TaskResult[_P, _R]:
    """The ``TaskResult`` of ``task`` as ``job`` (a row) says."""
    status = _STATUS.get(job.state, TaskResultStatus.READY)
    finished = job.completed_at or job.discarded_at or job.cancelled_at
    node = (job.attempted_by or ["unknown"])[0]
    result: TaskResult[_P, _R] = TaskResult(
        task=task,
        id=str(job.id) if job.id is not None else "",
        status=status,
        enqueued_at=_local(job.inserted_at),
        started_at=_local(job.attempted_at),
        finished_at=_local(finished) if status in _FINAL else None,
        last_attempted_at=_local(job.attempted_at),
        args=list(job.args.get("args", [])),
        kwargs=dict(job.args.get("kwargs", {})),
        backend=backend,
        errors=[_task_error(entry) for entry in job.errors],
        worker_ids=[node] * job.attempt,
    )
    if status == TaskResultStatus.SUCCESSFUL and job.meta.get("recorded"):
        object.__setattr__(result, "_return_value", terms.decode_recorded(job.meta["return"]))
    return result


_FINAL = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


def _local(value: datetime | None) -> datetime | None:
    if value is None or settings.USE_TZ:
        return value
    return timezone.make_naive(value)


def _task_error(entry: Mapping[str, Any]) -> TaskError:
    text = str(entry.get("error", ""))
    match = _HEAD.match(text)
    name = (match.group(2) or match.group(1)) if match else "Exception"
    # Python's builtins are written bare, as Elixir writes its own exceptions.
    path = name if "." in name else f"builtins.{name}"
    return TaskError(exception_class_path=path, traceback=text)


def _task_at(path: str) -> AnyTask | None:
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


# -- running tasks: one worker per task --------------------------------------------------------


#: The worker built for each task function: ``.using()`` and every enqueue validate the task again.
_WORKERS: dict[tuple[str, Any, bool], type[Worker]] = {}


def register_worker(task: AnyTask) -> type[Worker]:
    """The worker that runs ``task``'s rows, registered under its path (sync tasks run in the
    node's thread pool, async ones on its loop)."""
    key = (task.module_path, task.func, task.takes_context)
    if (built := _WORKERS.get(key)) is None or resolve(task.module_path) is not built:
        built = _WORKERS[key] = _build_worker(task)
    return built


def _build_worker(task: AnyTask) -> type[Worker]:
    func: Callable[..., Any] = task.func
    takes_context = task.takes_context
    path = task.module_path

    def _call_args(job: Job) -> tuple[list[Any], dict[str, Any]]:
        args = list(job.args.get("args", []))
        if takes_context:
            running = task_result(task, job, task.backend)
            args.insert(0, ObanTaskContext(task_result=running, job=job))
        return args, dict(job.args.get("kwargs", {}))

    # Django's task_started and task_finished are sent around every attempt (its logging and
    # any receiver of the project's see them); the result is what the row will say.
    if inspect.iscoroutinefunction(func):

        async def process(self: Worker, job: Job) -> Any:
            args, kwargs = _call_args(job)
            running = _started(task, job)
            try:
                value = _recorded(await func(*args, **kwargs))
            except BaseException:
                _finished(running, TaskResultStatus.FAILED)
                raise
            _finished(running, TaskResultStatus.SUCCESSFUL)
            return value

    else:

        def process(self: Worker, job: Job) -> Any:  # type: ignore[misc]
            args, kwargs = _call_args(job)
            running = _started(task, job)
            try:
                value = _recorded(func(*args, **kwargs))
            except BaseException:
                _finished(running, TaskResultStatus.FAILED)
                raise
            _finished(running, TaskResultStatus.SUCCESSFUL)
            return value

    namespace = {
        "process": process,
        "name": path,
        "__module__": func.__module__,
        "__qualname__": f"{func.__qualname__}.worker",
        "__doc__": func.__doc__,
    }
    built: type[Worker] = type(func.__name__, (Worker,), namespace)
    return built


def resolve(name: str) -> type[Worker] | None:
    from oban_py.worker import registered

    return registered().get(name)


def _recorded(value: Any) -> Any:
    """What the worker returns for the task's ``value``: ``Record`` of it, or ``Cancel`` when
    it is too large to record, so the task fails once, with the reason, instead of running
    again on every retry for a value that will never fit."""
    value = normalize_json(value)
    if value is None:
        return None
    try:
        terms.encode_recorded(value)
    except terms.RecordTooLarge as error:
        return Cancel(f"the return value cannot be recorded: {error}")
    return Record(value)


def _started(task: AnyTask, job: Job) -> AnyResult:
    running = task_result(task, job, task.backend)
    object.__setattr__(running, "status", TaskResultStatus.RUNNING)
    task_started.send(ObanTaskBackend, task_result=running)
    return running


def _finished(running: AnyResult, status: TaskResultStatus) -> None:
    object.__setattr__(running, "status", status)
    object.__setattr__(running, "finished_at", timezone.now())
    task_finished.send(ObanTaskBackend, task_result=running)
