"""The redis-py client of a provider, and what the gateway checks at start."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions
from redis.asyncio import Redis

from jobwire.gateway._provider_config import RedisProviderSettings

logger = logging.getLogger("jobwire.gateway.redis")


def open_client(settings: RedisProviderSettings) -> Redis:
    """A client (with its pool) for ``settings.url``; connects on first use."""
    url = settings.url.get_secret_value()
    tls: dict[str, Any] = {}
    if settings.tls_ca_file is not None:
        tls["ssl_ca_certs"] = str(settings.tls_ca_file)
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=settings.connect_timeout.total_seconds(),
        socket_keepalive=True,
        decode_responses=False,
        **tls,
    )
    # The URL's options win over keyword arguments in from_url: the settings'
    # own credentials are set on the pool, which uses them for every connection.
    kwargs = client.connection_pool.connection_kwargs
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    return client


def describe(settings: RedisProviderSettings) -> str:
    """Where the provider connects, for logs: scheme, host, port and database, no credentials."""
    parts = urlsplit(settings.url.get_secret_value())
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


async def check_server(client: Redis, where: str) -> None:
    """Connect, then warn about settings that lose jobs (``maxmemory-policy``, persistence).

    Under any eviction policy but ``noeviction`` Redis deletes keys when
    full: job hashes and lease entries vanish (BullMQ's most reported loss,
    bullmq#1827). Without ``appendonly`` a crash loses what was accepted
    since the last snapshot; with ``appendfsync everysec``, up to a second.
    """
    await client.ping()
    try:
        config: dict[Any, Any] = dict(await client.config_get("maxmemory-policy"))
        config.update(await client.config_get("append*"))
    except exceptions.ResponseError as error:
        # Managed services often rename or refuse CONFIG.
        logger.warning(
            "Redis at %s: could not read its configuration (%s); make sure "
            "maxmemory-policy is noeviction and appendonly is yes",
            where,
            error,
        )
        return
    policy = _setting(config, "maxmemory-policy")
    if policy != "noeviction":
        logger.warning(
            "Redis at %s has maxmemory-policy %s: when full it evicts keys, and jobs are lost; "
            "set maxmemory-policy noeviction (enqueues then fail with RESOURCE_EXHAUSTED instead)",
            where,
            policy,
        )
    if _setting(config, "appendonly") != "yes":
        logger.warning(
            "Redis at %s runs without appendonly: if Redis crashes, jobs accepted since its "
            "last snapshot are lost; set appendonly yes (appendfsync everysec loses at most "
            "about a second of them, always none)",
            where,
        )
    else:
        logger.info(
            "Redis at %s: appendonly yes, appendfsync %s",
            where,
            _setting(config, "appendfsync"),
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _setting(config: dict[Any, Any], name: str) -> str:
    # redis-py answers CONFIG GET with text or bytes keys, by version.
    return _text(config.get(name, config.get(name.encode(), "")))
