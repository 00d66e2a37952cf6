"""OpenTelemetry context propagation into job attributes (the ``otel`` extra).

With ``opentelemetry-api`` installed, every enqueued job gets a PRODUCER span
whose W3C ``traceparent`` (and ``tracestate``) go into the job's attributes; a
worker continues the trace from there. Without it, nothing happens. The API is
a no-op until the application configures an SDK, so the cost is small either way.
"""

from __future__ import annotations

from collections.abc import MutableMapping

try:
    from opentelemetry import propagate, trace

    _TRACER: trace.Tracer | None = trace.get_tracer("jobwire.client")
except ImportError:  # the "otel" extra is not installed
    _TRACER = None


def inject(job_type: str, queue: str, attributes: MutableMapping[str, str]) -> None:
    """Record an enqueue span for one job and write its context into ``attributes``."""
    if _TRACER is None:
        return
    with _TRACER.start_as_current_span(
        f"enqueue {job_type}",
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "jobwire", "messaging.destination.name": queue},
    ):
        propagate.inject(attributes)
