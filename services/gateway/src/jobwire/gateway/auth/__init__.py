"""Bearer-token authentication with roles, and ``python -m jobwire.gateway.auth``.

The gateway keeps only the SHA-256 of each token, so its configuration and
environment hold nothing a caller could present. Tokens are meant to be long
random strings (``python -m jobwire.gateway.auth --generate``): a fast
unsalted hash is then as strong as a slow one, and cheap on every call.
"""

from __future__ import annotations

from jobwire.gateway.auth._cli import main
from jobwire.gateway.auth._interceptor import (
    ANY_ROLE_SERVICES,
    OPEN_SERVICES,
    SERVICE_ROLES,
    AuthInterceptor,
    hash_token,
)

__all__ = [
    "ANY_ROLE_SERVICES",
    "OPEN_SERVICES",
    "SERVICE_ROLES",
    "AuthInterceptor",
    "hash_token",
    "main",
]
