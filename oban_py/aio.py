"""Waiting on the event loop without losing a cancellation, starting a task at once, telling
where a task waits, and giving up on work that waits on a silent network.

``asyncio.wait_for`` on Python 3.11 returns normally when a cancellation arrives just as what it
waits for completes (CPython gh-86296): the cancel is swallowed, and a duty or producer being
stopped goes on looping while its stopper waits for it for ever. ``asyncio.timeout`` has no
such race, so every timed wait of the runtime goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, TypeVar

_T = TypeVar("_T")

#: What work whose sockets were shut down may still take to end once cancelled: psycopg's own
#: bound on a cancelled statement (5 s for the cancel request, 5 s for the query to end).
ABANDON_WITHIN = 11.0
#: How often work being abandoned is cancelled again while it has not ended.
RECANCEL_EVERY = 0.1


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


def sever(fileno: int) -> None:
    """Shut down the socket ``fileno`` both ways, leaving the descriptor to its owner: a read
    waiting on it returns end-of-file at once (psycopg raises ``OperationalError``, and a pool
    discards the connection), where a cancelled statement would first send a cancel request and
    wait for the query to end, for ever on a silent network."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fileno))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def sever_all(conns: Iterable[Any]) -> int:
    """``sever`` the socket of each psycopg connection in ``conns`` still open; how many."""
    severed = 0
    for conn in list(conns):
        with contextlib.suppress(Exception):  # closed already: no socket
            sever(conn.pgconn.socket)
            severed += 1
    return severed


class InUse:
    """The connections some work waits on now: what ``sever`` shuts down when that work is
    given up (``within``, ``abandon``)."""

    __slots__ = ("_conns",)

    def __init__(self) -> None:
        self._conns: set[Any] = set()

    @contextlib.asynccontextmanager
    async def connection(self, pool: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """A connection of ``pool`` (``pool.connection(**kwargs)``), waited on while the block
        runs."""
        async with pool.connection(**kwargs) as conn:
            self._conns.add(conn)
            try:
                yield conn
            finally:
                self._conns.discard(conn)

    def sever(self) -> int:
        """``sever_all`` of the connections waited on now; how many."""
        return sever_all(self._conns)


async def within(seconds: float, work: Coroutine[Any, Any, _T], severs: Callable[[], int]) -> _T:
    """``work``'s result if it ends within ``seconds``; else ``severs()`` shuts down the
    sockets it waits on, it is cancelled, and ``TimeoutError`` is raised once it ended (or
    after ``ABANDON_WITHIN``, when it is left behind): a bound that holds on a silent network,
    where a plain timeout's cancellation waits for the server like the statement did."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait([task], timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    await abandon(task, severs)
    raise TimeoutError


async def abandon(task: asyncio.Future[Any], severs: Callable[[], int]) -> None:
    """Cancel ``task`` after ``severs()`` shut down the sockets it may wait on (it returns
    how many), and wait until it ended (at most ``ABANDON_WITHIN``; then it is left behind),
    whatever it raised."""
    if not task.done():
        if severs():
            # The read waiting on a severed socket fails at the loop's next turn, with no
            # cancel request: cancel only after it has (what then waits is a backoff or the
            # pool).
            await asyncio.wait([task], timeout=0.1)
        # Cancelled again until it ends: a cancellation can be swallowed on the way (a
        # ``wait_for`` racing its result on Python 3.11, gh-86296, in psycopg_pool's getconn),
        # and the task then sleeps through its backoff or retries.
        deadline = asyncio.get_running_loop().time() + ABANDON_WITHIN
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            task.cancel()
            await asyncio.wait([task], timeout=RECANCEL_EVERY)
    if task.done():
        with contextlib.suppress(BaseException):
            task.result()
    else:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
