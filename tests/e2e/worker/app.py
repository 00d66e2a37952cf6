"""Handlers for the end-to-end tests, run by ``python -m jobwire.worker`` in a child process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from jobwire.worker import HandlerRegistry, JobContext, NonRetryableError

registry = HandlerRegistry()
not_a_registry = object()


@registry.handler("e2e:slow")
async def slow(ctx: JobContext) -> dict[str, Any]:
    """Announce the first attempt in ``payload["marker"]``, then take ``payload["sleep"]`` s."""
    if ctx.attempt == 1:
        await asyncio.to_thread(Path(ctx.payload["marker"]).write_text, str(os.getpid()))
        await asyncio.sleep(ctx.payload["sleep"])
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@registry.handler("e2e:stuck")
def stuck(ctx: JobContext) -> None:
    """A sync handler that ignores cancellation for ``payload["sleep"]`` s."""
    Path(ctx.payload["marker"]).write_text(str(os.getpid()))
    time.sleep(ctx.payload["sleep"])


@registry.handler("e2e:echo")
def echo(ctx: JobContext) -> Any:
    return ctx.payload


@registry.handler("e2e:fail")
def fail(ctx: JobContext) -> None:
    """Fails for good at once: the job ends dead with this message."""
    raise NonRetryableError(f"cannot do {ctx.payload!r}")
