"""``[provider] type = "rabbitmq"``: what is accepted, and credentials that never show."""

from __future__ import annotations

import pydantic
import pytest

from jobwire.gateway import GatewaySettings, RabbitMqProviderSettings
from jobwire.gateway.providers.rabbitmq._broker import broker_url, where
from jobwire.gateway.providers.rabbitmq._topology import MAX_PARK, bucket_of

SECRET = "s3cr3t-pa55"


def settings(**provider: object) -> RabbitMqProviderSettings:
    loaded = GatewaySettings.model_validate({"provider": {"type": "rabbitmq", **provider}})
    assert isinstance(loaded.provider, RabbitMqProviderSettings)
    return loaded.provider


def test_defaults_to_the_local_broker_with_quorum_queues_and_records_next_to_the_scheduler() -> (
    None
):
    provider = settings()
    assert where(provider) == "amqp://127.0.0.1:5672/"
    assert (provider.queue_type, provider.declare, provider.queue_prefix) == (
        "quorum",
        True,
        "jobwire.",
    )
    assert provider.database_url == GatewaySettings().scheduler.database_url


def test_the_url_is_a_secret_and_the_overrides_win() -> None:
    provider = settings(url=f"amqps://app:{SECRET}@mq.internal:5671/jobs")
    assert where(provider) == "amqps://mq.internal:5671/jobs"
    assert SECRET not in repr(provider)
    assert SECRET not in str(GatewaySettings.model_validate({"provider": provider.model_dump()}))
    overridden = settings(url=f"amqp://app:{SECRET}@mq/%2F", username="jobs", password="p@ss/word")
    assert broker_url(overridden) == "amqp://jobs:p%40ss%2Fword@mq/%2F"


@pytest.mark.parametrize(
    ("provider", "key", "hint"),
    [
        ({"url": "redis://127.0.0.1"}, "url", "amqp:// or amqps://"),
        ({"queue_prefix": "amq.x"}, "queue_prefix", "not starting with 'amq.'"),
        ({"queue_prefix": "a b"}, "queue_prefix", "letters, digits"),
        ({"queue_type": "stream"}, "queue_type", "quorum"),
        ({"delivery_limit": -1}, "delivery_limit", "greater than or equal to 0"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    provider: dict[str, object], key: str, hint: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        settings(**provider)
    assert key in str(error.value)
    assert hint in str(error.value)


@pytest.mark.parametrize("delay", [0.001, 0.05, 0.051, 0.3, 1.0, 7.5, 59.9, 300.0, 899.0])
def test_a_delay_bucket_never_makes_a_job_early_and_at_most_a_fifth_late(delay: float) -> None:
    longest, ttl = bucket_of(delay)
    assert ttl >= delay * 1000  # the message waits its own delay, never less
    assert longest >= ttl
    # A message behind others of the same bucket waits at most the bucket's longest.
    assert longest <= max(50.0, delay * 1000 * 1.25) + 1


def test_delays_longer_than_a_park_take_several() -> None:
    assert bucket_of(MAX_PARK * 3) == bucket_of(MAX_PARK)
