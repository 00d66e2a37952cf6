"""The asyncio client's connection, stubs and unary calls, shared by its service areas."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import Message

from jobwire.client._base import BaseClient
from jobwire.client._enqueue_stream import StreamEnqueuer
from jobwire.v1 import queue_service_pb2_grpc, schedule_service_pb2_grpc, worker_service_pb2_grpc

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub
    from jobwire.v1.schedule_service_pb2_grpc import ScheduleServiceAsyncStub
    from jobwire.v1.worker_service_pb2_grpc import WorkerServiceAsyncStub

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class AsyncCalls(BaseClient):
    """What every part of `AsyncClient` calls through: its connection and `_call`."""

    _connection: Connection | None

    def _connect(self) -> Connection:
        """Returns the connection of the running loop, opening it on first use."""
        self._ensure_open()
        loop = asyncio.get_running_loop()
        if self._connection is None:
            self._connection = Connection(self, self._aio_channel(), loop)
        elif self._connection.loop is not loop:
            raise RuntimeError(
                "this AsyncClient is bound to the event loop it was first used on; "
                "create one client per event loop"
            )
        return self._connection

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from error


class Connection:
    """The channel of an `AsyncClient` and what lives on its event loop."""

    def __init__(
        self, client: BaseClient, channel: grpc.aio.Channel, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.channel = channel
        self.loop = loop
        self.queue: QueueServiceAsyncStub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.schedules: ScheduleServiceAsyncStub = schedule_service_pb2_grpc.ScheduleServiceStub(
            channel
        )
        self.workers: WorkerServiceAsyncStub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        self.enqueuer = StreamEnqueuer(client, self.queue, loop, client._retry)
