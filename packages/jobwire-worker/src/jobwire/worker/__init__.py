"""Streaming worker SDK for jobwire.

Register handlers on a :class:`HandlerRegistry` and run them with a
:class:`Worker` (or the ``jobwire-worker`` command)::

    from jobwire.worker import HandlerRegistry, JobContext, Worker

    registry = HandlerRegistry()

    @registry.handler("email:send")
    async def send_email(ctx: JobContext) -> dict[str, str]:
        ctx.log.info("sending to %s", ctx.payload["to"])
        return {"status": "sent"}

    Worker("127.0.0.1:50051", registry=registry).run_sync()
"""

from __future__ import annotations

import inspect
import logging

from jobwire.worker.__about__ import __version__
from jobwire.worker._context import JobContext, current_context
from jobwire.worker._errors import (
    ConnectionFailedError,
    DuplicateHandlerError,
    HandlerNotFoundError,
    NonRetryableError,
    Retry,
    SerializationError,
    WorkerError,
)
from jobwire.worker._registry import (
    HandlerFunc,
    HandlerRegistry,
    RegisteredHandler,
    TargetError,
    load_registry,
)
from jobwire.worker._serializer import JsonSerializer, Serializer
from jobwire.worker._serving import Backoff
from jobwire.worker._tls import TLSConfig
from jobwire.worker._worker import Worker

__all__ = [  # noqa: RUF022  # grouped by purpose, not sorted
    # Running a worker
    "Backoff",
    "TLSConfig",
    "Worker",
    # Handlers
    "HandlerFunc",
    "HandlerRegistry",
    "JobContext",
    "RegisteredHandler",
    "current_context",
    "load_registry",
    # Payloads and results
    "JsonSerializer",
    "Serializer",
    # Errors: raised by handlers to steer retries
    "NonRetryableError",
    "Retry",
    # Errors: raised by the SDK
    "ConnectionFailedError",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "SerializationError",
    "TargetError",
    "WorkerError",
    "__version__",
]

# Show `jobwire.worker.Worker` rather than `jobwire.worker._worker.Worker` in
# reprs, tracebacks and docs, as httpx does.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or inspect.isfunction(_obj):
        _obj.__module__ = __name__
del _name, _obj

# A library logs; the application decides where to (the logging HOWTO's advice),
# so nothing reaches stderr unless logging is configured.
logging.getLogger(__name__).addHandler(logging.NullHandler())
