"""What the cluster duties need from a node: the contract below every duty.

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
    from oban_py.liveness import Liveness
    from oban_py.sql import Queries

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

    @property
    def liveness(self) -> Liveness | None: ...


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
