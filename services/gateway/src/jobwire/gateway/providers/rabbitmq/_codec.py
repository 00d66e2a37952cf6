"""The AMQP message of a jobwire job: the payload as the body, the record in headers.

The body is the payload as it is (no encoding), so any AMQP client can read
a job; the job's id is the message id, its type the message type, and the
rest of what a record needs to be rebuilt (when its row was pruned or lost)
travels in headers. ``x-jobwire-after`` is the attempt count the job had when
the message was published: a delivery whose record has moved past it is a
stale copy (see :mod:`._receipt`). ``x-jobwire-redelivered`` marks a copy
the gateway published in place of a message the broker had redelivered
(:func:`handed_back`), so the copy still says a lease on it may have been lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pamqp.commands import Basic

from jobwire.gateway._models import JobRecord, JobState

FORMAT = 1
"""Version of the message layout (header ``x-jobwire``)."""
PERSISTENT = 2
"""``delivery_mode`` of a message the broker writes to disk."""


@dataclass(slots=True, frozen=True)
class Carried:
    """What a delivered message says of its job."""

    record: JobRecord
    after: int
    """Attempts the job had made when the message was published."""


def properties(record: JobRecord, *, after: int, bucket: str = "", ttl_ms: int = 0) -> Any:
    """The ``basic.publish`` properties of a job's message.

    ``bucket`` and ``ttl_ms`` route it through a delay queue
    (:mod:`._topology`): it waits ``ttl_ms`` there, then comes back to its queue.
    """
    headers: dict[str, Any] = {
        "x-jobwire": FORMAT,
        "x-jobwire-queue": record.queue,
        "x-jobwire-max-retries": record.max_retries,
        "x-jobwire-dedup-key": record.deduplication_key,
        "x-jobwire-create-time": record.create_time,
        "x-jobwire-schedule": record.schedule,
        "x-jobwire-after": after,
    }
    if record.timeout is not None:
        headers["x-jobwire-timeout"] = record.timeout
    if record.attributes:
        headers["x-jobwire-attributes"] = dict(record.attributes)
    if bucket:
        headers["x-jobwire-delay"] = bucket
    return Basic.Properties(
        content_type=record.content_type or None,
        delivery_mode=PERSISTENT,
        message_id=record.id,
        message_type=record.type,
        headers=headers,
        expiration=str(ttl_ms) if bucket else None,
    )


REDELIVERED = "x-jobwire-redelivered"
"""Header of a copy published in place of a redelivered message."""


def handed_back(headers: dict[str, Any], returns: int, redelivered: bool) -> dict[str, Any]:
    """The headers of a fresh copy of a delivered message that started no attempt.

    The broker's count of the message's returns moves into ``x-jobwire-after``
    (a fresh copy starts its own count), and a redelivered message's copy
    keeps that mark: its job's record may say ``PROCESSING`` for a lease lost
    with a connection, and only a redelivery ends that attempt.
    """
    copied = dict(headers)
    copied.pop("x-delivery-count", None)
    after = copied.get("x-jobwire-after", 0)
    copied["x-jobwire-after"] = (after if isinstance(after, int) else 0) + returns
    if redelivered:
        copied[REDELIVERED] = True
    return copied


def redelivered(delivery: Basic.Deliver, headers: dict[str, Any]) -> bool:
    """Whether the broker redelivered a message, or the gateway handed back such a message."""
    return bool(delivery.redelivered) or headers.get(REDELIVERED) is True


def decode(props: Any, body: bytes) -> Carried:
    """The job a delivered message carries, as a new pending record.

    Raises:
        ValueError: the message is not a jobwire job.
    """
    headers = props.headers or {}
    if headers.get("x-jobwire") != FORMAT or not props.message_id:
        raise ValueError("not a jobwire message (no x-jobwire header or message id)")
    try:
        timeout = headers.get("x-jobwire-timeout")
        created = float(headers["x-jobwire-create-time"])
        attributes = headers.get("x-jobwire-attributes") or {}
        record = JobRecord(
            id=str(props.message_id),
            queue=_text(headers["x-jobwire-queue"]),
            type=str(props.message_type or ""),
            payload=bytes(body),
            content_type=str(props.content_type or ""),
            attributes={_text(k): _text(v) for k, v in attributes.items()},
            max_retries=int(headers["x-jobwire-max-retries"]),
            timeout=float(timeout) if timeout is not None else None,
            deduplication_key=_text(headers.get("x-jobwire-dedup-key", "")),
            create_time=created,
            update_time=created,
            state=JobState.PENDING,
            schedule=_text(headers.get("x-jobwire-schedule", "")),
        )
        after = int(headers.get("x-jobwire-after", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"malformed jobwire message: {error!r}") from None
    if not math.isfinite(created):
        raise ValueError("malformed jobwire message: create time")
    return Carried(record, after)


def _text(value: Any) -> str:
    # pamqp hands back short strings as bytes, long ones as str.
    return value.decode() if isinstance(value, bytes) else str(value)
