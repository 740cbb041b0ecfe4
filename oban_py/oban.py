"""``Oban``: a node. A ``Client`` that also runs queues, next to Elixir nodes on one table.

``start`` checks the schema, then starts the notifier (LISTEN ``insert`` and ``signal``), the
peer and the duties when those modules are present, the shared acker and one producer per
queue; ``stop`` reverses it after giving running jobs ``shutdown_grace`` seconds. Signals use
Elixir's payloads byte for byte, so Oban Web and Elixir nodes can pause, scale or kill jobs
here, and this node can do the same to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from oban_py import schema, telemetry
from oban_py.acker import Acker
from oban_py.client import Client
from oban_py.config import Config
from oban_py.log import attach_node_logger
from oban_py.producer import Producer

if TYPE_CHECKING:
    from oban_py.notifier import Notifier
    from oban_py.periodic import Periodic

log = structlog.get_logger("oban.node")

#: How long a pkilled job may ignore its cancellation flag before its task is cancelled.
PKILL_GRACE = 1.0
#: Sync workers never get more threads than this, whatever the queue limits add up to.
MAX_THREADS = 256


class Oban(Client):
    """A node: runs the configured queues and obeys Elixir's signals."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        pool: Any = None,
        **settings: Any,
    ) -> None:
        if config is None:
            config = Config(**settings)
        elif settings:
            config = config.model_copy(update=settings)
        super().__init__(config=config, pool=pool)
        self.producers: dict[str, Producer] = {}
        self.notifier: Notifier | None = None
        self.peer: Periodic | None = None
        self.duties: list[Periodic] = []
        self.acker: Acker | None = None
        limits = sum(q.limit for q in config.queues.values()) or 4
        self.threads = ThreadPoolExecutor(
            max_workers=min(MAX_THREADS, limits), thread_name_prefix="oban-worker"
        )
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return bool(getattr(self.peer, "is_leader", False))

    async def __aenter__(self) -> Oban:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Check the schema, then start notifier, peer, duties, acker and producers."""
        if self.started:
            return
        await self.open()
        async with self.pool.connection() as conn:
            await schema.check(conn, self.config.prefix, self.config.dsn)
        attach_node_logger(self.config.default_logger)
        self.acker = Acker(self.pool, self.queries)
        self.acker.start()
        await self._start_notifier()
        await self._start_duties()
        for queue, spec in self.config.queues.items():
            self._start_producer(queue, spec.limit, paused=spec.paused)
        self._beat()
        self.started = True
        telemetry.execute("oban.node.start", {}, {"node": self.config.node, "oban": self})

    async def stop(self) -> None:
        """Stop fetching, wait ``shutdown_grace`` for running jobs, cancel the rest, flush acks."""
        if not self.started:
            await self.close()
            return
        self.started = False
        producers = list(self.producers.values())
        await asyncio.gather(*(p.halt() for p in producers))
        await asyncio.gather(*(p.drain(self.config.shutdown_grace) for p in producers))
        self.producers.clear()
        if self.acker is not None:
            await self.acker.stop()
        for duty in reversed(self.duties):
            with contextlib.suppress(Exception):
                await duty.stop()
        self.duties = []
        if self.peer is not None:
            with contextlib.suppress(Exception):
                await self.peer.stop()
            self.peer = None
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                await self.notifier.stop()
            self.notifier = None
        self.threads.shutdown(wait=False, cancel_futures=True)
        telemetry.execute("oban.node.stop", {}, {"node": self.config.node, "oban": self})
        await self.close()

    async def _start_notifier(self) -> None:
        from oban_py.notifier import Notifier

        self.notifier = Notifier(self.config, self.dsn or self.pool.conninfo, pool=self.pool)
        self.notifier.listen("insert", self._on_insert)
        self.notifier.listen("signal", self._on_signal)
        self.notifier.on_reconnect(self._wake_all)
        await self.notifier.start()
        try:
            await self.notifier.wait_listening()
        except TimeoutError:
            log.warning("notifier not listening yet: queues rely on polling until it is")

    async def _start_duties(self) -> None:
        # The cluster duties are optional modules: a node runs without them.
        if self.config.peer and importlib.util.find_spec("oban_py.peer") is not None:
            from oban_py.peer import Peer

            self.peer = Peer(self)
            self.peer.start()
        if importlib.util.find_spec("oban_py.plugins") is not None:
            from oban_py import plugins

            try:
                self.duties = plugins.build(self)
            except ImportError as error:
                log.warning("cluster duties unavailable", error=repr(error))
                self.duties = []
            for duty in self.duties:
                duty.start()

    def _start_producer(self, queue: str, limit: int, *, paused: bool = False) -> Producer:
        producer = self.producers.get(queue)
        if producer is None:
            producer = self.producers[queue] = Producer(self, queue, limit, paused=paused)
            producer.start()
            producer.wake()
            if self.started:
                self._beat()
        return producer

    def _beat(self) -> None:
        # Until its first heartbeat a producer's jobs are only covered by the time-based rescue
        # (rescue_after, minutes), so record new producers now rather than an interval later.
        from oban_py import plugins
        from oban_py.lifeline import Heartbeat

        heartbeat = plugins.find(self.duties, Heartbeat)
        if heartbeat is not None:
            heartbeat.wake()

    def _wake_all(self, *_: Any) -> None:
        for producer in self.producers.values():
            producer.wake()

    # -- notifications received -------------------------------------------------------------

    def _on_insert(self, payload: dict[str, Any]) -> None:
        producer = self.producers.get(payload.get("queue"))  # type: ignore[arg-type]
        if producer is not None:
            producer.wake()

    def _on_signal(self, payload: dict[str, Any]) -> None:
        try:
            self._apply_signal(payload)
        except Exception as error:
            log.warning("bad signal ignored", payload=payload, error=repr(error))

    def _apply_signal(self, payload: dict[str, Any]) -> None:
        action = payload.get("action")
        queue = payload.get("queue")
        if action == "pkill":
            job_id = payload.get("job_id")
            for producer in self.producers.values():
                if producer.pkill(job_id, PKILL_GRACE):  # type: ignore[arg-type]
                    break
            return
        if action == "start":
            if isinstance(queue, str) and self.started:
                limit = int(payload.get("limit", 10))
                self._start_producer(queue, limit, paused=bool(payload.get("paused", False)))
            return
        if action == "stop":
            producer = self.producers.pop(queue, None)  # type: ignore[arg-type]
            if producer is not None:
                asyncio.get_running_loop().create_task(
                    producer.stop(self.config.shutdown_grace), name=f"oban.stop.{queue}"
                )
            return
        targets = list(self.producers.values())
        if queue != "*":
            targets = [p for p in targets if p.queue == queue]
        for producer in targets:
            if action == "pause":
                producer.pause()
            elif action == "resume":
                producer.resume()
            elif action == "scale":
                if "limit" in payload:
                    producer.scale(payload["limit"])
                if "paused" in payload:
                    producer.paused = bool(payload["paused"])

    # -- signals sent -------------------------------------------------------------------------

    def _ident(self, node: str | None, local_only: bool) -> str:
        if local_only:
            return self.config.ident
        if node is not None:
            return f"{self.config.name}.{node}"
        return "any"

    async def _signal(self, payload: dict[str, Any]) -> None:
        from oban_py import notifier

        await self.open()
        async with self.pool.connection() as conn:
            await notifier.publish(conn, self.config.prefix, "signal", [payload])

    async def pause_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """Pause ``queue`` on every node, on ``node``, or only here (``local_only``)."""
        ident = self._ident(node, local_only)
        await self._signal({"action": "pause", "queue": queue, "ident": ident})

    async def resume_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """Resume ``queue`` on every node, on ``node``, or only here (``local_only``)."""
        ident = self._ident(node, local_only)
        await self._signal({"action": "resume", "queue": queue, "ident": ident})

    async def pause_all_queues(self, *, node: str | None = None, local_only: bool = False) -> None:
        await self.pause_queue("*", node=node, local_only=local_only)

    async def resume_all_queues(self, *, node: str | None = None, local_only: bool = False) -> None:
        await self.resume_queue("*", node=node, local_only=local_only)

    async def scale_queue(
        self,
        queue: str,
        *,
        limit: int,
        node: str | None = None,
        local_only: bool = False,
    ) -> None:
        """Change the concurrency limit of ``queue`` (Elixir's payload: options + action, ident)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        payload: dict[str, Any] = {"action": "scale", "queue": queue, "limit": limit}
        if node is not None:
            payload["node"] = node
        if local_only:
            payload["local_only"] = True
        payload["ident"] = self._ident(node, local_only)
        await self._signal(payload)

    async def start_queue(
        self,
        queue: str,
        *,
        limit: int,
        paused: bool | None = None,
        node: str | None = None,
        local_only: bool = False,
    ) -> None:
        """Start ``queue`` on every node, on ``node`` or here (``node`` is not sent, as Elixir)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        payload: dict[str, Any] = {"action": "start", "queue": queue, "limit": limit}
        if paused is not None:
            payload["paused"] = paused
        if local_only:
            payload["local_only"] = True
        payload["ident"] = self._ident(node, local_only)
        await self._signal(payload)

    async def stop_queue(
        self, queue: str, *, node: str | None = None, local_only: bool = False
    ) -> None:
        """Stop ``queue`` (its running jobs get the shutdown grace)."""
        ident = self._ident(node, local_only)
        await self._signal({"action": "stop", "queue": queue, "ident": ident})

    def check_queue(self, queue: str) -> dict[str, Any] | None:
        """This node's view of ``queue``: limit, paused, running ids... (None if not running)."""
        producer = self.producers.get(queue)
        return None if producer is None else producer.check()

    def check_all_queues(self) -> list[dict[str, Any]]:
        return [p.check() for p in self.producers.values()]
