"""One ``StreamJobs`` session: open, run deliveries, answer them in batches, close.

Python gRPC costs about 300 µs of CPU per message whatever its size, so the
session never sends one frame per job: every handler that finished since the
last write goes out in one ``ack`` frame (failures in one ``nack``), written
as soon as the single writer is free. Nothing waits on a timer to fill a
batch, so an idle worker still answers after one message's latency.

Tasks per session: a reader (the session's own coroutine), one writer, one
heartbeat, and one task per running handler. Jobs delivered beyond the
concurrency limit wait in a local deque, not in tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc
from jobwire.worker import _metrics, _tracing
from jobwire.worker._context import _CURRENT, JobContext
from jobwire.worker._errors import (
    ConnectionFailedError,
    HandlerNotFoundError,
    SerializationError,
    nack_for_exception,
    nack_for_timeout,
)
from jobwire.worker._registry import HandlerFunc, HandlerRegistry, RegisteredHandler
from jobwire.worker._serializer import Serializer

_logger = logging.getLogger("jobwire.worker")

_Request = worker_service_pb2.StreamJobsRequest
_Response = worker_service_pb2.StreamJobsResponse
_NackItem = _Request.Nack.Item
_Reason = _Response.LeaseRevoked.Reason
# An encoded handler result and its media type; None when it returned None.
_Result = tuple[bytes, str] | None
_OCTET_STREAM = "application/octet-stream"

# Errors another attempt cannot fix: give up instead of reconnecting forever.
_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

# A gateway that accepts the connection but never answers `open` must not hang
# the worker; the reconnect loop takes over.
OPEN_TIMEOUT = 30.0
# After the worker closes its write side, the gateway ends the RPC at once;
# this bounds the wait for that answer.
CLOSE_TIMEOUT = 5.0
# Results in one ack frame stay under this unless `opened` names the gateway's
# limit (gRPC's default receive limit is 4 MiB); a larger result fails its job.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
# Bytes of an ack frame that are not results: lease ids, field tags.
FRAME_OVERHEAD = 64 * 1024

_REVOKE_REASONS = {
    _Reason.REASON_CANCELLED: "job cancelled",
    _Reason.REASON_TIMED_OUT: "job timed out",
    _Reason.REASON_EXPIRED: "lease expired",
    _Reason.REASON_NOT_FOUND: "lease unknown to the gateway",
}


def _fatal_error(exc: grpc.aio.AioRpcError) -> ConnectionFailedError:
    """Build the error for a status another attempt cannot fix, with its ErrorInfo."""
    reason, metadata = "", {}
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # AioRpcError is call-like
    except (DecodeError, ValueError):
        status = None  # unreadable details: code and message still say enough
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
            break
    return ConnectionFailedError(
        exc.code().name, exc.details() or "", reason=reason, metadata=metadata
    )


class SessionEnd(enum.Enum):
    """How a session ended."""

    STOPPED = "stopped"
    """The worker asked to stop and the session closed."""
    DRAINED = "drained"
    """The gateway drained the session; reconnect."""
    LOST = "lost"
    """The stream broke or the gateway ended it; reconnect."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What a session needs from its worker."""

    worker_id: str
    queues: Sequence[str]
    job_types: Sequence[str]
    max_in_flight: int
    lease_duration: timedelta | None
    labels: Mapping[str, str]
    metadata: Sequence[tuple[str, str]]
    shutdown_timeout: float


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


class _Execution:
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


def _run_sync(fn: HandlerFunc, ctx: JobContext, encode: Callable[[object], _Result]) -> _Result:
    # Runs in a worker thread: encoding the result here keeps a large
    # json.dumps off the event loop.
    return encode(fn(ctx))


