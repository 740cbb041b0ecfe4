"""The crontab for Oban Web, shared on ``cronitor`` as oban_met's Cronitor shares Elixir's.

Every ``SHARE_INTERVAL`` (oban_met's 15 s, the first at start) each node publishes
``{"crontab": [[expr, worker, opts], ...], "name": <instance>, "node": <node>}``, also when the
crontab is empty, as Elixir nodes do. oban_met keeps each node's crontab for 60 s and Web shows
the union.

``opts`` are the options the entry gives explicitly (``args``, ``queue``, ``max_attempts``...)
plus ``"name"``: the entry's ``cron_name``. Web names an entry by ``opts["name"]`` when present,
else by Elixir's ``phash2`` of the entry, which Python cannot compute; with the name, Web finds
the jobs this entry inserted (``meta.cron_name``) and shows their history and last run.
"""

from __future__ import annotations

from typing import Any

from oban_py import crontab
from oban_py.cluster.contract import NodeLike, notify
from oban_py.cluster.periodic import Periodic

#: oban_met's Cronitor interval.
SHARE_INTERVAL = 15.0


def entry(item: crontab.CronEntry) -> list[Any]:
    """One crontab entry as oban_met sends it: ``[expr, worker, opts]``."""
    return [item.expr, item.worker, {**item.opts, "name": item.name}]


class Cronitor(Periodic):
    kind = "oban.cronitor"

    def __init__(self, oban: NodeLike, interval: float = SHARE_INTERVAL) -> None:
        super().__init__(interval)
        self.oban = oban
        # The entries the Cron duty of this node evaluates (configured and worker-declared).
        self.entries = crontab.crontab(oban.config.crontab)

    def payload(self) -> dict[str, Any]:
        config = self.oban.config
        crontab = [entry(item) for item in self.entries]
        return {"crontab": crontab, "name": config.name, "node": config.node}

    async def tick(self) -> int:
        await notify(self.oban, "cronitor", [self.payload()])
        return len(self.entries)
