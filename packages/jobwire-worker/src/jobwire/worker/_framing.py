"""The ``StreamJobs`` frames a worker writes and the gateway's answers it reads.

Python gRPC costs about 300 µs of CPU per message whatever its size, so the
session never sends one frame per job: every handler that finished since the
last write goes out in one ``ack`` frame (failures in one ``nack``), written
as soon as the single writer is free. Nothing waits on a timer to fill a
batch, so an idle worker still answers after one message's latency.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.v1 import job_pb2, worker_service_pb2
from jobwire.worker.__about__ import __version__
from jobwire.worker._errors import ConnectionFailedError

Request = worker_service_pb2.StreamJobsRequest
Response = worker_service_pb2.StreamJobsResponse
NackItem = Request.Nack.Item
Reason = Response.LeaseRevoked.Reason
Call = grpc.aio.StreamStreamCall[Request, Response]
# An encoded handler result and its media type; None when it returned None.
Result = tuple[bytes, str] | None

SDK = f"jobwire-worker-python/{__version__}"
"""What the worker reports as its SDK in `open`."""

# Errors another attempt cannot fix: give up instead of reconnecting forever.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

# Results in one ack frame stay under this unless `opened` names the gateway's
# limit (gRPC's default receive limit is 4 MiB); a larger result fails its job.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
# Bytes of an ack frame that are not results: lease ids, field tags.
FRAME_OVERHEAD = 64 * 1024

REVOKE_REASONS = {
    Reason.REASON_CANCELLED: "job cancelled",
    Reason.REASON_TIMED_OUT: "job timed out",
    Reason.REASON_EXPIRED: "lease expired",
    Reason.REASON_NOT_FOUND: "lease unknown to the gateway",
}


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


def open_frame(settings: SessionSettings) -> Request:
    """Return the ``open`` frame that starts a session (with host, pid and SDK)."""
    frame = Request()
    open_ = frame.open
    open_.worker_id = settings.worker_id
    open_.queues.extend(settings.queues)
    open_.job_types.extend(settings.job_types)
    open_.max_in_flight = settings.max_in_flight
    if settings.lease_duration is not None:
        open_.lease_duration.FromTimedelta(settings.lease_duration)
    open_.labels.update(settings.labels)
    # Shown to operators by ListWorkers.
    open_.host = socket.gethostname()
    open_.pid = os.getpid()
    open_.sdk = SDK
    return frame


def fatal_error(exc: grpc.aio.AioRpcError) -> ConnectionFailedError:
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


class Outbox:
    """What the single writer sends next, and the writer itself.

    Appending and calling :meth:`wake` is all a finishing handler does; the
    writer turns the lot into few frames.
    """

    __slots__ = (
        "_close_requested",
        "_wake",
        "acks",
        "closed",
        "drain",
        "extend",
        "max_frame_bytes",
        "nacks",
        "progress",
        "refusable",
    )

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self.acks: list[tuple[str, Result]] = []
        self.nacks: list[NackItem] = []
        self.extend: set[str] = set()
        self.progress: dict[str, job_pb2.JobProgress] = {}
        #: Leases whose answer the gateway may refuse without anything being
        #: wrong: local timeouts racing the gateway's, answers for expired leases.
        self.refusable: set[str] = set()
        #: Set to send a `drain` frame: a stopping worker tells the gateway
        #: first, so answers it sends while finishing its jobs pull in no new work.
        self.drain = False
        #: Results in one ack frame stay under this many bytes.
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES - FRAME_OVERHEAD
        self._close_requested = False
        #: Set once the write side is closed: nothing more can be answered.
        self.closed = False

    @property
    def close_requested(self) -> bool:
        """True once :meth:`close` was called."""
        return self._close_requested

    def wake(self) -> None:
        """Let the writer send what is pending."""
        self._wake.set()

    def close(self) -> None:
        """Close the write side once everything pending is written."""
        self._close_requested = True
        self._wake.set()

    async def write_loop(self, call: Call) -> None:
        """Write pending frames whenever woken, until closed."""
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            while (frame := self.next_frame()) is not None:
                await call.write(frame)
            if self._close_requested:
                self.closed = True
                await call.done_writing()
                return

    def next_frame(self) -> Request | None:
        """Build the next frame from what is pending, or None when nothing is."""
        if self.extend:
            frame = Request()
            frame.extend_lease.lease_ids.extend(self.extend)
            self.extend.clear()
            return frame
        if self.progress:
            lease_id, update = self.progress.popitem()
            frame = Request()
            frame.progress.lease_id = lease_id
            frame.progress.progress.CopyFrom(update)
            return frame
        if self.drain:
            self.drain = False
            frame = Request()
            frame.drain.SetInParent()
            return frame
        if self.acks:
            frame = Request()
            add = frame.ack.items.add
            acks, size = self.acks, 0
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
        if self.nacks:
            frame = Request()
            frame.nack.items.extend(self.nacks)
            self.nacks.clear()
            return frame
        return None
