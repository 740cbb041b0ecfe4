"""The one start/stop contract shared by every periodic duty (stager, peer, pruner, lifeline...).

Each component is a small object with its own interval; ``tick`` runs one pass inside a telemetry
span ``oban.<kind>`` (start/stop/exception). A pass that raises is retried after an exponential
backoff capped at the component's interval, so no duty ever kills the node. What the error means
comes from ``dberrors``: a run of transient failures (the database away, read-only, cancelling
statements) is logged once and its end once; a pass the database refuses is logged every time
(the traceback at debug). A read-only error drains the node's pool (a failover), and a cancelled
statement halves the duty's ``batch`` (when it has one) so the next pass does less.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import structlog

from oban_py import dberrors, telemetry
from oban_py.aio import wait_event

#: Seconds a stopping duty's task gets to end after its cancellation.
STOP_TIMEOUT = 5.0


class Periodic(ABC):
    #: telemetry prefix and log name, e.g. "oban.stager"
    kind: ClassVar[str]

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.log = structlog.get_logger(self.kind)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._failures = 0
        #: rows a pass may touch, for duties whose statement has a LIMIT (stager, pruner...)
        self.batch: dberrors.Batch | None = None
        self._outage = dberrors.Outage(self.log, "periodic pass failed")

    @abstractmethod
    async def tick(self) -> Any:
        """One pass of the duty; the result goes into the stop event's metadata."""

    def next_delay(self) -> float:
        """Seconds until the next pass; components override it for jitter or adaptive pacing."""
        return self.interval

    def metadata(self) -> dict[str, Any]:
        return {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=self.kind)

    def wake(self) -> None:
        """Run the next pass now instead of waiting for the interval."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A pass that swallows its cancellation must not hold the node's shutdown for ever.
            done, _ = await asyncio.wait([task], timeout=STOP_TIMEOUT)
            if not done:
                self.log.warning("duty did not stop when cancelled; left behind", duty=self.kind)
        await self.on_stop()

    async def on_stop(self) -> None:  # noqa: B027 - optional hook
        """Clean-up after the loop has ended (e.g. resign leadership)."""

    async def run_once(self) -> Any:
        with telemetry.span(self.kind, self.metadata()) as meta:
            result = await self.tick()
            meta["result"] = result
            return result

    async def _loop(self) -> None:
        while True:
            # Cleared before the pass, not after: a wake() arriving during the pass must make
            # the next one start at once rather than be lost.
            self._wake.clear()
            try:
                await self.run_once()
                self._failures = 0
                if self.batch is not None:
                    self.batch.succeeded()
                self._outage.succeeded()
                delay = self.next_delay()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._failures += 1
                delay = min(self.interval, 0.1 * 2 ** min(self._failures, 10))
                delay *= 1 + random.random() * 0.2
                verdict = await dberrors.recover(self._pool(), error)
                if verdict is dberrors.CANCELLED and self.batch is not None:
                    # The batch says so once; the next, smaller pass comes at the usual pace.
                    self.batch.cancelled()
                    delay = self.next_delay()
                else:
                    self._outage.failed(error, retry_in=round(delay, 3))
                # The traceback only at debug, where it helps and does not flood production logs.
                self.log.debug("periodic pass failure detail", exc_info=True)
            await self._sleep(delay)

    def _pool(self) -> Any:
        # Every duty keeps its node as ``oban``; its pool is the one a read-only error drains.
        return getattr(getattr(self, "oban", None), "pool", None)

    async def _sleep(self, delay: float) -> None:
        await wait_event(self._wake, delay)
