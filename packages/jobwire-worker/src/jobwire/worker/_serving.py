"""Serving a gateway: one session after another, reconnecting with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import grpc.aio

from jobwire.worker._execution import Slots
from jobwire.worker._framing import SessionSettings
from jobwire.worker._registry import HandlerRegistry
from jobwire.worker._serializer import Serializer
from jobwire.worker._session import Session, SessionEnd

_logger = logging.getLogger("jobwire.worker")

#: Name prefix of the threads that run sync handlers.
HANDLER_THREAD_PREFIX = "jobwire-handler"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnection attempts: exponential, capped, jittered.

    The n-th consecutive failure waits ``min(maximum, initial * multiplier**n)``
    shortened by up to ``jitter`` of itself at random, so a fleet of workers
    does not reconnect in lockstep after a gateway restart. A session that
    opened resets the count.
    """

    initial: timedelta = timedelta(seconds=0.1)
    """Delay after the first failure."""
    maximum: timedelta = timedelta(seconds=10)
    """Longest delay."""
    multiplier: float = 2.0
    """Growth per consecutive failure."""
    jitter: float = 0.2
    """Fraction of each delay drawn at random (0 to 1)."""

    def __post_init__(self) -> None:
        if self.initial <= timedelta(0) or self.maximum < self.initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs multiplier >= 1 and 0 <= jitter <= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts (from 0)."""
        base = min(
            self.maximum.total_seconds(),
            self.initial.total_seconds() * self.multiplier ** min(failures, 64),
        )
        return base * (1 - self.jitter * random.random())  # not security


#: The reconnection delays a worker uses unless told otherwise (frozen, so sharing is safe).
DEFAULT_BACKOFF = Backoff()


@dataclass(slots=True, eq=False)
class Run:
    """State of one call to :meth:`Worker.run`, bound to its event loop."""

    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    session: Session | None = None
    session_task: asyncio.Task[SessionEnd] | None = None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class Gateway:
    """How to reach the gateway."""

    target: str
    credentials: grpc.ChannelCredentials | None
    options: Sequence[tuple[str, str | int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sessions:
    """Runs a worker's sessions, one after another, until its run stops."""

    gateway: Gateway
    settings: SessionSettings
    registry: HandlerRegistry
    serializer: Serializer
    concurrency: int
    reconnect: Backoff

    async def serve(self, run: Run) -> None:
        """Open sessions until ``run`` stops, reconnecting after each that ends."""
        settings = self.settings
        job_types = settings.job_types
        has_sync = any(not self.registry[t].is_async for t in job_types)
        executor = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix=HANDLER_THREAD_PREFIX)
            if has_sync
            else None
        )
        slots = Slots(self.concurrency)
        failures = 0
        said = False  # that no gateway answers, since the last session opened
        _logger.info(
            "worker %s starting: gateway %s, queues %s, %d job types, concurrency %d",
            settings.worker_id,
            self.gateway.target,
            ",".join(settings.queues),
            len(job_types),
            self.concurrency,
        )
        try:
            while not run.stop.is_set():
                end = await self._session(run, slots, executor)
                if end in (SessionEnd.STOPPED, SessionEnd.RETIRED) or run.stop.is_set():
                    break
                if run.session is not None and run.session.opened:
                    failures, said = 0, False
                delay = self.reconnect.delay(failures)
                failures += 1
                if end is SessionEnd.UNREACHABLE and not said:
                    said = True
                    _logger.warning(
                        "no gateway answers at %s; start one with `jobwire-gateway` "
                        "(it listens on 127.0.0.1:50051) or give its address with "
                        "--gateway HOST:PORT / $JOBWIRE_GATEWAY. Retrying quietly with backoff "
                        "(at most every %gs) until it answers",
                        self.gateway.target,
                        self.reconnect.maximum.total_seconds(),
                    )
                _logger.log(
                    logging.DEBUG if end is SessionEnd.UNREACHABLE else logging.INFO,
                    "reconnecting to %s in %.2fs",
                    self.gateway.target,
                    delay,
                )
                # TimeoutError is the normal way out: nobody stopped us meanwhile.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await run.stop.wait()
        finally:
            run.session = run.session_task = None
            if executor is not None:
                # Threads of abandoned sync handlers cannot be stopped; do
                # not wait for them here.
                executor.shutdown(wait=False, cancel_futures=True)

    async def _session(
        self, run: Run, slots: Slots, executor: ThreadPoolExecutor | None
    ) -> SessionEnd:
        gateway = self.gateway
        channel = (
            grpc.aio.insecure_channel(gateway.target, options=gateway.options)
            if gateway.credentials is None
            else grpc.aio.secure_channel(
                gateway.target, gateway.credentials, options=gateway.options
            )
        )
        try:
            session = Session(
                channel,
                self.settings,
                registry=self.registry,
                serializer=self.serializer,
                slots=slots,
                executor=executor,
                on_opened=self._on_opened,
            )
            run.session = session
            run.session_task = asyncio.create_task(session.run(), name="jobwire-session")
            try:
                return await run.session_task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if run.stop.is_set() and task is not None and not task.cancelling():
                    return SessionEnd.STOPPED  # shutdown() while connecting
                raise
        finally:
            await channel.close()

    def _on_opened(self, session: Session) -> None:
        _logger.info(
            "connected to %s: session %s, lease %gs, heartbeat %gs, %d credits",
            self.gateway.target,
            session.session_id,
            session.lease_duration,
            session.heartbeat_interval,
            session.max_in_flight,
        )
