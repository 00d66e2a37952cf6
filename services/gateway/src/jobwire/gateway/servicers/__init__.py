"""gRPC servicers of the jobwire.v1 services."""

from __future__ import annotations

from jobwire.gateway.servicers.queue import QueueServicer
from jobwire.gateway.servicers.schedule import ScheduleServicer
from jobwire.gateway.servicers.worker import WorkerServicer

__all__ = ["QueueServicer", "ScheduleServicer", "WorkerServicer"]
