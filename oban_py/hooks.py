"""Insert hooks amend a job just before it is written; work hooks wrap each job's ``process``.

A hook is ``hook(job) -> job``; it returns the job to write (usually a copy with more ``meta``,
such as a trace context). Hooks run in the inserting task or thread, in the order they were
added, for every job written by ``Client.enqueue``/``enqueue_many`` or their ``*_sync`` twins,
whatever
connection carries the insert. Elixir ignores ``meta`` keys it does not know, so extra keys are
safe on a shared table. A hook that raises fails the insert: a broken hook must not silently
write jobs without what it was meant to add.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol

from oban_py.job.model import Job

InsertHook = Callable[[Job], Job]

_hooks: dict[str, InsertHook] = {}


def add_insert_hook(hook_id: str, hook: InsertHook) -> None:
    """Run ``hook(job) -> job`` on every job before insert; re-adding an id replaces the hook."""
    _hooks[hook_id] = hook


def remove_insert_hook(hook_id: str) -> bool:
    """Remove a hook; True when it was there."""
    return _hooks.pop(hook_id, None) is not None


def apply_insert_hooks(jobs: Sequence[Job]) -> Sequence[Job]:
    """The jobs as the hooks amend them (the same sequence when there is no hook)."""
    if not _hooks:
        return jobs
    hooks = list(_hooks.values())
    amended = []
    for job in jobs:
        for hook in hooks:
            job = hook(job)
        amended.append(job)
    return amended


# -- work hooks ---------------------------------------------------------------------------------


class WorkHook(Protocol):
    """Wraps every attempt's ``process`` call where the worker's own code runs.

    ``around_thread`` is entered in the pool thread that runs a plain ``def process`` (thread
    state such as Django's connections is that thread's); ``around_task`` in the task of an
    ``async def process``. Exactly one of the two wraps a given attempt. A hook that raises on
    entry fails the attempt like a worker error; one that raises on exit after a successful
    ``process`` fails it too, so a hook guarding a resource never hides that it broke.
    """

    def around_thread(self, job: Job) -> AbstractContextManager[object]: ...

    def around_task(self, job: Job) -> AbstractAsyncContextManager[object]: ...


_work_hooks: dict[str, WorkHook] = {}


def add_work_hook(hook_id: str, hook: WorkHook) -> None:
    """Wrap every attempt's ``process`` with ``hook``; re-adding an id replaces the hook."""
    _work_hooks[hook_id] = hook


def remove_work_hook(hook_id: str) -> bool:
    """Remove a work hook; True when it was there."""
    return _work_hooks.pop(hook_id, None) is not None


def work_hooks() -> tuple[WorkHook, ...]:
    """The work hooks in the order they were added (outermost first)."""
    return tuple(_work_hooks.values())
