"""What the cluster duties need from a node, and ``build``: the duties a node runs.

The duties depend only on the small surface below (``NodeLike``), so the runtime (``oban.Oban``)
and a test holder object can both drive them.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from oban_py.config import Config
    from oban_py.periodic import Periodic
    from oban_py.queries import Queries

Callback = Callable[[dict[str, Any]], None]


class NotifierLike(Protocol):
    def listen(self, channel: str, callback: Callback) -> Any: ...

    async def notify(self, channel: str, payloads: list[dict[str, Any]]) -> Any: ...


class ProducerLike(Protocol):
    poll_interval: float

    @property
    def queue(self) -> str: ...

    @property
    def uuid(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...

    @property
    def running(self) -> Collection[int]: ...

    def wake(self) -> None: ...

    def check(self) -> dict[str, Any]: ...


class NodeLike(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def pool(self) -> AsyncConnectionPool[Any]: ...

    @property
    def queries(self) -> Queries: ...

    @property
    def notifier(self) -> NotifierLike | None: ...

    @property
    def producers(self) -> dict[str, Any]: ...

    @property
    def is_leader(self) -> bool: ...


async def listen(node: NodeLike, channel: str, callback: Callback) -> bool:
    """Subscribe ``callback`` to ``channel`` if the node has a notifier; True if subscribed."""
    if node.notifier is None:
        return False
    result = node.notifier.listen(channel, callback)
    if inspect.isawaitable(result):
        await result
    # A ping or a down message sent before the LISTEN is active would be lost (and Sonar would
    # call a healthy node isolated), so wait for it when the notifier can tell.
    wait = getattr(node.notifier, "wait_listening", None)
    if wait is not None:
        with contextlib.suppress(Exception):
            await wait()
    return True


async def notify(node: NodeLike, channel: str, payloads: list[dict[str, Any]]) -> bool:
    """Publish through the node's notifier; False (nothing sent) without one."""
    if node.notifier is None or not payloads:
        return False
    await node.notifier.notify(channel, payloads)
    return True


def build(oban: NodeLike) -> list[Periodic]:
    """The duties of a node, in start order.

    Sonar and gossip act on every node; the stager on every node (staging everything only as
    leader); pruner, lifeline and cron act only while ``oban.is_leader``. Gossip, metrics and
    cronitor publish for Oban Web, unless ``config.web`` is off. Heartbeats are not a duty: the
    node's liveness threads write them (``liveness.py``).
    """
    from oban_py.cron import Cron
    from oban_py.cronitor import Cronitor
    from oban_py.gossip import Gossip
    from oban_py.lifeline import Lifeline
    from oban_py.met import Metrics
    from oban_py.pruner import Pruner
    from oban_py.sonar import Sonar
    from oban_py.stager import Stager

    config = oban.config
    sonar = Sonar(oban)
    duties: list[Periodic] = [sonar, Stager(oban, sonar=sonar)]
    if config.pruner.enabled:
        duties.append(Pruner(oban))
    if config.lifeline.enabled:
        duties.append(Lifeline(oban))
    duties.append(Cron(oban))
    if config.web and config.gossip:
        duties.append(Gossip(oban))
    if config.web:
        duties += [Metrics(oban), Cronitor(oban)]
    return duties


def find(duties: Collection[Periodic], kind: type[Any]) -> Any:
    """The duty of ``kind`` among ``duties`` (e.g. the ``Sonar`` for its status), or None."""
    return next((d for d in duties if isinstance(d, kind)), None)
