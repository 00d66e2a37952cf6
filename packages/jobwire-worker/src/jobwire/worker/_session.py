"""One ``StreamJobs`` session: open, run deliveries, answer them in batches, close.

The frames are built and written in :mod:`._framing`, handlers run in
:mod:`._execution`, leases are renewed in :mod:`._renewal`; this module reads
the stream and decides when the session ends.

Tasks per session: a reader (the session's own coroutine), one writer, one
heartbeat, and one task per running handler.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc.aio

from jobwire.v1 import worker_service_pb2_grpc
from jobwire.worker._errors import ConnectionFailedError
from jobwire.worker._execution import Runner, Slots
from jobwire.worker._framing import (
    FATAL_CODES,
    FRAME_OVERHEAD,
    REVOKE_REASONS,
    Call,
    Outbox,
    Reason,
    Response,
    SessionSettings,
    fatal_error,
    open_frame,
)
from jobwire.worker._registry import HandlerRegistry
from jobwire.worker._renewal import answer_expired, renew_leases
from jobwire.worker._serializer import Serializer

_logger = logging.getLogger("jobwire.worker")

# A gateway that accepts the connection but never answers `open` must not hang
# the worker; the reconnect loop takes over.
OPEN_TIMEOUT = 30.0
# After the worker closes its write side, the gateway ends the RPC at once;
# this bounds the wait for that answer.
CLOSE_TIMEOUT = 5.0


class SessionEnd(enum.Enum):
    """How a session ended."""

    STOPPED = "stopped"
    """The worker asked to stop and the session closed."""
    DRAINED = "drained"
    """The gateway drained the session; reconnect."""
    RETIRED = "retired"
    """An operator drained this worker (``DrainWorker``): stop, do not reconnect."""
    LOST = "lost"
    """The stream broke or the gateway ended it; reconnect."""
    UNREACHABLE = "unreachable"
    """No gateway answered at the address; retry with backoff."""


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
        self._slots = slots
        self._on_opened = on_opened
        self._loop = asyncio.get_running_loop()
        self._call: Call | None = None

        #: Set once `opened` arrived.
        self.opened = False
        self.session_id = ""
        self.lease_duration = 30.0
        self.heartbeat_interval = 10.0
        self.max_in_flight = settings.max_in_flight

        self._outbox = Outbox()
        self._runner = Runner(
            self._loop,
            settings.worker_id,
            registry=registry,
            serializer=serializer,
            slots=slots,
            executor=executor,
            outbox=self._outbox,
        )

        self._stop_requested = False
        self._drain_requested = False
        self._retired = False
        self._closing: asyncio.Task[None] | None = None

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
                    await call.write(open_frame(self._settings))
                    first = await call.read()
            except TimeoutError:
                _logger.warning("gateway did not answer `open` within %gs", OPEN_TIMEOUT)
                return SessionEnd.LOST
            if not isinstance(first, Response):  # EOF
                _logger.warning("gateway ended the stream before answering `open`")
                return SessionEnd.LOST
            if first.WhichOneof("kind") != "opened":
                raise ConnectionFailedError(
                    "PROTOCOL_ERROR",
                    f"gateway answered `open` with {first.WhichOneof('kind')!r}, not `opened`",
                )
            self._accept(first.opened)
            writer = self._loop.create_task(self._outbox.write_loop(call), name="jobwire-writer")
            heartbeat = self._loop.create_task(
                renew_leases(
                    self._runner.executions,
                    self._outbox,
                    lease=self.lease_duration,
                    interval=self.heartbeat_interval,
                    loop=self._loop,
                ),
                name="jobwire-heartbeat",
            )
            return await self._serve(call, writer)
        except grpc.aio.AioRpcError as exc:
            return self._on_rpc_error(exc)
        finally:
            self._runner.ended = True
            for task in (writer, heartbeat, self._closing):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (writer, heartbeat, self._closing) if t is not None),
                return_exceptions=True,
            )
            call.cancel()
            self._runner.abandon("stream closed")

    def request_stop(self) -> None:
        """Stop taking work: finish in-flight jobs, answer them, close the stream."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if self.opened and not self._runner.ended:
            self._begin_close(self._settings.shutdown_timeout, tell_gateway=True)

    # Opening -------------------------------------------------------------------

    def _accept(self, opened: Response.Opened) -> None:
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
            self._outbox.max_frame_bytes = opened.max_message_bytes - FRAME_OVERHEAD
        self._slots.listener = self._runner.pump
        if self._on_opened is not None:
            self._on_opened(self)
        if self._stop_requested:
            self._begin_close(self._settings.shutdown_timeout, tell_gateway=True)

    # Reading -------------------------------------------------------------------

    async def _serve(self, call: Call, writer: asyncio.Task[None]) -> SessionEnd:
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
        if self._retired:
            return SessionEnd.RETIRED
        return SessionEnd.DRAINED if self._drain_requested else SessionEnd.LOST

    def _on_rpc_error(self, exc: grpc.aio.AioRpcError) -> SessionEnd:
        code = exc.code()
        if code in FATAL_CODES:
            raise fatal_error(exc) from exc
        if self._closing is not None:
            # Closing anyway; a draining gateway may end the RPC itself once
            # our leases are answered.
            _logger.debug("stream ended while closing: %s: %s", code.name, exc.details())
            return self._end()
        if code is grpc.StatusCode.UNAVAILABLE and not self.opened:
            # No gateway there (yet): the worker says so once, not on every retry.
            _logger.debug("gateway unreachable: %s", exc.details())
            return SessionEnd.UNREACHABLE
        _logger.warning("stream to the gateway failed: %s: %s", code.name, exc.details())
        return SessionEnd.LOST

    async def _read_loop(self, call: Call) -> None:
        while True:
            frame = await call.read()
            if not isinstance(frame, Response):  # EOF: the gateway ended the RPC.
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

    def _on_delivery(self, items: Sequence[Response.Delivery.Item]) -> None:
        if self._outbox.close_requested or self._runner.idle.is_set():
            # The close is decided (or done): a job started now could not be
            # answered, so it would run twice. The gateway takes these back,
            # unstarted, when the stream ends.
            _logger.debug("ignoring %d jobs delivered after the session began closing", len(items))
            return
        self._runner.accept(items, self.lease_duration)

    def _on_ack_result(self, items: Sequence[Response.AckResult.Item]) -> None:
        refusable = self._outbox.refusable
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

    def _on_revoked(self, revoked: Response.LeaseRevoked) -> None:
        ex = self._runner.executions.get(revoked.lease_id)
        if ex is None:
            return  # Already answered; the answer's ack_result will tell.
        reason = REVOKE_REASONS.get(revoked.reason, "lease revoked")
        _logger.info(
            "job %s: %s; stopping its handler (%s)", revoked.job_id, reason, revoked.message
        )
        self._runner.drop(ex, reason)
        if revoked.reason == Reason.REASON_EXPIRED and not self._outbox.closed:
            answer_expired(self._outbox, ex)

    def _on_drain(self, drain: Response.Drain) -> None:
        grace = drain.grace_period.ToTimedelta().total_seconds()
        if drain.reason == Response.Drain.REASON_OPERATOR:
            # Not this worker's doing: an operator drained it (DrainWorker).
            self._retired = True
            _logger.warning(
                "an operator drained this worker: finishing %d jobs within %gs, then stopping",
                self._runner.unfinished,
                grace,
            )
        else:
            _logger.info(
                "gateway is draining: finishing %d jobs within %gs, then reconnecting",
                self._runner.unfinished,
                grace,
            )
        self._drain_requested = True
        self._begin_close(grace if grace > 0 else self._settings.shutdown_timeout)

    # Closing -------------------------------------------------------------------

    def _begin_close(self, timeout: float, *, tell_gateway: bool = False) -> None:
        if self._closing is not None:
            return
        runner = self._runner
        if tell_gateway:
            self._outbox.drain = True
            self._outbox.wake()
        if not runner.unfinished:
            runner.idle.set()
        runner.closing = True
        self._closing = self._loop.create_task(self._close_when_idle(timeout), name="jobwire-close")

    async def _close_when_idle(self, grace: float) -> None:
        runner = self._runner
        try:
            async with asyncio.timeout(grace):
                await runner.idle.wait()
        except TimeoutError:
            running = [ex for ex in runner.executions.values() if ex.dropped is None]
            _logger.warning(
                "%d jobs still running after %gs; cancelling them (the gateway redelivers them)",
                len(running),
                grace,
            )
            for ex in running:
                runner.drop(ex, "worker shutting down")
        self._outbox.close()
