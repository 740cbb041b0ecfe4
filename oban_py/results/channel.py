"""Our own channel, ``<prefix>.oban_py_results``, which no Elixir node listens to or sends on.

Two messages travel on it:

- ``{"done": [id, ...]}``: these jobs reached a final state (completed, discarded, cancelled).
  A node's acker sends one after each batch of outcomes it writes, on the same connection,
  naming only the rows the batch really wrote (its ``RETURNING``): one more statement per batch
  that holds a final outcome, none for a batch of retries and snoozes. It goes out after the
  outcomes are committed, so a waiter woken by it always reads the final row; if it is lost
  (the connection drops in between) a waiter learns of the outcome at its slow re-check.
- ``{"id": id, "progress": {...}}``: a running job's progress report, sent by the statement
  that stores it (``sql/progress_update.sql``).

Elixir nodes announce nothing here, so a wait on a job an Elixir worker runs learns of its end
from the waiter's slow re-check (``oban_py.results.waiter.RECHECK``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from oban_py import notifier

if TYPE_CHECKING:
    from psycopg import AsyncConnection

#: the channel's short name: ``notifier.channel(prefix, NAME)`` is ``<prefix>.oban_py_results``
NAME = "py_results"
#: final states a waiter wakes for
FINAL = frozenset({"completed", "discarded", "cancelled"})
#: ids per announcement: 400 ids stay far below the 8000-byte NOTIFY cap even uncompressed
CHUNK = 400

#: what the acker calls with each batch it writes: (connection, [(id, state), ...])
Announce = Callable[["AsyncConnection[Any]", Sequence[tuple[int, str]]], Awaitable[None]]


def done_payloads(outcomes: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    """The ``done`` messages announcing the final outcomes among ``outcomes``."""
    ids = [job_id for job_id, state in outcomes if state in FINAL]
    return [{"done": ids[at : at + CHUNK]} for at in range(0, len(ids), CHUNK)]


def announcer(prefix: str) -> Announce:
    """The acker's announcement for a node whose tables live in ``prefix``."""

    async def announce(conn: AsyncConnection[Any], outcomes: Sequence[tuple[int, str]]) -> None:
        payloads = done_payloads(outcomes)
        if payloads:
            await notifier.publish(conn, prefix, NAME, payloads)

    return announce


def full_name(prefix: str) -> str:
    return notifier.channel(prefix, NAME)
