"""Helpers of the flow control tests: recorded runs, batched enqueues, queue configs."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from jobwire.v1 import flow_control_pb2, queue_service_pb2
from jobwire.worker import HandlerRegistry, JobContext, Worker

from support import Producer, seconds

FLOW_PROVIDERS = [
    pytest.mark.contract,
    pytest.mark.providers("memory", "sqlite", "postgres", "redis"),
]
"""The marks of a test that runs on every provider enforcing flow control."""
F = TypeVar("F", bound=Callable[..., Any])


def on_flow_providers(test: F) -> F:
    """Run ``test`` on every provider enforcing flow control (``pytestmark`` does a module)."""
    for mark in FLOW_PROVIDERS:
        test = mark(test)
    return test


RATE, BURST, SPAN = 50, 10, 10.0
"""The rate tests' limit and window, the issue's figures: over SPAN seconds at most
burst + rate * span admitted, and at least 90 % of that. Ten seconds, not fewer: a busy
machine may stall the claims past what the bucket holds (burst / rate = 0.2 s), and
the tokens that overflow are gone; over 3 s one stall of half a second cost more than
the 10 % margin."""
RATE_JOBS = 700
"""Jobs enqueued for a rate test: more than SPAN can admit."""
STAMP_SLACK = 0.05
"""Seconds a claim may stamp its jobs after the bucket admitted them (no await between,
but a busy machine may pause the process there)."""


def assert_rate_held(admitted: Sequence[float]) -> None:
    """Check the rate tests' bounds on the sorted times their jobs were admitted.

    Any span of t seconds admits at most burst + rate * t; the SPAN after the
    first admission at least 90 % of burst + rate * SPAN.
    """
    for i, start in enumerate(admitted):
        for span in (0.1, 1.0, SPAN):
            end = bisect.bisect_right(admitted, start + span)
            assert end - i <= BURST + RATE * (span + STAMP_SLACK), (start, span, end - i)
    within = bisect.bisect_right(admitted, admitted[0] + SPAN)
    assert within >= 0.9 * (BURST + RATE * SPAN), (within, "longest gaps", _gaps(admitted)[:5])


def _gaps(times: Sequence[float]) -> list[float]:
    """The gaps between consecutive ``times``, longest first (why a rate admitted too few)."""
    return sorted((b - a for a, b in itertools.pairwise(times)), reverse=True)


Config = flow_control_pb2.QueueConfig
StartWorkers = Callable[..., Awaitable[list[Worker]]]
"""The ``start_workers`` fixture: ``await start_workers(count, queues, **worker_options)``."""


@dataclass(frozen=True)
class Run:
    """One handler run: its job's key and when it started and ended (``time.monotonic``)."""

    job_id: str
    key: str
    started: float
    ended: float


def most_at_once(runs: Sequence[Run]) -> int:
    """The most runs overlapping at one instant (an end before a start at the same time)."""
    events = sorted(
        [(run.started, 1) for run in runs] + [(run.ended, -1) for run in runs],
        key=lambda event: (event[0], event[1]),
    )
    return max(itertools.accumulate(change for _, change in events), default=0)


class Recorder:
    """Handlers that write down every run; ``payload = {"key": ..., "seconds": ...}``."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.registry = HandlerRegistry()
        self.registry.handler("work")(self._work)
        self._ran = asyncio.Event()

    async def _work(self, ctx: JobContext) -> None:
        started = time.monotonic()
        await asyncio.sleep(ctx.payload.get("seconds", 0))
        self.runs.append(Run(ctx.id, ctx.payload.get("key", ""), started, time.monotonic()))
        self._ran.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until ``count`` runs ended."""
        async with asyncio.timeout(timeout):
            while len(self.runs) < count:
                self._ran.clear()
                await self._ran.wait()


async def enqueue_all(
    producer: Producer,
    queue: str,
    keys: Sequence[str],
    type: str = "work",
    delay: float | None = None,
    **fields: Any,
) -> list[str]:
    """Enqueue one job per entry of ``keys`` (in batches of 1000); return their ids.

    ``delay``: seconds until the jobs are due.
    """
    ids: list[str] = []
    for start in range(0, len(keys), 1000):
        batch = [
            queue_service_pb2.EnqueueJobRequest(
                queue=queue,
                type=type,
                payload=f'{{"key": "{key}", "seconds": {fields.get("seconds", 0)}}}'.encode(),
                content_type="application/json",
                concurrency_key=key,
                delay=None if delay is None else seconds(delay),
            )
            for key in keys[start : start + 1000]
        ]
        response = await producer.stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=batch)
        )
        ids += [result.job.id for result in response.results]
    return ids


async def configure(producer: Producer, queue: str, *paths: str, **fields: Any) -> Config:
    """``UpdateQueueConfig`` of ``queue`` with ``fields``, changing ``paths`` (all if none)."""
    request = queue_service_pb2.UpdateQueueConfigRequest(config=Config(queue=queue, **fields))
    request.update_mask.paths.extend(paths)
    return (await producer.stub.UpdateQueueConfig(request)).config


async def stats(producer: Producer, queue: str) -> queue_service_pb2.QueueStats:
    request = queue_service_pb2.GetQueueStatsRequest(queue=queue)
    [row] = (await producer.stub.GetQueueStats(request)).queues
    return row
