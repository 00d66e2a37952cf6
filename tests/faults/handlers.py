"""Handlers of the fault suite's worker processes: every run is written down first.

Each execution appends one line, ``job_id attempt pid start_time``, to
``$FAULTS_LEDGER/<pid>.log`` with one unbuffered ``write``: a SIGKILL a moment
later cannot take it back, the kernel already has it. ``fleet.Ledger`` reads
the files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from jobwire.worker import HandlerRegistry, JobContext

registry = HandlerRegistry()
_ledger: int | None = None


def _record(ctx: JobContext) -> None:
    global _ledger
    if _ledger is None:
        path = Path(os.environ["FAULTS_LEDGER"]) / f"{os.getpid()}.log"
        _ledger = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_ledger, f"{ctx.id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n".encode())


@registry.handler("work")
async def work(ctx: JobContext) -> None:
    """Record the run, then take ``payload["seconds"]`` (default 0)."""
    _record(ctx)
    await asyncio.sleep(ctx.payload.get("seconds", 0))


@registry.handler("first_attempt_stalls")
async def first_attempt_stalls(ctx: JobContext) -> None:
    """Record the run; the first attempt then takes ``payload["seconds"]``, a later one none.

    A fault that catches it on its first attempt is sure to catch it mid-run.
    """
    _record(ctx)
    if ctx.attempt == 1:
        await asyncio.sleep(ctx.payload["seconds"])


@registry.handler("poison")
async def poison(ctx: JobContext) -> None:
    """Record the run, then crash the whole worker process, every time."""
    _record(ctx)
    os.kill(os.getpid(), signal.SIGKILL)
