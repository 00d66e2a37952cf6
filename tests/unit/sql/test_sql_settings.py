"""Settings of the SQL providers: defaults, the shared database, bad values."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from jobwire.gateway import GatewaySettings, PostgresProviderSettings, SqliteProviderSettings

PG = "postgresql+asyncpg://postgres@127.0.0.1/jobs"


def test_postgres_defaults_to_the_schedulers_postgresql_database() -> None:
    settings = GatewaySettings.model_validate(
        {"provider": {"type": "postgres"}, "scheduler": {"database_url": PG}}
    )
    assert isinstance(settings.provider, PostgresProviderSettings)
    assert settings.provider.database_url == PG
    assert settings.provider.table_prefix == "jobwire_"


def test_postgres_without_a_url_next_to_a_sqlite_scheduler_says_what_to_set() -> None:
    with pytest.raises(ValidationError, match=r"provider\.database_url is required"):
        GatewaySettings.model_validate({"provider": {"type": "postgres"}})


def test_sqlite_has_a_file_of_its_own_by_default() -> None:
    settings = GatewaySettings.model_validate({"provider": {"type": "sqlite"}})
    assert isinstance(settings.provider, SqliteProviderSettings)
    assert settings.provider.database_url == "sqlite+aiosqlite:///jobwire-queue.db"


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"type": "postgres", "database_url": "sqlite+aiosqlite:///x.db"}, "postgresql+asyncpg"),
        ({"type": "sqlite", "database_url": PG}, "sqlite+aiosqlite:///PATH"),
        ({"type": "sqlite", "database_url": "sqlite+aiosqlite:///:memory:"}, "a file"),
        ({"type": "sqlite", "table_prefix": "Jobs-"}, "table_prefix"),
        ({"type": "sqlite", "heartbeat_timeout": 1, "heartbeat_interval": 2}, "heartbeat"),
        ({"type": "sqlite", "dedup_window": "2d"}, "history_retention must be at least"),
        ({"type": "sqlite", "pool_size": 0}, "pool_size"),
    ],
)
def test_bad_values_name_the_key(provider: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        GatewaySettings.model_validate({"provider": provider, "scheduler": {"database_url": PG}})
