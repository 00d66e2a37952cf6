"""Running delivered jobs: handler slots, the backlog, one task per handler, answers.

Jobs delivered beyond the concurrency limit wait in a local deque, not in
tasks. A finished handler's answer goes to the :class:`~._framing.Outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from jobwire.v1 import job_pb2
from jobwire.worker import _metrics, _tracing
from jobwire.worker._context import (
    JobContext,
    attempt_timeout,
    cancel_attempt,
    end_attempt,
    enter_attempt,
)
from jobwire.worker._errors import (
    HandlerNotFoundError,
    SerializationError,
    nack_for_exception,
    nack_for_timeout,
)
from jobwire.worker._framing import NackItem, Outbox, Response, Result
from jobwire.worker._registry import HandlerFunc, HandlerRegistry, RegisteredHandler
from jobwire.worker._serializer import Serializer

_logger = logging.getLogger("jobwire.worker")

_OCTET_STREAM = "application/octet-stream"


class Slots:
    """How many more handlers may start; shared by a worker's successive sessions.

    A sync handler's thread cannot be interrupted, so it keeps its slot until
    it returns, even after its job was revoked or its stream died.
    """

    def __init__(self, limit: int) -> None:
        self.free = limit
        #: Called on the loop whenever a slot frees up (the current session's pump).
        self.listener: Callable[[], None] | None = None

    def release(self) -> None:
        """Give a slot back and let the current session start a waiting job."""
        self.free += 1
        if self.listener is not None:
            self.listener()


class Execution:
    """One delivered job, from delivery until its answer is queued or it is dropped."""

    __slots__ = (
        "ctx",
        "deadline",
        "dropped",
        "expires_at",
        "handler",
        "lease_id",
        "started_at",
        "task",
        "timed_out",
    )

    def __init__(
        self,
        lease_id: str,
        ctx: JobContext,
        handler: RegisteredHandler | None,
        expires_at: float,
        deadline: float | None,
    ) -> None:
        self.lease_id = lease_id
        self.ctx = ctx
        self.handler = handler
        #: Loop time by which the lease needs extending (our conservative view).
        self.expires_at = expires_at
        #: Loop time of the job's timeout, if it has one.
        self.deadline = deadline
        self.task: asyncio.Task[None] | None = None
        #: Loop time the handler started, for the duration metric.
        self.started_at = 0.0
        #: Why the outcome will not be reported (revoked, stream lost), if so.
        self.dropped: str | None = None
        #: Set when our own timer ended the attempt.
        self.timed_out = False


def _run_sync(fn: HandlerFunc, ctx: JobContext, encode: Callable[[object], Result]) -> Result:
    # Runs in a worker thread: encoding the result here keeps a large
    # json.dumps off the event loop.
    return encode(fn(ctx))


class Runner:
    """The jobs delivered on one session: which run, which wait, how each ended.

    Args:
        loop: The session's event loop.
        worker_id: Id of the worker, for logs and spans.
        registry: Handlers by job type.
        serializer: Payload and result codec.
        slots: The worker's handler slots.
        executor: Thread pool for sync handlers (None when there are none).
        outbox: Where answers go.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker_id: str,
        *,
        registry: HandlerRegistry,
        serializer: Serializer,
        slots: Slots,
        executor: ThreadPoolExecutor | None,
        outbox: Outbox,
    ) -> None:
        self._loop = loop
        self._worker_id = worker_id
        self._registry = registry
        self._serializer = serializer
        self._slots = slots
        self._executor = executor
        self._outbox = outbox
        #: Every lease we hold and have not answered yet, by lease id.
        self.executions: dict[str, Execution] = {}
        self._backlog: deque[Execution] = deque()
        #: Delivered jobs whose answer is not yet decided (waiting or running).
        self.unfinished = 0
        #: Set once the session closes and no job is unfinished.
        self.idle = asyncio.Event()
        #: Set when the session began closing.
        self.closing = False
        #: Set when the stream is gone: nothing starts, nothing is answered.
        self.ended = False

    def accept(self, items: Sequence[Response.Delivery.Item], lease_duration: float) -> None:
        """Take delivered jobs and start as many as slots allow."""
        loop = self._loop
        now = loop.time()
        expires_at = now + lease_duration
        for item in items:
            job = item.job
            ctx = JobContext(
                job,
                lease_id=item.lease_id,
                attempt=item.attempt,
                worker_id=self._worker_id,
                serializer=self._serializer,
                progress_sink=self._on_progress,
                loop=loop,
            )
            timeout = attempt_timeout(ctx)
            ex = Execution(
                item.lease_id,
                ctx,
                self._registry.get(job.type),
                expires_at,
                None if timeout is None else now + timeout,
            )
            self.executions[item.lease_id] = ex
            self._backlog.append(ex)
        self.unfinished += len(items)
        _logger.debug("received %d jobs", len(items))
        self.pump()

    def pump(self) -> None:
        """Start waiting jobs while slots are free."""
        backlog, slots = self._backlog, self._slots
        while backlog and slots.free > 0 and not self.ended:
            ex = backlog.popleft()
            if ex.dropped is not None:
                continue
            slots.free -= 1
            ex.task = self._loop.create_task(self._execute(ex))

    async def _execute(self, ex: Execution) -> None:
        ctx = ex.ctx
        enter_attempt(ctx)
        handler = ex.handler
        thread: ConcurrentFuture[Result] | None = None
        # Not asyncio.timeout: the context must read as cancelled before the
        # handler sees its CancelledError, so the timer marks it first.
        timer = None if ex.deadline is None else self._loop.call_at(ex.deadline, self._time_out, ex)
        self._log(logging.DEBUG, ctx, "job %s attempt %d started", ctx.id, ctx.attempt)
        ex.started_at = self._loop.time()
        _metrics.started()
        try:
            try:
                # Inside the span, so that a sync handler's copied context has it too.
                with _tracing.handler_span(ctx.job, ctx.attempt, self._worker_id):
                    if handler is None:
                        raise HandlerNotFoundError(ctx.type)
                    if handler.is_async:
                        coro = cast("Awaitable[object]", handler.fn(ctx))
                        result = self._encode(await coro)
                    else:
                        assert self._executor is not None
                        thread = self._executor.submit(
                            contextvars.copy_context().run, _run_sync, handler.fn, ctx, self._encode
                        )
                        result = await asyncio.wrap_future(thread)
            except asyncio.CancelledError:
                if ex.dropped is None and not ex.timed_out:
                    raise
                # We cancelled it (timeout, revoked, stream lost): no need to
                # propagate, the task just ends.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                if ex.dropped is None:
                    self._answer_timeout(ex)
                else:
                    _logger.debug("job %s stopped: %s", ctx.id, ex.dropped)
                return
            except Exception as exc:
                if ex.timed_out:
                    self._answer_timeout(ex)
                else:
                    self._answer_failure(ex, exc)
                return
            if ex.timed_out:
                self._answer_timeout(ex)  # It swallowed the cancellation; too late anyway.
            else:
                self._answer_ack(ex, result)
        finally:
            if timer is not None:
                timer.cancel()
            _metrics.stopped()
            self.unfinished -= 1
            if self.closing and not self.unfinished:
                self.idle.set()
            if thread is not None and not thread.done():
                # The thread runs on; its slot stays taken until it returns.
                thread.add_done_callback(self._thread_done_callback(ctx))
            else:
                self._slots.release()

    def _time_out(self, ex: Execution) -> None:
        if ex.dropped is not None or ex.task is None or ex.task.done():
            return
        ex.timed_out = True
        cancel_attempt(ex.ctx, "job timed out")
        ex.task.cancel()

    def _answer_timeout(self, ex: Execution) -> None:
        ctx = ex.ctx
        # The gateway times the attempt out too; if it got there first, its
        # refusal of this nack is expected.
        self._outbox.refusable.add(ex.lease_id)
        self._answer_nack(
            ex, nack_for_timeout(ex.lease_id, attempt_timeout(ctx) or 0.0, attempt=ctx.attempt)
        )

    def _thread_done_callback(self, ctx: JobContext) -> Callable[[ConcurrentFuture[Any]], None]:
        loop, slots = self._loop, self._slots

        def done(_: ConcurrentFuture[Any]) -> None:
            _logger.debug("dropped the result of job %s: %s", ctx.id, ctx.cancel_reason)
            # RuntimeError: the worker's loop is gone, and the slot count with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(slots.release)

        return done

    def _encode(self, result: object) -> Result:
        if result is None:
            return None
        content_type = _OCTET_STREAM
        if isinstance(result, bytes):
            data = result
        elif isinstance(result, bytearray | memoryview):
            data = bytes(result)
        else:
            content_type = self._serializer.content_type
            try:
                data = self._serializer.dumps(result)
            except Exception as exc:
                raise SerializationError(
                    f"cannot encode the handler's {type(result).__name__} result: {exc}"
                ) from exc
        limit = self._outbox.max_frame_bytes
        if len(data) > limit:
            raise SerializationError(
                f"result is {len(data)} bytes, more than the {limit} the gateway accepts"
            )
        return data, content_type

    def _answer_ack(self, ex: Execution, result: Result) -> None:
        if self._settle(ex, "succeeded"):
            outbox = self._outbox
            outbox.acks.append((ex.lease_id, result))
            outbox.wake()

    def _answer_failure(self, ex: Execution, exc: BaseException) -> None:
        if self._settle(ex, "failed"):
            ctx = ex.ctx
            self._log(
                logging.WARNING, ctx, "job %s attempt %d failed: %r", ctx.id, ctx.attempt, exc
            )
            outbox = self._outbox
            outbox.nacks.append(nack_for_exception(ex.lease_id, exc, attempt=ctx.attempt))
            outbox.wake()

    def _answer_nack(self, ex: Execution, item: NackItem) -> None:
        if self._settle(ex, "timed out"):
            outbox = self._outbox
            outbox.nacks.append(item)
            outbox.wake()

    def _settle(self, ex: Execution, outcome: str) -> bool:
        """Finish an attempt's bookkeeping; False when its answer must be dropped."""
        if ex.dropped is not None or self._outbox.closed or self.ended:
            _logger.debug(
                "dropping the outcome (%s) of job %s: %s",
                outcome,
                ex.ctx.id,
                ex.dropped or "stream closed",
            )
            end_attempt(ex.ctx, flush=False)
            return False
        # Flush the last progress first: it is only sent for leases we hold.
        end_attempt(ex.ctx, flush=True)
        del self.executions[ex.lease_id]
        _metrics.answered(ex.ctx.queue, ex.ctx.type, outcome, self._loop.time() - ex.started_at)
        if outcome != "failed":  # failures are logged with their exception
            level = logging.DEBUG if outcome == "succeeded" else logging.WARNING
            self._log(level, ex.ctx, "job %s attempt %d %s", ex.ctx.id, ex.ctx.attempt, outcome)
        return True

    def _log(self, level: int, ctx: JobContext, message: str, *args: object) -> None:
        """Log a job transition with the job's fields as ``extra`` (for JSON logs)."""
        if _logger.isEnabledFor(level):
            fields = {
                "job_id": ctx.id,
                "job_type": ctx.type,
                "queue": ctx.queue,
                "attempt": ctx.attempt,
                "worker_id": self._worker_id,
            }
            _logger.log(level, message, *args, extra=fields)

    def drop(self, ex: Execution, reason: str) -> None:
        """Stop caring about a lease: cancel its handler, never answer it."""
        if ex.dropped is not None:
            return
        ex.dropped = reason
        self.executions.pop(ex.lease_id, None)
        cancel_attempt(ex.ctx, reason)
        end_attempt(ex.ctx, flush=False)
        if ex.task is None:
            # Still waiting in the backlog; pump skips it.
            self.unfinished -= 1
            if self.closing and not self.unfinished:
                self.idle.set()
        else:
            ex.task.cancel()

    def abandon(self, reason: str) -> None:
        """The stream is gone: the gateway has released every lease we held."""
        if self._slots.listener == self.pump:
            self._slots.listener = None
        for ex in list(self.executions.values()):
            self.drop(ex, reason)
        self._backlog.clear()

    def _on_progress(self, lease_id: str, update: job_pb2.JobProgress) -> None:
        if lease_id in self.executions:
            self._outbox.progress[lease_id] = update
            self._outbox.wake()
