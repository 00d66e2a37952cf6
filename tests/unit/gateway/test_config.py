from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobwire.gateway import GatewaySettings, MemoryProviderSettings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobwire.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = GatewaySettings.model_validate({})
    assert settings.server.listen == "127.0.0.1:50051"
    assert settings.provider.type == "memory"
    assert settings.worker.mode == "standalone"
    assert settings.scheduler.database_url == "sqlite+aiosqlite:///jobwire.db"


def test_toml_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path,
        '[server]\nlisten = "127.0.0.1:7000"\nlease_duration = 5\n'
        "[provider]\nmax_history = 7\n[provider.retry]\ninitial_backoff = 0.5\n",
    )
    monkeypatch.setenv("JOBWIRE_SERVER__LEASE_DURATION", "9s")
    monkeypatch.setenv("JOBWIRE_SERVER__SHUTDOWN_GRACE", "2m")
    settings = load_settings(config, provider={"type": "memory", "max_history": 8})
    assert settings.server.listen == "127.0.0.1:7000"
    assert settings.server.lease_duration == timedelta(seconds=9)
    assert settings.server.shutdown_grace == timedelta(minutes=2)
    assert isinstance(settings.provider, MemoryProviderSettings)
    assert settings.provider.max_history == 8
    assert load_settings(config).provider.retry.initial_backoff == timedelta(seconds=0.5)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nlisten = 'nowhere'\n", "server.listen"),
        ("[server]\nmax_payload_bytes = -1\n", "server.max_payload_bytes"),
        ("[provider]\ntype = 'kafka'\n", "provider"),
        ("[worker]\nmode = 'sideways'\n", "worker.mode"),
        ("[schedular]\nenabled = true\n", "schedular"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ValidationError) as error:
        load_settings(write(tmp_path, text))
    assert key in str(error.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")
