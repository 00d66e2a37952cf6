from __future__ import annotations

import pytest

from jobwire.dashboard import ConfigError, DashboardSettings, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("dashboard.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_needs_no_login() -> None:
    assert DashboardSettings(gateway="127.0.0.1:50051").login_required is False


def test_beyond_loopback_a_login_is_required() -> None:
    settings = DashboardSettings(gateway="g:1", listen="0.0.0.0:8080", token="t")
    assert settings.login_required is True
    assert settings.secrets == ("t",)


def test_beyond_loopback_without_a_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"needs a login: set --password"):
        DashboardSettings(gateway="g:1", listen="[::]:8080")


@pytest.mark.parametrize("address", ["nope", ":80", "h:", "h:99999", "h:x"])
def test_a_bad_address_names_the_option(address: str) -> None:
    with pytest.raises(ConfigError, match=r"--gateway: expected HOST:PORT"):
        DashboardSettings(gateway=address)
