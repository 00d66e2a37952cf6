"""Rates as text, the token bucket's arithmetic and which limit holds a job."""

from __future__ import annotations

import pytest

from jobwire.gateway._limits import QueueLimits, RateLimit, parse_rate
from jobwire.gateway.providers._flow import TokenBucket, hold_of


@pytest.mark.parametrize(
    ("text", "count", "period", "canonical"),
    [
        ("100/minute", 100, 60.0, "100/minute"),
        ("5/second", 5, 1.0, "5/second"),
        ("5 / sec", 5, 1.0, "5/second"),
        ("7/minutes", 7, 60.0, "7/minute"),
        ("1000/hour", 1000, 3600.0, "1000/hour"),
        ("10/30s", 10, 30.0, "10/30s"),
        ("3/250ms", 3, 0.25, "3/250ms"),
        ("2/1.5m", 2, 90.0, "2/90s"),
        ("1/day", 1, 86400.0, "1/day"),
    ],
)
def test_a_rate_reads_from_text_and_back(
    text: str, count: int, period: float, canonical: str
) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period, rate.burst) == (count, period, 1)
    assert rate.text == canonical
    assert parse_rate(rate.text) == rate


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("fast", '"COUNT/PERIOD" such as "100/minute"'),
        ("", "got ''"),
        ("5/fortnight", "got '5/fortnight'"),
        ("0/second", "count of a rate must be 1 to 1000000000"),
        ("5/0s", "period of a rate must be 1ms to 366 days"),
        ("5/400d", "period of a rate must be 1ms to 366 days"),
    ],
)
def test_a_bad_rate_says_what_is_accepted(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_rate(text)


def test_the_bucket_starts_full_refills_continuously_and_caps_at_its_burst() -> None:
    bucket = TokenBucket(RateLimit(10, 1.0, burst=3), now=100.0)
    assert bucket.available(100.0) == 3
    bucket.take(3)
    assert bucket.available(100.0) == 0
    assert bucket.wait(100.0) == pytest.approx(0.1)
    assert bucket.available(100.25) == 2
    assert bucket.available(1000.0) == 3  # never more than the burst
    bucket.retune(RateLimit(1, 60.0, burst=1))
    assert bucket.rate.burst == 1


def test_the_most_specific_limit_is_the_reason() -> None:
    limits = QueueLimits(max_concurrency_per_key=2, max_concurrency=5, rate=parse_rate("1/minute"))
    key = hold_of(limits, "q", "customer-7", 2, 5, 0)
    assert key is not None
    assert key.text == "concurrency key customer-7 (2 of 2 processing)"
    whole = hold_of(limits, "q", "customer-8", 1, 5, 0)
    assert whole is not None
    assert whole.text == "max_concurrency q (5 of 5 processing)"
    rate = hold_of(limits, "q", "", 0, 1, 0)
    assert rate is not None
    assert rate.text == "rate_limit q (1/minute)"
    assert hold_of(limits, "q", "", 0, 1, 1) is None
