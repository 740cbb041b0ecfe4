"""OpenTelemetry: the enqueuing span is the parent of the execution span, through ``meta``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from nodekit import wait_state
from oban_py_ext import otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from oban_py import Client, Job, Oban, Worker


class Traced(Worker):
    name = "Py.Ext.Otel.Traced"

    async def process(self, job: Job) -> None:
        return None


class TracedFails(Worker):
    name = "Py.Ext.Otel.Fails"

    async def process(self, job: Job) -> None:
        raise RuntimeError("traced boom")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    otel.uninstrument()


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


async def run_one(dsn: str, job: Job, provider: TracerProvider) -> dict[str, Any]:
    tracer = provider.get_tracer("test")
    async with Client(dsn=dsn, name="OtelClient") as client:
        with tracer.start_as_current_span("POST /signup"):
            inserted = await client.enqueue(job)
    async with (
        Oban(dsn=dsn, queues={"traced": 2}, peer=False, name="OtelNode"),
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        return await wait_state(conn, inserted.id or 0, "completed", "retryable")


async def test_execution_span_is_child_of_the_enqueuing_span(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    row = await run_one(dsn, Traced.new({}, queue="traced"), provider)

    request = named(exporter, "POST /signup")
    send = named(exporter, "send traced")
    process = named(exporter, "process traced")
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request.context.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "oban"
    assert process.attributes["messaging.destination.name"] == "traced"
    assert process.attributes["messaging.oban.worker"] == "Py.Ext.Otel.Traced"
    assert process.attributes["messaging.oban.state"] == "completed"
    # The W3C key opentelemetry_oban (Elixir) writes and reads: traces cross languages.
    assert row["meta"]["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


async def test_link_only_starts_a_new_trace_linked_to_the_enqueuer(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider, link_only=True)
    await run_one(dsn, Traced.new({}, queue="traced"), provider)

    send = named(exporter, "send traced")
    process = named(exporter, "process traced")
    assert process.parent is None
    assert process.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]


async def test_failed_execution_span_records_the_error(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    row = await run_one(dsn, TracedFails.new({}, queue="traced"), provider)

    assert row["state"] == "retryable"
    process = named(exporter, "process traced")
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]


async def test_insert_hook_leaves_the_callers_job_untouched(dsn: str, spans: Any) -> None:
    provider, _ = spans
    otel.instrument(provider)
    job = Traced.new({}, queue="traced", meta={"own": 1})
    async with Client(dsn=dsn, name="OtelClient") as client:
        inserted = await client.enqueue(job)
    assert job.meta == {"own": 1}
    assert inserted.meta["own"] == 1
    assert "traceparent" in inserted.meta


async def test_uninstrument_stops_writing_trace_context(dsn: str, spans: Any) -> None:
    provider, _ = spans
    otel.instrument(provider)
    otel.uninstrument()
    async with Client(dsn=dsn, name="OtelClient") as client:
        inserted = await client.enqueue(Traced.new({}, queue="traced"))
    assert inserted.meta == {}


SEEN_IN_THREAD: list[int] = []


class TracedSync(Worker):
    name = "Py.Ext.Otel.Sync"

    def process(self, job: Job) -> None:
        from opentelemetry import trace

        SEEN_IN_THREAD.append(trace.get_current_span().get_span_context().span_id)


async def test_a_sync_workers_thread_runs_inside_the_process_span(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    SEEN_IN_THREAD.clear()
    await run_one(dsn, TracedSync.new({}, queue="traced"), provider)
    process = named(exporter, "process traced")
    assert [process.context.span_id] == SEEN_IN_THREAD


async def test_a_bulk_insert_gives_each_job_a_sibling_send_span(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    tracer = provider.get_tracer("test")
    async with Client(dsn=dsn, name="OtelClient") as client:
        with tracer.start_as_current_span("batch"):
            jobs = await client.enqueue_many([Traced.new({}, queue=q) for q in ("a", "b")])
    batch = named(exporter, "batch")
    sends = [named(exporter, "send a"), named(exporter, "send b")]
    assert [s.parent.span_id if s.parent else None for s in sends] == [batch.context.span_id] * 2
    assert [j.meta["traceparent"].split("-")[2] for j in jobs] == [
        format(s.context.span_id, "016x") for s in sends
    ]


def test_a_failed_sync_insert_ends_its_send_span_with_the_error(dsn: str, spans: Any) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    with (
        Client(dsn=dsn, name="OtelClient") as client,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        conn.execute("DROP TABLE oban_jobs CASCADE")
        with pytest.raises(psycopg.Error):
            client.enqueue_sync(Traced.new({}, queue="traced"), conn=conn)
    send = named(exporter, "send traced")
    assert send.status.status_code is StatusCode.ERROR
