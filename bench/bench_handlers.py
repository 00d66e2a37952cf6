"""Handlers the benchmark's worker process runs."""

from __future__ import annotations

import time

from jobwire.worker import HandlerRegistry, JobContext

registry = HandlerRegistry()


@registry.handler("noop")
async def noop(ctx: JobContext) -> None:
    """Do nothing: the benchmark measures the queue, not the work."""


@registry.handler("stamp")
async def stamp(ctx: JobContext) -> float:
    """Return when the handler started, for enqueue→start latency."""
    return time.time()
