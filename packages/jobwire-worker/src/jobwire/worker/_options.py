"""A worker's settings: its arguments checked, and completed with their defaults."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import timedelta

from jobwire.worker.__about__ import __version__
from jobwire.worker._registry import HandlerRegistry
from jobwire.worker._serializer import JsonSerializer, Serializer
from jobwire.worker._serving import DEFAULT_BACKOFF, Backoff
from jobwire.worker._tls import TLSConfig

# Default credits per handler slot, as Celery's prefetch multiplier. The waiting
# jobs arrive together, in fewer and fuller frames: on no-op jobs 4 drains
# 25-35 % more than 2 (bench/README.md, "Where the time goes").
PREFETCH_MULTIPLIER = 4


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerOptions:
    """The settings of a :class:`~jobwire.worker.Worker` (its arguments are documented there).

    Raises:
        TypeError: ``registry`` is not a :class:`HandlerRegistry`.
        ValueError: no queue, or ``concurrency`` or ``max_in_flight`` below 1.
    """

    def __init__(
        self,
        target: str,
        *,
        registry: HandlerRegistry,
        queues: Sequence[str] = ("default",),
        concurrency: int = 8,
        max_in_flight: int | None = None,
        worker_id: str | None = None,
        job_types: Sequence[str] | None = None,
        lease_duration: timedelta | float | None = None,
        token: str | None = None,
        tls: TLSConfig | None = None,
        shutdown_timeout: timedelta | float = timedelta(seconds=30),
        reconnect: Backoff = DEFAULT_BACKOFF,
        serializer: Serializer | None = None,
        labels: Mapping[str, str] | None = None,
        channel_options: Sequence[tuple[str, str | int]] = (),
    ) -> None:
        if not isinstance(registry, HandlerRegistry):
            raise TypeError(f"registry must be a HandlerRegistry, got {type(registry).__name__}")
        if isinstance(queues, str):
            queues = (queues,)
        if not queues or not all(queues):
            raise ValueError("queues must name at least one queue")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._target = target
        self._registry = registry
        self._queues = tuple(queues)
        self._concurrency = concurrency
        self._max_in_flight = max_in_flight or PREFETCH_MULTIPLIER * concurrency
        self._worker_id = worker_id or _default_worker_id()
        self._job_types = None if job_types is None else tuple(job_types)
        self._lease_duration = (
            None if lease_duration is None else timedelta(seconds=_seconds(lease_duration))
        )
        token = token if token is not None else os.environ.get("JOBWIRE_TOKEN")
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._shutdown_timeout = _seconds(shutdown_timeout)
        self._reconnect = reconnect
        self._serializer = serializer or JsonSerializer()
        self._labels = {
            "hostname": socket.gethostname(),
            "pid": str(os.getpid()),
            "sdk": "jobwire-worker-python",
            "sdk_version": __version__,
            **(labels or {}),
        }
        self._channel_options: list[tuple[str, str | int]] = [
            # Deliveries batch many payloads; the gateway bounds their size.
            ("grpc.max_receive_message_length", -1),
            # Reconnecting is our loop's job; a fresh channel per session
            # must not sit out gRPC's own (up to 120 s) connection backoff.
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 10_000),
            *channel_options,
        ]
        self._credentials = None if tls is None else tls.credentials()
        if tls is not None and tls.server_name:
            self._channel_options.append(("grpc.ssl_target_name_override", tls.server_name))

    def __repr__(self) -> str:
        return f"<Worker id={self._worker_id!r} target={self._target!r} queues={self._queues!r}>"

    # Read-only settings ---------------------------------------------------------

    @property
    def worker_id(self) -> str:
        """Identifies this worker to the gateway, the same across reconnects."""
        return self._worker_id

    @property
    def target(self) -> str:
        """Gateway address."""
        return self._target

    @property
    def queues(self) -> tuple[str, ...]:
        """Queues the worker takes jobs from."""
        return self._queues

    @property
    def concurrency(self) -> int:
        """Most handlers running at once."""
        return self._concurrency

    @property
    def max_in_flight(self) -> int:
        """Credits requested from the gateway."""
        return self._max_in_flight
