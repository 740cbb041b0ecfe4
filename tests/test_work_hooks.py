"""Work hooks wrap every attempt's ``process`` where the worker's code runs: ``around_thread``
in the pool thread of a sync worker, ``around_task`` in the task of an async one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from oban_py import Job, Worker
from oban_py.hooks import add_work_hook, remove_work_hook
from oban_py.testing import perform_job

seen: list[tuple[str, object]] = []


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on

    @contextmanager
    def around_thread(self, job: Job) -> Iterator[None]:
        seen.append(("thread-enter", threading.get_ident()))
        if self.fail_on == "enter":
            raise RuntimeError("hook refused the job")
        yield
        seen.append(("thread-exit", threading.get_ident()))
        if self.fail_on == "exit":
            raise RuntimeError("hook broke after the job")

    @asynccontextmanager
    async def around_task(self, job: Job) -> AsyncIterator[None]:
        seen.append(("task-enter", asyncio.current_task()))
        yield
        seen.append(("task-exit", asyncio.current_task()))


class SyncHooked(Worker):
    name = "Py.WorkHooks.Sync"

    def process(self, job: Job) -> None:
        seen.append(("process", threading.get_ident()))


class AsyncHooked(Worker):
    name = "Py.WorkHooks.Async"

    async def process(self, job: Job) -> None:
        seen.append(("process", asyncio.current_task()))


@pytest.fixture
def hook() -> Iterator[Recorder]:
    seen.clear()
    recorder = Recorder()
    add_work_hook("test.recorder", recorder)
    yield recorder
    remove_work_hook("test.recorder")


async def test_a_sync_worker_runs_inside_around_thread_in_its_own_thread(hook: Recorder) -> None:
    assert (await perform_job(SyncHooked)).state == "completed"
    assert [kind for kind, _ in seen] == ["thread-enter", "process", "thread-exit"]
    assert len({where for _, where in seen}) == 1
    assert seen[0][1] != threading.get_ident()


async def test_an_async_worker_runs_inside_around_task_in_its_task(hook: Recorder) -> None:
    assert (await perform_job(AsyncHooked)).state == "completed"
    assert [kind for kind, _ in seen] == ["task-enter", "process", "task-exit"]
    assert len({id(where) for _, where in seen}) == 1


@pytest.mark.parametrize("fail_on", ["enter", "exit"])
async def test_a_hook_that_raises_fails_the_attempt(hook: Recorder, fail_on: str) -> None:
    hook.fail_on = fail_on
    outcome = await perform_job(SyncHooked, safe=True)
    assert outcome.state == "retryable"
    assert "hook" in (outcome.error or "")
    assert ("process" in [kind for kind, _ in seen]) == (fail_on == "exit")


async def test_without_hooks_nothing_wraps_the_job() -> None:
    seen.clear()
    assert (await perform_job(SyncHooked)).state == "completed"
    assert [kind for kind, _ in seen] == ["process"]
