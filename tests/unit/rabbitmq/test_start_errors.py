"""Start-up failures of `type = "rabbitmq"`: a missing extra, a broker away; one line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_support import free_port

INSTALL = "install it from the repository root with: pip install './services/gateway[rabbitmq]'"


def run_gateway(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def without_aio_pika(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import aio_pika`` fails as if it were not installed."""
    blocked = tmp_path / "blocked" / "aio_pika"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aio_pika'\", name='aio_pika')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked.parent), env.get("PYTHONPATH", "")])
    return env


def test_the_command_fails_at_start_with_the_install_command(
    without_aio_pika: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text('[provider]\ntype = "rabbitmq"\nurl = "amqp://u:hunter2@127.0.0.1:1/"\n')
    result = run_gateway(config, without_aio_pika)
    assert result.returncode != 0
    assert INSTALL in result.stderr
    assert "aio_pika is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_an_unreachable_broker_fails_the_start_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "jobwire.toml"
    port = free_port()  # nothing listens there
    config.write_text(
        f'[provider]\ntype = "rabbitmq"\nurl = "amqp://u:hunter2@127.0.0.1:{port}/jobs"\n'
        'connect_timeout = "2s"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    result = run_gateway(config, env)
    assert result.returncode == 1
    assert f"cannot connect to RabbitMQ at amqp://127.0.0.1:{port}/jobs" in result.stderr
    assert "provider.url" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
