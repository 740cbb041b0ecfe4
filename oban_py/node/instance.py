"""``Oban``: a node. A ``Client`` that also runs queues, next to Elixir nodes on one table.

``start`` checks the schema, then starts the shared acker, the liveness threads (heartbeat and
watchdog, ``liveness.py``), the notifier (LISTEN ``insert`` and ``signal``), the peer and the
duties when those modules are present, and one producer per queue. ``stop`` stops fetching,
gives running jobs ``shutdown_grace`` seconds, interrupts the rest and waits until each has
ended (a sync job's thread cannot be stopped: the node keeps beating until it ends), flushes the
outcomes, and only then gives up its heartbeat rows. Signals use Elixir's payloads byte for
byte, so Oban Web and Elixir nodes can pause, scale or kill jobs here, and this node can do the
same to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import make_conninfo

from oban_py import schema, telemetry
from oban_py.aio import awaiting
from oban_py.client import persisted
from oban_py.client.core import Client
from oban_py.cluster.duties import build
from oban_py.cluster.peer import Peer
from oban_py.cluster.periodic import Periodic
from oban_py.config import Config, QueueConfig
from oban_py.flow import Flow, FlowChange
from oban_py.job.model import Job
from oban_py.job.progress import Progress
from oban_py.liveness import Liveness
from oban_py.log import attach_node_logger
from oban_py.middleware import Middleware
from oban_py.node.acker import Acker
from oban_py.node.processes import WorkerProcesses
from oban_py.node.producer import Producer
from oban_py.node.queues import Queues
from oban_py.node.runtime import Runtime
from oban_py.node.threads import WorkerThreads
from oban_py.notifier import Notifier
from oban_py.results import channel as results_channel
from oban_py.results.progress import ProgressWriter
from oban_py.results.sync import wait_for_sync
from oban_py.results.waiter import RECHECK, Results
from oban_py.workflows import send as send_workflow_message
from oban_py.workflows.releaser import Releaser

log = structlog.get_logger("oban.node")

#: How long a pkilled job may ignore its cancellation flag before its task is cancelled.
PKILL_GRACE = 1.0
#: How often a stop still under way says where it waits.
STOP_REPORT_EVERY = 10.0
#: Pool connection keyword arguments that are psycopg's, not libpq parameters.
_PSYCOPG_OPTIONS = frozenset(
    {"autocommit", "prepare_threshold", "row_factory", "cursor_factory", "context"}
)


class Oban(Client):
    """A node: runs the configured queues and obeys Elixir's signals."""

    writable_pool = True  # a failover's read-only connections are replaced, never used

    def __init__(
        self,
        config: Config | None = None,
        *,
        pool: Any = None,
        middleware: Sequence[Middleware] = (),
        **settings: Any,
    ) -> None:
        if config is None:
            config = Config(**settings)
        elif settings:
            config = config.model_copy(update=settings)
        super().__init__(config=config, pool=pool, middleware=middleware)
        self.queues: Queues | None = None
        self.notifier: Notifier | None = None
        self.peer: Periodic | None = None
        self.duties: list[Periodic] = []
        self.acker: Acker | None = None
        self.liveness: Liveness | None = None
        self.threads = WorkerThreads(sum(q.limit for q in config.queues.values()) or 4)
        self.processes = WorkerProcesses(
            self._process_limit,
            max_jobs=config.process_max_jobs,
            max_memory_mib=config.process_max_memory,
        )
        self.progress: ProgressWriter | None = None
        self.announcer: results_channel.Announcer | None = None
        self._results: Results | None = None
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
        self.announcer = results_channel.Announcer(self.pool, self.config.prefix)
        self.announcer.start()
        self.acker = Acker(self.pool, self.queries, announce=self.announcer)
        self.acker.start()
        self.progress = ProgressWriter(self.pool, self.queries, self.config.prefix)
        self.liveness = Liveness(
            self.config,
            await self._own_conninfo(),
            self.queries,
            on_fence=self._fence,
            on_unfence=self._unfence,
            running_workers=self._running_workers,
            pool=self.pool,
        )
        self.liveness.start()
        runtime = Runtime(
            self.config,
            self.pool,
            self.queries,
            self.acker,
            self.threads,
            progress=self.progress,
            middleware=self.middleware,
            processes=self.processes,
        )
        self.queues = Queues(runtime, self.liveness)
        await self._start_notifier()
        await self._start_duties()
        for queue, spec in (await self._queue_specs()).items():
            self.queues.start(queue, spec.limit, paused=spec.paused, flow=Flow.of(spec))
        if not self.config.queues:
            # Often a typo (OBAN_QUEUES=, --queues in the wrong place): say so before going quiet.
            log.warning(
                "node started with no queues: it runs cluster duties but no jobs; give"
                " queues={...}, --queues NAME:LIMIT, OBAN_QUEUES or queues in oban.toml",
                node=self.config.node,
            )
        self.started = True
        telemetry.execute("oban.node.start", {}, {"node": self.config.node, "oban": self})

    async def stop(self) -> None:
        """Stop fetching, give running jobs ``shutdown_grace``, interrupt the rest and wait for
        each to end, flush the outcomes, then release the heartbeat rows.

        A stop still under way after ``STOP_REPORT_EVERY`` seconds says where it waits, and
        says it again at that pace: a shutdown held up by a lock, a pool or a hook is then
        found in the log, not guessed at."""
        task = asyncio.current_task()
        report = None if task is None else _StopReport(self.config.node, task)
        try:
            await self._stop()
        finally:
            if report is not None:
                report.cancel()

    async def _stop(self) -> None:
        if not self.started:
            await self._close_results()
            await self.close()
            return
        self.started = False
        if self.queues is not None:
            # Every queue, those a signal is stopping too: jobs get the grace, outcomes are
            # flushed, then the heartbeat rows are given up.
            await self.queues.stop_all()
        if self.queues is not None and self.queues.unreachable:
            # The flush or the release went unanswered for its whole timeout (a silent
            # network): each step below would wait on the database as long again. Severed,
            # what still waits on the pool fails now and what comes later fails at once, so
            # the stop ends in bounded time; the acks left are logged by ``acker.stop``.
            log.error(
                "database out of reach at stop: the pool's connections are severed, the rest"
                " of the stop goes without it",
                node=self.config.node,
            )
            await self._pools.abort()
        if self.acker is not None:
            await self.acker.stop()
        if self.announcer is not None:
            await self.announcer.stop()
            self.announcer = None
        if self.progress is not None:
            await self.progress.stop()
            self.progress = None
        await self._close_results()
        for duty in reversed(self.duties):
            with contextlib.suppress(Exception):
                await duty.stop()
        self.duties = []
        if self.peer is not None:
            with contextlib.suppress(Exception):
                await self.peer.stop()
            self.peer = None
        if self.liveness is not None:
            await self.liveness.stop()
            self.liveness = None
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                await self.notifier.stop()
            self.notifier = None
        self.threads.shutdown(wait=False, cancel_futures=True)
        await self.processes.close()
        telemetry.execute("oban.node.stop", {}, {"node": self.config.node, "oban": self})
        await self.close()

    # -- liveness -----------------------------------------------------------------------------

    async def _own_conninfo(self) -> str:
        """A conninfo for the heartbeat thread's own connection, from the DSN or the pool."""
        if self.dsn:
            return self.dsn
        conninfo: Any = self.pool.conninfo
        if callable(conninfo):
            conninfo = conninfo()
            if inspect.isawaitable(conninfo):
                conninfo = await conninfo
        # Keyword arguments of the pool's connections that are libpq parameters (a password,
        # a host), not psycopg's own connection options.
        kwargs = self.pool.kwargs if isinstance(self.pool.kwargs, dict) else {}
        options = {
            k: v
            for k, v in kwargs.items()
            if k not in _PSYCOPG_OPTIONS and isinstance(v, str | int)
        }
        return make_conninfo(str(conninfo), **options)

    @property
    def producers(self) -> dict[str, Producer]:
        """This node's producers by queue (empty when stopped)."""
        return {} if self.queues is None else self.queues.producers

    def _fence(self, interrupt: bool) -> None:
        if self.queues is not None:
            self.queues.fence(interrupt)

    def _unfence(self) -> None:
        log.info("heartbeat written again: fetching resumes", node=self.config.node)
        if self.queues is not None:
            self.queues.unfence()

    def _running_workers(self) -> list[str]:
        return [] if self.queues is None else self.queues.running_workers()

    def _process_limit(self, queue: str) -> int:
        # Worker processes of a queue: its ``processes`` setting, else its live limit.
        spec = self.config.queues.get(queue)
        if spec is not None and spec.processes is not None:
            return spec.processes
        producer = self.producers.get(queue)
        if producer is not None:
            return producer.limit
        return spec.limit if spec is not None else 1

    async def _start_notifier(self) -> None:
        source = self.config.notifier_dsn or self.dsn or self.pool.conninfo
        self.notifier = Notifier(self.config, source, pool=self.pool)
        self.notifier.listen("insert", self._on_insert)
        self.notifier.listen("signal", self._on_signal)
        self.notifier.on_reconnect(self._wake_all)
        await self.notifier.start()
        try:
            await self.notifier.wait_listening()
        except TimeoutError:
            log.warning("notifier not listening yet: queues rely on polling until it is")

    async def _queue_specs(self) -> dict[str, QueueConfig]:
        """The configured queues, with the settings persisted for the cluster laid over them."""
        specs = dict(self.config.queues)
        if not specs:
            return specs
        try:
            found = await self._run(persisted.stored(self.queries, list(specs)), None)
        except psycopg.errors.UndefinedTable:
            # A schema Elixir migrated has no table of ours: nothing was persisted.
            return specs
        for queue, opts in found.items():
            try:
                specs[queue] = persisted.apply(specs[queue], opts)
            except ValueError as error:
                log.warning("persisted queue settings ignored", queue=queue, error=repr(error))
            else:
                log.info("queue settings persisted for the cluster applied", queue=queue, **opts)
        return specs

    async def _start_duties(self) -> None:
        if self.config.peer:
            self.peer = Peer(self)
            self.peer.start()
        self.duties = build(self)
        # Workflow jobs acked here wake the releaser right after their batch is written.
        releaser = Releaser(self)
        if self.acker is not None:
            self.acker.on_followed = releaser.follow
        self.duties.append(releaser)
        for duty in self.duties:
            duty.start()

    def _wake_all(self, *_: Any) -> None:
        if self.queues is not None:
            self.queues.wake_all()

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
        queues = self.queues
        if queues is None:
            return
        action = payload.get("action")
        queue = payload.get("queue")
        if action == "pkill":
            job_id = payload.get("job_id")
            for producer in self.producers.values():
                if producer.pkill(job_id, PKILL_GRACE):  # type: ignore[arg-type]
                    break
            return
        if not isinstance(queue, str):
            return
        if action == "start":
            if self.started:
                limit = payload.get("limit", 10)
                change = FlowChange.of(payload)
                flow = None if change is None else Flow.scaled(None, change)
                queues.start(queue, limit, paused=bool(payload.get("paused", False)), flow=flow)
        elif action == "stop":
            queues.stop_soon(queue)
        elif action == "pause":
            queues.pause(queue)
        elif action == "resume":
            queues.resume(queue)
        elif action == "scale":
            # Validated first: a bad limit leaves the queue as it was, not half scaled.
            change = FlowChange.of(payload)
            if "limit" in payload:
                queues.scale(queue, payload["limit"])
            if "paused" in payload:
                queues.set_paused(queue, bool(payload["paused"]))
            if change is not None:
                queues.change_flow(queue, change)

    # -- signals sent: pause_queue, scale_queue... are the Client's (client/signals.py) -------

    # -- results and progress -----------------------------------------------------------------

    async def _close_results(self) -> None:
        results, self._results = self._results, None
        if results is not None:
            await results.close()

    @property
    def results(self) -> Results:
        """This instance's results hub: one LISTEN (the node's notifier once started)."""
        if self._results is None:
            self._results = Results(self, self.notifier)
        return self._results

    async def wait_for(
        self,
        job: Job | int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        recheck: float | None = RECHECK,
    ) -> Any:
        """The value ``job`` recorded once it completes (None when it recorded nothing), on
        whichever node, Python or Elixir, runs it. Raises ``JobDiscarded``/``JobCancelled``
        carrying the last error, ``JobNotFound``, ``WaitTimeout``, or ``WaitStopped`` when this
        node stops first (see docs/results.md)."""
        return await self.results.wait_for(job, timeout=timeout, recheck=recheck)

    def watch(
        self,
        job: Job | int,
        *,
        timeout: float | None = None,
        recheck: float | None = RECHECK,
    ) -> AsyncIterator[Progress]:
        """``async for report in oban.watch(job)``: its progress reports in order, until it
        ends (see docs/progress.md)."""
        return self.results.watch(job, timeout=timeout, recheck=recheck)

    def wait_for_sync(
        self, job: Job | int, *, timeout: float | None = None, recheck: float | None = RECHECK
    ) -> Any:
        """``wait_for`` from sync code (a script): its own connection for the wait."""
        return wait_for_sync(self, job, timeout=timeout, recheck=recheck)

    async def send_message(self, workflow_id: str, name: str, payload: Any = None) -> int:
        """Send message ``name`` to a workflow (``oban_py.workflows.send``): its steps waiting
        for it keep the payload and run once their dependencies completed."""
        return await send_workflow_message(workflow_id, name, payload, oban=self)

    def check_queue(self, queue: str) -> dict[str, Any] | None:
        """This node's view of ``queue``: limit, paused, running ids... (None if not running)."""
        producer = self.producers.get(queue)
        return None if producer is None else producer.check()

    def check_all_queues(self) -> list[dict[str, Any]]:
        return [p.check() for p in self.producers.values()]


class _StopReport:
    """Logs where a node's stop waits, every ``STOP_REPORT_EVERY`` seconds until cancelled."""

    def __init__(self, node: str, task: asyncio.Task[Any]) -> None:
        self.node = node
        self.task = task
        self.started = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(STOP_REPORT_EVERY, self._report)

    def _report(self) -> None:
        log.warning(
            "node still stopping",
            node=self.node,
            stopping_for=round(time.monotonic() - self.started, 1),
            waiting_in=awaiting(self.task),
        )
        self._timer = self._loop.call_later(STOP_REPORT_EVERY, self._report)

    def cancel(self) -> None:
        self._timer.cancel()
