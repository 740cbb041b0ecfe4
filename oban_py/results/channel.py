"""Our own channel, ``<prefix>.oban_py_results``, which no Elixir node listens to or sends on.

Two messages travel on it:

- ``{"done": [id, ...]}``: these jobs reached a final state (completed, discarded, cancelled).
  A node's acker hands the rows each batch really wrote (its ``RETURNING``) to the node's
  ``Announcer``, which announces those in a final state at most every ``DELAY`` seconds in one
  statement, off the acker's path. It goes out after the outcomes are committed, so a waiter
  woken by it always reads the final row; if it is lost, a waiter learns of the outcome at its
  slow re-check.
- ``{"id": id, "progress": {...}}``: a running job's progress report, sent by the statement
  that stores it (``sql/progress_update.sql``).

Elixir nodes announce nothing here, so a wait on a job an Elixir worker runs learns of its end
from the waiter's slow re-check (``oban_py.results.waiter.RECHECK``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from oban_py import notifier
from oban_py.aio import InUse, abandon, within

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger("oban.results")

#: the channel's short name: ``notifier.channel(prefix, NAME)`` is ``<prefix>.oban_py_results``
NAME = "py_results"
#: final states a waiter wakes for
FINAL = frozenset({"completed", "discarded", "cancelled"})
#: ids per announcement: 400 ids stay far below the 8000-byte NOTIFY cap even uncompressed
CHUNK = 400
#: Seconds a node gathers final outcomes before announcing them in one statement.
DELAY = 0.01
#: Seconds an announcement may take (a connection, then the statement) before it is dropped.
PUBLISH_TIMEOUT = 5.0

#: what the acker calls after each batch it writes: the (id, state) of the rows it wrote
Announce = Callable[[Sequence[tuple[int, str]]], None]


def done_payloads(ids: Sequence[int]) -> list[dict[str, Any]]:
    """The ``done`` messages naming ``ids``, in chunks a NOTIFY always takes."""
    return [{"done": list(ids[at : at + CHUNK])} for at in range(0, len(ids), CHUNK)]


class Announcer:
    """Gathers the final outcomes a node's acker wrote and announces them, off its path.

    The acker hands each written batch over without waiting; every ``delay`` seconds at most,
    the ids gathered meanwhile go out in one statement on a pool connection (one NOTIFY per
    ``CHUNK`` ids). A busy node so pays one statement per ``delay``, not one per ack batch, and
    its acks never wait for an announcement. A failed announcement is logged and dropped: the
    outcomes are stored, and the waiters find them at their slow re-check.
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], prefix: str, *, delay: float = DELAY
    ) -> None:
        self.pool = pool
        self.prefix = prefix
        self.delay = delay
        self._pending: list[int] = []
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: connections a publish waits on now, which ``stop`` severs
        self._using = InUse()
        #: announcement statements sent (for tests and the docs' cost figures)
        self.sent = 0

    def __call__(self, outcomes: Sequence[tuple[int, str]]) -> None:
        ids = [job_id for job_id, state in outcomes if state in FINAL]
        if ids:
            self._pending.extend(ids)
            self._event.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="oban.results.announcer")

    async def stop(self) -> None:
        """Stop the timer and announce what is left."""
        task, self._task = self._task, None
        if task is not None:
            # A publish it waits on is severed first: cancelled, a statement on a silent
            # network would wait for the server's answer to the cancel request.
            await abandon(task, self._using.sever)
        await self._flush()

    async def _loop(self) -> None:
        while True:
            await self._event.wait()
            await asyncio.sleep(self.delay)
            self._event.clear()
            await self._flush()

    async def _flush(self) -> None:
        ids, self._pending = self._pending, []
        if not ids:
            return

        async def publish() -> None:
            async with self._using.connection(self.pool, timeout=PUBLISH_TIMEOUT) as conn:
                await notifier.publish(conn, self.prefix, NAME, done_payloads(ids))

        try:
            # Bounded on a silent network too (the node's stop waits for the last one): the
            # statement's connection is severed, not awaited.
            await within(PUBLISH_TIMEOUT, publish(), self._using.sever)
            self.sent += 1
        except Exception as error:
            log.warning(
                "outcomes not announced; waiters re-check", count=len(ids), error=repr(error)
            )


def full_name(prefix: str) -> str:
    return notifier.channel(prefix, NAME)
