"""OpenTelemetry: a span per job inserted and per job executed, joined by trace context in ``meta``.

``instrument()`` once at start-up (after configuring the SDK) registers a process-wide
middleware (``oban_py.middleware``): every insert through ``oban_py`` (async, sync, Django's)
runs inside a ``PRODUCER`` span ``send <queue>`` per job, which ends when the insert does (with
the insert's error, if it fails), and writes the W3C trace context into the
job's ``meta`` through the global propagator (``traceparent``, and ``tracestate`` when set).
These are the keys Elixir's ``opentelemetry_oban`` writes, so jobs enqueued by Elixir with
``OpentelemetryOban.insert`` continue their trace here and the other way round; Elixir Oban
itself ignores meta keys it does not know. Each execution is a ``CONSUMER`` span
``process <queue>`` around the whole attempt (current in the worker's task, and in the pool
thread of a plain ``def process``), ended with the state the attempt leaves the job in, a child
of the enqueuing span (``link_only=True`` starts a new trace with
only a link to it, as ``opentelemetry_oban`` does), with the messaging semantic conventions'
attributes and ``messaging.oban.*`` extras.

    from oban_py_ext import otel
    otel.instrument()                     # uses the global TracerProvider
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from oban_py import Job
from oban_py.middleware import (
    AttemptOutcome,
    InsertNext,
    InsertNextSync,
    Middleware,
    ThreadNext,
    WorkNext,
    add_middleware,
    remove_middleware,
)

MIDDLEWARE_ID = "oban_py_ext.otel"
SYSTEM = "oban"


class _Instrumentation(Middleware):
    def __init__(self, tracer: trace.Tracer, link_only: bool) -> None:
        self.tracer = tracer
        self.link_only = link_only
        #: the span of each attempt by job, for its ``work_in_thread`` in the pool thread
        self.running: dict[int, Span] = {}

    # -- inserts: one PRODUCER span around the insert of each job ------------------------------

    @contextlib.contextmanager
    def _sending(self, jobs: list[Job]) -> Iterator[list[Job]]:
        # Siblings under the caller's current span, one per job: not nested in each other.
        spans = [
            self.tracer.start_span(
                f"send {job.queue}", kind=SpanKind.PRODUCER, attributes=_send_attributes(job)
            )
            for job in jobs
        ]
        traced = []
        for job, span in zip(jobs, spans, strict=True):
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            # A copy: the caller's Job must not change under it because it was inserted.
            traced.append(
                job.model_copy(update={"meta": {**job.meta, **carrier}}) if carrier else job
            )
        try:
            yield traced
        except BaseException as error:
            for span in spans:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
        with self._sending(jobs) as traced:
            return await call_next(traced)

    def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
        with self._sending(jobs) as traced:
            return call_next(traced)

    # -- attempts: one CONSUMER span around each ------------------------------------------------

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        carrier = {k: v for k, v in job.meta.items() if isinstance(v, str)}
        remote = propagate.extract(carrier)
        remote_span = trace.get_current_span(remote).get_span_context()
        links = [Link(remote_span)] if remote_span.is_valid else []
        parent = context.Context() if self.link_only else remote
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=_process_attributes(job),
            links=links,
        )
        self.running[id(job)] = span
        try:
            # Current for the worker's code: it runs in this task (an async ``process``).
            with trace.use_span(span, end_on_exit=False):
                outcome = await call_next()
        finally:
            self.running.pop(id(job), None)
        span.set_attribute("messaging.oban.state", outcome.state)
        if outcome.error is not None:
            span.record_exception(outcome.error)
            span.set_status(Status(StatusCode.ERROR, type(outcome.error).__name__))
        span.end()
        return outcome

    def work_in_thread(self, job: Job, call_next: ThreadNext) -> Any:
        # A plain ``def process`` runs in a pool thread, which does not inherit the task's
        # context: make the attempt's span current there too.
        span = self.running.get(id(job))
        if span is None:
            return call_next()
        with trace.use_span(span, end_on_exit=False):
            return call_next()


def _send_attributes(job: Job) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": job.queue,
        "messaging.oban.worker": job.worker,
        "messaging.oban.priority": job.priority,
        "messaging.oban.max_attempts": job.max_attempts,
    }


def _process_attributes(job: Job) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "messaging.oban.job_id": job.id or 0,
        "messaging.oban.worker": job.worker,
        "messaging.oban.priority": job.priority,
        "messaging.oban.attempt": job.attempt,
        "messaging.oban.max_attempts": job.max_attempts,
    }
    if job.scheduled_at is not None:
        attributes["messaging.oban.scheduled_at"] = job.scheduled_at.isoformat()
    return attributes


_current: _Instrumentation | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None, *, link_only: bool = False
) -> None:
    """Trace inserts and executions (idempotent; a second call replaces the first)."""
    global _current
    uninstrument()
    tracer = trace.get_tracer("oban_py_ext.otel", tracer_provider=tracer_provider)
    _current = _Instrumentation(tracer, link_only)
    add_middleware(MIDDLEWARE_ID, _current)


def uninstrument() -> None:
    """Stop tracing; spans of jobs still running end with their attempts."""
    global _current
    remove_middleware(MIDDLEWARE_ID)
    _current = None
