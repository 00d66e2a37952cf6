"""One worker stream's session: the reader, the deliverer and the outbox.

The reader applies the worker's frames (acks, nacks, extensions, progress,
credits). A frame of answers (acks, nacks) is recorded by a task of its own
while the reader goes on to the next frames, up to :data:`ANSWERS_IN_FLIGHT`
at once, so that a provider can write the answers of several frames in one
statement (the SQL provider does); the leases end in the order the frames
came. The deliverer leases jobs whenever credits are free and waits on an
event otherwise. The RPC's own generator is the only writer: it yields what
the others put in an outbox, which credits keep bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Coroutine, Sequence
from typing import Any

import grpc

from jobwire.gateway._config import ServerSettings
from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import JobState, duration, set_time, timestamp
from jobwire.gateway._service import JobService
from jobwire.gateway.providers import (
    AckRequest,
    Consumer,
    Delivery,
    LeaseOutcome,
    NackRequest,
    Revocation,
    RevokeReason,
)
from jobwire.gateway.servicers._rpc import Context
from jobwire.v1 import worker_service_pb2

logger = logging.getLogger("jobwire.gateway.worker")

Request = worker_service_pb2.StreamJobsRequest
Response = worker_service_pb2.StreamJobsResponse
Drain = Response.Drain
_SHUTDOWN = Drain.REASON_SHUTDOWN
_OPERATOR = Drain.REASON_OPERATOR
#: Frames waiting to be sent before the session stops reading the worker's frames.
OUTBOX_LIMIT = 64
#: Frames of answers being recorded at once before the session stops reading.
ANSWERS_IN_FLIGHT = 16


class Session:
    def __init__(
        self,
        context: Context,
        consumer: Consumer,
        max_in_flight: int,
        service: JobService,
        settings: ServerSettings,
        released: asyncio.Event,
        metrics: GatewayMetrics,
    ) -> None:
        self.context = context
        self.consumer = consumer
        self.error: BaseException | None = None
        self._service = service
        self._settings = settings
        self._window = max_in_flight
        self._in_flight = 0
        """Deliveries counted in the in-flight metric, not answered or revoked yet."""
        self._outbox: asyncio.Queue[Response | None] = asyncio.Queue()
        # Set whenever the writer takes a frame from the outbox.
        self._outbox_room = asyncio.Event()
        self._capacity = asyncio.Event()
        self._released = released
        self._draining = False
        self._drain_sent = False
        self._deliverer: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        consumer.on_revoke = self._on_revoke
        consumer.on_drain = self._drain_asked
        consumer.credits = max_in_flight

    async def run(self) -> AsyncGenerator[Response, None]:
        """Yield the frames to send until the stream ends."""
        consumer = self.consumer
        opened = Response.Opened(
            session_id=consumer.session_id,
            lease_duration=duration(consumer.lease_duration),
            heartbeat_interval=duration(consumer.lease_duration / 3),
            max_in_flight=self._window,
            max_message_bytes=self._settings.max_message_bytes,
        )
        reader = asyncio.create_task(self._read())
        deliverer = self._deliverer = asyncio.create_task(self._deliver())
        metrics = self._metrics
        metrics.workers.inc()
        metrics.credits.inc(self._window)
        try:
            yield Response(opened=opened)
            while (frame := await self._outbox.get()) is not None:
                self._outbox_room.set()
                yield frame
        finally:
            metrics.workers.dec()
            metrics.credits.dec(self._window)
            # The session's unfinished leases are released with it.
            metrics.in_flight.dec(self._in_flight)
            reader.cancel()
            deliverer.cancel()
            await asyncio.gather(reader, deliverer, return_exceptions=True)
            # Answers being recorded end before the stream's leases are released.
            await asyncio.gather(*self._answers, return_exceptions=True)

    def grant(self, credits: int) -> None:
        window = min(self._window + credits, self._settings.max_in_flight_limit)
        self._metrics.credits.inc(window - self._window)
        self._window = window
        self.consumer.credits = window
        self._capacity.set()

    def drain(self, grace: float, reason: Drain.Reason.ValueType = _SHUTDOWN) -> None:
        """Stop delivering; tell the worker to finish its jobs within ``grace`` seconds."""
        if self._drain_sent:
            return
        self._drain_sent = self._draining = True
        self.consumer.draining = True
        if self._deliverer is not None:
            # A claim waiting for jobs would take the next one: stop it (a
            # cancelled claim loses nothing).
            self._deliverer.cancel()
        self._outbox.put_nowait(Response(drain=Drain(grace_period=duration(grace), reason=reason)))

    def _drain_asked(self) -> None:
        """An operator drains this worker (``DrainWorker``): it stops, not reconnects."""
        self.drain(self._settings.shutdown_grace.total_seconds(), _OPERATOR)

    def _stop(self, error: BaseException | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self._outbox.put_nowait(None)

    def _on_revoke(self, revocation: Revocation) -> None:
        self._in_flight -= 1
        self._metrics.in_flight.dec()
        if revocation.reason is RevokeReason.EXPIRED:
            self._metrics.lease_expiries.inc()
        if revocation.reason in (RevokeReason.EXPIRED, RevokeReason.TIMED_OUT):
            logger.warning(
                "worker %s: lease %s of job %s revoked: %s",
                self.consumer.worker_id,
                revocation.lease_id,
                revocation.job.id,
                revocation.message,
            )
        self._capacity.set()
        self._released.set()
        self._outbox.put_nowait(
            Response(
                lease_revoked=Response.LeaseRevoked(
                    lease_id=revocation.lease_id,
                    job_id=revocation.job.id,
                    reason=revocation.reason.value,
                    message=revocation.message,
                )
            )
        )

    async def _read(self) -> None:
        try:
            while (frame := await self.context.read()) is not grpc.aio.EOF:
                self.consumer.last_seen_time = time.time()
                await self._apply(frame)
                # Acks, extensions and progress for unknown leases each queue an
                # answer without using a credit: a worker that writes and never
                # reads would grow the outbox without bound. Stop reading (HTTP/2
                # flow control then stops the worker) until it reads again.
                while self._outbox.qsize() >= OUTBOX_LIMIT:
                    self._outbox_room.clear()
                    await self._outbox_room.wait()
            # The worker stopped writing: its last answers are sent before the end.
            await asyncio.gather(*self._answers, return_exceptions=True)
            self._stop()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._stop(error)

    async def _deliver(self) -> None:
        try:
            while True:
                free = self._window - self._service.in_use(self.consumer)
                if free <= 0 or self._draining:
                    self._capacity.clear()
                    await self._capacity.wait()
                    continue
                deliveries = await self._service.receive(self.consumer, free)
                now = time.time()
                self._metrics.delivered_all(
                    [d.job for d in deliveries], now, self.consumer.worker_id
                )
                self._in_flight += len(deliveries)
                self._outbox.put_nowait(_delivery(deliveries))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._stop(error)

    async def _apply(self, frame: Request) -> None:
        kind = frame.WhichOneof("kind")
        consumer = self.consumer
        if kind == "ack":
            items = [
                AckRequest(
                    i.lease_id, i.result if i.HasField("result") else None, i.result_content_type
                )
                for i in frame.ack.items
            ]
            await self._answering(self._service.ack(consumer, items))
        elif kind == "nack":
            await self._answering(self._nack(frame.nack.items))
        elif kind == "extend_lease":
            await self._extend(frame.extend_lease)
        elif kind == "progress":
            lease_id = frame.progress.lease_id
            if not await self._service.progress(consumer, lease_id, frame.progress.progress):
                self._unknown_lease(lease_id)
        elif kind == "drain":
            self._draining = True
            consumer.draining = True
        elif kind == "flow":
            if frame.flow.credits < 1:
                raise InvalidArgumentError("flow.credits", "must be at least 1")
            self.grant(frame.flow.credits)
        elif kind == "open":
            raise InvalidArgumentError("open", "sent twice; `open` starts a stream only once")
        else:
            raise InvalidArgumentError(
                "kind", "empty frame: set one of ack, nack, extend_lease, ..."
            )

    async def _answering(self, answers: Coroutine[Any, Any, list[LeaseOutcome]]) -> None:
        """Record a frame's answers in a task of its own; wait while too many are."""
        while len(self._answers) >= ANSWERS_IN_FLIGHT:
            await asyncio.wait(self._answers, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.get_running_loop().create_task(self._answered(answers))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answered(self, answers: Coroutine[Any, Any, list[LeaseOutcome]]) -> None:
        try:
            outcomes = await answers
        except Exception as error:
            self._stop(error)
            return
        self._record(outcomes)
        self._answer(outcomes)

    async def _nack(self, items: Sequence[Request.Nack.Item]) -> list[LeaseOutcome]:
        requests: list[NackRequest] = []
        refused: dict[str, LeaseOutcome] = {}
        for item in items:
            delay = None
            if item.HasField("retry_delay"):
                delay = self._service.validate.retry_delay(item.retry_delay)
                if delay is None:
                    refused[item.lease_id] = LeaseOutcome(
                        item.lease_id,
                        False,
                        "INVALID_ARGUMENT",
                        "retry_delay must be 0 to 10 years",
                    )
                    continue
            retryable = item.retryable if item.HasField("retryable") else True
            requests.append(NackRequest(item.lease_id, item.failure, retryable, delay))
        applied = iter(await self._service.nack(self.consumer, requests))
        return [refused.get(item.lease_id) or next(applied) for item in items]

    async def _extend(self, frame: Request.ExtendLease) -> None:
        duration = self.consumer.lease_duration
        if frame.HasField("lease_duration"):
            duration = self._service.validate.lease_duration(frame.lease_duration)
        extended = Response.LeaseExtended()
        for lease_id, expiry in await self._service.extend(
            self.consumer, frame.lease_ids, duration
        ):
            if expiry is None:
                self._unknown_lease(lease_id)
            else:
                extended.items.add(lease_id=lease_id, lease_expire_time=timestamp(expiry))
        if extended.items:
            self._outbox.put_nowait(Response(lease_extended=extended))

    def _record(self, outcomes: Sequence[LeaseOutcome]) -> None:
        """Count the applied answers, as the lease state machine decided them."""
        now = time.monotonic()
        for outcome in outcomes:
            if not outcome.ok or outcome.job is None:
                continue
            self._in_flight -= 1
            if outcome.state is JobState.COMPLETED:
                self.consumer.completed += 1
            else:
                self.consumer.failed += 1
            self._metrics.answered(
                outcome.job,
                now - outcome.delivered_at,
                self.consumer.worker_id,
                ok=outcome.state is JobState.COMPLETED,
                dead=outcome.state is JobState.DEAD,
            )

    def _answer(self, outcomes: Sequence[LeaseOutcome]) -> None:
        self._capacity.set()
        self._released.set()
        result = Response.AckResult()
        for outcome in outcomes:
            result.items.add(
                lease_id=outcome.lease_id,
                ok=outcome.ok,
                reason=outcome.reason,
                message=outcome.message,
            )
            if not outcome.ok:
                # Late answers are part of at-least-once delivery: the lease's
                # end was already logged when it was revoked.
                logger.debug(
                    "worker %s: %s for lease %s (%s)",
                    self.consumer.worker_id,
                    outcome.reason,
                    outcome.lease_id,
                    outcome.message,
                )
        self._outbox.put_nowait(Response(ack_result=result))

    def _unknown_lease(self, lease_id: str) -> None:
        self._outbox.put_nowait(
            Response(
                lease_revoked=Response.LeaseRevoked(
                    lease_id=lease_id,
                    reason=Response.LeaseRevoked.REASON_NOT_FOUND,
                    message="this session holds no such lease (expired, revoked or unknown)",
                )
            )
        )


def _delivery(deliveries: Sequence[Delivery]) -> Response:
    """Return the ``delivery`` frame of ``deliveries``."""
    # Each job is written in place: a Job built apart would be copied into its
    # item, and a Delivery built apart copied again into the response.
    frame = Response()
    items = frame.delivery.items
    frame.delivery.SetInParent()
    for d in deliveries:
        item = items.add(lease_id=d.lease_id, attempt=d.job.attempt)
        d.job.fill_proto(item.job)
        set_time(item.lease_expire_time, d.lease_expire_time)
    return frame
