"""``build``: the duties a node runs beside its queues, in start order."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from oban_py.cluster.contract import NodeLike
from oban_py.cluster.cron import Cron
from oban_py.cluster.cronitor import Cronitor
from oban_py.cluster.flowmeter import FlowMeter
from oban_py.cluster.gossip import Gossip
from oban_py.cluster.lifeline import Lifeline
from oban_py.cluster.met import Metrics
from oban_py.cluster.periodic import Periodic
from oban_py.cluster.pruner import Pruner
from oban_py.cluster.sonar import Sonar
from oban_py.cluster.stager import Stager


def build(oban: NodeLike) -> list[Periodic]:
    """The duties of a node, in start order.

        Sonar and gossip act on every node; the stager on every node (staging everything only as
        leader); pruner, lifeline and cron act only while ``oban.is_leader``; the flow meter reads
    the usage of the node's flow-limited queues while a handler listens for it. Gossip, metrics and
        cronitor publish for Oban Web, unless ``config.web`` is off. Heartbeats are not a duty: the
        node's liveness threads write them (``liveness.py``).
    """
    config = oban.config
    sonar = Sonar(oban)
    duties: list[Periodic] = [sonar, Stager(oban, sonar=sonar)]
    if config.pruner.enabled:
        duties.append(Pruner(oban))
    if config.lifeline.enabled:
        duties.append(Lifeline(oban))
    # Reads nothing until a handler listens for oban.flow.usage and a queue has a flow.
    duties += [Cron(oban), FlowMeter(oban)]
    if config.web and config.gossip:
        duties.append(Gossip(oban))
    if config.web:
        duties += [Metrics(oban), Cronitor(oban)]
    return duties


def find(duties: Collection[Periodic], kind: type[Any]) -> Any:
    """The duty of ``kind`` among ``duties`` (e.g. the ``Sonar`` for its status), or None."""
    return next((d for d in duties if isinstance(d, kind)), None)
