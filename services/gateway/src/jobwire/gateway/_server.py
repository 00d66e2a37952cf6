"""The gateway process: gRPC server, servicers, health, reflection and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.engine import make_url

from jobwire.gateway._config import GatewaySettings, TLSSettings
from jobwire.gateway._dashboard import InProcessDashboard
from jobwire.gateway._errors import StartError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._inprocess import InProcessWorker
from jobwire.gateway._malformed import MalformedRequestInterceptor
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._service import JobService
from jobwire.gateway.auth import AuthInterceptor
from jobwire.gateway.providers import QueueProvider, create_provider
from jobwire.gateway.servicers import QueueServicer, ScheduleServicer, WorkerServicer
from jobwire.gateway.servicers._streams import StreamSlots
from jobwire.v1 import (
    queue_service_pb2,
    queue_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

logger = logging.getLogger("jobwire.gateway")

SERVICE_NAMES = (
    queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
)


class Gateway:
    """A running gateway: ``await Gateway(settings).start()``, then ``await stop()``.

    Also an async context manager. ``address`` is known after ``start()`` (the
    configured port may be 0).
    """

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()
        self.events = JobEvents()
        self.provider: QueueProvider[Any] = create_provider(self.settings.provider, self.events)
        self.metrics = GatewayMetrics()
        self.service = JobService(self.settings, self.provider, self.events, self.metrics)
        self.scheduler = self.service.scheduler
        self._streams = StreamSlots(self.settings.server.max_streams)
        self._workers = WorkerServicer(
            self.settings.server, self.service, self._streams, self.metrics
        )
        self._queue = QueueServicer(self.service, self._streams, lambda: self._workers.sessions > 0)
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._in_process: InProcessWorker | None = None
        self._dashboard: InProcessDashboard | None = None
        self._stopped = asyncio.Event()
        self._hurry = asyncio.Event()
        self.address = ""
        #: ``HOST:PORT`` of the Prometheus endpoint once started; empty when off.
        self.metrics_address = ""
        #: ``HOST:PORT`` of the in-process dashboard once started; empty when off.
        self.dashboard_address = ""

    async def start(self) -> Self:
        """Open the provider and start serving.

        If any step fails, what already started is stopped before the error
        propagates, so a failed start leaks no server, database or task.
        """
        try:
            await self._start()
        except BaseException:
            await self._close(grace=0)
            raise
        return self

    async def _start(self) -> None:
        server_settings = self.settings.server
        # Before anything else opens: a second gateway on a taken port must
        # leave the first one's files and queues alone.
        _check_port_free(server_settings.listen)
        await self.service.open()
        if server_settings.metrics_listen is not None:
            self.metrics_address = self.metrics.serve(
                server_settings.metrics_listen, lambda: self.service.leases.stats(None)
            )
        size = server_settings.max_message_bytes
        auth = server_settings.auth
        in_process = self.settings.worker.mode == "in-process"
        dashboard = self.settings.dashboard
        # The in-process worker and dashboard authenticate with tokens that live
        # only in this process.
        worker_token = secrets.token_urlsafe(32) if auth.enabled and in_process else None
        dashboard_token = (
            secrets.token_urlsafe(32) if auth.enabled and dashboard.listen is not None else None
        )
        server = grpc.aio.server(
            # Authentication first, so an unknown caller's bytes are never parsed.
            interceptors=[
                *([AuthInterceptor(auth, worker_token, dashboard_token)] if auth.enabled else []),
                MalformedRequestInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # Notice dead peers on idle streams without waiting for TCP.
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # gRPC sets SO_REUSEPORT by default: a second gateway on the
                # same port would then serve half the connections and drop
                # their jobs when it stops. One port, one gateway.
                ("grpc.so_reuseport", 0),
            ],
        )
        queue_service_pb2_grpc.add_QueueServiceServicer_to_server(self._queue, server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(self._workers, server)
        schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
            ScheduleServicer(self.scheduler, self.service), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if server_settings.reflection:
            names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
            reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
        host, _, _ = server_settings.listen.rpartition(":")
        tls = server_settings.tls
        try:
            port = (
                server.add_insecure_port(server_settings.listen)
                if tls is None
                else server.add_secure_port(server_settings.listen, _server_credentials(tls))
            )
        except RuntimeError:
            _check_port_free(server_settings.listen)  # taken since the first look?
            raise StartError(
                f"cannot listen on {server_settings.listen}", key="server.listen"
            ) from None
        await server.start()
        self._server = server
        self.address = f"{host}:{port}"
        self.service.workers.start(self.address)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if in_process:
            self._in_process = InProcessWorker(self.settings.worker, self.address, worker_token)
            self._in_process.start()
        if dashboard.listen is not None:
            self._dashboard = InProcessDashboard(dashboard, self.address, dashboard_token)
            await self._dashboard.start()
            self.dashboard_address = self._dashboard.address
        logger.info(
            "jobwire gateway serving on %s (provider %s, %s, auth %s)",
            self.address,
            self.settings.provider.type,
            "plaintext" if tls is None else "mutual TLS" if tls.require_client_cert else "TLS",
            "on" if auth.enabled else "off",
        )
        if self.scheduler is not None:
            logger.info("scheduler database: %s", _describe_database(self.settings))

    async def stop(self, grace: float | None = None) -> None:
        """Drain workers, wait up to ``grace`` seconds for their leases, then stop.

        Leases still held at the end are released, so their jobs are available
        again to the next gateway (with a durable provider).
        """
        if self._server is None or self._stopped.is_set():
            return
        if grace is None:
            grace = self.settings.server.shutdown_grace.total_seconds()
        await self._health.enter_graceful_shutdown()
        if self._dashboard is not None:
            await self._dashboard.stop()
        draining = asyncio.ensure_future(self._drain(grace))
        hurried = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait((draining, hurried), return_when=asyncio.FIRST_COMPLETED)
        for task in (draining, hurried):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._hurry.is_set():
            logger.warning("stopping now: %d jobs in flight released", self.in_flight)
        await self._close(grace=0 if self._hurry.is_set() else min(1.0, grace))
        logger.info("jobwire gateway on %s stopped", self.address)

    def stop_now(self) -> None:
        """Make a running :meth:`stop` end at once, without waiting for in-flight jobs.

        Their leases are released: a durable provider hands the jobs out again;
        the memory provider drops them (and logs how many).
        """
        self._hurry.set()

    @property
    def in_flight(self) -> int:
        """Jobs delivered to workers and not yet answered."""
        return self._workers.leases_held

    async def _drain(self, grace: float) -> None:
        # Producers' enqueue streams move to another gateway while workers finish.
        self._queue.enqueue_streams.drain()
        if self._in_process is not None:
            await self._in_process.stop()
        self._workers.drain(grace)
        await asyncio.gather(
            self._workers.wait_drained(grace), self._queue.enqueue_streams.wait_closed(grace)
        )

    async def _close(self, grace: float) -> None:
        """Stop the server, then the scheduler and the provider, whatever started."""
        if self._dashboard is not None:
            await self._dashboard.stop()
        if self._server is not None:
            await self._server.stop(grace=grace)
        await self.service.aclose()
        self.metrics.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _server_credentials(tls: TLSSettings) -> grpc.ServerCredentials:
    """Read the certificate files into gRPC server credentials."""
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=None if tls.client_ca is None else tls.client_ca.read_bytes(),
        require_client_auth=tls.require_client_cert,
    )


def _check_port_free(listen: str) -> None:
    """Raise :class:`StartError` when another process listens on ``listen``."""
    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except OSError:
        return  # gRPC reports an unknown host in its own words
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC binds: SO_REUSEADDR, so a port in TIME_WAIT is not "in use".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StartError(f"{listen} is already in use") from None


def _describe_database(settings: GatewaySettings) -> str:
    """The scheduler's database: the absolute path of a SQLite file, else the URL sans password."""
    url = make_url(settings.scheduler.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).resolve())
    return url.render_as_string(hide_password=True)
