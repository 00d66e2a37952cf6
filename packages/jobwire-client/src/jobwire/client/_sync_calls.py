"""The blocking client's channel, stubs and unary calls, shared by its service areas."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message

from jobwire.client._base import BaseClient
from jobwire.client._sync_stream import SyncEnqueuer
from jobwire.v1 import queue_service_pb2_grpc, schedule_service_pb2_grpc, worker_service_pb2_grpc

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class SyncCalls(BaseClient):
    """What every part of `Client` calls through: its stubs and `_call`."""

    _channel: grpc.Channel
    _queue: queue_service_pb2_grpc.QueueServiceStub
    _schedules: schedule_service_pb2_grpc.ScheduleServiceStub
    _workers: worker_service_pb2_grpc.WorkerServiceStub
    _enqueuer: SyncEnqueuer

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        self._ensure_open()
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from error
