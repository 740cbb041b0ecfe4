"""The releasing duty: moves held workflow jobs on once their dependencies are settled.

How it is woken, cheapest first:

1. the node's acker reports the workflow ids of workflow jobs whose outcome it just wrote
   (``Acker.on_followed``): a pass over those workflows runs right after the commit. A plain job
   costs nothing here: the ack statement is unchanged and the acker only checks an empty dict;
2. a notification on ``<prefix>.oban_workflow`` (an append, a message) names workflows to look
   at, on every node;
3. a sweep every ``interval`` seconds (1 s; longer when sweeps are long, see ``SWEEP_SHARE``)
   over every workflow that holds jobs, on the leader (or on every node run without a peer): the
   safety net for a step finished by an Elixir node or cancelled by hand, a wake lost with the
   node that crashed before sending it, and message deadlines.

Each pass repeats ``sql/workflow_release.sql`` while it fails jobs (their own dependents may
then fail too), at most ``MAX_STEPS`` times; the rest is left for the next pass. The statement is
guarded (``state = 'suspended'``), so passes running at once on many nodes release or fail each
job exactly once (see the statement's comment for why no release is ever missed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from oban_py import telemetry
from oban_py.cluster.contract import NodeLike, listen
from oban_py.cluster.periodic import Periodic
from oban_py.notifier import channel
from oban_py.sql import Queries
from oban_py.workflows.graph import CHANNEL

#: Release steps a pass may take (one per level of a failing cascade).
MAX_STEPS = 100
#: Workflows looked at per sweep statement.
SWEEP_PAGE = 500
#: The next sweep waits at least this many times as long as the last one took.
SWEEP_SHARE = 10


@dataclass
class Released:
    """What one pass did: job ids per new state, and the workflows it saw finish."""

    available: list[int] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    steps: int = 0

    @property
    def count(self) -> int:
        return len(self.available) + len(self.scheduled) + len(self.cancelled) + len(self.discarded)

    def merge(self, other: Released) -> None:
        self.available += other.available
        self.scheduled += other.scheduled
        self.cancelled += other.cancelled
        self.discarded += other.discarded
        self.finished += other.finished
        self.steps += other.steps


async def release(
    pool: AsyncConnectionPool[Any], queries: Queries, workflow_ids: Iterable[str]
) -> Released:
    """One pass over ``workflow_ids``: release or fail every held job that can be, cascading.

    Emits ``oban.workflow.release`` when it moved jobs and ``oban.workflow.stop`` for each
    workflow it saw with nothing left to finish after moving some of its jobs or after one of
    its jobs was acked (at least once per workflow; two nodes may both see the end).
    """
    wids = sorted({str(w) for w in workflow_ids})
    done = Released()
    if not wids:
        return done
    params = {"workflows": wids, "channel": channel(queries.prefix, "insert")}
    async with pool.connection() as conn:
        for _ in range(MAX_STEPS):
            cur = await conn.execute(queries["workflow_release"], params)
            rows = await cur.fetchall()
            done.steps += 1
            failed = False
            for job_id, state, _wid in rows:
                getattr(done, state).append(job_id)
                failed = failed or state in ("cancelled", "discarded")
            if not failed:
                break
        cur = await conn.execute(queries["workflow_open"], {"workflows": wids})
        still_open = {row[0] for row in await cur.fetchall()}
    done.finished = [w for w in wids if w not in still_open]
    if done.count:
        telemetry.execute(
            "oban.workflow.release",
            {"count": done.count, "steps": done.steps},
            {
                "workflow_ids": wids,
                "available": done.available,
                "scheduled": done.scheduled,
                "cancelled": done.cancelled,
                "discarded": done.discarded,
            },
        )
    for wid in done.finished:
        telemetry.execute("oban.workflow.stop", {}, {"workflow_id": wid})
    return done


async def sweep(pool: AsyncConnectionPool[Any], queries: Queries) -> Released:
    """A pass over every workflow that holds jobs, a page of workflows at a time."""
    done = Released()
    after = ""
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(
                queries["workflow_sweep"], {"after": after, "limit": SWEEP_PAGE}
            )
            page: Sequence[str] = [row[0] for row in await cur.fetchall()]
        if not page:
            return done
        done.merge(await release(pool, queries, page))
        if len(page) < SWEEP_PAGE:
            return done
        after = page[-1]


class Releaser(Periodic):
    """The node's releasing duty (see the module docstring)."""

    kind = "oban.workflows"
    #: seconds between sweeps
    SWEEP_INTERVAL = 1.0

    def __init__(self, oban: NodeLike, interval: float | None = None) -> None:
        super().__init__(self.SWEEP_INTERVAL if interval is None else interval)
        self.oban = oban
        self._pending: set[str] = set()
        self._listening = False
        self._next_sweep = 0.0

    def follow(self, workflow_ids: Iterable[str]) -> None:
        """Look at ``workflow_ids`` now (their jobs' outcomes were just written)."""
        self._pending.update(str(w) for w in workflow_ids)
        self.wake()

    def _on_notify(self, payload: dict[str, Any]) -> None:
        wid = payload.get("workflow_id")
        if isinstance(wid, str) and wid:
            self.follow([wid])

    def _sweeps(self) -> bool:
        return self.oban.is_leader or not self.oban.config.peer

    async def tick(self) -> int:
        if not self._listening:
            self._listening = await listen(self.oban, CHANNEL, self._on_notify)
        wids, self._pending = self._pending, set()
        moved = 0
        try:
            if wids:
                moved += (await release(self.oban.pool, self.oban.queries, wids)).count
            now = time.monotonic()
            if now >= self._next_sweep and self._sweeps():
                moved += (await sweep(self.oban.pool, self.oban.queries)).count
                # A table holding many waiting workflows makes a sweep long: wait ten times as
                # long before the next, so the safety net never takes more than a tenth of the
                # time (wakes from acks and messages are not delayed by this).
                took = time.monotonic() - now
                self._next_sweep = now + max(self.interval, SWEEP_SHARE * took)
        except BaseException:
            self._pending |= wids
            raise
        return moved