class Session:
    """One ``StreamJobs`` stream and the jobs delivered on it.

    Args:
        channel: Channel to the gateway.
        settings: The worker's session settings.
        registry: Handlers by job type.
        serializer: Payload and result codec.
        slots: The worker's handler slots.
        executor: Thread pool for sync handlers (None when there are none).
        on_opened: Called once the gateway accepted the session.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        settings: SessionSettings,
        *,
        registry: HandlerRegistry,
        serializer: Serializer,
        slots: Slots,
        executor: ThreadPoolExecutor | None,
        on_opened: Callable[[Session], None] | None = None,
    ) -> None:
        self._stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        self._settings = settings
        self._registry = registry
        self._serializer = serializer
        self._slots = slots
        self._executor = executor
        self._on_opened = on_opened
        self._loop = asyncio.get_running_loop()
        self._call: grpc.aio.StreamStreamCall[_Request, _Response] | None = None

        #: Set once `opened` arrived.
        self.opened = False
        self.session_id = ""
        self.lease_duration = 30.0
        self.heartbeat_interval = 10.0
        self.max_in_flight = settings.max_in_flight
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES - FRAME_OVERHEAD

        # Every lease we hold and have not answered yet, by lease id.
        self._executions: dict[str, _Execution] = {}
        self._backlog: deque[_Execution] = deque()
        # Delivered jobs whose answer is not yet decided (waiting or running).
        self._unfinished = 0

        # What the writer sends next. Appending and setting `_wake` is all a
        # finishing handler does; the writer turns the lot into few frames.
        self._wake = asyncio.Event()
        self._acks: list[tuple[str, _Result]] = []
        self._nacks: list[_NackItem] = []
        self._extend: set[str] = set()
        self._progress: dict[str, job_pb2.JobProgress] = {}
        # Leases whose answer the gateway may refuse without anything being
        # wrong: local timeouts racing the gateway's, answers for expired leases.
        self._refusable: set[str] = set()

        self._stop_requested = False
        self._drain_requested = False
        self._closing: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # A stopping worker tells the gateway first, so answers it sends while
        # finishing its jobs pull in no new work.
        self._send_drain = False
        self._close_write_side = False
        self._write_closed = False
        self._ended = False

    # Public surface used by the worker ---------------------------------------

    async def run(self) -> SessionEnd:
        """Open the stream and serve it until it ends.

        Returns:
            How the session ended.

        Raises:
            ConnectionFailedError: The gateway rejected the worker for good.
        """
        call = self._call = self._stub.StreamJobs(metadata=tuple(self._settings.metadata))
        writer: asyncio.Task[None] | None = None
        heartbeat: asyncio.Task[None] | None = None
        try:
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    await call.write(self._open_frame())
                    first = await call.read()
            except TimeoutError:
                _logger.warning("gateway did not answer `open` within %gs", OPEN_TIMEOUT)
                return SessionEnd.LOST
            if not isinstance(first, _Response):  # EOF
                _logger.warning("gateway ended the stream before answering `open`")
                return SessionEnd.LOST
            if first.WhichOneof("kind") != "opened":
                raise ConnectionFailedError(
                    "PROTOCOL_ERROR",
                    f"gateway answered `open` with {first.WhichOneof('kind')!r}, not `opened`",
                )
            self._accept(first.opened)
            writer = self._loop.create_task(self._write_loop(call), name="jobwire-writer")
            heartbeat = self._loop.create_task(self._heartbeat_loop(), name="jobwire-heartbeat")
            return await self._serve(call, writer)
        except grpc.aio.AioRpcError as exc:
            return self._on_rpc_error(exc)
        finally:
            self._ended = True
            for task in (writer, heartbeat, self._closing):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (writer, heartbeat, self._closing) if t is not None),
                return_exceptions=True,
            )
            call.cancel()
            self._abandon("stream closed")

    def request_stop(self) -> None:
        """Stop taking work: finish in-flight jobs, answer them, close the stream."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if self.opened and not self._ended:
            self._begin_close(self._settings.shutdown_timeout, tell_gateway=True)

    # Opening -------------------------------------------------------------------

    def _open_frame(self) -> _Request:
        settings = self._settings
        frame = _Request()
        open_ = frame.open
        open_.worker_id = settings.worker_id
        open_.queues.extend(settings.queues)
        open_.job_types.extend(settings.job_types)
        open_.max_in_flight = settings.max_in_flight
        if settings.lease_duration is not None:
            open_.lease_duration.FromTimedelta(settings.lease_duration)
        open_.labels.update(settings.labels)
        return frame

    def _accept(self, opened: _Response.Opened) -> None:
        self.opened = True
        self.session_id = opened.session_id
        if opened.HasField("lease_duration"):
            self.lease_duration = opened.lease_duration.ToTimedelta().total_seconds()
        elif self._settings.lease_duration is not None:
            self.lease_duration = self._settings.lease_duration.total_seconds()
        interval = opened.heartbeat_interval.ToTimedelta().total_seconds()
        # Without a hint, three heartbeats per lease leave room for one loss.
        self.heartbeat_interval = interval if interval > 0 else self.lease_duration / 3
        if opened.max_in_flight > 0:
            self.max_in_flight = opened.max_in_flight
        if opened.max_message_bytes > 0:
            # Room for the frame's own fields besides the results it carries.
            self.max_frame_bytes = opened.max_message_bytes - FRAME_OVERHEAD
        self._slots.listener = self._pump
        if self._on_opened is not None:
            self._on_opened(self)
        if self._stop_requested:
            self._begin_close(self._settings.shutdown_timeout, tell_gateway=True)

    # Reading -------------------------------------------------------------------

    async def _serve(
        self, call: grpc.aio.StreamStreamCall[_Request, _Response], writer: asyncio.Task[None]
    ) -> SessionEnd:
        reader = self._loop.create_task(self._read_loop(call), name="jobwire-reader")
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                # The writer ended: it closed the write side (the gateway now
                # ends the RPC) or the stream broke (the reader is about to
                # see the status, which tells whether to reconnect).
                error = writer.exception()
                if error is not None and not isinstance(
                    error, grpc.aio.AioRpcError | asyncio.InvalidStateError
                ):
                    raise error  # A bug, not a broken stream: do not hide it.
                await asyncio.wait((reader,), timeout=CLOSE_TIMEOUT)
            if not reader.done():
                error = writer.exception()
                if error is not None:
                    _logger.warning("stream to the gateway failed: %r", error)
                    return SessionEnd.LOST
                return self._end()
            error = reader.exception()
            if error is not None:
                raise error
            if self._closing is None:
                _logger.warning("gateway ended the stream")
                return SessionEnd.LOST
            return self._end()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _end(self) -> SessionEnd:
        if self._stop_requested:
            return SessionEnd.STOPPED
        return SessionEnd.DRAINED if self._drain_requested else SessionEnd.LOST

    def _on_rpc_error(self, exc: grpc.aio.AioRpcError) -> SessionEnd:
        code = exc.code()
        if code in _FATAL_CODES:
            raise _fatal_error(exc) from exc
        if self._closing is not None:
            # Closing anyway; a draining gateway may end the RPC itself once
            # our leases are answered.
            _logger.debug("stream ended while closing: %s: %s", code.name, exc.details())
            return self._end()
        _logger.warning("stream to the gateway failed: %s: %s", code.name, exc.details())
        return SessionEnd.LOST

    async def _read_loop(self, call: grpc.aio.StreamStreamCall[_Request, _Response]) -> None:
        while True:
            frame = await call.read()
            if not isinstance(frame, _Response):  # EOF: the gateway ended the RPC.
                return
            kind = frame.WhichOneof("kind")
            if kind == "delivery":
                self._on_delivery(frame.delivery.items)
                # Arming the next read costs the loop tens of microseconds:
                # let the handlers just created start first.
                await asyncio.sleep(0)
            elif kind == "ack_result":
                self._on_ack_result(frame.ack_result.items)
            elif kind == "lease_revoked":
                self._on_revoked(frame.lease_revoked)
            elif kind == "drain":
                self._on_drain(frame.drain)
            elif kind == "lease_extended":
                pass  # Our own schedule already assumed the extension.
            else:
                # A newer gateway may send frames this SDK does not know.
                _logger.debug("ignoring unexpected %r frame", kind)

    def _on_delivery(self, items: Sequence[_Response.Delivery.Item]) -> None:
        if self._close_write_side or self._idle.is_set():
            # The close is decided (or done): a job started now could not be
            # answered, so it would run twice. The gateway takes these back,
            # unstarted, when the stream ends.
            _logger.debug("ignoring %d jobs delivered after the session began closing", len(items))
            return
        loop = self._loop
        now = loop.time()
        expires_at = now + self.lease_duration
        settings = self._settings
        for item in items:
            job = item.job
            ctx = JobContext(
                job,
                lease_id=item.lease_id,
                attempt=item.attempt,
                worker_id=settings.worker_id,
                serializer=self._serializer,
                progress_sink=self._on_progress,
                loop=loop,
            )
            timeout = ctx._timeout
            ex = _Execution(
                item.lease_id,
                ctx,
                self._registry.get(job.type),
                expires_at,
                None if timeout is None else now + timeout,
            )
            self._executions[item.lease_id] = ex
            self._backlog.append(ex)
        self._unfinished += len(items)
        _logger.debug("received %d jobs", len(items))
        self._pump()

    def _on_ack_result(self, items: Sequence[_Response.AckResult.Item]) -> None:
        refusable = self._refusable
        for item in items:
            if refusable and item.lease_id in refusable:
                refusable.discard(item.lease_id)
                if not item.ok:
                    _logger.debug("answer for %s refused: %s", item.lease_id, item.reason)
                continue
            if not item.ok:
                _logger.warning(
                    "gateway did not accept the answer for lease %s: %s: %s",
                    item.lease_id,
                    item.reason,
                    item.message,
                )

    def _on_revoked(self, revoked: _Response.LeaseRevoked) -> None:
        ex = self._executions.get(revoked.lease_id)
        if ex is None:
            return  # Already answered; the answer's ack_result will tell.
        reason = _REVOKE_REASONS.get(revoked.reason, "lease revoked")
        _logger.info(
            "job %s: %s; stopping its handler (%s)", revoked.job_id, reason, revoked.message
        )
        self._drop(ex, reason)
        if revoked.reason == _Reason.REASON_EXPIRED and not self._write_closed:
            # The gateway keeps an expired lease's credit until the worker
            # answers for it (a stuck worker must not get more work), so answer.
            self._refusable.add(ex.lease_id)
            failure = job_pb2.JobFailure(
                message="lease expired before the handler finished",
                type="LEASE_EXPIRED",
                attempt=ex.ctx.attempt,
            )
            self._nacks.append(_NackItem(lease_id=ex.lease_id, failure=failure, retryable=True))
            self._wake.set()

    def _on_drain(self, drain: _Response.Drain) -> None:
        grace = drain.grace_period.ToTimedelta().total_seconds()
        _logger.info(
            "gateway is draining: finishing %d jobs within %gs, then reconnecting",
            self._unfinished,
            grace,
        )
        self._drain_requested = True
        self._begin_close(grace if grace > 0 else self._settings.shutdown_timeout)

    # Running jobs --------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting jobs while slots are free."""
        backlog, slots = self._backlog, self._slots
        while backlog and slots.free > 0 and not self._ended:
            ex = backlog.popleft()
            if ex.dropped is not None:
                continue
            slots.free -= 1
            ex.task = self._loop.create_task(self._execute(ex))

    async def _execute(self, ex: _Execution) -> None:
        ctx = ex.ctx
        _CURRENT.set(ctx)
        handler = ex.handler
        thread: ConcurrentFuture[_Result] | None = None
        # Not asyncio.timeout: the context must read as cancelled before the
        # handler sees its CancelledError, so the timer marks it first.
        timer = None if ex.deadline is None else self._loop.call_at(ex.deadline, self._time_out, ex)
        self._log(logging.DEBUG, ctx, "job %s attempt %d started", ctx.id, ctx.attempt)
        ex.started_at = self._loop.time()
        _metrics.started()
        try:
            try:
                # Inside the span, so that a sync handler's copied context has it too.
                with _tracing.handler_span(ctx.job, ctx.attempt, self._settings.worker_id):
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
            self._unfinished -= 1
            if self._closing is not None and not self._unfinished:
                self._idle.set()
            if thread is not None and not thread.done():
                # The thread runs on; its slot stays taken until it returns.
                thread.add_done_callback(self._thread_done_callback(ctx))
            else:
                self._slots.release()

    def _time_out(self, ex: _Execution) -> None:
        if ex.dropped is not None or ex.task is None or ex.task.done():
            return
        ex.timed_out = True
        ex.ctx._cancel("job timed out")
        ex.task.cancel()

    def _answer_timeout(self, ex: _Execution) -> None:
        ctx = ex.ctx
        # The gateway times the attempt out too; if it got there first, its
        # refusal of this nack is expected.
        self._refusable.add(ex.lease_id)
        self._answer_nack(
            ex, nack_for_timeout(ex.lease_id, ctx._timeout or 0.0, attempt=ctx.attempt)
        )

    def _thread_done_callback(self, ctx: JobContext) -> Callable[[ConcurrentFuture[Any]], None]:
        loop, slots = self._loop, self._slots

        def done(_: ConcurrentFuture[Any]) -> None:
            _logger.debug("dropped the result of job %s: %s", ctx.id, ctx.cancel_reason)
            # RuntimeError: the worker's loop is gone, and the slot count with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(slots.release)

        return done

    def _encode(self, result: object) -> _Result:
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
        if len(data) > self.max_frame_bytes:
            raise SerializationError(
                f"result is {len(data)} bytes, more than the {self.max_frame_bytes} "
                "the gateway accepts"
            )
        return data, content_type

    def _answer_ack(self, ex: _Execution, result: _Result) -> None:
        if self._settle(ex, "succeeded"):
            self._acks.append((ex.lease_id, result))
            self._wake.set()

    def _answer_failure(self, ex: _Execution, exc: BaseException) -> None:
        if self._settle(ex, "failed"):
            ctx = ex.ctx
            self._log(
                logging.WARNING, ctx, "job %s attempt %d failed: %r", ctx.id, ctx.attempt, exc
            )
            self._nacks.append(nack_for_exception(ex.lease_id, exc, attempt=ctx.attempt))
            self._wake.set()

    def _answer_nack(self, ex: _Execution, item: _NackItem) -> None:
        if self._settle(ex, "timed out"):
            self._nacks.append(item)
            self._wake.set()

    def _settle(self, ex: _Execution, outcome: str) -> bool:
        """Finish an attempt's bookkeeping; False when its answer must be dropped."""
        if ex.dropped is not None or self._write_closed or self._ended:
            _logger.debug(
                "dropping the outcome (%s) of job %s: %s",
                outcome,
                ex.ctx.id,
                ex.dropped or "stream closed",
            )
            ex.ctx._finish(flush=False)
            return False
        # Flush the last progress first: it is only sent for leases we hold.
        ex.ctx._finish(flush=True)
        del self._executions[ex.lease_id]
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
                "worker_id": self._settings.worker_id,
            }
            _logger.log(level, message, *args, extra=fields)

    def _drop(self, ex: _Execution, reason: str) -> None:
        """Stop caring about a lease: cancel its handler, never answer it."""
        if ex.dropped is not None:
            return
        ex.dropped = reason
        self._executions.pop(ex.lease_id, None)
        ex.ctx._cancel(reason)
        ex.ctx._finish(flush=False)
        if ex.task is None:
            # Still waiting in the backlog; _pump skips it.
            self._unfinished -= 1
            if self._closing is not None and not self._unfinished:
                self._idle.set()
        else:
            ex.task.cancel()

    def _abandon(self, reason: str) -> None:
        """The stream is gone: the gateway has released every lease we held."""
        if self._slots.listener == self._pump:
            self._slots.listener = None
        for ex in list(self._executions.values()):
            self._drop(ex, reason)
        self._backlog.clear()

    def _on_progress(self, lease_id: str, update: job_pb2.JobProgress) -> None:
        if lease_id in self._executions:
            self._progress[lease_id] = update
            self._wake.set()

    # Writing -------------------------------------------------------------------

    async def _write_loop(self, call: grpc.aio.StreamStreamCall[_Request, _Response]) -> None:
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            while (frame := self._next_frame()) is not None:
                await call.write(frame)
            if self._close_write_side:
                self._write_closed = True
                await call.done_writing()
                return

    def _next_frame(self) -> _Request | None:
        """Build the next frame from what is pending, or None when nothing is."""
        if self._extend:
            frame = _Request()
            frame.extend_lease.lease_ids.extend(self._extend)
            self._extend.clear()
            return frame
        if self._progress:
            lease_id, update = self._progress.popitem()
            frame = _Request()
            frame.progress.lease_id = lease_id
            frame.progress.progress.CopyFrom(update)
            return frame
        if self._send_drain:
            self._send_drain = False
            frame = _Request()
            frame.drain.SetInParent()
            return frame
        if self._acks:
            frame = _Request()
            add = frame.ack.items.add
            acks, size = self._acks, 0
            for taken, (lease_id, result) in enumerate(acks):
                if result is None:
                    add(lease_id=lease_id)
                else:
                    data, content_type = result
                    size += len(data)
                    add(lease_id=lease_id, result=data, result_content_type=content_type)
                if size >= self.max_frame_bytes:
                    del acks[: taken + 1]
                    break
            else:
                acks.clear()
            return frame
        if self._nacks:
            frame = _Request()
            frame.nack.items.extend(self._nacks)
            self._nacks.clear()
            return frame
        return None

    async def _heartbeat_loop(self) -> None:
        lease, interval = self.lease_duration, self.heartbeat_interval
        # Renew a lease once less than half of it is left (or less than what
        # one missed heartbeat would eat), so it never runs out between beats.
        margin = max(lease / 2, interval * 1.5)
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            horizon, renewed = now + margin, now + lease
            for ex in self._executions.values():
                if ex.expires_at <= horizon:
                    ex.expires_at = renewed
                    self._extend.add(ex.lease_id)
            if self._extend:
                self._wake.set()

    # Closing -------------------------------------------------------------------

    def _begin_close(self, timeout: float, *, tell_gateway: bool = False) -> None:
        if self._closing is not None:
            return
        if tell_gateway:
            self._send_drain = True
            self._wake.set()
        if not self._unfinished:
            self._idle.set()
        self._closing = self._loop.create_task(self._close_when_idle(timeout), name="jobwire-close")

    async def _close_when_idle(self, grace: float) -> None:
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            running = [ex for ex in self._executions.values() if ex.dropped is None]
            _logger.warning(
                "%d jobs still running after %gs; cancelling them (the gateway redelivers them)",
                len(running),
                grace,
            )
            for ex in running:
                self._drop(ex, "worker shutting down")
        self._close_write_side = True
        self._wake.set()
