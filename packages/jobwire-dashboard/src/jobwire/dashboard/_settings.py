"""What the dashboard serves and how: gateway, listen address, login, read-only."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from jobwire.dashboard._errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8080"


def split_address(text: str, *, option: str) -> tuple[str, int]:
    """Splits "HOST:PORT" (IPv6 as "[::1]:PORT").

    Raises:
        ConfigError: Not HOST:PORT with a port from 0 to 65535.
    """
    host, colon, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{option}: expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether listening on `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class DashboardSettings:
    """How a dashboard talks to its gateway and who may use it.

    Attributes:
        gateway: The gateway, HOST:PORT.
        token: Bearer token for the gateway; also a login secret.
        listen: Where the dashboard listens, HOST:PORT.
        read_only: Hide every action; state-changing requests are refused.
        password: Login password; required (or `token`) beyond loopback.
        login_required: Ask for a login; defaults to "listening beyond loopback".
        poll_interval: Seconds between two queue statistics samples.
        scan_limit: Most jobs one listing looks at when it filters by text or sorts.
        secret_key: Signs the session cookie; random per process by default.
    """

    gateway: str
    token: str | None = None
    listen: str = DEFAULT_LISTEN
    read_only: bool = False
    password: str | None = None
    login_required: bool | None = None
    poll_interval: float = 2.0
    scan_limit: int = 1000
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    def __post_init__(self) -> None:
        split_address(self.gateway, option="--gateway")
        host, _ = split_address(self.listen, option="--listen")
        if self.login_required is None:
            object.__setattr__(self, "login_required", not is_loopback(host))
        if self.login_required and not self.secrets:
            raise ConfigError(
                f"--listen {self.listen} is beyond loopback, so the dashboard needs a login: "
                "set --password (or JOBWIRE_DASHBOARD_PASSWORD) or the gateway --token"
            )
        if self.poll_interval <= 0:
            raise ConfigError(f"poll interval must be above zero, got {self.poll_interval}")
        if self.scan_limit < 1:
            raise ConfigError(f"scan limit must be at least 1, got {self.scan_limit}")

    @property
    def secrets(self) -> tuple[str, ...]:
        """What a login accepts: the password and the gateway token, when set."""
        return tuple(secret for secret in (self.password, self.token) if secret)

    @property
    def address(self) -> tuple[str, int]:
        """The listen address as (host, port)."""
        return split_address(self.listen, option="--listen")
