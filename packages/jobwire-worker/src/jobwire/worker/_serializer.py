"""Payload and result codecs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Serializer(Protocol):
    """Turns payloads into Python values and handler results into bytes.

    The worker decodes a job's payload with :meth:`loads` when the job's
    ``content_type`` is this serializer's :attr:`content_type` (parameters such
    as ``; charset=utf-8`` aside) and hands any other payload over as bytes.
    Results other than ``bytes`` are encoded with :meth:`dumps`.
    """

    @property
    def content_type(self) -> str:
        """Media type this serializer reads and writes, e.g. ``application/json``."""
        ...

    def dumps(self, value: Any) -> bytes:
        """Encode a handler's result."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode a job's payload."""
        ...


class JsonSerializer:
    """JSON in UTF-8: the default, matching the producer SDK's default payloads.

    Args:
        default: Called for objects :mod:`json` cannot encode (for example
            ``lambda o: o.isoformat()`` for datetimes); see :func:`json.dumps`.
    """

    content_type = "application/json"

    def __init__(self, default: Callable[[Any], Any] | None = None) -> None:
        self._default = default

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` compactly."""
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=self._default
        ).encode()

    def loads(self, data: bytes) -> Any:
        """Decode a JSON document."""
        return json.loads(data)


def media_type(content_type: str) -> str:
    """Return ``content_type`` without parameters, lower-cased."""
    return content_type.partition(";")[0].strip().lower()
