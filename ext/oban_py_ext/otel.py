"""OpenTelemetry: a span per job inserted and per job executed, joined by trace context in ``meta``.

``instrument()`` once at start-up (after configuring the SDK) and every insert through
``oban_py`` opens a ``PRODUCER`` span ``send <queue>`` and writes the W3C trace context into the
job's ``meta`` through the global propagator (``traceparent``, and ``tracestate`` when set).
These are the keys Elixir's ``opentelemetry_oban`` writes, so jobs enqueued by Elixir with
``OpentelemetryOban.insert`` continue their trace here and the other way round; Elixir Oban
itself ignores meta keys it does not know. Each execution is a ``CONSUMER`` span
``process <queue>``, a child of the enqueuing span (``link_only=True`` starts a new trace with
only a link to it, as ``opentelemetry_oban`` does), with the messaging semantic conventions'
attributes and ``messaging.oban.*`` extras.

    from oban_py_ext import otel
    otel.instrument()                     # uses the global TracerProvider
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from oban_py import Job, telemetry
from oban_py.hooks import add_insert_hook, remove_insert_hook

HOOK_ID = "oban_py_ext.otel"
SYSTEM = "oban"


@dataclass
class _Running:
    span: Span
    token: object


@dataclass
class _Instrumentation:
    tracer: trace.Tracer
    link_only: bool
    running: dict[int, _Running] = field(default_factory=dict)

    def on_insert(self, job: Job) -> Job:
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": job.queue,
            "messaging.oban.worker": job.worker,
            "messaging.oban.priority": job.priority,
            "messaging.oban.max_attempts": job.max_attempts,
        }
        with self.tracer.start_as_current_span(
            f"send {job.queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        if not carrier:
            return job
        # A copy: the caller's Job must not change under it because it was inserted.
        return job.model_copy(update={"meta": {**job.meta, **carrier}})

    def on_event(
        self, event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> None:
        job: Job = meta["job"]
        if event == "oban.job.start":
            self._start(job)
        else:
            self._stop(job, meta, failed=event == "oban.job.exception")

    def _start(self, job: Job) -> None:
        carrier = {k: v for k, v in job.meta.items() if isinstance(v, str)}
        remote = propagate.extract(carrier)
        remote_span = trace.get_current_span(remote).get_span_context()
        links = [Link(remote_span)] if remote_span.is_valid else []
        parent = context.Context() if self.link_only else remote
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
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        # The worker runs in the task that emitted the event: make the span current for it.
        token = context.attach(trace.set_span_in_context(span))
        self.running[id(job)] = _Running(span, token)

    def _stop(self, job: Job, meta: Mapping[str, Any], *, failed: bool) -> None:
        running = self.running.pop(id(job), None)
        if running is None:
            return
        state = meta.get("state")
        span = running.span
        span.set_attribute("messaging.oban.state", str(state))
        result = meta.get("result")
        if isinstance(result, BaseException):
            span.record_exception(result)
        if failed:
            span.set_status(Status(StatusCode.ERROR, type(result).__name__))
        span.end()
        # Detaching from another context only loses the restore; the span is already ended.
        with contextlib.suppress(Exception):
            context.detach(running.token)  # type: ignore[arg-type]


_current: _Instrumentation | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None, *, link_only: bool = False
) -> None:
    """Trace inserts and executions (idempotent; a second call replaces the first)."""
    global _current
    uninstrument()
    tracer = trace.get_tracer("oban_py_ext.otel", tracer_provider=tracer_provider)
    _current = _Instrumentation(tracer, link_only)
    add_insert_hook(HOOK_ID, _current.on_insert)
    telemetry.attach(
        HOOK_ID, ["oban.job.start", "oban.job.stop", "oban.job.exception"], _current.on_event
    )


def uninstrument() -> None:
    """Stop tracing; spans of jobs still running are ended."""
    global _current
    remove_insert_hook(HOOK_ID)
    telemetry.detach(HOOK_ID)
    if _current is not None:
        for running in _current.running.values():
            running.span.end()
        _current = None
