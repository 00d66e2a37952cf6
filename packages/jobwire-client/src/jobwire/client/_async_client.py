"""`AsyncClient`: the asyncio producer client."""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Self, Unpack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobwire.client._async_jobs import AsyncJobs
from jobwire.client._async_operations import AsyncOperations
from jobwire.client._async_schedules import AsyncSchedules
from jobwire.client._config import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    ClientOptions,
    RetryConfig,
    TLSConfig,
)
from jobwire.client._serializers import Serializer


class AsyncClient(AsyncJobs, AsyncSchedules, AsyncOperations):
    """Asyncio client of a jobwire gateway; see `Client` for the arguments.

    Enqueues go over one `EnqueueStream` the client keeps open, and concurrent
    `enqueue` calls are coalesced: those made while a frame is in flight (or
    during one loop iteration) leave together in the next frame, never held back
    by a timer. Each caller still gets its own job or its own error.

    The channel is opened on first use and belongs to that event loop: use one
    client per loop.

    Example:
        ```python
        async with AsyncClient("127.0.0.1:50051") as client:
            jobs = await asyncio.gather(*(client.enqueue("resize", n) for n in range(100)))
            print(await jobs[0].wait(timeout=30))
        ```
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
        self._connection = None

    @classmethod
    async def connect(cls, address: str | None = None, **options: Unpack[ClientOptions]) -> Self:
        """Creates a client and checks that the gateway answers its health check.

        Args:
            address: The gateway, host:port.
            **options: The keyword arguments of `Client`.

        Raises:
            GatewayUnavailableError: No gateway answered within a few seconds (at most
                `timeout`), or it is not serving. The message names the address.
        """
        client = cls(address, **options)
        try:
            health = health_pb2_grpc.HealthStub(client._connect().channel)
            try:
                response = await health.Check(
                    health_pb2.HealthCheckRequest(),
                    timeout=client._connect_timeout,
                    metadata=client._metadata,
                )
            except grpc.RpcError as error:
                raise client._connect_error(error) from error
            client._check_serving(response)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def aclose(self) -> None:
        """Sends the enqueues still pending, waits for them, then closes the channel."""
        if self._closed:
            return
        self._closed = True
        if self._connection is not None:
            await self._connection.enqueuer.aclose()
            await self._connection.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
