"""Insert hooks: let an integration amend a job just before it is written.

A hook is ``hook(job) -> job``; it returns the job to write (usually a copy with more ``meta``,
such as a trace context). Hooks run in the inserting task or thread, in the order they were
added, for every job written by ``Client.enqueue``/``enqueue_many`` and ``insert_sync``, whatever
connection carries the insert. Elixir ignores ``meta`` keys it does not know, so extra keys are
safe on a shared table. A hook that raises fails the insert: a broken hook must not silently
write jobs without what it was meant to add.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from oban_py.job import Job

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
