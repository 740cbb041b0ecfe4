"""Leadership in ``oban_peers`` with Elixir's database-peer protocol, under our own peer name.

Each election is one transaction: delete this name's expired lease, then insert it or renew it
only if this node already holds it; the node leads iff a row was affected. The leader renews at
about half the lease (jitter decreasing only, like Elixir's ``Backoff.jitter(mode: :dec)``) so the
lease never lapses while it lives; an election that errors drops leadership at once, because a
node that cannot reach the table cannot know whether someone else took over (oban#1488). A
stopping leader deletes its row and announces ``{"down": name}`` on ``leader`` so a follower
takes over immediately instead of after the lease.

The name is ``config.peer_name`` (default ``"<name>.py"``), not Elixir's: see docs/cluster.md.
"""

from __future__ import annotations

import random
from typing import Any

from oban_py.cluster.contract import NodeLike, listen, notify
from oban_py.cluster.periodic import Periodic

#: Elixir's leader_boost: the leader re-elects this many times per lease.
LEADER_BOOST = 2
#: Elixir's Backoff.jitter default multiplier.
JITTER = 0.1


class Peer(Periodic):
    """Elects this node leader (or not) among the nodes sharing its peer name."""

    kind = "oban.peer"

    def __init__(self, oban: NodeLike) -> None:
        super().__init__(oban.config.peer_interval)
        self.oban = oban
        self.name = oban.config.leader_name
        self.node = oban.config.node
        self.is_leader = False
        self._listening = False

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "node": self.node, "leader": self.is_leader}

    def next_delay(self) -> float:
        base = self.interval / LEADER_BOOST if self.is_leader else self.interval
        return base * (1 - random.random() * JITTER)

    async def tick(self) -> bool:
        if not self._listening:
            self._listening = await listen(self.oban, "leader", self._on_leader)
        try:
            self.is_leader = await self.elect()
        except Exception:
            self.is_leader = False
            raise
        return self.is_leader

    async def elect(self) -> bool:
        """One election; True if this node holds the lease afterwards."""
        queries = self.oban.queries
        params = {"name": self.name, "node": self.node, "interval": self.interval}
        async with self.oban.pool.connection() as conn, conn.transaction():
            await conn.execute(queries["peer_delete_expired"], params)
            cursor = await conn.execute(queries["peer_upsert"], params)
            return bool(cursor.rowcount > 0)

    async def leader(self) -> str | None:
        """The node currently holding this peer name, if any."""
        async with self.oban.pool.connection() as conn:
            cursor = await conn.execute(self.oban.queries["peer_get_leader"], {"name": self.name})
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def on_stop(self) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            await self.resign()
        except Exception:
            # The lease expires on its own; a failed resignation only delays the takeover.
            self.log.warning("leader resignation failed", name=self.name, exc_info=True)

    async def resign(self) -> None:
        """Give the lease back and tell followers to elect now."""
        params = {"name": self.name, "node": self.node}
        async with self.oban.pool.connection() as conn:
            await conn.execute(self.oban.queries["peer_delete_self"], params)
        await notify(self.oban, "leader", [{"down": self.name}])

    def _on_leader(self, payload: dict[str, Any]) -> None:
        if payload.get("down") == self.name and not self.is_leader:
            self.wake()
