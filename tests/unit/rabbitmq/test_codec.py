"""A job's AMQP message: what a copy handed back by a gateway keeps of the original."""

from __future__ import annotations

from typing import Any

from pamqp import frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from jobwire.gateway._models import JobRecord
from jobwire.gateway.providers.rabbitmq._codec import (
    REDELIVERED,
    decode,
    handed_back,
    properties,
    redelivered,
)

from support import new_job


def job_message(after: int = 0) -> Any:
    new = new_job(type="work")
    record = JobRecord.create(new, 1_700_000_000.0)
    return properties(record, after=after)


def over_the_wire(props: Any) -> dict[str, Any]:
    """The headers as a consumer receives them (the AMQP field table, encoded and decoded)."""
    encoded = frame.marshal(ContentHeader(0, 2, props), 1)
    _, _, header = frame.unmarshal(encoded)
    assert isinstance(header, ContentHeader)
    return dict(header.properties.headers or {})


def test_the_copy_of_a_redelivered_message_is_still_redelivered() -> None:
    # The original was redelivered (a lease on it may have been lost with a
    # connection): its copy, not redelivered by the broker, must say so too.
    props = job_message(after=1)
    props.headers = handed_back(
        {**props.headers, "x-delivery-count": 2}, returns=2, redelivered=True
    )
    headers = over_the_wire(props)
    assert redelivered(Basic.Deliver(redelivered=False), headers)
    assert "x-delivery-count" not in headers
    assert decode(props, b"{}").after == 3  # the broker's returns count as attempts made


def test_the_copy_of_a_first_delivery_is_a_first_delivery() -> None:
    props = job_message()
    props.headers = handed_back(props.headers, returns=0, redelivered=False)
    headers = over_the_wire(props)
    assert REDELIVERED not in headers
    assert not redelivered(Basic.Deliver(redelivered=False), headers)
    assert redelivered(Basic.Deliver(redelivered=True), headers)
    assert decode(props, b"{}").after == 0
