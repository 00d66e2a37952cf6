"""Redis provider (``type = "redis"``): jobs, leases and wake-ups in Redis, for N gateways."""

from __future__ import annotations

from jobwire.gateway.providers.redis._errors import RedisUnavailableError
from jobwire.gateway.providers.redis._provider import RedisProvider

__all__ = ["RedisProvider", "RedisUnavailableError"]
