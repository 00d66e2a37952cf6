"""Payload serializers: how Python objects become job payloads and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from jobwire.client._errors import InvalidArgumentError

OCTET_STREAM = "application/octet-stream"


class Serializer(Protocol):
    """Turns payloads and results into bytes labelled with a media type."""

    @property
    def content_type(self) -> str:
        """Media type of the bytes `dumps` produces, e.g. "application/json"."""
        ...

    def dumps(self, obj: Any) -> bytes:
        """Encodes `obj`."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decodes bytes that `dumps` produced."""
        ...


class JsonSerializer:
    """Compact UTF-8 JSON, the default serializer.

    Args:
        default: Called for objects `json` cannot encode (datetimes, dataclasses,
            ...); returns an encodable replacement or raises `TypeError`.
    """

    content_type = "application/json"

    def __init__(self, *, default: Callable[[Any], Any] | None = None) -> None:
        self._default = default

    def dumps(self, obj: Any) -> bytes:
        """Encodes `obj` as compact JSON."""
        return json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, default=self._default
        ).encode()

    def loads(self, data: bytes) -> Any:
        """Decodes JSON."""
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


class RawSerializer:
    """Passes bytes through unchanged; `None` becomes empty bytes."""

    content_type = OCTET_STREAM

    def dumps(self, obj: Any) -> bytes:
        """Returns `obj` as bytes.

        Raises:
            TypeError: `obj` is neither bytes-like nor None.
        """
        if obj is None:
            return b""
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        raise TypeError(f"RawSerializer sends bytes only, got {type(obj).__name__}")

    def loads(self, data: bytes) -> bytes:
        """Returns `data` unchanged."""
        return data

    def __repr__(self) -> str:
        return "RawSerializer()"


def encode_payload(
    payload: Any, serializer: Serializer, content_type: str | None
) -> tuple[bytes, str]:
    """Encodes a payload: bytes are sent as they are, anything else through `serializer`.

    Returns:
        The bytes and the content type to label them with (`content_type` when given).

    Raises:
        InvalidArgumentError: The serializer cannot encode `payload`; the message
            names the serializer and how to pass another.
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), content_type or OCTET_STREAM
    try:
        data = serializer.dumps(payload)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(
            f"payload: {type(serializer).__name__} cannot encode it ({error}); pass bytes, "
            "or give the client a serializer that can: Client(..., serializer=...), e.g. "
            "serializer=JsonSerializer(default=str)",
            metadata={"field": "payload"},
        ) from error
    return data, content_type or serializer.content_type


def decode_payload(data: bytes, content_type: str, serializer: Serializer) -> Any:
    """Decodes bytes labelled with the serializer's content type; returns others as bytes.

    Empty bytes under the serializer's content type decode to None: that is what a
    job listed without its payload (the BASIC view) carries.
    """
    if _media_type(content_type) != _media_type(serializer.content_type):
        return data
    return serializer.loads(data) if data else None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()
