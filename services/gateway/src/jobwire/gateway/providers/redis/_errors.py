"""How Redis failures reach clients: the errors and the statuses they map to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions

from jobwire.gateway._errors import GatewayError, ResourceExhaustedError, UnavailableError


class RedisUnavailableError(UnavailableError):
    """Redis cannot be reached or failed the command; retry later."""

    reason = "PROVIDER_UNAVAILABLE"


DISCONNECTED = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
"""Failures that mean Redis is away for now (a retry may succeed)."""


def redis_error(error: BaseException) -> GatewayError:
    """Translate a redis-py failure into the status clients see.

    redis-py's messages name the host and port, never the password.
    """
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, exceptions.ResponseError) and str(error).startswith("OOM"):
        return ResourceExhaustedError(
            "Redis is out of memory (maxmemory reached); nothing was stored, retry later"
        )
    if isinstance(error, exceptions.AuthenticationError | exceptions.AuthorizationError):
        return RedisUnavailableError(f"Redis refused the gateway's credentials: {error}")
    return RedisUnavailableError(f"Redis failed: {error}; retry later")


@contextmanager
def translated() -> Iterator[None]:
    """Raise redis-py failures inside the block as gateway errors."""
    try:
        yield
    except exceptions.RedisError as error:
        raise redis_error(error) from error
    except OSError as error:
        raise redis_error(error) from error
