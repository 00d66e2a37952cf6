from __future__ import annotations

from datetime import timedelta

import pytest

from jobwire.client import InvalidArgumentError, parse_interval


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 30 minutes", timedelta(minutes=30)),
        ("every 1 hour", timedelta(hours=1)),
        ("every 1 day", timedelta(days=1)),
        ("Every 2 Weeks", timedelta(weeks=2)),
        ("every minute", timedelta(minutes=1)),
        ("every day", timedelta(days=1)),
        ("30 seconds", timedelta(seconds=30)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("every 1 hour and 30 minutes", timedelta(hours=1, minutes=30)),
        ("every 1 hour, 30 minutes", timedelta(hours=1, minutes=30)),
        ("every 1.5 hours", timedelta(hours=1, minutes=30)),
        ("every 1 second", timedelta(seconds=1)),
    ],
)
def test_parse_interval(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not an interval"),
        ("every", "not an interval"),
        ("30", "not an interval"),
        ("every 5 fortnights", "not an interval"),
        ("-1 minute", "not an interval"),
        ("every 0 minutes", "longer than zero"),
        ("every 99999999999999999999 weeks", "too long"),
    ],
)
def test_parse_interval_rejects(text: str, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        parse_interval(text)
