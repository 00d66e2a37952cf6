"""Connection settings shared by `Client` and `AsyncClient`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import grpc

from jobwire.client._serializers import Serializer

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
#: Longest `connect` waits for the gateway's health check: a notebook cell that
#: points at no gateway must fail fast, even when packets are silently dropped.
CONNECT_TIMEOUT = 5.0

#: Services whose calls gRPC retries on UNAVAILABLE.
RETRIED_SERVICES = ("jobwire.v1.QueueService", "jobwire.v1.ScheduleService")

StrPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings; with no field set the system's root certificates verify the gateway.

    Args:
        ca: PEM file of the certificate authority that signed the gateway's certificate.
        cert: PEM certificate chain of the client, for mutual TLS (needs `key`).
        key: PEM private key of `cert`.
        server_name: Name to verify the gateway's certificate against, when it is
            not the host in the address.
    """

    ca: StrPath | None = None
    cert: StrPath | None = None
    key: StrPath | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLSConfig needs both `cert` and `key` for mutual TLS, or neither")

    def credentials(self) -> grpc.ChannelCredentials:
        """Reads the files into gRPC channel credentials."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca),
            private_key=_read(self.key),
            certificate_chain=_read(self.cert),
        )


def _read(path: StrPath | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How gRPC retries calls that fail with UNAVAILABLE.

    gRPC itself retries (its `retryPolicy`), with exponential backoff and jitter.
    Enqueues carry a request id, so a retried enqueue never adds a second job.

    Args:
        max_attempts: Attempts in all, including the first; gRPC caps it at 5.
            1 disables retries.
        initial_backoff: Upper bound of the first random backoff.
        max_backoff: Upper bound of any backoff.
        multiplier: Growth of the bound after each attempt.
    """

    max_attempts: int = 5
    initial_backoff: timedelta = timedelta(milliseconds=100)
    max_backoff: timedelta = timedelta(seconds=2)
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryConfig.max_attempts must be at least 1")

    def service_config(self) -> str:
        """The gRPC service config (JSON) with this retry policy."""
        method_config: dict[str, object] = {
            "name": [{"service": service} for service in RETRIED_SERVICES]
        }
        if self.max_attempts > 1:
            method_config["retryPolicy"] = {
                "maxAttempts": self.max_attempts,
                "initialBackoff": _json_duration(self.initial_backoff),
                "maxBackoff": _json_duration(self.max_backoff),
                "backoffMultiplier": self.multiplier,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }
        # The enqueue stream retries its frames itself (`_enqueue_stream`): a
        # method's own entry wins over its service's, and this one has no policy.
        stream_config = {"name": [{"service": RETRIED_SERVICES[0], "method": "EnqueueStream"}]}
        return json.dumps({"methodConfig": [method_config, stream_config]})


DEFAULT_RETRY = RetryConfig()


def _json_duration(value: timedelta) -> str:
    return f"{value.total_seconds():.6f}s"


class ClientOptions(TypedDict, total=False):
    """Keyword arguments of `Client` and `AsyncClient` (and their `connect`)."""

    timeout: float | timedelta
    token: str | None
    serializer: Serializer | None
    tls: TLSConfig | None
    retry: RetryConfig
