"""`JobRequest`: a job to enqueue, checked and turned into its request message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobwire.client._convert import to_duration
from jobwire.client._errors import InvalidArgumentError
from jobwire.client._serializers import Serializer, encode_payload
from jobwire.v1 import queue_service_pb2


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job to enqueue with `enqueue_many`; the fields are those of `Client.enqueue`.

    Raises:
        InvalidArgumentError: `at` is a naive datetime, or both `delay` and `at` are set.
    """

    type: str
    payload: Any = None
    _: KW_ONLY
    queue: str = "default"
    delay: float | timedelta | None = None
    at: datetime | None = None
    max_retries: int | None = None
    timeout: float | timedelta | None = None
    deduplication_key: str | None = None
    attributes: Mapping[str, str] | None = field(default=None, hash=False)
    content_type: str | None = None
    #: 0 to 9, higher runs first; None means the gateway's default (5).
    priority: int | None = None
    #: Groups the job for flow control (e.g. a customer id); see `Client.enqueue`.
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.at.utcoffset() is None:
            raise InvalidArgumentError(
                "`at` must be timezone-aware, e.g. datetime.now(UTC) + timedelta(hours=1)",
                metadata={"field": "at"},
            )
        if self.at is not None and self.delay is not None:
            raise InvalidArgumentError("give `delay` or `at`, not both", metadata={"field": "at"})

    def to_proto(
        self, serializer: Serializer, request_id: str
    ) -> queue_service_pb2.EnqueueJobRequest:
        """Builds the `jobwire.v1.EnqueueJobRequest`.

        Args:
            serializer: Encodes a payload that is not bytes.
            request_id: Idempotency key; a retried request with it enqueues nothing new.
        """
        payload, content_type = encode_payload(self.payload, serializer, self.content_type)
        request = queue_service_pb2.EnqueueJobRequest(
            queue=self.queue,
            type=self.type,
            payload=payload,
            content_type=content_type,
            attributes=self.attributes,
            deduplication_key=self.deduplication_key or "",
            request_id=request_id,
            concurrency_key=self.concurrency_key or "",
        )
        if self.delay is not None:
            request.delay.CopyFrom(to_duration(self.delay))
        if self.at is not None:
            request.schedule_time.FromDatetime(self.at)
        if self.max_retries is not None:
            request.max_retries = self.max_retries
        if self.timeout is not None:
            request.timeout.CopyFrom(to_duration(self.timeout))
        if self.priority is not None:
            request.priority = self.priority
        return request
