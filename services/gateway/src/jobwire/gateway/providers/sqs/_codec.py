"""The SQS message of a jobwire job: a versioned JSON body, attributes where SQS allows."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobwire.gateway._models import JobRecord, JobState

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

MAX_DELAY = 900
"""Longest ``DelaySeconds`` SQS takes."""
_MAX_ATTRIBUTES = 10
_FORMAT = 1  # version of the message body
_ATTRIBUTE_NAME = re.compile(
    r"^(?!(?i:aws\.|amazon\.))(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}$"
)
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(slots=True, frozen=True)
class Outgoing:
    job_id: str
    url: str
    entry: dict[str, Any]
    size: int


def encode(record: JobRecord, url: str, delay: int) -> Outgoing:
    """The ``SendMessageBatch`` entry of a job, and its size as SQS counts it."""
    body: dict[str, Any] = {
        "jobwire": _FORMAT,
        "id": record.id,
        "queue": record.queue,
        "type": record.type,
        "content_type": record.content_type,
        "max_retries": record.max_retries,
        "timeout": record.timeout,
        "deduplication_key": record.deduplication_key,
        "create_time": record.create_time,
        "schedule": record.schedule,
        "payload": base64.b64encode(record.payload).decode("ascii"),
    }
    entry: dict[str, Any] = {}
    size = 0
    if attributes_fit(record.attributes):
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in record.attributes.items()
        }
        size += sum(
            len(name) + len("String") + len(value.encode())
            for name, value in record.attributes.items()
        )
    elif record.attributes:
        # SQS takes at most 10 attributes with restricted names and non-empty
        # values; jobs with others carry them in the body instead.
        body["attributes"] = record.attributes
    text = json.dumps(body, separators=(",", ":"))
    entry["MessageBody"] = text
    size += len(text.encode())
    if delay:
        entry["DelaySeconds"] = delay
    if url.endswith(".fifo"):
        # Each job its own group: no ordering holds jobs back. The job id as
        # deduplication id makes a re-sent enqueue one message, while jobwire's
        # own deduplication keys keep their configured window.
        entry["MessageGroupId"] = record.id
        entry["MessageDeduplicationId"] = record.id
    return Outgoing(record.id, url, entry, size)


def attributes_fit(attributes: dict[str, str]) -> bool:
    return len(attributes) <= _MAX_ATTRIBUTES and all(
        _ATTRIBUTE_NAME.match(name)
        and not name.endswith(".")
        and value
        and not _XML_INVALID.search(value)
        for name, value in attributes.items()
    )


def decode(raw: MessageTypeDef) -> JobRecord:
    """The job a jobwire message carries, as a new pending record.

    Raises:
        ValueError: the message is not a jobwire job.
    """
    try:
        body = json.loads(raw.get("Body", ""))
        if not isinstance(body, dict) or body.get("jobwire") != _FORMAT:
            raise ValueError("not a jobwire message (no `jobwire` format marker)")
        attributes = body.get("attributes")
        if attributes is None:
            attributes = {
                name: value.get("StringValue", "")
                for name, value in raw.get("MessageAttributes", {}).items()
            }
        timeout = body["timeout"]
        return JobRecord(
            id=str(body["id"]),
            queue=str(body["queue"]),
            type=str(body["type"]),
            payload=base64.b64decode(body["payload"], validate=True),
            content_type=str(body["content_type"]),
            attributes={str(k): str(v) for k, v in attributes.items()},
            max_retries=int(body["max_retries"]),
            timeout=float(timeout) if timeout is not None else None,
            deduplication_key=str(body["deduplication_key"]),
            create_time=float(body["create_time"]),
            update_time=float(body["create_time"]),
            state=JobState.PENDING,
            schedule=str(body["schedule"]),
        )
    except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as error:
        raise ValueError(f"malformed jobwire message: {error!r}") from None
