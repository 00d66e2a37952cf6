"""`Client`: the blocking producer client."""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Self, Unpack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobwire.client._config import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    ClientOptions,
    RetryConfig,
    TLSConfig,
)
from jobwire.client._serializers import Serializer
from jobwire.client._sync_operations import SyncOperations
from jobwire.client._sync_schedules import SyncSchedules
from jobwire.client._sync_stream import SyncEnqueuer
from jobwire.client._sync_watch import SyncWatch
from jobwire.v1 import queue_service_pb2_grpc, schedule_service_pb2_grpc, worker_service_pb2_grpc


class Client(SyncWatch, SyncSchedules, SyncOperations):
    """Blocking client of a jobwire gateway.

    It uses a plain blocking gRPC channel and no event loop, so it works the same in
    scripts, threads and Jupyter notebooks (even inside a running loop).

    Example:
        ```python
        with Client("127.0.0.1:50051") as client:
            job = client.enqueue("email:send", {"to": "ada@example.com"})
            print(job.wait(timeout=30))
        ```

    Args:
        address: The gateway, host:port; defaults to `$JOBWIRE_GATEWAY`, else
            127.0.0.1:50051.
        timeout: Deadline of each call, in seconds or as a timedelta (streams and
            `wait` have their own).
        token: Bearer token sent with every call; defaults to `$JOBWIRE_TOKEN`.
        serializer: Encodes payloads that are not bytes and decodes payloads and
            results; defaults to `JsonSerializer()`.
        tls: TLS settings; None connects without TLS.
        retry: How gRPC retries calls the gateway could not take (UNAVAILABLE).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        token: str | None = None,
        serializer: Serializer | None = None,
        tls: TLSConfig | None = None,
        retry: RetryConfig = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            address, timeout=timeout, token=token, serializer=serializer, tls=tls, retry=retry
        )
        if tls is None:
            self._channel = grpc.insecure_channel(self._address, self._channel_options)
        else:
            self._channel = grpc.secure_channel(
                self._address, tls.credentials(), self._channel_options
            )
        self._queue = queue_service_pb2_grpc.QueueServiceStub(self._channel)
        self._schedules = schedule_service_pb2_grpc.ScheduleServiceStub(self._channel)
        self._workers = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._enqueuer = SyncEnqueuer(self)

    @classmethod
    def connect(cls, address: str | None = None, **options: Unpack[ClientOptions]) -> Self:
        """Creates a client and checks that the gateway answers its health check.

        Args:
            address: The gateway, host:port; defaults to `$JOBWIRE_GATEWAY`, else
            127.0.0.1:50051.
            **options: The keyword arguments of `Client`.

        Raises:
            GatewayUnavailableError: No gateway answered within a few seconds (at most
                `timeout`), or it is not serving. The message names the address.
        """
        client = cls(address, **options)
        try:
            health = health_pb2_grpc.HealthStub(client._channel)
            try:
                response = health.Check(
                    health_pb2.HealthCheckRequest(),
                    timeout=client._connect_timeout,
                    metadata=client._metadata,
                )
            except grpc.RpcError as error:
                raise client._connect_error(error) from error
            client._check_serving(response)
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        """Waits for the enqueues in flight, then closes the channels; other calls fail."""
        self._closed = True
        try:
            self._enqueuer.close()
        finally:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
