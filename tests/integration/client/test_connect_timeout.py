"""connect() to an address that accepts connections but never answers fails fast, helpfully."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from jobwire.client import AsyncClient, Client, GatewayUnavailableError, _base


@pytest.fixture
def silent_address() -> Iterator[str]:
    """Like a firewall that drops packets: TCP connects, no gRPC answer ever comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def assert_helpful(error: GatewayUnavailableError, address: str, seconds: str) -> None:
    message = str(error)
    assert message.startswith(f"no jobwire gateway answered at {address}; ")
    assert "`jobwire-gateway`" in message
    assert "`jobwire.gateway.embedded()`" in message
    assert message.endswith(f"(no answer within {seconds} s)")


def test_sync_connect_gives_up_within_its_timeout(silent_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as caught:
        Client.connect(silent_address, timeout=0.3)
    assert time.monotonic() - started < 3
    assert_helpful(caught.value, silent_address, "0.3")


async def test_async_connect_gives_up_within_its_timeout(silent_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as caught:
        await AsyncClient.connect(silent_address, timeout=0.3)
    assert time.monotonic() - started < 3
    assert_helpful(caught.value, silent_address, "0.3")


def test_connect_waits_less_than_a_long_call_timeout(
    silent_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A call timeout of minutes must not make a notebook cell hang that long:
    # connect waits at most CONNECT_TIMEOUT (5 s, shortened here to keep the test quick).
    monkeypatch.setattr(_base, "CONNECT_TIMEOUT", 0.3)
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as caught:
        Client.connect(silent_address, timeout=600)
    assert time.monotonic() - started < 3
    assert_helpful(caught.value, silent_address, "0.3")
