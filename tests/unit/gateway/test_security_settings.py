"""Auth and TLS settings: validation, and tokens kept out of reprs, dumps and errors."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from pydantic import ValidationError

from jobwire.client import AsyncClient
from jobwire.gateway._config import GatewaySettings
from jobwire.gateway.auth import hash_token, main
from jobwire.worker import HandlerRegistry, Worker

TOKEN = "plain-token-that-must-not-leak"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


def auth(*tokens: dict[str, str]) -> GatewaySettings:
    return GatewaySettings.model_validate({"server": {"auth": {"enabled": True, "tokens": tokens}}})


def test_hash_token_is_the_hex_sha256() -> None:
    assert hash_token(TOKEN) == DIGEST


def test_token_hashes_are_masked_everywhere() -> None:
    settings = auth({"role": "worker", "sha256": DIGEST})
    shown = (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()))
    assert not any(DIGEST in text for text in shown)
    assert settings.server.auth.tokens[0].sha256.get_secret_value() == DIGEST


def test_a_plain_token_in_place_of_its_hash_is_refused_without_echo() -> None:
    with pytest.raises(ValidationError) as raised:
        auth({"role": "worker", "sha256": TOKEN})
    assert "server.auth.tokens.0.sha256" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBWIRE_SERVER__AUTH__ENABLED", "true")
    tokens = [{"role": "admin", "sha256": DIGEST, "name": "ops"}]
    monkeypatch.setenv("JOBWIRE_SERVER__AUTH__TOKENS", json.dumps(tokens))
    settings = GatewaySettings()
    assert settings.server.auth.enabled
    assert settings.server.auth.tokens[0].role == "admin"


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ({"auth": {"enabled": True}}, "no tokens"),
        ({"auth": {"tokens": [{"role": "root", "sha256": DIGEST}]}}, "role"),
        ({"tls": {"cert": "c.pem"}}, "key"),
        ({"tls": {"cert": "c.pem", "key": "k.pem", "require_client_cert": True}}, "client_ca"),
        ({"max_streams": 0}, "max_streams"),
    ],
)
def test_invalid_security_settings(server: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        GatewaySettings.model_validate({"server": server})


def test_hash_token_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{TOKEN}\n"))
    assert main([]) == 0
    assert capsys.readouterr().out == f"{DIGEST}\n"
    assert main(["--generate"]) == 0
    token_line, digest_line = capsys.readouterr().out.splitlines()
    token = token_line.split()[-1]
    assert digest_line.split()[-1] == hash_token(token)
    assert len(token) >= 40


def test_sdk_reprs_hide_the_token() -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda payload: None)
    worker = Worker("127.0.0.1:1", registry=registry, token=TOKEN)
    client = AsyncClient("127.0.0.1:1", token=TOKEN)
    assert TOKEN not in repr(worker)
    assert TOKEN not in repr(client)
