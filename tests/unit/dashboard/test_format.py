from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobwire.dashboard._format import MAX_SHOWN, age, body, when


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (185, "3 min 5 s"), (7440, "2 h 4 min"), (90000, "1 d 1 h")],
)
def test_age(seconds: int, text: str) -> None:
    assert age(timedelta(seconds=seconds)) == text


def test_when_is_utc_to_the_second() -> None:
    moment = datetime(2026, 12, 6, 23, 30, 1, 999, tzinfo=UTC)
    assert when(moment) == "2026-12-06 23:30:01 UTC"
    assert when(None) == ""


def test_json_is_pretty_printed() -> None:
    shown = body(b'{"a":[1,2]}', "application/json")
    assert shown.kind == "json"
    assert shown.text == '{\n  "a": [\n    1,\n    2\n  ]\n}'


def test_binary_and_huge_payloads_show_their_size() -> None:
    assert body(b"\x00\xff", "application/octet-stream").kind == "binary"
    assert body(b"\xff\xfe", "text/plain").kind == "binary"
    huge = body(b"[" + b"1," * MAX_SHOWN + b"1]", "application/json")
    assert (huge.kind, huge.size) == ("binary", 2 * MAX_SHOWN + 3)
    assert body(b"", "application/json").kind == "empty"
    assert body("héllo".encode(), "text/plain; charset=utf-8").text == "héllo"
