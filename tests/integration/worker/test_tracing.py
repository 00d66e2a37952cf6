"""OpenTelemetry: a job's handler span is a child of its enqueue span."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobwire.client import Client
from jobwire.client import _tracing as client_tracing
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, Worker
from jobwire.worker import _tracing as worker_tracing


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Spans of the SDKs' tracers, exported in memory for one test.

    The SDK is patched in rather than installed globally: the global provider
    can be set only once per process and would then trace every later test.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(client_tracing, "_TRACER", provider.get_tracer("jobwire.client"))
    monkeypatch.setattr(worker_tracing, "_TRACER", provider.get_tracer("jobwire.worker"))
    return exporter


def test_handler_span_continues_the_producers_trace(
    embedded_gateway: EmbeddedGateway, spans: InMemorySpanExporter
) -> None:
    registry = HandlerRegistry()
    seen: dict[str, int] = {}

    @registry.handler("traced:sync")
    def sync_handler(ctx: JobContext) -> None:
        seen["sync"] = trace.get_current_span().get_span_context().trace_id

    @registry.handler("traced:async")
    async def async_handler(ctx: JobContext) -> None:
        seen["async"] = trace.get_current_span().get_span_context().trace_id

    worker = Worker(embedded_gateway.address, registry=registry, worker_id="tracer")
    worker.start()
    try:
        tracer = client_tracing._TRACER
        assert tracer is not None
        with Client(embedded_gateway.address) as client, tracer.start_as_current_span("request"):
            jobs = [client.enqueue("traced:sync"), client.enqueue("traced:async")]
            for job in jobs:
                job.wait(timeout=10)
            assert "traceparent" in client.get_job(jobs[0].id).attributes
    finally:
        worker.stop()

    by_name = {span.name: span for span in spans.get_finished_spans()}
    request = by_name["request"]
    for job_type in ("traced:sync", "traced:async"):
        enqueue, process = by_name[f"enqueue {job_type}"], by_name[f"process {job_type}"]
        assert enqueue.kind is trace.SpanKind.PRODUCER
        assert process.kind is trace.SpanKind.CONSUMER
        assert enqueue.parent is not None
        assert process.parent is not None
        assert enqueue.parent.span_id == request.context.span_id
        assert process.parent.span_id == enqueue.context.span_id
        assert process.context.trace_id == request.context.trace_id
        assert process.attributes is not None
        assert process.attributes["jobwire.worker_id"] == "tracer"
    assert seen == {"sync": request.context.trace_id, "async": request.context.trace_id}


def test_failed_handler_marks_its_span(
    embedded_gateway: EmbeddedGateway, spans: InMemorySpanExporter
) -> None:
    registry = HandlerRegistry()

    @registry.handler("traced:boom")
    def boom(ctx: JobContext) -> None:
        raise ValueError("boom")

    worker = Worker(embedded_gateway.address, registry=registry)
    worker.start()
    try:
        with Client(embedded_gateway.address) as client:
            job = client.enqueue("traced:boom", max_retries=0)
            with pytest.raises(Exception, match="boom"):
                job.wait(timeout=10)
    finally:
        worker.stop()
    [process] = [s for s in spans.get_finished_spans() if s.name == "process traced:boom"]
    assert not process.status.is_ok
    assert [event.name for event in process.events] == ["exception"]


def test_without_opentelemetry_jobs_carry_no_trace(
    embedded_gateway: EmbeddedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the client does when the "otel" extra is not installed.
    monkeypatch.setattr(client_tracing, "_TRACER", None)
    with Client(embedded_gateway.address) as client:
        job = client.enqueue("untraced", attributes={"k": "v"})
        assert client.get_job(job.id).attributes == {"k": "v"}
