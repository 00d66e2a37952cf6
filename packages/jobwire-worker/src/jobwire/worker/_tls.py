"""TLS settings of the worker's channel, mirroring ``jobwire.client.TLSConfig``.

Duplicated rather than imported: the worker SDK depends on no other jobwire SDK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

StrPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings; with no field set the system's root certificates verify the gateway.

    Args:
        ca: PEM file of the certificate authority that signed the gateway's certificate.
        cert: PEM certificate chain of the worker, for mutual TLS (needs `key`).
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
        """Read the files into gRPC channel credentials."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca),
            private_key=_read(self.key),
            certificate_chain=_read(self.cert),
        )


def _read(path: StrPath | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()
