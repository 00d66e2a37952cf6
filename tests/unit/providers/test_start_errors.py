"""Start-up failures of the providers: a missing extra, a backend away; one line each, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_support import free_port

SECRET = "hunter2"

MISSING_EXTRAS = {
    # extra: (the SDK module blocked, the [provider] table after its type)
    "sqs": ("aiobotocore", '[provider.queue_urls]\ndefault = "https://sqs.example/1/q"\n'),
    "redis": ("redis", f'url = "redis://:{SECRET}@127.0.0.1:1/0"\n'),
    "rabbitmq": ("aio_pika", f'url = "amqp://u:{SECRET}@127.0.0.1:1/"\n'),
    "postgres": ("asyncpg", f'database_url = "postgresql+asyncpg://u:{SECRET}@127.0.0.1/db"\n'),
}


def run_gateway(
    directory: Path, toml: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Start ``python -m jobwire.gateway`` on ``toml`` (as ``jobwire.toml`` in ``directory``)."""
    (directory / "jobwire.toml").write_text(toml)
    command = ["-m", "jobwire.gateway", "--config", "jobwire.toml", "--listen", "127.0.0.1:0"]
    return subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}


def without(module: str, tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import module`` fails as if it were not installed."""
    blocked = tmp_path / "blocked" / module
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n"
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocked.parent), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("extra", sorted(MISSING_EXTRAS))
def test_a_missing_extra_fails_the_start_with_the_install_command(
    extra: str, tmp_path: Path
) -> None:
    module, rest = MISSING_EXTRAS[extra]
    result = run_gateway(
        tmp_path, f'[provider]\ntype = "{extra}"\n{rest}', without(module, tmp_path)
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f'jobwire-gateway: jobwire.toml:2: provider.type: "{extra}" needs the '
        f"gateway's {extra} extra ({module} is missing); "
        f"install it from the repository root with: pip install './services/gateway[{extra}]'"
    )
    assert SECRET not in line


@pytest.mark.parametrize(
    ("provider", "url", "says"),
    [
        ("redis", "redis://:{secret}@127.0.0.1:{port}/0", ["cannot start: Redis failed"]),
        (
            "rabbitmq",
            "amqp://u:{secret}@127.0.0.1:{port}/jobs",
            ["cannot connect to RabbitMQ at amqp://127.0.0.1:{port}/jobs", "provider.url"],
        ),
    ],
)
def test_an_unreachable_backend_fails_the_start_in_one_line(
    provider: str, url: str, says: list[str], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    toml = (
        f'[provider]\ntype = "{provider}"\nurl = "{url.format(secret=SECRET, port=port)}"\n'
        'connect_timeout = "2s"\n'
    )
    result = run_gateway(tmp_path, toml, clean_env())
    assert result.returncode == 1
    for words in says:
        assert words.format(port=port) in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
