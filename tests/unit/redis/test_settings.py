"""``[provider] type = "redis"``: what is accepted, and credentials that never show."""

from __future__ import annotations

import pydantic
import pytest

from jobwire.gateway import GatewaySettings, RedisProviderSettings
from jobwire.gateway.providers.redis._connection import describe, open_client
from jobwire.gateway.providers.redis._keys import Keys

SECRET = "s3cr3t-pa55"


def settings(**provider: object) -> RedisProviderSettings:
    loaded = GatewaySettings.model_validate({"provider": {"type": "redis", **provider}})
    assert isinstance(loaded.provider, RedisProviderSettings)
    return loaded.provider


def test_defaults_to_the_local_redis() -> None:
    provider = settings()
    assert describe(provider) == "redis://127.0.0.1:6379/0"
    assert Keys.of(provider.key_prefix).job("j1") == "{jobwire}:job:j1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://app:{SECRET}@cache.internal:6380/2", "redis://cache.internal:6380/2"),
        (f"rediss://:{SECRET}@cache.internal", "rediss://cache.internal:6379/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock"),
    ],
)
def test_urls_with_credentials_are_never_shown(url: str, shown: str) -> None:
    provider = settings(url=url)
    assert describe(provider) == shown
    assert SECRET not in repr(provider)
    assert SECRET not in str(GatewaySettings.model_validate({"provider": provider.model_dump()}))


def test_username_and_password_settings_override_the_url() -> None:
    provider = settings(url="redis://old:old@127.0.0.1:6379/0", username="app", password=SECRET)
    client = open_client(provider)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("app", SECRET)
    assert SECRET not in repr(provider)


@pytest.mark.parametrize(
    ("provider", "key"),
    [
        ({"url": f"http://u:{SECRET}@host"}, "url"),
        ({"key_prefix": "has space"}, "key_prefix"),
        ({"key_prefix": "{braces}"}, "key_prefix"),
        ({"gateway_timeout": "0.5s"}, "gateway_timeout"),
        ({"max_history": -1}, "max_history"),
    ],
)
def test_bad_values_name_the_key_and_hide_the_value(provider: dict[str, object], key: str) -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        settings(**provider)
    assert key in str(error.value)
    assert SECRET not in str(error.value)
