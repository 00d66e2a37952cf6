"""The SQS message of a job, and the SQS provider's settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from jobwire.gateway import GatewaySettings, SqsProviderSettings
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers.sqs._codec import decode as _decode
from jobwire.gateway.providers.sqs._codec import encode as _encode

URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"


def job(**fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": "j1",
        "queue": "default",
        "type": "email:send",
        "payload": b"\x00\xffbinary",
        "content_type": "application/octet-stream",
        "attributes": {"trace": "abc", "tenant.id": "7"},
        "max_retries": 3,
        "timeout": 30.0,
        "deduplication_key": "k",
        "create_time": 1_700_000_000.5,
        "state": JobState.PENDING,
        "schedule": "nightly",
    }
    return JobRecord(**{**values, **fields})


def received(entry: dict[str, Any]) -> Any:
    """What ReceiveMessage returns for a message sent with ``entry``."""
    return {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": entry["MessageBody"],
        "MessageAttributes": entry.get("MessageAttributes", {}),
    }


def test_a_job_travels_whole() -> None:
    original = job()
    out = _encode(original, URL, delay=0)
    assert out.entry["MessageAttributes"] == {
        "trace": {"DataType": "String", "StringValue": "abc"},
        "tenant.id": {"DataType": "String", "StringValue": "7"},
    }
    assert "DelaySeconds" not in out.entry
    assert "MessageGroupId" not in out.entry
    body = json.loads(out.entry["MessageBody"])
    assert "attributes" not in body
    copy = _decode(received(out.entry))
    for name in ("id", "queue", "type", "payload", "content_type", "attributes", "max_retries"):
        assert getattr(copy, name) == getattr(original, name), name
    assert (copy.timeout, copy.create_time, copy.schedule) == (30.0, 1_700_000_000.5, "nightly")
    assert (copy.state, copy.attempt) == (JobState.PENDING, 0)


def test_size_counts_the_body_and_the_attributes() -> None:
    out = _encode(job(payload=b"x" * 3000), URL, delay=0)
    attributes = len("trace") + len("String") + 3 + len("tenant.id") + len("String") + 1
    assert out.size == len(out.entry["MessageBody"].encode()) + attributes
    assert out.size > 4000  # base64 grows the payload by a third


@pytest.mark.parametrize(
    "attributes",
    [
        {f"k{i}": "v" for i in range(11)},  # SQS takes at most 10
        {"empty": ""},  # SQS refuses empty values
        {"AWS.reserved": "x"},  # and names in AWS's namespace
        {"has space": "x"},
    ],
)
def test_attributes_sqs_cannot_carry_go_in_the_body(attributes: dict[str, str]) -> None:
    out = _encode(job(attributes=attributes), URL, delay=0)
    assert "MessageAttributes" not in out.entry
    assert json.loads(out.entry["MessageBody"])["attributes"] == attributes
    assert _decode(received(out.entry)).attributes == attributes


def test_fifo_queues_get_the_job_id_as_group_and_deduplication_id() -> None:
    out = _encode(job(), URL + ".fifo", delay=0)
    assert (out.entry["MessageGroupId"], out.entry["MessageDeduplicationId"]) == ("j1", "j1")
    assert _encode(job(), URL, delay=7).entry["DelaySeconds"] == 7


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"hello": "world"}', '{"jobwire": 1, "id": "x"}']
)
def test_foreign_messages_are_told_apart(body: str) -> None:
    with pytest.raises(ValueError, match="jobwire message"):
        _decode({"Body": body})


def test_settings_need_the_default_queue_and_share_the_scheduler_database() -> None:
    with pytest.raises(ValidationError, match="must name the `default` queue"):
        SqsProviderSettings(queue_urls={"mail": URL})
    settings = GatewaySettings.model_validate(
        {
            "provider": {"type": "sqs", "queue_urls": {"default": URL}},
            "scheduler": {"database_url": "postgresql+asyncpg://db/jobwire"},
        }
    )
    assert isinstance(settings.provider, SqsProviderSettings)
    assert settings.provider.database_url == "postgresql+asyncpg://db/jobwire"
    assert settings.provider.visibility_timeout.total_seconds() == 30
    own = GatewaySettings.model_validate(
        {
            "provider": {
                "type": "sqs",
                "queue_urls": {"default": URL},
                "database_url": "sqlite+aiosqlite:///records.db",
            }
        }
    )
    assert isinstance(own.provider, SqsProviderSettings)
    assert own.provider.database_url == "sqlite+aiosqlite:///records.db"
