"""OpenTelemetry handler spans (the ``otel`` extra).

With ``opentelemetry-api`` installed, each handler runs inside a CONSUMER span
whose parent is the context the producer put in the job's attributes
(W3C ``traceparent``), so the trace goes producer → gateway → worker. Without
it, handlers run with no span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

from jobwire.v1 import job_pb2

try:
    from opentelemetry import propagate, trace

    _TRACER: trace.Tracer | None = trace.get_tracer("jobwire.worker")
except ImportError:  # the "otel" extra is not installed
    _TRACER = None


# Without the extra every handler enters this one: nothing to build per job.
_NO_SPAN = contextlib.nullcontext()


def handler_span(job: job_pb2.Job, attempt: int, worker_id: str) -> AbstractContextManager[None]:
    """Make a span for one attempt of ``job`` current for the ``with`` block.

    An exception leaving the block is recorded on the span and marks it failed.
    """
    if _TRACER is None:
        return _NO_SPAN
    return _span(_TRACER, job, attempt, worker_id)


@contextlib.contextmanager
def _span(tracer: trace.Tracer, job: job_pb2.Job, attempt: int, worker_id: str) -> Iterator[None]:
    parent = propagate.extract(job.attributes)
    with tracer.start_as_current_span(
        f"process {job.type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "jobwire",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "jobwire.attempt": attempt,
            "jobwire.worker_id": worker_id,
        },
    ):
        yield
