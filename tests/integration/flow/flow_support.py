"""Helpers of the flow control tests: recorded runs, batched enqueues, queue configs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from jobwire.v1 import flow_control_pb2, queue_service_pb2
from jobwire.worker import HandlerRegistry, JobContext, Worker

from support import Producer

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
    producer: Producer, queue: str, keys: Sequence[str], type: str = "work", **fields: Any
) -> list[str]:
    """Enqueue one job per entry of ``keys`` (in batches of 1000); return their ids."""
    ids: list[str] = []
    for start in range(0, len(keys), 1000):
        batch = [
            queue_service_pb2.EnqueueJobRequest(
                queue=queue,
                type=type,
                payload=f'{{"key": "{key}", "seconds": {fields.get("seconds", 0)}}}'.encode(),
                content_type="application/json",
                concurrency_key=key,
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
