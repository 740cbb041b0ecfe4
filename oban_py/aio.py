"""Waiting on the event loop without losing a cancellation, starting a task at once, and
telling where a task waits.

``asyncio.wait_for`` on Python 3.11 returns normally when a cancellation arrives just as what it
waits for completes (CPython gh-86296): the cancel is swallowed, and a duty or producer being
stopped goes on looping while its stopper waits for it for ever. ``asyncio.timeout`` has no
such race, so every timed wait of the runtime goes through it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set, at most ``timeout`` seconds; True when it was set."""
    if event.is_set():
        # What the wait below does too, without arming a timer: a producer whose jobs all
        # ended inside its fetch (eager tasks) finds its event set at every turn.
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


if sys.version_info >= (3, 12):

    def start_task(coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """A task whose first step runs now, up to its first real suspension (an eager task,
        Python 3.12+): a job that never waits ends here, never scheduled on the loop, which
        saves the scheduling and the wake-ups a task costs. The returned task may be done."""
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)

else:

    def start_task(coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """A task started at the loop's next iteration (Python 3.11 has no eager tasks)."""
        return asyncio.create_task(coro)


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` is suspended: one ``file:line in function`` per coroutine, from the
    task's own down to the innermost ``await``, into the tasks it awaits, ending with what it
    awaits when that is not a coroutine (a future, a gather). ``Task.get_stack`` shows only
    the outermost frame of a suspended task, which says nothing of what holds it."""
    where: list[str] = []
    seen: set[int] = set()
    step: Any = task.get_coro()
    while step is not None and id(step) not in seen:
        seen.add(id(step))
        if isinstance(step, asyncio.Task):
            step = step.get_coro()
            continue
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is None:
            where.append(repr(step)[:200])
            break
        code = frame.f_code
        where.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return where
