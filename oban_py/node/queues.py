"""``Queues``: the one owner of the life of this node's queues.

Starting, stopping, scaling, pausing and fencing a queue, the size of the worker thread pool and
the drain at shutdown all go through here, so no path can leave a queue half stopped:

- a queue stopped by a signal is stopped in a task this owner keeps, and the node's ``stop``
  waits for it (its jobs get the grace, their outcomes are flushed, and only then is its
  heartbeat row given up), as Elixir's Midwife stops a queue inside the supervision tree;
- every change of a queue's limit, wherever it comes from (a signal, ``Producer.scale``),
  resizes the thread pool that plain ``def`` workers run in;
- a new queue starts fenced when the node is fenced.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from oban_py.flow import Flow, FlowChange
from oban_py.liveness import Liveness
from oban_py.node.producer import Producer
from oban_py.node.runtime import Runtime

log = structlog.get_logger("oban.queues")

#: Worker threads when no queue runs (a node that only inserts still runs sync hooks).
IDLE_THREADS = 4
#: How long a stopping queue's outcomes may take to be written before its row is given up.
FLUSH_TIMEOUT = 15.0


class Queues:
    """The producers of one node, and everything that changes them."""

    def __init__(self, runtime: Runtime, liveness: Liveness | None) -> None:
        self.runtime = runtime
        self.liveness = liveness
        self.producers: dict[str, Producer] = {}
        #: queues being stopped (by a signal, or the node), awaited by ``stop_all``
        self._stopping: set[asyncio.Task[None]] = set()
        self._fenced: bool | None = None  # None, or whether running jobs were interrupted
        #: a stop found the database out of reach: its acks or its release went unanswered
        self.unreachable = False

    # -- one queue ------------------------------------------------------------------------------

    def start(
        self, queue: str, limit: int, *, paused: bool = False, flow: Flow | None = None
    ) -> Producer:
        """Start ``queue`` (a running one is left as it is); ``ValueError`` for a bad limit.
        ``flow`` is its cluster-wide limits (``oban_py.flow``), if any."""
        producer = self.producers.get(queue)
        if producer is not None:
            return producer
        producer = Producer(
            self.runtime, queue, limit, paused=paused, on_scale=self._resize, flow=flow
        )
        self.producers[queue] = producer
        if self.liveness is not None:
            self.liveness.track(producer.uuid, queue, producer.started_at)
        if self._fenced is not None:
            producer.fence(self._fenced)
        self._resize()
        producer.start()
        producer.wake()
        return producer

    def stop_soon(self, queue: str) -> bool:
        """Stop ``queue`` in a task the node's ``stop`` waits for; False if it does not run."""
        producer = self.producers.pop(queue, None)
        if producer is None:
            return False
        task = asyncio.get_running_loop().create_task(
            self._stop(producer), name=f"oban.stop.{queue}"
        )
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return True

    async def stop(self, queue: str) -> None:
        """Stop ``queue`` and wait until it has stopped."""
        if self.stop_soon(queue):
            await self._wait_stopping()

    def scale(self, queue: str, limit: int) -> None:
        for producer in self._targets(queue):
            producer.scale(limit)

    def change_flow(self, queue: str, change: FlowChange) -> None:
        """New cluster-wide limits for ``queue`` (a ``scale`` signal carrying them); each
        producer keeps the limits the change does not name."""
        for producer in self._targets(queue):
            producer.flow = Flow.scaled(producer.flow, change)
            producer.wake()

    def pause(self, queue: str) -> None:
        for producer in self._targets(queue):
            producer.pause()

    def resume(self, queue: str) -> None:
        for producer in self._targets(queue):
            producer.resume()

    def set_paused(self, queue: str, paused: bool) -> None:
        for producer in self._targets(queue):
            if paused:
                producer.pause()
            else:
                producer.resume()

    def _targets(self, queue: str) -> list[Producer]:
        if queue == "*":
            return list(self.producers.values())
        producer = self.producers.get(queue)
        return [] if producer is None else [producer]

    # -- every queue ----------------------------------------------------------------------------

    def wake_all(self) -> None:
        for producer in self.producers.values():
            producer.wake()

    def fence(self, interrupt: bool) -> None:
        """No fetching, and with ``interrupt`` no running job either (``oban_py.liveness``)."""
        self._fenced = interrupt or bool(self._fenced)
        for producer in self.producers.values():
            producer.fence(interrupt)

    def unfence(self) -> None:
        self._fenced = None
        for producer in self.producers.values():
            producer.unfence()

    def running_workers(self) -> list[str]:
        # Called from the watchdog thread while the loop is stalled: copies, never mutates.
        return [
            a.job.worker for p in list(self.producers.values()) for a in list(p.attempts.values())
        ]

    async def stop_all(self) -> None:
        """Stop every queue, including those a signal is stopping, and wait for all of them."""
        producers = list(self.producers.values())
        self.producers.clear()
        grace = self.runtime.config.shutdown_grace
        await asyncio.gather(*(p.halt() for p in producers))
        await asyncio.gather(*(p.finish(grace) for p in producers))
        await self._wait_stopping()
        await self._give_up([p.uuid for p in producers])

    # -- inside ---------------------------------------------------------------------------------

    async def _stop(self, producer: Producer) -> None:
        await producer.stop(self.runtime.config.shutdown_grace)
        self._resize()
        if self.runtime.processes is not None:
            # Its jobs have ended: its idle worker processes go too.
            await self.runtime.processes.close_queue(producer.queue)
        await self._give_up([producer.uuid])

    async def _give_up(self, uuids: list[str]) -> None:
        # The rows are given up only once their outcomes are written: a release before the
        # flush would mark the producer dead while its acks wait, and its jobs would run again.
        # Bounded even on a silent network: what the flush waits on then is severed, not
        # awaited, and the acks left are the acker's to report at its stop.
        with contextlib.suppress(Exception):
            await self.runtime.acker.flush_within(FLUSH_TIMEOUT)
        if self.runtime.acker.gave_up:
            self.unreachable = True
        if self.liveness is not None:
            for uuid in uuids:
                self.liveness.untrack(uuid)
            if self.unreachable:
                # The database stayed out of reach for a whole flush timeout: a release would
                # only wait as long again. The rows age out, and the lifeline rescues at the ttl.
                log.warning(
                    "heartbeat rows left for the lifeline: the database is out of reach",
                    producers=uuids,
                )
            elif not await self.liveness.release(uuids):
                self.unreachable = True

    async def _wait_stopping(self) -> None:
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    def _resize(self) -> None:
        size = sum(p.limit for p in self.producers.values()) or IDLE_THREADS
        self.runtime.threads.resize(size)
