from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from jobwire.client import InvalidArgumentError, JsonSerializer, RawSerializer, Serializer
from jobwire.client._serializers import decode_payload, encode_payload


@pytest.mark.parametrize(
    "value", [None, 0, 1.5, "héllo", [1, "two", None], {"a": {"b": [True, False]}}]
)
def test_json_round_trip(value: Any) -> None:
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


def test_json_is_compact_utf8() -> None:
    assert JsonSerializer().dumps({"a": [1, 2], "é": "ü"}) == '{"a":[1,2],"é":"ü"}'.encode()


def test_json_default_hook() -> None:
    serializer = JsonSerializer(default=lambda obj: obj.isoformat())
    assert json.loads(serializer.dumps({"day": date(2026, 1, 2)})) == {"day": "2026-01-02"}


def test_json_rejects_unencodable_without_hook() -> None:
    with pytest.raises(TypeError):
        JsonSerializer().dumps(date(2026, 1, 2))


def test_raw_passes_bytes_through() -> None:
    serializer = RawSerializer()
    assert serializer.dumps(bytearray(b"\x00\x01")) == b"\x00\x01"
    assert serializer.dumps(None) == b""
    assert serializer.loads(b"\xff") == b"\xff"
    with pytest.raises(TypeError, match="bytes only"):
        serializer.dumps({"a": 1})


def test_serializers_satisfy_the_protocol() -> None:
    serializers: list[Serializer] = [JsonSerializer(), RawSerializer()]
    assert [s.content_type for s in serializers] == ["application/json", "application/octet-stream"]


def test_bytes_payload_is_sent_raw() -> None:
    assert encode_payload(b"\x00", JsonSerializer(), None) == (b"\x00", "application/octet-stream")
    assert encode_payload(memoryview(b"ab"), JsonSerializer(), "image/png") == (b"ab", "image/png")


def test_a_payload_the_serializer_cannot_encode_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError, match=r"RawSerializer cannot encode it .*serializer="):
        encode_payload("text", RawSerializer(), None)


def test_other_payloads_go_through_the_serializer() -> None:
    assert encode_payload({"a": 1}, JsonSerializer(), None) == (b'{"a":1}', "application/json")
    assert encode_payload(None, JsonSerializer(), None) == (b"null", "application/json")
    custom = encode_payload([1], JsonSerializer(), "application/vnd.acme+json")
    assert custom == (b"[1]", "application/vnd.acme+json")


def test_decode_by_content_type() -> None:
    json_serializer = JsonSerializer()
    assert decode_payload(b'{"a":1}', "application/json", json_serializer) == {"a": 1}
    assert decode_payload(b'{"a":1}', "Application/JSON; charset=utf-8", json_serializer) == {
        "a": 1
    }
    assert decode_payload(b"\x00", "application/octet-stream", json_serializer) == b"\x00"
    # Jobs listed without their payload carry empty bytes.
    assert decode_payload(b"", "application/json", json_serializer) is None
