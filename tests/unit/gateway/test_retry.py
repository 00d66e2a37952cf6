from __future__ import annotations

from datetime import timedelta

from jobwire.gateway import RetrySettings
from jobwire.gateway.providers import RetryPolicy


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(
        RetrySettings(
            initial_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=5), jitter=0
        )
    )
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_spreads_delays_below_the_nominal_value() -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=timedelta(seconds=10), jitter=0.5))
    delays = {policy.backoff(1) for _ in range(50)}
    assert all(5 <= d <= 10 for d in delays)
    assert len(delays) > 1
