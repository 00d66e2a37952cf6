"""``jobwire.v1.WorkerService``: worker streams, and the operators' view of them.

Each stream runs a :class:`Session`; ``ListWorkers`` and ``DrainWorker`` see
and drain the streams of every gateway that shares the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from jobwire.gateway._config import ServerSettings
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import set_time
from jobwire.gateway._service import JobService
from jobwire.gateway.providers import WorkerInfo
from jobwire.gateway.servicers._rpc import Context, abort, unary
from jobwire.gateway.servicers._session import Response, Session
from jobwire.gateway.servicers._streams import StreamSlots
from jobwire.v1 import worker_service_pb2, worker_service_pb2_grpc


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    """Serves worker streams on top of :class:`JobService`."""

    def __init__(
        self,
        settings: ServerSettings,
        service: JobService,
        streams: StreamSlots,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._metrics = metrics or GatewayMetrics()
        self._streams = streams
        self._sessions: set[Session] = set()
        self._draining = False
        # Set whenever a session gives leases back or ends; shutdown waits on it.
        self._released = asyncio.Event()

    @property
    def sessions(self) -> int:
        """Worker streams open now."""
        return len(self._sessions)

    @property
    def leases_held(self) -> int:
        """Leases held on this gateway."""
        return self._service.leases.leased

    async def wait_drained(self, grace: float) -> bool:
        """Wait until no session holds a lease; False if ``grace`` seconds passed first."""
        try:
            async with asyncio.timeout(grace):
                while self.leases_held:
                    self._released.clear()
                    await self._released.wait()
        except TimeoutError:
            return False
        return True

    def drain(self, grace: float) -> None:
        """Ask every worker to finish its in-flight jobs; refuse new sessions."""
        self._draining = True
        for session in self._sessions:
            session.drain(grace)

    @unary
    async def ListWorkers(
        self, request: worker_service_pb2.ListWorkersRequest, context: Context
    ) -> worker_service_pb2.ListWorkersResponse:
        """List the worker streams of every gateway sharing the provider."""
        workers = await self._service.list_workers(request.queue)
        return worker_service_pb2.ListWorkersResponse(workers=[_info(w) for w in workers])

    @unary
    async def DrainWorker(
        self, request: worker_service_pb2.DrainWorkerRequest, context: Context
    ) -> worker_service_pb2.DrainWorkerResponse:
        """Ask a worker's streams to finish their jobs and disconnect."""
        drained = await self._service.drain_worker(request.worker_id, request.session_id)
        return worker_service_pb2.DrainWorkerResponse(drained=drained)

    async def StreamJobs(self, request_iterator: Any, context: Context) -> AsyncIterator[Response]:
        """Run one worker session until either side ends it."""
        try:
            with self._streams.hold():
                async for frame in self._serve(context):
                    yield frame
        except Exception as error:
            await abort(context, error)

    async def _serve(self, context: Context) -> AsyncIterator[Response]:
        if self._draining:
            raise UnavailableError("the gateway is shutting down; reconnect to another one")
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        consumer = self._service.consumer(first)
        session = Session(
            context,
            consumer,
            first.open.max_in_flight,
            self._service,
            self._settings,
            self._released,
            self._metrics,
        )
        self._sessions.add(session)
        try:
            self._service.connect(consumer)
            # Closed here, not when collected: gRPC closes this generator at a
            # write that failed, and the session must stop taking jobs before
            # disconnect() puts its leases back, or it takes them again.
            async with contextlib.aclosing(session.run()) as frames:
                async for frame in frames:
                    yield frame
        finally:
            self._sessions.discard(session)
            await self._service.disconnect(consumer)
            self._released.set()
        if session.error is not None:
            raise session.error


def _info(worker: WorkerInfo) -> worker_service_pb2.WorkerInfo:
    msg = worker_service_pb2.WorkerInfo(
        worker_id=worker.worker_id,
        session_id=worker.session_id,
        host=worker.host,
        pid=worker.pid,
        sdk=worker.sdk,
        queues=worker.queues,
        job_types=worker.job_types,
        credits=worker.credits,
        in_flight=worker.in_flight,
        completed=worker.completed,
        failed=worker.failed,
        gateway=worker.gateway,
        labels=worker.labels,
        draining=worker.draining,
    )
    set_time(msg.connect_time, worker.connect_time)
    set_time(msg.last_seen_time, worker.last_seen_time)
    return msg
