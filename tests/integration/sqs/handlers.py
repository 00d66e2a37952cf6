"""Handlers of the SQS tests' worker processes (``python -m jobwire.worker``)."""

from __future__ import annotations

import asyncio

from jobwire.worker import HandlerRegistry, JobContext

registry = HandlerRegistry()


@registry.handler("sleep")
async def sleep(ctx: JobContext) -> None:
    """Take long enough to be killed in the middle."""
    await asyncio.sleep(60)
