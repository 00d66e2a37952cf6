"""Prometheus metrics of the worker SDK (the ``metrics`` extra).

With ``prometheus-client`` installed, every worker in the process counts its
attempts in the default registry; serve them with
``prometheus_client.start_http_server`` or ``jobwire-worker --metrics-listen``.
Without it, nothing is recorded. Labels are the queue and the job type only.
"""

from __future__ import annotations

import functools

try:
    from prometheus_client import Counter, Gauge, Histogram, start_http_server

    _LABELS = ("queue", "type")
    ATTEMPTS: Counter | None = Counter(
        "jobwire_worker_attempts",
        "Finished handler attempts by outcome (succeeded, failed, timed out).",
        (*_LABELS, "outcome"),
    )
    RUNNING: Gauge | None = Gauge("jobwire_worker_running", "Handlers running now.")
    DURATION: Histogram | None = Histogram(
        "jobwire_worker_handler_duration_seconds",
        "Handler run time of the answered attempts.",
        _LABELS,
        buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 1800, float("inf")),
    )
except ImportError:  # the "metrics" extra is not installed
    ATTEMPTS = RUNNING = DURATION = None


def started() -> None:
    """Count a handler that starts."""
    if RUNNING is not None:
        RUNNING.inc()


def stopped() -> None:
    """Count a handler that returned, failed or was cancelled."""
    if RUNNING is not None:
        RUNNING.dec()


def answered(queue: str, job_type: str, outcome: str, seconds: float) -> None:
    """Count an attempt whose answer goes to the gateway."""
    if ATTEMPTS is not None and DURATION is not None:
        _attempts(queue, job_type, outcome).inc()
        _duration(queue, job_type).observe(seconds)


# Labelled series looked up once each: ``labels()`` checks the values and takes
# a lock on every call. Labels are queues and job types: few.
@functools.cache
def _attempts(queue: str, job_type: str, outcome: str) -> Counter:
    assert ATTEMPTS is not None
    return ATTEMPTS.labels(queue, job_type, outcome)


@functools.cache
def _duration(queue: str, job_type: str) -> Histogram:
    assert DURATION is not None
    return DURATION.labels(queue, job_type)


def serve(listen: str) -> None:
    """Serve the process's metrics on ``http://HOST:PORT/metrics`` from a thread.

    Raises:
        RuntimeError: ``prometheus-client`` (the ``metrics`` extra) is not installed.
    """
    if ATTEMPTS is None:
        raise RuntimeError(
            "metrics need prometheus-client; from the repository root: "
            "pip install './packages/jobwire-worker[metrics]'"
        )
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), host)
