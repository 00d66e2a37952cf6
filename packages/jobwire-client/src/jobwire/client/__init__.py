"""Producer SDK of jobwire: enqueue jobs and follow them, sync or async.

Example:
    ```python
    from jobwire.client import Client

    with Client() as client:
        job = client.enqueue("email:send", {"to": "ada@example.com"})
        print(job.wait(timeout=30))
    ```
"""

from __future__ import annotations

import logging

from jobwire.client import _display  # noqa: F401  # registers how models render (see _rich)
from jobwire.client.__about__ import __version__
from jobwire.client._async_client import AsyncClient
from jobwire.client._async_pipeline import AsyncPendingJob, AsyncPipeline
from jobwire.client._client import Client
from jobwire.client._config import ClientOptions, RetryConfig, TLSConfig
from jobwire.client._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FlowControlUnsupportedError,
    GatewayUnavailableError,
    InternalError,
    InvalidArgumentError,
    JobCancelledError,
    JobDeadError,
    JobNotFoundError,
    JobNotRetryableError,
    JobTerminalError,
    JobwireError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PriorityUnsupportedError,
    ResourceExhaustedError,
    ScheduleNotFoundError,
    StatusCode,
    UnauthenticatedError,
    UnimplementedError,
    WaitTimeoutError,
    WorkerNotFoundError,
)
from jobwire.client._job_lists import JobList, JobPage
from jobwire.client._models import Job, JobFailure, JobProgress, JobState
from jobwire.client._operations import WorkerInfo
from jobwire.client._pipeline import PendingJob, Pipeline
from jobwire.client._pipeline_base import EnqueueFailedError, PipelineFullError
from jobwire.client._queue_config import KeyPolicy, QueueConfig
from jobwire.client._queue_stats import QueueStats, QueueStatsList
from jobwire.client._requests import JobRequest
from jobwire.client._schedules import MisfirePolicy, Schedule, ScheduleList, parse_interval
from jobwire.client._serializers import JsonSerializer, RawSerializer, Serializer

__all__ = [
    "AlreadyExistsError",
    "AsyncClient",
    "AsyncPendingJob",
    "AsyncPipeline",
    "Client",
    "ClientOptions",
    "DeadlineExceededError",
    "EnqueueFailedError",
    "FailedPreconditionError",
    "FlowControlUnsupportedError",
    "GatewayUnavailableError",
    "InternalError",
    "InvalidArgumentError",
    "Job",
    "JobCancelledError",
    "JobDeadError",
    "JobFailure",
    "JobList",
    "JobNotFoundError",
    "JobNotRetryableError",
    "JobPage",
    "JobProgress",
    "JobRequest",
    "JobState",
    "JobTerminalError",
    "JobwireError",
    "JsonSerializer",
    "KeyPolicy",
    "MisfirePolicy",
    "NotFoundError",
    "PayloadTooLargeError",
    "PendingJob",
    "PermissionDeniedError",
    "Pipeline",
    "PipelineFullError",
    "PriorityUnsupportedError",
    "QueueConfig",
    "QueueStats",
    "QueueStatsList",
    "RawSerializer",
    "ResourceExhaustedError",
    "RetryConfig",
    "Schedule",
    "ScheduleList",
    "ScheduleNotFoundError",
    "Serializer",
    "StatusCode",
    "TLSConfig",
    "UnauthenticatedError",
    "UnimplementedError",
    "WaitTimeoutError",
    "WorkerInfo",
    "WorkerNotFoundError",
    "__version__",
    "parse_interval",
]

# Show `jobwire.client.Client` rather than `jobwire.client._client.Client` in reprs and docs.
for _name in __all__:
    if not _name.startswith("__"):
        globals()[_name].__module__ = "jobwire.client"
del _name

# A library logs; the application decides where to (the logging HOWTO's advice),
# so nothing reaches stderr unless logging is configured.
logging.getLogger(__name__).addHandler(logging.NullHandler())
