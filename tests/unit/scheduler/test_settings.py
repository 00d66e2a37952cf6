"""The ``[scheduler]`` table and where long delays go."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest
from pydantic import ValidationError

from jobwire.gateway import GatewaySettings, MemoryProviderSettings, SchedulerSettings
from jobwire.gateway._events import JobEvents
from jobwire.gateway._service import JobService
from jobwire.gateway.providers.memory import MemoryProvider
from jobwire.gateway.scheduler import DEFAULT_DELAY_THRESHOLD, Scheduler

URL = "sqlite+aiosqlite:///unused.db"  # never opened: nothing connects before start()


class NativeLimitProvider(MemoryProvider):
    max_native_delay: ClassVar[float | None] = 300.0


def provider(cls: type[MemoryProvider] = MemoryProvider) -> JobService:
    """The enqueue path a scheduler hands due jobs to, on a provider of ``cls``."""
    events = JobEvents()
    return JobService(
        GatewaySettings(scheduler=SchedulerSettings(enabled=False)),
        cls(MemoryProviderSettings(), events),
        events,
    )


def test_defaults() -> None:
    settings = SchedulerSettings()
    assert settings.enabled
    assert settings.database_url == "sqlite+aiosqlite:///jobwire.db"
    assert settings.poll_interval == timedelta(seconds=60)
    assert settings.delay_threshold is None
    assert settings.misfire_grace == timedelta(seconds=60)


def test_spans_read_from_text() -> None:
    settings = SchedulerSettings(delay_threshold="0.5s", poll_interval="250ms")  # type: ignore[arg-type]
    assert settings.delay_threshold == timedelta(seconds=0.5)
    assert settings.poll_interval == timedelta(milliseconds=250)


@pytest.mark.parametrize(
    "url", ["mysql://user:secret@host/db", "sqlite:///jobwire.db", "postgresql://h/db"]
)
def test_unsupported_database_url_fails_naming_the_key(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GatewaySettings.model_validate({"scheduler": {"database_url": url}})
    assert "scheduler.database_url" in str(caught.value)
    assert "sqlite+aiosqlite" in str(caught.value)


def test_zero_poll_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match="poll_interval"):
        SchedulerSettings(poll_interval=timedelta(0))


def test_memory_provider_hands_delays_over_15_minutes_to_the_scheduler() -> None:
    scheduler = Scheduler(SchedulerSettings(database_url=URL), provider())
    assert scheduler.delay_threshold == DEFAULT_DELAY_THRESHOLD == 900


def test_a_provider_limit_is_the_default_threshold() -> None:
    limited = Scheduler(SchedulerSettings(database_url=URL), provider(NativeLimitProvider))
    assert limited.delay_threshold == 300


def test_configured_threshold_wins() -> None:
    settings = SchedulerSettings(database_url=URL, delay_threshold=timedelta(hours=1))
    assert Scheduler(settings, provider()).delay_threshold == 3600
